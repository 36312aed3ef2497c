//! User mode: one CPU drops to ring 3 and spins there, so that its timer interrupts arrive from
//! user mode. Their `#[idtentry(sysvec)]` stub must `swapgs` (the handler sees the kernel's GS
//! base, the user's is in `IA32_KERNEL_GS_BASE`), and the glue runs the handler in place on the
//! task stack (`rsp0` of the TSS, the kernel's `_cond` rule); ticks from ring 0 switch to the
//! IRQ stack as ever. After `USER_TICKS_TARGET` ticks from ring 3, the timer handler rewrites the
//! interrupted frame so that `iretq` returns to ring 0, to `user_return`, on the kernel stack
//! `enter_user` left (the stub sees a kernel `cs` in the frame and does not `swapgs` back: GS
//! stays the kernel's).

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

use irqstack::PtRegs;

use crate::MAX_CPUS;
use crate::hw::{self, current_sp};
use crate::percpu::{irq_stack, task_stack};

/// User data and code selectors (GDT entries after the TSS descriptors, boot.rs), RPL 3.
pub const USER_DS: u64 = ((3 + 2 * MAX_CPUS as u64) * 8) | 3;
pub const USER_CS: u64 = ((4 + 2 * MAX_CPUS as u64) * 8) | 3;
const KERNEL_CS: u64 = 0x08;
const KERNEL_DS: u64 = 0x10;
/// The GS base user mode runs with (canonical, not mapped, never used by the user loop).
pub const USER_GS_BASE: u64 = 0x0000_7777_0000_0000;
const IA32_GS_BASE: u32 = 0xc000_0101;
const IA32_KERNEL_GS_BASE: u32 = 0xc000_0102;
/// Timer ticks from ring 3 before the CPU goes back to ring 0.
pub const USER_TICKS_TARGET: u64 = 50;

/// The CPU that drops to user mode (CPU 1, or the BSP alone), once its ticks reach this.
pub static USER_CPU: AtomicUsize = AtomicUsize::new(usize::MAX);
pub const USER_AFTER_TICKS: u64 = 150;
static DONE: AtomicBool = AtomicBool::new(false);

/// Per CPU: timer ticks from ring 3 (handled on the task stack with the kernel's GS base);
/// timer ticks from ring 0 that switched to the IRQ stack; interrupts of any vector from ring 3.
pub static USER_TICKS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
pub static KERNEL_TICKS_SWITCHED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
pub static USER_ENTRIES: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Rounds of the ring-3 loop (it only writes this counter).
#[unsafe(no_mangle)]
pub static USER_SPINS: AtomicU64 = AtomicU64::new(0);
/// The kernel stack pointer `user_return` resumes on, per CPU (written by `enter_user`).
static RETURN_SP: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

#[repr(C, align(16))]
struct UserStack([u8; 4096]);
static mut USER_STACK: UserStack = UserStack([0; 4096]);

fn user_stack() -> core::ops::Range<usize> {
    // Only the address is taken.
    let low = core::ptr::addr_of!(USER_STACK) as usize;
    low..low + 4096
}

/// The ring-3 loop: counts its rounds, forever (the timer handler takes the CPU back). Kernel
/// text, user-accessible through the identity map's user bit.
#[unsafe(naked)]
extern "C" fn user_loop() -> ! {
    // endbr64: its address is taken (the iret frame's rip; objtool --ibt). Only rip-relative
    // memory the page tables let ring 3 write; `pause` is allowed at any privilege level.
    core::arch::naked_asm!(
        "endbr64",
        "2:",
        "add qword ptr [rip + {spins}], 1",
        "pause",
        "jmp 2b",
        spins = sym USER_SPINS,
    )
}

/// Saves the callee-saved registers, writes the stack pointer to come back to into `*save`,
/// and drops to ring 3 at `ip` with stack `sp`, interrupts on, the user's GS base. Returns when
/// the timer handler sends the CPU to `user_return` (below) with `rsp = *save`.
///
/// # Safety
/// Interrupts are off; this CPU's TSS `rsp0` lies below the caller's frame (with room for what
/// this function pushes above it); `IA32_KERNEL_GS_BASE` holds the user's GS base.
#[unsafe(naked)]
unsafe extern "C" fn enter_user(ip: u64, sp: u64, save: *mut u64, cs: u64, ss: u64) {
    // On entry rsp % 16 == 8. A frame record, the five other callee-saved registers and 8 bytes
    // of padding, then the iret frame (ss, rsp, rflags = IF | bit 1, cs, rip), swapgs (GS base
    // := the user's; the kernel's goes to IA32_KERNEL_GS_BASE, where the stubs' swapgs finds
    // it), iretq to ring 3.
    //
    // `user_return`: entered by the timer handler's `iretq` in ring 0, kernel GS, rsp = *save:
    // pops what was saved and returns to the caller as this function would. endbr64: its
    // address is taken (written into the iret frame; objtool --ibt).
    core::arch::naked_asm!(
        "push rbp",
        "mov rbp, rsp",
        "push rbx",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "sub rsp, 8",
        "mov qword ptr [rdx], rsp",
        "push r8",
        "push rsi",
        "push 0x202",
        "push rcx",
        "push rdi",
        "swapgs",
        "iretq",
        ".globl irqstack_kernel_user_return",
        "irqstack_kernel_user_return:",
        "endbr64",
        "add rsp, 8",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbx",
        "pop rbp",
        ret_insn!()
    )
}

unsafe extern "C" {
    /// The way back from ring 3, inside `enter_user`. Never called: only an `iretq` goes there.
    #[link_name = "irqstack_kernel_user_return"]
    fn user_return();
}

// objtool cannot follow the privilege changes (an `iretq` that leaves, and code after it that an
// `iretq` enters with its frame already on the stack): marked STACK_FRAME_NON_STANDARD, as the
// kernel marks such asm.
core::arch::global_asm!(
    ".pushsection .discard.func_stack_frame_non_standard, \"aw\"",
    ".long {enter} - .",
    ".popsection",
    enter = sym enter_user,
);

/// From the idle loop of `cpu`: drops to ring 3 once, when it is this CPU's turn; returns
/// after the timer handler has brought it back.
pub fn maybe_run(cpu: usize, ticks: u64) {
    if USER_CPU.load(Relaxed) != cpu || ticks < USER_AFTER_TICKS || DONE.swap(true, Relaxed) {
        return;
    }
    hw::cli();
    // Interrupts from ring 3 start their frame at rsp0: below everything `enter_user` keeps
    // on this stack (64 bytes) with a margin, 16-byte aligned.
    let rsp0 = (current_sp() as u64 - 512) & !15;
    crate::percpu::set_rsp0(cpu, rsp0);
    // SAFETY: the user GS base is canonical; the kernel's stays in IA32_GS_BASE until
    // `enter_user`'s swapgs exchanges the two.
    unsafe { hw::wrmsr(IA32_KERNEL_GS_BASE, USER_GS_BASE) };
    let sp = user_stack().end as u64;
    // SAFETY: interrupts are off; rsp0 is below this frame and enter_user's; the return path
    // is the timer handler's `leave_user`, which resumes `user_return` on RETURN_SP[cpu].
    unsafe {
        enter_user(
            user_loop as *const () as u64,
            sp,
            RETURN_SP[cpu].as_ptr(),
            USER_CS,
            USER_DS,
        )
    };
    // Back in ring 0: the kernel's GS base, the user's put away again.
    check!(
        hw::rdmsr(IA32_GS_BASE) == crate::percpu::kernel_gs_base(cpu)
            && hw::rdmsr(IA32_KERNEL_GS_BASE) == USER_GS_BASE,
        "back from user mode: GS base {:#x}, kernel GS base {:#x}",
        hw::rdmsr(IA32_GS_BASE),
        hw::rdmsr(IA32_KERNEL_GS_BASE)
    );
    check!(
        !hw::irqs_enabled(),
        "back from user mode with interrupts on"
    );
}

/// The checks of a handler entered from ring 3 (any vector): the stub did swapgs (GS base is
/// the kernel's, the user's in IA32_KERNEL_GS_BASE), the glue ran the handler in place on the
/// task stack (`rsp0`), the IRQ stack untouched, the frame says ring 3.
pub fn user_entry_checks(regs: &PtRegs, what: &str) {
    let cpu = crate::percpu::cpu_id() as usize;
    check!(
        regs.cs == USER_CS && regs.ss == USER_DS && user_stack().contains(&(regs.sp as usize - 1)),
        "{what} from ring 3: cs {:#x}, ss {:#x}, sp {:#x}",
        regs.cs,
        regs.ss,
        regs.sp
    );
    let (gs, kgs) = (hw::rdmsr(IA32_GS_BASE), hw::rdmsr(IA32_KERNEL_GS_BASE));
    check!(
        gs == crate::percpu::kernel_gs_base(cpu) && kgs == USER_GS_BASE,
        "{what} from ring 3: GS base {gs:#x}, kernel GS base {kgs:#x}: no swapgs?"
    );
    let sp = current_sp();
    check!(
        task_stack(cpu).contains(&sp) && !irq_stack(cpu).contains(&sp),
        "{what} from ring 3: handler sp {sp:#x} not on CPU {cpu}'s task stack"
    );
    check!(
        !irqstack::irqstack_active()
            && !crate::percpu::irq_stack_in_use()
            && irqstack::interrupted_sp().is_none(),
        "{what} from ring 3: the IRQ stack is in use"
    );
    USER_ENTRIES[cpu].fetch_add(1, Relaxed);
}

/// The timer handler, entered from ring 3: counts; after `USER_TICKS_TARGET` ticks, returns to
/// ring 0 instead (`user_return` on the saved kernel stack, interrupts off, kernel GS).
pub fn user_tick(regs: &mut PtRegs) {
    let cpu = crate::percpu::cpu_id() as usize;
    let n = USER_TICKS[cpu].fetch_add(1, Relaxed) + 1;
    if n >= USER_TICKS_TARGET {
        regs.ip = user_return as *const () as u64;
        regs.cs = KERNEL_CS;
        regs.ss = KERNEL_DS;
        regs.sp = RETURN_SP[cpu].load(Relaxed);
        regs.flags = 0x2;
    }
}
