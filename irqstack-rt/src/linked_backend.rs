//! `no_std` backend: the final binary plugs in its per-CPU data with `set_backend!`.
//!
//! As in the `critical-section` crate, the library calls functions with fixed symbol names that
//! only `set_backend!` defines, so a binary that uses the macros without a backend fails to link,
//! and the undefined symbol's name tells what to do.

use core::ops::Range;
use core::ptr::NonNull;

unsafe extern "Rust" {
    #[cfg(all(feature = "linux-percpu", debug_assertions))]
    fn _irqstack_no_backend__call_irqstack_set_backend_assert_irqs_disabled();
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

    /// After the trampoline returned: release the stack (the drop guard's work, said where it
    /// happens).
    #[inline(always)]
    pub fn finish(self) {
        drop(self);
    }
}

impl Drop for Switch {
    #[inline(always)]
    fn drop(&mut self) {
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
        #[cfg(not(feature = "linux-percpu"))]
        // SAFETY: `tos` came from the backend's `claim` and is released exactly once.
        unsafe {
            _irqstack_no_backend__call_irqstack_set_backend_release(self.tos)
        };
        #[cfg(feature = "linux-percpu")]
        percpu::release();
    }
}

/// Feature `linux-percpu`: claim and release inline, on Linux's own per-CPU variables.
///
/// With the link-time hooks of `set_backend!`, every switch makes two out-of-line calls (claim,
/// release) that the compiler cannot inline across crates. Linux's `call_on_irqstack_cond` is all
/// inline: test `hardirq_stack_inuse`, load `hardirq_stack_ptr`, set in use, switch, call, switch
/// back, clear. With this feature the runtime names those two variables itself (they are the
/// kernel's: `DECLARE_PER_CPU(..., hardirq_stack_ptr)`, `hardirq_stack_inuse`, read
/// `%gs`-relative and PC-relative as Linux 6.8+ addresses per-CPU data), so the generated
/// wrapper does the same few instructions in place. The slower queries (`irq_stack_bounds()`
/// and friends, the entry hooks) still go through the hooks that `linux_percpu_backend!`
/// defines.
#[cfg(feature = "linux-percpu")]
pub mod percpu {
    unsafe extern "C" {
        /// This CPU's top slot of the IRQ stack (`va + IRQ_STACK_SIZE - 8`), or 0 while the CPU
        /// has none: Linux's `hardirq_stack_ptr`, a per-CPU variable.
        pub static hardirq_stack_ptr: usize;
        /// Whether this CPU's IRQ stack is in use: Linux's `hardirq_stack_inuse`.
        pub static hardirq_stack_inuse: bool;
    }

    /// `hardirq_stack_inuse` of this CPU, as a byte.
    #[inline(always)]
    pub fn in_use() -> u32 {
        let v: u32;
        // SAFETY: one byte of this CPU's copy of the per-CPU variable, at `%gs base +` its
        // address; no stack, flags untouched.
        unsafe {
            core::arch::asm!(
                "movzx {v:e}, byte ptr gs:[rip + {var}]",
                v = out(reg) v,
                var = sym hardirq_stack_inuse,
                options(nostack, readonly, preserves_flags),
            )
        };
        v
    }

    /// `hardirq_stack_ptr` of this CPU.
    #[inline(always)]
    pub fn stack_ptr() -> usize {
        let v: usize;
        // SAFETY: as in `in_use`, eight bytes.
        unsafe {
            core::arch::asm!(
                "mov {v}, qword ptr gs:[rip + {var}]",
                v = out(reg) v,
                var = sym hardirq_stack_ptr,
                options(nostack, readonly, preserves_flags),
            )
        };
        v
    }

    /// `hardirq_stack_ptr` of this CPU if its IRQ stack is free, 0 if it is in use (or if the
    /// CPU has none): both tests of the kernel's `call_on_irqstack_cond` in one value, so that
    /// the caller branches once.
    #[inline(always)]
    pub fn free_stack_ptr() -> usize {
        /// What an in-use stack reads as (`cmov` takes a memory operand, not an immediate).
        static ZERO: usize = 0;
        let v: usize;
        // SAFETY: two reads of this CPU's copies of the per-CPU variables and one of a constant;
        // `cmp` and `cmovne` change only the flags (declared: no `preserves_flags`) and `v`.
        unsafe {
            core::arch::asm!(
                "mov {v}, qword ptr gs:[rip + {ptr}]",
                "cmp byte ptr gs:[rip + {inuse}], 0",
                "cmovne {v}, qword ptr [rip + {zero}]",
                v = out(reg) v,
                ptr = sym hardirq_stack_ptr,
                inuse = sym hardirq_stack_inuse,
                zero = sym ZERO,
                options(nostack, readonly),
            )
        };
        v
    }

    /// Marks this CPU's IRQ stack in use.
    #[inline(always)]
    pub fn claim() {
        // SAFETY: writes this CPU's copy of the flag; interrupts are off (the backend contract),
        // so nothing on this CPU runs between the test and this store.
        unsafe {
            core::arch::asm!(
                "mov byte ptr gs:[rip + {var}], 1",
                var = sym hardirq_stack_inuse,
                options(nostack, preserves_flags),
            )
        };
    }

    /// Marks this CPU's IRQ stack free.
    #[inline(always)]
    pub fn release() {
        // SAFETY: clears this CPU's copy of the flag, after the switch back.
        unsafe {
            core::arch::asm!(
                "mov byte ptr gs:[rip + {var}], 0",
                var = sym hardirq_stack_inuse,
                options(nostack, preserves_flags),
            )
        };
    }
}

/// Claims this CPU's IRQ stack, inline (feature `linux-percpu`). `None`: it is in use already,
/// or this CPU has no IRQ stack yet; run in place.
#[cfg(feature = "linux-percpu")]
#[inline(always)]
pub fn try_enter() -> Option<Switch> {
    #[cfg(debug_assertions)]
    // SAFETY: defined by `linux_percpu_backend!`, through `set_backend!`.
    unsafe {
        _irqstack_no_backend__call_irqstack_set_backend_assert_irqs_disabled()
    };
    let Some(tos) = NonNull::new(percpu::free_stack_ptr() as *mut u8) else {
        // Nested (the stack is in use), or a CPU early in its bring-up (no IRQ stack yet, and
        // not to be marked in use): rare, laid out off the hot path.
        core::hint::cold_path();
        return None;
    };
    percpu::claim();
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
    Some(Switch { tos })
}

/// Claims this CPU's IRQ stack. `None`: it is in use already, run in place.
#[cfg(not(feature = "linux-percpu"))]
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

/// What a handler's wrapper does now (`#[on_irqstack]`'s generated code).
pub enum Entered {
    /// The IRQ stack is claimed for this call: switch to it.
    Switch(Switch),
    /// It is in use, or this CPU has none yet: run in place.
    InPlace,
    /// Never: kernel IRQ stacks are set up by the kernel, not on first use.
    FirstUse(FirstUse),
}

/// Uninhabited: the kernel backend never creates a stack on first use, so the generated
/// wrapper's first-use path (and the cold function it calls) is never compiled.
pub enum FirstUse {}

impl FirstUse {
    /// Unreachable (there is no value of this type): `f` is never called.
    #[inline(always)]
    pub fn run<R>(self, _f: impl FnOnce() -> R) -> R {
        match self {}
    }
}

/// [`try_enter`] in the shape the generated wrapper matches on.
#[inline(always)]
pub fn enter() -> Entered {
    match try_enter() {
        Some(s) => Entered::Switch(s),
        None => Entered::InPlace,
    }
}

/// Nothing to create: kernel IRQ stacks exist before interrupts are enabled. Never called (see
/// [`FirstUse`]); present so that the generated code compiles against either backend.
#[inline(always)]
pub fn create_for_first_use() {}

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
