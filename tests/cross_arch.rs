//! The arm64 and riscv64 ports (issue 17): the switch tests, built for
//! `aarch64-unknown-linux-gnu` and `riscv64gc-unknown-linux-gnu` and run under qemu-user through
//! the runners of `.cargo/config.toml`, must pass; the x86-64-only features must stop a build
//! for either with a message that names the supported architecture; on riscv64 the
//! instrumentation markers' records must point at their instructions.
//!
//! Needs the Rust target, the cross linker and `qemu-<arch>`; skipped with the shared line
//! where they are missing (a failure under CI, see `support/skip.rs`).

#[path = "support/cross.rs"]
mod cross;

use cross::{AARCH64, Cross, RISCV64, skip};

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

/// How long the test binaries of one `cargo test` may run under qemu (they take well under a
/// second; the build comes before, without a limit). A trampoline whose CFI is wrong makes the
/// unwinder loop forever in the backtrace and panic tests: this turns that into a failure.
const RUN_TIMEOUT_SECS: &str = "120";

impl Cross {
    /// Runs one test binary under qemu-user and checks that it passed, with at least the tests
    /// named in `must_pass` among those reported `ok`.
    fn run_under_qemu(&self, package: &str, test: &str, must_pass: &[&str]) {
        let target = self.target;
        let build = self.cargo(&["test", "--no-run", "-p", package, "--test", test], None);
        assert!(
            build.status.success(),
            "{package} --test {test} does not build for {target}\n{}",
            String::from_utf8_lossy(&build.stderr)
        );
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = self.cargo_in(
            root,
            &["test", "-p", package, "--test", test],
            Some(RUN_TIMEOUT_SECS),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{package} --test {test} on {target} failed (status {:?}; 124 = still running after \
             {RUN_TIMEOUT_SECS} s)\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            out.status.code()
        );
        // The runner really ran the binary: the results are there, not an empty run.
        assert!(
            stdout.contains("test result: ok.") && !stdout.contains("ok. 0 passed"),
            "no tests ran:\n{stdout}\n{stderr}"
        );
        for name in must_pass {
            assert!(
                stdout.contains(&format!("test {name} ... ok")),
                "{name} did not pass under qemu:\n{stdout}"
            );
        }
    }

    /// The switch tests and the argument property test pass under qemu-user.
    fn switch_and_argument_tests_pass(&self) {
        self.run_under_qemu(
            "irqstack",
            "switch",
            &[
                "top_slot_holds_the_interrupted_stack_pointer",
                "body_is_entered_with_sysv_alignment",
                "backtrace_from_the_body_reaches_the_caller",
                "panics_propagate_and_release_the_stack_1000_times",
                "noinstr_functions_with_marker_regions_run",
            ],
        );
        self.run_under_qemu(
            "irqstack-tests",
            "args",
            &["six_and_seven", "nine_floats", "ten_mixed"],
        );
    }

    /// Feature `call-padding` stops the build with the message that names x86-64.
    fn x86_only_features_are_refused(&self) {
        let out = self.cargo(
            &[
                "check",
                "--quiet",
                "-p",
                "irqstack",
                "--lib",
                "--no-default-features",
                "--features",
                "call-padding",
            ],
            None,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "call-padding built on {}", self.arch);
        assert!(
            stderr.contains("feature `call-padding` is supported on target_arch = \"x86_64\" only"),
            "{stderr}"
        );
        // What the arch does support: user space, and kernels with its ready per-CPU backend.
        let backend = match self.arch {
            "aarch64" => "tpidr_percpu_backend!",
            _ => "tp_percpu_backend!",
        };
        assert!(
            stderr.contains(&format!(
                "({} supports user space and bare-metal kernels with `{backend}`)",
                self.arch
            )),
            "{stderr}"
        );
    }

    /// `#[idtentry]` stops the build with irqstack's error, spanned at the attribute.
    fn idtentry_is_refused_with_a_spanned_error(&self) {
        // The fixture is arch-neutral; it was written for the arm64 port.
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/aarch64_idtentry");
        let out = self.cargo_in(&fixture, &["check", "--quiet", "--offline"], None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "#[idtentry] built on {}", self.arch);
        // The first error is irqstack's own, at the attribute.
        let first = stderr.find("error").map(|i| &stderr[i..]).unwrap_or("");
        assert!(
            first.starts_with(
                "error: #[idtentry] builds x86-64 interrupt entry stubs: supported on \
                 target_arch = \"x86_64\" only"
            ) && first.contains("src/lib.rs:3:1"),
            "{stderr}"
        );
    }
}

#[test]
fn switch_and_argument_tests_pass_on_aarch64_under_qemu() {
    if AARCH64.tools_present(&[]) {
        AARCH64.switch_and_argument_tests_pass();
    }
}

#[test]
fn switch_and_argument_tests_pass_on_riscv64_under_qemu() {
    if RISCV64.tools_present(&[]) {
        RISCV64.switch_and_argument_tests_pass();
    }
}

#[test]
fn x86_only_features_are_refused_on_aarch64() {
    if AARCH64.tools_present(&[]) {
        AARCH64.x86_only_features_are_refused();
    }
}

#[test]
fn x86_only_features_are_refused_on_riscv64() {
    if RISCV64.tools_present(&[]) {
        RISCV64.x86_only_features_are_refused();
    }
}

#[test]
fn idtentry_is_refused_on_aarch64_with_a_spanned_error() {
    if AARCH64.tools_present(&[]) {
        AARCH64.idtentry_is_refused_with_a_spanned_error();
    }
}

#[test]
fn idtentry_is_refused_on_riscv64_with_a_spanned_error() {
    if RISCV64.tools_present(&[]) {
        RISCV64.idtentry_is_refused_with_a_spanned_error();
    }
}

/// The text output of `riscv64-linux-gnu-<tool> <args> <object>`.
fn binutils(tool: &str, args: &[&str], object: &Path) -> String {
    let out = Command::new(format!("riscv64-linux-gnu-{tool}"))
        .args(args)
        .arg(object)
        .output()
        .unwrap_or_else(|e| panic!("running riscv64-linux-gnu-{tool}: {e}"));
    assert!(out.status.success(), "{tool} {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One symbol of an object: its section index (None when not a number: UND, ABS) and value.
struct Symbol {
    section: Option<usize>,
    value: u64,
}

/// The records of one `.discard.*` section: `(record offset, label section, label offset)` from
/// the `R_RISCV_ADD32` (label) / `R_RISCV_SUB32` (record) pair at each offset, after checking
/// that the pair computes `label - record`.
fn record_targets(
    relocs: &str,
    section: &str,
    sections: &HashMap<String, usize>,
    symbols: &HashMap<u64, Symbol>,
) -> Vec<(u64, usize, u64)> {
    let header = format!("Relocation section '.rela{section}'");
    let body = relocs
        .split("\n\n")
        .find(|b| b.trim_start().starts_with(&header))
        .unwrap_or_else(|| panic!("no relocations for {section}:\n{relocs}"));
    let own = sections[section];
    // offset -> (ADD32 symbol, SUB32 symbol)
    let mut pairs: std::collections::BTreeMap<u64, (Option<u64>, Option<u64>)> = Default::default();
    for line in body.lines().skip(2).filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let offset = u64::from_str_radix(f[0], 16).unwrap();
        let sym = u64::from_str_radix(f[1], 16).unwrap() >> 32;
        let addend = f.last().unwrap();
        assert_eq!(*addend, "0", "{section}: addend in {line}");
        let entry = pairs.entry(offset).or_default();
        match f[2] {
            "R_RISCV_ADD32" => assert!(entry.0.replace(sym).is_none(), "{line}"),
            "R_RISCV_SUB32" => assert!(entry.1.replace(sym).is_none(), "{line}"),
            other => panic!("{section}: unexpected relocation {other}: {line}"),
        }
    }
    let mut out = Vec::new();
    for (i, (&offset, &(add, sub))) in pairs.iter().enumerate() {
        assert_eq!(
            offset,
            4 * i as u64,
            "{section}: records are consecutive 32-bit words"
        );
        let (Some(add), Some(sub)) = (add, sub) else {
            panic!("{section}+{offset:#x}: not an ADD32/SUB32 pair")
        };
        // SUB32 subtracts the record's own address: `label - .`.
        let s = &symbols[&sub];
        assert_eq!(
            (s.section, s.value),
            (Some(own), offset),
            "{section}+{offset:#x}: SUB32 is not `.`"
        );
        let l = &symbols[&add];
        out.push((offset, l.section.expect("label in a section"), l.value));
    }
    out
}

/// On riscv64 the marker records (a `.discard.*` word `label - .` each) assemble to
/// `R_RISCV_ADD32`/`R_RISCV_SUB32` pairs, and every pair points at its instruction in
/// `.noinstr.text`: a begin at the trampoline's `call` (`auipc`) or at `instr_begin!`'s `nop`,
/// an end at the instruction after the call (`addi sp, s0, -16`, or `ebreak` after a body of
/// type `!`) or at `instr_end!`'s `nop`. Read from the object of tests/switch.rs (trampolines,
/// and a `#[noinstr]` function with a marker region).
#[test]
fn marker_records_on_riscv64_point_at_their_instructions() {
    if !RISCV64.tools_present(&[]) {
        return;
    }
    // The object file of tests/switch.rs, one codegen unit.
    let out = RISCV64.cargo(
        &[
            "rustc",
            "--quiet",
            "-p",
            "irqstack",
            "--test",
            "switch",
            "--",
            "--emit=obj",
            "-Ccodegen-units=1",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deps = RISCV64
        .target_dir()
        .join(format!("{}/debug/deps", RISCV64.target));
    let object = std::fs::read_dir(&deps)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("switch-") && n.ends_with(".o")
        })
        .max_by_key(|e| e.metadata().unwrap().modified().unwrap())
        .expect("the object of tests/switch.rs")
        .path();

    // Section indices -> names (code sections may share a name; indices are unique).
    let mut names = HashMap::new();
    for line in binutils("readelf", &["-SW"], &object).lines() {
        let Some(rest) = line.trim_start().strip_prefix('[') else {
            continue;
        };
        let Some((idx, rest)) = rest.split_once(']') else {
            continue;
        };
        if let (Ok(idx), Some(name)) = (idx.trim().parse::<usize>(), rest.split_whitespace().next())
        {
            names.insert(idx, name.to_owned());
        }
    }
    let index_of = |name: &str| {
        let found: Vec<usize> = names
            .iter()
            .filter(|(_, n)| *n == name)
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(found.len(), 1, "sections named {name}: {found:?}");
        found[0]
    };
    // Symbol numbers -> section and value; and the `#[noinstr]` function's section.
    let mut symbols = HashMap::new();
    let mut noinstr_fn_section = None;
    for line in binutils("readelf", &["-sW"], &object).lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let Some(num) = f.first().and_then(|n| n.strip_suffix(':')) else {
            continue;
        };
        let (Ok(num), Some(value)) = (num.parse::<u64>(), f.get(1)) else {
            continue;
        };
        let section = f.get(6).and_then(|n| n.parse::<usize>().ok());
        if f.get(7).is_some_and(|n| n.contains("14noinstr_caller")) {
            noinstr_fn_section = section;
        }
        let value = u64::from_str_radix(value, 16).unwrap();
        symbols.insert(num, Symbol { section, value });
    }
    let noinstr_text = index_of(".noinstr.text");
    assert_eq!(
        noinstr_fn_section,
        Some(noinstr_text),
        "#[noinstr] fn not in .noinstr.text"
    );
    // (section name, offset) -> instruction (mnemonic and operands), for all code.
    let mut insns = HashMap::new();
    let mut in_section = String::new();
    for line in binutils("objdump", &["-d"], &object).lines() {
        if let Some(name) = line
            .strip_prefix("Disassembly of section ")
            .and_then(|n| n.strip_suffix(':'))
        {
            in_section = name.to_owned();
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() >= 3
            && let Ok(off) = u64::from_str_radix(f[0].trim().trim_end_matches(':'), 16)
        {
            insns.insert(
                (in_section.clone(), off),
                f[2..].join(" ").trim().to_owned(),
            );
        }
    }

    let relocs = binutils("readelf", &["-rW"], &object);
    let sections: HashMap<String, usize> = names.iter().map(|(i, n)| (n.clone(), *i)).collect();
    let mut kinds = Vec::new();
    for (section, in_trampoline) in [
        (".discard.instr_begin", &["nop", "auipc ra,0x0"][..]),
        (
            ".discard.instr_end",
            // The way back begins with `mv t1, sp` in user space (tos kept for the release),
            // with `addi sp, s0, -16` in kernel builds; `ebreak` after a body of type `!`.
            &["nop", "mv t1,sp", "add sp,s0,-16", "ebreak"][..],
        ),
    ] {
        // The discard sections are unique by name.
        index_of(section);
        let records = record_targets(&relocs, section, &sections, &symbols);
        let mut seen = Vec::new();
        for (offset, label_section, label) in &records {
            let name = &names[label_section];
            let insn = insns.get(&(name.clone(), *label)).unwrap_or_else(|| {
                panic!("{section}+{offset:#x}: no instruction at {name}+{label:#x}")
            });
            // In `.noinstr.text`: trampolines and `#[noinstr]` code; elsewhere only the NOPs
            // of `run_on_irqstack`'s in-place path.
            let allowed = if *label_section == noinstr_text {
                in_trampoline
            } else {
                assert!(
                    name.starts_with(".text"),
                    "{section}+{offset:#x}: label in {name}"
                );
                &["nop"][..]
            };
            assert!(
                allowed.contains(&insn.as_str()),
                "{section}+{offset:#x}: label at `{insn}` in {name}, expected one of {allowed:?}"
            );
            seen.push(insn.clone());
        }
        kinds.push(seen);
    }
    let (begins, ends) = (&kinds[0], &kinds[1]);
    assert_eq!(begins.len(), ends.len(), "as many begins as ends");
    // Both kinds of markers are there: trampolines and the `#[noinstr]` function's region.
    assert!(begins.iter().any(|i| i == "nop"), "{begins:?}");
    assert!(begins.iter().any(|i| i.starts_with("auipc")), "{begins:?}");
    assert!(ends.iter().any(|i| i == "nop"), "{ends:?}");
    assert!(
        ends.iter().any(|i| i == "add sp,s0,-16" || i == "mv t1,sp"),
        "{ends:?}"
    );
}

/// The Valgrind client request that registers each IRQ stack (`overflow.rs`) follows Valgrind's
/// AArch64 protocol: the marker (`ror x12` by 3, 13, 51, 61, then `orr x10, x10, x10`) with the
/// request's address in `x4` and the default in `x3`, read back from `x3`. Valgrind does not run
/// under qemu-user, so the sequence is checked in the disassembly of an aarch64 binary (the
/// switch tests, which create IRQ stacks and so call the request: under qemu-user it must leave
/// `x3` alone, and they pass).
#[test]
fn valgrind_client_request_follows_the_aarch64_protocol() {
    if !AARCH64.tools_present(&[]) {
        return;
    }
    let build = AARCH64.cargo(
        &["test", "--no-run", "-p", "irqstack", "--test", "switch"],
        None,
    );
    let stderr = String::from_utf8_lossy(&build.stderr);
    assert!(build.status.success(), "{stderr}");
    // cargo names the test executable: "Executable tests/switch.rs (<path>)".
    let exe = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Executable tests/switch.rs ("))
        .and_then(|l| l.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no executable in cargo's output:\n{stderr}"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("aarch64-linux-gnu-objdump")
        .args(["-d", "-C", "--no-show-raw-insn"])
        .arg(root.join(exe))
        .output()
        .expect("running aarch64-linux-gnu-objdump (binutils-aarch64-linux-gnu)");
    assert!(out.status.success());
    let dis = String::from_utf8_lossy(&out.stdout);
    // The body of `irqstack_rt::overflow::valgrind_request`: its instructions, operands
    // normalised ("ror\tx12, x12, #3" -> "ror x12, x12, #3").
    let body: Vec<String> = dis
        .split("\n\n")
        .find(|block| {
            block
                .lines()
                .next()
                .is_some_and(|l| l.contains("<irqstack_rt::overflow::valgrind_request"))
        })
        .expect("no irqstack_rt::overflow::valgrind_request in the aarch64 binary")
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(":\t").map(|(_, i)| i.replace('\t', " ")))
        .map(|i| i.split("//").next().unwrap().trim().to_string())
        .collect();
    let marker = [
        "ror x12, x12, #3",
        "ror x12, x12, #13",
        "ror x12, x12, #51",
        "ror x12, x12, #61",
        "orr x10, x10, x10",
    ];
    let at = body
        .windows(marker.len())
        .position(|w| w.iter().zip(marker).all(|(a, b)| a == b))
        .unwrap_or_else(|| panic!("no client-request marker in valgrind_request:\n{body:#?}"));
    // Before the marker: x4 = the request's address and x3 = the default; after it, x3 is the
    // result (moved to x0 for the return, or stored first in a debug build).
    let before = &body[..at];
    assert!(
        before.iter().any(|i| i.contains(" x4,")) && before.iter().any(|i| i.contains(" x3,")),
        "x3/x4 not set before the marker:\n{body:#?}"
    );
    assert!(
        body[at + marker.len()..]
            .iter()
            .any(|i| i == "mov x0, x3" || i.starts_with("str x3,")),
        "the result is not read from x3:\n{body:#?}"
    );
}

/// On an architecture without a port (32-bit x86 here: `i686-unknown-linux-gnu`), the build
/// stops with exactly one error, which names the supported architectures: no follow-on errors
/// from the missing assembly pieces, and no warnings.
#[test]
fn an_unsupported_architecture_gets_one_error_naming_the_supported_ones() {
    const TARGET: &str = "i686-unknown-linux-gnu";
    if !skip::target_installed(TARGET) {
        skip::skip(
            &format!("the {TARGET} Rust target"),
            &format!("rustup target add {TARGET}"),
            false,
        );
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root)
        .args(["check", "--quiet", "-p", "irqstack", "--target", TARGET])
        .arg("--target-dir")
        .arg(root.join("target/cross-i686"))
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .output()
        .expect("running cargo check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the build succeeded:\n{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error") && !l.starts_with("error: could not compile"))
        .collect();
    assert_eq!(errors.len(), 1, "one error expected:\n{stderr}");
    for arch in ["\"x86_64\"", "\"aarch64\"", "\"riscv64\""] {
        assert!(errors[0].contains(arch), "{arch} not named:\n{stderr}");
    }
    assert!(
        !stderr.contains("warning"),
        "warnings besides the error:\n{stderr}"
    );
}
