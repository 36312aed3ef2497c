//! The CFI-only switch frames on riscv64 (user-space builds): how gdb crosses the stack switch
//! whichever stack lies higher. The problem and the design are those of x86-64
//! (`src/switch_frames.rs`) and AArch64 (`arch/aarch64/switch_frames.rs`); this is the port.
//!
//! gdb refuses to unwind from one normal frame into another whose CFA lies below it ("previous
//! frame inner to this frame (corrupt stack?)"). With the frame record's CFA (s0 + 0) the
//! trampoline's frame lies on the interrupted stack and the body's on the IRQ stack, so `bt`
//! stops at the trampoline whenever the IRQ stack is mapped above: under qemu-user that is the
//! usual layout (later mappings go above the main stack).
//!
//! From the switch until the body returns, the trampoline's CFI (`__irqstack_rt_switch_cfi!` in
//! `pieces.rs`) says CFA = sp + 16 (the top of the IRQ stack), ra at CFA - 8 (the padding word
//! above the top slot, which the std backend fills with [`switch_return_address`]) and s0
//! unchanged. The unwinder then lands in [`irq_stack_switch`], never executed, made of two FDEs:
//!
//! 1. a **signal frame** (`.cfi_signal_frame`; gdb shows `<signal handler called>`, and checks
//!    the order of frame addresses only between two normal frames): CFA = sp (the IRQ stack top),
//!    s0 unchanged, ra = the padding word plus 12, the start of the second part. After a signal
//!    frame unwinders take the next return address as exact (no minus one), so it lands there;
//! 2. a **normal frame** for the trampoline's frame record on the interrupted stack: CFA =
//!    s0 + 0, ra at CFA - 8, s0 at CFA - 16, exactly the trampoline's own rule before the switch.
//!    Not a signal frame: the caller's return address gets the usual minus one, so the caller's
//!    call-site lookup (panics, `catch_unwind`) works as without the switch.
//!
//! Every pair of adjacent normal frames is then in order in both layouts, and libgcc (Rust's
//! panics, `std::backtrace`) walks the same chain (tests: `tests/cross_gdb.rs`, and
//! `tests/switch.rs` under qemu-user from `tests/cross_arch.rs`).

/// Distance from the first part of [`irq_stack_switch`] to the second part (its start). The
/// stored return address is the first part plus 4 (an instruction boundary, as real return
/// addresses are; minus one it is still inside the first part), so the first part's CFI adds
/// `SECOND_PART - 4` = 12.
const SECOND_PART: usize = 16;

/// The two CFI-only frames (see the module documentation). Never called: `ebreak` throughout.
///
/// Layout: bytes 0..16 the signal frame (the trampoline's return address points at byte 4, so
/// both that address and the one before it fall inside it), bytes 16..32 the thread-side frame
/// (entered at exactly byte 16).
#[unsafe(naked)]
pub(crate) extern "C" fn irq_stack_switch() {
    // The CFI escape is DW_CFA_val_expression (0x16) for the return address column 1 (ra), 5
    // bytes of expression: DW_OP_breg2 (sp, 0x72) -8 (0x78), DW_OP_deref (0x06),
    // DW_OP_plus_uconst (0x23) 12 (0x0c). That is "the word at CFA - 8, plus 12": the value the
    // backend stored (this function plus 4) moved to byte 16. `.option norvc` keeps every
    // `ebreak` 4 bytes long (RV64GC would compress it to the 2-byte `c.ebreak`), so the parts
    // have the sizes above.
    core::arch::naked_asm!(
        ".option push",
        ".option norvc",
        ".cfi_startproc",
        ".cfi_signal_frame",
        ".cfi_def_cfa sp, 0",
        ".cfi_escape 0x16, 0x01, 0x05, 0x72, 0x78, 0x06, 0x23, 0x0c",
        ".cfi_same_value s0",
        "ebreak",
        "ebreak",
        "ebreak",
        "ebreak",
        ".cfi_endproc",
        ".cfi_startproc",
        ".cfi_def_cfa s0, 0",
        ".cfi_offset ra, -8",
        ".cfi_offset s0, -16",
        "ebreak",
        "ebreak",
        "ebreak",
        "ebreak",
        ".cfi_endproc",
        ".option pop",
    )
}

/// The value the std backend stores in the word above the top slot of every IRQ stack: where
/// the trampoline's CFI says the trampoline returns to.
pub(crate) fn switch_return_address() -> usize {
    const _: () = assert!(SECOND_PART == 4 + 0x0c);
    irq_stack_switch as extern "C" fn() as usize + 4
}
