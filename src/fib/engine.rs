//! The [`Fibonacci`] engine: a memo cache of pairs (F(m), F(m+1)), a thread pool, and the batch
//! planner that reuses whatever the cache already holds.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use super::number::FibNumber;
use super::number::sealed::{Base, Cached};
use super::{STEP_GAP, cost, doubling};
use crate::decimal::DecNat;
use crate::granularity::Granularity;
use crate::memo::{CacheStats, MemoCache};
use crate::schedule;
use num_bigint::BigUint;

/// A cached pair (F(m), F(m+1)) in the number type `N`.
type Pair<N> = Arc<(N, N)>;

/// The engine's one cache: pairs of either type, keyed by type and m, under one budget.
type Cache = MemoCache<(Base, u64), Cached>;

/// The batch planner of one number type, over the engine's shared cache.
struct Planner<'a, N> {
    cache: &'a Cache,
    number: PhantomData<fn() -> N>,
}

/// A computation stopped by its caller (see [`Fibonacci::try_pair`]).
///
/// # Examples
///
/// ```
/// use parkit::fib::Cancelled;
///
/// assert_eq!(Cancelled.to_string(), "the computation was cancelled");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the computation was cancelled")]
pub struct Cancelled;

/// A pair (F(n), F(n+1)) in base 10^19, shared with the engine's cache (no copy is made), as
/// [`Fibonacci::try_pair`] and [`Fibonacci::cached_pair`] give it.
///
/// # Examples
///
/// ```
/// use parkit::decimal::DecNat;
/// use parkit::fib::{DecimalPair, Fibonacci};
///
/// let engine = Fibonacci::builder().threads(1).build()?;
/// let pair: DecimalPair = engine.try_pair::<DecNat>(1000, &|| false)?;
/// assert_eq!(pair.0.to_string(), parkit::fib::fib(1000).to_string());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type DecimalPair = Arc<(DecNat, DecNat)>;

/// Below this n, [`Fibonacci::try_pair`] computes on the caller's thread: the work
/// (tens of microseconds) costs less than a trip through the pool, and it must not wait in the
/// pool's queue behind a heavy computation.
const INLINE_MAX_N: u64 = 30_000;

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
    cache: Cache,
    pool: rayon::ThreadPool,
    granularity: Granularity,
}

impl fmt::Debug for Fibonacci {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fibonacci")
            .field("threads", &self.threads())
            .field("cache", &self.cache_stats())
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
    /// nothing between calls. One budget for the whole engine: binary and decimal pairs share
    /// it.
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
    /// and continued by additions): [`Granularity::Auto`] (the default) sizes runs by the
    /// planner's cost model so every thread gets about four; `Tuned(t)` makes runs of about
    /// `t` of estimated work each (the cost model's nanoseconds on one core of the development
    /// machine: the planner estimates, it does not time); `ChunkSize(k)` makes runs of at most
    /// k values, `Chunks(k)` about k runs, `MinLen(k)` runs of at least k values, `Sequential`
    /// one run per stretch of close values. A run is never cut where the next value is more
    /// than [`STEP_GAP`](super::STEP_GAP) away and a fresh start is cheaper.
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
        let budget = self.cache_bytes.unwrap_or(DEFAULT_CACHE_BYTES);
        Ok(Fibonacci {
            cache: MemoCache::with_budget(budget).with_weigher(|_, c: &Cached| match c {
                Cached::Binary(p) => p.0.heap_bytes() + p.1.heap_bytes(),
                Cached::Decimal(p) => p.0.heap_bytes() + p.1.heap_bytes(),
            }),
            pool,
            granularity: self.granularity,
        })
    }
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

/// The largest n a [`Fibonacci`] engine computes in full, in either base: 10^12.
///
/// F(10^12) has about 2.09 * 10^11 digits (87 GB in binary). Past it, the decimal NTT has no
/// transform for the products (see [`crate::decimal`]), and no machine holds the value anyway;
/// the engine refuses such n up front (a panic naming n and the size) instead of running for
/// hours or failing deep inside a multiplication. [`fib_mod`](super::fib_mod),
/// [`last_digits`](super::last_digits) and [`digit_count`](super::digit_count) work for every
/// `u64` n.
///
/// # Examples
///
/// ```
/// use parkit::fib::{Fibonacci, MAX_N, value_bytes};
///
/// // A caller checks its inputs before asking the engine.
/// let n = u64::MAX;
/// assert!(n > MAX_N);
/// assert!(value_bytes(MAX_N) > 80_000_000_000);
/// assert!(Fibonacci::check_size(n).unwrap_err().contains("digits"));
/// assert!(Fibonacci::check_size(MAX_N).is_ok());
/// ```
pub const MAX_N: u64 = 1_000_000_000_000;

impl Fibonacci {
    /// Whether the engine computes F(n) in full: `Ok` for `n <= MAX_N`, otherwise the message
    /// its methods panic with, naming n and the size of F(n).
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::fib::Fibonacci;
    ///
    /// assert!(Fibonacci::check_size(1_000_000).is_ok());
    /// let why = Fibonacci::check_size(u64::MAX).unwrap_err();
    /// assert!(why.starts_with("F(18446744073709551615) has about 3.86e18 digits"), "{why}");
    /// ```
    ///
    /// # Errors
    ///
    /// The message above when `n > MAX_N`.
    pub fn check_size(n: u64) -> Result<(), String> {
        if n <= MAX_N {
            return Ok(());
        }
        Err(format!(
            "F({n}) has about {:.2e} digits ({:.2e} bytes in binary), past the largest value the \
             Fibonacci engine computes, F({MAX_N}); fib_mod, last_digits and digit_count work \
             for any n",
            super::digit_count(n) as f64,
            super::value_bytes(n) as f64,
        ))
    }

    /// Panics with [`Fibonacci::check_size`]'s message for the largest of `ns`, if too large.
    fn guard(ns: &[u64]) {
        if let Some(&n) = ns.iter().max() {
            if let Err(why) = Self::check_size(n) {
                panic!("{why}");
            }
        }
    }

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

    /// Counters of the pair cache: hits, misses, evictions, entries and bytes, binary and
    /// decimal pairs together (one cache, one budget).
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
    /// # Examples
    ///
    /// ```
    /// let e = parkit::fib::Fibonacci::new();
    /// assert_eq!(e.get(0).to_string(), "0");
    /// assert_eq!(e.get(93).to_string(), "12200160415121876738");
    /// ```
    ///
    /// # Panics
    ///
    /// If an input is past [`MAX_N`] (see [`Fibonacci::check_size`]), before any work starts.
    ///
    /// # Locking
    ///
    /// Takes the cache's per-key cell for the pair it computes; never holds a cache shard lock
    /// while computing (see [`MemoCache::get_or_compute`]). Every method that computes (`get`,
    /// `pair`, `batch`, `batch_map`, ...) blocks its caller until its values are ready; called
    /// from inside the engine's own pool, a waiter computes a pair in progress itself rather
    /// than wait for it.
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
    ///
    /// # Panics
    ///
    /// If `n > MAX_N` ([`MAX_N`]): F(n) is too large to compute (see [`Fibonacci::check_size`]).
    #[must_use]
    pub fn pair(&self, n: u64) -> (BigUint, BigUint) {
        Self::guard(&[n]);
        let b = self.planner::<BigUint>();
        let p = self
            .pool
            .install(|| b.start_pair(n, b.resolve_start(n, &b.cached_keys())));
        (*p).clone()
    }

    /// The planner of the number type `N`, over the engine's cache.
    fn planner<N: FibNumber>(&self) -> Planner<'_, N> {
        Planner {
            cache: &self.cache,
            number: PhantomData,
        }
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
    ///
    /// # Panics
    ///
    /// If an input is past [`MAX_N`] (see [`Fibonacci::check_size`]), before any work starts.
    #[must_use]
    pub fn batch(&self, ns: &[u64]) -> Vec<BigUint> {
        self.batch_map(ns, |_, v: &BigUint| v.clone())
    }

    /// Calls `f(n, &F(n))` for every input, in parallel, and returns the results in input order,
    /// with F(n) in the number type `N` that `f` takes: [`BigUint`], or [`DecNat`] (base 10^19,
    /// whose text is a linear copy).
    ///
    /// `f` runs on the engine's pool right where F(n) was produced, so converting to text or
    /// reducing the value happens in parallel and the full values need not all be held at once.
    /// For a duplicated input, `f` is called once per occurrence with the same value. The plan
    /// is the same in either type: duplicates once, neighbours by additions, cached pairs of
    /// that type reused by stepping or by the addition formula, runs largest-first.
    ///
    /// # Panics
    ///
    /// If an input is past [`MAX_N`] (before any work starts: see [`Fibonacci::check_size`]).
    /// A panic in `f` is propagated to the caller (after the other tasks stop).
    ///
    /// # Examples
    ///
    /// ```
    /// use num_bigint::BigUint;
    /// use parkit::decimal::DecNat;
    ///
    /// let e = parkit::fib::Fibonacci::new();
    /// let lens = e.batch_map(&[100, 10, 100], |_, v: &BigUint| v.to_string().len());
    /// assert_eq!(lens, [21, 2, 21]);
    /// let digits = e.batch_map(&[100, 10, 100], |_, v: &DecNat| v.digit_count());
    /// assert_eq!(digits, [21, 2, 21]);
    /// ```
    pub fn batch_map<N, R, F>(&self, ns: &[u64], f: F) -> Vec<R>
    where
        N: FibNumber,
        R: Send,
        F: Fn(u64, &N) -> R + Sync,
    {
        Self::guard(ns);
        self.planner::<N>()
            .batch_map(&self.pool, self.granularity, ns, f)
    }

    /// F(n) in base 10^19 ([`DecNat`]): printing it is a linear copy. [`Fibonacci::get`] in
    /// the other number type, from the same cache (which keeps the two types' pairs apart).
    ///
    /// # Examples
    ///
    /// ```
    /// let e = parkit::fib::Fibonacci::new();
    /// assert_eq!(e.get_decimal(100).to_string(), "354224848179261915075");
    /// ```
    ///
    /// # Panics
    ///
    /// If an input is past [`MAX_N`] (see [`Fibonacci::check_size`]), before any work starts.
    #[must_use]
    pub fn get_decimal(&self, n: u64) -> DecNat {
        self.batch_decimal(&[n])
            .pop()
            .expect("one input gives one output")
    }

    /// F(n) in base 10^19 for every `n` in `ns`, in input order: [`Fibonacci::batch`] in the
    /// other number type, planned the same way (duplicates once, neighbours by additions,
    /// cached decimal pairs reused by stepping or by the addition formula, runs largest-first),
    /// so a batch never pays a binary-to-decimal conversion.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::fib::{fib, Fibonacci};
    ///
    /// let e = Fibonacci::new();
    /// let ns = [2000u64, 10, 2001, 10];
    /// let v = e.batch_decimal(&ns);
    /// for (x, &n) in v.iter().zip(&ns) {
    ///     assert_eq!(x.to_string(), fib(n).to_string());
    /// }
    /// ```
    ///
    /// # Panics
    ///
    /// If an input is past [`MAX_N`] (see [`Fibonacci::check_size`]), before any work starts.
    #[must_use]
    pub fn batch_decimal(&self, ns: &[u64]) -> Vec<DecNat> {
        self.batch_map(ns, |_, v: &DecNat| v.clone())
    }
}

impl Fibonacci {
    /// Calls `f(n, text)` with the last `k` digits of F(n) for every n of `ns`, in input order,
    /// leading zeros kept, as [`last_digits`](super::last_digits) gives them: a value with at
    /// most `k` digits is given whole.
    ///
    /// Whole values go through the engine in base 10^19 ([`batch_map`](Self::batch_map):
    /// parallel, cached, neighbours by additions) before the first call; the others are
    /// residues mod `10^k`, walked through close values by additions
    /// ([`STEP_GAP`](super::STEP_GAP)) on the calling thread as `f` is called, so they never
    /// build F(n) and work for every `u64` n.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::fib::{Fibonacci, last_digits};
    ///
    /// let e = Fibonacci::builder().threads(2).build()?;
    /// let ns = [10u64, 1_000_000_000_000, 1_000_000_000_001, 90];
    /// let mut got = Vec::new();
    /// e.for_each_last_digits(&ns, 12, |n, text| got.push((n, text.to_string())));
    /// let want: Vec<(u64, String)> = ns.iter().map(|&n| (n, last_digits(n, 12))).collect();
    /// assert_eq!(got, want);
    /// assert_eq!(got[0].1, "55");
    /// # Ok::<(), parkit::fib::BuildError>(())
    /// ```
    pub fn for_each_last_digits(&self, ns: &[u64], k: u32, mut f: impl FnMut(u64, &str)) {
        let last_whole = super::steps::last_whole(k);
        let short: Vec<u64> = ns.iter().copied().filter(|&n| n <= last_whole).collect();
        let mut whole = if short.is_empty() {
            Vec::new()
        } else {
            self.batch_map(&short, |_, v: &DecNat| v.to_string())
        }
        .into_iter();
        super::steps::for_each_last_digits(ns, k, last_whole, |n, tail| match tail {
            Some(text) => f(n, &text),
            None => f(n, &whole.next().expect("one whole value per short n")),
        });
    }
}

impl Fibonacci {
    /// The pair (F(n), F(n+1)) in the number type `N` if the cache holds it, counting a hit;
    /// `None` (counting nothing) otherwise. Never computes, never enters the pool: a server
    /// answers cached values with this on any thread.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::decimal::DecNat;
    /// use parkit::fib::Fibonacci;
    ///
    /// let engine = Fibonacci::builder().threads(1).build()?;
    /// assert!(engine.cached_pair::<DecNat>(100_000).is_none());
    /// let _ = engine.get_decimal(100_000);
    /// let pair = engine.cached_pair::<DecNat>(100_000).expect("cached by get_decimal");
    /// assert_eq!(pair.0, engine.get_decimal(100_000));
    /// // The cache keeps the two number types apart.
    /// assert!(engine.cached_pair::<num_bigint::BigUint>(100_000).is_none());
    /// # Ok::<(), parkit::fib::BuildError>(())
    /// ```
    ///
    /// # Locking
    ///
    /// A cache shard guard and the key's slot mutex, briefly. Never waits on a computation.
    #[must_use]
    pub fn cached_pair<N: FibNumber>(&self, n: u64) -> Option<Arc<(N, N)>> {
        self.cache.hit(&(N::BASE, n)).and_then(|c| N::unwrap(&c))
    }

    /// Puts a pair (F(n), F(n+1)) obtained elsewhere (a shared cache, a file) into the engine's
    /// cache, so that later calls find it as a hit and values near it are reached from it. The
    /// caller vouches that `pair` really is (F(n), F(n+1)): the engine does not check it. A
    /// pair larger than the cache's whole budget is not kept.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use parkit::decimal::DecNat;
    /// use parkit::fib::Fibonacci;
    ///
    /// let source = Fibonacci::builder().threads(1).build()?;
    /// let pair = source.try_pair::<DecNat>(50_000, &|| false)?;
    ///
    /// let engine = Fibonacci::builder().threads(1).build()?;
    /// engine.insert_pair(50_000, Arc::clone(&pair));
    /// let cached = engine.cached_pair::<DecNat>(50_000).expect("inserted");
    /// assert!(Arc::ptr_eq(&cached, &pair));
    /// assert_eq!(engine.cache_stats().misses, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Locking
    ///
    /// Like [`MemoCache::insert`]: a shard guard briefly, never waits on a computation.
    pub fn insert_pair<N: FibNumber>(&self, n: u64, pair: Arc<(N, N)>) {
        self.cache.insert((N::BASE, n), N::wrap(pair));
    }

    /// The pair (F(n), F(n+1)) in the number type `N`, from the cache or computed (and
    /// cached), unless `cancelled()` returns `true` first.
    ///
    /// Like [`batch_map`](Self::batch_map), a value near a cached pair is reached by steps or
    /// by the addition formula; a fresh one by fast doubling on the engine's pool, which asks
    /// `cancelled` between two doubling steps. Small n (below 30,000) are computed on the
    /// calling thread. Callers asking for the same n at once share one computation when they
    /// are not on the engine's pool; a cancelled computation stores nothing, and the others
    /// waiting on it compute it themselves.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::decimal::DecNat;
    /// use parkit::fib::{Cancelled, Fibonacci};
    ///
    /// let engine = Fibonacci::builder().threads(2).build()?;
    /// let pair = engine.try_pair::<DecNat>(200_000, &|| false)?;
    /// assert_eq!(pair.1, engine.get_decimal(200_001));
    /// assert_eq!(engine.try_pair::<DecNat>(300_000, &|| true), Err(Cancelled));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Cancelled`] when `cancelled()` returned `true` before the pair was ready.
    ///
    /// # Panics
    ///
    /// If `n` is past [`MAX_N`], and on memory exhaustion.
    ///
    /// # Locking
    ///
    /// Blocks the calling thread until the pair is ready (on the pool for large n), or waits
    /// on another caller computing the same n. Do not call it from async code directly: use a
    /// blocking thread.
    pub fn try_pair<N: FibNumber>(
        &self,
        n: u64,
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Result<Arc<(N, N)>, Cancelled> {
        Self::guard(&[n]);
        let d = self.planner::<N>();
        if n < INLINE_MAX_N {
            return d.try_get_or_compute(n, || Ok(Arc::new(doubling::fib_pair(n))));
        }
        // The cache is asked from the caller's thread, so that a second caller waits for the
        // first one's result there, off the pool; only the arithmetic runs on the pool.
        d.try_get_or_compute(n, || {
            let start = d.resolve_start(n, &d.cached_keys());
            self.pool
                .install(|| match d.reach(n, start) {
                    Some(pair) => Some(pair),
                    None => doubling::fib_pair_until(n, cancelled),
                })
                .map(Arc::new)
                .ok_or(Cancelled)
        })
    }
}

impl<N: FibNumber> Planner<'_, N> {
    /// The cached pair at `m`, counting a hit or a miss.
    fn get(&self, m: u64) -> Option<Pair<N>> {
        self.cache.get(&(N::BASE, m)).and_then(|c| N::unwrap(&c))
    }

    /// Caches the pair at `m`.
    fn insert(&self, m: u64, pair: Pair<N>) {
        self.cache.insert((N::BASE, m), N::wrap(pair));
    }

    /// The pair at `n` from the cache, or computed once by `f` however many ask at once.
    fn get_or_compute(&self, n: u64, f: impl FnOnce() -> Pair<N>) -> Pair<N> {
        let cached = self.cache.get_or_compute((N::BASE, n), || N::wrap(f()));
        N::unwrap(&cached).expect("a key holds its own type")
    }

    /// [`Planner::get_or_compute`] for a computation that can fail.
    fn try_get_or_compute<E>(
        &self,
        n: u64,
        f: impl FnOnce() -> Result<Pair<N>, E>,
    ) -> Result<Pair<N>, E> {
        let cached = self
            .cache
            .try_get_or_compute((N::BASE, n), || f().map(N::wrap))?;
        Ok(N::unwrap(&cached).expect("a key holds its own type"))
    }

    /// The batch planner: see [`Fibonacci::batch_map`].
    fn batch_map<T, F>(
        &self,
        pool: &rayon::ThreadPool,
        granularity: Granularity,
        ns: &[u64],
        f: F,
    ) -> Vec<T>
    where
        T: Send,
        F: Fn(u64, &N) -> T + Sync,
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
        let plan = self.plan(&uniq, pool.current_num_threads(), granularity);
        // Runs go largest first onto whichever thread frees up (the schedule pattern).
        let parts: Vec<Vec<(usize, T)>> = pool.install(|| {
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
        let mut slots: Vec<Option<T>> = Vec::with_capacity(ns.len());
        slots.resize_with(ns.len(), || None);
        for (pos, r) in parts.into_iter().flatten() {
            slots[pos] = Some(r);
        }
        slots
            .into_iter()
            .map(|r| r.expect("every input is planned"))
            .collect()
    }

    /// Sorted keys of this type's pairs in the cache, for planning.
    fn cached_keys(&self) -> Vec<u64> {
        let mut keys: Vec<u64> = self
            .cache
            .keys()
            .into_iter()
            .filter(|&(base, _)| base == N::BASE)
            .map(|(_, m)| m)
            .collect();
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
    fn plan(&self, uniq: &[u64], threads: usize, granularity: Granularity) -> Vec<Segment> {
        let keys = self.cached_keys();
        let threads = threads.max(1) as f64;
        // Total cost if every value were reached by steps from its predecessor, to size runs so
        // there are enough of them to keep every thread busy.
        let total: f64 = uniq
            .iter()
            .zip(uniq.iter().skip(1))
            .map(|(&a, &b)| cost::steps(b, (b - a).min(STEP_GAP)))
            .sum::<f64>()
            + cost::value(uniq[0]);
        let mut target = (total / (threads * cost::RUNS_PER_THREAD)).max(cost::MIN_RUN);
        // The same Granularity policy as every other pattern: a cap and a floor on run length.
        let (mut max_len, mut min_len) = (usize::MAX, 1);
        match granularity {
            Granularity::Sequential => target = f64::INFINITY,
            Granularity::ChunkSize(k) => (target, max_len) = (f64::INFINITY, k.max(1)),
            Granularity::Chunks(k) => {
                (target, max_len) = (f64::INFINITY, uniq.len().div_ceil(k.max(1)));
            }
            Granularity::MinLen(k) => min_len = k.max(1),
            // The cost model's estimate of a run's work, in nanoseconds on one core.
            Granularity::Tuned(t) => target = (t.as_nanos() as f64).max(cost::MIN_RUN),
            Granularity::Auto => {}
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
    fn start_pair(&self, n: u64, start: Start) -> Pair<N> {
        self.get_or_compute(n, || {
            // The planned pair may have been evicted meanwhile: fall back to doubling.
            Arc::new(
                self.reach(n, start)
                    .unwrap_or_else(|| doubling::fib_pair(n)),
            )
        })
    }

    /// The pair at `n` from the cached pair `start` names (by steps or a jump); `None` for a
    /// fresh start or when that pair has left the cache.
    fn reach(&self, n: u64, start: Start) -> Option<(N, N)> {
        let from = |m: u64| self.get(m);
        match start {
            Start::Step { m } => from(m).map(|p| {
                let mut p = (*p).clone();
                for _ in m..n {
                    doubling::advance(&mut p);
                }
                p
            }),
            Start::Jump { m } => from(m).map(|p| doubling::jump((&p.0, &p.1), n - m)),
            Start::Fresh => None,
        }
    }

    /// Whether the cache could keep the pair at `n` (about `2 * 0.087 n` bytes in either base).
    fn could_keep(&self, n: u64) -> bool {
        let pair_bytes = 2 * (super::digit_count(n) / 19 + 1) * 8;
        self.cache
            .budget()
            .is_none_or(|budget| pair_bytes <= budget as u64)
    }

    fn run_segment(&self, seg: &Segment, uniq: &[u64], mut emit: impl FnMut(usize, &N)) {
        let first = uniq[seg.range.start];
        if seg.range.len() == 1
            && matches!(seg.start, Start::Fresh)
            && !self.cache.contains_key(&(N::BASE, first))
            && !self.could_keep(first)
        {
            // A lone value whose pair the cache could not keep: F(n) alone, the last doubling
            // step one product instead of two squarings (a quarter fewer transforms there, an
            // eighth of the whole). It bypasses the cache, so two callers asking for this n at
            // the same moment compute it twice (only values the cache could not hold anyway;
            // `fibo serve`'s hub still merges identical requests).
            emit(seg.range.start, &doubling::fib::<N>(first));
            return;
        }
        let start = self.start_pair(first, seg.start);
        if seg.range.len() == 1 {
            // Nothing to step: no copy of a possibly huge pair.
            emit(seg.range.start, &start.0);
            return;
        }
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
            self.insert(at, Arc::new(cur));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fib::fib;

    #[test]
    fn values_past_max_n_are_refused_up_front_in_both_bases() {
        // Regression: batch(&[u64::MAX]) and pair(u64::MAX) ran for ever (1.2 GB and counting),
        // batch_decimal(&[u64::MAX]) panicked deep in the NTT.
        let e = Fibonacci::builder().threads(2).build().unwrap();
        type Call = Box<dyn Fn(&Fibonacci)>;
        let calls: [(&str, Call); 6] = [
            ("batch", Box::new(|e| drop(e.batch(&[5, u64::MAX])))),
            ("pair", Box::new(|e| drop(e.pair(u64::MAX)))),
            ("get", Box::new(|e| drop(e.get(MAX_N + 1)))),
            (
                "batch_decimal",
                Box::new(|e| drop(e.batch_decimal(&[u64::MAX]))),
            ),
            ("get_decimal", Box::new(|e| drop(e.get_decimal(MAX_N + 1)))),
            (
                "batch_map",
                Box::new(|e| drop(e.batch_map(&[u64::MAX - 1], |_, _: &DecNat| ()))),
            ),
        ];
        for (name, call) in calls {
            let started = std::time::Instant::now();
            let payload =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call(&e))).unwrap_err();
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_default();
            assert!(msg.contains("past the largest value"), "{name}: {msg:?}");
            assert!(
                msg.contains("digits") && msg.contains("bytes"),
                "{name}: {msg}"
            );
            assert!(
                started.elapsed().as_secs() < 5,
                "{name} worked before refusing"
            );
        }
        assert_eq!(
            Fibonacci::check_size(u64::MAX),
            Fibonacci::check_size(u64::MAX),
        );
        assert!(Fibonacci::check_size(MAX_N).is_ok());
        // The engine still works afterwards.
        assert_eq!(e.get(10).to_string(), "55");
    }

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
        let keys = e.planner::<BigUint>().cached_keys();
        assert!(
            keys.contains(&100_199),
            "the end of a run is cached: {keys:?}"
        );
        assert!(matches!(
            e.planner::<BigUint>().resolve_start(100_250, &keys),
            Start::Step { m: 100_199 }
        ));
        assert_eq!(e.get(100_250), fib(100_250));
        assert!(e.cache_stats().hits > before.hits);
    }

    #[test]
    fn jump_is_planned_for_moderate_gaps_and_is_exact() {
        let e = Fibonacci::builder().threads(2).build().unwrap();
        let _ = e.pair(1_000_000);
        let keys = e.planner::<BigUint>().cached_keys();
        let n = 1_000_000 + 5_000;
        assert!(matches!(
            e.planner::<BigUint>().resolve_start(n, &keys),
            Start::Jump { m: 1_000_000 }
        ));
        assert_eq!(e.get(n), fib(n));
    }

    #[test]
    fn dense_batch_is_cut_into_enough_runs() {
        let e = Fibonacci::builder().threads(2).build().unwrap();
        let ns: Vec<u64> = (100_000..102_000).collect();
        let plan = e.planner::<BigUint>().plan(&ns, e.threads(), e.granularity);
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
            let plan = e.planner::<BigUint>().plan(&ns, e.threads(), e.granularity);
            assert!(runs.contains(&plan.len()), "{g:?}: {} runs", plan.len());
            assert_eq!(plan.iter().map(|s| s.range.len()).sum::<usize>(), ns.len());
            assert_eq!(e.batch(&ns)[1234], fib(101_234));
        }
    }

    #[test]
    fn a_lone_value_the_cache_cannot_keep_is_computed_alone_and_exact() {
        // With no room for the pair, a single fresh n is F(n) by itself (the last doubling step
        // one product); with room, its pair is computed and kept. Both exact, in both bases.
        let (mut a, mut b) = (BigUint::from(0u32), BigUint::from(1u32));
        let mut by_iteration = std::collections::HashMap::new();
        for k in 0..=123_457u64 {
            if [40_000, 40_001, 123_457].contains(&k) {
                by_iteration.insert(k, a.clone());
            }
            let c = &a + &b;
            a = std::mem::replace(&mut b, c);
        }
        for n in [40_000u64, 40_001, 123_457] {
            let want = by_iteration[&n].clone();
            let none = Fibonacci::builder()
                .threads(2)
                .cache_bytes(0)
                .build()
                .unwrap();
            assert_eq!(none.batch_decimal(&[n])[0].to_string(), want.to_string());
            assert_eq!(none.batch(&[n])[0], want);
            assert!(none.planner::<DecNat>().cached_keys().is_empty());
            assert!(none.planner::<BigUint>().cached_keys().is_empty());
            let room = Fibonacci::builder().threads(2).build().unwrap();
            assert_eq!(room.batch_decimal(&[n])[0].to_string(), want.to_string());
            assert_eq!(room.planner::<DecNat>().cached_keys(), vec![n]);
        }
    }

    #[test]
    fn decimal_batches_match_binary_and_reuse_their_cache() {
        let e = Fibonacci::builder().threads(2).build().unwrap();
        let ns: Vec<u64> = [5u64, 300, 5, 0, 1, 2000, 299, 301, 100_000, 300]
            .into_iter()
            .chain(50_000..50_300)
            .collect();
        let text = |v: &[DecNat]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        let want: Vec<String> = ns.iter().map(|&n| fib(n).to_string()).collect();
        assert_eq!(text(&e.batch_decimal(&ns)), want);
        // Above a cached decimal run: a step; further up: a jump; both exact.
        let keys = e.planner::<DecNat>().cached_keys();
        assert!(keys.contains(&50_299), "{keys:?}");
        assert!(matches!(
            e.planner::<DecNat>().resolve_start(50_320, &keys),
            Start::Step { m: 50_299 }
        ));
        let _ = e.get_decimal(1_000_000);
        let keys = e.planner::<DecNat>().cached_keys();
        assert!(matches!(
            e.planner::<DecNat>().resolve_start(1_005_000, &keys),
            Start::Jump { m: 1_000_000 }
        ));
        let before = e.cache_stats();
        let later = [50_320u64, 1_005_000, 1_000_001];
        let got = text(&e.batch_decimal(&later));
        for (g, &n) in got.iter().zip(&later) {
            assert_eq!(*g, fib(n).to_string(), "n = {n}");
        }
        assert!(e.cache_stats().hits > before.hits);
        // The two number types share one cache but never each other's pairs.
        assert!(e.planner::<BigUint>().cached_keys().is_empty());
        assert!(e.cached_pair::<BigUint>(50_299).is_none());
    }

    #[test]
    fn both_number_types_share_one_budget() {
        // Regression: each type had a cache of the full budget, so the engine could hold twice
        // what the user allowed.
        let budget = 200_000;
        let e = Fibonacci::builder()
            .threads(2)
            .cache_bytes(budget)
            .build()
            .unwrap();
        // The largest pair here weighs about 75 kB: the cache may pass its budget by one entry
        // for a moment, before it evicts.
        let largest = 2 * (crate::fib::value_bytes(420_000) as usize + 64);
        for n in (0..40u64).map(|i| 100_000 + i * 7_919) {
            let _ = e.get(n);
            let _ = e.get_decimal(n);
            let stats = e.cache_stats();
            assert!(stats.bytes <= budget, "n = {n}: {stats:?}");
        }
        let stats = e.cache_stats();
        assert!(stats.peak_bytes <= budget + largest, "{stats:?}");
        assert!(stats.evictions > 0, "{stats:?}");
        // Both types live in it side by side.
        let last = 100_000 + 39 * 7_919;
        let _ = e.pair(90_000);
        assert!(e.cached_pair::<BigUint>(90_000).is_some());
        assert!(e.cached_pair::<DecNat>(last).is_some());
        assert!(e.cached_pair::<DecNat>(90_000).is_none());
    }

    #[test]
    fn tuned_sets_the_run_length_by_estimated_work() {
        // Regression: the planner ignored Tuned, so `--granularity tuned:2ms` was `auto`.
        let ns: Vec<u64> = (100_000..102_000).collect();
        let runs = |g| {
            let e = Fibonacci::builder()
                .threads(2)
                .granularity(g)
                .build()
                .unwrap();
            e.planner::<BigUint>().plan(&ns, 2, g).len()
        };
        let fine = runs(Granularity::Tuned(std::time::Duration::from_micros(100)));
        let coarse = runs(Granularity::Tuned(std::time::Duration::from_millis(5)));
        let auto = runs(Granularity::Auto);
        assert!(fine > coarse * 4, "fine {fine}, coarse {coarse}");
        assert!(fine != auto || coarse != auto, "Tuned plans like Auto");
        let e = Fibonacci::builder()
            .threads(2)
            .granularity(Granularity::Tuned(std::time::Duration::from_micros(100)))
            .build()
            .unwrap();
        assert_eq!(e.batch(&ns)[777], fib(100_777));
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
