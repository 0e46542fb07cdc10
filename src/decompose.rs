//! Data decomposition: the items of a slice, or the integers of a range, cut into tasks by a
//! [`Granularity`], in rayon's own vocabulary.
//!
//! The job is split by its data: every item goes through the same function, items are grouped
//! into tasks, and the tasks run on the current rayon pool (`pool.install(..)` chooses it).
//! Results always equal the sequential ones, in input order, whatever the granularity and the
//! number of threads.
//!
//! - [`GranularityExt::with_granularity`]: an adaptor for any indexed rayon iterator that cuts
//!   its work as the policy says: `items.par_iter().with_granularity(g).map(f).collect()`.
//! - [`par_range`]: the integers of a `Range<u64>` as an indexed parallel iterator, so that
//!   ranges take the adaptor too: `par_range(0..n).with_granularity(g).map(f).collect()`.
//!   rayon's `(a..b).into_par_iter()` is indexed for `u32` and `usize` but not for `u64`
//!   (a `u64` range may hold more than `usize::MAX` integers on 32-bit targets).
//! - [`ParChunksBy::par_chunks_by`]: chunks of a slice, one task each, for work that wants a
//!   whole chunk at a time (one buffer per chunk, a vectorised kernel).
//!
//! Everything else is rayon's: `map`, `for_each`, `reduce`, `sum`, `fold`, `collect`, ...
//! (`use rayon::prelude::*`, or [`parkit::prelude`](crate::prelude) for this module's traits).
//! After `with_granularity`, a `reduce` folds each task from `identity()` and combines the task
//! results pairwise, left before right, so the grouping of `op` follows the task cuts: `op`
//! must be associative and `identity()` its identity, but it need not be commutative, since
//! the operands always keep the input order. With both conditions the result equals the
//! sequential fold (exactly for integers; floating-point sums round differently under
//! different cuts).
//!
//! # Examples
//!
//! ```
//! use rayon::prelude::*;
//! use parkit::decompose::{GranularityExt, par_range};
//! use parkit::granularity::Granularity;
//!
//! // How many of 1..100_000 are prime, in tasks of about 50 µs each.
//! let is_prime = |n: u64| n > 1 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0);
//! let primes: u32 = par_range(1..100_000)
//!     .with_granularity(Granularity::tuned())
//!     .map(|n| u32::from(is_prime(n)))
//!     .sum();
//! assert_eq!(primes, 9592);
//!
//! // A slice, in tasks of two items.
//! let squares: Vec<i32> = [1, 2, 3]
//!     .par_iter()
//!     .with_granularity(Granularity::ChunkSize(2))
//!     .map(|x| x * x)
//!     .collect();
//! assert_eq!(squares, [1, 4, 9]);
//!
//! // String concatenation is associative but not commutative: the order is kept.
//! let words = ["a", "b", "c", "d", "e"];
//! let s = words
//!     .par_iter()
//!     .with_granularity(Granularity::ChunkSize(2))
//!     .map(|w| w.to_string())
//!     .reduce(String::new, |a, b| a + &b);
//! assert_eq!(s, "abcde");
//! ```
//!
//! # Panics
//!
//! A panic in a function given to the iterator is re-raised on the calling thread once the
//! tasks running beside it have finished, as `rayon::join` does; when several panic, one of
//! the panics is raised.
//!
//! # Design
//!
//! [`WithGranularity`] is a rayon adaptor that replaces rayon's splitting where the policy
//! fixes the cut. When it drives the work (it is the last adaptor before the consuming call,
//! or below adaptors such as `map`, `filter` and `fold` that drive their base), it takes the
//! producer of the items and the consumer of the results and recurses over `rayon::join` itself:
//!
//! - `Auto` and `MinLen(n)` hand over to rayon (`with_min_len(n)` for the latter).
//! - `Sequential` folds every item into the consumer on the calling thread, with no `join`.
//! - `ChunkSize(n)` and `Chunks(k)` number the tasks and split the task range in halves, each
//!   split on a task boundary, so every leaf is exactly one task. The leaves feed rayon's own
//!   consumers, so `collect` still writes each result straight into its place in the output
//!   vector: there is no per-task vector and no final concatenation.
//! - `Tuned(t)` runs as `Chunks(threads)` whose tasks each fold a doubling sample of their
//!   first items into the consumer, timing it, then cut the rest of their part as
//!   `ChunkSize(t / cost)` (see [`granularity`](crate::granularity) for the estimate and the
//!   clamps). The sample's results are kept.
//!
//! Adaptors that need a *producer* from their base instead (`zip`, `enumerate`, `chunks`, ...)
//! get one with rayon's length hints: fixed cuts become `with_min_len(n).with_max_len(n)`,
//! under which rayon's halving leaves tasks of `n` to `2n - 1` items, and `Tuned`, which has
//! nothing to time at that point, becomes `Auto`. Put `with_granularity` last, or below
//! `map`-like adaptors only, for the exact cut.
//!
//! [`ParRange`] hands its work to rayon's indexed `usize` range, mapped to `start + i`, so it
//! splits, collects and zips exactly as a rayon range does; it only gives that iterator a name.
//!
//! [`ChunksBy`] cannot measure work it does not run and must know its length before it starts,
//! so its `Auto` and `Tuned` are fixed in advance: `4 × threads` chunks of about equal length,
//! enough slack for threads to even out uneven chunks at a negligible scheduling cost.

use std::ops::Range;
use std::time::{Duration, Instant};

use rayon::iter::plumbing::{
    Consumer, Folder, Producer, ProducerCallback, Reducer, UnindexedConsumer,
};
use rayon::iter::{Chain, MaxLen};
use rayon::prelude::*;

use crate::granularity::{Granularity, Sample};

/// The integers of `range` as an indexed parallel iterator, in increasing order.
///
/// The parallel `range.into_iter()`: an empty or reversed range has no items. Being indexed,
/// it takes [`with_granularity`](GranularityExt::with_granularity), `zip`, `enumerate`,
/// `collect` into a vector in place, and every other indexed adaptor, which rayon's own
/// `(a..b).into_par_iter()` over `u64` does not.
///
/// # Examples
///
/// ```
/// use rayon::prelude::*;
/// use parkit::decompose::{GranularityExt, par_range};
/// use parkit::granularity::Granularity;
///
/// let digits: Vec<usize> = par_range(8..12)
///     .with_granularity(Granularity::tuned())
///     .map(|n| n.to_string().len())
///     .collect();
/// assert_eq!(digits, [1, 1, 2, 2]);
///
/// // Total number of decimal digits in 1..=1000, in tasks of at least 100 integers.
/// let total: usize = par_range(1..1001)
///     .with_granularity(Granularity::MinLen(100))
///     .map(|n| n.to_string().len())
///     .sum();
/// assert_eq!(total, 9 + 90 * 2 + 900 * 3 + 4);
/// assert_eq!(par_range(u64::MAX - 2..u64::MAX).len(), 2);
/// ```
///
/// # Panics
///
/// If the range holds more than `usize::MAX` integers, which is only possible where `usize` is
/// narrower than 64 bits.
pub fn par_range(range: Range<u64>) -> ParRange {
    let len = range.end.saturating_sub(range.start);
    let len =
        usize::try_from(len).expect("parkit::decompose::par_range: range longer than usize::MAX");
    ParRange {
        start: range.start,
        len,
    }
}

/// An indexed parallel iterator over a range of `u64`.
///
/// This struct is created by [`par_range`]; see its docs.
#[must_use = "iterators are lazy and do nothing unless consumed"]
#[derive(Clone, Debug)]
pub struct ParRange {
    start: u64,
    len: usize,
}

impl ParRange {
    /// The same integers as rayon's indexed `usize` range, shifted by `start`.
    fn shifted(self) -> impl IndexedParallelIterator<Item = u64> {
        let start = self.start;
        // `start + len` is the range's end, so `start + i` cannot overflow.
        (0..self.len).into_par_iter().map(move |i| start + i as u64)
    }
}

impl ParallelIterator for ParRange {
    type Item = u64;

    fn drive_unindexed<C>(self, consumer: C) -> C::Result
    where
        C: UnindexedConsumer<Self::Item>,
    {
        self.shifted().drive_unindexed(consumer)
    }

    fn opt_len(&self) -> Option<usize> {
        Some(self.len)
    }
}

impl IndexedParallelIterator for ParRange {
    fn drive<C: Consumer<Self::Item>>(self, consumer: C) -> C::Result {
        self.shifted().drive(consumer)
    }

    fn len(&self) -> usize {
        self.len
    }

    fn with_producer<CB: ProducerCallback<Self::Item>>(self, callback: CB) -> CB::Output {
        self.shifted().with_producer(callback)
    }
}

/// Extension trait giving indexed rayon iterators [`with_granularity`](Self::with_granularity).
///
/// Implemented for every [`IndexedParallelIterator`]: slices' `par_iter`, `Vec`'s
/// `into_par_iter`, rayon's `usize` and `u32` ranges, [`par_range`] for `u64`, and their
/// indexed adaptors.
pub trait GranularityExt: IndexedParallelIterator {
    /// Cuts the work of this iterator into tasks as `granularity` says.
    ///
    /// The cut is exact when this adaptor drives the work: put it last, just before the
    /// consuming call (`collect`, `reduce`, `for_each`, `sum`, ...), or below adaptors that
    /// drive their base (`map`, `filter`, `fold`, `inspect`, ...). Below adaptors that need a
    /// producer (`zip`, `enumerate`, ...) it falls back to rayon's length hints, as the
    /// [module docs](crate::decompose) explain. `Tuned` times the whole work of each item: the
    /// adaptors before this one, those after it, and the consuming call.
    ///
    /// # Examples
    ///
    /// ```
    /// use rayon::prelude::*;
    /// use parkit::decompose::GranularityExt;
    /// use parkit::granularity::Granularity;
    ///
    /// let v: Vec<u64> = (1..=100).collect();
    /// let s: u64 = v.par_iter().map(|x| x * 2).with_granularity(Granularity::tuned()).sum();
    /// assert_eq!(s, 10_100);
    ///
    /// // Before `map` or after it, the same cut: four tasks of 25 items.
    /// let doubled: Vec<u64> =
    ///     v.par_iter().with_granularity(Granularity::Chunks(4)).map(|x| x * 2).collect();
    /// assert_eq!(doubled[99], 200);
    /// ```
    ///
    /// # Panics
    ///
    /// A panic in the work of an item is re-raised on the calling thread once the tasks
    /// running beside it have finished, as `rayon::join` does; when several panic, one of the
    /// panics is raised.
    fn with_granularity(self, granularity: Granularity) -> WithGranularity<Self> {
        WithGranularity {
            base: self,
            granularity,
        }
    }
}

impl<I: IndexedParallelIterator> GranularityExt for I {}

/// An iterator whose work is cut into tasks by a [`Granularity`].
///
/// This struct is created by [`GranularityExt::with_granularity`]; see its docs.
#[must_use = "iterator adaptors are lazy and do nothing unless consumed"]
#[derive(Clone, Debug)]
pub struct WithGranularity<I> {
    base: I,
    granularity: Granularity,
}

impl<I: IndexedParallelIterator> ParallelIterator for WithGranularity<I> {
    type Item = I::Item;

    fn drive_unindexed<C>(self, consumer: C) -> C::Result
    where
        C: UnindexedConsumer<Self::Item>,
    {
        self.drive(consumer)
    }

    fn opt_len(&self) -> Option<usize> {
        Some(self.base.len())
    }
}

impl<I: IndexedParallelIterator> IndexedParallelIterator for WithGranularity<I> {
    fn drive<C: Consumer<Self::Item>>(self, consumer: C) -> C::Result {
        match self.granularity {
            Granularity::Auto => self.base.drive(consumer),
            Granularity::MinLen(n) => self.base.with_min_len(n.max(1)).drive(consumer),
            granularity => {
                let len = self.base.len();
                self.base.with_producer(Drive {
                    consumer,
                    len,
                    granularity,
                })
            }
        }
    }

    fn len(&self) -> usize {
        self.base.len()
    }

    fn with_producer<CB: ProducerCallback<Self::Item>>(self, callback: CB) -> CB::Output {
        let len = self.base.len();
        let (min, max) = match self.granularity {
            Granularity::Auto | Granularity::Tuned(_) => (1, usize::MAX),
            Granularity::MinLen(n) => (n.max(1), usize::MAX),
            granularity => {
                let n = granularity.task_len(len).unwrap_or(len);
                (n, n)
            }
        };
        self.base
            .with_min_len(min)
            .with_max_len(max)
            .with_producer(callback)
    }
}

/// The callback that receives the base producer and runs the cut on it.
struct Drive<C> {
    consumer: C,
    len: usize,
    granularity: Granularity,
}

impl<T, C: Consumer<T>> ProducerCallback<T> for Drive<C> {
    type Output = C::Result;

    fn callback<P: Producer<Item = T>>(self, producer: P) -> C::Result {
        let Drive {
            consumer,
            len,
            granularity,
        } = self;
        let threads = rayon::current_num_threads();
        let (cut, leaf) = match granularity {
            // One part per thread, each sampling its own first items: no thread idles
            // while a sample runs, and one odd item (a page fault) misleads one part only.
            Granularity::Tuned(target) => (Cut::balanced(len, threads), Leaf::Sample(target)),
            granularity => (Cut::new(granularity, len, threads), Leaf::Fold),
        };
        let job = Job { cut, leaf, threads };
        job.run(producer, consumer, 0, cut.count, len)
    }
}

/// A fixed cut of `len` items into `count` tasks: task `i` starts at `i * q + min(i, r)`.
///
/// `ChunkSize(n)` has `q = n, r = 0` (the last task is cut short by `len`); `Chunks(k)` has
/// `q = len / k, r = len % k` (the first `r` tasks hold one item more).
#[derive(Clone, Copy, Debug)]
struct Cut {
    count: usize,
    q: usize,
    r: usize,
}

impl Cut {
    fn new(granularity: Granularity, len: usize, threads: usize) -> Cut {
        match granularity {
            Granularity::Chunks(k) => Cut::balanced(len, k),
            Granularity::ChunkSize(n) => Cut::fixed(len, n),
            Granularity::Auto | Granularity::Tuned(_) => Cut::balanced(len, 4 * threads),
            g => Cut::fixed(len, g.task_len(len).unwrap_or(len)),
        }
    }

    fn fixed(len: usize, n: usize) -> Cut {
        let n = n.clamp(1, len.max(1));
        Cut {
            count: len.div_ceil(n).max(1),
            q: n,
            r: 0,
        }
    }

    fn balanced(len: usize, k: usize) -> Cut {
        let k = k.clamp(1, len.max(1));
        Cut {
            count: k,
            q: len / k,
            r: len % k,
        }
    }

    /// Where task `i` starts, for `i < count`.
    fn start(&self, i: usize) -> usize {
        i * self.q + i.min(self.r)
    }
}

/// What a task of a [`Cut`] does: fold its items, or sample them as `Tuned(target)` does.
#[derive(Clone, Copy, Debug)]
enum Leaf {
    Fold,
    Sample(Duration),
}

/// A cut to run: the tasks, what each does, and the thread count the clamps use.
#[derive(Clone, Copy, Debug)]
struct Job {
    cut: Cut,
    leaf: Leaf,
    threads: usize,
}

impl Job {
    /// Runs tasks `lo..hi` (`len` items), splitting the task range in halves over
    /// `rayon::join`; every split falls on a task boundary.
    fn run<P, C>(self, producer: P, consumer: C, lo: usize, hi: usize, len: usize) -> C::Result
    where
        P: Producer,
        C: Consumer<P::Item>,
    {
        if consumer.full() {
            consumer.into_folder().complete()
        } else if hi - lo <= 1 {
            match self.leaf {
                Leaf::Fold => producer.fold_with(consumer.into_folder()).complete(),
                Leaf::Sample(target) => {
                    let tune = Tune {
                        target,
                        threads: self.threads,
                        cap: (len / 8).max(1),
                    };
                    tuned(producer, consumer, len, Sample::default(), tune)
                }
            }
        } else {
            let mid = lo + (hi - lo) / 2;
            let at = self.cut.start(mid) - self.cut.start(lo);
            let (left_p, right_p) = producer.split_at(at);
            let (left_c, right_c, reducer) = consumer.split_at(at);
            let (left, right) = rayon::join(
                || self.run(left_p, left_c, lo, mid, at),
                || self.run(right_p, right_c, mid, hi, len - at),
            );
            reducer.reduce(left, right)
        }
    }
}

/// Runs one part of `len` items under `Tuned(target)`: folds rounds of 1, 1, 2, 4, ... items
/// on this thread, timed, until the [`Sample`] is done (taking at most `cap` items, an eighth
/// of the part), then cuts the rest of the part into tasks of the length it gives.
fn tuned<P, C>(producer: P, consumer: C, len: usize, mut sample: Sample, tune: Tune) -> C::Result
where
    P: Producer,
    C: Consumer<P::Item>,
{
    if len == 0 || consumer.full() {
        return consumer.into_folder().complete();
    }
    let take = sample.items().max(1).min(len);
    let (head_p, rest_p) = producer.split_at(take);
    let (head_c, rest_c, reducer) = consumer.split_at(take);
    let start = Instant::now();
    let head = head_p.fold_with(head_c.into_folder()).complete();
    sample.record(take, start.elapsed());
    let rest = len - take;
    let tail = if rest == 0 || sample.done(tune.cap) {
        let cut = Cut::fixed(rest, sample.task_len(tune.target, rest, tune.threads));
        let job = Job {
            cut,
            leaf: Leaf::Fold,
            threads: tune.threads,
        };
        job.run(rest_p, rest_c, 0, cut.count, rest)
    } else {
        tuned(rest_p, rest_c, rest, sample, tune)
    };
    reducer.reduce(head, tail)
}

/// The settings of one part's `Tuned` run.
#[derive(Clone, Copy, Debug)]
struct Tune {
    target: Duration,
    threads: usize,
    cap: usize,
}

/// Extension trait giving slices [`par_chunks_by`](Self::par_chunks_by).
pub trait ParChunksBy<T: Sync> {
    /// A parallel iterator over chunks of the slice cut by `granularity`, each chunk one task.
    ///
    /// The chunks cover the slice in order, with no gaps; an empty slice has no chunks.
    /// `ChunkSize(n)` gives chunks of `n` items (the last shorter), `Chunks(k)` gives `k`
    /// chunks whose lengths differ by at most one, and `Sequential` the whole slice as one
    /// chunk. `MinLen(n)` gives chunks of `n` items and lets rayon group neighbouring chunks
    /// into one task adaptively. `Auto` and `Tuned` give `4 × threads` chunks of about equal
    /// length: the iterator must know its length before it runs, so it cannot adapt as rayon
    /// does, and it runs no work it could time. For a measured cut, use
    /// [`with_granularity`](GranularityExt::with_granularity) on the items instead.
    ///
    /// # Examples
    ///
    /// ```
    /// use rayon::prelude::*;
    /// use parkit::decompose::ParChunksBy;
    /// use parkit::granularity::Granularity;
    ///
    /// let v: Vec<u32> = (0..10).collect();
    /// let lens = |g| v.par_chunks_by(g).map(<[u32]>::len).collect::<Vec<_>>();
    /// assert_eq!(lens(Granularity::Chunks(4)), [3, 3, 2, 2]);
    /// assert_eq!(lens(Granularity::ChunkSize(4)), [4, 4, 2]);
    /// let whole: Vec<&[u32]> = v.par_chunks_by(Granularity::Sequential).collect();
    /// assert_eq!(whole, [&v[..]]);
    /// ```
    fn par_chunks_by(&self, granularity: Granularity) -> ChunksBy<'_, T>;
}

impl<T: Sync> ParChunksBy<T> for [T] {
    fn par_chunks_by(&self, granularity: Granularity) -> ChunksBy<'_, T> {
        let cut = Cut::new(granularity, self.len(), rayon::current_num_threads());
        // The first `r` chunks hold `q + 1` items, the others `q`: two runs of equal chunks.
        let (long, short) = if cut.r == 0 {
            (cut.q.max(1), cut.q.max(1))
        } else {
            (cut.q + 1, cut.q.max(1))
        };
        let (head, tail) = self.split_at(cut.r * long);
        let max = match granularity {
            Granularity::MinLen(_) => usize::MAX,
            _ => 1,
        };
        let inner = head
            .par_chunks(long)
            .chain(tail.par_chunks(short))
            .with_max_len(max);
        ChunksBy { inner }
    }
}

/// A parallel iterator over chunks of a slice cut by a [`Granularity`].
///
/// This struct is created by [`ParChunksBy::par_chunks_by`]; see its docs.
#[must_use = "iterator adaptors are lazy and do nothing unless consumed"]
#[derive(Clone, Debug)]
pub struct ChunksBy<'a, T: Sync> {
    inner: MaxLen<Chain<rayon::slice::Chunks<'a, T>, rayon::slice::Chunks<'a, T>>>,
}

impl<'a, T: Sync> ParallelIterator for ChunksBy<'a, T> {
    type Item = &'a [T];

    fn drive_unindexed<C>(self, consumer: C) -> C::Result
    where
        C: UnindexedConsumer<Self::Item>,
    {
        self.inner.drive_unindexed(consumer)
    }

    fn opt_len(&self) -> Option<usize> {
        Some(self.inner.len())
    }
}

impl<T: Sync> IndexedParallelIterator for ChunksBy<'_, T> {
    fn drive<C: Consumer<Self::Item>>(self, consumer: C) -> C::Result {
        self.inner.drive(consumer)
    }

    fn len(&self) -> usize {
        self.inner.len()
    }

    fn with_producer<CB: ProducerCallback<Self::Item>>(self, callback: CB) -> CB::Output {
        self.inner.with_producer(callback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(cut: Cut, len: usize) -> Vec<usize> {
        (0..cut.count).map(|i| cut.start(i)).chain([len]).collect()
    }

    #[test]
    fn cuts_cover_the_input() {
        assert_eq!(bounds(Cut::fixed(10, 4), 10), [0, 4, 8, 10]);
        assert_eq!(bounds(Cut::fixed(10, 0), 10).len(), 11);
        assert_eq!(bounds(Cut::fixed(10, 99), 10), [0, 10]);
        assert_eq!(bounds(Cut::balanced(10, 4), 10), [0, 3, 6, 8, 10]);
        assert_eq!(bounds(Cut::balanced(3, 8), 3), [0, 1, 2, 3]);
        assert_eq!(bounds(Cut::balanced(0, 8), 0), [0, 0]);
        assert_eq!(bounds(Cut::fixed(0, 8), 0), [0, 0]);
    }

    #[test]
    fn fixed_cuts_make_one_task_per_chunk() {
        // Each task folds from `identity`, so counting identities counts tasks.
        use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
        let v: Vec<u32> = (0..100).collect();
        for (g, tasks) in [
            (Granularity::ChunkSize(10), 10),
            (Granularity::ChunkSize(30), 4),
            (Granularity::Chunks(7), 7),
            (Granularity::Sequential, 1),
        ] {
            let n = AtomicUsize::new(0);
            let s = v
                .par_iter()
                .copied()
                .with_granularity(g)
                .fold(|| n.fetch_add(1, Relaxed), |a, _| a)
                .count();
            assert_eq!((s, n.into_inner()), (tasks, tasks), "{g}");
        }
    }
}
