//! Divide and conquer with `parkit::divide`: a merge sort, a tree sum and the naive Fibonacci
//! recursion, each at several granularities against sequential code, with times.
//!
//! `cargo run --release --example divide_and_conquer`

use std::hint::black_box;
use std::time::{Duration, Instant};

use parkit::divide::divide;
use parkit::granularity::Granularity;

/// The best wall time of `reps` runs (the least disturbed by other work), and the last result.
fn time<T>(reps: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut out = None;
    let best = (0..reps)
        .map(|_| {
            let t = Instant::now();
            out = Some(black_box(f()));
            t.elapsed()
        })
        .min()
        .expect("at least one run");
    (best, out.unwrap())
}

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

fn fib_seq(n: u32) -> u64 {
    if n < 2 {
        n.into()
    } else {
        fib_seq(n - 1) + fib_seq(n - 2)
    }
}

fn row(what: &str, g: &str, t: Duration, base: Duration) {
    println!(
        "  {what:<12} {g:<14} {:>9.2} ms   x{:.2}",
        t.as_secs_f64() * 1e3,
        base.as_secs_f64() / t.as_secs_f64()
    );
}

fn main() {
    let threads = rayon::current_num_threads();
    println!("divide and conquer on {threads} threads (best of 5 runs; x = speed-up)\n");
    let policies = |cutoffs: &[usize]| {
        let mut all = vec![
            Granularity::Auto,
            Granularity::tuned(),
            Granularity::Chunks(threads),
        ];
        all.extend(cutoffs.iter().map(|&c| Granularity::MinLen(c)));
        all
    };

    // Merge sort, out of place: sorted leaves, merged on the way up.
    let n = 2_000_000u64;
    let data: Vec<u32> = (0..n)
        .map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32)
        .collect();
    let mut expect = data.clone();
    expect.sort_unstable();
    println!("merge sort of {n} u32 (size = length, split = halves):");
    let (base, _) = time(5, || sort_leaf(&data));
    row("sort_unstable", "sequential", base, base);
    for g in policies(&[4_096, 65_536, 1_000_000]) {
        let (t, sorted) = time(5, || {
            divide(
                &data[..],
                g,
                |s| s.len(),
                |s| s.split_at(s.len() / 2),
                sort_leaf,
                merge,
            )
        });
        assert_eq!(sorted, expect);
        row("divide", &g.to_string(), t, base);
    }

    // Tree sum: halves of the slice, summed sequentially at the leaves.
    let values: Vec<u64> = (0..20_000_000).collect();
    let expect: u64 = values.iter().sum();
    println!("\ntree sum of {} u64:", values.len());
    let (base, _) = time(5, || values.iter().sum::<u64>());
    row("iter().sum()", "sequential", base, base);
    for g in policies(&[10_000, 1_000_000]) {
        let (t, sum) = time(5, || {
            divide(
                &values[..],
                g,
                |s| s.len(),
                |s| s.split_at(s.len() / 2),
                |s| s.iter().sum::<u64>(),
                |a, b| a + b,
            )
        });
        assert_eq!(sum, expect);
        row("divide", &g.to_string(), t, base);
    }

    // Naive Fibonacci: fib(n) = fib(n - 1) + fib(n - 2), sequential below the cutoff on n.
    let n = 34;
    let expect = (0..n).fold((0u64, 1u64), |(a, b), _| (b, a + b)).0;
    println!("\nFibonacci tree fib({n}) (size = n, so MinLen(c) solves fib(c) and below alone):");
    let (base, _) = time(5, || fib_seq(black_box(n)));
    row("recursion", "sequential", base, base);
    for c in [5, 10, 15, 20, 25, 30] {
        let g = Granularity::MinLen(c);
        let (t, f) = time(5, || {
            divide(
                n,
                g,
                |&n| n as usize,
                |n| (n - 1, n - 2),
                fib_seq,
                |a, b| a + b,
            )
        });
        assert_eq!(f, expect);
        row("divide", &g.to_string(), t, base);
    }
    // Auto and Tuned assume cost in proportion to size: measure fib(n) by its work, phi^n.
    let work = |&n: &u32| 1.618f64.powi(n as i32) as usize;
    for g in [Granularity::Auto, Granularity::tuned()] {
        let (t, f) = time(5, || {
            divide(n, g, work, |n| (n - 1, n - 2), fib_seq, |a, b| a + b)
        });
        assert_eq!(f, expect);
        row("divide", &format!("{g} (phi^n)"), t, base);
    }
}
