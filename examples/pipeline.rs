//! A three-stage pipeline over 200,000 items, at a few worker and queue settings.
//!
//! "generate" turns an item number into a Fibonacci index, "fib" computes F(n) mod 2^128 by
//! iteration (CPU-bound, a few microseconds), "format" renders it as text, and the sink folds
//! the lines into a checksum. Every setting must give the same checksum (output in input
//! order); the report shows where the time went.
//!
//! Run with `cargo run --release --example pipeline`.

use std::time::{Duration, Instant};

use parkit::pipeline::{Pipeline, PipelineError, Report};

const ITEMS: u64 = 200_000;

/// The Fibonacci index for item `i`: between 10,000 and 19,999, scattered.
fn generate(i: u64) -> u32 {
    10_000 + (i.wrapping_mul(7_919) % 10_000) as u32
}

/// F(n) mod 2^128, by `n` additions.
fn fib(n: u32) -> (u32, u128) {
    let (mut a, mut b) = (0u128, 1u128);
    for _ in 0..n {
        (a, b) = (b, a.wrapping_add(b));
    }
    (n, a)
}

fn format((n, value): (u32, u128)) -> String {
    format!("F({n}) mod 2^128 = {value:032x}")
}

/// An order-sensitive checksum of the lines.
fn fold(sum: u64, line: &str) -> u64 {
    line.bytes().fold(sum.rotate_left(5), |h, b| {
        h.wrapping_mul(31).wrapping_add(u64::from(b))
    })
}

struct Setting {
    label: &'static str,
    fib_workers: usize,
    capacity: Option<usize>,
    unordered: bool,
}

fn run(s: &Setting) -> Result<(u64, Duration, Report), PipelineError> {
    let start = Instant::now();
    let mut p = Pipeline::from(0..ITEMS).stage("generate", 1, generate);
    if let Some(c) = s.capacity {
        p = p.capacity(c);
    }
    let mut p = p.stage("fib", s.fib_workers, fib);
    if let Some(c) = s.capacity {
        p = p.capacity(c);
    }
    let mut p = p.stage("format", 1, format);
    if let Some(c) = s.capacity {
        p = p.capacity(c);
    }
    if s.unordered {
        p = p.unordered();
    }
    let mut sum = 0;
    let mut lines = 0u64;
    let report = p.for_each(|line| {
        sum = if s.unordered {
            sum ^ fold(0, &line)
        } else {
            fold(sum, &line)
        };
        lines += 1;
    })?;
    assert_eq!(lines, ITEMS);
    Ok((sum, start.elapsed(), report))
}

fn main() -> Result<(), PipelineError> {
    println!(
        "{ITEMS} items: generate (1 worker) -> fib, F(n) mod 2^128 for n in 10000..20000 \
         (N workers) -> format (1 worker) -> checksum, on {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let start = Instant::now();
    let expected = (0..ITEMS)
        .map(|i| format(fib(generate(i))))
        .fold(0, |sum, line| fold(sum, &line));
    println!(
        "{:<34} {:>9.3?}",
        "sequential, no pipeline",
        start.elapsed()
    );

    // (label, fib workers, queue capacity, unordered)
    let settings = [
        ("fib x1, default queues", 1, None, false),
        ("fib x2, default queues", 2, None, false),
        ("fib x2, queues of 256", 2, Some(256), false),
        ("fib x4, queues of 256", 4, Some(256), false),
        ("fib x2, queues of 256, unordered", 2, Some(256), true),
    ]
    .map(|(label, fib_workers, capacity, unordered)| Setting {
        label,
        fib_workers,
        capacity,
        unordered,
    });
    let unordered_expected = (0..ITEMS).fold(0, |sum, i| sum ^ fold(0, &format(fib(generate(i)))));
    let mut last = None;
    for s in &settings {
        let (sum, elapsed, report) = run(s)?;
        let want = if s.unordered {
            unordered_expected
        } else {
            expected
        };
        assert_eq!(sum, want, "{}: wrong output", s.label);
        println!(
            "{:<34} {elapsed:>9.3?}  (bottleneck: {})",
            s.label,
            report.bottleneck().name
        );
        if s.label == "fib x2, queues of 256" {
            last = Some(report);
        }
    }
    println!(
        "\nDefault queues hold max(2 x workers, 64) items. A hand-over through an empty or \
         full queue wakes a sleeping thread, which costs about as much as a whole item here; \
         bigger queues make such hand-overs rarer and let each thread run in longer bursts."
    );
    if let Some(report) = last {
        println!("\nReport for \"fib x2, queues of 256\":\n{report}");
    }
    Ok(())
}
