//! The parts of a trampoline that read the same on every port: the dispatch on where `tos`
//! arrives, the frame around a port's sequence (`.cfi_startproc` with the personality and LSDA
//! of user-space builds), everything from the body's call to the end (markers, landing pad,
//! LSDA), and the naked function that holds it. Each port brings its sequence as
//! `__irqstack_rt_trampoline_body!` (`arch/<arch>/pieces.rs`), its table of `tos` registers
//! (`__irqstack_rt_tos_reg!`) and its shim ABI (`__irqstack_rt_shim!`).

/// A stack-switching trampoline (for `naked_asm!`): the port's sequence
/// (`__irqstack_rt_trampoline_body!`, documented in `arch/<arch>/pieces.rs`) for `tos = N`, the
/// position of the top slot's address among the integer argument registers, or `tos = stack`,
/// the seventh integer argument (on the stack on x86-64, in a register on AArch64 and RISC-V).
/// `lsda` is the label of the trampoline's LSDA (`arch/landing.rs`; user space with
/// `panic = "unwind"`), `noreturn = true` for a body of type `!`.
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_trampoline {
    (tos = $tos:tt, begin = $b:literal, end = $e:literal, lsda = $lsda:expr) => {
        $crate::__irqstack_rt_trampoline!(
            tos = $tos,
            begin = $b,
            end = $e,
            noreturn = false,
            lsda = $lsda
        )
    };
    (tos = $tos:tt, begin = $b:literal, end = $e:literal, noreturn = $nr:tt, lsda = $lsda:expr) => {
        $crate::__irqstack_rt_trampoline_body!($tos, $b, $e, $nr, $lsda)
    };
}

/// The start of every trampoline: where its CFI goes (`__irqstack_rt_cfi_sections!`),
/// `.cfi_startproc`, and in user space with unwinding its personality routine, its LSDA and the
/// label the LSDA's offsets count from (`__irqstack_rt_eh_begin!`).
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_trampoline_start {
    ($lsda:expr) => {
        ::core::concat!(
            $crate::__irqstack_rt_cfi_sections!(),
            ".cfi_startproc\n",
            $crate::__irqstack_rt_eh_begin!($lsda),
        )
    };
}

/// Everything of a trampoline from the switch of the stack pointer on: the port's CFI for the
/// switched state (`__irqstack_rt_switch_cfi!`, remembered for the landing pad), label B
/// (instrumentation begins) with its record on the body's direct call (`$call`), label E (it
/// ends) with its record on the first instruction after it, the port's way back (its
/// `__irqstack_rt_trampoline_body!(@tail $nr)`: the switch back, the release in user space and
/// the return; or a trap after a body of type `!`), its landing pad (`@pad`, user space with
/// unwinding), `.cfi_endproc`, and the LSDA.
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_switched_call {
    ($call:literal, $b:literal, $e:literal, $nr:tt, $lsda:expr) => {
        ::core::concat!(
            $crate::__irqstack_rt_switch_cfi!(),
            $crate::__irqstack_rt_eh_remember!(),
            $b,
            ":\n",
            $crate::__irqstack_rt_instr_record!(begin, $b),
            $call,
            "\n",
            $e,
            ":\n",
            $crate::__irqstack_rt_instr_record!(end, $e),
            $crate::__irqstack_rt_trampoline_body!(@tail $nr),
            $crate::__irqstack_rt_eh_pad!($crate::__irqstack_rt_trampoline_body!(@pad)),
            ".cfi_endproc\n",
            $crate::__irqstack_rt_eh_table!($lsda, $b, $e),
        )
    };
}

/// Defines one trampoline of a handler as a naked function in `.noinstr.text`:
/// `unsafe extern $abi fn $name(params..., tos)` whose code is [`__irqstack_rt_trampoline!`],
/// calling `$body`, and the shim it calls (`__irqstack_rt_shim!`, the port's ABI). rustc names
/// the function; `$symbol` only names the LSDA's label, and `$shim_symbol` is for x86-64's
/// `call-padding`, which writes the trampoline in `global_asm!` instead.
///
/// `abis` are the port's two ABIs, unwinding and not; `unwind` is whether the handler's own ABI
/// unwinds (the Rust ABI, `"C-unwind"`, ...). For a handler that cannot unwind (`extern "C"`,
/// a signal handler's usual ABI) the shim and the trampoline cannot either: a panic in the body
/// aborts in the shim, as it would have in the handler, and the wrapper needs no abort-on-unwind
/// landing pad around its call of the trampoline, which it can then reach by a tail call.
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_naked_trampoline_def {
    (abis = [$abi:literal, $nabi:literal], unwind = true, $($def:tt)*) => {
        $crate::__irqstack_rt_naked_trampoline_def! { @item abi = $abi, shim = [], $($def)* }
    };
    (abis = [$abi:literal, $nabi:literal], unwind = false, $($def:tt)*) => {
        $crate::__irqstack_rt_naked_trampoline_def! {
            @item abi = $nabi, shim = [nounwind], $($def)*
        }
    };
    (
        @item abi = $abi:literal,
        shim = [$($nounwind:ident)?],
        name = $name:ident,
        generics = [$($generics:tt)*],
        params = [$($param:ty),*],
        output = [$($output:tt)*],
        where = [$($where:tt)*],
        tos = $tos:tt,
        begin = $begin:literal,
        end = $end:literal,
        body = $body:ident,
        shim = [$($shim:tt)*],
        symbol = $symbol:literal,
        shim_symbol = $shim_symbol:literal,
        noreturn = $noreturn:tt $(,)?
    ) => {
        $crate::__irqstack_rt_shim! { $($nounwind)? $($shim)* }
        #[unsafe(naked)]
        #[unsafe(link_section = ".noinstr.text")]
        // The LSDA's label (`arch/landing.rs`), unique per expansion: a naked function is
        // emitted once, never duplicated by inlining, which is what the lint guards against.
        #[allow(clippy::too_many_arguments, named_asm_labels)]
        unsafe extern $abi fn $name $($generics)* ($(_: $param,)* _: *mut u8) $($output)* $($where)* {
            ::core::arch::naked_asm!(
                $crate::__irqstack_rt_trampoline!(
                    tos = $tos,
                    begin = $begin,
                    end = $end,
                    noreturn = $noreturn,
                    lsda = ::core::concat!(".L", $symbol, "_lsda")
                ),
                body = sym $body,
            )
        }
    };
}
