//! Handlers entered from real signals: an interrupt storm on four threads, nesting with
//! `SA_NODEFER`, and a handler entered at every instruction boundary of the switch (single
//! stepping with the x86 trap flag). Every signal handler here is an `#[on_irqstack] extern "C"
//! fn`. Each test fails if the behaviour it names breaks.
//!
//! Handlers cannot assert (a panic in an `extern "C"` signal handler aborts the process, and the
//! report would be lost), so they record what they saw in atomics and the test asserts after.

// Shared with the other reliability tests, in the `irqstack` package.
#[path = "../../tests/support/mod.rs"]
mod support;

use std::cell::Cell;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};

use irqstack::{interrupted_sp, irq_stack_bounds, irqstack_active, on_irqstack};
use support::{here, interrupted_regs, thread_stack};

/// A handler that reports where it ran; used to check that a call switches.
#[on_irqstack]
fn probe() -> (usize, Option<usize>, bool) {
    (here(), interrupted_sp(), irqstack_active())
}

/// After everything: the IRQ stack is not in use and the next call switches to it, saving a link
/// into the thread's own stack.
fn assert_released_and_switching(irq: &Range<usize>, task: &Range<usize>) {
    assert!(!irqstack_active(), "still on the IRQ stack");
    let (sp, link, active) = probe();
    assert!(active && irq.contains(&sp), "the next call did not switch");
    assert!(link.is_some_and(|l| task.contains(&l)), "link {link:x?}");
}

// ---------------------------------------------------------------------------------------------
// Interrupt storm.

const RECEIVERS: usize = 4;
const SENDERS: usize = 2;
/// Signals each receiving thread gets (from all senders together).
const PER_RECEIVER: u64 = 50_000;
/// Signals queued for one receiver and not yet handled, at most (per sender). Like an interrupt
/// controller, the senders do not let the backlog grow without bound: the kernel finds the next
/// queued instance of a real-time signal by walking the thread's pending list, and with tens of
/// thousands of entries of two interleaved signals queued, delivery becomes quadratic (minutes
/// instead of seconds). The queue still fills now and then (EAGAIN), which is retried.
const BACKLOG: u64 = 64;

/// What one receiving thread saw. Written by its signal handlers (atomics only) and its loop.
struct Receiver {
    pthread: AtomicUsize,
    irq: [AtomicUsize; 2],
    task: [AtomicUsize; 2],
    sent: AtomicU64,
    handled: AtomicU64,
    /// The IRQ stack was free: the handler switched to it (interrupted on the thread stack).
    switched: AtomicU64,
    /// Landed on the IRQ stack while it was in use (inside the softirq or another handler): ran
    /// in place there, below the interrupted frame.
    nested: AtomicU64,
    /// Landed on the thread stack in the few instructions between claiming the IRQ stack and
    /// switching to it (or between switching back and releasing it): the stack is marked in use,
    /// so the handler runs in place on the thread stack, below the interrupted code's frame. The
    /// kernel's `_cond` helpers behave the same. Correct, just rare.
    window: AtomicU64,
    /// Anything else: wrong stack, wrong link, wrong state. Must stay 0.
    bad: AtomicU64,
    /// Ran on (or saw) a stack of another receiver. Must stay 0.
    foreign: AtomicU64,
    max_depth: AtomicUsize,
    deepest: AtomicUsize,
    retries: AtomicU64,
}

impl Receiver {
    const fn new() -> Self {
        Receiver {
            pthread: AtomicUsize::new(0),
            irq: [AtomicUsize::new(0), AtomicUsize::new(0)],
            task: [AtomicUsize::new(0), AtomicUsize::new(0)],
            sent: AtomicU64::new(0),
            handled: AtomicU64::new(0),
            switched: AtomicU64::new(0),
            nested: AtomicU64::new(0),
            window: AtomicU64::new(0),
            bad: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
            max_depth: AtomicUsize::new(0),
            deepest: AtomicUsize::new(0),
            retries: AtomicU64::new(0),
        }
    }
    fn irq(&self) -> Range<usize> {
        self.irq[0].load(Relaxed)..self.irq[1].load(Relaxed)
    }
    fn task(&self) -> Range<usize> {
        self.task[0].load(Relaxed)..self.task[1].load(Relaxed)
    }
}

static RX: [Receiver; RECEIVERS] = [const { Receiver::new() }; RECEIVERS];
/// Storm signals that reached a thread that is not a receiver. Must stay 0.
static STRAY: AtomicU64 = AtomicU64::new(0);
static SENDERS_DONE: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Which receiver this thread is (`usize::MAX`: none).
    static ROLE: Cell<usize> = const { Cell::new(usize::MAX) };
    /// Handler nesting depth on this thread (softirq and signal handlers).
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

fn storm_signals() -> [libc::c_int; 2] {
    [libc::SIGRTMIN() + 4, libc::SIGRTMIN() + 5]
}

/// The storm's interrupt handler. Async-signal-safe: atomics and const thread-locals.
#[on_irqstack]
extern "C" fn storm_irq(_sig: libc::c_int, _info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let me = ROLE.get();
    let Some(r) = RX.get(me) else {
        STRAY.fetch_add(1, Relaxed);
        return;
    };
    let depth = DEPTH.get() + 1;
    DEPTH.set(depth);
    r.max_depth.fetch_max(depth, Relaxed);
    let sp = here();
    // SAFETY: `ctx` is the ucontext the kernel passed to this SA_SIGINFO handler.
    let (_rip, rsp) = unsafe { interrupted_regs(ctx) };
    let (irq, task) = (r.irq(), r.task());
    for (j, other) in RX.iter().enumerate() {
        if j != me && (other.irq().contains(&sp) || other.task().contains(&sp)) {
            r.foreign.fetch_add(1, Relaxed);
        }
    }
    let link = interrupted_sp();
    let link_home = link.is_some_and(|l| task.contains(&l));
    let class = if irq_stack_bounds() != Some(irq.clone()) {
        &r.bad
    } else if irq.contains(&sp) {
        r.deepest.fetch_max(irq.end - sp, Relaxed);
        if irq.contains(&rsp) && sp < rsp && link_home {
            &r.nested
        } else if task.contains(&rsp) && link_home && link.is_some_and(|l| l < rsp) {
            // The switch saved the trampoline's rsp, below the signal frame the kernel pushed.
            &r.switched
        } else {
            &r.bad
        }
    } else if task.contains(&sp) && task.contains(&rsp) && sp < rsp && !irqstack_active() {
        &r.window
    } else {
        &r.bad
    };
    class.fetch_add(1, Relaxed);
    // A little work, as a driver would do.
    std::hint::black_box((0..32u64).fold(depth as u64, |a, b| a.rotate_left(5) ^ b));
    r.handled.fetch_add(1, Relaxed);
    DEPTH.set(depth - 1);
}

/// Deferred work on the IRQ stack; interrupts land on top of it and nest in place.
#[on_irqstack]
fn softirq(rounds: u64) -> u64 {
    DEPTH.set(DEPTH.get() + 1);
    let r = (0..rounds).fold(0u64, |a, b| std::hint::black_box(a.wrapping_mul(31) ^ b));
    DEPTH.set(DEPTH.get() - 1);
    r
}

fn pending(set: &[libc::c_int]) -> bool {
    // SAFETY: sigpending fills a valid local set; sigismember reads it.
    unsafe {
        let mut p: libc::sigset_t = std::mem::zeroed();
        assert_eq!(libc::sigpending(&mut p), 0);
        set.iter().any(|&s| libc::sigismember(&p, s) == 1)
    }
}

/// A receiving thread: calls handlers in a loop until the senders are done, then drains.
/// Returns (loop iterations, probes that did not switch).
fn receiver(me: usize, ready: &AtomicUsize) -> (u64, u64) {
    ROLE.set(me);
    let r = &RX[me];
    let irq = irqstack::prepare_irq_stack().expect("mapping the IRQ stack");
    let task = thread_stack();
    r.irq[0].store(irq.start, Relaxed);
    r.irq[1].store(irq.end, Relaxed);
    r.task[0].store(task.start, Relaxed);
    r.task[1].store(task.end, Relaxed);
    // SAFETY: pthread_self has no preconditions.
    r.pthread
        .store(unsafe { libc::pthread_self() } as usize, Relaxed);
    ready.fetch_add(1, SeqCst);
    let (mut loops, mut bad_probes, mut acc) = (0u64, 0u64, 0u64);
    while !SENDERS_DONE.load(SeqCst) {
        acc ^= softirq(400);
        // Every signal handler has restored the in-use state: this call switches again.
        let (sp, link, active) = probe();
        if !(active && irq.contains(&sp) && link.is_some_and(|l| task.contains(&l))) {
            bad_probes += 1;
        }
        acc ^= (0..400u64).fold(acc, |a, b| std::hint::black_box(a.rotate_left(3) ^ b));
        loops += 1;
    }
    std::hint::black_box(acc);
    // Drain without a timeout: every signal sent to this thread is queued for it or handled.
    // The kernel delivers queued signals on the way back from each system call, so once
    // sigpending reports none of ours, every handler has run to completion.
    while pending(&storm_signals()) {}
    assert_released_and_switching(&irq, &task);
    (loops, bad_probes)
}

fn sender(id: usize) {
    let sigs = storm_signals();
    for i in 0..PER_RECEIVER / SENDERS as u64 {
        for (n, r) in RX.iter().enumerate() {
            let sig = sigs[(i as usize + n + id) % 2];
            while r.sent.load(Relaxed) >= r.handled.load(Relaxed) + BACKLOG {
                std::thread::yield_now();
            }
            loop {
                let value = libc::sigval {
                    sival_ptr: std::ptr::null_mut(),
                };
                // SAFETY: the receivers stay alive until SENDERS_DONE, set after all senders
                // have returned; the signal has a handler.
                let rc = unsafe {
                    libc::pthread_sigqueue(r.pthread.load(Relaxed) as libc::pthread_t, sig, value)
                };
                if rc == 0 {
                    r.sent.fetch_add(1, Relaxed);
                    break;
                }
                // The per-user queue (RLIMIT_SIGPENDING) is full: let the receivers drain it.
                assert_eq!(rc, libc::EAGAIN, "pthread_sigqueue");
                r.retries.fetch_add(1, Relaxed);
                std::thread::yield_now();
            }
        }
    }
}

#[test]
fn interrupt_storm_on_four_threads() {
    for sig in storm_signals() {
        // Empty mask: the two storm signals interrupt each other's handlers (nesting).
        support::install(sig, storm_irq, libc::SA_RESTART);
    }
    let ready = AtomicUsize::new(0);
    let results = std::thread::scope(|s| {
        let receivers: Vec<_> = (0..RECEIVERS)
            .map(|me| {
                let ready = &ready;
                s.spawn(move || receiver(me, ready))
            })
            .collect();
        while ready.load(SeqCst) < RECEIVERS {
            std::thread::yield_now();
        }
        let senders: Vec<_> = (0..SENDERS).map(|id| s.spawn(move || sender(id))).collect();
        for t in senders {
            t.join().unwrap();
        }
        SENDERS_DONE.store(true, SeqCst);
        receivers
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect::<Vec<_>>()
    });

    for (me, (r, (loops, bad_probes))) in RX.iter().zip(results).enumerate() {
        let (sent, handled) = (r.sent.load(Relaxed), r.handled.load(Relaxed));
        let (switched, nested, window) = (
            r.switched.load(Relaxed),
            r.nested.load(Relaxed),
            r.window.load(Relaxed),
        );
        println!(
            "receiver {me}: sent {sent} handled {handled}: switched {switched}, nested in place \
             on the IRQ stack {nested}, in place on the thread stack (claim/switch window) \
             {window}; max depth {}, deepest {} B; {loops} loops, {} EAGAIN retries",
            r.max_depth.load(Relaxed),
            r.deepest.load(Relaxed),
            r.retries.load(Relaxed),
        );
        assert_eq!(sent, PER_RECEIVER, "receiver {me}");
        assert_eq!(
            handled, sent,
            "receiver {me}: signals lost or handled twice"
        );
        assert_eq!(
            r.bad.load(Relaxed),
            0,
            "receiver {me}: inconsistent stack state"
        );
        assert_eq!(
            r.foreign.load(Relaxed),
            0,
            "receiver {me}: saw another thread's stack"
        );
        assert_eq!(switched + nested + window, handled, "receiver {me}");
        assert!(
            switched > 0 && nested > 0,
            "receiver {me}: both paths must occur"
        );
        assert_eq!(
            bad_probes, 0,
            "receiver {me}: a call after a signal did not switch"
        );
    }
    assert_eq!(
        STRAY.load(Relaxed),
        0,
        "storm signals reached other threads"
    );
}

// ---------------------------------------------------------------------------------------------
// Nesting with SA_NODEFER.

/// Nesting depth the handler drives itself to.
const NEST: usize = 16;
const NEST_ROUNDS: usize = 200;

/// Per depth: handler sp, interrupted rsp, link in the top slot, on the IRQ stack.
static FRAMES: [[AtomicUsize; 4]; NEST] = [const { [const { AtomicUsize::new(0) }; 4] }; NEST];
static NEST_MAX: AtomicUsize = AtomicUsize::new(0);
static NEST_COUNT: AtomicU64 = AtomicU64::new(0);
static NEST_RAISE_FAILED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static NEST_DEPTH: Cell<usize> = const { Cell::new(0) };
}

fn nest_signal() -> libc::c_int {
    libc::SIGRTMIN() + 6
}

fn tgkill_self(sig: libc::c_int) -> bool {
    // SAFETY: getpid/gettid name this very thread; tgkill has no memory arguments.
    unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            libc::getpid() as libc::c_long,
            libc::gettid() as libc::c_long,
            sig as libc::c_long,
        ) == 0
    }
}

/// Raises its own signal at its own thread until depth `NEST`. With `SA_NODEFER` the signal is
/// not blocked in its handler, so the kernel delivers it on the way back from `tgkill`: the
/// nested handler runs before `tgkill` returns, on top of this one.
#[on_irqstack]
extern "C" fn nest_irq(sig: libc::c_int, _info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let d = NEST_DEPTH.get() + 1;
    NEST_DEPTH.set(d);
    NEST_MAX.fetch_max(d, Relaxed);
    // SAFETY: `ctx` is the ucontext the kernel passed to this SA_SIGINFO handler.
    let (_rip, rsp) = unsafe { interrupted_regs(ctx) };
    if let Some(f) = FRAMES.get(d - 1) {
        f[0].store(here(), Relaxed);
        f[1].store(rsp, Relaxed);
        f[2].store(interrupted_sp().unwrap_or(0), Relaxed);
        f[3].store(irqstack_active() as usize, Relaxed);
    }
    if d < NEST && !tgkill_self(sig) {
        NEST_RAISE_FAILED.fetch_add(1, Relaxed);
    }
    NEST_COUNT.fetch_add(1, Relaxed);
    NEST_DEPTH.set(d - 1);
}

/// A normal handler call (on the IRQ stack) that raises the signal: all levels nest in place.
#[on_irqstack]
fn raise_from_handler(sig: libc::c_int) -> usize {
    if !tgkill_self(sig) {
        NEST_RAISE_FAILED.fetch_add(1, Relaxed);
    }
    here()
}

#[test]
fn nested_signals_run_in_place_with_sa_nodefer() {
    let sig = nest_signal();
    support::install(sig, nest_irq, libc::SA_NODEFER);
    // 16 levels of signal frames (up to ~3.5 KiB each with AVX-512 state) and handler frames do
    // not fit in the default 64 KiB: give this thread a bigger IRQ stack. The size applies to
    // stacks created later; other tests' threads may get it too, which changes nothing for them.
    irqstack::set_irq_stack_size(512 * 1024);
    let (summary, per_level) = std::thread::spawn(move || {
        let irq = irqstack::prepare_irq_stack().unwrap();
        irqstack::set_irq_stack_size(irqstack::DEFAULT_IRQ_STACK_SIZE);
        let task = thread_stack();
        let mut per_level = 0;
        for round in 0..NEST_ROUNDS {
            NEST_MAX.store(0, Relaxed);
            let from_handler = round % 2 == 1;
            // Even rounds: the first signal arrives on the thread stack and switches; odd
            // rounds: it arrives inside a handler on the IRQ stack, and every level is in place.
            let outer_sp = if from_handler {
                Some(raise_from_handler(sig))
            } else {
                support::raise_here(sig);
                None
            };
            assert_eq!(NEST_MAX.load(Relaxed), NEST, "round {round}: max depth");
            let f: Vec<[usize; 4]> = FRAMES
                .iter()
                .map(|f| [0, 1, 2, 3].map(|i| f[i].load(Relaxed)))
                .collect();
            let link = f[0][2];
            assert!(task.contains(&link), "round {round}: link {link:#x}");
            for (d, &[sp, rsp, l, active]) in f.iter().enumerate() {
                assert!(
                    irq.contains(&sp),
                    "round {round} depth {d}: sp {sp:#x} off the IRQ stack"
                );
                assert_eq!(active, 1, "round {round} depth {d}");
                // One switch at most: every level sees the same link in the top slot.
                assert_eq!(l, link, "round {round} depth {d}: top slot rewritten");
                // Below the interrupted sp whenever both are on the IRQ stack. A switched level
                // 0 was interrupted on the thread stack, which may lie above or below the IRQ
                // stack (wherever mmap put it): no order between the two then.
                if irq.contains(&rsp) {
                    assert!(
                        sp < rsp,
                        "round {round} depth {d}: frame above the interrupted sp"
                    );
                }
                if d == 0 {
                    if from_handler {
                        assert!(irq.contains(&rsp) && rsp < outer_sp.unwrap());
                    } else {
                        // Switched: interrupted on the thread stack, link below its frame.
                        assert!(task.contains(&rsp) && link < rsp, "round {round}");
                    }
                } else {
                    // In place: interrupted inside the previous level's handler, on the IRQ
                    // stack, below that level's frame.
                    let prev_sp = f[d - 1][0];
                    assert!(
                        irq.contains(&rsp) && rsp < prev_sp,
                        "round {round} depth {d}"
                    );
                }
            }
            per_level = (f[0][0] - f[NEST - 1][0]) / (NEST - 1);
        }
        assert_released_and_switching(&irq, &task);
        (NEST_COUNT.load(Relaxed), per_level)
    })
    .join()
    .unwrap();
    println!(
        "SA_NODEFER nesting: {NEST_ROUNDS} rounds to depth {NEST}: {summary} handler runs, \
         {per_level} bytes of IRQ stack per level"
    );
    assert_eq!(summary, (NEST * NEST_ROUNDS) as u64);
    assert_eq!(NEST_RAISE_FAILED.load(Relaxed), 0);
}

// ---------------------------------------------------------------------------------------------
// Every instruction boundary: single stepping with the trap flag.
//
// Why this way: setting EFLAGS.TF makes the CPU raise a debug exception after every instruction;
// Linux turns it into SIGTRAP with the interrupted registers in the ucontext, and sigreturn puts
// TF back, so stepping continues. The SIGTRAP handler is itself an `#[on_irqstack] extern "C"
// fn`, so it is entered at every instruction boundary of the wrapper (claim, argument setup,
// call), the trampoline (each of its instructions) and the release. No ptrace, no debugger:
// nothing outside this process, and nothing that a container's seccomp/ptrace policy could
// forbid. The kernel clears TF for the handler itself, so only the stepped code is traced.
//
// The trampoline's address range comes from the symbol table of this test binary (`object`
// crate), relocated by the distance between a `no_mangle` anchor's runtime and link addresses.
//
// x86-64 only by nature: AArch64 and riscv64 user space has no trap flag (single-step is an
// EL1/debug-mode control, reachable only through ptrace, which qemu-user does not offer).
#[cfg(target_arch = "x86_64")]
mod stepping {
    use super::*;

    const STEP_CAP: usize = 50_000;
    /// Per step: interrupted rip, interrupted rsp, handler sp, link in the top slot, on the IRQ
    /// stack, sp of a handler called from the trap handler.
    static STEP_LOG: [[AtomicUsize; 6]; STEP_CAP] =
        [const { [const { AtomicUsize::new(0) }; 6] }; STEP_CAP];
    static STEPS: AtomicUsize = AtomicUsize::new(0);
    use support::TF;

    /// The stepping tests share `STEP_LOG`: they take turns (libtest runs tests on parallel threads).
    /// Installs the `SIGTRAP` handler on first use.
    fn stepping() -> std::sync::MutexGuard<'static, ()> {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(|| support::install(libc::SIGTRAP, trap_irq, 0));
        LOCK.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[on_irqstack]
    fn inner_probe() -> usize {
        here()
    }

    /// SIGTRAP handler: records one step.
    #[on_irqstack]
    extern "C" fn trap_irq(_sig: libc::c_int, _info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        let n = STEPS.fetch_add(1, Relaxed);
        // SAFETY: `ctx` is the ucontext the kernel passed to this SA_SIGINFO handler.
        let (rip, rsp) = unsafe { interrupted_regs(ctx) };
        let rec = [
            rip,
            rsp,
            here(),
            interrupted_sp().unwrap_or(0),
            irqstack_active() as usize,
            // A handler entered from here must run in place, wherever this one runs.
            inner_probe(),
        ];
        if let Some(slot) = STEP_LOG.get(n) {
            for (s, v) in slot.iter().zip(rec) {
                s.store(v, Relaxed);
            }
        }
        if n + 1 >= STEP_CAP {
            // Runaway stepping (should not happen): stop tracing, the test then fails on the count.
            // SAFETY: the kernel restores eflags from this ucontext at sigreturn.
            unsafe {
                (*(ctx as *mut libc::ucontext_t)).uc_mcontext.gregs[libc::REG_EFL as usize] &= !TF
            };
        }
    }

    #[on_irqstack]
    fn step_target_reg(a: u64, b: u64) -> u64 {
        a.wrapping_mul(3).wrapping_add(b)
    }

    /// The out-of-line shapes of issue 15: the wrapper is a function of its own, as when a signal
    /// handler, an IDT entry or a callback table calls it (its claim and release are not inlined into
    /// the caller).
    #[on_irqstack]
    #[inline(never)]
    fn step_target_outline(a: u64, b: u64) -> u64 {
        a.wrapping_mul(3).wrapping_add(b)
    }

    /// The demo's shape: an `extern "C"` handler, called through a function pointer.
    #[on_irqstack]
    #[inline(never)]
    extern "C" fn step_target_extern_c(a: u64, b: u64) -> u64 {
        a.wrapping_mul(3).wrapping_add(b)
    }

    #[derive(Clone, Copy)]
    struct Wide([u64; 5]);

    #[on_irqstack]
    fn step_target_block(w: Wide) -> u64 {
        w.0.iter().sum()
    }

    /// Anchor to relocate symbol addresses: its link-time address is in the symbol table.
    // SAFETY: the name is unique to this test binary; nothing else defines the symbol.
    #[unsafe(no_mangle)]
    #[inline(never)]
    pub extern "C" fn irqstack_reliability_step_anchor() -> usize {
        std::hint::black_box(7)
    }

    /// Runtime address ranges of the functions whose symbol names pass `filter`.
    fn symbol_ranges(filter: impl Fn(&str) -> bool) -> Vec<Range<usize>> {
        use object::{Object, ObjectSymbol};
        let data = std::fs::read("/proc/self/exe").expect("reading /proc/self/exe");
        let file = object::File::parse(&*data).expect("parsing /proc/self/exe");
        let anchor = file
            .symbols()
            .find(|s| s.name() == Ok("irqstack_reliability_step_anchor"))
            .expect("anchor symbol");
        let bias = (irqstack_reliability_step_anchor as *const () as usize)
            .wrapping_sub(anchor.address() as usize);
        file.symbols()
            .filter(|s| s.size() > 0 && s.name().is_ok_and(&filter))
            .map(|s| {
                let start = (s.address() as usize).wrapping_add(bias);
                start..start + s.size() as usize
            })
            .collect()
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Seen {
        /// The IRQ stack was free: the trap handler switched to it.
        Switched,
        /// The IRQ stack was claimed, the stepped code still (or again) on the thread stack: the trap
        /// handler ran in place on the thread stack.
        InPlaceTask,
        /// The stepped code ran on the IRQ stack: the trap handler ran in place below it.
        InPlaceIrq,
    }

    #[derive(Debug)]
    struct Step {
        rip: usize,
        rsp: usize,
        sp: usize,
        link: usize,
        active: bool,
        inner: usize,
    }

    fn classify(s: &Step, irq: &Range<usize>, task: &Range<usize>) -> Result<Seen, String> {
        let in_place_inner = s.inner <= s.sp && (irq.contains(&s.sp) == irq.contains(&s.inner));
        if !in_place_inner {
            return Err("a handler called from the trap handler switched again".into());
        }
        if irq.contains(&s.sp) && task.contains(&s.rsp) {
            if s.active && task.contains(&s.link) && s.link < s.rsp {
                return Ok(Seen::Switched);
            }
        } else if irq.contains(&s.sp) && irq.contains(&s.rsp) {
            if s.active && s.sp < s.rsp {
                return Ok(Seen::InPlaceIrq);
            }
        } else if task.contains(&s.sp)
            && task.contains(&s.rsp)
            && !s.active
            && s.link == 0
            && s.sp < s.rsp
        {
            return Ok(Seen::InPlaceTask);
        }
        Err("inconsistent".into())
    }

    /// Steps `f` and checks every recorded boundary; returns (steps, trampoline steps).
    fn step_and_check(
        name: &str,
        tramp_filter: impl Fn(&str) -> bool,
        f: impl FnOnce() -> bool,
    ) -> (usize, usize) {
        let irq = irqstack::prepare_irq_stack().unwrap();
        let task = thread_stack();
        let tos = irq.end - irqstack::TOP_SLOT_OFFSET;
        STEPS.store(0, SeqCst);
        let ok = support::single_step(f);
        let n = STEPS.load(SeqCst);
        assert!(ok, "{name}: the stepped call returned a wrong value");
        assert!(n > 0 && n < STEP_CAP, "{name}: {n} steps");
        let steps: Vec<Step> = STEP_LOG[..n]
            .iter()
            .map(|r| {
                let v = [0, 1, 2, 3, 4, 5].map(|i| r[i].load(Relaxed));
                Step {
                    rip: v[0],
                    rsp: v[1],
                    sp: v[2],
                    link: v[3],
                    active: v[4] == 1,
                    inner: v[5],
                }
            })
            .collect();
        let seen: Vec<Seen> = steps
            .iter()
            .map(|s| classify(s, &irq, &task).unwrap_or_else(|e| panic!("{name}: {e} at {s:x?}")))
            .collect();
        // The order of states along the instruction stream: free, claimed (thread stack), on the
        // IRQ stack, claimed (back on the thread stack), free. Nothing else, nowhere else.
        let mut runs = seen.clone();
        runs.dedup();
        assert_eq!(
            runs,
            [
                Seen::Switched,
                Seen::InPlaceTask,
                Seen::InPlaceIrq,
                Seen::InPlaceTask,
                Seen::Switched
            ],
            "{name}: state sequence"
        );

        // The trampoline: the recorded rips inside it, in order, are its instructions.
        let ranges = symbol_ranges(tramp_filter);
        let tramp = ranges
            .iter()
            .find(|r| steps.iter().any(|s| r.contains(&s.rip)))
            .unwrap_or_else(|| panic!("{name}: no step in any of the trampolines {ranges:x?}"))
            .clone();
        let mut at: Vec<(usize, Seen, &Step)> = steps
            .iter()
            .zip(&seen)
            .filter(|(s, _)| tramp.contains(&s.rip))
            .map(|(s, c)| (s.rip, *c, s))
            .collect();
        at.dedup_by_key(|(rip, _, _)| *rip);
        let rips: Vec<usize> = at.iter().map(|a| a.0).collect();
        // SAFETY: reads one byte of this binary's code at each stepped address (text is readable).
        let opcode = |rip: usize| unsafe { (rip as *const u8).read() };
        let ops: Vec<u8> = rips.iter().map(|&r| opcode(r)).collect();
        // mov [tos], rsp; mov rsp, tos; call; mov rcx, rsp; mov rsp, [rsp]; mov [rcx], 0; ret.
        assert_eq!(
            rips.len(),
            7,
            "{name}: trampoline steps {rips:x?} ops {ops:x?}"
        );
        assert!(
            rips.windows(2).all(|w| w[0] < w[1]),
            "{name}: not straight-line {rips:x?}"
        );
        assert_eq!(rips[0], tramp.start, "{name}");
        // The ret is the last instruction of the way back (followed by an `int3` with the `sls`
        // feature, and by the landing pad with `panic = "unwind"`).
        let ret = *rips.last().unwrap();
        assert!(
            ret < tramp.end,
            "{name}: the ret at {ret:#x} is outside {tramp:x?}"
        );
        assert_eq!(ops[2], 0xe8, "{name}: call");
        assert_eq!(ops[6], 0xc3, "{name}: ret");
        // REX.W moves: the claim, the switch, and the three of the way back.
        for i in [0, 1, 3, 4, 5] {
            assert_eq!(
                ops[i], 0x48,
                "{name}: instruction {i} is a 64-bit mov: {ops:x?}"
            );
        }
        let states: Vec<Seen> = at.iter().map(|a| a.1).collect();
        use Seen::{InPlaceIrq as Irq, InPlaceTask as Task, Switched as Free};
        // The trampoline claims (its first store) and releases (its last one): free before the
        // claim and at the ret, in use in between, on the IRQ stack from the switch until the
        // switch back.
        assert_eq!(states, [Free, Task, Irq, Irq, Irq, Task, Free], "{name}");
        // At `mov [tos], rsp` the stepped rsp is the value the switch saves; every handler that ran
        // in place on the IRQ stack found exactly that link in the top slot.
        let saved = at[0].2.rsp;
        assert!(
            steps
                .iter()
                .zip(&seen)
                .filter(|(_, c)| **c == Irq)
                .all(|(s, _)| s.link == saved),
            "{name}: top slot"
        );
        assert_eq!(at[2].2.rsp, tos, "{name}: rsp at the call is the top slot");
        assert_eq!(
            at[3].2.rsp, tos,
            "{name}: rsp back at the top slot after the call"
        );
        // `mov rsp, [rsp]` switches back to the saved stack pointer; the release and the ret
        // run there.
        assert_eq!(
            at[5].2.rsp, saved,
            "{name}: the switch back restores the saved rsp"
        );
        assert_eq!(at[6].2.rsp, saved, "{name}: ret from the saved rsp");
        assert_released_and_switching(&irq, &task);
        (n, rips.len())
    }

    /// Steps `f`, called on the IRQ stack (so every handler call in it is nested and runs in
    /// place), and checks every recorded boundary: the stepped code never leaves the IRQ stack, the
    /// trap handler always runs in place below it, some steps are inside the wrapper whose symbol
    /// passes `wrapper_filter` (it really ran out of line) and none is inside a trampoline (it did not
    /// switch). Afterwards the IRQ stack is free and the next call switches to it. Returns (steps,
    /// wrapper steps).
    fn step_nested_and_check(
        name: &str,
        wrapper_filter: impl Fn(&str) -> bool,
        f: impl FnOnce() -> bool,
    ) -> (usize, usize) {
        let irq = irqstack::prepare_irq_stack().unwrap();
        let task = thread_stack();
        STEPS.store(0, SeqCst);
        let (ok, outer_sp) = irqstack::run_on_irqstack(|| (support::single_step(f), here()));
        let n = STEPS.load(SeqCst);
        assert!(
            irq.contains(&outer_sp),
            "{name}: run_on_irqstack did not switch"
        );
        assert!(ok, "{name}: the stepped call returned a wrong value");
        assert!(n > 0 && n < STEP_CAP, "{name}: {n} steps");
        let wrappers = symbol_ranges(wrapper_filter);
        let trampolines = symbol_ranges(|s| s.contains("__irqstack_trampoline"));
        let mut in_wrapper = 0;
        for r in &STEP_LOG[..n] {
            let v = [0, 1, 2, 3, 4, 5].map(|i| r[i].load(Relaxed));
            let s = Step {
                rip: v[0],
                rsp: v[1],
                sp: v[2],
                link: v[3],
                active: v[4] == 1,
                inner: v[5],
            };
            let seen =
                classify(&s, &irq, &task).unwrap_or_else(|e| panic!("{name}: {e} at {s:x?}"));
            assert_eq!(seen, Seen::InPlaceIrq, "{name}: at {s:x?}");
            assert!(
                !trampolines.iter().any(|t| t.contains(&s.rip)),
                "{name}: the nested call switched at {s:x?}"
            );
            in_wrapper += usize::from(wrappers.iter().any(|w| w.contains(&s.rip)));
        }
        assert!(
            in_wrapper > 0,
            "{name}: no step inside the out-of-line wrapper {wrappers:x?}"
        );
        assert_released_and_switching(&irq, &task);
        (n, in_wrapper)
    }

    #[test]
    fn handler_entered_at_every_instruction_of_the_switch() {
        let _one_at_a_time = stepping();
        let report = std::thread::spawn(|| {
            let is_tramp = |fn_name: &'static str| {
                move |sym: &str| sym.contains(fn_name) && sym.contains("__irqstack_trampoline")
            };
            let reg = step_and_check("register form", is_tramp("step_target_reg"), || {
                step_target_reg(std::hint::black_box(13), std::hint::black_box(3)) == 42
            });
            let block = step_and_check("block form", is_tramp("step_target_block"), || {
                step_target_block(std::hint::black_box(Wide([2, 4, 8, 12, 16]))) == 42
            });
            let v = [40u64, 2];
            let closure = step_and_check(
                "closure form",
                |sym| sym.contains("closure_trampoline"),
                || irqstack::run_on_irqstack(|| v.iter().sum::<u64>()) == 42,
            );
            let outline = step_and_check("out of line", is_tramp("step_target_outline"), || {
                step_target_outline(std::hint::black_box(13), std::hint::black_box(3)) == 42
            });
            let ptr: extern "C" fn(u64, u64) -> u64 = std::hint::black_box(step_target_extern_c);
            let extern_c = step_and_check(
                "extern \"C\" through a pointer",
                is_tramp("step_target_extern_c"),
                || ptr(std::hint::black_box(13), std::hint::black_box(3)) == 42,
            );
            [reg, block, closure, outline, extern_c]
        })
        .join()
        .unwrap();
        println!(
            "single-stepped (steps, trampoline instructions): register {:?}, block {:?}, closure {:?}, \
             out of line {:?}, extern \"C\" through a pointer {:?}",
            report[0], report[1], report[2], report[3], report[4]
        );
    }

    /// Out-of-line handlers called on the IRQ stack (nested): a handler entered at every instruction
    /// of the wrapper's in-place path runs in place too, and the IRQ stack is free afterwards.
    #[test]
    fn handler_entered_at_every_instruction_of_a_nested_out_of_line_call() {
        let _one_at_a_time = stepping();
        let report = std::thread::spawn(|| {
            let is_wrapper = |fn_name: &'static str| {
                move |sym: &str| sym.contains(fn_name) && !sym.contains("__irqstack")
            };
            let outline = step_nested_and_check(
                "nested out of line",
                is_wrapper("step_target_outline"),
                || step_target_outline(std::hint::black_box(13), std::hint::black_box(3)) == 42,
            );
            let ptr: extern "C" fn(u64, u64) -> u64 = std::hint::black_box(step_target_extern_c);
            let extern_c = step_nested_and_check(
                "nested extern \"C\" through a pointer",
                is_wrapper("step_target_extern_c"),
                || ptr(std::hint::black_box(13), std::hint::black_box(3)) == 42,
            );
            [outline, extern_c]
        })
        .join()
        .unwrap();
        println!(
            "single-stepped nested (steps, steps in the wrapper): out of line {:?}, extern \"C\" \
             through a pointer {:?}",
            report[0], report[1]
        );
    }
}
