//! `fibo worker` and `fibo submit` through a real Redis, and a Python Celery client against a
//! fibo worker (feature `distributed`).
//!
//! Each test starts its own `redis-server` on a free loopback port, without persistence, and
//! its own workers, and stops them by PID when it ends (also on failure). Without
//! `redis-server` on PATH these tests say so and pass, unless `PARKIT_REQUIRE_REDIS=1` (set by
//! `.ci/run`, which installs it): then they fail. The Python test needs `PARKIT_PYTHON`, a
//! Python with the `celery` and `redis` packages (`.ci/run` makes one in a venv).

mod common;

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, have_redis, redis_cli, required, signal, spawn_redis};

use num_bigint::BigUint;

fn fibo_path() -> PathBuf {
    assert_cmd::cargo::cargo_bin("fibo")
}

/// A child process killed (by PID) and reaped when dropped.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis server of its own, and a scratch directory for logs.
struct Redis {
    port: u16,
    dir: tempfile::TempDir,
    _server: Proc,
}

impl Redis {
    /// Starts one, or `None` (test skipped) where redis-server is missing and not required.
    fn start() -> Option<Redis> {
        if !have_redis() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let port = free_port();
            let log = format!("redis-{port}.log");
            // None: the port was taken meanwhile, try another.
            if let Some(child) = spawn_redis(port, dir.path(), &log, &[]) {
                let log = dir.path().join(log);
                return Some(Redis {
                    port,
                    dir,
                    _server: Proc { child, log },
                });
            }
        }
        panic!("redis-server did not start");
    }

    /// Stops the server and starts a new one on the same port.
    fn restart(&mut self) {
        self._server.kill();
        let log = "redis-restarted.log";
        let child =
            spawn_redis(self.port, self.dir.path(), log, &[]).expect("redis did not restart");
        self._server = Proc {
            child,
            log: self.dir.path().join(log),
        };
    }

    /// Runs redis-cli against this server and returns its output.
    fn cli(&self, args: &[&str]) -> String {
        redis_cli(self.port, args)
    }

    fn url(&self, db: u32) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    /// A `fibo worker` on this Redis (broker db 0, results db 1), stderr to a log file.
    fn worker(&self, name: &str, extra: &[&str]) -> Proc {
        let log = self.dir.path().join(format!("{name}.log"));
        let child = Command::new(fibo_path())
            .args([
                "worker",
                "--broker",
                &self.url(0),
                "--backend",
                &self.url(1),
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let w = Proc { child, log };
        wait_for(&w, "taking fibo.batch", Duration::from_secs(10));
        w
    }

    /// A `fibo worker` with these arguments and environment, stderr to a log file; not
    /// waited for.
    fn spawn_worker(&self, name: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let log = self.dir.path().join(format!("{name}.log"));
        let child = Command::new(fibo_path())
            .arg("worker")
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Proc { child, log }
    }

    /// Waits (up to 5 s) until the server holds no key in `db`, and says what is left.
    fn empty(&self, db: &str) -> String {
        let t = Instant::now();
        loop {
            let keys = self.cli(&["-n", db, "--scan"]);
            if keys.is_empty() || t.elapsed() > Duration::from_secs(5) {
                return keys;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn submit(&self) -> Command {
        let mut c = Command::new(fibo_path());
        c.args([
            "submit",
            "--broker",
            &self.url(0),
            "--backend",
            &self.url(1),
        ]);
        c
    }
}

fn wait_for(p: &Proc, needle: &str, within: Duration) {
    let t = Instant::now();
    while !p.log().contains(needle) {
        assert!(
            t.elapsed() < within,
            "no {needle:?} within {within:?}; log: {}",
            p.log()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn plain(args: &[&str]) -> Vec<u8> {
    let out = Command::new(fibo_path()).args(args).output().unwrap();
    assert!(out.status.success());
    out.stdout
}

fn check_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// F(n) by plain iteration: independent of the library.
fn iter_fib(n: u64) -> BigUint {
    let (mut a, mut b) = (BigUint::from(0u32), BigUint::from(1u32));
    for _ in 0..n {
        let c = &a + &b;
        a = std::mem::replace(&mut b, c);
    }
    a
}

#[test]
fn submit_prints_what_fibo_prints_in_every_format() {
    let Some(redis) = Redis::start() else { return };
    let _w = redis.worker("w", &["-j", "2"]);
    let inputs = ["5", "0..300", "1000..=1100", "7", "1e5", "99999", "5"];
    for opts in [
        &[][..],
        &["--format", "tsv"],
        &["--format", "json"],
        &["--digits", "--format", "json"],
        &["--last", "12", "--format", "tsv"],
        &["--last", "30"],
        &["--mod", "1000000007"],
    ] {
        let args: Vec<&str> = inputs.iter().chain(opts).copied().collect();
        let out = redis
            .submit()
            .args(["--chunk", "37"])
            .args(&args)
            .output()
            .unwrap();
        check_ok(&out, &format!("{args:?}"));
        assert_eq!(out.stdout, plain(&args), "{args:?}");
    }
    // Default chunks (by estimated work) and a big --last batch.
    for args in [
        &inputs[..],
        &["1..20000", "--last", "7", "--format", "json"],
    ] {
        let out = redis.submit().args(args).output().unwrap();
        check_ok(&out, &format!("{args:?}"));
        assert_eq!(out.stdout, plain(args), "{args:?}");
    }
    // The values themselves, against iteration.
    let out = redis
        .submit()
        .args(["--chunk", "3", "0..=40", "500"])
        .output()
        .unwrap();
    check_ok(&out, "0..=40 500");
    let text = String::from_utf8(out.stdout).unwrap();
    let want: Vec<String> = (0..=40)
        .chain([500])
        .map(|n| iter_fib(n).to_string())
        .collect();
    assert_eq!(text.lines().collect::<Vec<_>>(), want);
}

#[test]
fn two_workers_share_a_batch() {
    let Some(redis) = Redis::start() else { return };
    // Both workers wait in BRPOP before anything is sent, and Redis serves blocked clients
    // in turn: the first two of 24 chunks go one to each.
    let a = redis.worker("a", &["-j", "1"]);
    let b = redis.worker("b", &["-j", "1"]);
    std::thread::sleep(Duration::from_millis(300));
    let ns: Vec<String> = (0..24)
        .map(|k| (5_000_000 + 100_000 * k).to_string())
        .collect();
    let ns: Vec<&str> = ns.iter().map(String::as_str).collect();
    let out = redis
        .submit()
        .args(["--chunk", "1"])
        .args(&ns)
        .output()
        .unwrap();
    check_ok(&out, "submit");
    assert_eq!(out.stdout, plain(&ns));
    let (la, lb) = (a.log(), b.log());
    let (da, db) = (
        la.matches(" done in ").count(),
        lb.matches(" done in ").count(),
    );
    assert_eq!(da + db, 24, "a: {la}\nb: {lb}");
    assert!(
        da > 0 && db > 0,
        "both workers should take part: a {da}, b {db}"
    );
}

#[test]
fn a_long_queue_is_not_a_late_chunk() {
    let Some(redis) = Redis::start() else { return };
    let w = redis.worker("w", &["-j", "1"]);
    // 30 chunks of about 30 ms each through one worker: the last waits about a second in the
    // queue, more than the timeout, but none is ever late while the worker is on it.
    let ns: Vec<String> = (0..30)
        .map(|k| (5_000_000 + 100_000 * k).to_string())
        .collect();
    let ns: Vec<&str> = ns.iter().map(String::as_str).collect();
    let out = redis
        .submit()
        .args(["--chunk", "1", "--timeout", "0.5", "--digits"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "no inputs is an error");
    let out = redis
        .submit()
        .args(["--chunk", "1", "--timeout", "0.5"])
        .args(&ns)
        .output()
        .unwrap();
    check_ok(&out, "submit");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("sending them again"), "{err}");
    assert_eq!(out.stdout, plain(&ns));
    assert_eq!(w.log().matches(" done in ").count(), 30, "{}", w.log());
}

#[test]
fn a_worker_killed_mid_batch_loses_nothing() {
    let Some(redis) = Redis::start() else { return };
    let mut a = redis.worker("a", &["-j", "1"]);
    // F(10^8) takes about a second on one thread: long enough to be killed in the middle.
    let args = ["1e8", "10", "1000..1003"];
    let submit = redis
        .submit()
        .args(["--chunk", "1", "--timeout", "4"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&a, "n up to 100000000", Duration::from_secs(20));
    a.kill();
    let log_a = a.log();
    let b = redis.worker("b", &["-j", "2"]);
    let out = submit.wait_with_output().unwrap();
    check_ok(&out, "submit");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sending them again"), "{err}");
    assert_eq!(out.stdout, plain(&args));
    assert!(b.log().contains("n up to 100000000"), "{}", b.log());
    // The killed worker never finished F(10^8).
    let big_done = log_a
        .lines()
        .skip_while(|l| !l.contains("n up to 100000000"))
        .any(|l| l.contains(" done in "));
    assert!(!big_done, "{log_a}");
    // The dead worker's unacknowledged entry was cleared, and no result is left behind.
    assert_eq!(
        redis.cli(&["-n", "0", "hlen", "_celery.celery_process_map"]),
        "0"
    );
    assert_eq!(redis.cli(&["-n", "1", "dbsize"]), "0");
}

#[test]
fn an_interrupted_submit_withdraws_its_tasks() {
    let Some(redis) = Redis::start() else { return };
    // No worker yet: every chunk waits in the queue.
    let mut submit = redis
        .submit()
        .args(["--chunk", "1", "1e6", "2e6", "3e6", "4e6"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while redis.cli(&["-n", "0", "llen", "celery"]) != "4" {
        assert!(t.elapsed() < Duration::from_secs(10), "tasks never queued");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    let status = Command::new("kill")
        .args(["-INT", &submit.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = submit.wait().unwrap().code();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut submit.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(code, Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    // A worker that comes later takes the four tasks and computes none of them.
    let w = redis.worker("w", &["-j", "1"]);
    wait_for(&w, "skipped", Duration::from_secs(10));
    let t = Instant::now();
    while w.log().matches("withdrawn by its client, skipped").count() < 4 {
        assert!(t.elapsed() < Duration::from_secs(10), "{}", w.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!w.log().contains("started"), "{}", w.log());
    assert_eq!(redis.cli(&["-n", "0", "llen", "celery"]), "0");
}

#[test]
fn a_worker_outlives_a_redis_restart() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let _w = redis.worker("w", &["-j", "2"]);
    let args = ["10", "1000..1010", "1e6"];
    let out = redis.submit().args(args).output().unwrap();
    check_ok(&out, "before the restart");
    redis.restart();
    let out = redis.submit().args(args).output().unwrap();
    check_ok(&out, "after the restart");
    assert_eq!(out.stdout, plain(&args));
}

#[test]
fn a_worker_stops_after_its_task_and_quits_on_a_second_signal() {
    let Some(redis) = Redis::start() else { return };
    let signal = |p: &Proc, sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &p.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    // One SIGTERM: the running task finishes, its result is delivered, the worker exits 0.
    let mut a = redis.worker("a", &["-j", "1"]);
    let submit = redis
        .submit()
        .args(["1e8"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&a, "n up to 100000000", Duration::from_secs(20));
    signal(&a, "-TERM");
    let status = a.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", a.log());
    assert!(a.log().contains(" done in "), "{}", a.log());
    let out = submit.wait_with_output().unwrap();
    check_ok(&out, "submit");
    assert_eq!(out.stdout, plain(&["1e8"]));
    // Two: it quits at once, with the task unfinished.
    let mut b = redis.worker("b", &["-j", "1"]);
    let submit = redis
        .submit()
        .args(["--timeout", "60", "2e8"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut submit = Proc {
        child: submit,
        log: redis.dir.path().join("none"),
    };
    wait_for(&b, "n up to 200000000", Duration::from_secs(20));
    signal(&b, "-TERM");
    wait_for(&b, "again to quit now", Duration::from_secs(5));
    signal(&b, "-TERM");
    let status = b.child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "{}", b.log());
    assert!(!b.log().contains(" done in "), "{}", b.log());
    submit.kill();
}

#[test]
fn failures_come_back_as_one_clear_line() {
    let Some(redis) = Redis::start() else { return };
    let _w = redis.worker("w", &["--max-memory", "1M"]);
    // Within the worker's task: over its memory limit, and no worker with more takes it
    // (it is put back a few times first, so the chunk of F(10) may be printed meanwhile).
    let out = redis.submit().args(["10", "1e7"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty() || out.stdout == b"55\n");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("F(10000000)") && err.contains("memory limit"),
        "{err}"
    );
    // Nobody on the queue: given up after the retries, within seconds.
    let t = Instant::now();
    let out = redis
        .submit()
        .args([
            "--queue",
            "nobody",
            "--timeout",
            "0.3",
            "--retries",
            "1",
            "10",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("after 2 tries") && err.contains("'nobody'"),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(10));
    // A good broker but an unreachable backend.
    // Port 1: nothing listens there, and no test's server ever will.
    let closed = "redis://127.0.0.1:1/1".to_string();
    let out = Command::new(fibo_path())
        .args([
            "submit",
            "--broker",
            &redis.url(0),
            "--backend",
            &closed,
            "10",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot reach the result backend"), "{err}");
}

#[test]
fn unreachable_or_bad_brokers_fail_fast() {
    // Needs no Redis: nothing listens on a port just freed.
    // Port 1: nothing listens there, and no test's server ever will.
    let closed = "redis://127.0.0.1:1/0".to_string();
    for args in [
        vec!["submit", "--broker", &closed, "10"],
        vec!["worker", "--broker", &closed],
    ] {
        let t = Instant::now();
        let out = Command::new(fibo_path()).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
        assert!(err.starts_with("fibo: cannot reach the broker at redis://127.0.0.1:"));
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    }
    for (args, needle) in [
        (
            vec!["submit", "--broker", "amqp://h/", "1"],
            "not a redis:// URL",
        ),
        (vec!["worker", "--broker", "redis:///0"], "names no host"),
        (vec!["submit", "--broker", "redis://h/0", "x7"], "'x7'"),
        (
            vec!["submit", "--broker", "redis://h/0", "--timeout", "0", "1"],
            "--timeout",
        ),
    ] {
        let out = Command::new(fibo_path()).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
    }
}

const PYTHON_CLIENT: &str = r#"
import sys, time
from celery import Celery

broker, backend = sys.argv[1], sys.argv[2]
app = Celery(broker=broker, backend=backend)

def fib(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a

def wait(r):
    # Polling ready() also works, for a client that prefers it to get()'s subscription.
    t = time.time()
    while not r.ready():
        if time.time() - t > 20:
            sys.exit("no result for " + r.id)
        time.sleep(0.02)
    return r

r = wait(app.send_task("fibo.batch", args=[[10, 100]]))
assert r.get(timeout=5) == ["55", "354224848179261915075"], r.get()

# get() straight away: the worker publishes the result to a subscribed client, as Celery does.
import math
def digits(n):  # Binet: floor(n log10(phi) - log10(sqrt 5)) + 1, for large n
    return math.floor(n * math.log10((1 + 5 ** 0.5) / 2) - math.log10(5) / 2) + 1
r = app.send_task("fibo.batch", args=[[20_000_000, 12]], kwargs={"format": "digits"})
assert r.get(timeout=20) == [str(digits(20_000_000)), "3"], r.get()
r = app.send_task("fibo.batch", args=[[3_000_000, 3_000_001]])
v = r.get(timeout=20)
# The last four digits repeat with period 15000 (Pisano).
assert len(v[0]) == digits(3_000_000), len(v[0])
assert v[1][-4:] == str(fib(3_000_001 % 15000) % 10000).zfill(4), v[1][-4:]

ns = [0, 1, 2, 93, 94, 187, 1000, 5000, 4999]
assert wait(app.send_task("fibo.batch", args=[ns])).get() == [str(fib(n)) for n in ns]

r = wait(app.send_task("fibo.batch", args=[[30, 7, 1000]], kwargs={"format": "last", "last": 3}))
assert r.get() == ["040", "13", str(fib(1000) % 1000).zfill(3)], r.get()

r = wait(app.send_task("fibo.batch", args=[[100, 1000]], kwargs={"format": "digits"}))
assert r.get() == [str(len(str(fib(100)))), str(len(str(fib(1000))))], r.get()

for bad in ([[-5]], [[5], "hex"], [["ten"]]):
    r = wait(app.send_task("fibo.batch", args=bad))
    assert r.state == "FAILURE", r.state
    try:
        r.get()
        sys.exit("no error for %r" % (bad,))
    except ValueError as e:
        assert "fibo.batch" in str(e) or "format" in str(e), str(e)

# What Celery can send and fibo does not do fails with that reason, promptly: canvas (and the
# results a chain's or a chord's client waits on), protocol 1, pickle, compression. A call
# Python would refuse raises TypeError, and a number past u64 is shown as written.
from celery import chain, chord
def refused(r, kind, *needles):
    try:
        r.get(timeout=20)
    except kind as e:
        for n in needles:
            assert n in str(e), (n, str(e))
        return
    sys.exit("no %s for %r" % (kind.__name__, needles))

sig = lambda *a: app.signature("fibo.batch", args=list(a))
refused(app.send_task("fibo.batch", args=[[10]], link=sig()), NotImplementedError, "canvas", "link")
refused(app.send_task("fibo.batch", args=[[10]], link_error=sig()), NotImplementedError, "link_error")
refused(chain(sig([10]), sig())(), NotImplementedError, "canvas", "chain")
refused(chord([sig([10]), sig([20])], sig())(), NotImplementedError, "canvas", "chord")
refused(app.send_task("fibo.batch", args=[[10], "value", None, 5]), TypeError, "4 were given")
refused(app.send_task("fibo.batch", args=[[10]], kwargs={"fromat": "digits"}), TypeError, "'fromat'")
refused(app.send_task("fibo.batch", args=[[10]], kwargs={"ns": [1]}), TypeError, "multiple values")
refused(app.send_task("fibo.batch", args=[[1, 2**64]]), ValueError, "ns[1] is 18446744073709551616")
refused(app.send_task("fibo.batch", args=[[10]], serializer="pickle"), NotImplementedError, "JSON")
refused(app.send_task("fibo.batch", args=[[10]], compression="zlib"), NotImplementedError, "compress")
v1 = Celery(broker=broker, backend=backend)
v1.conf.task_protocol = 1
refused(v1.send_task("fibo.batch", args=[[10]]), NotImplementedError, "protocol 1")
# A group is plain tasks: it works.
from celery import group
assert group(sig([10]), sig([20]))().get(timeout=20) == [["55"], ["6765"]]
print("python client ok")
"#;

#[test]
fn a_python_celery_client_gets_results_from_a_fibo_worker() {
    let Some(redis) = Redis::start() else { return };
    let Some(python) = std::env::var_os("PARKIT_PYTHON") else {
        assert!(
            !required(),
            "PARKIT_REQUIRE_REDIS=1 but PARKIT_PYTHON is not set"
        );
        eprintln!("skipped: PARKIT_PYTHON (a Python with celery and redis) is not set");
        return;
    };
    let w = redis.worker("w", &["-j", "2"]);
    let script = redis.dir.path().join("client.py");
    fs::File::create(&script)
        .unwrap()
        .write_all(PYTHON_CLIENT.as_bytes())
        .unwrap();
    let out = Command::new(Path::new(&python))
        .arg(&script)
        .args([redis.url(0), redis.url(1)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python: {}\n{}\nworker: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        w.log()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("python client ok"));
}

#[test]
fn tiny_chunks_finish_in_the_time_of_their_work_and_leave_redis_empty() {
    let Some(redis) = Redis::start() else { return };
    let w = redis.worker("w", &["-j", "2"]);
    // 1000 chunks of 100 digit counts: every result is in within seconds. Printed chunks
    // used to stay in the poll window, look late and be sent again, for minutes.
    let args = ["0..100000", "--digits"];
    let t = Instant::now();
    let out = redis
        .submit()
        .args(["--chunk", "100"])
        .args(args)
        .output()
        .unwrap();
    let took = t.elapsed();
    check_ok(&out, "submit");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("sending them again"), "{err}");
    assert_eq!(out.stdout, plain(&args));
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert_eq!(w.log().matches(" done in ").count(), 1000);
    // Nothing left behind: no result, no queue, no unacknowledged entry, no withdrawal.
    assert_eq!(redis.empty("1"), "");
    assert_eq!(redis.empty("0"), "");
}

#[test]
fn sends_wait_out_a_broker_that_is_read_only_for_a_while() {
    let Some(redis) = Redis::start() else { return };
    // No worker yet: with --timeout 0.3 every chunk is late, and sent again, every 0.3 s.
    let args = ["1000..1010"];
    let submit = redis
        .submit()
        .args(["--chunk", "1", "--timeout", "0.3", "--retries", "100"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while redis.cli(&["-n", "0", "llen", "celery"]) != "10" {
        assert!(t.elapsed() < Duration::from_secs(10), "tasks never queued");
        std::thread::sleep(Duration::from_millis(10));
    }
    // A failover: the broker refuses writes (the sends) for two seconds, reads still work.
    // Sends are retried like every other Redis command, instead of failing the submit.
    redis.cli(&["replicaof", "127.0.0.1", "1"]);
    std::thread::sleep(Duration::from_secs(2));
    redis.cli(&["replicaof", "no", "one"]);
    let _w = redis.worker("w", &["-j", "1"]);
    let out = submit.wait_with_output().unwrap();
    check_ok(&out, "submit");
    assert_eq!(out.stdout, plain(&args));
    // Sends were refused meanwhile.
    let stats = redis.cli(&["info", "commandstats"]);
    let lpush = stats
        .lines()
        .find(|l| l.starts_with("cmdstat_lpush:"))
        .unwrap_or_default();
    let rejected = lpush
        .split(',')
        .find_map(|f| f.strip_prefix("rejected_calls="))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(rejected > Some(0), "no send was refused: {lpush}");
}

#[test]
fn a_result_redis_refuses_fails_the_task_with_the_reason() {
    let Some(redis) = Redis::start() else { return };
    // F(10^7) has 2.1 MB of digits, over a 1 MB limit on Redis values.
    redis.cli(&["config", "set", "proto-max-bulk-len", "1mb"]);
    let w = redis.worker("w", &["-j", "2"]);
    let t = Instant::now();
    let out = redis
        .submit()
        .args(["--timeout", "60", "10", "1e7"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("a worker failed on") && err.contains("proto-max-bulk-len"),
        "{err}\nworker: {}",
        w.log()
    );
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    // Redis full: the result's write is refused, and so is, for a moment, the failure's.
    redis.cli(&["config", "set", "proto-max-bulk-len", "512mb"]);
    redis.cli(&["config", "set", "maxmemory-policy", "noeviction"]);
    redis.cli(&["config", "set", "maxmemory", "2mb"]);
    let t = Instant::now();
    let out = redis
        .submit()
        .args(["--timeout", "60", "1e7"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("a worker failed on F(10000000)") && err.contains("OOM"),
        "{err}\nworker: {}",
        w.log()
    );
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
}

#[test]
fn passwords_stay_out_of_messages_and_a_missing_one_fails_at_start() {
    // Bad URLs: the error names the problem, never the password.
    for args in [
        vec!["submit", "--broker", "rediss://:hunter22@h/0", "1"],
        vec!["submit", "--broker", "redis://:hunter22@h:99999/0", "1"],
        vec!["worker", "--broker", "redis://:hunter22@/0"],
        vec![
            "submit",
            "--broker",
            "redis://h/0",
            "--backend",
            "redis://:hunter22@h:x/1",
            "1",
        ],
    ] {
        let out = Command::new(fibo_path()).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("***"), "{args:?}: {err}");
        assert!(!err.contains("hunter22"), "{args:?}: {err}");
    }
    let Some(redis) = Redis::start() else { return };
    redis.cli(&["config", "set", "requirepass", "hunter22"]);
    let port = redis.port;
    // No password: one line at start, no banner, no minute of retries.
    let t = Instant::now();
    let mut w = redis.spawn_worker("nopw", &["--broker", &redis.url(0)], &[]);
    let status = w.child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{}", w.log());
    assert!(w.log().contains("requires a password"), "{}", w.log());
    assert!(!w.log().contains("taking"), "{}", w.log());
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    // A wrong one: refused, and not repeated.
    let wrong = format!("redis://:wrongpw77@127.0.0.1:{port}/0");
    let out = Command::new(fibo_path())
        .args(["submit", "--broker", &wrong, "10"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("wrongpw77"), "{err}");
    // The URLs from the environment: the password stays out of `ps`, and out of the log.
    let broker = format!("redis://:hunter22@127.0.0.1:{port}/0");
    let backend = format!("redis://:hunter22@127.0.0.1:{port}/1");
    let env = [
        ("FIBO_BROKER", broker.as_str()),
        ("FIBO_BACKEND", backend.as_str()),
    ];
    let w = redis.spawn_worker("env", &["-j", "1"], &env);
    wait_for(&w, "taking fibo.batch", Duration::from_secs(10));
    let out = Command::new(fibo_path())
        .args(["submit", "10", "1000"])
        .envs(env)
        .output()
        .unwrap();
    check_ok(&out, "submit");
    assert_eq!(out.stdout, plain(&["10", "1000"]));
    assert!(!w.log().contains("hunter22"), "{}", w.log());
    assert!(w.log().contains(":***@"), "{}", w.log());
}

#[test]
fn a_copy_that_finishes_after_its_submit_was_interrupted_stores_nothing() {
    let Some(redis) = Redis::start() else { return };
    let w = redis.worker("w", &["-j", "1"]);
    let mut submit = redis
        .submit()
        .args(["1e8"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&w, "n up to 100000000", Duration::from_secs(20));
    signal(submit.id(), "-INT");
    assert_eq!(submit.wait().unwrap().code(), Some(130));
    // The worker finishes F(10^8) after its client has gone, and keeps its 21 MB to itself.
    let t = Instant::now();
    while !w.log().contains("result dropped") && !w.log().contains(" done in ") {
        assert!(t.elapsed() < Duration::from_secs(30), "{}", w.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(w.log().contains("result dropped"), "{}", w.log());
    assert_eq!(redis.empty("1"), "");
    assert_eq!(
        redis.cli(&["-n", "0", "hlen", "_celery.celery_process_map"]),
        "0"
    );
}

#[test]
fn a_task_over_one_workers_memory_goes_to_another() {
    let Some(redis) = Redis::start() else { return };
    let small = redis.worker("small", &["-j", "1", "--max-memory", "1M"]);
    let args = ["10", "1e7"];
    let submit = redis
        .submit()
        .args(["--chunk", "1"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&small, "memory limit", Duration::from_secs(20));
    let big = redis.worker("big", &["-j", "2"]);
    let out = submit.wait_with_output().unwrap();
    check_ok(&out, "submit");
    assert_eq!(out.stdout, plain(&args));
    assert!(big.log().contains("n up to 10000000"), "{}", big.log());
    assert!(small.log().contains("put back"), "{}", small.log());
    assert_eq!(redis.empty("0"), "");
    assert_eq!(redis.empty("1"), "");
}
