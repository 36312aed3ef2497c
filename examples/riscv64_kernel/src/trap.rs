//! The trap entry (`stvec`, direct mode): saves the caller-saved registers, `sepc` and `sstatus`
//! in a frame on the current stack, builds a frame record that links the interrupted code into
//! the frame-pointer chain, and calls `trap_rust`.
//!
//! Which stack: the interrupted one. This kernel has no user mode, so every trap comes from
//! S-mode on a valid kernel stack (a task stack, or the IRQ stack when a tick nests in the
//! softirq), and `sp` can be used as it is: no stack swap through `sscratch`. (Linux swaps `sp`
//! with `sscratch` because a trap from U-mode arrives with the user's `sp`; with `sscratch = 0`
//! in the kernel it tells the two apart. A kernel with user mode would do the same and find its
//! kernel stack in the per-CPU area.) Nested ticks therefore push their frame on the IRQ stack,
//! below the softirq's frames, which is "nesting in place". Only an overflowed IRQ stack is not
//! usable: the entry checks for it first (using `sscratch` and a per-CPU slot as scratch) and
//! moves to the hart's overflow stack.
//!
//! `tp` (the per-CPU offset) and `gp` are not saved: nothing but the boot code writes them.
//! `s0..s11` are callee-saved, so `trap_rust` preserves them; the entry saves `s0` only to
//! restore it after using it as the frame pointer of the record.

use crate::{hw, percpu};

/// The registers the entry saves, at the stack pointer it passes to `trap_rust`.
#[repr(C)]
pub struct TrapFrame {
    pub ra: usize,
    pub t: [usize; 3],
    pub a: [usize; 8],
    pub t3_6: [usize; 4],
    pub sepc: usize,
    pub sstatus: usize,
    /// The frame record (`s0` of the entry points just above it): the interrupted code's `s0`,
    /// then `sepc` in the place of a return address, so that a frame-pointer walk goes on from
    /// the trap into the interrupted function.
    pub record_fp: usize,
    pub record_ra: usize,
}

/// Bytes of the trap frame: a multiple of 16, so that `sp` stays 16-byte aligned (psABI).
pub const FRAME_SIZE: usize = core::mem::size_of::<TrapFrame>();
const _: () = assert!(FRAME_SIZE == 160 && FRAME_SIZE.is_multiple_of(16));

// The offsets below follow `TrapFrame`. Each line keeps `sp` 16-byte aligned: it moves once, by
// FRAME_SIZE, before any store. The unwinder the kernel uses is the frame-pointer walk: the
// record at `s0 - 16` (caller's s0) and `s0 - 8` (return address: here `sepc`).
core::arch::global_asm!(
    ".pushsection .text.trap, \"ax\", @progbits",
    ".globl trap_entry",
    // stvec in direct mode takes a 4-byte aligned address (its low two bits are the mode).
    ".p2align 2",
    "trap_entry:",
    // The guard-page check, before anything is pushed: if sp lies in the guard page below this
    // hart's IRQ stack, or so close above it that the frame would reach it, pushing would fault
    // again, forever. t0 goes to sscratch (unused otherwise in this kernel), t1 to this hart's
    // `trap_scratch` slot; interrupts are off and none of this can fault, so neither is
    // overwritten before it is restored.
    "csrw sscratch, t0",
    "lla t0, {scratch}",
    "add t0, t0, tp",
    "sd t1, 0(t0)",
    // d = sp - top slot. The stack base is top slot + TOP_SLOT_OFFSET - 16 KiB, the guard the
    // 4 KiB below: overflow iff guard start <= sp < base + frame size, i.e. (unsigned)
    // d - (guard start - top slot) < guard size + frame size. A hart without an IRQ stack
    // (top slot 0) never matches: d is then sp itself.
    "lla t0, {stack_ptr}",
    "add t0, t0, tp",
    "ld t0, 0(t0)",
    "sub t0, sp, t0",
    "li t1, {below}",
    "add t0, t0, t1",
    "li t1, {span}",
    "bltu t0, t1, .Ltrap_stack_overflow",
    "lla t0, {scratch}",
    "add t0, t0, tp",
    "ld t1, 0(t0)",
    "csrr t0, sscratch",
    // The frame, on the interrupted stack (see the module doc).
    "addi sp, sp, -{size}",
    "sd ra, 0(sp)",
    "sd t0, 8(sp)",
    "sd t1, 16(sp)",
    "sd t2, 24(sp)",
    "sd a0, 32(sp)",
    "sd a1, 40(sp)",
    "sd a2, 48(sp)",
    "sd a3, 56(sp)",
    "sd a4, 64(sp)",
    "sd a5, 72(sp)",
    "sd a6, 80(sp)",
    "sd a7, 88(sp)",
    "sd t3, 96(sp)",
    "sd t4, 104(sp)",
    "sd t5, 112(sp)",
    "sd t6, 120(sp)",
    // sepc and sstatus before anything can re-enable interrupts (the softirq does): a nested
    // trap overwrites both CSRs.
    "csrr t0, sepc",
    "sd t0, 128(sp)",
    "csrr t1, sstatus",
    "sd t1, 136(sp)",
    // The frame record: [s0 - 16] = interrupted s0, [s0 - 8] = sepc; s0 = the interrupted sp.
    "sd s0, 144(sp)",
    "sd t0, 152(sp)",
    "addi s0, sp, {size}",
    "mv a0, sp",
    "call {rust}",
    // Back: interrupts are off again (trap_rust returns with SIE clear). The saved sstatus has
    // SIE clear and SPP/SPIE as the trap set them, so `sret` returns to the interrupted mode
    // with its interrupt state.
    "ld t1, 136(sp)",
    "csrw sstatus, t1",
    "ld t0, 128(sp)",
    "csrw sepc, t0",
    "ld s0, 144(sp)",
    "ld ra, 0(sp)",
    "ld t0, 8(sp)",
    "ld t1, 16(sp)",
    "ld t2, 24(sp)",
    "ld a0, 32(sp)",
    "ld a1, 40(sp)",
    "ld a2, 48(sp)",
    "ld a3, 56(sp)",
    "ld a4, 64(sp)",
    "ld a5, 72(sp)",
    "ld a6, 80(sp)",
    "ld a7, 88(sp)",
    "ld t3, 96(sp)",
    "ld t4, 104(sp)",
    "ld t5, 112(sp)",
    "ld t6, 120(sp)",
    "addi sp, sp, {size}",
    "sret",
    // Overflow: this hart's overflow stack, then the report (it does not return).
    ".Ltrap_stack_overflow:",
    "mv a0, sp",
    "lla t0, {overflow_top}",
    "add t0, t0, tp",
    "ld sp, 0(t0)",
    "csrr a1, sepc",
    "csrr a2, stval",
    "csrr a3, scause",
    "call {overflow}",
    "j .Ltrap_stack_overflow",
    ".popsection",
    size = const FRAME_SIZE,
    rust = sym trap_rust,
    scratch = sym percpu::trap_scratch,
    stack_ptr = sym percpu::irq_stack_ptr,
    overflow_top = sym percpu::overflow_stack_top,
    overflow = sym stack_overflow,
    below = const GUARD_BELOW_TOP_SLOT,
    span = const percpu::GUARD_SIZE + FRAME_SIZE,
);

/// Distance from the top slot down to the guard page's start.
const GUARD_BELOW_TOP_SLOT: usize =
    percpu::IRQ_STACK_SIZE - irqstack::TOP_SLOT_OFFSET + percpu::GUARD_SIZE;

/// The trap entry found `sp` in (or within a frame of) this hart's guard page: reports the
/// overflow on the overflow stack and ends the run with status 3.
extern "C" fn stack_overflow(sp: usize, sepc: usize, stval: usize, scause: usize) -> ! {
    let cpu = percpu::cpu_id();
    let guard = percpu::guard(cpu);
    // A store (15) or load (13) page fault on the guard itself is the expected overflow.
    check!(
        (scause == 15 || scause == 13) && guard.contains(&stval),
        "trap with sp {sp:#x} near the guard page {guard:#x?}, but scause {scause:#x}, stval \
         {stval:#x}"
    );
    hw::print_locked(
        format_args!(
            "IRQ stack overflow on cpu {cpu}: sp {sp:#x}, fault address {stval:#x} in the guard \
             page {:#x}-{:#x}, sepc {sepc:#x}\n",
            guard.start, guard.end
        ),
        true,
    );
    hw::exit_fail(3)
}

unsafe extern "C" {
    fn trap_entry();
}

/// Points `stvec` at `trap_entry` (direct mode). Per hart, with interrupts off.
pub fn init() {
    let entry = trap_entry as *const () as usize;
    check!(
        entry.is_multiple_of(4),
        "trap_entry {entry:#x} is not 4-byte aligned"
    );
    // SAFETY: stvec takes the 4-byte aligned entry with mode 0 (direct): every trap goes there.
    unsafe { core::arch::asm!("csrw stvec, {}", in(reg) entry, options(nomem, nostack)) };
}

/// Called by `trap_entry` with interrupts off and the frame on the interrupted stack.
extern "C" fn trap_rust(frame: &mut TrapFrame) {
    let scause: usize;
    let stval: usize;
    // SAFETY: reads two CSRs into registers.
    unsafe {
        core::arch::asm!("csrr {}, scause", out(reg) scause, options(nomem, nostack));
        core::arch::asm!("csrr {}, stval", out(reg) stval, options(nomem, nostack));
    }
    if scause == hw::SCAUSE_STIMER {
        crate::work::timer_interrupt(frame);
    } else {
        fail!(
            "unexpected trap: scause {scause:#x}, sepc {:#x}, stval {stval:#x}, sp {:#x}",
            frame.sepc,
            frame as *const TrapFrame as usize + FRAME_SIZE
        );
    }
    check!(
        !hw::irqs_enabled(),
        "trap_rust returns with interrupts enabled"
    );
}
