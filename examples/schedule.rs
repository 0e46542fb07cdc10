//! Mapping work onto workers: the same skewed batch of F(n) computations run in input order,
//! in plain `par_iter` order and largest-first, plus LPT groups for a static mapping.
//!
//! `cargo run --release --example schedule`

use std::time::Instant;

use parkit::fib::fib;
use parkit::schedule::{par_map_largest_first, partition_lpt};
use rayon::prelude::*;

/// num-bigint's cost of F(n) grows about as n^1.47.
fn cost(n: u64) -> f64 {
    (n as f64).powf(1.47)
}

fn main() {
    // A skewed mix: many small inputs and a few huge ones at the end, the worst case for a
    // scheduler that cuts the index range in halves.
    let mut ns: Vec<u64> = (0..400).map(|i| 20_000 + i * 37).collect();
    ns.extend([2_000_000, 1_500_000, 1_800_000]);
    let threads = rayon::current_num_threads();
    println!(
        "{} inputs, {} of them huge, on {threads} threads",
        ns.len(),
        3
    );

    let time = |label: &str, f: &dyn Fn() -> usize| {
        let mut best = f64::MAX;
        let mut bits = 0;
        for _ in 0..3 {
            let t = Instant::now();
            bits = f();
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!("{label:<28} {:>8.1} ms  (total bits {bits})", best * 1e3);
    };
    time("sequential", &|| {
        ns.iter().map(|&n| fib(n).bits() as usize).sum()
    });
    time("par_iter (index halves)", &|| {
        ns.par_iter().map(|&n| fib(n).bits() as usize).sum()
    });
    time("largest first", &|| {
        par_map_largest_first(&ns, |&n| cost(n), |&n| fib(n).bits() as usize)
            .into_iter()
            .sum()
    });

    let costs: Vec<f64> = ns.iter().map(|&n| cost(n)).collect();
    for k in [2, 4, 16] {
        let p = partition_lpt(&costs, k);
        println!(
            "LPT into {k:>2} groups: imbalance {:.3} (1.000 is perfect), group sizes {:?}",
            p.imbalance(),
            p.groups().iter().map(Vec::len).collect::<Vec<_>>()
        );
    }
}
