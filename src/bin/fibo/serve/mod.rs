//! `fibo serve`: the book's Fibonacci website. Many users, one engine and one central cache;
//! identical work computed once; overload answered with 503 instead of collapse. The design and
//! the HTTP contract are in `README.md` beside this file.

#[cfg(feature = "serve")]
mod api;
#[cfg(feature = "serve")]
mod hub;
#[cfg(feature = "serve")]
mod metrics;
#[cfg(all(feature = "serve", feature = "distributed"))]
mod offload;
#[cfg(feature = "serve")]
mod routes;
#[cfg(feature = "serve")]
mod server;
#[cfg(feature = "shared-cache")]
mod shared;
#[cfg(feature = "serve")]
mod stream;
#[cfg(feature = "serve")]
mod track;

use super::{CliError, memory, parse_jobs};

/// The options of fibo serve.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port. The first line on stderr names the
    /// address bound
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: String,

    /// Worker threads of the engine [default: one per core]
    #[arg(short, long, value_name = "N", value_parser = parse_jobs)]
    pub jobs: Option<usize>,

    /// Memory budget of the central cache of computed pairs, in MB (MiB)
    #[arg(long, value_name = "MB", default_value_t = 256)]
    pub cache_mb: usize,

    /// Memory for the requests in flight together (computations and responses being
    /// streamed), cache included; past it new work is answered 503 [default: 90% of the
    /// available memory]
    #[arg(long, value_name = "SIZE", value_parser = memory::parse_size)]
    pub max_memory: Option<u64>,

    /// Largest n whose full value is served (--digits, --last and --mod take any n)
    #[arg(long, value_name = "N", default_value = "100000000", value_parser = parse_count)]
    pub max_n: u64,

    /// Most input values in one request
    #[arg(long, value_name = "N", default_value = "1000000", value_parser = parse_count)]
    pub max_inputs: u64,

    /// Largest response, estimated up front from digit counts (413 past it)
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = memory::parse_size)]
    pub max_response_bytes: u64,

    /// Largest request body (413 past it)
    #[arg(long, value_name = "SIZE", default_value = "1M", value_parser = memory::parse_size)]
    pub max_body_bytes: u64,

    /// Seconds a request may take before it is answered 504 (or its stream is cut)
    #[arg(long, value_name = "SECS", default_value_t = 60.0, value_parser = parse_secs)]
    pub timeout: f64,

    /// Computations and streamed responses at once; past it requests that need work are
    /// answered 503 with Retry-After (cached small answers are always served)
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = parse_concurrency)]
    pub max_concurrency: usize,

    /// A second cache level in Redis, shared by every instance given the same URL, with each
    /// value computed once across them: redis://[:PASSWORD@]HOST[:PORT]/DB (or in
    /// $FIBO_CACHE_REDIS, which keeps the password out of `ps`). Redis down or slow: values
    /// are served from the local cache and computed here (feature `shared-cache`)
    #[arg(long, value_name = "URL", env = "FIBO_CACHE_REDIS", hide_env_values = true, value_parser = super::distributed::RedisUrl)]
    pub cache_redis: Option<String>,

    /// Largest pair (F(n), F(n+1)) stored in the shared cache, as stored (8 bytes per 19
    /// digits); larger values stay in this instance's cache
    #[arg(long, value_name = "SIZE", default_value = "8M", value_parser = memory::parse_size)]
    pub shared_max_bytes: u64,

    /// Seconds the shared cache keeps a value
    #[arg(long, value_name = "SECS", default_value_t = 86_400.0, value_parser = parse_ttl)]
    pub shared_ttl: f64,

    /// Seconds a claim to compute a value lasts unless renewed (renewed every third of it
    /// while computing): how long other instances wait on an instance that died mid-way
    #[arg(long, value_name = "SECS", default_value_t = 5.0, value_parser = parse_secs)]
    pub shared_claim: f64,

    /// Seconds given to requests in flight after SIGTERM or Ctrl-C
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = parse_secs)]
    pub grace: f64,

    /// Send the computation of values with n above N to fibo workers (fibo.batch tasks on
    /// --broker; feature distributed); a failed or silent worker leaves it to this instance
    #[arg(long, value_name = "N", value_parser = parse_count, requires = "broker")]
    pub offload_above: Option<u64>,

    /// Broker of the workers for --offload-above: redis://[:PASSWORD@]HOST[:PORT]/DB (or in
    /// $FIBO_BROKER, which keeps the password out of ps)
    #[arg(long, value_name = "URL", env = "FIBO_BROKER", hide_env_values = true,
          value_parser = super::distributed::RedisUrl)]
    pub broker: Option<String>,

    /// Result backend of the workers (or in $FIBO_BACKEND) [default: the broker]
    #[arg(long, value_name = "URL", env = "FIBO_BACKEND", hide_env_values = true,
          value_parser = super::distributed::RedisUrl)]
    pub backend: Option<String>,

    /// Queue of the workers' fibo.batch tasks
    #[arg(long, value_name = "NAME", default_value = "celery")]
    pub queue: String,
}

fn parse_count(s: &str) -> Result<u64, String> {
    match super::input::parse_number(s)? {
        0 => Err("must be at least 1".into()),
        n => Ok(n),
    }
}

fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(t) if t > 0.0 && t <= 86_400.0 => Ok(t),
        _ => Err("expected seconds, more than 0 and at most 86400".into()),
    }
}

fn parse_ttl(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(t) if (0.001..=31_536_000.0).contains(&t) => Ok(t),
        _ => Err("expected seconds, from 0.001 to 31536000 (a year)".into()),
    }
}

fn parse_concurrency(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=100_000).contains(&n) => Ok(n),
        _ => Err("expected a whole number from 1 to 100000".into()),
    }
}

/// Runs the service until SIGTERM or Ctrl-C.
///
/// # Errors
///
/// [`CliError::Usage`] for an address that cannot be bound, [`CliError::Runtime`] when the
/// runtime or the engine cannot start.
#[cfg(feature = "serve")]
pub fn serve(args: &ServeArgs) -> Result<(), CliError> {
    server::run(args)
}

/// Without the feature: one clear line instead of "unknown command".
#[cfg(not(feature = "serve"))]
pub fn serve(_: &ServeArgs) -> Result<(), CliError> {
    Err(CliError::Usage(
        "'fibo serve' needs the `serve` feature (on by default): cargo install parkit".into(),
    ))
}
