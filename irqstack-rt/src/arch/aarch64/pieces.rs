//! Assembly template pieces for AArch64 (GNU syntax), under the same names as x86-64's (see
//! `arch/x86_64/pieces.rs` for how pieces reach generated code and why labels are numeric).
//!
//! User space and bare-metal kernels (with [`tpidr_percpu_backend!`](crate::tpidr_percpu_backend)):
//! no call padding, no inline switch, no `#[idtentry]` stubs. The pieces it shares with RISC-V 64
//! word for word are in `arch/shared_port.rs`.

/// CFI after the switch in the trampoline (user-space builds): the trampoline's frame is the top
/// of the IRQ stack and returns into the CFI-only switch frames (`arch/aarch64/switch_frames.rs`),
/// so that gdb crosses the switch whichever stack lies higher.
///
/// From `mov sp, tos` until the body returns, sp = tos, so CFA = sp + 16 is the top of the IRQ
/// stack (above every body frame). x30 keeps its rule "at CFA - 8": that is the padding word
/// above the top slot, which the std backend fills at creation with the address of the switch
/// frames. x29 is unchanged (it still points at the frame record on the interrupted stack, and
/// the body preserves it): same value, instead of the record's slot.
#[cfg(feature = "std")]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_switch_cfi {
    () => {
        ".cfi_def_cfa sp, 16\n.cfi_same_value x29\n"
    };
}

/// `no_std` builds: the frame record's CFA (x29 + 16) stays in force across the switch, which is
/// what panics and backtraces need; the linked backend's stacks carry no switch frame address.
#[cfg(not(feature = "std"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_switch_cfi {
    () => {
        ""
    };
}

/// The register that carries `tos`, by its position among the integer argument registers
/// (`tos = N`, see `__irqstack_rt_trampoline!` in `arch/trampoline.rs`): x0..x6 (AAPCS64).
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_tos_reg {
    (0) => {
        "x0"
    };
    (1) => {
        "x1"
    };
    (2) => {
        "x2"
    };
    (3) => {
        "x3"
    };
    (4) => {
        "x4"
    };
    (5) => {
        "x5"
    };
    // The seventh integer argument, which x86-64 passes on the stack, is still a register here.
    (stack) => {
        "x6"
    };
}

/// The body of a stack-switching trampoline (AArch64, for `naked_asm!`).
///
/// As on x86-64, the trampoline has the body's signature plus one last pointer argument, the top
/// slot `tos` of the claimed IRQ stack, so every other argument already sits where the body
/// expects it. `tos = N` names its position among the integer argument registers (`x0`..`x5`);
/// `tos = stack` is the seventh integer argument, which x86-64 passes on the stack but AAPCS64
/// still in `x6`.
///
/// ```text
/// stp x29, x30, [sp, #-16]!   frame record on the interrupted stack: frame-pointer unwinders
///                             walk through it, and x30 (the return address) is kept over the bl
/// mov x29, sp                 from here the CFA is x29 + 16, whatever sp does (std builds:
///                             sp + 16, the IRQ stack's top, from the switch until the body
///                             returns; see `__irqstack_rt_switch_cfi!`)
/// mov x16, sp                 sp cannot be stored directly: copy it to x16 (IP0, a scratch
///                             register that carries no argument)
/// str x16, [tos]              save the interrupted sp in the top slot (`interrupted_sp()` and
///                             unwinders follow it)
/// mov sp, tos                 switch; tos is 16-byte aligned, as AAPCS64 requires of sp
/// B: bl body                  direct call; B carries the instrumentation-begin record
/// E: [mov x16, sp]            user space: keep tos (sp, where the body returned) for the
///                             release; E carries the end record
/// mov sp, x29                 back: x29 is callee-saved, so it still points at the frame
///                             record on the interrupted stack
/// ldp x29, x30, [sp], #16     pop the frame record
/// [str xzr, [x16]]            user space: release (the top slot is the in-use flag, see
///                             std_backend.rs), only now that sp is off the IRQ stack
/// ret
/// ```
///
/// In user space the `str x16, [tos]` above is also the claim, and a panic in the body goes
/// through the landing pad (the `@pad` arm below, `arch/landing.rs`), which switches
/// back and releases the same way before it resumes unwinding.
///
/// The body may use the memory at and above its entry sp, so the top slot at `[tos]` stays
/// intact: AAPCS64 callees only write below sp, and `bl` pushes nothing.
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_trampoline_body {
    // The way back: sp from x29 (the frame record on the interrupted stack), pop the record,
    // return. The CFA moves back to sp (+ 16, the record's top: the offset is 16 in both forms of
    // the switch CFI) with x29 again in the record (std builds said "same value" while the body
    // ran), then to sp + 0 with both registers restored.
    (@tail false) => {
        ::core::concat!(
            $crate::__irqstack_rt_trampoline_body!(@keep_tos),
            "mov sp, x29\n",
            ".cfi_def_cfa_register sp\n.cfi_offset x29, -16\n",
            "ldp x29, x30, [sp], #16\n",
            ".cfi_def_cfa_offset 0\n.cfi_restore x29\n.cfi_restore x30\n",
            $crate::__irqstack_rt_trampoline_body!(@release),
            $crate::__irqstack_rt_ret!(),
        )
    };
    // User space (`std`): the trampoline releases the IRQ stack (the top slot is the in-use
    // flag, see std_backend.rs): keep tos (sp, where the body returned) in x16 across the way
    // back, and store 0 into the slot once sp is off the IRQ stack.
    (@keep_tos) => {
        $crate::__irqstack_rt_std_only!("mov x16, sp\n")
    };
    (@release) => {
        $crate::__irqstack_rt_std_only!("str xzr, [x16]\n")
    };
    // A body of type `!` never returns: a trap after the call instead of the way back.
    (@tail true) => {
        "brk #0x1\n"
    };
    // The landing pad (`arch/landing.rs`): the unwinder enters it with the trampoline's registers
    // as at the body's call, sp = tos, x29 = the frame record on the interrupted stack, the
    // exception in x0. Switch back and release as the way back does (sp = the record, 16-byte
    // aligned), then resume unwinding from here: CFA = sp + 16, x29 and x30 in the record, so
    // the unwinder goes on into the wrapper's caller.
    (@pad) => {
        ::core::concat!(
            "mov x16, sp\n",
            "mov sp, x29\n",
            ".cfi_def_cfa sp, 16\n.cfi_offset x29, -16\n.cfi_offset x30, -8\n",
            "str xzr, [x16]\n",
            "bl _Unwind_Resume\n",
            "brk #0x1\n",
        )
    };
    ($tos:tt, $b:literal, $e:literal, $nr:tt, $lsda:expr) => {
        ::core::concat!(
            $crate::__irqstack_rt_trampoline_start!($lsda),
            // Push the frame record (x29, x30) on the interrupted stack: CFA = sp + 16, x29 at
            // CFA - 16, x30 at CFA - 8.
            "stp x29, x30, [sp, #-16]!\n",
            ".cfi_def_cfa_offset 16\n.cfi_offset x29, -16\n.cfi_offset x30, -8\n",
            // x29 = the frame record; the CFA is x29 + 16 from here (across the switch too,
            // unless `__irqstack_rt_switch_cfi!` says otherwise: std builds).
            "mov x29, sp\n",
            ".cfi_def_cfa_register x29\n",
            // x16 = the interrupted sp (sp cannot be the source of a store).
            "mov x16, sp\n",
            // Save it in the IRQ stack's top slot (user space: the claim).
            "str x16, [",
            $crate::__irqstack_rt_tos_reg!($tos),
            "]\n",
            // Switch to the IRQ stack: sp = tos (16-byte aligned).
            "mov sp, ",
            $crate::__irqstack_rt_tos_reg!($tos),
            "\n",
            $crate::__irqstack_rt_switched_call!("bl {body}", $b, $e, $nr, $lsda),
        )
    };
}
