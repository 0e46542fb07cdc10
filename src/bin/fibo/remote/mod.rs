//! The Celery side of `fibo worker` and `fibo submit` (feature `distributed`).
//!
//! celery-rs gives the Celery message type (built in [`task::batch_message`], decoded by its
//! `Delivery`) and the result layout (`TaskMeta` under `celery-task-meta-ID`), so Python's
//! Celery interoperates both ways. The Redis traffic around them is ours, on reconnecting
//! connections that retry transient errors (see [`redis::patiently`]):
//!
//! - Messages are sent with one LPUSH per group (see [`redis::enqueue`]), not through
//!   celery-rs's `send_task`, whose pooled connection failed a send outright when Redis
//!   restarted.
//! - The worker reads a message's arguments itself (see [`task::read_message`]): what
//!   Python's Celery can send and fibo cannot do (canvas, protocol 1, pickle, compression)
//!   fails with that reason, and arguments are checked as Python checks a call.
//! - The worker pops with BRPOP (see `worker::serve`). celery-rs 0.6.3's `Celery::consume`
//!   stalls for good once its Redis consumer reaches the prefetch limit: the stream answers
//!   `Pending` without keeping a waker, and the task's "finished" event, which re-polls it,
//!   is sent before the ack that frees the slot. That was seen here with prefetch 1 after one
//!   task and prefetch 2 after two. It also sleeps a second whenever the queue is empty. So
//!   no celery-rs task type exists here: nothing would run its body.
//! - States are stored with one SET each, and final ones are published to a subscribed
//!   client as Python's Celery does. celery-rs's backend does not publish, and a Python
//!   `get()` waits for that.
//!
//! Nothing puts a task back when a worker dies; it stays in the `_celery.QUEUE_process_map`
//! hash. So `submit` sends again a chunk whose worker stalls. Tasks are pure functions of
//! their arguments, so a late duplicate is harmless.
//!
//! The modules, one concept each:
//!
//! - `task`: the contract both sides share: the message, its arguments, the work, the
//!   result layout. No Redis.
//! - `redis`: connections, keys and the commands around them (send, withdraw, delete).
//! - `worker`: `fibo worker`, the consumer loop and a task's life (started, stored, acked).
//! - `submit`: `fibo submit`, chunk planning and the gathering loop (send, poll, resend,
//!   print).

/// `eprintln!` that ignores a failure: a worker whose stderr is closed or full (`| head`,
/// `2>/dev/full`) keeps working instead of panicking on its log line.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

mod redis;
mod submit;
mod task;
mod worker;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub(crate) use self::redis::{Conn, connection, enqueue, meta_key, redis_error, withdraw};
pub use self::submit::submit;
pub(crate) use self::task::{batch_message, failure_message, read_meta};
pub use self::worker::worker;

use super::CliError;

/// The async runtime of the Redis traffic (the work itself runs on the engine's pool).
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::Runtime(format!("cannot start the async runtime: {e}")))
}

/// Logs to stderr, warnings only unless `RUST_LOG` says more.
pub(crate) fn init_logging() {
    // celery-rs logs whole results at info level: warnings only, unless RUST_LOG says more.
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_target(false)
        .try_init();
}

/// This machine's name, for log lines.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Watches SIGINT and SIGTERM from now on: the first calls `on_first` and sets the returned
/// flag; a second quits the process at once, with 130 or 143. Call inside the runtime.
pub(crate) fn watch_signals(
    on_first: impl Fn() + Send + 'static,
) -> Result<Arc<AtomicBool>, CliError> {
    use tokio::signal::unix::{SignalKind, signal};
    let signal_error = |e: io::Error| CliError::Runtime(format!("cannot watch signals: {e}"));
    let mut sigint = signal(SignalKind::interrupt()).map_err(signal_error)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(signal_error)?;
    let flag = Arc::new(AtomicBool::new(false));
    let set = Arc::clone(&flag);
    tokio::spawn(async move {
        for round in 0.. {
            let code = tokio::select! {
                _ = sigint.recv() => 130,
                _ = sigterm.recv() => 143,
            };
            if round > 0 {
                std::process::exit(code);
            }
            on_first();
            set.store(true, Ordering::SeqCst);
        }
    });
    Ok(flag)
}
