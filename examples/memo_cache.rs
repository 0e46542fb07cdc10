//! The book's central cache: many threads ask for overlapping keys, each key is computed once,
//! and a memory budget keeps the cache bounded.
//!
//! `cargo run --release --example memo_cache`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use num_bigint::BigUint;
use parkit::fib::fib;
use parkit::memo::MemoCache;

fn main() {
    let budget = 64 << 20;
    let cache: MemoCache<u64, Arc<BigUint>> = MemoCache::with_budget(budget)
        .with_weigher(|_, v: &Arc<BigUint>| v.bits().div_ceil(8) as usize);
    let computed = AtomicUsize::new(0);
    // 8 plain threads, each asking for the same 200 keys in a different order.
    let keys: Vec<u64> = (0..200).map(|i| 50_000 + i * 1_000).collect();
    let t = Instant::now();
    std::thread::scope(|s| {
        for w in 0..8usize {
            let (cache, keys, computed) = (&cache, &keys, &computed);
            s.spawn(move || {
                for i in 0..keys.len() {
                    let k = keys[(i * 7 + w * 31) % keys.len()];
                    let v = cache.get_or_compute(k, || {
                        computed.fetch_add(1, Ordering::Relaxed);
                        Arc::new(fib(k))
                    });
                    assert_eq!(v.bits(), fib(k).bits());
                }
            });
        }
    });
    let s = cache.stats();
    println!(
        "8 threads x {} lookups in {:.2} s: {} computations for {} distinct keys",
        keys.len(),
        t.elapsed().as_secs_f64(),
        computed.load(Ordering::Relaxed),
        keys.len()
    );
    println!(
        "hits {}, misses {}, evictions {}, entries {}, bytes {} (peak {}) of a {} MiB budget, hit rate {:.1}%",
        s.hits,
        s.misses,
        s.evictions,
        s.entries,
        s.bytes,
        s.peak_bytes,
        budget >> 20,
        100.0 * s.hit_rate()
    );

    // The same from rayon tasks: workers never wait on each other's cells (no deadlock), so a
    // racing key may be computed twice; the counter says how often.
    let cache: MemoCache<u64, Arc<BigUint>> = MemoCache::new();
    let t = Instant::now();
    rayon::scope(|sc| {
        for w in 0..64u64 {
            let cache = &cache;
            sc.spawn(move |_| {
                let k = 100_000 + (w % 8) * 10_000;
                let _ = cache.get_or_compute(k, || Arc::new(fib(k)));
            });
        }
    });
    let s = cache.stats();
    println!(
        "64 rayon tasks over 8 keys in {:.3} s: {} misses, {} duplicate computations, {} hits",
        t.elapsed().as_secs_f64(),
        s.misses,
        s.duplicate_computations,
        s.hits
    );
}
