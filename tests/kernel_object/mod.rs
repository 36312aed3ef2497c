//! Shared by the objtool and marker-record tests: builds `examples/kernel_module` to a relocatable
//! object, either with the light kernel flags for the host target or exactly as a hardened
//! x86-64 Linux build compiles Rust (target `x86_64-unknown-none`, [`KERNEL_RUSTFLAGS`]); finds
//! Debian's objtool binaries and runs them, with the kernel's own flag set ([`kernel_objtool_flags`])
//! where asked.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Builds of the fixture share one target directory; one at a time. The objects built so far
/// by this test binary, by variant.
static BUILD: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());

/// The repository root (this module is also compiled into `irqstack-tests`, one level down).
pub fn repo() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .find(|d| d.join("examples/kernel_module").is_dir())
        .unwrap_or(manifest)
        .to_path_buf()
}

/// Builds `examples/kernel_module` with `features` and `extra` rustc flags into an object file
/// named after `variant`, and returns its path.
pub fn build(variant: &str, features: &[&str], extra: &[&str]) -> PathBuf {
    build_with(variant, features, &[], extra)
}

/// The Rust flags of a real x86-64 kernel build (`arch/x86/Makefile`, the top-level `Makefile`
/// and `scripts/Makefile.build` of Linux, with every hardening option on: RETHUNK, SLS, IBT,
/// CALL_PADDING, RETPOLINE), given on top of target `x86_64-unknown-none` (soft-float, as the
/// kernel's generated target). The `-Z` flags reach the stable compiler through
/// `RUSTC_BOOTSTRAP=1`, as in the kernel.
pub const KERNEL_RUSTFLAGS: &[&str] = &[
    "-C",
    "relocation-model=static",
    "-C",
    "code-model=kernel",
    "-C",
    "no-redzone=yes",
    "-C",
    "force-frame-pointers=yes",
    "-C",
    "force-unwind-tables=no",
    "-C",
    "jump-tables=no",
    "-C",
    "panic=abort",
    "-Zfunction-return=thunk-extern",
    "-Zcf-protection=branch",
    "-Zpatchable-function-entry=16,16",
    "-C",
    "target-feature=+retpoline-external-thunk,+retpoline-indirect-branches,\
     +retpoline-indirect-calls,+harden-sls-ijmp,+harden-sls-ret",
];

/// The irqstack features that match [`KERNEL_RUSTFLAGS`].
pub const KERNEL_FEATURES: &[&str] = &["kernel-abi", "rethunk", "sls", "call-padding", "ibt"];

/// The bare-metal target of the kernel builds.
pub const KERNEL_TARGET: &str = "x86_64-unknown-none";

/// The objtool flags a kernel build passes for `vmlinux.o` (`scripts/Makefile.lib`,
/// `scripts/Makefile.vmlinux_o`) with the options of [`KERNEL_RUSTFLAGS`]; objtool 6.12 also
/// gets `--hacks=skylake` (call depth tracking) and `--prefix=16` (CALL_PADDING), which 6.1
/// does not know.
pub fn kernel_objtool_flags(version: &str) -> Vec<&'static str> {
    let mut flags = vec![
        "--hacks=jump_label",
        "--hacks=noinstr",
        "--ibt",
        "--orc",
        "--retpoline",
        "--rethunk",
        "--sls",
        "--static-call",
        "--uaccess",
        "--link",
        "--noinstr",
    ];
    if version != "6.1" {
        flags.extend(["--hacks=skylake", "--prefix=16"]);
    }
    flags
}

/// The kernel-flag object that objtool `version` reads: unwind hints in its encoding (Linux
/// renumbered them in 6.4; feature `objtool-legacy-hints` before that). `negative` adds the
/// deliberately unmarked call.
pub fn build_kernel_for(version: &str, negative: bool) -> PathBuf {
    let legacy = version == "6.1";
    let mut features = Vec::new();
    if legacy {
        features.push("objtool-legacy-hints");
    }
    if negative {
        features.push("negative");
    }
    let variant = format!(
        "kernel-{}{}",
        if negative { "negative" } else { "clean" },
        if legacy { "-legacy-hints" } else { "" }
    );
    build_kernel(&variant, &features, &[])
}

/// Builds `examples/kernel_module` with `features` (plus [`KERNEL_FEATURES`]) for
/// [`KERNEL_TARGET`] with [`KERNEL_RUSTFLAGS`] and `extra`, into an object named after `variant`.
pub fn build_kernel(variant: &str, features: &[&str], extra: &[&str]) -> PathBuf {
    let mut all: Vec<&str> = KERNEL_FEATURES.to_vec();
    all.extend_from_slice(features);
    let mut flags: Vec<&str> = KERNEL_RUSTFLAGS.to_vec();
    flags.extend_from_slice(extra);
    build_for(KERNEL_TARGET, variant, &all, &[], &flags, true)
}

/// Whether the standard library of `target` is installed (`rustup target add`). When it is
/// not: says so loudly and returns false, or fails under `CI=true` /
/// `IRQSTACK_REQUIRE_OBJTOOL=1`.
pub fn required_target(target: &str) -> bool {
    if skip::target_installed(target) {
        return true;
    }
    skip::skip(
        &format!("target {target}"),
        &format!("rustup target add {target}"),
        std::env::var("IRQSTACK_REQUIRE_OBJTOOL").is_ok_and(|v| v == "1"),
    );
    false
}

/// As [`build`], with extra arguments for `cargo rustc` itself (`cargo_extra`, e.g.
/// `--crate-type staticlib`) as well as for rustc (`extra`).
pub fn build_with(
    variant: &str,
    features: &[&str],
    cargo_extra: &[&str],
    extra: &[&str],
) -> PathBuf {
    let mut flags: Vec<&str> = vec![
        "-C",
        "relocation-model=static",
        "-C",
        "code-model=kernel",
        "-C",
        "force-frame-pointers=yes",
    ];
    flags.extend_from_slice(extra);
    build_for(
        "x86_64-unknown-linux-gnu",
        variant,
        features,
        cargo_extra,
        &flags,
        true,
    )
}

fn build_for(
    target: &str,
    variant: &str,
    features: &[&str],
    cargo_extra: &[&str],
    flags: &[&str],
    retry: bool,
) -> PathBuf {
    let mut built = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    // Tests of one binary run in parallel and may ask for the same variant: build it once, and
    // never remove an object another test may be reading.
    if let Some(path) = built.get(variant) {
        return path.clone();
    }
    let target_dir = repo().join("target").join("kernel-module");
    let out_dir = target_dir.join("objects");
    std::fs::create_dir_all(&out_dir).unwrap();
    let obj = out_dir.join(format!("{variant}.o"));
    let _ = std::fs::remove_file(&obj);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(repo().join("examples/kernel_module"))
        .args(["rustc", "--quiet", "--release", "--lib"])
        // An explicit target keeps these flags away from the proc macros built for the host.
        .args(["--target", target])
        .arg("--target-dir")
        .arg(&target_dir)
        .arg(format!("--features={}", features.join(",")))
        .args(cargo_extra)
        .arg("--")
        .arg(format!("--emit=obj={}", obj.display()))
        .args(flags)
        // A variant-specific flag also keeps cargo from reusing another variant's output.
        .args(["--cfg", &format!("irqstack_variant=\"{variant}\"")])
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        // As the kernel does: unstable `-Z` code generation flags (the hardened variants) with
        // the stable compiler. Set for every variant so that they share their dependencies.
        .env("RUSTC_BOOTSTRAP", "1");
    let out = cmd
        .output()
        .expect("running cargo for examples/kernel_module");
    assert!(
        out.status.success(),
        "building the kernel-module example failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if !obj.exists() && retry {
        // Cargo considered the unit fresh but the object was removed above: touch the source
        // so that it runs rustc again.
        let lib = repo().join("examples/kernel_module/src/lib.rs");
        let f = std::fs::File::options().append(true).open(&lib).unwrap();
        f.set_modified(std::time::SystemTime::now()).unwrap();
        drop(built);
        return build_for(target, variant, features, cargo_extra, flags, false);
    }
    assert!(obj.exists(), "cargo did not write {}", obj.display());
    built.insert(variant.to_owned(), obj.clone());
    obj
}

/// Debian's objtool binaries found on this machine, as (kbuild version, path).
pub fn objtools() -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/usr/lib") {
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(ver) = name.strip_prefix("linux-kbuild-") {
                let bin = entry.path().join("tools/objtool/objtool");
                if bin.exists() {
                    found.push((ver.to_string(), bin));
                }
            }
        }
    }
    found.sort();
    found
}

/// The "skipped" line and its CI rule, shared by every test that needs a tool.
#[path = "../support/skip.rs"]
pub mod skip;

/// The objtool binaries the tests need (6.1 and a 6.12), or `None` after a "skipped" line
/// ([`skip::skip`]). Fails instead under CI or with `IRQSTACK_REQUIRE_OBJTOOL=1`.
pub fn required_objtools() -> Option<Vec<(String, PathBuf)>> {
    let tools = objtools();
    let has = |p: &str| {
        tools
            .iter()
            .any(|(v, _)| v == p || v.starts_with(&format!("{p}.")))
    };
    if has("6.1") && has("6.12") {
        return Some(tools);
    }
    let what = format!("objtool 6.1 and 6.12 (found: {tools:?})");
    let install = "apt-get install linux-kbuild-6.1 $(apt-cache search --names-only \
                   '^linux-kbuild-6\\.12' | cut -d' ' -f1 | sort -V | tail -n 1)";
    let required = std::env::var("IRQSTACK_REQUIRE_OBJTOOL").is_ok_and(|v| v == "1");
    skip::skip(&what, install, required);
    None
}

/// Runs objtool with `args` on a copy of `obj` (objtool rewrites its input) and returns its
/// warning lines.
pub fn run_objtool(tool: &Path, obj: &Path, args: &[&str]) -> Vec<String> {
    let (warnings, copy) = objtool_on_copy(tool, obj, args);
    let _ = std::fs::remove_file(&copy);
    warnings
}

/// Runs objtool with `args` on a copy of `obj`, asserts that it warned about nothing, and
/// returns the path of the rewritten copy (with the sections objtool added: ORC, prefix
/// symbols); the caller removes it.
pub fn run_objtool_keep(tool: &Path, obj: &Path, args: &[&str]) -> PathBuf {
    let (warnings, copy) = objtool_on_copy(tool, obj, args);
    assert!(warnings.is_empty(), "objtool {args:?}: {warnings:#?}");
    copy
}

fn objtool_on_copy(tool: &Path, obj: &Path, args: &[&str]) -> (Vec<String>, PathBuf) {
    // A copy of its own per run: tests of one binary run objtool on the same object at once.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let copy = obj.with_extension(format!(
        "{run}.{}.o",
        tool.parent()
            .and_then(|p| p.parent())
            .and_then(|p| p.parent())
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    std::fs::copy(obj, &copy).unwrap();
    let out = Command::new(tool)
        .env("SRCARCH", "x86")
        .args(args)
        .arg(&copy)
        .output()
        .expect("running objtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let warnings = text
        .lines()
        .filter(|l| l.contains("warning") || l.contains("error"))
        .map(str::to_owned)
        .collect();
    (warnings, copy)
}

/// The functions (and other symbols with code) of `obj`, by name: (address, instruction) of each
/// instruction, Intel syntax, a relocation's target appended to its instruction as ` -> target`.
pub fn disassemble(obj: &Path) -> BTreeMap<String, Vec<(u64, String)>> {
    let out = Command::new("objdump")
        .args(["-dr", "--no-show-raw-insn", "-M", "intel"])
        .arg(obj)
        .output()
        .expect("objdump (binutils) is needed to read the object");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut funcs: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some((_, name)) = line.strip_suffix(">:").and_then(|l| l.split_once(" <")) {
            current = Some(name.to_owned());
            funcs.entry(name.to_owned()).or_default();
            continue;
        }
        let Some(name) = &current else { continue };
        let Some((addr, rest)) = line.trim_start().split_once(':') else {
            continue;
        };
        let Ok(addr) = u64::from_str_radix(addr, 16) else {
            continue;
        };
        let rest = rest.trim();
        let insns = funcs.get_mut(name).unwrap();
        if let Some(reloc) = rest.strip_prefix("R_X86_64_") {
            let target = reloc.split_whitespace().nth(1).unwrap_or("");
            if let Some(last) = insns.last_mut() {
                last.1.push_str(" -> ");
                last.1.push_str(target);
            }
        } else if !rest.is_empty() {
            insns.push((addr, rest.split_whitespace().collect::<Vec<_>>().join(" ")));
        }
    }
    funcs
}
