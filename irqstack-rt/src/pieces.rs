//! Assembly template pieces.
//!
//! Every piece is a `macro_rules!` macro that expands to a string literal, so that it can stand
//! as (part of) the template of `asm!`, `naked_asm!` or `global_asm!`: those macros expand macro
//! calls in template position before they read the string. This is how the choices that depend on
//! this crate's cargo features (marker record format, return sequence) reach code that the proc
//! macro generates: the proc macro cannot see features or cfgs, so it emits a call to a piece and
//! the piece, compiled with this crate's features, picks the text.
//!
//! Labels are passed in as string literals of decimal digits (chosen by the proc macro, unique per
//! expansion, never made only of 0s and 1s; see `irqstack-macros/src/label.rs`). Only GNU numeric
//! local labels are used, because the compiler may emit one `asm!` block many times (inlining,
//! loop unrolling), and numeric labels are the only ones that may be defined more than once.
//! A back reference `Nb` always resolves to the closest preceding definition of `N`, which is the
//! one the same piece just made, so repeated numbers can never capture each other.

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

/// A complete marker: a NOP that carries label `$label`, and its record.
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

/// The function return of hand-written code, following the kernel build mode:
/// plain `ret`; with `rethunk`, `jmp __x86_return_thunk` (objtool `--rethunk` flags a bare
/// `ret`); with `sls`, an `int3` after it so that straight-line speculation past the return stops
/// at a trap (objtool `--sls`). One variant per combination, so that it is one expansion.
#[cfg(all(not(feature = "rethunk"), not(feature = "sls")))]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_ret {
    () => {
        "ret\n"
    };
}

#[cfg(all(not(feature = "rethunk"), feature = "sls"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_ret {
    () => {
        "ret\nint3\n"
    };
}

#[cfg(all(feature = "rethunk", not(feature = "sls")))]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_ret {
    () => {
        "jmp __x86_return_thunk\n"
    };
}

#[cfg(all(feature = "rethunk", feature = "sls"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_ret {
    () => {
        "jmp __x86_return_thunk\nint3\n"
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

/// The body of a stack-switching trampoline (Intel syntax, for `naked_asm!`).
///
/// The trampoline has the signature of the body it calls plus one more, last, pointer argument:
/// the top-of-stack slot `tos` of the IRQ stack (already claimed by the caller). Because `tos` comes
/// last, every other argument sits in the same register or stack slot as it will for the body, so
/// nothing is copied: the trampoline switches `rsp` and makes a direct `call`. The caller names
/// where `tos` arrives: a register (`tos = "rsi"`, ...) or the stack (`tos = stack`, when the six
/// integer argument registers are taken).
///
/// ```text
/// push rbp              frame record: objtool requires one before a call, and frame-pointer
///                       unwinders (perf, the kernel's ORC fallback) walk through it
/// mov  rbp, rsp         from here the CFA is rbp + 16, which stays true after rsp moves
/// [mov r11, [rbp+16]]   tos passed on the stack: fetch it into r11, a scratch register that is
///                       not an argument register (objtool needs the swizzle register to be
///                       caller-saved, the reason the kernel pins r11)
/// mov  [tos], rsp       save the interrupted stack pointer in the top slot of the IRQ stack:
///                       the link that unwinders and `interrupted_sp()` follow
/// mov  rsp, tos         switch; tos is 16-byte aligned in user space, so the body starts with
///                       rsp % 16 == 8 as SysV demands (the kernel ABI uses 8-byte alignment)
/// B: call body          direct call, no indirect branch (no retpoline needed); label B carries
///                       the instrumentation-begin record
/// E: leave              label E (the instruction after the call) carries the end record.
///                       `rsp = rbp; pop rbp`: rbp is callee-saved, so it still holds the
///                       interrupted stack pointer the switch stored in the top slot, and this
///                       switches back without reloading it from memory (the kernel's v5.8
///                       `asm_call_on_stack` ended the same way; one instruction shorter than
///                       `pop rsp; pop rbp`, and objtool's frame-pointer rules cover it)
/// ret                   (or the return thunk, and int3 for SLS)
/// ```
///
/// The CFI: at entry CFA = rsp + 8 (the CIE default). After `push rbp`, CFA = rsp + 16 and rbp
/// is saved at CFA - 16. After `mov rbp, rsp` the CFA is defined by rbp, so the `rsp` switch does
/// not disturb it, and an unwinder in the body walks from the IRQ stack back to the caller's frame
/// on the interrupted stack. After `leave`, CFA = rsp + 8 again. User-space builds describe the
/// frame differently from the switch to the `leave` (`__irqstack_rt_switch_cfi!`, see
/// `switch_frames.rs`), so that gdb crosses the switch whichever stack lies higher.
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_trampoline {
    (tos = stack, begin = $b:literal, end = $e:literal) => {
        $crate::__irqstack_rt_trampoline!(@body "mov r11, qword ptr [rbp + 16]\n", "r11", $b, $e)
    };
    (tos = $reg:literal, begin = $b:literal, end = $e:literal) => {
        $crate::__irqstack_rt_trampoline!(@body "", $reg, $b, $e)
    };
    (@body $fetch:literal, $reg:literal, $b:literal, $e:literal) => {
        ::core::concat!(
            ".cfi_startproc\npush rbp\n.cfi_def_cfa_offset 16\n.cfi_offset rbp, -16\n",
            "mov rbp, rsp\n.cfi_def_cfa_register rbp\n",
            $fetch,
            "mov qword ptr [",
            $reg,
            "], rsp\nmov rsp, ",
            $reg,
            "\n",
            $crate::__irqstack_rt_switch_cfi!(),
            $b,
            ":\n",
            $crate::__irqstack_rt_instr_record!(begin, $b),
            "call {body}\n",
            $e,
            ":\n",
            $crate::__irqstack_rt_instr_record!(end, $e),
            "leave\n.cfi_def_cfa rsp, 8\n",
            $crate::__irqstack_rt_ret!(),
            ".cfi_endproc\n",
        )
    };
}
