//! Interrupt entry on x86-64: the register frame (`PtRegs`) and the assembly stubs that
//! `#[idtentry]` installs in the IDT, in the shape of Linux's `idtentry` family
//! (`arch/x86/entry/entry_64.S`, `arch/x86/include/asm/idtentry.h`).
//!
//! A stub is entered by the CPU with the hardware frame on the stack (`ss`, `rsp`, `rflags`,
//! `cs`, `rip`, pushed on a stack aligned to 16, and for some exceptions an error code below
//! them). It completes the frame into a `PtRegs`, switches `GS` to the kernel's when the
//! interrupt came from user mode, calls a Rust glue function with a pointer to the frame (the
//! glue runs the handler, on the IRQ stack for device and system vectors), restores every
//! register from the frame (so changes the handler made are what `iretq` returns to), switches
//! `GS` back when returning to user mode, and returns with `iretq`.

/// The registers of interrupted code, as an entry stub saves them: the layout of Linux's
/// `struct pt_regs` on x86-64 (`arch/x86/include/asm/ptrace.h`), 168 bytes, lowest address
/// first. The last five fields are the frame the CPU pushes itself.
///
/// A handler gets `&mut PtRegs`; what it writes is what the stub restores and `iretq` returns
/// to (`ip`, `flags`, `sp`, the general registers).
///
/// ```
/// use irqstack::PtRegs;
/// assert_eq!(core::mem::size_of::<PtRegs>(), 21 * 8);
/// let regs = PtRegs { cs: 0x33, ..PtRegs::default() };
/// assert!(regs.user_mode());
/// assert!(!PtRegs { cs: 0x08, ..PtRegs::default() }.user_mode());
/// ```
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PtRegs {
    /// `r15` (offset 0). Callee-saved registers first, as the stub pushes them last.
    pub r15: u64,
    /// `r14` (offset 8).
    pub r14: u64,
    /// `r13` (offset 16).
    pub r13: u64,
    /// `r12` (offset 24).
    pub r12: u64,
    /// `rbp` (offset 32).
    pub bp: u64,
    /// `rbx` (offset 40).
    pub bx: u64,
    /// `r11` (offset 48). Caller-saved registers from here.
    pub r11: u64,
    /// `r10` (offset 56).
    pub r10: u64,
    /// `r9` (offset 64).
    pub r9: u64,
    /// `r8` (offset 72).
    pub r8: u64,
    /// `rax` (offset 80).
    pub ax: u64,
    /// `rcx` (offset 88).
    pub cx: u64,
    /// `rdx` (offset 96).
    pub dx: u64,
    /// `rsi` (offset 104).
    pub si: u64,
    /// `rdi` (offset 112).
    pub di: u64,
    /// Offset 120: the error code for exceptions that push one, the vector number for device
    /// interrupts; the stub hands it to the handler and stores `-1` here (Linux: "no system call
    /// to restart").
    pub orig_ax: u64,
    /// Offset 128, from the CPU: the interrupted instruction pointer.
    pub ip: u64,
    /// Offset 136, from the CPU: the interrupted code segment; its low two bits are the
    /// privilege level the interrupt came from.
    pub cs: u64,
    /// Offset 144, from the CPU: `rflags`.
    pub flags: u64,
    /// Offset 152, from the CPU: the interrupted stack pointer.
    pub sp: u64,
    /// Offset 160, from the CPU: the interrupted stack segment.
    pub ss: u64,
}

impl PtRegs {
    /// Whether the interrupted code ran in user mode (ring 3): the privilege level in `cs`.
    ///
    /// ```
    /// let mut regs = irqstack::PtRegs::default();
    /// regs.cs = 0x2b; // a ring-3 selector
    /// assert!(regs.user_mode());
    /// ```
    #[inline(always)]
    pub fn user_mode(&self) -> bool {
        self.cs & 3 != 0
    }
}

// The stubs address the frame with these offsets.
const _: () = {
    assert!(core::mem::size_of::<PtRegs>() == 168);
    assert!(core::mem::offset_of!(PtRegs, orig_ax) == 120);
    assert!(core::mem::offset_of!(PtRegs, ip) == 128);
    assert!(core::mem::offset_of!(PtRegs, cs) == 136);
    assert!(core::mem::offset_of!(PtRegs, sp) == 152);
};

/// An objtool unwind hint (`.discard.unwind_hints`, Linux's `UNWIND_HINT`): from the labelled
/// instruction on, the stack pointer plus `$offset` points at a full register frame (`regs`,
/// `UNWIND_HINT_REGS`) or at the hardware frame only (`iret`, `UNWIND_HINT_IRET_REGS`). The
/// record is `{ s32 ip (PC-relative), s16 sp_offset, u8 sp_reg, u8 type, u8 signal }`, aligned
/// to 4; `sp_reg` 5 is `ORC_REG_SP`. objtool generates ORC from it, and the kernel's unwinder
/// then reads the interrupted registers from the frame. The last two bytes come from
/// `__irqstack_rt_hint_type!`.
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_unwind_hint {
    ($kind:ident, $offset:literal, $label:literal) => {
        ::core::concat!(
            $label,
            ":\n.pushsection .discard.unwind_hints\n.long ",
            $label,
            "b - .\n.short ",
            $offset,
            "\n.byte 5\n",
            $crate::__irqstack_rt_hint_type!($kind),
            ".balign 4\n.popsection\n"
        )
    };
}

/// The type and last byte of an unwind hint. Linux 6.4 renumbered the types and turned the last
/// byte from `end` into `signal`; this is the 6.4+ encoding: `REGS` = 3, `REGS_PARTIAL` = 4,
/// `signal` = 1 (the frame is an interrupt's, so its `ip` is exact). Feature
/// `objtool-legacy-hints` selects the older one.
#[cfg(not(feature = "objtool-legacy-hints"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_hint_type {
    (regs) => {
        ".byte 3\n.byte 1\n"
    };
    (iret) => {
        ".byte 4\n.byte 1\n"
    };
}

/// The encoding of Linux before 6.4: `REGS` = 1, `REGS_PARTIAL` = 2, last byte `end` = 0.
#[cfg(feature = "objtool-legacy-hints")]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_hint_type {
    (regs) => {
        ".byte 1\n.byte 0\n"
    };
    (iret) => {
        ".byte 2\n.byte 0\n"
    };
}

/// `endbr64` where the build enforces indirect branch tracking (feature `ibt`, the kernel's
/// `CONFIG_X86_KERNEL_IBT`): an entry stub's address is taken by the IDT, and with IBT on the
/// CPU faults on an indirect transfer to anything else.
#[cfg(feature = "ibt")]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_endbr {
    () => {
        "endbr64\n"
    };
}

/// Without feature `ibt`: nothing.
#[cfg(not(feature = "ibt"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_endbr {
    () => {
        ""
    };
}

/// The entry stub `$symbol` of an `#[idtentry]` handler (Intel syntax, for `global_asm!`, with
/// operand `glue = sym <glue function>`). `$code` is `none` (the stub pushes `-1` into
/// `orig_ax`) or `cpu` (the CPU pushed an error code there; device interrupt stubs push the
/// vector number the same way). `noreturn = true` for a handler that never returns (`-> !`):
/// the call is followed by `int3` instead of the way back. Labels `$l0`..`$l5` are fresh
/// numbers.
///
/// ```text
/// HINT iret (+8 with a code)  objtool: the hardware frame is at rsp (above the code)
/// [endbr64]                   IBT: the IDT jumps here indirectly
/// cld                         the ABI wants DF clear; the interrupted code may have set it
/// [push -1]                   orig_ax when the CPU pushed no code
/// push rdi ... push r15       the rest of PtRegs, in its layout; rsp now points at it
/// HINT regs                   objtool: a full frame at rsp
/// xor eax, eax ... r15d       clear what the interrupted code left in registers (rdi, rsi and
///                             rbp are set below), so no value of its reaches the handler, not
///                             even speculatively
/// test byte [rsp+136], 3      cs of the interrupted code: from user mode?
/// jz 1f; swapgs; 1:           then GS must become the kernel's before any per-CPU access
/// lfence                      and no speculation past here with the wrong GS base (either way)
/// mov rdi, rsp                first argument: &mut PtRegs
/// mov rsi, [rsp+120]          second: the code (error code / vector / -1) ...
/// mov qword [rsp+120], -1     ... and orig_ax = -1, as Linux leaves it
/// push [rsp+128]; push rbp    a frame record {interrupted rbp, interrupted rip}:
/// mov rbp, rsp                frame-pointer walkers go from the handler to the interrupted code
/// sub rsp, 8                  the CPU aligned the stack to 16 before its frame; 21 words + 2
///                             leave it 8 off, and Rust code assumes 16 at every call
/// call glue                   direct call
/// add rsp, 8; pop rbp; add rsp, 8    drop the record (rbp comes back from the frame below)
/// test byte [rsp+136], 3; jz 2f; swapgs; 2:   back to user mode: user GS again
/// pop r15 ... pop rdi         every register from the frame, as the handler left it
/// add rsp, 8                  drop orig_ax
/// HINT iret                   objtool: the hardware frame is at rsp again
/// iretq
/// ```
///
/// DWARF CFI (in `.debug_frame` with `kernel-abi`): the CFA is the top of the hardware frame
/// (`rsp + 40` at entry, `+ 48` below an error code), kept right across every push and pop; the
/// interrupted `rip` is at CFA - 40, its `rsp` is the value stored at CFA - 16, every general
/// register is where the frame holds it, and `.cfi_signal_frame` tells debuggers that `rip` is
/// exact (an interrupted instruction, not a return address) where the CFI goes to `.eh_frame`.
/// In `.debug_frame` (`kernel-abi`) LLVM writes no CIE augmentation, so the mark is lost: a
/// debugger then looks the interrupted frame up at `rip - 1`, which names the wrong function
/// only for an interrupt that arrived on a function's first instruction (checked by
/// `readelf --debug-dump=frames` on the SMP test kernel: every CIE has augmentation "").
///
/// The stub is `STT_NOTYPE`, like Linux's `SYM_CODE_START` code: objtool then follows it from
/// its hints instead of checking it as a callable function (an `iretq` in a function means
/// something else to it).
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_idt_stub {
    (symbol = $symbol:literal, code = none, noreturn = $noreturn:tt, labels = [$l0:literal, $l1:literal, $l2:literal, $l3:literal, $l4:literal, $l5:literal]) => {
        $crate::__irqstack_rt_idt_stub!(@stub $symbol, "0", "40", "push -1\n.cfi_adjust_cfa_offset 8\n", $noreturn, [$l0, $l1, $l2, $l3, $l4, $l5])
    };
    (symbol = $symbol:literal, code = cpu, noreturn = $noreturn:tt, labels = [$l0:literal, $l1:literal, $l2:literal, $l3:literal, $l4:literal, $l5:literal]) => {
        $crate::__irqstack_rt_idt_stub!(@stub $symbol, "8", "48", "", $noreturn, [$l0, $l1, $l2, $l3, $l4, $l5])
    };
    // The way back: drop the frame record, restore every register from the frame, `iretq`.
    (@tail false, $l3:literal, $l4:literal) => {
        ::core::concat!(
            "add rsp, 8\n.cfi_adjust_cfa_offset -8\n",
            "pop rbp\n.cfi_adjust_cfa_offset -8\n",
            "add rsp, 8\n.cfi_adjust_cfa_offset -8\n",
            // rbp comes back from the frame like every other register.
            "test byte ptr [rsp + 136], 3\n",
            "jz ", $l3, "f\n",
            "swapgs\n",
            $l3, ":\n",
            "pop r15\n.cfi_adjust_cfa_offset -8\n",
            "pop r14\n.cfi_adjust_cfa_offset -8\n",
            "pop r13\n.cfi_adjust_cfa_offset -8\n",
            "pop r12\n.cfi_adjust_cfa_offset -8\n",
            "pop rbp\n.cfi_adjust_cfa_offset -8\n",
            "pop rbx\n.cfi_adjust_cfa_offset -8\n",
            "pop r11\n.cfi_adjust_cfa_offset -8\n",
            "pop r10\n.cfi_adjust_cfa_offset -8\n",
            "pop r9\n.cfi_adjust_cfa_offset -8\n",
            "pop r8\n.cfi_adjust_cfa_offset -8\n",
            "pop rax\n.cfi_adjust_cfa_offset -8\n",
            "pop rcx\n.cfi_adjust_cfa_offset -8\n",
            "pop rdx\n.cfi_adjust_cfa_offset -8\n",
            "pop rsi\n.cfi_adjust_cfa_offset -8\n",
            "pop rdi\n.cfi_adjust_cfa_offset -8\n",
            "add rsp, 8\n.cfi_adjust_cfa_offset -8\n",
            $crate::__irqstack_rt_unwind_hint!(iret, "0", $l4),
            "iretq\n",
        )
    };
    // A handler that does not return (`-> !`): no way back, a trap after the call. objtool
    // knows the glue never returns: it would call a return path unreachable (or ask for a
    // `__noreturn` annotation), and passes over a trap (`int3`; not `ud2`, which it treats as
    // an instruction that must be reachable).
    (@tail true, $l3:literal, $l4:literal) => {
        "int3\n"
    };
    (@stub $symbol:literal, $hint_off:literal, $cfa:literal, $push_code:literal, $noreturn:tt, [$l0:literal, $l1:literal, $l2:literal, $l3:literal, $l4:literal, $l5:literal]) => {
        ::core::concat!(
            ".pushsection .noinstr.text, \"ax\", @progbits\n",
            ".balign 16, 0xcc\n",
            ".globl ", $symbol, "\n.type ", $symbol, ", @notype\n",
            $symbol, ":\n",
            $crate::__irqstack_rt_cfi_sections!(),
            ".cfi_startproc simple\n.cfi_signal_frame\n",
            ".cfi_def_cfa rsp, ", $cfa, "\n",
            ".cfi_offset rip, -40\n",
            // rsp of the interrupted code = *(CFA - 16):
            // DW_CFA_val_expression(rsp, [DW_OP_lit16, DW_OP_minus, DW_OP_deref]).
            ".cfi_escape 0x16, 0x07, 0x03, 0x40, 0x1c, 0x06\n",
            $crate::__irqstack_rt_unwind_hint!(iret, $hint_off, $l0),
            $crate::__irqstack_rt_endbr!(),
            "cld\n",
            $push_code,
            "push rdi\n.cfi_adjust_cfa_offset 8\n.cfi_rel_offset rdi, 0\n",
            "push rsi\n.cfi_adjust_cfa_offset 8\n.cfi_rel_offset rsi, 0\n",
            "push rdx\n.cfi_adjust_cfa_offset 8\n.cfi_rel_offset rdx, 0\n",
            "push rcx\n.cfi_adjust_cfa_offset 8\n.cfi_rel_offset rcx, 0\n",
            "push rax\n.cfi_adjust_cfa_offset 8\n.cfi_rel_offset rax, 0\n",
            "push r8\n.cfi_adjust_cfa_offset 8\n.cfi_rel_offset r8, 0\n",
            "push r9\n.cfi_adjust_cfa_offset 8\n.cfi_rel_offset r9, 0\n",
            "push r10\n.cfi_adjust_cfa_offset 8\n.cfi_rel_offset r10, 0\n",
            "push r11\n.cfi_adjust_cfa_offset 8\n.cfi_rel_offset r11, 0\n",
            "push rbx\n.cfi_adjust_cfa_offset 8\n.cfi_rel_offset rbx, 0\n",
            "push rbp\n.cfi_adjust_cfa_offset 8\n.cfi_rel_offset rbp, 0\n",
            "push r12\n.cfi_adjust_cfa_offset 8\n.cfi_rel_offset r12, 0\n",
            "push r13\n.cfi_adjust_cfa_offset 8\n.cfi_rel_offset r13, 0\n",
            "push r14\n.cfi_adjust_cfa_offset 8\n.cfi_rel_offset r14, 0\n",
            "push r15\n.cfi_adjust_cfa_offset 8\n.cfi_rel_offset r15, 0\n",
            $crate::__irqstack_rt_unwind_hint!(regs, "0", $l1),
            // Nothing the interrupted code left in a register may reach the handler, not even
            // speculatively (Linux's PUSH_AND_CLEAR_REGS): the values are in the frame.
            "xor eax, eax\nxor ecx, ecx\nxor edx, edx\nxor ebx, ebx\n",
            "xor r8d, r8d\nxor r9d, r9d\nxor r10d, r10d\nxor r11d, r11d\n",
            "xor r12d, r12d\nxor r13d, r13d\nxor r14d, r14d\nxor r15d, r15d\n",
            "test byte ptr [rsp + 136], 3\n",
            "jz ", $l2, "f\n",
            "swapgs\n",
            $l2, ":\n",
            // Neither path may run ahead with the other GS base while the branch is unresolved
            // (the SWAPGS speculation attack; Linux's FENCE_SWAPGS_{USER,KERNEL}_ENTRY).
            "lfence\n",
            "mov rdi, rsp\n",
            "mov rsi, qword ptr [rsp + 120]\n",
            "mov qword ptr [rsp + 120], -1\n",
            "push qword ptr [rsp + 128]\n.cfi_adjust_cfa_offset 8\n",
            "push rbp\n.cfi_adjust_cfa_offset 8\n",
            "mov rbp, rsp\n",
            "sub rsp, 8\n.cfi_adjust_cfa_offset 8\n",
            "call {glue}\n",
            $crate::__irqstack_rt_idt_stub!(@tail $noreturn, $l3, $l4),
            ".cfi_endproc\n",
            ".size ", $symbol, ", . - ", $symbol, "\n",
            ".popsection\n",
        )
    };
}

/// The per-vector stubs of an `#[idtentry(irq)]` handler: `$symbol` is a table of 16-byte
/// entries for vectors 32..=255, in order; each pushes its vector number where the CPU would
/// push an error code and jumps to the common stub `$common` (built with `code = cpu`). The
/// IDT entry of vector `v` is `$symbol + 16 * (v - 32)`.
///
/// ```text
/// HINT iret               objtool: the hardware frame at rsp
/// [endbr64]               4 bytes with IBT
/// push <vector>           2 bytes: `6a ib`, sign-extended (the glue takes the low byte)
/// jmp <common>            5 bytes
/// (int3 padding to 16)
/// ```
#[doc(hidden)]
#[macro_export]
macro_rules! __irqstack_rt_idt_vectors {
    (symbol = $symbol:literal, common = $common:literal, label = $l:literal) => {
        ::core::concat!(
            ".pushsection .noinstr.text, \"ax\", @progbits\n",
            ".balign 16, 0xcc\n",
            ".globl ",
            $symbol,
            "\n.type ",
            $symbol,
            ", @notype\n",
            $symbol,
            ":\n",
            ".set .Lirqstack_vector, 32\n",
            ".rept 224\n",
            $crate::__irqstack_rt_unwind_hint!(iret, "0", $l),
            $crate::__irqstack_rt_endbr!(),
            ".byte 0x6a, .Lirqstack_vector\n",
            "jmp ",
            $common,
            "\n",
            ".balign 16, 0xcc\n",
            ".set .Lirqstack_vector, .Lirqstack_vector + 1\n",
            ".endr\n",
            ".size ",
            $symbol,
            ", . - ",
            $symbol,
            "\n",
            ".popsection\n",
        )
    };
}
