//! The rows that both benchmarks measure: the same body, `x.wrapping_add(1)`, behind every kind of
//! call. Included by `benches/switch.rs` (criterion, wall clock) and `benches/icount.rs`
//! (callgrind, instructions) with `#[path]`, so both measure exactly the same functions.
//!
//! Every wrapper here that the benchmarks call is either `#[inline(never)]` (the direct rows) or
//! inlined into the caller's loop (`#[on_irqstack]` wrappers are `#[inline(always)]`;
//! `run_on_irqstack`, `psm::on_stack` and `stacker::maybe_grow` are generic and inline), which is
//! how real callers see them.

use std::alloc::{Layout, alloc, dealloc};

use irqstack::on_irqstack;

/// Row 1: a plain call of a function that is never inlined.
#[inline(never)]
pub fn direct(x: u64) -> u64 {
    x.wrapping_add(1)
}

/// Rows 2 and 3: a handler. Called off the IRQ stack it switches; called on it (nested), it runs
/// in place.
#[on_irqstack]
pub fn switched(x: u64) -> u64 {
    x.wrapping_add(1)
}

/// Row 4: the closure form.
#[inline(always)]
pub fn closure(x: u64) -> u64 {
    irqstack::run_on_irqstack(|| x.wrapping_add(1))
}

/// Row 6: `stacker::maybe_grow` with plenty of stack left, so it never switches.
#[inline(always)]
pub fn stacker(x: u64) -> u64 {
    stacker::maybe_grow(32 * 1024, 1024 * 1024, || x.wrapping_add(1))
}

/// The body of both six-argument rows: the sum of the arguments, plus one. Inlined into each, so
/// the two rows differ only in how they are called.
#[inline(always)]
fn sum6(a: u64, b: u64, c: u64, d: u64, e: u64, f: u64) -> u64 {
    a.wrapping_add(b)
        .wrapping_add(c)
        .wrapping_add(d)
        .wrapping_add(e)
        .wrapping_add(f)
        .wrapping_add(1)
}

/// Row 7 baseline: six integer arguments, a plain call.
#[inline(never)]
pub fn direct6(a: u64, b: u64, c: u64, d: u64, e: u64, f: u64) -> u64 {
    sum6(a, b, c, d, e, f)
}

/// Row 7: six integer arguments fill the argument registers, so the trampoline's `tos` goes on
/// the stack.
#[on_irqstack]
pub fn switched6(a: u64, b: u64, c: u64, d: u64, e: u64, f: u64) -> u64 {
    sum6(a, b, c, d, e, f)
}

/// A 40-byte argument, passed by value.
#[derive(Clone, Copy, Debug, Default)]
pub struct Frame40 {
    pub a: u64,
    pub b: u64,
    pub c: u64,
    pub d: u64,
    pub e: u64,
}

impl Frame40 {
    /// A frame whose fields are all `x`, built behind `black_box` so nothing folds.
    #[inline(always)]
    pub fn splat(x: u64) -> Frame40 {
        std::hint::black_box(Frame40 {
            a: x,
            b: x,
            c: x,
            d: x,
            e: x,
        })
    }

    /// The body of both struct rows: the sum of the fields, plus one (inlined into each).
    #[inline(always)]
    fn sum(self) -> u64 {
        self.a
            .wrapping_add(self.b)
            .wrapping_add(self.c)
            .wrapping_add(self.d)
            .wrapping_add(self.e)
            .wrapping_add(1)
    }
}

/// Row 8 baseline: a 40-byte struct by value, a plain call.
#[inline(never)]
pub fn direct_struct(f: Frame40) -> u64 {
    f.sum()
}

/// Row 8: a 40-byte struct by value goes through the argument block (the "block form").
#[on_irqstack]
pub fn switched_struct(f: Frame40) -> u64 {
    f.sum()
}

/// Row 5: a pre-allocated stack for `psm::on_stack`, the same size as an IRQ stack.
pub struct PsmStack {
    base: *mut u8,
    layout: Layout,
}

impl PsmStack {
    /// Allocates a page-aligned stack of `size` bytes (a multiple of 4096).
    pub fn new(size: usize) -> PsmStack {
        let layout = Layout::from_size_align(size, 4096).expect("stack layout");
        // SAFETY: `layout` has a non-zero size.
        let base = unsafe { alloc(layout) };
        assert!(!base.is_null(), "allocating the psm stack failed");
        PsmStack { base, layout }
    }

    /// Row 5: `x.wrapping_add(1)` on this stack, through `psm::on_stack`.
    #[inline(always)]
    pub fn call(&self, x: u64) -> u64 {
        // SAFETY: `base` is page-aligned (more than the 16 bytes x86-64 needs), the size is a
        // multiple of 4096 and fits `isize`, the memory stays allocated while `self` lives and
        // nothing else runs on it (`PsmStack` is neither `Send` nor `Sync`, and `call` does not
        // nest), and the callback cannot unwind.
        unsafe { psm::on_stack(self.base, self.layout.size(), || x.wrapping_add(1)) }
    }
}

impl Drop for PsmStack {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once; no call runs on it any more.
        unsafe { dealloc(self.base, self.layout) }
    }
}

/// Rows 9 and 10 (issue 15): where handlers really live, out of line. The same handler as row 2,
/// but never inlined into its caller: the wrapper is a function of its own, as it is when a
/// signal handler, an IDT entry or a callback table calls it.
#[on_irqstack]
#[inline(never)]
pub fn switched_outline(x: u64) -> u64 {
    x.wrapping_add(1)
}

/// Row 11: the demo's shape, an `extern "C"` handler called through a function pointer (as
/// `sigaction` calls it).
#[on_irqstack]
#[inline(never)]
pub extern "C" fn switched_extern_c(x: u64) -> u64 {
    x.wrapping_add(1)
}

/// The function pointers of rows 10 and 11, behind `black_box` at the call site.
pub static OUTLINE: fn(u64) -> u64 = switched_outline;
/// Row 14's: [`direct`] through a function pointer (the baseline of rows 10 and 11).
pub static DIRECT: fn(u64) -> u64 = direct;
/// See [`OUTLINE`].
pub static EXTERN_C: extern "C" fn(u64) -> u64 = switched_extern_c;
