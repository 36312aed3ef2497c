//! Procedural macros of [`irqstack`](https://docs.rs/irqstack). Use them through the facade crate
//! (`irqstack::on_irqstack`, `irqstack::noinstr`, `irqstack::instr_begin!`, ...), which documents
//! them with examples; generated code reaches the runtime through the facade's hidden
//! `__private` module.
//!
//! One module per macro (`on_irqstack`, `idtentry`, `noinstr`, `marker`), parsing of attribute arguments in
//! `attr`, checks in `valid`, type classification in `classify`, label numbers in `label`. Every
//! entry point returns tokens for any input: errors become `compile_error!` at the offending
//! token, never a panic.
#![deny(missing_docs)]

use proc_macro::TokenStream;

mod attr;
mod classify;
mod idtentry;
mod label;
mod marker;
#[cfg(test)]
mod no_panic_tests;
mod noinstr;
mod on_irqstack;
mod valid;

/// Runs the function's body on the IRQ stack of the current CPU (thread). See the `irqstack`
/// crate documentation.
#[proc_macro_attribute]
pub fn on_irqstack(attr: TokenStream, item: TokenStream) -> TokenStream {
    on_irqstack::expand(attr.into(), item.into()).into()
}

/// Places a function in `.noinstr.text` and keeps it out of line, like the kernel's `noinstr`.
/// See the `irqstack` crate documentation.
#[proc_macro_attribute]
pub fn noinstr(attr: TokenStream, item: TokenStream) -> TokenStream {
    noinstr::expand(attr.into(), item.into()).into()
}

/// Generates an x86-64 interrupt entry stub for a handler, like Linux's `DEFINE_IDTENTRY*`.
/// See the `irqstack` crate documentation.
#[proc_macro_attribute]
pub fn idtentry(attr: TokenStream, item: TokenStream) -> TokenStream {
    idtentry::expand(attr.into(), item.into()).into()
}

/// Implementation of `instr_begin!`, `instr_end!`, `instr_begin_insn!` and `instr_end_insn!`.
#[doc(hidden)]
#[proc_macro]
pub fn __instr_marker(input: TokenStream) -> TokenStream {
    marker::expand(input.into()).into()
}
