//! gdb walks from a handler's body on the IRQ stack, through the trampoline, back to the
//! interrupted code on the thread's own stack.
//!
//! The test runs this very test binary under `gdb -batch`, with the ignored test `gdb_target` as
//! the program: it breaks inside a handler called from a spawned thread, prints the backtrace and,
//! with gdb's Python API, the stack pointer of every frame.

#[path = "support/skip.rs"]
mod skip;

use std::process::Command;

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

/// The program gdb runs. Prints the IRQ stack bounds for the checker (on stderr, unbuffered, so
/// they are out before gdb stops the program).
#[test]
#[ignore = "run under gdb by gdb_walks_from_the_irq_stack_to_the_caller"]
fn gdb_target() {
    std::thread::spawn(|| {
        let r = irqstack::prepare_irq_stack().unwrap();
        eprintln!("IRQSTACK {:#x} {:#x}", r.start, r.end);
        assert_eq!(gdb_interrupted_code(), 42);
    })
    .join()
    .unwrap();
}

const SCRIPT: &str = r#"
set pagination off
set print thread-events off
set confirm off
break irqstack_gdb_breakpoint
run
echo BT-BEGIN\n
bt
echo BT-END\n
python
f = gdb.newest_frame()
while f is not None:
    print("FRAME %s %#x" % (f.name(), int(f.read_register("rsp"))))
    f = f.older()
end
kill
"#;

#[test]
fn gdb_walks_from_the_irq_stack_to_the_caller() {
    if !skip::command_runs("gdb", &["--version"]) {
        return skip::skip("gdb", "apt-get install gdb", false);
    }
    let dir = std::env::temp_dir().join(format!("irqstack-gdb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("walk.gdb");
    std::fs::write(&script, SCRIPT).unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("timeout")
        .arg("300")
        .arg("gdb")
        .args(["-batch", "-nx", "-x"])
        .arg(&script)
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

    let bounds = all
        .lines()
        .find_map(|l| l.strip_prefix("IRQSTACK "))
        .unwrap_or_else(|| panic!("the target did not print its IRQ stack:\n{all}"));
    let mut parts = bounds
        .split_whitespace()
        .map(|h| usize::from_str_radix(h.trim_start_matches("0x"), 16).expect("hex bound"));
    let irq = parts.next().unwrap()..parts.next().unwrap();

    let bt = stdout
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
    let frames: Vec<(String, usize)> = stdout
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
    // The walk goes on past the interrupted code, to the thread's start.
    let after_caller = frames
        .iter()
        .skip_while(|(n, _)| !n.contains("gdb_interrupted_code"));
    assert!(after_caller.count() >= 3, "{all}");
}
