//! The IDT and its entry stubs, in the shape of Linux's `DEFINE_IDTENTRY_*`.
//!
//! Every vector has a naked stub (`asm_*`) that completes the `pt_regs` frame on the stack the
//! CPU delivered the interrupt on, lays a frame record for the frame-pointer chain, and calls its
//! `noinstr` entry function with `(regs, vector)`. The entry function calls an `#[on_irqstack]`
//! handler, which switches to this CPU's IRQ stack (or runs in place when the stack is in use).
//!
//! Stub layout, from the CPU's frame down (the CPU aligns rsp to 16 before pushing the frame in
//! 64-bit mode, so after its 5 words rsp % 16 == 8):
//!
//! ```text
//!   ss, rsp, rflags, cs, rip      pushed by the CPU
//!   orig_ax                       error code (CPU), vector (device IRQ) or -1 (system vector)
//!   rdi ... r15                   15 registers, pt_regs order          <- rdi = regs
//!   (8 bytes padding)             rsp % 16 == 0 at the call below
//!   rip of the interrupted code   a frame record: the chain continues
//!   rbp of the interrupted code   into the interrupted code            <- rbp
//!   return address into the stub  pushed by `call`
//! ```
//!
//! With that record, a frame-pointer walk from a handler on the IRQ stack goes: body -> shim
//! (return into the trampoline) -> the entry function (return into it from the trampoline) ->
//! the stub -> the interrupted function -> its callers.

use core::sync::atomic::{AtomicU64, Ordering};

/// The saved registers, Linux's `struct pt_regs`.
#[repr(C)]
#[derive(Debug)]
pub struct Regs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub orig_ax: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// Bytes between `regs` and the stub's rsp at its `call`: padding and the frame record.
pub const STUB_FRAME_BELOW_REGS: usize = 24;

pub const TIMER_VECTOR: u8 = 0xec;
/// "Call function" IPIs: one vector per sender, so that two senders never coalesce into one
/// pending bit of the receiver's IRR.
pub const CALL_FUNCTION_VECTOR_BASE: u8 = 0xf8;
/// A "device" interrupt raised as a self-IPI (the `DEFINE_IDTENTRY_IRQ` shape: vector in orig_ax).
pub const DEVICE_VECTOR: u8 = 0x41;
pub const SPURIOUS_VECTOR: u8 = 0xff;
/// A "reschedule" IPI whose stub and glue come from the library's `#[idtentry(sysvec)]`.
pub const RESCHEDULE_VECTOR: u8 = 0xfd;

/// The register saves and the call, shared by all stubs. `$orig` pushes the orig_ax slot (empty
/// for exceptions whose error code the CPU pushed).
macro_rules! stub_body {
    ($orig:literal) => {
        concat!(
            $orig,
            "push rdi\n push rsi\n push rdx\n push rcx\n push rax\n push r8\n push r9\n",
            "push r10\n push r11\n push rbx\n push rbp\n push r12\n push r13\n push r14\n push r15\n",
            "mov rdi, rsp\n",
            "sub rsp, 8\n",
            "push qword ptr [rdi + 16*8]\n",
            "push rbp\n",
            "mov rbp, rsp\n",
            "mov esi, {vector}\n",
            "call {entry}\n",
            "lea rsp, [rbp + 24]\n",
            "pop r15\n pop r14\n pop r13\n pop r12\n pop rbp\n pop rbx\n pop r11\n pop r10\n",
            "pop r9\n pop r8\n pop rax\n pop rcx\n pop rdx\n pop rsi\n pop rdi\n",
            "add rsp, 8\n",
            "iretq\n",
        )
    };
}

/// One naked stub: `asm_$name` calls `$entry(regs, $vector)`.
macro_rules! stub {
    ($name:ident, $entry:path, $vector:expr, $orig:literal) => {
        // The stub: every register the interrupted code had is saved before the call and restored
        // before iretq; the entry function gets `regs` in rdi and the vector in esi (SysV);
        // rsp % 16 == 0 at the call (see the layout above); rbp is the frame record's address,
        // callee-saved, so `lea rsp, [rbp + 24]` finds `regs` again after the call.
        //
        // objtool does not follow it: it ends in `iretq`, which objtool takes for
        // `sync_core()`'s IRET-to-self inside a function, and it has no unwind hints (whose
        // binary format changed between objtool 6.1 and 6.12), so it is marked
        // STACK_FRAME_NON_STANDARD, as the kernel marks asm objtool cannot follow. It starts
        // with `endbr64` because the IDT takes its address (IBT), and lives in `.entry.text`,
        // which objtool treats as `noinstr`: it only calls `noinstr` entry functions.
        core::arch::global_asm!(
            concat!(
                ".pushsection .entry.text, \"ax\"\n",
                ".globl ", stringify!($name), "\n",
                ".type ", stringify!($name), ", @function\n",
                ".balign 16\n",
                stringify!($name), ":\n",
                "endbr64\n",
                stub_body!($orig),
                ".size ", stringify!($name), ", . - ", stringify!($name), "\n",
                ".popsection\n",
                ".pushsection .discard.func_stack_frame_non_standard, \"aw\"\n",
                ".long ", stringify!($name), " - .\n",
                ".popsection\n",
            ),
            vector = const $vector,
            entry = sym $entry,
        );
        unsafe extern "C" {
            pub fn $name();
        }
    };
}

// System vectors (DEFINE_IDTENTRY_SYSVEC): orig_ax = -1.
stub!(
    asm_sysvec_apic_timer,
    crate::work::sysvec_apic_timer,
    TIMER_VECTOR,
    "push -1\n"
);
stub!(
    asm_sysvec_call_function_0,
    crate::work::sysvec_call_function,
    CALL_FUNCTION_VECTOR_BASE,
    "push -1\n"
);
stub!(
    asm_sysvec_call_function_1,
    crate::work::sysvec_call_function,
    CALL_FUNCTION_VECTOR_BASE + 1,
    "push -1\n"
);
stub!(
    asm_sysvec_call_function_2,
    crate::work::sysvec_call_function,
    CALL_FUNCTION_VECTOR_BASE + 2,
    "push -1\n"
);
stub!(
    asm_sysvec_call_function_3,
    crate::work::sysvec_call_function,
    CALL_FUNCTION_VECTOR_BASE + 3,
    "push -1\n"
);
stub!(
    asm_sysvec_spurious,
    crate::work::sysvec_spurious,
    SPURIOUS_VECTOR,
    "push -1\n"
);
// Device interrupts (DEFINE_IDTENTRY_IRQ): orig_ax = the vector.
stub!(
    asm_common_interrupt,
    crate::work::common_interrupt,
    DEVICE_VECTOR,
    "push 0x41\n"
);

// Exceptions: vector in esi; those without an error code push -1 in its place.
macro_rules! exc {
    ($name:ident, $v:literal, noerr) => {
        stub!($name, exception_entry, $v, "push -1\n");
    };
    ($name:ident, $v:literal, err) => {
        stub!($name, exception_entry, $v, "");
    };
}
exc!(asm_exc_divide, 0, noerr);
exc!(asm_exc_debug, 1, noerr);
exc!(asm_exc_nmi, 2, noerr);
exc!(asm_exc_int3, 3, noerr);
exc!(asm_exc_overflow, 4, noerr);
exc!(asm_exc_bounds, 5, noerr);
exc!(asm_exc_invalid_op, 6, noerr);
exc!(asm_exc_device_not_available, 7, noerr);
exc!(asm_exc_double_fault, 8, err);
exc!(asm_exc_coproc, 9, noerr);
exc!(asm_exc_invalid_tss, 10, err);
exc!(asm_exc_segment_not_present, 11, err);
exc!(asm_exc_stack_segment, 12, err);
exc!(asm_exc_general_protection, 13, err);
exc!(asm_exc_page_fault, 14, err);
exc!(asm_exc_spurious15, 15, noerr);
exc!(asm_exc_coprocessor_error, 16, noerr);
exc!(asm_exc_alignment_check, 17, err);
exc!(asm_exc_machine_check, 18, noerr);
exc!(asm_exc_simd, 19, noerr);
exc!(asm_exc_virtualization, 20, noerr);
exc!(asm_exc_control_protection, 21, err);

const EXCEPTION_NAMES: [&str; 22] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor segment overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack-segment fault",
    "#GP general protection",
    "#PF page fault",
    "reserved 15",
    "#MF x87 error",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD exception",
    "#VE virtualization",
    "#CP control protection",
];

/// Times an exception was reported (the first one exits QEMU; this is for the record).
static EXCEPTIONS: AtomicU64 = AtomicU64::new(0);

/// Every exception fails the run: report what, vector, rip, CPU, error code, CR2, then exit
/// with the failure status. A #DF whose CR2 lies in this CPU's IRQ-stack guard is the expected
/// outcome of the overflow boot: report "IRQ stack overflow on CPU n" and exit with its status.
#[irqstack::noinstr]
extern "C" fn exception_entry(regs: &mut Regs, vector: u64) {
    // Reporting calls ordinary (instrumentable) code; it ends the run.
    irqstack::instr_begin!();
    EXCEPTIONS.fetch_add(1, Ordering::Relaxed);
    let cpu = crate::percpu::cpu_id();
    let cr2 = crate::hw::read_cr2();
    let name = EXCEPTION_NAMES.get(vector as usize).copied().unwrap_or("?");
    if vector == 8 && (cpu as usize) < crate::MAX_CPUS {
        let guard = crate::percpu::irq_guard(cpu as usize);
        if guard.contains(&(cr2 as usize)) {
            crate::hw::print_locked(
                format_args!(
                    "IRQ stack overflow on CPU {cpu}: fault address {cr2:#x} in guard page \
                     [{:#x}, {:#x}), IRQ stack [{:#x}, {:#x}), interrupted rsp {:#x}, rip {:#x}, \
                     #DF on IST stack sp {:#x}\n",
                    guard.start,
                    guard.end,
                    crate::percpu::irq_stack(cpu as usize).start,
                    crate::percpu::irq_stack(cpu as usize).end,
                    regs.rsp,
                    regs.rip,
                    crate::hw::current_sp(),
                ),
                true,
            );
            crate::hw::exit_qemu(crate::hw::EXIT_OVERFLOW);
        }
    }
    // Which stack the report runs on: IST1/IST2 for #DF/NMI, else the interrupted one.
    let sp = crate::hw::current_sp();
    let c = (cpu as usize).min(crate::MAX_CPUS - 1);
    let stack = if (crate::percpu::ist_top(c, 0) - 16 * 1024..crate::percpu::ist_top(c, 0))
        .contains(&sp)
    {
        "IST stack 1"
    } else if (crate::percpu::ist_top(c, 1) - 16 * 1024..crate::percpu::ist_top(c, 1)).contains(&sp)
    {
        "IST stack 2"
    } else if crate::percpu::irq_stack(c).contains(&sp) {
        "the IRQ stack"
    } else {
        "the task stack"
    };
    crate::hw::print_locked(
        format_args!(
            "FAIL cpu {cpu}: exception {name} (vector {vector}) at rip {:#x}, error code {:#x}, \
             cr2 {cr2:#x}, rsp {:#x}, reported on {stack}\n",
            regs.rip, regs.orig_ax, regs.rsp
        ),
        true,
    );
    crate::hw::exit_qemu(crate::hw::EXIT_FAIL);
}

#[derive(Clone, Copy)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

const MISSING: Gate = Gate {
    offset_low: 0,
    selector: 0,
    ist: 0,
    type_attr: 0,
    offset_mid: 0,
    offset_high: 0,
    reserved: 0,
};

/// One IDT for all CPUs (built by the BSP before the others start, read-only after).
static mut IDT: [Gate; 256] = [MISSING; 256];

fn gate(handler: unsafe extern "C" fn(), ist: u8) -> Gate {
    let a = handler as usize;
    Gate {
        offset_low: a as u16,
        selector: 0x08,
        ist,
        type_attr: 0x8e, // present, DPL 0, 64-bit interrupt gate (IF cleared on entry)
        offset_mid: (a >> 16) as u16,
        offset_high: (a >> 32) as u32,
        reserved: 0,
    }
}

/// Fills the IDT (BSP, once). Vectors without a gate are not present: delivering one raises
/// #GP (error code names the vector), which fails the run.
pub fn init() {
    let exceptions: [unsafe extern "C" fn(); 22] = [
        asm_exc_divide,
        asm_exc_debug,
        asm_exc_nmi,
        asm_exc_int3,
        asm_exc_overflow,
        asm_exc_bounds,
        asm_exc_invalid_op,
        asm_exc_device_not_available,
        asm_exc_double_fault,
        asm_exc_coproc,
        asm_exc_invalid_tss,
        asm_exc_segment_not_present,
        asm_exc_stack_segment,
        asm_exc_general_protection,
        asm_exc_page_fault,
        asm_exc_spurious15,
        asm_exc_coprocessor_error,
        asm_exc_alignment_check,
        asm_exc_machine_check,
        asm_exc_simd,
        asm_exc_virtualization,
        asm_exc_control_protection,
    ];
    // SAFETY: only the BSP runs, before any CPU loads the IDT.
    let idt = unsafe { &mut *core::ptr::addr_of_mut!(IDT) };
    for (v, h) in exceptions.iter().enumerate() {
        // #DF on IST1 (the IRQ stack may be the dead one), NMI on IST2 (it may arrive anywhere).
        let ist = match v {
            8 => 1,
            2 => 2,
            _ => 0,
        };
        idt[v] = gate(*h, ist);
    }
    idt[usize::from(TIMER_VECTOR)] = gate(asm_sysvec_apic_timer, 0);
    let call: [unsafe extern "C" fn(); 4] = [
        asm_sysvec_call_function_0,
        asm_sysvec_call_function_1,
        asm_sysvec_call_function_2,
        asm_sysvec_call_function_3,
    ];
    for (i, h) in call.iter().enumerate() {
        idt[usize::from(CALL_FUNCTION_VECTOR_BASE) + i] = gate(*h, 0);
    }
    idt[usize::from(DEVICE_VECTOR)] = gate(asm_common_interrupt, 0);
    idt[usize::from(SPURIOUS_VECTOR)] = gate(asm_sysvec_spurious, 0);
    idt[usize::from(RESCHEDULE_VECTOR)] = gate(crate::work::asm_sysvec_reschedule_ipi, 0);
}

/// Loads the IDT on this CPU.
pub fn load() {
    #[repr(C, packed)]
    struct Ptr {
        limit: u16,
        base: u64,
    }
    let ptr = Ptr {
        limit: (core::mem::size_of::<[Gate; 256]>() - 1) as u16,
        base: core::ptr::addr_of!(IDT) as u64,
    };
    // SAFETY: the IDT is complete (built before any CPU calls this) and lives forever; lidt
    // reads the 10-byte pointer from this frame.
    unsafe {
        core::arch::asm!("lidt [{}]", in(reg) &ptr, options(readonly, nostack, preserves_flags))
    };
}
