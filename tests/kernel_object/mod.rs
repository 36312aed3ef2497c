//! Shared by the objtool and marker-record tests: builds `examples/kernel_module` to a relocatable
//! object with the kernel's code generation flags, finds Debian's objtool binaries, runs them.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Builds of the fixture share one target directory; one at a time.
static BUILD: Mutex<()> = Mutex::new(());

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

/// As [`build`], with extra arguments for `cargo rustc` itself (`cargo_extra`, e.g.
/// `--crate-type staticlib`) as well as for rustc (`extra`).
pub fn build_with(
    variant: &str,
    features: &[&str],
    cargo_extra: &[&str],
    extra: &[&str],
) -> PathBuf {
    build_try(variant, features, cargo_extra, extra, true)
}

fn build_try(
    variant: &str,
    features: &[&str],
    cargo_extra: &[&str],
    extra: &[&str],
    retry: bool,
) -> PathBuf {
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
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
        .args(["--target", "x86_64-unknown-linux-gnu"])
        .arg("--target-dir")
        .arg(&target_dir)
        .arg(format!("--features={}", features.join(",")))
        .args(cargo_extra)
        .arg("--")
        .arg(format!("--emit=obj={}", obj.display()))
        .args([
            "-C",
            "relocation-model=static",
            "-C",
            "code-model=kernel",
            "-C",
            "force-frame-pointers=yes",
            // A variant-specific flag also keeps cargo from reusing another variant's output.
            "--cfg",
            &format!("irqstack_variant=\"{variant}\""),
        ])
        .args(extra)
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
        drop(_guard);
        return build_try(variant, features, cargo_extra, extra, false);
    }
    assert!(obj.exists(), "cargo did not write {}", obj.display());
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
    let copy = obj.with_extension(format!(
        "{}.o",
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
    let _ = std::fs::remove_file(&copy);
    text.lines()
        .filter(|l| l.contains("warning") || l.contains("error"))
        .map(str::to_owned)
        .collect()
}
