//! [`Pipeline`]: the builder, and the ways to run it.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Receiver;

use super::error::{BoxError, PipelineError};
use super::output::IntoIter;
use super::shared::Msg;
use super::stage::{Launch, StageSpec};
use super::stats::Report;

/// Starts the source and every stage added so far; returns the receiver of the last queue.
type LaunchFn<T> = Box<dyn FnOnce(&mut Launch) -> Receiver<Msg<T>> + Send>;

/// A pipeline of stages, each with worker threads of its own, between bounded queues; items of
/// type `T` come out of the last stage. See the [module documentation](super) for the design.
///
/// Build it from a source with [`Pipeline::from`] (any `IntoIterator`) or
/// [`Pipeline::try_from_iter`], add stages with [`stage`](Pipeline::stage) and
/// [`try_stage`](Pipeline::try_stage), tune the last added stage with
/// [`capacity`](Pipeline::capacity), then run it with [`collect`](Pipeline::collect),
/// [`collect_with_report`](Pipeline::collect_with_report), [`for_each`](Pipeline::for_each),
/// [`try_for_each`](Pipeline::try_for_each), or a `for` loop ([`IntoIterator`]). Nothing runs
/// until then.
///
/// # Examples
///
/// ```
/// use parkit::pipeline::Pipeline;
///
/// let lines = vec!["1", "2", "3", "40"];
/// let squares = Pipeline::from(lines)
///     .try_stage("parse", 2, |s| s.parse::<u64>())
///     .stage("square", 4, |n| n * n)
///     .capacity(16)
///     .collect()?;
/// assert_eq!(squares, [1, 4, 9, 1600]);
/// # Ok::<(), parkit::pipeline::PipelineError>(())
/// ```
#[must_use = "a pipeline does nothing until it is run with collect, for_each or into_iter"]
pub struct Pipeline<T> {
    specs: Vec<StageSpec>,
    window: Option<usize>,
    ordered: bool,
    launch: LaunchFn<T>,
}

impl<T, I> From<I> for Pipeline<T>
where
    T: Send + 'static,
    I: IntoIterator<Item = T> + Send + 'static,
{
    /// A pipeline whose source is `items`, iterated on a thread of its own.
    ///
    /// `items.into_iter()` and every `next` call run on the source thread, so the source may
    /// block (read a file, a socket) without holding up anything but the pipeline's input. A
    /// panic there ends the run with a [`PipelineError`] for stage `"source"`.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::pipeline::Pipeline;
    ///
    /// let out = Pipeline::from(0..5u8).collect()?;
    /// assert_eq!(out, [0, 1, 2, 3, 4]);
    /// # Ok::<(), parkit::pipeline::PipelineError>(())
    /// ```
    fn from(items: I) -> Self {
        Pipeline::with_source(move |l| l.spawn_source(move || items.into_iter().map(Ok)))
    }
}

impl<T: Send + 'static> Pipeline<T> {
    fn with_source(launch: impl FnOnce(&mut Launch) -> Receiver<Msg<T>> + Send + 'static) -> Self {
        Pipeline {
            specs: Vec::new(),
            window: None,
            ordered: true,
            launch: Box::new(launch),
        }
    }

    /// A pipeline whose source yields `Result`s: the first `Err` ends the run with a
    /// [`PipelineError`] of kind [`Failed`](super::ErrorKind::Failed) for stage `"source"`.
    ///
    /// As with [`Pipeline::from`], the iterator runs on the source thread.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::pipeline::Pipeline;
    ///
    /// let lines = vec![Ok("1"), Ok("2"), Err(std::io::Error::other("disk gone"))];
    /// let err = Pipeline::try_from_iter(lines).collect().unwrap_err();
    /// assert_eq!((err.stage(), err.index()), ("source", 2));
    /// assert_eq!(err.to_string(), "stage 'source' failed on item 2: disk gone");
    /// ```
    pub fn try_from_iter<I, E>(items: I) -> Self
    where
        I: IntoIterator<Item = Result<T, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        Pipeline::with_source(move |l| {
            l.spawn_source(move || items.into_iter().map(|r| r.map_err(Into::into)))
        })
    }

    /// Adds a stage that maps every item with `f` on `workers` threads of its own.
    ///
    /// The threads are plain `std` threads named `parkit-<name>-<i>`, never rayon workers, so
    /// `f` may block on I/O; a CPU-heavy `f` may use rayon inside. A panic in `f` ends the run
    /// with a [`PipelineError`] of kind [`Panicked`](super::ErrorKind::Panicked) naming this
    /// stage and the item.
    ///
    /// The queue in front of the stage holds `max(2 * workers, 64)` items unless
    /// [`capacity`](Pipeline::capacity) says otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::pipeline::Pipeline;
    ///
    /// let out = Pipeline::from(1..=4u32)
    ///     .stage("square", 3, |x| x * x)
    ///     .stage("show", 1, |x| format!("<{x}>"))
    ///     .collect()?;
    /// assert_eq!(out, ["<1>", "<4>", "<9>", "<16>"]);
    /// # Ok::<(), parkit::pipeline::PipelineError>(())
    /// ```
    ///
    /// `f` is shared by the stage's threads, so it must be `Send + Sync`; an `Rc` will not do:
    ///
    /// ```compile_fail
    /// use std::rc::Rc;
    /// use parkit::pipeline::Pipeline;
    ///
    /// let offset = Rc::new(1u32);
    /// let _ = Pipeline::from(0..3u32).stage("add", 2, move |x| x + *offset);
    /// ```
    ///
    /// # Panics
    ///
    /// If `workers` is 0.
    pub fn stage<U, F>(self, name: impl Into<String>, workers: usize, f: F) -> Pipeline<U>
    where
        U: Send + 'static,
        F: Fn(T) -> U + Send + Sync + 'static,
    {
        self.push(name.into(), workers, move |x| Ok(f(x)))
    }

    /// Adds a fallible stage: like [`stage`](Pipeline::stage), but the first `Err` that `f`
    /// returns ends the run with a [`PipelineError`] of kind
    /// [`Failed`](super::ErrorKind::Failed) naming this stage and the item, with the error as
    /// its source.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::pipeline::Pipeline;
    ///
    /// let ok = Pipeline::from(vec!["1", "2"]).try_stage("parse", 2, |s| s.parse::<u8>());
    /// assert_eq!(ok.collect()?, [1, 2]);
    ///
    /// let bad = Pipeline::from(vec!["1", "x"]).try_stage("parse", 2, |s| s.parse::<u8>());
    /// let err = bad.collect().unwrap_err();
    /// assert_eq!((err.stage(), err.index()), ("parse", 1));
    /// # Ok::<(), parkit::pipeline::PipelineError>(())
    /// ```
    ///
    /// # Panics
    ///
    /// If `workers` is 0.
    pub fn try_stage<U, E, F>(self, name: impl Into<String>, workers: usize, f: F) -> Pipeline<U>
    where
        U: Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
        F: Fn(T) -> Result<U, E> + Send + Sync + 'static,
    {
        self.push(name.into(), workers, move |x| f(x).map_err(Into::into))
    }

    fn push<U, F>(self, name: String, workers: usize, f: F) -> Pipeline<U>
    where
        U: Send + 'static,
        F: Fn(T) -> Result<U, BoxError> + Send + Sync + 'static,
    {
        assert!(
            workers > 0,
            "parkit::pipeline: stage '{name}' needs at least one worker, got 0"
        );
        let Pipeline {
            mut specs,
            window,
            ordered,
            launch,
        } = self;
        let stage = specs.len();
        specs.push(StageSpec {
            name: Arc::from(name),
            workers,
            capacity: None,
        });
        Pipeline {
            specs,
            window,
            ordered,
            launch: Box::new(move |l: &mut Launch| {
                let input = launch(l);
                l.spawn_stage(stage, input, f)
            }),
        }
    }

    /// Sets how many items the queue in front of the last added stage holds (default:
    /// `max(2 × workers, 64)`). 0 makes it a rendezvous: each hand-over waits for a worker to
    /// take it. The queue in front of the consumer, after the last stage, is as big as the last
    /// stage's.
    ///
    /// Small queues bound memory and make a slow stage push back on the ones before it at
    /// once. Bigger ones smooth out bursts and cut the cost of waking threads: each hand-over
    /// through an empty or full queue wakes a thread (a microsecond or more), so for items that
    /// take about that long, queues of a few hundred items run several times faster than
    /// queues of a few items.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::pipeline::Pipeline;
    ///
    /// let out = Pipeline::from(0..100u32).stage("inc", 2, |x| x + 1).capacity(1).collect()?;
    /// assert_eq!(out.len(), 100);
    /// # Ok::<(), parkit::pipeline::PipelineError>(())
    /// ```
    ///
    /// # Panics
    ///
    /// If no stage has been added yet.
    pub fn capacity(mut self, items: usize) -> Self {
        let last = self
            .specs
            .last_mut()
            .expect("parkit::pipeline: capacity() applies to the last added stage; add one first");
        last.capacity = Some(items);
        self
    }

    /// Sets the ordering window: item `i` enters the pipeline only once fewer than `items`
    /// items before it are still on their way to the consumer, that is when
    /// `i < delivered + items`. This bounds the reorder buffer, and so memory, when one item is
    /// much slower than its neighbours.
    ///
    /// The default is the number of items the stages can hold at once: the sum of every
    /// queue's capacity (the queue in front of the consumer is as big as the last stage's, or
    /// 2 without stages) and every stage's workers. A smaller window saves memory
    /// at the cost of parallelism; 1 runs one item at a time. No effect after
    /// [`unordered`](Pipeline::unordered).
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::pipeline::Pipeline;
    ///
    /// let out = Pipeline::from(0..50u32).stage("id", 4, |x| x).window(3).collect()?;
    /// assert_eq!(out, (0..50).collect::<Vec<_>>());
    /// # Ok::<(), parkit::pipeline::PipelineError>(())
    /// ```
    ///
    /// # Panics
    ///
    /// If `items` is 0: nothing could ever enter.
    pub fn window(mut self, items: usize) -> Self {
        assert!(
            items > 0,
            "parkit::pipeline: the ordering window must be at least 1"
        );
        self.window = Some(items);
        self
    }

    /// Delivers items in the order they complete instead of input order: no reorder buffer and
    /// no ordering window, so a slow item holds up nothing but its worker. Errors still name
    /// the input index.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::pipeline::Pipeline;
    ///
    /// let mut out = Pipeline::from(0..100u32).stage("id", 4, |x| x).unordered().collect()?;
    /// out.sort_unstable();
    /// assert_eq!(out, (0..100).collect::<Vec<_>>());
    /// # Ok::<(), parkit::pipeline::PipelineError>(())
    /// ```
    pub fn unordered(mut self) -> Self {
        self.ordered = false;
        self
    }

    /// Runs the pipeline and collects the output, in input order unless
    /// [`unordered`](Pipeline::unordered).
    ///
    /// On success every thread of the run has exited before this returns.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::pipeline::Pipeline;
    ///
    /// let out = Pipeline::from(vec![3u64, 1, 2]).stage("triple", 2, |x| 3 * x).collect()?;
    /// assert_eq!(out, [9, 3, 6]);
    /// # Ok::<(), parkit::pipeline::PipelineError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The first failure: an `Err` from a [`try_stage`](Pipeline::try_stage) or a
    /// [`try_from_iter`](Pipeline::try_from_iter) source, or a panic in any stage or in the
    /// source. The run stops at once; threads busy with an item finish it in the background
    /// and exit. With several failing items, which one is reported first is not specified.
    ///
    /// # Panics
    ///
    /// If a thread cannot be spawned (as [`std::thread::spawn`]).
    ///
    /// # Locking
    ///
    /// Blocks the calling thread until the run ends; the work happens on the pipeline's own
    /// threads, so calling this from a rayon worker ties up that worker (better called from a
    /// thread of your own).
    pub fn collect(self) -> Result<Vec<T>, PipelineError> {
        self.collect_with_report().map(|(items, _)| items)
    }

    /// Like [`collect`](Pipeline::collect), and also returns the run's [`Report`].
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::pipeline::Pipeline;
    ///
    /// let (out, report) = Pipeline::from(0..10u32).stage("id", 2, |x| x).collect_with_report()?;
    /// assert_eq!(out.len(), 10);
    /// assert_eq!((report.items(), report.stages()[0].items), (10, 10));
    /// # Ok::<(), parkit::pipeline::PipelineError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`collect`](Pipeline::collect).
    ///
    /// # Panics
    ///
    /// As [`collect`](Pipeline::collect).
    ///
    /// # Locking
    ///
    /// As [`collect`](Pipeline::collect).
    pub fn collect_with_report(self) -> Result<(Vec<T>, Report), PipelineError> {
        let mut output = self.into_iter();
        let items = output.by_ref().collect::<Result<Vec<T>, _>>()?;
        let report = output.into_report().expect("a finished run has a report");
        Ok((items, report))
    }

    /// Runs the pipeline and calls `f` on every item, on the calling thread, in input order
    /// unless [`unordered`](Pipeline::unordered); returns the run's [`Report`], in which `f`
    /// is the `"sink"`.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::pipeline::Pipeline;
    ///
    /// let mut seen = Vec::new();
    /// let report = Pipeline::from(0..5u32).stage("inc", 2, |x| x + 1).for_each(|x| seen.push(x))?;
    /// assert_eq!(seen, [1, 2, 3, 4, 5]);
    /// assert_eq!(report.sink().unwrap().items, 5);
    /// # Ok::<(), parkit::pipeline::PipelineError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`collect`](Pipeline::collect); a panic in `f` is caught and reported as stage
    /// `"sink"`, and `f` is not called again.
    ///
    /// # Panics
    ///
    /// As [`collect`](Pipeline::collect).
    ///
    /// # Locking
    ///
    /// As [`collect`](Pipeline::collect). While `f` runs, the pipeline's threads go on until the
    /// queues fill up: a slow `f` pushes back on every stage.
    pub fn for_each<F: FnMut(T)>(self, mut f: F) -> Result<Report, PipelineError> {
        self.try_for_each(move |item| {
            f(item);
            Ok::<(), Infallible>(())
        })
    }

    /// Like [`for_each`](Pipeline::for_each) with a fallible `f`: the first `Err` ends the run
    /// with a [`PipelineError`] of kind [`Failed`](super::ErrorKind::Failed) for stage
    /// `"sink"`, with the item's index.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::pipeline::{ErrorKind, Pipeline};
    ///
    /// let err = Pipeline::from(0..100u32)
    ///     .stage("id", 2, |x| x)
    ///     .try_for_each(|x| if x == 7 { Err("seven") } else { Ok(()) })
    ///     .unwrap_err();
    /// assert_eq!((err.stage(), err.index(), err.kind()), ("sink", 7, ErrorKind::Failed));
    /// ```
    ///
    /// # Errors
    ///
    /// As [`for_each`](Pipeline::for_each), plus the first `Err` from `f`.
    ///
    /// # Panics
    ///
    /// As [`collect`](Pipeline::collect).
    ///
    /// # Locking
    ///
    /// As [`for_each`](Pipeline::for_each).
    pub fn try_for_each<E, F>(self, f: F) -> Result<Report, PipelineError>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
        F: FnMut(T) -> Result<(), E>,
    {
        self.into_iter().drain_into(f)
    }
}

impl<T: Send + 'static> IntoIterator for Pipeline<T> {
    type Item = Result<T, PipelineError>;
    type IntoIter = IntoIter<T>;

    /// Starts the run and returns its output as an iterator; see [`IntoIter`].
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::pipeline::Pipeline;
    ///
    /// let mut total = 0;
    /// for item in Pipeline::from(1..=10u32).stage("square", 2, |x| x * x) {
    ///     total += item?;
    /// }
    /// assert_eq!(total, 385);
    /// # Ok::<(), parkit::pipeline::PipelineError>(())
    /// ```
    ///
    /// # Panics
    ///
    /// If a thread cannot be spawned; the threads already started are stopped.
    ///
    /// # Locking
    ///
    /// Starts the threads and returns at once; see [`IntoIter`] for what `next` waits on.
    fn into_iter(self) -> IntoIter<T> {
        let started = Instant::now();
        let mut launch = Launch::new(self.specs, self.window, self.ordered);
        let rx = (self.launch)(&mut launch);
        let (shared, specs, handles) = launch.started();
        IntoIter::new(rx, shared, specs, handles, self.ordered, started)
    }
}

impl<T> fmt::Debug for Pipeline<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("stages", &self.specs)
            .field("window", &self.window)
            .field("ordered", &self.ordered)
            .finish_non_exhaustive()
    }
}
