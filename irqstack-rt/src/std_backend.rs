//! User-space backend: one guard-paged IRQ stack per thread.
//!
//! # The hot state: one thread-local word
//!
//! `TOS` holds this thread's top-of-stack slot address while the IRQ stack is free, and a small
//! sentinel otherwise:
//!
//! | `TOS`        | meaning                                                        |
//! |--------------|----------------------------------------------------------------|
//! | `IN_USE` (0) | the IRQ stack is in use (or the thread is exiting): run in place |
//! | `UNMAPPED` (1) | no IRQ stack yet: create one on first use                    |
//! | other        | free; the value is the 16-byte aligned top-of-stack slot         |
//!
//! Entering reads the word once: a valid slot means "free", and storing `IN_USE` claims it. The
//! kernel needs two per-CPU variables for this (`hardirq_stack_ptr` and `hardirq_stack_inuse`);
//! folding them into one word saves a load and a compare on the hot path.
//!
//! # Why this is async-signal-safe
//!
//! Signals are delivered to the same thread, between two instructions, so only the compiler may
//! reorder anything: `compiler_fence` pins the order of the stores relative to the call of the
//! trampoline (no CPU fence is needed for a thread observing itself). A signal handler that enters
//! `#[on_irqstack]` code sees either
//! - a slot value (before the claim, or after the release): the IRQ stack is free and not being
//!   switched to. The handler switches, runs, switches back and restores the word before the
//!   interrupted code continues, so the interrupted code finds everything as it left it; or
//! - `IN_USE` (anywhere from the claim to the release): the handler runs in place, on whichever
//!   stack it landed, below the interrupted code's stack pointer.
//!
//! The first use creates the stack with `mmap`, which is async-signal-safe, but registering the
//! thread-exit destructor is not (glibc may allocate). Call [`prepare_irq_stack`] at thread start
//! if the first use may be from a signal handler.

use core::cell::Cell;
use core::ops::Range;
use core::sync::atomic::{AtomicUsize, Ordering, compiler_fence};

use crate::{IrqStackError, current_sp};

/// `TOS` value while the IRQ stack is in use.
const IN_USE: usize = 0;
/// `TOS` value before the IRQ stack of this thread exists.
const UNMAPPED: usize = 1;

/// Default size of an IRQ stack created by the std backend: 64 KiB.
///
/// The kernel makes do with 16 KiB because its handlers are short and it never formats text on
/// the IRQ stack. User-space handlers may capture and print a backtrace, which needs more.
pub const DEFAULT_IRQ_STACK_SIZE: usize = 64 * 1024;

/// Smallest IRQ stack the std backend creates: 16 KiB, the kernel's x86-64 `IRQ_STACK_SIZE`.
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
    static TOS: Cell<usize> = const { Cell::new(UNMAPPED) };
    /// Usable range `[low, high)` of this thread's IRQ stack; `(0, 0)` when there is none.
    static BOUNDS: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
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
        TOS.set(self.tos);
    }
}

/// Claims this thread's IRQ stack. `None`: it is in use already, run in place.
#[inline(always)]
pub fn try_enter() -> Option<Switch> {
    let tos = TOS.get();
    if tos > UNMAPPED {
        TOS.set(IN_USE);
        // The claim must be visible to a signal handler before rsp moves to the IRQ stack.
        compiler_fence(Ordering::SeqCst);
        Some(Switch { tos })
    } else if tos != UNMAPPED {
        // IN_USE: the only value below UNMAPPED. Written as `!= UNMAPPED` so that the flags of
        // the compare above decide this branch too. Cold: a nested entry (a signal arriving
        // inside a handler, a handler calling a handler) is the rare case, and the hint makes
        // the compiler lay this path out of line so that the switching path falls through to
        // the code after the call with no jump (BENCHMARKS.md: one instruction per call).
        core::hint::cold_path();
        None
    } else {
        enter_first_time()
    }
}

#[cold]
#[inline(never)]
fn enter_first_time() -> Option<Switch> {
    match create() {
        Ok(()) => try_enter(),
        // The thread is exiting (its thread-locals are being destroyed): run in place.
        Err(IrqStackError::ThreadExiting) => None,
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

/// Creates this thread's IRQ stack if it does not exist yet.
fn create() -> Result<(), IrqStackError> {
    if BOUNDS.get().1 != 0 {
        return Ok(());
    }
    if TOS.get() == IN_USE {
        // Only the destructor leaves IN_USE with no stack mapped.
        return Err(IrqStackError::ThreadExiting);
    }
    let page = rustix::param::page_size();
    let size = round_up(STACK_SIZE.load(Ordering::Relaxed), page);
    let total = size + page;
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
    .map_err(|e| IrqStackError::Map(e.raw_os_error()))?;
    // SAFETY: the lowest page of the mapping made above; nothing points into it yet. Making it
    // inaccessible turns an overflow of the IRQ stack into a fault instead of silent corruption.
    if let Err(e) = unsafe { rustix::mm::mprotect(base, page, rustix::mm::MprotectFlags::empty()) }
    {
        // SAFETY: unmapping the mapping made above, still unused.
        let _ = unsafe { rustix::mm::munmap(base, total) };
        return Err(IrqStackError::Map(e.raw_os_error()));
    }
    let low = base as usize + page;
    let high = base as usize + total;
    // Register the destructor before publishing the stack; if the thread is already tearing
    // down its thread-locals, give the mapping back and run in place from now on.
    if OWNER.try_with(|_| ()).is_err() {
        // SAFETY: as above, the mapping is unused.
        let _ = unsafe { rustix::mm::munmap(base, total) };
        TOS.set(IN_USE);
        return Err(IrqStackError::ThreadExiting);
    }
    // Overflow detection (overflow.rs): watch the guard page, ensure a sigaltstack + handler;
    // and tell Valgrind this range is a stack.
    crate::overflow::register(base as usize, low, high);
    BOUNDS.set((low, high));
    compiler_fence(Ordering::SeqCst);
    TOS.set(high - TOP_RESERVE);
    Ok(())
}

fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// Frees the IRQ stack when its thread exits.
struct Owner;

impl Drop for Owner {
    fn drop(&mut self) {
        let (low, high) = BOUNDS.get();
        if high == 0 {
            return;
        }
        // From here on every handler of this thread runs in place: a signal that arrives after
        // this store must not switch to a stack that is about to disappear.
        TOS.set(IN_USE);
        compiler_fence(Ordering::SeqCst);
        BOUNDS.set((0, 0));
        // Overflow detection (overflow.rs): forget the guard page, free our sigaltstack if any.
        crate::overflow::unregister();
        let page = rustix::param::page_size();
        if (low..high).contains(&current_sp()) {
            // A destructor running on the IRQ stack itself (thread exit from inside a handler):
            // unmapping would pull the stack from under our feet. Leak it instead.
            return;
        }
        // SAFETY: the mapping made in `create`, guard page included; nothing runs on it (checked
        // above) and `TOS`/`BOUNDS` no longer point into it.
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
/// registration), which is not async-signal-safe, and it cannot report an error (it aborts
/// instead). Call this at thread start, before signals that run `#[on_irqstack]` handlers can
/// arrive, to do both safely.
///
/// ```
/// let r = irqstack::prepare_irq_stack().expect("mmap failed");
/// assert!(r.start < r.end);
/// assert_eq!(irqstack::irq_stack_bounds(), Some(r));
/// ```
pub fn prepare_irq_stack() -> Result<Range<usize>, IrqStackError> {
    create()?;
    let (low, high) = BOUNDS.get();
    Ok(low..high)
}

/// This thread's IRQ stack, `[low, high)` without the guard page, once it exists.
#[inline]
pub fn bounds() -> Option<Range<usize>> {
    let (low, high) = BOUNDS.get();
    (high != 0).then_some(low..high)
}

/// Address of the top slot (where the trampoline saves the interrupted stack pointer).
#[inline]
pub fn top_slot() -> Option<usize> {
    let (_, high) = BOUNDS.get();
    (high != 0).then(|| high - TOP_RESERVE)
}
