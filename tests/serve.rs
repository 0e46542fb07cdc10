//! `fibo serve` as its users meet it: real HTTP clients on loopback against the real binary.
//! Every value is checked against an independent computation (iteration for small n; residues
//! by the modular path and digit counts for big n), and `/batch` against the CLI's own bytes.

mod common;

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use num_bigint::BigUint;
use reqwest::StatusCode;

/// The servers the tests started, killed when a test times out: a hung test's runner thread
/// never drops its `Server`, and the server would outlive the test process.
static STARTED: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// `common::watchdog`, and on failure every server still running is killed.
fn watchdog<R: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        common::watchdog(secs, what, f)
    })) {
        Ok(r) => r,
        Err(p) => {
            for pid in STARTED.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
            std::panic::resume_unwind(p)
        }
    }
}

/// A `fibo serve` on a free loopback port, stopped on drop.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        Server::start_with_env(extra, &[])
    }

    fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fibo"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("fibo runs");
        STARTED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(child.id());
        let (addr, err) = common::serve_address(&mut child);
        // Keep draining stderr so that the server never blocks on it.
        std::thread::spawn(move || for _ in err.lines() {});
        Server { child, base: addr }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn signal(&self, sig: &str) {
        common::signal(self.child.id(), sig);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.child.id();
        STARTED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|&p| p != pid);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

use common::{client, runtime};

async fn get(url: &str) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let r = client().get(url).send().await.expect("an answer");
    let (status, headers) = (r.status(), r.headers().clone());
    (status, headers, r.text().await.expect("a body"))
}

async fn post(url: &str, body: &str, json: bool) -> (StatusCode, String) {
    let mut req = client().post(url).body(body.to_string());
    if json {
        req = req.header("content-type", "application/json");
    }
    let r = req.send().await.expect("an answer");
    (r.status(), r.text().await.expect("a body"))
}

/// A metric's value from `/metrics` (0 when the series does not exist yet).
async fn metric(s: &Server, series: &str) -> f64 {
    let (_, _, text) = get(&s.url("/metrics")).await;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn iter_fib(n: u64) -> BigUint {
    let (mut a, mut b) = (BigUint::from(0u32), BigUint::from(1u32));
    for _ in 0..n {
        let c = &a + &b;
        a = std::mem::replace(&mut b, c);
    }
    a
}

/// A decimal string's residue mod m.
fn residue(digits: &str, m: u64) -> u64 {
    digits.bytes().fold(0u64, |r, d| {
        ((u128::from(r) * 10 + u128::from(d - b'0')) % u128::from(m)) as u64
    })
}

fn fibo_cli(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_fibo"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("fibo runs");
    assert!(out.status.success(), "fibo {args:?}: {:?}", out);
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn values_match_iteration_and_big_ones_their_residues() {
    watchdog(120, "values", || {
        let s = Server::start(&[]);
        runtime().block_on(async {
            for n in (0..400).step_by(7).chain([186, 187, 1000, 2999]) {
                let (status, headers, body) = get(&s.url(&format!("/fib/{n}"))).await;
                assert_eq!(status, StatusCode::OK);
                assert_eq!(body, format!("{}\n", iter_fib(n)), "F({n})");
                assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
                let digits = iter_fib(n).to_string().len();
                assert_eq!(headers["x-fibo-digits"], digits.to_string().as_str());
            }
            // Big values: streamed, with the right length and residues by the modular path.
            for n in [100_000u64, 1_000_000, 3_000_017] {
                let (status, headers, body) = get(&s.url(&format!("/fib/{n}"))).await;
                assert_eq!(status, StatusCode::OK);
                let digits = body.trim_end();
                assert_eq!(digits.len() as u64, parkit::fib::digit_count(n));
                assert_eq!(headers["x-fibo-cache"], "miss");
                for m in [1_000_000_007u64, 998_244_353, u64::MAX - 58] {
                    assert_eq!(
                        residue(digits, m),
                        parkit::fib::fib_mod(n, m),
                        "F({n}) mod {m}"
                    );
                }
            }
            // Served from a rendered text (mid-size) and from the limbs (past 4 MiB digits):
            // the bytes the CLI prints, in every format.
            for n in ["1e6", "2e7"] {
                for format in ["value", "tsv", "json"] {
                    let (_, _, body) = get(&s.url(&format!("/fib/{n}?format={format}"))).await;
                    assert!(
                        body == fibo_cli(&[n, "--format", format]),
                        "F({n}) as {format}"
                    );
                }
            }
            // A second request for the same value comes from the central cache.
            let (_, headers, _) = get(&s.url("/fib/1000000")).await;
            assert_eq!(headers["x-fibo-cache"], "hit");
            // Other kinds and formats on one value.
            let (_, h, body) = get(&s.url("/fib/1e18?last=12&format=json")).await;
            assert_eq!(h["content-type"], "application/json");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                v["last"].as_str().unwrap(),
                parkit::fib::last_digits(1_000_000_000_000_000_000, 12)
            );
            let (_, _, body) = get(&s.url("/fib/123456789?mod=1000000007&format=tsv")).await;
            assert_eq!(
                body,
                format!(
                    "123456789\t{}\n",
                    parkit::fib::fib_mod(123_456_789, 1_000_000_007)
                )
            );
            let (_, _, body) = get(&s.url("/fib/1e6?digits")).await;
            assert_eq!(body, "208988\n");
            let (_, h, _) = get(&s.url("/fib/90?download")).await;
            assert_eq!(
                h["content-disposition"],
                "attachment; filename=\"fib-90.txt\""
            );
        });
    });
}

#[test]
fn batch_bytes_equal_the_cli_in_every_format() {
    watchdog(180, "batch", || {
        let s = Server::start(&[]);
        let inputs = [
            "0",
            "1",
            "10",
            "1000..1010",
            "186..=190",
            "1e5",
            "40000",
            "1000",
            "2_000",
        ];
        let body = format!(
            "{} # a comment\n\n{}\n",
            inputs[..4].join(" "),
            inputs[4..].join("\t")
        );
        runtime().block_on(async {
            for format in ["value", "tsv", "json"] {
                for what in [
                    vec![],
                    vec!["--digits"],
                    vec!["--last", "25"],
                    vec!["--mod", "97"],
                ] {
                    let mut args: Vec<&str> = inputs.to_vec();
                    args.extend(["--format", format]);
                    args.extend(what.iter().copied());
                    let want = fibo_cli(&args);
                    let query = match what.as_slice() {
                        [] => String::new(),
                        ["--digits"] => "&digits".into(),
                        [k, v] => format!("&{}={v}", k.trim_start_matches("--")),
                        _ => unreachable!(),
                    };
                    let (status, got) = post(
                        &s.url(&format!("/batch?format={format}{query}")),
                        &body,
                        false,
                    )
                    .await;
                    assert_eq!(status, StatusCode::OK);
                    assert_eq!(got, want, "text body, {format} {what:?}");
                    // The same through a JSON body.
                    let mut j = serde_json::json!({"inputs": inputs, "format": format});
                    match what.as_slice() {
                        ["--digits"] => j["digits"] = true.into(),
                        ["--last", v] => j["last"] = v.parse::<u64>().unwrap().into(),
                        ["--mod", v] => j["mod"] = (*v).into(),
                        _ => {}
                    }
                    let (status, got) = post(&s.url("/batch"), &j.to_string(), true).await;
                    assert_eq!(status, StatusCode::OK);
                    assert_eq!(got, want, "JSON body, {format} {what:?}");
                }
            }
            let r = client()
                .post(s.url("/batch?format=json"))
                .body("10")
                .send()
                .await
                .unwrap();
            assert_eq!(r.headers()["content-type"], "application/x-ndjson");
        });
    });
}

#[test]
fn bad_input_and_limits_get_a_clear_json_answer() {
    watchdog(120, "limits", || {
        let s = Server::start(&[
            "--max-n",
            "1e6",
            "--max-inputs",
            "100",
            "--max-response-bytes",
            "1M",
            "--max-body-bytes",
            "2K",
        ]);
        runtime().block_on(async {
            let json = |b: &str| serde_json::from_str::<serde_json::Value>(b).expect("a JSON body");
            let (st, h, b) = get(&s.url("/fib/12x")).await;
            assert_eq!(
                (st, &h["content-type"]),
                (
                    StatusCode::BAD_REQUEST,
                    &"application/json".parse().unwrap()
                )
            );
            let v = json(&b);
            assert_eq!(
                (v["token"].as_str(), v["at"].as_str()),
                (Some("12x"), Some("path"))
            );
            assert!(v["error"].as_str().unwrap().contains("not a number"), "{v}");
            let (st, b) = post(&s.url("/batch"), "10 20\n30 1..=x\n", false).await;
            assert_eq!(st, StatusCode::BAD_REQUEST);
            let v = json(&b);
            assert_eq!(
                (v["token"].as_str(), v["at"].as_str()),
                (Some("1..=x"), Some("line 2"))
            );
            let (st, b) = post(&s.url("/batch"), r#"{"inputs": ["5", "-1"]}"#, true).await;
            assert_eq!(
                (st, json(&b)["at"].as_str()),
                (StatusCode::BAD_REQUEST, Some("inputs[1]"))
            );
            let (st, b) = get(&s.url("/fib/10?mod=0")).await.into_parts();
            assert_eq!(
                (st, json(&b)["at"].as_str()),
                (StatusCode::BAD_REQUEST, Some("query mod"))
            );
            let (st, _, b) = get(&s.url("/fib/2000000")).await;
            assert_eq!(st, StatusCode::BAD_REQUEST);
            assert!(
                json(&b)["error"].as_str().unwrap().contains("--max-n"),
                "{b}"
            );
            // Past --max-n, the kinds that need no full value still work.
            let (st, _, b) = get(&s.url("/fib/1e15?digits")).await;
            let want = format!("{}\n", parkit::fib::digit_count(1_000_000_000_000_000));
            assert_eq!((st, b), (StatusCode::OK, want));
            let (st, b) = post(&s.url("/batch"), "1..1000", false).await;
            assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
            assert!(
                json(&b)["error"].as_str().unwrap().contains("--max-inputs"),
                "{b}"
            );
            let (st, _, b) = get(&s.url("/fib/999999")).await;
            // 208,988 digits fit; ten such values do not.
            assert_eq!(st, StatusCode::OK, "{}", &b[..100.min(b.len())]);
            let (st, b) = post(&s.url("/batch"), "999990..1000000", false).await;
            assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
            let v = json(&b);
            assert!(
                v["estimate"].as_u64().unwrap() > 2_000_000 && v["limit"] == 1 << 20,
                "{v}"
            );
            let (st, b) = post(&s.url("/batch"), &"1 ".repeat(2000), false).await;
            assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
            assert!(
                json(&b)["error"]
                    .as_str()
                    .unwrap()
                    .contains("--max-body-bytes"),
                "{b}"
            );
            let (st, _, b) = get(&s.url("/nowhere")).await;
            assert_eq!(st, StatusCode::NOT_FOUND);
            assert!(json(&b)["error"].is_string());
            let (st, b) = post(&s.url("/batch"), "# nothing\n", false).await;
            assert_eq!(
                (
                    st,
                    json(&b)["error"].as_str().unwrap().starts_with("no input")
                ),
                (StatusCode::BAD_REQUEST, true)
            );
            // Still serving.
            let (st, _, b) = get(&s.url("/healthz")).await;
            assert_eq!((st, b.as_str()), (StatusCode::OK, "ok\n"));
        });
    });
}

trait IntoParts {
    fn into_parts(self) -> (StatusCode, String);
}

impl IntoParts for (StatusCode, reqwest::header::HeaderMap, String) {
    fn into_parts(self) -> (StatusCode, String) {
        (self.0, self.2)
    }
}

#[test]
fn concurrent_requests_for_one_value_compute_it_once() {
    watchdog(120, "coalescing", || {
        let s = Server::start(&["-j", "2", "--max-concurrency", "4"]);
        let n = 10_000_000u64;
        runtime().block_on(async {
            let c = client();
            let url = s.url(&format!("/fib/{n}"));
            let tasks: Vec<_> = (0..200)
                .map(|_| {
                    let (c, url) = (c.clone(), url.clone());
                    tokio::spawn(async move {
                        let r = c.get(&url).send().await.expect("an answer");
                        let status = r.status();
                        let cache = r.headers()["x-fibo-cache"].to_str().unwrap().to_string();
                        let body = r.bytes().await.expect("a body");
                        (
                            status,
                            cache,
                            body.len(),
                            residue(
                                std::str::from_utf8(&body[..body.len() - 1]).unwrap(),
                                1_000_000_007,
                            ),
                        )
                    })
                })
                .collect();
            let mut sources = std::collections::HashMap::new();
            for t in tasks {
                let (status, cache, len, r) = t.await.unwrap();
                assert_eq!(status, StatusCode::OK);
                assert_eq!(len as u64, parkit::fib::digit_count(n) + 1);
                assert_eq!(r, parkit::fib::fib_mod(n, 1_000_000_007));
                *sources.entry(cache).or_insert(0) += 1;
            }
            assert_eq!(sources.get("miss"), Some(&1), "{sources:?}");
            assert_eq!(metric(&s, "fibo_values_total{kind=\"miss\"}").await, 1.0);
            let shared = metric(&s, "fibo_coalesced_waiters_total").await;
            assert_eq!(
                shared,
                f64::from(*sources.get("shared").unwrap_or(&0)),
                "{sources:?}"
            );
            // Only one computation went to the engine's cache as a miss for n.
            assert_eq!(metric(&s, "fibo_cache_misses_total").await, 1.0);
        });
    });
}

#[test]
fn a_client_that_leaves_cancels_its_work_unless_another_waits() {
    watchdog(120, "cancellation", || {
        let s = Server::start(&["-j", "2", "--max-n", "1e9"]);
        runtime().block_on(async {
            // Leaves after 300 ms of a computation that takes seconds.
            let quick = reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_millis(300))
                .build()
                .unwrap();
            let left = Instant::now();
            assert!(quick.get(s.url("/fib/700000000")).send().await.is_err());
            let mut stopped = false;
            while left.elapsed() < Duration::from_secs(20) {
                if metric(&s, "fibo_cancelled_computations_total").await == 1.0
                    && metric(&s, "fibo_computations_in_flight").await == 0.0
                {
                    stopped = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(stopped, "the computation was not cancelled");
            // One leaves, one stays: the work goes on and the one who stayed gets the value.
            let n = 30_000_000u64;
            let url = s.url(&format!("/fib/{n}"));
            let stays = tokio::spawn({
                let url = url.clone();
                async move { get(&url).await }
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = quick.get(&url).send().await;
            let (status, _, body) = stays.await.unwrap();
            assert_eq!(status, StatusCode::OK);
            assert_eq!(
                residue(body.trim_end(), 998_244_353),
                parkit::fib::fib_mod(n, 998_244_353)
            );
            assert_eq!(metric(&s, "fibo_cancelled_computations_total").await, 1.0);
        });
    });
}

#[test]
fn a_burst_past_the_limit_is_shed_with_retry_after() {
    watchdog(120, "shedding", || {
        let s = Server::start(&["-j", "2", "--max-concurrency", "2"]);
        runtime().block_on(async {
            let c = client();
            let tasks: Vec<_> = (0..24u64)
                .map(|i| {
                    let c = c.clone();
                    let url = s.url(&format!("/fib/{}", 5_000_000 + i * 1_000_003));
                    tokio::spawn(async move {
                        let r = c.get(&url).send().await.expect("an answer");
                        (
                            r.status(),
                            r.headers().get("retry-after").cloned(),
                            r.text().await.unwrap(),
                        )
                    })
                })
                .collect();
            let (mut ok, mut shed) = (0, 0);
            for t in tasks {
                let (status, retry, body) = t.await.unwrap();
                match status {
                    StatusCode::OK => ok += 1,
                    StatusCode::SERVICE_UNAVAILABLE => {
                        shed += 1;
                        assert_eq!(retry.unwrap(), "1");
                        assert!(body.contains("server busy"), "{body}");
                    }
                    other => panic!("unexpected {other}: {body}"),
                }
            }
            assert!(ok >= 2 && shed >= 1, "ok {ok}, shed {shed}");
            assert_eq!(
                metric(&s, "fibo_requests_shed_total{kind=\"busy\"}").await,
                f64::from(shed)
            );
            // A cached value is served whatever the load.
            let (st, _, _) = get(&s.url("/fib/10")).await;
            assert_eq!(st, StatusCode::OK);
        });
    });
}

#[test]
fn a_cached_request_is_not_stuck_behind_a_heavy_one() {
    watchdog(120, "fairness", || {
        let s = Server::start(&["-j", "2", "--max-n", "1e9"]);
        runtime().block_on(async {
            let (st, _, _) = get(&s.url("/fib/100000")).await;
            assert_eq!(st, StatusCode::OK);
            let heavy = tokio::spawn({
                let url = s.url("/fib/200000000");
                async move { get(&url).await.0 }
            });
            while metric(&s, "fibo_computations_in_flight").await < 1.0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // Cached, small and uncached-but-small values all come back while the heavy one
            // still runs.
            for path in ["/fib/100000", "/fib/1000", "/fib/20001?format=json"] {
                let (st, _, _) = get(&s.url(path)).await;
                assert_eq!(st, StatusCode::OK);
                assert_eq!(
                    metric(&s, "fibo_computations_in_flight").await,
                    1.0,
                    "{path}"
                );
            }
            assert!(!heavy.is_finished());
            assert_eq!(heavy.await.unwrap(), StatusCode::OK);
        });
    });
}

#[test]
fn a_panic_answers_500_for_its_request_only() {
    watchdog(60, "panic", || {
        let s = Server::start_with_env(&[], &[("FIBO_SERVE_PANIC_AT", "12345")]);
        runtime().block_on(async {
            let (st, _, b) = get(&s.url("/fib/12345")).await;
            assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR);
            assert!(b.contains("internal error") && b.contains("12345"), "{b}");
            let (st, _, b) = get(&s.url("/fib/12346")).await;
            assert_eq!((st, b.trim_end().len()), (StatusCode::OK, 2580));
        });
    });
}

#[test]
fn sigterm_finishes_the_request_in_flight_then_exits_0() {
    watchdog(60, "shutdown", || {
        let mut s = Server::start(&["--grace", "30"]);
        runtime().block_on(async {
            let url = s.url("/fib/100000000");
            let req = tokio::spawn(async move { get(&url).await });
            while metric(&s, "fibo_computations_in_flight").await < 1.0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            s.signal("-TERM");
            let (st, _, body) = req.await.unwrap();
            assert_eq!(st, StatusCode::OK);
            assert_eq!(body.len() as u64, parkit::fib::digit_count(100_000_000) + 1);
            assert_eq!(
                residue(body.trim_end(), 1_000_000_007),
                parkit::fib::fib_mod(100_000_000, 1_000_000_007)
            );
        });
        let status = s.child.wait().expect("it exits");
        assert!(status.success(), "{status:?}");
    });
}

#[test]
fn bodies_are_compressed_when_the_client_asks() {
    watchdog(60, "compression", || {
        let s = Server::start(&[]);
        runtime().block_on(async {
            for enc in ["gzip", "br"] {
                let r = client()
                    .get(s.url("/fib/100000"))
                    .header("accept-encoding", enc)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.headers()["content-encoding"], enc);
                let len = r.bytes().await.unwrap().len();
                // Decimal digits carry 3.32 bits each: well under the 20,900 plain bytes.
                assert!(len < 12_000, "{enc}: {len} bytes");
            }
            let r = client().get(s.url("/fib/100000")).send().await.unwrap();
            assert!(r.headers().get("content-encoding").is_none());
        });
    });
}
