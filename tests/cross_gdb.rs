//! gdb-multiarch walks across the stack switch on AArch64 (issue 17): the program of
//! `tests/gdb_backtrace.rs` (`gdb_target`), built for `aarch64-unknown-linux-gnu`, runs under
//! `qemu-aarch64 -g <port>`; `gdb-multiarch -batch` attaches, breaks in the handler's callee on
//! the IRQ stack and must walk through the trampoline into the interrupted code on the thread
//! stack and on to the thread's start (checks shared with the host test: `support/gdb_walk.rs`).
//!
//! The layouts: `natural` (a Rust thread; qemu-user maps later mappings above the main stack, so
//! the IRQ stack lies above the thread stack), `irq-above` (the thread stack forced low) and
//! `irq-below` (the thread stack forced above where qemu-user maps). With the IRQ stack above the
//! interrupted stack gdb stops at the trampoline with "previous frame inner to this frame
//! (corrupt stack?)" unless the CFI-only switch frames lead it across
//! (`irqstack-rt/src/arch/aarch64/switch_frames.rs`; this test failed that way before them).
//!
//! Needs the Rust target, the cross linker, qemu-user and gdb-multiarch; skipped with the shared
//! line where they are missing (a failure under CI, see `support/skip.rs`).

#[path = "support/gdb_walk.rs"]
mod gdb_walk;
#[path = "support/skip.rs"]
mod skip;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A cross target, its qemu-user program and sysroot (as in `.cargo/config.toml`).
struct Cross {
    triple: &'static str,
    linker: &'static str,
    linker_packages: &'static str,
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
    /// Whether everything the walk needs is installed; prints the skip line otherwise.
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
            ("gdb-multiarch", "gdb-multiarch"),
        ] {
            if !skip::command_runs(tool, &["--version"]) {
                skip::skip(tool, &format!("apt-get install {package}"), false);
                return false;
            }
        }
        true
    }

    /// Builds `tests/gdb_backtrace.rs` for the target (in the target directory the other cross
    /// tests use) and returns the test binary.
    fn build_target_program(&self) -> PathBuf {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let arch = self.triple.split('-').next().unwrap();
        let out = Command::new(cargo)
            .current_dir(root)
            .args([
                "test",
                "-p",
                "irqstack",
                "--test",
                "gdb_backtrace",
                "--no-run",
            ])
            .args(["--message-format", "json", "--target", self.triple])
            .arg("--target-dir")
            .arg(root.join(format!("target/cross-{arch}")))
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .output()
            .expect("running cargo");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "building gdb_backtrace for {}:\n{stdout}\n{}",
            self.triple,
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

    /// Runs `gdb_target` in `layout` under qemu-user's gdbstub, walks it with gdb-multiarch and
    /// checks the walk; returns the report line.
    fn walk(&self, exe: &Path, layout: &str) -> String {
        // A free port now; qemu binds it right after (nothing else here takes ports).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free local port")
            .port();
        let qemu = Command::new("timeout")
            .args([
                "120",
                self.qemu,
                "-L",
                self.sysroot,
                "-g",
                &port.to_string(),
            ])
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
        // Attach, retrying while qemu is not listening yet (a connection attempt that fails
        // leaves the gdbstub untouched).
        let start = format!(
            "file {exe}\nset sysroot {sysroot}\npython\nimport time\nfor i in range(100):\n    \
             try:\n        gdb.execute('target remote 127.0.0.1:{port}')\n        break\n    \
             except gdb.error:\n        time.sleep(0.1)\nend",
            exe = exe.display(),
            sysroot = self.sysroot,
        );
        let dir = std::env::temp_dir().join(format!(
            "irqstack-cross-gdb-{}-{layout}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("walk.gdb");
        std::fs::write(&script, gdb_walk::script(&start, "continue")).unwrap();
        let gdb = Command::new("timeout")
            .args(["120", "gdb-multiarch", "-batch", "-nx", "-x"])
            .arg(&script)
            .output()
            .expect("running gdb-multiarch");
        let _ = std::fs::remove_dir_all(&dir);
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
            self.triple,
            gdb_walk::check(layout, &stdout, &all)
        )
    }
}

#[test]
fn gdb_multiarch_walks_across_the_switch_on_aarch64() {
    if !AARCH64.tools_present() {
        return;
    }
    let exe = AARCH64.build_target_program();
    for layout in ["natural", "irq-above", "irq-below"] {
        println!("{}", AARCH64.walk(&exe, layout));
    }
}
