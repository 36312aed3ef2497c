//! The per-architecture pieces: what a port brings.
//!
//! The public API (`lib.rs`) and the backends are arch-neutral; everything that is assembly, or
//! that follows an architecture's calling convention or its interrupt frame, lives in one module
//! per architecture:
//!
//! - `markers` (shared): the instrumentation markers, their records and the trampolines'
//!   section, which read the same on every architecture;
//! - `pieces`: the `macro_rules!` template pieces that generated code is built from (the
//!   trampoline, marker records, return sequences, sections), as string literals for
//!   `naked_asm!`/`global_asm!`;
//! - `entry`: the interrupt entry stubs of `#[idtentry]` and the register frame they build
//!   (`PtRegs`, the layout of Linux's `struct pt_regs`).
//!
//! x86-64 has everything; AArch64 has the trampoline pieces (user space and bare-metal kernels)
//! and `percpu` (`tpidr_percpu_backend!`, the ready backend of arm64 kernels); RISC-V 64 has the
//! user-space pieces. No `entry` but on x86-64: `#[idtentry]` and `PtRegs` are x86-64 only. The
//! crate refuses to build elsewhere with a message that names the
//! supported architectures.

mod landing;
mod markers;
mod trampoline;

/// The x86-64-only features stop a build for another architecture, with messages that name what
/// that architecture supports instead (`$arch`, its ready per-CPU backend `$backend`). Each port
/// invokes it once in its `mod.rs`.
#[cfg(any(target_arch = "aarch64", target_arch = "riscv64"))]
macro_rules! refuse_x86_only_features {
    ($arch:literal, $backend:literal) => {
        #[cfg(feature = "call-padding")]
        compile_error!(concat!(
            "irqstack: feature `call-padding` is supported on target_arch = \"x86_64\" only (",
            $arch,
            " supports user space and bare-metal kernels with `",
            $backend,
            "`)"
        ));
        #[cfg(feature = "inline-switch")]
        compile_error!(concat!(
            "irqstack: feature `inline-switch` is supported on target_arch = \"x86_64\" only (",
            $arch,
            " supports user space and bare-metal kernels with `",
            $backend,
            "`)"
        ));
        #[cfg(feature = "linux-percpu")]
        compile_error!(
            "irqstack: feature `linux-percpu` (Linux's x86 `%gs` per-CPU variables) is supported \
             on target_arch = \"x86_64\" only"
        );
        #[cfg(any(
            feature = "kernel-abi",
            feature = "rethunk",
            feature = "sls",
            feature = "ibt",
            feature = "objtool-legacy-hints"
        ))]
        compile_error!(concat!(
            "irqstack: the kernel-build features (`kernel-abi`, `rethunk`, `sls`, `ibt`, \
             `objtool-legacy-hints`) are supported on target_arch = \"x86_64\" only (",
            $arch,
            " supports user space and bare-metal kernels with `",
            $backend,
            "`)"
        ));
    };
}

// What the AArch64 and RISC-V 64 ports share word for word (the trampoline definitions, the
// return, the shim ABI).
#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "riscv64")]
mod riscv64;
#[cfg(any(target_arch = "aarch64", target_arch = "riscv64"))]
mod shared_port;
#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use x86_64::*;

// The CFI-only switch frames of AArch64 user-space builds (x86-64's are `crate::switch_frames`).
#[cfg(all(target_arch = "aarch64", feature = "std"))]
pub(crate) use aarch64::switch_frames;
// The same for riscv64.
#[cfg(all(target_arch = "riscv64", feature = "std"))]
pub(crate) use riscv64::switch_frames;
