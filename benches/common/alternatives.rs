//! Rows for the README's comparison table ("Why not sigaltstack, psm/stacker or corosensei?") that
//! only the criterion bench measures: `corosensei::on_stack`, and a signal raised at the calling
//! thread whose handler runs on an alternate signal stack (`SA_ONSTACK`) or is an
//! `#[on_irqstack] extern "C" fn`. Every row computes `x.wrapping_add(1)`, like the others.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use corosensei::stack::DefaultStack;
use irqstack::on_irqstack;

/// Row 9a: a reusable, guard-paged stack for `corosensei::on_stack`, the size of an IRQ stack.
pub struct CoroStack(DefaultStack);

impl CoroStack {
    /// Maps a stack of `size` bytes.
    pub fn new(size: usize) -> CoroStack {
        CoroStack(DefaultStack::new(size).expect("mapping the corosensei stack failed"))
    }

    /// Row 9a: `x.wrapping_add(1)` on this stack, through `corosensei::on_stack`.
    #[inline(always)]
    pub fn call(&mut self, x: u64) -> u64 {
        corosensei::on_stack(&mut self.0, || x.wrapping_add(1))
    }
}

/// The value a signal handler works on, and its result.
static SIGNAL_IN: AtomicU64 = AtomicU64::new(0);
static SIGNAL_OUT: AtomicU64 = AtomicU64::new(0);
/// A stack address seen by the last run of [`on_altstack`].
static ALTSTACK_SP: AtomicUsize = AtomicUsize::new(0);

/// Row 9b: a plain handler; installed with `SA_ONSTACK`, so the kernel runs it on the
/// alternate signal stack.
extern "C" fn on_altstack(_sig: libc::c_int) {
    let here = 0u8;
    ALTSTACK_SP.store(std::hint::black_box(&here) as *const u8 as usize, Relaxed);
    SIGNAL_OUT.store(SIGNAL_IN.load(Relaxed).wrapping_add(1), Relaxed);
}

/// Row 9c: the handler is an `#[on_irqstack]` function: the kernel delivers the signal on the
/// thread's stack, the handler's body runs on the IRQ stack.
#[on_irqstack]
extern "C" fn on_irq_stack(_sig: libc::c_int) {
    SIGNAL_OUT.store(SIGNAL_IN.load(Relaxed).wrapping_add(1), Relaxed);
}

/// Rows 9b and 9c: the two handlers installed for this thread (SIGUSR1 on the alternate signal
/// stack, SIGUSR2 through irqstack).
pub struct Signals {
    pid: libc::c_long,
    tid: libc::c_long,
    altstack: std::ops::Range<usize>,
}

impl Signals {
    /// Row 9b's signal.
    pub const ALTSTACK: libc::c_int = libc::SIGUSR1;
    /// Row 9c's signal.
    pub const IRQSTACK: libc::c_int = libc::SIGUSR2;

    /// Installs the alternate signal stack (`size` bytes) of the calling thread and both handlers,
    /// then checks once that row 9b's handler runs on that stack.
    pub fn install(size: usize) -> Signals {
        let stack: &'static mut [u8] = Vec::leak(vec![0u8; size]);
        let altstack = stack.as_ptr() as usize..stack.as_ptr() as usize + size;
        // SAFETY: `ss` describes memory that stays allocated for the life of the process; the
        // sigaction structures are fully initialized and the handlers have the plain
        // (non-SA_SIGINFO) signature.
        unsafe {
            let ss = libc::stack_t {
                ss_sp: stack.as_mut_ptr().cast(),
                ss_flags: 0,
                ss_size: size,
            };
            assert_eq!(libc::sigaltstack(&ss, std::ptr::null_mut()), 0);
            for (sig, handler, flags) in [
                (
                    Self::ALTSTACK,
                    on_altstack as *const () as usize,
                    libc::SA_ONSTACK,
                ),
                (Self::IRQSTACK, on_irq_stack as *const () as usize, 0),
            ] {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = handler;
                sa.sa_flags = flags | libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                assert_eq!(libc::sigaction(sig, &sa, std::ptr::null_mut()), 0);
            }
        }
        // SAFETY: getpid and gettid have no preconditions.
        let (pid, tid) = unsafe {
            (
                libc::getpid() as libc::c_long,
                libc::gettid() as libc::c_long,
            )
        };
        let s = Signals { pid, tid, altstack };
        assert_eq!(s.raise(Self::ALTSTACK, 41), 42);
        assert!(
            s.altstack.contains(&ALTSTACK_SP.load(Relaxed)),
            "the SA_ONSTACK handler did not run on the alternate signal stack"
        );
        assert_eq!(s.raise(Self::IRQSTACK, 41), 42);
        s
    }

    /// Rows 9b and 9c: sends `sig` to this thread (`tgkill`) with `x` as the handler's input and
    /// returns the handler's result. The handler has run when the system call returns: the kernel
    /// delivers the signal on the way back.
    #[inline(always)]
    pub fn raise(&self, sig: libc::c_int, x: u64) -> u64 {
        SIGNAL_IN.store(x, Relaxed);
        // SAFETY: tgkill has no memory arguments; the signal's handler is installed.
        let rc =
            unsafe { libc::syscall(libc::SYS_tgkill, self.pid, self.tid, sig as libc::c_long) };
        debug_assert_eq!(rc, 0);
        SIGNAL_OUT.load(Relaxed)
    }
}
