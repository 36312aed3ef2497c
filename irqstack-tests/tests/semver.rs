//! Semver hygiene (README, "Versioning"): code that the macros generate in users' crates reaches
//! the runtime only through `irqstack::__private`, and the facade pins `irqstack-macros` and
//! `irqstack-rt` to its own exact version, so that a user never mixes versions of the three.
//!
//! This package depends on `irqstack` only: a generated path into `irqstack_rt` or
//! `irqstack_macros` would not resolve here, as in a user's crate.

use std::path::{Path, PathBuf};

/// A facade with nothing but `__private`: a handler expanded against it compiles only if its
/// generated code names nothing else of the facade.
mod only_private {
    pub use irqstack::__private;
}

/// Register form.
#[irqstack::on_irqstack(crate = only_private)]
fn reg_form(a: u64, b: &mut u64) -> u64 {
    *b += 1;
    a + *b
}

/// Block form (a by-value array and a `String`) with a result returned through memory.
#[irqstack::on_irqstack(crate = only_private)]
fn block_form(w: [u64; 8], s: String) -> (u64, String) {
    (w.iter().sum(), s + "!")
}

/// An `extern "C"` handler, as installed with `sigaction`.
#[irqstack::on_irqstack(crate = only_private)]
extern "C" fn c_abi(x: u64) -> bool {
    x == 7 && irqstack::irqstack_active()
}

#[test]
fn handlers_expand_against_private_only() {
    let mut b = 1;
    assert_eq!(reg_form(40, &mut b), 42);
    assert_eq!(block_form([1; 8], "x".into()), (8, "x!".into()));
    assert!(c_abi(7));
    assert!(!irqstack::irqstack_active());
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `version = "..."` of a manifest's `[package]`.
fn package_version(manifest: &Path) -> String {
    let text = std::fs::read_to_string(manifest).unwrap();
    let package = text.split("\n[").next().unwrap();
    package
        .lines()
        .find_map(|l| l.strip_prefix("version = "))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .unwrap_or_else(|| panic!("no version in {}", manifest.display()))
}

/// The version requirement of dependency `name` in the facade's `[dependencies]`.
fn facade_requirement(name: &str) -> String {
    let text = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let deps = text
        .split("\n[dependencies]\n")
        .nth(1)
        .expect("[dependencies] in Cargo.toml");
    let deps = deps.split("\n[").next().unwrap();
    let line = deps
        .lines()
        .find(|l| l.starts_with(&format!("{name} = ")))
        .unwrap_or_else(|| panic!("{name} not among the facade's dependencies"));
    let after = line.split("version = \"").nth(1).expect("a version");
    after.split('"').next().unwrap().to_owned()
}

#[test]
fn facade_pins_the_inner_crates_to_its_own_version() {
    let facade = package_version(&root().join("Cargo.toml"));
    for inner in ["irqstack-macros", "irqstack-rt"] {
        let version = package_version(&root().join(inner).join("Cargo.toml"));
        assert_eq!(version, facade, "{inner} is released with the facade");
        assert_eq!(facade_requirement(inner), format!("={version}"), "{inner}");
    }
}
