//! The book's designs written by hand, correctly: a shared queue guarded by a `Mutex` and a
//! `Condvar` with one thread per worker, and a thread per input. They are the baselines the
//! patterns are measured against, and a worked example of getting condition variables right.
//!
//! # The shared queue, done right
//!
//! The book's chapter 4 puts the inputs in a shared structure and wakes worker threads with a
//! `threading.Condition`. Written naively that can lose work or hang: a worker that checks
//! "is the queue empty?" and then waits can miss the notification sent in between (a lost
//! wake-up), a spurious wake-up can pop from an empty queue, and workers waiting for more input
//! never learn that none is coming. [`WorkQueue`] avoids each:
//!
//! - the check and the wait happen under the same lock, in a loop (`Condvar::wait_while`), so a
//!   push can never slip between them and spurious wake-ups re-check;
//! - a push notifies one waiter after the item is in the queue; closing notifies all;
//! - `close` marks the end of input: [`WorkQueue::pop`] returns `None` only when the queue is
//!   both empty and closed, so every item pushed before `close` is handed out exactly once.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

#[derive(Debug)]
struct State<T> {
    items: VecDeque<T>,
    closed: bool,
}

/// A multi-producer, multi-consumer queue on a `Mutex` and a `Condvar`, with an explicit end.
///
/// # Examples
///
/// ```
/// use parkit::baseline::WorkQueue;
///
/// let q = WorkQueue::new();
/// q.push(1);
/// q.push(2);
/// q.close();
/// assert_eq!((q.pop(), q.pop(), q.pop()), (Some(1), Some(2), None));
/// ```
#[derive(Debug)]
pub struct WorkQueue<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

impl<T> Default for WorkQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> WorkQueue<T> {
    /// An empty, open queue.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = parkit::baseline::WorkQueue::<u32>::new();
    /// assert!(q.is_empty());
    /// ```
    #[must_use]
    pub fn new() -> Self {
        WorkQueue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic elsewhere while holding the lock leaves the queue itself consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds an item and wakes one waiting worker.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = parkit::baseline::WorkQueue::new();
    /// q.push("a");
    /// assert_eq!(q.len(), 1);
    /// ```
    ///
    /// # Panics
    ///
    /// Panics if the queue was closed: pushing after the end of input is a bug.
    ///
    /// # Locking
    ///
    /// Takes the queue's lock briefly; never blocks for long.
    pub fn push(&self, item: T) {
        let mut s = self.lock();
        assert!(!s.closed, "WorkQueue::push after close");
        s.items.push_back(item);
        drop(s);
        self.ready.notify_one();
    }

    /// Marks the end of input and wakes every waiting worker.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = parkit::baseline::WorkQueue::<u8>::new();
    /// q.close();
    /// assert_eq!(q.pop(), None);
    /// ```
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// The next item, waiting while the queue is empty and open; `None` once it is empty and
    /// closed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use parkit::baseline::WorkQueue;
    ///
    /// let q = Arc::new(WorkQueue::new());
    /// let q2 = Arc::clone(&q);
    /// let t = std::thread::spawn(move || q2.pop());
    /// q.push(7);
    /// assert_eq!(t.join().unwrap(), Some(7));
    /// ```
    ///
    /// # Locking
    ///
    /// Blocks the calling thread on the condition variable. Call it from threads of your own, never
    /// from rayon's workers (a blocked worker can stall the pool).
    pub fn pop(&self) -> Option<T> {
        let s = self.lock();
        let mut s = self
            .ready
            .wait_while(s, |s| s.items.is_empty() && !s.closed)
            .unwrap_or_else(PoisonError::into_inner);
        s.items.pop_front()
    }

    /// Items waiting.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = parkit::baseline::WorkQueue::new();
    /// q.push(());
    /// assert_eq!(q.len(), 1);
    /// ```
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// Whether no item is waiting.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(parkit::baseline::WorkQueue::<i32>::new().is_empty());
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Chapter 4's design: the inputs in a shared [`WorkQueue`], `workers` threads taking items
/// until it is closed and empty. Returns, in input order, each result with the index of the
/// worker that computed it.
///
/// # Examples
///
/// ```
/// use parkit::baseline::condvar_map;
///
/// let out = condvar_map(vec![10u64, 20, 30], 2, |n| n * 2);
/// assert_eq!(out.iter().map(|(_, r)| *r).collect::<Vec<_>>(), [20, 40, 60]);
/// assert!(out.iter().all(|(w, _)| *w < 2));
/// ```
///
/// # Panics
///
/// Panics if `workers` is 0, or re-raises the first panic of `f` after all workers stopped.
///
/// # Locking
///
/// Blocks the calling thread until every input is done: the workers are threads of their own
/// and the caller pushes the inputs, so a call from a rayon worker ties up that worker.
pub fn condvar_map<T, R, F>(inputs: Vec<T>, workers: usize, f: F) -> Vec<(usize, R)>
where
    T: Send,
    R: Send,
    F: Fn(T) -> R + Sync,
{
    assert!(workers > 0, "condvar_map needs at least one worker");
    let n = inputs.len();
    let queue = WorkQueue::new();
    let results: Mutex<Vec<Option<(usize, R)>>> = Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|s| {
        for w in 0..workers {
            let (queue, results, f) = (&queue, &results, &f);
            s.spawn(move || {
                while let Some((i, item)) = queue.pop() {
                    let r = f(item);
                    results.lock().unwrap_or_else(PoisonError::into_inner)[i] = Some((w, r));
                }
            });
        }
        // The producer fills the queue while the workers already run, then closes it.
        for item in inputs.into_iter().enumerate() {
            queue.push(item);
        }
        queue.close();
    });
    results
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .into_iter()
        .map(|r| r.expect("every item was processed"))
        .collect()
}

/// The naive design: one thread per input. Fine for a handful of blocking inputs, wasteful
/// for many CPU-bound ones (each thread costs a stack and a kernel schedule).
///
/// # Examples
///
/// ```
/// assert_eq!(parkit::baseline::thread_per_input(vec![1, 2, 3], |x| x + 1), [2, 3, 4]);
/// ```
///
/// # Panics
///
/// Re-raises the first panic of `f`.
///
/// # Locking
///
/// Blocks the calling thread until every thread has finished.
pub fn thread_per_input<T, R, F>(inputs: Vec<T>, f: F) -> Vec<R>
where
    T: Send,
    R: Send,
    F: Fn(T) -> R + Sync,
{
    std::thread::scope(|s| {
        let handles: Vec<_> = inputs.into_iter().map(|x| s.spawn(|| f(x))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}
