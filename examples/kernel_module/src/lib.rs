//! The interrupt path of a kernel driver, in the shape Linux gives it, written with irqstack:
//!
//! - a `noinstr` entry function (what the IDT entry stub calls) that may only call
//!   instrumentable code between `instr_begin!()` and `instr_end!()`;
//! - an `#[on_irqstack]` handler, called from the entry: its body runs on this CPU's IRQ stack;
//! - the per-CPU data behind `set_backend!`.
//!
//! `tests/objtool.rs` builds this crate to a relocatable object with the kernel's code
//! generation flags (`-C relocation-model=static -C code-model=kernel
//! -C force-frame-pointers=yes`, `panic = "abort"`) and runs Debian's objtool on it.
//!
//! Exported symbols are prefixed `irqstack_km_` so the tests can find them.
#![no_std]

use core::ops::Range;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};

use irqstack::{instr_begin, instr_end, noinstr, on_irqstack};

unsafe extern "C" {
    /// An ordinary kernel function that tracing or sanitizers may instrument (think
    /// `trace_irq_handler_entry`): calling it from `noinstr` code needs markers around the call.
    fn irqstack_km_trace(vector: u64);
}

/// Size of the IRQ stack, as the kernel's `IRQ_STACK_SIZE` on x86-64.
const IRQ_STACK_SIZE: usize = 16 * 1024;

#[repr(C, align(16))]
struct IrqStack([u8; IRQ_STACK_SIZE]);

/// One CPU's IRQ stack. A kernel allocates one per CPU at bring-up; a single CPU keeps the
/// example small.
static mut IRQ_STACK: IrqStack = IrqStack([0; IRQ_STACK_SIZE]);
/// `hardirq_stack_inuse`.
static IRQ_STACK_IN_USE: AtomicBool = AtomicBool::new(false);

/// The per-CPU data of this "kernel".
struct PerCpu;

#[cfg(not(feature = "kernel-abi"))]
const TOP_RESERVE: usize = 16;
/// `hardirq_stack_ptr = va + IRQ_STACK_SIZE - 8`.
#[cfg(feature = "kernel-abi")]
const TOP_RESERVE: usize = 8;

// SAFETY: one stack, claimed with a flag and released once; `top_slot` is 16-byte aligned (8
// with `kernel-abi`, built with the kernel's 8-byte stack alignment); nothing here calls
// instrumentable code. Claim and release run with interrupts off in the entry path.
unsafe impl irqstack::Backend for PerCpu {
    #[inline(always)]
    fn claim() -> Option<NonNull<u8>> {
        if IRQ_STACK_IN_USE.swap(true, Ordering::Relaxed) {
            return None;
        }
        NonNull::new(Self::top_slot()? as *mut u8)
    }

    #[inline(always)]
    unsafe fn release(_tos: NonNull<u8>) {
        IRQ_STACK_IN_USE.store(false, Ordering::Relaxed);
    }

    #[inline(always)]
    fn bounds() -> Option<Range<usize>> {
        let base = core::ptr::addr_of!(IRQ_STACK) as usize;
        Some(base..base + IRQ_STACK_SIZE)
    }

    #[inline(always)]
    fn top_slot() -> Option<usize> {
        let base = core::ptr::addr_of!(IRQ_STACK) as usize;
        Some(base + IRQ_STACK_SIZE - TOP_RESERVE)
    }
}

irqstack::set_backend!(PerCpu);

/// The device's interrupt handler: runs on the IRQ stack, may call instrumentable code (the
/// trampoline's markers cover the call into it).
#[on_irqstack]
fn irqstack_km_handle_device(vector: u64, status: u64) -> u64 {
    // SAFETY: an ordinary C function taking a plain integer.
    unsafe { irqstack_km_trace(vector) };
    status ^ vector
}

/// (a) The entry: `noinstr`, traces between markers, then calls the handler.
#[noinstr]
#[unsafe(no_mangle)]
pub extern "C" fn irqstack_km_entry(vector: u64) -> u64 {
    instr_begin!();
    // SAFETY: as above.
    unsafe { irqstack_km_trace(vector) };
    instr_end!();
    irqstack_km_handle_device(vector, 0x5a)
}

/// (c) The same call, written as one asm template with the marker pieces.
#[noinstr]
#[unsafe(no_mangle)]
pub extern "C" fn irqstack_km_entry_asm(vector: u64) {
    // SAFETY: a plain call of a C function with its argument in rdi; `clobber_abi("C")` tells
    // the compiler every caller-saved register may change. The markers are NOPs with records.
    unsafe {
        core::arch::asm!(
            irqstack::instr_begin_insn!(),
            "call {trace}",
            irqstack::instr_end_insn!(),
            trace = sym irqstack_km_trace,
            in("rdi") vector,
            clobber_abi("C"),
        )
    }
}

/// (b) Negative oracle: a `noinstr` function calling instrumentable code without markers.
/// objtool must report exactly this call.
#[cfg(feature = "negative")]
#[noinstr]
#[unsafe(no_mangle)]
pub extern "C" fn irqstack_km_entry_unmarked(vector: u64) {
    // SAFETY: as above.
    unsafe { irqstack_km_trace(vector) };
}

/// Negative oracle for the hardening checks: a trampoline written without the frame setup
/// (`push rbp; mov rbp, rsp`). objtool `--stackval` must reject its call.
#[cfg(feature = "broken-trampoline")]
#[unsafe(naked)]
#[unsafe(link_section = ".noinstr.text")]
#[unsafe(no_mangle)]
pub unsafe extern "sysv64" fn irqstack_km_broken_trampoline(_vector: u64, _tos: *mut u8) -> u64 {
    core::arch::naked_asm!(
        "mov qword ptr [rsi], rsp",
        "mov rsp, rsi",
        irqstack::instr_begin_insn!(),
        "call {body}",
        irqstack::instr_end_insn!(),
        "pop rsp",
        irqstack::__private::ret!(),
        body = sym broken_body,
    )
}

#[cfg(feature = "broken-trampoline")]
extern "sysv64" fn broken_body(vector: u64) -> u64 {
    vector + 1
}

/// Duplication check: a marked region in an `#[inline(always)]` function, inlined into ten
/// callers. Every copy of the `asm!` block must bring its own label and record, so the object
/// holds ten begin/end pairs, one inside each caller.
#[cfg(feature = "duplication")]
mod duplication {
    #[inline(always)]
    fn marked_trace(vector: u64) {
        irqstack::instr_begin!();
        // SAFETY: as above.
        unsafe { super::irqstack_km_trace(vector) };
        irqstack::instr_end!();
    }

    // Each caller passes its own constant, so that the optimizer cannot fold the ten
    // functions into one.
    macro_rules! callers {
        ($($name:ident = $k:literal),*) => {$(
            #[unsafe(no_mangle)]
            pub extern "C" fn $name(vector: u64) {
                marked_trace(vector ^ $k);
            }
        )*};
    }

    callers!(
        irqstack_km_dup_0 = 10,
        irqstack_km_dup_1 = 11,
        irqstack_km_dup_2 = 12,
        irqstack_km_dup_3 = 13,
        irqstack_km_dup_4 = 14,
        irqstack_km_dup_5 = 15,
        irqstack_km_dup_6 = 16,
        irqstack_km_dup_7 = 17,
        irqstack_km_dup_8 = 18,
        irqstack_km_dup_9 = 19
    );

    /// A staticlib must name its panic handler; this code never panics.
    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
        loop {}
    }
}
