//! The workload: the timer interrupt, its handler on the IRQ stack, the softirq in which ticks
//! nest, the frame-pointer walk, and the end-of-run checks.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};

use crate::hw;
use crate::percpu::{self, IN_SOFTIRQ, IRQ_DEPTH, MAX_HARTS};
use crate::trap::TrapFrame;

pub const SCENARIO: &str = if cfg!(feature = "break-in-use") {
    "break-in-use"
} else if cfg!(feature = "overflow") {
    "overflow"
} else {
    "workload"
};

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
    /// Claims (the backend's `assert_irqs_disabled` hook runs before each in debug builds).
    pub claims: AtomicU64,
    /// Softirq runs that waited for a nested tick.
    pub softirq_waits: AtomicU64,
    /// Switched ticks whose top slot was checked against the caller's stack pointer.
    pub top_slot_checks: AtomicU64,
    /// The lowest handler stack pointer seen.
    pub min_sp: AtomicUsize,
    /// The frame-pointer walk: (frame pointer, return address) pairs.
    pub walk_len: AtomicUsize,
    /// `interrupted_sp()` of the tick that walked.
    pub walk_isp: AtomicUsize,
    pub walk_fp: [AtomicUsize; WALK_MAX],
    pub walk_ra: [AtomicUsize; WALK_MAX],
    pub done: AtomicBool,
    /// `run_on_irqstack` ran its closure on this hart's IRQ stack.
    pub closure_checked: AtomicBool,
}

pub static STATS: [Stats; MAX_HARTS] = [const {
    Stats {
        ticks: AtomicU64::new(0),
        switched: AtomicU64::new(0),
        nested: AtomicU64::new(0),
        softirq_runs: AtomicU64::new(0),
        claims: AtomicU64::new(0),
        softirq_waits: AtomicU64::new(0),
        top_slot_checks: AtomicU64::new(0),
        min_sp: AtomicUsize::new(usize::MAX),
        walk_len: AtomicUsize::new(0),
        walk_isp: AtomicUsize::new(0),
        walk_fp: [const { AtomicUsize::new(0) }; WALK_MAX],
        walk_ra: [const { AtomicUsize::new(0) }; WALK_MAX],
        done: AtomicBool::new(false),
        closure_checked: AtomicBool::new(false),
    }
}; MAX_HARTS];

fn stats() -> &'static Stats {
    &STATS[percpu::cpu_id()]
}

/// Each hart: ticks until it has done its share, in the idle loop (`wfi` with interrupts on).
pub fn cpu_main(cpu: usize) {
    // The closure form once, interrupts still off: it switches to this hart's IRQ stack too.
    let (sp, active, isp) = irqstack::run_on_irqstack(|| {
        (
            hw::sp(),
            irqstack::irqstack_active(),
            irqstack::interrupted_sp(),
        )
    });
    check!(
        percpu::irq_stack(cpu).contains(&sp) && active,
        "run_on_irqstack: closure ran at sp {sp:#x}, irqstack_active() {active}"
    );
    check!(
        isp.is_some_and(|isp| percpu::task_stack(cpu).contains(&isp)),
        "run_on_irqstack: interrupted_sp() {isp:#x?} is not on cpu {cpu}'s task stack"
    );
    check!(
        !percpu::irq_stack_in_use() && !irqstack::irqstack_active(),
        "run_on_irqstack: the IRQ stack is still claimed after it"
    );
    STATS[cpu].closure_checked.store(true, SeqCst);
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
/// nesting depth and calls the handler, which switches to this hart's IRQ stack unless it is in
/// use (a tick that arrived in the softirq, whose trap frame is on the IRQ stack already).
pub fn timer_interrupt(frame: &mut TrapFrame) {
    let depth = percpu::read(&raw mut IRQ_DEPTH) + 1;
    percpu::write(&raw mut IRQ_DEPTH, depth);
    let frame_addr = frame as *mut TrapFrame as usize;
    let nested = on_irq_stack(frame_addr);
    check!(
        nested == (depth > 1),
        "tick at depth {depth}: trap frame {frame_addr:#x} {} the IRQ stack",
        if nested { "on" } else { "not on" }
    );
    // The stack pointer at the handler call: the trampoline's frame record goes right below it,
    // and the top slot gets the record's address.
    let caller_sp = hw::sp();
    timer_tick(frame_addr, caller_sp, nested);
    // Released exactly when this entry claimed: still in use after a nested tick (the outer
    // handler owns the stack), free after a switched one.
    check!(
        percpu::irq_stack_in_use() == nested,
        "after a {} tick the in-use flag is {}",
        if nested { "nested" } else { "switched" },
        percpu::irq_stack_in_use()
    );
    check!(
        irqstack::irqstack_active() == nested,
        "after a {} tick irqstack_active() is {}",
        if nested { "nested" } else { "switched" },
        irqstack::irqstack_active()
    );
    percpu::write(&raw mut IRQ_DEPTH, depth - 1);
}

/// Whether `addr` lies on this hart's IRQ stack.
fn on_irq_stack(addr: usize) -> bool {
    percpu::irq_stack(percpu::cpu_id()).contains(&addr)
}

/// The timer handler: on this hart's IRQ stack, switched there by the library (a tick from the
/// idle loop) or in place (a tick nested in the softirq, which already runs there).
#[irqstack::on_irqstack]
fn timer_tick(frame_addr: usize, caller_sp: usize, nested: bool) {
    let cpu = percpu::cpu_id();
    let s = stats();
    let ticks = s.ticks.fetch_add(1, Relaxed) + 1;
    let sp = hw::sp();
    s.min_sp.fetch_min(sp, Relaxed);
    let mine = percpu::irq_stack(cpu);
    check!(
        mine.contains(&sp),
        "tick: handler sp {sp:#x} is not on cpu {cpu}'s IRQ stack {mine:#x?}"
    );
    check!(
        irqstack::irqstack_active(),
        "tick: irqstack_active() false inside the handler"
    );
    check!(
        irqstack::irq_stack_bounds() == Some(mine.clone()),
        "tick: irq_stack_bounds() {:#x?} is not cpu {cpu}'s",
        irqstack::irq_stack_bounds()
    );
    check!(
        percpu::irq_stack_in_use(),
        "tick: the in-use flag is clear inside the handler"
    );
    // The top slot: the interrupted (task) stack pointer, which `interrupted_sp()` reads.
    let isp = irqstack::interrupted_sp().unwrap_or(0);
    let top_slot = percpu::TOP_SLOTS[cpu].load(Relaxed);
    // SAFETY: the top slot is the highest aligned word of this hart's IRQ stack; the switch
    // wrote it and nothing else does while the stack is claimed.
    let slot = unsafe { (top_slot as *const usize).read_volatile() };
    check!(
        slot == isp,
        "tick: interrupted_sp() {isp:#x} but the top slot {top_slot:#x} holds {slot:#x}"
    );
    check!(
        percpu::task_stack(cpu).contains(&isp),
        "tick: interrupted_sp() {isp:#x} is not on cpu {cpu}'s task stack"
    );
    if nested {
        // In place: below its own trap frame on the same (IRQ) stack.
        check!(
            sp < frame_addr,
            "nested tick: handler sp {sp:#x} is not below its trap frame {frame_addr:#x}: it \
             did not run in place"
        );
        s.nested.fetch_add(1, Relaxed);
    } else {
        // Switched: the trampoline pushed its frame record (saved s0, ra) right below the
        // caller's stack pointer and stored the record's address in the top slot.
        check!(
            isp + 16 == caller_sp,
            "tick: interrupted_sp() {isp:#x} is not the frame record below the caller's sp \
             {caller_sp:#x}"
        );
        s.switched.fetch_add(1, Relaxed);
        s.top_slot_checks.fetch_add(1, Relaxed);
    }
    // Re-arm first: this clears STIP, so the softirq below can enable interrupts.
    let finished =
        ticks >= TICKS_TARGET && s.nested.load(Relaxed) > 0 && s.walk_len.load(Relaxed) > 0;
    check!(
        ticks < TICKS_DEADLINE,
        "cpu {cpu}: {ticks} ticks and the run has not completed"
    );
    if finished {
        hw::sbi_set_timer(u64::MAX);
        s.done.store(true, SeqCst);
    } else {
        hw::sbi_set_timer(hw::now() + PERIOD);
    }
    // The `overflow` boot: the last hart's 20th tick recurses on the IRQ stack until it runs
    // into the guard page.
    if cfg!(feature = "overflow") && cpu == crate::HARTS - 1 && ticks == 20 {
        println!("overflow: cpu {cpu} recursing on its IRQ stack");
        let depth = recurse(0);
        fail!("recursed {depth} levels on the IRQ stack without reaching the guard page");
    }
    if !nested && ticks >= 10 && s.walk_len.load(Relaxed) == 0 {
        s.walk_isp.store(isp, Relaxed);
        take_walk(s);
    }
    if !nested && !finished && !percpu::read(&raw mut IN_SOFTIRQ) {
        softirq(s);
    }
}

/// 512 bytes of frame per level, 64 levels: twice the IRQ stack. The buffer is not initialized
/// (no `memset` call): the prologue's `sd ra` and one byte per level write the frames, so the
/// first store into the guard page is made by this function itself.
#[inline(never)]
fn recurse(level: usize) -> usize {
    let mut buf = core::mem::MaybeUninit::<[u8; 512]>::uninit();
    // SAFETY: a volatile write of one byte into this frame's own buffer, so that the frame is
    // really used.
    unsafe {
        core::ptr::write_volatile(
            buf.as_mut_ptr().cast::<u8>().wrapping_add(level % 512),
            level as u8,
        )
    };
    if level == 64 {
        return level;
    }
    let r = recurse(level + 1);
    // Not a tail call: the frame stays.
    core::hint::black_box(&buf);
    r
}

/// `do_softirq` at the end of a tick: on the IRQ stack with interrupts enabled. Every
/// `NEST_EVERY`th run lasts until a tick has nested in it (at most three periods).
#[inline(never)]
fn softirq(s: &Stats) {
    percpu::write(&raw mut IN_SOFTIRQ, true);
    // The negative boot: a backend that loses its in-use flag here. The next tick that
    // arrives in this softirq then claims the stack again and switches to its top, over the
    // frames of this handler, instead of running in place.
    #[cfg(feature = "break-in-use")]
    percpu::write(&raw mut percpu::irq_stack_inuse, false);
    let runs = s.softirq_runs.fetch_add(1, Relaxed) + 1;
    let nested_before = s.nested.load(Relaxed);
    hw::irq_enable();
    if runs.is_multiple_of(NEST_EVERY) {
        s.softirq_waits.fetch_add(1, Relaxed);
        let start = hw::now();
        while s.nested.load(Relaxed) == nested_before && hw::now() - start < 3 * PERIOD {
            core::hint::spin_loop();
        }
    }
    hw::irq_disable();
    check!(
        on_irq_stack(hw::sp()),
        "softirq: no longer on the IRQ stack after nested ticks"
    );
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
            fp.is_multiple_of(8) && (irq.contains(&(fp - 16)) || task.contains(&(fp - 16))),
            "walk: frame pointer {fp:#x} is on neither of cpu {cpu}'s stacks"
        );
        // SAFETY: `fp - 16 .. fp` lies on one of this hart's stacks (checked), where the
        // function owning the frame stored its record.
        let (prev, ra) = unsafe {
            (
                ((fp - 16) as *const usize).read(),
                ((fp - 8) as *const usize).read(),
            )
        };
        s.walk_fp[n].store(fp, Relaxed);
        s.walk_ra[n].store(ra, Relaxed);
        n += 1;
        fp = prev;
    }
    s.walk_len.store(n, SeqCst);
}

/// Every hart had its own IRQ stack: the ranges do not overlap, and each hart's handlers ran
/// within its own.
fn check_stacks_distinct(harts: usize) {
    for c in 0..harts {
        let mine = percpu::irq_stack(c);
        let min_sp = STATS[c].min_sp.load(Relaxed);
        check!(
            mine.contains(&min_sp),
            "cpu {c}: lowest handler sp {min_sp:#x} is not on its IRQ stack {mine:#x?}"
        );
        for d in 0..harts {
            let other = percpu::irq_stack(d);
            check!(
                c == d || mine.end <= other.start || other.end <= mine.start,
                "cpu {c} and cpu {d} share IRQ stack memory"
            );
        }
    }
    println!("check distinct IRQ stacks: ok");
}

/// The walk went from the IRQ stack to the task stack exactly through the switch: first frames
/// on the IRQ stack (the walker, the handler's body), then the trampoline's frame record, whose
/// address the top slot held (`s0 = interrupted_sp() + 16`), then frames on the task stack up to
/// the end of the chain; upwards within each stack.
fn check_walk(c: usize) {
    let s = &STATS[c];
    let n = s.walk_len.load(Relaxed);
    let irq = percpu::irq_stack(c);
    let fps: [usize; WALK_MAX] = core::array::from_fn(|i| s.walk_fp[i].load(Relaxed));
    let on_irq = |fp: usize| irq.contains(&(fp - 16));
    let k = (0..n).take_while(|&i| on_irq(fps[i])).count();
    check!(k >= 2, "cpu {c}'s walk: {k} frames on the IRQ stack");
    check!(
        n > k + 3,
        "cpu {c}'s walk: {} frames on the task stack",
        n - k
    );
    check!(
        (k..n).all(|i| !on_irq(fps[i])),
        "cpu {c}'s walk went back to the IRQ stack"
    );
    let isp = s.walk_isp.load(Relaxed);
    check!(
        fps[k] == isp + 16,
        "cpu {c}'s walk crossed to {:#x}, not to the trampoline's record at interrupted_sp() \
         {isp:#x} + 16",
        fps[k]
    );
    check!(
        (1..n).all(|i| i == k || fps[i] > fps[i - 1]),
        "cpu {c}'s walk does not go upwards within a stack"
    );
    println!(
        "check walk cpu {c}: ok {k} frames on the IRQ stack, {} on the task stack, crossing at interrupted_sp() + 16",
        n - k
    );
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
        let s = &STATS[c];
        println!(
            "stats: cpu {c} ticks {} switched {} nested {} softirq {} waits {} top_slot_checks {} claims {} deepest {} min_sp {:#x}",
            s.ticks.load(Relaxed),
            s.switched.load(Relaxed),
            s.nested.load(Relaxed),
            s.softirq_runs.load(Relaxed),
            s.softirq_waits.load(Relaxed),
            s.top_slot_checks.load(Relaxed),
            s.claims.load(Relaxed),
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
                if irq.contains(&(fp - 16)) {
                    "irq"
                } else {
                    "task"
                }
            );
        }
    }
    for c in 0..harts {
        let s = &STATS[c];
        check!(
            s.ticks.load(Relaxed) >= TICKS_TARGET,
            "cpu {c}: too few ticks"
        );
        check!(
            s.nested.load(Relaxed) > 0,
            "cpu {c}: no tick nested in the softirq"
        );
        check!(s.walk_len.load(Relaxed) > 0, "cpu {c}: no walk");
        check!(
            !cfg!(debug_assertions) || s.claims.load(Relaxed) == s.ticks.load(Relaxed) + 1,
            "cpu {c}: {} claims checked for {} ticks and one run_on_irqstack",
            s.claims.load(Relaxed),
            s.ticks.load(Relaxed)
        );
        let depth = percpu::irq_stack_depth(c);
        check!(
            depth > 0 && depth < percpu::IRQ_STACK_SIZE,
            "cpu {c}: IRQ stack use {depth}"
        );
    }
    for c in 0..harts {
        check!(
            STATS[c].closure_checked.load(SeqCst),
            "cpu {c}: run_on_irqstack not checked"
        );
    }
    println!("check run_on_irqstack: ok on every hart");
    check_stacks_distinct(harts);
    for c in 0..harts {
        check_walk(c);
    }
    println!("all checks passed");
    hw::exit_pass()
}
