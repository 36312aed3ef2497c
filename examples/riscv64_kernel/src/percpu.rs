//! Per-hart data: the per-CPU area reached through `tp`, the task stacks, the IRQ stacks.
//!
//! The convention is the one of the common Rust kernels (ArceOS's `percpu` crate on riscv64):
//! per-CPU variables are statics in the `.data.percpu` template section; every hart gets a copy
//! of the template and keeps `copy - __percpu_start` in `tp`, so that the address of this hart's
//! copy of `VAR` is `lla reg, VAR` plus `tp`. The kernel has no user mode, so `tp` holds the
//! offset from the boot code on and nothing else writes it (Rust code never touches `tp` on a
//! `no_std` target without thread-locals).
//!
//! The IRQ stacks are 16 KiB in `.bss`, each above a 4 KiB guard page that the kernel's Sv39
//! page tables leave unmapped (mm.rs). An overflow faults there; the trap entry notices that
//! the stack pointer lies in the guard (before it pushes anything, which would fault again),
//! moves to this hart's overflow stack and reports it (the `overflow` boot). The kernel also
//! paints the stacks and reports the deepest use (`irq_stack_depth`).

use core::sync::atomic::{AtomicUsize, Ordering};

pub const MAX_HARTS: usize = 2;
pub const TASK_STACK_SIZE: usize = 32 * 1024;
pub const IRQ_STACK_SIZE: usize = 16 * 1024;
/// Bytes reserved per hart for its copy of the per-CPU template.
const PERCPU_COPY_SIZE: usize = 1024;
/// The paint of unused IRQ stack memory.
const PAINT: u64 = 0x5a5a_5a5a_5a5a_5a5a;

#[repr(C, align(4096))]
pub struct TaskStack(pub [u8; TASK_STACK_SIZE]);
/// An IRQ stack with its guard page below it (only the layout is used: the fields are reached
/// through addresses).
#[allow(dead_code)]
#[repr(C, align(4096))]
pub struct GuardedIrqStack {
    guard: [u8; GUARD_SIZE],
    stack: [u8; IRQ_STACK_SIZE],
}
pub const GUARD_SIZE: usize = 4096;
/// The stack the trap entry moves to when it finds `sp` in a guard page.
pub const OVERFLOW_STACK_SIZE: usize = 4096;
#[repr(C, align(16))]
struct OverflowStack([u8; OVERFLOW_STACK_SIZE]);
#[repr(C, align(64))]
struct PercpuCopy([u8; PERCPU_COPY_SIZE]);

/// The task (boot) stacks, one per hart; `_start` and `secondary_entry` take theirs.
#[unsafe(no_mangle)]
pub static mut TASK_STACKS: [TaskStack; MAX_HARTS] =
    [const { TaskStack([0; TASK_STACK_SIZE]) }; MAX_HARTS];
static mut IRQ_STACKS: [GuardedIrqStack; MAX_HARTS] = [const {
    GuardedIrqStack {
        guard: [0; GUARD_SIZE],
        stack: [0; IRQ_STACK_SIZE],
    }
}; MAX_HARTS];
static mut OVERFLOW_STACKS: [OverflowStack; MAX_HARTS] =
    [const { OverflowStack([0; OVERFLOW_STACK_SIZE]) }; MAX_HARTS];
static mut PERCPU_COPIES: [PercpuCopy; MAX_HARTS] =
    [const { PercpuCopy([0; PERCPU_COPY_SIZE]) }; MAX_HARTS];

unsafe extern "C" {
    static __percpu_start: u8;
    static __percpu_end: u8;
}

// The per-CPU variables (templates; each hart reads and writes its own copy through `tp`).

/// This hart's IRQ stack top slot (`stack base + 16 KiB - TOP_SLOT_OFFSET`), 0 until set up:
/// Linux's `irq_stack_ptr` (riscv) / `hardirq_stack_ptr` (x86), already adjusted.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".data.percpu")]
pub static mut irq_stack_ptr: usize = 0;
/// Whether this hart's IRQ stack is in use (x86's `hardirq_stack_inuse`).
#[unsafe(no_mangle)]
#[unsafe(link_section = ".data.percpu")]
pub static mut irq_stack_inuse: bool = false;
/// The top of this hart's overflow stack (read by the trap entry).
#[unsafe(no_mangle)]
#[unsafe(link_section = ".data.percpu")]
pub static mut overflow_stack_top: usize = 0;
/// Where the trap entry parks `t1` during its guard-page check (interrupts are off then, and the
/// check cannot fault: no nesting).
#[unsafe(no_mangle)]
#[unsafe(link_section = ".data.percpu")]
pub static mut trap_scratch: usize = 0;
/// This hart's CPU number (0 for the boot hart).
#[unsafe(link_section = ".data.percpu")]
static mut CPU_NUMBER: usize = usize::MAX;
/// This hart's SBI hart ID.
#[unsafe(link_section = ".data.percpu")]
static mut HART_ID: usize = usize::MAX;
/// Interrupt nesting depth (the trap entry counts it: 1 in a handler that interrupted task
/// context, 2 in one nested in the softirq).
#[unsafe(link_section = ".data.percpu")]
pub static mut IRQ_DEPTH: usize = 0;
/// Set while the softirq runs (it is not re-entered by nested ticks, as in Linux).
#[unsafe(link_section = ".data.percpu")]
pub static mut IN_SOFTIRQ: bool = false;

/// The per-CPU offset of this hart (`tp`).
#[inline(always)]
pub fn offset() -> usize {
    let tp: usize;
    // SAFETY: copies tp into a register.
    unsafe { core::arch::asm!("mv {}, tp", out(reg) tp, options(nomem, nostack, preserves_flags)) };
    tp
}

/// This hart's copy of the per-CPU variable at template address `var`.
#[inline(always)]
pub fn this_cpu<T>(var: *mut T) -> *mut T {
    var.wrapping_byte_add(offset())
}

/// Reads this hart's copy of a per-CPU variable (by template address).
#[inline(always)]
pub fn read<T: Copy>(var: *mut T) -> T {
    // SAFETY: `tp` holds this hart's offset from `init` on (0 before it, where the template is
    // read: only the boot hart runs then); the copy is valid, aligned memory of type T.
    unsafe { core::ptr::read_volatile(this_cpu(var)) }
}

/// Writes this hart's copy of a per-CPU variable.
#[inline(always)]
pub fn write<T: Copy>(var: *mut T, v: T) {
    // SAFETY: as in `read`; only this hart writes its copy.
    unsafe { core::ptr::write_volatile(this_cpu(var), v) }
}

/// This hart's CPU number; 0 before the per-CPU area is set up (only the boot hart runs then).
pub fn cpu_id() -> usize {
    if offset() == 0 {
        return 0;
    }
    read(&raw mut CPU_NUMBER)
}

/// This hart's SBI hart ID.
pub fn hart_id() -> usize {
    read(&raw mut HART_ID)
}

/// The range of CPU `cpu`'s IRQ stack.
pub fn irq_stack(cpu: usize) -> core::ops::Range<usize> {
    let base = guard(cpu).end;
    base..base + IRQ_STACK_SIZE
}

/// The range of CPU `cpu`'s guard page (unmapped, right below its IRQ stack).
pub fn guard(cpu: usize) -> core::ops::Range<usize> {
    let base = (&raw const IRQ_STACKS) as usize + cpu * core::mem::size_of::<GuardedIrqStack>();
    base..base + GUARD_SIZE
}

/// The range of CPU `cpu`'s task stack.
pub fn task_stack(cpu: usize) -> core::ops::Range<usize> {
    let base = (&raw const TASK_STACKS) as usize + cpu * TASK_STACK_SIZE;
    base..base + TASK_STACK_SIZE
}

/// What each CPU's IRQ stack top slot is, for the report (set by `init`).
pub static TOP_SLOTS: [AtomicUsize; MAX_HARTS] = [const { AtomicUsize::new(0) }; MAX_HARTS];

/// `lockdep_assert_irqs_disabled()`: claims happen with interrupts off. The library calls it
/// before every claim in debug builds (the host test builds with `-Cdebug-assertions=yes`); it
/// counts the calls, which the report compares with the ticks.
pub fn assert_irqs_disabled() {
    check!(
        !crate::hw::irqs_enabled(),
        "IRQ stack claimed with interrupts enabled"
    );
    crate::work::STATS[cpu_id()]
        .claims
        .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
}

// The library's per-CPU backend: this hart's `irq_stack_ptr` / `irq_stack_inuse` copies,
// reached as link address + `tp`.
irqstack::tp_percpu_backend!(
    irq_stack_ptr,
    irq_stack_inuse,
    size = IRQ_STACK_SIZE,
    assert_irqs_disabled = assert_irqs_disabled,
);

/// Whether this hart's in-use flag is set (the kernel's own read of it, for the checks).
pub fn irq_stack_in_use() -> bool {
    read(&raw mut irq_stack_inuse)
}

/// Sets up this hart's per-CPU area: copies the template, points `tp` at the copy, paints the
/// IRQ stack and records its top slot. Runs once per hart, with interrupts off.
pub fn init(cpu: usize, hartid: usize) {
    // Only the addresses of the linker symbols are taken.
    let (start, end) = (
        &raw const __percpu_start as usize,
        &raw const __percpu_end as usize,
    );
    let len = end - start;
    check!(
        len <= PERCPU_COPY_SIZE,
        "the per-CPU template is {len} bytes, more than the {PERCPU_COPY_SIZE} reserved per hart"
    );
    let copy = (&raw mut PERCPU_COPIES) as usize + cpu * PERCPU_COPY_SIZE;
    // SAFETY: copies the template (read-only after link) into this hart's own reserved area,
    // which no one else uses; lengths checked above.
    unsafe { core::ptr::copy_nonoverlapping(start as *const u8, copy as *mut u8, len) };
    let tp = copy.wrapping_sub(start);
    // SAFETY: sets this hart's per-CPU offset; from here on every per-CPU access goes to the
    // copy. Nothing else uses `tp` in this kernel (no TLS, no user mode).
    unsafe { core::arch::asm!("mv tp, {}", in(reg) tp, options(nomem, nostack, preserves_flags)) };
    write(&raw mut CPU_NUMBER, cpu);
    write(&raw mut HART_ID, hartid);
    let stack = irq_stack(cpu);
    // SAFETY: paints this hart's IRQ stack, which nothing uses yet (its pointer is still 0).
    unsafe {
        let words = stack.start as *mut u64;
        for i in 0..IRQ_STACK_SIZE / 8 {
            words.add(i).write_volatile(PAINT);
        }
    }
    let tos = stack.end - irqstack::TOP_SLOT_OFFSET;
    TOP_SLOTS[cpu].store(tos, Ordering::SeqCst);
    write(&raw mut irq_stack_ptr, tos);
    let ovf = (&raw const OVERFLOW_STACKS) as usize + (cpu + 1) * OVERFLOW_STACK_SIZE;
    write(&raw mut overflow_stack_top, ovf);
}

/// The deepest use of CPU `cpu`'s IRQ stack in bytes: from the top down to the lowest word that
/// no longer holds the paint.
pub fn irq_stack_depth(cpu: usize) -> usize {
    let stack = irq_stack(cpu);
    let words = stack.start as *const u64;
    for i in 0..IRQ_STACK_SIZE / 8 {
        // SAFETY: reads within this CPU's IRQ stack (the run has ended; nothing writes it).
        if unsafe { words.add(i).read_volatile() } != PAINT {
            return IRQ_STACK_SIZE - i * 8;
        }
    }
    0
}
