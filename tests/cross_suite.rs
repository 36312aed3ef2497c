//! The rest of the user-space suite on the other architectures (issue 17): the reliability tests
//! (storm, `SA_NODEFER` nesting, overflow reports, 10 000 panics, 1000 threads), the `dlopen`
//! test and the facade's doctests, built for `aarch64-unknown-linux-gnu` and
//! `riscv64gc-unknown-linux-gnu` and run under qemu-user through the runners of
//! `.cargo/config.toml`. `tests/cross_arch.rs` runs the switch and argument tests; this file runs
//! everything else that is not x86-64 only by nature.
//!
//! x86-64 only (gated in the test files, with the reason there): the single-stepping tests
//! (`reliability_creation.rs`, the trap-flag test of `reliability_signals.rs`: no trap flag in
//! AArch64/riscv64 user space), Valgrind (`reliability_valgrind.rs`, dlopen's memcheck test: it
//! does not run foreign binaries) and the host gdb (`gdb_backtrace.rs`; `tests/cross_gdb.rs` walks
//! the foreign binaries with gdb-multiarch).
//!
//! Counts are not scaled for emulation: the storm and nesting tests (4 x 50 000 signals, 200
//! rounds to depth 16) take 7-10 s under qemu-aarch64 and about 7 s under qemu-riscv64, the
//! 10 000 panics and 1000 threads 1-2 s (measured on a loaded 2-CPU machine). Only the RSS bound of
//! `reliability_resources.rs` is skipped under emulation (qemu's own memory is the process's RSS;
//! the mapping and heap-block checks stay exact). Children of a test binary (`run_child`) are
//! started through qemu-user too (`IRQSTACK_CHILD_RUNNER`, see `support/mod.rs`).
//!
//! Needs the Rust target, the cross linker and qemu-user; skipped with the shared line where they
//! are missing (a failure under CI, see `support/skip.rs`).

#[path = "support/cross.rs"]
mod cross;

use cross::{AARCH64, Cross, RISCV64};

/// How long the test binaries of one `cargo test` may run under qemu (each run takes 10-40 s,
/// doctest compilation and the `dlopen` fixture's build included; the build of the test
/// binaries comes before, without a limit).
/// A trampoline whose CFI is wrong can make the unwinder loop forever: this turns that into a
/// failure.
const RUN_TIMEOUT_SECS: &str = "600";

/// Runs `cargo test <args>` for `cross` under qemu-user and checks that it passed, with every
/// test named in `must_pass` reported `ok` (a doctest is named by its `file - item`, without the
/// line). Builds first, without a time limit (doctests are compiled when they run: for `--doc`
/// the library is built first).
fn run(cross: &Cross, args: &[&str], must_pass: &[&str]) {
    let target = cross.target;
    let build_args: Vec<&str> = args
        .iter()
        .map(|&a| if a == "--doc" { "--lib" } else { a })
        .collect();
    let build = cross.cargo(&[&["test"], &build_args[..], &["--no-run"]].concat(), None);
    assert!(
        build.status.success(),
        "cargo test {args:?} does not build for {target}\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let out = cross.cargo(&[&["test"], args].concat(), Some(RUN_TIMEOUT_SECS));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "cargo test {args:?} on {target} failed (status {:?}; 124 = still running after \
         {RUN_TIMEOUT_SECS} s)\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status.code()
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
            cross.qemu
        );
    }
    println!(
        "{}: cargo test {args:?}: {} passed under {}",
        cross.target,
        passed.len(),
        cross.qemu
    );
}

/// The suite: everything of the user-space tests that is not x86-64 only.
fn run_suite(cross: &Cross) {
    run(
        cross,
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
    run(
        cross,
        &["-p", "irqstack-tests", "--test", "reliability_signals"],
        &[
            "interrupt_storm_on_four_threads",
            "nested_signals_run_in_place_with_sa_nodefer",
        ],
    );
    run(
        cross,
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

#[test]
fn reliability_dlopen_and_doctests_pass_on_aarch64_under_qemu() {
    if AARCH64.tools_present(&[]) {
        run_suite(&AARCH64);
    }
}

#[test]
fn reliability_dlopen_and_doctests_pass_on_riscv64_under_qemu() {
    if RISCV64.tools_present(&[]) {
        run_suite(&RISCV64);
    }
}

/// The demo (`examples/irq_demo.rs`, the README's first command) runs under qemu-user at its
/// full size (4 CPU threads, 25 000 queued real-time signals each; about 0.3 s under
/// qemu-aarch64 for 20 000): every interrupt raised is handled, the switched handlers saw the
/// link to their CPU's stack, and the backtrace taken in a handler crosses the switch into
/// `cpu_main`.
fn demo_runs(cross: &Cross) {
    let out = cross.cargo(
        &["run", "--release", "--example", "irq_demo"],
        Some(RUN_TIMEOUT_SECS),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "irq_demo failed on {} (status {:?})\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        cross.target,
        out.status.code()
    );
    // The table: "cpu raised handled nested on-irq-stack linked deepest stack", one row per CPU.
    let rows: Vec<Vec<u64>> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("cpu "))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            l.split_whitespace()
                .take(7)
                .map(|v| v.parse().unwrap_or_else(|_| panic!("row {l:?}")))
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 4, "four CPU rows:\n{stdout}");
    for r in &rows {
        let (raised, handled, nested, on_irq, linked) = (r[1], r[2], r[3], r[4], r[5]);
        assert_eq!(raised, 25_000, "cpu {}: raised\n{stdout}", r[0]);
        assert_eq!(handled, raised, "cpu {}: lost interrupts\n{stdout}", r[0]);
        assert!(
            on_irq > 0 && linked == on_irq && nested > 0,
            "cpu {}: no switched or nested handler, or a missing link\n{stdout}",
            r[0]
        );
    }
    let bt = stdout
        .split("backtrace taken inside a handler")
        .nth(1)
        .unwrap_or_else(|| panic!("no backtrace:\n{stdout}"));
    assert!(
        bt.contains("__irqstack_trampoline") && bt.contains("irq_demo::cpu_main"),
        "the handler's backtrace does not cross the switch:\n{stdout}"
    );
    println!("{}: irq_demo passed under {}", cross.target, cross.qemu);
}

#[test]
fn demo_runs_on_aarch64_under_qemu() {
    if AARCH64.tools_present(&[]) {
        demo_runs(&AARCH64);
    }
}

#[test]
fn demo_runs_on_riscv64_under_qemu() {
    if RISCV64.tools_present(&[]) {
        demo_runs(&RISCV64);
    }
}
