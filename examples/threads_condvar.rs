//! Chapter 4's Fibonacci: inputs in a shared queue guarded by a Mutex and a Condvar, worker
//! threads taking them until the queue is closed, written so that no item is lost or repeated
//! and every worker shuts down. Prints which worker computed what.
//!
//! `cargo run --release --example threads_condvar [WORKERS] [N...]`

use std::time::Instant;

use parkit::baseline::condvar_map;
use parkit::fib::fib;

fn main() {
    let mut args = std::env::args().skip(1);
    let workers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(4);
    let mut ns: Vec<u64> = args.filter_map(|a| a.parse().ok()).collect();
    if ns.is_empty() {
        ns = vec![3, 1000, 100_000, 10, 50_000, 300_000, 42, 1_000_000];
    }
    let t = Instant::now();
    let out = condvar_map(ns.clone(), workers, |n| {
        (fib(n).to_string().len(), fib(n) % 1000u32)
    });
    let elapsed = t.elapsed();
    for (n, (worker, (digits, last3))) in ns.iter().zip(&out) {
        println!("worker {worker}: F({n}) has {digits} digits, ends in ...{last3:03}");
    }
    println!(
        "{} inputs on {workers} threads in {:.1} ms",
        ns.len(),
        elapsed.as_secs_f64() * 1e3
    );
}
