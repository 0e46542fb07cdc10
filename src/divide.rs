//! Divide and conquer: split a problem recursively, solve the pieces in parallel over
//! `rayon::join`, and combine their results, with the cutoff taken from a [`Granularity`].
//!
//! [`divide`] takes the problem and four functions: `size` (how big a problem is), `split`
//! (two smaller problems), `solve` (the sequential solution of a piece), `combine` (two results
//! into one, left before right). A problem no bigger than the cutoff is solved; a bigger one is
//! split and its halves run under `rayon::join`.
//!
//! # Examples
//!
//! ```
//! use parkit::divide::divide;
//! use parkit::granularity::Granularity;
//!
//! // A tree sum: halves of the slice down to 1,000 numbers, each summed sequentially.
//! let v: Vec<u64> = (1..=100_000).collect();
//! let sum = divide(
//!     &v[..],
//!     Granularity::MinLen(1_000),
//!     |s| s.len(),
//!     |s| s.split_at(s.len() / 2),
//!     |s| s.iter().sum::<u64>(),
//!     |a, b| a + b,
//! );
//! assert_eq!(sum, 5_000_050_000);
//! ```
//!
//! # Design
//!
//! The cutoff is resolved once, from the size of the whole problem and the current pool's
//! thread count:
//!
//! | granularity | pieces solved sequentially |
//! |---|---|
//! | `Sequential` | the whole problem: `solve(problem)`, with no split and no `join` |
//! | `MinLen(n)`, `ChunkSize(n)` | size `<= n` |
//! | `Chunks(k)` | size `<= size / k` (rounded up): about `k` pieces, rounded to a power of two |
//! | `Auto` | size `<= size / (8 × threads)`: about eight pieces per thread, room to balance |
//! | `Tuned(t)` | size `<= t / cost`, with `cost` the measured time of `solve` per unit of size |
//!
//! A zero in `MinLen`, `ChunkSize` or `Chunks` is read as 1, like everywhere in the crate, and
//! the cutoff is never below 1, so a problem of size 0 or 1 is never split.
//!
//! `Tuned(t)` first splits the top of the tree under `join` into one part per thread. Each
//! part then follows its left edge: it splits down to a piece of about `part / 4096`, solves
//! it and times it, then solves the right siblings met on the way down, smallest first, still
//! timed, until the sample has two solves and [`MIN_SAMPLE`] of time (or reaches an eighth of
//! the part). The cutoff is `t` over the cost per unit of size of the cheaper of the last two
//! solves, clamped to `[1, rest / threads]`; the siblings left run in parallel with that
//! cutoff, and every result combines in the order the plain recursion would use. Nothing is
//! solved twice. This assumes that `solve` costs about in proportion to `size`: give a `size`
//! that measures work (for the naive Fibonacci recursion, `fib(n)` rather than `n`), or use a
//! fixed cutoff. `Auto` and `Chunks` make the same assumption. Only `solve` is timed: where
//! `combine` costs much more per item than `solve` does (an out-of-place merge sort, whose
//! merges allocate and copy while its leaves sort in place), fewer and bigger leaves win, so
//! give `Tuned` a larger target or choose `Chunks(threads)`.
//!
//! The hot path is one generic function, monomorphised for the caller's closures: a size test,
//! then `split`, `join` and `combine`, or `solve`; there is no boxing and no dynamic dispatch,
//! so it costs what the same recursion written by hand costs (`cargo bench --bench divide`).
//!
//! [`MIN_SAMPLE`]: crate::granularity::MIN_SAMPLE

use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::granularity::{Granularity, Sample};

/// Solves `problem` by divide and conquer: split while bigger than the cutoff that
/// `granularity` gives, solve the pieces in parallel over `rayon::join`, combine.
///
/// `size` measures a problem, `split` cuts one into two smaller ones (left, right), `solve`
/// solves a piece sequentially, and `combine` merges two results, left before right. The
/// result is `solve(problem)` for any problem where solving the halves and combining gives
/// what solving the whole gives, which is what makes divide and conquer correct in the first
/// place; the cutoff rules are in the [module docs](self). Runs on the current rayon pool.
///
/// `split` must give problems strictly smaller than their parent (by `size`), or the recursion
/// does not end: a split that does not shrink recurses until the thread's stack overflows,
/// which **aborts the whole process** (a stack overflow is not a panic, so neither
/// `catch_unwind` nor this function can turn it into an error). Check `split` on the sizes you
/// feed it, in particular the smallest ones just above the cutoff (`n - 1` of a `u32` at 0, or
/// `split_at(len / 2)` of a one-element slice, give back a problem as big as the parent).
///
/// # Examples
///
/// ```
/// use parkit::divide::divide;
/// use parkit::granularity::Granularity;
///
/// // Naive Fibonacci recursion: fib(n) = fib(n - 1) + fib(n - 2), sequential at n <= 15.
/// fn fib(n: u32) -> u64 {
///     if n < 2 { n.into() } else { fib(n - 1) + fib(n - 2) }
/// }
/// let f = divide(25u32, Granularity::MinLen(15), |&n| n as usize, |n| (n - 1, n - 2), fib,
///                |a, b| a + b);
/// assert_eq!(f, 75_025);
///
/// // Merge sort, out of place: halves of the slice, sorted leaves, merged results.
/// let v: Vec<u32> = (0..10_000).map(|i| i * 7919 % 10_007).collect();
/// let sorted = divide(
///     &v[..],
///     Granularity::Auto,
///     |s| s.len(),
///     |s| s.split_at(s.len() / 2),
///     |s| { let mut s = s.to_vec(); s.sort_unstable(); s },
///     |a, b| {
///         let mut out = Vec::with_capacity(a.len() + b.len());
///         let (mut i, mut j) = (0, 0);
///         while i < a.len() && j < b.len() {
///             if b[j] < a[i] { out.push(b[j]); j += 1 } else { out.push(a[i]); i += 1 }
///         }
///         out.extend_from_slice(&a[i..]);
///         out.extend_from_slice(&b[j..]);
///         out
///     },
/// );
/// assert!(sorted.windows(2).all(|w| w[0] <= w[1]) && sorted.len() == v.len());
/// ```
///
/// # Panics
///
/// A panic in `size`, `split`, `solve` or `combine` propagates to the caller as
/// `rayon::join` propagates it: the other half of that `join` still runs to completion, then
/// the panic resumes on the thread that called `join`, level by level, up to the caller of
/// `divide`. When both halves panic, the first one's panic is raised.
///
/// # Locking
///
/// Takes no lock. The calling thread waits in `rayon::join` until the whole problem is solved:
/// a caller off the pool blocks, a worker of the pool takes part in the work meanwhile.
pub fn divide<P, R, Z, S, V, C>(
    problem: P,
    granularity: Granularity,
    size: Z,
    split: S,
    solve: V,
    combine: C,
) -> R
where
    P: Send,
    R: Send,
    Z: Fn(&P) -> usize + Sync,
    S: Fn(P) -> (P, P) + Sync,
    V: Fn(P) -> R + Sync,
    C: Fn(R, R) -> R + Sync,
{
    let ops = Ops {
        size,
        split,
        solve,
        combine,
    };
    let total = (ops.size)(&problem);
    let threads = rayon::current_num_threads();
    let cutoff = match granularity {
        Granularity::Sequential => return (ops.solve)(problem),
        Granularity::Tuned(target) => {
            return tuned(problem, threads, Tune { target, threads }, &ops);
        }
        Granularity::Auto => total / (8 * threads),
        // `MinLen(n)` and `ChunkSize(n)`: n; `Chunks(k)`: total / k, rounded up.
        g => g.task_len(total).unwrap_or(total),
    };
    ops.run(problem, cutoff.max(1))
}

/// The caller's four functions, passed down the recursion by reference.
struct Ops<Z, S, V, C> {
    size: Z,
    split: S,
    solve: V,
    combine: C,
}

impl<Z, S, V, C> Ops<Z, S, V, C> {
    /// The recursion: solve at or below `cutoff`, else split, `join` and combine.
    fn run<P, R>(&self, problem: P, cutoff: usize) -> R
    where
        P: Send,
        R: Send,
        Z: Fn(&P) -> usize + Sync,
        S: Fn(P) -> (P, P) + Sync,
        V: Fn(P) -> R + Sync,
        C: Fn(R, R) -> R + Sync,
    {
        if (self.size)(&problem) <= cutoff {
            (self.solve)(problem)
        } else {
            let (left, right) = (self.split)(problem);
            let (left, right) = rayon::join(|| self.run(left, cutoff), || self.run(right, cutoff));
            (self.combine)(left, right)
        }
    }
}

/// `Tuned(target)`: split the top of the tree into one part per thread (`parts`), then in
/// each part time the left edge, pick the cutoff, and run the rest.
fn tuned<P, R, Z, S, V, C>(problem: P, parts: usize, tune: Tune, ops: &Ops<Z, S, V, C>) -> R
where
    P: Send,
    R: Send,
    Z: Fn(&P) -> usize + Sync,
    S: Fn(P) -> (P, P) + Sync,
    V: Fn(P) -> R + Sync,
    C: Fn(R, R) -> R + Sync,
{
    let total = (ops.size)(&problem);
    if parts > 1 && total > 1 {
        let (left, right) = (ops.split)(problem);
        let (left, right) = rayon::join(
            || tuned(left, parts.div_ceil(2), tune, ops),
            || tuned(right, parts / 2, tune, ops),
        );
        return (ops.combine)(left, right);
    }
    // Down the left edge to a small first piece; the right siblings wait, deepest last.
    let floor = (total / 4096).max(1);
    let mut siblings = Vec::new();
    let mut piece = problem;
    while (ops.size)(&piece) > floor {
        let (left, right) = (ops.split)(piece);
        siblings.push(right);
        piece = left;
    }
    // Solve the first piece, then the siblings from the deepest up, until the sample is done
    // (at most an eighth of the part); each result combines with its right sibling's as the
    // recursion would.
    let cap = (total / 8).max(1);
    let mut sample = Sample::default();
    let timed = |piece: P, sample: &mut Sample| {
        let size = (ops.size)(&piece);
        let start = Instant::now();
        let result = (ops.solve)(piece);
        sample.record(size, start.elapsed());
        result
    };
    let mut acc = timed(piece, &mut sample);
    while !sample.done(cap) {
        let Some(next) = siblings.pop() else { break };
        let right = timed(next, &mut sample);
        acc = (ops.combine)(acc, right);
    }
    if siblings.is_empty() {
        return acc;
    }
    let rest = total.saturating_sub(sample.items());
    let cutoff = sample.task_len(tune.target, rest, tune.threads);
    let results: Vec<R> = siblings
        .into_par_iter()
        .with_max_len(1)
        .map(|p| ops.run(p, cutoff))
        .collect();
    results
        .into_iter()
        .rev()
        .fold(acc, |acc, right| (ops.combine)(acc, right))
}

/// The settings of a `Tuned` run: the target per leaf and the pool's thread count.
#[derive(Clone, Copy, Debug)]
struct Tune {
    target: Duration,
    threads: usize,
}
