//! Measures what the batch planner's cost model and the parallel thresholds rest on: the time
//! of one big addition, one product and one fresh pair at several sizes, and F(n) with and
//! without the parallel products.
//!
//! `cargo run --release --example calibrate`

use std::time::Instant;

use parkit::fib::{fib, fib_pair};

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
    println!(
        "\nF(n) on 1 thread vs the default pool ({} threads), median of 5, ms:",
        rayon::current_num_threads()
    );
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    for n in [100_000u64, 300_000, 1_000_000, 3_000_000, 10_000_000] {
        let seq = median(|| one.install(|| time(|| fib(n))), 5) / 1e6;
        let par = median(|| time(|| fib(n)), 5) / 1e6;
        println!("{n:>10}: {seq:>9.2} {par:>9.2}  x{:.2}", seq / par);
    }
}
