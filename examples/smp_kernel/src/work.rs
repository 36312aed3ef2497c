//! The workload: entry functions, `#[on_irqstack]` handlers, the softirq idle loop, the
//! argument shapes, the frame-pointer walk and the overflow scenario, with the checks each one
//! makes on every run.

use core::hint::black_box;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

use irqstack::{
    PtRegs, idtentry, instr_begin, instr_end, irq_stack_bounds, irqstack_active, on_irqstack,
};

use crate::MAX_CPUS;
use crate::hw::{self, current_sp};
use crate::idt;
use crate::percpu::{cpu_id, irq_stack, task_stack};

/// Initializer of the counters below (a fresh atomic per use, which is the intent).
#[allow(clippy::declare_interior_mutable_const)]
const Z: AtomicU64 = AtomicU64::new(0);

/// Figures per CPU (written by that CPU, read by the BSP at the end).
pub struct CpuStats {
    pub ticks: AtomicU64,
    /// Hard-IRQ handler entries that switched to the IRQ stack / ran in place on it.
    pub switched: AtomicU64,
    pub nested: AtomicU64,
    /// Switched entries whose `interrupted_sp()` was checked against the stub's stack pointer.
    pub sp_links: AtomicU64,
    pub device_sent: AtomicU64,
    pub device_handled: AtomicU64,
    pub softirq_runs: AtomicU64,
    pub spurious: AtomicU64,
    /// Argument-shape rounds: switched (from the idle loop), in place in the softirq, in place
    /// inside a hard-IRQ handler.
    pub shapes_switched: AtomicU64,
    pub shapes_softirq: AtomicU64,
    pub shapes_hardirq: AtomicU64,
    /// The frame-pointer walk taken inside the timer handler: return addresses.
    pub bt: [AtomicU64; 16],
    pub bt_len: AtomicUsize,
    /// Where the walk's frames were: on the IRQ stack, then on the task stack.
    pub bt_irq_frames: AtomicUsize,
    pub bt_task_frames: AtomicUsize,
    /// Stack pointer of the last argument-shape body (set by `note`).
    pub body_sp: AtomicU64,
    /// `#[idtentry]` glue hooks: `irqentry_enter`/`irqentry_exit` calls (every entry), and
    /// `irq_enter_rcu`/`irq_exit_rcu` calls (device and system vectors).
    pub irqentry: AtomicU64,
    pub irqentry_exit: AtomicU64,
    pub irq_enter_rcu: AtomicU64,
    pub irq_exit_rcu: AtomicU64,
    /// Page faults of `probe_read` fixed up by the #PF handler (which ran on the IRQ stack).
    pub pf_fixups: AtomicU64,
    /// Hard-IRQ nesting between `irq_enter_rcu` and `irq_exit_rcu` (Linux's `in_hardirq()`).
    pub hardirq_depth: AtomicU64,
}

impl CpuStats {
    const fn new() -> Self {
        CpuStats {
            ticks: Z,
            switched: Z,
            nested: Z,
            sp_links: Z,
            device_sent: Z,
            device_handled: Z,
            softirq_runs: Z,
            spurious: Z,
            shapes_switched: Z,
            shapes_softirq: Z,
            shapes_hardirq: Z,
            bt: [Z; 16],
            bt_len: AtomicUsize::new(0),
            bt_irq_frames: AtomicUsize::new(0),
            bt_task_frames: AtomicUsize::new(0),
            body_sp: Z,
            irqentry: Z,
            irqentry_exit: Z,
            irq_enter_rcu: Z,
            irq_exit_rcu: Z,
            hardirq_depth: Z,
            pf_fixups: Z,
        }
    }
}

pub static STATS: [CpuStats; MAX_CPUS] = [const { CpuStats::new() }; MAX_CPUS];
/// IPI_SENT[src][dst], IPI_HANDLED[dst][src].
pub static IPI_SENT: [[AtomicU64; MAX_CPUS]; MAX_CPUS] = [const { [Z; MAX_CPUS] }; MAX_CPUS];
pub static IPI_HANDLED: [[AtomicU64; MAX_CPUS]; MAX_CPUS] = [const { [Z; MAX_CPUS] }; MAX_CPUS];
/// Reschedule IPIs (through `#[idtentry(sysvec)]`): RESCHED_SENT[src][dst] counts those sent,
/// RESCHED_PENDING[dst] says one is on its way to `dst` (a single vector for every sender, so
/// at most one in flight per receiver keeps any from coalescing), RESCHED_HANDLED[dst] counts.
pub static RESCHED_SENT: [[AtomicU64; MAX_CPUS]; MAX_CPUS] = [const { [Z; MAX_CPUS] }; MAX_CPUS];
pub static RESCHED_PENDING: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
pub static RESCHED_HANDLED: [AtomicU64; MAX_CPUS] = [Z; MAX_CPUS];
/// Reschedule IPIs that arrived on the IRQ stack (in the softirq) and ran in place.
pub static RESCHED_NESTED: [AtomicU64; MAX_CPUS] = [Z; MAX_CPUS];

pub static NCPUS: AtomicUsize = AtomicUsize::new(1);
/// Set by the BSP when every CPU has done its share: CPUs stop their timers.
pub static STOP: AtomicBool = AtomicBool::new(false);
/// `fault=...` on the command line: a deliberate failure, to show that it is loud.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fault {
    /// CPU 1's timer handler reads an unmapped address.
    Page = 1,
    /// The BSP sends an NMI to CPU 2.
    Nmi = 2,
    /// The BSP loads an empty IDT and executes int3.
    Triple = 3,
}
pub static FAULT: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);

pub fn fault() -> Option<Fault> {
    match FAULT.load(Relaxed) {
        1 => Some(Fault::Page),
        2 => Some(Fault::Nmi),
        3 => Some(Fault::Triple),
        _ => None,
    }
}

/// The overflow boot: this CPU's timer handler recurses without bound.
pub static OVERFLOW_CPU: AtomicUsize = AtomicUsize::new(usize::MAX);

fn stats() -> &'static CpuStats {
    &STATS[cpu_id() as usize]
}

// ---------------------------------------------------------------------------------------------
// Hard-IRQ checks
// ---------------------------------------------------------------------------------------------

/// Whether an interrupt with this frame arrived on this CPU's IRQ stack (the stack was in use).
fn arrived_on_irq_stack(regs: &PtRegs) -> bool {
    irq_stack(cpu_id() as usize).contains(&(regs.sp as usize))
}

/// A local that rustc places at a 16-byte aligned address, trusting the stack alignment the
/// x86-64 ABI promises at function entry (rsp % 16 == 8). A body entered with any other rsp
/// gets it misaligned: the check that the switch keeps the ABI (with `kernel-abi` too).
#[repr(C, align(16))]
struct Aligned16(u64);

#[inline(always)]
fn check_alignment(what: &str) {
    let a = Aligned16(0);
    // Through `black_box` as an integer: a reference's type promises the alignment, so the
    // compiler would fold the test away.
    let at = black_box(core::ptr::addr_of!(a) as usize);
    check!(
        at.is_multiple_of(16),
        "{what}: a 16-byte aligned local is at {at:#x}: the body was entered misaligned"
    );
}

/// The checks every hard-IRQ handler body makes, on every interrupt. Returns whether it runs
/// nested (in place, because the interrupt arrived while the IRQ stack was in use).
#[inline(always)]
fn hardirq_checks(regs: &PtRegs, what: &str) -> bool {
    let cpu = cpu_id() as usize;
    let mine = irq_stack(cpu);
    let sp = current_sp();
    check!(
        !hw::irqs_enabled(),
        "{what}: interrupts enabled in a hard-IRQ handler"
    );
    check!(
        stats().hardirq_depth.load(Relaxed) > 0,
        "{what}: the handler runs outside irq_enter_rcu()/irq_exit_rcu()"
    );
    check!(
        regs.orig_ax == u64::MAX,
        "{what}: orig_ax {:#x}, not -1",
        regs.orig_ax
    );
    if regs.user_mode() {
        // From ring 3 (user.rs): in place on the task stack, the kernel's GS base.
        crate::user::user_entry_checks(regs, what);
        check_alignment(what);
        return false;
    }
    check!(
        mine.contains(&sp),
        "{what}: handler sp {sp:#x} is not on CPU {cpu}'s IRQ stack {mine:#x?}"
    );
    check!(
        irqstack_active(),
        "{what}: irqstack_active() false inside the handler"
    );
    check!(
        irq_stack_bounds() == Some(mine.clone()),
        "{what}: irq_stack_bounds() {:#x?} is not CPU {cpu}'s",
        irq_stack_bounds()
    );
    check!(
        crate::percpu::irq_stack_in_use(),
        "{what}: hardirq_stack_inuse is false inside the handler"
    );
    let regs_addr = regs as *const PtRegs as usize;
    let isp = irqstack::interrupted_sp();
    check!(
        isp.is_some(),
        "{what}: interrupted_sp() is None on the IRQ stack"
    );
    let isp = isp.unwrap_or(0);
    check!(
        task_stack(cpu).contains(&isp),
        "{what}: interrupted_sp() {isp:#x} is not on CPU {cpu}'s task stack"
    );
    check_alignment(what);
    let nested = arrived_on_irq_stack(regs);
    if nested {
        // Arrived while the IRQ stack was in use (the softirq): runs in place, below the
        // interrupted stack pointer, on the same stack.
        check!(
            sp < regs.sp as usize,
            "{what}: nested handler sp {sp:#x} not below the interrupted sp {:#x}",
            regs.sp
        );
        check!(
            mine.contains(&regs_addr),
            "{what}: nested entry frame {regs_addr:#x} not on the IRQ stack"
        );
        stats().nested.fetch_add(1, Relaxed);
    } else {
        check!(
            task_stack(cpu).contains(&(regs.sp as usize)),
            "{what}: interrupt arrived on an unknown stack, rsp {:#x}",
            regs.sp
        );
        // Switched: interrupted_sp() is the trampoline's frame record, on the stack the stub
        // left. Its saved rbp is the `#[idtentry]` glue's frame record, which sits right below the
        // stub's stack pointer at its `call` (return address, then the pushed rbp): so the link
        // leads exactly to the stack pointer the entry stub left.
        // SAFETY: `isp` is on this CPU's task stack (checked above), below the interrupted frame;
        // the trampoline wrote the caller's rbp there and it stays until the switch back.
        let entry_frame = unsafe { (isp as *const usize).read() };
        let stub_sp = regs_addr - idt::STUB_FRAME_BELOW_REGS;
        check!(
            entry_frame + 16 == stub_sp,
            "{what}: interrupted_sp() {isp:#x} links to frame {entry_frame:#x}, not to the entry \
             stub's sp {stub_sp:#x} - 16"
        );
        stats().switched.fetch_add(1, Relaxed);
        stats().sp_links.fetch_add(1, Relaxed);
    }
    nested
}

/// What the entry hooks check before and after the handler: the IRQ stack claimed
/// (`hardirq_stack_inuse`, `irqstack_active()`) exactly when the interrupt arrived there.
#[inline(always)]
fn entry_check(regs: &PtRegs, when: &str) {
    let expect = arrived_on_irq_stack(regs);
    check!(
        crate::percpu::irq_stack_in_use() == expect,
        "vector entry: hardirq_stack_inuse is {} {when} the handler (interrupt arrived on the IRQ \
         stack: {expect}, rip {:#x})",
        crate::percpu::irq_stack_in_use(),
        regs.ip
    );
    check!(
        irqstack_active() == expect,
        "vector entry: irqstack_active() is {} {when} the handler (interrupt arrived on the IRQ \
         stack: {expect})",
        irqstack_active()
    );
}

/// The state `irqentry_enter_hook` hands to `irqentry_exit_hook` for this frame.
fn irqentry_state(regs: &PtRegs) -> usize {
    (regs as *const PtRegs as usize) ^ 0x1e47_57a7e
}

// ---------------------------------------------------------------------------------------------
// The backend's entry hooks (percpu::KernelBackend): called by every `#[idtentry]` glue, in
// `.noinstr.text`; what they check calls ordinary code, inside instrumentation regions.
// ---------------------------------------------------------------------------------------------

/// Whether this code runs on one of this CPU's IST stacks (#DF, NMI, #DB, #MC): those entries
/// arrive anywhere, even in the middle of a claim; the claim checks do not apply.
fn on_ist_stack() -> bool {
    let sp = current_sp();
    let cpu = (cpu_id() as usize).min(MAX_CPUS - 1);
    (0..crate::percpu::IST_STACKS_PER_CPU).any(|n| {
        let top = crate::percpu::ist_top(cpu, n);
        (top - crate::percpu::IST_SIZE..top).contains(&sp)
    })
}

/// `irqentry_enter()`: counts, checks the claim state against where the interrupt arrived.
/// Called from the `.noinstr.text` hook; the checks are ordinary code, called out of line inside
/// an instrumentation region (and a failed check never ends a `.noinstr.text` function with a
/// call that does not return, which objtool 6.1 would take for a fall-through).
#[inline(always)]
pub fn irqentry_enter_hook(regs: &mut PtRegs) -> usize {
    instr_begin!();
    irqentry_enter_checks(regs);
    instr_end!();
    irqentry_state(regs)
}

#[inline(never)]
fn irqentry_enter_checks(regs: &PtRegs) {
    stats().irqentry.fetch_add(1, Relaxed);
    if !on_ist_stack() {
        entry_check(regs, "before");
    }
}

/// `irqentry_exit()`: the state from `irqentry_enter_hook` for this very frame; the claim
/// state as before the handler.
#[inline(always)]
pub fn irqentry_exit_hook(regs: &mut PtRegs, state: usize) {
    instr_begin!();
    irqentry_exit_checks(regs, state);
    instr_end!();
}

#[inline(never)]
fn irqentry_exit_checks(regs: &PtRegs, state: usize) {
    check!(
        state == irqentry_state(regs),
        "irqentry_exit: state {state:#x} is not the one irqentry_enter returned"
    );
    if !on_ist_stack() {
        entry_check(regs, "after");
    }
    stats().irqentry_exit.fetch_add(1, Relaxed);
}

/// `irq_enter_rcu()`: enters hard-IRQ context (on the IRQ stack, or on the task stack for an
/// interrupt from user mode).
#[inline(always)]
pub fn irq_enter_rcu_hook() {
    instr_begin!();
    irq_enter_rcu_count();
    instr_end!();
}

#[inline(never)]
fn irq_enter_rcu_count() {
    let s = stats();
    s.irq_enter_rcu.fetch_add(1, Relaxed);
    s.hardirq_depth.fetch_add(1, Relaxed);
}

/// `irq_exit_rcu()`: leaves hard-IRQ context.
#[inline(always)]
pub fn irq_exit_rcu_hook() {
    instr_begin!();
    irq_exit_rcu_count();
    instr_end!();
}

#[inline(never)]
fn irq_exit_rcu_count() {
    let s = stats();
    let d = s.hardirq_depth.fetch_sub(1, Relaxed);
    check!(d > 0, "irq_exit_rcu without irq_enter_rcu");
    s.irq_exit_rcu.fetch_add(1, Relaxed);
}

// ---------------------------------------------------------------------------------------------
// Handlers (`#[idtentry]` generates their stubs and glue; idt.rs installs the stubs)
// ---------------------------------------------------------------------------------------------

/// The local APIC timer, `DEFINE_IDTENTRY_SYSVEC(sysvec_apic_timer_interrupt)`: the glue runs
/// it on this CPU's IRQ stack (in place when the stack is in use).
#[idtentry(sysvec)]
pub fn sysvec_apic_timer_interrupt(regs: &mut PtRegs) {
    let nested = hardirq_checks(regs, "timer");
    let user = regs.user_mode();
    hw::apic_eoi();
    let cpu = cpu_id() as usize;
    let s = &STATS[cpu];
    let t = s.ticks.fetch_add(1, Relaxed) + 1;
    if !user && !nested {
        crate::user::KERNEL_TICKS_SWITCHED[cpu].fetch_add(1, Relaxed);
    }
    if OVERFLOW_CPU.load(Relaxed) == cpu && t == 100 {
        // The overflow boot: recurse until the guard page stops us (#PF -> #DF on IST1).
        black_box(recurse(black_box(0)));
        fail!("recursion returned");
    }
    if cpu == 1 && t == 100 && fault() == Some(Fault::Page) {
        // Not mapped: PDPT entry 8 (32 GiB) is empty.
        // SAFETY: deliberately faulting; the #PF handler reports it and ends the run.
        black_box(unsafe { (0x2_0000_0000 as *const u64).read_volatile() });
    }
    if STOP.load(Relaxed) {
        return;
    }
    let n = NCPUS.load(Relaxed);
    // A "call function" IPI to another CPU, if the previous one from us to it was handled
    // (one outstanding per sender and receiver: each arrives exactly once, never coalesced).
    if n > 1 {
        let dst = (cpu + 1 + (t as usize % (n - 1))) % n;
        let sent = IPI_SENT[cpu][dst].load(Relaxed);
        if IPI_HANDLED[dst][cpu].load(Relaxed) == sent {
            IPI_SENT[cpu][dst].store(sent + 1, Relaxed);
            hw::send_ipi(dst as u32, idt::CALL_FUNCTION_VECTOR_BASE + cpu as u8);
        }
    }
    // A reschedule IPI to the next CPU, if none is on its way there.
    if n > 1 {
        let dst = (cpu + 1) % n;
        if RESCHED_PENDING[dst]
            .compare_exchange(false, true, Relaxed, Relaxed)
            .is_ok()
        {
            RESCHED_SENT[cpu][dst].fetch_add(1, Relaxed);
            hw::send_ipi(dst as u32, idt::RESCHEDULE_VECTOR);
        }
    }
    // A self-IPI raised from inside the handler: it arrives as soon as interrupts are enabled.
    if t.is_multiple_of(3) {
        raise_device_irq();
    }
    if user {
        // From ring 3: counted, and after enough of them, the way back to ring 0 (user.rs).
        crate::user::user_tick(regs);
        return;
    }
    // Argument shapes called from a handler: they run in place (the stack is in use).
    if t.is_multiple_of(32) {
        shapes(cpu, Where::HardIrq);
    }
    // A page fault on purpose, fixed up by the #PF handler; the handler goes on.
    if t.is_multiple_of(16) {
        probe_unmapped(cpu);
    }
    // One frame-pointer walk per CPU, from a tick that interrupted the idle `hlt`.
    let rip = regs.ip as usize;
    // Through `black_box`: `wfi + 16` folded into one relocation would point into the
    // function's middle, which objtool --ibt reports as an address taken without ENDBR.
    let wfi = black_box(wait_for_interrupt as *const () as usize);
    if !nested && (wfi..wfi + 16).contains(&rip) {
        if s.bt_len.load(Relaxed) == 0 {
            backtrace(cpu);
        }
        // For the gdb test: a breakpoint here has the handler as its caller, which runs on
        // the IRQ stack, and the interrupted `hlt` below the entry stub.
        gdb_handler_mark(t);
    }
}

/// Called by the timer handler on the IRQ stack when the tick interrupted the idle `hlt`: where
/// the gdb test (irqstack-tests/tests/smp_kernel.rs) puts its breakpoint.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn gdb_handler_mark(tick: u64) -> u64 {
    black_box(tick)
}

/// The "call function" IPIs, `DEFINE_IDTENTRY_SYSVEC(sysvec_call_function)`, one vector (and
/// handler) per sender.
macro_rules! call_function_vector {
    ($name:ident, $src:literal) => {
        #[idtentry(sysvec)]
        pub fn $name(regs: &mut PtRegs) {
            call_function_interrupt(regs, $src)
        }
    };
}
call_function_vector!(sysvec_call_function_0, 0);
call_function_vector!(sysvec_call_function_1, 1);
call_function_vector!(sysvec_call_function_2, 2);
call_function_vector!(sysvec_call_function_3, 3);

#[inline(always)]
fn call_function_interrupt(regs: &mut PtRegs, src: usize) {
    hardirq_checks(regs, "call-function");
    hw::apic_eoi();
    let cpu = cpu_id() as usize;
    check!(
        src < NCPUS.load(Relaxed) && src != cpu,
        "call-function: from CPU {src}?"
    );
    let handled = IPI_HANDLED[cpu][src].fetch_add(1, Relaxed) + 1;
    let sent = IPI_SENT[src][cpu].load(Relaxed);
    check!(
        handled <= sent,
        "call-function IPI from CPU {src} handled {handled} times, sent {sent}"
    );
}

/// The reschedule IPI, `DEFINE_IDTENTRY_SYSVEC(sysvec_reschedule_ipi)`.
#[idtentry(sysvec)]
pub fn sysvec_reschedule_ipi(regs: &mut PtRegs) {
    let nested = hardirq_checks(regs, "reschedule");
    let cpu = cpu_id() as usize;
    if nested {
        RESCHED_NESTED[cpu].fetch_add(1, Relaxed);
    }
    hw::apic_eoi();
    RESCHED_HANDLED[cpu].fetch_add(1, Relaxed);
    check!(
        RESCHED_PENDING[cpu].swap(false, Relaxed),
        "reschedule IPI handled that was not sent"
    );
}

/// Device interrupts, `DEFINE_IDTENTRY_IRQ(common_interrupt)`: one 16-byte stub per vector
/// pushes the vector, which the handler gets as its argument (orig_ax is -1 again).
#[idtentry(irq)]
pub fn common_interrupt(regs: &mut PtRegs, vector: u8) {
    hardirq_checks(regs, "device");
    check!(vector == idt::DEVICE_VECTOR, "device: vector {vector:#x}");
    hw::apic_eoi();
    let s = stats();
    let handled = s.device_handled.fetch_add(1, Relaxed) + 1;
    check!(
        handled <= s.device_sent.load(Relaxed),
        "device interrupt handled {handled} times, raised {}",
        s.device_sent.load(Relaxed)
    );
}

/// Spurious APIC interrupts: counted, no EOI (as the SDM says).
#[idtentry(sysvec)]
pub fn sysvec_spurious_apic_interrupt(_regs: &mut PtRegs) {
    stats().spurious.fetch_add(1, Relaxed);
}

/// Raises the device vector on this CPU if the previous one was handled.
fn raise_device_irq() {
    hw::without_irqs(|| {
        let s = stats();
        let sent = s.device_sent.load(Relaxed);
        if s.device_handled.load(Relaxed) == sent {
            s.device_sent.store(sent + 1, Relaxed);
            hw::send_self_ipi(idt::DEVICE_VECTOR);
        }
    })
}

// ---------------------------------------------------------------------------------------------
// The idle loop and its softirq
// ---------------------------------------------------------------------------------------------

/// `sti; hlt`: interrupts are enabled only for the `hlt` (the STI shadow), so a wake-up
/// interrupt always lands right after the `hlt`, at `wait_for_interrupt + 10`.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub extern "C" fn wait_for_interrupt() {
    // A frame record of its own (push rbp; mov rbp, rsp), so that a frame-pointer walk from an
    // interrupt that woke the `hlt` names this function's caller too: the stub's record carries
    // the interrupted rip (here) and rbp (this frame), whose return address is in `idle_loop`.
    // rbp is restored before the return; no other register or flag changes but IF.
    // endbr64: the timer handler takes this function's address (objtool --ibt).
    core::arch::naked_asm!(
        "endbr64\npush rbp\nmov rbp, rsp\nsti\nhlt\npop rbp\n",
        ret_insn!()
    )
}

/// Each CPU's idle loop: argument shapes (switched), the softirq on the IRQ stack with
/// interrupts enabled, then `hlt`.
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn idle_loop(cpu: usize) {
    let mut round = 0u64;
    while !STOP.load(Relaxed) {
        hw::cli();
        crate::user::maybe_run(cpu, STATS[cpu].ticks.load(Relaxed));
        if round.is_multiple_of(8) {
            shapes(cpu, Where::Switched);
        }
        irqstack::run_on_irqstack(|| softirq(cpu));
        check!(
            !irqstack_active() && !crate::percpu::irq_stack_in_use(),
            "irqstack_active() or hardirq_stack_inuse after run_on_irqstack"
        );
        wait_for_interrupt();
        if cpu == 0 {
            crate::maybe_stop();
        }
        round += 1;
    }
}

/// `do_softirq_own_stack`: work on the IRQ stack with interrupts enabled, so that the timer,
/// the IPIs and a self-IPI arrive on it and run in place.
fn softirq(cpu: usize) {
    let sp = current_sp();
    check!(
        irq_stack(cpu).contains(&sp) && irqstack_active(),
        "softirq: sp {sp:#x} is not on CPU {cpu}'s IRQ stack"
    );
    let s = &STATS[cpu];
    s.softirq_runs.fetch_add(1, Relaxed);
    let runs = s.softirq_runs.load(Relaxed);
    // Raised now, with interrupts off: it arrives right after `sti`, on the IRQ stack.
    raise_device_irq();
    let ticks = s.ticks.load(Relaxed);
    hw::sti();
    let mut spins = 0u32;
    while s.ticks.load(Relaxed) == ticks && spins < 200_000 && !STOP.load(Relaxed) {
        hw::pause();
        spins += 1;
    }
    hw::cli();
    check!(
        irq_stack(cpu).contains(&current_sp()) && irqstack_active(),
        "softirq: no longer on the IRQ stack after nested interrupts"
    );
    if runs.is_multiple_of(8) {
        shapes(cpu, Where::SoftIrq);
    }
}

// ---------------------------------------------------------------------------------------------
// Argument shapes on the soft-float target
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Where {
    /// From the idle loop, IRQ stack free: the handlers switch.
    Switched,
    /// Inside `run_on_irqstack`: in place.
    SoftIrq,
    /// Inside a hard-IRQ handler: in place.
    HardIrq,
}

/// Records where a shape body runs.
#[inline(always)]
fn note() {
    check_alignment("shape");
    stats().body_sp.store(current_sp() as u64, Relaxed);
}

#[on_irqstack]
fn shape_f64(a: f64, b: f64, k: u64) -> f64 {
    note();
    a * 2.0 + b - k as f64
}

#[on_irqstack]
fn shape_f32(a: f32, b: f32) -> f32 {
    note();
    a * b + 0.5
}

#[allow(clippy::too_many_arguments)]
#[on_irqstack]
fn shape_seven(a: u64, b: u64, c: u64, d: u64, e: u64, f: u64, g: u64) -> u64 {
    note();
    a + 2 * b + 3 * c + 4 * d + 5 * e + 6 * f + 7 * g
}

/// 40 bytes: passed and returned in memory.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(C)]
pub struct Frame40 {
    a: u64,
    b: u64,
    c: u64,
    d: u64,
    e: u64,
}

#[on_irqstack]
fn shape_struct(f: Frame40, k: u64) -> Frame40 {
    note();
    Frame40 {
        a: f.e + k,
        b: f.d,
        c: f.c,
        d: f.b,
        e: f.a,
    }
}

#[on_irqstack]
fn shape_mut(x: &mut u64, add: u64) {
    note();
    *x = x.wrapping_mul(3) + add;
}

#[on_irqstack]
fn shape_i128(a: i128, b: i128) -> i128 {
    note();
    a * 3 - b
}

#[on_irqstack]
fn shape_never(code: u64) -> ! {
    fail!("the diverging handler was called (code {code})")
}

/// Calls every shape and checks the results and where each body ran.
fn shapes(cpu: usize, at: Where) {
    let s = &STATS[cpu];
    let caller_sp = current_sp();
    let mine = irq_stack(cpu);
    let check_where = |name: &str| {
        let body = s.body_sp.load(Relaxed) as usize;
        check!(
            mine.contains(&body),
            "shape {name} ({at:?}): body sp {body:#x} not on CPU {cpu}'s IRQ stack"
        );
        if at == Where::Switched {
            check!(
                !mine.contains(&caller_sp) && mine.end - body < 512,
                "shape {name}: did not switch (caller sp {caller_sp:#x}, body sp {body:#x})"
            );
        } else {
            check!(
                mine.contains(&caller_sp) && body <= caller_sp,
                "shape {name} ({at:?}): not in place (caller sp {caller_sp:#x}, body sp {body:#x})"
            );
        }
        check!(
            irqstack_active() != (at == Where::Switched),
            "shape {name}: irqstack_active()"
        );
    };
    if black_box(false) {
        shape_never(black_box(7));
    }

    let r = shape_f64(black_box(1.5), black_box(0.25), black_box(3));
    check!(r == 0.25, "shape_f64 returned {r}");
    check_where("f64");

    let r = shape_f32(black_box(1.5), black_box(3.0));
    check!(r == 5.0, "shape_f32 returned {r}");
    check_where("f32");

    let r = shape_seven(1, 2, 3, 4, 5, 6, black_box(7));
    check!(r == 140, "shape_seven returned {r}");
    check_where("seven u64");

    let f = black_box(Frame40 {
        a: 1,
        b: 2,
        c: 3,
        d: 4,
        e: 5,
    });
    let r = shape_struct(f, black_box(10));
    check!(
        r == (Frame40 {
            a: 15,
            b: 4,
            c: 3,
            d: 2,
            e: 1
        }),
        "shape_struct returned {r:?}"
    );
    check_where("struct40");

    let mut x = black_box(7u64);
    shape_mut(&mut x, black_box(2));
    check!(x == 23, "shape_mut left {x}");
    check_where("&mut");

    let r = shape_i128(black_box(-(1i128 << 100)), black_box(5));
    check!(r == -3 * (1i128 << 100) - 5, "shape_i128 returned {r}");
    check_where("i128");

    match at {
        Where::Switched => &s.shapes_switched,
        Where::SoftIrq => &s.shapes_softirq,
        Where::HardIrq => &s.shapes_hardirq,
    }
    .fetch_add(1, Relaxed);
}

// ---------------------------------------------------------------------------------------------
// Frame-pointer walk and overflow
// ---------------------------------------------------------------------------------------------

/// Walks the frame-pointer chain from the timer handler's body: records return addresses and
/// which stack each frame record was on. The BSP prints them; the host resolves the names.
#[inline(always)]
fn backtrace(cpu: usize) {
    let s = &STATS[cpu];
    let irq = irq_stack(cpu);
    let task = task_stack(cpu);
    let mut fp = hw::current_fp();
    let mut n = 0;
    let (mut on_irq, mut on_task) = (0, 0);
    while n < s.bt.len() && fp.is_multiple_of(8) && (irq.contains(&fp) || task.contains(&fp)) {
        if irq.contains(&fp) {
            on_irq += 1;
        } else {
            on_task += 1;
        }
        // SAFETY: `fp` is 8-byte aligned inside one of this CPU's stacks, both mapped; a frame
        // record is two words (saved rbp, return address), both inside the stack since the
        // record lies below the stack's top slot.
        let (next, ret) = unsafe {
            (
                (fp as *const usize).read(),
                ((fp + 8) as *const usize).read(),
            )
        };
        s.bt[n].store(ret as u64, Relaxed);
        n += 1;
        fp = next;
    }
    s.bt_irq_frames.store(on_irq, Relaxed);
    s.bt_task_frames.store(on_task, Relaxed);
    s.bt_len.store(n, Relaxed);
}

/// Recursion without bound, 512 bytes a level: runs off the bottom of the IRQ stack.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let mut buf = [0u8; 512];
    buf[(depth % 512) as usize] = depth as u8;
    let buf = black_box(buf);
    if depth == u64::MAX {
        return 0;
    }
    recurse(depth + 1).wrapping_add(u64::from(buf[(depth % 512) as usize]))
}

// ---------------------------------------------------------------------------------------------
// A page fault inside a handler, fixed up (an exception table of one entry)
// ---------------------------------------------------------------------------------------------

/// Not mapped: PDPT entry 12 (48 GiB) is empty.
const PROBE_ADDR: u64 = 0x3_0000_0000;
/// What `probe_read` returns when its load faulted (`-EFAULT`).
const PROBE_EFAULT: u64 = -14i64 as u64;
/// `probe_read`'s load: `endbr64` (4 bytes), then `mov rax, [rdi]` (3 bytes), then the return.
const PROBE_LOAD_OFFSET: usize = 4;
const PROBE_LOAD_LEN: u64 = 3;

/// Reads `[addr]`. The #PF handler knows its one load: a fault there resumes at the next
/// instruction with `rax = PROBE_EFAULT` (`probe_fixup`), as the kernel's exception table
/// makes `get_kernel_nofault()` return `-EFAULT`.
#[unsafe(naked)]
unsafe extern "C" fn probe_read(addr: u64) -> u64 {
    // endbr64: its address is taken (by `probe_fixup`, objtool --ibt). The load reads rdi and
    // writes rax only; the fixup sets rax and resumes right after the load.
    core::arch::naked_asm!("endbr64\nmov rax, qword ptr [rdi]\n", ret_insn!())
}

/// The #PF handler's fixup: true (and the frame changed to resume after the load, with
/// `-EFAULT` in rax) if the fault is `probe_read`'s load of `PROBE_ADDR`.
pub fn probe_fixup(regs: &mut PtRegs, cr2: u64, error_code: u64) -> bool {
    let load = black_box(probe_read as *const () as usize) + PROBE_LOAD_OFFSET;
    if regs.ip as usize != load || cr2 != PROBE_ADDR {
        return false;
    }
    let cpu = cpu_id() as usize;
    // A read (bit 1 clear) of a page that is not present (bit 0 clear), from ring 0 (bit 2).
    check!(
        error_code & 0b111 == 0,
        "probe #PF: error code {error_code:#x}"
    );
    // Taken inside an `#[on_irqstack]` handler: the fault frame and this handler are on the
    // IRQ stack, which stays claimed.
    let sp = current_sp();
    check!(
        irq_stack(cpu).contains(&sp)
            && irq_stack(cpu).contains(&(regs.sp as usize))
            && crate::percpu::irq_stack_in_use(),
        "probe #PF: handler sp {sp:#x}, fault sp {:#x}: not on CPU {cpu}'s IRQ stack",
        regs.sp
    );
    regs.ax = PROBE_EFAULT;
    regs.ip += PROBE_LOAD_LEN;
    STATS[cpu].pf_fixups.fetch_add(1, Relaxed);
    true
}

/// From a hard-IRQ handler on the IRQ stack: reads an unmapped page; the #PF is fixed up and
/// the handler goes on.
#[inline(never)]
fn probe_unmapped(cpu: usize) {
    let before = STATS[cpu].pf_fixups.load(Relaxed);
    // SAFETY: `probe_read` reads one word; PROBE_ADDR is not mapped, and its fault is fixed
    // up by the #PF handler (`probe_fixup`), which makes the read return PROBE_EFAULT.
    let v = unsafe { probe_read(black_box(PROBE_ADDR)) };
    check!(
        v == PROBE_EFAULT && STATS[cpu].pf_fixups.load(Relaxed) == before + 1,
        "probe of {PROBE_ADDR:#x} returned {v:#x}, fixups {} -> {}",
        before,
        STATS[cpu].pf_fixups.load(Relaxed)
    );
    check!(
        irq_stack(cpu).contains(&current_sp()) && irqstack_active(),
        "after the fixed-up #PF: not on the IRQ stack"
    );
}
