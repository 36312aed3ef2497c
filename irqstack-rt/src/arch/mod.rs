//! The per-architecture pieces: what a port brings.
//!
//! The public API (`lib.rs`) and the backends are arch-neutral; everything that is assembly, or
//! that follows an architecture's calling convention or its interrupt frame, lives in one module
//! per architecture:
//!
//! - `pieces`: the `macro_rules!` template pieces that generated code is built from (the
//!   trampoline, marker records, return sequences, sections), as string literals for
//!   `naked_asm!`/`global_asm!`;
//! - `entry`: the interrupt entry stubs of `#[idtentry]` and the register frame they build
//!   (`PtRegs`, the layout of Linux's `struct pt_regs`).
//!
//! Only x86-64 exists today; the crate refuses to build elsewhere with a message that names it.

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use x86_64::*;
