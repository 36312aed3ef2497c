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

/// Where the unwind information of hand-written functions goes.
///
/// User space (no `kernel-abi`): nothing to say, so `.eh_frame`, which the unwinder of
/// panics and backtraces reads.
#[cfg(not(feature = "kernel-abi"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_cfi_sections {
    () => {
        ""
    };
}

/// Where the unwind information of hand-written functions goes.
///
/// Kernel builds (`kernel-abi`): `.debug_frame`. Linux builds with unwind tables off
/// (`-C force-unwind-tables=no`; objtool generates ORC from the instructions instead), and a
/// `.cfi_startproc` with nothing said would create an `.eh_frame` whose relocation to the
/// trampoline objtool `--ibt` reports as a "data relocation to !ENDBR" (a taken address without
/// `endbr64`). `.debug_frame` is what the compiler itself emits in such a build when debug info
/// is on: debuggers still read it, objtool ignores it, the linker keeps it out of the image. The
/// directive applies to the whole object, which is exactly the build's own setting.
#[cfg(feature = "kernel-abi")]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_cfi_sections {
    () => {
        ".cfi_sections .debug_frame\n"
    };
}

/// The instruction that switches `rsp` to the IRQ stack whose top slot is in register `$reg`
/// (after `mov [$reg], rsp` saved the interrupted one there).
///
/// User space: the top slot is 16-byte aligned, so `mov rsp, $reg` leaves `rsp % 16 == 0` before
/// the `call`, and the body starts with `rsp % 16 == 8`, as SysV and rustc expect.
#[cfg(not(feature = "kernel-abi"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_switch_rsp {
    ($reg:expr) => {
        ::core::concat!("mov rsp, ", $reg, "\n")
    };
}

/// The instruction that switches `rsp` to the IRQ stack whose top slot is in register `$reg`
/// (after `mov [$reg], rsp` saved the interrupted one there).
///
/// `kernel-abi`: the top slot is Linux's `hardirq_stack_ptr`, `top - 8` with `top` 16-byte
/// aligned, so `$reg % 16 == 8`. Linux's C runs with 8-byte stack alignment and would simply
/// `mov rsp, $reg`; but rustc assumes 16 on every x86-64 target (it folds `addr % 16` of an
/// aligned local to 0, and may use aligned stack accesses), so the body must start with
/// `rsp % 16 == 8` like any Rust function. `lea rsp, [$reg - 8]` gives exactly that in the same
/// one instruction: the word below the slot becomes padding, the slot stays where Linux's
/// unwinder reads it (`*(hardirq_stack_ptr)`), and `leave` still restores `rsp` from `rbp`.
/// (`and rsp, -16` after the `mov` would cost a second instruction.)
#[cfg(feature = "kernel-abi")]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_switch_rsp {
    ($reg:expr) => {
        ::core::concat!("lea rsp, [", $reg, " - 8]\n")
    };
}

/// The instruction that switches back from the IRQ stack after the inline switch's `call`
/// (feature `inline-switch`): `rsp` is where `__irqstack_rt_switch_rsp` left it, so the top slot
/// is at `[rsp]` (`pop rsp` loads it, the kernel's sequence) or, with `kernel-abi`, at
/// `[rsp + 8]`.
#[cfg(not(feature = "kernel-abi"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_switch_back {
    () => {
        "pop rsp\n"
    };
}

/// See above (`kernel-abi`).
#[cfg(feature = "kernel-abi")]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_switch_back {
    () => {
        "mov rsp, qword ptr [rsp + 8]\n"
    };
}

/// The body of a stack-switching trampoline (Intel syntax, for `naked_asm!`; reached through
/// `__irqstack_rt_trampoline!`, `arch/trampoline.rs`), and where `tos` arrives
/// (`__irqstack_rt_tos_reg!`, this macro).
///
/// The trampoline has the signature of the body it calls plus one more, last, pointer argument:
/// the top-of-stack slot `tos` of the IRQ stack. Because `tos` comes last, every other argument
/// sits in the same register or stack slot as it will for the body, so nothing is copied: the
/// trampoline switches `rsp` and makes a direct `call`. The caller names where `tos` arrives: its
/// position among the integer argument registers (`tos = 1` for `rsi`, ...) or the stack (`tos =
/// stack`, when the six integer argument registers are taken). `lsda` names the label of the
/// trampoline's LSDA (user space with `panic = "unwind"`, `arch/landing.rs`).
///
/// Two sequences (`__irqstack_rt_trampoline_body!`): user-space (`std`) builds claim and release
/// in the trampoline and keep no frame record (documented there); kernel (`no_std`) builds, whose
/// caller has claimed the stack through its backend and releases it after, use the kernel's:
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
///                       rsp % 16 == 8 as SysV demands (`kernel-abi`: `lea rsp, [tos - 8]`,
///                       since Linux's tos is 8 mod 16; see `__irqstack_rt_switch_rsp`)
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
macro_rules! __irqstack_rt_tos_reg {
    // `tos` in the integer argument register at this position (SysV: rdi, rsi, rdx, rcx, r8, r9).
    (0) => {
        "rdi"
    };
    (1) => {
        "rsi"
    };
    (2) => {
        "rdx"
    };
    (3) => {
        "rcx"
    };
    (4) => {
        "r8"
    };
    (5) => {
        "r9"
    };
    // The seventh integer argument, on the stack: the sequence fetches it into r11, a scratch
    // register that is not an argument register (objtool needs the swizzle register to be
    // caller-saved, the reason the kernel pins r11).
    (stack) => {
        "r11"
    };
}

/// Saves the interrupted rsp in the top slot, `tos` fetched first if it came on the stack (the
/// sequence's `@fetch`): the link that unwinders and `interrupted_sp()` follow, and in user
/// space the claim.
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_save_sp {
    ($tos:tt) => {
        ::core::concat!(
            $crate::__irqstack_rt_trampoline_body!(@fetch $tos),
            "mov qword ptr [",
            $crate::__irqstack_rt_tos_reg!($tos),
            "], rsp\n",
        )
    };
}

/// The kernel's sequence (`no_std` builds; see `__irqstack_rt_tos_reg!` above): a frame record,
/// the switch, the call, `leave`. The backend's drop guard in the wrapper releases the stack.
#[cfg(not(feature = "std"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_trampoline_body {
    // The way back: `leave` restores the interrupted rsp (see above), then the return.
    (@tail false) => {
        ::core::concat!("leave\n.cfi_def_cfa rsp, 8\n", $crate::__irqstack_rt_ret!())
    };
    // A body that never returns (`-> !`): no way back, a trap after the call. objtool knows the
    // body never returns; it would call a way back unreachable (6.12: "missing a __noreturn
    // annotation") and passes over a trap.
    (@tail true) => {
        "int3\n"
    };
    // No landing pad: kernels do not unwind.
    (@pad) => {
        ""
    };
    // `tos` on the stack, above the return address and the saved rbp.
    (@fetch stack) => {
        "mov r11, qword ptr [rbp + 16]\n"
    };
    (@fetch $n:tt) => {
        ""
    };
    ($tos:tt, $b:literal, $e:literal, $nr:tt, $lsda:expr) => {
        ::core::concat!(
            $crate::__irqstack_rt_trampoline_start!($lsda),
            "push rbp\n.cfi_def_cfa_offset 16\n.cfi_offset rbp, -16\n",
            "mov rbp, rsp\n.cfi_def_cfa_register rbp\n",
            $crate::__irqstack_rt_save_sp!($tos),
            $crate::__irqstack_rt_switch_rsp!($crate::__irqstack_rt_tos_reg!($tos)),
            $crate::__irqstack_rt_switched_call!("call {body}", $b, $e, $nr, $lsda),
        )
    };
}

/// The user-space sequence (`std` builds): the trampoline claims and releases the IRQ stack
/// itself, and keeps no frame record.
///
/// ```text
/// [mov r11, [rsp+8]]     tos passed on the stack (seventh integer argument): fetch it
/// mov  [tos], rsp        save the interrupted rsp in the top slot; the same store claims the
///                        stack (the slot is the in-use flag: 0 free, the saved rsp in use; see
///                        std_backend.rs), so the wrapper writes nothing and reaches this
///                        function by a tail call
/// mov  rsp, tos          switch; tos is 16-byte aligned, so the body starts with
///                        rsp % 16 == 8 as SysV demands
/// B: call body           direct call
/// E: mov rcx, rsp        rcx = tos (the body returned with rsp where the call found it);
///                        rcx carries no return value
/// mov  rsp, [rsp]        switch back to the interrupted stack (addressed through rsp, not
///                        rcx: measured 0.27 ns faster per call in the bench's paired loop,
///                        2.709 -> 2.439 ns; Zen 3 renames rsp-based stack accesses, so the
///                        reload of the slot leaves the store-to-load forwarding path)
/// mov  qword [rcx], 0    release: only now, with rsp off the IRQ stack (a release before the
///                        switch back would let a signal handler that lands on the IRQ stack
///                        switch to its top, over its own frames)
/// ret
/// ```
///
/// No frame record: DWARF unwinders (panics, backtraces, gdb) follow the CFI, which describes
/// every instruction, and the frame would cost 3 instructions on every switched call (`push
/// rbp`, `mov rbp, rsp`, `pop`), the difference between 13 and 15 out of line (BENCHMARKS.md,
/// "Out of line"). What it costs: a frame-pointer walk from the body goes from the trampoline's
/// return address straight to the caller's caller (the body's saved rbp is the caller's): the
/// caller of the handler is missing from `perf --call-graph fp`, as it is for any function
/// compiled without a frame. Kernel builds, whose unwinders and objtool want the frame, keep it
/// (above).
///
/// The CFI: at entry CFA = rsp + 8. From the switch until the way back, CFA = rsp + 16 (the top
/// of the IRQ stack) with the return address at CFA - 8, the word above the top slot, which the
/// backend fills with the address of the CFI-only switch frames (`switch_frames.rs`): they lead
/// the unwinder to the interrupted stack through the saved rsp, whichever stack lies higher.
/// After `mov rsp, [rsp]`, CFA = rsp + 8 again. With `panic = "unwind"` the trampoline also has
/// a personality routine and an LSDA (`arch/landing.rs`): the landing pad switches back and
/// releases in the same order, then resumes unwinding.
///
/// The landing pad (`arch/landing.rs`): the unwinder enters it with the trampoline's registers as
/// at the body's call, rsp = tos and the exception in rax. It switches back and releases as the
/// way back does, realigns (rsp is 8 mod 16 there, as at entry) and resumes unwinding, which goes
/// on from its frame (CFA = rsp + 16 after the push, the return address at CFA - 8: the
/// wrapper's caller).
#[cfg(feature = "std")]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_trampoline_body {
    // Switch back (rcx = tos, where the body returned) and release.
    (@back) => {
        ::core::concat!(
            "mov rcx, rsp\n",
            "mov rsp, qword ptr [rsp]\n.cfi_def_cfa rsp, 8\n",
            "mov qword ptr [rcx], 0\n",
        )
    };
    (@tail false) => {
        ::core::concat!(
            $crate::__irqstack_rt_trampoline_body!(@back),
            $crate::__irqstack_rt_ret!(),
        )
    };
    (@tail true) => {
        "int3\n"
    };
    (@pad) => {
        ::core::concat!(
            $crate::__irqstack_rt_trampoline_body!(@back),
            "push rax\n.cfi_adjust_cfa_offset 8\n",
            "mov rdi, rax\n",
            "call _Unwind_Resume@PLT\n",
            "int3\n",
        )
    };
    // `tos` on the stack, above the return address.
    (@fetch stack) => {
        "mov r11, qword ptr [rsp + 8]\n"
    };
    (@fetch $n:tt) => {
        ""
    };
    ($tos:tt, $b:literal, $e:literal, $nr:tt, $lsda:expr) => {
        ::core::concat!(
            $crate::__irqstack_rt_trampoline_start!($lsda),
            $crate::__irqstack_rt_save_sp!($tos),
            "mov rsp, ",
            $crate::__irqstack_rt_tos_reg!($tos),
            "\n",
            $crate::__irqstack_rt_switched_call!("call {body}", $b, $e, $nr, $lsda),
        )
    };
}

/// A shim of a generated handler (what its trampoline calls), written by the proc macro without
/// an ABI (`fn name(...) { ... }`, after its attributes): this gives it the one the trampoline
/// calls with, `extern "sysv64-unwind"`.
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_shim {
    // The shim of a handler whose ABI does not unwind (`arch/trampoline.rs`).
    (nounwind $(#[$($attr:tt)*])* fn $($rest:tt)*) => {
        $(#[$($attr)*])* extern "sysv64" fn $($rest)*
    };
    ($(#[$($attr:tt)*])* fn $($rest:tt)*) => {
        $(#[$($attr)*])* extern "sysv64-unwind" fn $($rest)*
    };
}

/// Defines one trampoline of a handler: `unsafe extern "sysv64-unwind" fn $name(params..., tos)`
/// whose code is [`__irqstack_rt_trampoline!`], calling `$body`.
///
/// Without `call-padding`: a naked function in `.noinstr.text`
/// (`__irqstack_rt_naked_trampoline_def!`, `arch/trampoline.rs`).
#[cfg(not(feature = "call-padding"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_trampoline_def {
    ($($def:tt)*) => {
        $crate::__irqstack_rt_naked_trampoline_def! { abis = ["sysv64-unwind", "sysv64"], $($def)* }
    };
}

/// Defines one trampoline of a handler: `unsafe extern "sysv64-unwind" fn $name(params..., tos)`
/// whose code is [`__irqstack_rt_trampoline!`], calling `$body`.
///
/// With `call-padding` (the kernel's `CONFIG_CALL_PADDING`, `-Zpatchable-function-entry=16,16`):
/// rustc gives naked functions neither alignment nor the 16 bytes of NOPs in front that every
/// compiled function gets, and that call depth tracking rewrites into its accounting thunk
/// (objtool `--prefix=16` names them `__pfx_<function>`; the kernel warns "Invalid padding area"
/// for a call to a function without them). So the trampoline is written out in `global_asm!`,
/// exactly as Linux's `SYM_FUNC_START` lays out an assembly function: aligned to 16, 16 bytes
/// of `0x90` NOPs, then the symbol. `$symbol` is its link-time name (unique per expansion, chosen
/// by the proc macro; `.hidden`, so it stays inside the final module); Rust calls it through an
/// `extern` declaration of the same signature.
#[cfg(feature = "call-padding")]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_trampoline_def {
    (
        // Kernel builds abort on a panic: nothing unwinds, whatever the handler's ABI.
        unwind = $unwind:tt,
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
        // `global_asm!` must stand where items do, and a handler's trampoline is defined in a
        // block of the handler's body: so it goes into a module of its own, which cannot name
        // the body's local shim. The shim gets a link-time name instead, and the module calls
        // it through an extern declaration of that name.
        $crate::__irqstack_rt_shim! {
            #[unsafe(export_name = $shim_symbol)]
            $($shim)*
        }
        // With `panic = "abort"` (every kernel build), the declaration says the trampoline cannot
        // unwind, as the compiler knows of a naked function of the crate itself; an `-unwind`
        // declaration would make the caller keep an abort landing pad that no path reaches
        // (objtool: "unreachable instruction").
        #[cfg(panic = "abort")]
        unsafe extern "sysv64" {
            #[link_name = $symbol]
            #[allow(clippy::too_many_arguments)]
            fn $name $($generics)* ($(_: $param,)* _: *mut u8) $($output)*;
        }
        #[cfg(not(panic = "abort"))]
        unsafe extern "sysv64-unwind" {
            #[link_name = $symbol]
            #[allow(clippy::too_many_arguments)]
            fn $name $($generics)* ($(_: $param,)* _: *mut u8) $($output)*;
        }
        mod __irqstack_trampoline_asm {
            unsafe extern "sysv64-unwind" {
                #[link_name = $shim_symbol]
                fn shim();
            }
            ::core::arch::global_asm!(
                $crate::__irqstack_rt_padded_function!(
                    $symbol,
                    $crate::__irqstack_rt_trampoline!(
                        tos = $tos, begin = $begin, end = $end, noreturn = $noreturn,
                    lsda = ::core::concat!(".L", $symbol, "_lsda")
                    )
                ),
                body = sym shim,
            );
        }
    };
}

/// A function written in `global_asm!` the way Linux's `SYM_FUNC_START`/`SYM_FUNC_END` lay it
/// out with `CONFIG_CALL_PADDING`: in `.noinstr.text`, aligned to 16, preceded by 16 bytes of
/// single-byte NOPs (what `-Zpatchable-function-entry=16,16` gives compiled functions), typed as
/// a function and sized, so that objtool validates it and `--prefix=16` gives it a `__pfx_`
/// symbol. `$symbol` is global but hidden: the extern declaration in another codegen unit can
/// reach it, other modules cannot.
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_padded_function {
    ($symbol:literal, $code:expr) => {
        ::core::concat!(
            ".pushsection .noinstr.text, \"ax\", @progbits\n",
            ".balign 16, 0x90\n.skip 16, 0x90\n",
            ".globl ",
            $symbol,
            "\n.hidden ",
            $symbol,
            "\n.type ",
            $symbol,
            ", @function\n",
            $symbol,
            ":\n",
            $code,
            ".size ",
            $symbol,
            ", . - ",
            $symbol,
            "\n",
            ".popsection\n",
        )
    };
}

/// What `set_backend!` defines besides the hooks. Without `call-padding`: nothing.
#[cfg(not(feature = "call-padding"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_backend_extras {
    () => {};
}

/// What `set_backend!` defines besides the hooks. With `call-padding`: the padded trampoline of
/// `run_on_irqstack` and the function it calls, which calls the closure type's shim through a
/// pointer (see `padded` in this crate's lib.rs). They are defined here, in the final binary, so
/// that they are compiled with its flags (return thunks, retpolines, IBT) like the rest of it.
#[cfg(feature = "call-padding")]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_backend_extras {
    () => {
        #[doc(hidden)]
        mod __irqstack_closure_trampoline {
            /// Runs on the IRQ stack, called by the trampoline below inside its instrumentation
            /// region: calls the closure type's shim. No unwinding with `panic = "abort"`, as
            /// in irqstack-rt's `padded::Shim`.
            #[cfg(panic = "abort")]
            #[unsafe(export_name = "__irqstack_rt_closure_call_0_1")]
            extern "sysv64" fn call(
                f: *mut u8,
                out: *mut u8,
                shim: extern "sysv64" fn(*mut u8, *mut u8),
            ) {
                shim(f, out)
            }

            /// As above, for builds that unwind.
            #[cfg(not(panic = "abort"))]
            #[unsafe(export_name = "__irqstack_rt_closure_call_0_1")]
            extern "sysv64-unwind" fn call(
                f: *mut u8,
                out: *mut u8,
                shim: extern "sysv64-unwind" fn(*mut u8, *mut u8),
            ) {
                shim(f, out)
            }

            // `tos` arrives in rcx, the fourth argument register; rdi, rsi and rdx pass
            // through to `call` unchanged.
            ::core::arch::global_asm!(
                $crate::__irqstack_rt_padded_function!(
                    "__irqstack_rt_closure_trampoline_0_1",
                    $crate::__irqstack_rt_trampoline!(
                        tos = 3,
                        begin = "4739994",
                        end = "4739995",
                        lsda = ".L__irqstack_rt_closure_trampoline_0_1_lsda"
                    )
                ),
                body = sym call,
            );
        }
    };
}

/// Defines one trampoline of a handler and the shim it calls (see `__irqstack_rt_trampoline_def`
/// for the arguments). `inline = ...` says how the arguments could be passed in registers to an
/// inline switch; without feature `inline-switch` it is not used.
#[cfg(not(feature = "inline-switch"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_trampoline_fn {
    (inline = $inline:tt $(-> $ret:ident)?, $($def:tt)*) => {
        $crate::__irqstack_rt_trampoline_def! { $($def)* }
    };
}

/// Defines one trampoline of a handler and the shim it calls. With feature `inline-switch`,
/// where the arguments fit in registers (`inline = [name: type => "reg", ...] -> class`), the
/// "trampoline" is an inline function whose `asm!` switches stacks in the caller, as Linux 5.12+
/// `call_on_irqstack` does; otherwise (`inline = none`) the out-of-line trampoline.
#[cfg(feature = "inline-switch")]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_trampoline_fn {
    (inline = none, $($def:tt)*) => {
        $crate::__irqstack_rt_trampoline_def! { $($def)* }
    };
    (
        inline = [$($arg:ident : $ty:ty),*] -> $ret:ident,
        // Kernel builds abort on a panic: nothing unwinds, whatever the handler's ABI.
        unwind = $unwind:tt,
        name = $name:ident,
        generics = [$($generics:tt)*],
        params = $params:tt,
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
        $crate::__irqstack_rt_shim! { $($shim)* }
        /// The switch, inline in the caller (see `__irqstack_rt_inline_switch`).
        #[inline(always)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $name $($generics)* ($($arg: $ty,)* tos: *mut u8) $($output)* $($where)* {
            $crate::__irqstack_rt_inline_switch!($ret, $body, tos, $begin, $end, [$($arg),*])
        }
    };
}

/// The inline switch of feature `inline-switch` (Intel syntax), Linux 5.12+'s
/// `call_on_irqstack` with the adjustment Rust needs:
///
/// ```text
/// mov [r11], rsp        save the interrupted rsp in the top slot (r11 = tos: caller-saved and
///                       no argument register, the register objtool wants for a stack swizzle)
/// mov rsp, r11          switch (kernel-abi: lea rsp, [r11 - 8], so that the body starts with
///                       the 16-byte alignment Rust assumes; Linux's tos is 8 mod 16)
/// B: call body          direct call; B carries the instrumentation-begin record
/// E: pop rsp            back (kernel-abi: mov rsp, [rsp + 8]); E carries the end record
/// ```
///
/// No DWARF CFI: the caller's own frame stays valid across the swizzle when it is rbp-based, and
/// objtool generates ORC for it. The feature needs frame pointers (`-C force-frame-pointers=yes`,
/// `CONFIG_FRAME_POINTER`): without them objtool rejects the `kernel-abi` form ("unsupported
/// stack register modification"). Arguments go in the SysV
/// registers (`AsmArg` widens each exactly as the ABI wants), every caller-saved register is
/// clobbered (`clobber_abi("C")`), and the result comes back in `rax` (and `rdx`).
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_inline_switch {
    // The arguments go in the SysV registers in order. `asm!` reads a register name only as a
    // plain literal token, so the names are written here and paired with the arguments one by
    // one (`@pair`), then the whole operand list goes to one `asm!`.
    (@asm $body:ident, $tos:ident, $b:literal, $e:literal, $back:tt, [$($arg:ident),*], $($out:tt)*) => {
        $crate::__irqstack_rt_inline_switch!(
            @pair [$body, $tos, $b, $e, $back, [$($out)*]] []
            [$($arg)*] ["rdi" "rsi" "rdx" "rcx" "r8" "r9"]
        )
    };
    (@pair $ctx:tt [$($ins:tt)*] [$arg:ident $($args:ident)*] [$reg:tt $($regs:tt)*]) => {
        $crate::__irqstack_rt_inline_switch!(
            @pair $ctx [$($ins)* in($reg) $crate::__private::AsmArg::to_reg($arg),]
            [$($args)*] [$($regs)*]
        )
    };
    (@pair [$body:ident, $tos:ident, $b:literal, $e:literal, $back:tt, [$($out:tt)*]] [$($ins:tt)*] [] [$($regs:tt)*]) => {
        ::core::arch::asm!(
            "mov qword ptr [r11], rsp",
            $crate::__irqstack_rt_inline_switch!(@to_irq_stack),
            ::core::concat!($b, ":"),
            $crate::__irqstack_rt_instr_record!(begin, $b),
            "call {body}",
            ::core::concat!($e, ":"),
            $crate::__irqstack_rt_instr_record!(end, $e),
            $crate::__irqstack_rt_inline_switch!(@back $back),
            body = sym $body,
            in("r11") $tos,
            $($ins)*
            $($out)*
            clobber_abi("C"),
        )
    };
    (@to_irq_stack) => { $crate::__irqstack_rt_switch_rsp!("r11") };
    (@back back) => { $crate::__irqstack_rt_switch_back!() };
    (none, $body:ident, $tos:ident, $b:literal, $e:literal, $regs:tt) => {{
        // SAFETY: see the trampoline: the caller claimed the IRQ stack whose top slot is `tos`;
        // the asm saves rsp there, runs `body` on the IRQ stack with the arguments in their ABI
        // registers, and restores rsp before anything else runs on this stack.
        unsafe { $crate::__irqstack_rt_inline_switch!(@asm $body, $tos, $b, $e, back, $regs,) }
    }};
    ($class:ident, $body:ident, $tos:ident, $b:literal, $e:literal, $regs:tt) => {{
        let rax: u64;
        let rdx: u64;
        // SAFETY: as above.
        unsafe {
            $crate::__irqstack_rt_inline_switch!(
                @asm $body, $tos, $b, $e, back, $regs, lateout("rax") rax, lateout("rdx") rdx,
            )
        };
        // SAFETY: the body returned its value in rax (and rdx for two words), as SysV returns
        // an integer, `bool`, `char` or pointer (`ret_class`): the value's bytes are the low
        // bytes of the pair, little-endian.
        unsafe { $crate::__private::from_regs(rax, rdx) }
    }};
}
