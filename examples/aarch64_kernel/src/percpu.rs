//! Per-CPU data the arm64 way: a per-CPU section (`.data.percpu`, the template) copied once per
//! CPU, each CPU's `tpidr_el1` holding `its copy - start of the template`, and the library's
//! ready backend `tpidr_percpu_backend!` over two of its variables (the IRQ stack's top slot and
//! its in-use flag), accessed like Linux's `ldr_this_cpu`.
//!
//! The IRQ stacks: 16 KiB per CPU, 4 KiB aligned, in .bss below the task stacks. With the MMU off there is no guard
//! page below them: an overflow would run into the previous CPU's stack (or whatever lies below
//! the first). Instead, each stack is painted at boot and the run checks at the end that the
//! deepest use stayed well inside it (`depth`).

use core::ptr::addr_of;

use crate::{MAX_CPUS, TASK_STACK_SIZE};

/// Bytes of each CPU's IRQ stack (Linux arm64's IRQ_STACK_SIZE with 4 KiB pages).
pub const IRQ_STACK_SIZE: usize = 16 * 1024;
/// Bytes reserved for each CPU's copy of the per-CPU section.
const AREA_SIZE: usize = 256;
/// What an unused IRQ stack byte holds.
const PAINT: u8 = 0x5a;

/// This CPU's IRQ stack top slot (`top - 16`), 0 until set up: the backend's `$stack_ptr`.
#[unsafe(link_section = ".data.percpu")]
static mut IRQ_STACK_PTR: usize = 0;
/// Whether this CPU's IRQ stack is in use: the backend's `$in_use`.
#[unsafe(link_section = ".data.percpu")]
static mut IRQ_STACK_INUSE: bool = false;
/// This CPU's number, as `init` wrote it (checked against MPIDR_EL1 in every tick).
#[unsafe(link_section = ".data.percpu")]
static mut CPU_NUMBER: usize = usize::MAX;

irqstack::tpidr_percpu_backend!(
    IRQ_STACK_PTR,
    IRQ_STACK_INUSE,
    size = IRQ_STACK_SIZE,
    assert_irqs_disabled = assert_irqs_masked,
);

/// The backend's debug check (Linux's `lockdep_assert_irqs_disabled()`): a claim with IRQs
/// unmasked could be interrupted between the test and the set of the in-use flag.
fn assert_irqs_masked() {
    check!(
        crate::hw::irqs_masked(),
        "IRQ stack claimed with IRQs unmasked"
    );
}

unsafe extern "C" {
    /// Bounds of the per-CPU template (link.ld).
    static __percpu_start: u8;
    static __percpu_end: u8;
}

#[repr(C, align(64))]
struct Areas([[u8; AREA_SIZE]; MAX_CPUS]);
static mut AREAS: Areas = Areas([[0; AREA_SIZE]; MAX_CPUS]);

#[repr(C, align(4096))]
struct IrqStacks([[u8; IRQ_STACK_SIZE]; MAX_CPUS]);
/// In a section of their own that link.ld places first in .bss, below the task stacks: gdb
/// walks from a handler across the switch only if the interrupted stack lies above the IRQ
/// stack (it stops at a frame whose caller's CFA is lower: "previous frame inner to this
/// frame").
#[unsafe(link_section = ".bss.irq_stacks")]
static mut IRQ_STACKS: IrqStacks = IrqStacks([[0; IRQ_STACK_SIZE]; MAX_CPUS]);

/// The stack the `fault=stray` boot points CPU 1's per-CPU IRQ stack pointer at: no CPU's own,
/// used by no one else (so running on it corrupts nothing before the handler's check reports).
#[unsafe(link_section = ".bss.irq_stacks")]
static mut STRAY_STACK: StrayStack = StrayStack([0; IRQ_STACK_SIZE]);
#[repr(C, align(4096))]
struct StrayStack([u8; IRQ_STACK_SIZE]);

fn template() -> (usize, usize) {
    (
        addr_of!(__percpu_start) as usize,
        addr_of!(__percpu_end) as usize,
    )
}

fn area(cpu: usize) -> usize {
    // SAFETY: only the address is taken.
    unsafe { addr_of!(AREAS.0[cpu]) as usize }
}

/// CPU `cpu`'s IRQ stack, `[low, high)`, as this kernel laid it out (independent of the
/// backend, which the checks compare against it).
pub fn irq_stack(cpu: usize) -> core::ops::Range<usize> {
    // SAFETY: only the address is taken.
    let base = unsafe { addr_of!(IRQ_STACKS.0[cpu]) } as usize;
    base..base + IRQ_STACK_SIZE
}

/// CPU `cpu`'s task (boot and idle) stack, `[low, high)`.
pub fn task_stack(cpu: usize) -> core::ops::Range<usize> {
    // SAFETY: only the address is taken.
    let base = unsafe { addr_of!(crate::boot::TASK_STACKS.0[cpu]) } as usize;
    base..base + TASK_STACK_SIZE
}

/// The per-CPU offset CPU `cpu` gets: its copy minus the template.
pub fn offset(cpu: usize) -> usize {
    area(cpu).wrapping_sub(template().0)
}

/// Writes `value` into CPU `cpu`'s copy of the per-CPU variable at `var`.
///
/// # Safety
///
/// `var` is a per-CPU variable of type `T`, and CPU `cpu` does not use its copy yet.
unsafe fn write_copy<T>(cpu: usize, var: *const T, value: T) {
    let at = var as usize + offset(cpu);
    // SAFETY: the copy lies inside AREAS[cpu] (init checked the template fits) with the
    // variable's alignment (the area is 64-byte aligned, the template too); nothing reads it.
    unsafe { (at as *mut T).write_volatile(value) }
}

/// Sets up CPU `cpu` (called on that CPU, IRQs masked): paints its IRQ stack, copies the
/// per-CPU template, fills in its IRQ stack pointer and number, and loads `tpidr_el1` with the
/// offset of CPU `offset_of` (its own, except in the `fault=shared` boot, where CPU 1 takes CPU
/// 0's and so would use CPU 0's per-CPU data, IRQ stack included; main.rs's check before every
/// claim stops it at its first tick).
pub fn init(cpu: usize, offset_of: usize) {
    let (start, end) = template();
    check!(
        end - start <= AREA_SIZE && start.is_multiple_of(64),
        "per-CPU template of {} bytes at {start:#x} does not fit a {AREA_SIZE}-byte area",
        end - start
    );
    let stack = irq_stack(cpu);
    // SAFETY: this CPU's IRQ stack and per-CPU area, used by no one yet (its IRQs are masked
    // and its pointer still 0); the template is initialized data.
    unsafe {
        core::ptr::write_bytes(stack.start as *mut u8, PAINT, IRQ_STACK_SIZE);
        core::ptr::copy_nonoverlapping(start as *const u8, area(cpu) as *mut u8, end - start);
        write_copy(
            cpu,
            &raw const IRQ_STACK_PTR,
            stack.end - irqstack::TOP_SLOT_OFFSET,
        );
        write_copy(cpu, &raw const CPU_NUMBER, cpu);
    }
    crate::hw::set_tpidr_el1(offset(offset_of));
}

/// The `fault=stray` boot (called on CPU `cpu` after `init`, IRQs masked): points this CPU's IRQ
/// stack pointer at the top slot of a stack that is not its own, as a kernel that computed it
/// wrongly would. Its per-CPU data is its own otherwise, so the check before the claim passes,
/// the backend switches to that stack, and the handler's check of the stack it runs on catches
/// it.
pub fn point_at_stray_stack(cpu: usize) {
    let base = addr_of!(STRAY_STACK) as usize;
    // SAFETY: this CPU's own copy, not in use yet (IRQs masked, no claim has happened).
    unsafe {
        write_copy(
            cpu,
            &raw const IRQ_STACK_PTR,
            base + IRQ_STACK_SIZE - irqstack::TOP_SLOT_OFFSET,
        )
    };
}

/// Reads this CPU's copy of a per-CPU `usize` (the `ldr_this_cpu` sequence).
macro_rules! this_cpu_read {
    ($var:path) => {{
        let v: usize;
        // SAFETY: adrp/add form the template variable's address, mrs reads this CPU's offset,
        // ldr loads its copy (8-byte aligned); no stack, flags untouched.
        unsafe {
            core::arch::asm!(
                "adrp {v}, {var}",
                "add {v}, {v}, :lo12:{var}",
                "mrs {off}, tpidr_el1",
                "ldr {v}, [{v}, {off}]",
                v = out(reg) v,
                off = out(reg) _,
                var = sym $var,
                options(nostack, readonly, preserves_flags),
            )
        };
        v
    }};
}

/// This CPU's number as its per-CPU data says.
pub fn this_cpu() -> usize {
    this_cpu_read!(CPU_NUMBER)
}

/// This CPU's top slot as its per-CPU data says (what the backend claims).
pub fn this_cpu_stack_ptr() -> usize {
    this_cpu_read!(IRQ_STACK_PTR)
}

/// The `fault=inuse` boot: clears this CPU's in-use flag while its IRQ stack is in use (the bug
/// of an early release), so that a nested IRQ claims it again and switches to the top of a
/// stack that is in use. The nesting check catches it.
pub fn clear_in_use_early() {
    // SAFETY: this CPU's copy of the flag (template address + tpidr_el1), IRQs masked.
    unsafe {
        core::arch::asm!(
            "adrp {p}, {var}",
            "add {p}, {p}, :lo12:{var}",
            "mrs {off}, tpidr_el1",
            "strb wzr, [{p}, {off}]",
            p = out(reg) _,
            off = out(reg) _,
            var = sym IRQ_STACK_INUSE,
            options(nostack, preserves_flags),
        )
    };
}

/// The deepest use of CPU `cpu`'s IRQ stack so far, in bytes: from the top down to the lowest
/// byte that no longer holds the paint.
pub fn depth(cpu: usize) -> usize {
    let r = irq_stack(cpu);
    // SAFETY: reads this kernel's static IRQ stack; the CPU that owns it is stopped (or it is
    // the caller's own and the bytes below sp are not in use).
    let bytes = unsafe { core::slice::from_raw_parts(r.start as *const u8, IRQ_STACK_SIZE) };
    let untouched = bytes.iter().take_while(|&&b| b == PAINT).count();
    IRQ_STACK_SIZE - untouched
}
