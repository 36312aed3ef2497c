//! The switch itself: where the body runs, what it sees, what it returns, nesting, panics,
//! threads. Each test fails if the behaviour it names breaks.

use std::arch::asm;
use std::panic;

use irqstack::{interrupted_sp, irq_stack_bounds, irqstack_active, on_irqstack, run_on_irqstack};

/// Address of a local of the calling frame: a point inside the current stack frame.
#[inline(always)]
fn here() -> usize {
    let x = 0u8;
    std::hint::black_box(&x) as *const u8 as usize
}

#[inline(always)]
fn rsp() -> usize {
    let sp: usize;
    // SAFETY: copies rsp into a register.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    // SAFETY: copies sp into a register.
    #[cfg(target_arch = "aarch64")]
    unsafe {
        asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    // SAFETY: copies sp into a register.
    #[cfg(target_arch = "riscv64")]
    unsafe {
        asm!("mv {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    sp
}

#[on_irqstack]
fn where_am_i() -> (usize, Option<usize>, bool) {
    (here(), interrupted_sp(), irqstack_active())
}

#[test]
fn body_runs_inside_the_irq_stack_and_caller_does_not() {
    let (inside, saved, active) = where_am_i();
    let bounds = irq_stack_bounds().expect("the IRQ stack exists after a handler ran");
    assert!(bounds.contains(&inside), "{inside:#x} not in {bounds:x?}");
    assert!(
        !bounds.contains(&here()),
        "the caller runs on the IRQ stack"
    );
    assert!(!bounds.contains(&rsp()));
    assert!(active);
    assert!(!irqstack_active());
    assert_eq!(
        interrupted_sp(),
        None,
        "no interrupted sp outside a handler"
    );
    // The saved stack pointer is on the caller's own stack, just below its frame.
    let saved = saved.expect("interrupted_sp inside a switched handler");
    let me = here();
    assert!(
        saved < me && me - saved < 4096,
        "saved {saved:#x}, caller frame {me:#x}"
    );
}

#[on_irqstack]
fn saved_sp(_x: u64) -> usize {
    interrupted_sp().unwrap_or(0)
}

/// The top slot holds exactly the stack pointer of the trampoline at its first instruction: the
/// caller's rsp at the call minus the return address (x86-64 user space keeps no frame record:
/// 8 bytes below the caller's rsp). AArch64: after its `stp x29, x30`, RISC-V: after its
/// `addi sp, sp, -16` for ra and s0, 16 bytes below the caller's sp.
#[inline(never)]
fn caller_sp_and_saved() -> (usize, usize) {
    let before = rsp();
    let saved = saved_sp(std::hint::black_box(7));
    (before, saved)
}

#[test]
fn top_slot_holds_the_interrupted_stack_pointer() {
    // A thread's first use creates the IRQ stack in the wrapper's cold first-use function, which
    // then switches from its own frame, a little below the caller's (libtest may run this on a
    // thread that used its stack before: then this call is an ordinary one).
    let (before, saved) = caller_sp_and_saved();
    assert!(
        saved < before && before - saved < 4096,
        "first use: rsp {before:#x}, saved {saved:#x}"
    );
    // Every later call switches from the wrapper itself, inlined into the caller.
    let (before, saved) = caller_sp_and_saved();
    let below = if cfg!(target_arch = "x86_64") { 8 } else { 16 };
    assert_eq!(before - saved, below, "rsp {before:#x}, saved {saved:#x}");
}

/// Returns `rsp % 16` at its own entry. Called from a body, it sees the body's call-site
/// alignment minus the return address: 8 if the body was entered with SysV alignment
/// (rsp % 16 == 8 at entry, so every call site in it is 16-byte aligned), 0 if the switch
/// misaligned the IRQ stack.
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
extern "sysv64" fn entry_alignment() -> usize {
    core::arch::naked_asm!(
        // rax = rsp % 16 at entry: rsp is not changed, nothing is stored.
        "mov rax, rsp",
        "and rax, 15",
        "ret",
    )
}

/// AArch64: returns `sp % 16` at its own entry; AAPCS64 wants 0 everywhere (`bl` pushes
/// nothing), so anything else means the switch misaligned the IRQ stack.
#[cfg(target_arch = "aarch64")]
#[unsafe(naked)]
extern "C" fn entry_alignment() -> usize {
    core::arch::naked_asm!(
        // x0 = sp (sp cannot be an operand of `and`): nothing is stored, sp is not changed.
        "mov x0, sp",
        // x0 = sp % 16.
        "and x0, x0, #15",
        // Return to x30.
        "ret",
    )
}

/// RISC-V: returns `sp % 16` at its own entry; the psABI wants 0 everywhere (`call` pushes
/// nothing), so anything else means the switch misaligned the IRQ stack.
#[cfg(target_arch = "riscv64")]
#[unsafe(naked)]
extern "C" fn entry_alignment() -> usize {
    core::arch::naked_asm!(
        // a0 = sp % 16 (`andi` reads sp like any register): nothing is stored, sp is not
        // changed.
        "andi a0, sp, 15",
        // Return to ra.
        "ret",
    )
}

/// What [`entry_alignment`] returns in a correctly aligned function (see above).
#[cfg(target_arch = "x86_64")]
const ABI_ALIGNMENT: usize = 8;
#[cfg(any(target_arch = "aarch64", target_arch = "riscv64"))]
const ABI_ALIGNMENT: usize = 0;

#[on_irqstack]
fn alignment_in_body() -> (usize, bool) {
    (entry_alignment(), irqstack_active())
}

#[on_irqstack]
fn alignment_six(a: u64, b: u64, c: u64, d: u64, e: u64, f: u64) -> usize {
    std::hint::black_box(a ^ b ^ c ^ d ^ e ^ f);
    entry_alignment()
}

#[derive(Clone, Copy)]
struct Forty([u64; 5]);

#[on_irqstack]
fn alignment_block(s: Forty) -> (usize, u64) {
    (entry_alignment(), s.0[4])
}

#[test]
fn body_is_entered_with_sysv_alignment() {
    const A: usize = ABI_ALIGNMENT;
    assert_eq!(entry_alignment(), A, "the probe itself");
    assert_eq!(alignment_in_body(), (A, true));
    assert_eq!(alignment_six(1, 2, 3, 4, 5, 6), A);
    assert_eq!(alignment_block(Forty([1, 2, 3, 4, 5])), (A, 5));
    assert_eq!(
        run_on_irqstack(|| (entry_alignment(), irqstack_active())),
        (A, true)
    );
}

/// What a handler sees: a stack address, the saved link, whether it is on the IRQ stack.
type Seen = (usize, Option<usize>, bool);

#[on_irqstack]
fn inner() -> Seen {
    (here(), interrupted_sp(), irqstack_active())
}

#[on_irqstack]
fn outer() -> (Seen, Seen) {
    let me = (here(), interrupted_sp(), irqstack_active());
    (me, inner())
}

#[test]
fn nested_handler_runs_in_place() {
    let ((o_sp, o_saved, o_active), (i_sp, i_saved, i_active)) = outer();
    let bounds = irq_stack_bounds().unwrap();
    assert!(o_active && i_active);
    assert!(bounds.contains(&o_sp) && bounds.contains(&i_sp));
    // In place: the inner frame is at or below the outer one (the same frame when the optimizer
    // inlines the inner body), not back at the top of the stack.
    assert!(i_sp <= o_sp, "inner {i_sp:#x} outer {o_sp:#x}");
    // No second switch: the top slot still holds the link to the caller's stack saved by the
    // outer switch (a second switch would have stored an IRQ-stack address there).
    assert_eq!(i_saved, o_saved);
    assert!(!bounds.contains(&i_saved.unwrap()));
    assert!(!irqstack_active());
    // After the nest, a call switches again (the in-use state was released).
    assert!(irq_stack_bounds().unwrap().contains(&where_am_i().0));
}

#[test]
fn closure_form_switches_and_nests() {
    let v = [1u64, 2, 3];
    let (sum, sp, active, nested) = run_on_irqstack(|| {
        let nested = run_on_irqstack(|| (here(), irqstack_active()));
        (v.iter().sum::<u64>(), here(), irqstack_active(), nested)
    });
    let bounds = irq_stack_bounds().unwrap();
    assert_eq!(sum, 6);
    assert!(active && nested.1);
    assert!(bounds.contains(&sp) && bounds.contains(&nested.0) && nested.0 <= sp);
    assert!(!irqstack_active());
}

#[on_irqstack]
fn capture() -> String {
    std::backtrace::Backtrace::force_capture().to_string()
}

#[inline(never)]
fn distinctive_caller_for_backtrace() -> String {
    let bt = capture();
    std::hint::black_box(bt)
}

#[test]
fn backtrace_from_the_body_reaches_the_caller() {
    let bt = distinctive_caller_for_backtrace();
    let body = bt.find("capture::__irqstack_body").expect(&bt);
    let tramp = bt.find("__irqstack_trampoline").expect(&bt);
    let caller = bt.find("distinctive_caller_for_backtrace").expect(&bt);
    assert!(body < tramp && tramp < caller, "{bt}");
    // And past the caller to the root of the test thread, on the original stack: glibc's
    // `start_thread`; under qemu-user (aarch64) glibc's symbols are not resolved, so the
    // outermost named frame is std's `thread_start`.
    #[cfg(target_arch = "x86_64")]
    let root = "start_thread";
    #[cfg(not(target_arch = "x86_64"))]
    let root = "thread_start";
    assert!(bt[caller..].contains(root), "{bt}");
}

#[on_irqstack]
fn panicking(n: u64) -> u64 {
    if n.is_multiple_of(2) {
        panic!("handler panic {n}");
    }
    n
}

#[test]
fn panics_propagate_and_release_the_stack_1000_times() {
    let hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let mut caught = 0;
    for n in 0..2000u64 {
        match panic::catch_unwind(|| panicking(n)) {
            Ok(v) => assert_eq!(v, n),
            Err(p) => {
                caught += 1;
                assert_eq!(
                    p.downcast_ref::<String>().unwrap(),
                    &format!("handler panic {n}")
                );
            }
        }
        assert!(!irqstack_active());
        // The next call switches again: the in-use state was restored by the unwind.
        let (sp, saved, _) = where_am_i();
        assert!(irq_stack_bounds().unwrap().contains(&sp), "iteration {n}");
        assert!(saved.is_some());
    }
    panic::set_hook(hook);
    assert_eq!(caught, 1000);
}

#[test]
fn panics_in_the_closure_form_propagate() {
    let r = panic::catch_unwind(|| run_on_irqstack(|| -> u32 { panic!("closure") }));
    assert!(r.is_err());
    assert!(run_on_irqstack(irqstack_active));
}

fn mapped(range: &std::ops::Range<usize>) -> bool {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines().any(|l| {
        let (lo, hi) = l.split_once(' ').unwrap().0.split_once('-').unwrap();
        let (lo, hi) = (
            usize::from_str_radix(lo, 16).unwrap(),
            usize::from_str_radix(hi, 16).unwrap(),
        );
        lo < range.end && range.start < hi
    })
}

#[test]
fn threads_get_their_own_stacks_unmapped_at_exit() {
    let both_alive = std::sync::Arc::new(std::sync::Barrier::new(2));
    let spawn_pair = |barrier: std::sync::Arc<std::sync::Barrier>| {
        std::thread::spawn(move || {
            let (sp, _, _) = where_am_i();
            let b = irq_stack_bounds().unwrap();
            assert!(b.contains(&sp));
            // Both threads hold their stacks at the same time here.
            barrier.wait();
            b
        })
    };
    let spawn = || spawn_pair(std::sync::Arc::new(std::sync::Barrier::new(1)));
    let (a, b) = (spawn_pair(both_alive.clone()), spawn_pair(both_alive));
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    assert!(
        a.end <= b.start || b.end <= a.start,
        "{a:x?} overlaps {b:x?}"
    );
    // Both threads have exited: their stacks (and guard pages) are gone. Another test of this
    // binary may map something at the same address meanwhile, so before calling it a leak,
    // retry with a fresh thread and check its stack alone.
    let leaked = |r: &std::ops::Range<usize>| mapped(&(r.start - 4096..r.end));
    if leaked(&a) || leaked(&b) {
        let again = spawn().join().unwrap();
        assert!(
            !leaked(&again),
            "IRQ stack {again:x?} still mapped after its thread exited"
        );
    }
    // The calling thread's own stack stays mapped while the thread lives.
    where_am_i();
    assert!(mapped(&irq_stack_bounds().unwrap()));
}

#[test]
fn stack_size_is_configurable() {
    let default = std::thread::spawn(|| irqstack::prepare_irq_stack().unwrap())
        .join()
        .unwrap();
    assert_eq!(default.len(), irqstack::DEFAULT_IRQ_STACK_SIZE);
    irqstack::set_irq_stack_size(200 * 1024 + 1);
    let bigger = std::thread::spawn(|| irqstack::prepare_irq_stack().unwrap())
        .join()
        .unwrap();
    irqstack::set_irq_stack_size(1);
    let smallest = std::thread::spawn(|| irqstack::prepare_irq_stack().unwrap())
        .join()
        .unwrap();
    irqstack::set_irq_stack_size(irqstack::DEFAULT_IRQ_STACK_SIZE);
    // Rounded up to whole pages; never below the kernel's 16 KiB.
    assert_eq!(bigger.len(), 204 * 1024);
    assert_eq!(smallest.len(), irqstack::MIN_IRQ_STACK_SIZE);
}

#[test]
fn guard_page_sits_below_the_stack() {
    let r = irqstack::prepare_irq_stack().unwrap();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let guard = maps.lines().find(|l| {
        let lo_hi = l.split_once(' ').unwrap().0;
        lo_hi.ends_with(&format!("-{:x}", r.start))
    });
    let guard = guard.unwrap_or_else(|| panic!("no mapping ends at {:#x}:\n{maps}", r.start));
    assert!(
        guard.contains(" ---p "),
        "guard page is accessible: {guard}"
    );
}

/// A pointer to a tuple whose last field is unsized is fat (two registers): the expansion must
/// not take it for a thin one (the trampoline would read `tos` from the register holding the
/// length). Found in review; crashed in the trampoline before the fix.
#[on_irqstack]
fn fat_tuple_len(p: *const (u8, [u8])) -> usize {
    assert!(irqstack_active());
    // SAFETY: the caller passes a valid pointer.
    let tail: &[u8] = unsafe { &(*p).1 };
    tail.len()
}

#[test]
fn pointers_to_unsized_tuples_are_passed_whole() {
    let bytes = [7u8, 1, 2, 3, 4, 5];
    let p = core::ptr::slice_from_raw_parts(bytes.as_ptr(), 5) as *const (u8, [u8]);
    assert_eq!(fat_tuple_len(p), 5);
}

/// A `noinstr` function that calls a handler and opens an instrumentation region: the markers
/// (a `nop` and a PC-relative record each) assemble on every supported architecture, the
/// function runs from `.noinstr.text`, and the handler switches from there. tests/cross_arch.rs
/// also reads the records of this binary's riscv64 object.
#[irqstack::noinstr]
fn noinstr_caller(x: u64) -> (u64, bool) {
    irqstack::instr_begin!();
    let y = std::hint::black_box(x) + 1;
    irqstack::instr_end!();
    (y, saved_sp(y) != 0)
}

#[test]
fn noinstr_functions_with_marker_regions_run() {
    assert_eq!(noinstr_caller(41), (42, true));
}

/// An `extern "C-unwind"` handler: its panics unwind out of it.
#[on_irqstack]
extern "C-unwind" fn c_unwind_panicking(n: u64) -> u64 {
    if n % 2 == 1 {
        panic!("c-unwind handler panic {n}");
    }
    irq_stack_bounds().unwrap().contains(&current_sp()) as u64
}

/// The stack pointer of the caller, as a value.
#[inline(never)]
fn current_sp() -> usize {
    let marker = 0u8;
    std::hint::black_box(core::ptr::addr_of!(marker)) as usize
}

#[test]
fn panics_unwind_out_of_c_unwind_handlers_and_release_the_stack() {
    // The shim and the trampoline of an `-unwind` handler unwind too: the trampoline's landing
    // pad releases the stack on the way to the caller's `catch_unwind`.
    let hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    for n in 0..200u64 {
        let r = panic::catch_unwind(|| c_unwind_panicking(n));
        if n % 2 == 1 {
            let p = r.expect_err("an odd call panics");
            assert_eq!(
                p.downcast_ref::<String>().unwrap(),
                &format!("c-unwind handler panic {n}")
            );
        } else {
            assert_eq!(r.unwrap(), 1, "call {n} ran on the IRQ stack");
        }
        assert!(!irqstack_active());
    }
    panic::set_hook(hook);
}

/// An `extern "C"` handler (a signal handler's usual ABI): a panic cannot leave it. Its shim and
/// trampoline cannot unwind either, so the panic aborts inside, on the IRQ stack.
#[cfg(target_arch = "x86_64")]
#[on_irqstack]
extern "C" fn c_panicking() {
    panic!("panic in an extern \"C\" handler");
}

// x86-64 only: the aarch64 and riscv64 runs of this file are under qemu-user, which cannot run
// the (foreign) test binary again as a child.
#[cfg(target_arch = "x86_64")]
#[test]
fn a_panic_in_an_extern_c_handler_aborts_the_process() {
    use std::os::unix::process::ExitStatusExt;
    if std::env::var_os("IRQSTACK_SWITCH_CHILD").is_some() {
        c_panicking();
        // Not reached: the panic aborts. If it unwound instead, this child exits 0 and the
        // parent fails.
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_panic_in_an_extern_c_handler_aborts_the_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("IRQSTACK_SWITCH_CHILD", "1")
        .output()
        .expect("running the test binary as a child");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(6),
        "the child must abort (SIGABRT): {:?}\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains("panic in an extern \"C\" handler"),
        "the panic message: {stderr}"
    );
    assert!(
        stderr.contains("cannot unwind"),
        "Rust's abort-on-unwind report: {stderr}"
    );
}
