//! x86-64: the trampoline and marker pieces (`pieces`), the interrupt entry stubs and
//! `PtRegs` (`entry`).

mod entry;
mod pieces;

pub use entry::PtRegs;
