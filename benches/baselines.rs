//! The book's designs as baselines: chapter 4's shared queue with a Condvar and one thread per
//! worker, and a thread per input, against rayon and the batch planner, on one batch of F(n).
//!
//! `cargo bench --bench baselines`

use criterion::{Criterion, criterion_group, criterion_main};
use parkit::baseline::{condvar_map, thread_per_input};
use parkit::fib::{Fibonacci, fib};
use rayon::prelude::*;

fn batch(c: &mut Criterion) {
    // 300 inputs spread over 10^4..10^5 with a dense stretch near 5*10^4: the kind of mixed
    // batch the book's "many users" service sees.
    let ns: Vec<u64> = (0..200u64)
        .map(|i| 10_000 + (i * 7_919) % 90_000)
        .chain(50_000..50_100)
        .collect();
    let threads = rayon::current_num_threads();
    let want: u64 = ns.iter().map(|&n| fib(n).bits()).sum();
    let mut g = c.benchmark_group("baselines/300-inputs-1e4-1e5");
    g.sample_size(10);
    g.bench_function("condvar-queue", |b| {
        b.iter(|| {
            let r = condvar_map(ns.clone(), threads, |n| fib(n).bits());
            assert_eq!(r.iter().map(|(_, x)| x).sum::<u64>(), want);
        });
    });
    g.bench_function("thread-per-input", |b| {
        b.iter(|| {
            assert_eq!(
                thread_per_input(ns.clone(), |n| fib(n).bits())
                    .iter()
                    .sum::<u64>(),
                want
            )
        });
    });
    g.bench_function("rayon-par-iter", |b| {
        b.iter(|| assert_eq!(ns.par_iter().map(|&n| fib(n).bits()).sum::<u64>(), want));
    });
    g.bench_function("batch-planner-cold", |b| {
        b.iter_with_setup(
            || Fibonacci::builder().build().unwrap(),
            |e| {
                assert_eq!(
                    e.batch_map(&ns, |_, v: &num_bigint::BigUint| v.bits())
                        .iter()
                        .sum::<u64>(),
                    want
                )
            },
        );
    });
    g.finish();
}

criterion_group!(benches, batch);
criterion_main!(benches);
