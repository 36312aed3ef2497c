//! Arguments and return values survive the switch: 0 to 10 arguments of mixed types (u8, u64,
//! f64, i128, &mut, a 40-byte struct by value), in every form the expansion picks (arguments in
//! registers with the stack pointer in a register or on the stack, pointers of unknown size, the
//! argument block with and without a result slot). Each handler is compared against the same
//! body compiled as a plain function, on inputs from proptest, and reports whether it ran on the
//! IRQ stack.

use irqstack::on_irqstack;
use proptest::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forty {
    a: u64,
    b: f64,
    c: [u8; 8],
    d: i64,
    e: u64,
}

fn on_irq() -> bool {
    let x = 0u8;
    irqstack::irq_stack_bounds().is_some_and(|r| r.contains(&(&x as *const u8 as usize)))
}

/// Defines a handler and a plain twin with the same body. The handler also reports whether its
/// body ran on the IRQ stack.
macro_rules! twins {
    ($handler:ident, $plain:ident, ($($arg:ident : $ty:ty),*) -> $ret:ty $body:block) => {
        #[allow(clippy::too_many_arguments)]
        #[on_irqstack]
        fn $handler($($arg: $ty),*) -> ($ret, bool) {
            #[allow(unused_braces)]
            let r: $ret = $body;
            (r, on_irq())
        }
        #[allow(unused_braces, clippy::too_many_arguments)]
        fn $plain($($arg: $ty),*) -> $ret $body
    };
}

// No arguments, register return.
twins!(h0, p0, () -> u64 { 0xdead_beef });
// One small integer.
twins!(h1, p1, (a: u8) -> u8 { a.wrapping_mul(3) });
// Integer and float: GPR and SSE classes, tos in rsi.
twins!(h2, p2, (a: u64, b: f64) -> f64 { a as f64 * 0.5 + b });
// i128 argument (block form) and i128 return.
twins!(h3, p3, (a: i128, b: u8, c: u64) -> i128 { a.wrapping_mul(b as i128) ^ c as i128 });
// A pointer of unknown size (`&mut Forty`: thin, picked at compile time) and the struct by value.
twins!(h4, p4, (r: &mut u64, s: Forty, f: f64, b: u8) -> Forty {
    *r = r.wrapping_add(s.a);
    Forty { a: s.e, b: s.b + f, c: [b; 8], d: s.d.wrapping_neg(), e: s.a }
});
// Six integers: every integer argument register taken, tos passed on the stack.
twins!(h6, p6, (a: u64, b: u64, c: u64, d: u64, e: u64, f: u64) -> u64 {
    a ^ b.rotate_left(1) ^ c.rotate_left(2) ^ d.rotate_left(3) ^ e.rotate_left(4) ^ f.rotate_left(5)
});
// `&mut` to a named type among five integers: both forms compiled, register form picked.
twins!(h6r, p6r, (r: &mut Forty, a: u64, b: u64, c: u64, d: u64, e: u8) -> u64 {
    r.a = r.a.wrapping_add(a ^ b ^ c ^ d);
    r.a ^ e as u64
});
// Seven integers: more than fit in registers, block form.
twins!(h7, p7, (a: u64, b: u8, c: u64, d: i64, e: u64, f: u8, g: u64) -> u64 {
    a.wrapping_add(b as u64).wrapping_mul(c | 1) ^ (d as u64) ^ e ^ (f as u64) ^ g
});
// Nine floats: more than the eight SSE registers, block form.
twins!(h9f, p9f, (a: f64, b: f64, c: f64, d: f64, e: f64, f: f64, g: f64, h: f64, i: f64) -> f64 {
    a + 2.0 * b + 3.0 * c + 4.0 * d + 5.0 * e + 6.0 * f + 7.0 * g + 8.0 * h + 9.0 * i
});
// Ten mixed arguments, struct return (result slot).
twins!(h10, p10, (a: u8, b: u64, c: f64, d: i128, e: &mut u64, f: Forty, g: u8, h: f64, i: u64, j: i128) -> (u64, f64, i128, Forty) {
    *e ^= b;
    (a as u64 + g as u64 + i, c * h, d.wrapping_sub(j), Forty { d: f.d ^ 1, ..f })
});
// References in and out, with a lifetime.
twins!(hr, pr, (a: &[u64], idx: usize) -> u64 { a.get(idx).copied().unwrap_or(u64::MAX) });

// Explicit lifetimes on purpose: they are copied to every generated function.
#[allow(clippy::needless_lifetimes)]
#[on_irqstack]
fn borrow<'a>(xs: &'a [u64], i: usize) -> Option<&'a u64> {
    xs.get(i)
}

#[on_irqstack]
fn longest<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.len() >= b.len() { a } else { b }
}

fn forty() -> impl Strategy<Value = Forty> {
    (
        any::<u64>(),
        -1e6f64..1e6,
        any::<[u8; 8]>(),
        any::<i64>(),
        any::<u64>(),
    )
        .prop_map(|(a, b, c, d, e)| Forty { a, b, c, d, e })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn zero_to_two(a in any::<u8>(), b in any::<u64>(), c in -1e9f64..1e9) {
        prop_assert_eq!(h0(), (p0(), true));
        prop_assert_eq!(h1(a), (p1(a), true));
        prop_assert_eq!(h2(b, c), (p2(b, c), true));
    }

    #[test]
    fn wide_integers(a in any::<i128>(), b in any::<u8>(), c in any::<u64>()) {
        prop_assert_eq!(h3(a, b, c), (p3(a, b, c), true));
    }

    #[test]
    fn pointers_and_structs(r in any::<u64>(), s in forty(), f in -1e6f64..1e6, b in any::<u8>()) {
        let (mut r1, mut r2) = (r, r);
        prop_assert_eq!(h4(&mut r1, s, f, b), (p4(&mut r2, s, f, b), true));
        prop_assert_eq!(r1, r2);
    }

    #[test]
    fn six_and_seven(v in any::<[u64; 7]>(), b in any::<u8>(), s in forty()) {
        prop_assert_eq!(h6(v[0], v[1], v[2], v[3], v[4], v[5]), (p6(v[0], v[1], v[2], v[3], v[4], v[5]), true));
        let (mut s1, mut s2) = (s, s);
        prop_assert_eq!(h6r(&mut s1, v[0], v[1], v[2], v[3], b), (p6r(&mut s2, v[0], v[1], v[2], v[3], b), true));
        prop_assert_eq!(s1, s2);
        let d = v[3] as i64;
        prop_assert_eq!(h7(v[0], b, v[2], d, v[4], b ^ 1, v[6]), (p7(v[0], b, v[2], d, v[4], b ^ 1, v[6]), true));
    }

    #[test]
    fn nine_floats(v in prop::array::uniform9(-1e6f64..1e6)) {
        prop_assert_eq!(
            h9f(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8]),
            (p9f(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8]), true)
        );
    }

    #[test]
    fn ten_mixed(
        a in any::<u8>(), b in any::<u64>(), c in -1e6f64..1e6, d in any::<i128>(), e in any::<u64>(),
        f in forty(), g in any::<u8>(), h in -1e6f64..1e6, i in any::<u64>(), j in any::<i128>(),
    ) {
        let (mut e1, mut e2) = (e, e);
        let (got, on) = h10(a, b, c, d, &mut e1, f, g, h, i, j);
        prop_assert!(on);
        prop_assert_eq!(got, p10(a, b, c, d, &mut e2, f, g, h, i, j));
        prop_assert_eq!(e1, e2);
    }

    #[test]
    fn references(xs in prop::collection::vec(any::<u64>(), 0..20), i in 0usize..25) {
        prop_assert_eq!(hr(&xs, i), (pr(&xs, i), true));
        prop_assert_eq!(borrow(&xs, i), xs.get(i));
        let s1 = "x".repeat(i);
        prop_assert_eq!(longest(&s1, "abc"), if i >= 3 { s1.as_str() } else { "abc" });
    }
}

/// Arguments that own heap memory are moved through the block exactly once: no leak, no double
/// drop (the counter would go negative or stay positive).
#[test]
fn owned_arguments_are_dropped_once() {
    use std::sync::atomic::{AtomicIsize, Ordering};
    static LIVE: AtomicIsize = AtomicIsize::new(0);
    struct Tracked(#[allow(dead_code)] Box<u64>);
    impl Tracked {
        fn new(v: u64) -> Self {
            LIVE.fetch_add(1, Ordering::SeqCst);
            Tracked(Box::new(v))
        }
    }
    impl Drop for Tracked {
        fn drop(&mut self) {
            LIVE.fetch_sub(1, Ordering::SeqCst);
        }
    }
    #[on_irqstack]
    fn consume(a: Tracked, b: Tracked, keep: bool) -> Option<Tracked> {
        drop(a);
        keep.then_some(b)
    }
    let kept = consume(Tracked::new(1), Tracked::new(2), true);
    assert_eq!(LIVE.load(Ordering::SeqCst), 1);
    drop(kept);
    assert!(consume(Tracked::new(3), Tracked::new(4), false).is_none());
    assert_eq!(LIVE.load(Ordering::SeqCst), 0);
    let r = std::panic::catch_unwind(|| {
        #[on_irqstack]
        fn boom(_a: Tracked) {
            panic!("drop on unwind");
        }
        boom(Tracked::new(5))
    });
    assert!(r.is_err());
    assert_eq!(LIVE.load(Ordering::SeqCst), 0);
}

/// Unsafe functions, foreign ABIs, visibility, doc comments and associated functions.
mod shapes {
    use irqstack::on_irqstack;

    /// # Safety
    /// `p` must be valid for reads.
    #[on_irqstack]
    pub unsafe fn read(p: *const u64) -> u64 {
        unsafe { *p }
    }

    #[on_irqstack]
    pub(crate) extern "C" fn c_abi(x: i32) -> i32 {
        x * 2
    }

    pub struct Dev;
    impl Dev {
        #[on_irqstack]
        pub fn assoc(x: u32) -> (u32, bool) {
            (x + 1, irqstack::irqstack_active())
        }
    }

    #[on_irqstack]
    pub fn unit() {}

    #[on_irqstack]
    pub fn pattern((a, b): (u8, u8), mut c: u16) -> u16 {
        c += a as u16 + b as u16;
        c
    }
}

#[test]
fn function_shapes() {
    let v = 9u64;
    // SAFETY: `&v` is valid for reads.
    assert_eq!(unsafe { shapes::read(&v) }, 9);
    assert_eq!(shapes::c_abi(21), 42);
    let f: extern "C" fn(i32) -> i32 = shapes::c_abi;
    assert_eq!(f(1), 2);
    assert_eq!(shapes::Dev::assoc(1), (2, true));
    shapes::unit();
    assert_eq!(shapes::pattern((1, 2), 3), 6);
}

/// `crate = path`: the facade under another name.
mod renamed {
    extern crate irqstack as my_irq;

    #[my_irq::on_irqstack(crate = my_irq)]
    pub fn through_renamed_facade(x: u8) -> (u8, bool) {
        (x.wrapping_add(1), my_irq::irqstack_active())
    }
}

#[test]
fn crate_path_override() {
    assert_eq!(renamed::through_renamed_facade(1), (2, true));
}

/// A diverging handler: `-> !` passes through the trampoline, and its panic through the switch.
#[test]
fn diverging_handler() {
    #[on_irqstack]
    fn fatal(code: u32) -> ! {
        assert!(irqstack::irqstack_active());
        std::panic::panic_any(code)
    }
    let err = std::panic::catch_unwind(|| fatal(7)).unwrap_err();
    assert_eq!(err.downcast_ref::<u32>(), Some(&7));
    assert!(!irqstack::irqstack_active());
}
