//! Per-stage counters ([`StageStats`]), the [`Report`] of a finished run and its
//! [`StageTable`].

use std::fmt;
use std::ops::AddAssign;
use std::time::Duration;

/// Counters one thread keeps for itself while it runs, merged into its stage's total when it
/// exits, so that counting never touches shared memory on the hot path.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counters {
    pub(crate) items: u64,
    pub(crate) busy: Duration,
    pub(crate) wait_input: Duration,
    pub(crate) wait_output: Duration,
}

impl AddAssign for Counters {
    fn add_assign(&mut self, other: Counters) {
        self.items += other.items;
        self.busy += other.busy;
        self.wait_input += other.wait_input;
        self.wait_output += other.wait_output;
    }
}

/// What one stage (or the source, or the sink) did during a run; part of a [`Report`].
///
/// Times are summed over the stage's worker threads, so with 4 workers `busy` can reach 4 times
/// the elapsed time.
///
/// # Examples
///
/// ```
/// use parkit::pipeline::Pipeline;
///
/// let (out, report) = Pipeline::from(0..1000u64)
///     .stage("square", 2, |x| x * x)
///     .collect_with_report()?;
/// let square = report.stage("square").unwrap();
/// assert_eq!((square.workers, square.items), (2, 1000));
/// assert!(square.busy_per_worker() <= square.busy);
/// # assert_eq!(out.len(), 1000);
/// # Ok::<(), parkit::pipeline::PipelineError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StageStats {
    /// The stage's name (`"source"` and `"sink"` for the two ends).
    pub name: String,
    /// Number of worker threads (1 for the source and the sink).
    pub workers: usize,
    /// Items the stage's function was called on (items produced, for the source).
    pub items: u64,
    /// Time spent inside the function (inside the iterator's `next`, for the source).
    pub busy: Duration,
    /// Time spent waiting for an input item (for the source: waiting for the ordering window
    /// to admit the next item).
    pub wait_input: Duration,
    /// Time spent waiting for room in the queue to the next stage (backpressure).
    pub wait_output: Duration,
}

impl StageStats {
    pub(crate) fn new(name: &str, workers: usize, c: Counters) -> Self {
        StageStats {
            name: name.to_owned(),
            workers,
            items: c.items,
            busy: c.busy,
            wait_input: c.wait_input,
            wait_output: c.wait_output,
        }
    }

    /// Busy time divided by the number of workers: how long the stage kept each worker busy.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::pipeline::Pipeline;
    ///
    /// let report = Pipeline::from(0..10u32).stage("id", 3, |x| x).for_each(drop)?;
    /// let id = &report.stages()[0];
    /// assert_eq!(id.busy_per_worker(), id.busy / 3);
    /// # Ok::<(), parkit::pipeline::PipelineError>(())
    /// ```
    pub fn busy_per_worker(&self) -> Duration {
        let workers = u32::try_from(self.workers.max(1)).unwrap_or(u32::MAX);
        self.busy / workers
    }
}

/// Counters of a finished pipeline run: one [`StageStats`] per stage, the source and the sink,
/// and the elapsed time.
///
/// `Display` prints a small table with a line naming the [`bottleneck`](Report::bottleneck);
/// [`table`](Report::table) gives the table alone, to print inside a report of your own.
///
/// # Examples
///
/// ```
/// use std::{thread, time::Duration};
/// use parkit::pipeline::Pipeline;
///
/// let report = Pipeline::from(0..20u32)
///     .stage("fast", 1, |x| x + 1)
///     .stage("slow", 2, |x| { thread::sleep(Duration::from_millis(2)); x })
///     .for_each(|_| {})?;
/// assert_eq!(report.items(), 20);
/// assert_eq!(report.bottleneck().name, "slow");
/// assert!(report.to_string().contains("bottleneck: slow"));
/// # Ok::<(), parkit::pipeline::PipelineError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Report {
    pub(crate) source: StageStats,
    pub(crate) stages: Vec<StageStats>,
    pub(crate) sink: Option<StageStats>,
    pub(crate) elapsed: Duration,
    pub(crate) items: u64,
}

impl Report {
    /// The stages, in the order they were added (the source and the sink are not among them).
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::pipeline::Pipeline;
    ///
    /// let (_, report) = Pipeline::from(0..5u8)
    ///     .stage("a", 1, |x| x)
    ///     .stage("b", 2, |x| x)
    ///     .collect_with_report()?;
    /// let names: Vec<_> = report.stages().iter().map(|s| s.name.as_str()).collect();
    /// assert_eq!(names, ["a", "b"]);
    /// # Ok::<(), parkit::pipeline::PipelineError>(())
    /// ```
    pub fn stages(&self) -> &[StageStats] {
        &self.stages
    }

    /// The first stage with this name, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::pipeline::Pipeline;
    ///
    /// let (_, report) = Pipeline::from(0..5u8).stage("a", 1, |x| x).collect_with_report()?;
    /// assert_eq!(report.stage("a").unwrap().items, 5);
    /// assert!(report.stage("zzz").is_none());
    /// # Ok::<(), parkit::pipeline::PipelineError>(())
    /// ```
    pub fn stage(&self, name: &str) -> Option<&StageStats> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// The source iterator's thread: `busy` is the time inside `next`, `wait_input` the time
    /// waiting for the ordering window, `wait_output` the time waiting for the first queue.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::pipeline::Pipeline;
    ///
    /// let (_, report) = Pipeline::from(0..5u8).stage("a", 1, |x| x).collect_with_report()?;
    /// assert_eq!((report.source().name.as_str(), report.source().items), ("source", 5));
    /// # Ok::<(), parkit::pipeline::PipelineError>(())
    /// ```
    pub fn source(&self) -> &StageStats {
        &self.source
    }

    /// The consumer of [`for_each`](super::Pipeline::for_each) or
    /// [`try_for_each`](super::Pipeline::try_for_each): `busy` is the time inside the closure,
    /// `wait_input` the time waiting for the next item. `None` for the other ways of running.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::pipeline::Pipeline;
    ///
    /// let report = Pipeline::from(0..5u8).for_each(drop)?;
    /// assert_eq!(report.sink().unwrap().items, 5);
    /// # Ok::<(), parkit::pipeline::PipelineError>(())
    /// ```
    pub fn sink(&self) -> Option<&StageStats> {
        self.sink.as_ref()
    }

    /// Wall-clock time from the start of the run until the last item was delivered.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::pipeline::Pipeline;
    ///
    /// let report = Pipeline::from(0..5u8).for_each(drop)?;
    /// assert!(report.elapsed() >= report.sink().unwrap().busy);
    /// # Ok::<(), parkit::pipeline::PipelineError>(())
    /// ```
    pub fn elapsed(&self) -> std::time::Duration {
        self.elapsed
    }

    /// Number of items delivered to the consumer.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::pipeline::Pipeline;
    ///
    /// let (_, report) = Pipeline::from(0..0u8).collect_with_report()?;
    /// assert_eq!(report.items(), 0);
    /// # Ok::<(), parkit::pipeline::PipelineError>(())
    /// ```
    pub fn items(&self) -> u64 {
        self.items
    }

    /// The part of the pipeline with the highest [busy time per
    /// worker](StageStats::busy_per_worker), among the source, the stages and the sink: the one
    /// to give more workers (or a faster function). Ties go to the earliest.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::{thread, time::Duration};
    /// use parkit::pipeline::Pipeline;
    ///
    /// let (_, report) = Pipeline::from(0..8u32)
    ///     .stage("sleepy", 1, |x| { thread::sleep(Duration::from_millis(5)); x })
    ///     .stage("quick", 1, |x| x)
    ///     .collect_with_report()?;
    /// assert_eq!(report.bottleneck().name, "sleepy");
    /// # Ok::<(), parkit::pipeline::PipelineError>(())
    /// ```
    pub fn bottleneck(&self) -> &StageStats {
        self.parts()
            .reduce(|best, s| {
                if s.busy_per_worker() > best.busy_per_worker() {
                    s
                } else {
                    best
                }
            })
            .unwrap_or(&self.source)
    }

    /// Every part of the pipeline in flow order: the [source](Report::source), the
    /// [stages](Report::stages), then the [sink](Report::sink) if there is one. These are the
    /// rows of the [`table`](Report::table).
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::pipeline::Pipeline;
    ///
    /// let report = Pipeline::from(0..5u8).stage("a", 1, |x| x).for_each(drop)?;
    /// let names: Vec<_> = report.parts().map(|s| s.name.as_str()).collect();
    /// assert_eq!(names, ["source", "a", "sink"]);
    /// let busiest = report.parts().max_by_key(|s| s.busy).unwrap();
    /// assert!(busiest.busy >= report.source().busy);
    /// # Ok::<(), parkit::pipeline::PipelineError>(())
    /// ```
    pub fn parts(&self) -> impl Iterator<Item = &StageStats> + Clone {
        std::iter::once(&self.source)
            .chain(&self.stages)
            .chain(&self.sink)
    }

    /// The table of [`parts`](Report::parts) that `Display` prints, without the line under
    /// it: one line per part with its workers, items and times, under a header. Use it to
    /// print the counters inside a report of your own, indented with
    /// [`StageTable::indent`].
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::pipeline::Pipeline;
    ///
    /// let (_, report) = Pipeline::from(0..5u8).stage("a", 1, |x| x).collect_with_report()?;
    /// let table = report.table().indent("  ").to_string();
    /// let lines: Vec<&str> = table.lines().collect();
    /// assert_eq!(lines.len(), 3); // the header, the source and stage "a"
    /// assert!(lines[0].starts_with("  stage ") && lines[0].contains("busy/worker"));
    /// assert!(lines[2].starts_with("  a ") && !table.ends_with('\n'));
    /// assert!(report.to_string().starts_with(&report.table().to_string()));
    /// # Ok::<(), parkit::pipeline::PipelineError>(())
    /// ```
    pub fn table(&self) -> StageTable<'_> {
        StageTable {
            report: self,
            indent: "",
        }
    }
}

/// The table of a [`Report`]'s parts, as [`Report::table`] gives it: `Display` writes a header
/// and one line per part (workers, items, busy time, busy time per worker, waits), times in
/// the unit that keeps them short (`850ns`, `12.3µs`, `4.56ms`, `7.89s`), with no newline
/// after the last line.
///
/// # Examples
///
/// ```
/// use parkit::pipeline::Pipeline;
///
/// let report = Pipeline::from(0..5u8).for_each(drop)?;
/// let table = report.table().to_string();
/// assert_eq!(table.lines().count(), 3); // the header, the source and the sink
/// assert!(table.lines().nth(2).unwrap().starts_with("sink "));
/// # Ok::<(), parkit::pipeline::PipelineError>(())
/// ```
#[derive(Clone, Copy, Debug)]
#[must_use = "a StageTable does nothing until it is displayed"]
pub struct StageTable<'a> {
    report: &'a Report,
    indent: &'a str,
}

impl<'a> StageTable<'a> {
    /// Starts every line with `indent` (nothing by default).
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::pipeline::Pipeline;
    ///
    /// let report = Pipeline::from(0..5u8).for_each(drop)?;
    /// let table = report.table().indent("> ").to_string();
    /// assert!(table.lines().all(|line| line.starts_with("> ")));
    /// # Ok::<(), parkit::pipeline::PipelineError>(())
    /// ```
    pub fn indent(self, indent: &'a str) -> Self {
        StageTable { indent, ..self }
    }
}

/// A duration in the unit that keeps it short: `850ns`, `12.3µs`, `4.56ms`, `7.89s`.
fn short(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{:.1}µs", ns as f64 / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2}ms", ns as f64 / 1e6)
    } else {
        format!("{:.2}s", d.as_secs_f64())
    }
}

impl fmt::Display for StageTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let indent = self.indent;
        let width = self
            .report
            .parts()
            .map(|s| s.name.chars().count())
            .max()
            .unwrap_or(0)
            .max("stage".len());
        write!(
            f,
            "{indent}{:<width$} {:>7} {:>10} {:>10} {:>11} {:>10} {:>10}",
            "stage", "workers", "items", "busy", "busy/worker", "wait in", "wait out"
        )?;
        for s in self.report.parts() {
            write!(
                f,
                "\n{indent}{:<width$} {:>7} {:>10} {:>10} {:>11} {:>10} {:>10}",
                s.name,
                s.workers,
                s.items,
                short(s.busy),
                short(s.busy_per_worker()),
                short(s.wait_input),
                short(s.wait_output),
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}\n{} items in {}; bottleneck: {}",
            self.table(),
            self.items,
            short(self.elapsed),
            self.bottleneck().name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, workers: usize, busy_ms: u64) -> StageStats {
        StageStats {
            name: name.into(),
            workers,
            items: 3,
            busy: Duration::from_millis(busy_ms),
            ..StageStats::default()
        }
    }

    #[test]
    fn bottleneck_is_per_worker_and_ties_go_first() {
        let report = Report {
            source: row("source", 1, 10),
            stages: vec![row("wide", 8, 40), row("narrow", 1, 20), row("same", 2, 40)],
            sink: Some(row("sink", 1, 1)),
            elapsed: Duration::from_millis(50),
            items: 3,
        };
        assert_eq!(report.bottleneck().name, "narrow");
        let text = report.to_string();
        assert_eq!(text.lines().count(), 7);
        assert!(
            text.ends_with("3 items in 50.00ms; bottleneck: narrow"),
            "{text}"
        );
        assert!(text.lines().nth(2).unwrap().contains("5.00ms"), "{text}");
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(short(Duration::from_nanos(850)), "850ns");
        assert_eq!(short(Duration::from_nanos(12_340)), "12.3µs");
        assert_eq!(short(Duration::from_micros(4_560)), "4.56ms");
        assert_eq!(short(Duration::from_millis(7_890)), "7.89s");
    }
}
