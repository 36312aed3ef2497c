//! Compile-fail suite: every misuse of the macros must give a spanned error that names the fix,
//! and nothing else (no follow-on errors from rustc).
//!
//! Each `tests/ui/*.rs` is compiled by trybuild and its diagnostics compared with the `.stderr`
//! file next to it. The `.stderr` files are written for the toolchain pinned in
//! `rust-toolchain.toml`; other compilers may word rustc's own parts differently.
//!
//! To bless (rewrite) the expected output after a deliberate change, run
//! `TRYBUILD=overwrite cargo test -p irqstack-tests --test compile_fail` and review the diff of
//! `irqstack-tests/tests/ui/*.stderr`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
