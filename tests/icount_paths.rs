//! The path counter of `scripts/bench-icount-cross.sh` (`scripts/icount-paths.awk`), on a
//! riscv64 disassembly of the icount bench (`tests/fixtures/icount_paths/riscv64.dis`): it must
//! find the direct, switched and nested trips around the rows' loops and count them as QEMU
//! counted them when it ran that binary (`qemu-riscv64 -singlestep -d exec,nochain`: 10, 27 and
//! 9 instructions per iteration), and it must refuse what it cannot count.
//!
//! Needs `awk` (every Debian system has one); skipped with the shared line otherwise.

#[path = "support/skip.rs"]
mod skip;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture() -> String {
    std::fs::read_to_string(root().join("tests/fixtures/icount_paths/riscv64.dis"))
        .expect("the riscv64 fixture")
}

/// `awk -f scripts/icount-paths.awk -v fn=<function> -v want=<want>` on `disassembly`.
fn count(disassembly: &str, function: &str, want: &str) -> Output {
    let mut child = Command::new("awk")
        .arg("-f")
        .arg(root().join("scripts/icount-paths.awk"))
        .arg("-v")
        .arg(format!("fn={function}"))
        .arg("-v")
        .arg(format!("want={want}"))
        .arg("-v")
        .arg("show=1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running awk");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(disassembly.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// The count (first line of the output) after checking that the counter succeeded.
fn counted(disassembly: &str, function: &str, want: &str) -> (String, String) {
    let out = count(disassembly, function, want);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{function} {want}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    (stdout.lines().next().unwrap_or("").to_owned(), stdout)
}

fn awk_present() -> bool {
    if skip::command_runs("awk", &["BEGIN { exit 0 }"]) {
        return true;
    }
    skip::skip("awk", "apt-get install mawk", false);
    false
}

#[test]
fn riscv64_paths_are_counted_as_qemu_executed_them() {
    if !awk_present() {
        return;
    }
    let dis = fixture();
    let (direct, _) = counted(&dis, "icount_row_direct", "only:^icount::rows::direct$");
    let (switched, path) = counted(&dis, "icount_row_switched", "only:__irqstack_trampoline");
    let (nested, nested_path) = counted(&dis, "icount_row_nested", "none");
    assert_eq!(
        (direct.as_str(), switched.as_str(), nested.as_str()),
        ("10", "27", "9")
    );
    // The switched path went through the trampoline and the shim it calls, and stayed out of
    // the first-use path.
    assert!(path.contains("    45054\tret"), "{path}");
    assert!(path.contains("        d3d6\tadd\ta0,a0,1"), "{path}");
    assert!(!path.contains("enter_first_time"), "{path}");
    // The nested path calls nothing: the body is inlined in place.
    assert!(!nested_path.contains("jalr"), "{nested_path}");
}

#[test]
fn branching_callees_and_missing_paths_are_refused() {
    if !awk_present() {
        return;
    }
    let dis = fixture();
    // A conditional branch in the shim: the callee's path would be ambiguous.
    let branchy = dis.replacen(
        "    d3d6:\tadd\ta0,a0,1",
        "    d3d6:\tbeqz\ta0,d3d8 <icount::rows::switched_outline::__irqstack_shim_reg+0x2>",
        1,
    );
    assert_ne!(branchy, dis, "the fixture has the shim");
    let out = count(
        &branchy,
        "icount_row_switched",
        "only:__irqstack_trampoline",
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cond in a callee"));
    // No trip around the direct row's loop calls a trampoline.
    let out = count(&dis, "icount_row_direct", "only:__irqstack_trampoline");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // A function that is not there.
    let out = count(&dis, "icount_row_nowhere", "none");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
