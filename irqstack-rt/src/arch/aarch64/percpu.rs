//! The ready per-CPU backend of arm64 kernels: [`tpidr_percpu_backend!`](crate::tpidr_percpu_backend).

/// A ready [`Backend`](crate::Backend) for arm64 kernels that keep the IRQ stack in two per-CPU
/// variables and this CPU's per-CPU offset in `tpidr_el1` (or `tpidr_el2` on a VHE kernel running
/// at EL2), the way Linux's arm64 per-CPU accessors do:
///
/// - `$stack_ptr: usize`: this CPU's top slot, `stack base + size - 16` (16-byte aligned, as
///   AAPCS64 requires of `sp`; see [`TOP_SLOT_OFFSET`](crate::TOP_SLOT_OFFSET)), or 0 while the
///   CPU has no IRQ stack (handlers then run in place);
/// - `$in_use: bool`: whether this CPU's IRQ stack is in use.
///
/// The variables are the per-CPU *template* (a `static` in the per-CPU section the kernel
/// copies once per CPU); each CPU's copy lives at `address of the template + the CPU's offset`,
/// the offset being what the kernel wrote to the per-CPU offset register of that CPU. Each access
/// is Linux's `ldr_this_cpu` sequence, four instructions (one `mrs` serves every access of a hook:
/// a claim is 14 instructions in all, 12 of them run when the stack is free):
///
/// ```text
/// adrp x0, var              page of the template variable (PC-relative: any load address)
/// add  x0, x0, :lo12:var    its address
/// mrs  x1, tpidr_el1        this CPU's per-CPU offset
/// ldr  x0, [x0, x1]         this CPU's copy
/// ```
///
/// Parameters after the two variables, each optional but in this order:
/// `size = bytes` (default 16 KiB, Linux's arm64 `IRQ_STACK_SIZE`), used for
/// [`irq_stack_bounds`](crate::irq_stack_bounds); `assert_irqs_disabled = path`, a `fn()` called
/// before each claim in debug builds (see
/// [`Backend::assert_irqs_disabled`](crate::Backend::assert_irqs_disabled)); `offset_register =
/// tpidr_el1` (default) or `tpidr_el2` (a VHE kernel at EL2, where Linux patches its accessors
/// to read `tpidr_el2`).
///
/// The offset register is readable at EL1 and above only: the backend is for kernels (at EL0
/// the `mrs` traps). Claim and release are a load, a test and a byte store, correct because
/// interrupts are masked on the owning CPU while they run (the trait's contract); no atomic
/// instruction is needed. That makes each CPU's own offset a precondition: two CPUs holding the
/// same offset can both read the flag clear and switch to the same stack at once. A kernel that
/// wants to catch such a bug checks before the switch that its per-CPU data names the CPU it
/// runs on (as `examples/aarch64_kernel` does at IRQ entry), not only inside the handler, which
/// already runs on the shared stack.
///
/// ```no_run
/// # #[cfg(target_arch = "aarch64")]
/// # mod kernel {
/// // In the kernel's per-CPU section, copied once per CPU; each CPU's tpidr_el1 holds
/// // `its copy - start of the section`.
/// #[unsafe(link_section = ".data.percpu")]
/// static mut IRQ_STACK_PTR: usize = 0;
/// #[unsafe(link_section = ".data.percpu")]
/// static mut IRQ_STACK_INUSE: bool = false;
///
/// fn irqs_masked() {
///     let daif: u64;
///     // SAFETY: reads PSTATE.DAIF into a register; no memory, no flags.
///     unsafe { core::arch::asm!("mrs {}, daif", out(reg) daif, options(nomem, nostack)) };
///     assert!(daif & (1 << 7) != 0, "IRQ stack claimed with IRQs unmasked");
/// }
///
/// irqstack::tpidr_percpu_backend!(
///     IRQ_STACK_PTR,
///     IRQ_STACK_INUSE,
///     size = 16 * 1024,
///     assert_irqs_disabled = irqs_masked,
///     offset_register = tpidr_el1,
/// );
/// # }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! tpidr_percpu_backend {
    // The public forms: the optional parameters, in order, filled with their defaults.
    ($stack_ptr:path, $in_use:path $(,)?) => {
        $crate::tpidr_percpu_backend!(@reg $stack_ptr, $in_use, 16 * 1024, {}, tpidr_el1);
    };
    ($stack_ptr:path, $in_use:path, offset_register = $reg:ident $(,)?) => {
        $crate::tpidr_percpu_backend!(@reg $stack_ptr, $in_use, 16 * 1024, {}, $reg);
    };
    ($stack_ptr:path, $in_use:path, size = $size:expr $(,)?) => {
        $crate::tpidr_percpu_backend!(@reg $stack_ptr, $in_use, $size, {}, tpidr_el1);
    };
    ($stack_ptr:path, $in_use:path, size = $size:expr, offset_register = $reg:ident $(,)?) => {
        $crate::tpidr_percpu_backend!(@reg $stack_ptr, $in_use, $size, {}, $reg);
    };
    ($stack_ptr:path, $in_use:path, size = $size:expr, assert_irqs_disabled = $hook:path $(,)?) => {
        $crate::tpidr_percpu_backend!(@reg $stack_ptr, $in_use, $size, { $hook() }, tpidr_el1);
    };
    (
        $stack_ptr:path, $in_use:path, size = $size:expr, assert_irqs_disabled = $hook:path,
        offset_register = $reg:ident $(,)?
    ) => {
        $crate::tpidr_percpu_backend!(@reg $stack_ptr, $in_use, $size, { $hook() }, $reg);
    };
    // The register: its name as an assembler string, or a clear error.
    (@reg $stack_ptr:path, $in_use:path, $size:expr, { $($hook:tt)* }, tpidr_el1) => {
        $crate::tpidr_percpu_backend!(@impl $stack_ptr, $in_use, $size, { $($hook)* }, "tpidr_el1");
    };
    (@reg $stack_ptr:path, $in_use:path, $size:expr, { $($hook:tt)* }, tpidr_el2) => {
        $crate::tpidr_percpu_backend!(@impl $stack_ptr, $in_use, $size, { $($hook)* }, "tpidr_el2");
    };
    (@reg $stack_ptr:path, $in_use:path, $size:expr, { $($hook:tt)* }, $other:ident) => {
        ::core::compile_error!(::core::concat!(
            "tpidr_percpu_backend!: `offset_register = ",
            ::core::stringify!($other),
            "`: the per-CPU offset register is `tpidr_el1` (kernels at EL1) or `tpidr_el2` \
             (VHE kernels at EL2)"
        ));
    };
    (@impl $stack_ptr:path, $in_use:path, $size:expr, { $($hook:tt)* }, $reg:literal) => {
        $crate::__irqstack_rt_percpu_backend! {
            struct TpidrPercpu;
            stack_ptr = $stack_ptr, in_use = $in_use, size = $size, hook = { $($hook)* };
            accessors = {
                /// This CPU's per-CPU offset. `pure`: within one hook (interrupts masked, so
                /// no migration to another CPU) it does not change, and the compiler may read
                /// it once for several accesses.
                #[inline(always)]
                fn offset() -> usize {
                    let off: usize;
                    // SAFETY: reads the per-CPU offset register (EL1 or above); no memory,
                    // no stack, the flags untouched.
                    unsafe {
                        ::core::arch::asm!(
                            ::core::concat!("mrs {off}, ", $reg),
                            off = out(reg) off,
                            options(pure, nomem, nostack, preserves_flags),
                        )
                    };
                    off
                }

                /// This CPU's copy of `$stack_ptr`.
                #[inline(always)]
                fn stack_ptr() -> usize {
                    let v: usize;
                    // SAFETY: `ldr_this_cpu`: adrp/add form the template variable's address
                    // (PC-relative, 4 GiB reach, any load address), ldr loads the 8-byte copy
                    // at that address plus this CPU's offset (8-byte aligned: the offset keeps
                    // the section's alignment). Only `v` changes; no stack, flags untouched.
                    unsafe {
                        ::core::arch::asm!(
                            "adrp {v}, {var}",
                            "add {v}, {v}, :lo12:{var}",
                            "ldr {v}, [{v}, {off}]",
                            v = out(reg) v,
                            off = in(reg) Self::offset(),
                            var = sym $stack_ptr,
                            options(nostack, readonly, preserves_flags),
                        )
                    };
                    v
                }

                /// The address of the template of `$in_use` (add `offset()` for this CPU's).
                #[inline(always)]
                fn in_use_template() -> usize {
                    let p: usize;
                    // SAFETY: adrp/add form an address; no memory, no stack, flags untouched.
                    unsafe {
                        ::core::arch::asm!(
                            "adrp {p}, {var}",
                            "add {p}, {p}, :lo12:{var}",
                            p = out(reg) p,
                            var = sym $in_use,
                            options(pure, nomem, nostack, preserves_flags),
                        )
                    };
                    p
                }

                /// This CPU's flag, and its place for the store: (template, offset).
                #[inline(always)]
                fn in_use() -> (u32, (usize, usize)) {
                    let (flag, off) = (Self::in_use_template(), Self::offset());
                    let in_use: u32;
                    // SAFETY: this CPU's copy of the flag (template + offset), one byte.
                    unsafe {
                        ::core::arch::asm!(
                            "ldrb {v:w}, [{p}, {off}]",
                            v = out(reg) in_use,
                            p = in(reg) flag,
                            off = in(reg) off,
                            options(nostack, readonly, preserves_flags),
                        )
                    };
                    (in_use, (flag, off))
                }

                /// # Safety
                /// As for `__irqstack_rt_percpu_backend!`'s `set_in_use`.
                #[inline(always)]
                unsafe fn set_in_use((flag, off): (usize, usize)) {
                    // SAFETY: sets this CPU's copy of the flag (template + offset, as loaded
                    // by `in_use`), one byte; no stack, flags untouched.
                    unsafe {
                        ::core::arch::asm!(
                            "strb {one:w}, [{p}, {off}]",
                            one = in(reg) 1u32,
                            p = in(reg) flag,
                            off = in(reg) off,
                            options(nostack, preserves_flags),
                        )
                    };
                }

                /// # Safety
                /// As for `__irqstack_rt_percpu_backend!`'s `clear_in_use`.
                #[inline(always)]
                unsafe fn clear_in_use() {
                    // SAFETY: clears this CPU's copy of the flag (template + offset) with the
                    // zero register; no stack, flags untouched.
                    unsafe {
                        ::core::arch::asm!(
                            "strb wzr, [{p}, {off}]",
                            p = in(reg) Self::in_use_template(),
                            off = in(reg) Self::offset(),
                            options(nostack, preserves_flags),
                        )
                    };
                }
            };
        }
    };
}
