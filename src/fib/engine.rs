//! The [`Fibonacci`] engine: a memo cache of pairs (F(m), F(m+1)), a thread pool, and the batch
//! planner that reuses whatever the cache already holds.

use std::fmt;
use std::sync::Arc;

use super::{cost, doubling};
use crate::granularity::Granularity;
use crate::memo::{CacheStats, MemoCache};
use crate::schedule;
use num_bigint::BigUint;

/// A cached pair (F(m), F(m+1)).
type Pair = Arc<(BigUint, BigUint)>;

/// Default memory budget of the engine's cache: 256 MiB.
pub const DEFAULT_CACHE_BYTES: usize = 256 << 20;

/// A Fibonacci engine: computes F(n) for single inputs and whole batches on its own rayon pool,
/// and keeps pairs (F(m), F(m+1)) in a [`MemoCache`] so that later inputs near them are reached
/// by a few additions (or by the addition formula) instead of from scratch.
///
/// This is the book's "central cache": one engine serves many requests, from many threads.
///
/// # Examples
///
/// ```
/// use parkit::fib::Fibonacci;
///
/// let engine = Fibonacci::builder().threads(2).build()?;
/// assert_eq!(engine.get(100).to_string(), "354224848179261915075");
/// let v = engine.batch(&[10, 1, 10, 20]);
/// assert_eq!(v.iter().map(|x| x.to_string()).collect::<Vec<_>>(), ["55", "1", "55", "6765"]);
/// # Ok::<(), parkit::fib::BuildError>(())
/// ```
pub struct Fibonacci {
    cache: MemoCache<u64, Pair>,
    pool: rayon::ThreadPool,
    granularity: Granularity,
}

impl fmt::Debug for Fibonacci {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fibonacci")
            .field("threads", &self.threads())
            .field("cache", &self.cache.stats())
            .finish()
    }
}

/// Configures a [`Fibonacci`] engine.
///
/// # Examples
///
/// ```
/// use parkit::fib::Fibonacci;
///
/// let engine = Fibonacci::builder().threads(1).cache_bytes(1 << 20).build()?;
/// assert_eq!(engine.threads(), 1);
/// # Ok::<(), parkit::fib::BuildError>(())
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct FibonacciBuilder {
    threads: usize,
    cache_bytes: Option<usize>,
    granularity: Granularity,
}

/// The engine's thread pool could not be built.
///
/// # Examples
///
/// ```
/// use parkit::fib::Fibonacci;
///
/// // Building normally succeeds; the error only carries rayon's reason when it does not.
/// assert!(Fibonacci::builder().threads(2).build().is_ok());
/// ```
#[derive(Debug, thiserror::Error)]
#[error("cannot start the thread pool: {0}")]
pub struct BuildError(#[from] rayon::ThreadPoolBuildError);

impl FibonacciBuilder {
    /// Number of worker threads; 0 (the default) means one per core.
    ///
    /// # Examples
    ///
    /// ```
    /// let e = parkit::fib::Fibonacci::builder().threads(3).build()?;
    /// assert_eq!(e.threads(), 3);
    /// # Ok::<(), parkit::fib::BuildError>(())
    /// ```
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Memory budget of the pair cache in bytes (default [`DEFAULT_CACHE_BYTES`]); 0 keeps
    /// nothing between calls.
    ///
    /// # Examples
    ///
    /// ```
    /// let e = parkit::fib::Fibonacci::builder().cache_bytes(0).build()?;
    /// e.get(10_000);
    /// assert_eq!(e.cache_stats().entries, 0);
    /// # Ok::<(), parkit::fib::BuildError>(())
    /// ```
    pub fn cache_bytes(mut self, bytes: usize) -> Self {
        self.cache_bytes = Some(bytes);
        self
    }

    /// How a batch of close values is cut into runs (each a task started by one fast doubling
    /// and continued by additions): [`Granularity::Auto`] and [`Granularity::Tuned`] (the
    /// default) size runs by the measured cost model so every thread gets about four;
    /// `ChunkSize(k)` makes runs of at most k values, `Chunks(k)` about k runs, `MinLen(k)` runs
    /// of at least k values, `Sequential` one run per stretch of close values.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::fib::Fibonacci;
    /// use parkit::granularity::Granularity;
    ///
    /// let e = Fibonacci::builder().granularity(Granularity::ChunkSize(10)).build()?;
    /// let ns: Vec<u64> = (500..600).collect();
    /// assert_eq!(e.batch(&ns)[99], parkit::fib::fib(599));
    /// # Ok::<(), parkit::fib::BuildError>(())
    /// ```
    pub fn granularity(mut self, granularity: Granularity) -> Self {
        self.granularity = granularity;
        self
    }

    /// Builds the engine and its thread pool.
    ///
    /// # Errors
    ///
    /// [`BuildError`] when the operating system refuses to start the threads.
    ///
    /// # Examples
    ///
    /// ```
    /// let e = parkit::fib::Fibonacci::builder().build()?;
    /// assert!(e.threads() >= 1);
    /// # Ok::<(), parkit::fib::BuildError>(())
    /// ```
    pub fn build(self) -> Result<Fibonacci, BuildError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .thread_name(|i| format!("parkit-fib-{i}"))
            .build()?;
        let cache = MemoCache::with_budget(self.cache_bytes.unwrap_or(DEFAULT_CACHE_BYTES))
            .with_weigher(|_, p: &Pair| pair_bytes(p));
        Ok(Fibonacci {
            cache,
            pool,
            granularity: self.granularity,
        })
    }
}

fn pair_bytes(p: &Pair) -> usize {
    let words = |x: &BigUint| x.bits().div_ceil(64) as usize;
    (words(&p.0) + words(&p.1)) * 8
}

impl Default for Fibonacci {
    fn default() -> Self {
        Self::new()
    }
}

/// Where a run of consecutive values starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    /// Fast doubling from scratch.
    Fresh,
    /// A few additions from the cached pair at `m`.
    Step { m: u64 },
    /// The addition formula from the cached pair at `m`.
    Jump { m: u64 },
}

/// A planned task: the distinct values `uniq[range]`, reached one after the other by additions.
#[derive(Clone, Debug)]
struct Segment {
    start: Start,
    range: std::ops::Range<usize>,
    cost: f64,
}

impl Fibonacci {
    /// An engine on one thread per core with the default cache budget.
    ///
    /// # Panics
    ///
    /// Panics if the thread pool cannot be started; use [`Fibonacci::builder`] to handle that.
    ///
    /// # Examples
    ///
    /// ```
    /// let e = parkit::fib::Fibonacci::new();
    /// assert_eq!(e.get(12).to_string(), "144");
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self::builder()
            .build()
            .expect("cannot start the Fibonacci thread pool")
    }

    /// A builder to set the thread count and the cache budget.
    ///
    /// # Examples
    ///
    /// ```
    /// let e = parkit::fib::Fibonacci::builder().threads(2).build()?;
    /// assert_eq!(e.threads(), 2);
    /// # Ok::<(), parkit::fib::BuildError>(())
    /// ```
    pub fn builder() -> FibonacciBuilder {
        FibonacciBuilder::default()
    }

    /// The number of threads in the engine's pool.
    ///
    /// # Examples
    ///
    /// ```
    /// let e = parkit::fib::Fibonacci::builder().threads(2).build()?;
    /// assert_eq!(e.threads(), 2);
    /// # Ok::<(), parkit::fib::BuildError>(())
    /// ```
    #[must_use]
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// The engine's rayon pool: run your own parallel work beside the engine's with
    /// `engine.pool().install(...)` or `spawn`.
    ///
    /// # Examples
    ///
    /// ```
    /// let e = parkit::fib::Fibonacci::builder().threads(2).build()?;
    /// assert_eq!(e.pool().install(rayon::current_num_threads), 2);
    /// # Ok::<(), parkit::fib::BuildError>(())
    /// ```
    #[must_use]
    pub fn pool(&self) -> &rayon::ThreadPool {
        &self.pool
    }

    /// Counters of the pair cache: hits, misses, evictions, entries and bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// let e = parkit::fib::Fibonacci::new();
    /// e.get(50_000);
    /// e.get(50_000);
    /// assert!(e.cache_stats().hits >= 1);
    /// ```
    #[must_use]
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// F(n), reusing a cached pair at or a little below `n` when there is one.
    ///
    /// Locking behaviour: takes the cache's per-key cell for the pair it computes; never holds a
    /// cache shard lock while computing (see [`MemoCache::get_or_compute`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let e = parkit::fib::Fibonacci::new();
    /// assert_eq!(e.get(0).to_string(), "0");
    /// assert_eq!(e.get(93).to_string(), "12200160415121876738");
    /// ```
    #[must_use]
    pub fn get(&self, n: u64) -> BigUint {
        self.batch(&[n]).pop().expect("one input gives one output")
    }

    /// The pair (F(n), F(n+1)), cached for later calls.
    ///
    /// # Examples
    ///
    /// ```
    /// let e = parkit::fib::Fibonacci::new();
    /// let (a, b) = e.pair(20);
    /// assert_eq!((a.to_string(), b.to_string()), ("6765".into(), "10946".into()));
    /// ```
    #[must_use]
    pub fn pair(&self, n: u64) -> (BigUint, BigUint) {
        let p = self
            .pool
            .install(|| self.start_pair(n, self.resolve_start(n, &self.cached_keys())));
        (*p).clone()
    }

    /// F(n) for every `n` in `ns`, in input order.
    ///
    /// Duplicates are computed once; values close together are reached by additions from one
    /// another; cached pairs are reused; the work is cut into runs scheduled largest-first
    /// across the pool. See [`Fibonacci::batch_map`] to turn each value into something smaller
    /// (its decimal text, say) as soon as it is ready, in parallel.
    ///
    /// # Examples
    ///
    /// ```
    /// let e = parkit::fib::Fibonacci::new();
    /// let ns: Vec<u64> = (1000..1010).collect();
    /// let v = e.batch(&ns);
    /// for (i, n) in ns.iter().enumerate() {
    ///     assert_eq!(v[i], parkit::fib::fib(*n));
    /// }
    /// ```
    #[must_use]
    pub fn batch(&self, ns: &[u64]) -> Vec<BigUint> {
        self.batch_map(ns, |_, v| v.clone())
    }

    /// Calls `f(n, &F(n))` for every input, in parallel, and returns the results in input order.
    ///
    /// `f` runs on the engine's pool right where F(n) was produced, so converting to text or
    /// reducing the value happens in parallel and the full values need not all be held at once.
    /// For a duplicated input, `f` is called once per occurrence with the same value.
    ///
    /// # Panics
    ///
    /// A panic in `f` is propagated to the caller (after the other tasks stop).
    ///
    /// # Examples
    ///
    /// ```
    /// let e = parkit::fib::Fibonacci::new();
    /// let lens = e.batch_map(&[100, 10, 100], |_, v| v.to_string().len());
    /// assert_eq!(lens, [21, 2, 21]);
    /// ```
    pub fn batch_map<R, F>(&self, ns: &[u64], f: F) -> Vec<R>
    where
        R: Send,
        F: Fn(u64, &BigUint) -> R + Sync,
    {
        if ns.is_empty() {
            return Vec::new();
        }
        // Positions grouped by value, values sorted.
        let mut order: Vec<usize> = (0..ns.len()).collect();
        order.sort_unstable_by_key(|&i| ns[i]);
        let mut uniq: Vec<u64> = Vec::new();
        let mut first_pos: Vec<usize> = Vec::new(); // uniq[j]'s positions are order[first_pos[j]..first_pos[j+1]]
        for (k, &i) in order.iter().enumerate() {
            if uniq.last() != Some(&ns[i]) {
                uniq.push(ns[i]);
                first_pos.push(k);
            }
        }
        first_pos.push(order.len());
        let plan = self.plan(&uniq);
        // Runs go largest first onto whichever thread frees up (the schedule pattern).
        let parts: Vec<Vec<(usize, R)>> = self.pool.install(|| {
            schedule::par_map_largest_first(
                &plan,
                |seg| seg.cost,
                |seg| {
                    let mut out = Vec::new();
                    self.run_segment(seg, &uniq, |j, v| {
                        for &pos in &order[first_pos[j]..first_pos[j + 1]] {
                            out.push((pos, f(ns[pos], v)));
                        }
                    });
                    out
                },
            )
        });
        let mut slots: Vec<Option<R>> = Vec::with_capacity(ns.len());
        slots.resize_with(ns.len(), || None);
        for (pos, r) in parts.into_iter().flatten() {
            slots[pos] = Some(r);
        }
        slots
            .into_iter()
            .map(|r| r.expect("every input is planned"))
            .collect()
    }

    /// Sorted keys of the cache, for planning.
    fn cached_keys(&self) -> Vec<u64> {
        let mut keys = self.cache.keys();
        keys.sort_unstable();
        keys
    }

    /// The cheapest way to reach (F(n), F(n+1)) given the cached pairs `keys` (sorted).
    fn resolve_start(&self, n: u64, keys: &[u64]) -> Start {
        let below = match keys.binary_search(&n) {
            Ok(_) => return Start::Step { m: n },
            Err(0) => return Start::Fresh,
            Err(i) => keys[i - 1],
        };
        let d = n - below;
        let fresh = cost::pair(n);
        let step = cost::steps(n, d);
        let jump = cost::jump(below, d);
        if step <= fresh && step <= jump {
            Start::Step { m: below }
        } else if jump < fresh {
            Start::Jump { m: below }
        } else {
            Start::Fresh
        }
    }

    /// Cuts the sorted distinct values into runs and picks where each run starts.
    fn plan(&self, uniq: &[u64]) -> Vec<Segment> {
        let keys = self.cached_keys();
        let threads = self.threads().max(1) as f64;
        // Total cost if every value were reached by steps from its predecessor, to size runs so
        // there are enough of them to keep every thread busy.
        let total: f64 = uniq
            .iter()
            .zip(uniq.iter().skip(1))
            .map(|(&a, &b)| cost::steps(b, (b - a).min(64)))
            .sum::<f64>()
            + cost::value(uniq[0]);
        let mut target = (total / (threads * cost::RUNS_PER_THREAD)).max(cost::MIN_RUN);
        // The same Granularity policy as every other pattern: a cap and a floor on run length.
        let (mut max_len, mut min_len) = (usize::MAX, 1);
        match self.granularity {
            Granularity::Sequential => target = f64::INFINITY,
            Granularity::ChunkSize(k) => (target, max_len) = (f64::INFINITY, k.max(1)),
            Granularity::Chunks(k) => {
                (target, max_len) = (f64::INFINITY, uniq.len().div_ceil(k.max(1)));
            }
            Granularity::MinLen(k) => min_len = k.max(1),
            _ => {}
        }
        let mut segs = Vec::new();
        let mut begin = 0;
        let mut acc = 0.0;
        for j in 0..uniq.len() {
            let n = uniq[j];
            if j > begin {
                let gap = n - uniq[j - 1];
                let close = cost::steps(n, gap) <= cost::pair(n);
                let len = j - begin;
                // Cut a run when it is long enough to keep threads busy, but only once its
                // stepping cost pays for the fresh start the next run needs (start <= 1/2).
                let paid = acc >= cost::START_SHARE * cost::pair(n);
                if !close || len >= max_len || (acc >= target && paid && len >= min_len) {
                    segs.push(self.segment(uniq, begin..j, acc, &keys));
                    begin = j;
                    acc = 0.0;
                } else {
                    acc += cost::steps(n, gap);
                }
            }
            acc += cost::value(n);
        }
        segs.push(self.segment(uniq, begin..uniq.len(), acc, &keys));
        segs
    }

    fn segment(
        &self,
        uniq: &[u64],
        range: std::ops::Range<usize>,
        acc: f64,
        keys: &[u64],
    ) -> Segment {
        let n = uniq[range.start];
        let start = self.resolve_start(n, keys);
        let cost = acc
            + match start {
                Start::Fresh => cost::pair(n),
                Start::Step { m } => cost::steps(n, n - m),
                Start::Jump { m } => cost::jump(m, n - m),
            };
        Segment { start, range, cost }
    }

    /// (F(n), F(n+1)) by the planned route, through the cache so concurrent callers share it.
    fn start_pair(&self, n: u64, start: Start) -> Pair {
        self.cache.get_or_compute(n, || {
            let from = |m: u64| self.cache.get(&m);
            let pair = match start {
                Start::Step { m } => from(m).map(|p| {
                    let mut p = (*p).clone();
                    for _ in m..n {
                        doubling::advance(&mut p);
                    }
                    p
                }),
                Start::Jump { m } => from(m).map(|p| doubling::jump((&p.0, &p.1), n - m)),
                Start::Fresh => None,
            };
            // The planned pair may have been evicted meanwhile: fall back to doubling.
            Arc::new(pair.unwrap_or_else(|| doubling::fib_pair(n)))
        })
    }

    fn run_segment(&self, seg: &Segment, uniq: &[u64], mut emit: impl FnMut(usize, &BigUint)) {
        let first = uniq[seg.range.start];
        let start = self.start_pair(first, seg.start);
        let mut cur = (*start).clone();
        drop(start);
        let mut at = first;
        for j in seg.range.clone() {
            while at < uniq[j] {
                doubling::advance(&mut cur);
                at += 1;
            }
            emit(j, &cur.0);
        }
        // Leave the end of the run in the cache: later inputs above it start here.
        if seg.range.len() > 1 {
            self.cache.insert(at, Arc::new(cur));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fib::fib;

    #[test]
    fn batch_is_in_input_order_with_duplicates() {
        let e = Fibonacci::builder().threads(2).build().unwrap();
        let ns = [5u64, 300, 5, 0, 1, 2000, 299, 301, 100_000, 300];
        let got = e.batch(&ns);
        for (i, &n) in ns.iter().enumerate() {
            assert_eq!(got[i], fib(n), "position {i}, n = {n}");
        }
    }

    #[test]
    fn later_batches_reuse_cached_pairs() {
        let e = Fibonacci::builder().threads(2).build().unwrap();
        let first: Vec<u64> = (100_000..100_200).collect();
        assert_eq!(e.batch(&first)[199], fib(100_199));
        let before = e.cache_stats();
        // A value just above the end of the cached run is reached by steps from it.
        let keys = e.cached_keys();
        assert!(
            keys.contains(&100_199),
            "the end of a run is cached: {keys:?}"
        );
        assert!(matches!(
            e.resolve_start(100_250, &keys),
            Start::Step { m: 100_199 }
        ));
        assert_eq!(e.get(100_250), fib(100_250));
        assert!(e.cache_stats().hits > before.hits);
    }

    #[test]
    fn jump_is_planned_for_moderate_gaps_and_is_exact() {
        let e = Fibonacci::builder().threads(2).build().unwrap();
        let _ = e.pair(1_000_000);
        let keys = e.cached_keys();
        let n = 1_000_000 + 5_000;
        assert!(matches!(
            e.resolve_start(n, &keys),
            Start::Jump { m: 1_000_000 }
        ));
        assert_eq!(e.get(n), fib(n));
    }

    #[test]
    fn dense_batch_is_cut_into_enough_runs() {
        let e = Fibonacci::builder().threads(2).build().unwrap();
        let ns: Vec<u64> = (100_000..102_000).collect();
        let plan = e.plan(&ns);
        assert!(plan.len() >= 4 && plan.len() <= 64, "{} runs", plan.len());
        let covered: usize = plan.iter().map(|s| s.range.len()).sum();
        assert_eq!(covered, ns.len());
        for (g, runs) in [
            (Granularity::Sequential, 1..=1),
            (Granularity::ChunkSize(100), 20..=20),
            (Granularity::Chunks(7), 7..=7),
            (Granularity::MinLen(1000), 1..=2),
        ] {
            let e = Fibonacci::builder()
                .threads(2)
                .granularity(g)
                .build()
                .unwrap();
            let plan = e.plan(&ns);
            assert!(runs.contains(&plan.len()), "{g:?}: {} runs", plan.len());
            assert_eq!(plan.iter().map(|s| s.range.len()).sum::<usize>(), ns.len());
            assert_eq!(e.batch(&ns)[1234], fib(101_234));
        }
    }

    #[test]
    fn zero_budget_cache_still_computes() {
        let e = Fibonacci::builder()
            .threads(1)
            .cache_bytes(0)
            .build()
            .unwrap();
        let ns: Vec<u64> = (5000..5100).chain([1, 7, 5050]).collect();
        let got = e.batch(&ns);
        for (i, &n) in ns.iter().enumerate() {
            assert_eq!(got[i], fib(n));
        }
    }
}
