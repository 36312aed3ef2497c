//! The workload: the timer interrupt, its handler on the IRQ stack, the softirq in which ticks
//! nest, the frame-pointer walk, and the end-of-run checks.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};

use crate::hw;
use crate::percpu::{self, IN_SOFTIRQ, IRQ_DEPTH, MAX_HARTS};
use crate::trap::{FRAME_SIZE, TrapFrame};

pub const SCENARIO: &str = if cfg!(feature = "break-in-use") { "break-in-use" } else { "workload" };

/// Timer period: 1 ms at the 10 MHz timebase.
const PERIOD: u64 = hw::TIMEBASE_HZ / 1000;
/// Ticks each hart handles before the run ends.
const TICKS_TARGET: u64 = 200;
/// Give up (and fail) after this many ticks on one hart (5 s).
const TICKS_DEADLINE: u64 = 5_000;
/// Every this many softirq runs, the softirq lasts until a tick has nested in it.
const NEST_EVERY: u64 = 4;
/// Frames the walk records at most.
pub const WALK_MAX: usize = 16;

pub static GO: AtomicBool = AtomicBool::new(false);

pub struct Stats {
    pub ticks: AtomicU64,
    /// Ticks that interrupted task context (switched to the IRQ stack).
    pub switched: AtomicU64,
    /// Ticks that arrived on the IRQ stack (in the softirq) and ran in place.
    pub nested: AtomicU64,
    pub softirq_runs: AtomicU64,
    /// Softirq runs that waited for a nested tick.
    pub softirq_waits: AtomicU64,
    /// Switched ticks whose top slot was checked against the caller's stack pointer.
    pub top_slot_checks: AtomicU64,
    /// The lowest handler stack pointer seen.
    pub min_sp: AtomicUsize,
    /// The frame-pointer walk: (frame pointer, return address) pairs.
    pub walk_len: AtomicUsize,
    pub walk_fp: [AtomicUsize; WALK_MAX],
    pub walk_ra: [AtomicUsize; WALK_MAX],
    pub done: AtomicBool,
}

pub static STATS: [Stats; MAX_HARTS] = [const {
    Stats {
        ticks: AtomicU64::new(0),
        switched: AtomicU64::new(0),
        nested: AtomicU64::new(0),
        softirq_runs: AtomicU64::new(0),
        softirq_waits: AtomicU64::new(0),
        top_slot_checks: AtomicU64::new(0),
        min_sp: AtomicUsize::new(usize::MAX),
        walk_len: AtomicUsize::new(0),
        walk_fp: [const { AtomicUsize::new(0) }; WALK_MAX],
        walk_ra: [const { AtomicUsize::new(0) }; WALK_MAX],
        done: AtomicBool::new(false),
    }
}; MAX_HARTS];

fn stats() -> &'static Stats {
    &STATS[percpu::cpu_id()]
}

/// Bytes between the top of an IRQ stack and its top slot.
pub fn top_slot_offset() -> usize {
    16
}

/// Each hart: ticks until it has done its share, in the idle loop (`wfi` with interrupts on).
pub fn cpu_main(cpu: usize) {
    hw::sbi_set_timer(hw::now() + PERIOD);
    hw::sie_set(hw::SIE_STIE);
    idle_loop(cpu);
    hw::irq_disable();
    hw::sie_clear(hw::SIE_STIE);
}

/// The code the ticks interrupt: `wfi` with interrupts enabled. Not inlined, so that it has a
/// frame and a name of its own in the walk.
#[inline(never)]
fn idle_loop(cpu: usize) {
    let s = &STATS[cpu];
    hw::irq_enable();
    while !s.done.load(SeqCst) {
        hw::wait_for_interrupt();
    }
    hw::irq_disable();
}

/// The timer interrupt, from `trap_rust` (interrupts off), on the interrupted stack: counts the
/// nesting depth and calls the handler.
pub fn timer_interrupt(frame: &mut TrapFrame) {
    let depth = percpu::read(&raw mut IRQ_DEPTH) + 1;
    percpu::write(&raw mut IRQ_DEPTH, depth);
    let frame_addr = frame as *mut TrapFrame as usize;
    let nested = depth > 1;
    let caller_sp = hw::sp();
    timer_tick(frame_addr, caller_sp, nested);
    percpu::write(&raw mut IRQ_DEPTH, depth - 1);
}

/// The timer handler.
#[inline(never)]
fn timer_tick(frame_addr: usize, caller_sp: usize, nested: bool) {
    let _ = caller_sp;
    let cpu = percpu::cpu_id();
    let s = stats();
    let ticks = s.ticks.fetch_add(1, Relaxed) + 1;
    let sp = hw::sp();
    s.min_sp.fetch_min(sp, Relaxed);
    if nested {
        check!(
            sp < frame_addr,
            "nested tick: handler sp {sp:#x} not below its trap frame {frame_addr:#x}"
        );
        s.nested.fetch_add(1, Relaxed);
    } else {
        s.switched.fetch_add(1, Relaxed);
    }
    // Re-arm first: this clears STIP, so the softirq below can enable interrupts.
    let finished = ticks >= TICKS_TARGET
        && s.nested.load(Relaxed) > 0
        && s.walk_len.load(Relaxed) > 0;
    check!(ticks < TICKS_DEADLINE, "cpu {cpu}: {ticks} ticks and the run has not completed");
    if finished {
        hw::sbi_set_timer(u64::MAX);
        s.done.store(true, SeqCst);
    } else {
        hw::sbi_set_timer(hw::now() + PERIOD);
    }
    if !nested && ticks >= 10 && s.walk_len.load(Relaxed) == 0 {
        take_walk(s);
    }
    if !nested && !finished && !percpu::read(&raw mut IN_SOFTIRQ) {
        softirq(s);
    }
}

/// `do_softirq` at the end of a tick: on the IRQ stack with interrupts enabled. Every
/// `NEST_EVERY`th run lasts until a tick has nested in it (at most three periods).
#[inline(never)]
fn softirq(s: &Stats) {
    percpu::write(&raw mut IN_SOFTIRQ, true);
    let runs = s.softirq_runs.fetch_add(1, Relaxed) + 1;
    let nested_before = s.nested.load(Relaxed);
    hw::irq_enable();
    if runs % NEST_EVERY == 0 {
        s.softirq_waits.fetch_add(1, Relaxed);
        let start = hw::now();
        while s.nested.load(Relaxed) == nested_before && hw::now() - start < 3 * PERIOD {
            core::hint::spin_loop();
        }
    }
    hw::irq_disable();
    percpu::write(&raw mut IN_SOFTIRQ, false);
}

/// The frame-pointer walk from here: each record is `[s0 - 16]` = the caller's s0, `[s0 - 8]` =
/// the return address. Records first on the IRQ stack (this function, the handler), then,
/// across the switch, on the task stack (`trap_rust`, the trap entry's record whose "return
/// address" is `sepc` in `idle_loop`, then `cpu_main`, `kernel_main_*`), until s0 = 0.
#[inline(never)]
fn take_walk(s: &Stats) {
    let cpu = percpu::cpu_id();
    let irq = percpu::irq_stack(cpu);
    let task = percpu::task_stack(cpu);
    let mut fp = hw::fp();
    let mut n = 0;
    while fp != 0 && n < WALK_MAX {
        check!(
            fp % 8 == 0 && (irq.contains(&(fp - 16)) || task.contains(&(fp - 16))),
            "walk: frame pointer {fp:#x} is on neither of cpu {cpu}'s stacks"
        );
        // SAFETY: `fp - 16 .. fp` lies on one of this hart's stacks (checked), where the
        // function owning the frame stored its record.
        let (prev, ra) = unsafe { (((fp - 16) as *const usize).read(), ((fp - 8) as *const usize).read()) };
        s.walk_fp[n].store(fp, Relaxed);
        s.walk_ra[n].store(ra, Relaxed);
        n += 1;
        fp = prev;
    }
    s.walk_len.store(n, SeqCst);
}

/// The boot hart, after its own share: waits for the others, prints the report, checks, exits.
pub fn finish(harts: usize) -> ! {
    let mut spins = 0u64;
    while !(0..harts).all(|c| STATS[c].done.load(SeqCst)) {
        spins += 1;
        check!(spins < 2_000_000_000, "the other harts did not finish");
        core::hint::spin_loop();
    }
    for c in 0..harts {
        println!("hart: cpu {c} finished");
    }
    println!("cpu | ticks | switched | nested | softirq | softirq waits | top-slot checks | deepest IRQ stack use | lowest handler sp");
    for c in 0..harts {
        let s = &STATS[c];
        println!(
            "stats: cpu {c} ticks {} switched {} nested {} softirq {} waits {} top_slot_checks {} deepest {} min_sp {:#x}",
            s.ticks.load(Relaxed),
            s.switched.load(Relaxed),
            s.nested.load(Relaxed),
            s.softirq_runs.load(Relaxed),
            s.softirq_waits.load(Relaxed),
            s.top_slot_checks.load(Relaxed),
            percpu::irq_stack_depth(c),
            s.min_sp.load(Relaxed),
        );
    }
    for c in 0..harts {
        let s = &STATS[c];
        let irq = percpu::irq_stack(c);
        for i in 0..s.walk_len.load(Relaxed) {
            let fp = s.walk_fp[i].load(Relaxed);
            println!(
                "walk: cpu {c} frame {i} fp {fp:#x} ra {:#x} stack {}",
                s.walk_ra[i].load(Relaxed),
                if irq.contains(&(fp - 16)) { "irq" } else { "task" }
            );
        }
    }
    for c in 0..harts {
        let s = &STATS[c];
        check!(s.ticks.load(Relaxed) >= TICKS_TARGET, "cpu {c}: too few ticks");
        check!(s.nested.load(Relaxed) > 0, "cpu {c}: no tick nested in the softirq");
        check!(s.walk_len.load(Relaxed) > 0, "cpu {c}: no walk");
        let depth = percpu::irq_stack_depth(c);
        check!(depth > 0 && depth < percpu::IRQ_STACK_SIZE, "cpu {c}: IRQ stack use {depth}");
    }
    let _ = FRAME_SIZE;
    println!("all checks passed");
    hw::exit_pass()
}
