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
//! 2. a **normal frame** for the trampoline's side of the thread stack: CFA = the saved stack
//!    pointer in the top slot plus 8, return address at CFA - 8 (where the call of the
//!    trampoline, or of the wrapper that tail-called it, left it). (Kernel builds: the
//!    trampoline's frame record, CFA = rbp + 16, rbp at CFA - 16, exactly the kernel's rule.) It
//!    is not a signal frame, so the caller's return address gets the usual minus one, and the
//!    caller's call-site lookup (panics, `catch_unwind`) works as without the switch.
//!
//! Every pair of adjacent normal frames is then in order (body below the IRQ top; the thread
//! side frame below its caller), in both layouts, and libgcc, Rust's panics and
//! `std::backtrace` walk the same chain (tests: `gdb_backtrace`, `switch::panics_*`).
//!
//! Kernel builds (`kernel-abi`) get the same two frames, written out by hand in `.debug_frame`
//! (see `__irqstack_rt_switch_cfi` below); other `no_std` builds keep the kernel's CFI.
//!
//! AArch64 and riscv64 user-space builds have their ports in `arch/aarch64/switch_frames.rs` and
//! `arch/riscv64/switch_frames.rs` (the same two frames around their frame records).

/// CFI after the switch in the trampoline (user-space builds): the trampoline's frame is the top
/// of the IRQ stack and returns into `irq_stack_switch` (see the module documentation).
#[cfg(feature = "std")]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_switch_cfi {
    () => {
        ".cfi_def_cfa rsp, 16\n"
    };
}

/// `no_std` builds without `kernel-abi`: the kernel's CFI (CFA = rbp + 16) stays in force.
#[cfg(all(not(feature = "std"), not(feature = "kernel-abi")))]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_switch_cfi {
    () => {
        ""
    };
}

/// Kernel builds (`kernel-abi`): the same two CFI-only frames as in user space, so that gdb
/// crosses the switch whichever stack lies higher (a kernel's IRQ stacks and task stacks may lie
/// either way round).
///
/// The top slot is Linux's `hardirq_stack_ptr`, the top minus 8, so the word above it is not
/// the stack's; but the trampoline starts the body 8 bytes lower (`lea rsp, [tos - 8]`, for
/// Rust's alignment), and that word, at `tos - 8`, is the trampoline's own. It writes the
/// return address of the CFI-only frames there on every switch (`r10`: caller-saved and no
/// argument register), and its CFI from then on says CFA = rsp + 8 = `tos`, return address at
/// CFA - 8, rbp unchanged.
#[cfg(all(not(feature = "std"), feature = "kernel-abi"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_switch_cfi {
    () => {
        "lea r10, [rip + __irqstack_rt_irq_stack_switch_0_1 + 1]\n\
         mov qword ptr [rsp], r10\n\
         .cfi_def_cfa rsp, 8\n.cfi_same_value rbp\n"
    };
}

// The CFI-only frames of kernel builds, written out by hand. With `kernel-abi` unwind
// information goes to `.debug_frame` (see `__irqstack_rt_cfi_sections`), where the assembler
// drops the `S` (signal frame) augmentation that `.cfi_signal_frame` asks for; gdb reads it in
// `.debug_frame` CIEs too, so the first frame gets a CIE of its own with augmentation "S".
//
// Code: byte 0 `int3`; bytes 1..5 `endbr64`, where the trampolines' `lea` points (with IBT an
// address taken in code must land on one; objtool `--ibt` checks it); `int3` to 32. Nothing runs
// here. Symbol type `notype`: objtool validates no function here.
//
// `.debug_frame`: CIE 1 (version 1, augmentation "S", code alignment 1, data alignment -8,
// return address column 16 = rip); FDE [sym, sym + 16): CFA = rsp (DW_CFA_def_cfa 7, 0), rip =
// the word at rsp - 8, plus 15 (DW_CFA_val_expression 16: DW_OP_breg7 -8, DW_OP_deref,
// DW_OP_plus_uconst 15), rbp unchanged (DW_CFA_same_value 6). CIE 2 (augmentation ""); FDE
// [sym + 16, sym + 32): CFA = rbp + 16 (DW_CFA_def_cfa 6, 16), rip at CFA - 8 (DW_CFA_offset 16,
// 1), rbp at CFA - 16 (DW_CFA_offset 6, 2): the trampoline's frame record on the interrupted
// stack. Padding is DW_CFA_nop (0). The name carries the semver-compatible version (see
// `padded` in lib.rs).
#[cfg(all(not(feature = "std"), feature = "kernel-abi"))]
core::arch::global_asm!(
    ".pushsection .text.__irqstack_rt_irq_stack_switch_0_1, \"ax\", @progbits",
    ".balign 16, 0xcc",
    ".globl __irqstack_rt_irq_stack_switch_0_1",
    ".hidden __irqstack_rt_irq_stack_switch_0_1",
    ".type __irqstack_rt_irq_stack_switch_0_1, @notype",
    "__irqstack_rt_irq_stack_switch_0_1:",
    "int3",
    "endbr64",
    ".fill 27, 1, 0xcc",
    ".size __irqstack_rt_irq_stack_switch_0_1, 32",
    ".popsection",
    ".pushsection .debug_frame, \"\", @progbits",
    ".balign 8, 0",
    "4739960:",
    ".long 4739961f - 4739962f",
    "4739962:",
    ".long 0xffffffff",
    ".byte 1",
    ".asciz \"S\"",
    ".uleb128 1",
    ".sleb128 -8",
    ".byte 16",
    ".balign 8, 0",
    "4739961:",
    ".long 4739963f - 4739964f",
    "4739964:",
    ".long 4739960b",
    ".quad __irqstack_rt_irq_stack_switch_0_1",
    ".quad 16",
    ".byte 0x0c, 0x07, 0x00",
    ".byte 0x16, 0x10, 0x05, 0x77, 0x78, 0x06, 0x23, 0x0f",
    ".byte 0x08, 0x06",
    ".balign 8, 0",
    "4739963:",
    "4739965:",
    ".long 4739966f - 4739967f",
    "4739967:",
    ".long 0xffffffff",
    ".byte 1",
    ".asciz \"\"",
    ".uleb128 1",
    ".sleb128 -8",
    ".byte 16",
    ".balign 8, 0",
    "4739966:",
    ".long 4739968f - 4739969f",
    "4739969:",
    ".long 4739965b",
    ".quad __irqstack_rt_irq_stack_switch_0_1 + 16",
    ".quad 16",
    ".byte 0x0c, 0x06, 0x10",
    ".byte 0x90, 0x01",
    ".byte 0x86, 0x02",
    ".balign 8, 0",
    "4739968:",
    ".popsection",
);

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
        // CFA = the word at rsp - 16, plus 8: DW_CFA_def_cfa_expression (0x0f), 5 bytes,
        // DW_OP_breg7 (rsp) -16, DW_OP_deref, DW_OP_plus_uconst 8. rsp here is the first part's
        // CFA, the IRQ stack's top slot + 16, so the word is the saved rsp: the stack pointer
        // at the trampoline's entry, where the return address into its caller is (the CIE's
        // rule, at CFA - 8). rbp is unchanged (the trampoline keeps no frame record).
        ".cfi_escape 0x0f, 0x05, 0x77, 0x70, 0x06, 0x23, 0x08",
        ".cfi_same_value rbp",
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
