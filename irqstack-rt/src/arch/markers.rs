//! The pieces every architecture shares (see `x86_64/pieces.rs` for how pieces reach generated
//! code and why labels are numeric): the instrumentation markers and their records, which are
//! arch-neutral (a `nop` and a PC-relative word), and the section trampolines live in. objtool
//! validates them on x86-64 only; on other architectures they are emitted all the same, and the
//! linker discards the records.

/// Record that marks label `$label` as the start (`begin`) or end (`end`) of an
/// instrumentation-safe region, in the format objtool of Linux v5.8..v6.13 reads:
/// one 32-bit PC-relative word in `.discard.instr_begin` / `.discard.instr_end`.
//
// The pieces are flat on purpose: every handler expands them several times, so each piece is one
// `macro_rules!` step that produces one `concat!`, without helper arms calling each other.
#[cfg(not(feature = "objtool-annotate"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_instr_record {
    (begin, $label:literal) => {
        ::core::concat!(
            ".pushsection .discard.instr_begin\n.long ",
            $label,
            "b - .\n.popsection\n"
        )
    };
    (end, $label:literal) => {
        ::core::concat!(
            ".pushsection .discard.instr_end\n.long ",
            $label,
            "b - .\n.popsection\n"
        )
    };
}

/// Record that marks label `$label` as the start (`begin`, type 3 = ANNOTYPE_INSTR_BEGIN) or end
/// (`end`, type 4 = ANNOTYPE_INSTR_END) of an instrumentation-safe region, in the format objtool of
/// Linux v6.14+ reads: `.discard.annotate_insn` is a mergeable section with 8-byte entries, each a
/// 32-bit PC-relative word (one relocation) followed by the 32-bit annotation type.
#[cfg(feature = "objtool-annotate")]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_instr_record {
    (begin, $label:literal) => {
        ::core::concat!(
            ".pushsection .discard.annotate_insn,\"M\",@progbits,8\n.long ",
            $label,
            "b - .\n.long 3\n.popsection\n"
        )
    };
    (end, $label:literal) => {
        ::core::concat!(
            ".pushsection .discard.annotate_insn,\"M\",@progbits,8\n.long ",
            $label,
            "b - .\n.long 4\n.popsection\n"
        )
    };
}

/// A complete marker: a `nop` (the same mnemonic on every supported architecture) that carries
/// label `$label`, and its record.
///
/// Why a NOP and not an empty label: a label marks the *next* instruction. An end marker placed
/// last in a conditional block would then mark the first instruction after the block, so on the
/// path that skipped the block objtool would see the region end too early (the kernel's
/// `instrumentation.h` explains the same case). A NOP is an instruction of its own inside the
/// block, so the marker cannot escape it. The begin marker gets a NOP too, as in the kernel, so
/// both markers are symmetric and each one is exactly one instruction.
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_instr_insn {
    ($kind:ident, $label:literal) => {
        ::core::concat!(
            $label,
            ": nop\n",
            $crate::__irqstack_rt_instr_record!($kind, $label)
        )
    };
}

/// The markers around the body call on the in-place path of a generated `#[on_irqstack]`
/// wrapper (a statement, not a template piece). `no_std` (kernel) builds: `$label` is a NOP with
/// an instrumentation record (see `__irqstack_rt_instr_insn!`), exactly as around the trampoline's
/// `call`, so objtool `--noinstr` accepts an inlined wrapper in `.noinstr.text`.
#[cfg(not(feature = "std"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_in_place_marker {
    ($kind:ident, $label:literal) => {
        // SAFETY: a NOP plus a record in a `.discard.*` section: no registers, memory, stack or
        // flags change. The record tells objtool that the code between the begin and end
        // markers (the body call) may be instrumented.
        unsafe {
            ::core::arch::asm!(
                $crate::__irqstack_rt_instr_insn!($kind, $label),
                options(nomem, nostack, preserves_flags)
            )
        }
    };
}

/// `std` (user-space) builds: nothing. No objtool ever validates a user-space binary, so the
/// records would have no reader and the NOPs would cost every nested call two instructions. This
/// is what the kernel does too: `instrumentation_begin()`/`_end()` compile to nothing unless
/// `CONFIG_NOINSTR_VALIDATION` is set. The markers a user writes (`instr_begin!` and friends) and
/// the ones inside the trampoline (labels on its `call` and `leave`, which cost nothing) are
/// emitted in every build.
#[cfg(feature = "std")]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_in_place_marker {
    ($kind:ident, $label:literal) => {
        ()
    };
}

/// Section of every trampoline: the kernel's `.noinstr.text`, so that a `noinstr` entry function
/// may call a trampoline without leaving `noinstr` code (objtool `--noinstr`). In user space the
/// name has no meaning to the linker beyond "another code section".
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_section {
    () => {
        ".noinstr.text"
    };
}
