//! irq_demo: interrupts in user space.
//!
//! Four "CPU" threads each get their own guard-paged IRQ stack. A "device" thread raises a stream
//! of queued real-time signals (the interrupts) at them, two vectors that may interrupt each
//! other. Every signal handler is an `#[on_irqstack] extern "C" fn`. The CPUs meanwhile run a
//! "softirq" on their IRQ stack in a loop, so many interrupts arrive while the IRQ stack is in use
//! and nest in place, as in the kernel.
//!
//! At the end it prints, per CPU: interrupts raised and handled (they must match), how many ran
//! nested, how many saw a valid link back to the interrupted stack, and the deepest IRQ-stack use;
//! and one backtrace taken inside a handler, showing the frames on the IRQ stack, the trampoline
//! and the interrupted code on the CPU's own stack. It exits non-zero if any check fails.
//!
//! Run: `cargo run --release --example irq_demo`

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use irqstack::on_irqstack;

const CPUS: usize = 4;
/// Interrupts raised per CPU: 25 000, or `IRQ_DEMO_IRQS_PER_CPU` (the valgrind test shrinks the
/// run with it).
fn irqs_per_cpu() -> u64 {
    std::env::var("IRQ_DEMO_IRQS_PER_CPU")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25_000)
}

struct CpuStats {
    raised: AtomicU64,
    handled: AtomicU64,
    nested: AtomicU64,
    on_irq_stack: AtomicU64,
    linked: AtomicU64,
    deepest: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: CpuStats = CpuStats {
    raised: AtomicU64::new(0),
    handled: AtomicU64::new(0),
    nested: AtomicU64::new(0),
    on_irq_stack: AtomicU64::new(0),
    linked: AtomicU64::new(0),
    deepest: AtomicUsize::new(0),
};
static STATS: [CpuStats; CPUS] = [ZERO; CPUS];
static STOP: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Which CPU this thread is (usize::MAX: not a CPU thread).
    static CPU: Cell<usize> = const { Cell::new(usize::MAX) };
    /// Handler nesting depth on this CPU.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// This CPU thread's own stack, `[low, high)`, to check the link the switch saves.
    static TASK_STACK: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

fn sp() -> usize {
    let x = 0u8;
    std::hint::black_box(&x) as *const u8 as usize
}

/// The interrupt entry: installed with `sigaction`, runs on this CPU's IRQ stack.
///
/// Everything here is async-signal-safe: atomics and thread-locals without destructors.
#[on_irqstack]
extern "C" fn irq_entry(signal: i32, _info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    let cpu = CPU.get();
    let Some(stats) = STATS.get(cpu) else { return };
    let depth = DEPTH.get() + 1;
    DEPTH.set(depth);
    if depth > 1 {
        stats.nested.fetch_add(1, Relaxed);
    }
    let here = sp();
    if let Some(irq) = irqstack::irq_stack_bounds()
        && irq.contains(&here)
    {
        stats.on_irq_stack.fetch_add(1, Relaxed);
        stats.deepest.fetch_max(irq.end - here, Relaxed);
        // The switch saved the interrupted stack pointer in the top slot: it must point into
        // this CPU's own stack (where the kernel pushed the signal frame, or where the softirq
        // was called from).
        let (lo, hi) = TASK_STACK.get();
        if irqstack::interrupted_sp().is_some_and(|s| (lo..hi).contains(&s)) {
            stats.linked.fetch_add(1, Relaxed);
        }
    }
    // A little work per interrupt, as a device driver would do.
    std::hint::black_box((0..64u64).fold(signal as u64, |a, b| a.rotate_left(5) ^ b));
    stats.handled.fetch_add(1, Relaxed);
    DEPTH.set(depth - 1);
}

/// Deferred work that the CPU runs on its IRQ stack; interrupts land on top of it and nest.
#[on_irqstack]
fn softirq(rounds: u64) -> u64 {
    DEPTH.set(DEPTH.get() + 1);
    let r = (0..rounds).fold(0u64, |a, b| std::hint::black_box(a.wrapping_mul(31) ^ b));
    DEPTH.set(DEPTH.get() - 1);
    r
}

/// A handler that captures a backtrace: frames on the IRQ stack, then the caller's.
#[on_irqstack]
fn capture_backtrace() -> String {
    std::backtrace::Backtrace::force_capture().to_string()
}

fn install(signal: i32) {
    // SAFETY: a zeroed sigaction is valid; we fill in a handler with the SA_SIGINFO signature,
    // an empty mask (so the other vector may interrupt this one: nesting) and SA_RESTART.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = irq_entry as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(signal, &sa, std::ptr::null_mut()), 0);
    }
}

fn cpu_main(cpu: usize, ready: &AtomicUsize) -> Option<String> {
    CPU.set(cpu);
    let top = sp();
    // Default Rust thread stacks are 2 MiB; the link must land within them.
    TASK_STACK.set((top.saturating_sub(2 << 20), top + 4096));
    irqstack::prepare_irq_stack().expect("cannot map the IRQ stack");
    let bt = (cpu == 0).then(capture_backtrace);
    ready.fetch_add(1, Relaxed);
    let mut acc = 0u64;
    while !STOP.load(Relaxed) {
        acc ^= softirq(2_000);
        // Some work off the IRQ stack too: interrupts landing here switch.
        acc ^= (0..2_000u64).fold(acc, |a, b| std::hint::black_box(a.rotate_left(3) ^ b));
    }
    std::hint::black_box(acc);
    bt
}

fn main() {
    let vectors = [libc::SIGRTMIN(), libc::SIGRTMIN() + 1];
    vectors.iter().for_each(|&v| install(v));
    let started = Instant::now();
    let ready = AtomicUsize::new(0);

    let (bt, ranges) = std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        let cpus: Vec<_> = (0..CPUS)
            .map(|cpu| {
                let tx = tx.clone();
                let ready = &ready;
                s.spawn(move || {
                    // SAFETY: pthread_self has no preconditions.
                    tx.send((cpu, unsafe { libc::pthread_self() })).unwrap();
                    let bt = cpu_main(cpu, ready);
                    (bt, irqstack::irq_stack_bounds())
                })
            })
            .collect();
        let mut threads = [0; CPUS];
        for _ in 0..CPUS {
            let (cpu, t) = rx.recv().unwrap();
            threads[cpu] = t;
        }
        while ready.load(Relaxed) < CPUS {
            std::thread::yield_now();
        }

        // The device: queued real-time signals, so none coalesce. When the queue is full
        // (EAGAIN), wait for the CPUs to drain it.
        for i in 0..irqs_per_cpu() * CPUS as u64 {
            let cpu = (i % CPUS as u64) as usize;
            let vector = vectors[(i / CPUS as u64 % 2) as usize];
            loop {
                let value = libc::sigval {
                    sival_ptr: cpu as *mut libc::c_void,
                };
                // SAFETY: `threads[cpu]` is a live thread of this scope; the signal has a handler.
                let rc = unsafe { libc::pthread_sigqueue(threads[cpu], vector, value) };
                if rc == 0 {
                    STATS[cpu].raised.fetch_add(1, Relaxed);
                    break;
                }
                assert_eq!(rc, libc::EAGAIN, "pthread_sigqueue failed");
                std::thread::yield_now();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while STATS
            .iter()
            .any(|s| s.handled.load(Relaxed) < s.raised.load(Relaxed))
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        STOP.store(true, Relaxed);
        let mut bt = None;
        let mut ranges = Vec::new();
        for c in cpus {
            let (b, r) = c.join().unwrap();
            bt = bt.or(b);
            ranges.push(r);
        }
        (bt, ranges)
    });

    println!(
        "irq_demo: {CPUS} CPUs, {} interrupts in {:.2?}\n",
        irqs_per_cpu() * CPUS as u64,
        started.elapsed()
    );
    println!(
        "{:>3} {:>8} {:>8} {:>8} {:>10} {:>8} {:>14}  IRQ stack",
        "cpu", "raised", "handled", "nested", "on irq stk", "linked", "deepest (B)"
    );
    let mut ok = true;
    for (cpu, s) in STATS.iter().enumerate() {
        let (raised, handled) = (s.raised.load(Relaxed), s.handled.load(Relaxed));
        let (on_irq, linked) = (s.on_irq_stack.load(Relaxed), s.linked.load(Relaxed));
        ok &= raised == handled && linked == on_irq && raised == irqs_per_cpu();
        let range = ranges[cpu]
            .as_ref()
            .map_or("-".into(), |r| format!("{:#x}..{:#x}", r.start, r.end));
        println!(
            "{cpu:>3} {raised:>8} {handled:>8} {:>8} {on_irq:>10} {linked:>8} {:>14}  {range}",
            s.nested.load(Relaxed),
            s.deepest.load(Relaxed),
        );
    }
    println!(
        "\nbacktrace taken inside a handler on CPU 0 (IRQ stack, trampoline, then the caller):"
    );
    let bt = bt.unwrap_or_default();
    let frames: Vec<&str> = bt
        .lines()
        .filter(|l| !l.trim_start().starts_with("at "))
        .take_while(|l| !l.contains("std::thread"))
        .collect();
    for f in &frames {
        println!("  {}", f.trim());
    }
    let linked_back = frames.iter().any(|f| f.contains("cpu_main"));
    if !linked_back {
        println!("  (the backtrace does not reach cpu_main!)");
    }
    if ok && linked_back {
        println!(
            "\nall interrupts handled; every switched handler saw the link to its CPU's stack"
        );
    } else {
        println!("\nFAILED: counts differ or the link back is missing");
        std::process::exit(1);
    }
}
