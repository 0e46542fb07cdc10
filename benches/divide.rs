//! Divide-and-conquer benchmarks: `divide` against the same recursion written by hand over
//! `rayon::join` at the same cutoff, and against sequential code, with a cutoff sweep. Two
//! workloads: an out-of-place merge sort of 2M `u32` and the naive Fibonacci tree, fib(32).
//!
//! `cargo bench --bench divide`; `cargo test --benches` runs each once.
//! Medians are in `target/criterion/divide_<workload>/<impl>/<cutoff>/new/estimates.json`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};
use parkit::divide::divide;
use parkit::granularity::Granularity;

fn merge(a: Vec<u32>, b: Vec<u32>) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if b[j] < a[i] {
            out.push(b[j]);
            j += 1;
        } else {
            out.push(a[i]);
            i += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

fn sort_leaf(s: &[u32]) -> Vec<u32> {
    let mut v = s.to_vec();
    v.sort_unstable();
    v
}

fn sort_by_hand(s: &[u32], cutoff: usize) -> Vec<u32> {
    if s.len() <= cutoff {
        sort_leaf(s)
    } else {
        let (a, b) = s.split_at(s.len() / 2);
        let (a, b) = rayon::join(|| sort_by_hand(a, cutoff), || sort_by_hand(b, cutoff));
        merge(a, b)
    }
}

fn sort_by_divide(s: &[u32], g: Granularity) -> Vec<u32> {
    divide(
        s,
        g,
        |s| s.len(),
        |s| s.split_at(s.len() / 2),
        sort_leaf,
        merge,
    )
}

fn fib_seq(n: u32) -> u64 {
    if n < 2 {
        n.into()
    } else {
        fib_seq(n - 1) + fib_seq(n - 2)
    }
}

fn fib_by_hand(n: u32, cutoff: u32) -> u64 {
    if n <= cutoff {
        fib_seq(n)
    } else {
        let (a, b) = rayon::join(|| fib_by_hand(n - 1, cutoff), || fib_by_hand(n - 2, cutoff));
        a + b
    }
}

fn fib_by_divide(n: u32, g: Granularity) -> u64 {
    divide(
        n,
        g,
        |&n| n as usize,
        |n| (n - 1, n - 2),
        fib_seq,
        |a, b| a + b,
    )
}

fn configure(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
}

fn merge_sort(c: &mut Criterion) {
    let len = 2_000_000usize;
    let data: Vec<u32> = (0..len as u64)
        .map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32)
        .collect();
    let mut g = c.benchmark_group("divide_mergesort_2M");
    configure(&mut g);
    g.bench_function("sequential", |b| b.iter(|| sort_leaf(black_box(&data))));
    for cutoff in [4_096, 16_384, 65_536, 262_144] {
        g.bench_function(BenchmarkId::new("hand_join", cutoff), |b| {
            b.iter(|| sort_by_hand(black_box(&data), cutoff));
        });
        g.bench_function(BenchmarkId::new("divide", cutoff), |b| {
            b.iter(|| sort_by_divide(black_box(&data), Granularity::MinLen(cutoff)));
        });
    }
    for policy in [Granularity::Auto, Granularity::tuned()] {
        g.bench_function(BenchmarkId::new("divide", policy), |b| {
            b.iter(|| sort_by_divide(black_box(&data), policy));
        });
    }
    g.finish();
}

fn fibonacci(c: &mut Criterion) {
    let n = 32;
    let mut g = c.benchmark_group("divide_fib32");
    configure(&mut g);
    g.bench_function("sequential", |b| b.iter(|| fib_seq(black_box(n))));
    for cutoff in [10u32, 15, 20, 25] {
        g.bench_function(BenchmarkId::new("hand_join", cutoff), |b| {
            b.iter(|| fib_by_hand(black_box(n), cutoff));
        });
        g.bench_function(BenchmarkId::new("divide", cutoff), |b| {
            b.iter(|| fib_by_divide(black_box(n), Granularity::MinLen(cutoff as usize)));
        });
    }
    g.finish();
}

criterion_group!(benches, merge_sort, fibonacci);
criterion_main!(benches);
