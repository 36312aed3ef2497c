//! A bare-metal SMP x86-64 test kernel for irqstack: booted by `qemu-system-x86_64 -kernel`
//! through the PVH note, it brings up every CPU with INIT-SIPI-SIPI, gives each its per-CPU
//! area (GS base), a 16 KiB IRQ stack with an unmapped guard below it, IST stacks for #DF, NMI,
//! #DB and #MC, and runs real interrupts (local APIC timer, IPIs between CPUs, self-IPIs)
//! through the library's `#[idtentry]` stubs (idt.rs: every vector of the IDT) and
//! `#[on_irqstack]` handlers, with a backend of its own (percpu.rs) whose entry hooks check
//! every entry. On top of the workload:
//!
//! - a page fault taken on purpose inside a handler on the IRQ stack, fixed up by the #PF
//!   handler, after which the handler goes on (work.rs, `probe_read`);
//! - user mode: CPU 1 drops to ring 3 and spins; its timer ticks from ring 3 `swapgs` and run
//!   on the task stack, its ticks from ring 0 switch (user.rs);
//! - `gdb_handler_mark`, where the host's gdb test breaks (task stacks are mapped above the IRQ
//!   stacks so that gdb, which wants the interrupted stack outer to the handler's, walks across).
//!
//! It reports on COM1 and exits through isa-debug-exit: 0x10 (status 33) when every check
//! passed, 0x11 (35) on any failure, 0x22 (69) for the expected IRQ-stack overflow of the
//! `overflow` boot. `irqstack-tests/tests/smp_kernel.rs` builds it, boots it and asserts the
//! report, runs gdb on it and objtool on its object.
//!
//! Command line (`-append`): `cpus=N` (CPUs expected, default 4), `overflow`,
//! `fault=pf|nmi|triple`.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]
// Loops over CPU numbers index several per-CPU tables at once; the number is the point.
#![allow(clippy::needless_range_loop)]

/// The return of the kernel's hand-written functions: through the return thunk, with a trap
/// after it, in the hardened build (RETHUNK, SLS); a plain `ret` otherwise.
macro_rules! ret_insn {
    () => {
        if_hardened!("jmp __x86_return_thunk\nint3\n", "ret\n")
    };
}

/// `$a` in the hardened build, `$b` otherwise.
#[cfg(feature = "hardened")]
macro_rules! if_hardened {
    ($a:literal, $b:literal) => {
        $a
    };
}
#[cfg(not(feature = "hardened"))]
macro_rules! if_hardened {
    ($a:literal, $b:literal) => {
        $b
    };
}

#[macro_use]
mod hw;
mod boot;
mod idt;
mod percpu;
mod user;
mod work;

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use work::{IPI_HANDLED, IPI_SENT, NCPUS, STATS, STOP};

pub const MAX_CPUS: usize = 4;
pub const TASK_STACK_SIZE: usize = 32 * 1024;
/// APIC timer initial count: 1 GHz / 16 / 31 250 = 2 kHz.
const TIMER_COUNT: u32 = 31_250;
/// Ticks every CPU must handle before the run ends.
const TICKS_TARGET: u64 = 500;
/// Give up (and fail) when the BSP has seen this many ticks (10 s).
const TICKS_DEADLINE: u64 = 20_000;
/// Where the AP trampoline is copied (SIPI vector 8).
const AP_TRAMPOLINE_PHYS: usize = 0x8000;

#[cfg(feature = "hardened")]
const VARIANT: &str = "hardened";
#[cfg(not(feature = "hardened"))]
const VARIANT: &str = "basic";

// The per-CPU IRQ stack, reached through `%gs` exactly as Linux reaches its own, and the entry
// hooks of the `#[idtentry]` glue (percpu.rs).
irqstack::set_backend!(percpu::KernelBackend);

/// `lockdep_assert_irqs_disabled()`: claims happen with interrupts off.
#[inline(always)]
pub fn assert_irqs_disabled() {
    check!(
        !hw::irqs_enabled(),
        "IRQ stack claimed with interrupts enabled"
    );
}

/// CPUs that finished `cpu_init`.
static ONLINE: AtomicUsize = AtomicUsize::new(0);
/// The CPU number the next AP takes.
static AP_CPU: AtomicUsize = AtomicUsize::new(0);
static GO: AtomicBool = AtomicBool::new(false);
static STOPPED: AtomicUsize = AtomicUsize::new(0);
static NMI_SENT: AtomicBool = AtomicBool::new(false);

fn parse_cmdline() -> (usize, bool) {
    let line = boot::cmdline();
    let mut cpus = MAX_CPUS;
    let mut overflow = false;
    for word in line.split(|&b| b == b' ') {
        if word == b"overflow" {
            overflow = true;
        } else if let Some(kind) = word.strip_prefix(b"fault=") {
            let f = match kind {
                b"pf" => work::Fault::Page,
                b"nmi" => work::Fault::Nmi,
                b"triple" => work::Fault::Triple,
                _ => fail!("unknown fault= kind"),
            };
            work::FAULT.store(f as u8, Ordering::Relaxed);
        } else if let Some(n) = word.strip_prefix(b"cpus=")
            && let [d @ b'1'..=b'9'] = n
        {
            cpus = usize::from(d - b'0');
        }
    }
    (cpus.min(MAX_CPUS), overflow)
}

#[unsafe(no_mangle)]
pub extern "C" fn kernel_main_bsp() -> ! {
    hw::serial_init();
    let (cpus, overflow) = parse_cmdline();
    println!(
        "irqstack-smp-kernel: variant {VARIANT}, {cpus} CPUs expected, scenario {}",
        if overflow { "overflow" } else { "workload" }
    );
    hw::pic_mask_all();
    idt::init();
    percpu::map_irq_stacks(cpus);
    percpu::cpu_init(0);
    if work::fault() == Some(work::Fault::Triple) {
        triple_fault();
    }
    hw::apic_enable();
    check!(hw::apic_id() == 0, "the BSP's APIC ID is {}", hw::apic_id());
    ONLINE.store(1, Ordering::SeqCst);
    NCPUS.store(cpus, Ordering::SeqCst);
    user::USER_CPU.store(usize::from(cpus > 1), Ordering::SeqCst);
    if overflow {
        work::OVERFLOW_CPU.store(cpus - 1, Ordering::SeqCst);
    }

    // The AP trampoline, copied to low memory now (the firmware may have used it before).
    // SAFETY: 0x8000 is conventional memory below 1 MiB, identity-mapped, unused by this kernel;
    // the trampoline's code is position-independent apart from absolute 32-bit addresses of
    // kernel symbols.
    unsafe {
        let start = core::ptr::addr_of!(boot::ap_trampoline_start);
        let len = core::ptr::addr_of!(boot::ap_trampoline_end) as usize - start as usize;
        core::ptr::copy_nonoverlapping(start, AP_TRAMPOLINE_PHYS as *mut u8, len);
    }
    for cpu in 1..cpus {
        AP_CPU.store(cpu, Ordering::SeqCst);
        percpu::set_ap_stack(cpu);
        hw::apic_send(cpu as u32, 0x4500); // INIT, level assert
        let sipi = 0x4600 | (AP_TRAMPOLINE_PHYS as u32 >> 12);
        hw::apic_send(cpu as u32, sipi);
        hw::apic_send(cpu as u32, sipi);
        let mut spins = 0u64;
        while ONLINE.load(Ordering::SeqCst) <= cpu {
            spins += 1;
            check!(spins < 200_000_000, "CPU {cpu} did not come up");
            hw::pause();
        }
    }
    println!("cpus online: {}", ONLINE.load(Ordering::SeqCst));
    GO.store(true, Ordering::SeqCst);
    cpu_main(0)
}

#[unsafe(no_mangle)]
pub extern "C" fn kernel_main_ap() -> ! {
    let cpu = AP_CPU.load(Ordering::SeqCst);
    percpu::cpu_init(cpu);
    hw::apic_enable();
    check!(
        hw::apic_id() as usize == cpu,
        "CPU {cpu} has APIC ID {}",
        hw::apic_id()
    );
    ONLINE.fetch_add(1, Ordering::SeqCst);
    while !GO.load(Ordering::SeqCst) {
        hw::pause();
    }
    cpu_main(cpu)
}

fn cpu_main(cpu: usize) -> ! {
    hw::apic_timer_start(idt::TIMER_VECTOR, TIMER_COUNT);
    work::idle_loop(cpu);
    hw::cli();
    hw::apic_timer_stop();
    STOPPED.fetch_add(1, Ordering::SeqCst);
    if cpu == 0 {
        finish();
    }
    // Keep taking IPIs still in flight.
    loop {
        work::wait_for_interrupt();
    }
}

/// The `fault=triple` boot: with an empty IDT, `int3` cannot be delivered (#GP, then #DF, then
/// a triple fault), and QEMU (with `-no-reboot`) exits with status 0, which must not pass.
fn triple_fault() -> ! {
    #[repr(C, packed)]
    struct Ptr {
        limit: u16,
        base: u64,
    }
    let empty = Ptr { limit: 0, base: 0 };
    println!("fault=triple: loading an empty IDT, then int3");
    // SAFETY: deliberately fatal: the CPU resets (QEMU exits); nothing runs after it.
    unsafe { core::arch::asm!("lidt [{}]", "int3", in(reg) &empty, options(readonly, nostack)) };
    fail!("int3 with an empty IDT returned")
}

/// Called by the BSP after each wake-up: ends the run when every CPU has done its share.
pub fn maybe_stop() {
    if work::fault() == Some(work::Fault::Nmi)
        && STATS[0].ticks.load(Ordering::Relaxed) >= 100
        && NCPUS.load(Ordering::Relaxed) > 2
        && !NMI_SENT.swap(true, Ordering::Relaxed)
    {
        // NMI (delivery mode 100b) to CPU 2: its handler runs on IST2 and fails the run.
        hw::apic_send(2, 0x4400);
    }
    let n = NCPUS.load(Ordering::Relaxed);
    let done = (0..n).all(|c| {
        let s = &STATS[c];
        s.ticks.load(Ordering::Relaxed) >= TICKS_TARGET
            && s.nested.load(Ordering::Relaxed) > 0
            && s.bt_len.load(Ordering::Relaxed) > 0
            && s.shapes_switched.load(Ordering::Relaxed) > 0
            && s.shapes_softirq.load(Ordering::Relaxed) > 0
            && s.shapes_hardirq.load(Ordering::Relaxed) > 0
            && s.pf_fixups.load(Ordering::Relaxed) > 0
            && (c != user::USER_CPU.load(Ordering::Relaxed)
                || user::USER_TICKS[c].load(Ordering::Relaxed) >= user::USER_TICKS_TARGET)
    });
    if done && work::OVERFLOW_CPU.load(Ordering::Relaxed) == usize::MAX {
        STOP.store(true, Ordering::SeqCst);
    } else if STATS[0].ticks.load(Ordering::Relaxed) > TICKS_DEADLINE {
        print_table();
        fail!("the run did not complete within {TICKS_DEADLINE} ticks");
    }
}

fn print_table() {
    let n = NCPUS.load(Ordering::Relaxed);
    println!(
        "cpu | ticks | ipi sent | ipi handled | self-ipi sent | self-ipi handled | switched | nested | softirq | shapes sw/soft/hard | irq stack deepest | spurious"
    );
    for c in 0..n {
        let s = &STATS[c];
        let l = |a: &core::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let sent: u64 = (0..n).map(|d| l(&IPI_SENT[c][d])).sum();
        let handled: u64 = (0..n).map(|src| l(&IPI_HANDLED[c][src])).sum();
        println!(
            "{c} | {} | {sent} | {handled} | {} | {} | {} | {} | {} | {}/{}/{} | {} | {}",
            l(&s.ticks),
            l(&s.device_sent),
            l(&s.device_handled),
            l(&s.switched),
            l(&s.nested),
            l(&s.softirq_runs),
            l(&s.shapes_switched),
            l(&s.shapes_softirq),
            l(&s.shapes_hardirq),
            percpu::irq_stack_depth(c),
            l(&s.spurious),
        );
    }
}

/// The end of the run (BSP): wait for every CPU to stop and every IPI to land, then check.
fn finish() -> ! {
    let n = NCPUS.load(Ordering::Relaxed);
    hw::sti();
    let mut spins = 0u64;
    let all_handled = || {
        (0..n).all(|s| {
            (0..n).all(|d| {
                IPI_SENT[s][d].load(Ordering::SeqCst) == IPI_HANDLED[d][s].load(Ordering::SeqCst)
            })
        }) && (0..n).all(|c| {
            STATS[c].device_sent.load(Ordering::SeqCst)
                == STATS[c].device_handled.load(Ordering::SeqCst)
                && !work::RESCHED_PENDING[c].load(Ordering::SeqCst)
        })
    };
    while STOPPED.load(Ordering::SeqCst) < n || !all_handled() {
        spins += 1;
        if spins > 100_000_000 {
            print_table();
            fail!("CPUs did not stop or IPIs were not all handled");
        }
        hw::pause();
    }
    hw::cli();
    print_table();
    let l = |a: &core::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let per_cpu = |f: &dyn Fn(usize) -> u64| {
        let mut v = [0u64; MAX_CPUS];
        for (c, x) in v.iter_mut().enumerate().take(n) {
            *x = f(c);
        }
        v
    };

    check!(
        ONLINE.load(Ordering::Relaxed) == n,
        "{} CPUs online",
        ONLINE.load(Ordering::Relaxed)
    );
    println!("check cpus: ok {n} online");

    let ticks = per_cpu(&|c| l(&STATS[c].ticks));
    check!(
        ticks[..n].iter().all(|&t| t >= TICKS_TARGET),
        "ticks {:?}",
        &ticks[..n]
    );
    println!(
        "check ticks: ok {:?} (>= {TICKS_TARGET} on every CPU)",
        &ticks[..n]
    );

    let sw = per_cpu(&|c| l(&STATS[c].switched));
    let links = per_cpu(&|c| l(&STATS[c].sp_links));
    check!(
        sw[..n].iter().all(|&x| x > 0) && sw == links,
        "switched {sw:?}"
    );
    println!(
        "check hardirq-switched: ok {:?} (own CPU's IRQ stack, interrupted_sp links to the stub's sp)",
        &sw[..n]
    );

    let nested = per_cpu(&|c| l(&STATS[c].nested));
    check!(
        nested[..n].iter().all(|&x| x > 0),
        "nested {:?}",
        &nested[..n]
    );
    println!(
        "check hardirq-nested: ok {:?} (in place, below the interrupted sp)",
        &nested[..n]
    );

    let softirq = per_cpu(&|c| l(&STATS[c].softirq_runs));
    check!(
        softirq[..n].iter().all(|&x| x > 0),
        "softirq {:?}",
        &softirq[..n]
    );
    println!("check softirq: ok {:?}", &softirq[..n]);

    for s in 0..n {
        for d in 0..n {
            let (a, b) = (l(&IPI_SENT[s][d]), l(&IPI_HANDLED[d][s]));
            check!(
                a == b,
                "IPIs from CPU {s} to CPU {d}: sent {a}, handled {b}"
            );
        }
    }
    let ipis = per_cpu(&|c| (0..n).map(|src| l(&IPI_HANDLED[c][src])).sum());
    check!(
        n == 1 || ipis[..n].iter().all(|&x| x > 0),
        "ipis {:?}",
        &ipis[..n]
    );
    println!(
        "check ipi: ok {:?} (handled per CPU, each exactly once)",
        &ipis[..n]
    );

    let dev = per_cpu(&|c| l(&STATS[c].device_handled));
    check!(dev[..n].iter().all(|&x| x > 0), "self-IPIs {:?}", &dev[..n]);
    println!(
        "check self-ipi: ok {:?} (raised inside handlers and the softirq)",
        &dev[..n]
    );

    let sh = per_cpu(&|c| {
        l(&STATS[c].shapes_switched)
            .min(l(&STATS[c].shapes_softirq))
            .min(l(&STATS[c].shapes_hardirq))
    });
    check!(sh[..n].iter().all(|&x| x > 0), "shapes {:?}", &sh[..n]);
    println!(
        "check shapes: ok {:?} (f64, f32, seven u64, 40-byte struct, &mut, i128; switched, softirq, hardirq)",
        &sh[..n]
    );

    let resched = per_cpu(&|c| l(&work::RESCHED_HANDLED[c]));
    let resched_sent = per_cpu(&|c| (0..n).map(|src| l(&work::RESCHED_SENT[src][c])).sum());
    let resched_nested = per_cpu(&|c| l(&work::RESCHED_NESTED[c]));
    check!(
        resched == resched_sent && (n == 1 || resched[..n].iter().all(|&x| x > 0)),
        "reschedule IPIs handled {:?}, sent {:?}",
        &resched[..n],
        &resched_sent[..n]
    );
    check!(
        n == 1 || resched_nested[..n].iter().all(|&x| x > 0),
        "reschedule IPIs that arrived on the IRQ stack: {:?}",
        &resched_nested[..n]
    );
    println!(
        "check idtentry-sysvec: ok {:?} (reschedule IPIs through #[idtentry(sysvec)], each once; {:?} nested)",
        &resched[..n],
        &resched_nested[..n]
    );

    // The `#[idtentry]` glue's hooks: irqentry_enter/exit around every entry (balanced, same
    // state), irq_enter_rcu/irq_exit_rcu around every device and system vector handler: as
    // many as the handlers counted (timer, call-function, reschedule, device, spurious).
    let enter = per_cpu(&|c| l(&STATS[c].irqentry));
    let exit = per_cpu(&|c| l(&STATS[c].irqentry_exit));
    let rcu = per_cpu(&|c| l(&STATS[c].irq_enter_rcu));
    let rcu_exit = per_cpu(&|c| l(&STATS[c].irq_exit_rcu));
    let handled = per_cpu(&|c| {
        let s = &STATS[c];
        l(&s.ticks)
            + (0..n).map(|src| l(&IPI_HANDLED[c][src])).sum::<u64>()
            + l(&work::RESCHED_HANDLED[c])
            + l(&s.device_handled)
            + l(&s.spurious)
    });
    let faults = per_cpu(&|c| l(&STATS[c].pf_fixups));
    check!(
        enter == exit && rcu == rcu_exit && rcu == handled,
        "hooks: irqentry_enter {enter:?}, irqentry_exit {exit:?}, irq_enter_rcu {rcu:?}, \
         irq_exit_rcu {rcu_exit:?}, device and system vectors handled {handled:?}"
    );
    let expected_entries: [u64; MAX_CPUS] = core::array::from_fn(|c| handled[c] + faults[c]);
    check!(
        enter == expected_entries,
        "irqentry_enter {enter:?}: not one per handled vector and fixed-up #PF {expected_entries:?}"
    );
    println!(
        "check idtentry-hooks: ok {:?} (irqentry_enter = irqentry_exit; irq_enter_rcu = irq_exit_rcu = {:?} vectors handled)",
        &enter[..n],
        &rcu[..n]
    );

    check!(
        faults[..n].iter().all(|&x| x > 0),
        "page faults fixed up {:?}",
        &faults[..n]
    );
    println!(
        "check pf-fixup: ok {:?} (#PF from an #[on_irqstack] handler, handled on the IRQ stack, handler went on)",
        &faults[..n]
    );

    // User mode: the user CPU's timer ticks from ring 3 ran on its task stack with the kernel's
    // GS base (checked in every one), its ticks from ring 0 switched; no other CPU left ring 0.
    let user_cpu = user::USER_CPU.load(Ordering::Relaxed);
    let uticks = per_cpu(&|c| l(&user::USER_TICKS[c]));
    let kticks = per_cpu(&|c| l(&user::KERNEL_TICKS_SWITCHED[c]));
    let uentries = per_cpu(&|c| l(&user::USER_ENTRIES[c]));
    let spins = l(&user::USER_SPINS);
    let mut only_user_cpu = true;
    for c in 0..n {
        only_user_cpu &= (c == user_cpu) == (uticks[c] > 0);
    }
    check!(
        only_user_cpu
            && uticks[user_cpu] >= user::USER_TICKS_TARGET
            && kticks[..n].iter().all(|&x| x > 0)
            && uentries[user_cpu] >= uticks[user_cpu]
            && spins > 0,
        "user mode: ticks from ring 3 {uticks:?}, switched ticks from ring 0 {kticks:?}, \
         entries from ring 3 {uentries:?}, user loop rounds {spins}"
    );
    println!(
        "check user-mode: ok {:?} timer ticks from ring 3 (swapgs: kernel GS base in the handler; on the task stack), {:?} from ring 0 switched to the IRQ stack; CPU {user_cpu}: {} entries from ring 3, {spins} user loop rounds",
        &uticks[..n],
        &kticks[..n],
        uentries[user_cpu]
    );

    let depth = per_cpu(&|c| percpu::irq_stack_depth(c) as u64);
    check!(
        depth[..n]
            .iter()
            .all(|&d| d > 0 && d < percpu::IRQ_STACK_SIZE as u64),
        "depth {:?}",
        &depth[..n]
    );
    println!("check irq-stack-depth: ok {:?} bytes", &depth[..n]);

    for c in 0..n {
        let s = &STATS[c];
        let len = s.bt_len.load(Ordering::Relaxed);
        let (irq, task) = (
            s.bt_irq_frames.load(Ordering::Relaxed),
            s.bt_task_frames.load(Ordering::Relaxed),
        );
        check!(
            irq > 0 && task >= 3,
            "CPU {c}'s walk: {irq} frames on the IRQ stack, {task} on the task stack"
        );
        hw::print_locked(format_args!("bt cpu {c}:"), false);
        for i in 0..len {
            hw::print_locked(
                format_args!(" {:#x}", s.bt[i].load(Ordering::Relaxed)),
                false,
            );
        }
        println!("");
    }
    println!("check backtrace: ok (crosses from the IRQ stack to the task stack on every CPU)");

    #[cfg(feature = "hardened")]
    {
        let returns = hardened::RETURN_THUNK_CALLS.load(Ordering::Relaxed);
        check!(returns > 10_000, "__x86_return_thunk ran {returns} times");
        println!("check return-thunk: ok {returns} returns through __x86_return_thunk");
    }

    println!("PASS");
    hw::exit_qemu(hw::EXIT_PASS)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    fail!("panic: {info}")
}

#[cfg(feature = "hardened")]
mod hardened {
    //! The thunks the hardened flags make the compiler reference.
    use core::sync::atomic::AtomicU64;

    /// Returns that went through `__x86_return_thunk` (racy across CPUs: a lower bound).
    #[unsafe(no_mangle)]
    pub static RETURN_THUNK_CALLS: AtomicU64 = AtomicU64::new(0);

    core::arch::global_asm!(
        r#"
        .pushsection .text.thunks, "ax"
        /* -Zfunction-return=thunk-extern: every `ret` is `jmp __x86_return_thunk`. This one
           counts (without touching the flags: mov/lea only, rax saved below the return
           address, which is dead stack in a kernel built without a red zone) and returns. */
        .globl __x86_return_thunk
        .type __x86_return_thunk, @function
    __x86_return_thunk:
        push rax
        mov rax, qword ptr [rip + RETURN_THUNK_CALLS]
        lea rax, [rax + 1]
        mov qword ptr [rip + RETURN_THUNK_CALLS], rax
        pop rax
        /* ANNOTATE_UNRET_SAFE: the one real `ret` of a rethunk build. */
    5:  .pushsection .discard.retpoline_safe
        .long 5b
        .popsection
        ret
        int3
        .size __x86_return_thunk, . - __x86_return_thunk

        /* +retpoline-external-thunk: indirect calls and jumps go through these. This is the
           `lfence; jmp *reg` form (Linux's RETPOLINE_LFENCE alternative): the lfence keeps the
           indirect jump from executing speculatively ahead of older instructions; the jump is
           annotated retpoline-safe for objtool --retpoline, int3 after it for --sls. */
        .irp reg, rax, rbx, rcx, rdx, rsi, rdi, rbp, r8, r9, r10, r11, r12, r13, r14, r15
        .globl __x86_indirect_thunk_\reg
        .type __x86_indirect_thunk_\reg, @function
    __x86_indirect_thunk_\reg:
        lfence
    4:  .pushsection .discard.retpoline_safe
        .long 4b
        .popsection
        jmp \reg
        int3
        .size __x86_indirect_thunk_\reg, . - __x86_indirect_thunk_\reg
        .endr
        .popsection
        "#
    );
}
