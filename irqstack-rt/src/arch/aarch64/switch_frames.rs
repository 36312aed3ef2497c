//! The CFI-only switch frames on AArch64 (user-space builds): how gdb crosses the stack switch
//! whichever stack lies higher. The problem and the design are those of x86-64
//! (`src/switch_frames.rs`); this is the port.
//!
//! gdb refuses to unwind from one normal frame into another whose CFA lies below it ("previous
//! frame inner to this frame (corrupt stack?)"). With the frame record's CFA (x29 + 16) the
//! trampoline's frame lies on the interrupted stack and the body's on the IRQ stack, so `bt`
//! stops at the trampoline whenever the IRQ stack is mapped above: under qemu-user that is the
//! usual layout (later mappings go above the main stack).
//!
//! From the switch until the body returns, the trampoline's CFI (`__irqstack_rt_switch_cfi!` in
//! `pieces.rs`) says CFA = sp + 16 (the top of the IRQ stack), x30 at CFA - 8 (the padding word
//! above the top slot, which the std backend fills with [`switch_return_address`]) and x29
//! unchanged. The unwinder then lands in [`irq_stack_switch`], never executed, made of two FDEs:
//!
//! 1. a **signal frame** (`.cfi_signal_frame`; gdb shows `<signal handler called>`, and checks
//!    the order of frame addresses only between two normal frames): CFA = sp (the IRQ stack top),
//!    x29 unchanged, x30 = the padding word plus 12, the start of the second part. After a signal
//!    frame unwinders take the next return address as exact (no minus one), so it lands there;
//! 2. a **normal frame** for the trampoline's frame record on the interrupted stack: CFA =
//!    x29 + 16, x29 at CFA - 16, x30 at CFA - 8, exactly the trampoline's own rule before the
//!    switch. Not a signal frame: the caller's return address gets the usual minus one, so the
//!    caller's call-site lookup (panics, `catch_unwind`) works as without the switch.
//!
//! Every pair of adjacent normal frames is then in order in both layouts, and libgcc (Rust's
//! panics, `std::backtrace`) walks the same chain (tests: `tests/cross_gdb.rs`, and
//! `tests/switch.rs` under qemu-user from `tests/cross_arch.rs`).

/// Distance from the first part of [`irq_stack_switch`] to the second part (its start). The
/// stored return address is the first part plus 4 (an instruction boundary, as real return
/// addresses are; minus one it is still inside the first part), so the first part's CFI adds
/// `SECOND_PART - 4` = 12.
const SECOND_PART: usize = 16;

/// The two CFI-only frames (see the module documentation). Never called: `brk` throughout.
///
/// Layout: bytes 0..16 the signal frame (the trampoline's return address points at byte 4, so
/// both that address and the one before it fall inside it), bytes 16..32 the thread-side frame
/// (entered at exactly byte 16).
#[unsafe(naked)]
pub(crate) extern "C" fn irq_stack_switch() {
    // The CFI escape is DW_CFA_val_expression (0x16) for the return address column 30 (x30,
    // 0x1e), 5 bytes of expression: DW_OP_breg31 (sp, 0x8f) -8 (0x78), DW_OP_deref (0x06),
    // DW_OP_plus_uconst (0x23) 12 (0x0c). That is "the word at CFA - 8, plus 12": the value the
    // backend stored (this function plus 4) moved to byte 16. `brk #0x3e8` (a debugger trap, as
    // Rust's own `core::intrinsics::abort` uses) fills both parts: nothing runs here.
    core::arch::naked_asm!(
        ".cfi_startproc",
        ".cfi_signal_frame",
        ".cfi_def_cfa sp, 0",
        ".cfi_escape 0x16, 0x1e, 0x05, 0x8f, 0x78, 0x06, 0x23, 0x0c",
        ".cfi_same_value x29",
        "brk #0x3e8",
        "brk #0x3e8",
        "brk #0x3e8",
        "brk #0x3e8",
        ".cfi_endproc",
        ".cfi_startproc",
        ".cfi_def_cfa x29, 16",
        ".cfi_offset x29, -16",
        ".cfi_offset x30, -8",
        "brk #0x3e8",
        "brk #0x3e8",
        "brk #0x3e8",
        "brk #0x3e8",
        ".cfi_endproc",
    )
}

/// The value the std backend stores in the word above the top slot of every IRQ stack: where
/// the trampoline's CFI says the trampoline returns to.
pub(crate) fn switch_return_address() -> usize {
    const _: () = assert!(SECOND_PART == 4 + 0x0c);
    irq_stack_switch as extern "C" fn() as usize + 4
}
