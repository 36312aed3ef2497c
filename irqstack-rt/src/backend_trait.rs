//! The per-CPU data interface for `no_std` builds: [`Backend`] and [`set_backend!`].

use core::ops::Range;
use core::ptr::NonNull;

/// Where a `no_std` build keeps this CPU's IRQ stack and its in-use flag.
///
/// Without the `std` feature, the final binary (the kernel, or the kernel module's glue) names
/// its implementation once with [`set_backend!`](crate::set_backend). Every `#[on_irqstack]`
/// handler and [`run_on_irqstack`](crate::run_on_irqstack) then go through it.
///
/// # Safety
///
/// The implementation promises, for the CPU it runs on:
///
/// - **One stack per CPU, one user at a time.** [`claim`](Backend::claim) returns `Some(tos)` only
///   if this CPU has an IRQ stack and it is free, and marks it in use before returning (and only
///   then: a `None` leaves the state as it was, since no release follows it); until the matching
///   [`release`](Backend::release), every further `claim` on this CPU returns `None` (the
///   handler then runs in place). Claim and release happen on the same CPU: call them with
///   interrupts (and preemption) disabled, as the kernel's entry code does. In debug builds the
///   generated code calls [`assert_irqs_disabled`](Backend::assert_irqs_disabled) first.
/// - **The top slot.** `tos` is the address of the 8-byte slot at the top of the IRQ stack where
///   the trampoline stores the interrupted stack pointer; the trampoline then sets `rsp = tos`
///   and calls the body, so the stack grows down from `tos`. `tos` must be 16-byte aligned, or,
///   with feature `kernel-abi`, 8 more than a multiple of 16: the kernel stores
///   `IRQ_STACK_SIZE - 8` above the page-aligned stack base (`hardirq_stack_ptr`), already
///   adjusted, so the hot path needs no arithmetic. Either way the trampoline enters the body
///   with the 16-byte alignment that Rust code assumes.
/// - **The memory.** The stack below `tos` is mapped, writable, reserved for this CPU's IRQ
///   stack, and large enough for the deepest handler nesting (overflow should hit a guard page).
/// - **No instrumentation.** The functions run in `noinstr` context (they are placed in
///   `.noinstr.text`): no calls to traceable or instrumented code, no allocation, no locks
///   that an interrupt could already hold.
/// - [`bounds`](Backend::bounds) and [`top_slot`](Backend::top_slot) describe the same stack:
///   `top_slot()` equals what `claim` returns, and `bounds()` contains it.
///
/// # Example
///
/// A backend over static per-CPU arrays indexed by a CPU number (a real kernel would use its
/// per-CPU area; see also `gs_percpu_backend!`, and `tpidr_percpu_backend!` on arm64):
///
/// ```no_run
/// use core::ops::Range;
/// use core::ptr::NonNull;
/// use core::sync::atomic::{AtomicBool, Ordering};
///
/// const STACK: usize = 16 * 1024;
/// #[repr(align(16))]
/// struct Stack([u8; STACK]);
/// static mut STACKS: [Stack; 1] = [Stack([0; STACK])];
/// static IN_USE: [AtomicBool; 1] = [AtomicBool::new(false)];
/// fn this_cpu() -> usize { 0 }
///
/// struct MyBackend;
/// // SAFETY: one stack per CPU, claimed with a per-CPU flag, called with IRQs off;
/// // tos = top - 16 is 16-byte aligned; nothing here is instrumented.
/// unsafe impl irqstack::Backend for MyBackend {
///     fn claim() -> Option<NonNull<u8>> {
///         // The stack first: a CPU without one must not be marked in use, or nothing
///         // would ever clear the mark.
///         let tos = NonNull::new(Self::top_slot()? as *mut u8)?;
///         if IN_USE[this_cpu()].swap(true, Ordering::Relaxed) {
///             return None;
///         }
///         Some(tos)
///     }
///     unsafe fn release(_tos: NonNull<u8>) {
///         IN_USE[this_cpu()].store(false, Ordering::Relaxed);
///     }
///     fn bounds() -> Option<Range<usize>> {
///         // SAFETY: only the address of this CPU's stack is taken; nothing is read.
///         let base = unsafe { core::ptr::addr_of!(STACKS[this_cpu()]) } as usize;
///         Some(base..base + STACK)
///     }
///     fn top_slot() -> Option<usize> {
///         Some(Self::bounds()?.end - 16)
///     }
/// }
///
/// irqstack::set_backend!(MyBackend);
/// # fn main() {}
/// ```
pub unsafe trait Backend {
    /// If this CPU's IRQ stack is free: marks it in use and returns its top slot. If it is in
    /// use: `None`, and the handler runs in place.
    fn claim() -> Option<NonNull<u8>>;

    /// Marks this CPU's IRQ stack free again.
    ///
    /// # Safety
    ///
    /// `tos` is what the matching [`claim`](Backend::claim) on this CPU returned, and the code
    /// that ran on the stack has returned (or unwound) off it.
    unsafe fn release(tos: NonNull<u8>);

    /// This CPU's IRQ stack, `[low, high)`, or `None` if it has none.
    fn bounds() -> Option<Range<usize>>;

    /// Address of this CPU's top slot (what `claim` returns), or `None` if it has no IRQ stack.
    fn top_slot() -> Option<usize>;

    /// Called before each claim in debug builds; panic (or BUG) if interrupts are enabled, like
    /// the kernel's `lockdep_assert_irqs_disabled()`. The default does nothing.
    #[inline(always)]
    fn assert_irqs_disabled() {}

    /// `#[idtentry]` glue calls this first, in `noinstr` context with interrupts off, before the
    /// handler (the kernel's `irqentry_enter()`: RCU, context tracking, lockdep). What it
    /// returns is handed to [`irqentry_exit`](Backend::irqentry_exit). The default does nothing.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn irqentry_enter(_regs: &mut crate::PtRegs) -> usize {
        0
    }

    /// `#[idtentry]` glue calls this last, after the handler returned (the kernel's
    /// `irqentry_exit()`), with the state [`irqentry_enter`](Backend::irqentry_enter) returned.
    /// The default does nothing.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn irqentry_exit(_regs: &mut crate::PtRegs, _state: usize) {}

    /// Runs on the IRQ stack right before a device or system vector handler (the kernel's
    /// `irq_enter_rcu()`). The default does nothing.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn irq_enter_rcu() {}

    /// Runs on the IRQ stack right after a device or system vector handler (the kernel's
    /// `irq_exit_rcu()`, which also runs pending softirqs). The default does nothing.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn irq_exit_rcu() {}
}

/// Names the [`Backend`] of a `no_std` build. Use it exactly once, in the final binary (or
/// kernel module glue).
///
/// It defines the link-time hooks the library calls, all in `.noinstr.text` (claim, release, and
/// the queries behind `irqstack_active()`, `irq_stack_bounds()` and `interrupted_sp()`). A build that uses
/// `#[on_irqstack]` without `std` and without `set_backend!` fails to link with undefined symbols
/// named `_irqstack_no_backend__call_irqstack_set_backend_*`; using it twice defines them twice.
///
/// See [`Backend`] for an example.
#[macro_export]
macro_rules! set_backend {
    ($backend:ty $(,)?) => {
        /// Defined by `irqstack::set_backend!`. If rustc reports this name as defined twice,
        /// `set_backend!` is used twice: a build has exactly one backend.
        #[doc(hidden)]
        #[allow(non_camel_case_types, dead_code)]
        struct irqstack_set_backend_is_used_more_than_once_remove_all_but_one;

        const _: () = {
            const fn backend_must_implement_irqstack_backend<B: $crate::Backend>() {}
            backend_must_implement_irqstack_backend::<$backend>();

            #[unsafe(no_mangle)]
            #[unsafe(link_section = ".noinstr.text")]
            #[inline(never)]
            fn _irqstack_no_backend__call_irqstack_set_backend_claim()
            -> ::core::option::Option<::core::ptr::NonNull<u8>> {
                #[cfg(debug_assertions)]
                <$backend as $crate::Backend>::assert_irqs_disabled();
                <$backend as $crate::Backend>::claim()
            }

            #[unsafe(no_mangle)]
            #[unsafe(link_section = ".noinstr.text")]
            #[inline(never)]
            fn _irqstack_no_backend__call_irqstack_set_backend_release(
                tos: ::core::ptr::NonNull<u8>,
            ) {
                // SAFETY: the library calls this once per successful claim, after the switch
                // back (see `Switch::drop`).
                unsafe { <$backend as $crate::Backend>::release(tos) }
            }

            // `irqstack_active()`, `irq_stack_bounds()` and `interrupted_sp()` are called from
            // `noinstr` code as much as the switch: every hook lives in `.noinstr.text`.
            #[unsafe(no_mangle)]
            #[unsafe(link_section = ".noinstr.text")]
            #[inline(never)]
            fn _irqstack_no_backend__call_irqstack_set_backend_bounds()
            -> ::core::option::Option<::core::ops::Range<usize>> {
                <$backend as $crate::Backend>::bounds()
            }

            #[unsafe(no_mangle)]
            #[unsafe(link_section = ".noinstr.text")]
            #[inline(never)]
            fn _irqstack_no_backend__call_irqstack_set_backend_top_slot()
            -> ::core::option::Option<usize> {
                <$backend as $crate::Backend>::top_slot()
            }
        };

        const _: () = {
            // The debug check before a claim, for runtimes that claim inline
            // (`linux-percpu`).
            #[unsafe(no_mangle)]
            #[unsafe(link_section = ".noinstr.text")]
            #[inline(never)]
            fn _irqstack_no_backend__call_irqstack_set_backend_assert_irqs_disabled() {
                // A debugging check (like the kernel's `lockdep_assert_irqs_disabled()`) may
                // report through instrumentable code: inside an instrumentation region.
                // SAFETY: a NOP and a discarded record; no registers, memory or flags change.
                unsafe {
                    ::core::arch::asm!(
                        $crate::__irqstack_rt_instr_insn!(begin, "4739970"),
                        options(nomem, nostack, preserves_flags)
                    )
                };
                <$backend as $crate::Backend>::assert_irqs_disabled();
                // SAFETY: as above.
                unsafe {
                    ::core::arch::asm!(
                        $crate::__irqstack_rt_instr_insn!(end, "4739971"),
                        options(nomem, nostack, preserves_flags)
                    )
                };
            }

            // The entry hooks of `#[idtentry]` glue (x86-64 only), in `.noinstr.text` like the
            // glue.
            #[cfg(target_arch = "x86_64")]
            #[unsafe(no_mangle)]
            #[unsafe(link_section = ".noinstr.text")]
            #[inline(never)]
            fn _irqstack_no_backend__call_irqstack_set_backend_irqentry_enter(
                regs: &mut $crate::PtRegs,
            ) -> usize {
                <$backend as $crate::Backend>::irqentry_enter(regs)
            }

            #[cfg(target_arch = "x86_64")]
            #[unsafe(no_mangle)]
            #[unsafe(link_section = ".noinstr.text")]
            #[inline(never)]
            fn _irqstack_no_backend__call_irqstack_set_backend_irqentry_exit(
                regs: &mut $crate::PtRegs,
                state: usize,
            ) {
                <$backend as $crate::Backend>::irqentry_exit(regs, state)
            }

            #[cfg(target_arch = "x86_64")]
            #[unsafe(no_mangle)]
            #[unsafe(link_section = ".noinstr.text")]
            #[inline(never)]
            fn _irqstack_no_backend__call_irqstack_set_backend_irq_enter_rcu() {
                <$backend as $crate::Backend>::irq_enter_rcu()
            }

            #[cfg(target_arch = "x86_64")]
            #[unsafe(no_mangle)]
            #[unsafe(link_section = ".noinstr.text")]
            #[inline(never)]
            fn _irqstack_no_backend__call_irqstack_set_backend_irq_exit_rcu() {
                <$backend as $crate::Backend>::irq_exit_rcu()
            }
        };

        $crate::__irqstack_rt_backend_extras!();
    };
}

/// Bytes between a stack's top slot (`tos`, where the switch saves the interrupted stack
/// pointer) and the top of the stack: 8 with feature `kernel-abi` (the kernel's
/// `hardirq_stack_ptr = va + IRQ_STACK_SIZE - 8`; the trampoline then starts the body 8 bytes
/// lower, so that it still gets the 16-byte alignment Rust assumes), 16 otherwise (the slot must
/// be 16-byte aligned for SysV code, so 8 bytes of padding sit above it).
///
/// ```
/// let top = 0x7000_0000usize; // the (page-aligned) end of an IRQ stack
/// let tos = top - irqstack::TOP_SLOT_OFFSET;
/// assert_eq!(tos % 16, 0); // user space; 8 with `kernel-abi`
/// ```
pub const TOP_SLOT_OFFSET: usize = if cfg!(feature = "kernel-abi") { 8 } else { 16 };

/// Type check for the per-CPU backends (`__irqstack_rt_percpu_backend!`): the two per-CPU
/// variables must be a `usize` and a `bool`.
#[doc(hidden)]
pub const fn __assert_percpu_types(_stack_ptr: *const usize, _in_use: *const bool) {}

/// A ready [`Backend`] for kernels that keep the IRQ stack in two per-CPU variables the way
/// Linux 5.12+ does, addressed `%gs`-relative:
///
/// - `$stack_ptr: usize`, the `hardirq_stack_ptr`: this CPU's top slot, already adjusted
///   (`stack base + size - 8` with `kernel-abi`; `- 16` for SysV alignment), or 0 while the
///   CPU has no IRQ stack (handlers then run in place);
/// - `$in_use: bool`, the `hardirq_stack_inuse`.
///
/// `size = bytes` gives the stack size for [`irq_stack_bounds`](crate::irq_stack_bounds) (default
/// 16 KiB, the kernel's `IRQ_STACK_SIZE`). `assert_irqs_disabled = path` names a function
/// `fn()` to call before each claim in debug builds (see [`Backend::assert_irqs_disabled`]).
///
/// Each access is one instruction, `mov reg, gs:[rip + var]`: the CPU adds the `%gs` base to the
/// variable's address. That is how Linux 6.8+ addresses per-CPU data (PC-relative, which also
/// works with the older zero-based per-CPU section: the displacement wraps to the small offset)
/// and how a user-space emulation works: set the `%gs` base of a thread to
/// `its copy - address of the template variable`.
///
/// ```no_run
/// #[allow(non_upper_case_globals)]
/// #[unsafe(no_mangle)]
/// static mut hardirq_stack_ptr: usize = 0;
/// #[allow(non_upper_case_globals)]
/// #[unsafe(no_mangle)]
/// static mut hardirq_stack_inuse: bool = false;
///
/// # #[cfg(target_arch = "x86_64")] // `%gs` is x86-64's: the example builds there only
/// irqstack::gs_percpu_backend!(hardirq_stack_ptr, hardirq_stack_inuse, size = 16 * 1024);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! gs_percpu_backend {
    ($stack_ptr:path, $in_use:path $(,)?) => {
        $crate::gs_percpu_backend!(@impl $stack_ptr, $in_use, 16 * 1024, {});
    };
    ($stack_ptr:path, $in_use:path, size = $size:expr $(,)?) => {
        $crate::gs_percpu_backend!(@impl $stack_ptr, $in_use, $size, {});
    };
    ($stack_ptr:path, $in_use:path, size = $size:expr, assert_irqs_disabled = $hook:path $(,)?) => {
        $crate::gs_percpu_backend!(@impl $stack_ptr, $in_use, $size, { $hook() });
    };
    (@impl $stack_ptr:path, $in_use:path, $size:expr, { $($hook:tt)* }) => {
        $crate::__irqstack_rt_percpu_backend! {
            struct GsPercpu;
            stack_ptr = $stack_ptr, in_use = $in_use, size = $size, hook = { $($hook)* };
            accessors = {
                #[inline(always)]
                fn stack_ptr() -> usize {
                    let v: usize;
                    // SAFETY: reads this CPU's copy of the per-CPU variable, at
                    // `%gs base + address of the variable`; no stack use, flags untouched.
                    unsafe {
                        ::core::arch::asm!(
                            "mov {v}, qword ptr gs:[rip + {var}]",
                            v = out(reg) v,
                            var = sym $stack_ptr,
                            options(nostack, readonly, preserves_flags),
                        )
                    };
                    v
                }

                /// The flag; `%gs` addresses it again for the store: no place to keep.
                #[inline(always)]
                fn in_use() -> (u32, ()) {
                    let in_use: u32;
                    // SAFETY: as in `stack_ptr`: one byte of this CPU's copy.
                    unsafe {
                        ::core::arch::asm!(
                            "movzx {v:e}, byte ptr gs:[rip + {var}]",
                            v = out(reg) in_use,
                            var = sym $in_use,
                            options(nostack, readonly, preserves_flags),
                        )
                    };
                    (in_use, ())
                }

                /// # Safety
                /// As for `__irqstack_rt_percpu_backend!`'s `set_in_use`.
                #[inline(always)]
                unsafe fn set_in_use((): ()) {
                    // SAFETY: writes this CPU's copy of the flag (one byte, `%gs`-relative);
                    // no stack, flags untouched.
                    unsafe {
                        ::core::arch::asm!(
                            "mov byte ptr gs:[rip + {var}], 1",
                            var = sym $in_use,
                            options(nostack, preserves_flags),
                        )
                    };
                }

                /// # Safety
                /// As for `__irqstack_rt_percpu_backend!`'s `clear_in_use`.
                #[inline(always)]
                unsafe fn clear_in_use() {
                    // SAFETY: clears this CPU's copy of the flag (one byte, `%gs`-relative);
                    // no stack, flags untouched.
                    unsafe {
                        ::core::arch::asm!(
                            "mov byte ptr gs:[rip + {var}], 0",
                            var = sym $in_use,
                            options(nostack, preserves_flags),
                        )
                    };
                }
            };
        }
    };
}

/// The arch-neutral part of the ready per-CPU backends (`gs_percpu_backend!`,
/// `tpidr_percpu_backend!`, `tp_percpu_backend!`): the [`Backend`] protocol on two per-CPU
/// variables, written once; the caller supplies only this CPU's accesses.
///
/// It defines, in a `const _` block, the type check of the two variables, `struct $name`, an
/// inherent `impl $name` holding `accessors`, the [`Backend`] impl and [`set_backend!`]. The
/// accessors, each `#[inline(always)]`:
///
/// - `fn stack_ptr() -> usize`: this CPU's copy of the top slot variable;
/// - `fn in_use() -> (Int, Place)`: this CPU's copy of the flag as loaded (an integer, nonzero
///   while the stack is in use), and whatever the store needs to find that copy again (an
///   address, or `()`);
/// - `unsafe fn set_in_use(place: Place)`: sets the flag `in_use()` tested. Safety: called
///   only by `claim`, right after `in_use()` returned `(0, place)`, interrupts still
///   disabled;
/// - `unsafe fn clear_in_use()`: clears this CPU's flag. Safety: called only by `release`.
///
/// ```text
/// $crate::__irqstack_rt_percpu_backend! {
///     struct MyPercpu;
///     stack_ptr = STACK_PTR, in_use = IN_USE, size = 16 * 1024, hook = { my_assert() };
///     accessors = { /* the four fns */ };
/// }
/// ```
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_percpu_backend {
    (
        struct $name:ident;
        stack_ptr = $stack_ptr:path, in_use = $in_use:path, size = $size:expr,
        hook = { $($hook:tt)* };
        accessors = { $($accessors:tt)* };
    ) => {
        const _: () = {
            const _: () = $crate::__assert_percpu_types(&raw const $stack_ptr, &raw const $in_use);

            struct $name;

            impl $name {
                $($accessors)*
            }

            // SAFETY: the kernel's own discipline, which the macro's user promises by naming
            // the variables: one IRQ stack per CPU whose top slot is in `$stack_ptr`, in use
            // while `$in_use` is true, accessed with interrupts disabled on the owning CPU,
            // whose per-CPU base (the `%gs` base, `tpidr_el1`/`tpidr_el2`, `tp`) locates that
            // CPU's copies: the accessors read and write those copies.
            unsafe impl $crate::Backend for $name {
                #[inline(always)]
                fn claim() -> ::core::option::Option<::core::ptr::NonNull<u8>> {
                    // A CPU whose IRQ stack is not set up yet (pointer still 0) runs handlers
                    // in place and must not be marked in use: no release would follow.
                    let tos = ::core::ptr::NonNull::new(Self::stack_ptr() as *mut u8)?;
                    let (in_use, place) = Self::in_use();
                    if in_use != 0 {
                        return ::core::option::Option::None;
                    }
                    // SAFETY: `in_use()` just found this CPU's flag clear; interrupts are
                    // disabled, so no other code on this CPU runs between that test and this
                    // store, and no other CPU writes this CPU's copy.
                    unsafe { Self::set_in_use(place) };
                    ::core::option::Option::Some(tos)
                }

                #[inline(always)]
                unsafe fn release(_tos: ::core::ptr::NonNull<u8>) {
                    // SAFETY: the trait's contract: once per successful claim, after the
                    // switch back, interrupts still disabled on the same CPU.
                    unsafe { Self::clear_in_use() };
                }

                #[inline(always)]
                fn bounds() -> ::core::option::Option<::core::ops::Range<usize>> {
                    let tos = Self::stack_ptr();
                    if tos == 0 {
                        return ::core::option::Option::None;
                    }
                    let top = tos + $crate::TOP_SLOT_OFFSET;
                    ::core::option::Option::Some(top - ($size)..top)
                }

                #[inline(always)]
                fn top_slot() -> ::core::option::Option<usize> {
                    let tos = Self::stack_ptr();
                    (tos != 0).then_some(tos)
                }

                #[inline(always)]
                fn assert_irqs_disabled() {
                    $($hook)*
                }
            }

            $crate::set_backend!($name);
        };
    };
}

/// The backend of feature `linux-percpu`: Linux's own per-CPU variables `hardirq_stack_ptr` and
/// `hardirq_stack_inuse` (which the kernel defines), claimed and released inline in every
/// handler, as Linux's `call_on_irqstack_cond` does; this macro defines the rest (the
/// `irq_stack_bounds()` queries, the debug check, the entry hooks) like [`gs_percpu_backend!`].
/// Use it once, in the final binary, instead of `set_backend!`.
///
/// `size = bytes` is the kernel's `IRQ_STACK_SIZE` (16 KiB on x86-64, 32 KiB with KASAN);
/// `assert_irqs_disabled = path` as for `gs_percpu_backend!`.
///
/// ```ignore
/// // irqstack = { default-features = false, features = ["kernel-abi", "linux-percpu"] }
/// irqstack::linux_percpu_backend!(size = 16 * 1024, assert_irqs_disabled = my_assert);
/// ```
#[cfg(feature = "linux-percpu")]
#[macro_export]
macro_rules! linux_percpu_backend {
    (size = $size:expr $(,)?) => {
        $crate::gs_percpu_backend!(
            $crate::__private::percpu::hardirq_stack_ptr,
            $crate::__private::percpu::hardirq_stack_inuse,
            size = $size
        );
    };
    (size = $size:expr, assert_irqs_disabled = $hook:path $(,)?) => {
        $crate::gs_percpu_backend!(
            $crate::__private::percpu::hardirq_stack_ptr,
            $crate::__private::percpu::hardirq_stack_inuse,
            size = $size,
            assert_irqs_disabled = $hook
        );
    };
}
