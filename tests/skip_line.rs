//! The "skipped" line of tests that need a tool (`tests/support/skip.rs`): it shows in plain
//! `cargo test` output (no `--nocapture`), the test passes without CI and fails under CI.

#[path = "support/skip.rs"]
mod skip;

use std::process::{Command, Output};

const MISSING: &str = "irqstack-no-such-tool";

/// The child: a test that needs a tool nobody has.
#[test]
#[ignore = "run as a child process by skip_line_shows_and_ci_fails"]
fn needs_missing_tool() {
    if !skip::command_runs(MISSING, &["--version"]) {
        return skip::skip(MISSING, "apt-get install nothing", false);
    }
    panic!("{MISSING} exists?");
}

/// Runs [`needs_missing_tool`] in a child the way `cargo test` runs tests: output captured.
fn child(env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "needs_missing_tool",
        "--exact",
        "--ignored",
        "--test-threads=1",
    ])
    .env_remove("CI")
    .env_remove(skip::REQUIRE_ENV);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn skip_line_shows_and_ci_fails() {
    let line = skip::skip_line("needs_missing_tool", MISSING, "apt-get install nothing");
    assert!(line.contains("skipped: irqstack-no-such-tool not installed; CI requires it"));
    for (env, passes) in [
        (&[][..], true),
        (&[("CI", "false")][..], true),
        (&[("CI", "true")][..], false),
        (&[(skip::REQUIRE_ENV, "1")][..], false),
    ] {
        let out = child(env);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.success(),
            passes,
            "{env:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        );
        // Exactly one line, whole, on the process's stderr, although libtest captured the test.
        assert_eq!(
            stderr.matches(line.as_str()).count(),
            1,
            "{env:?}\n--- stderr\n{stderr}"
        );
    }
}

#[test]
fn tool_and_target_probes() {
    assert!(skip::command_runs("true", &[]));
    assert!(!skip::command_runs("false", &[]));
    assert!(!skip::command_runs(MISSING, &[]));
    // The host's standard library is always there; a made-up target's never is.
    assert!(skip::target_installed("x86_64-unknown-linux-gnu"));
    assert!(!skip::target_installed("x86_64-irqstack-none"));
}
