//! Shared by the `reliability_*` tests: child processes, memory figures from `/proc/self`,
//! signal plumbing and stack ranges.

#![allow(dead_code)]

#[path = "skip.rs"]
pub mod skip;

use std::ops::Range;
use std::process::{Command, Output};

/// Environment variable that turns a test of the binary into a child-process role.
pub const CHILD_ENV: &str = "IRQSTACK_RELIABILITY_CHILD";

/// The role this process plays, if it was started by [`run_child`].
pub fn child_role() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

/// Environment variable naming the program (and its first arguments, separated by spaces) that
/// runs a child process of a cross-built test binary, e.g. `qemu-aarch64 -L /usr/aarch64-linux-gnu`
/// (set by `tests/cross_suite.rs`). qemu-user passes `execve` to the host kernel, which cannot
/// run a foreign binary without binfmt_misc: the child must be started through the emulator too.
/// Unset (the host, or real hardware): the binary is executed directly.
pub const CHILD_RUNNER_ENV: &str = "IRQSTACK_CHILD_RUNNER";

/// Whether this process runs under a user-mode emulator (qemu-user), as [`CHILD_RUNNER_ENV`] says.
/// Then the process's resident memory (`VmRSS`, the host process's figure) includes the
/// emulator's own: its translated-code cache and per-thread state.
pub fn emulated() -> bool {
    std::env::var_os(CHILD_RUNNER_ENV).is_some_and(|r| !r.is_empty())
}

/// A command that runs this very test binary: directly, or through [`CHILD_RUNNER_ENV`].
pub fn self_command() -> Command {
    let exe = std::env::current_exe().expect("current_exe");
    let runner = std::env::var(CHILD_RUNNER_ENV).unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(program) => {
            let mut cmd = Command::new(program);
            cmd.args(words).arg(exe);
            cmd
        }
        None => Command::new(exe),
    }
}

/// Runs test `test` of this very binary in a child process, alone (`--exact`, one test thread),
/// with `CHILD_ENV=role` and `env`, and returns its output. Child processes isolate what may
/// not run next to other tests: crashes on purpose, and measurements of the whole process.
pub fn run_child(test: &str, role: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = self_command();
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, role)
        .env_remove("RUST_BACKTRACE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("spawning the test binary as a child");
    // Exit status 127 without a word: the binary could not be executed at all. Under qemu-user
    // (the fork reports a failed exec that way) that means a foreign binary started without the
    // emulator: say how to run it instead of failing on an empty child.
    assert!(
        !(out.status.code() == Some(127) && out.stdout.is_empty() && out.stderr.is_empty()),
        "could not start {test} as a child process; under qemu-user set {CHILD_RUNNER_ENV} to \
         the runner, e.g. {CHILD_RUNNER_ENV}=\"qemu-aarch64 -L /usr/aarch64-linux-gnu\" \
         (tests/cross_suite.rs does)"
    );
    out
}

/// Stdout and stderr of a child, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status: {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Lines of `/proc/self/maps`.
pub fn maps() -> Vec<String> {
    std::fs::read_to_string("/proc/self/maps")
        .expect("/proc/self/maps")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `(start, end, perms)` of a `/proc/self/maps` line.
pub fn parse_map(line: &str) -> (usize, usize, String) {
    let mut parts = line.split_whitespace();
    let range = parts.next().unwrap();
    let perms = parts.next().unwrap().to_owned();
    let (lo, hi) = range.split_once('-').unwrap();
    (
        usize::from_str_radix(lo, 16).unwrap(),
        usize::from_str_radix(hi, 16).unwrap(),
        perms,
    )
}

/// Number of mappings of this process.
pub fn mapping_count() -> usize {
    maps().len()
}

/// Resident set size of this process, in KiB (`VmRSS`).
pub fn rss_kib() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Address of a local of the calling frame: a point on the current stack.
#[inline(always)]
pub fn here() -> usize {
    let x = 0u8;
    std::hint::black_box(&x) as *const u8 as usize
}

/// The calling thread's own stack, `[low, high)`, as glibc knows it.
pub fn thread_stack() -> Range<usize> {
    // SAFETY: `attr` is initialized by pthread_getattr_np before it is read and destroyed once;
    // the out-parameters are valid locals.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        assert_eq!(libc::pthread_getattr_np(libc::pthread_self(), &mut attr), 0);
        let mut addr = std::ptr::null_mut();
        let mut size = 0;
        assert_eq!(libc::pthread_attr_getstack(&attr, &mut addr, &mut size), 0);
        libc::pthread_attr_destroy(&mut attr);
        addr as usize..addr as usize + size
    }
}

/// The kernel's id of the calling thread.
pub fn gettid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// Sends `sig` to the calling thread (tgkill). With the signal unblocked, its handler has run
/// when this returns: the kernel delivers it on the way back from the system call.
pub fn raise_here(sig: libc::c_int) {
    // SAFETY: getpid/gettid name this very thread; tgkill has no memory arguments.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            libc::getpid() as libc::c_long,
            libc::gettid() as libc::c_long,
            sig as libc::c_long,
        )
    };
    assert_eq!(rc, 0, "tgkill: {}", std::io::Error::last_os_error());
}

/// An `SA_SIGINFO` signal handler.
pub type SigInfoHandler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

/// Installs `handler` for `sig` with `SA_SIGINFO | flags` and an empty mask.
pub fn install(sig: libc::c_int, handler: SigInfoHandler, flags: libc::c_int) {
    // SAFETY: a zeroed sigaction is valid; the handler has the SA_SIGINFO signature.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as usize;
        sa.sa_flags = libc::SA_SIGINFO | flags;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(sig, &sa, std::ptr::null_mut()), 0);
    }
}

/// The interrupted program counter and stack pointer saved in a signal handler's `ucontext`
/// (x86-64: rip and rsp; AArch64: pc and sp; riscv64: pc and x2).
///
/// # Safety
///
/// `ctx` is the third argument the kernel passed to an `SA_SIGINFO` handler.
pub unsafe fn interrupted_regs(ctx: *mut libc::c_void) -> (usize, usize) {
    // SAFETY: per the contract, `ctx` points to the kernel-written ucontext_t.
    let uc = unsafe { &*(ctx as *const libc::ucontext_t) };
    #[cfg(target_arch = "x86_64")]
    let regs = (
        uc.uc_mcontext.gregs[libc::REG_RIP as usize] as usize,
        uc.uc_mcontext.gregs[libc::REG_RSP as usize] as usize,
    );
    // AArch64 `struct sigcontext` (glibc's mcontext_t): fault_address, regs[31], sp, pc, pstate.
    #[cfg(target_arch = "aarch64")]
    let regs = (uc.uc_mcontext.pc as usize, uc.uc_mcontext.sp as usize);
    // riscv64 `struct user_regs_struct` (glibc's __gregs): slot 0 is pc (REG_PC), then x1..x31
    // in order, so slot 2 is x2 = sp (REG_SP).
    #[cfg(target_arch = "riscv64")]
    let regs = (
        uc.uc_mcontext.__gregs[0] as usize,
        uc.uc_mcontext.__gregs[2] as usize,
    );
    regs
}

/// Whether tools that the tests need must be present (under CI): see [`skip::tools_required`].
pub fn under_ci() -> bool {
    skip::tools_required()
}

#[irqstack::on_irqstack]
fn boom_register(x: u64) -> u64 {
    if std::hint::black_box(x) > 0 {
        panic!("register form {x}");
    }
    x
}

/// Passed in memory: the block form of the trampoline.
#[derive(Clone, Copy)]
pub struct Wide(pub [u64; 5]);

#[irqstack::on_irqstack]
fn boom_block(w: Wide) -> u64 {
    if std::hint::black_box(w.0[0]) > 0 {
        panic!("block form {}", w.0[0]);
    }
    w.0.iter().sum()
}

#[irqstack::on_irqstack]
fn switched_sp() -> usize {
    here()
}

/// A panic through each trampoline form (register, block, closure) is caught by `catch_unwind`
/// in the caller, and the next call switches again. Returns how many were caught (3). Silences
/// the panic hook meanwhile (call it where no other test panics at the same time).
pub fn panics_caught_through_every_form() -> usize {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let results = [
        std::panic::catch_unwind(|| boom_register(7)).is_err(),
        std::panic::catch_unwind(|| boom_block(Wide([7, 1, 2, 3, 4]))).is_err(),
        std::panic::catch_unwind(|| {
            irqstack::run_on_irqstack(|| -> u64 { panic!("closure form") })
        })
        .is_err(),
    ];
    std::panic::set_hook(hook);
    let sp = switched_sp();
    assert!(
        irqstack::irq_stack_bounds().is_some_and(|b| b.contains(&sp)),
        "the call after the panics did not switch"
    );
    assert!(!irqstack::irqstack_active());
    results.iter().filter(|&&c| c).count()
}

/// The x86-64 trap flag in EFLAGS: with it set, the CPU raises a debug exception (`SIGTRAP`)
/// after every instruction.
#[cfg(target_arch = "x86_64")]
pub const TF: i64 = 0x100;

/// Runs `f` with the trap flag set: a `SIGTRAP` after every instruction until TF is cleared
/// (the caller's `SIGTRAP` handler clears it in the saved context to stop early).
#[cfg(target_arch = "x86_64")]
#[inline(never)]
pub fn single_step<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: sets TF in EFLAGS through the stack (the asm may use the stack: no `nostack`);
    // nothing else changes. The trap handler is installed before this is called.
    unsafe { core::arch::asm!("pushfq", "or qword ptr [rsp], 0x100", "popfq") };
    let r = f();
    // SAFETY: clears TF again.
    unsafe { core::arch::asm!("pushfq", "and qword ptr [rsp], -0x101", "popfq") };
    r
}
