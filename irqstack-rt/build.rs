//! Checks that the hardening flags of a cargo build and irqstack's features agree.
//!
//! The code generation flags a kernel build passes are not visible to `cfg` (rustc exposes no
//! `target_feature` for `-Zfunction-return`, `harden-sls-*`, `-Zcf-protection` or
//! `-Zpatchable-function-entry`), so the assembly pieces follow cargo features instead. A build
//! that compiles Rust with a mitigation but forgets the matching feature would get hand-written
//! code without it, and objtool (or worse, nothing) would find out later. Cargo shows a build
//! script the flags of the target compilation (`CARGO_ENCODED_RUSTFLAGS`), so such a build stops
//! here with the feature to add. Builds that call rustc without cargo (the Linux kernel's own
//! Makefiles) rely on the table in the README instead.

use std::env;

/// The flags of the target compilation, each `-C x` / `-Z x` pair joined into `-Cx` / `-Zx`.
fn rustflags() -> Vec<String> {
    let raw = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let mut out: Vec<String> = Vec::new();
    let mut pending: Option<&str> = None;
    for arg in raw.split('\u{1f}').filter(|a| !a.is_empty()) {
        if let Some(prefix) = pending.take() {
            out.push(format!("{prefix}{arg}"));
        } else if arg == "-C" || arg == "-Z" {
            pending = Some(if arg == "-C" { "-C" } else { "-Z" });
        } else if let Some(rest) = arg.strip_prefix("--codegen=") {
            out.push(format!("-C{rest}"));
        } else {
            out.push(arg.to_owned());
        }
    }
    out
}

fn feature(name: &str) -> bool {
    env::var_os(format!(
        "CARGO_FEATURE_{}",
        name.to_uppercase().replace('-', "_")
    ))
    .is_some()
}

fn main() {
    println!("cargo::rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let flags = rustflags();
    let has = |needle: &str| flags.iter().any(|f| f.contains(needle));
    let mut errors = Vec::new();
    if has("-Zfunction-return=thunk-extern") && !feature("rethunk") {
        errors.push(
            "the build returns through `__x86_return_thunk` (-Zfunction-return=thunk-extern, \
             CONFIG_MITIGATION_RETHUNK) but irqstack's feature `rethunk` is off: its trampolines \
             would end in a bare `ret` (objtool: \"'naked' return found in MITIGATION_RETHUNK \
             build\"). Enable feature `rethunk`.",
        );
    }
    if has("+harden-sls-ret") && !feature("sls") {
        errors.push(
            "the build hardens returns against straight-line speculation \
             (-C target-feature=+harden-sls-ret, CONFIG_MITIGATION_SLS) but irqstack's feature \
             `sls` is off: its trampolines would have no `int3` after the return (objtool: \
             \"missing int3 after ret\"). Enable feature `sls`.",
        );
    }
    let padded = flags.iter().any(|f| {
        f.strip_prefix("-Zpatchable-function-entry=")
            .and_then(|v| v.split_once(','))
            .is_some_and(|(_, prefix)| prefix.trim() != "0")
    });
    if padded && !feature("call-padding") {
        errors.push(
            "the build pads every function with NOPs in front (-Zpatchable-function-entry=N,M, \
             CONFIG_CALL_PADDING) but irqstack's feature `call-padding` is off: its trampolines \
             would have no padding and no `__pfx_` symbol, and the kernel's call depth \
             tracking warns \"Invalid padding area\" for calls to them. Enable feature \
             `call-padding`.",
        );
    }
    if (has("-Zcf-protection=branch") || has("-Zcf-protection=full")) && !feature("ibt") {
        errors.push(
            "the build enforces indirect branch tracking (-Zcf-protection, \
             CONFIG_X86_KERNEL_IBT) but irqstack's feature `ibt` is off: the entry stubs of \
             `#[idtentry]`, which the IDT reaches indirectly, would not start with `endbr64` and \
             fault. Enable feature `ibt`.",
        );
    }
    if (has("-Zcf-protection=branch") || has("-Zcf-protection=full"))
        && !feature("kernel-abi")
        && !feature("std")
    {
        println!(
            "cargo::warning=irqstack: -Zcf-protection=branch (IBT) without feature `kernel-abi`: \
             trampolines put their unwind information in .eh_frame, whose relocations objtool \
             --ibt reports as \"data relocation to !ENDBR\"; kernel builds want `kernel-abi`"
        );
    }
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("error: irqstack: {e}");
        }
        eprintln!(
            "irqstack: see \"Kernel configuration and features\" in the README for the table of \
             kernel options, Rust flags and irqstack features"
        );
        std::process::exit(1);
    }
}
