//! riscv64: the ready per-CPU backend `tp_percpu_backend!` (percpu.rs).

mod percpu;
