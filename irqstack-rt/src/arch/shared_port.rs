//! The pieces that the AArch64 and RISC-V 64 ports share word for word, under the same names as
//! x86-64's (see `arch/x86_64/pieces.rs` for how pieces reach generated code). Neither port has
//! call padding, an inline switch or `#[idtentry]` stubs, so the trampoline definitions, the
//! return and the shim ABI are the same; each port keeps its own trampoline body, `tos` register
//! table and switch CFI (`arch/<arch>/pieces.rs`). What all three ports share is in
//! `arch/trampoline.rs`.

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

/// A shim of a generated handler, written by the proc macro without an ABI: this gives it the
/// one its trampoline calls with, `extern "C-unwind"` (AAPCS64 or the RISC-V LP64D psABI,
/// unwinding allowed).
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_shim {
    // The shim of a handler whose ABI does not unwind (`arch/trampoline.rs`).
    (nounwind $(#[$($attr:tt)*])* fn $($rest:tt)*) => {
        $(#[$($attr)*])* extern "C" fn $($rest)*
    };
    ($(#[$($attr:tt)*])* fn $($rest:tt)*) => {
        $(#[$($attr)*])* extern "C-unwind" fn $($rest)*
    };
}

/// Defines one trampoline of a handler: `unsafe extern "C-unwind" fn $name(params..., tos)`, a
/// naked function (`__irqstack_rt_naked_trampoline_def!`, `arch/trampoline.rs`).
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_trampoline_def {
    ($($def:tt)*) => {
        $crate::__irqstack_rt_naked_trampoline_def! { abis = ["C-unwind", "C"], $($def)* }
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
