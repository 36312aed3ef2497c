//! Kernel crates: the `%gs` per-CPU backend run for real in user space, the link error without a
//! backend, and the hardened build modes (`kernel-abi`, `rethunk`, `sls`) checked by objtool.

mod kernel_object;

use std::process::Command;
use std::sync::Mutex;

use kernel_object::{build, repo, required_objtools, run_objtool};

/// The fixtures share one target directory: one cargo at a time.
static FIXTURES: Mutex<()> = Mutex::new(());

fn cargo_fixture(name: &str, subcommand: &str, profile: &str) -> std::process::Output {
    cargo_fixture_with(name, subcommand, profile, &[])
}

fn cargo_fixture_with(
    name: &str,
    subcommand: &str,
    profile: &str,
    features: &[&str],
) -> std::process::Output {
    let _guard = FIXTURES.lock().unwrap_or_else(|e| e.into_inner());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    Command::new(cargo)
        .current_dir(repo().join("tests/fixtures").join(name))
        .args([subcommand, "--quiet", "--profile", profile])
        .arg(format!("--features={}", features.join(",")))
        .arg("--target-dir")
        .arg(repo().join("target/fixtures"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("running cargo")
}

/// Runs the gs fixture and returns its stdout after checking that it passed every check.
fn run_gs_fixture(profile: &str, features: &[&str]) -> String {
    let out = cargo_fixture_with("gs_backend", "run", profile, features);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{profile} {features:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The fixture counts its checks: 2 CPUs x 14 checks + 3 global ones. Handler calls: per
    // CPU 1 early outer call (in place) and 1 + 10 000 switched ones, each with one inner call,
    // and one alignment probe.
    assert!(
        stdout.contains("gs-backend: ok 31 checks; 40010 handler calls"),
        "{profile} {features:?}: {stdout}"
    );
    stdout
}

/// Release and debug builds: the `assert_irqs_disabled` hook runs before each claim only in
/// debug builds.
#[test]
fn gs_percpu_backend_runs_handlers_through_gs() {
    for profile in ["release", "dev"] {
        run_gs_fixture(profile, &[]);
    }
}

/// Issue 11, defect 4: `claim` on a CPU whose `hardirq_stack_ptr` is still 0 used to mark the
/// stack in use and return `None`; nothing released it, so the CPU never switched again.
#[test]
fn gs_percpu_backend_leaves_a_cpu_without_irq_stack_unmarked() {
    let out = cargo_fixture_with("gs_backend", "run", "release", &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("gs-backend: ok") && !stdout.contains("FAILED: no IRQ stack yet"),
        "{stdout}"
    );
}

/// Issue 11, defect 7: with `kernel-abi` the top slot is Linux's `top - 8`; the body must still
/// start with the 16-byte alignment rustc assumes (it used to start 8 bytes off).
#[test]
fn kernel_abi_enters_bodies_with_rusts_stack_alignment() {
    for profile in ["release", "dev"] {
        let stdout = run_gs_fixture(profile, &["kernel-abi"]);
        assert!(!stdout.contains("FAILED: body entered"), "{stdout}");
    }
}

#[test]
fn no_std_without_backend_fails_to_link_naming_set_backend() {
    let out = cargo_fixture("no_backend", "build", "release");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "linked without a backend:\n{stderr}");
    assert!(
        stderr.contains("_irqstack_no_backend__call_irqstack_set_backend_claim"),
        "{stderr}"
    );
}

/// rustc flags of a hardened kernel build. The kernel builds Rust with a stable compiler and
/// `RUSTC_BOOTSTRAP=1`; `-Zfunction-return=thunk-extern` makes compiler-generated returns go
/// through `__x86_return_thunk`, the `harden-sls-*` features put `int3` after `ret` and `jmp`.
const HARDENED: &[&str] = &[
    "-Zfunction-return=thunk-extern",
    "-C",
    "target-feature=+harden-sls-ret,+harden-sls-ijmp",
];
const HARDENED_CHECKS: &[&str] = &["--stackval", "--noinstr", "--link", "--sls", "--rethunk"];

#[test]
fn hardened_object_passes_objtool_with_zero_warnings() {
    let Some(tools) = required_objtools() else {
        return;
    };
    let obj = build("hardened", &["kernel-abi", "rethunk", "sls"], HARDENED);
    let text = std::process::Command::new("objdump")
        .args(["-dr", "--no-show-raw-insn", "-M", "intel"])
        .arg(&obj)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .expect("objdump (binutils) is needed to read the object");
    // Every trampoline (one per handler, one per closure type) returns through the thunk, with
    // a trap after it, and has no bare `ret`.
    let tramps: Vec<&str> = text
        .split("\n\n")
        .filter(|f| f.lines().next().is_some_and(|l| l.contains("trampoline")))
        .collect();
    assert!(tramps.len() >= 7, "{text}");
    for tramp in tramps {
        assert!(
            tramp.contains("__x86_return_thunk") && tramp.contains("int3"),
            "{tramp}"
        );
        assert!(
            !tramp.lines().any(|l| l.trim_end().ends_with("\tret")),
            "{tramp}"
        );
    }
    // No indirect branch anywhere in the object: every call and jump has a direct target.
    let indirect: Vec<&str> = text
        .lines()
        .filter(|l| {
            let Some((_, insn)) = l.split_once(":\t") else {
                return false;
            };
            let mut words = insn.split_whitespace();
            matches!(words.next(), Some("call" | "jmp"))
                && words
                    .next()
                    .is_some_and(|op| !op.chars().next().is_some_and(|c| c.is_ascii_hexdigit()))
        })
        .collect();
    assert!(indirect.is_empty(), "indirect branches: {indirect:#?}");
    for (ver, tool) in &tools {
        let warnings = run_objtool(tool, &obj, HARDENED_CHECKS);
        assert!(warnings.is_empty(), "objtool {ver}: {warnings:#?}");
    }
}

#[test]
fn hardening_checks_can_fail() {
    let Some(tools) = required_objtools() else {
        return;
    };
    // Without the `rethunk` and `sls` features the trampoline ends in a bare `ret` with no
    // trap after it (compiler-generated code is still hardened by the flags).
    let soft = build("hardened-plain-ret", &["kernel-abi"], HARDENED);
    // A trampoline without `push rbp; mov rbp, rsp`.
    let broken = build(
        "hardened-broken",
        &["kernel-abi", "rethunk", "sls", "broken-trampoline"],
        HARDENED,
    );
    for (ver, tool) in &tools {
        let w = run_objtool(tool, &soft, HARDENED_CHECKS);
        assert!(
            !w.is_empty()
                && w.iter()
                    .all(|l| l.contains("trampoline") && l.contains("missing int3 after ret")),
            "objtool {ver} with a plain ret: {w:#?}"
        );
        let w = run_objtool(tool, &broken, HARDENED_CHECKS);
        assert!(
            w.iter().any(|l| l.contains("irqstack_km_broken_trampoline")
                && l.contains("call without frame pointer save/setup")),
            "objtool {ver} on the broken trampoline: {w:#?}"
        );
    }
}
