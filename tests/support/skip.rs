//! Tests that need a tool from outside Rust (objtool, gdb, valgrind, QEMU, an extra compilation
//! target) call [`skip`] when the tool is missing: it prints one line that shows in plain
//! `cargo test` output, and fails the test instead where the tool is required (under CI).
//!
//! Usage, at the top of such a test:
//!
//! ```ignore
//! if !skip::command_runs("gdb", &["--version"]) {
//!     return skip::skip("gdb", "apt-get install gdb", false);
//! }
//! ```
//!
//! This file has no dependencies and is included with `#[path]` wherever it is needed.

#![allow(dead_code)]

use std::io::Write as _;
use std::process::Command;

/// Variable that makes every tool required, as under CI (`.ci/run` sets it too).
pub const REQUIRE_ENV: &str = "IRQSTACK_REQUIRE_TOOLS";

/// Whether missing tools fail the tests: `CI` set (and not `false`/`0`, as CI services set it),
/// or [`REQUIRE_ENV`]`=1`.
pub fn tools_required() -> bool {
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0");
    ci || std::env::var_os(REQUIRE_ENV).is_some_and(|v| v == "1")
}

/// Whether `program args` can be started and exits with success (e.g. `gdb --version`).
pub fn command_runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether the standard library for `target` (e.g. `x86_64-unknown-none`) is installed in the
/// sysroot of the `rustc` that cargo uses (`rustup target add <target>` installs it).
pub fn target_installed(target: &str) -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .is_some_and(|sysroot| {
            std::path::Path::new(&sysroot)
                .join("lib/rustlib")
                .join(target)
                .join("lib")
                .is_dir()
        })
}

/// The line [`skip`] prints for the calling test.
pub fn skip_line(test: &str, what: &str, install: &str) -> String {
    format!("test {test}: skipped: {what} not installed; CI requires it (install: {install})\n")
}

/// Reports that the calling test did not run because `what` is missing; `install` says how to
/// get it (a Debian command). Prints one line straight to the process's stderr, which libtest
/// does not capture (it captures only `print!`/`eprint!`), so it shows in `cargo test` output
/// next to the test's `ok`. The caller then returns.
///
/// Panics instead, after the same line, when the tool is required: [`tools_required`], or
/// `also_required` (a test's own variable, e.g. `IRQSTACK_REQUIRE_OBJTOOL=1`).
pub fn skip(what: &str, install: &str, also_required: bool) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("?");
    let line = skip_line(test, what, install);
    // One write of the whole line, so that parallel tests do not interleave within it.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
    if also_required || tools_required() {
        panic!("{what} is required here (CI or {REQUIRE_ENV}=1) but not installed: {install}");
    }
}
