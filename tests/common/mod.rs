//! Helpers shared by the integration tests (`mod common;` in each that uses them).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Runs `f` on a thread of its own and fails the test if it has not finished within `secs`
/// seconds: a hang or a deadlock shows up as a failure instead of a hung test run.
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
