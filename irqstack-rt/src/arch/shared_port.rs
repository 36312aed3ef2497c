//! The pieces that the AArch64 and RISC-V 64 ports share word for word, under the same names as
//! x86-64's (see `arch/x86_64/pieces.rs` for how pieces reach generated code). Neither port has
//! call padding, an inline switch or `#[idtentry]` stubs, so the trampoline definitions, the
//! return and the shim ABI are the same; each port keeps its own trampoline body and switch CFI
//! (`arch/<arch>/pieces.rs`).

/// The function return of hand-written code: `ret` (AArch64: a branch to x30; RISC-V: `jalr x0,
/// 0(ra)`).
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_ret {
    () => {
        "ret\n"
    };
}

/// Where the unwind information of hand-written functions goes: wherever the rest of the object
/// file's goes, `.eh_frame` unless the object says otherwise. Also in bare-metal `no_std`,
/// `panic = "abort"` builds: `.cfi_sections` applies to the whole object in LLVM's assembler (a
/// `.cfi_sections .debug_frame` in one naked trampoline moved all eight FDEs of the
/// `tests/fixtures/aarch64_tpidr` object, rustc's own included, out of `.eh_frame`, with
/// `aarch64-unknown-none`'s default unwind tables on), so a library cannot choose a section for
/// its own FDEs without taking the choice away from the kernel's code: a kernel that reads
/// `.eh_frame` at run time (a backtracer, or Linux arm64's shadow-call-stack patching of
/// `CONFIG_UNWIND_PATCH_PAC_INTO_SCS`) would lose every function of that codegen unit. Nothing
/// unwinds through the trampoline with `panic = "abort"`, so the kernel decides: its linker
/// script keeps or discards `.eh_frame`, and a kernel that wants debugger-only CFI says
/// `.cfi_sections .debug_frame` once in its own `global_asm!` (as `examples/aarch64_kernel`
/// does). x86-64's `kernel-abi` differs: Linux x86 builds without unwind tables, so there the
/// switch to `.debug_frame` takes nothing from anyone.
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_cfi_sections {
    () => {
        ""
    };
}

/// A stack-switching trampoline (for `naked_asm!`): finds the register that carries `tos` in
/// the port's table (`__irqstack_rt_tos_reg!`) and writes the port's sequence
/// (`__irqstack_rt_trampoline_body!`, documented in `arch/<arch>/pieces.rs`). `tos = N` is the
/// position of the top slot's address among the integer argument registers, `tos = stack` the
/// seventh integer argument (on the stack on x86-64, in a register on these ports).
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
        $crate::__irqstack_rt_trampoline_body!(
            $crate::__irqstack_rt_tos_reg!($tos),
            $b,
            $e,
            $nr,
            $lsda
        )
    };
}

/// A shim of a generated handler, written by the proc macro without an ABI: this gives it the
/// one its trampoline calls with, `extern "C-unwind"` (AAPCS64 or the RISC-V LP64D psABI,
/// unwinding allowed).
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_shim {
    ($(#[$($attr:tt)*])* fn $($rest:tt)*) => {
        $(#[$($attr)*])* extern "C-unwind" fn $($rest)*
    };
}

/// Defines one trampoline of a handler: `unsafe extern "C-unwind" fn $name(params..., tos)`
/// whose code is [`__irqstack_rt_trampoline!`], calling `$body` (a naked function in
/// `.noinstr.text`; `$symbol` and `$shim_symbol` are for x86-64's `call-padding`).
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_trampoline_def {
    (
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
        $crate::__irqstack_rt_shim! { $($shim)* }
        #[unsafe(naked)]
        #[unsafe(link_section = ".noinstr.text")]
        // The LSDA's label (`arch/landing.rs`), unique per expansion: a naked function is
        // emitted once, never duplicated by inlining, which is what the lint guards against.
        #[allow(clippy::too_many_arguments, named_asm_labels)]
        unsafe extern "C-unwind" fn $name $($generics)* ($(_: $param,)* _: *mut u8) $($output)* $($where)* {
            ::core::arch::naked_asm!(
                $crate::__irqstack_rt_trampoline!(
                    tos = $tos, begin = $begin, end = $end, noreturn = $noreturn,
                    lsda = ::core::concat!(".L", $symbol, "_lsda")
                ),
                body = sym $body,
            )
        }
    };
}

/// Defines one trampoline of a handler and the shim it calls: always the out-of-line trampoline
/// (the inline switch is x86-64's `inline-switch`).
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_trampoline_fn {
    (inline = $inline:tt $(-> $ret:ident)?, $($def:tt)*) => {
        $crate::__irqstack_rt_trampoline_def! { $($def)* }
    };
}

/// What `set_backend!` defines besides the hooks: nothing on these ports.
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_backend_extras {
    () => {};
}

/// `#[idtentry]` builds x86-64 IDT entry stubs: a clear error elsewhere.
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_idt_stub {
    ($($t:tt)*) => {
        ::core::compile_error!(
            "#[idtentry] builds x86-64 interrupt entry stubs: supported on target_arch = \"x86_64\" only"
        )
    };
}

/// See `__irqstack_rt_idt_stub`.
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_idt_vectors {
    ($($t:tt)*) => {
        ::core::compile_error!(
            "#[idtentry] builds x86-64 interrupt entry stubs: supported on target_arch = \"x86_64\" only"
        )
    };
}

/// `$text` in user-space (`std`) builds, nothing in kernel builds: the trampoline's release of
/// the IRQ stack (the kernel backends release in the wrapper, through their own in-use flag).
#[cfg(feature = "std")]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_std_only {
    ($text:literal) => {
        $text
    };
}

/// See above.
#[cfg(not(feature = "std"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_std_only {
    ($text:literal) => {
        ""
    };
}
