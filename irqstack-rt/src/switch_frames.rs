//! How debuggers cross the stack switch whatever the layout (user-space builds).
//!
//! # The problem
//!
//! gdb refuses to unwind into a frame whose frame address (CFA) is *below* that of the frame it
//! came from, when both are normal frames: "previous frame inner to this frame (corrupt
//! stack?)". With the kernel's CFI (after `mov rbp, rsp`, CFA = rbp + 16 for the whole
//! trampoline) the trampoline's frame lies on the thread stack and the body's on the IRQ stack,
//! so `bt` stops at the trampoline whenever the IRQ stack is mapped above the thread stack
//! (which mmap does whenever a gap above happens to fit it). Two shortcuts do not work:
//! `.cfi_signal_frame` on the trampoline lets gdb through but tells every unwinder that the
//! *caller's* return address is exact, so the personality routine looks the caller's call site up
//! one byte too far and panics abort ("failed to initiate panic"); and a symbol named
//! `__morestack` (gdb exempts split-stack's helper from the check) cannot be defined once per
//! handler (one object may hold many trampolines), would pretend to be libgcc's split-stack
//! entry to every tool that knows that name, and would still leave the trampoline's frame on the
//! wrong side. Placing the IRQ stack below the thread stack helps only when the address space
//! allows, and nothing forces mmap to honour a hint.
//!
//! # The fix: two frames that exist only in the CFI
//!
//! From the `call` of the trampoline on (while the body runs), the trampoline's CFI says
//! CFA = rsp + 16 (the top of the IRQ stack, above every body frame), the return address is at
//! CFA - 8 (the padding word above the top slot, which the backend fills at creation with the
//! address of [`irq_stack_switch`] plus one), and rbp is unchanged. The unwinder then lands in
//! `irq_stack_switch`, never executed, made of two FDEs:
//!
//! 1. a **signal frame** (`.cfi_signal_frame`): gdb types it `SIGTRAMP_FRAME` and shows
//!    `<signal handler called>`, which is what the switch is: an interruption. gdb checks the
//!    order of frame addresses only between two normal frames, so neither the step onto it nor
//!    the step off it is checked. Its CFI: CFA = rsp (the IRQ stack top), return address = the
//!    word at CFA - 8 plus 15: the second part, at an exact address (after a signal frame,
//!    unwinders do not subtract one from the next return address, so the exact value is right);
//! 2. a **normal frame** for the trampoline's frame record on the thread stack: CFA = rbp + 16,
//!    return address at CFA - 8, rbp saved at CFA - 16 (exactly the kernel's rule). It is not a
//!    signal frame, so the caller's return address gets the usual minus one, and the caller's
//!    call-site lookup (panics, `catch_unwind`) works as without the switch.
//!
//! Every pair of adjacent normal frames is then in order (body below the IRQ top; the thread
//! side frame below its caller), in both layouts, and libgcc, Rust's panics and
//! `std::backtrace` walk the same chain (tests: `gdb_backtrace`, `switch::panics_*`).
//!
//! Kernel (no_std) builds keep the kernel's CFI unchanged: the word above the top slot is not
//! ours there (`hardirq_stack_ptr` is the top minus 8).

/// CFI after the switch in the trampoline (user-space builds): the trampoline's frame is the top
/// of the IRQ stack and returns into `irq_stack_switch` (see the module documentation).
#[cfg(feature = "std")]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_switch_cfi {
    () => {
        ".cfi_def_cfa rsp, 16\n.cfi_same_value rbp\n"
    };
}

/// Kernel builds: the kernel's CFI (CFA = rbp + 16) stays in force.
#[cfg(not(feature = "std"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_switch_cfi {
    () => {
        ""
    };
}

/// Distance from the first part of [`irq_stack_switch`] (where the trampoline's CFI returns to: the
/// start plus one) to the second part (its start); written into the first part's CFI below.
#[cfg(feature = "std")]
const SECOND_PART: usize = 16;

/// The two CFI-only frames (see the module documentation). Never called: `int3` throughout.
///
/// Layout: bytes 0..16 the signal frame (the trampoline's return address points at byte 1, so
/// that both that address and the one before it fall inside it), bytes 16..32 the thread-side
/// frame (entered at exactly byte 16).
#[cfg(feature = "std")]
#[unsafe(naked)]
pub(crate) extern "C" fn irq_stack_switch() {
    // The CFI escape is DW_CFA_val_expression (0x16) for the return address column 16 (rip), 5
    // bytes of expression: DW_OP_breg7 (rsp) -8, DW_OP_deref, DW_OP_plus_uconst 15. That is
    // "the word at CFA - 8, plus 15": the value the backend stored (this function plus one)
    // moved to byte 16.
    core::arch::naked_asm!(
        ".cfi_startproc",
        ".cfi_signal_frame",
        ".cfi_def_cfa rsp, 0",
        ".cfi_escape 0x16, 0x10, 0x05, 0x77, 0x78, 0x06, 0x23, 0x0f",
        ".cfi_same_value rbp",
        ".fill 16, 1, 0xcc",
        ".cfi_endproc",
        ".cfi_startproc",
        ".cfi_def_cfa rbp, 16",
        ".cfi_offset rbp, -16",
        ".fill 16, 1, 0xcc",
        ".cfi_endproc",
    )
}

/// The value the backend stores in the word above the top slot of every IRQ stack: where the
/// trampoline's CFI says the trampoline returns to.
#[cfg(feature = "std")]
pub(crate) fn switch_return_address() -> usize {
    const _: () = assert!(SECOND_PART == 1 + 0x0f);
    irq_stack_switch as extern "C" fn() as usize + 1
}
