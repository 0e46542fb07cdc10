//! The `fibo` command line: arguments, input collection and validation, the memory check, and
//! the streaming run (a parkit pipeline). Kept out of the library API; `src/bin/fibo.rs` is a thin `main`.

pub mod distributed;
pub mod input;
pub mod memory;
pub mod output;
#[cfg(feature = "distributed")]
pub mod remote;
pub mod serve;

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use parkit::fib::{self, Fibonacci};
use parkit::pipeline::Pipeline;

use input::{Item, Origin};
use output::{Engine, Format, Printer, What};

const AFTER_HELP: &str = "\
Examples:
  fibo 10 1000..1005          F(10), then F(1000) to F(1004)
  fibo 1..=100 --format tsv   n and F(n), tab-separated
  fibo 1e6 --digits           how many digits F(1000000) has
  fibo 1e18 --last 10         the last 10 digits of F(10^18), instantly
  fibo -i numbers.txt --format json
  seq 1 100 | fibo --mod 1000000007";

/// Exact Fibonacci numbers F(n) for whole batches of inputs, on every core.
///
/// Inputs are N, A..B (end excluded) or A..=B (end included); 1_000_000 and 1e6 are accepted.
/// Results are printed one line per input value, in input order, as soon as they are ready.
#[derive(Debug, Parser)]
#[command(
    name = "fibo",
    version,
    after_help = AFTER_HELP,
    allow_negative_numbers = true,
    args_conflicts_with_subcommands = true
)]
pub struct Args {
    /// Inputs and what to print for each.
    #[command(flatten)]
    pub select: Select,

    /// How full values are computed: in decimal (base 10^19, printing is a linear copy), in
    /// binary (then converted), or auto: decimal past n = 186
    #[arg(long, value_enum, default_value_t = Engine::Auto)]
    pub engine: Engine,

    /// Worker threads [default: one per core]
    #[arg(short, long, value_name = "N", value_parser = parse_jobs)]
    pub jobs: Option<usize>,

    /// Show a progress bar on stderr [default: when stderr is a terminal and the work is large]
    #[arg(long, overrides_with = "no_progress")]
    pub progress: bool,

    /// Never show a progress bar
    #[arg(long, overrides_with = "progress")]
    pub no_progress: bool,

    /// How batches of close values are cut into runs: auto, tuned, seq, chunk:N, chunks:N,
    /// min:N (the library's Granularity)
    #[arg(long, value_name = "POLICY", default_value = "auto")]
    pub granularity: parkit::granularity::Granularity,

    /// Print time, inputs, cache hits and misses and peak cache bytes on stderr at the end
    #[arg(long)]
    pub stats: bool,

    /// Memory budget of the cache of computed pairs, in MB (MiB)
    #[arg(long, value_name = "MB", default_value_t = 256)]
    pub cache_mb: usize,

    /// Refuse inputs whose computation would need more memory than this, e.g. 512M or 8G
    /// [default: 90% of the available memory]
    #[arg(long, value_name = "SIZE", value_parser = memory::parse_size)]
    pub max_memory: Option<u64>,

    /// Distributed batches through Celery (feature `distributed`).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The inputs and what to print for each: shared by `fibo` and `fibo submit`.
#[derive(Debug, clap::Args)]
pub struct Select {
    /// Inputs: N, A..B (end excluded) or A..=B (end included)
    #[arg(value_name = "INPUT")]
    pub inputs: Vec<String>,

    /// Read whitespace-separated inputs from FILE ('-' is stdin; '#' starts a comment);
    /// repeatable, read after the INPUT arguments. With no inputs at all, stdin is read when it
    /// is not a terminal.
    #[arg(short, long = "input", value_name = "FILE")]
    pub input_files: Vec<String>,

    /// Line format
    #[arg(short, long, value_enum, default_value_t = Format::Value)]
    pub format: Format,

    /// Print the number of decimal digits of F(n) instead of its value
    #[arg(long, conflicts_with_all = ["last", "modulus"])]
    pub digits: bool,

    /// Print the last K digits of F(n) (leading zeros kept; all of F(n) when shorter), without
    /// computing F(n) itself
    #[arg(long, value_name = "K", value_parser = parse_last, conflicts_with = "modulus")]
    pub last: Option<u32>,

    /// Print F(n) mod M (1 <= M <= 18446744073709551615), without computing F(n) itself
    #[arg(long = "mod", value_name = "M", value_parser = parse_modulus)]
    pub modulus: Option<u64>,
}

impl Select {
    /// What each line holds.
    pub fn what(&self) -> What {
        match (self.digits, self.last, self.modulus) {
            (true, _, _) => What::Digits,
            (_, Some(k), _) => What::Last(k),
            (_, _, Some(m)) => What::Mod(m),
            _ => What::Value,
        }
    }
}

/// `fibo`'s subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Take `fibo.batch` tasks from a Celery broker (Redis) and compute them on this machine's
    /// cores, until interrupted (Ctrl-C or SIGTERM: running tasks finish first)
    Worker(distributed::WorkerArgs),
    /// Send inputs to `fibo worker`s through a Celery broker, in cost-balanced chunks, and print
    /// exactly what plain `fibo` prints for them
    Submit(distributed::SubmitArgs),
    /// Serve Fibonacci numbers over HTTP: a page for people, `GET /fib/N` and `POST /batch`
    /// for programs, `/metrics` for Prometheus; one engine and one cache for every user
    Serve(serve::ServeArgs),
}

pub(crate) fn parse_jobs(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) if n > 4096 => Err("at most 4096 threads".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("expected a whole number of threads".into()),
    }
}

pub(crate) fn parse_last(s: &str) -> Result<u32, String> {
    let k = input::parse_number(s)?;
    match k {
        0 => Err("must be at least 1".into()),
        1..=10_000_000 => Ok(k as u32),
        _ => Err("at most 10000000 digits".into()),
    }
}

pub(crate) fn parse_modulus(s: &str) -> Result<u64, String> {
    match input::parse_number(s)? {
        0 => Err("the modulus must be at least 1".into()),
        m => Ok(m),
    }
}

/// Everything that stops `fibo`, with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments or input: exit code 2, nothing on stdout.
    #[error("{0}")]
    Usage(String),
    /// A failure while running (writing the output, a thread pool): exit code 1.
    #[error("{0}")]
    Runtime(String),
    /// The reader closed stdout (`fibo 1..1000000 | head`): a quiet end, exit code 0.
    #[error("output closed")]
    Closed,
    /// Ctrl-C while waiting on workers (`fibo submit`): exit code 130.
    #[cfg_attr(not(feature = "distributed"), allow(dead_code))]
    #[error("interrupted")]
    Interrupted,
}

impl From<parkit::pipeline::PipelineError> for CliError {
    fn from(e: parkit::pipeline::PipelineError) -> Self {
        CliError::Runtime(format!("internal error: {e}"))
    }
}

impl From<input::ReadError> for CliError {
    fn from(e: input::ReadError) -> Self {
        CliError::Usage(e.to_string())
    }
}

/// Runs `fibo` with the process's arguments and returns its exit code.
pub fn main() -> ExitCode {
    // A panic is reported as one line by `report_panic`, never as a backtrace dump.
    std::panic::set_hook(Box::new(|_| {}));
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // clap's first line names the bad argument; the rest is a usage reminder.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("fibo: {}", first.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    let result = std::panic::catch_unwind(|| match &args.command {
        None => run(&args),
        Some(Command::Worker(w)) => distributed::worker(w),
        Some(Command::Submit(s)) => distributed::submit(s),
        Some(Command::Serve(s)) => serve::serve(s),
    });
    match result {
        Ok(Ok(()) | Err(CliError::Closed)) => ExitCode::SUCCESS,
        Ok(Err(CliError::Usage(m))) => {
            eprintln!("fibo: {m}");
            ExitCode::from(2)
        }
        Ok(Err(CliError::Interrupted)) => {
            eprintln!("fibo: interrupted; the tasks still out were withdrawn");
            ExitCode::from(130)
        }
        Ok(Err(CliError::Runtime(m))) => {
            eprintln!("fibo: {m}");
            ExitCode::from(1)
        }
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            eprintln!("fibo: internal error: {msg}");
            ExitCode::from(1)
        }
    }
}

/// Reads and validates every input before anything is computed.
pub(crate) fn collect_inputs(args: &Select) -> Result<Vec<(Item, Origin)>, CliError> {
    let mut items = input::parse_args(&args.inputs).map_err(|e| CliError::Usage(e.to_string()))?;
    let mut files = args.input_files.clone();
    if args.inputs.is_empty() && files.is_empty() && !io::stdin().is_terminal() {
        files.push("-".into());
    }
    for f in &files {
        items.extend(input::read_file(f)?);
    }
    if items.is_empty() {
        let what = if args.inputs.is_empty() && files.is_empty() {
            "no input given"
        } else {
            "the inputs hold no number"
        };
        return Err(CliError::Usage(format!(
            "{what}; try 'fibo 10', 'fibo 1..=100' or 'fibo -i numbers.txt' (see 'fibo --help')"
        )));
    }
    Ok(items)
}

/// Refuses, up front, an input whose computation would not fit in `limit` bytes.
pub(crate) fn check_memory(
    items: &[(Item, Origin)],
    what: What,
    limit: u64,
) -> Result<(), CliError> {
    if !what.needs_value() {
        return Ok(());
    }
    let Some((item, origin)) = items.iter().max_by_key(|(i, _)| i.max()) else {
        return Ok(());
    };
    let n = item.max();
    let need = fib::working_bytes(n, true);
    if need > limit {
        return Err(CliError::Usage(format!(
            "F({n}) at {origin} needs about {} for its value alone and about {} while computing \
             and printing it, over the memory limit of {} (set with --max-memory); \
             --digits, --last K and --mod M work for any n",
            memory::human(fib::value_bytes(n)),
            memory::human(need),
            memory::human(limit),
        )));
    }
    Ok(())
}

/// Cuts the inputs, in order, into blocks of about `target_bytes` of output (at most
/// `max_count` values), lazily: a range of a billion values is never materialised.
struct Blocks {
    items: std::vec::IntoIter<Item>,
    current: std::ops::RangeInclusive<u64>,
    what: What,
    target_bytes: u64,
    max_count: usize,
}

impl Blocks {
    fn new(items: Vec<Item>, what: What, target_bytes: u64, max_count: usize) -> Self {
        #[allow(clippy::reversed_empty_ranges)] // an exhausted start
        let current = 1..=0;
        Blocks {
            items: items.into_iter(),
            current,
            what,
            target_bytes,
            max_count,
        }
    }

    fn next_n(&mut self) -> Option<u64> {
        loop {
            if let Some(n) = self.current.next() {
                return Some(n);
            }
            self.current = self.items.next()?.iter();
        }
    }
}

impl Iterator for Blocks {
    /// A block of input values, printed together.
    type Item = Vec<u64>;

    fn next(&mut self) -> Option<Vec<u64>> {
        let mut ns = Vec::new();
        let mut bytes = 0u64;
        while let Some(n) = self.next_n() {
            ns.push(n);
            bytes += self.what.line_bytes(n);
            if ns.len() >= self.max_count || bytes >= self.target_bytes {
                break;
            }
        }
        (!ns.is_empty()).then_some(ns)
    }
}

fn run(args: &Args) -> Result<(), CliError> {
    let started = Instant::now();
    let what = args.select.what();
    let items = collect_inputs(&args.select)?;
    let limit = args.max_memory.unwrap_or_else(memory::default_limit);
    check_memory(&items, what, limit)?;

    let engine = Fibonacci::builder()
        .threads(args.jobs.unwrap_or(0))
        .cache_bytes(args.cache_mb.saturating_mul(1 << 20))
        .granularity(args.granularity)
        .build()
        .map_err(|e| CliError::Runtime(e.to_string()))?;
    let engine = Arc::new(engine);
    let threads = engine.threads();
    let total: u64 = items
        .iter()
        .fold(0u64, |acc, (i, _)| acc.saturating_add(i.len()));
    let max_n = items.iter().map(|(i, _)| i.max()).max().unwrap_or(0);
    let items: Vec<Item> = items.into_iter().map(|(i, _)| i).collect();

    let progress = progress_bar(args, total, what, max_n);
    let printer = Printer {
        format: args.select.format,
        what,
        engine: args.engine,
    };
    let max_count = if what.needs_value() { 2048 } else { 8192 };
    let blocks = Blocks::new(items, what, 4 << 20, max_count);
    // Task decomposition: the blocks go through a "compute" stage of one thread per core (the
    // work itself runs on the engine's rayon pool), and come back in input order to this
    // thread, the writer. At most 4 blocks per thread are in flight, each about 4 MB of output
    // or less (or one value), so memory stays bounded whatever the input.
    let stage_engine = Arc::clone(&engine);
    let results = Pipeline::from(blocks)
        .stage("compute", threads, move |ns: Vec<u64>| {
            let text = stage_engine
                .pool()
                .install(|| printer.render(&stage_engine, &ns));
            (text, ns.len() as u64)
        })
        .capacity(threads)
        .window(4 * threads);
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut written = Ok(());
    // Dropping the iterator early (a write error) stops every stage.
    for block in results {
        let (text, len) = match block {
            Ok(b) => b,
            Err(e) => {
                written = Err(e.into());
                break;
            }
        };
        if let Err(e) = out.write_all(&text) {
            written = Err(write_error(e));
            break;
        }
        progress.inc(len);
    }
    let written = written.and_then(|()| out.flush().map_err(write_error));
    progress.finish_and_clear();
    written?;
    if args.stats {
        let s = engine.cache_stats();
        eprintln!(
            "fibo: {total} inputs in {:.3} s on {threads} threads; cache: {} hits, {} misses, \
             {} evictions, {} entries, peak {}",
            started.elapsed().as_secs_f64(),
            s.hits,
            s.misses,
            s.evictions,
            s.entries,
            memory::human(s.peak_bytes as u64),
        );
    }
    Ok(())
}

/// A closed pipe is a quiet end; any other write error is reported.
pub(crate) fn write_error(e: io::Error) -> CliError {
    if e.kind() == io::ErrorKind::BrokenPipe {
        CliError::Closed
    } else {
        CliError::Runtime(format!("cannot write the output: {e}"))
    }
}

fn progress_bar(args: &Args, total: u64, what: What, max_n: u64) -> ProgressBar {
    let large = total >= 100_000 || (what.needs_value() && max_n >= 20_000_000);
    let show = !args.no_progress && (args.progress || (io::stderr().is_terminal() && large));
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {human_pos}/{human_len} ({per_sec}, eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}
