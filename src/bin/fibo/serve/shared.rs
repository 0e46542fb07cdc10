//! `--cache-redis`: a second cache level in Redis, shared by every instance of the service,
//! and each value computed once across them (a short claim in Redis, renewed while the value
//! computes; the other instances wait for the value instead of computing it too).
//!
//! Redis is an accelerator, never a dependency: every call has a short time limit, and any
//! failure falls back to the local cache and a local computation. An outage is logged once
//! when it starts and once when it ends, counted in `fibo_shared_cache_errors_total`, and shown
//! by `fibo_shared_cache_up`; while Redis is down it is left alone for a second at a time
//! instead of being asked (and waited on) by every request.
//!
//! Keys (see README.md beside this file): `fibo:v1:pair:{n}`, the pair (F(n), F(n+1)) as
//! [`encode`] writes it, with a TTL; `fibo:v1:claim:{n}`, the instance computing it.

use std::io::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use parkit::decimal::DecNat;
use parkit::fib::{self, DecimalPair};

use super::super::distributed::{redact, scrub};
use super::hub::{Failure, Flight, Hub, Key, Outcome, Source, Ticket, panic_message};
use super::metrics::Metrics;

/// The version in every key: a new encoding gets a new prefix, never a misread value.
const PREFIX: &str = "fibo:v1";

/// Limit on connecting to Redis and on each small command (claims, look-ups of absent keys).
const CALL_LIMIT: Duration = Duration::from_millis(200);

/// After a failed call, Redis is not asked again for this long: an outage costs each request
/// nothing instead of a time-out.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Below this n a value computes in tens of microseconds, less than a round trip to Redis:
/// such values are neither looked up nor stored there.
pub(crate) const SHARED_MIN_N: u64 = 30_000;

/// The longest pause between two looks at a value another instance is computing.
const MAX_POLL: Duration = Duration::from_millis(100);

/// 10^19, the base of [`DecNat`]'s limbs.
const BASE: u64 = 10_000_000_000_000_000_000;

/// Where the shared cache is and what it keeps, from the flags.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// redis://[:PASSWORD@]HOST[:PORT]/DB; only ever shown redacted.
    pub url: String,
    /// Largest encoded value stored; larger ones stay in the local cache only.
    pub max_bytes: u64,
    /// How long Redis keeps a value.
    pub ttl: Duration,
    /// How long a claim lasts unless renewed (it is renewed every third of it while the value
    /// computes): how long the others wait for an instance that died while computing.
    pub claim: Duration,
}

type Conn = redis::aio::ConnectionManager;

/// The shared cache: a connection made on first use and remade after a failure.
pub(crate) struct Shared {
    config: Config,
    shown: String,
    /// This instance, as its claims name it.
    instance: String,
    conn: Mutex<Option<Conn>>,
    connecting: AtomicBool,
    /// Milliseconds since `epoch` before which Redis is not asked (after a failure).
    quiet_until: AtomicU64,
    /// 0 not yet known, 1 up, 2 down: the transitions are logged.
    state: AtomicU8,
    epoch: Instant,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("url", &self.shown)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

/// What a look-up in Redis found.
enum Found {
    Pair(DecimalPair),
    Absent,
    Down,
}

/// What a claim found.
enum Claim {
    Mine(Renewal),
    Taken,
    Down,
}

/// Renews a claim until dropped.
struct Renewal(tokio::task::JoinHandle<()>);

impl Drop for Renewal {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A line on stderr; a closed or full stderr is not a reason to stop serving.
fn note(text: &str) {
    let _ = writeln!(std::io::stderr(), "fibo serve: {text}");
}

fn pair_key(n: u64) -> String {
    format!("{PREFIX}:pair:{n}")
}

fn claim_key(n: u64) -> String {
    format!("{PREFIX}:claim:{n}")
}

/// Milliseconds of a duration, for PX arguments (at least 1).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Bytes [`encode`] gives for the pair at n, from digit counts alone.
pub(crate) fn encoded_len(n: u64) -> u64 {
    let limbs = |m: u64| fib::digit_count(m).div_ceil(19);
    8 + 8 * (limbs(n).saturating_add(limbs(n.saturating_add(1))))
}

/// The pair as stored: the number of F(n)'s limbs (u64, little-endian), then F(n)'s and
/// F(n+1)'s base-10^19 limbs, each a little-endian u64. Reading it back is a copy of the limbs
/// (no arithmetic, no base conversion), and it is 19/8 = 2.4 times smaller than the decimal
/// text.
pub(crate) fn encode(p: &(DecNat, DecNat)) -> Vec<u8> {
    let (a, b) = (p.0.limbs(), p.1.limbs());
    let mut out = Vec::with_capacity(8 + 8 * (a.len() + b.len()));
    out.extend_from_slice(&(a.len() as u64).to_le_bytes());
    for x in a.iter().chain(b) {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// Reads [`encode`]'s bytes back, checking that they hold a pair of the size F(n) and F(n+1)
/// have (a value under the wrong key or cut short is refused, never served).
pub(crate) fn decode(n: u64, bytes: &[u8]) -> Result<DecimalPair, String> {
    if bytes.len() < 8 || bytes.len() % 8 != 0 {
        return Err(format!(
            "a stored value of {} bytes is malformed",
            bytes.len()
        ));
    }
    let limb = |c: &[u8]| {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        u64::from_le_bytes(w)
    };
    let count = bytes.len() / 8 - 1;
    let first = usize::try_from(limb(&bytes[..8])).unwrap_or(usize::MAX);
    if first > count {
        return Err("a stored value is malformed".into());
    }
    let (fa, fb) = bytes[8..].split_at(first * 8);
    let read = |part: &[u8]| -> Option<Vec<u64>> {
        let v: Vec<u64> = part.chunks_exact(8).map(limb).collect();
        v.iter().all(|&x| x < BASE).then_some(v)
    };
    let (Some(la), Some(lb)) = (read(fa), read(fb)) else {
        return Err("a stored value is malformed".into());
    };
    let a = DecNat::from_limbs(la);
    let b = DecNat::from_limbs(lb);
    if a.digit_count() != fib::digit_count(n) || b.digit_count() != fib::digit_count(n + 1) {
        return Err(format!("the value stored for n = {n} has the wrong size"));
    }
    Ok(Arc::new((a, b)))
}

impl Shared {
    pub fn new(config: Config, metrics: Arc<Metrics>) -> Arc<Self> {
        let shown = redact(&config.url);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let instance = format!("{}-{:x}", std::process::id(), nanos);
        Arc::new(Shared {
            config,
            shown,
            instance,
            conn: Mutex::new(None),
            connecting: AtomicBool::new(false),
            quiet_until: AtomicU64::new(0),
            state: AtomicU8::new(0),
            epoch: Instant::now(),
            metrics,
        })
    }

    /// Whether the pair at n goes through Redis: not too small to be worth a round trip, not
    /// larger than `--shared-max-bytes`.
    pub fn shares(&self, n: u64) -> bool {
        (SHARED_MIN_N..u64::MAX).contains(&n) && encoded_len(n) <= self.config.max_bytes
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Connects now (at start), so that the log says at once whether Redis answers.
    pub async fn connect(&self) {
        if self.connection().await.is_some() {
            self.ping().await;
        }
    }

    async fn ping(&self) {
        let _: Option<String> = self.call(&redis::cmd("PING"), CALL_LIMIT).await.ok();
    }

    /// The connection, made if there is none; `None` while Redis is being left alone after a
    /// failure, or while another request is connecting.
    async fn connection(&self) -> Option<Conn> {
        if self.now_ms() < self.quiet_until.load(Ordering::Relaxed) {
            return None;
        }
        let existing = self.lock().clone();
        if existing.is_some() {
            return existing;
        }
        if self.connecting.swap(true, Ordering::AcqRel) {
            return None;
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(CALL_LIMIT)
            // Each call has its own limit (`call`), sized for what it moves.
            .set_response_timeout(Duration::from_secs(3600))
            .set_number_of_retries(0);
        let made = match redis::Client::open(self.config.url.as_str()) {
            Ok(client) => {
                match tokio::time::timeout(CALL_LIMIT * 2, Conn::new_with_config(client, config))
                    .await
                {
                    Ok(Ok(c)) => Ok(c),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("no answer to the connection".to_string()),
                }
            }
            Err(e) => Err(e.to_string()),
        };
        self.connecting.store(false, Ordering::Release);
        match made {
            Ok(c) => {
                *self.lock() = Some(c.clone());
                Some(c)
            }
            Err(why) => {
                self.failed(&why);
                None
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Conn>> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a failure, drops the connection, leaves Redis alone for [`RETRY_AFTER`], and
    /// logs the start of an outage (once).
    fn failed(&self, why: &str) {
        self.metrics.shared_errors.inc();
        self.metrics.shared_up.set(0);
        *self.lock() = None;
        let until = self.now_ms().saturating_add(millis(RETRY_AFTER));
        self.quiet_until.store(until, Ordering::Relaxed);
        if self.state.swap(2, Ordering::Relaxed) != 2 {
            note(&format!(
                "shared cache {} unavailable ({}); serving from the local cache and computing \
                 here until it answers again",
                self.shown,
                scrub(why, &self.config.url)
            ));
        }
    }

    fn answered(&self) {
        match self.state.swap(1, Ordering::Relaxed) {
            1 => {}
            0 => note(&format!("shared cache {} connected", self.shown)),
            _ => note(&format!("shared cache {} answers again", self.shown)),
        }
        self.metrics.shared_up.set(1);
    }

    /// One command, within `limit`; `Err` (counted, logged once per outage) on any failure.
    async fn call<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
        limit: Duration,
    ) -> Result<T, ()> {
        let Some(mut c) = self.connection().await else {
            return Err(());
        };
        match tokio::time::timeout(limit, cmd.query_async::<T>(&mut c)).await {
            Ok(Ok(v)) => {
                self.answered();
                Ok(v)
            }
            Ok(Err(e)) => {
                self.failed(&e.to_string());
                Err(())
            }
            Err(_) => {
                self.failed(&format!("no answer within {} ms", limit.as_millis()));
                Err(())
            }
        }
    }

    /// Time allowed to move `bytes` of value: the call limit plus 50 MB/s.
    fn transfer_limit(bytes: u64) -> Duration {
        CALL_LIMIT + Duration::from_micros(bytes / 50)
    }

    /// The pair at n from Redis.
    async fn fetch(&self, n: u64) -> Found {
        let limit = Self::transfer_limit(encoded_len(n));
        let got: Result<Option<Vec<u8>>, ()> =
            self.call(redis::cmd("GET").arg(pair_key(n)), limit).await;
        let bytes = match got {
            Err(()) => return Found::Down,
            Ok(None) => return Found::Absent,
            Ok(Some(b)) => b,
        };
        // Copying megabytes of limbs is CPU work: off the async threads when large.
        let decoded = if bytes.len() <= 1 << 16 {
            decode(n, &bytes)
        } else {
            tokio::task::spawn_blocking(move || decode(n, &bytes))
                .await
                .unwrap_or_else(|e| Err(format!("decoding failed: {e}")))
        };
        match decoded {
            Ok(p) => Found::Pair(p),
            Err(why) => {
                // Counted and logged, then overwritten by the value computed here.
                self.metrics.shared_errors.inc();
                note(&format!(
                    "shared cache {}: {why}; computing it here",
                    self.shown
                ));
                Found::Absent
            }
        }
    }

    /// Claims the computation of n for this instance, renewed until the claim is dropped.
    async fn claim(self: &Arc<Self>, n: u64) -> Claim {
        let px = millis(self.config.claim);
        let set = redis::cmd("SET")
            .arg(claim_key(n))
            .arg(&self.instance)
            .arg("NX")
            .arg("PX")
            .arg(px)
            .clone();
        match self.call::<Option<String>>(&set, CALL_LIMIT).await {
            Err(()) => Claim::Down,
            Ok(None) => Claim::Taken,
            Ok(Some(_)) => {
                let me = Arc::clone(self);
                Claim::Mine(Renewal(tokio::spawn(async move {
                    let every = me.config.claim / 3;
                    let renew = redis::cmd("EVAL")
                        .arg(
                            "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                             return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end",
                        )
                        .arg(1)
                        .arg(claim_key(n))
                        .arg(&me.instance)
                        .arg(px)
                        .clone();
                    loop {
                        tokio::time::sleep(every).await;
                        let _: Result<i64, ()> = me.call(&renew, CALL_LIMIT).await;
                    }
                })))
            }
        }
    }

    /// Gives a claim up, if it is still this instance's.
    async fn release(&self, n: u64, renewal: Renewal) {
        drop(renewal);
        let del = redis::cmd("EVAL")
            .arg(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                 return redis.call('DEL', KEYS[1]) else return 0 end",
            )
            .arg(1)
            .arg(claim_key(n))
            .arg(&self.instance)
            .clone();
        let _: Result<i64, ()> = self.call(&del, CALL_LIMIT).await;
    }

    /// Stores the pair at n, encoded, with the TTL.
    async fn store(&self, n: u64, bytes: Vec<u8>) {
        let limit = Self::transfer_limit(bytes.len() as u64);
        let set = redis::cmd("SET")
            .arg(pair_key(n))
            .arg(bytes)
            .arg("PX")
            .arg(millis(self.config.ttl))
            .clone();
        if self.call::<()>(&set, limit).await.is_ok() {
            self.metrics.shared_stores.inc();
        }
    }
}

/// Runs a flight for the pair at n through the shared cache: Redis first; else a claim and a
/// computation here, stored in Redis once the requests waiting here have their answer; or,
/// when another instance holds the claim, a wait for its value (or for its claim to lapse, and
/// then a claim of our own). Redis failing at any step means computing here. Ends the flight
/// with [`Hub::finish`]; never waits past the moment every request has gone.
pub(crate) fn lead(
    hub: Arc<Hub>,
    shared: Arc<Shared>,
    n: u64,
    flight: Arc<Flight>,
    ticket: Ticket,
) {
    hub.metrics.in_flight.inc();
    tokio::spawn(async move {
        let inner = tokio::spawn(find_or_compute(
            Arc::clone(&hub),
            Arc::clone(&shared),
            n,
            Arc::clone(&flight.cancel),
        ));
        let (result, publish) = match inner.await {
            Ok(r) => r,
            Err(e) if e.is_panic() => (Err(Failure::Panic(panic_message(&*e.into_panic()))), None),
            Err(_) => (Err(Failure::Cancelled), None),
        };
        drop(ticket);
        hub.metrics.in_flight.dec();
        hub.finish(
            Key::Pair(n),
            &flight,
            result.map(|(p, s)| (Outcome::Pair(p), s)),
        );
        if let Some((renewal, bytes)) = publish {
            // The value before the claim goes: whoever claims next finds it.
            if let Some(bytes) = bytes {
                shared.store(n, bytes).await;
            }
            shared.release(n, renewal).await;
        }
    });
}

/// What [`find_or_compute`] gives: the pair and where it came from, and, when this instance
/// holds the claim, the claim and the bytes to store before giving it up.
type Led = (
    Result<(DecimalPair, Source), Failure>,
    Option<(Renewal, Option<Vec<u8>>)>,
);

async fn find_or_compute(
    hub: Arc<Hub>,
    shared: Arc<Shared>,
    n: u64,
    cancel: Arc<AtomicBool>,
) -> Led {
    let mut claimed: Option<Renewal> = None;
    let mut pause = Duration::from_millis(5);
    let mut waited = false;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return (Err(Failure::Cancelled), claimed.map(|r| (r, None)));
        }
        match shared.fetch(n).await {
            Found::Pair(p) => {
                hub.engine.insert_pair(n, Arc::clone(&p));
                return (Ok((p, Source::Redis)), claimed.map(|r| (r, None)));
            }
            Found::Down => break,
            Found::Absent => {}
        }
        // Claimed, and still absent after the claim: ours to compute.
        if claimed.is_some() {
            break;
        }
        match shared.claim(n).await {
            // Look once more: the value may have been stored just before the claim was freed.
            Claim::Mine(r) => claimed = Some(r),
            Claim::Down => break,
            Claim::Taken => {
                if !waited {
                    waited = true;
                    hub.metrics.shared_claim_waits.inc();
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_POLL);
            }
        }
    }
    let want_bytes = claimed.is_some();
    let computer = Arc::clone(&hub);
    let computed = tokio::task::spawn_blocking(move || {
        catch_unwind(AssertUnwindSafe(|| {
            let p = computer.compute_pair(n, &cancel)?;
            let bytes = want_bytes.then(|| encode(&p));
            Some((p, bytes))
        }))
    })
    .await;
    match computed {
        Ok(Ok(Some((p, bytes)))) => (Ok((p, Source::Miss)), claimed.map(|r| (r, bytes))),
        Ok(Ok(None)) => (Err(Failure::Cancelled), claimed.map(|r| (r, None))),
        Ok(Err(p)) => (
            Err(Failure::Panic(panic_message(&*p))),
            claimed.map(|r| (r, None)),
        ),
        Err(e) => (
            Err(Failure::Panic(format!("the computation failed: {e}"))),
            claimed.map(|r| (r, None)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_and_refuses_the_wrong_key() {
        for n in [30_000u64, 123_457, 1_000_000] {
            let p = (
                parkit::fib::fib_in::<parkit::decimal::DecNat>(n),
                parkit::fib::fib_in::<parkit::decimal::DecNat>(n + 1),
            );
            let bytes = encode(&p);
            assert_eq!(bytes.len() as u64, encoded_len(n));
            let back = decode(n, &bytes).expect("decodes");
            assert_eq!(*back, p);
            assert!(decode(n + 1_000, &bytes).is_err());
            assert!(decode(n, &bytes[..bytes.len() - 8]).is_err());
            assert!(decode(n, &bytes[..bytes.len() - 3]).is_err());
        }
        let mut bad = encode(&(DecNat::from(5u64), DecNat::from(8u64)));
        bad[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode(5, &bad).is_err());
        assert!(decode(5, &[]).is_err());
    }

    /// The encoding's reason: reading limbs back against parsing the decimal text, for the
    /// largest pair the default cap stores. `cargo test --release --all-features --bin fibo
    /// -- --ignored --nocapture encoding_speed`.
    #[test]
    #[ignore = "a measurement"]
    fn encoding_speed() {
        let n = 37_000_000; // 6.5 MB encoded
        let p = (
            parkit::fib::fib_in::<parkit::decimal::DecNat>(n),
            parkit::fib::fib_in::<parkit::decimal::DecNat>(n + 1),
        );
        let bytes = encode(&p);
        let text = format!("{} {}", p.0, p.1);
        let t = Instant::now();
        let back = decode(n, &bytes).unwrap();
        let limbs = t.elapsed();
        let t = Instant::now();
        let (a, b) = text.split_once(' ').unwrap();
        let parsed: (DecNat, DecNat) = (a.parse().unwrap(), b.parse().unwrap());
        let parse = t.elapsed();
        assert_eq!(*back, parsed);
        eprintln!(
            "n = {n}: limbs {} bytes decoded in {:?}; decimal text {} bytes parsed in {:?}",
            bytes.len(),
            limbs,
            text.len(),
            parse
        );
    }
}
