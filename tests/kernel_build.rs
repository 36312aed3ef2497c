//! Kernel builds for real (issue 11): `examples/kernel_module` compiled for `x86_64-unknown-none`
//! with every Rust flag a hardened x86-64 Linux build passes, then checked by Debian's objtool
//! 6.1 and 6.12 with the kernel's own objtool flags, and by reading its machine code.
//!
//! Each defect the real build exposed has its test here (or in `kernel_backends.rs` where it
//! needs the code to run): soft-float arguments, `.eh_frame` under IBT, `noinstr` queries.

mod kernel_object;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use kernel_object::{
    KERNEL_TARGET, build, build_kernel, build_kernel_for, disassemble, kernel_objtool_flags,
    required_objtools, required_target, run_objtool, run_objtool_keep,
};

/// Whether `name` is a trampoline's symbol (not its shim's, nor a prefix symbol, nor objdump's
/// `<name-0x10>` for the padding in front of one).
fn is_trampoline(name: &str) -> bool {
    name.contains("trampoline")
        && !name.ends_with("_shim")
        && !name.starts_with("__pfx_")
        && !name.contains('-')
}

/// The register through which a trampoline saves `rsp` (`mov QWORD PTR [R],rsp`), and the
/// instruction that switches to the IRQ stack.
fn trampoline_tos(tramp: &[(u64, String)]) -> (String, String) {
    let save = tramp
        .iter()
        .find_map(|(_, i)| {
            i.strip_prefix("mov QWORD PTR [")
                .and_then(|r| r.strip_suffix("],rsp"))
        })
        .unwrap_or_else(|| panic!("no `mov [tos], rsp` in {:?}", tramp));
    let switch = tramp
        .iter()
        .find(|(_, i)| i.starts_with("mov rsp,") || i.starts_with("lea rsp,"))
        .map(|(_, i)| i.clone())
        .unwrap_or_else(|| panic!("no switch of rsp in {:?}", tramp));
    (save.to_owned(), switch)
}

const CALLER_SAVED: &[&str] = &["rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11"];

/// The registers that hold the claimed top of stack when `caller` reaches its call of a
/// trampoline, by following it from where it appears (the return value of the backend's claim
/// hook, or a `%gs` load of `hardirq_stack_ptr`) through register copies, in address order. It
/// returns the trampoline's name as well.
fn tos_registers_at_trampoline_call(caller: &[(u64, String)]) -> (BTreeSet<String>, String) {
    let mut holding: BTreeSet<String> = BTreeSet::new();
    for (_, insn) in caller {
        let (op, operands) = insn.split_once(' ').unwrap_or((insn, ""));
        if op == "call" {
            if operands.contains("trampoline") {
                let name = operands.rsplit("-> ").next().unwrap_or("");
                let name = name.trim_end_matches("-0x4").to_owned();
                return (holding, name);
            }
            for r in CALLER_SAVED {
                holding.remove(*r);
            }
            if operands.contains("set_backend_claim") {
                holding.insert("rax".into());
            }
            continue;
        }
        let Some((dst, src)) = operands.split_once(',') else {
            continue;
        };
        let dst = dst.to_owned();
        let loads_tos = src.starts_with("QWORD PTR gs:") && insn.contains("hardirq_stack_ptr");
        if op == "mov" && (loads_tos || holding.contains(src)) {
            holding.insert(dst);
        } else if !matches!(op, "test" | "cmp") && holding.contains(&dst) {
            holding.remove(&dst);
        }
    }
    panic!("no call of a trampoline in {:?}", caller);
}

/// The `noinstr` callers in `examples/kernel_module`, one per argument shape.
const CALLERS: &[&str] = &[
    "irqstack_km_entry",       // two u64: register form
    "irqstack_km_call_float",  // f64, u64, f32: register form (where floats go decides tos)
    "irqstack_km_call_seven",  // seven u64: block form
    "irqstack_km_call_struct", // 40-byte struct in and out: block form with a result slot
    "irqstack_km_call_wide",   // i128: block form
    "irqstack_km_call_regs",   // &mut Regs: register form, picked by size_of
    "irqstack_km_call_pick",   // named lifetimes, a reference back: register form
    "irqstack_km_softirq",     // run_on_irqstack: the closure trampoline
];

fn check_tos_registers(obj: &Path, what: &str) -> Vec<String> {
    let funcs = disassemble(obj);
    let mut seen = Vec::new();
    for caller in CALLERS {
        let f = funcs
            .get(*caller)
            .unwrap_or_else(|| panic!("{what}: {caller} not in the object"));
        let (holding, tramp_name) = tos_registers_at_trampoline_call(f);
        let tramp = funcs
            .get(&tramp_name)
            .unwrap_or_else(|| panic!("{what}: trampoline {tramp_name} not in the object"));
        let (reg, switch) = trampoline_tos(tramp);
        assert!(
            holding.contains(&reg),
            "{what}: {caller} calls {tramp_name} with the top of stack in {holding:?}, but the \
             trampoline stores rsp through {reg}"
        );
        assert!(
            switch.contains(&reg),
            "{what}: {tramp_name} saves through {reg} but switches with `{switch}`"
        );
        seen.push(format!("{caller}: {reg}"));
    }
    seen
}

/// Defect 1: a float argument moved the register that carries `tos` on the soft-float target
/// (`#[on_irqstack] fn f(x: f64)` stored rsp through the bits of `x`). For every argument class,
/// the register the trampoline stores `rsp` through is the one the caller put `tos` in, on the
/// kernel target and on the host.
#[test]
fn trampolines_find_tos_where_callers_put_it_for_every_argument_class() {
    if !required_target(KERNEL_TARGET) {
        return;
    }
    let kernel = build_kernel("kernel-clean", &[], &[]);
    let seen = check_tos_registers(&kernel, KERNEL_TARGET);
    // On the soft-float target the float handler's three arguments take rdi, rsi, rdx.
    assert!(
        seen.contains(&"irqstack_km_call_float: rcx".to_owned()),
        "{seen:?}"
    );
    let host = build("clean", &[], &[]);
    let seen = check_tos_registers(&host, "host");
    // With SSE the two floats take xmm0/xmm1, and the one integer rdi.
    assert!(
        seen.contains(&"irqstack_km_call_float: rsi".to_owned()),
        "{seen:?}"
    );
}

/// The kernel-flag object passes objtool 6.1 and 6.12 with the kernel's full flag set, and the
/// deliberately unmarked call is still flagged, exactly once.
#[test]
fn kernel_build_passes_objtool_with_the_kernels_flags() {
    let Some(tools) = required_objtools() else {
        return;
    };
    if !required_target(KERNEL_TARGET) {
        return;
    }
    for (ver, tool) in &tools {
        let clean = build_kernel_for(ver, false);
        let negative = build_kernel_for(ver, true);
        let flags = kernel_objtool_flags(ver);
        let w = run_objtool(tool, &clean, &flags);
        assert!(w.is_empty(), "objtool {ver} {flags:?}: {w:#?}");
        let w = run_objtool(tool, &negative, &flags);
        assert_eq!(w.len(), 1, "objtool {ver} {flags:?}: {w:#?}");
        assert!(
            w[0].contains("irqstack_km_entry_unmarked")
                && w[0].contains("call to irqstack_km_trace() leaves .noinstr.text section"),
            "objtool {ver}: {w:#?}"
        );
    }
}

/// Section headers of `obj`, by name.
fn sections(obj: &Path) -> Vec<String> {
    let out = Command::new("objdump")
        .args(["-h"])
        .arg(obj)
        .output()
        .expect("objdump");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .collect()
}

/// Defect 2: the trampolines' literal `.cfi_startproc` created an `.eh_frame` in a build with
/// unwind tables off, and objtool `--ibt` reported its relocation as a "data relocation to
/// !ENDBR". Kernel builds keep the CFI in `.debug_frame` (debuggers read it, objtool ignores
/// it), and the ORC that objtool generates still unwinds the trampoline through the frame
/// pointer across the switch: `sp:bp+16` at its `call`.
#[test]
fn kernel_build_has_no_eh_frame_and_orc_crosses_the_switch() {
    let Some(tools) = required_objtools() else {
        return;
    };
    if !required_target(KERNEL_TARGET) {
        return;
    }
    let obj = build_kernel("kernel-clean", &[], &[]);
    let secs = sections(&obj);
    assert!(!secs.iter().any(|s| s == ".eh_frame"), "{secs:?}");
    let funcs = disassemble(&obj);
    let tramps: Vec<(&String, &Vec<(u64, String)>)> =
        funcs.iter().filter(|(n, _)| is_trampoline(n)).collect();
    assert!(tramps.len() >= 7, "{:?}", funcs.keys());
    let (ver, tool) = tools
        .iter()
        .find(|(v, _)| v.starts_with("6.12"))
        .expect("objtool 6.12");
    let processed = run_objtool_keep(tool, &obj, &kernel_objtool_flags(ver));
    let dump = Command::new(tool)
        .env("SRCARCH", "x86")
        .arg("--dump=orc")
        .arg(&processed)
        .output()
        .expect("objtool --dump=orc");
    let dump = String::from_utf8_lossy(&dump.stdout);
    // ".noinstr.text+4c:type:call sp:bp+16 bp:prevsp-16 signal:0"
    let orc: Vec<(u64, String)> = dump
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(".noinstr.text+")?;
            let (off, state) = rest.split_once(':')?;
            Some((u64::from_str_radix(off, 16).ok()?, state.to_owned()))
        })
        .collect();
    assert!(!orc.is_empty(), "no ORC for .noinstr.text:\n{dump}");
    for (name, f) in tramps {
        let call = f
            .iter()
            .find(|(_, i)| i.starts_with("call"))
            .map(|(a, _)| *a)
            .unwrap_or_else(|| panic!("{name}: no call"));
        let state = orc
            .iter()
            .rfind(|(off, _)| *off <= call)
            .map(|(_, s)| s.as_str())
            .unwrap_or_else(|| panic!("{name}: no ORC entry before {call:#x}"));
        assert!(
            state.contains("sp:bp+16"),
            "{name}: ORC at its call ({call:#x}) is `{state}`, not the frame pointer"
        );
    }
    let _ = std::fs::remove_file(processed);
}

/// Defect 3: `irqstack_active()`, `interrupted_sp()` and `irq_stack_bounds()` called from a
/// `noinstr` function reached hooks outside `.noinstr.text`. Every hook `set_backend!` defines
/// is in `.noinstr.text`, and objtool says nothing about the function that calls all three.
#[test]
fn noinstr_queries_stay_in_noinstr_text() {
    let Some(tools) = required_objtools() else {
        return;
    };
    let obj = build("clean", &[], &[]);
    let out = Command::new("objdump")
        .arg("-t")
        .arg(&obj)
        .output()
        .expect("objdump");
    let table = String::from_utf8_lossy(&out.stdout);
    for hook in ["claim", "release", "bounds", "top_slot"] {
        let name = format!("_irqstack_no_backend__call_irqstack_set_backend_{hook}");
        let line = table
            .lines()
            .find(|l| l.ends_with(&name))
            .unwrap_or_else(|| panic!("{name} not defined:\n{table}"));
        assert!(line.contains(".noinstr.text"), "{line}");
    }
    for (ver, tool) in &tools {
        let w = run_objtool(tool, &obj, &["--stackval", "--noinstr", "--link"]);
        assert!(
            !w.iter().any(|l| l.contains("irqstack_km_state")),
            "objtool {ver}: {w:#?}"
        );
    }
}

/// `cargo check` of `examples/kernel_module` with `rustflags` in `RUSTFLAGS` (as a kernel built
/// with cargo passes them) and `features`; returns success and stderr.
fn check_with_rustflags(rustflags: &str, features: &[&str]) -> (bool, String) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(kernel_object::repo().join("examples/kernel_module"))
        .args(["check", "--quiet", "--lib"])
        // With an explicit target, RUSTFLAGS reach the target crates and their build scripts'
        // view of them, not the build scripts and proc macros themselves.
        .args(["--target", "x86_64-unknown-linux-gnu"])
        .arg("--target-dir")
        .arg(kernel_object::repo().join("target/kernel-module-flags"))
        .arg(format!("--features={}", features.join(",")))
        .env("RUSTFLAGS", rustflags)
        .env("RUSTC_BOOTSTRAP", "1")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("running cargo");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Defect 6: `-Zfunction-return=thunk-extern` without feature `rethunk` (SLS hardening without
/// `sls`, call padding without `call-padding`) built hand-written code that objtool or the
/// kernel rejects later. A cargo build now stops
/// with an error that names the feature; with the features it builds.
#[test]
fn hardening_flags_without_their_feature_fail_the_build_naming_it() {
    let (ok, err) = check_with_rustflags("-Zfunction-return=thunk-extern", &["kernel-abi"]);
    assert!(!ok && err.contains("Enable feature `rethunk`"), "{err}");
    let (ok, err) = check_with_rustflags("-Ctarget-feature=+harden-sls-ret", &["kernel-abi"]);
    assert!(!ok && err.contains("Enable feature `sls`"), "{err}");
    let (ok, err) = check_with_rustflags("-Zpatchable-function-entry=16,16", &["kernel-abi"]);
    assert!(
        !ok && err.contains("Enable feature `call-padding`"),
        "{err}"
    );
    let (ok, err) = check_with_rustflags("-Zcf-protection=branch", &["kernel-abi"]);
    assert!(!ok && err.contains("Enable feature `ibt`"), "{err}");
    let (ok, err) = check_with_rustflags(
        "-Zfunction-return=thunk-extern -Ctarget-feature=+harden-sls-ret,+harden-sls-ijmp \
         -Zpatchable-function-entry=16,16 -Zcf-protection=branch",
        &["kernel-abi", "rethunk", "sls", "call-padding", "ibt"],
    );
    assert!(ok, "{err}");
}

/// Defect 5: with `-Zpatchable-function-entry=16,16` and `--prefix=16`, every compiled function
/// gets 16 bytes of NOPs in front and a `__pfx_` symbol (which call depth tracking rewrites),
/// but the naked trampolines had none. With feature `call-padding` every trampoline, the
/// closure form's included, has its `__pfx_` symbol after objtool 6.12 `--prefix=16`.
#[test]
fn call_padding_gives_every_trampoline_a_prefix_symbol() {
    let Some(tools) = required_objtools() else {
        return;
    };
    if !required_target(KERNEL_TARGET) {
        return;
    }
    let obj = build_kernel("kernel-clean", &[], &[]);
    let (ver, tool) = tools
        .iter()
        .find(|(v, _)| v.starts_with("6.12"))
        .expect("objtool 6.12");
    let processed = run_objtool_keep(tool, &obj, &kernel_objtool_flags(ver));
    let out = Command::new("objdump")
        .arg("-t")
        .arg(&processed)
        .output()
        .expect("objdump");
    let _ = std::fs::remove_file(&processed);
    let table = String::from_utf8_lossy(&out.stdout);
    let functions: BTreeSet<&str> = table
        .lines()
        .filter(|l| l.contains(" F "))
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    let tramps: Vec<&str> = functions
        .iter()
        .copied()
        .filter(|n| is_trampoline(n))
        .collect();
    assert!(tramps.len() >= 7, "{functions:?}");
    for t in tramps {
        assert!(
            functions.contains(format!("__pfx_{t}").as_str()),
            "{t} has no __pfx_ symbol: {functions:?}"
        );
    }
    // The compiler's own functions have theirs too: the comparison is like for like.
    assert!(
        functions.contains("__pfx_irqstack_km_entry"),
        "{functions:?}"
    );
}

/// Issue 15, kernel builds: with `linux-percpu` and `inline-switch` the whole switch is inline in
/// the caller, as Linux's `call_on_irqstack_cond`: on the switch path the only call is the one to
/// the body (no claim/release hooks, no trampoline); objtool 6.1 and 6.12 with the kernel's
/// flags accept the stack swizzle, the handler that never returns included.
#[test]
fn inline_switch_has_no_out_of_line_call_but_the_body_and_passes_objtool() {
    let Some(tools) = required_objtools() else {
        return;
    };
    if !required_target(KERNEL_TARGET) {
        return;
    }
    for (ver, tool) in &tools {
        let mut features = vec!["linux-percpu", "inline-switch"];
        if ver == "6.1" {
            features.push("objtool-legacy-hints");
        }
        let obj = build_kernel(&format!("kernel-inline-{ver}"), &features, &[]);
        let w = run_objtool(tool, &obj, &kernel_objtool_flags(ver));
        assert!(w.is_empty(), "objtool {ver}: {w:#?}");
        let funcs = disassemble(&obj);
        let entry = &funcs["irqstack_km_entry"];
        let calls: Vec<&str> = entry
            .iter()
            .map(|(_, i)| i.as_str())
            .filter(|i| i.starts_with("call"))
            .collect();
        // The traced call (between markers, twice: before the switch and on the in-place path)
        // and the body's shim: nothing else.
        assert!(
            calls
                .iter()
                .all(|c| c.contains("irqstack_km_trace") || c.contains("shim")),
            "{calls:#?}"
        );
        assert_eq!(
            calls.iter().filter(|c| c.contains("shim")).count(),
            1,
            "{calls:#?}"
        );
        let text: Vec<&str> = entry.iter().map(|(_, i)| i.as_str()).collect();
        let at = text
            .iter()
            .position(|i| i.starts_with("mov QWORD PTR [r11],rsp"))
            .unwrap_or_else(|| panic!("no stack swizzle through r11: {text:#?}"));
        assert_eq!(text[at + 1], "lea rsp,[r11-0x8]", "{text:#?}");
        assert!(text[at + 2].starts_with("call") && text[at + 2].contains("shim"));
        assert_eq!(text[at + 3], "mov rsp,QWORD PTR [rsp+0x8]", "{text:#?}");
    }
}
