//! Starting a run: the queues, the source thread and each stage's worker threads, and the
//! loops those threads run.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, bounded};

use super::error::{BoxError, PipelineError};
use super::shared::{Msg, Shared, recv, send};
use super::stats::Counters;

/// Name the source is reported under.
pub(crate) const SOURCE: &str = "source";
/// Name the consumer of `for_each` and `try_for_each` is reported under.
pub(crate) const SINK: &str = "sink";

/// A stage as the builder records it.
#[derive(Clone, Debug)]
pub(crate) struct StageSpec {
    pub(crate) name: Arc<str>,
    pub(crate) workers: usize,
    pub(crate) capacity: Option<usize>,
}

/// The threads of a run being started; see [`Pipeline`](super::Pipeline)'s launch chain.
pub(crate) struct Launch {
    pub(crate) shared: Arc<Shared>,
    pub(crate) specs: Vec<StageSpec>,
    /// Capacity of queue `j`: in front of stage `j`, or in front of the consumer for the last.
    capacities: Vec<usize>,
    /// The ordering window, `None` for unordered runs.
    window: Option<usize>,
    pub(crate) handles: Vec<JoinHandle<()>>,
    started: bool,
}

impl Launch {
    pub(crate) fn new(specs: Vec<StageSpec>, window: Option<usize>, ordered: bool) -> Self {
        let mut capacities: Vec<usize> = specs
            .iter()
            .map(|s| {
                s.capacity
                    .unwrap_or((2 * s.workers).max(DEFAULT_MIN_CAPACITY))
            })
            .collect();
        // The consumer's queue is sized like the last stage's.
        capacities.push(capacities.last().copied().unwrap_or(2));
        let held: usize = capacities
            .iter()
            .chain(specs.iter().map(|s| &s.workers))
            .sum();
        let window = ordered.then(|| window.unwrap_or(held).max(1));
        Launch {
            shared: Arc::new(Shared::new(specs.len() + 1)),
            specs,
            capacities,
            window,
            handles: Vec::new(),
            started: false,
        }
    }

    /// Marks the run as fully started: from here on the consumer owns its shutdown.
    pub(crate) fn started(mut self) -> (Arc<Shared>, Vec<StageSpec>, Vec<JoinHandle<()>>) {
        self.started = true;
        let handles = std::mem::take(&mut self.handles);
        let specs = std::mem::take(&mut self.specs);
        (Arc::clone(&self.shared), specs, handles)
    }

    fn spawn(&mut self, name: String, body: impl FnOnce() + Send + 'static) -> &JoinHandle<()> {
        let handle = thread::Builder::new()
            .name(name)
            .spawn(body)
            .unwrap_or_else(|e| panic!("parkit::pipeline: cannot spawn a thread: {e}"));
        self.handles.push(handle);
        self.handles.last().expect("just pushed")
    }

    /// Starts the source thread over the iterator `make` returns; returns queue 0's receiver.
    pub(crate) fn spawn_source<T, I, M>(&mut self, make: M) -> Receiver<Msg<T>>
    where
        T: Send + 'static,
        I: Iterator<Item = Result<T, BoxError>>,
        M: FnOnce() -> I + Send + 'static,
    {
        let (tx, rx) = bounded(self.capacities[0]);
        let shared = Arc::clone(&self.shared);
        let window = self.window;
        let thread = self
            .spawn(format!("parkit-{SOURCE}"), move || {
                run_source(&shared, make, tx, window);
            })
            .thread()
            .clone();
        self.shared.set_source(thread);
        rx
    }

    /// Starts stage `stage`'s workers on `input`; returns the receiver of its output queue.
    pub(crate) fn spawn_stage<T, U, F>(
        &mut self,
        stage: usize,
        input: Receiver<Msg<T>>,
        f: F,
    ) -> Receiver<Msg<U>>
    where
        T: Send + 'static,
        U: Send + 'static,
        F: Fn(T) -> Result<U, BoxError> + Send + Sync + 'static,
    {
        let (tx, rx) = bounded(self.capacities[stage + 1]);
        let f = Arc::new(f);
        let name = Arc::clone(&self.specs[stage].name);
        for i in 0..self.specs[stage].workers {
            let worker = Worker {
                shared: Arc::clone(&self.shared),
                part: stage + 1,
                name: Arc::clone(&name),
                input: input.clone(),
                output: tx.clone(),
            };
            let f = Arc::clone(&f);
            self.spawn(format!("parkit-{name}-{i}"), move || worker.run(&*f));
        }
        rx
    }
}

impl Drop for Launch {
    fn drop(&mut self) {
        // Unwinding out of a half-started run (a failed spawn): stop what did start.
        if !self.started {
            self.shared.cancel();
        }
    }
}

/// The source thread: admits item `i` (ordered runs), pulls it from the iterator, sends it.
fn run_source<T, I, M>(shared: &Shared, make: M, tx: Sender<Msg<T>>, window: Option<usize>)
where
    I: Iterator<Item = Result<T, BoxError>>,
    M: FnOnce() -> I,
{
    let mut c = Counters::default();
    let mut index = 0;
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let start = Instant::now();
        let mut items = make();
        c.busy += start.elapsed();
        while !shared.is_cancelled() {
            if let Some(window) = window {
                let start = Instant::now();
                let admitted = shared.admit(index, window);
                c.wait_input += start.elapsed();
                if !admitted {
                    break;
                }
            }
            let start = Instant::now();
            let next = items.next();
            let produced = Instant::now();
            c.busy += produced - start;
            match next {
                None => break,
                Some(Ok(item)) => {
                    c.items += 1;
                    let sent = send(&tx, (index, item), shared);
                    c.wait_output += produced.elapsed();
                    if !sent {
                        break;
                    }
                }
                Some(Err(e)) => {
                    shared.fail(PipelineError::failed(SOURCE.into(), index, e));
                    break;
                }
            }
            index += 1;
        }
    }));
    if let Err(payload) = outcome {
        shared.fail(PipelineError::panicked(SOURCE.into(), index, &*payload));
    }
    // Merge before letting go of the queue: once the consumer sees every queue closed, every
    // thread's counters are in.
    shared.merge(0, c);
    drop(tx);
}

/// One worker thread of one stage.
struct Worker<T, U> {
    shared: Arc<Shared>,
    part: usize,
    name: Arc<str>,
    input: Receiver<Msg<T>>,
    output: Sender<Msg<U>>,
}

impl<T, U> Worker<T, U> {
    fn run(self, f: &impl Fn(T) -> Result<U, BoxError>) {
        let Worker {
            shared,
            part,
            name,
            input,
            output,
        } = self;
        let mut c = Counters::default();
        let mut index = 0;
        // The outer catch covers what runs outside `f`: dropping items, the queues, `f` itself.
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut idle = Instant::now();
            while !shared.is_cancelled() {
                let Some((i, item)) = recv(&input, &shared) else {
                    break;
                };
                index = i;
                let start = Instant::now();
                c.wait_input += start - idle;
                let result = catch_unwind(AssertUnwindSafe(|| f(item)));
                let done = Instant::now();
                c.busy += done - start;
                c.items += 1;
                let error = match result {
                    Ok(Ok(out)) => {
                        let sent = send(&output, (i, out), &shared);
                        idle = Instant::now();
                        c.wait_output += idle - done;
                        if sent {
                            continue;
                        }
                        break;
                    }
                    Ok(Err(e)) => PipelineError::failed(Arc::clone(&name), i, e),
                    Err(payload) => PipelineError::panicked(Arc::clone(&name), i, &*payload),
                };
                shared.fail(error);
                break;
            }
        }));
        if let Err(payload) = outcome {
            shared.fail(PipelineError::panicked(Arc::clone(&name), index, &*payload));
        }
        shared.merge(part, c);
        drop(output);
    }
}

/// The smallest default queue: below it, cheap items spend most of their time waking threads
/// (a million trivial items through three stages: 3.5-7 s with queues of 2 x workers against
/// 0.46 s with queues of 256, measured on 2 cores).
pub(crate) const DEFAULT_MIN_CAPACITY: usize = 64;
