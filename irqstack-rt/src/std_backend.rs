//! User-space backend: one guard-paged IRQ stack per thread.
//!
//! # The hot state: the top slot itself
//!
//! The thread-local `TOS` points at a word whose value says whether the IRQ stack is free:
//!
//! | `TOS` points at                    | the word                                   | entering |
//! |------------------------------------|--------------------------------------------|----------|
//! | the top slot of this thread's stack | 0                                          | switch   |
//! | the top slot of this thread's stack | the interrupted stack pointer (> 0)        | in place |
//! | `NO_STACK_YET` (a static)          | -1                                         | create, then enter again |
//! | `RUN_IN_PLACE` (a static)          | 1                                          | in place (being created, or the thread is exiting) |
//!
//! The in-use flag *is* the top slot. The trampoline's first instruction, `mov [tos], rsp`,
//! saves the interrupted stack pointer where unwinders and [`interrupted_sp`] read it, and that
//! same store claims the stack: a user-space stack pointer is never 0 and is positive as an
//! `isize` (addresses below 2^47 on x86-64, 2^48 on AArch64, 2^38..2^56 on riscv64). After
//! the body returns, the trampoline switches back and stores 0: the release. So the wrapper
//! writes nothing: it loads `TOS`, compares the word it points at with 0 (one `cmp`, whose flags
//! decide all three ways: greater runs in place, less is the first use, equal switches) and
//! jumps to the trampoline, which the compiler reaches by a tail call because nothing in the
//! wrapper follows it. The kernel keeps the flag in a per-CPU variable of its own
//! (`hardirq_stack_inuse`) because its trampoline is inline and its release is C; here both ends
//! of the claim are in the trampoline's assembly, which already has the slot in a register.
//!
//! The sentinels are statics that nothing ever writes (a claim only stores into a word it found
//! 0, and they are never 0), so `TOS` always points at a live word and the wrapper's load needs
//! no null test.
//!
//! # Why this is async-signal-safe
//!
//! Signals are delivered to the same thread, between two instructions, so only the compiler may
//! reorder anything. `TOS` and the slot are atomics (relaxed: one thread observes itself), and
//! the trampoline is an opaque call, so the compiler keeps the wrapper's load before it. A signal
//! handler that enters `#[on_irqstack]` code either
//! - finds the word 0: it stores its own interrupted stack pointer there, switches, runs,
//!   switches back and stores 0 again: it leaves the word as it found it; or
//! - finds it positive (in use, or `RUN_IN_PLACE`) or -1: it runs in place (on whichever stack
//!   it landed, below the interrupted code's stack pointer) and writes nothing.
//!
//! (`NO_STACK_YET` is the creation case, below.) So *any handler leaves the word as it found
//! it*, and the interrupted code may be stopped anywhere:
//! - between the wrapper's load and the trampoline's claim: the word is still 0, the claim is
//!   right;
//! - between the claim and the switch (`mov [tos], rsp` done, `mov rsp, tos` not yet): the word
//!   is in use, the handler runs in place on the interrupted stack;
//! - while the body runs: in use, the handler runs in place on the IRQ stack, below the body;
//! - after the body returned and before the switch back: still in use, so a handler runs in
//!   place below `tos`, where nothing of the trampoline's lives any more;
//! - between the switch back and the release: still in use, the handler runs in place on the
//!   interrupted stack;
//! - after the release: the stack is free and nothing runs on it.
//!
//! The release is the last thing and comes after `rsp` left the IRQ stack: released any
//! earlier, a handler landing on the IRQ stack (at `rsp == tos`, in the red zone's shadow) would
//! find it free and switch to its top, over its own frames. The trampolines of the three
//! architectures keep `tos` in a scratch register across the switch back for that store.
//!
//! A panic through the body unwinds through the trampoline, whose landing pad (its LSDA, read by
//! Rust's personality routine) switches back and releases in the same order before unwinding on.
//!
//! # Creation, at any instruction
//!
//! The first use (or [`prepare_irq_stack`]) creates the stack. The decision to create and the
//! mark that keeps everyone else out are one instruction: `TOS.compare_exchange(NO_STACK_YET,
//! RUN_IN_PLACE)` (a `lock cmpxchg`), and only the caller that exchanged `NO_STACK_YET` out
//! creates. From that instruction until the stack is published, `TOS` points at
//! `RUN_IN_PLACE`, so a signal handler that interrupts the creation runs in place: it never maps
//! a second stack, never sees half-written bounds, and never enters the allocator that the
//! creation may be inside of (registering the thread-exit destructor allocates). A signal that
//! lands before the exchange finds `NO_STACK_YET` and creates the stack itself, runs on it and
//! releases it; the interrupted call's exchange then fails, and it uses the stack the handler
//! made. Either way the thread ends up with exactly one stack. The creation publishes the stack
//! free (one store of the slot's address, whose word the fresh mapping holds at 0); the first use
//! then enters again as any call does (the generated wrapper's cold first-use function, see
//! [`FirstUse::run`]; `try_enter`'s `enter_first_time` for the closure form). The bounds are two
//! atomics written low first, high last, and read high first, so no reader ever sees one
//! stack's low end with another's high end.
//!
//! Creating from a signal handler that interrupted *other* code (the thread's first use happens
//! in the handler) is still not async-signal-safe: registering the destructor may allocate, and
//! the interrupted code may hold the allocator's lock. Call [`prepare_irq_stack`] at thread start.
//!
//! [`interrupted_sp`]: crate::interrupted_sp

use core::ops::Range;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering, compiler_fence};

use crate::{IrqStackError, current_sp};

/// What `TOS` points at before this thread's IRQ stack exists: "create it, then enter again".
/// Never written (a claim stores only into a word it found 0), so it may live in read-only
/// memory.
static NO_STACK_YET: isize = -1;
/// What `TOS` points at while the IRQ stack is being created, and after the thread-exit
/// destructor ran: "run in place". Never written.
static RUN_IN_PLACE: isize = 1;

/// `&NO_STACK_YET` as `TOS` holds it.
const fn no_stack_yet() -> *mut isize {
    (&raw const NO_STACK_YET).cast_mut()
}

/// `&RUN_IN_PLACE` as `TOS` holds it.
const fn run_in_place() -> *mut isize {
    (&raw const RUN_IN_PLACE).cast_mut()
}

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
    /// The hot pointer (see the module documentation). No destructor, constant initializer: std
    /// compiles an access to a plain `%fs`-relative load or store, with no lazy-init check.
    static TOS: AtomicPtr<isize> = const { AtomicPtr::new(no_stack_yet()) };
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

/// A free IRQ stack, found by [`enter`]: its top slot, for the trampoline, which claims it by
/// storing the interrupted stack pointer there and releases it by storing 0 after switching back
/// (also when the body unwinds: its landing pad). Nothing to do when dropped.
pub struct Switch {
    tos: *mut isize,
}

impl Switch {
    /// Address of the top-of-stack slot, to pass to a trampoline.
    #[inline(always)]
    pub fn tos(&self) -> *mut u8 {
        self.tos.cast()
    }

    /// After the trampoline returned: nothing to do, the trampoline released the stack. (The
    /// kernel backends' `finish` releases.)
    #[inline(always)]
    pub fn finish(self) {}
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

/// Finds out whether this thread's IRQ stack is free; tells apart "in use" and "not created
/// yet". Writes nothing: the trampoline claims (see the module documentation).
#[inline(always)]
pub fn enter() -> Entered {
    let tos = TOS.with(|t| t.load(Ordering::Relaxed));
    // SAFETY: `TOS` always points at a live, aligned word: a sentinel static, or the top slot of
    // this thread's IRQ stack, which stays mapped until the thread-exit destructor has pointed
    // `TOS` back at a sentinel (and that destructor runs on this thread, not between our load
    // and this one, since it never runs in a signal handler). A plain load, not an atomic one:
    // no Rust code ever writes the word (the sentinels are immutable statics; a stack's slot is
    // 0 from `mmap` and written only by the trampolines' assembly), and the only writers are
    // this thread's own trampolines, which run either in program order (before this load or
    // after the call that follows it, which the compiler cannot move it across: the trampoline
    // is opaque) or in a signal handler, which completes before this code resumes and leaves the
    // word as it found it. So every load, wherever the compiler puts it or however often it
    // repeats it, reads the same value; and LLVM folds a plain load into the compare (`cmp qword
    // ptr [rsi], 0`), which it does not do with an atomic one: one instruction on every path.
    let word = unsafe { tos.read() };
    if word > 0 {
        // In use (the interrupted stack pointer), being created or gone (`RUN_IN_PLACE`): run in
        // place. Tested first: the in-place path takes one branch (`jg`) and the switching one
        // reaches the trampoline by `je`, a conditional tail call out of line. Cold: a nested
        // entry (a signal arriving inside a handler, a handler calling a handler) is the rare
        // case, and inlined into a loop the hint makes the compiler lay this path out of line,
        // so that the switching path falls through to the code after the call with no jump
        // (BENCHMARKS.md). Only this branch gets the hint: in a draft with one on the first-use
        // branch too, LLVM materialized the enum's discriminant and tested it again (three more
        // branches on every path).
        core::hint::cold_path();
        Entered::InPlace
    } else if word == 0 {
        // Free: the trampoline claims it.
        Entered::Switch(Switch { tos })
    } else {
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
/// Leaves `TOS` at a free slot (created), at `RUN_IN_PLACE` (the thread is exiting, or this runs in a signal handler
/// that interrupted the creation: the entry then runs in place), or as a signal handler that
/// created the stack meanwhile left it: never at `NO_STACK_YET`, so entering again cannot come back
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

/// Creates this thread's IRQ stack. The caller has just exchanged `NO_STACK_YET` in `TOS` for
/// `RUN_IN_PLACE` (so it alone creates, and every handler meanwhile runs in place).
///
/// Returns the top slot (its word 0: free) with `TOS` still at `RUN_IN_PLACE`: the caller
/// publishes it. On a mapping error `TOS` is at `NO_STACK_YET` again (a later use retries); when
/// the thread is exiting it stays at `RUN_IN_PLACE` for good.
fn create_marked() -> Result<usize, IrqStackError> {
    let page = rustix::param::page_size();
    let size = round_up(STACK_SIZE.load(Ordering::Relaxed), page);
    let total = size + page;
    let unmark = |e: rustix::io::Errno| {
        TOS.with(|t| t.store(no_stack_yet(), Ordering::Relaxed));
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
    // Register the destructor before publishing the stack (this may allocate: TOS is at RUN_IN_PLACE, so
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
        // is in progress (the thread exits from inside a handler), its release stores 0 into the
        // slot, which stays mapped: the stack is leaked below when we run on it, and otherwise
        // the call's frames are gone (an exit unwinds them, releasing, before destructors run).
        TOS.with(|t| t.store(run_in_place(), Ordering::Relaxed));
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
    let marked = TOS.with(|t| {
        t.compare_exchange(
            no_stack_yet(),
            run_in_place(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        )
    });
    match marked {
        Ok(_) => {
            let tos = create_marked()?;
            // Publish the stack free (its top slot holds 0, as the fresh mapping does): from
            // here on handlers switch to it.
            TOS.with(|t| t.store(tos as *mut isize, Ordering::Relaxed));
        }
        Err(p) if p == run_in_place() && EXITED.with(|e| e.load(Ordering::Relaxed)) => {
            return Err(IrqStackError::ThreadExiting);
        }
        // No bounds yet and marked: the code this signal handler interrupted is creating it.
        Err(p) if p == run_in_place() => return Err(IrqStackError::CreationInterrupted),
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
