//! AArch64: the trampoline and marker pieces (`pieces`), for user space
//! (`aarch64-unknown-linux-gnu`, `std`) and bare-metal kernels (`aarch64-unknown-none`, `no_std`),
//! and the ready per-CPU backend of arm64 kernels (`percpu`: `tpidr_percpu_backend!`, the
//! per-CPU offset in `tpidr_el1`/`tpidr_el2`). The x86-64 kernel-build features and `#[idtentry]`
//! stay x86-64 only; a build that asks for them stops here with a message that says so.

mod percpu;
mod pieces;
#[cfg(feature = "std")]
pub(crate) mod switch_frames;

refuse_x86_only_features!("aarch64", "tpidr_percpu_backend!");
