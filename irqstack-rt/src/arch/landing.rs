//! The trampolines' landing pad: the release when a panic unwinds through a switch (user-space
//! builds with `panic = "unwind"`).
//!
//! In user space the trampoline itself claims the IRQ stack (`mov [tos], rsp`: the saved stack
//! pointer is the in-use flag, see `std_backend.rs`) and releases it after switching back (a 0
//! into the top slot). Nothing of the switch is left in the wrapper, which then reaches the
//! trampoline by a tail call. A panic in the body must release too, and from the interrupted
//! stack, not from the IRQ stack (a release while the unwinder still runs on the IRQ stack
//! would let a signal handler switch to its top, over the unwinder's frames). So the trampoline
//! gets what a compiled function with a drop guard gets: a personality routine and an LSDA
//! (`.gcc_except_table`), read by Rust's `rust_eh_personality`, whose call-site table sends an
//! unwind out of the body's `call` to a landing pad inside the trampoline. The landing pad (per
//! architecture, the `@pad` arm of its `__irqstack_rt_trampoline_body!`) runs with the registers of the trampoline's frame
//! as they were at the call (stack pointer = `tos`, frame pointer unchanged, the exception in
//! the first return register), switches back, releases, and calls `_Unwind_Resume`, whose
//! unwinding goes on from the landing pad's frame into the wrapper's caller.
//!
//! Labels: 4739981 (the function's start, where the call-site offsets count from), 4739982 (the
//! landing pad), 4739983 (the end), 4739984/4739985 (the call-site table's bounds); the body's
//! call is between the caller's `begin` and `end` labels. Every reference is backward from the
//! table, which follows the code in the same `naked_asm!`, so the closest definition is this
//! trampoline's. The LSDA's own label (`.cfi_lsda` takes a symbol, not a number) is the
//! caller's: `.L<the trampoline's unique link-time name>_lsda`, or `.L{me}_lsda` with `me` the
//! trampoline's own `sym` where one definition is instantiated per type (the closure form).
//!
//! The call-site entries are `udata4` (`.4byte` differences): on RISC-V, where the linker may
//! relax instructions, LLVM resolves them with `ADD32`/`SUB32` relocation pairs, which every
//! linker knows, instead of the ULEB128 pairs that binutils before 2.41 does not.
//!
//! Builds without unwinding (`panic = "abort"`, every kernel) have none of this: their
//! trampolines are exactly what they were, and a `no_std` build's wrapper releases with its
//! drop guard (the kernel backends keep their own in-use flag).

/// `.cfi_personality` and `.cfi_lsda` for a trampoline, and the label its call-site offsets
/// count from; right after its `.cfi_startproc`.
#[cfg(all(feature = "std", panic = "unwind"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_eh_begin {
    ($lsda:expr) => {
        ::core::concat!(
            // Indirect, pc-relative, 4 bytes (0x9b): the word at `__irqstack_rt_personality_0_1`
            // (defined below) holds the routine's address.
            ".cfi_personality 0x9b, __irqstack_rt_personality_0_1\n",
            // Pc-relative, 4 bytes (0x1b).
            ".cfi_lsda 0x1b, ",
            $lsda,
            "\n4739981:\n",
        )
    };
}

/// Without unwinding: nothing (the comment uses the label's text, which may name a `sym`
/// operand that `naked_asm!` requires to be used).
#[cfg(not(all(feature = "std", panic = "unwind")))]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_eh_begin {
    ($lsda:expr) => {
        ::core::concat!("/* no landing pad: ", $lsda, " */\n")
    };
}

/// `.cfi_remember_state` where the switched CFI is complete (before the body's call), so that
/// the landing pad can start from it again.
#[cfg(all(feature = "std", panic = "unwind"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_eh_remember {
    () => {
        ".cfi_remember_state\n"
    };
}

/// Without unwinding: nothing.
#[cfg(not(all(feature = "std", panic = "unwind")))]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_eh_remember {
    () => {
        ""
    };
}

/// The landing pad `$pad` (the port's), after the trampoline's way back and before its
/// `.cfi_endproc`, starting from the CFI state of the body's call.
#[cfg(all(feature = "std", panic = "unwind"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_eh_pad {
    ($pad:expr) => {
        ::core::concat!(".cfi_restore_state\n4739982:\n", $pad, "4739983:\n")
    };
}

/// Without unwinding: nothing (`$pad` is never expanded).
#[cfg(not(all(feature = "std", panic = "unwind")))]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_eh_pad {
    ($pad:expr) => {
        ""
    };
}

/// The LSDA, after the trampoline's `.cfi_endproc`: three call sites, from the start to the
/// body's call (no landing pad: nothing there calls, but an asynchronous unwind from a signal
/// frame must find an entry, or Rust's personality aborts), the call (landing pad 4739982,
/// cleanup only: action 0), and from the instruction after it to the end (the way back, and the
/// landing pad's own call of `_Unwind_Resume`: no landing pad).
#[cfg(all(feature = "std", panic = "unwind"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_eh_table {
    ($lsda:expr, $b:literal, $e:literal) => {
        ::core::concat!(
            ".pushsection .gcc_except_table, \"a\"\n",
            ".p2align 2\n",
            $lsda,
            ":\n",
            // Landing pads count from the function's start (no @LPStart); no type table;
            // call sites in udata4.
            ".byte 0xff\n.byte 0xff\n.byte 0x03\n",
            ".uleb128 4739985f - 4739984f\n",
            "4739984:\n",
            ".4byte 0\n.4byte ",
            $b,
            "b - 4739981b\n.4byte 0\n.byte 0\n",
            ".4byte ",
            $b,
            "b - 4739981b\n.4byte ",
            $e,
            "b - ",
            $b,
            "b\n.4byte 4739982b - 4739981b\n.byte 0\n",
            ".4byte ",
            $e,
            "b - 4739981b\n.4byte 4739983b - ",
            $e,
            "b\n.4byte 0\n.byte 0\n",
            "4739985:\n",
            ".popsection\n",
        )
    };
}

/// Without unwinding: nothing.
#[cfg(not(all(feature = "std", panic = "unwind")))]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_eh_table {
    ($lsda:expr, $b:literal, $e:literal) => {
        ""
    };
}

// The personality routine's address, for `.cfi_personality`'s indirect encoding (what the
// compiler's own `DW.ref.rust_eh_personality` is; that name cannot be defined here, since the
// compiler may define it in the same object). Hidden: every trampoline of the final binary or
// shared object reaches it pc-relatively, with no dynamic symbol; the word itself gets a
// relative relocation in a position-independent image. The name carries the semver-compatible
// version, as the crate's other link-time names (see `padded` in lib.rs).
#[cfg(all(feature = "std", panic = "unwind"))]
core::arch::global_asm!(
    ".pushsection .data.rel.ro.__irqstack_rt_personality_0_1, \"aw\"",
    ".p2align 3",
    ".globl __irqstack_rt_personality_0_1",
    ".hidden __irqstack_rt_personality_0_1",
    "__irqstack_rt_personality_0_1:",
    ".8byte rust_eh_personality",
    ".popsection",
);
