//! The interrupt path of a kernel driver, in the shape Linux gives it, written with irqstack:
//!
//! - a `noinstr` entry function (what the IDT entry stub calls) that may only call
//!   instrumentable code between `instr_begin!()` and `instr_end!()`;
//! - an `#[on_irqstack]` handler, called from the entry: its body runs on this CPU's IRQ stack;
//! - handlers of every argument shape (floats, seven arguments, a 40-byte struct, `i128`, `&mut`),
//!   each called from its own `noinstr` entry, and a `run_on_irqstack` softirq;
//! - the per-CPU data behind `gs_percpu_backend!`, over Linux's own per-CPU variables.
//!
//! `tests/objtool.rs` builds this crate to a relocatable object twice: for the host target with
//! the light flags (`-C relocation-model=static -C code-model=kernel -C force-frame-pointers=yes`)
//! and for `x86_64-unknown-none` with every Rust flag a hardened x86-64 kernel build passes (see
//! `tests/kernel_object/mod.rs`), then runs Debian's objtool 6.1 and 6.12 on it, the second time
//! with the kernel's full objtool flag set.
//!
//! Exported symbols are prefixed `irqstack_km_` so the tests can find them.
#![no_std]

use irqstack::{instr_begin, instr_end, noinstr, on_irqstack, run_on_irqstack};

unsafe extern "C" {
    /// An ordinary kernel function that tracing or sanitizers may instrument (think
    /// `trace_irq_handler_entry`): calling it from `noinstr` code needs markers around the call.
    fn irqstack_km_trace(vector: u64);
}

// Linux 5.12+ keeps the IRQ stack in two per-CPU variables, addressed `%gs`-relative:
// `hardirq_stack_ptr` (the top slot, already adjusted: `va + IRQ_STACK_SIZE - 8`) and
// `hardirq_stack_inuse`. The object leaves them undefined, as a module does.
#[cfg(not(feature = "linux-percpu"))]
unsafe extern "C" {
    static hardirq_stack_ptr: usize;
    static hardirq_stack_inuse: bool;
}

#[cfg(not(feature = "linux-percpu"))]
irqstack::gs_percpu_backend!(hardirq_stack_ptr, hardirq_stack_inuse, size = 16 * 1024);

// With `linux-percpu` the runtime names the two variables itself and claims inline.
#[cfg(feature = "linux-percpu")]
irqstack::linux_percpu_backend!(size = 16 * 1024);

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

/// A register frame, passed by `&mut` (a pointer to a named type: thin, one register).
#[repr(C)]
pub struct Regs {
    /// Instruction pointer.
    pub ip: u64,
    /// Flags.
    pub flags: u64,
}

/// Forty bytes, passed and returned by value: in memory under SysV, so the block form.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Forty(pub [u64; 5]);

/// Floats: in general registers on this soft-float target, in SSE registers on the host.
#[on_irqstack]
fn irqstack_km_float(x: f64, n: u64, y: f32) -> f64 {
    x * 0.5 + f64::from(y) + n as f64
}

/// Seven integers: the seventh goes on the stack, so the block form.
#[on_irqstack]
#[allow(clippy::too_many_arguments)]
fn irqstack_km_seven(a: u64, b: u64, c: u64, d: u64, e: u64, f: u64, g: u64) -> u64 {
    a ^ b.rotate_left(1) ^ c.rotate_left(2) ^ d.rotate_left(3) ^ e ^ f ^ g
}

/// A 40-byte struct in and out.
#[on_irqstack]
fn irqstack_km_struct(s: Forty, k: u64) -> Forty {
    let mut out = s;
    out.0[0] ^= k;
    out
}

/// A 128-bit integer (two registers, or memory: the block form).
#[on_irqstack]
fn irqstack_km_wide(x: i128, k: u64) -> i128 {
    x.wrapping_mul(i128::from(k))
}

/// A register frame by `&mut`.
#[on_irqstack]
fn irqstack_km_regs(regs: &mut Regs, vector: u64) -> u64 {
    regs.ip += 2;
    regs.flags ^ vector
}

/// Named lifetimes, in and out.
#[on_irqstack]
fn irqstack_km_pick<'a>(a: &'a mut u64, b: &'a mut u64, first: bool) -> &'a mut u64 {
    if first { a } else { b }
}

/// See [`irqstack_km_call_float`].
#[noinstr]
#[unsafe(no_mangle)]
pub extern "C" fn irqstack_km_call_pick(a: &mut u64, b: &mut u64) {
    *irqstack_km_pick(a, b, true) += 1;
}

/// A handler that never returns (a fatal error path): its trampoline has no way back.
#[on_irqstack]
fn irqstack_km_die(code: u64) -> ! {
    loop {
        // SAFETY: as above.
        unsafe { irqstack_km_trace(code) };
    }
}

/// See [`irqstack_km_call_float`].
#[noinstr]
#[unsafe(no_mangle)]
pub extern "C" fn irqstack_km_call_die(code: u64) -> ! {
    irqstack_km_die(code)
}

/// The state queries from `noinstr` code: `irqstack_active()`, `interrupted_sp()` and
/// `irq_stack_bounds()` must not leave `.noinstr.text` either.
#[noinstr]
#[unsafe(no_mangle)]
pub extern "C" fn irqstack_km_state() -> usize {
    let bounds = irqstack::irq_stack_bounds().map_or(0, |r| r.end - r.start);
    let saved = irqstack::interrupted_sp().unwrap_or(0);
    usize::from(irqstack::irqstack_active()) + bounds + saved
}

/// Entries, one per shape: what the tests disassemble to find the register each caller puts the
/// top of stack in.
#[noinstr]
#[unsafe(no_mangle)]
pub extern "C" fn irqstack_km_call_float(bits: u64, n: u64) -> u64 {
    irqstack_km_float(f64::from_bits(bits), n, 1.5).to_bits()
}

/// See [`irqstack_km_call_float`].
#[noinstr]
#[unsafe(no_mangle)]
pub extern "C" fn irqstack_km_call_seven(a: u64, b: u64) -> u64 {
    irqstack_km_seven(a, b, a + 1, b + 2, a ^ b, 7, 9)
}

/// See [`irqstack_km_call_float`].
#[noinstr]
#[unsafe(no_mangle)]
pub extern "C" fn irqstack_km_call_struct(s: &mut Forty, k: u64) {
    *s = irqstack_km_struct(*s, k);
}

/// See [`irqstack_km_call_float`].
#[noinstr]
#[unsafe(no_mangle)]
pub extern "C" fn irqstack_km_call_wide(lo: u64, hi: u64, k: u64) -> u64 {
    let x = (i128::from(hi as i64) << 64) | i128::from(lo);
    irqstack_km_wide(x, k) as u64
}

/// See [`irqstack_km_call_float`].
#[noinstr]
#[unsafe(no_mangle)]
pub extern "C" fn irqstack_km_call_regs(regs: &mut Regs, vector: u64) -> u64 {
    irqstack_km_regs(regs, vector)
}

/// The softirq: pending work run on the IRQ stack with the closure form, as the kernel's
/// `do_softirq_own_stack()` does.
#[noinstr]
#[unsafe(no_mangle)]
pub extern "C" fn irqstack_km_softirq(pending: u64) -> u64 {
    run_on_irqstack(|| {
        instr_begin!();
        // SAFETY: as above.
        unsafe { irqstack_km_trace(pending) };
        instr_end!();
        pending.count_ones().into()
    })
}

/// Interrupt entry (`#[idtentry]`): one handler of every kind. Their stubs are `asm_<name>`.
mod entry {
    use irqstack::{PtRegs, idtentry};

    /// #UD: no error code.
    #[idtentry]
    pub fn irqstack_km_exc_invalid_op(regs: &mut PtRegs) {
        regs.ip += 2;
    }

    /// #GP: an error code.
    #[idtentry(error_code)]
    pub fn irqstack_km_exc_general_protection(regs: &mut PtRegs, error_code: u64) {
        // SAFETY: an ordinary C function taking a plain integer.
        unsafe { super::irqstack_km_trace(error_code) };
        regs.ip += 2;
    }

    /// Device interrupts: one stub per vector, all landing here with their vector number.
    #[idtentry(irq)]
    pub fn irqstack_km_common_interrupt(regs: &mut PtRegs, vector: u8) {
        // SAFETY: as above.
        unsafe { super::irqstack_km_trace(u64::from(vector)) };
        regs.ax = regs.ax.wrapping_add(1);
    }

    /// A system vector (the local APIC timer).
    #[idtentry(sysvec)]
    pub fn irqstack_km_sysvec_timer(regs: &mut PtRegs) {
        // SAFETY: as above.
        unsafe { super::irqstack_km_trace(regs.ip) };
    }

    /// NMI: on its IST stack, never switches.
    #[idtentry(ist)]
    pub fn irqstack_km_exc_nmi(regs: &mut PtRegs) {
        // SAFETY: as above.
        unsafe { super::irqstack_km_trace(regs.ip) };
    }

    /// #DF: IST with an error code, does not return.
    #[idtentry(ist, error_code)]
    pub fn irqstack_km_exc_double_fault(_regs: &mut PtRegs, error_code: u64) -> ! {
        loop {
            // SAFETY: as above.
            unsafe { super::irqstack_km_trace(error_code) };
        }
    }

    /// The IDT addresses, as a kernel fills its table (and, with IBT, every one an `endbr64`).
    #[unsafe(no_mangle)]
    pub extern "C" fn irqstack_km_idt_addresses(out: &mut [usize; 7]) {
        *out = [
            asm_irqstack_km_exc_invalid_op as unsafe extern "C" fn() as usize,
            asm_irqstack_km_exc_general_protection as unsafe extern "C" fn() as usize,
            asm_irqstack_km_sysvec_timer as unsafe extern "C" fn() as usize,
            asm_irqstack_km_exc_nmi as unsafe extern "C" fn() as usize,
            asm_irqstack_km_exc_double_fault as unsafe extern "C" fn() as usize,
            asm_irqstack_km_common_interrupt_entry(32).unwrap_or(0),
            asm_irqstack_km_common_interrupt_entry(255).unwrap_or(0),
        ];
    }
}

// Negative oracle for the unwind hints: an entry stub whose hint names no register objtool
// knows as a stack base (11). objtool must reject it ("unsupported unwind_hint sp base reg").
#[cfg(feature = "broken-hint")]
core::arch::global_asm!(
    ".pushsection .noinstr.text, \"ax\", @progbits",
    ".globl irqstack_km_broken_stub",
    ".type irqstack_km_broken_stub, @notype",
    "irqstack_km_broken_stub:",
    "4739980:",
    ".pushsection .discard.unwind_hints",
    ".long 4739980b - .",
    ".short 0",
    ".byte 11",
    ".byte 4",
    ".byte 1",
    ".balign 4",
    ".popsection",
    "endbr64",
    "push -1",
    "add rsp, 8",
    "iretq",
    ".size irqstack_km_broken_stub, . - irqstack_km_broken_stub",
    ".popsection",
);

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
