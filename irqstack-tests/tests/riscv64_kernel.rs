//! Does it work in a riscv64 kernel? Builds `examples/riscv64_kernel` (bare metal, S-mode under
//! OpenSBI) for `riscv64gc-unknown-none-elf`, boots it under `qemu-system-riscv64 -M virt
//! -smp 2 -bios default` with a timeout and asserts its report: per hart, SBI timer ticks
//! handled by an `#[on_irqstack]` handler on that hart's IRQ stack (through
//! `tp_percpu_backend!`), the top slot holding the interrupted stack pointer, ticks nested in
//! place in the softirq, the deepest IRQ stack use, and the frame-pointer walk from the handler
//! across the switch into the interrupted idle loop, resolved against the ELF's symbols. A
//! negative boot (a softirq that clears the in-use flag) must fail in the kernel's checks, and
//! an overflow boot must fault on the (Sv39) guard page below the IRQ stack and be reported.
//!
//! Needs `qemu-system-riscv64` (with OpenSBI, Debian's `qemu-system-misc`) and the
//! `riscv64gc-unknown-none-elf` target: without them each test prints a "skipped" line and
//! passes, unless `CI=true`, `IRQSTACK_REQUIRE_TOOLS=1` or `IRQSTACK_REQUIRE_QEMU=1`, where it
//! fails.
//!
//! `cargo test -p irqstack-tests --test riscv64_kernel -- --nocapture` shows the kernel's
//! report and the boot times.

#[path = "support/qemu_kernel.rs"]
mod qemu_kernel;
#[path = "../../tests/support/skip.rs"]
mod skip;

use qemu_kernel::{Boot, repo};

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

const TARGET: &str = "riscv64gc-unknown-none-elf";
/// The SiFive test device's pass (`0x5555`) makes QEMU exit with 0; a failed check writes
/// `(1 << 16) | 0x3333`, status 1; the overflow report `(3 << 16) | 0x3333`, status 3.
const PASS_STATUS: i32 = 0;
const FAIL_STATUS: i32 = 1;
const OVERFLOW_STATUS: i32 = 3;
/// A boot takes well under a second here; the kernel gives up by itself after 5 s of ticks.
const BOOT_TIMEOUT: Duration = Duration::from_secs(30);
const HARTS: usize = 2;
const IRQ_STACK_SIZE: u64 = 16 * 1024;
const TICKS_TARGET: u64 = 200;

static BUILD: Mutex<()> = Mutex::new(());

/// Whether QEMU and the bare-metal target are here; if not, prints the skip line (and fails
/// when tools are required).
fn tools_present() -> bool {
    qemu_kernel::tools_present("qemu-system-riscv64", "qemu-system-misc", TARGET)
}

/// Builds the kernel (`features` empty for the workload) and returns the ELF's path. Frame
/// pointers for the walk; debug assertions so that every claim runs the backend's
/// `assert_irqs_disabled` hook.
fn build(variant: &str, features: &str) -> PathBuf {
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let dir = repo().join("target/riscv64-kernel").join(variant);
    let package = "examples/riscv64_kernel";
    let flags = ["-Cforce-frame-pointers=yes", "-Cdebug-assertions=yes"];
    let mut cmd = qemu_kernel::cargo(package, &["build"], TARGET, &dir, Some(&flags));
    if !features.is_empty() {
        cmd.args(["--features", features]);
    }
    qemu_kernel::run_cargo(&mut cmd, package, &format!("{variant} kernel"));
    dir.join(TARGET).join("release/irqstack-riscv64-kernel")
}

/// Boots `kernel` on `virt` with two harts and OpenSBI; returns the UART log and the exit
/// status, killing QEMU at `BOOT_TIMEOUT`.
fn boot(kernel: &Path) -> Boot {
    qemu_kernel::boot(
        Command::new("qemu-system-riscv64")
            .args(["-M", "virt", "-m", "128M", "-smp"])
            .arg(HARTS.to_string())
            .args(["-display", "none", "-serial", "stdio", "-monitor", "none"])
            .args(["-bios", "default", "-kernel"])
            .arg(kernel),
        BOOT_TIMEOUT,
    )
}

/// The value after `key` in a `key value key value ...` line (`0x` for hex).
fn field(line: &str, key: &str) -> u64 {
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        if w == key {
            let v = words.next().unwrap().trim_end_matches(',');
            return match v.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).unwrap(),
                None => v.parse().unwrap(),
            };
        }
    }
    panic!("no `{key}` in {line:?}")
}

/// A `lo-hi` hex range after `key`.
fn range(line: &str, key: &str) -> Range<u64> {
    let w: Vec<&str> = line.split_whitespace().collect();
    let i = w.iter().position(|&x| x == key).unwrap();
    let (lo, hi) = w[i + 1].split_once('-').unwrap();
    let p = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    p(lo)..p(hi)
}

/// Code symbols of the ELF, sorted by address: functions, and the typeless global labels of
/// the hand-written entry code (`_start`, `trap_entry`).
fn symbols(elf: &Path) -> Vec<qemu_kernel::Sym> {
    qemu_kernel::symbols(elf, true)
}

/// The function a return address lies in (`addr - 1`: the call is just before it; `sepc`, the
/// trap record's "return address", is an instruction after the `wfi`, inside the function too).
fn resolve(syms: &[qemu_kernel::Sym], addr: u64) -> String {
    qemu_kernel::resolve(syms, addr, true)
}

/// `a::b::c` for a legacy-mangled Rust name (`_ZN1a1b1c17h<hash>E`), without the hash; other
/// names as they are.
fn demangle(name: &str) -> String {
    let Some(mut rest) = name.strip_prefix("_ZN").and_then(|r| r.strip_suffix('E')) else {
        return name.to_owned();
    };
    let mut parts = Vec::new();
    while let Some(digits) = rest.find(|c: char| !c.is_ascii_digit()).filter(|&n| n > 0) {
        let len: usize = rest[..digits].parse().unwrap();
        let Some(part) = rest.get(digits..digits + len) else {
            return name.to_owned();
        };
        parts.push(part);
        rest = &rest[digits + len..];
    }
    if parts
        .last()
        .is_some_and(|p| p.starts_with('h') && p.len() == 17)
    {
        parts.pop();
    }
    parts.join("::")
}

/// Everything a passing workload boot must show; returns the walk of hart 0 with names.
fn assert_workload(kernel: &Path, b: &Boot) -> Vec<String> {
    let log = &b.log;
    let ctx = || b.report();
    let banner = format!("{HARTS} harts expected, scenario workload");
    qemu_kernel::assert_passed(b, PASS_STATUS, Some(&banner), "all checks passed", &ctx);
    for check in [
        "check run_on_irqstack: ok on every hart",
        "check distinct IRQ stacks: ok",
        "check walk cpu 0: ok",
        "check walk cpu 1: ok",
    ] {
        assert!(
            log.lines().any(|l| l.starts_with(check)),
            "{check}\n{}",
            ctx()
        );
    }

    // The harts and their stacks: two harts with distinct hart IDs, IRQ stacks of 16 KiB that
    // do not overlap each other or a task stack.
    let harts: Vec<&str> = log.lines().filter(|l| l.starts_with("hart: ")).collect();
    assert_eq!(harts.len(), HARTS, "{}", ctx());
    let irq: Vec<Range<u64>> = harts.iter().map(|l| range(l, "irq_stack")).collect();
    let task: Vec<Range<u64>> = harts.iter().map(|l| range(l, "task_stack")).collect();
    assert_ne!(field(harts[0], "hartid"), field(harts[1], "hartid"));
    for c in 0..HARTS {
        assert_eq!(field(harts[c], "cpu"), c as u64);
        assert_eq!(irq[c].end - irq[c].start, IRQ_STACK_SIZE, "{}", ctx());
        assert_eq!(field(harts[c], "top_slot"), irq[c].end - 16, "{}", ctx());
        let guard = range(harts[c], "guard");
        assert_eq!(guard, irq[c].start - 4096..irq[c].start, "{}", ctx());
        for d in 0..HARTS {
            let apart = |a: &Range<u64>, b: &Range<u64>| a.end <= b.start || b.end <= a.start;
            assert!(apart(&irq[c], &task[d]), "{}", ctx());
            assert!(c == d || apart(&irq[c], &irq[d]), "{}", ctx());
        }
    }

    // Per hart: ticks, every one on the IRQ stack; switched ones with the top slot checked
    // against the caller's stack pointer; nested ones in place; the deepest use.
    let stats: Vec<&str> = log.lines().filter(|l| l.starts_with("stats: ")).collect();
    assert_eq!(stats.len(), HARTS, "{}", ctx());
    for (c, l) in stats.iter().enumerate() {
        let f = |k| field(l, k);
        assert_eq!(f("cpu"), c as u64);
        assert!(f("ticks") >= TICKS_TARGET, "{l}");
        assert_eq!(f("switched") + f("nested"), f("ticks"), "{l}");
        assert!(f("switched") > 0 && f("nested") > 0, "{l}");
        assert_eq!(f("top_slot_checks"), f("switched"), "{l}");
        // Debug build: the backend's `assert_irqs_disabled` hook ran before every claim (one per
        // tick, one for the `run_on_irqstack` at the start).
        assert_eq!(f("claims"), f("ticks") + 1, "{l}");
        assert!(f("softirq") > 0 && f("waits") > 0, "{l}");
        let deepest = f("deepest");
        assert!(deepest > 0 && deepest < IRQ_STACK_SIZE / 2, "{l}");
        // The lowest handler sp lies on this hart's IRQ stack, within the painted depth.
        let min_sp = f("min_sp");
        assert!(irq[c].contains(&min_sp), "{l}\n{}", ctx());
        assert!(irq[c].end - min_sp <= deepest, "{l}");
    }

    // The walks: resolved against the ELF, from the handler's body on the IRQ stack through the
    // trampoline (whose frame record is on the task stack) into `trap_rust`, the trap entry's
    // record, the interrupted idle loop and the hart's boot path.
    let syms = symbols(kernel);
    let mut walk0 = Vec::new();
    for c in 0..HARTS {
        let frames: Vec<&str> = log
            .lines()
            .filter(|l| l.starts_with(&format!("walk: cpu {c} ")))
            .collect();
        let names: Vec<String> = frames
            .iter()
            .map(|l| resolve(&syms, field(l, "ra")))
            .collect();
        let kinds: Vec<&str> = frames
            .iter()
            .map(|l| l.split_whitespace().last().unwrap())
            .collect();
        let shown: Vec<String> = names
            .iter()
            .zip(&kinds)
            .map(|(n, k)| format!("{k} {}", demangle(n)))
            .collect();
        let expect: [&[&str]; 8] = [
            &["timer_tick", "__irqstack_body"],
            &["timer_tick", "__irqstack_trampoline"],
            &["trap_rust"],
            &["trap_entry"],
            &["idle_loop"],
            &["cpu_main"],
            &[if c == 0 {
                "kernel_main_boot"
            } else {
                "kernel_main_secondary"
            }],
            &[if c == 0 { "_start" } else { "secondary_entry" }],
        ];
        assert_eq!(
            names.len(),
            expect.len(),
            "cpu {c}'s walk: {shown:#?}\n{}",
            ctx()
        );
        for (i, parts) in expect.iter().enumerate() {
            assert!(
                parts.iter().all(|p| names[i].contains(p)),
                "cpu {c}'s walk, frame {i}: {parts:?} expected: {shown:#?}"
            );
        }
        // Frames 0 and 1 (the walker in the body, the body) on the IRQ stack; from the
        // trampoline's record on, the task stack; the frame pointers lie on the stacks named.
        assert_eq!(
            kinds,
            ["irq", "irq", "task", "task", "task", "task", "task", "task"],
            "cpu {c}'s walk: {shown:#?}"
        );
        for (l, k) in frames.iter().zip(&kinds) {
            let fp = field(l, "fp") - 16;
            let stack = if *k == "irq" { &irq[c] } else { &task[c] };
            assert!(stack.contains(&fp), "{l}\n{}", ctx());
        }
        if c == 0 {
            walk0 = shown;
        }
    }
    walk0
}

#[test]
fn two_harts_take_sbi_timer_ticks_on_their_irq_stacks_and_nest_in_the_softirq() {
    if !tools_present() {
        return;
    }
    let kernel = build("workload", "");
    let mut times = Vec::new();
    // Three boots: the nesting depends on timing; every boot must pass.
    for _ in 0..3 {
        let b = boot(&kernel);
        let walk = assert_workload(&kernel, &b);
        times.push(b.elapsed);
        if times.len() == 1 {
            eprintln!(
                "{}",
                b.log
                    .lines()
                    .filter(|l| !l.is_empty())
                    .skip_while(|l| !l.starts_with("irqstack-riscv64-kernel"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            eprintln!(
                "cpu 0's frame-pointer walk from the timer handler:\n  {}",
                walk.join("\n  ")
            );
        }
    }
    times.sort();
    eprintln!(
        "riscv64 kernel boot times (OpenSBI + {HARTS} harts x >= {TICKS_TARGET} ticks): {times:?}"
    );
    assert!(times.iter().all(|t| *t < BOOT_TIMEOUT));
}

/// Builds the kernel for `scenario` (the feature of that name) and boots it once; `None` when
/// the tools are missing (the skip line printed).
fn boot_scenario(scenario: &str) -> Option<(PathBuf, Boot)> {
    if !tools_present() {
        return None;
    }
    let kernel = build(scenario, scenario);
    let b = boot(&kernel);
    Some((kernel, b))
}

#[test]
fn a_lost_in_use_flag_fails_the_kernels_checks() {
    // The softirq clears the in-use flag: the next tick in it claims the stack again and
    // switches to its top instead of running in place. The handler finds the IRQ stack's own
    // sp in the top slot (not the task stack's) and the boot fails with status 1.
    let Some((_, b)) = boot_scenario("break-in-use") else {
        return;
    };
    let ctx = || b.report();
    assert_eq!(b.status, Some(FAIL_STATUS), "{}", ctx());
    assert!(b.log.contains("scenario break-in-use"), "{}", ctx());
    assert!(!b.log.contains("all checks passed"), "{}", ctx());
    let fail = b
        .log
        .lines()
        .find(|l| l.starts_with("FAIL cpu "))
        .unwrap_or_else(|| panic!("no FAIL line: {}", ctx()));
    assert!(
        fail.contains("is not on cpu") && fail.contains("task stack")
            || fail.contains("did not run in place"),
        "{fail}\n{}",
        ctx()
    );
    eprintln!("break-in-use boot ({:?}): {fail}", b.elapsed);
}

#[test]
fn an_irq_stack_overflow_faults_on_the_guard_page_and_is_reported() {
    // A timer handler on the last hart recurses (512-byte frames) until a store faults on the
    // unmapped guard page below its IRQ stack; the trap entry sees sp there, moves to the
    // hart's overflow stack and reports it (status 3).
    let Some((kernel, b)) = boot_scenario("overflow") else {
        return;
    };
    let ctx = || b.report();
    assert_eq!(b.status, Some(OVERFLOW_STATUS), "{}", ctx());
    assert!(b.log.contains("scenario overflow"), "{}", ctx());
    assert!(!b.log.contains("FAIL"), "{}", ctx());
    let hart = b
        .log
        .lines()
        .find(|l| l.starts_with(&format!("hart: cpu {} ", HARTS - 1)))
        .unwrap_or_else(|| panic!("{}", ctx()));
    let guard = range(hart, "guard");
    let report = b
        .log
        .lines()
        .find(|l| l.starts_with("IRQ stack overflow on cpu "))
        .unwrap_or_else(|| panic!("no overflow report: {}", ctx()));
    assert!(
        report.starts_with(&format!("IRQ stack overflow on cpu {}:", HARTS - 1)),
        "{report}"
    );
    let addr = field(report, "address");
    let sp = field(report, "sp");
    assert!(guard.contains(&addr), "{report}: {guard:#x?}");
    assert!(sp < guard.end + 160, "{report}: {guard:#x?}");
    // The faulting store is in the recursing function.
    let name = resolve(&symbols(&kernel), field(report, "sepc") + 1);
    assert!(name.contains("recurse"), "{report}: {name}");
    eprintln!("overflow boot ({:?}): {report}", b.elapsed);
}
