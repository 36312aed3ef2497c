//! A signal at any instruction of a thread's IRQ stack creation: `prepare_irq_stack()` and the
//! first handler call, single-stepped with the x86 trap flag.
//!
//! For every instruction boundary `k` of a creation, a fresh thread runs the creation with the
//! trap flag set; the `SIGTRAP` handler counts the steps and, at step `k` only, calls an
//! `#[on_irqstack]` handler (as a signal handler of the program would). A second mode calls it at
//! every step of one run. Afterwards the thread must have exactly one IRQ stack (one mapping of
//! the test's distinctive size with its guard page below), the bounds must be that mapping, the
//! handler must have run in place or on that very stack, and after the thread exits no such
//! mapping may remain. The whole run happens in a child process under `timeout`, so a crash or a
//! hang fails the test with its output instead of taking the harness down.
//!
//! Why the trap flag: see `reliability_signals.rs`. The kernel clears TF for the handler, so only
//! the creation is stepped, including the `mmap` system calls and glibc's allocator inside the
//! destructor registration.

// x86-64 only by nature: the test single-steps with EFLAGS.TF; AArch64 and riscv64 user space
// cannot single-step itself (only a debugger through ptrace can, which qemu-user lacks).
#![cfg(target_arch = "x86_64")]

mod support;

use std::ops::Range;
use std::process::Command;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};

use irqstack::{irq_stack_bounds, irqstack_active, on_irqstack};
use support::{describe, here, thread_stack};

/// IRQ stack size used in the child: an unusual one, so that its mappings are easy to count.
const SIZE: usize = 53 * 4096;
/// Steps of one run at most (a runaway stops stepping and the run fails on the count).
const STEP_CAP: usize = 1_000_000;
/// `TARGET` value: call the handler at every step.
const EVERY: usize = usize::MAX - 1;
/// `TARGET` value: never call it (the dry run that counts the steps).
const NEVER: usize = usize::MAX;
use support::TF;

static STEP: AtomicUsize = AtomicUsize::new(0);
static TARGET: AtomicUsize = AtomicUsize::new(NEVER);
/// What the handler called from the trap handler saw, per call: checked by `check_probe`.
static PROBES: AtomicUsize = AtomicUsize::new(0);
static PROBE_BAD: AtomicUsize = AtomicUsize::new(0);
static PROBE_SWITCHED: AtomicUsize = AtomicUsize::new(0);
static PROBE_IN_PLACE: AtomicUsize = AtomicUsize::new(0);
/// `prepare_irq_stack()` from the handler said `CreationInterrupted`.
static PROBE_INTERRUPTED: AtomicUsize = AtomicUsize::new(0);
/// Range of the stack the probes saw (all must see the same one, or none yet).
static SEEN_LOW: AtomicUsize = AtomicUsize::new(0);
static SEEN_HIGH: AtomicUsize = AtomicUsize::new(0);
static TASK_LOW: AtomicUsize = AtomicUsize::new(0);
static TASK_HIGH: AtomicUsize = AtomicUsize::new(0);
static RUNAWAY: AtomicBool = AtomicBool::new(false);

/// The handler a signal handler of the program calls: where did it run, what did it see?
#[on_irqstack]
fn signal_probe() -> (usize, bool, Option<Range<usize>>) {
    (here(), irqstack_active(), irq_stack_bounds())
}

/// Classifies one probe: on an IRQ stack it saw as this thread's (the only one: checked after
/// the run against the mapping), or in place on the thread stack while no stack was usable.
fn check_probe() {
    PROBES.fetch_add(1, Relaxed);
    let (sp, active, bounds) = signal_probe();
    let task = TASK_LOW.load(Relaxed)..TASK_HIGH.load(Relaxed);
    let good = match bounds.clone() {
        Some(b) => {
            // Every probe of a run must see the same stack.
            let first = SEEN_HIGH.compare_exchange(0, b.end, Relaxed, Relaxed);
            let same = first.is_ok() || first == Err(b.end);
            if first.is_ok() {
                SEEN_LOW.store(b.start, Relaxed);
            }
            let same = same && SEEN_LOW.load(Relaxed) == b.start && b.end - b.start == SIZE;
            if b.contains(&sp) {
                // Switched to it, or nested in place on it (the first use's own call).
                PROBE_SWITCHED.fetch_add(1, Relaxed);
                same && active
            } else {
                // In place on the thread stack: it exists but was claimed (creation publishing
                // it claimed, or the stepped call between claim and switch).
                PROBE_IN_PLACE.fetch_add(1, Relaxed);
                same && !active && task.contains(&sp)
            }
        }
        None => {
            PROBE_IN_PLACE.fetch_add(1, Relaxed);
            !active && task.contains(&sp)
        }
    };
    // `prepare_irq_stack()` from the same handler: the stack (the one the probe saw, or the one
    // the probe just created), or `CreationInterrupted` while the interrupted code creates it.
    let prepared = match irqstack::prepare_irq_stack() {
        Ok(r) => r.end - r.start == SIZE && bounds.is_none_or(|b| b == r),
        Err(irqstack::IrqStackError::CreationInterrupted) => {
            PROBE_INTERRUPTED.fetch_add(1, Relaxed);
            bounds.is_none() && irq_stack_bounds().is_none()
        }
        Err(_) => false,
    };
    if !good || !prepared {
        PROBE_BAD.fetch_add(1, Relaxed);
    }
}

/// `SIGTRAP` handler: a plain handler that counts steps and calls the probe at the target step.
extern "C" fn trap(_sig: libc::c_int, _info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let n = STEP.fetch_add(1, Relaxed);
    let target = TARGET.load(Relaxed);
    if n == target || target == EVERY {
        check_probe();
    }
    // After the one signal of a run, the rest runs unstepped (it was stepped in the dry run).
    let stop = n == target;
    if n + 1 >= STEP_CAP {
        RUNAWAY.store(true, Relaxed);
    }
    if stop || n + 1 >= STEP_CAP {
        // SAFETY: the kernel restores eflags from this ucontext at sigreturn; clearing TF stops
        // the stepping.
        unsafe {
            (*(ctx as *mut libc::ucontext_t)).uc_mcontext.gregs[libc::REG_EFL as usize] &= !TF
        };
    }
}

/// The thread's first handler call.
#[on_irqstack]
fn first_use(x: u64) -> (u64, usize) {
    (x + 1, here())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    Prepare,
    FirstUse,
}

/// IRQ-stack mappings of this process: read-write regions of exactly `SIZE` bytes with an
/// inaccessible region right below (the guard page).
fn irq_mappings() -> Vec<Range<usize>> {
    let maps: Vec<(usize, usize, String)> = support::maps()
        .iter()
        .map(|l| support::parse_map(l))
        .collect();
    maps.windows(2)
        .filter(|w| {
            let (below, this) = (&w[0], &w[1]);
            this.1 - this.0 == SIZE
                && this.2.starts_with("rw")
                && below.1 == this.0
                && below.2.starts_with("---")
        })
        .map(|w| w[1].0..w[1].1)
        .collect()
}

/// One run: a fresh thread creates its stack through `entry` with the trap flag set, the probe
/// firing at step `target`. Returns the number of steps; panics with the evidence on failure.
fn run(entry: Entry, target: usize) -> usize {
    let what = format!("{entry:?}, signal at step {target}");
    let inner = what.clone();
    let (steps, probes) = std::thread::spawn(move || {
        let what = inner;
        let task = thread_stack();
        TASK_LOW.store(task.start, Relaxed);
        TASK_HIGH.store(task.end, Relaxed);
        for a in [
            &PROBES,
            &PROBE_BAD,
            &PROBE_SWITCHED,
            &PROBE_IN_PLACE,
            &PROBE_INTERRUPTED,
            &SEEN_LOW,
            &SEEN_HIGH,
        ] {
            a.store(0, Relaxed);
        }
        STEP.store(0, SeqCst);
        TARGET.store(target, SeqCst);
        let ok = support::single_step(|| match entry {
            Entry::Prepare => irqstack::prepare_irq_stack().is_ok_and(|r| r.end - r.start == SIZE),
            Entry::FirstUse => {
                let (v, sp) = first_use(std::hint::black_box(41));
                v == 42 && irq_stack_bounds().is_some_and(|b| b.contains(&sp))
            }
        });
        TARGET.store(NEVER, SeqCst);
        let steps = STEP.load(SeqCst);
        assert!(!RUNAWAY.load(Relaxed), "{what}: runaway stepping");
        assert!(ok, "{what}: the stepped creation failed or did not switch");
        let bounds = irq_stack_bounds().expect("bounds after creation");
        let all = irq_mappings();
        assert_eq!(
            all,
            std::slice::from_ref(&bounds),
            "{what}: IRQ stacks in the process"
        );
        assert_eq!(
            PROBE_BAD.load(Relaxed),
            0,
            "{what}: a handler saw a bad state"
        );
        if SEEN_HIGH.load(Relaxed) != 0 {
            assert_eq!(
                SEEN_LOW.load(Relaxed)..SEEN_HIGH.load(Relaxed),
                bounds,
                "{what}: a handler saw another stack"
            );
        }
        // The stack works: the next call switches to it and a panic through it is caught.
        let (v, sp) = first_use(1);
        assert!(v == 2 && bounds.contains(&sp), "{what}: next call");
        assert_eq!(
            support::panics_caught_through_every_form(),
            3,
            "{what}: panics"
        );
        (steps, PROBES.load(Relaxed))
    })
    .join()
    .unwrap_or_else(|_| panic!("{what}: the run panicked"));
    if target < steps {
        assert_eq!(probes, 1, "{what}: probe count");
    }
    let left = irq_mappings();
    assert!(
        left.is_empty(),
        "{what}: leaked after thread exit: {left:x?}"
    );
    steps
}

/// The child: every instruction boundary of `entry`'s creation, one run each, plus one run with
/// a signal at every step.
fn child(entry: Entry) {
    irqstack::set_irq_stack_size(SIZE);
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| support::install(libc::SIGTRAP, trap, 0));
    // Warm-up: one-time process state (the overflow handler, the allocator's thread arenas) is
    // set up by the first creations; the dry run then counts the steps of a typical one.
    for _ in 0..2 {
        run(entry, NEVER);
    }
    let n = run(entry, NEVER);
    let every = run(entry, EVERY);
    let (mut in_place, mut switched, mut interrupted) = (0, 0, 0);
    for k in 0..n {
        run(entry, k);
        in_place += PROBE_IN_PLACE.load(Relaxed);
        switched += PROBE_SWITCHED.load(Relaxed);
        interrupted += PROBE_INTERRUPTED.load(Relaxed);
    }
    // Some signals landed inside the creation proper (marked, not yet published).
    assert!(interrupted > 0, "no signal landed inside the creation");
    println!(
        "CREATION {entry:?}: {n} instructions stepped, one run per instruction with a signal \
         before it: {in_place} handlers ran in place, {switched} on the one IRQ stack, \
         {interrupted} prepare_irq_stack() calls from them got CreationInterrupted; \
         signal at every step: {every} steps; 0 crashes, 1 stack per thread, 0 leaked, \
         3 panics caught after each run"
    );
}

/// Runs the child for `entry` under `timeout`: a crash or a hang fails with the child's output.
fn parent(test: &str, entry: Entry) {
    if support::child_role().as_deref() == Some("creation") {
        child(entry);
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("timeout")
        .arg("900")
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(support::CHILD_ENV, "creation")
        .output()
        .expect("running the child");
    let text = describe(&out);
    assert_ne!(
        out.status.code(),
        Some(124),
        "the child hung (killed by timeout):\n{text}"
    );
    assert!(out.status.success(), "{text}");
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        // The child's first line follows libtest's "test ... " on the same line.
        if let Some(i) = l.find("CREATION") {
            println!("{}", &l[i..]);
        }
    }
}

#[test]
fn signal_at_every_instruction_of_prepare_irq_stack() {
    parent(
        "signal_at_every_instruction_of_prepare_irq_stack",
        Entry::Prepare,
    );
}

#[test]
fn signal_at_every_instruction_of_the_first_handler_call() {
    parent(
        "signal_at_every_instruction_of_the_first_handler_call",
        Entry::FirstUse,
    );
}
