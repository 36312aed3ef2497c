//! The real objtool (Debian's linux-kbuild 6.1 and 6.12) on an object built like kernel code.
//!
//! `examples/kernel_module` with feature `negative` contains:
//! (a) `irqstack_km_entry`: `#[noinstr]`, calls an extern (instrumentable) function between
//!     `instr_begin!()` and `instr_end!()`, and calls an `#[on_irqstack]` handler;
//! (b) `irqstack_km_entry_unmarked`: `#[noinstr]`, calls the extern function without markers;
//! (c) `irqstack_km_entry_asm`: (a)'s marked call written as one `asm!` template with
//!     `instr_begin_insn!()` / `instr_end_insn!()`.
//! objtool `--stackval --noinstr --link` must warn about (b), exactly once, and about nothing
//! else; without `negative` it must be silent.

mod kernel_object;

use kernel_object::{build, required_objtools, run_objtool};

const CHECKS: &[&str] = &["--stackval", "--noinstr", "--link"];

#[test]
fn objtool_flags_exactly_the_unmarked_call() {
    let Some(tools) = required_objtools() else {
        return;
    };
    let obj = build("negative", &["negative"], &[]);
    for (ver, tool) in &tools {
        let warnings = run_objtool(tool, &obj, CHECKS);
        assert_eq!(
            warnings.len(),
            1,
            "objtool {ver}: expected exactly one warning, got {warnings:#?}"
        );
        let w = &warnings[0];
        assert!(
            w.contains("irqstack_km_entry_unmarked")
                && w.contains("call to irqstack_km_trace() leaves .noinstr.text section"),
            "objtool {ver}: unexpected warning {w}"
        );
    }
}

#[test]
fn objtool_accepts_markers_trampolines_and_asm_pieces() {
    let Some(tools) = required_objtools() else {
        return;
    };
    let obj = build("clean", &[], &[]);
    for (ver, tool) in &tools {
        let warnings = run_objtool(tool, &obj, CHECKS);
        assert!(warnings.is_empty(), "objtool {ver}: {warnings:#?}");
    }
}
