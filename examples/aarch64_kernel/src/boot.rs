//! Entry points and the exception vector table (assembly).
//!
//! - `_start`: CPU 0, entered by QEMU at EL1 with the MMU off (the ELF entry point);
//! - `secondary_entry`: the other CPUs, started by PSCI `CPU_ON` with `x0` = their number;
//! - `vectors` (VBAR_EL1): IRQs taken at EL1 on SP_EL1 go to `irq_entry`, which saves the
//!   interrupted state (general registers, ELR/SPSR, the FP/SIMD registers) in a frame on the
//!   interrupted stack, links a frame record into the x29 chain and calls Rust's
//!   `irq_entry_rust(frame)`; every other exception is reported and fails the run.

use crate::{MAX_CPUS, TASK_STACK_SIZE};

/// The saved state of an interrupted context, as `irq_entry` lays it out on the interrupted
/// stack (816 bytes, a multiple of 16 so that sp stays aligned).
#[repr(C)]
pub struct Frame {
    /// x0..x30.
    pub x: [u64; 31],
    pub elr: u64,
    pub spsr: u64,
    _pad: u64,
    /// The frame record linking the handler's x29 chain to the interrupted code:
    /// (interrupted x29, interrupted pc).
    pub record: [u64; 2],
    /// q0..q31 (the interrupted code may hold live values in all of them, full width).
    pub q: [u128; 32],
    pub fpsr: u64,
    pub fpcr: u64,
}

const _: () = assert!(core::mem::size_of::<Frame>() == 816);
const _: () = assert!(core::mem::offset_of!(Frame, record) == 272);

#[repr(C, align(16))]
pub struct TaskStacks(pub [[u8; TASK_STACK_SIZE]; MAX_CPUS]);

/// The boot/idle stack of each CPU (`_start` and `secondary_entry` set sp to the top of theirs).
#[unsafe(no_mangle)]
pub static mut TASK_STACKS: TaskStacks = TaskStacks([[0; TASK_STACK_SIZE]; MAX_CPUS]);

unsafe extern "C" {
    /// The PSCI `CPU_ON` entry point of the other CPUs.
    pub fn secondary_entry();
}

core::arch::global_asm!(
    r#"
    /* Where this object's CFI goes (the directive applies to the whole object, whose one
       codegen unit holds every function of the kernel crate, the library's trampolines
       included): .debug_frame, which gdb reads and the loader ignores. Nothing unwinds at run
       time (panic = "abort"), so no .eh_frame is needed; the one the precompiled core brings
       is discarded by link.ld. */
    .cfi_sections .debug_frame

    .section .text.boot, "ax"
    .globl _start
    .type _start, %function
_start:
    /* CPU 0 only (QEMU holds the others powered off until PSCI CPU_ON). x0 = 0: CPU 0. */
    mov x0, #0
    b 4f
    .size _start, . - _start

    .globl secondary_entry
    .type secondary_entry, %function
secondary_entry:
    /* PSCI CPU_ON: x0 = the context id, which kernel_main passes as the CPU number (< MAX_CPUS,
       checked there before the call). */
4:
    /* sp = top of TASK_STACKS[x0]: base + (x0 + 1) * {stack}. x1, x2 are free here: nothing
       has been saved yet. */
    adrp x1, TASK_STACKS
    add x1, x1, :lo12:TASK_STACKS
    add x2, x0, #1
    mov x3, #{stack}
    madd x1, x2, x3, x1
    mov sp, x1
    /* FP/SIMD at EL1 and EL0 (CPACR_EL1.FPEN = 0b11): Rust code (formatting, copies) uses the
       vector registers. The isb makes it take effect before the first such instruction. */
    mov x1, #(3 << 20)
    msr cpacr_el1, x1
    /* The exception vectors. */
    adrp x1, vectors
    add x1, x1, :lo12:vectors
    msr vbar_el1, x1
    isb
    /* The end of the frame-record chain: walkers stop at x29 = 0. */
    mov x29, xzr
    mov x30, xzr
    cbnz x0, 3f
    /* CPU 0 zeroes .bss (QEMU's RAM starts zeroed, but the kernel does not rely on it). The
       bounds are 16-byte aligned (link.ld). CPU 0's stack lies in .bss too, but nothing has
       been stored through sp yet. */
    adrp x1, __bss_start
    add x1, x1, :lo12:__bss_start
    adrp x2, __bss_end
    add x2, x2, :lo12:__bss_end
2:  cmp x1, x2
    b.hs 3f
    stp xzr, xzr, [x1], #16
    b 2b
3:  bl kernel_entry
    /* kernel_entry does not return. */
    brk #0x1
    .size secondary_entry, . - secondary_entry

    /* The vector table: 16 entries of 0x80 bytes, 2 KiB aligned (VBAR_EL1 bits 10:0 are 0). */
    .section .text.vectors, "ax"
    .balign 0x800
    .globl vectors
vectors:
    .irp kind, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    .balign 0x80
    .if \kind == 5
    /* Current EL with SP_ELx, IRQ: the only expected one. */
    b irq_entry
    .else
    /* Anything else: report (kind, ESR, ELR, FAR) and fail; never returns. */
    mov x0, #\kind
    mrs x1, esr_el1
    mrs x2, elr_el1
    mrs x3, far_el1
    b unexpected_exception
    .endif
    .endr

    .section .text.vectors, "ax"
    .globl irq_entry
    .type irq_entry, %function
irq_entry:
    /* CFI for debuggers (see the top of this file: in .debug_frame): the interrupted context
       is this frame's "caller", its pc the ELR saved in the frame record, its sp the CFA. A
       signal frame: the pc is not a return address (no pc - 1 lookup). */
    .cfi_startproc
    .cfi_signal_frame
    /* The frame (struct Frame, 816 bytes) on the interrupted stack: the task stack, or the IRQ
       stack when this IRQ nests in a softirq running there. IRQs stay masked (the exception set
       PSTATE.I) until Rust unmasks them. */
    sub sp, sp, #816
    .cfi_def_cfa_offset 816
    stp x0, x1, [sp, #0]
    stp x2, x3, [sp, #16]
    stp x4, x5, [sp, #32]
    stp x6, x7, [sp, #48]
    stp x8, x9, [sp, #64]
    stp x10, x11, [sp, #80]
    stp x12, x13, [sp, #96]
    stp x14, x15, [sp, #112]
    stp x16, x17, [sp, #128]
    stp x18, x19, [sp, #144]
    stp x20, x21, [sp, #160]
    stp x22, x23, [sp, #176]
    stp x24, x25, [sp, #192]
    stp x26, x27, [sp, #208]
    stp x28, x29, [sp, #224]
    .cfi_offset x29, -584
    /* ELR/SPSR: a nested IRQ overwrites them, so they are restored from here. */
    mrs x0, elr_el1
    mrs x1, spsr_el1
    stp x30, x0, [sp, #240]
    str x1, [sp, #256]
    /* A frame record (interrupted x29, interrupted pc) and x29 pointing at it: frame-pointer
       walkers go from the handler through here into the interrupted function. */
    stp x29, x0, [sp, #272]
    add x29, sp, #272
    /* CFA = the interrupted sp = x29 + 544; x29 and the pc (in the return-address column, x30)
       in the frame record. */
    .cfi_def_cfa x29, 544
    .cfi_offset x29, -544
    .cfi_offset x30, -536
    stp q0, q1, [sp, #288]
    stp q2, q3, [sp, #320]
    stp q4, q5, [sp, #352]
    stp q6, q7, [sp, #384]
    stp q8, q9, [sp, #416]
    stp q10, q11, [sp, #448]
    stp q12, q13, [sp, #480]
    stp q14, q15, [sp, #512]
    stp q16, q17, [sp, #544]
    stp q18, q19, [sp, #576]
    stp q20, q21, [sp, #608]
    stp q22, q23, [sp, #640]
    stp q24, q25, [sp, #672]
    stp q26, q27, [sp, #704]
    stp q28, q29, [sp, #736]
    stp q30, q31, [sp, #768]
    mrs x0, fpsr
    mrs x1, fpcr
    add x2, sp, #800    /* beyond stp's reach from sp */
    stp x0, x1, [x2]
    /* irq_entry_rust(frame): AAPCS64, sp 16-byte aligned (the interrupted sp was, 816 is a
       multiple of 16). */
    mov x0, sp
    bl irq_entry_rust
    .cfi_def_cfa sp, 816
    add x2, sp, #800
    ldp x0, x1, [x2]
    msr fpsr, x0
    msr fpcr, x1
    ldp q0, q1, [sp, #288]
    ldp q2, q3, [sp, #320]
    ldp q4, q5, [sp, #352]
    ldp q6, q7, [sp, #384]
    ldp q8, q9, [sp, #416]
    ldp q10, q11, [sp, #448]
    ldp q12, q13, [sp, #480]
    ldp q14, q15, [sp, #512]
    ldp q16, q17, [sp, #544]
    ldp q18, q19, [sp, #576]
    ldp q20, q21, [sp, #608]
    ldp q22, q23, [sp, #640]
    ldp q24, q25, [sp, #672]
    ldp q26, q27, [sp, #704]
    ldp q28, q29, [sp, #736]
    ldp q30, q31, [sp, #768]
    /* IRQs are masked again here (Rust returns with PSTATE.I set): ELR/SPSR cannot change
       between these writes and the eret. */
    ldp x30, x0, [sp, #240]
    ldr x1, [sp, #256]
    msr elr_el1, x0
    msr spsr_el1, x1
    ldp x0, x1, [sp, #0]
    ldp x2, x3, [sp, #16]
    ldp x4, x5, [sp, #32]
    ldp x6, x7, [sp, #48]
    ldp x8, x9, [sp, #64]
    ldp x10, x11, [sp, #80]
    ldp x12, x13, [sp, #96]
    ldp x14, x15, [sp, #112]
    ldp x16, x17, [sp, #128]
    ldp x18, x19, [sp, #144]
    ldp x20, x21, [sp, #160]
    ldp x22, x23, [sp, #176]
    ldp x24, x25, [sp, #192]
    ldp x26, x27, [sp, #208]
    ldp x28, x29, [sp, #224]
    add sp, sp, #816
    .cfi_def_cfa_offset 0
    eret
    .cfi_endproc
    .size irq_entry, . - irq_entry
    "#,
    stack = const TASK_STACK_SIZE,
);
