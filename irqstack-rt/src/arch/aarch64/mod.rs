//! AArch64: the trampoline and marker pieces (`pieces`), for user space
//! (`aarch64-unknown-linux-gnu`, `std`) and bare-metal kernels (`aarch64-unknown-none`, `no_std`),
//! and the ready per-CPU backend of arm64 kernels (`percpu`: `tpidr_percpu_backend!`, the
//! per-CPU offset in `tpidr_el1`/`tpidr_el2`). The x86-64 kernel-build features and `#[idtentry]`
//! stay x86-64 only; a build that asks for them stops here with a message that says so.

mod percpu;
mod pieces;
#[cfg(feature = "std")]
pub(crate) mod switch_frames;

#[cfg(feature = "call-padding")]
compile_error!(
    "irqstack: feature `call-padding` is supported on target_arch = \"x86_64\" only \
     (aarch64 supports user space and bare-metal kernels with `tpidr_percpu_backend!`)"
);
#[cfg(feature = "inline-switch")]
compile_error!(
    "irqstack: feature `inline-switch` is supported on target_arch = \"x86_64\" only \
     (aarch64 supports user space and bare-metal kernels with `tpidr_percpu_backend!`)"
);
#[cfg(feature = "linux-percpu")]
compile_error!(
    "irqstack: feature `linux-percpu` (Linux's x86 `%gs` per-CPU variables) is supported on \
     target_arch = \"x86_64\" only"
);
#[cfg(any(
    feature = "kernel-abi",
    feature = "rethunk",
    feature = "sls",
    feature = "ibt",
    feature = "objtool-legacy-hints"
))]
compile_error!(
    "irqstack: the kernel-build features (`kernel-abi`, `rethunk`, `sls`, `ibt`, \
     `objtool-legacy-hints`) are supported on target_arch = \"x86_64\" only \
     (aarch64 supports user space and bare-metal kernels with `tpidr_percpu_backend!`)"
);
