//! `fibo worker` and `fibo submit`: batches spread over many machines through Celery, with
//! Redis as broker and result backend (cargo feature `distributed`).
//!
//! The arguments are always parsed, so that a build without the feature says how to get it
//! instead of "unknown command"; the work itself is in `remote.rs`.

#[cfg(not(feature = "distributed"))]
use super::CliError;
use super::{Select, memory, parse_jobs};

/// `fibo worker`: take `fibo.batch` tasks and compute them here.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
The task is fibo.batch(ns, format=\"value\"|\"digits\"|\"last\", last=K): a list of strings in
input order, exactly the lines plain fibo prints. Python clients call it with
app.send_task(\"fibo.batch\", args=[[10, 100]]).

Keep Redis on a private address with a password (requirepass; redis://:PASSWORD@HOST:6379/0),
never on an open port: anyone who can reach it can make your workers compute.")]
pub struct WorkerArgs {
    /// Where the tasks and results go.
    #[command(flatten)]
    pub redis: RedisArgs,

    /// Threads for the computation [default: one per core]
    #[arg(short, long, value_name = "N", value_parser = parse_jobs)]
    pub jobs: Option<usize>,

    /// Tasks taken from the queue at once (each already uses every thread; more than 1 only
    /// hides the broker's latency, and leaves fewer tasks for other workers)
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub prefetch: u16,

    /// Memory budget of the cache of computed pairs, in MB (MiB)
    #[arg(long, value_name = "MB", default_value_t = 256)]
    pub cache_mb: usize,

    /// Fail a task whose results would need more memory than this, e.g. 512M or 8G
    /// [default: 90% of the available memory]
    #[arg(long, value_name = "SIZE", value_parser = memory::parse_size)]
    pub max_memory: Option<u64>,
}

/// `fibo submit`: send inputs to workers and print their results.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  fibo submit --broker redis://10.0.0.5:6379/0 1e6..1e6+1000 > out.txt
  fibo submit --broker redis://:secret@10.0.0.5/0 --backend redis://:secret@10.0.0.5/1 \\
      --chunk 16 --timeout 120 -i big.txt --format json

The output is byte for byte what plain fibo prints for the same inputs and options. A chunk
whose result is not back within --timeout seconds is sent again (tasks are idempotent), so a
worker that dies mid-batch loses nothing; --mod M is computed here, it needs no big number.")]
pub struct SubmitArgs {
    /// Inputs and what to print for each (as plain `fibo`).
    #[command(flatten)]
    pub select: Select,

    /// Where the tasks and results go.
    #[command(flatten)]
    pub redis: RedisArgs,

    /// Inputs per task, on average: the inputs are cut, in order, into len/N chunks of about
    /// equal estimated work [default: chunks of about 20 ms of work on one core each]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub chunk: Option<u64>,

    /// Seconds to wait for a chunk's result before sending it again
    #[arg(long, value_name = "S", default_value_t = 60.0, value_parser = parse_seconds)]
    pub timeout: f64,

    /// Times a chunk is sent again before giving up
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub retries: u32,

    /// Refuse inputs whose value would need more memory than this here, e.g. 512M or 8G
    /// [default: 90% of the available memory]
    #[arg(long, value_name = "SIZE", value_parser = memory::parse_size)]
    pub max_memory: Option<u64>,

    /// Show a progress bar over chunks on stderr [default: when stderr is a terminal]
    #[arg(long, overrides_with = "no_progress")]
    pub progress: bool,

    /// Never show a progress bar
    #[arg(long, overrides_with = "progress")]
    pub no_progress: bool,
}

/// The broker, the result backend and the queue: shared by `worker` and `submit`.
#[derive(Debug, clap::Args)]
pub struct RedisArgs {
    /// Broker: redis://[:PASSWORD@]HOST[:PORT]/DB
    #[arg(long, value_name = "URL", value_parser = parse_redis_url)]
    pub broker: String,

    /// Result backend: redis://[:PASSWORD@]HOST[:PORT]/DB [default: the broker]
    #[arg(long, value_name = "URL", value_parser = parse_redis_url)]
    pub backend: Option<String>,

    /// Queue of `fibo.batch` tasks
    #[arg(long, value_name = "NAME", default_value = "celery")]
    pub queue: String,

    /// Seconds to wait for the broker and the backend at start
    #[arg(long, value_name = "S", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub connect_timeout: u64,
}

#[cfg_attr(not(feature = "distributed"), allow(dead_code))]
impl RedisArgs {
    /// The backend's URL: `--backend`, else the broker's.
    pub fn backend_url(&self) -> &str {
        self.backend.as_deref().unwrap_or(&self.broker)
    }
}

/// Accepts `redis://...` only: the one broker and backend this build speaks.
fn parse_redis_url(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("redis://")
        .ok_or_else(|| format!("'{s}' is not a redis:// URL (expected redis://HOST:PORT/DB)"))?;
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host = host.split('/').next().unwrap_or("");
    if host.is_empty() {
        return Err(format!(
            "'{s}' names no host (expected redis://HOST:PORT/DB)"
        ));
    }
    if let Some((_, port)) = host.rsplit_once(':')
        && port.parse::<u16>().is_err()
    {
        return Err(format!("'{s}': bad port '{port}'"));
    }
    Ok(s.to_string())
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(t) if t > 0.0 && t <= 1e6 => Ok(t),
        _ => Err("expected seconds, more than 0 and at most 1000000".into()),
    }
}

/// The URL with its password replaced by `***`, for messages.
#[cfg_attr(not(feature = "distributed"), allow(dead_code))]
pub fn redact(url: &str) -> String {
    match url
        .strip_prefix("redis://")
        .and_then(|r| r.rsplit_once('@'))
    {
        Some((auth, host)) => {
            let user = auth.split(':').next().unwrap_or("");
            format!("redis://{user}:***@{host}")
        }
        None => url.to_string(),
    }
}

#[cfg(feature = "distributed")]
pub use super::remote::{submit, worker};

/// Without the feature: one clear line instead of "unknown command".
#[cfg(not(feature = "distributed"))]
pub fn worker(_: &WorkerArgs) -> Result<(), CliError> {
    Err(not_built("worker"))
}

/// Without the feature: one clear line instead of "unknown command".
#[cfg(not(feature = "distributed"))]
pub fn submit(_: &SubmitArgs) -> Result<(), CliError> {
    Err(not_built("submit"))
}

#[cfg(not(feature = "distributed"))]
fn not_built(what: &str) -> CliError {
    CliError::Usage(format!(
        "'fibo {what}' needs the `distributed` feature: cargo install parkit --features \
         distributed (or cargo run --release --features distributed --bin fibo -- {what} ...)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_redis_urls_with_a_host_pass() {
        assert!(parse_redis_url("redis://127.0.0.1:6379/0").is_ok());
        assert!(parse_redis_url("redis://:pw@host/1").is_ok());
        assert!(parse_redis_url("redis://host").is_ok());
        assert!(
            parse_redis_url("amqp://host")
                .unwrap_err()
                .contains("not a redis://")
        );
        assert!(
            parse_redis_url("redis:///0")
                .unwrap_err()
                .contains("no host")
        );
        assert!(
            parse_redis_url("redis://h:99999/0")
                .unwrap_err()
                .contains("bad port")
        );
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(redact("redis://:s3cret@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redact("redis://u:s3cret@h/0"), "redis://u:***@h/0");
        assert_eq!(redact("redis://h:1/0"), "redis://h:1/0");
    }
}
