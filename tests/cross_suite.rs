//! The rest of the user-space suite on the other architectures (issue 17): the reliability tests
//! (storm, `SA_NODEFER` nesting, overflow reports, 10 000 panics, 1000 threads), the `dlopen`
//! test and the facade's doctests, built for `aarch64-unknown-linux-gnu` and run under qemu-user
//! through the runner of `.cargo/config.toml`. `tests/cross_arch.rs` runs the switch and argument
//! tests; this file runs everything else that is not x86-64 only by nature.
//!
//! x86-64 only (gated in the test files, with the reason there): the single-stepping tests
//! (`reliability_creation.rs`, the trap-flag test of `reliability_signals.rs`: no trap flag in
//! AArch64/riscv64 user space), Valgrind (`reliability_valgrind.rs`, dlopen's memcheck test: it
//! does not run foreign binaries) and the host gdb (`gdb_backtrace.rs`; `tests/cross_gdb.rs` walks
//! the foreign binaries with gdb-multiarch).
//!
//! Counts are not scaled for emulation: the storm (4 x 50 000 signals) takes about 10 s under
//! qemu-aarch64, the 1000 threads 2 s. Only the RSS bound of `reliability_resources.rs` is skipped
//! under emulation (qemu's own memory is the process's RSS; the mapping and heap-block checks
//! stay exact).
//!
//! Needs the Rust target, the cross linker and qemu-user; skipped with the shared line where they
//! are missing (a failure under CI, see `support/skip.rs`).

#[path = "support/skip.rs"]
mod skip;

use std::path::Path;
use std::process::{Command, Output};

/// A cross target and what running its tests under qemu-user needs.
struct Cross {
    triple: &'static str,
    /// The cross linker of `.cargo/config.toml`, and the Debian packages that bring it.
    linker: &'static str,
    linker_packages: &'static str,
    /// The qemu-user program and its sysroot (`-L`), as in the runner of `.cargo/config.toml`.
    qemu: &'static str,
    sysroot: &'static str,
}

const AARCH64: Cross = Cross {
    triple: "aarch64-unknown-linux-gnu",
    linker: "aarch64-linux-gnu-gcc",
    linker_packages: "gcc-aarch64-linux-gnu libc6-dev-arm64-cross",
    qemu: "qemu-aarch64",
    sysroot: "/usr/aarch64-linux-gnu",
};

impl Cross {
    /// Whether everything the cross run needs is installed; prints the skip line otherwise.
    fn tools_present(&self) -> bool {
        if !skip::target_installed(self.triple) {
            skip::skip(
                &format!("the {} Rust target", self.triple),
                &format!("rustup target add {}", self.triple),
                false,
            );
            return false;
        }
        for (tool, package) in [
            (self.linker, self.linker_packages),
            (self.qemu, "qemu-user"),
        ] {
            if !skip::command_runs(tool, &["--version"]) {
                skip::skip(tool, &format!("apt-get install {package}"), false);
                return false;
            }
        }
        true
    }

    /// `cargo test <args> --target <triple>` from the repository root, in the target directory
    /// `tests/cross_arch.rs` uses (the builds are shared), with the child runner set: tests that
    /// start this very binary again (`support::run_child`) start it through qemu-user.
    fn cargo_test(&self, args: &[&str]) -> Output {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let arch = self.triple.split('-').next().unwrap();
        Command::new(cargo)
            .current_dir(root)
            .arg("test")
            .args(args)
            .args(["--target", self.triple])
            .arg("--target-dir")
            .arg(root.join(format!("target/cross-{arch}")))
            .env(
                "IRQSTACK_CHILD_RUNNER",
                format!("{} -L {}", self.qemu, self.sysroot),
            )
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .output()
            .expect("running cargo")
    }

    /// Runs `cargo test <args>` under qemu-user and checks that it passed, with every test named
    /// in `must_pass` reported `ok` (a doctest is named by its `file - item`, without the line).
    fn run(&self, args: &[&str], must_pass: &[&str]) {
        let out = self.cargo_test(args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "cargo test {args:?} on {} failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            self.triple
        );
        let passed: Vec<&str> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("test ")?.strip_suffix(" ... ok"))
            .map(|name| name.split(" (line ").next().unwrap())
            .collect();
        for name in must_pass {
            assert!(
                passed.contains(name),
                "{name} did not pass under {} (cargo test {args:?}):\n{stdout}",
                self.qemu
            );
        }
        println!(
            "{}: cargo test {args:?}: {} passed under {}",
            self.triple,
            passed.len(),
            self.qemu
        );
    }

    /// The suite: everything of the user-space tests that is not x86-64 only.
    fn run_suite(&self) {
        self.run(
            &[
                "-p",
                "irqstack",
                "--test",
                "reliability_overflow",
                "--test",
                "reliability_resources",
                "--test",
                "dlopen",
            ],
            &[
                // reliability_overflow.rs: the guard-page reports and their off switch.
                "irq_stack_overflow_is_reported_and_aborts",
                "overflow_in_a_signal_handler_is_reported",
                "overflow_on_a_thread_without_sigaltstack_is_reported",
                "thread_stack_overflow_still_gets_rusts_report",
                "other_faults_keep_the_default_action",
                "detection_can_be_turned_off",
                "turning_detection_off_restores_the_previous_handler",
                // reliability_resources.rs: panics and threads leave nothing behind.
                "ten_thousand_panics_leave_nothing_behind",
                "a_thousand_threads_leave_no_stacks_behind",
                // dlopen.rs: a cdylib built for the target, its handler under a storm.
                "dlopened_library_handles_a_signal_storm",
            ],
        );
        self.run(
            &["-p", "irqstack-tests", "--test", "reliability_signals"],
            &[
                "interrupt_storm_on_four_threads",
                "nested_signals_run_in_place_with_sa_nodefer",
            ],
        );
        self.run(
            &["-p", "irqstack", "--doc"],
            &[
                "src/lib.rs - on_irqstack",
                "src/lib.rs - noinstr",
                "src/lib.rs - idtentry",
                "src/lib.rs - instr_begin",
                "src/lib.rs - instr_end",
                "src/lib.rs - instr_begin_insn",
                "src/lib.rs - instr_end_insn",
            ],
        );
    }
}

#[test]
fn reliability_dlopen_and_doctests_pass_on_aarch64_under_qemu() {
    if AARCH64.tools_present() {
        AARCH64.run_suite();
    }
}
