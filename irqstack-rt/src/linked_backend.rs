//! `no_std` backend: the final binary plugs in its per-CPU data with `set_backend!`.
//!
//! As in the `critical-section` crate, the library calls functions with fixed symbol names that
//! only `set_backend!` defines, so a binary that uses the macros without a backend fails to link,
//! and the undefined symbol's name tells what to do.

use core::ops::Range;
use core::ptr::NonNull;

unsafe extern "Rust" {
    fn _irqstack_no_backend__call_irqstack_set_backend_claim() -> Option<NonNull<u8>>;
    fn _irqstack_no_backend__call_irqstack_set_backend_release(tos: NonNull<u8>);
    fn _irqstack_no_backend__call_irqstack_set_backend_bounds() -> Option<Range<usize>>;
    fn _irqstack_no_backend__call_irqstack_set_backend_top_slot() -> Option<usize>;
}

/// A claimed IRQ stack. Dropping it releases the stack (also when the body unwinds).
pub struct Switch {
    tos: NonNull<u8>,
}

impl Switch {
    /// Address of the top-of-stack slot, to pass to a trampoline.
    #[inline(always)]
    pub fn tos(&self) -> *mut u8 {
        self.tos.as_ptr()
    }
}

impl Drop for Switch {
    #[inline(always)]
    fn drop(&mut self) {
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
        // SAFETY: `tos` came from the backend's `claim` and is released exactly once.
        unsafe { _irqstack_no_backend__call_irqstack_set_backend_release(self.tos) }
    }
}

/// Claims this CPU's IRQ stack. `None`: it is in use already, run in place.
#[inline(always)]
pub fn try_enter() -> Option<Switch> {
    // SAFETY: defined by `set_backend!` with the backend's contract.
    let Some(tos) = (unsafe { _irqstack_no_backend__call_irqstack_set_backend_claim() }) else {
        // Nested: rare (an interrupt that arrived on the IRQ stack). Laid out off the hot path,
        // so the switching path falls through.
        core::hint::cold_path();
        return None;
    };
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
    Some(Switch { tos })
}

/// This CPU's IRQ stack, `[low, high)`.
#[inline]
pub fn bounds() -> Option<Range<usize>> {
    // SAFETY: defined by `set_backend!`.
    unsafe { _irqstack_no_backend__call_irqstack_set_backend_bounds() }
}

/// Address of the top slot (where the trampoline saves the interrupted stack pointer).
#[inline]
pub fn top_slot() -> Option<usize> {
    // SAFETY: defined by `set_backend!`.
    unsafe { _irqstack_no_backend__call_irqstack_set_backend_top_slot() }
}
