//! Starting and stopping the service: the engine, the tokio runtime, the listener, and a
//! graceful shutdown on SIGTERM or Ctrl-C.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use parkit::fib::Fibonacci;

use super::super::{CliError, memory};
use super::ServeArgs;
use super::hub::{Hub, Limits};

/// A line on stderr; a closed or full stderr is not a reason to stop serving.
fn note(text: &str) {
    let _ = writeln!(std::io::stderr(), "fibo serve: {text}");
}

pub(crate) fn run(args: &ServeArgs) -> Result<(), CliError> {
    let cache_bytes = args.cache_mb.saturating_mul(1 << 20);
    let limit = args.max_memory.unwrap_or_else(memory::default_limit);
    let work_memory = limit.saturating_sub((cache_bytes + super::hub::TEXT_CACHE_BYTES) as u64);
    if work_memory < 64 << 20 {
        return Err(CliError::Usage(format!(
            "--max-memory {} leaves {} for requests once the cache's {} MiB (and 64 MiB of \
             rendered texts) are set aside; allow at least 64 MiB more, or lower --cache-mb",
            memory::human(limit),
            memory::human(work_memory),
            args.cache_mb
        )));
    }
    let engine = Fibonacci::builder()
        .threads(args.jobs.unwrap_or(0))
        .cache_bytes(cache_bytes)
        .build()
        .map_err(|e| CliError::Runtime(e.to_string()))?;
    let limits = Limits {
        max_n: args.max_n,
        max_inputs: args.max_inputs,
        max_response_bytes: args.max_response_bytes,
        max_body_bytes: args.max_body_bytes,
        timeout: Duration::from_secs_f64(args.timeout),
    };
    #[cfg(not(feature = "shared-cache"))]
    if args.cache_redis.is_some() {
        return Err(CliError::Usage(
            "--cache-redis needs the `shared-cache` feature: cargo install parkit --features \
             shared-cache"
                .into(),
        ));
    }
    #[cfg(feature = "shared-cache")]
    let shared = args.cache_redis.clone().map(|url| super::shared::Config {
        url,
        max_bytes: args.shared_max_bytes,
        ttl: Duration::from_secs_f64(args.shared_ttl),
        claim: Duration::from_secs_f64(args.shared_claim),
    });
    let hub = Hub::build(
        engine,
        limits,
        args.max_concurrency,
        work_memory,
        #[cfg(feature = "shared-cache")]
        shared,
    );
    // The async threads only parse, route and move bytes: one per core is plenty. Blocking
    // threads wait on computations and stream bodies: one per permitted piece of work, and
    // some to spare.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .max_blocking_threads(args.max_concurrency.saturating_mul(2) + 16)
        .thread_name("fibo-serve")
        .enable_all()
        .build()
        .map_err(|e| CliError::Runtime(format!("cannot start the async runtime: {e}")))?;
    let grace = Duration::from_secs_f64(args.grace);
    let result = runtime.block_on(async move {
        if let Some(above) = args.offload_above {
            #[cfg(feature = "distributed")]
            {
                let broker = args.broker.as_deref().unwrap_or_default();
                let backend = args.backend.as_deref().unwrap_or(broker);
                let off = super::offload::Offload::connect(
                    broker,
                    backend,
                    &args.queue,
                    above,
                    // Half the request's time: the other half is for computing here if no
                    // worker answers.
                    Duration::from_secs_f64(args.timeout / 2.0),
                )
                .await
                .map_err(CliError::Runtime)?;
                let _ = hub.offload.set(Arc::new(off));
            }
            #[cfg(not(feature = "distributed"))]
            {
                let _ = above;
                return Err(CliError::Usage(
                    "--offload-above needs the `distributed` feature: cargo install parkit \
                     --features distributed"
                        .into(),
                ));
            }
        }
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|e| CliError::Usage(format!("cannot listen on '{}': {e}", args.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| CliError::Runtime(format!("cannot read the bound address: {e}")))?;
        note(&format!("listening on http://{addr}"));
        #[cfg(feature = "shared-cache")]
        if let Some(shared) = hub.shared() {
            let shared = Arc::clone(shared);
            tokio::spawn(async move { shared.connect().await });
        }
        let stopping = Arc::new(tokio::sync::Notify::new());
        let signal = {
            let stopping = Arc::clone(&stopping);
            async move {
                stop_signal().await;
                note("stopping: no new connections; finishing the requests in flight");
                stopping.notify_waiters();
            }
        };
        let app = super::routes::service(Arc::clone(&hub));
        let server = axum::serve(listener, axum::ServiceExt::<axum::extract::Request>::into_make_service(app))
            .with_graceful_shutdown(signal);
        let deadline = async {
            stopping.notified().await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            r = server => r.map_err(|e| CliError::Runtime(format!("the server failed: {e}"))),
            () = deadline => {
                note(&format!("grace period of {} s over; closing the connections left", grace.as_secs_f64()));
                Ok(())
            }
        }
    });
    // Blocking threads still streaming to a client that outlived the grace period are not
    // waited for.
    runtime.shutdown_timeout(Duration::from_millis(200));
    if result.is_ok() {
        note("stopped");
    }
    result
}

/// SIGTERM or Ctrl-C (SIGINT).
async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = ctrl_c => {}
            () = term => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}
