//! `fibo worker` and `fibo submit`: batches spread over many machines through Celery, with
//! Redis as broker and result backend (cargo feature `distributed`).
//!
//! The arguments are always parsed, so that a build without the feature says how to get it
//! instead of "unknown command"; the work itself is in `remote/`.

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
    /// Broker: redis://[:PASSWORD@]HOST[:PORT]/DB (or in $FIBO_BROKER, which keeps the
    /// password out of `ps`)
    #[arg(long, value_name = "URL", env = "FIBO_BROKER", hide_env_values = true, value_parser = RedisUrl)]
    pub broker: String,

    /// Result backend: redis://[:PASSWORD@]HOST[:PORT]/DB (or in $FIBO_BACKEND)
    /// [default: the broker]
    #[arg(long, value_name = "URL", env = "FIBO_BACKEND", hide_env_values = true, value_parser = RedisUrl)]
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

/// Parses `--broker` and `--backend` like [`parse_redis_url`], with errors that never
/// repeat the value: clap's own error would print the URL, password and all.
#[derive(Clone, Debug)]
pub(crate) struct RedisUrl;

impl clap::builder::TypedValueParser for RedisUrl {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        let name = arg.map_or_else(|| "URL".to_string(), ToString::to_string);
        let invalid = |why: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value for '{name}': {why}\n"),
            )
            .with_cmd(cmd)
        };
        let s = value
            .to_str()
            .ok_or_else(|| invalid("the URL is not valid UTF-8".into()))?;
        parse_redis_url(s).map_err(invalid)
    }
}

/// Accepts `redis://...` only: the one broker and backend this build speaks. Errors show the
/// URL redacted.
fn parse_redis_url(s: &str) -> Result<String, String> {
    let shown = redact(s);
    let Some(rest) = s.strip_prefix("redis://") else {
        let tls = if s.starts_with("rediss://") {
            " (TLS, rediss://, is not supported: use an SSH tunnel or a private network)"
        } else {
            ""
        };
        return Err(format!(
            "'{shown}' is not a redis:// URL (expected redis://HOST:PORT/DB){tls}"
        ));
    };
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host = host.split(['/', '?']).next().unwrap_or("");
    if host.is_empty() {
        return Err(format!(
            "'{shown}' names no host (expected redis://HOST:PORT/DB)"
        ));
    }
    if let Some((_, port)) = host.rsplit_once(':')
        && port.parse::<u16>().is_err()
    {
        return Err(format!("'{shown}': bad port '{port}'"));
    }
    Ok(s.to_string())
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(t) if t > 0.0 && t <= 1e6 => Ok(t),
        _ => Err("expected seconds, more than 0 and at most 1000000".into()),
    }
}

/// The URL with its password (and any query, which may hold one) replaced by `***`, for
/// messages. Everything before the last `@` after the scheme is taken as user and password.
#[cfg_attr(not(feature = "distributed"), allow(dead_code))]
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return match url.rsplit_once('@') {
            Some((_, host)) => format!("***@{host}"),
            None => url.to_string(),
        };
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, _)) => (r, "?***"),
        None => (rest, ""),
    };
    match rest.rsplit_once('@') {
        Some((auth, host)) => {
            let user = auth.split_once(':').map_or("", |(u, _)| u);
            format!("{scheme}://{user}:***@{host}{query}")
        }
        None => format!("{scheme}://{rest}{query}"),
    }
}

/// `text` with the password of `url`, wherever it appears, replaced by `***` (for error
/// messages of libraries that may quote the URL).
#[cfg_attr(not(feature = "distributed"), allow(dead_code))]
pub fn scrub(text: &str, url: &str) -> String {
    let text = text.replace(url, &redact(url));
    let secret = url
        .split_once("://")
        .and_then(|(_, rest)| rest.rsplit_once('@'))
        .map(|(auth, _)| auth.split_once(':').map_or(auth, |(_, pw)| pw))
        .unwrap_or("");
    if secret.len() >= 3 {
        text.replace(secret, "***")
    } else {
        text
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
        assert_eq!(redact("rediss://:pw@h/0"), "rediss://:***@h/0");
        assert_eq!(redact("redis://:p@w/x@h/0"), "redis://:***@h/0");
        assert_eq!(redact("redis://h/0?password=pw"), "redis://h/0?***");
        for bad in [
            "rediss://:pw1@h/0",
            "redis://:pw1@h:99999/0",
            "redis://:pw1@/0",
        ] {
            let e = parse_redis_url(bad).unwrap_err();
            assert!(!e.contains("pw1"), "{e}");
        }
        let e = scrub(
            "cannot connect to redis://:pw1@h/0 (pw1)",
            "redis://:pw1@h/0",
        );
        assert!(!e.contains("pw1"), "{e}");
    }
}
