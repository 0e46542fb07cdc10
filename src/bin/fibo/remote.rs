//! The Celery side of `fibo worker` and `fibo submit` (feature `distributed`).
//!
//! celery-rs gives the task definition, the Celery messages (built from its `Signature`,
//! decoded by its `Delivery`) and the result layout (`TaskMeta` under `celery-task-meta-ID`),
//! so Python's Celery interoperates both ways. The Redis traffic around them is ours, on
//! reconnecting connections that retry transient errors (see [`patiently`]):
//!
//! - Messages are sent with one LPUSH per group (see [`enqueue`]), not through celery-rs's
//!   `send_task`, whose pooled connection failed a send outright when Redis restarted.
//! - The worker reads a message's arguments itself (see [`read_message`]): what Python's
//!   Celery can send and fibo cannot do (canvas, protocol 1, pickle, compression) fails with
//!   that reason, and arguments are checked as Python checks a call.
//! - The worker pops with BRPOP (see [`serve`]). celery-rs 0.6.3's `Celery::consume` stalls
//!   for good once its Redis consumer reaches the prefetch limit: the stream answers
//!   `Pending` without keeping a waker, and the task's "finished" event, which re-polls it,
//!   is sent before the ack that frees the slot. That was seen here with prefetch 1 after one
//!   task and prefetch 2 after two. It also sleeps a second whenever the queue is empty.
//! - States are stored with one SET each, and final ones are published to a subscribed
//!   client as Python's Celery does. celery-rs's backend does not publish, and a Python
//!   `get()` waits for that.
//!
//! Nothing puts a task back when a worker dies; it stays in the `_celery.QUEUE_process_map`
//! hash. So `submit` sends again a chunk whose worker stalls. Tasks are pure functions of
//! their arguments, so a late duplicate is harmless.

/// `eprintln!` that ignores a failure: a worker whose stderr is closed or full (`| head`,
/// `2>/dev/full`) keeps working instead of panicking on its log line.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

use std::io::{self, IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use celery::backend::{TaskMeta, TaskState};
use celery::prelude::*;
use celery::protocol::TryDeserializeMessage as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use parkit::fib::{self, Fibonacci};
use parkit::schedule;
use serde_json::value::RawValue;

use super::distributed::{SubmitArgs, WorkerArgs, redact, scrub};
use super::output::{Engine, Format, Printer, What};
use super::{CliError, collect_inputs, memory, write_error};

/// The task's name, as Python clients call it.
pub const TASK: &str = "fibo.batch";

/// How long results stay in the backend when nobody collects them (Celery's default
/// `result_expires`).
const RESULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// How long a worker waits for Redis to take a result.
const RESULT_WRITE_WAIT: Duration = Duration::from_secs(600);

/// Most inputs one `submit` expands (each is a u64 in a message and a line held until printed).
const MAX_SUBMIT_INPUTS: u64 = 10_000_000;

/// Most bytes of results in one task: Redis holds values up to 512 MiB (`proto-max-bulk-len`),
/// and the result is JSON.
const MAX_RESULT_BYTES: u64 = 480 << 20;

/// The largest string Redis stores (its `proto-max-bulk-len` at most): a result whose JSON
/// is longer fails with that reason instead of being sent.
const REDIS_MAX_STRING: u64 = 512 << 20;

/// `submit`'s chunks hold about this much estimated work (nanoseconds on one core) by default:
/// a task's trip through Redis costs about a millisecond.
const CHUNK_WORK_NS: f64 = 20e6;

/// Estimated nanoseconds per byte of result: written as digits, JSON-encoded, stored, fetched
/// and decoded (`100000..102000`, 42 MB: about 0.1 s on one core).
const BYTE_NS: f64 = 2.0;

/// `submit` cuts chunks further so that none carries more than this many bytes of results.
const CHUNK_BYTES: u64 = 16 << 20;

/// `fibo.batch(ns, format="value", last=None)`: the lines plain `fibo` prints for `ns`, in
/// order, in value format: F(n) (`"value"`), its digit count (`"digits"`) or its last `last`
/// digits (`"last"`).
///
/// The macro gives the task's name, its argument order for Python's positional arguments and
/// the message `submit` sends ([`batch_message`]); the worker binds a message's arguments to
/// the same names itself ([`read_call`]) and runs [`Job::run`] (this body is what
/// celery-rs's own loop would run).
#[celery::task(name = "fibo.batch")]
async fn batch(ns: Vec<u64>, format: Option<String>, last: Option<u32>) -> TaskResult<Vec<String>> {
    let job = Job::new(ns, format.as_deref(), last).map_err(TaskError::UnexpectedError)?;
    let engine = Fibonacci::builder()
        .build()
        .map_err(|e| TaskError::UnexpectedError(e.to_string()))?;
    tokio::task::spawn_blocking(move || job.run(&engine, u64::MAX))
        .await
        .map_err(|e| TaskError::UnexpectedError(e.to_string()))?
        .map_err(TaskError::UnexpectedError)
}

/// One task's work, checked.
#[derive(Debug)]
struct Job {
    ns: Vec<u64>,
    what: What,
}

impl Job {
    /// Checks the task's arguments.
    fn new(ns: Vec<u64>, format: Option<&str>, last: Option<u32>) -> Result<Job, String> {
        let what = match (format.unwrap_or("value"), last) {
            ("value", _) => What::Value,
            ("digits", _) => What::Digits,
            ("last", Some(k @ 1..=10_000_000)) => What::Last(k),
            ("last", _) => {
                return Err("format \"last\" needs last = K, from 1 to 10000000".into());
            }
            (other, _) => {
                return Err(format!(
                    "unknown format \"{other}\"; expected \"value\", \"digits\" or \"last\""
                ));
            }
        };
        Ok(Job { ns, what })
    }

    /// Output bytes, about.
    fn bytes(&self) -> u64 {
        self.ns
            .iter()
            .fold(0u64, |acc, &n| acc.saturating_add(self.what.line_bytes(n)))
    }

    /// Why this job would not fit in `limit` bytes, if it would not: another worker with
    /// more memory may still take it.
    fn over(&self, limit: u64) -> Option<String> {
        if self.what.needs_value()
            && let Some(&n) = self.ns.iter().max()
        {
            let need = fib::working_bytes(n, true);
            if need > limit {
                return Some(format!(
                    "F({n}) needs about {} while computing, over this worker's memory limit \
                     of {}",
                    memory::human(need),
                    memory::human(limit)
                ));
            }
        }
        // The lines, the strings and their JSON are held at once.
        let need = self.bytes().saturating_mul(3);
        (need > limit).then(|| {
            format!(
                "{} inputs make about {} of results, over this worker's memory limit of {}; \
                 send smaller chunks",
                self.ns.len(),
                memory::human(need),
                memory::human(limit)
            )
        })
    }

    /// The lines, on the engine's pool; refused when they would not fit in `limit` bytes.
    fn run(&self, engine: &Fibonacci, limit: u64) -> Result<Vec<String>, String> {
        let bytes = self.bytes();
        if bytes > MAX_RESULT_BYTES {
            return Err(format!(
                "{} inputs make about {} of results, more than one Redis value holds ({}); \
                 send smaller chunks",
                self.ns.len(),
                memory::human(bytes),
                memory::human(MAX_RESULT_BYTES)
            ));
        }
        if let Some(why) = self.over(limit) {
            return Err(why);
        }
        let printer = Printer {
            format: Format::Value,
            what: self.what,
            engine: Engine::Auto,
        };
        let run = std::panic::AssertUnwindSafe(|| {
            engine.pool().install(|| printer.render(engine, &self.ns))
        });
        let text = std::panic::catch_unwind(run).map_err(|p| {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            format!("internal error: {msg}")
        })?;
        let text = String::from_utf8(text).map_err(|e| format!("internal error: {e}"))?;
        Ok(text.lines().map(str::to_string).collect())
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::Runtime(format!("cannot start the async runtime: {e}")))
}

fn init_logging() {
    // celery-rs logs whole results at info level: warnings only, unless RUST_LOG says more.
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_target(false)
        .try_init();
}

/// Our connections to the broker and to the result backend's server.
struct Links {
    broker: Conn,
    results: Conn,
}

/// Opens and checks both connections: an unreachable server, a wrong password or a missing
/// one is a one-line error at start, not a minute of retries.
async fn connect(broker: &str, backend: &str, timeout: Duration) -> Result<Links, CliError> {
    let broker_conn = open(broker, "broker", timeout, POP_WAIT + timeout).await?;
    // Results can be hundreds of MB: their writes get minutes, not seconds.
    let results = open(backend, "result backend", timeout, RESULT_WRITE_WAIT).await?;
    Ok(Links {
        broker: broker_conn,
        results,
    })
}

/// A connection to `url` that answered a PING within `timeout`.
async fn open(
    url: &str,
    what: &str,
    timeout: Duration,
    response: Duration,
) -> Result<Conn, CliError> {
    let fail = |e: &dyn std::fmt::Display| {
        CliError::Runtime(scrub(
            &format!("cannot reach the {what} at {}: {e}", redact(url)),
            url,
        ))
    };
    let conn = match tokio::time::timeout(timeout, connection(url, timeout, response)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(fail(&e)),
        Err(_) => return Err(fail(&"no answer in time")),
    };
    let ping = redis::cmd("PING").clone();
    match tokio::time::timeout(timeout, ping.query_async::<()>(&mut conn.clone())).await {
        Ok(Ok(())) => Ok(conn),
        Ok(Err(e)) if e.code() == Some("NOAUTH") => Err(CliError::Runtime(format!(
            "Redis at {} requires a password (the {what}): put it in the URL, \
             redis://:PASSWORD@HOST:PORT/DB, or in $FIBO_BROKER / $FIBO_BACKEND",
            redact(url)
        ))),
        Ok(Err(e)) => Err(fail(&e)),
        Err(_) => Err(fail(&"no answer in time")),
    }
}

/// This machine's name, for log lines.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// A failure that Python's Celery turns back into `exc_type(message)` (a builtin exception:
/// `ValueError`, `TypeError`, `NotImplementedError`).
fn failure_meta(task_id: &str, exc_type: &str, message: &str) -> TaskMeta {
    let mut meta = TaskMeta::failure(task_id, &TaskError::UnexpectedError(message.into()));
    meta.result = Some(serde_json::json!({
        "exc_type": exc_type,
        "exc_message": [message],
        "exc_module": "builtins",
    }));
    meta
}

/// Runs `fibo worker` until SIGINT or SIGTERM.
pub fn worker(args: &WorkerArgs) -> Result<(), CliError> {
    init_logging();
    let engine = Fibonacci::builder()
        .threads(args.jobs.unwrap_or(0))
        .cache_bytes(args.cache_mb.saturating_mul(1 << 20))
        .build()
        .map_err(|e| CliError::Runtime(e.to_string()))?;
    let engine = Arc::new(engine);
    let limit = args.max_memory.unwrap_or_else(memory::default_limit);
    runtime()?.block_on(async {
        let backend_url = args.redis.backend_url();
        let timeout = Duration::from_secs(args.redis.connect_timeout);
        let Links {
            broker: conn,
            results,
        } = connect(&args.redis.broker, backend_url, timeout).await?;
        let me = format!("fibo@{}:{}", hostname(), std::process::id());
        note!(
            "fibo worker {me}: taking {TASK} from queue '{}' at {} (results to {}), {} threads",
            args.redis.queue,
            redact(&args.redis.broker),
            redact(backend_url),
            engine.threads()
        );
        let ctx = Arc::new(Ctx {
            results,
            engine,
            limit,
            me,
            conn,
            queue: args.redis.queue.clone(),
        });
        serve(ctx, usize::from(args.prefetch), &args.redis.broker, timeout).await
    })
}

/// What every task of a worker shares.
struct Ctx {
    engine: Arc<Fibonacci>,
    limit: u64,
    me: String,
    /// For the unacknowledged hash (never blocked: pops have their own connection).
    conn: Conn,
    /// To the result backend's server: states, results and their publishing.
    results: Conn,
    queue: String,
}

/// Seconds without the broker after which a worker gives up.
const BROKER_GRACE: Duration = Duration::from_secs(60);

/// A blocking pop waits this long at most, so a stop request is seen within it.
const POP_WAIT: Duration = Duration::from_secs(1);

/// Marks a task its client no longer wants (answered, or sent again and answered by a copy,
/// or the client interrupted): a worker that takes it skips it. Celery's own revocation
/// goes through broadcast control messages, which celery-rs does not have.
fn withdrawn_key(id: &str) -> String {
    format!("fibo-withdrawn-{id}")
}

/// Withdraws tasks (see [`withdrawn_key`]) and clears them from the unacknowledged hash,
/// where a killed worker would have left them. Best effort: a failure only costs work.
pub(crate) async fn withdraw(conn: &mut Conn, queue: &str, ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    let mut pipe = redis::pipe();
    for id in ids {
        pipe.cmd("SET")
            .arg(withdrawn_key(id))
            .arg(1)
            .arg("EX")
            .arg(RESULT_TTL.as_secs())
            .ignore();
    }
    pipe.cmd("HDEL").arg(unacked_key(queue)).arg(ids).ignore();
    let _: redis::RedisResult<()> = pipe.query_async(conn).await;
}

/// The hash where celery-rs's Redis broker keeps the messages taken but not acknowledged.
fn unacked_key(queue: &str) -> String {
    format!("_celery.{queue}_process_map")
}

/// A Redis connection that reconnects by itself after an error (a restarted server).
pub(crate) type Conn = redis::aio::ConnectionManager;

/// A connection of its own to the broker.
async fn broker_connection(url: &str, timeout: Duration) -> redis::RedisResult<Conn> {
    connection(url, timeout, POP_WAIT + timeout).await
}

/// A connection of its own to a Redis server, answers awaited for `response` at most.
pub(crate) async fn connection(
    url: &str,
    timeout: Duration,
    response: Duration,
) -> redis::RedisResult<Conn> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(timeout)
        .set_response_timeout(response)
        // One try per (re)connection: callers retry (`patiently`) or fail fast at start.
        .set_number_of_retries(0);
    redis::aio::ConnectionManager::new_with_config(redis::Client::open(url)?, config).await
}

/// Whether an error may pass by itself: a lost connection, a timeout, a server loading its
/// data or briefly read-only (a failover). A refusal (out of memory, a value over its size
/// limit, a wrong type) is not: trying again gets the same answer.
fn transient(e: &redis::RedisError) -> bool {
    use redis::ErrorKind as K;
    e.is_unrecoverable_error()
        || matches!(
            e.kind(),
            K::IoError
                | K::BusyLoadingError
                | K::TryAgain
                | K::ClusterDown
                | K::MasterDown
                | K::ReadOnly
        )
}

/// A Redis error in one short clause: the server's own words when it answered.
pub(crate) fn redis_error(e: &redis::RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) if !detail.starts_with(code) => format!("{code} {detail}"),
        (_, Some(detail)) => detail.to_string(),
        _ => e.to_string(),
    }
}

/// Runs a command until it succeeds, for up to [`BROKER_GRACE`] of transient errors (see
/// [`transient`]): the connection reconnects between tries. Any other error is returned at
/// once.
async fn patiently<T: redis::FromRedisValue>(
    conn: &Conn,
    cmd: &redis::Cmd,
) -> redis::RedisResult<T> {
    let started = Instant::now();
    loop {
        let mut c = conn.clone();
        match cmd.query_async(&mut c).await {
            Ok(v) => return Ok(v),
            Err(e) if !transient(&e) || started.elapsed() > BROKER_GRACE => return Err(e),
            Err(_) => tokio::time::sleep(POP_WAIT).await,
        }
    }
}

/// A `fibo.batch(ns, format, last)` call as a Celery message (protocol 2, JSON body, as
/// celery-rs's `send_task` builds it) for `queue`: its task id and its text. Reusable by any
/// client of the worker contract.
pub(crate) fn batch_message(
    ns: Vec<u64>,
    format: &str,
    last: Option<u32>,
    queue: &str,
) -> Result<(String, String), String> {
    let message = celery::protocol::Message::try_from(batch::new(ns, Some(format.into()), last))
        .map_err(|e| e.to_string())?;
    let info = celery::protocol::DeliveryInfo {
        exchange: String::new(),
        routing_key: queue.to_string(),
    };
    let json = message
        .json_serialized(Some(info))
        .map_err(|e| e.to_string())?;
    let json = String::from_utf8(json).map_err(|e| e.to_string())?;
    Ok((message.task_id().to_string(), json))
}

/// Puts messages on `queue`, taken first to last (LPUSH, and workers pop with BRPOP), in one
/// command; transient errors are retried for up to [`BROKER_GRACE`] ([`patiently`]). A retry
/// after a connection lost mid-command may queue a message twice: harmless, tasks are pure.
pub(crate) async fn enqueue(
    conn: &Conn,
    queue: &str,
    messages: &[String],
) -> redis::RedisResult<()> {
    if messages.is_empty() {
        return Ok(());
    }
    patiently(conn, redis::cmd("LPUSH").arg(queue).arg(messages)).await
}

/// Where a task's state and result are kept (celery-rs's and Celery's layout).
pub(crate) fn meta_key(id: &str) -> String {
    format!("celery-task-meta-{id}")
}

/// A stored task state, parsed (`None`: missing or unreadable). A result reader for any
/// client of the worker contract.
pub(crate) fn read_meta(raw: Option<String>) -> Option<TaskMeta> {
    raw.and_then(|r| serde_json::from_str::<TaskMeta>(&r).ok())
}

/// Watches SIGINT and SIGTERM from now on: the first calls `on_first` and sets the returned
/// flag; a second quits the process at once, with 130 or 143. Call inside the runtime.
fn watch_signals(
    on_first: impl Fn() + Send + 'static,
) -> Result<Arc<std::sync::atomic::AtomicBool>, CliError> {
    use tokio::signal::unix::{SignalKind, signal};
    let signal_error = |e: io::Error| CliError::Runtime(format!("cannot watch signals: {e}"));
    let mut sigint = signal(SignalKind::interrupt()).map_err(signal_error)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(signal_error)?;
    let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
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
            set.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    });
    Ok(flag)
}

/// Takes messages off the queue while a slot is free, until SIGINT or SIGTERM; then lets the
/// running tasks finish.
///
/// A blocking pop (BRPOP) instead of celery-rs's consumer, which polls with RPOP and sleeps a
/// second whenever the queue is empty: every batch sent to an idle pool waited up to a second
/// for it (`fibo submit 100000..102000`: 1.04 s against 0.05 s for plain fibo, measured
/// here). The messages are the same Celery messages, read with celery-rs's `Delivery`, and
/// taken ones are kept in the same unacknowledged hash until their result is stored.
async fn serve(
    ctx: Arc<Ctx>,
    slots: usize,
    broker: &str,
    timeout: Duration,
) -> Result<(), CliError> {
    use std::sync::atomic::Ordering;

    let me = ctx.me.clone();
    // Asked twice, it quits at once: the running tasks stay unacknowledged, and `submit`
    // sends them again.
    let stop = watch_signals(move || {
        note!("fibo worker {me}: stopping once the running tasks finish (again to quit now)");
    })?;
    let lost = |e: &dyn std::fmt::Display| {
        CliError::Runtime(format!(
            "lost the broker at {} for {} s: {e}",
            redact(broker),
            BROKER_GRACE.as_secs()
        ))
    };
    let mut pop = broker_connection(broker, timeout)
        .await
        .map_err(|e| lost(&e))?;
    let slots = Arc::new(tokio::sync::Semaphore::new(slots));
    let mut running = tokio::task::JoinSet::new();
    let mut broker_down: Option<Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        while let Some(joined) = running.try_join_next() {
            if let Err(e) = joined {
                note!("fibo worker {}: a task was lost: {e}", ctx.me);
            }
        }
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => p.expect("never closed"),
            // Wake now and then to see a stop request while every slot is busy.
            () = tokio::time::sleep(POP_WAIT) => continue,
        };
        // Never cancelled once sent: a message popped here must not be dropped.
        let popped: redis::RedisResult<Option<(String, String)>> = redis::cmd("BRPOP")
            .arg(&ctx.queue)
            // Whole seconds: Redis before 6.0 refuses a fractional timeout.
            .arg(POP_WAIT.as_secs())
            .query_async(&mut pop)
            .await;
        match popped {
            Ok(None) => broker_down = None,
            Ok(Some((_, raw))) => {
                broker_down = None;
                if stop.load(Ordering::SeqCst) {
                    // Back where it was, first in line for the next worker.
                    let back = redis::cmd("RPUSH").arg(&ctx.queue).arg(&raw).clone();
                    if let Err(e) = patiently::<()>(&ctx.conn, &back).await {
                        note!(
                            "fibo worker {}: a task taken while stopping is lost: {e}",
                            ctx.me
                        );
                    }
                    break;
                }
                let ctx = Arc::clone(&ctx);
                running.spawn(async move {
                    handle(&ctx, raw).await;
                    drop(permit);
                });
            }
            Err(e) => {
                let since = *broker_down.get_or_insert_with(Instant::now);
                if since.elapsed() > BROKER_GRACE {
                    return Err(lost(&e));
                }
                note!("fibo worker {}: broker error, retrying: {e}", ctx.me);
                tokio::time::sleep(POP_WAIT).await;
            }
        }
    }
    if !running.is_empty() {
        note!(
            "fibo worker {}: stopping after {} running task(s)",
            ctx.me,
            running.len()
        );
    }
    while running.join_next().await.is_some() {}
    Ok(())
}

/// Why a message is not run: the exception Python's Celery raises for it (a builtin type)
/// and its message.
#[derive(Debug)]
struct Refusal {
    exc_type: &'static str,
    message: String,
}

impl Refusal {
    /// Bad argument values (Python's `ValueError`).
    fn value(message: impl Into<String>) -> Refusal {
        Refusal {
            exc_type: "ValueError",
            message: message.into(),
        }
    }

    /// A call Python itself would refuse: wrong arity, unknown keywords (`TypeError`).
    fn call(message: impl Into<String>) -> Refusal {
        Refusal {
            exc_type: "TypeError",
            message: message.into(),
        }
    }

    /// Something Celery can send that fibo does not do (`NotImplementedError`).
    fn unsupported(message: impl Into<String>) -> Refusal {
        Refusal {
            exc_type: "NotImplementedError",
            message: message.into(),
        }
    }
}

/// A message read off the queue.
#[derive(Debug)]
enum Taken {
    /// A `fibo.batch` call to run.
    Run(Job),
    /// Refused; the failure is also stored under these ids: the callbacks the message
    /// carries, whose results a client may be waiting on (a chord's or a chain's).
    Refuse(Refusal, Vec<String>),
}

/// Reads a Celery message: its task id and what to do with it, or why it has no id to answer
/// under.
fn read_message(raw: &str) -> Result<(String, Taken), String> {
    let v: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| format!("not a JSON message: {e}"))?;
    let id = v["headers"]["id"]
        .as_str()
        .or_else(|| v["properties"]["correlation_id"].as_str())
        .ok_or("a message without a task id")?
        .to_string();
    let taken = read_call(&v, raw).unwrap_or_else(|r| Taken::Refuse(r, Vec::new()));
    Ok((id, taken))
}

/// Most characters of a bad argument shown in a message.
const SHOWN: usize = 60;

/// An argument's JSON text for a message, cut short.
fn shown(raw: &str) -> String {
    let raw = raw.trim();
    match raw.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{}...", &raw[..end]),
        None => raw.to_string(),
    }
}

/// The call in a message (`v` is `raw` parsed), checked as Python checks
/// `fibo.batch(ns, format="value", last=None)`.
fn read_call(v: &serde_json::Value, raw: &str) -> Result<Taken, Refusal> {
    let headers = &v["headers"];
    if let Some(c) = headers.get("compression").filter(|c| !c.is_null()) {
        return Err(Refusal::unsupported(format!(
            "compressed messages ({c}) are not supported by fibo worker; send them without \
             compression"
        )));
    }
    let content = v["content-type"].as_str().unwrap_or("no content type");
    if content != "application/json" {
        return Err(Refusal::unsupported(format!(
            "messages in {content} are not supported by fibo worker; send JSON (Celery's \
             task_serializer = \"json\", the default)"
        )));
    }
    let Some(task) = headers["task"].as_str() else {
        return Err(Refusal::unsupported(
            "Celery message protocol 1 is not supported by fibo worker; send protocol 2 \
             (task_protocol = 2, the default)",
        ));
    };
    if task != TASK {
        // A shared broker's default queue may carry other apps' tasks: give each app its
        // own queue (--queue).
        return Err(Refusal::value(format!(
            "this worker runs {TASK} only, not {task}"
        )));
    }
    let message = serde_json::from_str::<celery::protocol::Delivery>(raw)
        .map_err(|e| e.to_string())
        .and_then(|d| d.try_deserialize_message().map_err(|e| e.to_string()))
        .map_err(|e| Refusal::value(format!("an unreadable {TASK} message: {e}")))?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    if message
        .headers
        .eta
        .is_some_and(|t| t.timestamp_millis() > now_ms)
    {
        return Err(Refusal::unsupported(
            "a countdown or eta is not supported by fibo worker",
        ));
    }
    if message
        .headers
        .expires
        .is_some_and(|t| t.timestamp_millis() <= now_ms)
    {
        return Err(Refusal::value("the task expired before a worker took it"));
    }
    let body = std::str::from_utf8(&message.raw_body)
        .map_err(|e| Refusal::value(format!("an unreadable {TASK} message: {e}")))?;
    let bad_body = || {
        Refusal::value(format!(
            "a {TASK} message whose body is not [args, kwargs, embed]"
        ))
    };
    let parts: Vec<&RawValue> = serde_json::from_str(body).map_err(|_| bad_body())?;
    let args: Vec<&RawValue> = match parts.first() {
        Some(a) => serde_json::from_str(a.get()).map_err(|_| bad_body())?,
        None => Vec::new(),
    };
    let kwargs: std::collections::BTreeMap<String, &RawValue> = match parts.get(1) {
        Some(k) => serde_json::from_str(k.get()).map_err(|_| bad_body())?,
        None => Default::default(),
    };
    let embed: serde_json::Value = match parts.get(2) {
        Some(e) => serde_json::from_str(e.get()).map_err(|_| bad_body())?,
        None => serde_json::Value::Null,
    };
    // Canvas: fibo runs the task but does not send callbacks on (Celery's worker does). The
    // callbacks' ids get the failure too, so that a client waiting on a chain's or a chord's
    // result hears of it.
    let mut canvas = Vec::new();
    let mut also = Vec::new();
    for (key, what) in [
        ("callbacks", "link"),
        ("errbacks", "link_error"),
        ("chain", "chain"),
        ("chord", "chord"),
    ] {
        match &embed[key] {
            serde_json::Value::Null => continue,
            serde_json::Value::Array(a) if a.is_empty() => continue,
            serde_json::Value::Array(a) => a.iter().for_each(|s| callback_ids(s, &mut also)),
            other => callback_ids(other, &mut also),
        }
        canvas.push(what);
    }
    if !canvas.is_empty() {
        let why = Refusal::unsupported(format!(
            "Celery canvas ({}) is not supported by fibo worker: send {TASK} tasks on their own \
             and combine their results in the client",
            canvas.join(", ")
        ));
        return Ok(Taken::Refuse(why, also));
    }
    // Bound as Python binds a call: positional arguments first, then keywords.
    const PARAMS: [&str; 3] = ["ns", "format", "last"];
    if args.len() > PARAMS.len() {
        return Err(Refusal::call(format!(
            "{TASK}() takes from 1 to 3 positional arguments but {} were given",
            args.len()
        )));
    }
    let mut given: [Option<&RawValue>; 3] = [None; 3];
    for (slot, a) in given.iter_mut().zip(&args) {
        *slot = Some(*a);
    }
    for (k, v) in &kwargs {
        let Some(i) = PARAMS.iter().position(|p| p == k) else {
            return Err(Refusal::call(format!(
                "{TASK}() got an unexpected keyword argument '{k}'"
            )));
        };
        if given[i].is_some() {
            return Err(Refusal::call(format!(
                "{TASK}() got multiple values for argument '{k}'"
            )));
        }
        given[i] = Some(*v);
    }
    fn present(v: Option<&RawValue>) -> Option<&RawValue> {
        v.filter(|v| v.get().trim() != "null")
    }
    let Some(ns) = present(given[0]) else {
        return Err(Refusal::call(format!(
            "{TASK}() missing 1 required positional argument: 'ns'"
        )));
    };
    let items: Vec<&RawValue> = serde_json::from_str(ns.get()).map_err(|_| {
        Refusal::value(format!(
            "bad arguments: {TASK}'s ns must be a list of integers from 0 to {}, not {}",
            u64::MAX,
            shown(ns.get())
        ))
    })?;
    let ns = items
        .iter()
        .enumerate()
        .map(|(i, x)| {
            x.get().trim().parse::<u64>().map_err(|_| {
                Refusal::value(format!(
                    "bad arguments: {TASK}'s ns[{i}] is {}, not an integer from 0 to {}",
                    shown(x.get()),
                    u64::MAX
                ))
            })
        })
        .collect::<Result<Vec<u64>, Refusal>>()?;
    let format = match present(given[1]) {
        None => None,
        Some(f) => Some(serde_json::from_str::<String>(f.get()).map_err(|_| {
            Refusal::value(format!(
                "bad arguments: {TASK}'s format must be \"value\", \"digits\" or \"last\", not {}",
                shown(f.get())
            ))
        })?),
    };
    let last = match present(given[2]) {
        None => None,
        Some(k) => Some(k.get().trim().parse::<u64>().map_err(|_| {
            Refusal::value(format!(
                "bad arguments: {TASK}'s last must be an integer from 1 to 10000000, not {}",
                shown(k.get())
            ))
        })?),
    };
    let last = last.map(|k| u32::try_from(k).unwrap_or(u32::MAX));
    Job::new(ns, format.as_deref(), last)
        .map(Taken::Run)
        .map_err(|e| Refusal::value(format!("bad arguments to {TASK}: {e}")))
}

/// The task ids in a callback signature (a frozen one has `options.task_id`), and in the
/// signatures it nests (a chain's or a group's `kwargs.tasks`, a chord's `kwargs.body`).
fn callback_ids(sig: &serde_json::Value, ids: &mut Vec<String>) {
    if ids.len() >= 1000 {
        return;
    }
    if let Some(id) = sig["options"]["task_id"].as_str() {
        ids.push(id.to_string());
    }
    if let Some(tasks) = sig["kwargs"]["tasks"].as_array() {
        tasks.iter().for_each(|t| callback_ids(t, ids));
    }
    if sig["kwargs"]["body"].is_object() {
        callback_ids(&sig["kwargs"]["body"], ids);
    }
}

/// One message: started, computed on the rayon pool, result stored, then acknowledged.
async fn handle(ctx: &Arc<Ctx>, raw: String) {
    let (id, taken) = match read_message(&raw) {
        Ok(m) => m,
        Err(e) => {
            note!("fibo worker {}: dropped an unreadable message: {e}", ctx.me);
            return;
        }
    };
    let short = id.get(..8).unwrap_or(&id).to_string();
    if is_withdrawn(ctx, &id).await {
        note!(
            "fibo worker {}: task {short} withdrawn by its client, skipped",
            ctx.me
        );
        return;
    }
    let taken_key = redis::cmd("HSET")
        .arg(unacked_key(&ctx.queue))
        .arg(&id)
        .arg(&raw)
        .clone();
    let _ = patiently::<()>(&ctx.conn, &taken_key).await;
    let job = match taken {
        Taken::Run(job) => job,
        Taken::Refuse(why, also) => {
            for other in &also {
                let _ = store(ctx, failure_meta(other, why.exc_type, &why.message)).await;
            }
            return fail(ctx, &id, why).await;
        }
    };
    if let Some(why) = job.over(ctx.limit) {
        return pass_on(ctx, &id, &raw, why).await;
    }
    let top = job.ns.iter().max().copied().unwrap_or(0);
    note!(
        "fibo worker {}: task {short} started: {} inputs, n up to {top}",
        ctx.me,
        job.ns.len()
    );
    let _ = store(ctx, TaskMeta::started(&id)).await;
    let started = Instant::now();
    let work = Arc::clone(ctx);
    let outcome = tokio::task::spawn_blocking(move || job.run(&work.engine, work.limit))
        .await
        .unwrap_or_else(|e| Err(format!("internal error: {e}")));
    let took = started.elapsed().as_secs_f64() * 1e3;
    let json = match outcome {
        Ok(lines) => {
            success_json(&id, &lines).map_err(|e| format!("cannot encode the result: {e}"))
        }
        Err(why) => Err(why),
    };
    let json = match json {
        Ok(json) if json.len() as u64 > REDIS_MAX_STRING => Err(format!(
            "the result is {}, more than one Redis value holds ({}); send smaller chunks",
            memory::human(json.len() as u64),
            memory::human(REDIS_MAX_STRING)
        )),
        other => other,
    };
    let json = match json {
        Ok(json) => json,
        Err(why) => return fail(ctx, &id, Refusal::value(why)).await,
    };
    // A client that withdrew the task (interrupted, or answered by another copy) has
    // deleted its keys or is about to: a result stored now would stay for RESULT_TTL.
    if is_withdrawn(ctx, &id).await {
        note!(
            "fibo worker {}: task {short} withdrawn by its client while running; result \
             dropped",
            ctx.me
        );
        forget(ctx, &id).await;
        return ack(ctx, &id).await;
    }
    // Acknowledged only once the result is stored (acks late). A task whose result cannot be
    // stored for a minute of Redis errors stays unacknowledged, as does the task of a worker
    // that dies: nothing redelivers from that hash (neither celery-rs nor Celery's Redis
    // transport does), so it is `submit`'s resending that recovers such a task; a Python
    // client has to send it again. A result Redis refuses fails the task with its reason.
    match store_json(ctx, &id, json, true).await {
        Ok(()) => {
            // Withdrawn between the check above and the store: the client may have deleted
            // its keys already, so this copy deletes its own.
            if is_withdrawn(ctx, &id).await {
                forget(ctx, &id).await;
            }
            note!("fibo worker {}: task {short} done in {took:.1} ms", ctx.me);
            ack(ctx, &id).await;
        }
        Err(Stored::Refused(why)) => fail(ctx, &id, Refusal::value(why)).await,
        Err(Stored::Unreachable(why)) => {
            note!("fibo worker {}: cannot store a result: {why}", ctx.me);
        }
    }
}

/// Whether the task's client withdrew it (see [`withdrawn_key`]); `false` when the broker
/// cannot tell.
async fn is_withdrawn(ctx: &Ctx, id: &str) -> bool {
    let exists = redis::cmd("EXISTS").arg(withdrawn_key(id)).clone();
    patiently::<bool>(&ctx.conn, &exists).await.unwrap_or(false)
}

/// Deletes a task's stored state (best effort).
async fn forget(ctx: &Ctx, id: &str) {
    let del = redis::cmd("DEL").arg(meta_key(id)).clone();
    let _ = patiently::<()>(&ctx.results, &del).await;
}

/// Times a task refused for want of memory is put back on the queue for another worker,
/// [`PASS_ON_PAUSE`] apart, before it fails with the reason: a bound, since no worker knows
/// whether any other has more memory.
const MAX_PASS_ON: u64 = 5;

/// How long a worker holds a task it refused for want of memory before putting it back:
/// other workers get time to take it, and the task fails within seconds when none can.
const PASS_ON_PAUSE: Duration = Duration::from_millis(500);

/// A task over this worker's `--max-memory`: put back at the end of the queue for a worker
/// with more memory, up to [`MAX_PASS_ON`] times, then failed. The count travels in the
/// message, as the header `fibo_passed_on` (Celery ignores headers it does not know), so
/// nothing is left in Redis.
async fn pass_on(ctx: &Ctx, id: &str, raw: &str, why: String) {
    let short = id.get(..8).unwrap_or(id);
    let mut message: serde_json::Value = serde_json::from_str(raw).unwrap_or_default();
    let count = message["headers"]["fibo_passed_on"].as_u64().unwrap_or(0) + 1;
    if count > MAX_PASS_ON || !message["headers"].is_object() {
        let why = format!("{why} (no worker took it after {MAX_PASS_ON} tries)");
        return fail(ctx, id, Refusal::value(why)).await;
    }
    message["headers"]["fibo_passed_on"] = count.into();
    note!(
        "fibo worker {}: task {short} put back for a worker with more memory ({count} of \
         {MAX_PASS_ON}): {why}",
        ctx.me
    );
    tokio::time::sleep(PASS_ON_PAUSE).await;
    if let Err(e) = enqueue(&ctx.conn, &ctx.queue, &[message.to_string()]).await {
        return fail(
            ctx,
            id,
            Refusal::value(format!("{why}; cannot put it back: {e}")),
        )
        .await;
    }
    ack(ctx, id).await;
}

/// Tries to store a failure Redis refused (out of memory: the refused result's request
/// buffer is freed within seconds, and the failure is small).
const FAILURE_TRIES: u32 = 5;

/// Stores a task's failure, then acknowledges it.
///
/// A refused write is tried again, up to [`FAILURE_TRIES`] in all, a second apart, and the
/// failure is published meanwhile (Redis publishes even when out of memory), so that a
/// Python `get()` waiting on the result's channel hears of it either way.
async fn fail(ctx: &Ctx, id: &str, why: Refusal) {
    let short = id.get(..8).unwrap_or(id);
    note!(
        "fibo worker {}: task {short} failed: {}",
        ctx.me,
        why.message
    );
    let meta = failure_meta(id, why.exc_type, &why.message);
    for tried in 1.. {
        match store(ctx, meta.clone()).await {
            Ok(()) => return ack(ctx, id).await,
            Err(Stored::Refused(_)) if tried < FAILURE_TRIES => {
                if tried == 1 {
                    if let Ok(json) = serde_json::to_string(&meta) {
                        publish(ctx, &meta_key(id), json).await;
                    }
                    // The STARTED state would tell `submit` the task is still running.
                    forget(ctx, id).await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(Stored::Refused(e) | Stored::Unreachable(e)) => {
                note!("fibo worker {}: cannot store a failure: {e}", ctx.me);
                return;
            }
        }
    }
}

/// A success in celery-rs's `TaskMeta` layout (which Python's Celery reads too), serialized
/// straight from the lines: no `serde_json::Value` copy of a result that may be hundreds of MB.
fn success_json(id: &str, lines: &[String]) -> serde_json::Result<String> {
    #[derive(serde::Serialize)]
    struct Success<'a, D> {
        task_id: &'a str,
        status: TaskState,
        result: &'a [String],
        traceback: Option<String>,
        children: [u8; 0],
        date_done: &'a D,
    }
    let stamp = TaskMeta::success(id, &())?;
    serde_json::to_string(&Success {
        task_id: id,
        status: TaskState::Success,
        result: lines,
        traceback: None,
        children: [],
        date_done: &stamp.date_done,
    })
}

/// Why a state was not stored.
#[derive(Debug)]
enum Stored {
    /// Redis answered with a refusal (out of memory, a value over its size limit): the task
    /// fails with it.
    Refused(String),
    /// Redis stayed unreachable for [`BROKER_GRACE`].
    Unreachable(String),
}

/// Stores a state ([`store_json`]).
async fn store(ctx: &Ctx, meta: TaskMeta) -> Result<(), Stored> {
    let last = matches!(meta.status, TaskState::Success | TaskState::Failure);
    let json = serde_json::to_string(&meta)
        .map_err(|e| Stored::Refused(format!("cannot encode a result: {e}")))?;
    store_json(ctx, &meta.task_id, json, last).await
}

/// Stores a task's state, in celery-rs's `TaskMeta` layout, where its Redis backend and
/// Python's Celery read it (`celery-task-meta-ID`, expiring like Celery's results). A final
/// state (`last`) is then published, as Python's Celery does, when a client is subscribed: a
/// Python `get()` waits on that channel. One serialization serves both.
///
/// Transient errors are retried for up to [`BROKER_GRACE`]. A refusal is returned at once,
/// and so is a large write on which Redis closes the connection three times while it answers
/// a PING in between: that is a value over its `proto-max-bulk-len`.
async fn store_json(ctx: &Ctx, id: &str, json: String, last: bool) -> Result<(), Stored> {
    let key = meta_key(id);
    let size = memory::human(json.len() as u64);
    let set = redis::cmd("SET")
        .arg(&key)
        .arg(&json)
        .arg("EX")
        .arg(RESULT_TTL.as_secs())
        .clone();
    let started = Instant::now();
    let mut dropped = 0;
    loop {
        let mut conn = ctx.results.clone();
        let e = match set.query_async::<()>(&mut conn).await {
            Ok(()) => break,
            Err(e) => e,
        };
        if !transient(&e) {
            let detail = e.detail().unwrap_or_default();
            let hint = if detail.contains("bulk length") {
                " (the result is over the server's proto-max-bulk-len)"
            } else {
                ""
            };
            return Err(Stored::Refused(format!(
                "Redis refused to store the result ({size}): {}{hint}",
                redis_error(&e)
            )));
        }
        if started.elapsed() > BROKER_GRACE {
            return Err(Stored::Unreachable(format!(
                "Redis errors for {} s: {e}",
                BROKER_GRACE.as_secs()
            )));
        }
        tokio::time::sleep(POP_WAIT / 4).await;
        let ping = redis::cmd("PING").clone();
        if json.len() > 1 << 20 && ping.query_async::<()>(&mut conn).await.is_ok() {
            dropped += 1;
            if dropped == 3 {
                return Err(Stored::Refused(format!(
                    "Redis closed the connection on each of 3 tries to store the result \
                     ({size}) but answers otherwise: is its proto-max-bulk-len smaller? ({e})"
                )));
            }
            continue;
        }
        tokio::time::sleep(POP_WAIT).await;
    }
    if last {
        publish(ctx, &key, json).await;
    }
    Ok(())
}

/// Publishes a final state on its key's channel when a client listens (best effort).
async fn publish(ctx: &Ctx, key: &str, json: String) {
    let mut conn = ctx.results.clone();
    let listeners: redis::RedisResult<Vec<(String, u64)>> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(key)
        .query_async(&mut conn)
        .await;
    if listeners.is_ok_and(|l| l.iter().any(|(_, n)| *n > 0)) {
        let _: redis::RedisResult<()> = redis::cmd("PUBLISH")
            .arg(key)
            .arg(json)
            .query_async(&mut conn)
            .await;
    }
}

async fn ack(ctx: &Ctx, id: &str) {
    let done = redis::cmd("HDEL")
        .arg(unacked_key(&ctx.queue))
        .arg(id)
        .clone();
    if let Err(e) = patiently::<()>(&ctx.conn, &done).await {
        note!("fibo worker {}: cannot acknowledge a task: {e}", ctx.me);
    }
}

/// Runs `fibo submit`.
pub fn submit(args: &SubmitArgs) -> Result<(), CliError> {
    init_logging();
    let what = args.select.what();
    let items = collect_inputs(&args.select)?;
    let limit = args.max_memory.unwrap_or_else(memory::default_limit);
    super::check_memory(&items, what, limit)?;
    let total = items
        .iter()
        .fold(0u64, |acc, (i, _)| acc.saturating_add(i.len()));
    if total > MAX_SUBMIT_INPUTS {
        return Err(CliError::Usage(format!(
            "{total} inputs in one submit; at most {MAX_SUBMIT_INPUTS} (split them, or run \
             plain fibo, which streams)"
        )));
    }
    if let Some((item, origin)) = items
        .iter()
        .find(|(i, _)| what.line_bytes(i.max()) > MAX_RESULT_BYTES)
    {
        let n = item.max();
        return Err(CliError::Usage(format!(
            "F({n}) at {origin} has about {} of digits, more than one Redis value holds ({}); \
             compute it with plain fibo",
            memory::human(what.line_bytes(n)),
            memory::human(MAX_RESULT_BYTES)
        )));
    }
    let ns: Vec<u64> = items.iter().flat_map(|(i, _)| i.iter()).collect();
    let printer = Printer {
        format: args.select.format,
        what,
        engine: Engine::Auto,
    };
    if let What::Mod(_) = what {
        // F(n) mod M needs no big number: computed here, as plain fibo does.
        let engine = Fibonacci::builder()
            .build()
            .map_err(|e| CliError::Runtime(e.to_string()))?;
        let text = printer.render(&engine, &ns);
        let mut out = io::stdout().lock();
        return out
            .write_all(&text)
            .and_then(|()| out.flush())
            .map_err(write_error);
    }
    let (format, last) = match what {
        What::Value => ("value", None),
        What::Digits => ("digits", None),
        What::Last(k) => ("last", Some(k)),
        What::Mod(_) => unreachable!("computed above"),
    };
    let mut costs = match what {
        What::Value => fib::sequence_costs(&ns),
        // Machine-word paths, about (measured order of magnitude, one core).
        What::Last(_) => vec![2_000.0; ns.len()],
        _ => vec![200.0; ns.len()],
    };
    // Writing, encoding and carrying the digits costs more than the additions between close
    // values.
    let bytes: Vec<u64> = ns.iter().map(|&n| what.line_bytes(n)).collect();
    for (c, &b) in costs.iter_mut().zip(&bytes) {
        *c += b as f64 * BYTE_NS;
    }
    let parts = match args.chunk {
        Some(n) => ns.len().div_ceil(n as usize),
        // Enough work per task to pay for its trip through Redis (about a millisecond).
        None => ((costs.iter().sum::<f64>() / CHUNK_WORK_NS).ceil() as usize).clamp(1, ns.len()),
    };
    let ranges = cap_bytes(schedule::split_contiguous(&costs, parts), &bytes);
    let chunk_costs: Vec<f64> = ranges
        .iter()
        .map(|r| costs[r.clone()].iter().sum())
        .collect();
    let chunk_bytes: Vec<u64> = ranges
        .iter()
        .map(|r| bytes[r.clone()].iter().sum())
        .collect();
    runtime()?.block_on(async {
        let interrupted = watch_signals(|| {})?;
        let backend_url = args.redis.backend_url();
        let timeout = Duration::from_secs(args.redis.connect_timeout);
        let Links { broker, results } = connect(&args.redis.broker, backend_url, timeout).await?;
        let mut chunks: Vec<Chunk> = ranges
            .into_iter()
            .map(|range| Chunk {
                range,
                ids: Vec::new(),
                sent: Instant::now(),
                started: None,
                result: None,
                printed: false,
            })
            .collect();
        let mut g = Gather {
            args,
            ns: &ns,
            format,
            last,
            printer,
            broker,
            results,
            costs: chunk_costs,
            bytes: chunk_bytes,
            // 16 chunks of the largest size in flight, or a quarter of --max-memory if less.
            budget: (limit / 4).clamp(32 << 20, 256 << 20),
            // A signal is noted, not acted on mid-send: gather stops at its next round, so
            // every copy already sent is known and can be withdrawn.
            interrupted,
        };
        let bar = progress_bar(args, chunks.len() as u64);
        let result = gather(&mut g, &mut chunks, &bar).await;
        bar.finish_and_clear();
        // Withdraw what is still out, and leave no result behind in the backend: copies still
        // running see the withdrawal and store nothing (see `handle`).
        let open: Vec<String> = chunks
            .iter()
            .filter(|c| c.result.is_none() && !c.printed)
            .flat_map(|c| c.ids.iter().cloned())
            .collect();
        withdraw(&mut g.broker, &args.redis.queue, &open).await;
        let keys: Vec<String> = chunks
            .iter()
            .filter(|c| !c.printed)
            .flat_map(|c| c.ids.iter().map(|id| meta_key(id)))
            .collect();
        for batch in keys.chunks(1024) {
            let _: redis::RedisResult<()> = redis::cmd("DEL")
                .arg(batch)
                .query_async(&mut g.results)
                .await;
        }
        result
    })
}

/// The message of a failed task: fibo's (`meta.exc_message`) or, as Python's Celery stores
/// it, `result.exc_message` (a list of arguments or a string).
pub(crate) fn failure_message(meta: &TaskMeta) -> String {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(a) => Some(
            a.iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        _ => None,
    };
    meta.meta
        .as_ref()
        .and_then(|m| m.get("exc_message"))
        .and_then(text)
        .or_else(|| {
            let r = meta.result.as_ref()?;
            let kind = r
                .get("exc_type")
                .and_then(|t| t.as_str())
                .unwrap_or("error");
            r.get("exc_message")
                .and_then(text)
                .map(|m| format!("{kind}: {m}"))
                .or_else(|| text(r))
        })
        .unwrap_or_else(|| "unknown error".into())
}

/// Cuts any range whose results would pass [`CHUNK_BYTES`] into pieces under it (or single
/// inputs), so no task's result outgrows what Redis and the worker's memory hold.
fn cap_bytes(ranges: Vec<std::ops::Range<usize>>, bytes: &[u64]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::with_capacity(ranges.len());
    for r in ranges {
        let mut start = r.start;
        let mut held = 0u64;
        for i in r.clone() {
            if i > start && held + bytes[i] > CHUNK_BYTES {
                out.push(start..i);
                start = i;
                held = 0;
            }
            held += bytes[i];
        }
        out.push(start..r.end);
    }
    out
}

/// A chunk of the inputs on its way through the workers.
struct Chunk {
    range: std::ops::Range<usize>,
    /// Task ids of every copy sent; the first result wins.
    ids: Vec<String>,
    /// When the latest copy was sent.
    sent: Instant,
    /// When a worker was first seen working on the latest copy.
    started: Option<Instant>,
    result: Option<Vec<String>>,
    printed: bool,
}

/// Everything `gather` needs besides the chunks.
struct Gather<'a> {
    args: &'a SubmitArgs,
    ns: &'a [u64],
    format: &'static str,
    last: Option<u32>,
    printer: Printer,
    /// To the broker (queue length, withdrawals) and to the backend (results).
    broker: Conn,
    results: Conn,
    /// Each chunk's estimated work and result bytes, and the most result bytes out at once.
    costs: Vec<f64>,
    bytes: Vec<u64>,
    budget: u64,
    /// Set by SIGINT or SIGTERM.
    interrupted: Arc<std::sync::atomic::AtomicBool>,
}

impl Gather<'_> {
    fn send_error(&self, e: &dyn std::fmt::Display) -> CliError {
        CliError::Runtime(format!(
            "cannot send to {}: {e}",
            redact(&self.args.redis.broker)
        ))
    }

    /// Sends a copy of each chunk in `order`, in that order (the workers take the queue in
    /// it), 64 messages to a command. Transient broker errors are retried for up to
    /// [`BROKER_GRACE`], as every other Redis command here.
    async fn send(&self, chunks: &mut [Chunk], order: &[usize]) -> Result<(), CliError> {
        for group in order.chunks(64) {
            let mut messages = Vec::with_capacity(group.len());
            let mut ids = Vec::with_capacity(group.len());
            for &i in group {
                let ns = self.ns[chunks[i].range.clone()].to_vec();
                let (id, message) =
                    batch_message(ns, self.format, self.last, &self.args.redis.queue)
                        .map_err(|e| self.send_error(&e))?;
                ids.push(id);
                messages.push(message);
            }
            enqueue(&self.broker, &self.args.redis.queue, &messages)
                .await
                .map_err(|e| self.send_error(&e))?;
            for (&i, id) in group.iter().zip(ids) {
                chunks[i].ids.push(id);
                chunks[i].sent = Instant::now();
                chunks[i].started = None;
            }
        }
        Ok(())
    }

    fn inputs(&self, c: &Chunk) -> String {
        let (first, last) = (self.ns[c.range.start], self.ns[c.range.end - 1]);
        if c.range.len() == 1 {
            format!("F({first})")
        } else {
            format!("the inputs from F({first}) to F({last})")
        }
    }

    async fn queue_len(&mut self) -> Result<u64, CliError> {
        let llen = redis::cmd("LLEN").arg(&self.args.redis.queue).clone();
        patiently(&self.broker, &llen).await.map_err(|e| {
            CliError::Runtime(format!(
                "lost the broker at {}: {e}",
                redact(&self.args.redis.broker)
            ))
        })
    }
}

/// Sends the chunks in `order`, then polls their results, sends late ones again, and prints
/// chunks in input order as they come.
///
/// A copy is late when a worker has been on it for `--timeout` seconds (it died, or the
/// timeout is shorter than the chunk), or when it was never seen started while the workers
/// made no progress for that long, or the queue has been empty for that long (a worker died
/// between taking it and starting it, or none is running). A long queue that is moving is
/// not lateness.
async fn gather(
    g: &mut Gather<'_>,
    chunks: &mut [Chunk],
    bar: &ProgressBar,
) -> Result<(), CliError> {
    let deadline = Duration::from_secs_f64(g.args.timeout);
    let mut out = io::BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let mut printed = 0usize;
    let mut pause = Duration::from_millis(5);
    let mut activity = Instant::now();
    let mut empty_since: Option<Instant> = None;
    // Chunks are sent in input order while their results fit in the budget (they are
    // printed, and their keys deleted, in that order), so memory here and in Redis stays
    // bounded whatever the batch. `open` holds the sent, unanswered ones in sending order.
    let mut next = 0usize;
    let mut in_flight = 0u64;
    let mut open: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
    // Chunks polled per round, in sending order, where results appear, and their bytes.
    const WINDOW: usize = 64;
    const WINDOW_BYTES: u64 = 256 << 20;
    const MAX_OPEN: usize = 4096;
    while printed < chunks.len() {
        if g.interrupted.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(CliError::Interrupted);
        }
        let mut batch = Vec::new();
        while next < chunks.len()
            && open.len() + batch.len() < MAX_OPEN
            && (in_flight == 0 || in_flight + g.bytes[next] <= g.budget)
        {
            in_flight += g.bytes[next];
            batch.push(next);
            next += 1;
        }
        if !batch.is_empty() {
            // The most expensive first: the workers take the queue in this order.
            batch.sort_by(|&a, &b| g.costs[b].total_cmp(&g.costs[a]));
            g.send(chunks, &batch).await?;
            open.extend(batch);
        }
        if g.queue_len().await? == 0 {
            empty_since.get_or_insert_with(Instant::now);
        } else {
            empty_since = None;
        }
        // Printed chunks have given up their result (`take`): without `printed` they would
        // look unanswered, then late, and be sent again.
        open.retain(|&i| chunks[i].result.is_none() && !chunks[i].printed);
        let mut window: Vec<usize> = Vec::new();
        let mut window_bytes = 0u64;
        for &i in open.iter().take(WINDOW) {
            if !window.is_empty() && window_bytes + g.bytes[i] > WINDOW_BYTES {
                break;
            }
            window_bytes += g.bytes[i];
            window.push(i);
        }
        let keys: Vec<String> = window
            .iter()
            .flat_map(|&i| chunks[i].ids.iter().map(|id| meta_key(id)))
            .collect();
        let metas: Vec<Option<String>> = if keys.is_empty() {
            Vec::new()
        } else {
            patiently(&g.results, redis::cmd("MGET").arg(&keys))
                .await
                .map_err(|e| CliError::Runtime(format!("cannot read results: {e}")))?
        };
        let mut metas = metas.into_iter();
        let mut progress = false;
        let mut resend = Vec::new();
        for &i in &window {
            let copies = chunks[i].ids.len();
            let mut found: Option<(usize, Vec<String>)> = None;
            for (k, raw) in metas.by_ref().take(copies).enumerate() {
                let Some(meta) = read_meta(raw) else {
                    continue;
                };
                match meta.status {
                    TaskState::Success if found.is_none() => {
                        let lines: Vec<String> = meta
                            .result
                            .and_then(|v| serde_json::from_value(v).ok())
                            .unwrap_or_default();
                        if lines.len() != chunks[i].range.len() {
                            return Err(CliError::Runtime(format!(
                                "a worker returned {} results for {} inputs (task {})",
                                lines.len(),
                                chunks[i].range.len(),
                                meta.task_id
                            )));
                        }
                        found = Some((k, lines));
                    }
                    TaskState::Failure => {
                        let why = failure_message(&meta);
                        return Err(CliError::Runtime(format!(
                            "a worker failed on {}: {why}",
                            g.inputs(&chunks[i])
                        )));
                    }
                    // The latest copy only: an earlier one may be a dead worker's.
                    TaskState::Started if k + 1 == copies && chunks[i].started.is_none() => {
                        chunks[i].started = Some(Instant::now());
                        activity = Instant::now();
                    }
                    _ => {}
                }
            }
            let c = &mut chunks[i];
            if let Some((winner, lines)) = found {
                c.result = Some(lines);
                bar.inc(1);
                progress = true;
                activity = Instant::now();
                // Its other copies, if any, are no longer wanted.
                if c.ids.len() > 1 {
                    let others: Vec<String> = (0..c.ids.len())
                        .filter(|&k| k != winner)
                        .map(|k| c.ids[k].clone())
                        .collect();
                    let queue = g.args.redis.queue.clone();
                    withdraw(&mut g.broker, &queue, &others).await;
                }
                continue;
            }
            let stalled = activity.elapsed() > deadline
                || empty_since.is_some_and(|t| t.elapsed() > deadline);
            let late = match c.started {
                Some(t) => t.elapsed() > deadline,
                None => c.sent.elapsed() > deadline && stalled,
            };
            if !late {
                continue;
            }
            let tries = c.ids.len() as u32;
            if tries > g.args.retries {
                return Err(CliError::Runtime(format!(
                    "no result for {} after {tries} tries of {} s each; is a `fibo worker` \
                     taking queue '{}' at {}?",
                    g.inputs(c),
                    g.args.timeout,
                    g.args.redis.queue,
                    redact(&g.args.redis.broker)
                )));
            }
            bar.suspend(|| {
                note!(
                    "fibo: no result for {} in {} s; sending them again (try {} of {})",
                    g.inputs(c),
                    g.args.timeout,
                    tries + 1,
                    g.args.retries + 1
                );
            });
            // Not progress: the next chunks of a dead worker's are just as late.
            resend.push(i);
        }
        g.send(chunks, &resend).await?;
        // Print what is ready, in input order, and let it go.
        let mut done_keys = Vec::new();
        while let Some(c) = chunks.get_mut(printed) {
            let Some(lines) = c.result.take() else { break };
            let mut text = Vec::new();
            for (k, line) in lines.iter().enumerate() {
                g.printer.line_for(&mut text, g.ns[c.range.start + k], line);
            }
            out.write_all(&text).map_err(write_error)?;
            c.printed = true;
            in_flight -= g.bytes[printed];
            done_keys.extend(c.ids.iter().map(|id| meta_key(id)));
            printed += 1;
        }
        out.flush().map_err(write_error)?;
        // One DEL a round, not one per chunk: 10^5 tiny chunks are 10^5 round trips less.
        for keys in done_keys.chunks(1024) {
            let _: redis::RedisResult<()> = redis::cmd("DEL")
                .arg(keys)
                .query_async(&mut g.results)
                .await;
        }
        if printed < chunks.len() {
            // Results coming in: poll again at once; none: back off.
            if progress {
                pause = Duration::from_millis(5);
            } else {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(200));
            }
        }
    }
    Ok(())
}

fn progress_bar(args: &SubmitArgs, chunks: u64) -> ProgressBar {
    let show = !args.no_progress && (args.progress || io::stderr().is_terminal());
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(chunks), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} chunks (eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_cut_to_a_byte_cap() {
        // F(10^7) has 2.09 MB of digits: 40 of them pass the cap, so the range is cut.
        let ns: Vec<u64> = (0..40).map(|k| 10_000_000 + k).collect();
        let whole = std::iter::once(0..40).collect::<Vec<_>>();
        let bytes_of = |what: What| ns.iter().map(|&n| what.line_bytes(n)).collect::<Vec<_>>();
        let r = cap_bytes(whole.clone(), &bytes_of(What::Value));
        assert!(r.len() >= 2, "{r:?}");
        assert_eq!(r[0].start, 0);
        assert_eq!(r[r.len() - 1].end, 40);
        for w in r.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        for p in &r {
            let bytes: u64 = ns[p.clone()]
                .iter()
                .map(|&n| What::Value.line_bytes(n))
                .sum();
            assert!(bytes <= CHUNK_BYTES, "{p:?}: {bytes}");
        }
        // Small results are left alone.
        assert_eq!(cap_bytes(whole.clone(), &bytes_of(What::Digits)), whole);
    }

    #[test]
    fn failure_messages_are_read_from_fibo_and_from_python_workers() {
        let fibo = failure_meta("a", "ValueError", "F(9) is too big");
        assert_eq!(failure_message(&fibo), "F(9) is too big");
        // As Python's Celery stores an exception.
        let mut python = TaskMeta::failure("b", &TaskError::UnexpectedError(String::new()));
        python.meta = None;
        python.result = Some(serde_json::json!({
            "exc_type": "ZeroDivisionError",
            "exc_message": ["division by zero"],
            "exc_module": "builtins",
        }));
        assert_eq!(
            failure_message(&python),
            "ZeroDivisionError: division by zero"
        );
        python.result = Some(serde_json::json!("boom"));
        assert_eq!(failure_message(&python), "boom");
    }

    #[test]
    fn messages_are_read_as_python_binds_a_call() {
        let (id, raw) = batch_message(vec![10, 20], "last", Some(3), "q").unwrap();
        let (got, taken) = read_message(&raw).unwrap();
        assert_eq!(got, id);
        let Taken::Run(job) = taken else {
            panic!("{taken:?}")
        };
        assert_eq!(job.ns, [10, 20]);
        assert!(matches!(job.what, What::Last(3)));
        // The same message with another body (args, kwargs, embed), as Python sends it.
        let with_body = |body: &str| {
            let mut v: serde_json::Value = serde_json::from_str(&raw).unwrap();
            let b64 = |s: &str| {
                // A tiny base64 encoder: enough for a test.
                const A: &[u8] =
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
                let mut out = String::new();
                for c in s.as_bytes().chunks(3) {
                    let n = c
                        .iter()
                        .enumerate()
                        .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
                    for k in 0..4 {
                        if k <= c.len() {
                            out.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
                        } else {
                            out.push('=');
                        }
                    }
                }
                out
            };
            v["body"] = b64(body).into();
            match read_message(&v.to_string()).unwrap().1 {
                Taken::Run(job) => Ok(job.ns),
                Taken::Refuse(r, also) => Err((r.exc_type, r.message, also)),
            }
        };
        assert_eq!(with_body("[[[1, 2]], {}, {}]"), Ok(vec![1, 2]));
        assert_eq!(
            with_body(r#"[[], {"ns": [5], "format": null}, null]"#),
            Ok(vec![5])
        );
        let e = with_body("[[[18446744073709551616]], {}, {}]").unwrap_err();
        assert!(e.1.contains("ns[0] is 18446744073709551616"), "{e:?}");
        let e = with_body("[[[1], \"value\", 3, 4], {}, {}]").unwrap_err();
        assert_eq!(e.0, "TypeError");
        let e = with_body(r#"[[[1]], {"lats": 3}, {}]"#).unwrap_err();
        assert!(e.1.contains("'lats'"), "{e:?}");
        let e =
            with_body(r#"[[[1]], {}, {"chord": {"task": "t", "options": {"task_id": "abc"}}}]"#)
                .unwrap_err();
        assert_eq!(e.0, "NotImplementedError");
        assert!(e.1.contains("chord"), "{e:?}");
        assert_eq!(e.2, ["abc"]);
    }

    #[test]
    fn jobs_check_their_arguments() {
        assert!(matches!(
            Job::new(vec![1], None, None).unwrap().what,
            What::Value
        ));
        assert!(matches!(
            Job::new(vec![1], Some("last"), Some(3)).unwrap().what,
            What::Last(3)
        ));
        assert!(Job::new(vec![1], Some("last"), None).is_err());
        let e = Job::new(vec![1], Some("hex"), None).err().unwrap();
        assert!(e.contains("\"hex\""), "{e}");
    }

    #[test]
    fn jobs_return_plain_fibo_lines_and_refuse_what_does_not_fit() {
        let e = Fibonacci::builder().threads(2).build().unwrap();
        let ns = vec![10, 0, 300, 299];
        let lines = Job::new(ns.clone(), None, None)
            .unwrap()
            .run(&e, u64::MAX)
            .unwrap();
        let want: Vec<String> = ns.iter().map(|&n| fib::fib(n).to_string()).collect();
        assert_eq!(lines, want);
        let lines = Job::new(vec![30, 1000], Some("last"), Some(3))
            .unwrap()
            .run(&e, u64::MAX)
            .unwrap();
        assert_eq!(lines[0], "040");
        assert_eq!(lines[1], (fib::fib(1000) % 1000u32).to_string());
        let digits = Job::new(vec![100], Some("digits"), None).unwrap();
        assert_eq!(digits.run(&e, u64::MAX).unwrap(), ["21"]);
        let big = Job::new(vec![1_000_000_000], None, None).unwrap();
        let err = big.run(&e, 1 << 20).unwrap_err();
        assert!(
            err.contains("F(1000000000)") && err.contains("memory limit"),
            "{err}"
        );
    }
}
