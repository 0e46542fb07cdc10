//! The Celery side of `fibo worker` and `fibo submit` (feature `distributed`).
//!
//! celery-rs gives the task definition, the Celery messages (built by `send_task`, read by
//! its `Delivery` and `Request`) and the result layout (`TaskMeta` under
//! `celery-task-meta-ID`), so Python's Celery interoperates both ways. The Redis traffic
//! around them is ours, on reconnecting connections:
//!
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

use std::io::{self, IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use celery::backend::{TaskMeta, TaskState};
use celery::prelude::*;
use celery::protocol::TryDeserializeMessage as _;
use celery::task::Request;
use celery::{Celery, CeleryBuilder};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use parkit::fib::{self, Fibonacci};
use parkit::schedule;

use super::distributed::{SubmitArgs, WorkerArgs, redact};
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
/// the message `submit` sends; the worker loop below parses the arguments the same way and
/// runs [`compute`] (this body is what celery-rs's own loop would run).
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

    /// The lines, on the engine's pool; refused when they would not fit in `limit` bytes.
    fn run(&self, engine: &Fibonacci, limit: u64) -> Result<Vec<String>, String> {
        if self.what.needs_value()
            && let Some(&n) = self.ns.iter().max()
        {
            let need = fib::working_bytes(n, true);
            if need > limit {
                return Err(format!(
                    "F({n}) needs about {} while computing, over this worker's memory limit \
                     of {}",
                    memory::human(need),
                    memory::human(limit)
                ));
            }
        }
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
        // The lines, the strings and their JSON are held at once.
        let need = bytes.saturating_mul(3);
        if need > limit {
            return Err(format!(
                "{} inputs make about {} of results, over this worker's memory limit of {}; \
                 send smaller chunks",
                self.ns.len(),
                memory::human(need),
                memory::human(limit)
            ));
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

/// The Celery app (messages, sending) and connections of our own to the broker and to the
/// result backend's server. Opening a connection is the reachability check.
struct Links {
    app: Arc<Celery>,
    broker: Conn,
    results: Conn,
}

async fn connect(
    broker: &str,
    backend: &str,
    queue: &str,
    timeout: Duration,
) -> Result<Links, CliError> {
    let unreachable = |what: &str, url: &str, e: &dyn std::fmt::Display| {
        CliError::Runtime(format!("cannot reach the {what} at {}: {e}", redact(url)))
    };
    let open = |url: &str, response: Duration| {
        let url = url.to_string();
        async move {
            match tokio::time::timeout(timeout, connection(&url, timeout, response)).await {
                Ok(Ok(c)) => Ok(c),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("no answer in time".to_string()),
            }
        }
    };
    let broker_conn = open(broker, POP_WAIT + timeout)
        .await
        .map_err(|e| unreachable("broker", broker, &e))?;
    // Results can be hundreds of MB: their writes get minutes, not seconds.
    let results = open(backend, RESULT_WRITE_WAIT)
        .await
        .map_err(|e| unreachable("result backend", backend, &e))?;
    let app = CeleryBuilder::new("fibo", broker)
        .default_queue(queue)
        .broker_connection_timeout(timeout.as_secs().clamp(1, 3600) as u32)
        .broker_connection_max_retries(1)
        .build();
    let app = match tokio::time::timeout(timeout, app).await {
        Ok(Ok(app)) => Arc::new(app),
        Ok(Err(e)) => return Err(unreachable("broker", broker, &e)),
        Err(_) => return Err(unreachable("broker", broker, &"no answer in time")),
    };
    Ok(Links {
        app,
        broker: broker_conn,
        results,
    })
}

/// A failure that Python's Celery turns back into `ValueError(message)`.
fn failure_meta(task_id: &str, message: &str) -> TaskMeta {
    let mut meta = TaskMeta::failure(task_id, &TaskError::UnexpectedError(message.into()));
    meta.result = Some(serde_json::json!({
        "exc_type": "ValueError",
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
            app,
            broker: conn,
            results,
        } = connect(&args.redis.broker, backend_url, &args.redis.queue, timeout).await?;
        let me = format!("{}:{}", app.hostname, std::process::id());
        eprintln!(
            "fibo worker {me}: taking {TASK} from queue '{}' at {} (results to {}), {} threads",
            args.redis.queue,
            redact(&args.redis.broker),
            redact(backend_url),
            engine.threads()
        );
        let ctx = Arc::new(Ctx {
            results,
            app,
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
    app: Arc<Celery>,
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
async fn withdraw(conn: &mut Conn, queue: &str, ids: &[String]) {
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
type Conn = redis::aio::ConnectionManager;

/// A connection of its own to the broker.
async fn broker_connection(url: &str, timeout: Duration) -> redis::RedisResult<Conn> {
    connection(url, timeout, POP_WAIT + timeout).await
}

/// A connection of its own to a Redis server, answers awaited for `response` at most.
async fn connection(url: &str, timeout: Duration, response: Duration) -> redis::RedisResult<Conn> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(timeout)
        .set_response_timeout(response)
        // One try per (re)connection: callers retry (`patiently`) or fail fast at start.
        .set_number_of_retries(0);
    redis::aio::ConnectionManager::new_with_config(redis::Client::open(url)?, config).await
}

/// Runs a command until it succeeds, for up to [`BROKER_GRACE`]: the connection reconnects
/// between tries.
async fn patiently<T: redis::FromRedisValue>(
    conn: &Conn,
    cmd: &redis::Cmd,
) -> redis::RedisResult<T> {
    let started = Instant::now();
    loop {
        let mut c = conn.clone();
        match cmd.query_async(&mut c).await {
            Ok(v) => return Ok(v),
            Err(e) if started.elapsed() > BROKER_GRACE => return Err(e),
            Err(_) => tokio::time::sleep(POP_WAIT).await,
        }
    }
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
        eprintln!("fibo worker {me}: stopping once the running tasks finish (again to quit now)");
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
                eprintln!("fibo worker {}: a task was lost: {e}", ctx.me);
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
                        eprintln!(
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
                eprintln!("fibo worker {}: broker error, retrying: {e}", ctx.me);
                tokio::time::sleep(POP_WAIT).await;
            }
        }
    }
    if !running.is_empty() {
        eprintln!(
            "fibo worker {}: stopping after {} running task(s)",
            ctx.me,
            running.len()
        );
    }
    while running.join_next().await.is_some() {}
    Ok(())
}

/// One message: started, computed on the rayon pool, result stored, then acknowledged.
async fn handle(ctx: &Arc<Ctx>, raw: String) {
    let message = serde_json::from_str::<celery::protocol::Delivery>(&raw)
        .map_err(|e| e.to_string())
        .and_then(|d| d.try_deserialize_message().map_err(|e| e.to_string()));
    let message = match message {
        Ok(m) => m,
        Err(e) => {
            eprintln!("fibo worker {}: dropped an unreadable message: {e}", ctx.me);
            return;
        }
    };
    let id = message.task_id().to_string();
    let short = id.get(..8).unwrap_or(&id).to_string();
    let withdrawn = redis::cmd("EXISTS").arg(withdrawn_key(&id)).clone();
    if patiently::<bool>(&ctx.conn, &withdrawn)
        .await
        .unwrap_or(false)
    {
        eprintln!(
            "fibo worker {}: task {short} withdrawn by its client, skipped",
            ctx.me
        );
        return;
    }
    let taken = redis::cmd("HSET")
        .arg(unacked_key(&ctx.queue))
        .arg(&id)
        .arg(&raw)
        .clone();
    let _ = patiently::<()>(&ctx.conn, &taken).await;
    if message.headers.task != TASK {
        // A shared broker's default queue may carry other apps' tasks: give each app its
        // own queue (--queue).
        let why = format!("this worker runs {TASK} only, not {}", message.headers.task);
        return fail(ctx, &id, why).await;
    }
    let body = message.raw_body.clone();
    let request = match Request::<batch>::try_from_message(Arc::clone(&ctx.app), message) {
        Ok(r) => r,
        Err(_) => return fail(ctx, &id, bad_arguments(&body)).await,
    };
    if request.is_delayed() {
        return fail(
            ctx,
            &id,
            "a countdown or eta is not supported by fibo worker".into(),
        )
        .await;
    }
    if request.is_expired() {
        return fail(ctx, &id, "the task expired before a worker took it".into()).await;
    }
    let job = serde_json::to_value(&request.params)
        .map_err(|e| e.to_string())
        .and_then(|p| {
            let ns = serde_json::from_value::<Vec<u64>>(p["ns"].clone())
                .map_err(|e| format!("bad arguments: ns must be a list of integers >= 0: {e}"))?;
            let format = p["format"].as_str().map(str::to_string);
            let last = p["last"]
                .as_u64()
                .map(|k| k.min(u64::from(u32::MAX)) as u32);
            Job::new(ns, format.as_deref(), last)
        });
    let job = match job {
        Ok(j) => j,
        Err(why) => return fail(ctx, &id, why).await,
    };
    let top = job.ns.iter().max().copied().unwrap_or(0);
    eprintln!(
        "fibo worker {}: task {short} started: {} inputs, n up to {top}",
        ctx.me,
        job.ns.len()
    );
    store(ctx, TaskMeta::started(&id)).await;
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
        Ok(json) => json,
        Err(why) => return fail(ctx, &id, why).await,
    };
    // Acknowledged only once the result is stored (acks late). A task whose result cannot be
    // stored stays unacknowledged, as does the task of a worker that dies: nothing redelivers
    // from that hash (neither celery-rs nor Celery's Redis transport does), so it is
    // `submit`'s resending that recovers such a task; a Python client has to send it again.
    if store_json(ctx, &id, json, true).await {
        eprintln!("fibo worker {}: task {short} done in {took:.1} ms", ctx.me);
        ack(ctx, &id).await;
    }
}

/// Stores a task's failure, then acknowledges it.
async fn fail(ctx: &Ctx, id: &str, why: String) {
    let short = id.get(..8).unwrap_or(id);
    eprintln!("fibo worker {}: task {short} failed: {why}", ctx.me);
    if store(ctx, failure_meta(id, &why)).await {
        ack(ctx, id).await;
    }
}

/// Names the arguments a task could not be called with.
fn bad_arguments(raw_body: &[u8]) -> String {
    let body: serde_json::Value = serde_json::from_slice(raw_body).unwrap_or_default();
    let mut shown = format!("args {}, kwargs {}", body[0], body[1]);
    if shown.len() > 200 {
        let mut end = 200;
        while !shown.is_char_boundary(end) {
            end -= 1;
        }
        shown.truncate(end);
        shown.push_str("...");
    }
    format!(
        "bad arguments ({shown}); expected {TASK}(ns: a list of integers from 0 to \
         18446744073709551615, format: \"value\" | \"digits\" | \"last\", last: K)"
    )
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

/// Stores a state ([`store_json`]); whether it was stored.
async fn store(ctx: &Ctx, meta: TaskMeta) -> bool {
    let last = matches!(meta.status, TaskState::Success | TaskState::Failure);
    match serde_json::to_string(&meta) {
        Ok(json) => store_json(ctx, &meta.task_id, json, last).await,
        Err(e) => {
            eprintln!("fibo worker {}: cannot encode a result: {e}", ctx.me);
            false
        }
    }
}

/// Stores a task's state, in celery-rs's `TaskMeta` layout, where its Redis backend and
/// Python's Celery read it (`celery-task-meta-ID`, expiring like Celery's results). A final
/// state (`last`) is then published, as Python's Celery does, when a client is subscribed: a
/// Python `get()` waits on that channel. One serialization serves both. Whether it was
/// stored (tried for up to [`BROKER_GRACE`]).
async fn store_json(ctx: &Ctx, id: &str, json: String, last: bool) -> bool {
    let key = format!("celery-task-meta-{id}");
    let set = redis::cmd("SET")
        .arg(&key)
        .arg(&json)
        .arg("EX")
        .arg(RESULT_TTL.as_secs())
        .clone();
    if let Err(e) = patiently::<()>(&ctx.results, &set).await {
        eprintln!("fibo worker {}: cannot store a result: {e}", ctx.me);
        return false;
    }
    if !last {
        return true;
    }
    let mut conn = ctx.results.clone();
    let listeners: redis::RedisResult<Vec<(String, u64)>> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(&key)
        .query_async(&mut conn)
        .await;
    if listeners.is_ok_and(|l| l.iter().any(|(_, n)| *n > 0)) {
        let _: redis::RedisResult<()> = redis::cmd("PUBLISH")
            .arg(&key)
            .arg(json)
            .query_async(&mut conn)
            .await;
    }
    true
}

async fn ack(ctx: &Ctx, id: &str) {
    let done = redis::cmd("HDEL")
        .arg(unacked_key(&ctx.queue))
        .arg(id)
        .clone();
    if let Err(e) = patiently::<()>(&ctx.conn, &done).await {
        eprintln!("fibo worker {}: cannot acknowledge a task: {e}", ctx.me);
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
        let Links {
            app,
            broker,
            results,
        } = connect(&args.redis.broker, backend_url, &args.redis.queue, timeout).await?;
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
            app,
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
        // Withdraw what is still out, and leave no result behind in the backend (copies
        // still running expire with the TTL).
        let open: Vec<String> = chunks
            .iter()
            .filter(|c| c.result.is_none() && !c.printed)
            .flat_map(|c| c.ids.iter().cloned())
            .collect();
        withdraw(&mut g.broker, &args.redis.queue, &open).await;
        let keys: Vec<String> = chunks
            .iter()
            .filter(|c| !c.printed)
            .flat_map(|c| c.ids.iter().map(|id| format!("celery-task-meta-{id}")))
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
fn failure_message(meta: &TaskMeta) -> String {
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
    app: Arc<Celery>,
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
    fn signature(&self, c: &Chunk) -> celery::task::Signature<batch> {
        batch::new(
            self.ns[c.range.clone()].to_vec(),
            Some(self.format.to_string()),
            self.last,
        )
        .with_queue(&self.args.redis.queue)
    }

    fn send_error(&self, e: &dyn std::fmt::Display) -> CliError {
        CliError::Runtime(format!(
            "cannot send to {}: {e}",
            redact(&self.args.redis.broker)
        ))
    }

    async fn send(&self, c: &Chunk) -> Result<String, CliError> {
        let sig = self.signature(c);
        self.app
            .send_task(sig)
            .await
            .map(|r| r.task_id)
            .map_err(|e| self.send_error(&e))
    }

    /// Sends every chunk, most expensive first (the workers take the queue in this order),
    /// up to 64 at a time.
    async fn send_all(&self, chunks: &mut [Chunk], order: &[usize]) -> Result<(), CliError> {
        for group in order.chunks(64) {
            let mut sending = tokio::task::JoinSet::new();
            for &i in group {
                let (app, sig) = (Arc::clone(&self.app), self.signature(&chunks[i]));
                sending.spawn(async move { (i, app.send_task(sig).await.map(|r| r.task_id)) });
            }
            while let Some(sent) = sending.join_next().await {
                let (i, id) = sent.map_err(|e| self.send_error(&e))?;
                chunks[i].ids.push(id.map_err(|e| self.send_error(&e))?);
                chunks[i].sent = Instant::now();
            }
        }
        Ok(())
    }

    fn inputs(&self, c: &Chunk) -> String {
        format!(
            "the inputs from F({}) to F({})",
            self.ns[c.range.start],
            self.ns[c.range.end - 1]
        )
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
            g.send_all(chunks, &batch).await?;
            open.extend(batch);
        }
        if g.queue_len().await? == 0 {
            empty_since.get_or_insert_with(Instant::now);
        } else {
            empty_since = None;
        }
        open.retain(|&i| chunks[i].result.is_none());
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
            .flat_map(|&i| {
                chunks[i]
                    .ids
                    .iter()
                    .map(|id| format!("celery-task-meta-{id}"))
            })
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
        for &i in &window {
            let copies = chunks[i].ids.len();
            let mut found: Option<(usize, Vec<String>)> = None;
            for (k, raw) in metas.by_ref().take(copies).enumerate() {
                let Some(meta) = raw.and_then(|r| serde_json::from_str::<TaskMeta>(&r).ok()) else {
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
                eprintln!(
                    "fibo: no result for {} in {} s; sending them again (try {} of {})",
                    g.inputs(c),
                    g.args.timeout,
                    tries + 1,
                    g.args.retries + 1
                );
            });
            let id = g.send(c).await?;
            c.ids.push(id);
            c.sent = Instant::now();
            c.started = None;
            activity = Instant::now();
        }
        // Print what is ready, in input order, and let it go.
        while let Some(c) = chunks.get_mut(printed) {
            let Some(lines) = c.result.take() else { break };
            let mut text = Vec::new();
            for (k, line) in lines.iter().enumerate() {
                g.printer.line_for(&mut text, g.ns[c.range.start + k], line);
            }
            out.write_all(&text).map_err(write_error)?;
            c.printed = true;
            in_flight -= g.bytes[printed];
            let keys: Vec<String> = c
                .ids
                .iter()
                .map(|id| format!("celery-task-meta-{id}"))
                .collect();
            let _: redis::RedisResult<()> = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut g.results)
                .await;
            printed += 1;
        }
        out.flush().map_err(write_error)?;
        if printed < chunks.len() {
            pause = if progress {
                Duration::from_millis(5)
            } else {
                (pause * 2).min(Duration::from_millis(200))
            };
            tokio::time::sleep(pause).await;
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
        let fibo = failure_meta("a", "F(9) is too big");
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
