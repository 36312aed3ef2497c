//! The hooks `#[idtentry]` glue calls around a handler: the kernel's `irqentry_enter()` /
//! `irqentry_exit()` (in `noinstr` context, before and after everything) and `irq_enter_rcu()` /
//! `irq_exit_rcu()` (on the IRQ stack, around a device or system vector handler).
//!
//! `no_std` builds reach them through the backend (`Backend::irqentry_enter` and friends, the
//! link-time hooks `set_backend!` defines); `std` builds have no kernel to tell, so they do
//! nothing.

use crate::PtRegs;

#[cfg(not(feature = "std"))]
unsafe extern "Rust" {
    fn _irqstack_no_backend__call_irqstack_set_backend_irqentry_enter(regs: &mut PtRegs) -> usize;
    fn _irqstack_no_backend__call_irqstack_set_backend_irqentry_exit(
        regs: &mut PtRegs,
        state: usize,
    );
    fn _irqstack_no_backend__call_irqstack_set_backend_irq_enter_rcu();
    fn _irqstack_no_backend__call_irqstack_set_backend_irq_exit_rcu();
}

/// `irqentry_enter()`: returns the state word for [`irqentry_exit`].
#[inline(always)]
pub fn irqentry_enter(regs: &mut PtRegs) -> usize {
    #[cfg(not(feature = "std"))]
    // SAFETY: defined by `set_backend!` with the backend's contract.
    return unsafe { _irqstack_no_backend__call_irqstack_set_backend_irqentry_enter(regs) };
    #[cfg(feature = "std")]
    {
        let _ = regs;
        0
    }
}

/// `irqentry_exit()`, with the state [`irqentry_enter`] returned.
#[inline(always)]
pub fn irqentry_exit(regs: &mut PtRegs, state: usize) {
    #[cfg(not(feature = "std"))]
    // SAFETY: as above.
    unsafe {
        _irqstack_no_backend__call_irqstack_set_backend_irqentry_exit(regs, state)
    };
    #[cfg(feature = "std")]
    let _ = (regs, state);
}

/// `irq_enter_rcu()`, on the IRQ stack before a device or system vector handler.
#[inline(always)]
pub fn irq_enter_rcu() {
    #[cfg(not(feature = "std"))]
    // SAFETY: as above.
    unsafe {
        _irqstack_no_backend__call_irqstack_set_backend_irq_enter_rcu()
    };
}

/// `irq_exit_rcu()`, on the IRQ stack after a device or system vector handler.
#[inline(always)]
pub fn irq_exit_rcu() {
    #[cfg(not(feature = "std"))]
    // SAFETY: as above.
    unsafe {
        _irqstack_no_backend__call_irqstack_set_backend_irq_exit_rcu()
    };
}
