//! `--offload-above N`: pairs past N computed by `fibo worker`s, through the existing Celery
//! contract (`fibo.batch` on the broker's queue, the result in the backend), so that the
//! instances answering requests stay responsive while heavy values are computed elsewhere. A
//! pair that comes back is cached like any other; a worker failure or silence past half the
//! request timeout falls back to computing here, so no request is lost to it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parkit::decimal::DecNat;

use super::super::distributed::redact;
use super::super::remote::{self, Conn};

/// The connections and settings of offloading.
pub(crate) struct Offload {
    broker: Conn,
    backend: Conn,
    queue: String,
    /// Pairs with n above this go to the workers.
    pub above: u64,
    timeout: Duration,
    backend_url: String,
}

impl std::fmt::Debug for Offload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Offload")
            .field("queue", &self.queue)
            .field("above", &self.above)
            .field("backend", &redact(&self.backend_url))
            .finish_non_exhaustive()
    }
}

impl Offload {
    /// Connects to the broker and the backend (both answer PING, or this fails in one line
    /// without the password).
    pub async fn connect(
        broker: &str,
        backend: &str,
        queue: &str,
        above: u64,
        timeout: Duration,
    ) -> Result<Offload, String> {
        let open = |url: &str| {
            let url = url.to_string();
            async move {
                let mut c =
                    remote::connection(&url, Duration::from_secs(5), Duration::from_secs(5))
                        .await
                        .map_err(|e| {
                            format!("cannot reach {}: {}", redact(&url), remote::redis_error(&e))
                        })?;
                let _: String = redis::cmd("PING").query_async(&mut c).await.map_err(|e| {
                    format!("cannot use {}: {}", redact(&url), remote::redis_error(&e))
                })?;
                Ok::<_, String>(c)
            }
        };
        Ok(Offload {
            broker: open(broker).await?,
            backend: open(backend).await?,
            queue: queue.to_string(),
            above,
            timeout,
            backend_url: backend.to_string(),
        })
    }

    /// (F(n), F(n+1)) from a worker: one `fibo.batch([n, n+1], "value")` task, its result
    /// polled (5 ms, doubling to 100 ms) until it is there, `cancelled` is set (the task is
    /// then withdrawn) or the timeout passes.
    pub async fn pair(&self, n: u64, cancelled: &AtomicBool) -> Result<(DecNat, DecNat), String> {
        let (id, message) = remote::batch_message(vec![n, n + 1], "value", None, &self.queue)?;
        remote::enqueue(&self.broker, &self.queue, &[message])
            .await
            .map_err(|e| format!("cannot send the task: {}", remote::redis_error(&e)))?;
        let key = remote::meta_key(&id);
        let started = Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            if cancelled.load(Ordering::Relaxed) || started.elapsed() > self.timeout {
                let mut b = self.broker.clone();
                remote::withdraw(&mut b, &self.queue, std::slice::from_ref(&id)).await;
                return Err(if cancelled.load(Ordering::Relaxed) {
                    "cancelled".into()
                } else {
                    format!("no worker answered within {} s", self.timeout.as_secs_f64())
                });
            }
            let mut c = self.backend.clone();
            let raw: Option<String> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut c)
                .await
                .map_err(|e| format!("cannot read the result: {}", remote::redis_error(&e)))?;
            if let Some(meta) = remote::read_meta(raw) {
                use celery::backend::TaskState;
                match meta.status {
                    TaskState::Success => {
                        let _: Result<(), _> =
                            redis::cmd("DEL").arg(&key).query_async(&mut c).await;
                        let lines: Vec<String> = meta
                            .result
                            .and_then(|v| serde_json::from_value(v).ok())
                            .unwrap_or_default();
                        let [a, b] = lines.as_slice() else {
                            return Err(format!(
                                "a worker returned {} lines for 2 inputs",
                                lines.len()
                            ));
                        };
                        let parse = |t: &str| {
                            t.parse::<DecNat>().map_err(|e| {
                                format!("a worker returned a value that is not a number: {e}")
                            })
                        };
                        return Ok((parse(a)?, parse(b)?));
                    }
                    TaskState::Failure => {
                        let _: Result<(), _> =
                            redis::cmd("DEL").arg(&key).query_async(&mut c).await;
                        return Err(format!(
                            "a worker failed: {}",
                            remote::failure_message(&meta)
                        ));
                    }
                    _ => {}
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
}
