//! The trap entry (`stvec`, direct mode): saves the caller-saved registers, `sepc` and `sstatus`
//! in a frame on the current stack, builds a frame record that links the interrupted code into
//! the frame-pointer chain, and calls `trap_rust`.
//!
//! Which stack: the interrupted one. This kernel has no user mode, so every trap comes from
//! S-mode on a valid kernel stack (a task stack, or the IRQ stack when a tick nests in the
//! softirq), and `sp` can be used as it is: `sscratch` is not needed. (Linux swaps `sp` with
//! `sscratch` because a trap from U-mode arrives with the user's `sp`; with `sscratch = 0` in the
//! kernel it tells the two apart. A kernel with user mode would do the same and find its kernel
//! stack in the per-CPU area.) Nested ticks therefore push their frame on the IRQ stack, below
//! the softirq's frames, which is "nesting in place".
//!
//! `tp` (the per-CPU offset) and `gp` are not saved: nothing but the boot code writes them.
//! `s0..s11` are callee-saved, so `trap_rust` preserves them; the entry saves `s0` only to
//! restore it after using it as the frame pointer of the record.

use crate::hw;

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
    ".popsection",
    size = const FRAME_SIZE,
    rust = sym trap_rust,
);

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
