//! `fibo worker`: takes `fibo.batch` messages off the queue with a blocking pop, runs each on
//! the engine's rayon pool, stores its state and result where Celery clients read them, and
//! acknowledges it only once the result is stored.

use std::sync::Arc;
use std::time::{Duration, Instant};

use celery::backend::{TaskMeta, TaskState};
use parkit::fib::Fibonacci;

use super::super::distributed::{WorkerArgs, redact};
use super::super::{CliError, memory};
use super::redis::{
    BROKER_GRACE, Conn, Links, POP_WAIT, RESULT_TTL, broker_connection, connect, enqueue, meta_key,
    patiently, redis_error, transient, unacked_key, withdrawn_key,
};
use super::task::{
    REDIS_MAX_STRING, Refusal, TASK, Taken, failure_meta, read_message, success_json,
};
use super::{hostname, init_logging, runtime, watch_signals};

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

/// Acknowledges a task: clears it from the unacknowledged hash.
async fn ack(ctx: &Ctx, id: &str) {
    let done = redis::cmd("HDEL")
        .arg(unacked_key(&ctx.queue))
        .arg(id)
        .clone();
    if let Err(e) = patiently::<()>(&ctx.conn, &done).await {
        note!("fibo worker {}: cannot acknowledge a task: {e}", ctx.me);
    }
}
