//! The gdb script and the checks of a walk across the stack switch, shared by
//! `tests/gdb_backtrace.rs` (the host's gdb on the x86-64 binary) and `tests/cross_gdb.rs`
//! (gdb-multiarch against qemu-user's gdbstub). The program gdb runs is the ignored test
//! `gdb_target` of `tests/gdb_backtrace.rs`, built for the architecture under test.
//!
//! This file has no dependencies and is included with `#[path]` wherever it is needed.

#![allow(dead_code)]

use std::ops::Range;

/// Where the target thread's stack lies relative to its IRQ stack: `IRQSTACK_GDB_LAYOUT`
/// (`natural`, `irq-above`, `irq-below`; see `gdb_target`).
pub const LAYOUT_ENV: &str = "IRQSTACK_GDB_LAYOUT";

/// The gdb script: `start` gets the program to its first instruction (`run` for a local
/// program; attaching to a gdbstub for qemu-user), then `go` (`run` is done already; `continue`),
/// then it breaks in the handler's callee on the IRQ stack, prints `bt` between markers and,
/// with gdb's Python API, every frame's name and stack pointer (`$sp`, on every architecture).
pub fn script(start: &str, go: &str) -> String {
    format!(
        r#"
set pagination off
set print thread-events off
set confirm off
{start}
break irqstack_gdb_breakpoint
{go}
echo BT-BEGIN\n
bt
echo BT-END\n
python
f = gdb.newest_frame()
while f is not None:
    print("FRAME %s %#x" % (f.name(), int(f.read_register("sp"))))
    f = f.older()
end
kill
"#
    )
}

/// The line `prefix lo hi` (hexadecimal) that the target printed, as a range.
pub fn bounds_line(all: &str, prefix: &str) -> Range<usize> {
    let line = all
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("the target did not print {prefix}:\n{all}"));
    let mut parts = line
        .split_whitespace()
        .map(|h| usize::from_str_radix(h.trim_start_matches("0x"), 16).expect("hex bound"));
    parts.next().unwrap()..parts.next().unwrap()
}

/// Checks one walk: `gdb_stdout` is gdb's output for [`script`], `all` everything (gdb's and the
/// target's output) for the target's lines and for messages. gdb went from the breakpoint on the
/// IRQ stack through the trampoline into the interrupted code on the thread stack and on to the
/// thread's start, without stopping; panics and `std::backtrace` crossed the switch in the
/// target. Returns the layout seen and the number of frames, for the test's report.
pub fn check(layout: &str, gdb_stdout: &str, all: &str) -> String {
    let irq = bounds_line(all, "IRQSTACK ");
    let task = bounds_line(all, "TASKSTACK ");
    let bt = gdb_stdout
        .split("BT-BEGIN")
        .nth(1)
        .and_then(|s| s.split("BT-END").next())
        .unwrap_or_else(|| panic!("no backtrace in gdb output:\n{all}"));
    for want in [
        "irqstack_gdb_breakpoint",
        "__irqstack_trampoline",
        "gdb_interrupted_code",
    ] {
        assert!(bt.contains(want), "backtrace lacks {want}:\n{all}");
    }
    assert!(
        !all.contains("corrupt stack") && !all.contains("Backtrace stopped"),
        "gdb stopped unwinding:\n{all}"
    );

    // Frame stack pointers: the body's frames lie on the IRQ stack, the interrupted code's on
    // the thread's own stack.
    let frames: Vec<(String, usize)> = gdb_stdout
        .lines()
        .filter_map(|l| l.strip_prefix("FRAME "))
        .filter_map(|l| {
            let (name, sp) = l.rsplit_once(' ')?;
            Some((
                name.to_string(),
                usize::from_str_radix(sp.trim_start_matches("0x"), 16).ok()?,
            ))
        })
        .collect();
    let sp_of = |want: &str| {
        frames
            .iter()
            .find(|(n, _)| n.contains(want))
            .map(|(_, sp)| *sp)
            .unwrap_or_else(|| panic!("no frame {want}:\n{all}"))
    };
    assert!(irq.contains(&sp_of("irqstack_gdb_breakpoint")), "{all}");
    let caller = sp_of("gdb_interrupted_code");
    assert!(!irq.contains(&caller), "{all}");
    assert!(task.contains(&caller), "{all}");
    // The walk goes on past the interrupted code, to the thread's start.
    let after_caller: Vec<_> = frames
        .iter()
        .skip_while(|(n, _)| !n.contains("gdb_interrupted_code"))
        .collect();
    assert!(after_caller.len() >= 3, "{all}");
    assert!(
        after_caller
            .iter()
            .any(|(n, _)| n.contains("target_thread")),
        "the walk did not reach the thread's start:\n{all}"
    );
    assert!(
        all.contains("PANICS-CAUGHT 3 STD-BACKTRACE-CROSSES true"),
        "panics or std::backtrace in layout {layout}:\n{all}"
    );
    let side = if irq.start > task.end {
        "IRQ stack above"
    } else if irq.end < task.start {
        "IRQ stack below"
    } else {
        "IRQ stack inside?"
    };
    format!(
        "layout {layout} ({side}): IRQ stack {irq:x?}, thread stack {task:x?}: gdb walked {} frames",
        frames.len()
    )
}
