//! Two `fibo serve` instances sharing one Redis (`--cache-redis`, feature `shared-cache`): a
//! value computed by one is served by the other from Redis; many requests for one value over
//! both compute it once; Redis going away costs nothing but sharing, and sharing resumes when
//! it returns; an instance killed while it holds a claim is replaced once the claim lapses.
//!
//! Each test starts its own `redis-server` on a free loopback port (no persistence) and its own
//! servers, and stops them by PID when it ends. Without `redis-server` on PATH the tests say so
//! and pass, unless `PARKIT_REQUIRE_REDIS=1`. Every value is checked independently: its digit
//! count and its residues, by the modular path, against the decimal text.

mod common;

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, have_redis, redis_cli, serve_address, signal, spawn_redis};

use reqwest::StatusCode;

/// A Redis server of its own, killed (by PID) on drop.
struct Redis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Redis {
    /// Starts one, or `None` (test skipped) where redis-server is missing and not required.
    fn start() -> Option<Redis> {
        if !have_redis() {
            return None;
        }
        let mut r = Redis {
            port: 0,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        for _ in 0..5 {
            r.port = free_port();
            if r.launch() {
                return Some(r);
            }
            r.stop(); // The port was taken meanwhile: try another.
        }
        panic!("redis-server did not start");
    }

    /// Starts redis-server on `self.port`; false when the port was taken meanwhile.
    fn launch(&mut self) -> bool {
        let log = format!("redis-{}.log", self.port);
        let lru = ["--maxmemory", "256mb", "--maxmemory-policy", "allkeys-lru"];
        self.child = spawn_redis(self.port, self.dir.path(), &log, &lru);
        self.child.is_some()
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends a signal (`-STOP`, `-CONT`) to the server.
    fn signal(&self, sig: &str) {
        signal(self.child.as_ref().expect("running").id(), sig);
    }

    fn restart(&mut self) {
        self.stop();
        assert!(self.launch(), "redis did not restart on port {}", self.port);
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Runs redis-cli against this server and returns its output.
    fn cli(&self, args: &[&str]) -> String {
        redis_cli(self.port, args)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `fibo serve --cache-redis` on a free loopback port (the URL given through
/// `FIBO_CACHE_REDIS`), its stderr kept; killed on drop.
struct Server {
    child: Child,
    base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(url: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fibo"))
            .args(["serve", "--listen", "127.0.0.1:0", "--jobs", "2"])
            .args(extra)
            .env("FIBO_CACHE_REDIS", url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("fibo runs");
        let (base, err) = serve_address(&mut child);
        let log = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&log);
        std::thread::spawn(move || {
            for l in err.lines().map_while(Result::ok) {
                keep.lock().unwrap().push(l);
            }
        });
        Server { child, base, log }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

use common::{client, runtime};

/// Status, `x-fibo-cache` and body of `GET /fib/{n}`.
async fn fib(s: &Server, n: u64) -> (StatusCode, String, String) {
    fib_at(&s.base, n).await
}

async fn fib_at(base: &str, n: u64) -> (StatusCode, String, String) {
    let r = client()
        .get(format!("{base}/fib/{n}"))
        .send()
        .await
        .expect("an answer");
    let status = r.status();
    let source = r
        .headers()
        .get("x-fibo-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, source, r.text().await.expect("a body"))
}

/// A metric's value from `/metrics` (0 when the series does not exist yet).
async fn metric(s: &Server, series: &str) -> f64 {
    let text = client()
        .get(s.url("/metrics"))
        .send()
        .await
        .expect("an answer")
        .text()
        .await
        .expect("a body");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

const MISSES: &str = "fibo_values_total{kind=\"miss\"}";
const FROM_REDIS: &str = "fibo_values_total{kind=\"redis\"}";
const ERRORS: &str = "fibo_shared_cache_errors_total";
const UP: &str = "fibo_shared_cache_up";

/// Waits until the server says Redis answers.
async fn wait_up(s: &Server) {
    let t = Instant::now();
    while metric(s, UP).await != 1.0 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the shared cache did not come up: {:?}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A decimal string's residue mod m.
fn residue(digits: &str, m: u64) -> u64 {
    digits.bytes().fold(0u64, |r, d| {
        ((u128::from(r) * 10 + u128::from(d - b'0')) % u128::from(m)) as u64
    })
}

/// Checks that `body` (the value line of `GET /fib/{n}`) is F(n): its digit count and its
/// residues mod three primes, computed without F(n).
fn check_value(n: u64, body: &str) {
    let digits = body.trim_end();
    assert!(digits.bytes().all(|b| b.is_ascii_digit()), "not digits");
    assert_eq!(
        digits.len() as u64,
        parkit::fib::digit_count(n),
        "digits of F({n})"
    );
    for m in [1_000_000_007, 998_244_353, (1 << 61) - 1] {
        assert_eq!(
            residue(digits, m),
            parkit::fib::fib_mod(n, m),
            "F({n}) mod {m}"
        );
    }
}

#[test]
fn a_value_computed_by_one_instance_is_served_by_the_other_from_redis() {
    common::watchdog(120, "shared", || {
        let Some(redis) = Redis::start() else { return };
        // 200 KiB: F(10^6)'s pair (176 KB stored) is shared, F(1.2e6)'s (211 KB) is not.
        let flags = ["--shared-max-bytes", "200K", "--shared-ttl", "600"];
        let a = Server::start(&redis.url(), &flags);
        let b = Server::start(&redis.url(), &flags);
        runtime().block_on(async {
            wait_up(&a).await;
            wait_up(&b).await;
            let n = 1_000_000;
            let (status, source, from_a) = fib(&a, n).await;
            assert_eq!((status, source.as_str()), (StatusCode::OK, "miss"));
            check_value(n, &from_a);
            // A stores the value just after answering; B waits on A's claim meanwhile.
            let (status, source, from_b) = fib(&b, n).await;
            assert_eq!((status, source.as_str()), (StatusCode::OK, "redis"));
            assert!(from_a == from_b, "B's bytes differ from A's");
            assert_eq!(metric(&b, MISSES).await, 0.0, "B computed nothing");
            assert_eq!(metric(&b, FROM_REDIS).await, 1.0);
            // Now in B's own cache.
            let (_, source, again) = fib(&b, n).await;
            assert_eq!(source, "hit");
            assert!(again == from_a);
            let ttl: i64 = redis
                .cli(&["PTTL", &format!("fibo:v1:pair:{n}")])
                .parse()
                .unwrap();
            assert!(ttl > 590_000 && ttl <= 600_000, "TTL {ttl} ms");
            assert_eq!(redis.cli(&["EXISTS", &format!("fibo:v1:claim:{n}")]), "0");

            // Past --shared-max-bytes: each instance keeps its own, nothing goes to Redis.
            let big = 1_200_000;
            let (_, source, from_a) = fib(&a, big).await;
            assert_eq!(source, "miss");
            let (_, source, from_b) = fib(&b, big).await;
            assert_eq!(source, "miss");
            check_value(big, &from_b);
            assert!(from_a == from_b);
            assert_eq!(redis.cli(&["EXISTS", &format!("fibo:v1:pair:{big}")]), "0");
            assert_eq!(metric(&a, ERRORS).await + metric(&b, ERRORS).await, 0.0);
        });
    });
}

#[test]
fn many_requests_over_two_instances_compute_a_value_once() {
    common::watchdog(240, "compute once", || {
        let Some(redis) = Redis::start() else { return };
        let a = Server::start(&redis.url(), &[]);
        let b = Server::start(&redis.url(), &[]);
        runtime().block_on(async {
            wait_up(&a).await;
            wait_up(&b).await;
            let n = 2_000_003;
            let tasks: Vec<_> = (0..200)
                .map(|i| {
                    let base = if i % 2 == 0 { &a.base } else { &b.base }.clone();
                    tokio::spawn(async move { fib_at(&base, n).await })
                })
                .collect();
            let mut bodies = Vec::new();
            let mut sources = std::collections::BTreeMap::<String, usize>::new();
            for t in tasks {
                let (status, source, body) = t.await.unwrap();
                assert_eq!(status, StatusCode::OK, "{body}");
                *sources.entry(source).or_default() += 1;
                bodies.push(body);
            }
            check_value(n, &bodies[0]);
            assert!(bodies.iter().all(|b| *b == bodies[0]), "every answer alike");
            let misses = metric(&a, MISSES).await + metric(&b, MISSES).await;
            assert_eq!(misses, 1.0, "computed once in all; sources {sources:?}");
            assert_eq!(sources.get("miss"), Some(&1), "{sources:?}");
            let from_redis = metric(&a, FROM_REDIS).await + metric(&b, FROM_REDIS).await;
            assert_eq!(
                from_redis, 1.0,
                "the other instance read it once: {sources:?}"
            );
        });
    });
}

#[test]
fn redis_going_away_degrades_to_local_and_sharing_resumes_when_it_returns() {
    common::watchdog(120, "outage", || {
        let Some(mut redis) = Redis::start() else {
            return;
        };
        let secret_url = format!("redis://:hunter2secret@127.0.0.1:{}/0", redis.port);
        redis.cli(&["CONFIG", "SET", "requirepass", "hunter2secret"]);
        let a = Server::start(&secret_url, &[]);
        let b = Server::start(&secret_url, &[]);
        runtime().block_on(async {
            wait_up(&a).await;
            wait_up(&b).await;
            redis.stop();
            for (i, n) in (0..6u64).map(|i| (i, 40_000 + 1_000 * i)) {
                let s = if i % 2 == 0 { &a } else { &b };
                let (status, source, body) = fib(s, n).await;
                assert_eq!((status, source.as_str()), (StatusCode::OK, "miss"));
                check_value(n, &body);
                // And the other one too, on its own.
                let other = if i % 2 == 0 { &b } else { &a };
                let (status, _, body2) = fib(other, n).await;
                assert_eq!(status, StatusCode::OK);
                assert!(body == body2);
            }
            for s in [&a, &b] {
                assert!(metric(s, ERRORS).await >= 1.0);
                assert_eq!(metric(s, UP).await, 0.0);
                let log = s.log();
                let outages = log.iter().filter(|l| l.contains("unavailable")).count();
                assert_eq!(outages, 1, "one line per outage: {log:?}");
                assert!(log.iter().all(|l| !l.contains("hunter2secret")), "{log:?}");
            }

            redis.restart();
            redis.cli(&["CONFIG", "SET", "requirepass", "hunter2secret"]);
            // Sharing resumes: a value computed by A reaches B through Redis.
            let t = Instant::now();
            let mut n = 60_000;
            loop {
                let (_, _, from_a) = fib(&a, n).await;
                let (status, source, from_b) = fib(&b, n).await;
                assert_eq!(status, StatusCode::OK);
                assert!(from_a == from_b);
                if source == "redis" {
                    check_value(n, &from_b);
                    break;
                }
                assert!(
                    t.elapsed() < Duration::from_secs(15),
                    "sharing did not resume: {:?} {:?}",
                    a.log(),
                    b.log()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
                n += 1;
            }
            for s in [&a, &b] {
                wait_up(s).await;
                let log = s.log();
                assert!(log.iter().any(|l| l.contains("answers again")), "{log:?}");
                assert!(log.iter().all(|l| !l.contains("hunter2secret")), "{log:?}");
            }
        });
    });
}

#[test]
fn a_claim_holder_killed_mid_computation_is_replaced_after_its_claim_lapses() {
    common::watchdog(300, "dead claim holder", || {
        let Some(redis) = Redis::start() else { return };
        let n: u64 = 300_000_000;
        let flags = [
            "--max-n",
            "1e9",
            "--shared-max-bytes",
            "1G",
            "--shared-claim",
            "2",
            "--timeout",
            "240",
        ];
        let mut a = Server::start(&redis.url(), &flags);
        let b = Server::start(&redis.url(), &flags);
        runtime().block_on(async {
            wait_up(&a).await;
            wait_up(&b).await;
            let base_a = a.base.clone();
            let doomed =
                tokio::spawn(async move { client().get(format!("{base_a}/fib/{n}")).send().await });
            let claim = format!("fibo:v1:claim:{n}");
            let t = Instant::now();
            while redis.cli(&["EXISTS", &claim]) != "1" {
                assert!(t.elapsed() < Duration::from_secs(10), "A never claimed n");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let base_b = b.base.clone();
            let waiting = tokio::spawn(async move { fib_at(&base_b, n).await });
            let t = Instant::now();
            while metric(&b, "fibo_shared_cache_claim_waits_total").await < 1.0 {
                assert!(t.elapsed() < Duration::from_secs(10), "B never waited on A");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            a.kill();
            let killed = Instant::now();
            assert!(doomed.await.unwrap().is_err(), "A died before answering");
            assert_eq!(
                redis.cli(&["EXISTS", &format!("fibo:v1:pair:{n}")]),
                "0",
                "A was killed before it stored the value"
            );
            let (status, source, body) = waiting.await.unwrap();
            let took = killed.elapsed();
            assert_eq!((status, source.as_str()), (StatusCode::OK, "miss"));
            check_value(n, &body);
            // The claim lapses within 2 s, then one computation (about 5 s here): far below the
            // 240 s request timeout.
            assert!(
                took < Duration::from_secs(90),
                "B answered {took:?} after the kill"
            );
            eprintln!("B answered {:.1} s after A was killed", took.as_secs_f64());
            // And B stored it for the others.
            let t = Instant::now();
            while redis.cli(&["EXISTS", &format!("fibo:v1:pair:{n}")]) != "1" {
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "B did not store it: {:?}",
                    b.log()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    });
}

#[test]
fn a_stalled_redis_costs_a_request_a_short_wait_only() {
    common::watchdog(120, "stalled", || {
        let Some(redis) = Redis::start() else { return };
        let a = Server::start(&redis.url(), &[]);
        runtime().block_on(async {
            wait_up(&a).await;
            // Redis stops answering but keeps its connections open: only time limits help.
            redis.signal("-STOP");
            let t = Instant::now();
            let (status, source, body) = fib(&a, 50_000).await;
            let first = t.elapsed();
            assert_eq!((status, source.as_str()), (StatusCode::OK, "miss"));
            check_value(50_000, &body);
            assert!(first < Duration::from_secs(2), "took {first:?}");
            assert!(metric(&a, ERRORS).await >= 1.0);
            // While it is known to be down, Redis is not waited on at all.
            let t = Instant::now();
            let (status, _, body) = fib(&a, 50_001).await;
            assert_eq!(status, StatusCode::OK);
            check_value(50_001, &body);
            assert!(
                t.elapsed() < Duration::from_millis(150),
                "took {:?}",
                t.elapsed()
            );
            redis.signal("-CONT");
            let t = Instant::now();
            let mut n = 70_000;
            loop {
                fib(&a, n).await;
                if redis.cli(&["EXISTS", &format!("fibo:v1:pair:{n}")]) == "1" {
                    break;
                }
                assert!(
                    t.elapsed() < Duration::from_secs(15),
                    "no store: {:?}",
                    a.log()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
                n += 1;
            }
            wait_up(&a).await;
        });
    });
}

#[test]
fn a_bad_cache_url_is_refused_in_one_line_without_its_password() {
    for (arg, env) in [
        (Some("rediss://:topsecret1@10.0.0.5/0"), None),
        (None, Some("http://user:topsecret1@10.0.0.5/0")),
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fibo"));
        cmd.args(["serve", "--listen", "127.0.0.1:0"]);
        if let Some(url) = arg {
            cmd.args(["--cache-redis", url]);
        }
        if let Some(url) = env {
            cmd.env("FIBO_CACHE_REDIS", url);
        }
        let out = cmd.stdin(Stdio::null()).output().expect("fibo runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(!err.contains("topsecret1"), "{err}");
        assert!(err.contains(":***@10.0.0.5"), "{err}");
    }
}

#[test]
fn a_server_whose_redis_is_not_there_starts_and_serves_locally() {
    common::watchdog(60, "no redis", || {
        // Nothing listens on this port.
        let url = format!("redis://:pw-nobody-sees@127.0.0.1:{}/0", free_port());
        let s = Server::start(&url, &[]);
        runtime().block_on(async {
            for n in [40_000, 40_001, 1_000_000, 40_000] {
                let (status, _, body) = fib(&s, n).await;
                assert_eq!(status, StatusCode::OK);
                check_value(n, &body);
            }
            assert_eq!(metric(&s, UP).await, 0.0);
            assert!(metric(&s, ERRORS).await >= 1.0);
            let log = s.log();
            let outages = log.iter().filter(|l| l.contains("unavailable")).count();
            assert_eq!(outages, 1, "{log:?}");
            assert!(log.iter().all(|l| !l.contains("pw-nobody-sees")), "{log:?}");
        });
    });
}

/// A `fibo worker` on the given broker and backend, killed on drop.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn values_past_offload_above_come_from_a_fibo_worker_with_the_bytes_of_local_computing() {
    common::watchdog(120, "offload", || {
        let Some(redis) = Redis::start() else { return };
        let broker = format!("redis://127.0.0.1:{}/2", redis.port);
        let backend = format!("redis://127.0.0.1:{}/3", redis.port);
        let worker = Worker(
            Command::new(env!("CARGO_BIN_EXE_fibo"))
                .args(["worker", "--jobs", "1"])
                .env("FIBO_BROKER", &broker)
                .env("FIBO_BACKEND", &backend)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("fibo worker runs"),
        );
        let s = Server::start(
            &redis.url(),
            &[
                "--broker",
                &broker,
                "--backend",
                &backend,
                "--offload-above",
                "50000",
                "--timeout",
                "6",
            ],
        );
        let local = |n: u64| {
            let out = Command::new(env!("CARGO_BIN_EXE_fibo"))
                .arg(n.to_string())
                .output()
                .expect("fibo runs");
            String::from_utf8(out.stdout).expect("utf-8")
        };
        runtime().block_on(async {
            wait_up(&s).await;
            for (i, n) in [100_000u64, 1_000_003].into_iter().enumerate() {
                let (status, _, body) = fib(&s, n).await;
                assert_eq!(status, StatusCode::OK);
                check_value(n, &body);
                assert!(body == local(n), "F({n}) from a worker differs from fibo's");
                assert_eq!(metric(&s, "fibo_offloaded_total").await, (i + 1) as f64);
            }
            // Cached here once it came back; small values are computed here.
            let (_, source, _) = fib(&s, 100_000).await;
            assert_eq!(source, "hit");
            let (_, _, body) = fib(&s, 40_000).await;
            check_value(40_000, &body);
            assert_eq!(metric(&s, "fibo_offloaded_total").await, 2.0);
            // No worker left: after half the timeout the value is computed here.
            drop(worker);
            let (status, _, body) = fib(&s, 2_000_000).await;
            assert_eq!(status, StatusCode::OK);
            check_value(2_000_000, &body);
            assert_eq!(metric(&s, "fibo_offload_failures_total").await, 1.0);
            assert!(
                s.log().iter().any(|l| l.contains("computed here")),
                "{:?}",
                s.log()
            );
        });
    });
}
