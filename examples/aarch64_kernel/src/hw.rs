//! The hardware of QEMU `virt` this kernel uses: the PL011 UART, semihosting exit, the GICv2,
//! the EL1 virtual timer, PSCI, the DTB, and a few system registers. The MMU is off: every
//! address is physical, every access goes to Device-nGnRnE memory (the target's `strict-align`
//! keeps the compiler from emitting unaligned accesses, which would fault there).

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

/// PL011 UART data register and flag register (virt: 0x0900_0000).
const UART_DR: usize = 0x0900_0000;
const UART_FR: usize = UART_DR + 0x18;
/// FR.TXFF: the transmit FIFO is full.
const UART_FR_TXFF: u32 = 1 << 5;

/// GICv2 distributor and CPU interface (virt: `arm,cortex-a15-gic` at 0x0800_0000, 0x0801_0000).
const GICD: usize = 0x0800_0000;
const GICC: usize = 0x0801_0000;
const GICD_CTLR: usize = 0x000;
const GICD_ISENABLER0: usize = 0x100;
const GICD_IPRIORITYR: usize = 0x400;
const GICD_PIDR2: usize = 0xfe8;
const GICC_CTLR: usize = 0x000;
const GICC_PMR: usize = 0x004;
const GICC_BPR: usize = 0x008;
const GICC_IAR: usize = 0x00c;
const GICC_EOIR: usize = 0x010;

/// The EL1 virtual timer's PPI: PPI 11, interrupt ID 16 + 11 (the DTB's `/timer`, third entry).
pub const TIMER_INTID: u32 = 27;
/// What the GIC's IAR reads when nothing is pending.
pub const SPURIOUS_INTID: u32 = 1023;

/// Semihosting exit status of a passing run.
pub const EXIT_PASS: u32 = 33;
/// Semihosting exit status of a failed check (or any unexpected exception).
pub const EXIT_FAIL: u32 = 35;

static PRINT_LOCK: AtomicBool = AtomicBool::new(false);

fn mmio_read(addr: usize) -> u32 {
    // SAFETY: a 32-bit aligned device register of QEMU virt (identity: MMU off).
    unsafe { (addr as *const u32).read_volatile() }
}

fn mmio_write(addr: usize, v: u32) {
    // SAFETY: as in `mmio_read`.
    unsafe { (addr as *mut u32).write_volatile(v) }
}

struct Uart;

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            while mmio_read(UART_FR) & UART_FR_TXFF != 0 {
                core::hint::spin_loop();
            }
            mmio_write(UART_DR, u32::from(b));
        }
        Ok(())
    }
}

/// Prints one line under the print lock (taken with a bounded wait: a CPU that failed while
/// another held the lock still gets its report out).
pub fn print_line(args: fmt::Arguments<'_>) {
    let mut spins = 0u32;
    while PRINT_LOCK
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
        && spins < 50_000_000
    {
        spins += 1;
        core::hint::spin_loop();
    }
    let _ = Uart.write_fmt(args);
    let _ = Uart.write_str("\n");
    PRINT_LOCK.store(false, Ordering::Release);
}

/// Prints without the line end and without the lock (the caller prints a line in pieces from one
/// CPU while the other is stopped).
pub fn print_raw(args: fmt::Arguments<'_>) {
    let _ = Uart.write_fmt(args);
}

macro_rules! println {
    ($($t:tt)*) => {
        $crate::hw::print_line(format_args!($($t)*))
    };
}

/// Reports a failed check on the serial port and exits QEMU with the failure status.
macro_rules! fail {
    ($($t:tt)*) => {{
        $crate::hw::print_line(format_args!("FAIL: {}", format_args!($($t)*)));
        $crate::hw::exit(crate::hw::EXIT_FAIL)
    }};
}

/// `fail!` unless the condition holds.
macro_rules! check {
    ($cond:expr, $($t:tt)*) => {
        if !$cond {
            fail!($($t)*);
        }
    };
}

/// Ends the QEMU run with `status` through semihosting `SYS_EXIT_EXTENDED` (needs
/// `-semihosting`; without it the `hlt` is an undefined instruction, reported as such, and the
/// host's timeout ends the run).
pub fn exit(status: u32) -> ! {
    // ADP_Stopped_ApplicationExit, then the exit status.
    let block: [u64; 2] = [0x2_0026, u64::from(status)];
    // SAFETY: the semihosting call: w0 = 0x20 (SYS_EXIT_EXTENDED), x1 = the parameter block (two
    // doublewords, alive on this stack); `hlt #0xf000` traps to QEMU, which exits. Nothing
    // returns from it (a loop after it in case it did).
    unsafe {
        core::arch::asm!(
            "hlt #0xf000",
            in("x0") 0x20u64,
            in("x1") block.as_ptr(),
            options(nostack, readonly),
        )
    };
    loop {
        wfi();
    }
}

/// The CPU number from MPIDR_EL1 (Aff0: QEMU virt numbers CPUs 0, 1, ... in one cluster).
pub fn mpidr_cpu() -> usize {
    let v: u64;
    // SAFETY: reads a system register; no memory, no flags.
    unsafe { core::arch::asm!("mrs {}, mpidr_el1", out(reg) v, options(nomem, nostack)) };
    (v & 0xff) as usize
}

/// The exception level this code runs at (CurrentEL bits 3:2).
pub fn current_el() -> u64 {
    let v: u64;
    // SAFETY: as in `mpidr_cpu`.
    unsafe { core::arch::asm!("mrs {}, CurrentEL", out(reg) v, options(nomem, nostack)) };
    (v >> 2) & 3
}

/// Whether IRQs are masked (PSTATE.I, DAIF bit 7).
pub fn irqs_masked() -> bool {
    let v: u64;
    // SAFETY: as in `mpidr_cpu`.
    unsafe { core::arch::asm!("mrs {}, daif", out(reg) v, options(nomem, nostack)) };
    v & (1 << 7) != 0
}

/// Unmasks IRQs (DAIF.I = 0). A compiler barrier: memory accesses stay on their side of it.
pub fn irq_enable() {
    // SAFETY: clears PSTATE.I; an IRQ may be taken right after (the vector saves everything).
    unsafe { core::arch::asm!("msr daifclr, #2", options(nostack)) };
}

/// Masks IRQs (DAIF.I = 1), a compiler barrier like `irq_enable`.
pub fn irq_disable() {
    // SAFETY: sets PSTATE.I.
    unsafe { core::arch::asm!("msr daifset, #2", options(nostack)) };
}

/// Waits for an interrupt (returns at once if one is pending, masked or not).
pub fn wfi() {
    // SAFETY: `wfi` only waits.
    unsafe { core::arch::asm!("wfi", options(nomem, nostack, preserves_flags)) };
}

/// The current stack pointer.
#[inline(always)]
pub fn sp() -> usize {
    let v: usize;
    // SAFETY: copies sp; no memory.
    unsafe { core::arch::asm!("mov {}, sp", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// The frame pointer (x29) of the calling function (frame pointers are forced on).
#[inline(always)]
pub fn fp() -> usize {
    let v: usize;
    // SAFETY: copies x29; no memory.
    unsafe {
        core::arch::asm!("mov {}, x29", out(reg) v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// The per-CPU offset register.
pub fn set_tpidr_el1(v: usize) {
    // SAFETY: writes this CPU's per-CPU offset; nothing reads it before the caller is done.
    unsafe { core::arch::asm!("msr tpidr_el1, {}", "isb", in(reg) v, options(nostack)) };
}

/// The per-CPU offset register's value.
pub fn tpidr_el1() -> usize {
    let v: usize;
    // SAFETY: reads a system register.
    unsafe { core::arch::asm!("mrs {}, tpidr_el1", out(reg) v, options(nomem, nostack)) };
    v
}

// ---------------------------------------------------------------------------------------------
// Generic timer (EL1 virtual timer).

/// The counter frequency (CNTFRQ_EL0; 62.5 MHz on QEMU 7.2).
pub fn timer_freq() -> u64 {
    let v: u64;
    // SAFETY: reads a system register.
    unsafe { core::arch::asm!("mrs {}, cntfrq_el0", out(reg) v, options(nomem, nostack)) };
    v
}

/// The virtual count (CNTVCT_EL0), after an `isb` so that it is not read early.
pub fn counter() -> u64 {
    let v: u64;
    // SAFETY: reads a system register.
    unsafe { core::arch::asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack)) };
    v
}

/// Arms this CPU's virtual timer to fire `ticks` counts from now and enables it (CTL.ENABLE,
/// IMASK clear). Writing TVAL also drops the (level) interrupt of the previous expiry.
pub fn timer_arm(ticks: u64) {
    // SAFETY: this CPU's timer registers.
    unsafe {
        core::arch::asm!(
            "msr cntv_tval_el0, {t}",
            "msr cntv_ctl_el0, {c}",
            "isb",
            t = in(reg) ticks,
            c = in(reg) 1u64,
            options(nomem, nostack),
        )
    };
}

/// Stops this CPU's virtual timer.
pub fn timer_stop() {
    // SAFETY: this CPU's timer register.
    unsafe { core::arch::asm!("msr cntv_ctl_el0, xzr", "isb", options(nomem, nostack)) };
}

// ---------------------------------------------------------------------------------------------
// GICv2.

/// The GIC's architecture version (GICD_PIDR2.ArchRev; 2 for a GICv2).
pub fn gic_version() -> u32 {
    (mmio_read(GICD + GICD_PIDR2) >> 4) & 0xf
}

/// Enables the distributor (once, on CPU 0). No security extensions on virt: bit 0 enables
/// group 0, which the CPU interface signals as IRQ.
pub fn gic_dist_init() {
    mmio_write(GICD + GICD_CTLR, 0);
    mmio_write(GICD + GICD_CTLR, 1);
}

/// This CPU's part: the timer PPI's priority and enable bit (banked per CPU), the CPU
/// interface's priority mask and enable.
pub fn gic_cpu_init() {
    // One priority byte per interrupt; a byte write is allowed on GICD_IPRIORITYR.
    // SAFETY: the banked priority byte of the timer's PPI.
    unsafe { ((GICD + GICD_IPRIORITYR + TIMER_INTID as usize) as *mut u8).write_volatile(0x80) };
    mmio_write(GICD + GICD_ISENABLER0, 1 << TIMER_INTID);
    mmio_write(GICC + GICC_PMR, 0xf0);
    mmio_write(GICC + GICC_BPR, 0);
    mmio_write(GICC + GICC_CTLR, 1);
}

/// Acknowledges the highest-priority pending interrupt: the IAR value (interrupt ID in bits
/// 9:0), to hand back to `gic_eoi`.
pub fn gic_ack() -> u32 {
    mmio_read(GICC + GICC_IAR)
}

/// Ends the interrupt: drops the running priority and deactivates it, so that the next one of
/// the same priority can preempt whatever runs with IRQs unmasked.
pub fn gic_eoi(iar: u32) {
    mmio_write(GICC + GICC_EOIR, iar);
}

// ---------------------------------------------------------------------------------------------
// PSCI.

/// How PSCI calls reach the firmware (QEMU itself here): the DTB's `/psci` `method`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Conduit {
    Hvc,
    Smc,
}

/// PSCI `CPU_ON` (SMC64 function 0xC400_0003): starts CPU `mpidr` at `entry` (physical) at EL1,
/// MMU off, with `x0 = context`. Returns the PSCI status (0 on success).
pub fn psci_cpu_on(conduit: Conduit, mpidr: u64, entry: usize, context: u64) -> i64 {
    let mut x0: u64 = 0xc400_0003;
    // The same call through either conduit: only the instruction differs.
    macro_rules! psci_call {
        ($insn:literal) => {
            // SAFETY: a PSCI call per the SMC calling convention: arguments in x0..x3, the
            // result in x0; x1..x17 may be clobbered by the callee (declared).
            unsafe {
                core::arch::asm!(
                    $insn,
                    inout("x0") x0,
                    inout("x1") mpidr => _,
                    inout("x2") entry => _,
                    inout("x3") context => _,
                    out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _, out("x9") _,
                    out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _,
                    out("x15") _, out("x16") _, out("x17") _,
                    options(nostack),
                )
            }
        };
    }
    match conduit {
        Conduit::Hvc => psci_call!("hvc #0"),
        Conduit::Smc => psci_call!("smc #0"),
    }
    x0 as i64
}

// ---------------------------------------------------------------------------------------------
// The flattened device tree QEMU puts at the start of RAM.

/// Where QEMU `virt` places the DTB for a kernel loaded as an ELF.
pub const DTB_ADDR: usize = 0x4000_0000;
const FDT_MAGIC: u32 = 0xd00d_feed;

/// A property value found in the DTB: a byte range of it (valid for the whole run: nothing
/// writes that memory).
pub struct Prop(&'static [u8]);

impl Prop {
    /// The value without its terminating NUL, if it is a string.
    pub fn as_str(&self) -> &'static [u8] {
        let v = self.0;
        v.strip_suffix(&[0]).unwrap_or(v)
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// The DTB, if one is at `DTB_ADDR` (checked magic, total size within 1 MiB).
fn dtb() -> Option<&'static [u8]> {
    // SAFETY: RAM at the start of virt's memory (the kernel is loaded 512 KiB above it); read
    // bytewise, so no alignment matters.
    let head = unsafe { core::slice::from_raw_parts(DTB_ADDR as *const u8, 8) };
    if be32(head, 0)? != FDT_MAGIC {
        return None;
    }
    let total = be32(head, 4)? as usize;
    if !(40..=1 << 20).contains(&total) {
        return None;
    }
    // SAFETY: as above, `total` bytes, checked against a sane bound.
    Some(unsafe { core::slice::from_raw_parts(DTB_ADDR as *const u8, total) })
}

/// Property `prop` of the top-level node whose name (before any `@`) is `node`; `None` if there
/// is no DTB, no such node or property, or the blob is malformed.
pub fn dtb_prop(node: &[u8], prop: &[u8]) -> Option<Prop> {
    let d = dtb()?;
    let off_struct = be32(d, 8)? as usize;
    let off_strings = be32(d, 12)? as usize;
    let mut p = off_struct;
    let mut depth = 0usize;
    let mut in_node = false;
    loop {
        let tok = be32(d, p)?;
        p += 4;
        match tok {
            1 => {
                // FDT_BEGIN_NODE: a NUL-terminated name, padded to 4 bytes.
                let len = d.get(p..)?.iter().position(|&b| b == 0)?;
                let name = &d[p..p + len];
                let base = name.split(|&b| b == b'@').next().unwrap_or(name);
                depth += 1;
                in_node = depth == 2 && base == node;
                p = (p + len + 1 + 3) & !3;
            }
            2 => {
                // FDT_END_NODE.
                depth = depth.checked_sub(1)?;
                in_node = false;
            }
            3 => {
                // FDT_PROP: length, name offset, value padded to 4 bytes.
                let len = be32(d, p)? as usize;
                let nameoff = be32(d, p + 4)? as usize;
                let value = d.get(p + 8..p + 8 + len)?;
                if in_node {
                    let names = d.get(off_strings + nameoff..)?;
                    let n = names.iter().position(|&b| b == 0)?;
                    if &names[..n] == prop {
                        return Some(Prop(value));
                    }
                }
                p = (p + 8 + len + 3) & !3;
            }
            4 => {}           // FDT_NOP
            _ => return None, // FDT_END or garbage
        }
    }
}
