//! The shared heart of the service: one engine and its cache for every request, the
//! computations in flight (each distinct piece of work runs once, however many requests ask
//! for it), and the two limits that turn overload into 503s: work permits and memory.

use std::collections::HashMap;
#[cfg(feature = "distributed")]
use std::io::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use parkit::fib::{self, DecimalPair, Fibonacci};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::api::ApiError;
use super::metrics::{Kind, Metrics};

/// Budget of the cache of rendered texts (see [`Hub::texts`]).
pub(crate) const TEXT_CACHE_BYTES: usize = 64 << 20;

/// Values up to this many digits keep their rendered text in [`Hub::texts`].
pub(crate) const TEXT_MAX_DIGITS: u64 = 4 << 20;

/// The limits of one server, from its flags.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub max_n: u64,
    pub max_inputs: u64,
    pub max_response_bytes: u64,
    pub max_body_bytes: u64,
    pub timeout: Duration,
}

/// A distinct piece of work: the pair at n, or one line (`--last`/`--mod`) in one format.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) enum Key {
    /// (F(n), F(n+1)) in base 10^19.
    Pair(u64),
    /// A line: n, what (0 digits, 1 last, 2 mod), its parameter, the format (0 value, 1 tsv,
    /// 2 json), and whether it is bare (the page's view).
    Line(u64, u8, u64, u8),
}

/// What a piece of work gives.
#[derive(Clone, Debug)]
pub(crate) enum Outcome {
    Pair(DecimalPair),
    Line(Bytes),
}

/// Where a value came from, as `x-fibo-cache` and the page show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// The engine's cache held it.
    Hit,
    /// Computed for this request.
    Miss,
    /// Computed for another request, which this one waited on.
    Shared,
    /// Read from the shared cache (`--cache-redis`): another instance computed it.
    #[cfg_attr(not(feature = "shared-cache"), allow(dead_code))]
    Redis,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Hit => "hit",
            Source::Miss => "miss",
            Source::Shared => "shared",
            Source::Redis => "redis",
        }
    }
}

/// Why a piece of work ended without a result.
#[derive(Clone, Debug)]
pub(crate) enum Failure {
    Cancelled,
    Panic(String),
}

/// One computation in flight and the requests waiting on it.
#[derive(Debug)]
pub(crate) struct Flight {
    /// Set when every request waiting on the flight has gone: the work should stop.
    pub cancel: Arc<AtomicBool>,
    /// Requests waiting; changed only under the flights' lock.
    waiters: AtomicU64,
    done: AtomicBool,
    /// The outcome and where the first request got it (later ones count as shared).
    result: watch::Sender<Option<Result<(Outcome, Source), Failure>>>,
}

/// Memory reserved by the work in flight, returned on drop.
#[derive(Debug)]
pub(crate) struct Reservation {
    hub: Arc<Hub>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.hub.used.fetch_sub(self.bytes, Ordering::Relaxed);
        self.hub
            .metrics
            .memory_in_use
            .dec_by(i64::try_from(self.bytes).unwrap_or(i64::MAX));
    }
}

/// A permit to run work (a computation or a streamed response) and the memory it holds.
#[derive(Debug)]
pub(crate) struct Ticket {
    _permit: OwnedSemaphorePermit,
    _memory: Reservation,
}

/// The service's shared state.
#[derive(Debug)]
pub(crate) struct Hub {
    pub engine: Arc<Fibonacci>,
    /// The decimal text of recently served mid-size values (up to [`TEXT_MAX_DIGITS`]): a
    /// thousand clients asking for F(10^7) get slices of one 2 MB text, rendered once, instead
    /// of a thousand renderings.
    pub texts: parkit::memo::MemoCache<u64, Bytes>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    flights: Mutex<HashMap<Key, Arc<Flight>>>,
    work: Arc<Semaphore>,
    /// Bytes the work in flight may hold together (the memory limit less the cache budget).
    memory_limit: u64,
    used: AtomicU64,
    /// Test hook (`FIBO_SERVE_PANIC_AT`): computing this n panics, to show that a panic
    /// answers 500 for its own request only.
    pub panic_at: Option<u64>,
    /// `--offload-above`: where heavy pairs are computed, if set.
    #[cfg(feature = "distributed")]
    pub offload: std::sync::OnceLock<Arc<super::offload::Offload>>,
    /// The shared cache of `--cache-redis`, if any.
    #[cfg(feature = "shared-cache")]
    shared: Option<Arc<super::shared::Shared>>,
}

impl Hub {
    /// A hub without a shared cache (the unit tests').
    #[cfg(test)]
    pub fn new(
        engine: Fibonacci,
        limits: Limits,
        max_concurrency: usize,
        memory_limit: u64,
    ) -> Arc<Self> {
        Self::build(
            engine,
            limits,
            max_concurrency,
            memory_limit,
            #[cfg(feature = "shared-cache")]
            None,
        )
    }

    /// The hub of a server: its engine, limits and memory, and a shared cache in Redis when
    /// `shared` says where.
    pub fn build(
        engine: Fibonacci,
        limits: Limits,
        max_concurrency: usize,
        memory_limit: u64,
        #[cfg(feature = "shared-cache")] shared: Option<super::shared::Config>,
    ) -> Arc<Self> {
        let panic_at = std::env::var("FIBO_SERVE_PANIC_AT")
            .ok()
            .and_then(|v| v.parse().ok());
        #[cfg(feature = "shared-cache")]
        let has_shared = shared.is_some();
        #[cfg(not(feature = "shared-cache"))]
        let has_shared = false;
        let metrics = Arc::new(Metrics::new(has_shared));
        Arc::new(Hub {
            engine: Arc::new(engine),
            texts: parkit::memo::MemoCache::with_budget(TEXT_CACHE_BYTES)
                .with_weigher(|_, t: &Bytes| t.len()),
            #[cfg(feature = "shared-cache")]
            shared: shared.map(|c| super::shared::Shared::new(c, Arc::clone(&metrics))),
            metrics,
            #[cfg(feature = "distributed")]
            offload: std::sync::OnceLock::new(),
            limits,
            flights: Mutex::new(HashMap::new()),
            work: Arc::new(Semaphore::new(max_concurrency)),
            memory_limit,
            used: AtomicU64::new(0),
            panic_at,
        })
    }

    fn flights(&self) -> MutexGuard<'_, HashMap<Key, Arc<Flight>>> {
        // No code panics while holding this lock; recover anyway rather than poison the server.
        self.flights.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves `bytes` of the memory limit, or says why not (a 503).
    pub fn reserve(self: &Arc<Self>, bytes: u64) -> Result<Reservation, ApiError> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let total = used.saturating_add(bytes);
            if total > self.memory_limit {
                self.metrics
                    .shed
                    .get_or_create(&Kind {
                        kind: "memory".into(),
                    })
                    .inc();
                return Err(ApiError::busy(format!(
                    "this request needs about {} while {} of the {} allowed (--max-memory, less \
                     the cache) are in use",
                    super::super::memory::human(bytes),
                    super::super::memory::human(used),
                    super::super::memory::human(self.memory_limit),
                )));
            }
            match self
                .used
                .compare_exchange_weak(used, total, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => used = now,
            }
        }
        self.metrics
            .memory_in_use
            .inc_by(i64::try_from(bytes).unwrap_or(i64::MAX));
        Ok(Reservation {
            hub: Arc::clone(self),
            bytes,
        })
    }

    /// A work permit and `bytes` of memory, or a 503 at once: requests past the limit are
    /// answered, never queued.
    pub fn ticket(self: &Arc<Self>, bytes: u64) -> Result<Ticket, ApiError> {
        let permit = Arc::clone(&self.work).try_acquire_owned().map_err(|_| {
            self.metrics
                .shed
                .get_or_create(&Kind {
                    kind: "busy".into(),
                })
                .inc();
            ApiError::busy("every worker slot is taken (--max-concurrency)".into())
        })?;
        Ok(Ticket {
            _permit: permit,
            _memory: self.reserve(bytes)?,
        })
    }

    /// The shared cache, if `--cache-redis` set one.
    #[cfg(feature = "shared-cache")]
    pub fn shared(&self) -> Option<&Arc<super::shared::Shared>> {
        self.shared.as_ref()
    }

    /// Counts where a value came from.
    pub fn count(&self, source: Source) {
        let i = match source {
            Source::Hit => 0,
            Source::Miss => 1,
            Source::Shared => 2,
            Source::Redis => 3,
        };
        self.metrics.values_by_source[i].inc();
    }

    /// The pair (F(n), F(n+1)): from the cache, then the shared cache (`--cache-redis`), or
    /// from a computation shared by every request asking for n at the same time (and, with a
    /// shared cache, by every instance). Waits off the async threads; gives up after the
    /// timeout.
    pub async fn pair(self: &Arc<Self>, n: u64) -> Result<(DecimalPair, Source), ApiError> {
        if let Some(p) = self.engine.cached_pair(n) {
            self.count(Source::Hit);
            return Ok((p, Source::Hit));
        }
        let estimate = fib::working_bytes(n, true);
        #[cfg(feature = "shared-cache")]
        if let Some(shared) = self.shared.as_ref().filter(|s| s.shares(n)) {
            let (hub, shared) = (Arc::clone(self), Arc::clone(shared));
            let (outcome, source) = self
                .join(Key::Pair(n), estimate, move |flight, ticket| {
                    super::shared::lead(hub, shared, n, flight, ticket);
                })
                .await?;
            return match outcome {
                Outcome::Pair(p) => Ok((p, source)),
                Outcome::Line(_) => Err(ApiError::internal("a pair was expected")),
            };
        }
        let hub = Arc::clone(self);
        let (outcome, source) = self
            .obtain(Key::Pair(n), estimate, move |cancelled| {
                hub.compute_pair(n, cancelled).map(Outcome::Pair)
            })
            .await?;
        match outcome {
            Outcome::Pair(p) => Ok((p, source)),
            Outcome::Line(_) => Err(ApiError::internal("a pair was expected")),
        }
    }

    /// Computes the pair at n for a flight, on a blocking thread: on a `fibo worker` when n is
    /// past `--offload-above` (and the answer is then cached here), else on the engine's pool;
    /// a worker that fails or stays silent past the timeout leaves the work to this instance.
    /// `None` when every waiting request has gone.
    pub(crate) fn compute_pair(&self, n: u64, cancelled: &AtomicBool) -> Option<DecimalPair> {
        if self.panic_at == Some(n) {
            panic!("a test panic at n = {n} (FIBO_SERVE_PANIC_AT)");
        }
        #[cfg(feature = "distributed")]
        if let Some(off) = self.offload.get().filter(|o| n > o.above) {
            self.metrics.offloaded.inc();
            match tokio::runtime::Handle::current().block_on(off.pair(n, cancelled)) {
                Ok(pair) => {
                    let pair = Arc::new(pair);
                    self.engine.insert_pair(n, Arc::clone(&pair));
                    return Some(pair);
                }
                Err(_) if cancelled.load(Ordering::Relaxed) => return None,
                Err(why) => {
                    self.metrics.offload_failures.inc();
                    let _ = writeln!(
                        std::io::stderr(),
                        "fibo serve: F({n}) computed here: the workers did not give it ({why})"
                    );
                }
            }
        }
        self.engine
            .try_pair(n, &|| cancelled.load(Ordering::Relaxed))
            .ok()
    }

    /// The outcome of `key`, computed by `work` on a blocking thread (its arithmetic on the
    /// engine's pool) unless a computation of the same key is already in flight, in which case
    /// this request waits on that one. `work` is given a flag set when every waiting request
    /// has gone; it returns `None` when it stopped for it.
    pub async fn obtain<F>(
        self: &Arc<Self>,
        key: Key,
        memory: u64,
        work: F,
    ) -> Result<(Outcome, Source), ApiError>
    where
        F: FnOnce(&AtomicBool) -> Option<Outcome> + Send + 'static,
    {
        let hub = Arc::clone(self);
        self.join(key, memory, move |f, ticket| {
            hub.metrics.in_flight.inc();
            tokio::task::spawn_blocking(move || {
                let cancel = Arc::clone(&f.cancel);
                let r = match catch_unwind(AssertUnwindSafe(|| work(&cancel))) {
                    Ok(Some(outcome)) => Ok((outcome, Source::Miss)),
                    Ok(None) => Err(Failure::Cancelled),
                    Err(p) => Err(Failure::Panic(panic_message(&*p))),
                };
                drop(ticket);
                hub.metrics.in_flight.dec();
                hub.finish(key, &f, r);
            });
        })
        .await
    }

    /// The outcome of `key`: joins the flight in progress for it, or starts one with `start`,
    /// given the flight and its ticket, which must end by calling [`Hub::finish`] (from any
    /// thread, at any time). Waits for the result up to the timeout.
    pub(crate) async fn join<S>(
        self: &Arc<Self>,
        key: Key,
        memory: u64,
        start_flight: S,
    ) -> Result<(Outcome, Source), ApiError>
    where
        S: FnOnce(Arc<Flight>, Ticket),
    {
        let (flight, source, start) = {
            let mut flights = self.flights();
            match flights.get(&key) {
                Some(f) if !f.cancel.load(Ordering::Relaxed) => {
                    f.waiters.fetch_add(1, Ordering::Relaxed);
                    self.metrics.coalesced.inc();
                    (Arc::clone(f), Source::Shared, None)
                }
                _ => {
                    let ticket = self.ticket(memory)?;
                    let (tx, _) = watch::channel(None);
                    let f = Arc::new(Flight {
                        cancel: Arc::new(AtomicBool::new(false)),
                        waiters: AtomicU64::new(1),
                        done: AtomicBool::new(false),
                        result: tx,
                    });
                    flights.insert(key, Arc::clone(&f));
                    (Arc::clone(&f), Source::Miss, Some(ticket))
                }
            }
        };
        let mut rx = flight.result.subscribe();
        let guard = Waiter {
            hub: self,
            key,
            flight: &flight,
        };
        if let Some(ticket) = start {
            start_flight(Arc::clone(&flight), ticket);
        }
        let waited = tokio::time::timeout(self.limits.timeout, rx.wait_for(Option::is_some)).await;
        let result = match waited {
            Err(_) => return Err(ApiError::timeout(self.limits.timeout.as_secs_f64())),
            Ok(Err(_)) => return Err(ApiError::internal("the computation vanished")),
            Ok(Ok(r)) => r.clone().expect("waited for a result"),
        };
        drop(guard);
        match result {
            Ok((outcome, first)) => {
                // The request that started the flight gets its source; the others waited.
                let source = if source == Source::Miss {
                    first
                } else {
                    source
                };
                self.count(source);
                Ok((outcome, source))
            }
            Err(Failure::Panic(m)) => Err(ApiError::internal(&m)),
            // Everyone had gone, yet this request is here: only a race with the last one
            // leaving; the client sees a 503 and retries.
            Err(Failure::Cancelled) => Err(ApiError::busy("the computation was cancelled".into())),
        }
    }

    /// Ends a flight: it leaves the table and every request waiting on it gets `result`.
    pub(crate) fn finish(
        &self,
        key: Key,
        flight: &Arc<Flight>,
        result: Result<(Outcome, Source), Failure>,
    ) {
        {
            let mut flights = self.flights();
            if flights.get(&key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
                flights.remove(&key);
            }
            flight.done.store(true, Ordering::Relaxed);
        }
        if matches!(result, Err(Failure::Cancelled)) {
            self.metrics.cancelled.inc();
        }
        flight.result.send_replace(Some(result));
    }
}

/// One request waiting on a flight; the last one to leave before the result cancels the work.
struct Waiter<'a> {
    hub: &'a Hub,
    key: Key,
    flight: &'a Arc<Flight>,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut flights = self.hub.flights();
        let left = self.flight.waiters.fetch_sub(1, Ordering::Relaxed) - 1;
        if left == 0 && !self.flight.done.load(Ordering::Relaxed) {
            self.flight.cancel.store(true, Ordering::Relaxed);
            if flights
                .get(&self.key)
                .is_some_and(|f| Arc::ptr_eq(f, self.flight))
            {
                flights.remove(&self.key);
            }
        }
    }
}

/// A panic's message, for a 500.
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    parkit::pipeline::panic_message(p)
        .unwrap_or("a panic")
        .to_string()
}
