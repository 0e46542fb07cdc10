//! `/metrics`: what an operator watches, in the Prometheus (OpenMetrics) text format.

use std::sync::Mutex;

use parkit::fib::Fibonacci;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A request's route and status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteStatus {
    pub route: String,
    pub status: u16,
}

/// A request's route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Route {
    pub route: String,
}

/// Why a request was shed, or where a value came from.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Kind {
    pub kind: String,
}

/// The routes, as `MatchedPath` names them; anything else is `other`.
const ROUTES: [&str; 6] = ["/", "/healthz", "/metrics", "/fib/{n}", "/batch", "other"];

/// The statuses the service answers with.
const STATUSES: [u16; 8] = [200, 400, 404, 405, 413, 500, 503, 504];

/// Every metric of the service. Counters are lock-free; the engine's cache figures are read at
/// each scrape.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    pub requests: Family<RouteStatus, Counter>,
    pub latency: Family<Route, Histogram>,
    pub values: Family<Kind, Counter>,
    pub shed: Family<Kind, Counter>,
    pub in_flight: Gauge,
    pub coalesced: Counter,
    /// `--offload-above`: pairs sent to `fibo worker`s, and those that came back without one.
    pub offloaded: Counter,
    pub offload_failures: Counter,
    pub cancelled: Counter,
    pub bytes_out: Counter,
    pub memory_in_use: Gauge,
    cache_hits: Counter,
    cache_misses: Counter,
    cache_evictions: Counter,
    cache_bytes: Gauge,
    cache_entries: Gauge,
    scrape: Mutex<()>,
    /// Handles into `requests` and `latency` for every route and usual status, made once: a
    /// request then updates two atomics, with no label hashing and no lock.
    fast_requests: Vec<Vec<Counter>>,
    fast_latency: Vec<Histogram>,
    /// Handles into `values`: hit, miss, shared, redis.
    pub values_by_source: [Counter; 4],
    /// `--cache-redis`: Redis calls that failed or timed out.
    pub shared_errors: Counter,
    /// `--cache-redis`: 1 while Redis answers, 0 while it does not (or before it first did).
    pub shared_up: Gauge,
    /// `--cache-redis`: values written to Redis.
    pub shared_stores: Counter,
    /// `--cache-redis`: computations that found another instance's claim and waited on it.
    pub shared_claim_waits: Counter,
}

fn latency_histogram() -> Histogram {
    // 100 us to about 52 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 20))
}

impl Metrics {
    /// The metrics of a server; `shared` adds the `--cache-redis` series.
    pub fn new(shared: bool) -> Self {
        let mut r = Registry::default();
        let requests = Family::<RouteStatus, Counter>::default();
        let latency = Family::<Route, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let m = Metrics {
            requests,
            latency,
            values: Family::default(),
            shed: Family::default(),
            in_flight: Gauge::default(),
            coalesced: Counter::default(),
            offloaded: Counter::default(),
            offload_failures: Counter::default(),
            cancelled: Counter::default(),
            bytes_out: Counter::default(),
            memory_in_use: Gauge::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            cache_evictions: Counter::default(),
            cache_bytes: Gauge::default(),
            cache_entries: Gauge::default(),
            scrape: Mutex::new(()),
            registry: Registry::default(),
            fast_requests: Vec::new(),
            fast_latency: Vec::new(),
            values_by_source: Default::default(),
            shared_errors: Counter::default(),
            shared_up: Gauge::default(),
            shared_stores: Counter::default(),
            shared_claim_waits: Counter::default(),
        };
        r.register(
            "fibo_http_requests",
            "HTTP requests answered, by route and status",
            m.requests.clone(),
        );
        r.register(
            "fibo_http_request_duration_seconds",
            "Time to the response's head, by route",
            m.latency.clone(),
        );
        r.register(
            "fibo_values",
            "Values answered, by where they came from: hit (the cache held them), miss \
             (computed), shared (waited on a computation another request started), redis (the \
             shared cache of --cache-redis held them)",
            m.values.clone(),
        );
        r.register(
            "fibo_requests_shed",
            "Requests answered 503, by reason: busy (--max-concurrency) or memory (--max-memory)",
            m.shed.clone(),
        );
        r.register(
            "fibo_computations_in_flight",
            "Computations running now (one per distinct value, however many requests wait on it)",
            m.in_flight.clone(),
        );
        r.register(
            "fibo_coalesced_waiters",
            "Requests that waited on a computation another request had started",
            m.coalesced.clone(),
        );
        r.register(
            "fibo_offloaded",
            "Pairs sent to fibo workers (--offload-above)",
            m.offloaded.clone(),
        );
        r.register(
            "fibo_offload_failures",
            "Offloaded pairs computed here after all: a worker failed or did not answer in time",
            m.offload_failures.clone(),
        );
        r.register(
            "fibo_cancelled_computations",
            "Computations stopped because every request waiting on them went away",
            m.cancelled.clone(),
        );
        r.register(
            "fibo_response_bytes",
            "Response body bytes produced, before compression",
            m.bytes_out.clone(),
        );
        r.register(
            "fibo_memory_in_flight_bytes",
            "Memory reserved by the computations and streams in flight",
            m.memory_in_use.clone(),
        );
        r.register(
            "fibo_cache_hits",
            "Look-ups the engine's cache answered",
            m.cache_hits.clone(),
        );
        r.register(
            "fibo_cache_misses",
            "Look-ups the engine's cache could not answer",
            m.cache_misses.clone(),
        );
        r.register(
            "fibo_cache_evictions",
            "Pairs the engine's cache dropped to stay in its budget",
            m.cache_evictions.clone(),
        );
        r.register(
            "fibo_cache_bytes",
            "Bytes held by the engine's cache",
            m.cache_bytes.clone(),
        );
        r.register(
            "fibo_cache_entries",
            "Pairs held by the engine's cache",
            m.cache_entries.clone(),
        );
        if shared {
            r.register(
                "fibo_shared_cache_errors",
                "Calls to the shared cache (--cache-redis) that failed or timed out; each one is \
                 served from the local cache or computed here instead",
                m.shared_errors.clone(),
            );
            r.register(
                "fibo_shared_cache_up",
                "1 while the shared cache (--cache-redis) answers, 0 while it does not",
                m.shared_up.clone(),
            );
            r.register(
                "fibo_shared_cache_stores",
                "Values written to the shared cache",
                m.shared_stores.clone(),
            );
            r.register(
                "fibo_shared_cache_claim_waits",
                "Computations that found another instance computing the same value and waited \
                 for its result instead",
                m.shared_claim_waits.clone(),
            );
        }
        let fast_requests = ROUTES
            .iter()
            .map(|route| {
                STATUSES
                    .iter()
                    .map(|&status| {
                        m.requests
                            .get_or_create(&RouteStatus {
                                route: (*route).into(),
                                status,
                            })
                            .clone()
                    })
                    .collect()
            })
            .collect();
        let fast_latency = ROUTES
            .iter()
            .map(|route| {
                m.latency
                    .get_or_create(&Route {
                        route: (*route).into(),
                    })
                    .clone()
            })
            .collect();
        let values_by_source = ["hit", "miss", "shared", "redis"]
            .map(|kind| m.values.get_or_create(&Kind { kind: kind.into() }).clone());
        Metrics {
            registry: r,
            fast_requests,
            fast_latency,
            values_by_source,
            ..m
        }
    }

    /// The index of `route` for [`observe`](Self::observe).
    pub fn route_index(&self, route: &str) -> usize {
        ROUTES
            .iter()
            .position(|x| *x == route)
            .unwrap_or(ROUTES.len() - 1)
    }

    /// Counts one request of route `r` (a [`route_index`](Self::route_index)) answered with
    /// `status` after `secs` seconds.
    pub fn observe(&self, r: usize, status: u16, secs: f64) {
        self.fast_latency[r].observe(secs);
        match STATUSES.iter().position(|&s| s == status) {
            Some(i) => {
                self.fast_requests[r][i].inc();
            }
            None => {
                self.requests
                    .get_or_create(&RouteStatus {
                        route: ROUTES[r].into(),
                        status,
                    })
                    .inc();
            }
        }
    }

    /// The exposition, with the engine's cache figures read now.
    pub fn render(&self, engine: &Fibonacci) -> String {
        let _one_scrape_at_a_time = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        let s = engine.cache_stats();
        let catch_up = |c: &Counter, now: u64| {
            let seen = c.get();
            if now > seen {
                c.inc_by(now - seen);
            }
        };
        catch_up(&self.cache_hits, s.hits);
        catch_up(&self.cache_misses, s.misses);
        catch_up(&self.cache_evictions, s.evictions);
        self.cache_bytes
            .set(i64::try_from(s.bytes).unwrap_or(i64::MAX));
        self.cache_entries
            .set(i64::try_from(s.entries).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
