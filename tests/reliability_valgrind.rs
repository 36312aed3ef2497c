//! Valgrind memcheck on the demo and on this test binary: no errors.
//!
//! Signals, per-thread IRQ stacks and switching `rsp` by hand are exactly what confuses a memory
//! checker: memcheck tracks which stack memory is live by following the stack pointer, and a
//! switch to a stack mapped less than 2 MB away looks like a huge frame being pushed or popped.
//! The std backend therefore registers every IRQ stack with Valgrind (`VALGRIND_STACK_REGISTER`,
//! see `irqstack-rt/src/overflow.rs`), and memcheck then sees stack switches. No suppressions are
//! needed; if this test ever needs one, it must say here which report and why.
//!
//! Valgrind must be installed (`apt-get install valgrind`); without it the tests print a
//! "skipped" line and pass, except under CI (`CI` set), where they fail.

// x86-64 only by nature: Valgrind runs host binaries only (not under qemu-user), and the
// Valgrind client request of the std backend is an x86-64 sequence.
#![cfg(target_arch = "x86_64")]

mod support;

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};

use irqstack::{interrupted_sp, irq_stack_bounds, irqstack_active, on_irqstack, run_on_irqstack};
use support::{describe, here, thread_stack};

fn valgrind_available() -> bool {
    let ok = support::skip::command_runs("valgrind", &["--version"]);
    if !ok {
        support::skip::skip("valgrind", "apt-get install valgrind", false);
    }
    ok
}

/// Runs `program` under memcheck and returns the output; memcheck's own exit code for errors
/// is 1 (`--error-exitcode=1`).
fn memcheck(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("valgrind");
    // --fair-sched=yes: Valgrind runs one thread at a time; with its default lock, threads that
    // spin (the demo's CPUs, the receivers here) can starve the one that sends the signals, and
    // a run takes anywhere from 20 s to minutes. The fair ticket lock makes it steady.
    cmd.args([
        "--tool=memcheck",
        "--error-exitcode=1",
        "--trace-children=no",
        "--fair-sched=yes",
    ])
    .arg(program)
    .args(args)
    .env_remove("RUST_BACKTRACE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running valgrind")
}

/// The number in memcheck's `ERROR SUMMARY: N errors` line.
fn error_count(out: &Output) -> u64 {
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A known cause, named so that nobody has to dig: rustix's default `page_size()` reads the
    // auxiliary vector with `PR_GET_AUXV` and checks the vDSO that the kernel's `AT_SYSINFO_EHDR`
    // points to, but Valgrind does not map the vDSO for the program: invalid read, SIGSEGV.
    if stderr.contains("check_elf_base") {
        eprintln!(
            "hint: rustix reads the vDSO, which Valgrind does not map (rustix issue #1559); \
             irqstack-rt must enable rustix's `use-libc-auxv` feature"
        );
    }
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.contains("ERROR SUMMARY:"))
        .unwrap_or_else(|| panic!("no ERROR SUMMARY from valgrind:\n{}", describe(out)));
    let n = line
        .split("ERROR SUMMARY:")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    n.parse().unwrap()
}

/// `target/<profile>` of this test binary (`target/<profile>/deps/<name>-<hash>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// The demo of the same build profile as this test, built (or found up to date) by cargo.
/// `cargo test` builds the examples anyway; this also covers `cargo test --test
/// reliability_valgrind` and a demo older than the library. Cargo does not hold its build lock
/// while tests run, so a nested build in the same target directory is fine.
fn demo() -> PathBuf {
    let dir = profile_dir();
    let target_dir = dir.parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--quiet", "--example", "irq_demo", "--target-dir"])
        .arg(target_dir);
    if dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let out = cmd
        .output()
        .expect("running cargo build --example irq_demo");
    assert!(
        out.status.success(),
        "building the demo:\n{}",
        describe(&out)
    );
    let demo = dir.join("examples/irq_demo");
    assert!(demo.exists(), "{} missing", demo.display());
    demo
}

/// Memcheck on `examples/irq_demo`. The demo of this profile (debug under `cargo test`), and
/// also the binary named by `IRQSTACK_VALGRIND_DEMO` if set (e.g. a release build:
/// `cargo build --release --example irq_demo`, then
/// `IRQSTACK_VALGRIND_DEMO=target/release/examples/irq_demo`).
#[test]
fn memcheck_the_demo() {
    if !valgrind_available() {
        return;
    }
    let mut demos = vec![demo()];
    if let Some(extra) = std::env::var_os("IRQSTACK_VALGRIND_DEMO") {
        demos.push(PathBuf::from(extra));
    }
    for d in demos {
        // A shorter run of the demo, if it knows the variable (it still checks every count).
        let out = memcheck(&d, &[], &[("IRQ_DEMO_IRQS_PER_CPU", "2500")]);
        let errors = error_count(&out);
        println!("memcheck {}: {errors} errors", d.display());
        assert_eq!(
            errors,
            0,
            "memcheck errors in the demo:\n{}",
            describe(&out)
        );
        assert!(out.status.success(), "{}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("all interrupts handled"),
            "{}",
            describe(&out)
        );
    }
}

/// Memcheck on this test binary, running [`workload`].
#[test]
fn memcheck_a_test_binary() {
    if !valgrind_available() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = memcheck(
        &exe,
        &["workload", "--exact", "--nocapture", "--test-threads=1"],
        &[],
    );
    let errors = error_count(&out);
    println!("memcheck {}: {errors} errors", exe.display());
    assert_eq!(errors, 0, "memcheck errors:\n{}", describe(&out));
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("WORKLOAD OK"),
        "{}",
        describe(&out)
    );
}

// ---------------------------------------------------------------------------------------------
// The workload memcheck runs: every path of the switch, kept small (memcheck runs it ~50x
// slower). It is also an ordinary test.

#[derive(Clone, Copy)]
struct Wide([u64; 5]);

#[on_irqstack]
fn reg_form(a: u64, b: &mut u64) -> u64 {
    *b += 1;
    a + *b
}

#[on_irqstack]
fn block_form(w: Wide, s: String) -> (u64, String) {
    (w.0.iter().sum(), s + "!")
}

#[on_irqstack]
fn nested_outer() -> (usize, usize, Option<usize>) {
    let inner = nested_inner();
    (here(), inner, interrupted_sp())
}

#[on_irqstack]
fn nested_inner() -> usize {
    here()
}

#[on_irqstack]
fn faulty(n: u64) -> u64 {
    panic!("irq {n}")
}

#[on_irqstack]
fn backtrace_inside() -> String {
    std::backtrace::Backtrace::force_capture().to_string()
}

thread_local! {
    static DEPTH: Cell<usize> = const { Cell::new(0) };
    /// Which slot of `RUNS` this thread counts in (0: the test thread, 1 and 2: receivers).
    static SLOT: Cell<usize> = const { Cell::new(0) };
    /// This thread's own stack, recorded before signals arrive (`pthread_getattr_np` is not
    /// async-signal-safe).
    static TASK: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}
/// Handler runs per thread, and how many each thread must see before it may exit.
static RUNS: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
static TARGET: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
static ON_IRQ: AtomicU64 = AtomicU64::new(0);
/// Ran neither on the IRQ stack nor in place on the thread stack (the claim/switch window).
static ELSEWHERE: AtomicU64 = AtomicU64::new(0);
static MAX_DEPTH: AtomicUsize = AtomicUsize::new(0);
static DONE: AtomicBool = AtomicBool::new(false);

fn record_task_stack(slot: usize) -> std::ops::Range<usize> {
    SLOT.set(slot);
    let task = thread_stack();
    TASK.set((task.start, task.end));
    task
}

/// Queues `sig` at the calling thread with value `more`.
fn queue_here(sig: libc::c_int, more: usize) {
    let value = libc::sigval {
        sival_ptr: more as *mut libc::c_void,
    };
    // SAFETY: pthread_self is this live thread; the signal has a handler.
    let rc = unsafe { libc::pthread_sigqueue(libc::pthread_self(), sig, value) };
    assert_eq!(rc, 0);
}

/// Waits until `RUNS[slot]` exceeds `seen`. Natively a signal queued at the own thread is
/// handled on the way back from the system call; under Valgrind at its next poll for signals,
/// which `sched_yield` reaches. No timeout: it either arrives or the test hangs visibly.
fn wait_runs(slot: usize, seen: u64) {
    while RUNS[slot].load(SeqCst) <= seen {
        // SAFETY: sched_yield has no preconditions (and is async-signal-safe).
        unsafe { libc::sched_yield() };
    }
}

/// Signal handler: counts; a signal with value `n > 0` queues one with `n - 1` at its own thread
/// and waits for it, so it nests in place (SA_NODEFER): exactly `n` more runs. (Only the test
/// thread, which nothing else signals, uses values: a wait inside a handler lets every other
/// pending signal nest on top.)
#[on_irqstack]
extern "C" fn work_irq(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    let d = DEPTH.get() + 1;
    DEPTH.set(d);
    MAX_DEPTH.fetch_max(d, Relaxed);
    let (lo, hi) = TASK.get();
    if irq_stack_bounds().is_some_and(|r| r.contains(&here())) {
        ON_IRQ.fetch_add(1, Relaxed);
    } else if !(lo..hi).contains(&here()) {
        ELSEWHERE.fetch_add(1, Relaxed);
    }
    // SAFETY: the kernel passes a valid siginfo_t; all our signals are queued with a value.
    let more = unsafe { (*info).si_value().sival_ptr } as usize;
    let slot = SLOT.get();
    if more > 0 {
        let seen = RUNS[slot].load(SeqCst);
        queue_here(sig, more - 1);
        wait_runs(slot, seen);
    }
    RUNS[slot].fetch_add(1, SeqCst);
    DEPTH.set(d - 1);
}

#[test]
fn workload() {
    let sig = libc::SIGRTMIN() + 9;
    support::install(sig, work_irq, libc::SA_NODEFER);
    record_task_stack(0);

    // Room for nested signal frames, which are larger under Valgrind. (Only this test of this
    // binary creates IRQ stacks, so the global setting affects nothing else.)
    irqstack::set_irq_stack_size(256 * 1024);

    // Every form of the switch, nesting, the closure form.
    let irq = irqstack::prepare_irq_stack().unwrap();
    let mut b = 1;
    assert_eq!(reg_form(40, &mut b), 42);
    assert_eq!(
        block_form(Wide([1, 2, 3, 4, 32]), "hi".into()),
        (42, "hi!".to_string())
    );
    let (outer, inner, link) = nested_outer();
    assert!(irq.contains(&outer) && irq.contains(&inner) && inner <= outer);
    assert!(link.is_some_and(|l| !irq.contains(&l)));
    // Allocates and frees on the IRQ stack.
    assert_eq!(run_on_irqstack(|| format!("{}{}", 4, 2)), "42");

    // Panics across the switch.
    std::panic::set_hook(Box::new(|_| {}));
    for n in 0..20 {
        assert!(std::panic::catch_unwind(|| faulty(n)).is_err());
        assert!(!irqstack_active());
    }
    let _ = std::panic::take_hook();

    // The unwinder reads the saved link and CFI across the switch.
    assert!(backtrace_inside().contains("workload"));

    // Signals: nested with SA_NODEFER, from the thread stack, to depth 4.
    queue_here(sig, 3);
    wait_runs(0, 3);
    assert_eq!(RUNS[0].load(SeqCst), 4);
    assert_eq!(MAX_DEPTH.load(Relaxed), 4);

    // Queued signals at two threads that keep calling handlers, from this thread, at most
    // `BACKLOG` outstanding per thread: under Valgrind signals are delivered at its polls, and
    // a burst of them nests (SA_NODEFER) with Valgrind's larger signal frames.
    let ready = AtomicUsize::new(0);
    let pthreads = [AtomicUsize::new(0), AtomicUsize::new(0)];
    const PER: u64 = 300;
    const BACKLOG: u64 = 4;
    std::thread::scope(|s| {
        let receivers: Vec<_> = (1..=2)
            .map(|slot| {
                let (ready, pthreads) = (&ready, &pthreads);
                s.spawn(move || {
                    let irq = irqstack::prepare_irq_stack().unwrap();
                    let task = record_task_stack(slot);
                    // SAFETY: pthread_self has no preconditions.
                    pthreads[slot - 1].store(unsafe { libc::pthread_self() } as usize, SeqCst);
                    ready.fetch_add(1, SeqCst);
                    while !DONE.load(SeqCst) {
                        let (sp, _) = run_on_irqstack(|| (here(), interrupted_sp()));
                        assert!(irq.contains(&sp));
                        std::thread::yield_now();
                    }
                    // Everything sent here is handled before the thread goes.
                    while RUNS[slot].load(SeqCst) < TARGET[slot].load(SeqCst) {
                        std::thread::yield_now();
                    }
                    assert!(!irqstack_active() && task.contains(&here()));
                })
            })
            .collect();
        while ready.load(SeqCst) < 2 {
            std::thread::yield_now();
        }
        for _ in 0..PER {
            for (n, t) in pthreads.iter().enumerate() {
                while TARGET[n + 1].load(SeqCst) >= RUNS[n + 1].load(SeqCst) + BACKLOG {
                    std::thread::yield_now();
                }
                let value = libc::sigval {
                    sival_ptr: std::ptr::null_mut(),
                };
                let t = t.load(SeqCst) as libc::pthread_t;
                // SAFETY: the receivers run until they have handled all of TARGET, which only
                // grows before DONE; the signal has a handler.
                while unsafe { libc::pthread_sigqueue(t, sig, value) } == libc::EAGAIN {
                    std::thread::yield_now();
                }
                TARGET[n + 1].fetch_add(1, SeqCst);
            }
        }
        DONE.store(true, SeqCst);
        for t in receivers {
            t.join().unwrap();
        }
    });
    let total: u64 = RUNS.iter().map(|r| r.load(SeqCst)).sum();
    assert_eq!(total, 4 + 2 * PER);
    // A few may land in the claim/switch window and run in place on the thread stack.
    assert!(ON_IRQ.load(Relaxed) > 0);
    assert_eq!(ELSEWHERE.load(Relaxed), 0);

    // Threads come and go (their stacks are unmapped and deregistered at exit).
    for _ in 0..8 {
        std::thread::spawn(|| {
            let mut b = 0;
            assert_eq!(reg_form(1, &mut b), 2);
        })
        .join()
        .unwrap();
    }
    assert!(!irqstack_active());
    println!("WORKLOAD OK: {total} signals handled");
}
