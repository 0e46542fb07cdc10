//! How finely parallel work is cut: one policy type, [`Granularity`], shared by the patterns
//! that cut a job into tasks.
//!
//! A parallel pattern turns a job into tasks for rayon's workers. Tasks that are too big leave
//! cores idle at the end (one late task holds up the whole job); tasks that are too small drown
//! the work in scheduling (each task costs a `join`, often a steal, in the order of a
//! microsecond). The right length depends on how much one item costs, which only the caller or
//! a measurement knows. [`Granularity`] names the choices:
//!
//! | policy | tasks |
//! |---|---|
//! | [`Auto`](Granularity::Auto) (default) | adaptive: a few per thread, more where threads steal |
//! | [`Sequential`](Granularity::Sequential) | one, on the calling thread, no `join` at all |
//! | [`MinLen(n)`](Granularity::MinLen) | adaptive, never shorter than `n` items |
//! | [`ChunkSize(n)`](Granularity::ChunkSize) | exactly `n` items each, the last one shorter |
//! | [`Chunks(k)`](Granularity::Chunks) | `k`, whose lengths differ by at most one item |
//! | [`Tuned(t)`](Granularity::Tuned) | measured: each costing about `t` |
//!
//! Where a policy is taken:
//!
//! - [`decompose`](crate::decompose): the
//!   [`with_granularity`](crate::decompose::GranularityExt::with_granularity) adaptor for any
//!   indexed rayon iterator (slices, vectors, [`par_range`](crate::decompose::par_range) over
//!   `u64`), and [`par_chunks_by`](crate::decompose::ParChunksBy::par_chunks_by) for chunks of
//!   a slice.
//! - [`divide`](crate::divide): recursive splitting over `rayon::join`, where the policy sets
//!   the cutoff below which a piece is solved sequentially.
//! - The [`Fibonacci`](crate::fib::Fibonacci) engine's batch planner (a setting of its builder,
//!   and `fibo --granularity`), where it cuts a batch into runs of close inputs, each run one
//!   task that starts with a fast doubling and goes on by additions.
//!
//! These run on the current rayon pool, so `pool.install(..)` chooses the threads, and they
//! give the sequential result, in order, whatever the policy.
//!
//! Two patterns cut their work otherwise, because their unit of work is not an item of a
//! uniform job. A [`pipeline`](crate::pipeline) hands items from stage to stage one at a time;
//! what it takes is the number of worker threads per stage and the capacity of the queue in
//! front of each (to move items in bigger units, make each item a batch, such as a `Vec` of
//! inputs). [`schedule`](crate::schedule) takes one cost estimate per task and never groups
//! tasks itself: [`par_map_largest_first`](crate::schedule::par_map_largest_first) hands out
//! one task at a time, most expensive first, and the partitions take the number of groups or
//! parts to make.
//!
//! # Design
//!
//! The policy is a small `Copy` value and resolves late: [`Granularity::task_len`] turns a fixed
//! policy into a task length only once the item count is known, and the patterns resolve `Auto`
//! and `Tuned` with the thread count of the pool they run on, so one value fits jobs of any
//! size on any pool. A zero in `MinLen(0)`, `ChunkSize(0)` or `Chunks(0)` is read as 1
//! rather than refused, so a computed policy (`Chunks(len / 1000)`) never panics.
//!
//! `Tuned` is the one policy that needs the work itself. A pattern cuts the job into one part
//! per thread; each part runs its first item alone and times it, then the next one, then two,
//! four, ... (the sample doubles) until the sample has two rounds and has taken at least
//! [`MIN_SAMPLE`], or has reached an eighth of the part. The results of the sample are kept,
//! so no item is ever computed twice, and no thread idles while the others sample. The cost
//! per item is that of the cheaper of the latest two rounds, so that one odd round (a first
//! item on a cold cache or a fresh output page, a thread preempted by the system) cannot make
//! the tasks too short, which costs far more than tasks somewhat too long. The rest of the
//! part is cut into tasks of `target / cost` items, clamped to `[1, rest / threads]`: an item
//! that costs more than the target is a task of its own, and a part too small to fill the
//! target still gets one task per thread to share. This assumes that the first items of a
//! part cost about what the others do; where cost varies along the input, prefer `Auto`,
//! which adapts as it goes.
//!
//! The default target, [`DEFAULT_TARGET`] = 50 µs, sits well clear of both failure modes.
//! `cargo bench --bench granularity` puts a task's scheduling cost at a few tens of
//! nanoseconds (`ChunkSize(1)` over 1 µs items loses about 5 %), and a steal costs around a
//! microsecond, so 50 µs tasks keep scheduling near 1 % even when every task is stolen; yet a
//! one-millisecond job still makes twenty tasks to balance, and the last task a thread runs
//! delays the job by 50 µs at most. Targets from 20 µs to 1 ms measured within a few percent
//! of each other there.

use std::error::Error;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The per-task cost that [`Granularity::tuned`] aims for: 50 µs.
pub const DEFAULT_TARGET: Duration = Duration::from_micros(50);

/// The least time a `Tuned` sample runs before its per-item cost is trusted: 10 µs.
pub const MIN_SAMPLE: Duration = Duration::from_micros(10);

/// How finely a parallel pattern cuts its work into tasks; see the [module docs](self).
///
/// # Examples
///
/// ```
/// use rayon::prelude::*;
/// use parkit::decompose::GranularityExt;
/// use parkit::granularity::Granularity;
///
/// let v: Vec<u64> = (0..1000).collect();
/// for g in [Granularity::Auto, Granularity::ChunkSize(64), Granularity::tuned()] {
///     let squares: Vec<u64> = v.par_iter().with_granularity(g).map(|x| x * x).collect();
///     assert_eq!(squares[999], 998_001);
/// }
/// assert_eq!("chunk:64".parse::<Granularity>(), Ok(Granularity::ChunkSize(64)));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Granularity {
    /// rayon's adaptive splitting: a few tasks per thread, split further where threads steal.
    #[default]
    Auto,
    /// No parallelism: the whole job is one task on the calling thread.
    Sequential,
    /// Adaptive splitting, with tasks of at least `n` items (rayon's `with_min_len`); 0 is 1.
    MinLen(usize),
    /// Tasks of exactly `n` items, the last one shorter; 0 is 1.
    ChunkSize(usize),
    /// `n` tasks whose lengths differ by at most one item (fewer when there are fewer items);
    /// 0 is 1.
    Chunks(usize),
    /// Tasks that each cost about this long, from the measured cost of the first items.
    Tuned(Duration),
}

impl Granularity {
    /// `Tuned` with the [`DEFAULT_TARGET`] of 50 µs per task.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use parkit::granularity::Granularity;
    ///
    /// assert_eq!(Granularity::tuned(), Granularity::Tuned(Duration::from_micros(50)));
    /// ```
    pub const fn tuned() -> Self {
        Granularity::Tuned(DEFAULT_TARGET)
    }

    /// The number of items per task for a job of `len` items, or `None` where the length is
    /// not fixed in advance.
    ///
    /// - `Auto` gives `None`: rayon's adaptive splitter decides as the job runs.
    /// - `Tuned` gives `None`: its length comes from a measurement that only a pattern running
    ///   the work can take (see the [module docs](self)).
    /// - `Sequential` gives `len` (one task); `ChunkSize(n)` gives `n`; `Chunks(k)` gives the
    ///   longest of its `k` tasks, `len / k` rounded up.
    /// - `MinLen(n)` gives `n`, the shortest task it allows. The data patterns keep rayon's
    ///   adaptive splitting above that floor; [`divide`](crate::divide) uses it as its cutoff.
    ///
    /// Zeros are read as 1, and the result is never 0. No fixed policy depends on the thread
    /// count: the two that would, `Auto` and `Tuned`, are resolved by the pattern that runs
    /// the work, which knows its pool.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::granularity::Granularity;
    ///
    /// assert_eq!(Granularity::Auto.task_len(1000), None);
    /// assert_eq!(Granularity::Sequential.task_len(1000), Some(1000));
    /// assert_eq!(Granularity::ChunkSize(64).task_len(1000), Some(64));
    /// assert_eq!(Granularity::Chunks(3).task_len(1000), Some(334));
    /// assert_eq!(Granularity::Chunks(0).task_len(1000), Some(1000));
    /// assert_eq!(Granularity::tuned().task_len(1000), None);
    /// ```
    pub fn task_len(self, len: usize) -> Option<usize> {
        match self {
            Granularity::Auto | Granularity::Tuned(_) => None,
            Granularity::Sequential => Some(len.max(1)),
            Granularity::MinLen(n) | Granularity::ChunkSize(n) => Some(n.max(1)),
            Granularity::Chunks(k) => Some(len.div_ceil(k.max(1)).max(1)),
        }
    }
}

/// The timing side of a `Tuned` sample: the rounds run so far and the task length they give.
///
/// Patterns run rounds of 1, 1, 2, 4, ... items (or pieces) and [`record`](Self::record) each;
/// the sample is [`done`](Self::done) once it has two rounds and [`MIN_SAMPLE`] of time, or
/// has reached its cap. The estimate uses the cheaper of the latest two rounds per item: one
/// odd round (a first item on a cold cache or a fresh output page, a preempted thread) then
/// cannot make the tasks too short, which costs far more than tasks somewhat too long.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Sample {
    items: usize,
    spent: Duration,
    rounds: u32,
    prev: (usize, Duration),
    last: (usize, Duration),
}

impl Sample {
    /// Items (or units of size) sampled so far.
    pub(crate) fn items(&self) -> usize {
        self.items
    }

    /// Notes a round of `items` that took `took`.
    pub(crate) fn record(&mut self, items: usize, took: Duration) {
        self.items += items;
        self.spent += took;
        self.rounds += 1;
        self.prev = self.last;
        self.last = (items, took);
    }

    /// Whether the sample is long enough, or has reached `cap` items.
    pub(crate) fn done(&self, cap: usize) -> bool {
        (self.rounds >= 2 && self.spent >= MIN_SAMPLE) || self.items >= cap
    }

    /// The task length for `target`, for the `rest` of the work on `threads` threads.
    pub(crate) fn task_len(&self, target: Duration, rest: usize, threads: usize) -> usize {
        let ((n1, t1), (n2, t2)) = (self.last, self.prev);
        // t2 / n2 < t1 / n1, without division; an empty round never wins.
        let prev_cheaper = n2 > 0 && t2.as_nanos() * (n1 as u128) < t1.as_nanos() * (n2 as u128);
        let (items, took) = if prev_cheaper { self.prev } else { self.last };
        tuned_len(target, took, items, rest, threads)
    }
}

/// The task length `Tuned(target)` picks once a sample of `sampled` items took `spent`:
/// `target / (spent / sampled)`, clamped to `[1, rest / threads]` (at least 1).
fn tuned_len(
    target: Duration,
    spent: Duration,
    sampled: usize,
    rest: usize,
    threads: usize,
) -> usize {
    let spent_ns = spent.as_nanos().max(1);
    let len = target.as_nanos().saturating_mul(sampled as u128) / spent_ns;
    let cap = (rest / threads.max(1)).max(1);
    usize::try_from(len).unwrap_or(usize::MAX).clamp(1, cap)
}

/// Writes the policy as [`FromStr`] reads it: `auto`, `seq`, `min:64`, `chunk:256`,
/// `chunks:8`, `tuned` (the default target) or `tuned:100us`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use parkit::granularity::Granularity;
///
/// assert_eq!(Granularity::Chunks(8).to_string(), "chunks:8");
/// assert_eq!(Granularity::tuned().to_string(), "tuned");
/// assert_eq!(Granularity::Tuned(Duration::from_millis(2)).to_string(), "tuned:2ms");
/// ```
impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Granularity::Auto => f.pad("auto"),
            Granularity::Sequential => f.pad("seq"),
            Granularity::MinLen(n) => f.pad(&format!("min:{n}")),
            Granularity::ChunkSize(n) => f.pad(&format!("chunk:{n}")),
            Granularity::Chunks(n) => f.pad(&format!("chunks:{n}")),
            Granularity::Tuned(t) if t == DEFAULT_TARGET => f.pad("tuned"),
            Granularity::Tuned(t) => f.pad(&format!("tuned:{}", DurationText(t))),
        }
    }
}

/// A duration in the largest of `s`, `ms`, `us`, `ns` that writes it as a whole number.
struct DurationText(Duration);

impl fmt::Display for DurationText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0.as_nanos();
        let (div, unit) = [(1_000_000_000, "s"), (1_000_000, "ms"), (1_000, "us")]
            .into_iter()
            .find(|&(div, _)| ns != 0 && ns % div == 0)
            .unwrap_or((1, "ns"));
        write!(f, "{}{unit}", ns / div)
    }
}

/// Reads a policy: `auto`, `seq` (or `sequential`), `min:N`, `chunk:N`, `chunks:N`, `tuned`,
/// or `tuned:D` where `D` is a number with a unit among `ns`, `us` (or `µs`), `ms` and `s`,
/// such as `100us` or `1.5ms`.
///
/// Case and surrounding spaces are ignored. `N` may be 0, read as 1 like everywhere else.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use parkit::granularity::Granularity;
///
/// assert_eq!("seq".parse(), Ok(Granularity::Sequential));
/// assert_eq!("min:64".parse(), Ok(Granularity::MinLen(64)));
/// assert_eq!("tuned".parse(), Ok(Granularity::tuned()));
/// assert_eq!("tuned:1.5ms".parse(), Ok(Granularity::Tuned(Duration::from_micros(1500))));
/// assert!("chunk:".parse::<Granularity>().is_err());
/// ```
///
/// # Errors
///
/// [`ParseGranularityError`] when the text is none of these forms; its message names the text
/// and lists the forms.
impl FromStr for Granularity {
    type Err = ParseGranularityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseGranularityError {
            input: s.to_owned(),
        };
        let text = s.trim().to_ascii_lowercase();
        let (name, arg) = match text.split_once(':') {
            Some((name, arg)) => (name.trim(), Some(arg.trim())),
            None => (text.as_str(), None),
        };
        let count = |arg: Option<&str>| arg.and_then(|a| a.replace('_', "").parse::<usize>().ok());
        let g = match (name, arg) {
            ("auto", None) => Granularity::Auto,
            ("seq" | "sequential", None) => Granularity::Sequential,
            ("tuned", None) => Granularity::tuned(),
            ("tuned", Some(d)) => Granularity::Tuned(parse_duration(d).ok_or_else(err)?),
            ("min", n) => Granularity::MinLen(count(n).ok_or_else(err)?),
            ("chunk", n) => Granularity::ChunkSize(count(n).ok_or_else(err)?),
            ("chunks", n) => Granularity::Chunks(count(n).ok_or_else(err)?),
            _ => return Err(err()),
        };
        Ok(g)
    }
}

/// `100us`, `1.5ms`, `2s`, `750ns`: a non-negative decimal number and a unit.
fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let scale = match unit.trim() {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        _ => return None,
    };
    let ns = number.parse::<f64>().ok()? * scale;
    (ns.is_finite() && ns < u64::MAX as f64).then(|| Duration::from_nanos(ns.round() as u64))
}

/// The error [`Granularity::from_str`] returns for text that names no policy.
///
/// # Examples
///
/// ```
/// use parkit::granularity::Granularity;
///
/// let err = "fast".parse::<Granularity>().unwrap_err();
/// assert_eq!(err.input(), "fast");
/// assert!(err.to_string().contains("chunks:N"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseGranularityError {
    input: String,
}

impl ParseGranularityError {
    /// The text that could not be read.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::granularity::Granularity;
    ///
    /// assert_eq!("min:x".parse::<Granularity>().unwrap_err().input(), "min:x");
    /// ```
    pub fn input(&self) -> &str {
        &self.input
    }
}

impl fmt::Display for ParseGranularityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid granularity '{}': expected auto, seq, min:N, chunk:N, chunks:N, tuned or \
             tuned:DURATION (such as tuned:100us)",
            self.input
        )
    }
}

impl Error for ParseGranularityError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let all = [
            Granularity::Auto,
            Granularity::Sequential,
            Granularity::MinLen(0),
            Granularity::MinLen(64),
            Granularity::ChunkSize(256),
            Granularity::Chunks(8),
            Granularity::tuned(),
            Granularity::Tuned(Duration::ZERO),
            Granularity::Tuned(Duration::from_nanos(1500)),
            Granularity::Tuned(Duration::from_micros(100)),
            Granularity::Tuned(Duration::from_millis(3)),
            Granularity::Tuned(Duration::from_secs(2)),
        ];
        for g in all {
            assert_eq!(g.to_string().parse::<Granularity>(), Ok(g), "{g}");
        }
    }

    #[test]
    fn parse_accepts_variants_and_rejects_junk() {
        assert_eq!(" SEQUENTIAL ".parse(), Ok(Granularity::Sequential));
        assert_eq!("chunk:1_024".parse(), Ok(Granularity::ChunkSize(1024)));
        assert_eq!(
            "tuned:20µs".parse(),
            Ok(Granularity::Tuned(Duration::from_micros(20)))
        );
        for bad in [
            "",
            "fast",
            "auto:3",
            "seq:1",
            "min",
            "min:",
            "min:-1",
            "chunk:x",
            "chunks:1.5",
            "tuned:",
            "tuned:10",
            "tuned:10m",
            "tuned:-1us",
            "tuned:us",
            "tuned:1e99s",
        ] {
            assert!(bad.parse::<Granularity>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn tuned_len_clamps() {
        let us = Duration::from_micros;
        // 1 µs per item, 50 µs target: 50 items.
        assert_eq!(tuned_len(us(50), us(10), 10, 1_000_000, 2), 50);
        // An item costlier than the target is a task of its own.
        assert_eq!(tuned_len(us(50), us(1000), 1, 1_000, 2), 1);
        // A small job still gets one task per thread.
        assert_eq!(tuned_len(us(50), Duration::from_nanos(10), 10, 100, 4), 25);
        // Nothing left, a zero time, or zero threads: still at least 1.
        assert_eq!(tuned_len(us(50), Duration::ZERO, 8, 0, 0), 1);
    }

    #[test]
    fn sample_ignores_one_odd_round() {
        let us = Duration::from_micros;
        let mut s = Sample::default();
        // A first item slowed by a page fault: one round is not enough.
        s.record(1, us(100));
        assert!(!s.done(1000));
        s.record(1, us(1));
        assert!(s.done(1000));
        assert_eq!(s.task_len(us(50), 1_000_000, 2), 50);
        // A preempted last round.
        s.record(2, us(2));
        s.record(4, us(4000));
        assert_eq!(s.items(), 8);
        assert_eq!(s.task_len(us(50), 1_000_000, 2), 50);
        // The cap ends a sample early.
        let mut s = Sample::default();
        s.record(1, Duration::from_nanos(10));
        assert!(s.done(1) && !s.done(2));
    }
}
