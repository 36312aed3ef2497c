//! Wall-clock cost of one call: direct, `#[on_irqstack]` (switched and nested), the closure
//! form, `psm::on_stack`, `stacker::maybe_grow`, a six-argument handler and a handler taking a
//! 40-byte struct by value. Every row computes `x.wrapping_add(1)` with `x` and the result behind
//! `black_box`, in the same run, so the rows can be compared with each other.
//!
//! Run: `cargo bench -p irqstack-bench --bench switch` (about 30 s). `scripts/bench-criterion.sh` runs it and prints
//! the medians as a table. Wall-clock numbers on a shared 2-core machine are noisy; the
//! instruction counts of `benches/icount.rs` are the stable measure.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

#[path = "common/rows.rs"]
mod rows;

#[path = "common/alternatives.rs"]
mod alternatives;

fn calls(c: &mut Criterion) {
    // Create the IRQ stack now, not inside the first measured call.
    irqstack::prepare_irq_stack().expect("mmap of the IRQ stack failed");
    let psm_stack = rows::PsmStack::new(irqstack::DEFAULT_IRQ_STACK_SIZE);

    let mut g = c.benchmark_group("call");
    let x = 41u64;

    g.bench_function("1_direct", |b| b.iter(|| rows::direct(black_box(x))));
    g.bench_function("2_switched", |b| b.iter(|| rows::switched(black_box(x))));
    g.bench_function("3_nested_in_place", |b| {
        // The whole timed loop runs on the IRQ stack, so every call finds it in use and runs in
        // place. Only the loop is on the IRQ stack; criterion's bookkeeping is not.
        b.iter_custom(|iters| {
            irqstack::run_on_irqstack(|| {
                assert!(irqstack::irqstack_active());
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(rows::switched(black_box(x)));
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("4_run_on_irqstack", |b| {
        b.iter(|| rows::closure(black_box(x)))
    });
    g.bench_function("5_psm_on_stack", |b| {
        b.iter(|| psm_stack.call(black_box(x)))
    });
    g.bench_function("6_stacker_maybe_grow", |b| {
        b.iter(|| rows::stacker(black_box(x)))
    });
    // Both six-argument rows, each argument behind its own `black_box`.
    macro_rules! six {
        ($f:path) => {
            |b: &mut criterion::Bencher<'_>| {
                b.iter(|| {
                    let a = || black_box(x);
                    $f(a(), a(), a(), a(), a(), a())
                })
            }
        };
    }
    g.bench_function("7_direct_6_args", six!(rows::direct6));
    g.bench_function("7_switched_6_args", six!(rows::switched6));
    g.bench_function("8_direct_struct40", |b| {
        b.iter(|| rows::direct_struct(rows::Frame40::splat(x)))
    });
    g.bench_function("8_switched_struct40", |b| {
        b.iter(|| rows::switched_struct(rows::Frame40::splat(x)))
    });
    // The README's comparison table: another library's stack switch, and signals.
    let mut coro_stack = alternatives::CoroStack::new(irqstack::DEFAULT_IRQ_STACK_SIZE);
    // Issue 15: handlers where they really live, out of line and behind a function pointer.
    g.bench_function("10_outline_switched", |b| {
        b.iter(|| rows::switched_outline(black_box(x)))
    });
    g.bench_function("10_fnptr_switched", |b| {
        b.iter(|| black_box(rows::OUTLINE)(black_box(x)))
    });
    g.bench_function("10_extern_c_switched", |b| {
        b.iter(|| black_box(rows::EXTERN_C)(black_box(x)))
    });
    g.bench_function("10_fnptr_direct", |b| {
        b.iter(|| black_box(rows::DIRECT)(black_box(x)))
    });
    g.bench_function("9a_corosensei_on_stack", |b| {
        b.iter(|| coro_stack.call(black_box(x)))
    });
    let signals = alternatives::Signals::install(irqstack::DEFAULT_IRQ_STACK_SIZE);
    g.bench_function("9b_signal_sigaltstack", |b| {
        b.iter(|| signals.raise(alternatives::Signals::ALTSTACK, black_box(x)))
    });
    g.bench_function("9c_signal_on_irqstack", |b| {
        b.iter(|| signals.raise(alternatives::Signals::IRQSTACK, black_box(x)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    // Short runs: thirteen rows in about 40 s. CI only builds this (`cargo bench -p irqstack-bench --no-run`).
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = calls
}
criterion_main!(benches);
