//! `fibo submit`: the inputs cut into chunks ([`plan`]), each sent as a `fibo.batch` task,
//! and the results gathered in rounds and printed in input order ([`gather`]).
//!
//! A round sends what the memory budget admits, polls the oldest open chunks, sends the late
//! ones again, prints what is ready and deletes its results. The decisions (what to send and
//! to poll next, whether a chunk is late, how long to wait) are small methods of [`Round`]
//! and [`Chunk`] that take the clock as an argument, so they are tested without Redis.

use std::collections::VecDeque;
use std::io::{self, IsTerminal, Write};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use celery::backend::{TaskMeta, TaskState};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use parkit::fib::{self, Fibonacci};
use parkit::schedule;

use super::super::distributed::{SubmitArgs, redact};
use super::super::output::{Engine, Printer, What};
use super::super::{CliError, collect_inputs, memory, write_error};
use super::redis::{Conn, Links, connect, delete, enqueue, meta_key, patiently, withdraw};
use super::task::{MAX_RESULT_BYTES, Output, batch_message, failure_message, read_meta};
use super::{init_logging, runtime, watch_signals};

/// Most inputs one `submit` expands (each is a u64 in a message and a line held until printed).
const MAX_SUBMIT_INPUTS: u64 = 10_000_000;

/// `submit`'s chunks hold about this much estimated work (nanoseconds on one core) by default:
/// a task's trip through Redis costs about a millisecond.
const CHUNK_WORK_NS: f64 = 20e6;

/// Estimated nanoseconds per byte of result: written as digits, JSON-encoded, stored, fetched
/// and decoded (`100000..102000`, 42 MB: about 0.1 s on one core).
const BYTE_NS: f64 = 2.0;

/// `submit` cuts chunks further so that none carries more than this many bytes of results.
const CHUNK_BYTES: u64 = 16 << 20;

/// Chunks polled per round at most, oldest first (where results appear)...
const WINDOW: usize = 64;

/// ...and their result bytes at most (one chunk at least).
const WINDOW_BYTES: u64 = 256 << 20;

/// Most chunks sent and unanswered at once.
const MAX_OPEN: usize = 4096;

/// The wait after a round that brings nothing starts here and doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(5);

/// The longest wait between rounds.
const MAX_PAUSE: Duration = Duration::from_millis(200);

/// Runs `fibo submit`.
pub fn submit(args: &SubmitArgs) -> Result<(), CliError> {
    init_logging();
    let what = args.select.what();
    let items = collect_inputs(&args.select)?;
    let limit = args.max_memory.unwrap_or_else(memory::default_limit);
    super::super::check_memory(&items, what, limit)?;
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
    let Some(output) = Output::of(what) else {
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
    };
    let Plan {
        ranges,
        costs,
        bytes,
    } = plan(&ns, what, args.chunk);
    runtime()?.block_on(async {
        let interrupted = watch_signals(|| {})?;
        let backend_url = args.redis.backend_url();
        let timeout = Duration::from_secs(args.redis.connect_timeout);
        let Links { broker, results } = connect(&args.redis.broker, backend_url, timeout).await?;
        let mut chunks: Vec<Chunk> = ranges.into_iter().map(Chunk::new).collect();
        let mut g = Gather {
            args,
            ns: &ns,
            output,
            printer,
            broker,
            results,
            costs,
            bytes,
            // 16 chunks of the largest size in flight, or a quarter of --max-memory if less.
            budget: (limit / 4).clamp(32 << 20, 256 << 20),
            // A signal is noted, not acted on mid-send: gather stops at its next round, so
            // every copy already sent is known and can be withdrawn.
            interrupted,
        };
        let bar = progress_bar(args, chunks.len() as u64);
        let result = gather(&mut g, &mut chunks, &bar).await;
        bar.finish_and_clear();
        g.clean_up(&chunks).await;
        result
    })
}

/// How [`submit`] cuts the inputs into tasks: contiguous ranges of the inputs, in order, and
/// each chunk's estimated work (nanoseconds on one core) and result bytes.
#[derive(Debug, Default, PartialEq)]
struct Plan {
    ranges: Vec<Range<usize>>,
    costs: Vec<f64>,
    bytes: Vec<u64>,
}

/// Cuts `ns` into chunks of about equal estimated work for printing `what`: `chunk` inputs
/// per task on average (`--chunk`), or by default about [`CHUNK_WORK_NS`] of work each,
/// enough to pay for a task's trip through Redis; then any chunk whose results would pass
/// [`CHUNK_BYTES`] is cut further ([`cap_bytes`]).
fn plan(ns: &[u64], what: What, chunk: Option<u64>) -> Plan {
    if ns.is_empty() {
        return Plan::default();
    }
    let mut costs = match what {
        What::Value => fib::sequence_costs(ns),
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
    let parts = match chunk {
        Some(n) => ns.len().div_ceil(n as usize),
        None => ((costs.iter().sum::<f64>() / CHUNK_WORK_NS).ceil() as usize).clamp(1, ns.len()),
    };
    let ranges = cap_bytes(schedule::split_contiguous(&costs, parts), &bytes);
    Plan {
        costs: ranges
            .iter()
            .map(|r| costs[r.clone()].iter().sum())
            .collect(),
        bytes: ranges
            .iter()
            .map(|r| bytes[r.clone()].iter().sum())
            .collect(),
        ranges,
    }
}

/// Cuts any range whose results would pass [`CHUNK_BYTES`] into pieces under it (or single
/// inputs), so no task's result outgrows what Redis and the worker's memory hold.
fn cap_bytes(ranges: Vec<Range<usize>>, bytes: &[u64]) -> Vec<Range<usize>> {
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
#[derive(Debug)]
struct Chunk {
    range: Range<usize>,
    /// Task ids of every copy sent; the first result wins.
    ids: Vec<String>,
    /// When the latest copy was sent.
    sent: Instant,
    /// When a worker was first seen working on the latest copy.
    started: Option<Instant>,
    result: Option<Vec<String>>,
    printed: bool,
}

/// What the stored states of a chunk's copies say ([`Chunk::answer`]).
#[derive(Debug, PartialEq)]
enum Answer {
    /// A copy's result: which copy (its index in `ids`) and its lines.
    Done(usize, Vec<String>),
    /// No result yet; `started`: a worker is newly seen on the latest copy.
    Waiting { started: bool },
}

/// An answer that ends the submit.
#[derive(Debug, PartialEq)]
enum Bad {
    /// A worker failed, with this message.
    Failed(String),
    /// A worker returned `got` lines (task `id`), not one per input of the chunk.
    Count { got: usize, id: String },
}

impl Chunk {
    /// A chunk not sent yet.
    fn new(range: Range<usize>) -> Chunk {
        Chunk {
            range,
            ids: Vec::new(),
            sent: Instant::now(),
            started: None,
            result: None,
            printed: false,
        }
    }

    /// Whether it still waits for a result: neither answered nor printed (a printed chunk
    /// has given up its result).
    fn unanswered(&self) -> bool {
        self.result.is_none() && !self.printed
    }

    /// Reads the stored states of its copies (`metas`, in sending order; `None`: nothing
    /// stored yet). The first success wins; a failure of any copy, or a success whose line
    /// count is not the chunk's, ends the submit. A start counts on the latest copy only (an
    /// earlier one may be a dead worker's), and once.
    fn answer(&self, metas: Vec<Option<TaskMeta>>) -> Result<Answer, Bad> {
        let copies = metas.len();
        let mut found = None;
        let mut started = false;
        for (k, meta) in metas.into_iter().enumerate() {
            let Some(meta) = meta else { continue };
            match meta.status {
                TaskState::Success if found.is_none() => {
                    let lines: Vec<String> = meta
                        .result
                        .and_then(|v| serde_json::from_value(v).ok())
                        .unwrap_or_default();
                    if lines.len() != self.range.len() {
                        return Err(Bad::Count {
                            got: lines.len(),
                            id: meta.task_id,
                        });
                    }
                    found = Some((k, lines));
                }
                TaskState::Failure => return Err(Bad::Failed(failure_message(&meta))),
                TaskState::Started if k + 1 == copies && self.started.is_none() => started = true,
                _ => {}
            }
        }
        Ok(match found {
            Some((winner, lines)) => Answer::Done(winner, lines),
            None => Answer::Waiting { started },
        })
    }

    /// Keeps the winning copy's lines; returns the ids of its other copies, no longer wanted.
    fn done(&mut self, winner: usize, lines: Vec<String>) -> Vec<String> {
        self.result = Some(lines);
        let mut others = self.ids.clone();
        others.remove(winner);
        others
    }

    /// Whether the latest copy is late at `now`: a worker has been on it for `deadline` (it
    /// died, or the timeout is shorter than the chunk), or it was never seen started, was
    /// sent `deadline` ago and the workers look `stalled` ([`Round::stalled`]: a worker died
    /// between taking it and starting it, or none is running).
    fn late(&self, deadline: Duration, stalled: bool, now: Instant) -> bool {
        match self.started {
            Some(t) => now.saturating_duration_since(t) > deadline,
            None => now.saturating_duration_since(self.sent) > deadline && stalled,
        }
    }

    /// Copies sent so far.
    fn tries(&self) -> u32 {
        self.ids.len() as u32
    }
}

/// Where the gathering stands between rounds. Chunks are sent in input order while their
/// results fit in the budget (they are printed, and their keys deleted, in that order), so
/// memory here and in Redis stays bounded whatever the batch.
#[derive(Debug)]
struct Round {
    /// The first chunk not sent yet.
    next: usize,
    /// Chunks printed: the first `printed`.
    printed: usize,
    /// Result bytes of the chunks sent and not printed.
    in_flight: u64,
    /// The sent, unanswered chunks, in sending order.
    open: VecDeque<usize>,
    /// When a result last came in or a worker was last seen starting a chunk.
    activity: Instant,
    /// Since when the queue has been seen empty.
    empty_since: Option<Instant>,
    /// The wait after the next round that brings nothing.
    pause: Duration,
}

impl Round {
    /// Nothing sent yet, at `now`.
    fn new(now: Instant) -> Round {
        Round {
            next: 0,
            printed: 0,
            in_flight: 0,
            open: VecDeque::new(),
            activity: now,
            empty_since: None,
            pause: FIRST_PAUSE,
        }
    }

    /// The chunks to send now: taken in input order while their results fit in `budget`
    /// bytes beside those in flight (one at least when none is) and fewer than [`MAX_OPEN`]
    /// are open; returned most expensive first (`costs`), the order the workers take the
    /// queue in, and counted as open.
    fn admit(&mut self, bytes: &[u64], costs: &[f64], budget: u64) -> Vec<usize> {
        let mut batch = Vec::new();
        while self.next < bytes.len()
            && self.open.len() + batch.len() < MAX_OPEN
            && (self.in_flight == 0 || self.in_flight + bytes[self.next] <= budget)
        {
            self.in_flight += bytes[self.next];
            batch.push(self.next);
            self.next += 1;
        }
        batch.sort_by(|&a, &b| costs[b].total_cmp(&costs[a]));
        self.open.extend(&batch);
        batch
    }

    /// Notes the queue's length, seen at `now`.
    fn saw_queue(&mut self, len: u64, now: Instant) {
        if len == 0 {
            self.empty_since.get_or_insert(now);
        } else {
            self.empty_since = None;
        }
    }

    /// Notes a sign of life at `now`: a result, or a worker starting a chunk.
    fn active(&mut self, now: Instant) {
        self.activity = now;
    }

    /// Whether the workers look stalled at `now`: no sign of life for `deadline`, or the
    /// queue empty that long. A long queue that is moving is not a stall.
    fn stalled(&self, deadline: Duration, now: Instant) -> bool {
        now.saturating_duration_since(self.activity) > deadline
            || self
                .empty_since
                .is_some_and(|t| now.saturating_duration_since(t) > deadline)
    }

    /// What to poll this round: the open chunks still unanswered, oldest first, up to
    /// [`WINDOW`] of them and [`WINDOW_BYTES`] of results (one at least). Answered and
    /// printed chunks leave `open` here: a printed one has given up its result, and would
    /// otherwise look unanswered, then late, and be sent again.
    fn window(&mut self, chunks: &[Chunk], bytes: &[u64]) -> Vec<usize> {
        self.open.retain(|&i| chunks[i].unanswered());
        let mut window = Vec::new();
        let mut held = 0u64;
        for &i in self.open.iter().take(WINDOW) {
            if !window.is_empty() && held + bytes[i] > WINDOW_BYTES {
                break;
            }
            held += bytes[i];
            window.push(i);
        }
        window
    }

    /// The next chunk in input order with its lines, if its result is in: it is then
    /// printed, and its bytes are no longer in flight.
    fn print_next<'c>(
        &mut self,
        chunks: &'c mut [Chunk],
        bytes: &[u64],
    ) -> Option<(&'c Chunk, Vec<String>)> {
        let c = chunks.get_mut(self.printed)?;
        let lines = c.result.take()?;
        c.printed = true;
        self.in_flight -= bytes[self.printed];
        self.printed += 1;
        Some((c, lines))
    }

    /// How long to wait before the next round: not at all after one that brought results
    /// (more are coming), else a pause that doubles from [`FIRST_PAUSE`] to [`MAX_PAUSE`].
    fn pause_after(&mut self, progress: bool) -> Option<Duration> {
        if progress {
            self.pause = FIRST_PAUSE;
            return None;
        }
        let pause = self.pause;
        self.pause = (pause * 2).min(MAX_PAUSE);
        Some(pause)
    }
}

/// Everything `gather` needs besides the chunks.
struct Gather<'a> {
    args: &'a SubmitArgs,
    ns: &'a [u64],
    output: Output,
    printer: Printer,
    /// To the broker (queue length, withdrawals) and to the backend (results).
    broker: Conn,
    results: Conn,
    /// Each chunk's estimated work and result bytes, and the most result bytes out at once.
    costs: Vec<f64>,
    bytes: Vec<u64>,
    budget: u64,
    /// Set by SIGINT or SIGTERM.
    interrupted: Arc<AtomicBool>,
}

impl Gather<'_> {
    fn send_error(&self, e: &dyn std::fmt::Display) -> CliError {
        CliError::Runtime(format!(
            "cannot send to {}: {e}",
            redact(&self.args.redis.broker)
        ))
    }

    /// Sends a copy of each chunk in `order`, in that order (the workers take the queue in
    /// it), 64 messages to a command. Transient broker errors are retried for up to
    /// [`BROKER_GRACE`], as every other Redis command here.
    async fn send(&self, chunks: &mut [Chunk], order: &[usize]) -> Result<(), CliError> {
        for group in order.chunks(64) {
            let mut messages = Vec::with_capacity(group.len());
            let mut ids = Vec::with_capacity(group.len());
            for &i in group {
                let ns = self.ns[chunks[i].range.clone()].to_vec();
                let (id, message) = batch_message(
                    ns,
                    self.output.format,
                    self.output.last,
                    &self.args.redis.queue,
                )
                .map_err(|e| self.send_error(&e))?;
                ids.push(id);
                messages.push(message);
            }
            enqueue(&self.broker, &self.args.redis.queue, &messages)
                .await
                .map_err(|e| self.send_error(&e))?;
            for (&i, id) in group.iter().zip(ids) {
                chunks[i].ids.push(id);
                chunks[i].sent = Instant::now();
                chunks[i].started = None;
            }
        }
        Ok(())
    }

    fn inputs(&self, c: &Chunk) -> String {
        let (first, last) = (self.ns[c.range.start], self.ns[c.range.end - 1]);
        if c.range.len() == 1 {
            format!("F({first})")
        } else {
            format!("the inputs from F({first}) to F({last})")
        }
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

    /// The stored states of the chunks in `window`, each chunk's copies in sending order:
    /// one MGET.
    async fn poll(
        &self,
        chunks: &[Chunk],
        window: &[usize],
    ) -> Result<Vec<Vec<Option<TaskMeta>>>, CliError> {
        let keys: Vec<String> = window
            .iter()
            .flat_map(|&i| chunks[i].ids.iter().map(|id| meta_key(id)))
            .collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let raw: Vec<Option<String>> = patiently(&self.results, redis::cmd("MGET").arg(&keys))
            .await
            .map_err(|e| CliError::Runtime(format!("cannot read results: {e}")))?;
        let mut raw = raw.into_iter();
        Ok(window
            .iter()
            .map(|&i| {
                raw.by_ref()
                    .take(chunks[i].ids.len())
                    .map(read_meta)
                    .collect()
            })
            .collect())
    }

    /// The error for an answer that ends the submit.
    fn bad(&self, c: &Chunk, bad: Bad) -> CliError {
        CliError::Runtime(match bad {
            Bad::Failed(why) => format!("a worker failed on {}: {why}", self.inputs(c)),
            Bad::Count { got, id } => format!(
                "a worker returned {got} results for {} inputs (task {id})",
                c.range.len()
            ),
        })
    }

    /// A late chunk: an error once it has had all its tries, else a note that it is sent
    /// again.
    fn late(&self, c: &Chunk, bar: &ProgressBar) -> Result<(), CliError> {
        let tries = c.tries();
        if tries > self.args.retries {
            return Err(CliError::Runtime(format!(
                "no result for {} after {tries} tries of {} s each; is a `fibo worker` \
                 taking queue '{}' at {}?",
                self.inputs(c),
                self.args.timeout,
                self.args.redis.queue,
                redact(&self.args.redis.broker)
            )));
        }
        bar.suspend(|| {
            note!(
                "fibo: no result for {} in {} s; sending them again (try {} of {})",
                self.inputs(c),
                self.args.timeout,
                tries + 1,
                self.args.retries + 1
            );
        });
        Ok(())
    }

    /// Withdraws what is still out, and leaves no result behind in the backend: copies still
    /// running see the withdrawal and store nothing (see the worker's `handle`).
    async fn clean_up(&mut self, chunks: &[Chunk]) {
        let open: Vec<String> = chunks
            .iter()
            .filter(|c| c.unanswered())
            .flat_map(|c| c.ids.iter().cloned())
            .collect();
        withdraw(&mut self.broker, &self.args.redis.queue, &open).await;
        let keys: Vec<String> = chunks
            .iter()
            .filter(|c| !c.printed)
            .flat_map(|c| c.ids.iter().map(|id| meta_key(id)))
            .collect();
        delete(&mut self.results, &keys).await;
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
    let mut round = Round::new(Instant::now());
    while round.printed < chunks.len() {
        if g.interrupted.load(Ordering::SeqCst) {
            return Err(CliError::Interrupted);
        }
        let batch = round.admit(&g.bytes, &g.costs, g.budget);
        g.send(chunks, &batch).await?;
        round.saw_queue(g.queue_len().await?, Instant::now());
        let window = round.window(chunks, &g.bytes);
        let states = g.poll(chunks, &window).await?;
        let mut progress = false;
        let mut resend = Vec::new();
        for (&i, metas) in window.iter().zip(states) {
            let answer = chunks[i]
                .answer(metas)
                .map_err(|bad| g.bad(&chunks[i], bad))?;
            let now = Instant::now();
            match answer {
                Answer::Done(winner, lines) => {
                    bar.inc(1);
                    progress = true;
                    round.active(now);
                    let others = chunks[i].done(winner, lines);
                    withdraw(&mut g.broker, &g.args.redis.queue, &others).await;
                }
                Answer::Waiting { started } => {
                    if started {
                        chunks[i].started = Some(now);
                        round.active(now);
                    }
                    if chunks[i].late(deadline, round.stalled(deadline, now), now) {
                        g.late(&chunks[i], bar)?;
                        // Not progress: the next chunks of a dead worker's are just as late.
                        resend.push(i);
                    }
                }
            }
        }
        g.send(chunks, &resend).await?;
        // Print what is ready, in input order, and let it go.
        let mut done_keys = Vec::new();
        while let Some((c, lines)) = round.print_next(chunks, &g.bytes) {
            let mut text = Vec::new();
            for (k, line) in lines.iter().enumerate() {
                g.printer.line_for(&mut text, g.ns[c.range.start + k], line);
            }
            out.write_all(&text).map_err(write_error)?;
            done_keys.extend(c.ids.iter().map(|id| meta_key(id)));
        }
        out.flush().map_err(write_error)?;
        delete(&mut g.results, &done_keys).await;
        if round.printed < chunks.len()
            && let Some(pause) = round.pause_after(progress)
        {
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
    use celery::error::TaskError;

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

    /// The plan's promises: contiguous chunks over every input, in order, with each chunk's
    /// costs and bytes the sums of its inputs'.
    fn check(plan: &Plan, ns: &[u64], what: What) {
        assert_eq!(plan.ranges.first().map(|r| r.start), Some(0));
        assert_eq!(plan.ranges.last().map(|r| r.end), Some(ns.len()));
        for w in plan.ranges.windows(2) {
            assert_eq!(w[0].end, w[1].start, "{:?}", plan.ranges);
        }
        assert!(plan.ranges.iter().all(|r| !r.is_empty()));
        assert_eq!(plan.costs.len(), plan.ranges.len());
        for (r, &b) in plan.ranges.iter().zip(&plan.bytes) {
            let want: u64 = ns[r.clone()].iter().map(|&n| what.line_bytes(n)).sum();
            assert_eq!(b, want, "{r:?}");
            assert!(b <= CHUNK_BYTES || r.len() == 1, "{r:?}: {b}");
        }
        assert!(plan.costs.iter().all(|&c| c > 0.0));
    }

    #[test]
    fn plans_cut_the_inputs_into_contiguous_chunks() {
        let ns: Vec<u64> = (0..1000).collect();
        // --chunk N: len/N chunks of about equal work.
        let p = plan(&ns, What::Value, Some(100));
        check(&p, &ns, What::Value);
        assert_eq!(p.ranges.len(), 10);
        let p = plan(&ns, What::Digits, Some(3));
        check(&p, &ns, What::Digits);
        assert_eq!(p.ranges.len(), 334);
        assert_eq!(
            plan(&ns, What::Value, Some(5000)).ranges,
            vec![0..1000usize]
        );
        // By default, about 20 ms of work each: small values make one task...
        assert_eq!(plan(&ns, What::Last(5), None).ranges, vec![0..1000usize]);
        // ...and big ones several, the costly end cut finer.
        let big: Vec<u64> = (0..64).map(|k| 1_000_000 + k * 50_000).collect();
        let p = plan(&big, What::Value, None);
        check(&p, &big, What::Value);
        assert!(p.ranges.len() > 1, "{:?}", p.ranges);
        assert!(p.ranges[0].len() >= p.ranges[p.ranges.len() - 1].len());
        // The byte cap holds whatever --chunk says.
        let huge: Vec<u64> = (0..40).map(|k| 10_000_000 + k).collect();
        let p = plan(&huge, What::Value, Some(40));
        check(&p, &huge, What::Value);
        assert!(p.ranges.len() >= 2);
        assert_eq!(plan(&[], What::Value, None), Plan::default());
    }

    fn meta(id: &str, state: TaskState, result: Option<serde_json::Value>) -> Option<TaskMeta> {
        let mut m = TaskMeta::started(id);
        m.status = state;
        m.result = result;
        Some(m)
    }

    fn chunk(inputs: usize, copies: usize) -> Chunk {
        let mut c = Chunk::new(0..inputs);
        c.ids = (0..copies).map(|k| format!("id{k}")).collect();
        c
    }

    #[test]
    fn answers_take_the_first_result_and_stop_at_a_failure() {
        let c = chunk(2, 3);
        let ok = |id| meta(id, TaskState::Success, Some(serde_json::json!(["1", "1"])));
        assert_eq!(
            c.answer(vec![None, ok("id1"), ok("id2")]),
            Ok(Answer::Done(1, vec!["1".into(), "1".into()]))
        );
        // A second success is not read; a failure of any copy ends it.
        let wrong = meta("id2", TaskState::Success, Some(serde_json::json!(["1"])));
        assert!(c.answer(vec![ok("id0"), None, wrong]).is_ok());
        let failed = TaskMeta::failure("id2", &TaskError::UnexpectedError("boom".into()));
        assert_eq!(
            c.answer(vec![ok("id0"), None, Some(failed)]),
            Err(Bad::Failed("boom".into()))
        );
        let wrong = meta("id0", TaskState::Success, Some(serde_json::json!(["1"])));
        assert_eq!(
            c.answer(vec![wrong, None, None]),
            Err(Bad::Count {
                got: 1,
                id: "id0".into()
            })
        );
        assert_eq!(
            c.answer(vec![None, None, None]),
            Ok(Answer::Waiting { started: false })
        );
    }

    #[test]
    fn a_start_counts_on_the_latest_copy_once() {
        let mut c = chunk(1, 2);
        let started = |id| meta(id, TaskState::Started, None);
        assert_eq!(
            c.answer(vec![None, started("id1")]),
            Ok(Answer::Waiting { started: true })
        );
        // An earlier copy's start may be a dead worker's.
        assert_eq!(
            c.answer(vec![started("id0"), None]),
            Ok(Answer::Waiting { started: false })
        );
        c.started = Some(Instant::now());
        assert_eq!(
            c.answer(vec![None, started("id1")]),
            Ok(Answer::Waiting { started: false })
        );
    }

    #[test]
    fn a_done_chunk_gives_back_its_other_copies() {
        let mut c = chunk(1, 3);
        assert_eq!(c.done(1, vec!["5".into()]), ["id0", "id2"]);
        assert_eq!(c.result, Some(vec!["5".into()]));
        assert!(!c.unanswered());
        let mut single = chunk(1, 1);
        assert!(single.done(0, vec!["5".into()]).is_empty());
    }

    #[test]
    fn a_chunk_is_late_when_started_too_long_ago_or_unstarted_in_a_stall() {
        let t0 = Instant::now();
        let deadline = Duration::from_secs(10);
        let (soon, later) = (t0 + Duration::from_secs(5), t0 + Duration::from_secs(11));
        let mut c = chunk(1, 1);
        c.sent = t0;
        // Never seen started: late only when the workers look stalled too.
        assert!(!c.late(deadline, true, soon));
        assert!(!c.late(deadline, false, later));
        assert!(c.late(deadline, true, later));
        // Started: late once a worker has been on it for the deadline, stalled or not.
        c.started = Some(soon);
        assert!(!c.late(deadline, true, later));
        assert!(c.late(deadline, false, soon + Duration::from_secs(11)));
    }

    #[test]
    fn workers_look_stalled_without_news_or_with_an_empty_queue() {
        let t0 = Instant::now();
        let deadline = Duration::from_secs(10);
        let at = |s| t0 + Duration::from_secs(s);
        let mut r = Round::new(t0);
        assert!(!r.stalled(deadline, at(5)));
        assert!(r.stalled(deadline, at(11)));
        r.active(at(8));
        assert!(!r.stalled(deadline, at(11)));
        // The queue empty for the deadline: stalled even with recent news.
        r.saw_queue(0, at(9));
        r.saw_queue(0, at(15));
        r.active(at(19));
        assert!(!r.stalled(deadline, at(19)));
        assert!(r.stalled(deadline, at(20)));
        // A queue with work in it is not a stall.
        r.saw_queue(3, at(20));
        assert!(!r.stalled(deadline, at(20)));
    }

    #[test]
    fn rounds_admit_chunks_in_order_within_the_budget() {
        let bytes = [40, 30, 30, 100, 10];
        let costs = [1.0, 3.0, 2.0, 5.0, 4.0];
        let mut r = Round::new(Instant::now());
        // In input order while they fit, sent most expensive first.
        assert_eq!(r.admit(&bytes, &costs, 100), [1, 2, 0]);
        assert_eq!((r.next, r.in_flight), (3, 100));
        assert!(r.admit(&bytes, &costs, 100).is_empty());
        assert_eq!(r.open, [1, 2, 0]);
        // Printing frees room; a chunk over the budget goes alone when nothing is in flight.
        let mut chunks: Vec<Chunk> = (0..5).map(|i| chunk(1, 0).with_range(i)).collect();
        for c in &mut chunks[..3] {
            c.result = Some(vec![String::new()]);
        }
        while r.print_next(&mut chunks, &bytes).is_some() {}
        assert_eq!((r.printed, r.in_flight), (3, 0));
        assert_eq!(r.admit(&bytes, &costs, 50), [3]);
        assert_eq!(r.admit(&bytes, &costs, 50), Vec::<usize>::new());
    }

    #[test]
    fn rounds_admit_no_more_than_max_open() {
        let n = MAX_OPEN + 10;
        let mut r = Round::new(Instant::now());
        let batch = r.admit(&vec![1; n], &vec![1.0; n], u64::MAX);
        assert_eq!(batch.len(), MAX_OPEN);
        assert_eq!(r.next, MAX_OPEN);
    }

    #[test]
    fn the_window_polls_the_oldest_open_chunks_within_its_caps() {
        let n = WINDOW + 6;
        let mut chunks: Vec<Chunk> = (0..n).map(|i| chunk(1, 1).with_range(i)).collect();
        let mut r = Round::new(Instant::now());
        let small = vec![1u64; n];
        r.admit(&small, &vec![1.0; n], u64::MAX);
        let w = r.window(&chunks, &small);
        assert_eq!(w, (0..WINDOW).collect::<Vec<_>>());
        // Answered and printed chunks leave it.
        chunks[0].result = Some(vec![String::new()]);
        chunks[1].printed = true;
        let w = r.window(&chunks, &small);
        assert_eq!(w[0], 2);
        assert_eq!(w.len(), WINDOW);
        assert_eq!(r.open.len(), n - 2);
        // Big results: as many as the byte cap holds, and one at least.
        let big = vec![WINDOW_BYTES / 3 + 1; n];
        assert_eq!(r.window(&chunks, &big), [2, 3]);
        let huge = vec![WINDOW_BYTES * 2; n];
        assert_eq!(r.window(&chunks, &huge), [2]);
    }

    #[test]
    fn chunks_print_in_input_order_only() {
        let bytes = [5, 7, 9];
        let mut chunks: Vec<Chunk> = (0..3).map(|i| chunk(1, 1).with_range(i)).collect();
        let mut r = Round::new(Instant::now());
        r.admit(&bytes, &[1.0; 3], u64::MAX);
        chunks[1].result = Some(vec!["b".into()]);
        assert!(r.print_next(&mut chunks, &bytes).is_none());
        chunks[0].result = Some(vec!["a".into()]);
        let (c, lines) = r.print_next(&mut chunks, &bytes).unwrap();
        assert_eq!((c.range.clone(), lines), (0..1, vec!["a".to_string()]));
        let (c, lines) = r.print_next(&mut chunks, &bytes).unwrap();
        assert_eq!((c.range.clone(), lines), (1..2, vec!["b".to_string()]));
        assert!(r.print_next(&mut chunks, &bytes).is_none());
        assert_eq!((r.printed, r.in_flight), (2, 9));
        assert!(chunks[0].printed && chunks[0].result.is_none());
    }

    #[test]
    fn the_pause_doubles_without_results_and_resets_with_them() {
        let mut r = Round::new(Instant::now());
        let ms = |n| Some(Duration::from_millis(n));
        let waits: Vec<_> = (0..8).map(|_| r.pause_after(false)).collect();
        assert_eq!(
            waits,
            [
                ms(5),
                ms(10),
                ms(20),
                ms(40),
                ms(80),
                ms(160),
                ms(200),
                ms(200)
            ]
        );
        assert_eq!(r.pause_after(true), None);
        assert_eq!(r.pause_after(false), ms(5));
    }

    impl Chunk {
        /// The same chunk over input `i` alone.
        fn with_range(mut self, i: usize) -> Chunk {
            self.range = i..i + 1;
            self
        }
    }
}
