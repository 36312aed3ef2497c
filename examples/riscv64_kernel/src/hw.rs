//! The machine: the ns16550a UART, the SiFive test device (exit), SBI calls (TIME, HSM), the
//! supervisor CSRs this kernel uses, and the print/fail/check macros.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

// ---------------------------------------------------------------------------------------------
// Printing
// ---------------------------------------------------------------------------------------------

/// `println!` to the UART, one line at a time under a lock shared by the harts.
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
        $crate::hw::exit_fail(1)
    }};
}

/// Asserts a kernel invariant: on failure, `fail!` with the message and the condition.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($t:tt)*) => {
        if !$cond {
            $crate::fail!("{} ({})", format_args!($($t)*), stringify!($cond));
        }
    };
}

/// The ns16550a UART of QEMU `virt`.
const UART: usize = 0x1000_0000;
const UART_THR: usize = 0;
const UART_LSR: usize = 5;
/// Line status: the transmit holding register is empty.
const LSR_THRE: u8 = 0x20;

struct Uart;

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            // SAFETY: the UART's registers are MMIO at a fixed address (identity-mapped); byte
            // accesses, volatile so that each one reaches the device.
            unsafe {
                while (core::ptr::read_volatile((UART + UART_LSR) as *const u8) & LSR_THRE) == 0 {}
                core::ptr::write_volatile((UART + UART_THR) as *mut u8, b);
            }
        }
        Ok(())
    }
}

static PRINT_LOCK: AtomicBool = AtomicBool::new(false);

/// Writes `args` to the UART under the print lock. `force`: a failure report, which takes the
/// lock after a bounded wait even if another hart (or an interrupted print on this hart) holds it.
pub fn print_locked(args: fmt::Arguments<'_>, force: bool) {
    let mut spins = 0u64;
    while PRINT_LOCK
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        spins += 1;
        if force && spins > 10_000_000 {
            break;
        }
        core::hint::spin_loop();
    }
    let _ = Uart.write_fmt(args);
    PRINT_LOCK.store(false, Ordering::Release);
}

// ---------------------------------------------------------------------------------------------
// Exit: the SiFive test device
// ---------------------------------------------------------------------------------------------

/// The SiFive test device ("sifive,test0") of QEMU `virt`: a 32-bit write ends QEMU.
const TEST_DEVICE: usize = 0x10_0000;
const TEST_PASS: u32 = 0x5555;
const TEST_FAIL: u32 = 0x3333;

/// Ends the run: QEMU exits with status 0.
pub fn exit_pass() -> ! {
    // SAFETY: MMIO write to the test device at its fixed address; QEMU exits on it.
    unsafe { core::ptr::write_volatile(TEST_DEVICE as *mut u32, TEST_PASS) };
    halt()
}

/// Ends the run with QEMU exit status `code` (1..=0xffff).
pub fn exit_fail(code: u16) -> ! {
    // SAFETY: as in `exit_pass`; `(code << 16) | 0x3333` makes QEMU exit with `code`.
    unsafe {
        core::ptr::write_volatile(TEST_DEVICE as *mut u32, (u32::from(code) << 16) | TEST_FAIL)
    };
    halt()
}

/// Waits forever with interrupts off (after an exit request, or on a hart that has stopped).
pub fn halt() -> ! {
    irq_disable();
    loop {
        // SAFETY: `wfi` only waits; with SIE clear nothing is taken.
        unsafe { core::arch::asm!("wfi", options(nomem, nostack, preserves_flags)) };
    }
}

// ---------------------------------------------------------------------------------------------
// SBI
// ---------------------------------------------------------------------------------------------

/// SBI extension IDs ("TIME", "HSM").
const SBI_EXT_TIME: usize = 0x5449_4D45;
const SBI_EXT_HSM: usize = 0x48_534D;

/// An SBI call: `a7` = extension, `a6` = function, arguments in `a0..a2`; returns
/// `(error, value)` from `a0`, `a1`. The SBI calling convention preserves every other register.
fn sbi_call(ext: usize, fid: usize, a0: usize, a1: usize, a2: usize) -> (isize, usize) {
    let (err, val);
    // SAFETY: `ecall` from S-mode traps to OpenSBI (M-mode), which returns with only a0/a1
    // changed (SBI spec, "Binary Encoding"); no stack of ours is used.
    unsafe {
        core::arch::asm!(
            "ecall",
            inlateout("a0") a0 => err,
            inlateout("a1") a1 => val,
            in("a2") a2,
            in("a6") fid,
            in("a7") ext,
            options(nostack),
        )
    };
    (err, val)
}

/// `sbi_set_timer(stime)`: the next supervisor timer interrupt when `time` reaches `stime`;
/// also clears a pending one (STIP).
pub fn sbi_set_timer(stime: u64) {
    let (err, _) = sbi_call(SBI_EXT_TIME, 0, stime as usize, 0, 0);
    check!(err == 0, "sbi_set_timer failed with {err}");
}

/// `sbi_hart_start(hartid, start_addr, opaque)`: the hart enters `start_addr` in S-mode with
/// `a0 = hartid`, `a1 = opaque`, `satp = 0` and interrupts off. Returns the SBI error.
pub fn sbi_hart_start(hartid: usize, start: usize, opaque: usize) -> isize {
    sbi_call(SBI_EXT_HSM, 0, hartid, start, opaque).0
}

/// `sbi_hart_get_status(hartid)`: 0 started, 1 stopped, 2 start pending, ...; or the error.
pub fn sbi_hart_status(hartid: usize) -> Result<usize, isize> {
    match sbi_call(SBI_EXT_HSM, 2, hartid, 0, 0) {
        (0, v) => Ok(v),
        (e, _) => Err(e),
    }
}

// ---------------------------------------------------------------------------------------------
// CSRs
// ---------------------------------------------------------------------------------------------

/// sstatus.SIE: supervisor interrupts enabled.
pub const SSTATUS_SIE: usize = 1 << 1;
/// sie.STIE: the supervisor timer interrupt enabled.
pub const SIE_STIE: usize = 1 << 5;
/// scause of the supervisor timer interrupt (interrupt bit, code 5).
pub const SCAUSE_STIMER: usize = (1 << 63) | 5;
/// QEMU `virt`'s timebase: `time` counts at 10 MHz.
pub const TIMEBASE_HZ: u64 = 10_000_000;

/// The `time` CSR (the platform timer, via `rdtime`).
#[inline(always)]
pub fn now() -> u64 {
    let t: u64;
    // SAFETY: reads a counter CSR into a register; no memory.
    unsafe { core::arch::asm!("rdtime {}", out(reg) t, options(nomem, nostack, preserves_flags)) };
    t
}

/// Enables supervisor interrupts (sstatus.SIE).
#[inline(always)]
pub fn irq_enable() {
    // SAFETY: sets one bit of sstatus; interrupts may now be taken, which is the point. The
    // compiler must not move memory accesses across it (no `nomem`).
    unsafe { core::arch::asm!("csrsi sstatus, 2", options(nostack, preserves_flags)) };
}

/// Disables supervisor interrupts (sstatus.SIE).
#[inline(always)]
pub fn irq_disable() {
    // SAFETY: clears one bit of sstatus; a compiler barrier as in `irq_enable`.
    unsafe { core::arch::asm!("csrci sstatus, 2", options(nostack, preserves_flags)) };
}

/// Whether sstatus.SIE is set.
#[inline(always)]
pub fn irqs_enabled() -> bool {
    let s: usize;
    // SAFETY: reads sstatus into a register.
    unsafe {
        core::arch::asm!("csrr {}, sstatus", out(reg) s, options(nomem, nostack, preserves_flags))
    };
    s & SSTATUS_SIE != 0
}

/// Sets bits of `sie` (which interrupts may be taken).
pub fn sie_set(bits: usize) {
    // SAFETY: sets bits of the sie CSR; no memory.
    unsafe {
        core::arch::asm!("csrs sie, {}", in(reg) bits, options(nomem, nostack, preserves_flags))
    };
}

/// Clears bits of `sie`.
pub fn sie_clear(bits: usize) {
    // SAFETY: clears bits of the sie CSR; no memory.
    unsafe {
        core::arch::asm!("csrc sie, {}", in(reg) bits, options(nomem, nostack, preserves_flags))
    };
}

/// Waits for an interrupt with sstatus.SIE set (the idle loop's `wfi`): interrupts are taken
/// right after it, so `sepc` of a tick that woke it points into the caller of this function's
/// inlined body.
#[inline(always)]
pub fn wait_for_interrupt() {
    // SAFETY: `wfi` waits until an interrupt is pending; then the enabled one is taken.
    unsafe { core::arch::asm!("wfi", options(nomem, nostack, preserves_flags)) };
}

/// The current stack pointer.
#[inline(always)]
pub fn sp() -> usize {
    let sp: usize;
    // SAFETY: copies sp into a register.
    unsafe { core::arch::asm!("mv {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    sp
}

/// The current frame pointer (s0): with `-Cforce-frame-pointers=yes`, the stack pointer at this
/// function's entry, with the return address at `s0 - 8` and the caller's s0 at `s0 - 16`.
#[inline(always)]
pub fn fp() -> usize {
    let fp: usize;
    // SAFETY: copies s0 into a register.
    unsafe { core::arch::asm!("mv {}, s0", out(reg) fp, options(nomem, nostack, preserves_flags)) };
    fp
}
