//! The README's quick start promises a fast first build of the demo: `cargo run --example
//! irq_demo` builds every dev-dependency of this package, so those must stay few. Heavy ones
//! belong in `benches/` (package `irqstack-bench`) or `irqstack-tests/`.

use std::collections::BTreeSet;
use std::process::Command;

/// The packages `cargo run --example irq_demo` builds: this package's normal, build and dev
/// dependencies, transitively (dev-dependencies of dependencies are never built).
fn demo_packages() -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "tree",
            "--quiet",
            "-p",
            "irqstack",
            "--edges",
            "normal,build,dev",
        ])
        .args(["--prefix", "none", "--format", "{p}"])
        .output()
        .expect("running cargo tree");
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_demo_builds_only_a_few_crates() {
    let packages = demo_packages();
    for own in ["irqstack", "irqstack-macros", "irqstack-rt"] {
        assert!(packages.contains(own), "{own} missing from {packages:?}");
    }
    for heavy in [
        "criterion",
        "proptest",
        "trybuild",
        "object",
        "psm",
        "stacker",
        "corosensei",
    ] {
        assert!(
            !packages.contains(heavy),
            "{heavy} is built with the demo: move it to benches/ or irqstack-tests/ ({packages:?})"
        );
    }
    // 3 own crates and 8 dependencies today (README, quick start); a little room for change.
    assert!(
        packages.len() <= 14,
        "{} packages: {packages:?}",
        packages.len()
    );
}
