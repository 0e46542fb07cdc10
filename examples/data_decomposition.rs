//! Data decomposition with `parkit::decompose`: a map/reduce over a slice (total decimal digits
//! of n² for 5M numbers, a few nanoseconds an item) and over a range (primes below 1M by trial
//! division, a cost that grows along the range), under each `Granularity`, with times.
//!
//! `cargo run --release --example data_decomposition`

use std::time::{Duration, Instant};

use parkit::decompose::{GranularityExt, par_range};
use parkit::granularity::Granularity;
use rayon::prelude::*;

/// The best wall time of `reps` runs (the least disturbed by other work), and the last result.
fn time<T>(reps: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut out = None;
    let best = (0..reps)
        .map(|_| {
            let t = Instant::now();
            out = Some(f());
            t.elapsed()
        })
        .min()
        .expect("at least one run");
    (best, out.unwrap())
}

fn digits(n: u64) -> u32 {
    n.checked_ilog10().map_or(1, |d| d + 1)
}

fn is_prime(n: u64) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

fn policies(threads: usize) -> Vec<Granularity> {
    vec![
        Granularity::Sequential,
        Granularity::Auto,
        Granularity::MinLen(1024),
        Granularity::ChunkSize(1),
        Granularity::ChunkSize(64),
        Granularity::ChunkSize(4096),
        Granularity::Chunks(threads),
        Granularity::Chunks(4 * threads),
        Granularity::tuned(),
        Granularity::Tuned(Duration::from_micros(500)),
    ]
}

fn report(g: Granularity, t: Duration, base: Duration) {
    println!(
        "  {:<14} {:>9.2} ms   x{:.2}",
        g.to_string(),
        t.as_secs_f64() * 1e3,
        base.as_secs_f64() / t.as_secs_f64()
    );
}

fn main() {
    let threads = rayon::current_num_threads();
    println!("data decomposition on {threads} threads (best of 5 runs; x = speed-up over seq)\n");

    let numbers: Vec<u64> = (0..5_000_000).collect();
    let expect: u64 = numbers.iter().map(|&n| u64::from(digits(n * n))).sum();
    println!(
        "slice: total decimal digits of n^2 for n in 0..{}",
        numbers.len()
    );
    let mut base = Duration::ZERO;
    for g in policies(threads) {
        let (t, total) = time(5, || {
            numbers
                .par_iter()
                .with_granularity(g)
                .map(|&n| u64::from(digits(n * n)))
                .reduce(|| 0, |a, b| a + b)
        });
        assert_eq!(total, expect, "{g}");
        if g == Granularity::Sequential {
            base = t;
        }
        report(g, t, base);
    }
    println!("  = {expect} digits");

    let end = 1_000_000;
    println!("\nrange: primes below {end} by trial division");
    let mut count = 0;
    for g in policies(threads) {
        let (t, primes) = time(5, || {
            par_range(0..end)
                .with_granularity(g)
                .map(|n| u32::from(is_prime(n)))
                .reduce(|| 0, |a, b| a + b)
        });
        if g == Granularity::Sequential {
            base = t;
            count = primes;
        }
        assert_eq!(primes, count, "{g}");
        report(g, t, base);
    }
    println!("  = {count} primes");
}
