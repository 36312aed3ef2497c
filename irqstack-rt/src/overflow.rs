//! IRQ stack overflow detection for the std backend.
//!
//! An IRQ stack has a `PROT_NONE` guard page below it, so a handler that recurses too deep
//! faults instead of overwriting whatever lies below. Without help the process then dies with a
//! bare `SIGSEGV` (or, worse, the kernel cannot even push the signal frame and kills it without a
//! word). This module does what the kernel does for its own stacks: it names the problem.
//!
//! # How
//!
//! - When a thread's IRQ stack is created, [`register`] remembers its guard page in a
//!   thread-local and makes sure the thread has an alternate signal stack (`sigaltstack`): Rust's
//!   runtime gives the threads it starts one already; threads started otherwise (C code, raw
//!   `pthread_create`) get one from here, freed again by [`unregister`] at thread exit. The
//!   first registration in the process installs [`on_fault`] for `SIGSEGV` and `SIGBUS`
//!   (`SA_ONSTACK | SA_SIGINFO`), after saving the handler that was there before (Rust's own
//!   stack-overflow handler, in a Rust program).
//! - A fault whose address lies in the faulting thread's IRQ-stack guard page prints
//!   `irqstack: IRQ stack overflow on thread <tid> (guard page at <addr>)` to stderr with
//!   `write(2)` only, then aborts (`SIGABRT`).
//! - Every other fault goes to the previous handler unchanged, so Rust's
//!   "thread '...' has overflowed its stack" report for thread stacks keeps working, and so do
//!   handlers installed by other libraries before the first IRQ stack was created. If there was
//!   none, the default action is restored and the fault re-raised: the process dies with the
//!   signal, as it would have without this module.
//!
//! Everything the fault handler does is async-signal-safe: a load of a `const`-initialized
//! thread-local without destructor (a plain `%fs`-relative load), atomics, `write`, `sigaction`,
//! `raise` and `abort`.
//!
//! [`set_overflow_detection`] turns it off (and puts the previous handler back).
//!
//! # Valgrind
//!
//! [`register`] also tells Valgrind that the range is a stack (the `VALGRIND_STACK_REGISTER`
//! client request; a few no-op instructions when not running under Valgrind), whether or not
//! detection is on. Memcheck follows the stack pointer to decide which memory is live: a switch
//! to an IRQ stack that happens to be mapped less than 2 MB (`--max-stackframe`) away from the
//! thread stack would otherwise look like a huge frame being pushed or popped, and memcheck would
//! mark everything in between (other stacks, glibc's thread descriptor) as inaccessible or
//! uninitialized, reporting thousands of false errors. With the stack registered it sees a
//! stack switch.
//!
//! The signal calls and types come from the `libc` crate; the page size from rustix, which reads
//! it from libc's copy of the auxiliary vector (its `use-libc-auxv` feature: rustix's default
//! reads the vDSO, which valgrind does not map).

use core::cell::{Cell, UnsafeCell};
use core::ffi::{c_int, c_void};
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering, compiler_fence};

// ---------------------------------------------------------------------------------------------
// The libc interface, from the `libc` crate.

use libc::{
    AT_MINSIGSTKSZ, SA_ONSTACK, SA_SIGINFO, SIG_DFL, SIG_IGN, SIGBUS, SIGSEGV, SS_DISABLE,
    SS_ONSTACK, getauxval, raise, sigaction, sigaltstack,
};

type SigAction = libc::sigaction;
type StackT = libc::stack_t;
type SigInfo = libc::siginfo_t;

/// A `sigaction` with this handler and these flags, and an empty mask.
fn action(handler: usize, flags: c_int) -> SigAction {
    // SAFETY: `struct sigaction` is plain data for which all-zero bytes are valid (no handler,
    // empty mask, no flags, no restorer).
    let mut sa: SigAction = unsafe { MaybeUninit::zeroed().assume_init() };
    sa.sa_sigaction = handler;
    sa.sa_flags = flags;
    sa
}

type SigInfoHandler = extern "C" fn(c_int, *mut SigInfo, *mut c_void);
type PlainHandler = extern "C" fn(c_int);

// ---------------------------------------------------------------------------------------------
// State.

/// Whether IRQ stacks created from now on are watched ([`set_overflow_detection`]).
static ENABLED: AtomicBool = AtomicBool::new(true);

/// [`on_fault`] installation: not yet, being installed (by one thread), installed.
const NOT_INSTALLED: u8 = 0;
const INSTALLING: u8 = 1;
const INSTALLED: u8 = 2;
static INSTALL: AtomicU8 = AtomicU8::new(NOT_INSTALLED);

/// The `SIGSEGV` and `SIGBUS` actions found before [`on_fault`] was installed.
struct Previous(UnsafeCell<[MaybeUninit<SigAction>; 2]>);
// SAFETY: written only by the one thread that moved `INSTALL` to `INSTALLING`, before it
// publishes `INSTALLED` (release) and before `on_fault` is installed; read only after an acquire
// load of `INSTALLED`.
unsafe impl Sync for Previous {}
static PREVIOUS: Previous = Previous(UnsafeCell::new([MaybeUninit::uninit(); 2]));

/// Bytes of an alternate signal stack made here (plus a guard page): room for the kernel's signal
/// frame (`AT_MINSIGSTKSZ`, up to ~11 KiB with AMX state) and the chained handlers. Pages that
/// are never touched cost nothing (`MAP_NORESERVE`).
const ALTSTACK_SIZE: usize = 64 * 1024;

std::thread_local! {
    /// The lowest address of this thread's IRQ-stack guard region (one word, so the fault
    /// handler can never read half of an update); 0 if none is watched. An atomic, not a `Cell`:
    /// the fault handler (a signal handler of this thread) reads it (see std_backend.rs on why
    /// `Relaxed` suffices). `const` and without destructor: a plain `%fs`-relative load.
    static GUARD: AtomicUsize = const { AtomicUsize::new(0) };
    /// Its end (the usable stack's low end). Written before `GUARD`, read after it.
    static GUARD_END: AtomicUsize = const { AtomicUsize::new(0) };
    /// The alternate signal stack this module made for this thread: (mapping base, length
    /// including the guard page); `(0, 0)` if the thread had its own.
    static ALTSTACK: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    /// Valgrind's id for this thread's IRQ stack; `NOT_REGISTERED` outside Valgrind.
    static VALGRIND_STACK: Cell<usize> = const { Cell::new(NOT_REGISTERED) };
}

/// What a Valgrind client request returns when not running under Valgrind (its default).
const NOT_REGISTERED: usize = usize::MAX;
/// `VG_USERREQ__STACK_REGISTER` and `VG_USERREQ__STACK_DEREGISTER` (valgrind.h).
const VG_STACK_REGISTER: usize = 0x1501;
const VG_STACK_DEREGISTER: usize = 0x1502;

/// A Valgrind client request with the x86-64 protocol: `rax` points to the request and its five
/// arguments, the marker sequence (rotations of `rdi` by 3 + 13 + 61 + 51 = 128 bits, which
/// leave it unchanged, then `xchg rbx, rbx`) tells Valgrind's JIT to run the request, and the
/// result comes back in `rdx`. On a real CPU the sequence does nothing and `rdx` keeps `default`.
#[cfg(target_arch = "x86_64")]
#[inline(never)]
fn valgrind_request(default: usize, request: [usize; 6]) -> usize {
    let mut result = default;
    // SAFETY: rotations of rdi that sum to a full turn and an exchange of rbx with itself: no
    // register, memory or stack changes except the flags (not preserved, as declared). Under
    // Valgrind the request reads `request` (passed by pointer, alive across the block) and sets
    // rdx.
    unsafe {
        core::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            in("rax") request.as_ptr(),
            inout("rdx") result,
            options(nostack),
        )
    };
    result
}

/// A Valgrind client request with the AArch64 protocol: `x4` points to the request and its five
/// arguments, `x3` holds the default, the marker (rotations of `x12` by 3 + 13 + 51 + 61 = 128
/// bits, a full two turns that leave it unchanged, then `orr x10, x10, x10`, a move of `x10` to
/// itself) tells Valgrind's JIT to run the request, and the result comes back in `x3`. On a real
/// CPU (and under qemu-user) the sequence does nothing and `x3` keeps `default`.
#[cfg(target_arch = "aarch64")]
#[inline(never)]
fn valgrind_request(default: usize, request: [usize; 6]) -> usize {
    let mut result = default;
    // SAFETY: rotations of x12 that sum to whole turns and an `orr` of x10 with itself: no
    // register, memory, stack or flag changes (`ror` and `orr` do not set flags). Under Valgrind
    // the request reads `request` (passed by pointer, alive across the block) and sets x3.
    unsafe {
        core::arch::asm!(
            "ror x12, x12, #3",
            "ror x12, x12, #13",
            "ror x12, x12, #51",
            "ror x12, x12, #61",
            "orr x10, x10, x10",
            in("x4") request.as_ptr(),
            inout("x3") result,
            options(nostack, preserves_flags),
        )
    };
    result
}

/// Other architectures: no client request (Debian's Valgrind 3.19 does not run riscv64; upstream
/// support came later), so always `default`, what the request returns outside Valgrind.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn valgrind_request(default: usize, _request: [usize; 6]) -> usize {
    default
}

// ---------------------------------------------------------------------------------------------
// Registration (called by the std backend).

/// Registers this thread's new IRQ stack `[low, high)`, with its guard page `[guard_low, low)`:
/// with Valgrind (always), and with the overflow detector unless detection is off. Called when
/// the stack is created, before it is published.
///
/// Makes sure the thread has an alternate signal stack (a fault on the guard page leaves no room
/// on the faulting stack for the signal frame) and that the fault handler is installed. Uses
/// only `sigaltstack`, `mmap`, `mprotect` and `sigaction`, which are async-signal-safe. If the
/// alternate stack cannot be mapped, overflows of this thread are not reported (they still kill
/// the process with `SIGSEGV`).
pub(crate) fn register(guard_low: usize, low: usize, high: usize) {
    // Valgrind wants the lowest and the highest addressable byte.
    let id = valgrind_request(NOT_REGISTERED, [VG_STACK_REGISTER, low, high - 1, 0, 0, 0]);
    VALGRIND_STACK.set(id);
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    GUARD.with(|g| g.store(0, Ordering::Relaxed));
    compiler_fence(Ordering::SeqCst);
    GUARD_END.with(|e| e.store(low, Ordering::Relaxed));
    compiler_fence(Ordering::SeqCst);
    GUARD.with(|g| g.store(guard_low, Ordering::Relaxed));
    ensure_altstack();
    ensure_installed();
}

/// Stops watching this thread's guard page, frees the alternate signal stack made by
/// [`register`] if any, and deregisters the stack from Valgrind. Called when the IRQ stack goes
/// away (thread exit).
pub(crate) fn unregister() {
    GUARD.with(|g| g.store(0, Ordering::Relaxed));
    let id = VALGRIND_STACK.replace(NOT_REGISTERED);
    if id != NOT_REGISTERED {
        valgrind_request(0, [VG_STACK_DEREGISTER, id, 0, 0, 0, 0]);
    }
    let (base, len) = ALTSTACK.get();
    if len == 0 {
        return;
    }
    ALTSTACK.set((0, 0));
    let mut current = MaybeUninit::<StackT>::uninit();
    // SAFETY: queries this thread's alternate stack into a valid out-parameter.
    if unsafe { sigaltstack(core::ptr::null(), current.as_mut_ptr()) } != 0 {
        return;
    }
    // SAFETY: initialized by the successful call above.
    let current = unsafe { current.assume_init() };
    if current.ss_flags & SS_ONSTACK != 0 {
        // Running on an alternate stack (thread exit from inside a signal handler): it may be
        // ours, so leave it mapped.
        return;
    }
    let page = rustix::param::page_size();
    if current.ss_flags & SS_DISABLE == 0 && current.ss_sp as usize == base + page {
        let off = StackT {
            ss_sp: core::ptr::null_mut(),
            ss_flags: SS_DISABLE,
            ss_size: 0,
        };
        // SAFETY: disables this thread's alternate stack, which is ours and not in use (checked
        // above); nothing else refers to it.
        if unsafe { sigaltstack(&off, core::ptr::null_mut()) } != 0 {
            return;
        }
    }
    // SAFETY: the mapping made in `ensure_altstack` for this thread; the kernel no longer uses
    // it as this thread's alternate stack (disabled above, or replaced by someone else's), and
    // we are not running on it.
    let _ = unsafe { rustix::mm::munmap(base as *mut c_void, len) };
}

/// Gives this thread an alternate signal stack unless it has one.
fn ensure_altstack() {
    let mut current = MaybeUninit::<StackT>::uninit();
    // SAFETY: queries this thread's alternate stack into a valid out-parameter.
    if unsafe { sigaltstack(core::ptr::null(), current.as_mut_ptr()) } != 0 {
        return;
    }
    // SAFETY: initialized by the successful call above.
    let current = unsafe { current.assume_init() };
    if current.ss_flags & SS_DISABLE == 0 {
        return; // Rust's runtime (or the program) set one up already
    }
    let page = rustix::param::page_size();
    // SAFETY: `getauxval` has no preconditions.
    let min = unsafe { getauxval(AT_MINSIGSTKSZ) } as usize;
    let size = ALTSTACK_SIZE.max(min * 4).div_ceil(page) * page;
    let len = size + page;
    // SAFETY: a fresh anonymous mapping at an address the kernel picks; it aliases nothing.
    let Ok(base) = (unsafe {
        rustix::mm::mmap_anonymous(
            core::ptr::null_mut(),
            len,
            rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
            rustix::mm::MapFlags::PRIVATE
                | rustix::mm::MapFlags::NORESERVE
                | rustix::mm::MapFlags::STACK,
        )
    }) else {
        return;
    };
    // SAFETY: the lowest page of the mapping just made, unused; an overflow of the alternate
    // stack then faults (and, the signal being blocked in its handler, kills the process)
    // instead of running into the mapping below.
    let guarded = unsafe { rustix::mm::mprotect(base, page, rustix::mm::MprotectFlags::empty()) };
    let stack = StackT {
        ss_sp: (base as usize + page) as *mut c_void,
        ss_flags: 0,
        ss_size: size,
    };
    // SAFETY: installs the mapping above (writable, `size` bytes from `sp`) as this thread's
    // alternate stack; it stays mapped until `unregister` disables it.
    if guarded.is_err() || unsafe { sigaltstack(&stack, core::ptr::null_mut()) } != 0 {
        // SAFETY: the mapping made above, not handed to the kernel.
        let _ = unsafe { rustix::mm::munmap(base, len) };
        return;
    }
    ALTSTACK.set((base as usize, len));
}

/// Installs [`on_fault`] for `SIGSEGV` and `SIGBUS` once per process (again after detection was
/// turned off and on).
fn ensure_installed() {
    if INSTALL
        .compare_exchange(
            NOT_INSTALLED,
            INSTALLING,
            Ordering::Acquire,
            Ordering::Relaxed,
        )
        .is_err()
    {
        // Installed, or another thread is installing it right now.
        return;
    }
    let previous = PREVIOUS.0.get();
    for (i, sig) in [SIGSEGV, SIGBUS].into_iter().enumerate() {
        // SAFETY: we hold `INSTALLING`, so no one else writes `PREVIOUS`, and `on_fault` (the
        // only reader besides `set_overflow_detection`, which waits for `INSTALLED`) is not
        // installed yet. Querying the current action into a valid out-parameter.
        let ok = unsafe {
            let slot = (*previous)[i].as_mut_ptr();
            slot.write(action(SIG_DFL, 0));
            sigaction(sig, core::ptr::null(), slot) == 0
        };
        if !ok {
            INSTALL.store(NOT_INSTALLED, Ordering::Release);
            return;
        }
    }
    INSTALL.store(INSTALLED, Ordering::Release);
    let ours = action(on_fault as SigInfoHandler as usize, SA_SIGINFO | SA_ONSTACK);
    for sig in [SIGSEGV, SIGBUS] {
        // SAFETY: installs a handler with the `SA_SIGINFO` signature; the action is valid.
        unsafe { sigaction(sig, &ours, core::ptr::null_mut()) };
    }
}

/// Turns IRQ stack overflow detection on (the default) or off.
///
/// When on, creating a thread's IRQ stack also makes sure the thread has an alternate signal
/// stack (Rust-started threads have one already; others get a 64 KiB one, freed at thread exit),
/// and the first IRQ stack of the process installs a `SIGSEGV`/`SIGBUS` handler. A fault on an
/// IRQ stack's guard page then prints
///
/// ```text
/// irqstack: IRQ stack overflow on thread <tid> (guard page at <addr>)
/// ```
///
/// to stderr and aborts the process, as the kernel reports an overflow of its own stacks. Every
/// other fault is passed on to the handler that was installed before (Rust's own
/// "thread '...' has overflowed its stack" report keeps working), or gets the default action.
///
/// Turning it off restores the previous `SIGSEGV`/`SIGBUS` handlers if ours is still installed;
/// IRQ stacks created while it is off are not watched (an overflow then kills the process with
/// `SIGSEGV`, without a message). Call it at startup, before other threads create IRQ stacks, if
/// the program manages `SIGSEGV` itself. A handler that the program installs after the first
/// IRQ stack exists replaces this one (and the report) anyway.
///
/// ```
/// irqstack::set_overflow_detection(false);
/// assert!(irqstack::prepare_irq_stack().is_ok());
/// irqstack::set_overflow_detection(true);
/// ```
pub fn set_overflow_detection(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
    if enabled
        || INSTALL
            .compare_exchange(INSTALLED, INSTALLING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    let previous = PREVIOUS.0.get();
    for (i, sig) in [SIGSEGV, SIGBUS].into_iter().enumerate() {
        let mut current = MaybeUninit::<SigAction>::uninit();
        // SAFETY: queries the current action into a valid out-parameter; `PREVIOUS` was
        // written before `INSTALLED` was published (acquired above) and is not written while we
        // hold `INSTALLING`.
        unsafe {
            if sigaction(sig, core::ptr::null(), current.as_mut_ptr()) == 0
                && current.assume_init().sa_sigaction == on_fault as SigInfoHandler as usize
            {
                sigaction(sig, (*previous)[i].as_ptr(), core::ptr::null_mut());
            }
        }
    }
    INSTALL.store(NOT_INSTALLED, Ordering::Release);
}

// ---------------------------------------------------------------------------------------------
// The fault handler.

/// `SIGSEGV`/`SIGBUS` handler, on the alternate signal stack.
extern "C" fn on_fault(sig: c_int, info: *mut SigInfo, ctx: *mut c_void) {
    let (addr, code) = if info.is_null() {
        (0, 0)
    } else {
        // SAFETY: the kernel passes a valid `siginfo_t` to an `SA_SIGINFO` handler.
        unsafe { ((*info).si_addr() as usize, (*info).si_code) }
    };
    // si_code > 0: a fault the kernel raised, and then `si_addr` is the faulting address (for a
    // signal sent with `kill` or `sigqueue` the same bytes hold the sender's pid and uid).
    let from_kernel = code > 0;
    let low = GUARD.with(|g| g.load(Ordering::Relaxed));
    compiler_fence(Ordering::SeqCst);
    let high = if low == 0 {
        0
    } else {
        GUARD_END.with(|e| e.load(Ordering::Relaxed))
    };
    if from_kernel && ENABLED.load(Ordering::Relaxed) && (low..high).contains(&addr) {
        report_overflow(low);
    }
    // SAFETY: called from the handler of `sig` with the kernel's arguments.
    unsafe { chain(sig, from_kernel, info, ctx) }
}

/// Passes a fault that is not an IRQ stack overflow to the previous handler, or gives it the
/// default action. `from_kernel`: a fault, which recurs when the handler returns (the faulting
/// instruction is executed again), as opposed to a signal sent by a process.
///
/// # Safety
///
/// Called only from [`on_fault`], with its arguments.
unsafe fn chain(sig: c_int, from_kernel: bool, info: *mut SigInfo, ctx: *mut c_void) {
    let prev = if INSTALL.load(Ordering::Acquire) == INSTALLED {
        let i = if sig == SIGSEGV { 0 } else { 1 };
        // SAFETY: written before `INSTALLED` was published (acquired above), never written while
        // `INSTALLED` holds.
        Some(unsafe { (*PREVIOUS.0.get())[i].assume_init() })
    } else {
        None
    };
    match prev.map(|p| (p.sa_sigaction, p.sa_flags)) {
        Some((SIG_IGN, _)) if !from_kernel => {}
        None | Some((SIG_DFL | SIG_IGN, _)) => {
            let default = action(SIG_DFL, 0);
            // SAFETY: restores the default action; the signal is blocked while this handler
            // runs, so a re-raised one is delivered (and kills) when the handler returns, and a
            // fault recurs when the instruction is re-executed.
            unsafe {
                sigaction(sig, &default, core::ptr::null_mut());
                if !from_kernel {
                    raise(sig);
                }
            }
        }
        Some((handler, flags)) if flags & SA_SIGINFO != 0 => {
            // SAFETY: the previous action was installed with `SA_SIGINFO`, so its handler has
            // this signature and expects exactly what the kernel passed us.
            let f = unsafe { core::mem::transmute::<usize, SigInfoHandler>(handler) };
            f(sig, info, ctx);
        }
        Some((handler, _)) => {
            // SAFETY: installed without `SA_SIGINFO`: a one-argument handler.
            let f = unsafe { core::mem::transmute::<usize, PlainHandler>(handler) };
            f(sig);
        }
    }
}

/// Prints the overflow report with `write(2)` and aborts.
#[cold]
fn report_overflow(guard: usize) -> ! {
    let mut msg = Msg::default();
    msg.text(b"irqstack: IRQ stack overflow on thread ");
    msg.decimal(rustix::thread::gettid().as_raw_nonzero().get() as u64);
    msg.text(b" (guard page at 0x");
    msg.hex(guard as u64);
    msg.text(b")\n");
    let _ = rustix::io::write(rustix::stdio::stderr(), msg.bytes());
    std::process::abort()
}

/// A message formatted on the stack, without allocating (for the signal handler).
struct Msg {
    buf: [u8; 128],
    len: usize,
}

impl Default for Msg {
    fn default() -> Self {
        Msg {
            buf: [0; 128],
            len: 0,
        }
    }
}

impl Msg {
    fn text(&mut self, s: &[u8]) {
        for &b in s {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
    }

    fn decimal(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.text(&digits[i..]);
    }

    fn hex(&mut self, mut n: u64) {
        let mut digits = [0u8; 16];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b"0123456789abcdef"[(n & 15) as usize];
            n >>= 4;
            if n == 0 {
                break;
            }
        }
        self.text(&digits[i..]);
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}
