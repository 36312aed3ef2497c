//! The cross targets of the arm64 and riscv64 ports and how their tests are built and run under
//! qemu-user, shared by `tests/cross_arch.rs`, `tests/cross_suite.rs` and `tests/cross_gdb.rs`.
//!
//! Include it with `#[path = "support/cross.rs"] mod cross;`; it brings `skip.rs` along as
//! `cross::skip`.

#![allow(dead_code)]

#[path = "skip.rs"]
pub mod skip;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// One cross target: what it needs, where its build goes, how qemu-user runs it.
pub struct Cross {
    /// `target_arch` (also the name of its target directory, `target/cross-<arch>`, the one
    /// `tests/cross_arch.rs` uses: the builds are shared).
    pub arch: &'static str,
    /// The Rust target.
    pub target: &'static str,
    /// The cross linker of `.cargo/config.toml`, and the Debian packages that bring it and libc.
    pub linker: &'static str,
    pub linker_packages: &'static str,
    /// The qemu-user program and its sysroot (`-L`), as in the runner of `.cargo/config.toml`.
    pub qemu: &'static str,
    pub sysroot: &'static str,
}

pub const AARCH64: Cross = Cross {
    arch: "aarch64",
    target: "aarch64-unknown-linux-gnu",
    linker: "aarch64-linux-gnu-gcc",
    linker_packages: "gcc-aarch64-linux-gnu libc6-dev-arm64-cross",
    qemu: "qemu-aarch64",
    sysroot: "/usr/aarch64-linux-gnu",
};

pub const RISCV64: Cross = Cross {
    arch: "riscv64",
    target: "riscv64gc-unknown-linux-gnu",
    linker: "riscv64-linux-gnu-gcc",
    linker_packages: "gcc-riscv64-linux-gnu libc6-dev-riscv64-cross",
    qemu: "qemu-riscv64",
    sysroot: "/usr/riscv64-linux-gnu",
};

impl Cross {
    /// Whether the Rust target, the cross linker, qemu-user and the `extra` tools (`(program,
    /// Debian package)`, each checked with `--version`) are installed; prints the shared skip
    /// line for the first one missing otherwise.
    pub fn tools_present(&self, extra: &[(&str, &str)]) -> bool {
        if !skip::target_installed(self.target) {
            skip::skip(
                &format!("the {} Rust target", self.target),
                &format!("rustup target add {}", self.target),
                false,
            );
            return false;
        }
        let base = [
            (self.linker, self.linker_packages),
            (self.qemu, "qemu-user"),
        ];
        for &(tool, package) in base.iter().chain(extra) {
            if !skip::command_runs(tool, &["--version"]) {
                skip::skip(tool, &format!("apt-get install {package}"), false);
                return false;
            }
        }
        true
    }

    /// The target directory of this target's builds (the host build's artifacts stay untouched).
    pub fn target_dir(&self) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/cross-{}", self.arch))
    }

    /// The command line that runs a binary of this target: qemu-user with its sysroot.
    pub fn runner(&self) -> String {
        format!("{} -L {}", self.qemu, self.sysroot)
    }

    /// `cargo <args> --target <target>` from the repository root, under `timeout <secs>` if given
    /// (`timeout` signals its whole process group: cargo and the qemu runner it started), with
    /// `IRQSTACK_CHILD_RUNNER` set: tests that start their own binary again
    /// (`support::run_child`) start it through qemu-user.
    pub fn cargo(&self, args: &[&str], timeout: Option<&str>) -> Output {
        self.cargo_in(Path::new(env!("CARGO_MANIFEST_DIR")), args, timeout)
    }

    /// As [`Cross::cargo`], from directory `dir` (a fixture). Arguments after a `--` go to rustc
    /// (cargo's own options, `--target` and `--target-dir` included, go before it).
    pub fn cargo_in(&self, dir: &Path, args: &[&str], timeout: Option<&str>) -> Output {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = match timeout {
            Some(secs) => {
                let mut c = Command::new("timeout");
                c.args(["-k", "10", secs, &cargo]);
                c
            }
            None => Command::new(&cargo),
        };
        let split = args.iter().position(|a| *a == "--").unwrap_or(args.len());
        cmd.current_dir(dir)
            .args(&args[..split])
            .args(["--target", self.target])
            .arg("--target-dir")
            .arg(self.target_dir())
            .args(&args[split..])
            // `support::CHILD_RUNNER_ENV`.
            .env("IRQSTACK_CHILD_RUNNER", self.runner())
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .output()
            .expect("running cargo")
    }
}
