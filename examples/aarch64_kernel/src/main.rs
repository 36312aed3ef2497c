//! A bare-metal SMP arm64 test kernel for irqstack: booted by `qemu-system-aarch64 -M virt -cpu
//! cortex-a72 -smp 2 -semihosting -kernel` at EL1 with the MMU off, it starts the second CPU with
//! PSCI `CPU_ON` (the conduit read from the DTB), gives each CPU its per-CPU data (`tpidr_el1`)
//! and a 16 KiB IRQ stack, and takes the EL1 virtual timer's PPI through the GICv2 on both
//! CPUs. Every IRQ goes through the vector table's `irq_entry` (boot.rs) into
//! `#[on_irqstack] fn handle_irq`, whose stack comes from `tpidr_percpu_backend!`
//! (percpu.rs); every few ticks the handler runs a softirq with IRQs unmasked, so that a
//! further tick nests in place on the IRQ stack.
//!
//! Checks, in every tick: the per-CPU data is this CPU's (its number matches MPIDR_EL1; before
//! the switch, and again inside the handler), the handler runs on this CPU's own IRQ stack; a
//! switched tick finds the interrupted sp in the top slot (`interrupted_sp()`), on its task
//! stack, just below the entry frame; a nested tick runs in place, below the frame of the entry
//! it interrupted. Once per CPU, a frame-record walk from
//! inside the handler into the interrupted code. At the end: counts per CPU, the deepest IRQ
//! stack use. Reports on the PL011 and exits through semihosting: status 33 when every check
//! passed, 35 on any failure.
//!
//! Command line (`-append`, read from the DTB's `/chosen/bootargs`): `fault=inuse` (the softirq
//! clears the in-use flag early: a nested tick switches to the top of a stack in use, which must
//! fail the run), `fault=shared` (CPU 1 gets CPU 0's per-CPU offset: its ticks would claim CPU
//! 0's IRQ stack; the check before every claim fails the run at CPU 1's first tick, before the
//! switch), `fault=stray` (CPU 1's IRQ stack pointer points at a stack no CPU owns: its first
//! switched tick runs there, and the handler's check of the stack it runs on fails the run).
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]
// Loops over CPU numbers index several per-CPU tables at once; the number is the point.
#![allow(clippy::needless_range_loop)]

#[macro_use]
mod hw;
mod boot;
mod percpu;

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use irqstack::on_irqstack;

pub const MAX_CPUS: usize = 2;
pub const TASK_STACK_SIZE: usize = 32 * 1024;
/// Timer ticks per second on each CPU.
const TICK_HZ: u64 = 1000;
/// Ticks every CPU must handle before the run ends.
const TICKS_TARGET: u64 = 200;
/// Give up (and fail) when CPU 0 has seen this many ticks (10 s).
const TICKS_DEADLINE: u64 = 10_000;
/// A softirq runs at the end of every this many ticks.
const SOFTIRQ_EVERY: u64 = 4;
/// The idle loop runs a softirq on the IRQ stack (`run_on_irqstack`) every this many wake-ups.
const OWN_STACK_SOFTIRQ_EVERY: u64 = 16;
/// Return addresses kept from a frame-record walk.
const BT_MAX: usize = 16;

/// Per-CPU counters, indexed by the CPU number from MPIDR_EL1 (not by the per-CPU data under
/// test).
struct Stats {
    ticks: AtomicU64,
    switched: AtomicU64,
    nested: AtomicU64,
    softirq_runs: AtomicU64,
    /// `run_on_irqstack` from the idle loop (Linux's `do_softirq_own_stack`): runs, and ticks
    /// that nested in place in it.
    own_stack_runs: AtomicU64,
    own_stack_nested: AtomicU64,
    /// Set while the idle loop's softirq runs on the IRQ stack with IRQs unmasked.
    in_own_stack_softirq: AtomicBool,
    spurious: AtomicU64,
    /// Entries into `handle_irq` not yet returned on this CPU (1: switched, 2: nested).
    depth: AtomicUsize,
    /// The walk: return addresses, and how many came from records on the IRQ stack (the rest
    /// lie on the task stack).
    bt: [AtomicUsize; BT_MAX],
    bt_len: AtomicUsize,
    bt_irq_frames: AtomicUsize,
    /// The interrupted sp of the last switched tick, and the entry frame's address.
    last_interrupted_sp: AtomicUsize,
    last_frame: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)]
const STATS_INIT: Stats = Stats {
    ticks: AtomicU64::new(0),
    switched: AtomicU64::new(0),
    nested: AtomicU64::new(0),
    softirq_runs: AtomicU64::new(0),
    own_stack_runs: AtomicU64::new(0),
    own_stack_nested: AtomicU64::new(0),
    in_own_stack_softirq: AtomicBool::new(false),
    spurious: AtomicU64::new(0),
    depth: AtomicUsize::new(0),
    bt: [const { AtomicUsize::new(0) }; BT_MAX],
    bt_len: AtomicUsize::new(0),
    bt_irq_frames: AtomicUsize::new(0),
    last_interrupted_sp: AtomicUsize::new(0),
    last_frame: AtomicUsize::new(0),
};
static STATS: [Stats; MAX_CPUS] = [STATS_INIT; MAX_CPUS];

/// CPUs that finished their setup.
static ONLINE: AtomicUsize = AtomicUsize::new(0);
static GO: AtomicBool = AtomicBool::new(false);
static STOP: AtomicBool = AtomicBool::new(false);
static STOPPED: AtomicUsize = AtomicUsize::new(0);
/// Timer counts per tick (CNTFRQ / TICK_HZ).
static PERIOD: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    InUse,
    Shared,
    Stray,
}
static FAULT: AtomicUsize = AtomicUsize::new(Fault::None as usize);

fn fault() -> Fault {
    match FAULT.load(Ordering::Relaxed) {
        1 => Fault::InUse,
        2 => Fault::Shared,
        3 => Fault::Stray,
        _ => Fault::None,
    }
}

/// Reads `/chosen/bootargs`; an unknown word fails the run.
fn parse_cmdline() {
    let Some(args) = hw::dtb_prop(b"chosen", b"bootargs") else {
        return;
    };
    for word in args
        .as_str()
        .split(|&b| b == b' ')
        .filter(|w| !w.is_empty())
    {
        let f = match word {
            b"fault=inuse" => Fault::InUse,
            b"fault=shared" => Fault::Shared,
            b"fault=stray" => Fault::Stray,
            _ => fail!(
                "unknown command line word {:?}",
                core::str::from_utf8(word).unwrap_or("(not UTF-8)")
            ),
        };
        FAULT.store(f as usize, Ordering::Relaxed);
    }
}

/// Where `boot.rs` lands every CPU: CPU 0 with `cpu = 0`, the others with their PSCI context id.
#[unsafe(no_mangle)]
extern "C" fn kernel_entry(cpu: usize) -> ! {
    if cpu == 0 {
        boot_cpu()
    } else {
        secondary_cpu(cpu)
    }
}

fn boot_cpu() -> ! {
    println!("irqstack-aarch64-kernel: {MAX_CPUS} CPUs expected");
    parse_cmdline();
    let el = hw::current_el();
    check!(el == 1, "running at EL{el}, expected EL1");
    println!("check el: ok EL{el}");
    check!(
        hw::mpidr_cpu() == 0,
        "CPU 0 has MPIDR Aff0 {}",
        hw::mpidr_cpu()
    );

    let gic = hw::gic_version();
    check!(
        gic == 2,
        "GICD_PIDR2 says GIC architecture version {gic}, expected 2"
    );
    hw::gic_dist_init();
    println!("check gic: ok v{gic} (distributor 0x8000000, CPU interface 0x8010000)");

    let freq = hw::timer_freq();
    check!(freq >= TICK_HZ * 100, "CNTFRQ_EL0 = {freq}");
    PERIOD.store(freq / TICK_HZ, Ordering::Relaxed);

    let method = hw::dtb_prop(b"psci", b"method");
    let conduit = match method.as_ref().map(|m| m.as_str()) {
        Some(b"hvc") => hw::Conduit::Hvc,
        Some(b"smc") => hw::Conduit::Smc,
        Some(other) => fail!(
            "the DTB's /psci method is {:?}",
            core::str::from_utf8(other).unwrap_or("(not UTF-8)")
        ),
        None => fail!("no DTB at {:#x} or no /psci method in it", hw::DTB_ADDR),
    };
    println!("check psci: ok conduit {conduit:?} (from the DTB's /psci method)");

    cpu_setup(0);
    for cpu in 1..MAX_CPUS {
        let status = hw::psci_cpu_on(
            conduit,
            cpu as u64,
            boot::secondary_entry as *const () as usize,
            cpu as u64,
        );
        check!(status == 0, "PSCI CPU_ON of CPU {cpu} returned {status}");
        let deadline = hw::counter() + freq * 2;
        while ONLINE.load(Ordering::SeqCst) <= cpu {
            check!(
                hw::counter() < deadline,
                "CPU {cpu} did not come up within 2 s"
            );
            core::hint::spin_loop();
        }
    }
    println!("cpus online: {}", ONLINE.load(Ordering::SeqCst));
    GO.store(true, Ordering::SeqCst);
    cpu_main(0)
}

fn secondary_cpu(cpu: usize) -> ! {
    check!(
        cpu < MAX_CPUS && hw::mpidr_cpu() == cpu,
        "started as CPU {cpu} with MPIDR Aff0 {}",
        hw::mpidr_cpu()
    );
    cpu_setup(cpu);
    while !GO.load(Ordering::SeqCst) {
        core::hint::spin_loop();
    }
    cpu_main(cpu)
}

/// Per-CPU setup, IRQs masked (as they are from reset): per-CPU data and IRQ stack, the GIC's
/// per-CPU part.
fn cpu_setup(cpu: usize) {
    check!(hw::irqs_masked(), "CPU {cpu} starts with IRQs unmasked");
    let offset_of = if fault() == Fault::Shared && cpu == 1 {
        0
    } else {
        cpu
    };
    percpu::init(cpu, offset_of);
    if fault() == Fault::Stray && cpu == 1 {
        percpu::point_at_stray_stack(cpu);
    }
    hw::gic_cpu_init();
    ONLINE.fetch_add(1, Ordering::SeqCst);
}

fn cpu_main(cpu: usize) -> ! {
    hw::timer_arm(PERIOD.load(Ordering::Relaxed));
    idle_loop(cpu);
    hw::irq_disable();
    hw::timer_stop();
    STOPPED.fetch_add(1, Ordering::SeqCst);
    if cpu == 0 {
        finish();
    }
    loop {
        hw::wfi();
    }
}

/// The interrupted code: IRQs unmasked, `wfi` until every CPU has done its share. CPU 0 decides
/// when that is.
#[inline(never)]
fn idle_loop(cpu: usize) {
    hw::irq_enable();
    let mut wakeups = 0u64;
    while !STOP.load(Ordering::SeqCst) {
        hw::wfi();
        wakeups += 1;
        if cpu == 0 {
            maybe_stop();
        }
        // After the walk (whose first switched tick interrupts the `wfi` above).
        if wakeups.is_multiple_of(OWN_STACK_SOFTIRQ_EVERY)
            && STATS[cpu].bt_len.load(Ordering::Relaxed) > 0
        {
            own_stack_softirq(cpu);
        }
    }
}

/// A softirq run from task context on the IRQ stack, as Linux's `do_softirq_own_stack`: the
/// closure form of the switch, `run_on_irqstack`, claimed with IRQs masked; inside, IRQs are
/// unmasked until a tick has nested in place (or three tick periods have passed).
#[inline(never)]
fn own_stack_softirq(cpu: usize) {
    let s = &STATS[cpu];
    let task = percpu::task_stack(cpu);
    let before = s.own_stack_nested.load(Ordering::Relaxed);
    hw::irq_disable();
    check_percpu_before_claim(cpu, "run_on_irqstack");
    irqstack::run_on_irqstack(|| {
        let own = percpu::irq_stack(cpu);
        let sp = hw::sp();
        check!(
            own.contains(&sp) && irqstack::irqstack_active(),
            "CPU {cpu}: run_on_irqstack runs with sp {sp:#x}, outside its IRQ stack"
        );
        check!(
            irqstack::interrupted_sp().is_some_and(|v| task.contains(&v)),
            "CPU {cpu}: run_on_irqstack: interrupted_sp() {:x?} not on the task stack",
            irqstack::interrupted_sp()
        );
        s.in_own_stack_softirq.store(true, Ordering::Relaxed);
        let deadline = hw::counter() + 3 * PERIOD.load(Ordering::Relaxed);
        hw::irq_enable();
        while s.own_stack_nested.load(Ordering::Relaxed) == before && hw::counter() < deadline {
            core::hint::spin_loop();
        }
        hw::irq_disable();
        s.in_own_stack_softirq.store(false, Ordering::Relaxed);
    });
    check!(
        !irqstack::irqstack_active(),
        "CPU {cpu}: still on the IRQ stack after run_on_irqstack"
    );
    s.own_stack_runs.fetch_add(1, Ordering::Relaxed);
    hw::irq_enable();
}

fn maybe_stop() {
    let done = (0..MAX_CPUS).all(|c| {
        let s = &STATS[c];
        s.ticks.load(Ordering::Relaxed) >= TICKS_TARGET
            && s.nested.load(Ordering::Relaxed) > 0
            && s.own_stack_nested.load(Ordering::Relaxed) > 0
            && s.bt_len.load(Ordering::Relaxed) > 0
    });
    if done {
        STOP.store(true, Ordering::SeqCst);
    } else if STATS[0].ticks.load(Ordering::Relaxed) > TICKS_DEADLINE {
        print_table();
        fail!("the run did not complete within {TICKS_DEADLINE} ticks");
    }
}

/// Rust side of `irq_entry` (boot.rs): on the interrupted stack, IRQs masked.
#[unsafe(no_mangle)]
extern "C" fn irq_entry_rust(frame: *mut boot::Frame) {
    let cpu = hw::mpidr_cpu();
    check_percpu_before_claim(cpu, "IRQ entry");
    handle_irq(frame as usize, cpu);
}

/// Before every claim of the IRQ stack (the IRQ entry, `run_on_irqstack` in the idle loop), still
/// on the stack the CPU runs on: the per-CPU data the backend claims from must be this CPU's.
///
/// The backend's claim is a plain load, test and store of the in-use flag, sound because only
/// the owning CPU touches its copy with IRQs masked. A CPU holding another CPU's per-CPU offset
/// (the `fault=shared` boot) breaks that: when both CPUs' timers fire together, both read the
/// flag clear and both switch to the top of the same stack, each overwriting the other's
/// frames and saved return addresses. The checks inside the handler then come too late: they
/// run on the shared stack, and either CPU may report first, garbled, or jump into the stack
/// (an "unknown reason" exception, EC 0) before it reports at all. Checked here, the first tick
/// of such a CPU fails the run with this report, every time, before it touches the other CPU's
/// stack.
fn check_percpu_before_claim(cpu: usize, at: &str) {
    let says = percpu::this_cpu();
    check!(
        says == cpu,
        "CPU {cpu}: before the switch ({at}), its per-CPU data says CPU {says} (tpidr_el1 {:#x}, \
         top slot {:#x}): it would claim another CPU's IRQ stack",
        hw::tpidr_el1(),
        percpu::this_cpu_stack_ptr()
    );
}

/// The IRQ handler, on this CPU's IRQ stack (or in place when it nests there): acknowledge,
/// check, count, re-arm the timer, end the interrupt, and every few ticks run the softirq with
/// IRQs unmasked.
#[on_irqstack]
fn handle_irq(frame: usize, cpu: usize) {
    let s = &STATS[cpu];
    let depth = s.depth.fetch_add(1, Ordering::Relaxed) + 1;
    let sp = hw::sp();
    let own = percpu::irq_stack(cpu);

    // The per-CPU data under test: this CPU's, and the stack we run on is this CPU's.
    check!(
        own.contains(&sp),
        "CPU {cpu}: handler runs with sp {sp:#x}, outside its IRQ stack {:#x}..{:#x}",
        own.start,
        own.end
    );
    check!(
        percpu::this_cpu() == cpu,
        "CPU {cpu}: its per-CPU data says CPU {} (tpidr_el1 {:#x})",
        percpu::this_cpu(),
        hw::tpidr_el1()
    );
    check!(
        irqstack::irqstack_active() && irqstack::irq_stack_bounds() == Some(own.clone()),
        "CPU {cpu}: irqstack_active() {} / irq_stack_bounds() {:x?}, expected {:#x}..{:#x}",
        irqstack::irqstack_active(),
        irqstack::irq_stack_bounds(),
        own.start,
        own.end
    );
    let task = percpu::task_stack(cpu);
    let in_own_stack_softirq = s.in_own_stack_softirq.load(Ordering::Relaxed);
    match depth {
        1 if in_own_stack_softirq => {
            // In the idle loop's softirq, which holds the IRQ stack: in place, below the
            // entry frame, which lies on the IRQ stack too.
            check!(
                own.contains(&frame) && sp < frame,
                "CPU {cpu}: tick in run_on_irqstack with sp {sp:#x} and entry frame {frame:#x}: \
                 not in place on the IRQ stack {:#x}..{:#x}",
                own.start,
                own.end
            );
            s.own_stack_nested.fetch_add(1, Ordering::Relaxed);
        }
        1 => {
            // Switched: the entry frame lies on the task stack; the top slot holds the
            // interrupted sp (the trampoline's, just below the entry frame and the wrapper's
            // frames), and `interrupted_sp()` reads it.
            let slot = own.end - irqstack::TOP_SLOT_OFFSET;
            check!(
                percpu::this_cpu_stack_ptr() == slot,
                "CPU {cpu}: per-CPU top slot {:#x}, expected {slot:#x}",
                percpu::this_cpu_stack_ptr()
            );
            // SAFETY: the top slot of this CPU's IRQ stack, which the trampoline wrote.
            let saved = unsafe { (slot as *const usize).read_volatile() };
            check!(
                irqstack::interrupted_sp() == Some(saved)
                    && task.contains(&frame)
                    && task.contains(&saved)
                    && saved < frame
                    && frame - saved < 512,
                "CPU {cpu}: top slot {saved:#x}, interrupted_sp() {:x?}, entry frame {frame:#x}, \
                 task stack {:#x}..{:#x}",
                irqstack::interrupted_sp(),
                task.start,
                task.end
            );
            s.last_interrupted_sp.store(saved, Ordering::Relaxed);
            s.last_frame.store(frame, Ordering::Relaxed);
            s.switched.fetch_add(1, Ordering::Relaxed);
        }
        2 => {
            // Nested in the softirq: the entry frame lies on the IRQ stack, and the handler
            // runs in place below it (not from the top slot again).
            check!(
                own.contains(&frame) && sp < frame,
                "CPU {cpu}: nested tick with sp {sp:#x} and entry frame {frame:#x}: it switched \
                 to the top of an IRQ stack in use ({:#x}..{:#x}) instead of running in place",
                own.start,
                own.end
            );
            s.nested.fetch_add(1, Ordering::Relaxed);
        }
        _ => fail!("CPU {cpu}: IRQ nesting depth {depth}"),
    }

    let iar = hw::gic_ack();
    let intid = iar & 0x3ff;
    if intid == hw::TIMER_INTID {
        hw::timer_arm(PERIOD.load(Ordering::Relaxed));
        let ticks = s.ticks.fetch_add(1, Ordering::Relaxed) + 1;
        if depth == 1 && s.bt_len.load(Ordering::Relaxed) == 0 {
            walk(cpu);
        }
        hw::gic_eoi(iar);
        if depth == 1 && ticks.is_multiple_of(SOFTIRQ_EVERY) {
            softirq(cpu);
        }
    } else if intid == hw::SPURIOUS_INTID {
        s.spurious.fetch_add(1, Ordering::Relaxed);
    } else {
        fail!("CPU {cpu}: unexpected interrupt ID {intid}");
    }
    s.depth.fetch_sub(1, Ordering::Relaxed);
}

/// The softirq: on the IRQ stack, IRQs unmasked (the GIC interrupt already ended), until a
/// further tick has nested or three tick periods have passed.
#[inline(never)]
fn softirq(cpu: usize) {
    let s = &STATS[cpu];
    let before = s.nested.load(Ordering::Relaxed);
    let deadline = hw::counter() + 3 * PERIOD.load(Ordering::Relaxed);
    if fault() == Fault::InUse {
        percpu::clear_in_use_early();
    }
    hw::irq_enable();
    while s.nested.load(Ordering::Relaxed) == before && hw::counter() < deadline {
        core::hint::spin_loop();
    }
    hw::irq_disable();
    s.softirq_runs.fetch_add(1, Ordering::Relaxed);
}

/// Walks the frame records from here (inside the handler, on the IRQ stack) until x29 is 0 or
/// leaves this CPU's stacks: across the trampoline's record into the interrupted code.
#[inline(never)]
fn walk(cpu: usize) {
    let s = &STATS[cpu];
    let irq = percpu::irq_stack(cpu);
    let task = percpu::task_stack(cpu);
    let mut fp = hw::fp();
    let (mut n, mut on_irq) = (0usize, 0usize);
    while fp != 0 && fp.is_multiple_of(8) && n < BT_MAX {
        let on = if irq.contains(&fp) {
            on_irq += 1;
            true
        } else {
            task.contains(&fp)
        };
        if !on {
            break;
        }
        // SAFETY: a frame record (previous x29, return address) on one of this CPU's stacks,
        // 8-byte aligned; frame pointers are forced on, and boot.rs ends the chain with 0.
        let (prev, lr) = unsafe {
            (
                (fp as *const usize).read_volatile(),
                (fp as *const usize).add(1).read_volatile(),
            )
        };
        s.bt[n].store(lr, Ordering::Relaxed);
        n += 1;
        fp = prev;
    }
    s.bt_irq_frames.store(on_irq, Ordering::Relaxed);
    s.bt_len.store(n, Ordering::Relaxed);
}

fn print_table() {
    println!(
        "cpu | ticks | switched | nested | softirq | spurious | irq stack | deepest | own-stack softirq | nested there"
    );
    for c in 0..MAX_CPUS {
        let s = &STATS[c];
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        println!(
            "{c} | {} | {} | {} | {} | {} | {:#x} | {} | {} | {}",
            l(&s.ticks),
            l(&s.switched),
            l(&s.nested),
            l(&s.softirq_runs),
            l(&s.spurious),
            percpu::irq_stack(c).start,
            percpu::depth(c),
            l(&s.own_stack_runs),
            l(&s.own_stack_nested),
        );
    }
}

/// The end of the run (CPU 0): wait for every CPU to stop, then check and report.
fn finish() -> ! {
    let deadline = hw::counter() + hw::timer_freq() * 2;
    while STOPPED.load(Ordering::SeqCst) < MAX_CPUS {
        if hw::counter() > deadline {
            print_table();
            fail!("CPUs did not stop");
        }
        core::hint::spin_loop();
    }
    print_table();
    let per_cpu =
        |f: &dyn Fn(&Stats) -> u64| -> [u64; MAX_CPUS] { core::array::from_fn(|c| f(&STATS[c])) };
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed);

    let online = ONLINE.load(Ordering::Relaxed);
    check!(online == MAX_CPUS, "{online} CPUs online");
    println!("check cpus: ok {online} online");

    let offsets: [usize; MAX_CPUS] = core::array::from_fn(percpu::offset);
    check!(
        offsets[0] != offsets[1],
        "per-CPU offsets {offsets:#x?} are not distinct"
    );
    println!(
        "check tpidr: ok {offsets:?} (per-CPU offsets; each CPU's per-CPU data named it in every tick)"
    );

    let ticks = per_cpu(&|s| l(&s.ticks));
    check!(ticks.iter().all(|&t| t >= TICKS_TARGET), "ticks {ticks:?}");
    println!("check ticks: ok {ticks:?} (>= {TICKS_TARGET} on every CPU)");

    let stacks: [usize; MAX_CPUS] = core::array::from_fn(|c| percpu::irq_stack(c).start);
    let disjoint = percpu::irq_stack(0).end <= stacks[1] || percpu::irq_stack(1).end <= stacks[0];
    check!(disjoint, "IRQ stacks {stacks:#x?} overlap");
    println!(
        "check irq-stacks: ok {stacks:?} (distinct {} KiB stacks; every tick ran on its own CPU's)",
        percpu::IRQ_STACK_SIZE / 1024
    );

    let sw = per_cpu(&|s| l(&s.switched));
    check!(sw.iter().all(|&x| x > 0), "switched {sw:?}");
    let links: [usize; MAX_CPUS] = core::array::from_fn(|c| {
        STATS[c].last_frame.load(Ordering::Relaxed)
            - STATS[c].last_interrupted_sp.load(Ordering::Relaxed)
    });
    println!(
        "check hardirq-switched: ok {sw:?} (top slot = interrupted_sp(), on the task stack, {links:?} bytes below the entry frame)"
    );

    let nested = per_cpu(&|s| l(&s.nested));
    check!(nested.iter().all(|&x| x > 0), "nested {nested:?}");
    println!("check hardirq-nested: ok {nested:?} (in place, below the interrupted entry frame)");

    let soft = per_cpu(&|s| l(&s.softirq_runs));
    check!(soft.iter().all(|&x| x > 0), "softirq {soft:?}");
    println!("check softirq: ok {soft:?} (IRQs unmasked, on the IRQ stack)");

    let own_runs = per_cpu(&|s| l(&s.own_stack_runs));
    let own_nested = per_cpu(&|s| l(&s.own_stack_nested));
    check!(
        own_runs.iter().all(|&x| x > 0) && own_nested.iter().all(|&x| x > 0),
        "run_on_irqstack softirq runs {own_runs:?}, ticks nested in them {own_nested:?}"
    );
    println!(
        "check softirq-own-stack: ok {own_runs:?} (run_on_irqstack from the idle loop; {own_nested:?} ticks nested in place in it)"
    );

    let depth: [usize; MAX_CPUS] = core::array::from_fn(percpu::depth);
    check!(
        depth
            .iter()
            .all(|&d| d > 0 && d < percpu::IRQ_STACK_SIZE - 4096),
        "IRQ stack depth {depth:?}: unused or within 4 KiB of its end (no guard page)"
    );
    println!("check irq-stack-depth: ok {depth:?} bytes");

    for c in 0..MAX_CPUS {
        let s = &STATS[c];
        let len = s.bt_len.load(Ordering::Relaxed);
        let irq = s.bt_irq_frames.load(Ordering::Relaxed);
        check!(
            irq > 0 && len >= irq + 3,
            "CPU {c}'s walk: {len} frames, {irq} on the IRQ stack"
        );
        hw::print_raw(format_args!("bt cpu {c}:"));
        for i in 0..len {
            if i == irq {
                hw::print_raw(format_args!(" |"));
            }
            hw::print_raw(format_args!(" {:#x}", s.bt[i].load(Ordering::Relaxed)));
        }
        println!("");
    }
    println!(
        "check backtrace: ok (frame records cross from the IRQ stack to the task stack on every CPU)"
    );

    println!("PASS");
    hw::exit(hw::EXIT_PASS)
}

/// Every exception but an IRQ at EL1 (boot.rs): report and fail.
#[unsafe(no_mangle)]
extern "C" fn unexpected_exception(kind: u64, esr: u64, elr: u64, far: u64) -> ! {
    fail!(
        "CPU {}: unexpected exception, vector entry {kind}, ESR_EL1 {esr:#x}, ELR_EL1 {elr:#x}, \
         FAR_EL1 {far:#x}",
        hw::mpidr_cpu()
    )
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    fail!("CPU {}: panic: {info}", hw::mpidr_cpu())
}
