//! Fibonacci benchmarks: single F(n) from 10^3 to 10^7, and the batch planner's reuse against
//! independent computations.
//!
//! `cargo bench --bench fib`; `cargo test --benches` runs each once as a smoke test.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use parkit::fib::{Fibonacci, fib};
use parkit::granularity::Granularity;
use rayon::prelude::*;

fn single(c: &mut Criterion) {
    let mut g = c.benchmark_group("fib/single");
    for exp in 3..=7u32 {
        let n = 10u64.pow(exp);
        if exp >= 6 {
            g.sample_size(10);
        }
        g.bench_with_input(
            BenchmarkId::from_parameter(format!("1e{exp}")),
            &n,
            |b, &n| {
                b.iter(|| fib(black_box(n)));
            },
        );
    }
    g.finish();
}

fn single_threads(c: &mut Criterion) {
    // The same F(10^6) on a 1-thread pool: what the parallel products buy.
    let mut g = c.benchmark_group("fib/threads");
    g.sample_size(10);
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        g.bench_function(BenchmarkId::new("1e6", threads), |b| {
            b.iter(|| pool.install(|| fib(black_box(1_000_000))));
        });
    }
    g.finish();
}

fn batch_reuse(c: &mut Criterion) {
    // 2,000 consecutive n near 10^5: the planner (cold cache each time) against 2,000
    // independent fast-doubling computations spread over the same cores.
    let ns: Vec<u64> = (100_000..102_000).collect();
    let mut g = c.benchmark_group("fib/batch-2000-near-1e5");
    g.sample_size(10);
    g.bench_function("independent", |b| {
        b.iter(|| ns.par_iter().map(|&n| fib(n)).collect::<Vec<_>>());
    });
    g.bench_function("planner-cold", |b| {
        b.iter_with_setup(
            || Fibonacci::builder().build().unwrap(),
            |e| e.batch(black_box(&ns)),
        );
    });
    let warm = Fibonacci::builder().build().unwrap();
    let _ = warm.batch(&ns);
    g.bench_function("planner-warm", |b| b.iter(|| warm.batch(black_box(&ns))));
    g.finish();
}

fn batch_granularity(c: &mut Criterion) {
    // One Fibonacci batch under each Granularity: 5,000 inputs in 1..=200,000 (a spread of
    // sizes), and a skewed mix of three huge inputs among 3,000 small ones.
    let spread: Vec<u64> = (0..5_000u64)
        .map(|i| 1 + (i * 7_919 * 13) % 200_000)
        .collect();
    let mut skewed: Vec<u64> = (0..3_000u64).map(|i| 1_000 + i).collect();
    skewed.extend([1_500_000, 1_200_000, 1_000_000]);
    let policies = [
        "auto",
        "tuned",
        "seq",
        "min:64",
        "chunks:2",
        "chunks:8",
        "chunk:1",
        "chunk:16",
        "chunk:256",
        "chunk:4096",
    ];
    for (name, ns) in [("spread-5000", &spread), ("skewed", &skewed)] {
        let mut g = c.benchmark_group(format!("fib/batch-granularity/{name}"));
        g.sample_size(10);
        for p in policies {
            let granularity: Granularity = p.parse().unwrap();
            g.bench_function(p, |b| {
                b.iter_with_setup(
                    || {
                        Fibonacci::builder()
                            .granularity(granularity)
                            .build()
                            .unwrap()
                    },
                    |e| e.batch_map(black_box(ns), |_, v: &num_bigint::BigUint| v.bits()),
                );
            });
        }
        g.finish();
    }
}

criterion_group!(
    benches,
    single,
    single_threads,
    batch_reuse,
    batch_granularity
);
criterion_main!(benches);
