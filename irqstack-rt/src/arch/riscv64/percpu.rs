//! `tp_percpu_backend!`: the ready [`Backend`](crate::Backend) for riscv64 kernels that keep
//! their per-CPU offset in `tp`.

/// A ready [`Backend`](crate::Backend) for riscv64 kernels that keep this CPU's per-CPU offset
/// in `tp`, with the IRQ stack in two per-CPU variables (the riscv64 counterpart of
/// `gs_percpu_backend!`, with the same parameters):
///
/// - `$stack_ptr: usize`: this CPU's top slot, already adjusted (`stack base + size -`
///   [`TOP_SLOT_OFFSET`](crate::TOP_SLOT_OFFSET)), or 0 while the CPU has no IRQ stack
///   (handlers then run in place);
/// - `$in_use: bool`: whether the IRQ stack is in use.
///
/// `size = bytes` gives the stack size for [`irq_stack_bounds`](crate::irq_stack_bounds)
/// (default 16 KiB, Linux's `IRQ_STACK_SIZE` on riscv64 with 4 KiB pages: `THREAD_SIZE`).
/// `assert_irqs_disabled = path` names a function `fn()` to call before each claim in debug
/// builds (see [`Backend::assert_irqs_disabled`](crate::Backend::assert_irqs_disabled)).
///
/// # The convention
///
/// `tp` holds the per-CPU offset: the address of this CPU's copy of the per-CPU data minus the
/// link address of the template (Linux's `__per_cpu_offset[cpu]`, the value x86 keeps in the
/// `%gs` base). This CPU's copy of a variable is then its link address plus `tp`, and each
/// access is three instructions:
///
/// ```text
/// lla  t, var        # auipc + addi: the template's address, PC-relative
/// add  t, t, tp      # this CPU's copy
/// ld   v, 0(t)       # (lbu / sb for the flag)
/// ```
///
/// This is what the common Rust kernels do on riscv64: ArceOS's `percpu` crate keeps the
/// per-CPU area in `tp` and adds the variable's offset to it; it links the per-CPU section at
/// address 0, so the offset is the symbol's address and it is reached with `lui` (absolute)
/// instead of `lla`. Here the template sits in the kernel image, within reach of `auipc`, and
/// `tp = copy - template`: the same addition with the subtraction folded into `tp`. `tp` must
/// hold the offset whenever interrupts can arrive (a kernel without user mode never changes
/// it; one with user mode restores it in the trap entry, before any handler runs), and the
/// variables must be within ±2 GiB of the code (any kernel with a medany image). It is for
/// kernels only: in user space `tp` is the thread pointer of thread-local storage.
///
/// # Linux-style kernels
///
/// Linux keeps `current` (the task) in `tp`, not the per-CPU offset. Its riscv
/// `call_on_irq_stack` (arch/riscv/kernel/entry.S) finds the IRQ stack with `load_per_cpu`
/// (arch/riscv/include/asm/asm.h): the CPU number from `thread_info` (`lw t, TASK_TI_CPU(tp)`),
/// scaled by 8 to index `__per_cpu_offset[]`, that offset added to the address of
/// `irq_stack_ptr`, and a load; then `sp = irq_stack_ptr + IRQ_STACK_SIZE` (Linux stores the
/// base, not the top). It has no in-use flag either: `do_irq` switches only when
/// `on_thread_stack()` (the interrupted `sp` was on the task stack), which is what the flag
/// records here. Such a kernel does not fit this macro; it writes its own
/// [`Backend`](crate::Backend) with that two-load sequence (or the one load of
/// `thread_info`'s cached per-CPU offset where the kernel has it), and can decide `claim` by
/// the stack pointer.
///
/// # Example
///
/// ```no_run
/// #[unsafe(link_section = ".data.percpu")]
/// static mut IRQ_STACK_PTR: usize = 0;
/// #[unsafe(link_section = ".data.percpu")]
/// static mut IRQ_STACK_INUSE: bool = false;
///
/// fn assert_irqs_off() {
///     let sstatus: usize;
///     // SAFETY: reads a CSR.
///     unsafe { core::arch::asm!("csrr {}, sstatus", out(reg) sstatus) };
///     assert!(sstatus & 2 == 0, "IRQ stack claimed with interrupts enabled");
/// }
///
/// irqstack::tp_percpu_backend!(
///     IRQ_STACK_PTR,
///     IRQ_STACK_INUSE,
///     size = 16 * 1024,
///     assert_irqs_disabled = assert_irqs_off,
/// );
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! tp_percpu_backend {
    ($stack_ptr:path, $in_use:path $(,)?) => {
        $crate::tp_percpu_backend!(@impl $stack_ptr, $in_use, 16 * 1024, {});
    };
    ($stack_ptr:path, $in_use:path, size = $size:expr $(,)?) => {
        $crate::tp_percpu_backend!(@impl $stack_ptr, $in_use, $size, {});
    };
    ($stack_ptr:path, $in_use:path, size = $size:expr, assert_irqs_disabled = $hook:path $(,)?) => {
        $crate::tp_percpu_backend!(@impl $stack_ptr, $in_use, $size, { $hook() });
    };
    (@impl $stack_ptr:path, $in_use:path, $size:expr, { $($hook:tt)* }) => {
        $crate::__irqstack_rt_percpu_backend! {
            struct TpPercpu;
            stack_ptr = $stack_ptr, in_use = $in_use, size = $size, hook = { $($hook)* };
            accessors = {
                #[inline(always)]
                fn stack_ptr() -> usize {
                    let v: usize;
                    // SAFETY: reads this CPU's copy of the per-CPU variable, at its link address
                    // (PC-relative `lla`) plus the offset in `tp`; one aligned 8-byte load, no
                    // stack, `tp` only read.
                    unsafe {
                        ::core::arch::asm!(
                            "lla {v}, {var}",
                            "add {v}, {v}, tp",
                            "ld {v}, 0({v})",
                            v = out(reg) v,
                            var = sym $stack_ptr,
                            options(nostack, readonly, preserves_flags),
                        )
                    };
                    v
                }

                /// This CPU's flag, and the address of its copy for the store.
                #[inline(always)]
                fn in_use() -> (usize, usize) {
                    let addr: usize;
                    let in_use: usize;
                    // SAFETY: as in `stack_ptr`: the address of this CPU's copy of the flag
                    // and one byte load from it.
                    unsafe {
                        ::core::arch::asm!(
                            "lla {a}, {var}",
                            "add {a}, {a}, tp",
                            "lbu {v}, 0({a})",
                            a = out(reg) addr,
                            v = out(reg) in_use,
                            var = sym $in_use,
                            options(nostack, readonly, preserves_flags),
                        )
                    };
                    (in_use, addr)
                }

                /// # Safety
                /// As for `__irqstack_rt_percpu_backend!`'s `set_in_use`.
                #[inline(always)]
                unsafe fn set_in_use(addr: usize) {
                    // SAFETY: writes 1 to this CPU's copy of the flag (the address `in_use`
                    // computed), one byte; no stack.
                    unsafe {
                        ::core::arch::asm!(
                            "sb {one}, 0({a})",
                            a = in(reg) addr,
                            one = in(reg) 1usize,
                            options(nostack, preserves_flags),
                        )
                    };
                }

                /// # Safety
                /// As for `__irqstack_rt_percpu_backend!`'s `clear_in_use`.
                #[inline(always)]
                unsafe fn clear_in_use() {
                    // SAFETY: clears this CPU's copy of the flag (`zero` stored at link address
                    // plus `tp`); the scratch register is declared.
                    unsafe {
                        ::core::arch::asm!(
                            "lla {a}, {var}",
                            "add {a}, {a}, tp",
                            "sb zero, 0({a})",
                            a = out(reg) _,
                            var = sym $in_use,
                            options(nostack, preserves_flags),
                        )
                    };
                }
            };
        }
    };
}
