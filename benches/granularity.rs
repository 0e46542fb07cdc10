//! Granularity benchmarks: a map over items whose cost is a calibrated spin (about 50 ns, 1 µs,
//! 50 µs and 1 ms per item, about 40 ms of work per case) under each `Granularity`, with a
//! `ChunkSize` sweep from 1 to 4096. What it shows: how far `Tuned` lands from the best fixed
//! choice for each cost.
//!
//! `cargo bench --bench granularity` (a few minutes); `cargo test --benches` runs each once.
//! Medians are in `target/criterion/granularity_<cost>/<policy>/new/estimates.json`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};
use parkit::decompose::GranularityExt;
use parkit::granularity::Granularity;
use rayon::prelude::*;

#[path = "support/spin.rs"]
mod spin;
use spin::{spin, steps_per_ns};

fn granularities(threads: usize) -> Vec<Granularity> {
    let mut all = vec![
        Granularity::Auto,
        Granularity::Sequential,
        Granularity::MinLen(256),
        Granularity::Chunks(threads),
        Granularity::Chunks(4 * threads),
        Granularity::tuned(),
    ];
    all.extend([1, 4, 16, 64, 256, 1024, 4096].map(Granularity::ChunkSize));
    all
}

fn map_by_cost(c: &mut Criterion) {
    let threads = rayon::current_num_threads();
    let rate = steps_per_ns();
    // (label, cost per item, items): about 40 ms of work each.
    let costs = [
        ("50ns", Duration::from_nanos(50), 800_000),
        ("1us", Duration::from_micros(1), 40_000),
        ("50us", Duration::from_micros(50), 800),
        ("1ms", Duration::from_millis(1), 40),
    ];
    for (label, cost, items) in costs {
        let steps = (cost.as_nanos() as f64 * rate).round() as u64;
        let seeds: Vec<u64> = (0..items).collect();
        let mut g = c.benchmark_group(format!("granularity_{label}"));
        g.sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(1));
        for policy in granularities(threads) {
            g.bench_function(BenchmarkId::from_parameter(policy), |b| {
                b.iter(|| {
                    black_box(&seeds)
                        .par_iter()
                        .map(|&s| spin(steps, s))
                        .with_granularity(policy)
                        .collect::<Vec<_>>()
                });
            });
        }
        g.finish();
    }
}

criterion_group!(benches, map_by_cost);
criterion_main!(benches);
