//! The consumer's end: [`IntoIter`], which drains the last queue, puts items back in input
//! order, and shuts the run down.

use std::collections::VecDeque;
use std::fmt;
use std::iter::FusedIterator;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::task::Poll;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};

use super::error::{BoxError, PipelineError};
use super::shared::{Msg, Shared, recv};
use super::stage::{SINK, SOURCE, StageSpec};
use super::stats::{Counters, Report, StageStats};

/// The output of a running pipeline, one `Result` per item; made by `Pipeline::into_iter`
/// (the [`IntoIterator`] impl of [`Pipeline`](super::Pipeline)) or a `for` loop.
///
/// Yields `Ok(item)` in input order (in completion order after
/// [`unordered`](super::Pipeline::unordered)). After the first failure it yields that
/// `Err(PipelineError)` and then `None` for ever; the `Ok` items before it are a prefix of the
/// output, of unspecified length. After the last item it yields `None`, and
/// [`report`](IntoIter::report) holds the run's counters.
///
/// Dropping it before the end stops the run: every thread stops at its next item boundary or
/// queue operation. The drop does not wait for them: a worker in the middle of an item finishes
/// that item (and a source in the middle of `next` finishes that call) in the background, then
/// exits.
///
/// # Examples
///
/// ```
/// use parkit::pipeline::Pipeline;
///
/// let mut out = Pipeline::from(1..=1_000_000u64).stage("square", 2, |x| x * x).into_iter();
/// assert_eq!(out.next().unwrap()?, 1);
/// assert_eq!(out.next().unwrap()?, 4);
/// drop(out); // stops the source and the workers; nothing left running
/// # Ok::<(), parkit::pipeline::PipelineError>(())
/// ```
///
/// # Locking
///
/// `next` blocks the calling thread until the next item in order is ready, receiving (and
/// buffering) every item that arrives meanwhile, so that no worker waits on a full last queue while
/// the consumer waits for a slow item.
pub struct IntoIter<T> {
    rx: Receiver<Msg<T>>,
    shared: Arc<Shared>,
    specs: Vec<StageSpec>,
    handles: Vec<JoinHandle<()>>,
    ordered: bool,
    /// Items handed out so far; in ordered runs also the index of the next one.
    delivered: usize,
    /// Index of the item handed out last.
    last_index: usize,
    /// Ordered runs: slot `k` holds item `delivered + k` once it has arrived.
    pending: VecDeque<Option<T>>,
    started: Instant,
    finished: bool,
    report: Option<Report>,
}

impl<T> IntoIter<T> {
    pub(crate) fn new(
        rx: Receiver<Msg<T>>,
        shared: Arc<Shared>,
        specs: Vec<StageSpec>,
        handles: Vec<JoinHandle<()>>,
        ordered: bool,
        started: Instant,
    ) -> Self {
        IntoIter {
            rx,
            shared,
            specs,
            handles,
            ordered,
            delivered: 0,
            last_index: 0,
            pending: VecDeque::new(),
            started,
            finished: false,
            report: None,
        }
    }

    /// The run's counters, once the iterator has returned `None` after the last item; `None`
    /// before that or after an error.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::pipeline::Pipeline;
    ///
    /// let mut out = Pipeline::from(0..3u8).stage("inc", 1, |x| x + 1).into_iter();
    /// assert!(out.report().is_none());
    /// assert_eq!(out.by_ref().map(Result::unwrap).sum::<u8>(), 6);
    /// assert_eq!(out.report().unwrap().stages()[0].items, 3);
    /// ```
    pub fn report(&self) -> Option<&Report> {
        self.report.as_ref()
    }

    pub(crate) fn into_report(mut self) -> Option<Report> {
        self.report.take()
    }

    fn hand_out(&mut self, index: usize, item: T) -> Option<Result<T, PipelineError>> {
        self.delivered += 1;
        self.last_index = index;
        if self.ordered {
            self.shared.delivered_up_to(self.delivered);
        }
        Some(Ok(item))
    }

    /// Ends the run with its recorded error (`None` if there is none: the consumer itself
    /// cancelled).
    fn fail(&mut self) -> Option<Result<T, PipelineError>> {
        self.finished = true;
        self.shared.cancel();
        self.pending.clear();
        self.shared.take_error().map(Err)
    }

    /// Ends a successful run: every queue is closed, so every thread has merged its counters
    /// and is exiting; joining them takes no time.
    fn finish(&mut self) {
        self.finished = true;
        debug_assert!(self.pending.iter().all(Option::is_none));
        for handle in self.handles.drain(..) {
            // Worker and source threads catch every panic, so a join error cannot carry one
            // worth re-raising.
            let _ = handle.join();
        }
        let row = |part: usize, name: &str, workers| {
            StageStats::new(name, workers, self.shared.totals(part))
        };
        let stages = self
            .specs
            .iter()
            .enumerate()
            .map(|(j, s)| row(j + 1, &s.name, s.workers))
            .collect();
        self.report = Some(Report {
            source: row(0, SOURCE, 1),
            stages,
            sink: None,
            elapsed: self.started.elapsed(),
            items: self.delivered as u64,
        });
    }

    /// Runs `sink` on every item on this thread; the loop of `for_each` and `try_for_each`.
    pub(crate) fn drain_into<E, F>(mut self, mut sink: F) -> Result<Report, PipelineError>
    where
        E: Into<BoxError>,
        F: FnMut(T) -> Result<(), E>,
    {
        let mut c = Counters::default();
        let mut idle = Instant::now();
        while let Some(next) = self.next() {
            let item = next?;
            let start = Instant::now();
            c.wait_input += start - idle;
            let result = catch_unwind(AssertUnwindSafe(|| sink(item)));
            idle = Instant::now();
            c.busy += idle - start;
            c.items += 1;
            let error = match result {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => PipelineError::failed(SINK.into(), self.last_index, e.into()),
                Err(payload) => PipelineError::panicked(SINK.into(), self.last_index, &*payload),
            };
            self.shared.fail(error);
            return Err(self
                .fail()
                .and_then(Result::err)
                .expect("an error was recorded"));
        }
        let mut report = self.into_report().expect("a finished run has a report");
        report.sink = Some(StageStats::new(SINK, 1, c));
        Ok(report)
    }
}

impl<T> IntoIter<T> {
    /// The next item if it is ready now, without waiting: `Poll::Ready` with what
    /// [`next`](Iterator::next) would return (an item, the error, or `None` at the end), or
    /// `Poll::Pending` when the next item in order is still on its way.
    ///
    /// For a consumer that does something useful while it would wait, such as flushing what it
    /// has written so far so that a reader sees it at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::task::Poll;
    /// use std::time::Duration;
    /// use parkit::pipeline::Pipeline;
    ///
    /// let mut out = Pipeline::from(0..2u64)
    ///     .stage("slow", 1, |x| { std::thread::sleep(Duration::from_millis(200 * x)); x })
    ///     .into_iter();
    /// assert_eq!(out.next().unwrap()?, 0);
    /// assert!(out.try_next().is_pending()); // item 1 takes 200 ms
    /// assert_eq!(out.next().unwrap()?, 1);
    /// assert!(matches!(out.try_next(), Poll::Ready(None)));
    /// # Ok::<(), parkit::pipeline::PipelineError>(())
    /// ```
    ///
    /// # Locking
    ///
    /// Never blocks; items that have arrived out of order are buffered as [`next`](Iterator::next)
    /// buffers them.
    pub fn try_next(&mut self) -> Poll<Option<Result<T, PipelineError>>> {
        self.poll_until(Instant::now())
    }

    /// The next item if it is ready within `timeout`: as [`try_next`](IntoIter::try_next), but
    /// waits up to `timeout` (returning as soon as the item arrives) before `Poll::Pending`.
    ///
    /// For a consumer that must look at something else now and then while it waits (`fibo`
    /// checks whether the reader of its output is still there).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use parkit::pipeline::Pipeline;
    ///
    /// let mut out = Pipeline::from(0..1u64)
    ///     .stage("slow", 1, |x| { std::thread::sleep(Duration::from_millis(300)); x })
    ///     .into_iter();
    /// assert!(out.next_timeout(Duration::from_millis(10)).is_pending());
    /// let got = out.next_timeout(Duration::from_secs(30));
    /// assert!(matches!(got, std::task::Poll::Ready(Some(Ok(0)))));
    /// ```
    ///
    /// # Locking
    ///
    /// Blocks the calling thread for at most `timeout` (a little more when the run is cancelled
    /// meanwhile: noticed within 10 ms).
    pub fn next_timeout(&mut self, timeout: Duration) -> Poll<Option<Result<T, PipelineError>>> {
        self.poll_until(Instant::now() + timeout)
    }

    fn poll_until(&mut self, deadline: Instant) -> Poll<Option<Result<T, PipelineError>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        loop {
            if let Some(Some(_)) = self.pending.front() {
                let item = self.pending.pop_front().flatten().expect("checked");
                return Poll::Ready(self.hand_out(self.delivered, item));
            }
            if self.shared.is_cancelled() {
                return Poll::Ready(self.fail());
            }
            let (index, item) = match self.rx.try_recv() {
                Ok(msg) => msg,
                // Every queue closed: `next` ends the run without waiting.
                Err(TryRecvError::Disconnected) => return Poll::Ready(self.next()),
                Err(TryRecvError::Empty) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Poll::Pending;
                    }
                    let wait = (deadline - now).min(Duration::from_millis(10));
                    match self.rx.recv_timeout(wait) {
                        Ok(msg) => msg,
                        Err(RecvTimeoutError::Timeout) => continue,
                        Err(RecvTimeoutError::Disconnected) => return Poll::Ready(self.next()),
                    }
                }
            };
            if let Some(out) = self.place(index, item) {
                return Poll::Ready(out);
            }
        }
    }

    /// Hands out a received item if it is the next in order (or in an unordered run), else
    /// buffers it.
    fn place(&mut self, index: usize, item: T) -> Option<Option<Result<T, PipelineError>>> {
        if !self.ordered {
            return Some(self.hand_out(index, item));
        }
        // Ordered: the window keeps `index - delivered` below the window size.
        let offset = index - self.delivered;
        if offset == 0 {
            self.pending.pop_front();
            return Some(self.hand_out(index, item));
        }
        if self.pending.len() <= offset {
            self.pending.resize_with(offset + 1, || None);
        }
        self.pending[offset] = Some(item);
        None
    }
}

impl<T> Iterator for IntoIter<T> {
    type Item = Result<T, PipelineError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        loop {
            if let Some(Some(_)) = self.pending.front() {
                let item = self.pending.pop_front().flatten().expect("checked");
                return self.hand_out(self.delivered, item);
            }
            if self.shared.is_cancelled() {
                return self.fail();
            }
            let Some((index, item)) = recv(&self.rx, &self.shared) else {
                // Every queue closed (or the run was cancelled). Without an error the run is
                // complete: nothing was lost, so nothing is pending.
                if self.shared.is_cancelled() {
                    return self.fail();
                }
                if let Some(error) = self.shared.take_error() {
                    self.finished = true;
                    return Some(Err(error));
                }
                self.finish();
                return None;
            };
            if let Some(out) = self.place(index, item) {
                return out;
            }
        }
    }
}

impl<T> FusedIterator for IntoIter<T> {}

impl<T> Drop for IntoIter<T> {
    fn drop(&mut self) {
        if !self.finished {
            // Detaches the threads (dropping the handles) after telling them to stop.
            self.shared.cancel();
        }
    }
}

impl<T> fmt::Debug for IntoIter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntoIter")
            .field("ordered", &self.ordered)
            .field("delivered", &self.delivered)
            .field("buffered", &self.pending.iter().flatten().count())
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::task::Poll;
    use std::time::{Duration, Instant};

    use crate::pipeline::Pipeline;

    #[test]
    fn try_next_never_waits_and_keeps_the_order() {
        // Item 0 is slow, items 1.. are fast: they arrive first, wait in the buffer, and come
        // out in order once item 0 is there.
        let mut out = Pipeline::from(0..6u64)
            .stage("work", 3, |x| {
                if x == 0 {
                    std::thread::sleep(Duration::from_millis(300));
                }
                x
            })
            .into_iter();
        let started = Instant::now();
        assert!(out.try_next().is_pending());
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "try_next waited"
        );
        let mut got = Vec::new();
        loop {
            match out.try_next() {
                Poll::Ready(Some(x)) => got.push(x.unwrap()),
                Poll::Ready(None) => break,
                Poll::Pending => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        assert_eq!(got, [0, 1, 2, 3, 4, 5]);
        assert!(out.report().is_some());
        assert!(matches!(out.try_next(), Poll::Ready(None)));
        assert!(out.next().is_none());
    }

    #[test]
    fn try_next_reports_a_failure() {
        let mut out = Pipeline::from(0..3u64)
            .try_stage("check", 1, |x| if x == 1 { Err("bad") } else { Ok(x) })
            .into_iter();
        let mut seen = Vec::new();
        loop {
            match out.try_next() {
                Poll::Ready(Some(r)) => seen.push(r.is_ok()),
                Poll::Ready(None) => break,
                Poll::Pending => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        assert_eq!(seen.last(), Some(&false), "{seen:?}");
    }
}
