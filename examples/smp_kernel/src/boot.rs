//! Boot: the PVH ELF note, the 32-bit entry, the page tables, the GDT, and the 16-bit trampoline
//! the other CPUs start in.
//!
//! QEMU's `-kernel` loads this ELF at its physical addresses (1 MiB up) and, finding the Xen PVH
//! note, enters `pvh_start32` in 32-bit protected mode without paging, `%ebx` pointing at the
//! `hvm_start_info` block (which holds the `-append` command line). The code below builds nothing
//! at run time: the page tables are initialized data (identity map of the first 4 GiB with 2 MiB
//! pages, plus one 4 KiB page table for the IRQ-stack region that `mm.rs` fills), so the entry
//! only loads CR3, enables PAE, EFER.LME and paging, and far-jumps into 64-bit code.
//!
//! Everything is linked below 2 GiB, so `-C code-model=kernel` (addresses are sign-extended 32-bit
//! values) holds for every symbol even though the kernel does not sit in the top 2 GiB; lld would
//! reject any relocation that did not fit.

core::arch::global_asm!(
    r#"
    /* The Xen PVH note: XEN_ELFNOTE_PHYS32_ENTRY (18), the 32-bit entry's physical address.
       QEMU 7.2 reads the descriptor as 8 bytes for an ELF64 file. */
    .pushsection .note.Xen, "a", @note
    .balign 4
    .long 4
    .long 8
    .long 18
    .asciz "Xen"
    .balign 4
    .quad pvh_start32
    .balign 4
    .popsection

    .pushsection .text.boot, "ax"
    .code32
    /* The boot code is marked STACK_FRAME_NON_STANDARD for objtool (which would decode this
       32-bit code as 64-bit, and cannot follow the mode switches); each entry point starts with
       endbr64 (a NOP here) because a note, a far jump or the trampoline holds its address
       (objtool --ibt). */
    .pushsection .discard.func_stack_frame_non_standard, "aw"
    .long pvh_start32 - .
    .long long_entry_bsp - .
    .long long_entry_ap - .
    .popsection
    .globl pvh_start32
    .type pvh_start32, @function
pvh_start32:
    endbr64
    cli
    cld
    /* %ebx: physical address of hvm_start_info; kept for kernel_main (the command line). */
    movl %ebx, pvh_start_info
    lgdt gdt_ptr
    movl $pml4, %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $0x20, %eax                 /* CR4.PAE */
    movl %eax, %cr4
    movl $0xC0000080, %ecx          /* IA32_EFER */
    rdmsr                           /* clobbers %edx too */
    orl $0x100, %eax                /* EFER.LME */
    wrmsr
    movl %cr0, %eax
    orl $0x80010001, %eax           /* CR0.PG | CR0.WP | CR0.PE */
    movl %eax, %cr0
    ljmp $0x08, $long_entry_bsp
    .size pvh_start32, . - pvh_start32

    .code64
    .type long_entry_bsp, @function
long_entry_bsp:
    endbr64
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %eax, %eax
    movw %ax, %fs
    movw %ax, %gs                   /* the GS base is set later, after this load (it resets it) */
    movabsq ${bsp_stack_top}, %rsp  /* CPU 0's task stack, mapped in the IRQ region */
    xorl %ebp, %ebp                 /* ends the frame-pointer chain */
    call kernel_main_bsp
    ud2
    .size long_entry_bsp, . - long_entry_bsp

    /* Second CPUs arrive here from the 16-bit trampoline, in 64-bit mode with paging on. */
    .type long_entry_ap, @function
long_entry_ap:
    endbr64
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %eax, %eax
    movw %ax, %fs
    movw %ax, %gs
    movq AP_STACK_TOP(%rip), %rsp
    xorl %ebp, %ebp
    call kernel_main_ap
    ud2
    .size long_entry_ap, . - long_entry_ap
    .popsection

    /* The trampoline for INIT-SIPI-SIPI: copied to a low page at run time (SIPI vector 8 = 0x8000)
       and entered in real mode with %cs = 0x800, %ip = 0. It goes straight to long mode: PAE,
       CR3 and EFER.LME first, then PE and PG in one CR0 write, then a far jump through the
       kernel's GDT (its descriptor is copied with the code, addressed %ds-relative). */
    .pushsection .rodata.ap_trampoline, "a"
    .code16
    .globl ap_trampoline_start
ap_trampoline_start:
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    lgdtl (ap_trampoline_gdtr - ap_trampoline_start)
    movl $pml4, %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $0x20, %eax
    movl %eax, %cr4
    movl $0xC0000080, %ecx
    rdmsr
    orl $0x100, %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80010001, %eax
    movl %eax, %cr0
    ljmpl $0x08, $long_entry_ap
    .balign 8
ap_trampoline_gdtr:
    .word gdt_end - gdt - 1
    .long gdt
    .globl ap_trampoline_end
ap_trampoline_end:
    .code64
    .popsection

    /* The GDT: null, 64-bit kernel code (0x08), kernel data (0x10), then one 16-byte TSS
       descriptor per CPU (0x18 + 16 * cpu), written by each CPU before `ltr`, then user data
       and 64-bit user code, DPL 3 (user.rs: selectors 0x58 and 0x60 with 4 CPUs, RPL 3). */
    .pushsection .data.gdt, "aw"
    .balign 16
    .globl gdt
gdt:
    .quad 0
    .quad 0x00af9a000000ffff
    .quad 0x00cf92000000ffff
    .fill {max_cpus} * 2, 8, 0
    .quad 0x00cff2000000ffff        /* user data: present, DPL 3, writable */
    .quad 0x00affa000000ffff        /* user code: present, DPL 3, 64-bit (L) */
    .globl gdt_end
gdt_end:
    .balign 8
gdt_ptr:
    .word gdt_end - gdt - 1
    .quad gdt
    .balign 8
    .globl pvh_start_info
pvh_start_info:
    .quad 0
    .popsection

    /* Page tables. The identity map is user-accessible (bit 2 at every level): user.rs runs a
       loop of kernel text in ring 3 (SMEP and SMAP stay off, so ring 0 is not affected).
       PML4[0] -> PDPT; PDPT[0..4] -> four page directories of 2 MiB pages mapping
       0..4 GiB to itself (the kernel, its data, low memory for the trampoline, the local APIC at
       0xFEE00000); PDPT[4] -> a directory whose first entry points at IRQ_PT, the 4 KiB page table
       of the IRQ-stack region at 4 GiB (filled by mm.rs: stacks mapped, guard pages not). */
    .pushsection .data.pagetables, "aw"
    .balign 4096
    .globl pml4
pml4:
    .quad pdpt + 0x7
    .fill 511, 8, 0
pdpt:
    .quad pd_identity + 0x7
    .quad pd_identity + 0x1000 + 0x7
    .quad pd_identity + 0x2000 + 0x7
    .quad pd_identity + 0x3000 + 0x7
    .quad pd_irq + 0x3
    .fill 507, 8, 0
pd_identity:
    .set page, 0
    .rept 2048
    .quad (page << 21) | 0x87       /* present, writable, user, 2 MiB page */
    .set page, page + 1
    .endr
pd_irq:
    .quad IRQ_PT + 0x3
    .fill 511, 8, 0
    /* The 4 KiB page table of the region at 4 GiB: the IRQ stacks and their guards (filled by
       percpu.rs) and each CPU's task stack, mapped here from TASK_STACKS (identity-mapped .bss)
       behind an unmapped 32 KiB guard: 64 KiB a CPU (percpu.rs, TASK_REGION). By default the IRQ
       stacks take the first 256 KiB and the task stacks lie above them; feature
       `irq-stacks-above` swaps the two, so that the gdb tests cross the switch both ways. */
    .globl IRQ_PT
IRQ_PT:
    .fill {task_region_index}, 8, 0
    .set cpu, 0
    .rept {max_cpus}
    .fill {task_guard_pages}, 8, 0
    .set page, 0
    .rept {task_stack_pages}
    .quad TASK_STACKS + (cpu * {task_stack_size} + page * 4096 + 0x3)
    .set page, page + 1
    .endr
    .set cpu, cpu + 1
    .endr
    .fill 512 - {task_region_index} - {max_cpus} * ({task_guard_pages} + {task_stack_pages}), 8, 0
    .popsection
"#,
    task_stack_size = const crate::TASK_STACK_SIZE,
    bsp_stack_top = const crate::percpu::task_stack_top(0),
    task_region_index = const (crate::percpu::TASK_REGION - crate::percpu::IRQ_REGION) / 4096,
    task_guard_pages = const crate::percpu::TASK_GUARD_SIZE / 4096,
    task_stack_pages = const crate::TASK_STACK_SIZE / 4096,
    max_cpus = const crate::MAX_CPUS,
    options(att_syntax)
);

unsafe extern "C" {
    /// Start and end of the AP trampoline's code (copied to `AP_TRAMPOLINE_PHYS`).
    pub static ap_trampoline_start: u8;
    pub static ap_trampoline_end: u8;
    /// The GDT (null, code, data, then the TSS descriptors).
    pub static mut gdt: [u64; 3 + 2 * crate::MAX_CPUS + 2];
    /// Physical address of `hvm_start_info`, saved by the 32-bit entry.
    pub static pvh_start_info: u64;
    /// The 4 KiB page table of the IRQ-stack region (virtual `IRQ_REGION`).
    pub static mut IRQ_PT: [u64; 512];
}

/// The `-append` command line, from `hvm_start_info.cmdline_paddr` (offset 24).
pub fn cmdline() -> &'static [u8] {
    // SAFETY: written once by the 32-bit entry before any Rust code runs.
    let info = unsafe { core::ptr::addr_of!(pvh_start_info).read() } as usize;
    if info == 0 {
        return b"";
    }
    // SAFETY: QEMU put hvm_start_info (magic 0x336ec578) and the NUL-terminated command line in
    // low memory, identity-mapped; both are read only, before anything could reuse that memory.
    unsafe {
        if ((info as *const u32).read_volatile()) != 0x336e_c578 {
            return b"";
        }
        let p = ((info + 24) as *const u64).read_volatile() as usize;
        if p == 0 {
            return b"";
        }
        let mut n = 0;
        while n < 256 && ((p + n) as *const u8).read_volatile() != 0 {
            n += 1;
        }
        core::slice::from_raw_parts(p as *const u8, n)
    }
}
