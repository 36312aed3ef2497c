// A build has exactly one backend.
use core::ops::Range;
use core::ptr::NonNull;

struct Cpu;
// SAFETY: never used; the test only compiles.
unsafe impl irqstack::Backend for Cpu {
    fn claim() -> Option<NonNull<u8>> {
        None
    }
    unsafe fn release(_tos: NonNull<u8>) {}
    fn bounds() -> Option<Range<usize>> {
        None
    }
    fn top_slot() -> Option<usize> {
        None
    }
}

irqstack::set_backend!(Cpu);
irqstack::set_backend!(Cpu);

fn main() {}
