//! Pipeline throughput by worker counts and queue capacities, against the same three stages
//! hand-written with crossbeam-channel (threads, bounded queues, reorder by index).
//!
//! `cargo bench --bench pipeline`

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use parkit::pipeline::Pipeline;

const ITEMS: u64 = 50_000;

/// About a microsecond of arithmetic.
fn work(x: u64) -> u64 {
    let mut h = x;
    for _ in 0..200 {
        h = black_box(
            h.wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407),
        );
    }
    h
}

fn parkit(workers: usize, cap: usize) -> u64 {
    Pipeline::from(0..ITEMS)
        .stage("a", workers, work)
        .capacity(cap)
        .stage("b", workers, work)
        .capacity(cap)
        .stage("c", 1, |x: u64| x >> 3)
        .capacity(cap)
        .collect()
        .unwrap()
        .into_iter()
        .fold(0, u64::wrapping_add)
}

/// The same pipeline by hand: each stage's workers on their own threads, bounded channels,
/// items tagged with their index and put back in order at the end.
fn by_hand(workers: usize, cap: usize) -> u64 {
    let (tx0, rx0) = crossbeam_channel::bounded::<(u64, u64)>(cap);
    let (tx1, rx1) = crossbeam_channel::bounded::<(u64, u64)>(cap);
    let (tx2, rx2) = crossbeam_channel::bounded::<(u64, u64)>(cap);
    let (tx3, rx3) = crossbeam_channel::bounded::<(u64, u64)>(cap);
    std::thread::scope(|s| {
        s.spawn(move || (0..ITEMS).for_each(|i| tx0.send((i, i)).unwrap()));
        for _ in 0..workers {
            let (rx, tx) = (rx0.clone(), tx1.clone());
            s.spawn(move || rx.iter().for_each(|(i, x)| tx.send((i, work(x))).unwrap()));
            let (rx, tx) = (rx1.clone(), tx2.clone());
            s.spawn(move || rx.iter().for_each(|(i, x)| tx.send((i, work(x))).unwrap()));
        }
        drop((rx0, tx1, rx1, tx2));
        s.spawn(move || rx2.iter().for_each(|(i, x)| tx3.send((i, x >> 3)).unwrap()));
        let mut pending = BTreeMap::new();
        let (mut next, mut acc) = (0u64, 0u64);
        for (i, x) in rx3.iter() {
            pending.insert(i, x);
            while let Some(x) = pending.remove(&next) {
                acc = acc.wrapping_add(x);
                next += 1;
            }
        }
        assert_eq!(next, ITEMS);
        acc
    })
}

fn throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline/3-stages-50k-x-1us");
    g.sample_size(10).throughput(Throughput::Elements(ITEMS));
    let want = by_hand(1, 16);
    for workers in [1usize, 2, 4] {
        for cap in [1usize, 16, 256] {
            let id = format!("w{workers}-cap{cap}");
            g.bench_function(BenchmarkId::new("parkit", &id), |b| {
                b.iter(|| assert_eq!(parkit(workers, cap), want));
            });
            g.bench_function(BenchmarkId::new("crossbeam-by-hand", &id), |b| {
                b.iter(|| assert_eq!(by_hand(workers, cap), want));
            });
        }
    }
    g.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
