//! User-space backend: one guard-paged IRQ stack per thread.
//!
//! # The hot state: one thread-local word
//!
//! `TOS` (an `isize`) holds this thread's top-of-stack slot address, with its sign telling whether
//! the IRQ stack is free:
//!
//! | `TOS`                     | meaning                                                     |
//! |---------------------------|-------------------------------------------------------------|
//! | `slot` (> 0)              | free; the value is the 16-byte aligned top-of-stack slot    |
//! | `-slot` (< 0)             | in use by a switched call; negating it gives the slot back  |
//! | `IN_USE` (`isize::MIN`)   | being created, or the thread is exiting: run in place       |
//! | `UNMAPPED` (0)            | no IRQ stack yet: create one on first use                   |
//!
//! User-space addresses are below 2^47 (x86-64) or 2^48 (AArch64), so a slot is positive as an
//! `isize` and its negation lies strictly between `isize::MIN` and 0: the four kinds never
//! overlap. Entering reads the word once and tests it once (`test`): negative means run in place
//! (`js`, the only branch the in-place path takes), zero means first use (`je` on the same
//! flags), positive means free. Claiming and releasing are the same operation, `TOS = -TOS`: the
//! release needs no value from the claim, so the wrapper keeps no slot value across its call of
//! the trampoline (the trampoline gets the slot from the value the test loaded). The kernel needs
//! two per-CPU variables for this (`hardirq_stack_ptr` and `hardirq_stack_inuse`); folding them
//! into one word saves a load and a compare on the hot path, and negation lets that one word also
//! remember the slot while in use. Negation keeps both sentinels fixed (`-0 == 0`, and
//! `isize::MIN` wraps to itself): a release after the thread-exit destructor stored `IN_USE`
//! leaves it `IN_USE`, and no sentinel ever turns into something that looks free. (The issue's
//! first draft had `IN_USE` 0 and `UNMAPPED` 1: the same protocol, but "in place" then needs a
//! compare with 1 and LLVM tests `< 1` as `<= 0`, so it took a second compare; with 0 and
//! `isize::MIN` one `test` decides all three ways.)
//!
//! # Why this is async-signal-safe
//!
//! Signals are delivered to the same thread, between two instructions, so only the compiler may
//! reorder anything. The word is an `AtomicIsize`, not a `Cell`: it is shared between the thread
//! and its signal handlers, and the language orders plain accesses around a signal handler only
//! through atomics and `compiler_fence` (C++'s `atomic_signal_fence`); with a `Cell` the fences
//! would order nothing and the sharing would formally be a data race. `Relaxed` suffices (one
//! thread observes itself; no other thread reads the word) and costs nothing on x86-64: a relaxed
//! load, a negation and a relaxed store of the same address compile to one `neg qword ptr
//! fs:[...]` (LLVM folds atomic load-op-store of one address into the memory form of the
//! operation, without `lock`, which a relaxed load and store allow: nothing else can observe the
//! word between them). `compiler_fence` pins the order of the claim and the release relative to
//! the call of the trampoline.
//!
//! The argument, instruction by instruction. A signal handler that enters `#[on_irqstack]` code
//! either
//! - finds a positive slot: it claims it, switches, runs, switches back and releases it, which
//!   negates the word twice: it leaves exactly the value it found; or
//! - finds a negative value (`-slot` or `IN_USE`): it runs in place (on whichever stack it
//!   landed, below the interrupted code's stack pointer) and does not write the word at all.
//!
//! (`UNMAPPED` is the creation case, below.) So *any handler leaves the word as it found it*, and
//! the interrupted code may be stopped anywhere:
//! - between the test's load and the claim: the claim negates the word as it is in memory, which
//!   the handler left as the test saw it (positive); the claimed value is the slot the trampoline
//!   gets;
//! - inside the claim or the release when it is not one instruction (debug builds, other
//!   architectures: load, negate, store): between its load and its store the handler found the
//!   value the load read and left it, so the store writes its exact negation, as the single
//!   instruction would;
//! - from the claim until the release: the word is negative, handlers run in place, so nothing
//!   switches to the stack in use;
//! - after the release: the word is the slot again, free.
//!
//! A panic through the body unwinds through the wrapper, whose drop guard (`Switch`) releases.
//!
//! # Creation, at any instruction
//!
//! The first use (or [`prepare_irq_stack`]) creates the stack. The decision to create and the
//! mark that keeps everyone else out are one instruction: `TOS.compare_exchange(UNMAPPED, IN_USE)`
//! (a `lock cmpxchg`), and only the caller that exchanged `UNMAPPED` out creates. From that
//! instruction until the stack is published, `TOS` reads `IN_USE`, so a signal handler that
//! interrupts the creation runs in place: it never maps a second stack, never sees half-written
//! bounds, and never enters the allocator that the creation may be inside of (registering the
//! thread-exit destructor allocates). A signal that lands before the exchange finds `UNMAPPED`
//! and creates the stack itself, runs on it and releases it (a positive slot); the interrupted
//! call's exchange then fails, and it uses the stack the handler made. Either way the thread ends
//! up with exactly one stack. The creation publishes the stack free (one store of the slot over
//! `IN_USE`); the first use then enters again as any call does (the generated wrapper's cold
//! first-use function, see [`FirstUse::run`]; `try_enter`'s `enter_first_time` for the closure
//! form), and a signal between the publication and that claim switches to the stack and leaves
//! it as it found it. The bounds are two atomics written low first, high last, and read high
//! first, so no reader ever sees one stack's low end with another's high end.
//!
//! Creating from a signal handler that interrupted *other* code (the thread's first use happens
//! in the handler) is still not async-signal-safe: registering the destructor may allocate, and
//! the interrupted code may hold the allocator's lock. Call [`prepare_irq_stack`] at thread start.

use core::ops::Range;
use core::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering, compiler_fence};

use crate::{IrqStackError, current_sp};

/// `TOS` value while the IRQ stack is being created, or gone (the thread is exiting). A switched
/// call's claim is the negated slot instead (see the module documentation).
const IN_USE: isize = isize::MIN;
/// `TOS` value before the IRQ stack of this thread exists.
const UNMAPPED: isize = 0;

/// Default size of an IRQ stack created by the std backend: 64 KiB.
///
/// The kernel makes do with 16 KiB because its handlers are short and it never formats text on
/// the IRQ stack. User-space handlers may capture and print a backtrace, which needs more.
///
/// ```
/// assert_eq!(irqstack::DEFAULT_IRQ_STACK_SIZE, 64 * 1024);
/// ```
pub const DEFAULT_IRQ_STACK_SIZE: usize = 64 * 1024;

/// Smallest IRQ stack the std backend creates: 16 KiB, the kernel's x86-64 `IRQ_STACK_SIZE`.
///
/// ```
/// assert_eq!(irqstack::MIN_IRQ_STACK_SIZE, 16 * 1024);
/// ```
pub const MIN_IRQ_STACK_SIZE: usize = 16 * 1024;

/// Bytes reserved at the top of the stack for the saved stack pointer. 16, not 8: the trampoline
/// switches `rsp` to the slot address and then `call`s the body, and SysV wants `rsp % 16 == 0`
/// at a call, so the slot must be 16-byte aligned. The 8 bytes above the slot are padding.
const TOP_RESERVE: usize = crate::TOP_SLOT_OFFSET;
const _: () = assert!(TOP_RESERVE == 16);

static STACK_SIZE: AtomicUsize = AtomicUsize::new(DEFAULT_IRQ_STACK_SIZE);

std::thread_local! {
    /// The hot word (see the module documentation). No destructor, constant initializer: std
    /// compiles an access to a plain `%fs`-relative load or store, with no lazy-init check.
    static TOS: AtomicIsize = const { AtomicIsize::new(UNMAPPED) };
    /// Usable range `[LOW, HIGH)` of this thread's IRQ stack; `HIGH == 0` when there is none.
    /// Published low first, high last; cleared high first.
    static LOW: AtomicUsize = const { AtomicUsize::new(0) };
    static HIGH: AtomicUsize = const { AtomicUsize::new(0) };
    /// Set by the thread-exit destructor (or a creation that found the thread exiting): the
    /// stack is gone for good and handlers run in place.
    static EXITED: AtomicBool = const { AtomicBool::new(false) };
    /// Owns the mapping; its destructor unmaps the stack when the thread exits. Touched only when
    /// the stack is created, so its lazy destructor registration costs nothing on the hot path.
    static OWNER: Owner = const { Owner };
}

/// A claimed IRQ stack. Dropping it releases the stack (also when the body unwinds).
pub struct Switch {
    tos: usize,
}

impl Switch {
    /// Address of the top-of-stack slot, to pass to a trampoline.
    #[inline(always)]
    pub fn tos(&self) -> *mut u8 {
        self.tos as *mut u8
    }
}

impl Drop for Switch {
    #[inline(always)]
    fn drop(&mut self) {
        // The trampoline has returned (or is being unwound through): rsp is back on the
        // interrupted stack. Only now may a signal handler switch again.
        compiler_fence(Ordering::SeqCst);
        // Release: `-slot` becomes `slot` again. Reads nothing from `self`, so the wrapper has no
        // value to keep across the trampoline call (if the thread-exit destructor stored
        // `IN_USE` meanwhile, it stays `IN_USE`).
        negate();
    }
}

/// `TOS = -TOS`: the claim and the release. A relaxed load and store of one address, which LLVM
/// folds into one `neg qword ptr fs:[...]` on x86-64 (see "Why this is async-signal-safe" for why
/// it is right also where it stays a load, a negation and a store).
#[inline(always)]
fn negate() {
    TOS.with(|t| t.store(t.load(Ordering::Relaxed).wrapping_neg(), Ordering::Relaxed));
}

/// The claim, `TOS = -tos`, where `tos` is what the test has just loaded: the word still holds
/// it, since a signal handler that ran in between restored what it found.
///
/// x86-64 negates in memory (`negate`: one `neg qword ptr fs:[...]`, and `tos` stays in the
/// trampoline's argument register). Load/store architectures have no memory negation: there
/// `negate` is a load, a `neg` and a store, and storing the negated register instead saves the
/// reload (AArch64: `neg x8, x1; str x8, [x21, x20]` instead of `ldr`/`neg`/`str`). A signal
/// between the load of `tos` and this store finds the word free, switches, and gives it back as
/// it found it, so the store is still right.
#[inline(always)]
fn claim(tos: isize) {
    #[cfg(target_arch = "x86_64")]
    {
        let _ = tos;
        negate();
    }
    #[cfg(not(target_arch = "x86_64"))]
    TOS.with(|t| t.store(tos.wrapping_neg(), Ordering::Relaxed));
}

/// What a handler's wrapper does now (`#[on_irqstack]`'s generated code).
pub enum Entered {
    /// The IRQ stack is claimed for this call: switch to it.
    Switch(Switch),
    /// It is in use (or being created, or gone): run in place.
    InPlace,
    /// This thread has no IRQ stack yet: create it, then decide again (see [`FirstUse::run`]).
    FirstUse(FirstUse),
}

/// The first use on this thread: nothing is claimed yet.
pub struct FirstUse(());

impl FirstUse {
    /// Runs `f`, which creates the IRQ stack ([`create_for_first_use`]) and enters again.
    ///
    /// The generated wrapper passes a closure that tail-calls a cold function of its own with
    /// the handler's arguments, so that no argument stays live across the creation call in the
    /// wrapper: an out-of-line wrapper then keeps nothing in callee-saved registers on any path
    /// but the switch itself (BENCHMARKS.md, "Out of line"). The kernel backend's `FirstUse` is
    /// uninhabited, so there the closure is never even compiled.
    #[inline(always)]
    pub fn run<R>(self, f: impl FnOnce() -> R) -> R {
        f()
    }
}

/// Claims this thread's IRQ stack if it is free; tells apart "in use" and "not created yet".
#[inline(always)]
pub fn enter() -> Entered {
    let tos = TOS.with(|t| t.load(Ordering::Relaxed));
    if tos < UNMAPPED {
        // In use (`-slot`), being created or gone (`IN_USE`): every negative value.
        // Cold: a nested entry (a signal arriving inside a handler, a handler calling a handler)
        // is the rare case, and the hint makes the compiler lay this path out of line so that
        // the switching path falls through to the code after the call with no jump
        // (BENCHMARKS.md). Tested first: the in-place path takes a single branch.
        core::hint::cold_path();
        Entered::InPlace
    } else if tos != UNMAPPED {
        // Claim: the word is still `tos` (a signal handler that ran since the load restored
        // what it found), so this stores `-tos`. Both tests compare with 0: one `test`, whose
        // flags decide both branches.
        claim(tos);
        // The claim must be visible to a signal handler before rsp moves to the IRQ stack.
        compiler_fence(Ordering::SeqCst);
        Entered::Switch(Switch { tos: tos as usize })
    } else {
        core::hint::cold_path();
        Entered::FirstUse(FirstUse(()))
    }
}

/// Claims this thread's IRQ stack. `None`: it is in use already, run in place. Creates the stack
/// on the thread's first use.
#[inline(always)]
pub fn try_enter() -> Option<Switch> {
    match enter() {
        Entered::Switch(s) => Some(s),
        Entered::InPlace => None,
        Entered::FirstUse(_) => enter_first_time(),
    }
}

/// The first use on this thread (closure form): create the stack, then claim it.
#[cold]
#[inline(never)]
fn enter_first_time() -> Option<Switch> {
    create_for_first_use();
    match enter() {
        Entered::Switch(s) => Some(s),
        // Being created by the code this call interrupted (we run in its signal handler), or
        // gone (thread exit): run in place. (A handler that interrupted us ran to completion
        // and left the word as it found it.)
        _ => None,
    }
}

/// Creates this thread's IRQ stack for its first use, published free; the caller then enters
/// again. Aborts with a message if the stack cannot be mapped (there is no caller to return the
/// error to; [`prepare_irq_stack`] at thread start reports it instead).
///
/// Leaves `TOS` free (created), `IN_USE` (the thread is exiting, or this runs in a signal handler
/// that interrupted the creation: the entry then runs in place), or as a signal handler that
/// created the stack meanwhile left it: never `UNMAPPED`, so entering again cannot come back
/// here.
#[cold]
#[inline(never)]
pub fn create_for_first_use() {
    match prepare_irq_stack() {
        Ok(_) | Err(IrqStackError::ThreadExiting | IrqStackError::CreationInterrupted) => {}
        Err(err) => abort_with(format_args!(
            "irqstack: cannot create the IRQ stack of thread {}: {err}; \
             call irqstack::prepare_irq_stack() at thread start to handle this error",
            rustix::thread::gettid().as_raw_nonzero()
        )),
    }
}

/// Writes a message to stderr without allocating, then aborts. Used where there is no caller to
/// return an error to (inside a handler wrapper, possibly in a signal handler).
#[cold]
pub(crate) fn abort_with(args: core::fmt::Arguments<'_>) -> ! {
    use std::io::Write;
    // Stack buffer: no allocation, so this also works when the heap is the problem.
    let mut buf = [0u8; 512];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = cursor.write_fmt(args);
    let len = cursor.position() as usize;
    let _ = rustix::io::write(rustix::stdio::stderr(), &buf[..len]);
    let _ = rustix::io::write(rustix::stdio::stderr(), b"\n");
    std::process::abort()
}

/// Creates this thread's IRQ stack. The caller has just exchanged `UNMAPPED` in `TOS` for
/// `IN_USE` (so it alone creates, and every handler meanwhile runs in place).
///
/// Returns the top slot with `TOS` still `IN_USE`: the caller publishes it or keeps it claimed.
/// On a mapping error `TOS` is `UNMAPPED` again (a later use retries); when the thread is exiting
/// it stays `IN_USE` for good.
fn create_marked() -> Result<usize, IrqStackError> {
    let page = rustix::param::page_size();
    let size = round_up(STACK_SIZE.load(Ordering::Relaxed), page);
    let total = size + page;
    let unmark = |e: rustix::io::Errno| {
        TOS.with(|t| t.store(UNMAPPED, Ordering::Relaxed));
        IrqStackError::Map(e.raw_os_error())
    };
    // SAFETY: a fresh anonymous mapping at an address the kernel picks; it aliases nothing.
    let base = unsafe {
        rustix::mm::mmap_anonymous(
            core::ptr::null_mut(),
            total,
            rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
            rustix::mm::MapFlags::PRIVATE
                | rustix::mm::MapFlags::NORESERVE
                | rustix::mm::MapFlags::STACK,
        )
    }
    .map_err(unmark)?;
    // SAFETY: the lowest page of the mapping made above; nothing points into it yet. Making it
    // inaccessible turns an overflow of the IRQ stack into a fault instead of silent corruption.
    if let Err(e) = unsafe { rustix::mm::mprotect(base, page, rustix::mm::MprotectFlags::empty()) }
    {
        // SAFETY: unmapping the mapping made above, still unused.
        let _ = unsafe { rustix::mm::munmap(base, total) };
        return Err(unmark(e));
    }
    let low = base as usize + page;
    let high = base as usize + total;
    // Register the destructor before publishing the stack (this may allocate: TOS is IN_USE, so
    // no handler of this thread enters the allocator through us meanwhile). If the thread is
    // already tearing down its thread-locals, give the mapping back and run in place from now on.
    if OWNER.try_with(|_| ()).is_err() {
        // SAFETY: as above, the mapping is unused.
        let _ = unsafe { rustix::mm::munmap(base, total) };
        EXITED.with(|e| e.store(true, Ordering::Relaxed));
        return Err(IrqStackError::ThreadExiting);
    }
    // Overflow detection (overflow.rs): watch the guard page, ensure a sigaltstack + handler;
    // and tell Valgrind this range is a stack.
    crate::overflow::register(base as usize, low, high);
    // SAFETY: the padding word above the top slot, inside the fresh mapping (8-byte aligned,
    // written before the stack is published). The trampoline's CFI reads it as its return
    // address: it leads unwinders across the switch (switch_frames.rs; AArch64 and riscv64:
    // arch/<arch>/switch_frames.rs). Nothing else uses it.
    unsafe { ((high - 8) as *mut usize).write(crate::switch_frames::switch_return_address()) };
    LOW.with(|l| l.store(low, Ordering::Relaxed));
    compiler_fence(Ordering::SeqCst);
    HIGH.with(|h| h.store(high, Ordering::Relaxed));
    compiler_fence(Ordering::SeqCst);
    Ok(high - TOP_RESERVE)
}

fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// Frees the IRQ stack when its thread exits.
struct Owner;

impl Drop for Owner {
    fn drop(&mut self) {
        // From here on every handler of this thread runs in place: a signal that arrives after
        // this store must not switch to a stack that is about to disappear. If a switched call
        // is in progress (the thread exits from inside a handler), its release negates
        // `IN_USE`, which leaves it `IN_USE`.
        TOS.with(|t| t.store(IN_USE, Ordering::Relaxed));
        EXITED.with(|e| e.store(true, Ordering::Relaxed));
        compiler_fence(Ordering::SeqCst);
        let high = HIGH.with(|h| h.swap(0, Ordering::Relaxed));
        compiler_fence(Ordering::SeqCst);
        let low = LOW.with(|l| l.swap(0, Ordering::Relaxed));
        if high == 0 {
            return;
        }
        // Overflow detection (overflow.rs): forget the guard page, free our sigaltstack if any.
        crate::overflow::unregister();
        let page = rustix::param::page_size();
        if (low..high).contains(&current_sp()) {
            // A destructor running on the IRQ stack itself (thread exit from inside a handler):
            // unmapping would pull the stack from under our feet. Leak it instead.
            return;
        }
        // SAFETY: the mapping made in `create_marked`, guard page included; nothing runs on it
        // (checked above) and `TOS`/`LOW`/`HIGH` no longer point into it.
        let _ = unsafe { rustix::mm::munmap((low - page) as *mut _, high - low + page) };
    }
}

/// Sets the size of the IRQ stacks created after this call.
///
/// The size is rounded up to a multiple of the page size and raised to at least
/// [`MIN_IRQ_STACK_SIZE`] (16 KiB). A guard page is added below it. Stacks that already exist keep
/// their size. The default is [`DEFAULT_IRQ_STACK_SIZE`] (64 KiB).
///
/// ```
/// irqstack::set_irq_stack_size(256 * 1024);
/// std::thread::spawn(|| {
///     let r = irqstack::prepare_irq_stack().unwrap();
///     assert_eq!(r.end - r.start, 256 * 1024);
/// }).join().unwrap();
/// ```
pub fn set_irq_stack_size(bytes: usize) {
    STACK_SIZE.store(bytes.max(MIN_IRQ_STACK_SIZE), Ordering::Relaxed);
}

/// Creates this thread's IRQ stack now, if it does not exist yet, and returns its bounds.
///
/// Handlers create the stack on first use. That first use allocates (the thread-exit destructor
/// registration), which is not async-signal-safe if the signal interrupted the allocator, and it
/// cannot report an error (it aborts instead). Call this at thread start to do both safely. A
/// signal may arrive at any instruction of this call: its handlers run in place until the stack
/// is published, then switch to it.
///
/// Errors: [`IrqStackError::Map`] if `mmap`/`mprotect` fail (a later call retries);
/// [`IrqStackError::ThreadExiting`] during thread exit; [`IrqStackError::CreationInterrupted`]
/// when called from a signal handler that interrupted this thread's own creation of its stack.
///
/// ```
/// let r = irqstack::prepare_irq_stack().expect("mmap failed");
/// assert!(r.start < r.end);
/// assert_eq!(irqstack::irq_stack_bounds(), Some(r));
/// ```
pub fn prepare_irq_stack() -> Result<Range<usize>, IrqStackError> {
    if let Some(r) = bounds() {
        return Ok(r);
    }
    // Decide and mark in one instruction, as in `enter_first_time`.
    match TOS.with(|t| t.compare_exchange(UNMAPPED, IN_USE, Ordering::Relaxed, Ordering::Relaxed)) {
        Ok(_) => {
            let tos = create_marked()?;
            // Publish the stack free: from here on handlers switch to it.
            TOS.with(|t| t.store(tos as isize, Ordering::Relaxed));
        }
        Err(IN_USE) if EXITED.with(|e| e.load(Ordering::Relaxed)) => {
            return Err(IrqStackError::ThreadExiting);
        }
        // No bounds yet and marked: the code this signal handler interrupted is creating it.
        Err(IN_USE) => return Err(IrqStackError::CreationInterrupted),
        // A signal handler that landed after our `bounds()` created it (free or, if this runs
        // inside it, in use): the exchange left the word alone.
        Err(_) => {}
    }
    bounds().ok_or(IrqStackError::ThreadExiting)
}

/// This thread's IRQ stack, `[low, high)` without the guard page, once it exists.
#[inline]
pub fn bounds() -> Option<Range<usize>> {
    let high = HIGH.with(|h| h.load(Ordering::Relaxed));
    compiler_fence(Ordering::SeqCst);
    let low = LOW.with(|l| l.load(Ordering::Relaxed));
    (high != 0).then_some(low..high)
}

/// Address of the top slot (where the trampoline saves the interrupted stack pointer).
#[inline]
pub fn top_slot() -> Option<usize> {
    let high = HIGH.with(|h| h.load(Ordering::Relaxed));
    (high != 0).then(|| high - TOP_RESERVE)
}
