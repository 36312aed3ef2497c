//! A bare-metal riscv64 test kernel for irqstack: loaded by `qemu-system-riscv64 -M virt
//! -bios default -kernel` at 0x80200000 and entered by OpenSBI in S-mode on the boot hart
//! (`a0` = hart ID, `a1` = device tree). It starts the second hart with SBI HSM `hart_start`,
//! gives each hart its per-CPU area (`tp`), a 16 KiB IRQ stack and a trap entry (`stvec`), and
//! runs periodic supervisor timer interrupts (SBI TIME `sbi_set_timer`, 1 ms at the 10 MHz
//! timebase) through `#[on_irqstack]` handlers. At the end of a tick that switched, a softirq
//! runs on the IRQ stack with interrupts enabled (`sstatus.SIE`), so that a further tick nests
//! in place.
//!
//! Sv39 paging maps the machine one to one and leaves a guard page below each IRQ stack (mm.rs):
//! the `overflow` boot recurses in a handler until it faults there, and the trap entry reports
//! the overflow on the hart's overflow stack (status 3).
//!
//! It reports on the UART and exits through the SiFive test device: status 0 when every check
//! passed, 1 on a failed check (`FAIL cpu N: ...` on the UART). `irqstack-tests/tests/
//! riscv64_kernel.rs` builds it, boots it under a timeout and asserts the report.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]
#![allow(non_upper_case_globals)]
// Loops over CPU numbers index several per-CPU tables at once; the number is the point.
#![allow(clippy::needless_range_loop)]

#[macro_use]
mod hw;
mod mm;
mod percpu;
mod trap;
mod work;

use core::sync::atomic::{AtomicUsize, Ordering};

use percpu::{MAX_HARTS, TASK_STACK_SIZE};

/// The harts this kernel expects (QEMU `-smp 2`).
pub const HARTS: usize = 2;
/// Hart IDs probed for the second hart (QEMU `virt` numbers harts from 0).
const HART_ID_PROBE: usize = 8;

/// Harts that finished `cpu_init`.
static ONLINE: AtomicUsize = AtomicUsize::new(0);
/// Hart ID of each CPU number.
static HART_OF_CPU: [AtomicUsize; MAX_HARTS] = [const { AtomicUsize::new(usize::MAX) }; MAX_HARTS];

// The entry points. OpenSBI enters `_start` on the boot hart (the one its lottery picked) with
// a0 = hart ID, a1 = DTB, in S-mode, satp = 0, interrupts off; `sbi_hart_start` enters
// `secondary_entry` with a0 = hart ID, a1 = the opaque value (here the CPU number).
core::arch::global_asm!(
    ".pushsection .text.boot, \"ax\", @progbits",
    ".globl _start",
    "_start:",
    // No interrupt sources until the trap entry is set.
    "csrw sie, zero",
    // Zero .bss (QEMU's ELF loader does too, but do not depend on it); 8-byte aligned bounds
    // (link.ld). Only t0/t1: a0/a1 stay for kernel_main_boot.
    "lla t0, __bss_start",
    "lla t1, __bss_end",
    "1:",
    "bgeu t0, t1, 2f",
    "sd zero, 0(t0)",
    "addi t0, t0, 8",
    "j 1b",
    "2:",
    // CPU 0's task stack: top of TASK_STACKS[0] (4096-aligned, so sp is 16-byte aligned).
    "lla sp, {stacks}",
    "li t0, {size}",
    "add sp, sp, t0",
    // s0 = 0 and ra = 0 end the frame-pointer chain; tp = 0 until the per-CPU area is set.
    "mv s0, zero",
    "mv ra, zero",
    "mv tp, zero",
    "call {boot}",
    "3:",
    "wfi",
    "j 3b",
    "",
    ".globl secondary_entry",
    ".p2align 2",
    "secondary_entry:",
    "csrw sie, zero",
    // sp = TASK_STACKS + (cpu + 1) * size, cpu in a1.
    "lla sp, {stacks}",
    "addi t0, a1, 1",
    "li t1, {size}",
    "mul t0, t0, t1",
    "add sp, sp, t0",
    "mv s0, zero",
    "mv ra, zero",
    "mv tp, zero",
    "call {secondary}",
    "4:",
    "wfi",
    "j 4b",
    ".popsection",
    stacks = sym percpu::TASK_STACKS,
    size = const TASK_STACK_SIZE,
    boot = sym kernel_main_boot,
    secondary = sym kernel_main_secondary,
);

unsafe extern "C" {
    fn secondary_entry();
}

/// Per hart, interrupts off: per-CPU area, trap entry.
fn cpu_init(cpu: usize, hartid: usize) {
    trap::init();
    mm::enable();
    percpu::init(cpu, hartid);
    HART_OF_CPU[cpu].store(hartid, Ordering::SeqCst);
    check!(
        percpu::hart_id() == hartid,
        "the per-CPU hart ID of cpu {cpu} is wrong"
    );
}

extern "C" fn kernel_main_boot(hartid: usize, dtb: usize) -> ! {
    println!(
        "irqstack-riscv64-kernel: boot hart {hartid}, dtb {dtb:#x}, {HARTS} harts expected, \
         scenario {}",
        work::SCENARIO
    );
    mm::build();
    cpu_init(0, hartid);
    ONLINE.store(1, Ordering::SeqCst);

    // Start the other harts: every hart ID that SBI reports as stopped gets the next CPU
    // number.
    let mut cpu = 1;
    for h in 0..HART_ID_PROBE {
        if h == hartid || cpu >= HARTS {
            continue;
        }
        match hw::sbi_hart_status(h) {
            Ok(1) => {}
            _ => continue,
        }
        let err = hw::sbi_hart_start(h, secondary_entry as *const () as usize, cpu);
        check!(err == 0, "sbi_hart_start({h}) failed with {err}");
        let mut spins = 0u64;
        while ONLINE.load(Ordering::SeqCst) <= cpu {
            spins += 1;
            check!(spins < 500_000_000, "hart {h} (cpu {cpu}) did not come up");
            core::hint::spin_loop();
        }
        cpu += 1;
    }
    check!(
        ONLINE.load(Ordering::SeqCst) == HARTS,
        "{} harts online, {HARTS} expected (run QEMU with -smp {HARTS})",
        ONLINE.load(Ordering::SeqCst)
    );
    for c in 0..HARTS {
        let irq = percpu::irq_stack(c);
        let task = percpu::task_stack(c);
        let guard = percpu::guard(c);
        println!(
            "hart: cpu {c} hartid {} irq_stack {:#x}-{:#x} guard {:#x}-{:#x} task_stack \
             {:#x}-{:#x} top_slot {:#x}",
            HART_OF_CPU[c].load(Ordering::SeqCst),
            irq.start,
            irq.end,
            guard.start,
            guard.end,
            task.start,
            task.end,
            percpu::TOP_SLOTS[c].load(Ordering::SeqCst)
        );
    }
    work::GO.store(true, Ordering::SeqCst);
    work::cpu_main(0);
    work::finish(HARTS)
}

extern "C" fn kernel_main_secondary(hartid: usize, cpu: usize) -> ! {
    check!(cpu < MAX_HARTS, "secondary hart {hartid} got cpu {cpu}");
    cpu_init(cpu, hartid);
    ONLINE.fetch_add(1, Ordering::SeqCst);
    while !work::GO.load(Ordering::SeqCst) {
        core::hint::spin_loop();
    }
    work::cpu_main(cpu);
    hw::halt()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    fail!("panic: {info}")
}
