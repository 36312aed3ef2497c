//! The arm64 port (issue 17): the switch tests, built for `aarch64-unknown-linux-gnu` and run
//! under qemu-user through the runner of `.cargo/config.toml`, must pass; the x86-64-only
//! features must stop an aarch64 build with a message that names the supported architecture.
//!
//! Needs the Rust target, the cross linker and `qemu-aarch64`; skipped with the shared line
//! where they are missing (a failure under CI, see `support/skip.rs`).

#[path = "support/skip.rs"]
mod skip;

use std::path::Path;
use std::process::{Command, Output};

const TARGET: &str = "aarch64-unknown-linux-gnu";

/// Whether everything the cross build needs is installed; prints the skip line otherwise.
fn tools_present() -> bool {
    if !skip::target_installed(TARGET) {
        skip::skip(
            "the aarch64-unknown-linux-gnu Rust target",
            "rustup target add aarch64-unknown-linux-gnu",
            false,
        );
        return false;
    }
    for (tool, package) in [
        (
            "aarch64-linux-gnu-gcc",
            "gcc-aarch64-linux-gnu libc6-dev-arm64-cross",
        ),
        ("qemu-aarch64", "qemu-user"),
    ] {
        if !skip::command_runs(tool, &["--version"]) {
            skip::skip(tool, &format!("apt-get install {package}"), false);
            return false;
        }
    }
    true
}

/// `cargo <args> --target aarch64-unknown-linux-gnu` from the repository root, in a target
/// directory of its own (the host build's artifacts stay untouched).
fn cargo_aarch64(args: &[&str]) -> Output {
    cargo_aarch64_in(Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

/// As [`cargo_aarch64`], from directory `dir` (a fixture).
fn cargo_aarch64_in(dir: &Path, args: &[&str]) -> Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    Command::new(cargo)
        .current_dir(dir)
        .args(args)
        .args(["--target", TARGET])
        .arg("--target-dir")
        .arg(root.join("target/cross-aarch64"))
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .output()
        .expect("running cargo")
}

/// Runs one test binary under qemu-user and checks that it passed, with at least the tests
/// named in `must_pass` among those reported `ok`.
fn run_under_qemu(package: &str, test: &str, must_pass: &[&str]) {
    let out = cargo_aarch64(&["test", "-p", package, "--test", test]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{package} --test {test} on {TARGET} failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    // The runner really ran the binary: the results are there, not an empty run.
    assert!(
        stdout.contains("test result: ok.") && !stdout.contains("ok. 0 passed"),
        "no tests ran:\n{stdout}\n{stderr}"
    );
    for name in must_pass {
        assert!(
            stdout.contains(&format!("test {name} ... ok")),
            "{name} did not pass under qemu:\n{stdout}"
        );
    }
}

#[test]
fn switch_and_argument_tests_pass_on_aarch64_under_qemu() {
    if !tools_present() {
        return;
    }
    run_under_qemu(
        "irqstack",
        "switch",
        &[
            "top_slot_holds_the_interrupted_stack_pointer",
            "body_is_entered_with_sysv_alignment",
            "backtrace_from_the_body_reaches_the_caller",
            "panics_propagate_and_release_the_stack_1000_times",
        ],
    );
    run_under_qemu(
        "irqstack-tests",
        "args",
        &["six_and_seven", "nine_floats", "ten_mixed"],
    );
}

#[test]
fn x86_only_features_are_refused_on_aarch64() {
    if !tools_present() {
        return;
    }
    let out = cargo_aarch64(&[
        "check",
        "--quiet",
        "-p",
        "irqstack",
        "--lib",
        "--no-default-features",
        "--features",
        "call-padding",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "call-padding built on aarch64");
    assert!(
        stderr.contains("feature `call-padding` is supported on target_arch = \"x86_64\" only"),
        "{stderr}"
    );
}

#[test]
fn idtentry_is_refused_on_aarch64_with_a_spanned_error() {
    if !tools_present() {
        return;
    }
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/aarch64_idtentry");
    let out = cargo_aarch64_in(&fixture, &["check", "--quiet", "--offline"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "#[idtentry] built on aarch64");
    // The first error is irqstack's own, at the attribute.
    let first = stderr.find("error").map(|i| &stderr[i..]).unwrap_or("");
    assert!(
        first.starts_with(
            "error: #[idtentry] builds x86-64 interrupt entry stubs: supported on \
             target_arch = \"x86_64\" only"
        ) && first.contains("src/lib.rs:3:1"),
        "{stderr}"
    );
}
