//! gdb walks from a handler's body on the IRQ stack, through the trampoline, back to the
//! interrupted code on the thread's own stack.
//!
//! The test runs this very test binary under `gdb -batch`, with the ignored test `gdb_target` as
//! the program: it breaks inside a handler called from a spawned thread, prints the backtrace and,
//! with gdb's Python API, the stack pointer of every frame.
//!
//! The walking tests run the host's gdb on this binary: x86-64 only. The program (`gdb_target`)
//! builds on every architecture: `tests/cross_gdb.rs` runs it under qemu-user for gdb-multiarch.

#[path = "support/gdb_walk.rs"]
mod gdb_walk;
mod support;

use gdb_walk::LAYOUT_ENV;
use support::thread_stack;

use irqstack::on_irqstack;

#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn irqstack_gdb_breakpoint(x: u64) -> u64 {
    std::hint::black_box(x) + 1
}

#[on_irqstack]
fn gdb_handler(x: u64) -> u64 {
    irqstack_gdb_breakpoint(x)
}

#[inline(never)]
fn gdb_interrupted_code() -> u64 {
    let r = irqstack::irq_stack_bounds();
    let x = gdb_handler(std::hint::black_box(41));
    std::hint::black_box(r);
    x
}

/// The program gdb runs. Prints the IRQ stack and thread stack bounds for the checker (on stderr,
/// unbuffered, so they are out before gdb stops the program).
///
/// Layouts: `natural` (a Rust thread, wherever mmap puts things); `irq-above` (the thread runs on
/// a stack mapped at a low address, 256 MiB, so its IRQ stack, mapped where the kernel picks, lies
/// above it: the layout gdb used to refuse); `irq-below` (the thread stack is mapped just below the
/// main thread's stack, above the area where the kernel places mappings, so the IRQ stack lies
/// below it). Both forced layouts are checked before the handler runs.
#[test]
#[ignore = "run under gdb by gdb_walks_from_the_irq_stack_to_the_caller"]
fn gdb_target() {
    let layout = std::env::var(LAYOUT_ENV).unwrap_or_else(|_| "natural".into());
    match layout.as_str() {
        "natural" => std::thread::spawn(|| target_thread("natural"))
            .join()
            .unwrap(),
        "irq-above" | "irq-below" => run_on_own_stack(&layout),
        other => panic!("unknown layout {other}"),
    }
}

fn target_thread(layout: &str) {
    let r = irqstack::prepare_irq_stack().unwrap();
    let task = thread_stack();
    eprintln!("IRQSTACK {:#x} {:#x}", r.start, r.end);
    eprintln!("TASKSTACK {:#x} {:#x}", task.start, task.end);
    match layout {
        "irq-above" => assert!(r.start > task.end, "IRQ stack not above: {r:x?} {task:x?}"),
        "irq-below" => assert!(r.end < task.start, "IRQ stack not below: {r:x?} {task:x?}"),
        _ => {}
    }
    // Panics through every trampoline form are still caught in this layout, and
    // std::backtrace (libgcc's unwinder) walks from the body back into the caller.
    let caught = panics_caught();
    let walked = std_backtrace_crosses();
    eprintln!("PANICS-CAUGHT {caught} STD-BACKTRACE-CROSSES {walked}");
    assert_eq!(gdb_interrupted_code(), 42);
}

#[on_irqstack]
fn boom(x: u64) -> u64 {
    if std::hint::black_box(x) > 0 {
        panic!("boom {x}");
    }
    x
}

#[derive(Clone, Copy)]
struct Wide([u64; 5]);

#[on_irqstack]
fn boom_block(w: Wide) -> u64 {
    if std::hint::black_box(w.0[0]) > 0 {
        panic!("boom {}", w.0[0]);
    }
    w.0.iter().sum()
}

fn panics_caught() -> usize {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let caught = [
        std::panic::catch_unwind(|| boom(1)).is_err(),
        std::panic::catch_unwind(|| boom_block(Wide([1, 2, 3, 4, 5]))).is_err(),
        std::panic::catch_unwind(|| irqstack::run_on_irqstack(|| -> u64 { panic!("closure") }))
            .is_err(),
    ];
    std::panic::set_hook(hook);
    caught.iter().filter(|&&c| c).count()
}

#[on_irqstack]
fn capture_on_irqstack(_x: u64) -> String {
    std::backtrace::Backtrace::force_capture().to_string()
}

/// A backtrace captured in a handler names the handler, this caller and the thread's start.
#[inline(never)]
fn std_backtrace_crosses() -> bool {
    let bt = std::hint::black_box(capture_on_irqstack(std::hint::black_box(0)));
    let ok = [
        "capture_on_irqstack",
        "std_backtrace_crosses",
        "target_thread",
    ]
    .iter()
    .all(|f| bt.contains(f));
    if !ok {
        eprintln!("STD-BACKTRACE {bt}");
    }
    ok
}

/// Where to map a thread stack so that an IRQ stack mapped later lands below it: above the place
/// where mappings made without an address go. A probe mapping shows where that is.
///
/// Linux places them top-down below `mmap_base`, which lies at least 128 MiB under the main
/// stack's top: just below the main thread's stack (and its 8 MiB of growth room) is above
/// them. qemu-user places them bottom-up above the main stack: above the highest mapping (plus a
/// gap for the mappings still to come) is above them.
fn irq_below_thread_stack_address() -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let range = |l: &str| {
        let (lo, hi) = l.split(' ').next().unwrap().split_once('-').unwrap();
        (
            usize::from_str_radix(lo, 16).unwrap(),
            usize::from_str_radix(hi, 16).unwrap(),
        )
    };
    let stack_top = range(
        maps.lines()
            .find(|l| l.ends_with("[stack]"))
            .expect("[stack]"),
    )
    .1;
    // SAFETY: a fresh private anonymous mapping at an address the kernel picks, unmapped right
    // away; only its address is used.
    let probe = unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            1 << 16,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED, "probe mapping");
        libc::munmap(p, 1 << 16);
        p as usize
    };
    if probe < stack_top {
        stack_top - (64 << 20)
    } else {
        let highest = maps
            .lines()
            .filter(|l| !l.contains("[vsyscall]"))
            .map(|l| range(l).1)
            .max()
            .unwrap();
        (highest + (256 << 20)) & !((2 << 20) - 1)
    }
}

/// Runs `target_thread(layout)` on a pthread whose stack this function maps where the layout
/// wants it.
fn run_on_own_stack(layout: &str) {
    const SIZE: usize = 8 << 20;
    let at = if layout == "irq-above" {
        0x1000_0000
    } else {
        irq_below_thread_stack_address()
    };
    // SAFETY: a fresh private anonymous mapping at an address nothing else occupies
    // (MAP_FIXED_NOREPLACE fails instead of replacing); it serves as the thread's stack and is
    // never unmapped (the process ends after the test).
    let stack = unsafe {
        libc::mmap(
            at as *mut libc::c_void,
            SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    assert_eq!(stack as usize, at, "mapping the thread stack at {at:#x}");
    extern "C" fn start(arg: *mut libc::c_void) -> *mut libc::c_void {
        // SAFETY: `arg` is the `&String` below, alive until the join.
        let layout = unsafe { &*(arg as *const String) };
        target_thread(layout);
        std::ptr::null_mut()
    }
    let layout = layout.to_string();
    // SAFETY: the attribute object is initialized, used and destroyed here; the stack is mapped
    // read-write and outlives the thread; `start` has the pthread signature; the thread is
    // joined before `layout` goes away.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        assert_eq!(libc::pthread_attr_init(&mut attr), 0);
        assert_eq!(libc::pthread_attr_setstack(&mut attr, stack, SIZE), 0);
        let mut t: libc::pthread_t = 0;
        let arg = &layout as *const String as *mut libc::c_void;
        assert_eq!(libc::pthread_create(&mut t, &attr, start, arg), 0);
        libc::pthread_attr_destroy(&mut attr);
        assert_eq!(libc::pthread_join(t, std::ptr::null_mut()), 0);
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn gdb_walks_from_the_irq_stack_to_the_caller() {
    walk("natural");
}

/// The IRQ stack mapped above the thread stack: gdb used to stop at the trampoline with
/// "previous frame inner to this frame (corrupt stack?)".
#[cfg(target_arch = "x86_64")]
#[test]
fn gdb_walks_across_the_switch_with_the_irq_stack_above() {
    walk("irq-above");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn gdb_walks_across_the_switch_with_the_irq_stack_below() {
    walk("irq-below");
}

/// Runs `gdb_target` under the host's gdb in `layout` and checks the walk.
#[cfg(target_arch = "x86_64")]
fn walk(layout: &str) {
    if !support::skip::command_runs("gdb", &["--version"]) {
        return support::skip::skip("gdb", "apt-get install gdb", false);
    }
    let dir = std::env::temp_dir().join(format!("irqstack-gdb-{}-{layout}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("walk.gdb");
    std::fs::write(&script, gdb_walk::script("", "run")).unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("timeout")
        .arg("300")
        .arg("gdb")
        .args(["-batch", "-nx", "-x"])
        .arg(&script)
        .env(LAYOUT_ENV, layout)
        .arg("--args")
        .arg(&exe)
        .args([
            "gdb_target",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .expect("running gdb");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!("{stdout}\n--- stderr ---\n{stderr}");
    println!("{}", gdb_walk::check(layout, &stdout, &all));
}
