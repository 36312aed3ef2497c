//! Run interrupt handlers on a per-CPU IRQ stack, and mark the instrumentation-safe regions of
//! low-level code, the way the Linux x86-64 entry code does it.
//!
//! - [`#[on_irqstack]`](macro@on_irqstack) turns a function into a handler whose body runs on the
//!   IRQ stack of the current CPU (in user space: of the current thread). A handler called while
//!   the IRQ stack is in use (a nested interrupt, a handler calling a handler) runs in place.
//! - [`run_on_irqstack`] is the closure form.
//! - [`instr_begin!`] / [`instr_end!`], their template pieces [`instr_begin_insn!`] /
//!   [`instr_end_insn!`], and [`#[noinstr]`](macro@noinstr) are the kernel's
//!   `instrumentation_begin()` / `instrumentation_end()` / `noinstr`, which objtool reads.
//!
//! ```
//! use irqstack::on_irqstack;
//!
//! #[on_irqstack]
//! fn handle_timer(vector: u32, budget: u64) -> u64 {
//!     assert!(irqstack::irqstack_active());
//!     u64::from(vector) + budget
//! }
//!
//! assert_eq!(handle_timer(32, 10), 42);
//! assert!(!irqstack::irqstack_active());
//! ```
//!
//! The user-space backend (feature `std`, on by default) gives each thread a guard-paged IRQ
//! stack created on first use. Kernel crates turn `std` off and plug in their per-CPU data.
//!
//! Targets: x86-64 has everything; `aarch64-unknown-linux-gnu` and `riscv64gc-unknown-linux-gnu`
//! have the user-space API (each with a trampoline after its architecture's Linux
//! `call_on_irq_stack`); other architectures stop the build with an error naming these three.
//!
//! # Cargo features
//!
//! - `std` (default): the user-space backend.
//! - `kernel-abi`: the kernel's stack layout, top of stack minus 8 and 8-byte alignment (only
//!   without `std`; it sets [`TOP_SLOT_OFFSET`]).
//! - `rethunk`, `sls`: generated returns go through `__x86_return_thunk` / get an `int3` after
//!   them, for kernels built with `CONFIG_MITIGATION_RETHUNK` / `CONFIG_MITIGATION_SLS`.
//! - `objtool-annotate`: the marker records of Linux 6.14 and later.
//!
//! The README's "Which feature do I need" maps kernel configurations to features and compiler
//! flags. docs.rs builds these docs with `std`, `objtool-annotate`, `rethunk` and `sls`.
#![no_std]
#![deny(missing_docs)]

/// Runs the function's body on the IRQ stack of the current CPU (thread).
///
/// Calling the function claims this thread's IRQ stack, saves the caller's stack pointer in the
/// top slot of the IRQ stack, switches to it, runs the body, and switches back. If the IRQ stack
/// is in use already, the body runs in place, like the kernel's `call_on_irqstack_cond`.
///
/// Works on free functions and associated functions without `self`, with any number and types of
/// arguments, any return type, `unsafe fn`, any ABI (an `extern "C" fn` handler can be installed
/// as a signal handler), attributes and doc comments kept. Generic, `async`, `const` and
/// C-variadic functions and methods taking `self` are rejected with an error.
///
/// Argument `crate = path` names the facade crate when it is not reachable as `::irqstack`.
///
/// The body becomes a nested function, so it cannot use the generic parameters of an enclosing
/// `impl<T>` block (rustc then reports E0401): put such handlers on a free function, or use
/// [`run_on_irqstack`] inside the generic code.
///
/// ```
/// #[derive(Debug, Default)]
/// struct Regs { ip: u64 }
///
/// /// Handles the timer.
/// #[irqstack::on_irqstack]
/// pub fn handle_timer(vector: u32, regs: &mut Regs, budget: u64) -> u64 {
///     regs.ip += 4;
///     u64::from(vector) + budget
/// }
///
/// let mut regs = Regs::default();
/// assert_eq!(handle_timer(32, &mut regs, 10), 42);
/// assert_eq!(regs.ip, 4);
/// ```
///
/// Panics cross the switch like any other call:
///
/// ```
/// #[irqstack::on_irqstack]
/// fn faulty() { panic!("bad device") }
///
/// assert!(std::panic::catch_unwind(faulty).is_err());
/// assert!(!irqstack::irqstack_active());
/// ```
pub use irqstack_macros::on_irqstack;

/// Marks a function as `noinstr`, like the kernel's attribute of that name: it is placed in
/// `.noinstr.text` and never inlined.
///
/// The contract (checked by objtool `--noinstr`, not by the compiler): the function makes no call
/// to instrumentable code outside an [`instr_begin!`] / [`instr_end!`] region. Calling an
/// `#[on_irqstack]` handler is fine: its trampoline lives in `.noinstr.text` and carries the
/// markers around its call.
///
/// What `noinstr` means in the kernel beyond the section (no tracing, no sanitizers, no coverage)
/// is a matter of compiler flags in Rust: build such code without `-C instrument-coverage` and
/// sanitizers.
///
/// ```
/// unsafe extern "C" {
///     safe fn abs(x: i32) -> i32; // stands in for an instrumentable function
/// }
///
/// #[irqstack::noinstr]
/// fn entry(x: i32) -> i32 {
///     irqstack::instr_begin!();
///     let r = abs(x);
///     irqstack::instr_end!();
///     r
/// }
/// assert_eq!(entry(-3), 3);
/// ```
pub use irqstack_macros::noinstr;

/// Interrupt entry on stable Rust: generates the IDT entry stub of a handler, in the shape of
/// Linux's `idtentry` family (`arch/x86/include/asm/idtentry.h`), since the `x86-interrupt` ABI
/// is unstable.
///
/// | attribute | handler | for |
/// |---|---|---|
/// | `#[idtentry]` | `fn(regs: &mut PtRegs)` | exceptions without an error code |
/// | `#[idtentry(error_code)]` | `fn(regs: &mut PtRegs, error_code: u64)` | #PF, #GP, ... |
/// | `#[idtentry(irq)]` | `fn(regs: &mut PtRegs, vector: u8)` | device interrupts, one stub per vector |
/// | `#[idtentry(sysvec)]` | `fn(regs: &mut PtRegs)` | system vectors: timer, IPIs |
/// | `#[idtentry(ist)]`, `#[idtentry(ist, error_code)]` | as above | NMI, #MC, #DB; #DF |
///
/// For a handler `name` it generates `unsafe extern "C" fn asm_name()`, the stub to put in the
/// IDT (in `.noinstr.text`, `endbr64` first with feature `ibt`); for `irq`, also
/// `asm_name_entry(vector) -> Option<usize>`, the address of the stub that pushes `vector`.
/// The stub saves every register into a [`PtRegs`](struct.PtRegs.html) (the layout of Linux's `struct pt_regs`),
/// does `swapgs` when the interrupt came from user mode, calls the handler through glue code,
/// restores the registers from the frame, as the handler left them, does `swapgs` again when
/// returning to user mode, and ends with `iretq`.
///
/// The glue runs the [`Backend`]'s `irqentry_enter`/`irqentry_exit` hooks around the handler,
/// in `noinstr` context, and the handler inside an instrumentation region. For `irq` and
/// `sysvec` the handler runs on this CPU's IRQ stack, between `irq_enter_rcu` and
/// `irq_exit_rcu`, unless the interrupt came from user mode or the IRQ stack is in use (the
/// kernel's `run_irq_on_irqstack_cond` rule). `ist` entries never switch: they run on their
/// IST stack already.
///
/// What the stubs do not do (yet), where Linux's own entry code does more:
/// - `swapgs` is decided by the interrupted `cs`, for `ist` entries too. Linux's paranoid entry
///   reads `MSR_GS_BASE` instead, because an NMI, #MC or #DB can land between another entry's
///   first instruction and its `swapgs` (or between the exit `swapgs` and `iretq`) with a kernel
///   `cs` and the user's GS base; and Linux's `error_entry` repairs a fault raised by `iretq`
///   itself. A kernel with user mode that takes such exceptions needs those paths.
/// - `ist` entries call the same `irqentry_enter`/`irqentry_exit` hooks as the others (Linux's
///   NMI-like handlers use `irqentry_nmi_enter`), and nested NMIs on one IST stack are not
///   handled.
/// - There is no page-table switch (Linux's PTI): the stubs are not a drop-in for Linux's own
///   entry code, whose user page tables do not map `.noinstr.text`.
/// - Both `swapgs` paths end in `lfence` (Linux's `FENCE_SWAPGS_*`).
///
/// Unwinding: DWARF CFI describes the hardware frame and every saved register (debuggers walk
/// from the handler through the trampoline and the stub into the interrupted code, whichever of
/// the IRQ stack and the interrupted stack lies higher; with `kernel-abi` the CFI is in
/// `.debug_frame`, where the assembler drops the stub's signal-frame mark, so a debugger looks
/// the interrupted function up at `rip - 1`), a frame record
/// `{interrupted rbp, interrupted rip}` links the frame-pointer chain, and objtool unwind hints
/// (`UNWIND_HINT_IRET_REGS`/`UNWIND_HINT_REGS`; feature `objtool-legacy-hints` for Linux
/// before 6.4) let objtool `--orc` describe the stub.
///
/// ```
/// # // x86-64 only by nature (IDT entry stubs): elsewhere the example is configured out.
/// # #[cfg(target_arch = "x86_64")] {
/// use irqstack::{idtentry, PtRegs};
///
/// #[idtentry(error_code)]
/// fn exc_general_protection(regs: &mut PtRegs, error_code: u64) {
///     regs.ip += 2; // skip the faulting instruction (an example)
///     let _ = error_code;
/// }
///
/// #[idtentry(sysvec)]
/// fn sysvec_apic_timer_interrupt(regs: &mut PtRegs) {
///     let _ = regs;
/// }
///
/// // The addresses that go into the IDT:
/// let gp = asm_exc_general_protection as usize;
/// let timer = asm_sysvec_apic_timer_interrupt as usize;
/// assert_ne!(gp, timer);
/// # }
/// ```
pub use irqstack_macros::idtentry;

#[cfg(target_arch = "x86_64")]
pub use irqstack_rt::PtRegs;
pub use irqstack_rt::{
    Backend, IrqStackError, interrupted_sp, irq_stack_bounds, irqstack_active, run_on_irqstack,
};
#[cfg(feature = "std")]
pub use irqstack_rt::{
    DEFAULT_IRQ_STACK_SIZE, MIN_IRQ_STACK_SIZE, prepare_irq_stack, set_irq_stack_size,
    set_overflow_detection,
};

/// Starts a region in which calls to instrumentable code are allowed (the kernel's
/// `instrumentation_begin()`).
///
/// Expands to one `asm!` statement: a NOP that carries a fresh label, and a record in
/// `.discard.instr_begin` (or `.discard.annotate_insn` with the `objtool-annotate` feature) that
/// points at it. The linker drops the record; objtool reads it first. Regions may nest; objtool
/// counts begins as +1 and ends as -1.
///
/// ```
/// # fn trace(_: &str) {}
/// irqstack::instr_begin!();
/// trace("allowed here");
/// irqstack::instr_end!();
/// ```
#[macro_export]
macro_rules! instr_begin {
    ($($args:tt)*) => {
        $crate::__private::instr_marker!([$crate] begin stmt ($($args)*))
    };
}

/// Ends a region started by [`instr_begin!`] (the kernel's `instrumentation_end()`).
///
/// The label sits on a NOP of its own, so that an end at the end of a conditional block stays
/// inside the block: a bare label would mark the first instruction after the block, and objtool
/// would see the region end too early on the path that skips the block.
///
/// ```
/// # fn trace(_: &str) {}
/// # let cond = true;
/// irqstack::instr_begin!();
/// if cond {
///     irqstack::instr_begin!();
///     trace("nested");
///     irqstack::instr_end!();
/// }
/// trace("still allowed");
/// irqstack::instr_end!();
/// ```
#[macro_export]
macro_rules! instr_end {
    ($($args:tt)*) => {
        $crate::__private::instr_marker!([$crate] end stmt ($($args)*))
    };
}

/// The text of an [`instr_begin!`] marker, as a string literal to place inside a larger `asm!`,
/// `naked_asm!` or `global_asm!` template.
///
/// Each expansion uses a fresh label number (never made only of 0s and 1s, from a range user code
/// does not use), so it never captures a numeric label of the surrounding template.
///
/// ```
/// # unsafe extern "C" fn ext() {}
/// # #[cfg(target_arch = "x86_64")]
/// // SAFETY: calls a C function that takes nothing; `clobber_abi("C")` covers what it may change.
/// unsafe {
///     core::arch::asm!(
///         "2:",
///         irqstack::instr_begin_insn!(),
///         "call {f}",
///         irqstack::instr_end_insn!(),
///         "lea rax, [rip + 2b]",  // still the template's own label 2
///         f = sym ext,
///         out("rax") _,
///         clobber_abi("C"),
///     );
/// }
/// # // The same on AArch64 (`bl`, `adr`) and riscv64 (`call`, `lla`): the pieces are arch-neutral.
/// # #[cfg(target_arch = "aarch64")]
/// # // SAFETY: as above; `bl` writes x30, which `clobber_abi("C")` covers.
/// # unsafe {
/// #     core::arch::asm!(
/// #         "2:",
/// #         irqstack::instr_begin_insn!(),
/// #         "bl {f}",
/// #         irqstack::instr_end_insn!(),
/// #         "adr x9, 2b",
/// #         f = sym ext,
/// #         out("x9") _,
/// #         clobber_abi("C"),
/// #     );
/// # }
/// # #[cfg(target_arch = "riscv64")]
/// # // SAFETY: as above; `call` writes ra (and t1 as scratch), covered by `clobber_abi("C")`.
/// # unsafe {
/// #     core::arch::asm!(
/// #         "2:",
/// #         irqstack::instr_begin_insn!(),
/// #         "call {f}",
/// #         irqstack::instr_end_insn!(),
/// #         "lla t0, 2b",
/// #         f = sym ext,
/// #         out("t0") _,
/// #         clobber_abi("C"),
/// #     );
/// # }
/// ```
#[macro_export]
macro_rules! instr_begin_insn {
    ($($args:tt)*) => {
        $crate::__private::instr_marker!([$crate] begin insn ($($args)*))
    };
}

/// The text of an [`instr_end!`] marker, as a string literal to place inside a larger asm
/// template. See [`instr_begin_insn!`].
///
/// ```
/// let text: &str = irqstack::instr_end_insn!();
/// assert!(text.contains("nop"));
/// ```
#[macro_export]
macro_rules! instr_end_insn {
    ($($args:tt)*) => {
        $crate::__private::instr_marker!([$crate] end insn ($($args)*))
    };
}

#[cfg(feature = "linux-percpu")]
pub use irqstack_rt::linux_percpu_backend;
#[cfg(target_arch = "riscv64")]
pub use irqstack_rt::tp_percpu_backend;
#[cfg(target_arch = "aarch64")]
pub use irqstack_rt::tpidr_percpu_backend;
pub use irqstack_rt::{TOP_SLOT_OFFSET, gs_percpu_backend, set_backend};

/// What generated code names. Not a public API: it changes without notice.
#[doc(hidden)]
pub mod __private {
    pub use irqstack_macros::__instr_marker as instr_marker;
    pub use irqstack_rt::__private::{
        Entered, FirstUse, Switch, create_for_first_use, enter, try_enter,
    };
    #[cfg(target_arch = "x86_64")]
    pub use irqstack_rt::entry_hooks;
    pub use irqstack_rt::{
        __irqstack_rt_idt_stub as idt_stub, __irqstack_rt_idt_vectors as idt_vectors,
        __irqstack_rt_in_place_marker as in_place_marker, __irqstack_rt_instr_insn as instr_insn,
        __irqstack_rt_instr_record as instr_record, __irqstack_rt_ret as ret,
        __irqstack_rt_section as section, __irqstack_rt_trampoline as trampoline,
        __irqstack_rt_trampoline_fn as trampoline_fn,
    };
}
