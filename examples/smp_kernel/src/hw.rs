//! The hardware this kernel touches: I/O ports (COM1, the 8259 PICs, isa-debug-exit), MSRs, the
//! local APIC (xAPIC, memory-mapped at 0xFEE00000, identity-mapped by boot.rs), RFLAGS.IF.

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// isa-debug-exit: QEMU exits with status `(value << 1) | 1`.
pub const EXIT_PASS: u32 = 0x10; // status 33
pub const EXIT_FAIL: u32 = 0x11; // status 35
pub const EXIT_OVERFLOW: u32 = 0x22; // status 69

#[inline(always)]
pub fn outb(port: u16, v: u8) {
    // SAFETY: a port write to a device this kernel owns (COM1, the PICs); no memory, no stack.
    unsafe {
        core::arch::asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags))
    }
}

#[inline(always)]
pub fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: a port read from COM1's status register; no memory, no stack.
    unsafe {
        core::arch::asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack, preserves_flags))
    }
    v
}

#[inline(always)]
pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reads an architectural MSR that exists on every x86-64 CPU QEMU emulates; rdmsr
    // writes edx:eax, both declared.
    unsafe {
        core::arch::asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// # Safety
/// Writing an MSR changes the CPU's state: the caller says why the value is right.
#[inline(always)]
pub unsafe fn wrmsr(msr: u32, v: u64) {
    // SAFETY: the caller's contract; wrmsr reads ecx and edx:eax only.
    unsafe {
        core::arch::asm!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32, options(nostack, preserves_flags))
    }
}

/// Exits QEMU through isa-debug-exit (iobase 0xf4, 4 bytes). Never returns: if the device is
/// missing, the CPU stops with interrupts off, and the host's timeout reports it.
pub fn exit_qemu(value: u32) -> ! {
    // SAFETY: a 32-bit port write to isa-debug-exit; QEMU exits on it.
    unsafe {
        core::arch::asm!("out dx, eax", in("dx") 0xf4u16, in("eax") value, options(nomem, nostack))
    };
    loop {
        // SAFETY: stops this CPU for good; nothing is left to run.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// RFLAGS.IF.
#[inline(always)]
pub fn irqs_enabled() -> bool {
    let flags: u64;
    // SAFETY: pushes RFLAGS and pops it into a register: 8 bytes of stack, restored.
    unsafe {
        core::arch::asm!("pushfq", "pop {}", out(reg) flags, options(nomem, preserves_flags))
    };
    flags & (1 << 9) != 0
}

#[inline(always)]
pub fn cli() {
    // SAFETY: disables interrupts on this CPU; the callers say why.
    unsafe { core::arch::asm!("cli", options(nomem, nostack)) }
}

#[inline(always)]
pub fn sti() {
    // SAFETY: enables interrupts on this CPU once its IDT, per-CPU area and IRQ stack are set up.
    unsafe { core::arch::asm!("sti", options(nomem, nostack)) }
}

/// Runs `f` with interrupts disabled, restoring the previous state after.
#[inline(always)]
pub fn without_irqs<R>(f: impl FnOnce() -> R) -> R {
    let was = irqs_enabled();
    cli();
    let r = f();
    if was {
        sti();
    }
    r
}

pub fn read_cr2() -> u64 {
    let v: u64;
    // SAFETY: reads CR2 (the last page-fault address); no memory.
    unsafe {
        core::arch::asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags))
    };
    v
}

#[inline(always)]
pub fn current_sp() -> usize {
    let v: usize;
    // SAFETY: copies rsp into a register.
    unsafe {
        core::arch::asm!("mov {}, rsp", out(reg) v, options(nomem, nostack, preserves_flags))
    };
    v
}

#[inline(always)]
pub fn current_fp() -> usize {
    let v: usize;
    // SAFETY: copies rbp (the frame pointer: every function keeps one) into a register.
    unsafe {
        core::arch::asm!("mov {}, rbp", out(reg) v, options(nomem, nostack, preserves_flags))
    };
    v
}

pub fn pause() {
    core::hint::spin_loop();
}

// ---------------------------------------------------------------------------------------------
// COM1
// ---------------------------------------------------------------------------------------------

const COM1: u16 = 0x3f8;

pub fn serial_init() {
    outb(COM1 + 1, 0x00); // no UART interrupts
    outb(COM1 + 3, 0x80); // DLAB
    outb(COM1, 0x01); // 115200 baud
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03); // 8N1
    outb(COM1 + 2, 0xc7); // FIFO on, cleared
    outb(COM1 + 4, 0x03); // DTR, RTS
}

fn serial_byte(b: u8) {
    let mut spins = 0u32;
    while inb(COM1 + 5) & 0x20 == 0 && spins < 100_000 {
        spins += 1;
    }
    outb(COM1, b);
}

pub struct Serial;

impl Write for Serial {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                serial_byte(b'\r');
            }
            serial_byte(b);
        }
        Ok(())
    }
}

/// The console lock: held with interrupts off, so a handler never spins on a lock its own CPU
/// holds. Fatal paths take it with a bounded wait (`force`), so a report always gets out.
static CONSOLE: AtomicBool = AtomicBool::new(false);
static CONSOLE_OWNER: AtomicU32 = AtomicU32::new(u32::MAX);

pub fn print_locked(args: core::fmt::Arguments<'_>, force: bool) {
    without_irqs(|| {
        let me = crate::percpu::cpu_id();
        let mut spins = 0u64;
        let mut taken = true;
        while CONSOLE
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if force && (spins > 50_000_000 || CONSOLE_OWNER.load(Ordering::Relaxed) == me) {
                taken = false;
                break;
            }
            pause();
        }
        CONSOLE_OWNER.store(me, Ordering::Relaxed);
        let _ = Serial.write_fmt(args);
        CONSOLE_OWNER.store(u32::MAX, Ordering::Relaxed);
        if taken {
            CONSOLE.store(false, Ordering::Release);
        }
    })
}

#[macro_export]
macro_rules! println {
    ($($t:tt)*) => {
        $crate::hw::print_locked(format_args!("{}\n", format_args!($($t)*)), false)
    };
}

/// Prints `FAIL cpu N: ...` and exits QEMU with the failure status.
#[macro_export]
macro_rules! fail {
    ($($t:tt)*) => {{
        $crate::hw::print_locked(
            format_args!("FAIL cpu {}: {}\n", $crate::percpu::cpu_id(), format_args!($($t)*)),
            true,
        );
        $crate::hw::exit_qemu($crate::hw::EXIT_FAIL)
    }};
}

/// Asserts a kernel invariant: on failure, `fail!` with the condition and the message.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($t:tt)*) => {
        if !$cond {
            $crate::fail!("{} ({})", format_args!($($t)*), stringify!($cond));
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Local APIC (xAPIC)
// ---------------------------------------------------------------------------------------------

const APIC_ID: usize = 0x20;
const APIC_TPR: usize = 0x80;
const APIC_EOI: usize = 0xb0;
const APIC_SVR: usize = 0xf0;
const APIC_ICR_LO: usize = 0x300;
const APIC_ICR_HI: usize = 0x310;
const APIC_LVT_TIMER: usize = 0x320;
const APIC_TIMER_INIT: usize = 0x380;
const APIC_TIMER_DIV: usize = 0x3e0;

fn apic_base() -> usize {
    (rdmsr(0x1b) & 0xffff_f000) as usize
}

#[inline(always)]
fn apic_read(reg: usize) -> u32 {
    // SAFETY: the local APIC page is identity-mapped (below 4 GiB); a 32-bit MMIO read of one of
    // its registers.
    unsafe { ((apic_base() + reg) as *const u32).read_volatile() }
}

#[inline(always)]
fn apic_write(reg: usize, v: u32) {
    // SAFETY: as in `apic_read`; a 32-bit MMIO write.
    unsafe { ((apic_base() + reg) as *mut u32).write_volatile(v) }
}

pub fn apic_id() -> u32 {
    apic_read(APIC_ID) >> 24
}

/// Enables this CPU's local APIC: spurious vector 0xff, accept all priorities.
pub fn apic_enable() {
    apic_write(APIC_SVR, 0x100 | u32::from(crate::idt::SPURIOUS_VECTOR));
    apic_write(APIC_TPR, 0);
}

#[inline(always)]
pub fn apic_eoi() {
    apic_write(APIC_EOI, 0);
}

/// Periodic local APIC timer: the APIC bus runs at 1 GHz in QEMU; divide by 16, `count` cycles.
pub fn apic_timer_start(vector: u8, count: u32) {
    apic_write(APIC_TIMER_DIV, 0x3);
    apic_write(APIC_LVT_TIMER, (1 << 17) | u32::from(vector));
    apic_write(APIC_TIMER_INIT, count);
}

pub fn apic_timer_stop() {
    apic_write(APIC_LVT_TIMER, 1 << 16);
    apic_write(APIC_TIMER_INIT, 0);
}

fn icr_wait() {
    let mut spins = 0u64;
    while apic_read(APIC_ICR_LO) & (1 << 12) != 0 {
        spins += 1;
        if spins > 100_000_000 {
            crate::fail!("ICR delivery never completed");
        }
        pause();
    }
}

/// Sends an IPI through the ICR (`lo`: vector, mode, shorthand). Interrupts are off around the
/// two-register sequence, so a handler on this CPU cannot write the ICR in between.
pub fn apic_send(dest_apic: u32, lo: u32) {
    without_irqs(|| {
        icr_wait();
        apic_write(APIC_ICR_HI, dest_apic << 24);
        apic_write(APIC_ICR_LO, lo);
        icr_wait();
    })
}

/// A fixed IPI with `vector` to one CPU.
pub fn send_ipi(dest_apic: u32, vector: u8) {
    apic_send(dest_apic, u32::from(vector));
}

/// A fixed self-IPI (destination shorthand "self").
pub fn send_self_ipi(vector: u8) {
    apic_send(0, (1 << 18) | u32::from(vector));
}

/// Masks both 8259 PICs: SeaBIOS leaves IRQ0 on vector 8, which would look like a #DF.
pub fn pic_mask_all() {
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
}
