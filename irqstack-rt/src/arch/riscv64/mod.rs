//! RISC-V 64 (user space, `riscv64gc-unknown-linux-gnu`, RV64GC with the LP64D ABI): the
//! trampoline and marker pieces (`pieces`). The kernel-build features and `#[idtentry]` are
//! x86-64 only for now; a build that asks for them stops here with a message that says so.
//!
//! The instrumentation markers (`arch/markers.rs`, `instr_begin!`/`instr_end!`, `#[noinstr]`)
//! assemble here as everywhere: a `nop` and a 32-bit PC-relative record in a `.discard.*`
//! section. The assembler writes each record's `label - .` as an `R_RISCV_ADD32` (the label)
//! and `R_RISCV_SUB32` (the record) relocation pair, as LLVM's RISC-V assembler does for label
//! differences across sections; the value is the same 32-bit offset (tests/cross_arch.rs reads
//! the pairs). objtool validates the
//! records on x86-64 only: on riscv64 nothing reads them.
//!
//! `no_std` kernels (without the kernel-build features) use the same pieces, with the ready
//! per-CPU backend `tp_percpu_backend!` (`percpu`), as `examples/riscv64_kernel` does.

mod percpu;
mod pieces;
#[cfg(feature = "std")]
pub(crate) mod switch_frames;

refuse_x86_only_features!("riscv64", "tp_percpu_backend!");
