//! Per-CPU data behind `%gs`, IRQ stacks with guard pages, TSS with IST stacks.
//!
//! Per-CPU variables live in `.data.percpu` (the template, between `__percpu_start` and
//! `__percpu_end`). Each CPU gets a copy in `PERCPU_AREAS` and sets its GS base to
//! `copy - __percpu_start`, so `mov reg, gs:[rip + var]` (what `gs_percpu_backend!` emits) reads
//! `GS base + &var` = this CPU's copy of `var`: Linux's PC-relative per-CPU addressing.
//!
//! IRQ stacks: each CPU's 16 KiB stack is backed by `IRQ_STACK_MEM` and mapped with 4 KiB pages
//! in a region of its own at `IRQ_REGION` (4 GiB), slot `cpu`: 16 KiB unmapped (the guard) then
//! the 16 KiB stack. Running off the bottom faults on a page that is really not mapped. The task
//! stacks are mapped in the same region (`TASK_REGION`), each behind a guard of its own: above
//! the IRQ stacks, or below them with feature `irq-stacks-above`.

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::MAX_CPUS;

/// `hardirq_stack_ptr`: this CPU's top slot, `top - 8` (Linux's `IRQ_STACK_SIZE - 8`,
/// `irqstack::TOP_SLOT_OFFSET` with feature `kernel-abi`).
#[allow(non_upper_case_globals)]
#[unsafe(no_mangle)]
#[unsafe(link_section = ".data.percpu")]
pub static mut hardirq_stack_ptr: usize = 0;

/// `hardirq_stack_inuse`.
#[allow(non_upper_case_globals)]
#[unsafe(no_mangle)]
#[unsafe(link_section = ".data.percpu")]
pub static mut hardirq_stack_inuse: bool = false;

/// This CPU's number (0..MAX_CPUS), `cpu_number` in Linux.
#[unsafe(link_section = ".data.percpu")]
static mut CPU_NUMBER: u32 = u32::MAX;

pub const IRQ_STACK_SIZE: usize = 16 * 1024;
/// Virtual base of the IRQ-stack region (PDPT entry 4 in boot.rs).
pub const IRQ_REGION: usize = 0x1_0000_0000;
/// Per CPU: 16 KiB of guard (unmapped), then the 16 KiB stack.
pub const IRQ_SLOT: usize = 2 * IRQ_STACK_SIZE;
pub const GUARD_SIZE: usize = IRQ_SLOT - IRQ_STACK_SIZE;

const PERCPU_AREA_SIZE: usize = 4096;

#[repr(C, align(4096))]
pub struct Pages<const N: usize>([u8; N]);

static mut PERCPU_AREAS: [Pages<PERCPU_AREA_SIZE>; MAX_CPUS] =
    [const { Pages([0; PERCPU_AREA_SIZE]) }; MAX_CPUS];
static mut IRQ_STACK_MEM: [Pages<IRQ_STACK_SIZE>; MAX_CPUS] =
    [const { Pages([0; IRQ_STACK_SIZE]) }; MAX_CPUS];

pub const IST_SIZE: usize = 16 * 1024;
/// IST stacks, per CPU: IST1 #DF, IST2 NMI, IST3 #DB, IST4 #MC (Linux's `ESTACK_DF`, `NMI`,
/// `DB`, `MCE`).
pub const IST_STACKS_PER_CPU: usize = 4;
static mut IST_STACKS: [[Pages<IST_SIZE>; IST_STACKS_PER_CPU]; MAX_CPUS] =
    [const { [const { Pages([0; IST_SIZE]) }; IST_STACKS_PER_CPU] }; MAX_CPUS];

unsafe extern "C" {
    static __percpu_start: u8;
    static __percpu_end: u8;
}

/// Where the IRQ-stack slots start in the region: at its base, below the task stacks; with
/// feature `irq-stacks-above`, 256 KiB up, above them (the two layouts a debugger must cross).
#[cfg(not(feature = "irq-stacks-above"))]
const IRQ_SLOTS: usize = IRQ_REGION;
#[cfg(feature = "irq-stacks-above")]
const IRQ_SLOTS: usize = IRQ_REGION + 0x4_0000;

/// The lowest address of `cpu`'s IRQ stack (the guard is the `GUARD_SIZE` below it).
pub const fn irq_stack_low(cpu: usize) -> usize {
    IRQ_SLOTS + cpu * IRQ_SLOT + GUARD_SIZE
}

/// `[low, high)` of `cpu`'s IRQ stack.
pub const fn irq_stack(cpu: usize) -> core::ops::Range<usize> {
    irq_stack_low(cpu)..irq_stack_low(cpu) + IRQ_STACK_SIZE
}

/// `[low, high)` of `cpu`'s guard.
pub const fn irq_guard(cpu: usize) -> core::ops::Range<usize> {
    irq_stack_low(cpu) - GUARD_SIZE..irq_stack_low(cpu)
}

/// Maps every CPU's IRQ stack (BSP, before other CPUs start): IRQ_PT entries for the stack
/// pages point at `IRQ_STACK_MEM[cpu]` (identity-mapped, so its address is physical); the guard
/// entries stay 0 (not present). Also zeroes the backing memory, for the depth measurement.
pub fn map_irq_stacks(cpus: usize) {
    for cpu in 0..cpus {
        // SAFETY: only the BSP runs; the backing array is not used by anyone yet.
        let mem = unsafe { core::ptr::addr_of_mut!(IRQ_STACK_MEM[cpu]) } as usize;
        // SAFETY: as above; the whole array is ours to clear.
        unsafe { core::ptr::write_bytes(mem as *mut u8, 0, IRQ_STACK_SIZE) };
        for page in 0..IRQ_STACK_SIZE / 4096 {
            let va = irq_stack_low(cpu) + page * 4096;
            let index = (va - IRQ_REGION) / 4096;
            assert!(!(TASK_REGION..TASK_REGION + MAX_CPUS * TASK_SLOT).contains(&va));
            // SAFETY: IRQ_PT is the page table of the IRQ region; no CPU has used these entries
            // yet (they were not present, so no TLB holds them).
            unsafe {
                core::ptr::addr_of_mut!(crate::boot::IRQ_PT[index])
                    .write_volatile((mem + page * 4096) as u64 | 0x3)
            };
        }
    }
    // SAFETY: reloading CR3 with its own value flushes the TLB (nothing stale can be in it:
    // the entries were not present before, but this keeps the rule simple).
    unsafe {
        core::arch::asm!("mov {t}, cr3", "mov cr3, {t}", t = out(reg) _, options(nostack, preserves_flags))
    };
}

/// Deepest use of `cpu`'s IRQ stack so far: bytes from the top down to the lowest byte that is
/// not zero (the stack started zeroed).
pub fn irq_stack_depth(cpu: usize) -> usize {
    let r = irq_stack(cpu);
    for a in r.clone() {
        // SAFETY: the stack is mapped; a byte read races at most with the CPU's own use, which
        // the volatile read tolerates (it only decides where the lowest dirty byte is).
        if unsafe { (a as *const u8).read_volatile() } != 0 {
            return r.end - a;
        }
    }
    0
}

/// A 64-bit TSS: the IST pointers, and `rsp[0]` (the stack the CPU switches to on an interrupt
/// from ring 3, set by `user.rs` before a CPU drops to user mode).
#[repr(C, packed(4))]
struct Tss {
    reserved0: u32,
    rsp: [u64; 3],
    reserved1: u64,
    ist: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    iomap_base: u16,
}

static mut TSS: [Tss; MAX_CPUS] = [const {
    Tss {
        reserved0: 0,
        rsp: [0; 3],
        reserved1: 0,
        ist: [0; 7],
        reserved2: 0,
        reserved3: 0,
        iomap_base: 104,
    }
}; MAX_CPUS];

/// Top of `cpu`'s IST stack `n` (0: #DF, 1: NMI, 2: #DB, 3: #MC).
pub fn ist_top(cpu: usize, n: usize) -> usize {
    // SAFETY: only the address is taken.
    (unsafe { core::ptr::addr_of!(IST_STACKS[cpu][n]) } as usize) + IST_SIZE
}

/// Sets up this CPU: per-CPU area and GS base (with `hardirq_stack_ptr` set before interrupts
/// are ever enabled), TSS with IST1/IST2, IDT. Interrupts stay off.
pub fn cpu_init(cpu: usize) {
    crate::hw::cli();
    // SAFETY: the template is `__percpu_end - __percpu_start` bytes of initialized data; this
    // CPU's area is ours alone (no other CPU touches area `cpu`), 4 KiB large.
    unsafe {
        let start = core::ptr::addr_of!(__percpu_start) as usize;
        let len = core::ptr::addr_of!(__percpu_end) as usize - start;
        assert!(len <= PERCPU_AREA_SIZE);
        let area = core::ptr::addr_of_mut!(PERCPU_AREAS[cpu]) as usize;
        core::ptr::copy_nonoverlapping(start as *const u8, area as *mut u8, len);
        // This CPU's copies of the variables: same offset from the area as from the template.
        let at = |var: usize| area + (var - start);
        (at(core::ptr::addr_of!(CPU_NUMBER) as usize) as *mut u32).write(cpu as u32);
        (at(core::ptr::addr_of!(hardirq_stack_ptr) as usize) as *mut usize)
            .write(irq_stack(cpu).end - irqstack::TOP_SLOT_OFFSET);
        (at(core::ptr::addr_of!(hardirq_stack_inuse) as usize) as *mut bool).write(false);
        // IA32_GS_BASE: boot.rs loaded %gs (which resets the base) before we got here.
        crate::hw::wrmsr(0xc000_0101, (area - start) as u64);
    }
    check!(cpu_id() as usize == cpu, "per-CPU area does not answer");
    check!(
        irqstack::irq_stack_bounds() == Some(irq_stack(cpu)),
        "irq_stack_bounds() {:x?} is not CPU {cpu}'s IRQ stack {:x?}",
        irqstack::irq_stack_bounds(),
        irq_stack(cpu)
    );

    // TSS and its descriptor (GDT slot 3 + 2 * cpu), then ltr.
    // SAFETY: TSS[cpu] and the descriptor slots of this CPU are written by this CPU only, before
    // `ltr` loads them; the GDT is identity-mapped writable data.
    unsafe {
        let tss = core::ptr::addr_of_mut!(TSS[cpu]);
        for n in 0..IST_STACKS_PER_CPU {
            (*tss).ist[n] = ist_top(cpu, n) as u64;
        }
        let base = tss as u64;
        let limit = (core::mem::size_of::<Tss>() - 1) as u64;
        let low = (limit & 0xffff)
            | ((base & 0xff_ffff) << 16)
            | (0x89 << 40) // present, 64-bit TSS (available)
            | (((limit >> 16) & 0xf) << 48)
            | (((base >> 24) & 0xff) << 56);
        let high = base >> 32;
        let gdt = core::ptr::addr_of_mut!(crate::boot::gdt) as *mut u64;
        gdt.add(3 + 2 * cpu).write_volatile(low);
        gdt.add(4 + 2 * cpu).write_volatile(high);
        let sel = (0x18 + 16 * cpu) as u16;
        core::arch::asm!("ltr {0:x}", in(reg) sel, options(nostack, preserves_flags));
    }
    crate::idt::load();
}

/// The GS base `cpu_init` gave `cpu` (its area minus the template's address).
pub fn kernel_gs_base(cpu: usize) -> u64 {
    // SAFETY: only addresses are taken.
    unsafe {
        (core::ptr::addr_of!(PERCPU_AREAS[cpu]) as usize
            - core::ptr::addr_of!(__percpu_start) as usize) as u64
    }
}

/// Sets `rsp0` in this CPU's TSS: where an interrupt from ring 3 starts its frame.
pub fn set_rsp0(cpu: usize, rsp0: u64) {
    // SAFETY: this CPU's TSS, written by this CPU only, with interrupts off (the caller drops
    // to user mode next); the CPU reads rsp0 only on a privilege change.
    unsafe {
        let tss = core::ptr::addr_of_mut!(TSS[cpu]);
        core::ptr::addr_of_mut!((*tss).rsp)
            .cast::<u64>()
            .write_unaligned(rsp0);
    }
}

/// This CPU's number.
#[inline(always)]
pub fn cpu_id() -> u32 {
    let v: u32;
    // SAFETY: reads this CPU's copy of CPU_NUMBER, `%gs`-relative. Before `cpu_init` the GS base
    // is 0 and this reads the template (u32::MAX).
    unsafe {
        core::arch::asm!("mov {v:e}, dword ptr gs:[rip + {var}]", v = out(reg) v, var = sym CPU_NUMBER,
            options(nostack, readonly, preserves_flags))
    };
    v
}

/// This CPU's `hardirq_stack_inuse`, read `%gs`-relative as the backend reads it.
#[inline(always)]
pub fn irq_stack_in_use() -> bool {
    let v: u32;
    // SAFETY: one byte of this CPU's copy of the flag; no stack, flags untouched.
    unsafe {
        core::arch::asm!("movzx {v:e}, byte ptr gs:[rip + {var}]", v = out(reg) v,
            var = sym hardirq_stack_inuse, options(nostack, readonly, preserves_flags))
    };
    v != 0
}

/// Sets this CPU's `hardirq_stack_inuse`.
#[inline(always)]
fn set_irq_stack_in_use(v: bool) {
    // SAFETY: one byte of this CPU's copy of the flag, written with interrupts off (claims and
    // releases happen in hard-IRQ context or with interrupts disabled), so no code of this CPU
    // runs between a test of the flag and this store.
    unsafe {
        core::arch::asm!("mov byte ptr gs:[rip + {var}], {v}", v = in(reg_byte) u8::from(v),
            var = sym hardirq_stack_inuse, options(nostack, preserves_flags))
    };
}

/// This CPU's `hardirq_stack_ptr` (0 before `cpu_init` set it).
#[inline(always)]
fn irq_stack_ptr() -> usize {
    let v: usize;
    // SAFETY: reads this CPU's copy, `%gs`-relative; no stack, flags untouched.
    unsafe {
        core::arch::asm!("mov {v}, qword ptr gs:[rip + {var}]", v = out(reg) v,
            var = sym hardirq_stack_ptr, options(nostack, readonly, preserves_flags))
    };
    v
}

/// The kernel's backend: the per-CPU IRQ stack behind `%gs` (`hardirq_stack_ptr`,
/// `hardirq_stack_inuse`, as Linux keeps them), and the entry hooks `#[idtentry]` glue calls,
/// which check where each runs (`work.rs`).
pub struct KernelBackend;

// SAFETY: one IRQ stack per CPU, its top slot in this CPU's `hardirq_stack_ptr`, claimed only
// while `hardirq_stack_inuse` is clear and with interrupts off (checked by
// `assert_irqs_disabled`); `tos` = top - 8 (`kernel-abi`); every method is inlined into the
// `.noinstr.text` hooks `set_backend!` defines, and the entry hooks call instrumentable code
// only inside instrumentation regions (work.rs).
unsafe impl irqstack::Backend for KernelBackend {
    #[inline(always)]
    fn claim() -> Option<core::ptr::NonNull<u8>> {
        // A CPU whose stack is not set up yet runs handlers in place and is not marked.
        let tos = core::ptr::NonNull::new(irq_stack_ptr() as *mut u8)?;
        if irq_stack_in_use() {
            return None;
        }
        set_irq_stack_in_use(true);
        Some(tos)
    }

    #[inline(always)]
    unsafe fn release(_tos: core::ptr::NonNull<u8>) {
        set_irq_stack_in_use(false);
    }

    #[inline(always)]
    fn bounds() -> Option<core::ops::Range<usize>> {
        let tos = irq_stack_ptr();
        if tos == 0 {
            return None;
        }
        let top = tos + irqstack::TOP_SLOT_OFFSET;
        Some(top - IRQ_STACK_SIZE..top)
    }

    #[inline(always)]
    fn top_slot() -> Option<usize> {
        let tos = irq_stack_ptr();
        (tos != 0).then_some(tos)
    }

    #[inline(always)]
    fn assert_irqs_disabled() {
        crate::assert_irqs_disabled();
    }

    #[inline(always)]
    fn irqentry_enter(regs: &mut irqstack::PtRegs) -> usize {
        crate::work::irqentry_enter_hook(regs)
    }

    #[inline(always)]
    fn irqentry_exit(regs: &mut irqstack::PtRegs, state: usize) {
        crate::work::irqentry_exit_hook(regs, state)
    }

    #[inline(always)]
    fn irq_enter_rcu() {
        crate::work::irq_enter_rcu_hook()
    }

    #[inline(always)]
    fn irq_exit_rcu() {
        crate::work::irq_exit_rcu_hook()
    }
}

/// Task (kernel) stacks: the memory behind them. CPU n runs on `TASK_STACKS[n]` mapped at
/// `task_stack(n)` (boot.rs's IRQ_PT), behind a guard.
#[unsafe(no_mangle)]
pub static mut TASK_STACKS: [Pages<{ crate::TASK_STACK_SIZE }>; MAX_CPUS] =
    [const { Pages([0; crate::TASK_STACK_SIZE]) }; MAX_CPUS];

/// Where the task stacks are mapped: 256 KiB into the IRQ-stack region, a slot of 64 KiB a CPU
/// (an unmapped guard of 32 KiB, then the 32 KiB stack).
#[cfg(not(feature = "irq-stacks-above"))]
pub const TASK_REGION: usize = IRQ_REGION + 0x4_0000;
#[cfg(feature = "irq-stacks-above")]
pub const TASK_REGION: usize = IRQ_REGION;
pub const TASK_GUARD_SIZE: usize = 0x8000;
const TASK_SLOT: usize = TASK_GUARD_SIZE + crate::TASK_STACK_SIZE;
const _: () = assert!(MAX_CPUS * IRQ_SLOT <= 0x4_0000 && MAX_CPUS * TASK_SLOT <= 0x4_0000);
const _: () = assert!(0x4_0000 + MAX_CPUS * TASK_SLOT <= 512 * 4096);
const _: () = assert!(0x4_0000 + MAX_CPUS * IRQ_SLOT <= 512 * 4096);

/// The top of `cpu`'s task stack.
pub const fn task_stack_top(cpu: usize) -> usize {
    TASK_REGION + cpu * TASK_SLOT + TASK_SLOT
}

/// `[low, high)` of `cpu`'s task stack.
pub fn task_stack(cpu: usize) -> core::ops::Range<usize> {
    task_stack_top(cpu) - crate::TASK_STACK_SIZE..task_stack_top(cpu)
}

/// Stack top for the next AP (read by boot.rs's `long_entry_ap`).
#[unsafe(no_mangle)]
pub static AP_STACK_TOP: AtomicUsize = AtomicUsize::new(0);

pub fn set_ap_stack(cpu: usize) {
    AP_STACK_TOP.store(task_stack(cpu).end, Ordering::SeqCst);
}
