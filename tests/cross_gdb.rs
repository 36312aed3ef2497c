//! gdb-multiarch walks across the stack switch on AArch64 and riscv64 (issue 17): the program of
//! `tests/gdb_backtrace.rs` (`gdb_target`), built for `aarch64-unknown-linux-gnu` or
//! `riscv64gc-unknown-linux-gnu`, runs under `qemu-<arch> -g <port>`; `gdb-multiarch -batch`
//! attaches, breaks in the handler's callee on the IRQ stack and must walk through the trampoline
//! into the interrupted code on the thread stack and on to the thread's start (checks shared with
//! the host test: `support/gdb_walk.rs`).
//!
//! The layouts: `natural` (a Rust thread; qemu-user maps later mappings above the main stack, so
//! the IRQ stack lies above the thread stack), `irq-above` (the thread stack forced low) and
//! `irq-below` (the thread stack forced above where qemu-user maps). With the IRQ stack above the
//! interrupted stack gdb stops at the trampoline with "previous frame inner to this frame
//! (corrupt stack?)" unless the CFI-only switch frames lead it across
//! (`irqstack-rt/src/arch/{aarch64,riscv64}/switch_frames.rs`; this test failed that way on both
//! before them).
//!
//! Needs the Rust target, the cross linker, qemu-user and gdb-multiarch; skipped with the shared
//! line where they are missing (a failure under CI, see `support/skip.rs`).

#[path = "support/cross.rs"]
mod cross;
#[path = "support/gdb_walk.rs"]
mod gdb_walk;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cross::{AARCH64, Cross, RISCV64};

/// gdb-multiarch, besides what every cross test needs.
const GDB: &[(&str, &str)] = &[("gdb-multiarch", "gdb-multiarch")];

/// Builds `tests/gdb_backtrace.rs` for `cross` (in the target directory the other cross tests
/// use) and returns the test binary.
fn build_target_program(cross: &Cross) -> PathBuf {
    let out = cross.cargo(
        &[
            "test",
            "-p",
            "irqstack",
            "--test",
            "gdb_backtrace",
            "--no-run",
            "--message-format",
            "json",
        ],
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "building gdb_backtrace for {}:\n{stdout}\n{}",
        cross.target,
        String::from_utf8_lossy(&out.stderr)
    );
    // The compiler-artifact message of the test target names its executable.
    let exe = stdout
        .lines()
        .filter(|l| l.contains(r#""name":"gdb_backtrace""#))
        .find_map(|l| l.split(r#""executable":""#).nth(1)?.split('"').next())
        .unwrap_or_else(|| panic!("no executable in cargo's messages:\n{stdout}"));
    PathBuf::from(exe)
}

/// Runs `gdb_target` (`exe`, built for `cross`) in `layout` under qemu-user's gdbstub, walks it
/// with gdb-multiarch and checks the walk; returns the report line.
fn walk(cross: &Cross, exe: &Path, layout: &str) -> String {
    // A free port now; qemu binds it right after (nothing else here takes ports).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free local port")
        .port();
    // Started directly (not under `timeout`): qemu-user waiting for gdb in `accept` does not act
    // on SIGTERM, so it is killed below if it outlives gdb.
    let mut qemu = Command::new(cross.qemu)
        .args(["-L", cross.sysroot, "-g", &port.to_string()])
        .arg(exe)
        .args([
            "gdb_target",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(gdb_walk::LAYOUT_ENV, layout)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting qemu-user");
    // Attach, retrying for up to 30 s while qemu is not listening yet (a connection attempt
    // that fails leaves the gdbstub untouched).
    let start = format!(
        "file {exe}\nset sysroot {sysroot}\npython\nimport time\nfor i in range(300):\n    \
         try:\n        gdb.execute('target remote 127.0.0.1:{port}')\n        break\n    \
         except gdb.error:\n        time.sleep(0.1)\nend",
        exe = exe.display(),
        sysroot = cross.sysroot,
    );
    // One directory per test process, architecture and layout: the tests of both
    // architectures run at the same time.
    let dir = std::env::temp_dir().join(format!(
        "irqstack-cross-gdb-{}-{}-{layout}",
        std::process::id(),
        cross.arch
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("walk.gdb");
    std::fs::write(&script, gdb_walk::script(&start, "continue")).unwrap();
    let gdb = Command::new("timeout")
        .args(["-k", "5", "300", "gdb-multiarch", "-batch", "-nx", "-x"])
        .arg(&script)
        .output()
        .expect("running gdb-multiarch");
    let _ = std::fs::remove_dir_all(&dir);
    // gdb's `kill` ended the target; if gdb never attached, qemu still waits for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while qemu.try_wait().expect("waiting for qemu-user").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = qemu.kill();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let target = qemu.wait_with_output().expect("waiting for qemu-user");
    let stdout = String::from_utf8_lossy(&gdb.stdout);
    let all = format!(
        "{stdout}\n--- gdb stderr ---\n{}\n--- target stdout ---\n{}\n--- target stderr ---\n{}",
        String::from_utf8_lossy(&gdb.stderr),
        String::from_utf8_lossy(&target.stdout),
        String::from_utf8_lossy(&target.stderr),
    );
    format!(
        "{}: {}",
        cross.target,
        gdb_walk::check(layout, &stdout, &all)
    )
}

#[test]
fn gdb_multiarch_walks_across_the_switch_on_aarch64() {
    if !AARCH64.tools_present(GDB) {
        return;
    }
    let exe = build_target_program(&AARCH64);
    for layout in ["natural", "irq-above", "irq-below"] {
        println!("{}", walk(&AARCH64, &exe, layout));
    }
}

#[test]
fn gdb_multiarch_walks_across_the_switch_on_riscv64() {
    if !RISCV64.tools_present(GDB) {
        return;
    }
    let exe = build_target_program(&RISCV64);
    for layout in ["natural", "irq-above", "irq-below"] {
        println!("{}", walk(&RISCV64, &exe, layout));
    }
}
