//! Helpers shared by the integration tests (`mod common;` in each that uses them).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Runs `f` on a thread of its own and fails the test if it has not finished within `secs`
/// seconds: a hang or a deadlock shows up as a failure instead of a hung test run.
#[allow(dead_code)]
pub fn watchdog<R: Send + 'static>(
    secs: u64,
    what: &str,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    let (tx, rx) = mpsc::channel();
    let runner = thread::spawn(move || {
        let result = catch_unwind(AssertUnwindSafe(f));
        let _ = tx.send(());
        result
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(()) => match runner.join().expect("the runner catches panics") {
            Ok(r) => r,
            Err(payload) => std::panic::resume_unwind(payload),
        },
        Err(_) => panic!("hang or deadlock? '{what}' did not finish within {secs} s"),
    }
}

// Helpers of the tests that start their own redis-server (`distributed`, `serve_cluster`);
// each test crate compiles this module, so the ones a crate does not use are allowed.

/// Whether a missing redis-server fails the test (`PARKIT_REQUIRE_REDIS=1`, as `.ci/run`
/// sets) instead of skipping it.
#[allow(dead_code)]
pub fn required() -> bool {
    std::env::var("PARKIT_REQUIRE_REDIS").is_ok_and(|v| v == "1")
}

/// Whether redis-server is on PATH; when it is not, fails the test if [`required`], else
/// says that the test is skipped.
#[allow(dead_code)]
pub fn have_redis() -> bool {
    if find_on_path("redis-server").is_some() {
        return true;
    }
    assert!(
        !required(),
        "PARKIT_REQUIRE_REDIS=1 but redis-server is not on PATH"
    );
    eprintln!("skipped: redis-server is not on PATH (set PARKIT_REQUIRE_REDIS=1 to fail)");
    false
}

/// The path of `name` on `PATH`, if it is there.
#[allow(dead_code)]
pub fn find_on_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The process id of the Redis server on `port`, from `INFO server`.
#[allow(dead_code)]
pub fn server_pid(port: u16) -> Option<u32> {
    use std::io::{BufRead, BufReader, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    conn.write_all(b"INFO server\r\n").ok()?;
    BufReader::new(conn)
        .lines()
        .map_while(Result::ok)
        .take(100)
        .find_map(|l| l.strip_prefix("process_id:").map(|p| p.trim().parse().ok()))?
}

/// A loopback port free a moment ago.
#[allow(dead_code)]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An HTTP client for loopback servers (no proxy from the environment).
#[allow(dead_code)]
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a client")
}

/// A two-thread tokio runtime for a test's HTTP calls.
#[allow(dead_code)]
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Sends `sig` (`-STOP`, `-CONT`, `-TERM`, `-9`) to process `pid` with `kill`.
#[allow(dead_code)]
pub fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// Starts `redis-server` on `port` with its files in `dir` (its log in `dir/log`) and the
/// `extra` arguments, and waits up to 5 s until that very process answers on the port.
/// `None`, the process stopped, when the port was taken meanwhile or it never answered.
#[allow(dead_code)]
pub fn spawn_redis(
    port: u16,
    dir: &std::path::Path,
    log: &str,
    extra: &[&str],
) -> Option<std::process::Child> {
    let server = find_on_path("redis-server").expect("redis-server is on PATH");
    let mut child = std::process::Command::new(server)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .args(extra)
        .arg("--dir")
        .arg(dir)
        .stdout(std::fs::File::create(dir.join(log)).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        // Ours, not another test's server that got the same port first.
        if server_pid(port) == Some(child.id()) {
            return Some(child);
        }
        if child.try_wait().unwrap().is_some() {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Runs `redis-cli` against the server on `port` and returns its output, trimmed.
#[allow(dead_code)]
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let cli = find_on_path("redis-cli").expect("redis-cli comes with redis-server");
    let out = std::process::Command::new(cli)
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "redis-cli {args:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Reads the first stderr line of a starting `fibo serve` (stderr piped) and returns the
/// base URL it listens on, with the rest of its stderr for the caller to drain.
#[allow(dead_code)]
pub fn serve_address(
    child: &mut std::process::Child,
) -> (String, std::io::BufReader<std::process::ChildStderr>) {
    use std::io::BufRead;
    let mut err = std::io::BufReader::new(child.stderr.take().expect("stderr piped"));
    let mut first = String::new();
    err.read_line(&mut first).expect("a first line on stderr");
    let base = first
        .trim()
        .strip_prefix("fibo serve: listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {first:?}"))
        .to_string();
    (base, err)
}
