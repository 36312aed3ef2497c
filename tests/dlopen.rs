//! A `cdylib` loaded with `dlopen` whose signal handler is an `#[on_irqstack]` function, under a
//! signal storm: nothing lost, no crash, memcheck clean.
//!
//! The library (`tests/fixtures/dlopen_handler`) is built with cargo (offline) into
//! `target/fixtures`. Its thread-locals, irqstack's included, are reached through
//! `__tls_get_addr`: glibc allocates a thread's block of a `dlopen`ed module on the thread's first
//! access (`malloc`), and a thread that existed before the `dlopen` also grows its DTV then. The
//! library calls `prepare_irq_stack()` on each thread first (`irqstack_dl_prepare`), which takes
//! that first access (one block per module holds all of the library's thread-locals) outside any
//! signal handler. One receiver is left unprepared on purpose: its first access and its stack
//! creation happen inside the signal handler. That works here because the thread is never inside
//! the allocator when the signal lands (it spins on atomics); a thread interrupted inside
//! `malloc` would deadlock there, which is why the documentation says to prepare every thread.

mod support;

use std::ffi::{CString, c_int, c_void};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};

use support::describe;

const STATS: usize = 4;
/// Signals in flight at most (all receivers together); see reliability_signals.rs (BACKLOG).
const BACKLOG: u64 = 64;

/// The target the library is built for when this test binary is a cross build run under
/// qemu-user (`tests/cross_suite.rs`): the library must match the process that loads it. `None`
/// on the host (x86-64): the default target, as before.
const LIBRARY_TARGET: Option<&str> = if cfg!(target_arch = "aarch64") {
    Some("aarch64-unknown-linux-gnu")
} else if cfg!(target_arch = "riscv64") {
    Some("riscv64gc-unknown-linux-gnu")
} else {
    None
};

/// Builds the fixture library and returns its path. Under qemu-user the `cargo` started here is
/// the host's (qemu-user runs host executables natively) and cross-builds the library.
fn build_library() -> PathBuf {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = repo.join("target/fixtures");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(repo.join("tests/fixtures/dlopen_handler"))
        .args(["build", "--quiet", "--offline", "--release", "--target-dir"])
        .arg(&target);
    if let Some(triple) = LIBRARY_TARGET {
        cmd.args(["--target", triple]);
    }
    let out = cmd
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("running cargo");
    assert!(
        out.status.success(),
        "building the fixture:\n{}",
        describe(&out)
    );
    let lib = match LIBRARY_TARGET {
        Some(triple) => target.join(triple),
        None => target,
    }
    .join("release/libirqstack_fixture_dlopen_handler.so");
    assert!(lib.exists(), "{} missing", lib.display());
    lib
}

type Install = extern "C" fn(c_int) -> c_int;
type Prepare = extern "C" fn() -> c_int;
type Stats = unsafe extern "C" fn(*mut u64);
type Panics = extern "C" fn() -> c_int;
type Touch = extern "C" fn() -> c_int;

struct Lib {
    install: Install,
    prepare: Prepare,
    stats: Stats,
    panics: Panics,
    touch: Touch,
}

fn load(path: &str) -> Lib {
    let c = CString::new(path).unwrap();
    // SAFETY: dlopen with a valid C string; the library stays loaded until the process ends.
    let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(!h.is_null(), "dlopen {path} failed");
    let sym = |name: &str| {
        let n = CString::new(name).unwrap();
        // SAFETY: dlsym on a live handle with a valid C string.
        let p = unsafe { libc::dlsym(h, n.as_ptr()) };
        assert!(!p.is_null(), "dlsym {name}");
        p
    };
    // SAFETY: the fixture exports these symbols with exactly these signatures.
    unsafe {
        Lib {
            install: std::mem::transmute::<*mut c_void, Install>(sym("irqstack_dl_install")),
            prepare: std::mem::transmute::<*mut c_void, Prepare>(sym("irqstack_dl_prepare")),
            stats: std::mem::transmute::<*mut c_void, Stats>(sym("irqstack_dl_stats")),
            panics: std::mem::transmute::<*mut c_void, Panics>(sym("irqstack_dl_panics")),
            touch: std::mem::transmute::<*mut c_void, Touch>(sym("irqstack_dl_touch")),
        }
    }
}

fn stats(lib: &Lib) -> [u64; STATS] {
    let mut v = [0u64; STATS];
    // SAFETY: `v` has room for STATS values.
    unsafe { (lib.stats)(v.as_mut_ptr()) };
    v
}

fn signals() -> [c_int; 2] {
    [libc::SIGRTMIN() + 7, libc::SIGRTMIN() + 8]
}

static STOP: AtomicBool = AtomicBool::new(false);
static READY: AtomicUsize = AtomicUsize::new(0);
static LOADED: AtomicBool = AtomicBool::new(false);
static PANICS_OK: AtomicUsize = AtomicUsize::new(0);
static LIB: std::sync::OnceLock<Lib> = std::sync::OnceLock::new();

/// A receiving thread: (optionally) prepares, then spins until the storm is over. Spinning on
/// atomics only: an unprepared thread must not be inside the allocator when its first signal
/// lands (see the module documentation).
fn receiver(prepare: bool, tid: &AtomicUsize) {
    while !LOADED.load(SeqCst) {
        std::thread::yield_now();
    }
    let lib = LIB.get().expect("loaded");
    if prepare {
        assert_eq!((lib.prepare)(), 0, "irqstack_dl_prepare");
    }
    // SAFETY: pthread_self has no preconditions.
    tid.store(unsafe { libc::pthread_self() } as usize, SeqCst);
    READY.fetch_add(1, SeqCst);
    let mut acc = 0u64;
    while !STOP.load(SeqCst) {
        for _ in 0..1000 {
            acc = std::hint::black_box(acc.rotate_left(5) ^ 0x9e37);
        }
        // Leave the CPU to the sender now and then (2-core machines).
        std::thread::yield_now();
    }
    std::hint::black_box(acc);
    // Pending signals are delivered on the way back from this system call at the latest.
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() };
    if (lib.panics)() == 3 {
        PANICS_OK.fetch_add(1, SeqCst);
    }
}

/// The storm: `per` signals to each of 4 receivers (one created before the `dlopen`, one never
/// prepared). Prints a summary line; panics on a lost signal or a bad state.
fn storm(path: &str, per: u64) {
    const RECEIVERS: usize = 4;
    static TIDS: [AtomicUsize; RECEIVERS] = [const { AtomicUsize::new(0) }; RECEIVERS];
    let sent = AtomicU64::new(0);
    std::thread::scope(|s| {
        // Created before the library is loaded: its DTV has no slot for it yet.
        let early = s.spawn(|| receiver(true, &TIDS[0]));
        let lib: &'static Lib = LIB.get_or_init(|| load(path));
        for sig in signals() {
            assert_eq!((lib.install)(sig), 0, "sigaction");
        }
        LOADED.store(true, SeqCst);
        let others: Vec<_> = (1..RECEIVERS)
            .map(|i| s.spawn(move || receiver(i != RECEIVERS - 1, &TIDS[i])))
            .collect();
        while READY.load(SeqCst) < RECEIVERS {
            std::thread::yield_now();
        }
        for i in 0..per * RECEIVERS as u64 {
            let r = (i as usize) % RECEIVERS;
            let sig = signals()[(i as usize / RECEIVERS) % 2];
            while sent.load(Relaxed) >= stats(lib)[0] + BACKLOG {
                std::thread::yield_now();
            }
            let value = libc::sigval {
                sival_ptr: std::ptr::null_mut(),
            };
            // SAFETY: the receivers live until STOP; the signal has the library's handler.
            while unsafe {
                libc::pthread_sigqueue(TIDS[r].load(SeqCst) as libc::pthread_t, sig, value)
            } != 0
            {
                std::thread::yield_now();
            }
            sent.fetch_add(1, Relaxed);
        }
        // Every signal sent is handled (none lost): wait until the counts meet.
        while stats(lib)[0] < sent.load(Relaxed) {
            std::thread::yield_now();
        }
        STOP.store(true, SeqCst);
        early.join().unwrap();
        for t in others {
            t.join().unwrap();
        }
    });
    let lib = LIB.get().unwrap();
    let [handled, switched, in_place, bad] = stats(lib);
    let sent = sent.load(Relaxed);
    println!(
        "DLOPEN storm: sent {sent}, handled {handled}: switched {switched}, in place \
         {in_place}, bad {bad}; panics caught through all 3 forms on {} of {RECEIVERS} threads",
        PANICS_OK.load(SeqCst)
    );
    assert_eq!(handled, sent, "signals lost or handled twice");
    assert_eq!(bad, 0, "a handler ran in a bad state");
    assert_eq!(switched + in_place, handled);
    assert!(switched > 0, "no handler switched");
    assert_eq!(PANICS_OK.load(SeqCst), RECEIVERS, "panics");
}

#[test]
fn dlopened_library_handles_a_signal_storm() {
    if support::child_role().as_deref() == Some("dlopen-storm") {
        let path = std::env::var("IRQSTACK_DL_LIB").unwrap();
        let per = std::env::var("IRQSTACK_DL_PER").unwrap().parse().unwrap();
        storm(&path, per);
        return;
    }
    let lib = build_library();
    let out = support::run_child(
        "dlopened_library_handles_a_signal_storm",
        "dlopen-storm",
        &[
            ("IRQSTACK_DL_LIB", lib.to_str().unwrap()),
            ("IRQSTACK_DL_PER", "5000"),
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    print!("{}", String::from_utf8_lossy(&out.stdout));
}

// x86-64 (the host) only: Valgrind does not run foreign binaries under qemu-user.
#[cfg(target_arch = "x86_64")]
#[test]
fn dlopened_library_storm_is_memcheck_clean() {
    let valgrind = Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !valgrind {
        eprintln!(
            "\n*** valgrind is not installed: the dlopen memcheck test did NOT run ***\n\
             install it with `apt-get install valgrind`{}\n",
            if support::under_ci() {
                " (required under CI)"
            } else {
                ""
            }
        );
        assert!(!support::under_ci(), "valgrind is required under CI");
        return;
    }
    let lib = build_library();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("valgrind")
        .args([
            "--tool=memcheck",
            "--error-exitcode=1",
            "--trace-children=no",
            "--fair-sched=yes",
        ])
        .arg(exe)
        .args([
            "dlopened_library_handles_a_signal_storm",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(support::CHILD_ENV, "dlopen-storm")
        .env("IRQSTACK_DL_LIB", &lib)
        .env("IRQSTACK_DL_PER", "500")
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("running valgrind");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ERROR SUMMARY: 0 errors"),
        "memcheck errors:\n{}",
        describe(&out)
    );
    assert!(out.status.success(), "{}", describe(&out));
    print!("{}", String::from_utf8_lossy(&out.stdout));
}

/// The experiment behind the documentation of what remains (docs/guarantees.md, "Libraries
/// loaded at run time"): an unprepared thread busy in the allocator gets the library's signal, so
/// the handler's first access to the library's thread-locals (`__tls_get_addr`) and the stack
/// creation both happen inside a signal handler that interrupted `malloc`/`free`. Prints how many
/// of the rounds completed and stops at the first one whose handler does not finish within two
/// seconds (a deadlock: the thread stays stuck). `IRQSTACK_DL_EXPERIMENT=touch`: the thread first
/// takes its first access to the library's thread-locals (no stack yet); `=prepare`: it calls
/// `prepare_irq_stack()` first (what the documentation asks for). Not a test of a guarantee (it waits on a clock),
/// so it is ignored; run it with
/// `cargo test --test dlopen -- --ignored --nocapture first_access_in_a_handler`.
#[test]
#[ignore = "experiment, run by hand: the result is documented, not guaranteed"]
fn first_access_in_a_handler_that_interrupted_malloc() {
    let path = build_library();
    let lib: &'static Lib = LIB.get_or_init(|| load(path.to_str().unwrap()));
    let sig = signals()[0];
    assert_eq!((lib.install)(sig), 0);
    const ROUNDS: usize = 200;
    for round in 0..ROUNDS {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let tid = std::sync::Arc::new(AtomicUsize::new(0));
        let (s2, t2) = (stop.clone(), tid.clone());
        let mode = std::env::var("IRQSTACK_DL_EXPERIMENT").unwrap_or_default();
        let t = std::thread::spawn(move || {
            match mode.as_str() {
                "touch" => assert_eq!((lib.touch)(), 0),
                "prepare" => assert_eq!((lib.prepare)(), 0),
                _ => {}
            }
            // SAFETY: pthread_self has no preconditions.
            t2.store(unsafe { libc::pthread_self() } as usize, SeqCst);
            let mut keep = Vec::new();
            while !s2.load(Relaxed) {
                keep.push(vec![round as u8; 64 + keep.len() % 512]);
                if keep.len() > 64 {
                    keep.clear();
                }
            }
        });
        while tid.load(SeqCst) == 0 {
            std::thread::yield_now();
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
        let before = stats(lib)[0];
        let value = libc::sigval {
            sival_ptr: std::ptr::null_mut(),
        };
        // SAFETY: the thread is alive until `stop`; the signal has the library's handler.
        assert_eq!(
            unsafe { libc::pthread_sigqueue(tid.load(SeqCst) as libc::pthread_t, sig, value) },
            0
        );
        let start = std::time::Instant::now();
        while stats(lib)[0] == before {
            if start.elapsed() > std::time::Duration::from_secs(2) {
                println!(
                    "EXPERIMENT: round {round} of {ROUNDS}: the handler did not finish within 2 s \
                     (deadlocked in the allocator); {round} rounds completed before"
                );
                return;
            }
            std::thread::yield_now();
        }
        stop.store(true, Relaxed);
        t.join().unwrap();
    }
    println!("EXPERIMENT: all {ROUNDS} rounds completed");
}
