//! Does it work in a kernel? Builds `examples/smp_kernel` (a bare-metal SMP x86-64 kernel) for
//! `x86_64-unknown-none` with the kernel's code generation flags, boots it under
//! `qemu-system-x86_64 -smp 4` and asserts its report: every check the kernel prints, the
//! per-CPU table, the frame-pointer walk resolved against the ELF's symbol table, and the exit
//! status (isa-debug-exit: 33 pass, 35 failure, 69 the expected IRQ-stack overflow; a triple
//! fault exits with 0, which never counts as a pass).
//!
//! Every entry stub of the kernel comes from `#[idtentry]`. Besides the workload checks: a page
//! fault fixed up inside a handler, timer ticks from ring 3 (swapgs, task stack) and ring 0
//! (switched), gdb attached to QEMU's gdb stub walking from a handler into the interrupted code,
//! the entry path's instruction count next to Linux's, objtool 6.1 and 6.12 on the kernel object.
//!
//! Needs `qemu-system-x86_64` and the `x86_64-unknown-none` target (and gdb for the two gdb
//! tests, objtool for the objtool test): without them each test prints a "skipped" line and
//! passes, unless `CI=true`, `IRQSTACK_REQUIRE_TOOLS=1` or `IRQSTACK_REQUIRE_QEMU=1`, where it
//! fails.
//!
//! `cargo test -p irqstack-tests --test smp_kernel -- --nocapture --test-threads=1` shows the
//! kernel's report (a table per CPU).

#[path = "../../tests/kernel_object/mod.rs"]
mod kernel_object;
#[path = "support/qemu_kernel.rs"]
mod qemu_kernel;

use kernel_object::skip;
use qemu_kernel::{Boot, check, checks, figures, num, repo, resolve_all, table};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

const PASS_STATUS: i32 = 33;
const OVERFLOW_STATUS: i32 = 69;
/// Each boot takes about a second here; the kernel gives up by itself after 10 s of ticks.
const BOOT_TIMEOUT: Duration = Duration::from_secs(30);
const CPUS: usize = 4;

static BUILD: Mutex<()> = Mutex::new(());

/// Whether QEMU and the bare-metal target are here; if not, prints the skip line (and fails
/// when tools are required: CI, `IRQSTACK_REQUIRE_TOOLS=1` or `IRQSTACK_REQUIRE_QEMU=1`).
fn tools_present() -> bool {
    qemu_kernel::tools_present(
        "qemu-system-x86_64",
        "qemu-system-x86",
        "x86_64-unknown-none",
    )
}

/// The kernel's Rust flags: for `hardened`, the full set a hardened Linux build passes
/// (`kernel_object::KERNEL_RUSTFLAGS`, shared with the kernel-build tests); for `basic`, the
/// code generation part of it without the mitigations. `code-model=kernel` holds although the
/// kernel is linked at 1 MiB: every symbol is below 2 GiB, so the sign-extended 32-bit
/// addresses it implies fit (lld would reject any that did not).
fn rustflags(variant: &str) -> Vec<&'static str> {
    if variant.starts_with("hardened") {
        return kernel_object::KERNEL_RUSTFLAGS.to_vec();
    }
    vec![
        "-Crelocation-model=static",
        "-Ccode-model=kernel",
        "-Cno-redzone=yes",
        "-Cforce-frame-pointers=yes",
        "-Cforce-unwind-tables=no",
        "-Cjump-tables=no",
        "-Cpanic=abort",
    ]
}

/// Builds the kernel variant (`basic` or `hardened`) and returns the ELF's path.
fn build(variant: &str) -> PathBuf {
    build_to(variant, None);
    repo()
        .join("target/smp-kernel")
        .join(variant)
        .join("x86_64-unknown-none/release/irqstack-smp-kernel")
}

/// Builds the kernel variant; with `obj`, only the kernel crate's relocatable object (what
/// objtool reads), in a target directory of its own.
fn build_to(variant: &str, obj: Option<&Path>) {
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let dir = match obj {
        Some(_) => format!("{variant}-object"),
        None => variant.to_owned(),
    };
    let mut cmd = qemu_kernel::cargo(
        "examples/smp_kernel",
        &[if obj.is_some() { "rustc" } else { "build" }],
        "x86_64-unknown-none",
        &repo().join("target/smp-kernel").join(dir),
        Some(&rustflags(variant)),
    );
    if variant == "gdb-irq-above" {
        cmd.args(["--features", "irq-stacks-above"]);
    }
    if variant.starts_with("gdb") {
        // The basic kernel with debug info (DWARF, and `.debug_frame` CFI for every function,
        // the library's trampolines and entry stubs included), for gdb.
        cmd.env("CARGO_PROFILE_RELEASE_DEBUG", "full");
    }
    if variant.starts_with("hardened") {
        // As the kernel's build does: the `-Z` code generation flags with the stable compiler.
        cmd.args(["--features", "hardened"])
            .env("RUSTC_BOOTSTRAP", "1");
    }
    if variant.ends_with("-legacy-hints") {
        cmd.args(["--features", "objtool-legacy-hints"]);
    }
    if let Some(obj) = obj {
        cmd.args(["--bin", "irqstack-smp-kernel", "--"])
            .arg(format!("--emit=obj={}", obj.display()));
    }
    qemu_kernel::run_cargo(
        &mut cmd,
        "examples/smp_kernel",
        &format!("{variant} kernel"),
    );
    if let Some(obj) = obj
        && !obj.exists()
    {
        // Cargo found the unit fresh (the object of the same sources and flags was written
        // before) but the object is gone: touch the source so that rustc runs again.
        let main = repo().join("examples/smp_kernel/src/main.rs");
        let f = std::fs::File::options().append(true).open(&main).unwrap();
        f.set_modified(std::time::SystemTime::now()).unwrap();
        drop(_guard);
        build_to(variant, Some(obj));
    }
}

/// Boots `kernel` with `-smp CPUS` and `append`, returns the serial log and exit status
/// (`None` if it had to be killed at the timeout).
fn boot(kernel: &Path, append: &str) -> Boot {
    qemu_kernel::boot(
        Command::new("qemu-system-x86_64")
            .args(["-machine", "pc", "-m", "128M", "-smp"])
            .arg(CPUS.to_string())
            .args([
                "-nodefaults",
                "-display",
                "none",
                "-no-reboot",
                "-serial",
                "stdio",
            ])
            .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
            .arg("-kernel")
            .arg(kernel)
            .args(["-append", append]),
        BOOT_TIMEOUT,
    )
}

/// Code symbols of the ELF, sorted by address: (start, end, name). Functions, and the
/// `STT_NOTYPE` symbols of code in executable sections (the `#[idtentry]` stubs are typeless,
/// like Linux's `SYM_CODE_START` code).
fn symbols(elf: &Path) -> Vec<qemu_kernel::Sym> {
    qemu_kernel::symbols(elf, true)
}

/// The function a return address lies in (`addr - 1`: the call is just before it).
fn resolve(syms: &[qemu_kernel::Sym], addr: u64) -> String {
    qemu_kernel::resolve(syms, addr, true)
}

/// The checks whose figures (one per CPU) count events that every CPU must have seen.
const COUNTED_CHECKS: &[&str] = &[
    "hardirq-switched",
    "hardirq-nested",
    "softirq",
    "ipi",
    "self-ipi",
    "shapes",
    "idtentry-sysvec",
    "idtentry-hooks",
    "pf-fixup",
];

/// The checks each variant's kernel prints, in order; every one is asserted.
fn expected_checks(variant: &str) -> Vec<&'static str> {
    let mut v = vec!["cpus", "ticks"];
    v.extend(COUNTED_CHECKS);
    v.extend(["user-mode", "irq-stack-depth", "backtrace"]);
    if variant == "hardened" {
        v.push("return-thunk");
    }
    v
}

/// Everything a passing workload boot must show.
fn assert_workload(variant: &str, kernel: &Path, b: &Boot) {
    let log = &b.log;
    let ctx = || format!("{variant} kernel, status {:?}, log:\n{log}", b.status);
    let banner = format!("variant {variant}, {CPUS} CPUs expected");
    qemu_kernel::assert_passed(b, PASS_STATUS, Some(&banner), "PASS", &ctx);

    // Every check, in order, each "ok", and nothing else.
    let checks = checks(log, &expected_checks(variant), &ctx);
    let check = |name: &str| check(&checks, name);
    assert!(
        check("cpus").contains(&format!("ok {CPUS} online")),
        "{}",
        ctx()
    );
    assert!(
        check("shapes").contains(
            "(f64, f32, seven u64, 40-byte struct, &mut, i128; switched, softirq, hardirq)"
        ),
        "{}",
        ctx()
    );
    let per_cpu = |name: &str| qemu_kernel::per_cpu(&checks, name, CPUS, &ctx);
    assert!(per_cpu("ticks").iter().all(|&t| t >= 500), "{}", ctx());
    qemu_kernel::assert_all_positive(&checks, COUNTED_CHECKS, CPUS, &ctx);
    // User mode on CPU 1: at least 50 timer ticks from ring 3 (each checked in the kernel:
    // swapgs gave the handler the kernel's GS base, it ran on the task stack), none on the
    // other CPUs; ticks from ring 0 that switched to the IRQ stack on every CPU.
    let user = check("user-mode");
    let uticks = per_cpu("user-mode");
    for (cpu, &t) in uticks.iter().enumerate() {
        assert!(
            if cpu == 1 { t >= 50 } else { t == 0 },
            "ticks from ring 3: {uticks:?}\n{}",
            ctx()
        );
    }
    let kticks = figures(&user[user.find("), [").unwrap() + 3..]);
    assert!(
        kticks.len() == CPUS && kticks.iter().all(|&x| x > 0),
        "ticks from ring 0 that switched: {kticks:?}\n{}",
        ctx()
    );
    assert!(
        per_cpu("irq-stack-depth")
            .iter()
            .all(|&d| d > 0 && d < 16 * 1024),
        "{}",
        ctx()
    );

    // The table: one row per CPU; IPIs sent (all rows) = handled (all rows), self-IPIs
    // raised = handled per CPU, figures equal to the check lines'.
    let rows = table(log);
    assert_eq!(rows.len(), CPUS, "{}", ctx());
    let (mut sent, mut handled) = (0, 0);
    for (cpu, r) in rows.iter().enumerate() {
        assert_eq!(num(r[0]), cpu as u64);
        assert_eq!(num(r[1]), per_cpu("ticks")[cpu]);
        sent += num(r[2]);
        handled += num(r[3]);
        assert_eq!(num(r[3]), per_cpu("ipi")[cpu]);
        assert_eq!(num(r[4]), num(r[5]), "self-IPIs of CPU {cpu}\n{}", ctx());
        assert_eq!(num(r[6]), per_cpu("hardirq-switched")[cpu]);
        assert_eq!(num(r[7]), per_cpu("hardirq-nested")[cpu]);
        assert_eq!(num(r[10]), per_cpu("irq-stack-depth")[cpu]);
    }
    assert_eq!(sent, handled, "IPIs sent and handled\n{}", ctx());

    // The frame-pointer walk of each CPU: from the timer handler's frame (whose return address
    // is in the shim of the `#[on_irqstack]` function the `#[idtentry(sysvec)]` glue runs it
    // through) through the trampoline, the glue and the generated entry stub into the
    // interrupted idle code and the CPU's boot path.
    let syms = symbols(kernel);
    for (cpu, walk) in qemu_kernel::bt_lines(log, CPUS, &ctx) {
        let names = resolve_all(&syms, walk, true);
        let want: [&dyn Fn(&str) -> bool; 9] = [
            &|n| n.contains("on_irq_stack") && n.contains("shim"),
            &|n| n.contains("on_irq_stack") && n.contains("trampoline") && !n.contains("shim"),
            &|n| n == "__irqstack_idtentry_glue_sysvec_apic_timer_interrupt",
            &|n| n == "asm_sysvec_apic_timer_interrupt",
            &|n| n == "wait_for_interrupt",
            &|n| n == "idle_loop",
            &|n| n.contains("cpu_main"),
            &|n| {
                n == if cpu == 0 {
                    "kernel_main_bsp"
                } else {
                    "kernel_main_ap"
                }
            },
            &|n| {
                n == if cpu == 0 {
                    "long_entry_bsp"
                } else {
                    "long_entry_ap"
                }
            },
        ];
        assert_eq!(names.len(), want.len(), "CPU {cpu}: {names:#?}\n{}", ctx());
        for (n, w) in names.iter().zip(want) {
            assert!(w(n), "CPU {cpu}'s walk: {names:#?}\n{}", ctx());
        }
    }
}

fn run_workload(variant: &str) {
    if !tools_present() {
        return;
    }
    let kernel = build(variant);
    let b = boot(&kernel, "");
    eprintln!(
        "{variant} kernel: {:?} in {:.2} s\n{}",
        b.status,
        b.elapsed.as_secs_f64(),
        b.log
    );
    assert_workload(variant, &kernel, &b);
    // For the reader of `--nocapture`: CPU 0's walk with names.
    let syms = symbols(&kernel);
    if let Some(l) = b.log.lines().find(|l| l.starts_with("bt cpu 0:")) {
        eprintln!("{variant} kernel, CPU 0's frame-pointer walk from the timer handler:");
        let walk = &l["bt cpu 0:".len()..];
        for (a, name) in walk.split_whitespace().zip(resolve_all(&syms, walk, true)) {
            eprintln!("    {a}  {name}");
        }
    }
}

#[test]
fn basic_kernel_takes_interrupts_on_per_cpu_irq_stacks() {
    run_workload("basic");
}

#[test]
fn hardened_kernel_runs_the_same_workload_through_the_thunks() {
    run_workload("hardened");
}

#[test]
fn irq_stack_overflow_hits_the_guard_and_is_reported_from_the_double_fault() {
    if !tools_present() {
        return;
    }
    let kernel = build("basic");
    let b = boot(&kernel, "overflow");
    let ctx = || b.report();
    assert_eq!(b.status, Some(OVERFLOW_STATUS), "{}", ctx());
    // The last CPU's timer handler recursed; the #DF on IST1 names the CPU and the address,
    // which must lie in that CPU's guard: [IRQ region + cpu * 32 KiB, + 16 KiB).
    let cpu = CPUS - 1;
    let line = b
        .log
        .lines()
        .find(|l| l.starts_with("IRQ stack overflow on CPU "))
        .unwrap_or_else(|| panic!("no overflow report\n{}", ctx()));
    assert!(
        line.starts_with(&format!(
            "IRQ stack overflow on CPU {cpu}: fault address 0x"
        )),
        "{}",
        ctx()
    );
    let addr = u64::from_str_radix(
        line.split("fault address 0x")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap(),
        16,
    )
    .unwrap();
    let guard_lo = 0x1_0000_0000 + cpu as u64 * 0x8000;
    assert!(
        (guard_lo..guard_lo + 0x4000).contains(&addr),
        "fault address {addr:#x} not in CPU {cpu}'s guard\n{}",
        ctx()
    );
    assert!(line.contains("#DF on IST stack"), "{}", ctx());
    // The fault came from the bottom of that CPU's IRQ stack (the #PF could not push its frame
    // there), and the #DF ran elsewhere, on its IST stack.
    let field = |key: &str| {
        let v = line.split(key).nth(1).unwrap();
        let v = v.trim_start_matches("0x").split([',', ' ']).next().unwrap();
        u64::from_str_radix(v, 16).unwrap()
    };
    let stack_lo = guard_lo + 0x4000;
    let rsp = field("interrupted rsp ");
    assert!(
        (guard_lo..stack_lo + 0x1000).contains(&rsp),
        "interrupted rsp {rsp:#x} not at the bottom of CPU {cpu}'s IRQ stack\n{}",
        ctx()
    );
    let rip = field("rip ");
    let name = resolve(&symbols(&kernel), rip + 1);
    assert!(
        name.contains("recurse"),
        "the overflow happened in {name}, not in the recursion\n{}",
        ctx()
    );
    let ist_sp = field("#DF on IST stack sp ");
    assert!(
        !(guard_lo..stack_lo + 0x4000).contains(&ist_sp),
        "the #DF ran on the IRQ stack\n{}",
        ctx()
    );
    assert!(
        !b.log.contains("FAIL") && !b.log.contains("PASS"),
        "{}",
        ctx()
    );
}

/// Boots the basic kernel with `fault=<kind>` and returns the boot.
fn boot_fault(kind: &str) -> Option<(PathBuf, Boot)> {
    if !tools_present() {
        return None;
    }
    let kernel = build("basic");
    let b = boot(&kernel, &format!("fault={kind}"));
    Some((kernel, b))
}

/// The `FAIL cpu N: exception ...` report of a fault boot: (cpu, vector, rip).
fn exception_report(b: &Boot) -> (usize, u64, u64) {
    let line = b
        .log
        .lines()
        .find(|l| l.starts_with("FAIL cpu ") && l.contains(": exception "))
        .unwrap_or_else(|| panic!("no exception report, status {:?}:\n{}", b.status, b.log));
    let cpu = line["FAIL cpu ".len()..]
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let field = |key: &str| {
        let v = line
            .split(key)
            .nth(1)
            .unwrap()
            .split([',', ')', ' '])
            .next()
            .unwrap();
        if let Some(hex) = v.strip_prefix("0x") {
            u64::from_str_radix(hex, 16).unwrap()
        } else {
            v.parse().unwrap()
        }
    };
    (cpu, field("(vector "), field("at rip "))
}

#[test]
fn a_page_fault_in_a_handler_is_reported_and_fails_the_run() {
    let Some((kernel, b)) = boot_fault("pf") else {
        return;
    };
    assert_eq!(b.status, Some(35), "log:\n{}", b.log);
    let (cpu, vector, rip) = exception_report(&b);
    assert_eq!((cpu, vector), (1, 14), "log:\n{}", b.log);
    assert!(
        b.log.contains("#PF page fault") && b.log.contains("cr2 0x200000000"),
        "{}",
        b.log
    );
    // The faulting instruction is in the timer handler's body, on the IRQ stack.
    let name = resolve(&symbols(&kernel), rip + 1);
    assert!(
        name.contains("sysvec_apic_timer_interrupt"),
        "rip {rip:#x} is in {name}\n{}",
        b.log
    );
    assert!(!b.log.contains("PASS"), "{}", b.log);
}

#[test]
fn an_nmi_runs_on_its_ist_stack_and_is_reported() {
    let Some((_, b)) = boot_fault("nmi") else {
        return;
    };
    assert_eq!(b.status, Some(35), "log:\n{}", b.log);
    let (cpu, vector, _) = exception_report(&b);
    assert_eq!((cpu, vector), (2, 2), "log:\n{}", b.log);
    assert!(b.log.contains("reported on IST stack 2"), "{}", b.log);
}

#[test]
fn a_triple_fault_exits_with_status_0_which_is_not_a_pass() {
    let Some((kernel, b)) = boot_fault("triple") else {
        return;
    };
    // QEMU with -no-reboot exits with 0 on a triple fault: only status 33 is a pass.
    assert_eq!(b.status, Some(0), "log:\n{}", b.log);
    let verdict = std::panic::catch_unwind(|| assert_workload("basic", &kernel, &b));
    assert!(verdict.is_err(), "a triple fault passed as a good run");
}

/// The hardened kernel's own object (its code, the handlers, trampolines, every `#[idtentry]`
/// entry stub with its unwind hints, the boot code and thunks) passes objtool with the kernel's
/// full flag set; for objtool 6.1 the stubs carry the hint encoding of Linux before 6.4
/// (feature `objtool-legacy-hints`), as a 6.1 kernel build would.
///
/// objtool 6.12: no warning at all. objtool 6.1 cannot follow Rust code that ends in a call to a
/// panic function (it learned Rust's noreturn functions later) and reports "unexpected end of
/// section" for such a function's own `.text.*` section; that one warning is tolerated there,
/// never in `.noinstr.text` (the stubs, their glue, the backend's hooks), and any other 6.1
/// warning fails.
#[test]
fn hardened_kernel_object_passes_objtool_with_the_kernels_flags() {
    let Some(tools) = kernel_object::required_objtools() else {
        return;
    };
    if !tools_present() {
        return;
    }
    for (ver, tool) in &tools {
        let variant = if ver == "6.1" {
            "hardened-legacy-hints"
        } else {
            "hardened"
        };
        let obj = repo().join(format!("target/smp-kernel/{variant}-kernel.o"));
        build_to(variant, Some(&obj));
        assert_stubs_with_hints(&obj);
        let flags = kernel_object::kernel_objtool_flags(if ver == "6.1" { "6.1" } else { ver });
        let warnings = kernel_object::run_objtool(tool, &obj, &flags);
        let unexpected: Vec<&String> = warnings
            .iter()
            .filter(|w| {
                !(ver == "6.1"
                    && w.contains(": warning: objtool: .text.")
                    && w.ends_with(": unexpected end of section"))
            })
            .collect();
        assert!(
            unexpected.is_empty(),
            "objtool {ver} {flags:?}: {warnings:#?}"
        );
    }
}

/// The object objtool checks holds the generated stubs (every IDT entry of the kernel) and
/// their unwind hints: 224 in the device-vector table, at least two per stub (the hardware
/// frame at entry, the full frame at the call; a third before `iretq` when it returns).
fn assert_stubs_with_hints(obj: &Path) {
    use object::{Object, ObjectSection, ObjectSymbol};
    let data = std::fs::read(obj).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let stubs: Vec<String> = file
        .symbols()
        .filter_map(|s| s.name().ok().map(str::to_owned))
        .filter(|n| n.starts_with("asm_") && !n.ends_with("_vectors"))
        .collect();
    for want in [
        "asm_sysvec_apic_timer_interrupt",
        "asm_sysvec_call_function_0",
        "asm_sysvec_reschedule_ipi",
        "asm_sysvec_spurious_apic_interrupt",
        "asm_common_interrupt",
        "asm_exc_page_fault",
        "asm_exc_general_protection",
        "asm_exc_double_fault",
        "asm_exc_nmi",
        "asm_exc_divide_error",
    ] {
        assert!(
            stubs.iter().any(|s| s == want),
            "{want} not in {}: {stubs:?}",
            obj.display()
        );
    }
    assert!(
        file.symbols()
            .any(|s| s.name() == Ok("asm_common_interrupt_vectors")),
        "no device-vector table"
    );
    let hints = file
        .section_by_name(".discard.unwind_hints")
        .map_or(0, |s| s.size() / 12) as usize;
    assert!(
        hints >= 224 + 2 * stubs.len(),
        "{hints} unwind hints for {} stubs and 224 vectors",
        stubs.len()
    );
}

/// gdb, attached to QEMU's gdb stub, stops at a breakpoint that the timer handler reaches on
/// the IRQ stack (`gdb_handler_mark`, called by the handler when the tick interrupted the idle
/// `hlt`) and walks the stack from DWARF CFI alone: `bt` shows the handler, the `#[on_irqstack]`
/// trampoline, the `#[idtentry]` glue and entry stub, and the interrupted function, in that
/// order, and goes on to the CPU's boot path.
#[test]
fn gdb_walks_from_a_handler_through_trampoline_and_stub_into_the_interrupted_code() {
    gdb_walk("gdb");
}

/// The same with the IRQ stacks mapped above the task stacks: gdb used to stop at the
/// trampoline ("previous frame inner to this frame (corrupt stack?)"), since the frame it came
/// from lay higher. The trampoline's CFI now returns through the two CFI-only switch frames
/// (irqstack-rt's `switch_frames.rs`), the first a signal frame, whose order gdb does not check.
#[test]
fn gdb_walks_across_the_switch_with_the_irq_stacks_above_the_task_stacks() {
    gdb_walk("gdb-irq-above");
}

fn gdb_walk(variant: &str) {
    if !tools_present() || !qemu_kernel::gdb_present("gdb", "gdb") {
        return;
    }
    let kernel = build(variant);
    let text = run_gdb(
        &kernel,
        "break gdb_handler_mark\ncontinue\necho BT-BEGIN\\n\nbt\necho BT-END\\n\n",
    );
    let bt = qemu_kernel::gdb_bt(&text);
    eprintln!("gdb bt from the timer handler:\n{}", bt.join("\n"));
    let find = |what: &str, f: &dyn Fn(&str) -> bool| {
        bt.iter()
            .position(|l| f(l))
            .unwrap_or_else(|| panic!("no {what} frame in gdb's bt:\n{text}"))
    };
    let handler = find("handler", &|l| {
        l.contains("work::sysvec_apic_timer_interrupt (regs=")
    });
    let trampoline = find("trampoline", &|l| l.contains("__irqstack_trampoline"));
    let glue = find("glue", &|l| {
        l.contains("work::__irqstack_idtentry_glue_sysvec_apic_timer_interrupt (regs=")
    });
    let stub = find("entry stub", &|l| {
        l.contains(" in asm_sysvec_apic_timer_interrupt ()")
    });
    let interrupted = find("interrupted", &|l| l.contains(" in wait_for_interrupt ()"));
    assert!(
        handler < trampoline && trampoline < glue && glue < stub && stub + 1 == interrupted,
        "frames out of order (handler {handler}, trampoline {trampoline}, glue {glue}, stub \
         {stub}, interrupted {interrupted}):\n{text}"
    );
    // And on through the interrupted code's callers.
    assert!(
        bt[interrupted + 1..]
            .iter()
            .any(|l| l.contains("work::idle_loop")),
        "{text}"
    );
}

/// Boots the kernel under QEMU stopped at its first instruction (`-S`), with the gdb stub on a
/// free loopback port, runs `gdb -batch` on `kernel` with `commands` once connected (then
/// `kill`), and returns gdb's output. gdb runs under a 120 s timeout; QEMU is killed after.
fn run_gdb(kernel: &Path, commands: &str) -> String {
    qemu_kernel::run_gdb(
        Command::new("qemu-system-x86_64")
            .args(["-machine", "pc", "-m", "128M", "-smp"])
            .arg(CPUS.to_string())
            .args(["-nodefaults", "-display", "none", "-no-reboot"])
            .args(["-serial", "null"])
            .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
            .arg("-kernel")
            .arg(kernel)
            .args(["-append", ""]),
        "gdb",
        kernel,
        commands,
        "irqstack-kernel-gdb",
    )
}

/// Linux's own kernel-mode path for the same vector, counted by hand from its source (v6.12,
/// `arch/x86/entry/entry_64.S` and `calling.h`), with ORC (no frame pointer), IBT and SMAP on,
/// no mitigation fence taken: instructions between the CPU's delivery and its `iretq`, outside
/// the C handler and `irqentry_enter()`/`irqentry_exit()`.
const LINUX_PATH: &[(&str, u32)] = &[
    // asm_sysvec_apic_timer_interrupt (idtentry, has_error_code=0): ENDBR, ASM_CLAC, cld,
    // pushq $-1, call error_entry, movq %rax,%rsp, movq %rsp,%rdi, call sysvec_..., jmp
    // error_return.
    ("asm_sysvec_apic_timer_interrupt", 9),
    // error_entry: PUSH_REGS save_ret=1 (pushq %rsi, 2 movq, 12 pushes, pushq %rsi), CLEAR_REGS
    // (13 xorl), testb/jz, .Lerror_kernelspace (leaq, cmpq, je, movl, cmpq, je, cmpq, jne),
    // leaq 8(%rsp),%rax, RET.
    ("error_entry", 16 + 13 + 2 + 8 + 1 + 1),
    // The switch in the C wrapper (run_sysvec_on_irqstack_cond -> call_on_irqstack_cond):
    // user_mode() test and branch, hardirq_stack_inuse test and branch, set in use, load
    // hardirq_stack_ptr, argument, `mov %rsp,(%r11); mov %r11,%rsp; call; pop %rsp`, clear in
    // use: the fewest a compiler can emit for it.
    (
        "call_on_irqstack_cond (C, at best)",
        2 + 2 + 1 + 1 + 1 + 4 + 1,
    ),
    // error_return: testb/jz; restore_regs_and_return_to_kernel: POP_REGS (15), addq $8,%rsp,
    // ESPFIX64 testb/jnz, iretq.
    ("error_return .. iretq", 2 + 15 + 1 + 2 + 1),
];

/// The entry path of `#[idtentry(sysvec)]` (stub, glue, claim, trampoline, shim, release, the
/// way back, `iretq`), measured: gdb single-steps one CPU through a timer tick that interrupted
/// the idle `hlt` (kernel mode, IRQ stack free: the switching path), from the stub's first
/// instruction to its `iretq`. The handler and the backend's entry hooks (`irqentry_enter`/
/// `irqentry_exit`, `irq_enter_rcu`/`irq_exit_rcu`, which are the kernel's own work, as
/// Linux's C hooks are) run at full speed: their call or jump is counted, their body is not.
/// Printed next to Linux's count for the same vector.
#[test]
fn entry_path_instruction_count_next_to_linux() {
    if !tools_present() || !qemu_kernel::gdb_present("gdb", "gdb") {
        return;
    }
    let kernel = build("gdb");
    let syms = symbols(&kernel);
    let addr = |want: &dyn Fn(&str) -> bool| {
        syms.iter()
            .find(|(_, _, n)| want(n))
            .map(|(a, _, _)| *a)
            .unwrap_or_else(|| panic!("symbol not found in {}", kernel.display()))
    };
    let handler = addr(&|n| {
        n.contains("4work27sysvec_apic_timer_interrupt")
            || n.ends_with("work::sysvec_apic_timer_interrupt")
    });
    let hooks: Vec<u64> = [
        "irqentry_enter",
        "irqentry_exit",
        "irq_enter_rcu",
        "irq_exit_rcu",
    ]
    .iter()
    .map(|h| {
        let name = format!("_irqstack_no_backend__call_irqstack_set_backend_{h}");
        addr(&|n| n == name)
    })
    .collect();
    let skip_list = std::iter::once(handler)
        .chain(hooks)
        .map(|a| format!("{a:#x}"))
        .collect::<Vec<_>>()
        .join(", ");
    let commands = format!(
        r#"set language c
break *asm_sysvec_apic_timer_interrupt if (*(unsigned long *)$rsp - (unsigned long)&wait_for_interrupt) < 16
continue
delete
set scheduler-locking on
python
skip = set([{skip_list}])
arch = gdb.selected_frame().architecture()
path = []
while len(path) < 3000:
    pc = int(gdb.parse_and_eval("$pc"))
    if pc in skip:
        # Entered by a call or a tail jump: run it to its return address.
        ret = int(gdb.parse_and_eval("*(unsigned long *)$rsp"))
        gdb.execute("tbreak *%#x" % ret, to_string=True)
        gdb.execute("continue", to_string=True)
        continue
    if path and path[-1][0] == pc:
        # The stub reported a stop without executing (QEMU does, now and then): not counted
        # twice; nothing on this path jumps to itself.
        gdb.execute("stepi", to_string=True)
        continue
    asm = arch.disassemble(pc)[0]["asm"]
    sym = gdb.execute("info symbol %#x" % pc, to_string=True).split(" in section")[0]
    path.append((pc, sym.split(" + ")[0].strip(), asm))
    if asm.startswith("iretq"):
        break
    gdb.execute("stepi", to_string=True)
print("PATH-BEGIN")
for pc, sym, asm in path:
    print("STEP %s | %s" % (sym, asm))
print("PATH-END")
end
"#
    );
    let text = run_gdb(&kernel, &commands);
    let steps: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("STEP "))
        .map(|l| l.split_once(" | ").unwrap())
        .collect();
    assert!(text.contains("PATH-END"), "gdb did not finish:\n{text}");
    // Per function, in order of first appearance.
    let mut per: Vec<(String, u32)> = Vec::new();
    for (sym, _) in &steps {
        let short = sym
            .split("::")
            .filter(|p| !p.starts_with('h') || p.len() != 17)
            .last()
            .unwrap_or(sym);
        let short = if sym.contains("__irqstack_trampoline") {
            "trampoline (__irqstack_trampoline_reg)".to_owned()
        } else if sym.contains("__irqstack_shim") {
            "shim (__irqstack_shim_reg, calls the handler)".to_owned()
        } else {
            short.to_owned()
        };
        match per.iter_mut().find(|(n, _)| *n == short) {
            Some((_, c)) => *c += 1,
            None => per.push((short, 1)),
        }
    }
    let total = steps.len() as u32;
    let linux: u32 = LINUX_PATH.iter().map(|(_, n)| n).sum();
    eprintln!("entry path of the timer vector, kernel mode, switching to the IRQ stack:");
    eprintln!("  irqstack #[idtentry(sysvec)], measured (gdb stepi): {total} instructions");
    for (n, c) in &per {
        eprintln!("    {c:4}  {n}");
    }
    eprintln!(
        "  Linux v6.12 asm_sysvec_apic_timer_interrupt, counted from source: {linux} instructions"
    );
    for (n, c) in LINUX_PATH {
        eprintln!("    {c:4}  {n}");
    }
    let first = steps.first().map(|s| s.0).unwrap_or("");
    let last = steps.last().map(|s| s.1).unwrap_or("");
    assert!(
        first == "asm_sysvec_apic_timer_interrupt" && last.starts_with("iretq"),
        "the path does not run from the stub to its iretq:\n{text}"
    );
    for want in [
        "__irqstack_trampoline",
        "set_backend_claim",
        "set_backend_release",
        "__irqstack_idtentry_glue_sysvec_apic_timer_interrupt",
    ] {
        assert!(
            steps.iter().any(|(s, _)| s.contains(want)),
            "the path does not pass {want}:\n{text}"
        );
    }
    // Not one instruction of the user-mode branch (no swapgs on a kernel-mode tick), one iretq.
    assert!(
        !steps.iter().any(|(_, a)| a.starts_with("swapgs")),
        "{text}"
    );
    assert_eq!(
        steps.iter().filter(|(_, a)| a.starts_with("iretq")).count(),
        1
    );
    // A budget, to catch a regression of the entry path: today's figure plus a margin.
    assert!(
        total <= 2 * linux,
        "the entry path takes {total} instructions, more than twice Linux's {linux}"
    );
}
