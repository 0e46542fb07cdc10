//! Redis plumbing of the worker and the client: connections that reconnect and retry
//! transient errors ([`patiently`]), the keys (results, withdrawals, the unacknowledged hash)
//! and the commands on them that both sides share.

use std::time::{Duration, Instant};

use super::super::CliError;
use super::super::distributed::{redact, scrub};

/// How long results stay in the backend when nobody collects them (Celery's default
/// `result_expires`).
pub(crate) const RESULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// How long a worker waits for Redis to take a result.
pub(crate) const RESULT_WRITE_WAIT: Duration = Duration::from_secs(600);

/// Seconds without the broker after which a worker gives up.
pub(crate) const BROKER_GRACE: Duration = Duration::from_secs(60);

/// A blocking pop waits this long at most, so a stop request is seen within it.
pub(crate) const POP_WAIT: Duration = Duration::from_secs(1);

/// A Redis connection that reconnects by itself after an error (a restarted server).
pub(crate) type Conn = redis::aio::ConnectionManager;

/// A connection of its own to the broker.
pub(crate) async fn broker_connection(url: &str, timeout: Duration) -> redis::RedisResult<Conn> {
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
pub(crate) fn transient(e: &redis::RedisError) -> bool {
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
pub(crate) async fn patiently<T: redis::FromRedisValue>(
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

/// Marks a task its client no longer wants (answered, or sent again and answered by a copy,
/// or the client interrupted): a worker that takes it skips it. Celery's own revocation
/// goes through broadcast control messages, which celery-rs does not have.
pub(crate) fn withdrawn_key(id: &str) -> String {
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
pub(crate) fn unacked_key(queue: &str) -> String {
    format!("_celery.{queue}_process_map")
}

/// Deletes keys (best effort), 1024 to a command: one DEL a round, not one per chunk, so
/// 10^5 tiny chunks are 10^5 round trips less.
pub(crate) async fn delete(conn: &mut Conn, keys: &[String]) {
    for batch in keys.chunks(1024) {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(batch).query_async(conn).await;
    }
}

/// Our connections to the broker and to the result backend's server.
pub(crate) struct Links {
    pub broker: Conn,
    pub results: Conn,
}

/// Opens and checks both connections: an unreachable server, a wrong password or a missing
/// one is a one-line error at start, not a minute of retries.
pub(crate) async fn connect(
    broker: &str,
    backend: &str,
    timeout: Duration,
) -> Result<Links, CliError> {
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
