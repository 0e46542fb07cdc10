//! `fibo`: exact Fibonacci numbers for whole batches of inputs, on every core.
//!
//! The binary, beside the library it uses: arguments, input collection and validation, the
//! memory check and the streaming run (a parkit pipeline) here; input parsing, output formats,
//! the memory model, the Celery worker and client and the web service in the modules beside
//! this file. No arithmetic: numbers come from `parkit::fib`.
#![forbid(unsafe_code)]

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
use std::task::Poll;
use std::time::{Duration, Instant};

use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use parkit::fib::{self, Fibonacci};
use parkit::pipeline::Pipeline;

use input::{Inputs, Item, Origin};
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
    #[arg(long, value_name = "POLICY", default_value = "auto", value_parser = parse_granularity)]
    pub granularity: parkit::granularity::Granularity,

    /// Print time, inputs, cache hits and misses and peak cache bytes on stderr at the end
    #[arg(long)]
    pub stats: bool,

    /// Memory budget of the cache of computed pairs, in MB (MiB), counted in --max-memory
    /// [default: what the memory limit leaves, up to 256]
    #[arg(long, value_name = "MB")]
    pub cache_mb: Option<usize>,

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
    /// Take fibo.batch tasks from a Celery broker (Redis) and compute them on this machine's
    /// cores, until interrupted (Ctrl-C or SIGTERM: running tasks finish first)
    Worker(distributed::WorkerArgs),
    /// Send inputs to fibo workers through a Celery broker, in cost-balanced chunks, and print
    /// exactly what plain fibo prints for them
    Submit(distributed::SubmitArgs),
    /// Serve Fibonacci numbers over HTTP: a page for people, GET /fib/N and POST /batch for
    /// programs, /metrics for Prometheus; one engine and one cache for every user
    Serve(serve::ServeArgs),
}

pub(crate) fn parse_jobs(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) if n > MAX_JOBS => Err(format!("at most {MAX_JOBS} threads")),
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

/// `--granularity`: the library's policy names, with N written as any input number (`1e3`,
/// `1_000`), and a reason when N is not one.
fn parse_granularity(s: &str) -> Result<parkit::granularity::Granularity, String> {
    use parkit::granularity::Granularity;
    let known = |e: parkit::granularity::ParseGranularityError| e.to_string();
    let Some((name, arg)) = s.trim().split_once(':') else {
        return s.parse().map_err(known);
    };
    let make: fn(usize) -> Granularity = match name.trim().to_ascii_lowercase().as_str() {
        "min" => Granularity::MinLen,
        "chunk" => Granularity::ChunkSize,
        "chunks" => Granularity::Chunks,
        _ => return s.parse().map_err(known),
    };
    let n = input::parse_number(arg.trim())
        .map_err(|why| format!("'{}' in '{}': {why}", input::shown(arg), input::shown(s)))?;
    let n = usize::try_from(n).map_err(|_| {
        format!(
            "'{}' in '{}' is more than this machine can count ({})",
            input::shown(arg),
            input::shown(s),
            usize::MAX
        )
    })?;
    Ok(make(n))
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

/// Writes `fibo: <message>` on stderr and ignores a failure: `eprintln!` panics when stderr
/// cannot be written (`2>/dev/full`), and a message about an error must not become another.
pub(crate) fn say(message: impl std::fmt::Display) {
    let _ = writeln!(io::stderr().lock(), "fibo: {message}");
}

/// Control characters of a message escaped, so nothing raw reaches the terminal.
fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// The one-line message for a clap error: clap's first line names the bad argument (the rest is
/// a usage reminder), plus the valid values where clap lists them.
fn clap_message(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("invalid arguments");
    let mut message = first.trim_start_matches("error: ").to_owned();
    if let Some(values) = lines
        .map(str::trim)
        .find(|l| l.starts_with("[possible values:"))
    {
        message.push(' ');
        message.push_str(values);
    }
    escaped(&message)
}

/// A token such as `-1..3` that clap took for an option: the input error it really is, naming
/// the token and its place among the inputs (found by parsing again with a stand-in).
fn negative_input(e: &clap::Error, argv: &[std::ffi::OsString]) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let Some(ContextValue::String(token)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let rest = token.strip_prefix('-')?;
    if !rest.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    // clap names the option it read (`-1` of `-1..3`): the token is the argument it starts.
    const STAND_IN: &str = "fibo-stand-in-for-a-bad-token";
    let at = argv
        .iter()
        .skip(1)
        .position(|a| a.to_str().is_some_and(|a| a.starts_with(token.as_str())))?
        + 1;
    let token = argv[at].to_str()?;
    let mut again = argv.to_vec();
    again[at] = STAND_IN.into();
    let args = Args::try_parse_from(&again).ok()?;
    let place = args.select.inputs.iter().position(|t| t == STAND_IN)? + 1;
    let reason = input::parse_token(token).err()?;
    Some(input::InputError::new(token, Origin::Arg(place), reason).to_string())
}

/// Runs `fibo` with the process's arguments and returns its exit code.
fn main() -> ExitCode {
    // A panic is reported as one line by `report_panic`, never as a backtrace dump.
    std::panic::set_hook(Box::new(|_| {}));
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let args = match Args::try_parse_from(&argv) {
        Ok(a) => a,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                // Help that could not be written is a failure (`fibo --help >/dev/full`).
                return match e.print().and_then(|()| io::stdout().flush()) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(err) => {
                        say(format_args!("cannot write the output: {err}"));
                        ExitCode::from(1)
                    }
                };
            }
            say(negative_input(&e, &argv).unwrap_or_else(|| clap_message(&e)));
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
            say(m);
            ExitCode::from(2)
        }
        Ok(Err(CliError::Interrupted)) => {
            say("interrupted; the tasks still out were withdrawn");
            ExitCode::from(130)
        }
        Ok(Err(CliError::Runtime(m))) => {
            say(m);
            ExitCode::from(1)
        }
        Err(p) => {
            let msg = parkit::pipeline::panic_message(&*p).unwrap_or_default();
            say(format_args!("internal error: {msg}"));
            ExitCode::from(1)
        }
    }
}

/// Reads and validates every input before anything is computed.
pub(crate) fn collect_inputs(args: &Select) -> Result<Inputs, CliError> {
    let mut items = input::parse_args(&args.inputs).map_err(|e| CliError::Usage(e.to_string()))?;
    let mut files = args.input_files.clone();
    if args.inputs.is_empty() && files.is_empty() && !io::stdin().is_terminal() {
        files.push("-".into());
    }
    for f in &files {
        input::read_file_into(f, &mut items)?;
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

/// Refuses, up front, an input whose value alone would not fit in `limit` bytes (the whole
/// run is then laid out under the limit by [`memory::plan`]).
pub(crate) fn check_memory(items: &Inputs, what: What, limit: u64) -> Result<(), CliError> {
    if !what.needs_value() {
        return Ok(());
    }
    let Some((n, origin)) = items.max() else {
        return Ok(());
    };
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

/// Most threads `-j` (or `RAYON_NUM_THREADS`) may ask for: past this, threads only add memory
/// and switching, whatever the machine.
pub const MAX_JOBS: usize = 256;

/// The engine's thread count: `-j`, else `RAYON_NUM_THREADS` (checked like `-j`), else one per
/// core.
fn thread_count(jobs: Option<usize>) -> Result<usize, CliError> {
    if let Some(j) = jobs {
        return Ok(j);
    }
    if let Some(v) = std::env::var_os("RAYON_NUM_THREADS") {
        let text = v.to_string_lossy();
        return match parse_jobs(text.trim()) {
            Ok(n) => Ok(n),
            Err(why) => Err(CliError::Usage(format!(
                "RAYON_NUM_THREADS='{}': {why} (or set -j N)",
                input::shown(&text)
            ))),
        };
    }
    Ok(std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_JOBS)))
}

/// Cuts the inputs, in order, into blocks of about `target_bytes` of output (at most
/// `max_count` values), lazily: a range of a billion values is never materialised. A value
/// whose line would take a block past the target starts the next block, so a big value never
/// holds small ones back.
struct Blocks<I> {
    items: I,
    current: std::ops::RangeInclusive<u64>,
    held: Option<u64>,
    what: What,
    target_bytes: u64,
    max_count: usize,
}

impl<I: Iterator<Item = Item>> Blocks<I> {
    fn new(items: I, what: What, target_bytes: u64, max_count: usize) -> Self {
        #[allow(clippy::reversed_empty_ranges)] // an exhausted start
        let current = 1..=0;
        Blocks {
            items,
            current,
            held: None,
            what,
            target_bytes,
            max_count,
        }
    }

    fn next_n(&mut self) -> Option<u64> {
        if let Some(n) = self.held.take() {
            return Some(n);
        }
        loop {
            if let Some(n) = self.current.next() {
                return Some(n);
            }
            self.current = self.items.next()?.iter();
        }
    }
}

impl<I: Iterator<Item = Item>> Iterator for Blocks<I> {
    /// A block of input values, printed together.
    type Item = Vec<u64>;

    fn next(&mut self) -> Option<Vec<u64>> {
        let mut ns = Vec::new();
        let mut bytes = 0u64;
        while let Some(n) = self.next_n() {
            let line = self.what.line_bytes(n);
            if !ns.is_empty() && bytes + line > self.target_bytes {
                self.held = Some(n);
                break;
            }
            ns.push(n);
            bytes += line;
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
    let threads = thread_count(args.jobs)?;
    let cache = args.cache_mb.map(|mb| (mb as u64).saturating_mul(1 << 20));
    let plan =
        memory::plan(&items, what, args.engine, threads, cache, limit).map_err(CliError::Usage)?;

    let threads = plan.threads;
    let engine = Fibonacci::builder()
        .threads(threads)
        .cache_bytes(usize::try_from(plan.cache_bytes).unwrap_or(usize::MAX))
        .granularity(args.granularity)
        .build()
        .map_err(|e| CliError::Runtime(e.to_string()))?;
    let engine = Arc::new(engine);
    let total = items.count();
    let max_n = items.max().map_or(0, |(n, _)| n);

    let progress = progress_bar(args, total, what, max_n);
    let printer = Printer {
        format: args.select.format,
        what,
        engine: args.engine,
    };
    let max_count = if what.needs_value() { 2048 } else { 8192 };
    let blocks = Blocks::new(items.into_items(), what, plan.block_bytes, max_count);
    // Task decomposition: the blocks go through a "compute" stage (the work itself runs on the
    // engine's rayon pool), and come back in input order to this thread, the writer. The plan
    // bounds the blocks in flight by bytes and by the memory limit: big values go fewer at a
    // time, down to one.
    let stage_engine = Arc::clone(&engine);
    // Up to one block of written lines of full values is kept for the next ones (counted in
    // the memory plan for full values only; other outputs have no lines to reuse).
    let kept = if what.needs_value() {
        plan.block_bytes
    } else {
        0
    };
    let buffers = Arc::new(output::LineBuffers::new(
        usize::try_from(kept).unwrap_or(usize::MAX),
    ));
    let stage_buffers = Arc::clone(&buffers);
    let mut results = Pipeline::from(blocks)
        .stage("compute", plan.workers, move |ns: Vec<u64>| {
            let parts = stage_engine
                .pool()
                .install(|| printer.render_parts(&stage_engine, &ns, Some(&stage_buffers)));
            (parts, ns.len() as u64)
        })
        .capacity(plan.workers)
        .window(plan.window)
        .into_iter();
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut written = Ok(());
    // Dropping the iterator early (a write error) stops every stage.
    loop {
        let block = match results.try_next() {
            Poll::Ready(block) => block,
            // The next block is not ready: what is ready goes out now, so a reader (`| head`,
            // a person) sees each line as soon as it and those before it are computed.
            Poll::Pending => {
                if let Err(e) = out.flush() {
                    written = Err(write_error(e));
                    break;
                }
                match wait_while_read(&mut results) {
                    Some(block) => block,
                    None => {
                        written = Err(CliError::Closed);
                        break;
                    }
                }
            }
        };
        let Some(block) = block else { break };
        let (parts, len) = match block {
            Ok(b) => b,
            Err(e) => {
                written = Err(e.into());
                break;
            }
        };
        // Each formatted line goes out as it is (no copy into one buffer first), then back to
        // the buffers for the next lines.
        let sent = parts.into_iter().try_for_each(|part| {
            out.write_all(&part)?;
            buffers.give(part);
            Ok(())
        });
        if let Err(e) = sent {
            written = Err(write_error(e));
            break;
        }
        progress.inc(len);
    }
    drop(results);
    let written = written.and_then(|()| out.flush().map_err(write_error));
    progress.finish_and_clear();
    written?;
    if args.stats {
        let s = engine.cache_stats();
        // Statistics asked for and not written are a failure (exit 1), without a panic.
        writeln!(
            io::stderr().lock(),
            "fibo: {total} inputs in {:.3} s on {threads} threads; cache: {} hits, {} misses, \
             {} evictions, {} entries, peak {}",
            started.elapsed().as_secs_f64(),
            s.hits,
            s.misses,
            s.evictions,
            s.entries,
            memory::human(s.peak_bytes as u64),
        )
        .map_err(|e| CliError::Runtime(format!("cannot write the statistics: {e}")))?;
    }
    Ok(())
}

/// Waits for the next block, looking now and then whether the reader of stdout went away
/// (`| head`): `None` then, so fibo ends with its reader instead of at its next write, which
/// could be a big value's seconds away.
fn wait_while_read<T>(
    results: &mut parkit::pipeline::IntoIter<T>,
) -> Option<Option<Result<T, parkit::pipeline::PipelineError>>> {
    loop {
        match results.next_timeout(Duration::from_millis(100)) {
            Poll::Ready(block) => return Some(block),
            Poll::Pending if stdout_closed() => return None,
            Poll::Pending => {}
        }
    }
}

/// Whether stdout is a pipe whose reader has gone, found without writing (a zero-timeout
/// `poll`, which reports an error on such a pipe); `false` where it cannot tell.
#[cfg(unix)]
fn stdout_closed() -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let stdout = io::stdout();
    let mut fds = [PollFd::new(&stdout, PollFlags::empty())];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(poll(&mut fds, Some(&now)), Ok(n) if n > 0)
        && fds[0].revents().intersects(PollFlags::ERR | PollFlags::HUP)
}

#[cfg(not(unix))]
fn stdout_closed() -> bool {
    false
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
