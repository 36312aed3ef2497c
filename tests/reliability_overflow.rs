//! Overflow: a body that recurses past the end of its IRQ stack hits the guard page, and the
//! process reports it and aborts (`irqstack-rt/src/overflow.rs`); it never returns garbage.
//! Faults that are not IRQ stack overflows keep their usual outcome: Rust's own "has overflowed
//! its stack" report for thread stacks, the default `SIGSEGV` for wild accesses.
//!
//! Every crash happens in a child process: the test re-runs this binary with
//! `IRQSTACK_RELIABILITY_CHILD=<role>` and only the test in question (see `support::run_child`).

mod support;

use std::os::unix::process::ExitStatusExt;

use irqstack::on_irqstack;
use support::{child_role, describe, gettid, run_child};

/// Recursion that cannot be turned into a loop: 256 bytes of live locals per level, and work
/// after the recursive call.
#[inline(never)]
fn recurse(n: u64) -> u64 {
    let buf = [n; 32];
    std::hint::black_box(&buf);
    if n == 0 {
        return 0;
    }
    recurse(n - 1).wrapping_add(buf[(n % 32) as usize])
}

/// Recurses far deeper than any IRQ stack allows (64 KiB by default: ~200 levels).
#[on_irqstack]
fn runaway(levels: u64) -> u64 {
    recurse(levels)
}

/// The same from a signal handler, the realistic case: an interrupt handler that runs away.
#[on_irqstack]
extern "C" fn runaway_irq(_sig: libc::c_int, _info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    std::hint::black_box(recurse(1 << 30));
}

/// Where the guard page of this thread's IRQ stack starts (one page below the usable range).
fn guard_page() -> usize {
    irqstack::prepare_irq_stack()
        .expect("mapping the IRQ stack")
        .start
        - 4096
}

/// Tells the parent which thread and guard page to expect in the report. Unbuffered stderr, so
/// it is out before the crash.
fn announce(guard: usize) {
    eprintln!("CHILD tid={} guard={guard:#x}", gettid());
}

/// What the parent expects to read for that thread.
fn expected_report(out: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("CHILD tid="))
        .unwrap_or_else(|| panic!("the child did not announce itself:\n{}", describe(out)));
    let mut fields = line["CHILD ".len()..].split(' ');
    let tid = fields.next().unwrap().trim_start_matches("tid=");
    let guard = fields.next().unwrap().trim_start_matches("guard=");
    format!("irqstack: IRQ stack overflow on thread {tid} (guard page at {guard})")
}

/// The child must have died from SIGABRT after printing exactly the report for its thread.
fn assert_reported_overflow(out: &std::process::Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("RETURNED"),
        "the runaway body returned:\n{}",
        describe(out)
    );
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "expected an abort:\n{}",
        describe(out)
    );
    let want = expected_report(out);
    assert!(
        stderr.lines().any(|l| l == want),
        "expected the line `{want}`:\n{}",
        describe(out)
    );
}

/// The SIGSEGV handler currently installed.
fn segv_handler() -> usize {
    // SAFETY: queries the action into a valid out-parameter.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(
            libc::sigaction(libc::SIGSEGV, std::ptr::null(), &mut old),
            0
        );
        old.sa_sigaction
    }
}

#[test]
fn irq_stack_overflow_is_reported_and_aborts() {
    if child_role().is_some() {
        std::thread::spawn(|| {
            announce(guard_page());
            let r = runaway(u64::MAX);
            eprintln!("RETURNED {r}");
        })
        .join()
        .unwrap();
        return;
    }
    let out = run_child("irq_stack_overflow_is_reported_and_aborts", "overflow", &[]);
    assert_reported_overflow(&out);
}

#[test]
fn overflow_in_a_signal_handler_is_reported() {
    if child_role().is_some() {
        let sig = libc::SIGRTMIN() + 7;
        support::install(sig, runaway_irq, 0);
        std::thread::spawn(move || {
            announce(guard_page());
            support::raise_here(sig);
            eprintln!("RETURNED");
        })
        .join()
        .unwrap();
        return;
    }
    let out = run_child("overflow_in_a_signal_handler_is_reported", "signal", &[]);
    assert_reported_overflow(&out);
}

/// This thread's alternate signal stack flags (`SS_DISABLE` when it has none).
fn altstack_flags() -> libc::c_int {
    // SAFETY: queries into a valid out-parameter.
    unsafe {
        let mut ss: libc::stack_t = std::mem::zeroed();
        assert_eq!(libc::sigaltstack(std::ptr::null(), &mut ss), 0);
        ss.ss_flags
    }
}

extern "C" fn foreign_thread(_: *mut libc::c_void) -> *mut libc::c_void {
    // A thread that Rust's runtime did not start has no alternate signal stack; creating the IRQ
    // stack gives it one, or the overflow could not even be signalled.
    let before = altstack_flags();
    let guard = guard_page();
    let after = altstack_flags();
    eprintln!("ALTSTACK before={before} after={after}");
    announce(guard);
    let r = runaway(u64::MAX);
    eprintln!("RETURNED {r}");
    std::ptr::null_mut()
}

#[test]
fn overflow_on_a_thread_without_sigaltstack_is_reported() {
    if child_role().is_some() {
        // SAFETY: a default-attribute thread running an extern "C" start routine; joined below.
        unsafe {
            let mut t: libc::pthread_t = 0;
            let rc = libc::pthread_create(
                &mut t,
                std::ptr::null(),
                foreign_thread,
                std::ptr::null_mut(),
            );
            assert_eq!(rc, 0);
            libc::pthread_join(t, std::ptr::null_mut());
        }
        return;
    }
    let out = run_child(
        "overflow_on_a_thread_without_sigaltstack_is_reported",
        "foreign",
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("ALTSTACK before={} after=0", libc::SS_DISABLE)),
        "the foreign thread should get an alternate stack:\n{}",
        describe(&out)
    );
    assert_reported_overflow(&out);
}

#[test]
fn thread_stack_overflow_still_gets_rusts_report() {
    if child_role().is_some() {
        let std_handler = segv_handler();
        irqstack::prepare_irq_stack().unwrap();
        // Ours is in front now; Rust's handler is reached only through the chain.
        eprintln!("CHAINED {}", segv_handler() != std_handler);
        std::thread::Builder::new()
            .name("deep-thread".into())
            .stack_size(256 * 1024)
            .spawn(|| {
                irqstack::prepare_irq_stack().unwrap();
                let r = recurse(u64::MAX);
                eprintln!("RETURNED {r}");
            })
            .unwrap()
            .join()
            .unwrap();
        return;
    }
    let out = run_child(
        "thread_stack_overflow_still_gets_rusts_report",
        "thread",
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CHAINED true"), "{}", describe(&out));
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "{}",
        describe(&out)
    );
    // "thread 'deep-thread' (<tid>) has overflowed its stack" (Rust 1.95 adds the tid).
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("thread 'deep-thread'")
                && l.ends_with("has overflowed its stack")),
        "{}",
        describe(&out)
    );
    assert!(
        !stderr.contains("irqstack: IRQ stack overflow"),
        "{}",
        describe(&out)
    );
}

/// A wild access (not a guard page of an IRQ stack) with `previous` as the handler that was
/// installed before the first IRQ stack: Rust's (`std`) or none (`dfl`).
fn wild_access(previous: &str) {
    if previous == "dfl" {
        // SAFETY: restores the default action; no handler of ours is involved yet.
        unsafe { libc::signal(libc::SIGSEGV, libc::SIG_DFL) };
    }
    irqstack::prepare_irq_stack().unwrap();
    // SAFETY: maps one inaccessible page and writes to it on purpose: the write faults.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        std::ptr::write_volatile(p as *mut u64, 1);
    }
    eprintln!("RETURNED");
}

#[test]
fn other_faults_keep_the_default_action() {
    if let Some(role) = child_role() {
        wild_access(&role);
        return;
    }
    for previous in ["std", "dfl"] {
        let out = run_child("other_faults_keep_the_default_action", previous, &[]);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGSEGV),
            "previous handler {previous}:\n{}",
            describe(&out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("irqstack:"), "{}", describe(&out));
        assert!(!stderr.contains("RETURNED"), "{}", describe(&out));
    }
}

#[test]
fn detection_can_be_turned_off() {
    if child_role().is_some() {
        irqstack::set_overflow_detection(false);
        let std_handler = segv_handler();
        std::thread::spawn(move || {
            let guard = guard_page();
            // Off: the SIGSEGV handler was not touched.
            eprintln!("UNTOUCHED {}", segv_handler() == std_handler);
            announce(guard);
            let r = runaway(u64::MAX);
            eprintln!("RETURNED {r}");
        })
        .join()
        .unwrap();
        return;
    }
    let out = run_child("detection_can_be_turned_off", "off", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("UNTOUCHED true"), "{}", describe(&out));
    // Still no garbage: the guard page stops the body and the process dies with SIGSEGV.
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGSEGV),
        "{}",
        describe(&out)
    );
    assert!(!stderr.contains("irqstack:"), "{}", describe(&out));
    assert!(!stderr.contains("RETURNED"), "{}", describe(&out));
}

#[test]
fn turning_detection_off_restores_the_previous_handler() {
    if child_role().is_some() {
        let std_handler = segv_handler();
        std::thread::spawn(|| irqstack::prepare_irq_stack().unwrap())
            .join()
            .unwrap();
        let ours = segv_handler();
        irqstack::set_overflow_detection(false);
        let restored = segv_handler();
        irqstack::set_overflow_detection(true);
        std::thread::spawn(|| irqstack::prepare_irq_stack().unwrap())
            .join()
            .unwrap();
        let again = segv_handler();
        println!(
            "INSTALLED {} RESTORED {} REINSTALLED {}",
            ours != std_handler,
            restored == std_handler,
            again == ours
        );
        return;
    }
    let out = run_child(
        "turning_detection_off_restores_the_previous_handler",
        "restore",
        &[],
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("INSTALLED true RESTORED true REINSTALLED true"),
        "{}",
        describe(&out)
    );
}
