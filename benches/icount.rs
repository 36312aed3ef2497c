//! Instruction counts: each row of `benches/switch.rs` as a loop of `n` calls in a function of its
//! own, with an unmangled name (`icount_row_<row>`), so that callgrind can count exactly that
//! function (`--toggle-collect=icount_row_<row>`) and `objdump` can find its loop.
//!
//! `scripts/bench-icount.sh` builds this in the bench profile (release + debug info), runs every
//! row under callgrind with two values of `n` and prints instructions per call, minus the direct
//! call. Differencing two runs cancels everything that does not repeat per call.
//!
//! Usage: `icount <row> <n>`, `icount list`, or `icount pair <row a> <row b> [pairs]` (wall
//! clock, paired; see `paired`). Run without arguments (as `cargo bench` does), it runs every row
//! briefly and checks the results, so the binary is exercised wherever benches run.

use std::hint::black_box;

#[path = "common/rows.rs"]
mod rows;

// Every `icount_row_*` is unmangled so that callgrind and objdump can name it; the names carry a
// prefix no other symbol uses. The body of each is the same loop around a different call.

/// Defines one row: `pub fn $name(n, extra args) -> u64`, a loop of `n` iterations whose result
/// is the last `$call` (evaluated with the loop index bound to `$i`), both behind `black_box`.
macro_rules! row {
    ($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*) |$i:ident| $call:expr) => {
        $(#[$doc])*
        #[unsafe(no_mangle)]
        #[inline(never)]
        pub fn $name(n: u64 $(, $arg: $ty)*) -> u64 {
            let mut last = 0;
            for $i in 0..n {
                last = black_box($call);
            }
            last
        }
    };
}

row!(
    /// Row 1: direct call.
    icount_row_direct() |i| rows::direct(black_box(i))
);
row!(
    /// Row 2: `#[on_irqstack]`, switching.
    icount_row_switched() |i| rows::switched(black_box(i))
);

/// Row 3: `#[on_irqstack]` nested: `main` calls this on the IRQ stack, so each call runs in
/// place.
#[unsafe(no_mangle)]
#[inline(never)]
pub fn icount_row_nested(n: u64) -> u64 {
    // Also keeps the linker from folding this function into the identical `icount_row_switched`
    // (one check per run: the two-run difference cancels it).
    assert!(irqstack::irqstack_active());
    let mut last = 0;
    for i in 0..n {
        last = black_box(rows::switched(black_box(i)));
    }
    last
}

row!(
    /// Row 9: an out-of-line handler (`#[inline(never)]`), switching.
    icount_row_outline() |i| rows::switched_outline(black_box(i))
);
row!(
    /// Row 10: the same, through a function pointer.
    icount_row_fnptr() |i| black_box(rows::OUTLINE)(black_box(i))
);
row!(
    /// Row 11: an `extern "C"` handler through a function pointer, as the demo's signal
    /// handlers are called.
    icount_row_extern_c() |i| black_box(rows::EXTERN_C)(black_box(i))
);

row!(
    /// Row 14: a plain function through a function pointer, the same loop as rows 10 and 11:
    /// their baseline.
    icount_row_direct_fnptr() |i| black_box(rows::DIRECT)(black_box(i))
);

/// Row 12: the out-of-line handler nested (called on the IRQ stack: runs in place); its
/// baseline is row 13, a direct call made on the IRQ stack too.
#[unsafe(no_mangle)]
#[inline(never)]
pub fn icount_row_nested_outline(n: u64) -> u64 {
    assert!(irqstack::irqstack_active());
    let mut last = 0;
    for i in 0..n {
        last = black_box(rows::switched_outline(black_box(i)));
    }
    last
}

/// Row 13: a direct call of an out-of-line function, made on the IRQ stack (the baseline of
/// row 12).
#[unsafe(no_mangle)]
#[inline(never)]
pub fn icount_row_nested_direct(n: u64) -> u64 {
    assert!(irqstack::irqstack_active());
    let mut last = 0;
    for i in 0..n {
        last = black_box(rows::direct(black_box(i)));
    }
    last
}

row!(
    /// Row 4: `run_on_irqstack` with a closure.
    icount_row_closure() |i| rows::closure(black_box(i))
);
row!(
    /// Row 5: `psm::on_stack` on a pre-allocated stack.
    icount_row_psm(stack: &rows::PsmStack) |i| stack.call(black_box(i))
);
row!(
    /// Row 6: `stacker::maybe_grow`, no switch needed.
    icount_row_stacker() |i| rows::stacker(black_box(i))
);
row!(
    /// Row 7 baseline: six arguments, direct.
    icount_row_direct6() |i| {
        let a = black_box(i);
        rows::direct6(a, a, a, a, a, a)
    }
);
row!(
    /// Row 7: six arguments, switching (`tos` passed on the stack).
    icount_row_switched6() |i| {
        let a = black_box(i);
        rows::switched6(a, a, a, a, a, a)
    }
);
row!(
    /// Row 8 baseline: a 40-byte struct by value, direct.
    icount_row_direct_struct() |i| rows::direct_struct(rows::Frame40::splat(i))
);
row!(
    /// Row 8: a 40-byte struct by value, switching (argument block).
    icount_row_switched_struct() |i| rows::switched_struct(rows::Frame40::splat(i))
);

/// Row names, in table order.
const ROWS: &[&str] = &[
    "direct",
    "switched",
    "nested",
    "closure",
    "psm",
    "stacker",
    "direct6",
    "switched6",
    "direct_struct",
    "switched_struct",
    "outline",
    "fnptr",
    "extern_c",
    "nested_outline",
    "nested_direct",
    "direct_fnptr",
];

/// Runs `n` calls of `row`; returns the last result.
fn run(row: &str, n: u64, psm_stack: &rows::PsmStack) -> u64 {
    match row {
        "direct" => icount_row_direct(n),
        "switched" => icount_row_switched(n),
        "nested" => irqstack::run_on_irqstack(|| icount_row_nested(n)),
        "closure" => icount_row_closure(n),
        "psm" => icount_row_psm(n, psm_stack),
        "stacker" => icount_row_stacker(n),
        "direct6" => icount_row_direct6(n),
        "switched6" => icount_row_switched6(n),
        "direct_struct" => icount_row_direct_struct(n),
        "switched_struct" => icount_row_switched_struct(n),
        "outline" => icount_row_outline(n),
        "fnptr" => icount_row_fnptr(n),
        "extern_c" => icount_row_extern_c(n),
        "nested_outline" => irqstack::run_on_irqstack(|| icount_row_nested_outline(n)),
        "nested_direct" => irqstack::run_on_irqstack(|| icount_row_nested_direct(n)),
        "direct_fnptr" => icount_row_direct_fnptr(n),
        other => panic!("unknown row {other:?}; rows: {ROWS:?}"),
    }
}

/// Wall-clock time of rows `a` and `b`, paired: `pairs` rounds, each timing a batch of `a` then a
/// batch of `b` back to back, so that both see the same machine load. Prints the median ns per
/// call of each and the median of the per-round ratios `a / b`, which drifting load (other builds
/// on a small machine) moves much less than two separately measured medians.
fn paired(a: &str, b: &str, pairs: usize, psm_stack: &rows::PsmStack) {
    const BATCH: u64 = 20_000;
    let time = |row: &str| {
        let start = std::time::Instant::now();
        black_box(run(row, BATCH, psm_stack));
        start.elapsed().as_secs_f64() * 1e9 / BATCH as f64
    };
    // Warm up both (caches, branch predictors, the CPU's clock).
    for _ in 0..50 {
        time(a);
        time(b);
    }
    let (mut ta, mut tb, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..pairs {
        // Alternate which row goes first, so that neither always follows the other.
        let (x, y) = if i % 2 == 0 {
            let x = time(a);
            (x, time(b))
        } else {
            let y = time(b);
            (time(a), y)
        };
        ta.push(x);
        tb.push(y);
        ratio.push(x / y);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (ma, mb) = (median(&mut ta), median(&mut tb));
    ratio.sort_by(f64::total_cmp);
    let q = |f: f64| ratio[((ratio.len() - 1) as f64 * f) as usize];
    println!(
        "{a} {ma:.3} ns/call, {b} {mb:.3} ns/call; {a}/{b}: median {:.2} (quartiles {:.2}..{:.2}, {pairs} pairs of {BATCH} calls)",
        q(0.5),
        q(0.25),
        q(0.75),
    );
}

fn main() {
    // Everything that happens once (mapping the IRQ stack, stacker's lazy stack-limit lookup,
    // the psm stack's allocation) happens here, outside the counted functions.
    irqstack::prepare_irq_stack().expect("mmap of the IRQ stack failed");
    black_box(stacker::remaining_stack());
    let psm_stack = rows::PsmStack::new(irqstack::DEFAULT_IRQ_STACK_SIZE);

    // `cargo bench` adds `--bench`; it means nothing here.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.as_slice() {
        [cmd] if cmd == "list" => {
            for row in ROWS {
                println!("{row}");
            }
        }
        [cmd, a, b, rest @ ..]
            if cmd == "pair" && ROWS.contains(&a.as_str()) && ROWS.contains(&b.as_str()) =>
        {
            let pairs = rest
                .first()
                .map_or(201, |p| p.parse().expect("pairs must be a number"));
            paired(a, b, pairs, &psm_stack);
        }
        [row, n] if ROWS.contains(&row.as_str()) => {
            let n: u64 = n.parse().expect("n must be a number");
            println!("{row} {n} {}", run(row, n, &psm_stack));
        }
        _ => {
            // `cargo bench` (it passes `--bench`): a quick check of every row.
            let n = 1000;
            for row in ROWS {
                let last = run(row, n, &psm_stack);
                let expect = match *row {
                    "direct6" | "switched6" => (n - 1) * 6 + 1,
                    "direct_struct" | "switched_struct" => (n - 1) * 5 + 1,
                    _ => n,
                };
                assert_eq!(last, expect, "row {row}");
            }
            println!(
                "icount: {} rows ok; for instruction counts run scripts/bench-icount.sh",
                ROWS.len()
            );
        }
    }
}
