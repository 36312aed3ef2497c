//! Sv39 paging: an identity map of the machine, with the guard page below each IRQ stack left
//! unmapped.
//!
//! - 0..1 GiB (MMIO: the test device, the UART): one gigapage, read/write, no execute;
//! - 2..3 GiB (RAM from 0x8000_0000): 2 MiB megapages, read/write/execute, except the 2 MiB that
//!   hold the kernel (from 0x8020_0000), which are mapped with 4 KiB pages so that the guard
//!   pages can be left out.
//!
//! The tables are built once by the boot hart; every hart then loads `satp` (`enable`). The map
//! is the identity, so the code and every pointer stay valid across the switch.

use crate::percpu::{self, MAX_HARTS};

const PTE_V: u64 = 1 << 0;
const PTE_R: u64 = 1 << 1;
const PTE_W: u64 = 1 << 2;
const PTE_X: u64 = 1 << 3;
const PTE_G: u64 = 1 << 5;
/// Accessed and dirty set up front: no A/D faults (hardware updating is optional).
const PTE_AD: u64 = (1 << 6) | (1 << 7);
const RW: u64 = PTE_V | PTE_R | PTE_W | PTE_G | PTE_AD;
const RWX: u64 = RW | PTE_X;
const SATP_SV39: u64 = 8 << 60;

const KERNEL_BASE: usize = 0x8020_0000;
const MEGA: usize = 2 << 20;
const GIGA: usize = 1 << 30;

#[repr(C, align(4096))]
struct Table([u64; 512]);

static mut ROOT: Table = Table([0; 512]);
static mut RAM_MEGAPAGES: Table = Table([0; 512]);
static mut KERNEL_PAGES: Table = Table([0; 512]);

unsafe extern "C" {
    static __kernel_end: u8;
}

fn leaf(pa: usize, flags: u64) -> u64 {
    ((pa as u64 >> 12) << 10) | flags
}

fn pointer(table: usize) -> u64 {
    ((table as u64 >> 12) << 10) | PTE_V
}

/// Builds the tables (boot hart, before the other harts start).
pub fn build() {
    let end = &raw const __kernel_end as usize;
    check!(
        end <= KERNEL_BASE + MEGA,
        "the kernel ends at {end:#x}, beyond the 2 MiB mapped with 4 KiB pages"
    );
    // SAFETY: only the boot hart runs; the tables are not in use yet (satp = 0). Writes through
    // raw pointers to the three statics.
    unsafe {
        let root = &raw mut ROOT.0;
        let ram = &raw mut RAM_MEGAPAGES.0;
        let kernel = &raw mut KERNEL_PAGES.0;
        (*root)[0] = leaf(0, RW);
        (*root)[2] = pointer(ram as usize);
        for i in 0..512 {
            (*ram)[i] = leaf(2 * GIGA + i * MEGA, RWX);
        }
        (*ram)[(KERNEL_BASE - 2 * GIGA) / MEGA] = pointer(kernel as usize);
        for i in 0..512 {
            let pa = KERNEL_BASE + i * 4096;
            let in_guard = (0..MAX_HARTS).any(|c| percpu::guard(c).contains(&pa));
            (*kernel)[i] = if in_guard { 0 } else { leaf(pa, RWX) };
        }
    }
}

/// Turns on Sv39 with the tables on this hart.
pub fn enable() {
    let root = &raw const ROOT as usize;
    let satp = SATP_SV39 | (root as u64 >> 12);
    // SAFETY: the identity map covers the code, the stacks, the data and the devices, so the
    // instruction after `csrw satp` and every pointer stay valid; `sfence.vma` orders the table
    // writes (made before, by the boot hart, whose stores the fence of `hart_start` published)
    // before the first translation.
    unsafe {
        core::arch::asm!(
            "sfence.vma",
            "csrw satp, {}",
            "sfence.vma",
            in(reg) satp,
            options(nostack)
        )
    };
}
