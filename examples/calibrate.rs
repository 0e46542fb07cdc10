//! Measures what the batch planner's cost model and the parallel thresholds rest on: the time
//! of one big addition, one product and one fresh pair at several sizes, then a sweep of each
//! parallel threshold ([`parkit::fib::Thresholds`]) over the work it governs.
//!
//! `cargo run --release --example calibrate`

use std::time::Instant;

use parkit::fib::{Thresholds, fib, fib_pair, set_thresholds, thresholds};

fn median(mut f: impl FnMut() -> f64, reps: usize) -> f64 {
    let mut v: Vec<f64> = (0..reps).map(|_| f()).collect();
    v.sort_by(f64::total_cmp);
    v[reps / 2]
}

fn time<T>(f: impl FnOnce() -> T) -> f64 {
    let t = Instant::now();
    std::hint::black_box(f());
    t.elapsed().as_secs_f64() * 1e9
}

fn main() {
    println!(
        "{:>10} {:>8} {:>12} {:>12} {:>12} {:>9} {:>9}",
        "n", "words", "add ns", "mul ns", "pair ns", "add/w", "mul/w^1.47"
    );
    for n in [2_000u64, 10_000, 100_000, 1_000_000, 10_000_000] {
        let (a, b) = fib_pair(n);
        let words = a.bits().div_ceil(64) as f64;
        let reps = if n >= 1_000_000 { 5 } else { 41 };
        let add = median(|| time(|| &a + &b), reps);
        let mul = median(|| time(|| &a * &b), reps);
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let pair = median(|| one.install(|| time(|| fib_pair(n))), reps);
        println!(
            "{n:>10} {words:>8} {add:>12.0} {mul:>12.0} {pair:>12.0} {:>9.3} {:>9.3}",
            add / words,
            mul / words.powf(1.47)
        );
    }
    sweep();
}

/// Median time in ms of `f` over `reps` runs.
fn ms(reps: usize, mut f: impl FnMut()) -> f64 {
    median(|| time(&mut f), reps) / 1e6
}

/// Sweeps each parallel threshold on the default pool: for each candidate, the median time of
/// the work it governs. The best column per row is where the default should sit.
fn sweep() {
    let all = rayon::ThreadPoolBuilder::new().build().unwrap();
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let base = thresholds();
    let never = u64::MAX;
    println!("\n{} threads; medians in ms", all.current_num_threads());

    let joins = [
        1u64 << 12,
        1 << 14,
        1 << 16,
        1 << 17,
        1 << 18,
        1 << 20,
        never,
    ];
    header("join_bits", &joins);
    println!("  1 thread");
    for n in [30_000u64, 100_000, 300_000, 1_000_000] {
        let reps = if n >= 1_000_000 { 21 } else { 101 };
        print!("{:>22}", format!("fib({n})"));
        for j in joins {
            set_thresholds(Thresholds {
                join_bits: j,
                split_bits: never,
            });
            print!(" {:>8.3}", all.install(|| ms(reps, || drop(fib(n)))));
        }
        println!("  {:>8.3}", one.install(|| ms(reps, || drop(fib(n)))));
    }

    let splits = [1u64 << 17, 1 << 18, 1 << 19, 1 << 20, 1 << 21, never];
    header("split_bits", &splits);
    println!();
    for n in [1_000_000u64, 3_000_000, 10_000_000] {
        let reps = if n >= 10_000_000 { 5 } else { 11 };
        print!("{:>22}", format!("fib({n})"));
        for j in splits {
            set_thresholds(Thresholds {
                split_bits: j,
                ..base
            });
            print!(" {:>8.2}", all.install(|| ms(reps, || drop(fib(n)))));
        }
        println!();
    }

    set_thresholds(base);
}

/// Prints a row of threshold candidates: `2^k` each, `never` for `u64::MAX`.
fn header(name: &str, candidates: &[u64]) {
    print!("{:>22}", format!("{name}:"));
    for &j in candidates {
        let label = if j == u64::MAX {
            "never".into()
        } else {
            format!("2^{}", j.ilog2())
        };
        print!(" {label:>8}");
    }
}
