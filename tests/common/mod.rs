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
