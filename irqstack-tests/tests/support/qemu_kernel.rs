//! Shared by the tests that build a bare-metal test kernel and boot it under QEMU
//! (`smp_kernel.rs`, `aarch64_kernel.rs`, `riscv64_kernel.rs`): the skip lines for QEMU and the
//! target, the cargo build of a kernel package, a boot under a timeout that captures the serial
//! log and the exit status, gdb attached to QEMU's gdb stub, the ELF's code symbols and the
//! resolution of addresses against them, and the parsing of the `check NAME: ok [a, b] ...`
//! lines, `bt cpu N: ...` walks and per-CPU tables the kernels print.
//!
//! The helpers that assert are `#[track_caller]`: a failure names the test's line.
//!
//! Included with `#[path = "support/qemu_kernel.rs"] mod qemu_kernel;` by each of them; it uses
//! the including test's `skip` module (`tests/support/skip.rs`), which must be at its crate root.
//!
//! ```ignore
//! if !qemu_kernel::tools_present("qemu-system-riscv64", "qemu-system-misc", TARGET) {
//!     return;
//! }
//! ```

#![allow(dead_code)]

use crate::skip;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The repository root: this package lives in `irqstack-tests/`, the kernels at the root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Whether `IRQSTACK_REQUIRE_QEMU=1` makes the kernel tests' tools required (besides CI and
/// `IRQSTACK_REQUIRE_TOOLS=1`, which `skip` checks itself).
pub fn qemu_required() -> bool {
    std::env::var("IRQSTACK_REQUIRE_QEMU").is_ok_and(|v| v == "1")
}

/// Prints the skip line for the missing `what` (`install` says how to get it) and returns
/// false; fails instead when tools are required: CI, `IRQSTACK_REQUIRE_TOOLS=1` or
/// `IRQSTACK_REQUIRE_QEMU=1`.
fn missing(what: &str, install: &str) -> bool {
    skip::skip(what, install, qemu_required());
    false
}

/// Whether the bare-metal `target` is installed; if not, [`missing`] says so.
pub fn target_present(target: &str) -> bool {
    skip::target_installed(target)
        || missing(
            &format!("the {target} target"),
            &format!("rustup target add {target}"),
        )
}

/// Whether `qemu` (installed by the Debian package `package`) and the bare-metal `target` are
/// here; if not, [`missing`] says which is not.
pub fn tools_present(qemu: &str, package: &str, target: &str) -> bool {
    (skip::command_runs(qemu, &["--version"])
        || missing(qemu, &format!("apt-get install {package}")))
        && target_present(target)
}

/// Whether `gdb` (installed by the Debian package `package`) runs; if not, prints the skip
/// line, which fails the test only where every tool is required (CI, `IRQSTACK_REQUIRE_TOOLS=1`).
pub fn gdb_present(gdb: &str, package: &str) -> bool {
    if skip::command_runs(gdb, &["--version"]) {
        return true;
    }
    skip::skip(gdb, &format!("apt-get install {package}"), false);
    false
}

/// `cargo <subcommand> --quiet --release --target <target> --target-dir <target_dir>` in
/// `<repo>/<package_dir>`, with exactly `rustflags` (`None`: the package's own, none from the
/// environment), and none of the caller's `RUSTFLAGS`, `CARGO_TARGET_DIR` or
/// `CARGO_BUILD_TARGET`. The caller adds its features and arguments, then runs it with
/// [`run_cargo`].
pub fn cargo(
    package_dir: &str,
    subcommand: &[&str],
    target: &str,
    target_dir: &Path,
    rustflags: Option<&[&str]>,
) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(repo().join(package_dir))
        .args(subcommand)
        .args(["--quiet", "--release", "--target", target])
        .arg("--target-dir")
        .arg(target_dir);
    match rustflags {
        Some(flags) => cmd.env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f")),
        None => cmd.env_remove("CARGO_ENCODED_RUSTFLAGS"),
    };
    cmd.env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET");
    cmd
}

/// Runs a [`cargo`] build of `package_dir` and fails the test with cargo's errors, as
/// "building the `what` failed", unless it succeeded.
#[track_caller]
pub fn run_cargo(cmd: &mut Command, package_dir: &str, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running cargo for {package_dir}: {e}"));
    assert!(
        out.status.success(),
        "building the {what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One boot of a kernel under QEMU.
pub struct Boot {
    /// The exit status; `None`: killed at the timeout.
    pub status: Option<i32>,
    /// The serial log (carriage returns removed), then QEMU's own stderr.
    pub log: String,
    /// From start to exit (or kill).
    pub elapsed: Duration,
}

impl Boot {
    /// The context a failed assertion shows: the exit status and the whole serial log.
    pub fn report(&self) -> String {
        format!("status {:?}, log:\n{}", self.status, self.log)
    }
}

/// Runs `qemu` (its machine, kernel and serial on stdio already given) with stdin closed,
/// killing it after `timeout`; returns the serial log and the exit status.
pub fn boot(qemu: &mut Command, timeout: Duration) -> Boot {
    let start = Instant::now();
    let program = qemu.get_program().to_string_lossy().into_owned();
    let mut child = qemu
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {program}: {e}"));
    let mut stdout = child.stdout.take().unwrap();
    // Read on the side, so that a chatty kernel never blocks on a full pipe.
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = start.elapsed();
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    let log = String::from_utf8_lossy(&reader.join().unwrap()).replace('\r', "");
    Boot {
        status,
        log: format!("{log}{err}"),
        elapsed,
    }
}

/// Starts `qemu` (its machine and kernel given, serial off) stopped at the first instruction
/// (`-S`) with the gdb stub on a free loopback port, runs `gdb -batch` on `kernel` with
/// `commands` once connected (then `kill`), and returns gdb's output. gdb runs under a 120 s
/// timeout; QEMU is killed after. `name` names the temporary directory of the script.
pub fn run_gdb(qemu: &mut Command, gdb: &str, kernel: &Path, commands: &str, name: &str) -> String {
    // A free loopback port for the gdb stub (taken by QEMU right after).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let program = qemu.get_program().to_string_lossy().into_owned();
    let mut qemu = qemu
        .arg("-gdb")
        .arg(format!("tcp:127.0.0.1:{port}"))
        .arg("-S")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {program}: {e}"));
    // gdb retries the connection until QEMU listens.
    let script = format!(
        r#"set pagination off
set confirm off
python
import time
for i in range(200):
    try:
        gdb.execute("target remote 127.0.0.1:{port}")
        break
    except gdb.error:
        time.sleep(0.05)
end
{commands}
kill
"#
    );
    let dir = std::env::temp_dir().join(format!("{name}-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("script.gdb");
    std::fs::write(&path, script).unwrap();
    let out = Command::new("timeout")
        .arg("120")
        .args([gdb, "-batch", "-nx", "-x"])
        .arg(&path)
        .arg(kernel)
        .output()
        .unwrap_or_else(|e| panic!("running {gdb}: {e}"));
    let _ = qemu.kill();
    let _ = qemu.wait();
    let _ = std::fs::remove_dir_all(&dir);
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// The frames (`#N ...` lines) gdb printed between `echo BT-BEGIN\n` and `echo BT-END\n`.
pub fn gdb_bt(text: &str) -> Vec<&str> {
    text.lines()
        .skip_while(|l| *l != "BT-BEGIN")
        .skip(1)
        .take_while(|l| *l != "BT-END")
        .filter(|l| l.starts_with('#'))
        .collect()
}

/// A code symbol: (start, end, name).
pub type Sym = (u64, u64, String);

/// Code symbols of the ELF, sorted by address. Functions; with `labels`, also the typeless
/// global labels of code in executable sections (hand-written entry code, the `#[idtentry]`
/// stubs, like Linux's `SYM_CODE_START` code), not the assembler's local `.L` labels nor the
/// mapping symbols (`$x`: code starts here).
pub fn symbols(elf: &Path, labels: bool) -> Vec<Sym> {
    use object::{Object, ObjectSection, ObjectSymbol, SectionKind, SymbolKind};
    let data = std::fs::read(elf).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let in_text = |s: &object::Symbol<'_, '_>| {
        s.section_index()
            .and_then(|i| file.section_by_index(i).ok())
            .is_some_and(|sec| sec.kind() == SectionKind::Text)
    };
    let mut syms: Vec<Sym> = file
        .symbols()
        .filter(|s| {
            s.kind() == SymbolKind::Text
                || (labels
                    && s.kind() == SymbolKind::Unknown
                    && in_text(s)
                    && s.name()
                        .is_ok_and(|n| !n.is_empty() && !n.starts_with(['.', '$'])))
        })
        .filter_map(|s| {
            Some((
                s.address(),
                s.address() + s.size(),
                s.name().ok()?.to_owned(),
            ))
        })
        .collect();
    syms.sort();
    syms
}

/// The symbol an address from a walk lies in (`addr - 1`: a return address follows its call; a
/// trap's saved pc follows the `wfi`/`hlt`, inside the function too). With `labels`, a
/// symbol of size 0 (a typeless label) spans up to the next one.
pub fn resolve(syms: &[Sym], addr: u64, labels: bool) -> String {
    let a = addr - 1;
    syms.iter()
        .rev()
        .find(|(lo, hi, _)| *lo <= a && (a < *hi || (labels && hi == lo)))
        .map(|(_, _, n)| n.clone())
        .unwrap_or_else(|| format!("?{addr:#x}"))
}

/// The names of the hex addresses (`0x` optional) in `words`, resolved as [`resolve`] does.
pub fn resolve_all(syms: &[Sym], words: &str, labels: bool) -> Vec<String> {
    words
        .split_whitespace()
        .map(|a| {
            resolve(
                syms,
                u64::from_str_radix(a.trim_start_matches("0x"), 16).unwrap(),
                labels,
            )
        })
        .collect()
}

/// Asserts what every passing boot shows: exit status `pass`, no `FAIL` anywhere in the log,
/// the kernel's `banner` (the scenario it was asked for) if given, and a line that is exactly
/// `pass_line`; `ctx` is the failure's context (the serial log).
#[track_caller]
pub fn assert_passed(
    b: &Boot,
    pass: i32,
    banner: Option<&str>,
    pass_line: &str,
    ctx: &dyn Fn() -> String,
) {
    assert_eq!(b.status, Some(pass), "not the pass status: {}", ctx());
    assert!(!b.log.contains("FAIL"), "{}", ctx());
    if let Some(banner) = banner {
        assert!(b.log.contains(banner), "{}", ctx());
    }
    assert!(b.log.lines().any(|l| l == pass_line), "{}", ctx());
}

/// The frame-pointer walks in `log`, one `bt cpu N: ...` line per CPU, asserted to be `cpus`
/// lines: (N, the rest of the line after the colon).
#[track_caller]
pub fn bt_lines<'a>(log: &'a str, cpus: usize, ctx: &dyn Fn() -> String) -> Vec<(usize, &'a str)> {
    let bts: Vec<&str> = log.lines().filter(|l| l.starts_with("bt cpu ")).collect();
    assert_eq!(bts.len(), cpus, "{}", ctx());
    bts.iter()
        .map(|l| {
            let (cpu, rest) = l["bt cpu ".len()..].split_once(':').unwrap();
            (cpu.parse().unwrap(), rest)
        })
        .collect()
}

/// The figures of a `check NAME: ok [a, b, c, d] ...` line.
pub fn figures(line: &str) -> Vec<u64> {
    let Some(open) = line.find('[') else {
        return Vec::new();
    };
    let close = line[open..].find(']').unwrap() + open;
    line[open + 1..close]
        .split(',')
        .map(|x| x.trim().parse().unwrap())
        .collect()
}

/// The `check NAME: ...` lines of `log`, asserted to be `expected`, in order, each "ok", and
/// nothing else; `ctx` is the failure's context (the serial log).
#[track_caller]
pub fn checks<'a>(log: &'a str, expected: &[&str], ctx: &dyn Fn() -> String) -> Vec<&'a str> {
    let checks: Vec<&str> = log.lines().filter(|l| l.starts_with("check ")).collect();
    let names: Vec<&str> = checks
        .iter()
        .map(|l| l["check ".len()..].split(':').next().unwrap())
        .collect();
    assert_eq!(names, expected, "{}", ctx());
    for l in &checks {
        assert!(l.contains(": ok"), "{l}\n{}", ctx());
    }
    checks
}

/// The line of check `name` among `checks`.
#[track_caller]
pub fn check<'a>(checks: &[&'a str], name: &str) -> &'a str {
    checks
        .iter()
        .find(|l| l.starts_with(&format!("check {name}:")))
        .unwrap()
}

/// The figures of check `name` among `checks`, asserted to be one per CPU (`cpus`).
#[track_caller]
pub fn per_cpu(checks: &[&str], name: &str, cpus: usize, ctx: &dyn Fn() -> String) -> Vec<u64> {
    let f = figures(check(checks, name));
    assert_eq!(f.len(), cpus, "{name}: {f:?}\n{}", ctx());
    f
}

/// Asserts that every CPU's figure of each check in `names` is above 0.
#[track_caller]
pub fn assert_all_positive(checks: &[&str], names: &[&str], cpus: usize, ctx: &dyn Fn() -> String) {
    for name in names {
        let f = per_cpu(checks, name, cpus, ctx);
        assert!(f.iter().all(|&x| x > 0), "{name}\n{}", ctx());
    }
}

/// The rows of the per-CPU table in `log` (lines that start with a digit, cells split at
/// ` | `).
pub fn table(log: &str) -> Vec<Vec<&str>> {
    log.lines()
        .filter(|l| l.chars().next().is_some_and(|c| c.is_ascii_digit()) && l.contains(" | "))
        .map(|l| l.split(" | ").collect())
        .collect()
}

/// The number in a table cell.
pub fn num(s: &str) -> u64 {
    s.trim().parse::<u64>().unwrap()
}
