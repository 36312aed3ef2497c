//! Assembly template pieces for RISC-V 64 (GNU syntax, RV64GC, LP64D), under the same names as
//! x86-64's and AArch64's (see `arch/x86_64/pieces.rs` for how pieces reach generated code and
//! why labels are numeric).
//!
//! User space and bare-metal kernels (with [`tp_percpu_backend!`](crate::tp_percpu_backend)):
//! no call padding, no inline switch, no `#[idtentry]` stubs. The pieces it shares with AArch64
//! word for word are in `arch/shared_port.rs`.

/// CFI after the switch in the trampoline (user-space builds): the trampoline's frame is the top
/// of the IRQ stack and returns into the CFI-only switch frames (`arch/riscv64/switch_frames.rs`),
/// so that gdb crosses the switch whichever stack lies higher.
///
/// From `mv sp, tos` until the body returns, sp = tos, so CFA = sp + 16 is the top of the IRQ
/// stack (above every body frame). ra keeps its rule "at CFA - 8": that is the padding word above
/// the top slot, which the std backend fills at creation with the address of the switch frames.
/// s0 is unchanged (it still points just above the frame record on the interrupted stack, and
/// the body preserves it): same value, instead of the record's slot.
#[cfg(feature = "std")]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_switch_cfi {
    () => {
        ".cfi_def_cfa sp, 16\n.cfi_same_value s0\n"
    };
}

/// `no_std` builds: the CFA stays s0 + 0 from the frame record on (s0 is callee-saved, so the
/// rule is right across the switch and the body call), which is what panics and backtraces
/// need; the linked backend's stacks carry no switch frame address.
#[cfg(not(feature = "std"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_switch_cfi {
    () => {
        ""
    };
}

/// The register that carries `tos`, by its position among the integer argument registers
/// (`tos = N`, see `__irqstack_rt_trampoline!` in `arch/trampoline.rs`): a0..a6 (the LP64D psABI).
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_tos_reg {
    (0) => {
        "a0"
    };
    (1) => {
        "a1"
    };
    (2) => {
        "a2"
    };
    (3) => {
        "a3"
    };
    (4) => {
        "a4"
    };
    (5) => {
        "a5"
    };
    // The seventh integer argument, which x86-64 passes on the stack, is still a register here.
    (stack) => {
        "a6"
    };
}

/// The body of a stack-switching trampoline (RISC-V 64, for `naked_asm!`), after Linux's riscv
/// `call_on_irq_stack` (arch/riscv/kernel/entry.S).
///
/// As on the other architectures, the trampoline has the body's signature plus one last
/// pointer argument, the top slot `tos` of the claimed IRQ stack, so every other argument
/// already sits where the body expects it. `tos = N` names its position among the integer
/// argument registers (`a0`..`a5`); `tos = stack` is the seventh integer argument, which x86-64
/// passes on the stack but the RISC-V psABI still in `a6`. Float arguments (`fa0`..`fa7` under
/// LP64D) never reach a trampoline: handlers with float arguments take the argument block
/// (pointers only) on every architecture but x86-64.
///
/// ```text
/// addi sp, sp, -16    room for the frame record on the interrupted stack (sp stays 16-byte
///                     aligned, as the psABI requires)
/// sd ra, 8(sp)        frame record: ra at s0 - 8 and the caller's s0 at s0 - 16, the layout
///                     frame-pointer unwinders walk; ra must survive the call below anyway
/// sd s0, 0(sp)
/// addi s0, sp, 16     s0 = the CFA (sp at entry): from here the CFA is s0 + 0, whatever sp does
///                     (std builds: sp + 16, the IRQ stack's top, from the switch until the
///                     body returns; see `__irqstack_rt_switch_cfi!`)
/// sd sp, 0(tos)       save the interrupted sp in the top slot (`interrupted_sp()` and
///                     unwinders follow it)
/// mv sp, tos          switch; tos is 16-byte aligned, as the psABI requires of sp
/// B: call body        direct call: `auipc ra` + `jalr ra` (R_RISCV_CALL_PLT; rustc's riscv64
///                     targets do not ask for linker relaxation, so it stays two
///                     instructions rather than one `jal`); B carries the begin record
/// E: [mv t1, sp]      user space: keep tos (sp, where the body returned) for the release;
///                     E carries the end record
/// addi sp, s0, -16    back: s0 is callee-saved, so it still points just above the frame
///                     record on the interrupted stack
/// ld ra, 8(sp)        restore ra and s0 from the frame record
/// ld s0, 0(sp)
/// addi sp, sp, 16     pop the frame record: sp is the caller's again
/// [sd zero, 0(t1)]    user space: release (the top slot is the in-use flag, see
///                     std_backend.rs), only now that sp is off the IRQ stack
/// ret
/// ```
///
/// In user space the `sd sp, 0(tos)` above is also the claim, and a panic in the body goes
/// through the landing pad (the `@pad` arm below, `arch/landing.rs`), which switches
/// back and releases the same way before it resumes unwinding.
///
/// The body may use the memory at and above its entry sp, so the top slot at `0(tos)` stays
/// intact: psABI callees only write below sp (there is no red zone and no home area), and
/// `call` pushes nothing.
///
/// The CFI is what lets unwinders cross the switch: without the `.cfi_*` lines (tried once,
/// under qemu-user) the unwinder takes the trampoline's frame for one whose CFA is the current
/// sp and whose return address is still in ra, which points back into the trampoline, and
/// loops there for ever: `backtrace_from_the_body_reaches_the_caller` and both panic tests of
/// tests/switch.rs never finish, and tests/cross_arch.rs fails at its run timeout.
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_trampoline_body {
    // The way back: sp from s0 (just above the frame record on the interrupted stack), restore
    // ra and s0, pop the record, return. The CFA moves to sp + 16, then to sp + 0.
    (@tail false) => {
        ::core::concat!(
            // User space: keep tos (sp, where the body returned) for the release below.
            $crate::__irqstack_rt_std_only!("mv t1, sp\n"),
            // sp = the frame record (s0 - 16); the CFA is sp + 16 again.
            "addi sp, s0, -16\n",
            // s0 is again in the record (std builds said "same value" while the body ran).
            ".cfi_def_cfa sp, 16\n.cfi_offset s0, -16\n",
            // ra back from the record: the caller's return address.
            "ld ra, 8(sp)\n",
            ".cfi_restore ra\n",
            // s0 back from the record: the caller's frame pointer.
            "ld s0, 0(sp)\n",
            ".cfi_restore s0\n",
            // Pop the record: sp is the caller's, the CFA is sp + 0.
            "addi sp, sp, 16\n",
            ".cfi_def_cfa_offset 0\n",
            // User space (`std`): release the IRQ stack (the top slot is the in-use flag, see
            // std_backend.rs), now that sp is off it.
            $crate::__irqstack_rt_std_only!("sd zero, 0(t1)\n"),
            // Return to ra.
            $crate::__irqstack_rt_ret!(),
        )
    };
    // A body of type `!` never returns: a trap (breakpoint, SIGTRAP) after the call instead of
    // the way back.
    (@tail true) => {
        "ebreak\n"
    };
    // The landing pad (`arch/landing.rs`): the unwinder enters it with the trampoline's registers
    // as at the body's call, sp = tos, s0 = the interrupted sp (the CFA), the exception in a0.
    // Switch back to the frame record and release as the way back does, then resume unwinding
    // from here: CFA = sp + 16, ra and s0 in the record, so the unwinder goes on into the
    // wrapper's caller.
    (@pad) => {
        ::core::concat!(
            "mv t1, sp\n",
            "addi sp, s0, -16\n",
            ".cfi_def_cfa sp, 16\n.cfi_offset s0, -16\n.cfi_offset ra, -8\n",
            "sd zero, 0(t1)\n",
            "call _Unwind_Resume\n",
            "ebreak\n",
        )
    };
    ($tos:tt, $b:literal, $e:literal, $nr:tt, $lsda:expr) => {
        ::core::concat!(
            $crate::__irqstack_rt_trampoline_start!($lsda),
            // Room for the frame record on the interrupted stack: CFA = sp + 16.
            "addi sp, sp, -16\n",
            ".cfi_def_cfa_offset 16\n",
            // ra in the record's upper word: at CFA - 8.
            "sd ra, 8(sp)\n",
            ".cfi_offset ra, -8\n",
            // The caller's s0 in the record's lower word: at CFA - 16.
            "sd s0, 0(sp)\n",
            ".cfi_offset s0, -16\n",
            // s0 = the CFA (the sp at entry); the CFA is s0 + 0 from here (across the switch
            // too, unless `__irqstack_rt_switch_cfi!` says otherwise: std builds).
            "addi s0, sp, 16\n",
            ".cfi_def_cfa s0, 0\n",
            // Save the interrupted sp (the frame record's address) in the IRQ stack's top slot
            // (user space: the claim).
            "sd sp, 0(",
            $crate::__irqstack_rt_tos_reg!($tos),
            ")\n",
            // Switch to the IRQ stack: sp = tos (16-byte aligned).
            "mv sp, ",
            $crate::__irqstack_rt_tos_reg!($tos),
            "\n",
            $crate::__irqstack_rt_switched_call!("call {body}", $b, $e, $nr, $lsda),
        )
    };
}
