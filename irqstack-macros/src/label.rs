//! Fresh numeric labels for assembly, the equivalent of the C preprocessor's `__COUNTER__`.
//!
//! Rules the numbers follow:
//! - numeric (GNU local labels): the only kind `asm!` allows, because the compiler may emit one
//!   block many times and only numeric labels may be defined more than once;
//! - never made only of 0s and 1s: in Intel syntax `10b` would read as the binary number 2, and
//!   `.long 10b - .` would silently relocate against address 2. All our numbers start with `47`;
//! - large and from a range of their own (4 740 000 .. 4 999 999), so they do not capture a label
//!   of the user's template: a user's `2:` ... `2b` around one of our pieces still resolves to the
//!   user's `2:`, because our piece defines only its own number;
//! - unique per expansion within one compilation (a process-wide counter). Uniqueness is not
//!   needed for correctness (every reference is a backward one to the definition just made) but it
//!   keeps objdump output readable and mirrors the kernel's `__COUNTER__`.

use std::sync::atomic::{AtomicU32, Ordering};

const FIRST: u32 = 4_740_000;
const SPAN: u32 = 260_000;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A fresh label number, as the decimal string that the asm pieces take.
pub fn fresh() -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % SPAN;
    (FIRST + n).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels_are_never_binary_looking_and_differ() {
        let a = super::fresh();
        let b = super::fresh();
        assert_ne!(a, b);
        for l in [a, b] {
            assert!(l.chars().any(|c| !matches!(c, '0' | '1')), "{l}");
            assert!(l.starts_with("47"));
        }
    }
}
