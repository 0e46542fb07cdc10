//! State every thread of one run shares: the cancel switch, the first error, the ordering
//! window's admission ticket, and the per-stage counter totals. Plus the two queue operations
//! that give up when the run is cancelled.

use std::sync::atomic::Ordering::{Acquire, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::{self, Thread};
use std::time::Duration;

use crossbeam_channel::{
    Receiver, RecvTimeoutError, SendTimeoutError, Sender, TryRecvError, TrySendError,
};

use super::error::PipelineError;
use super::stats::Counters;

/// What travels through the queues: the item's 0-based input index and the item.
pub(crate) type Msg<T> = (usize, T);

pub(crate) struct Shared {
    /// Set once, by the first error or by the consumer going away.
    cancelled: AtomicBool,
    error: Mutex<Option<PipelineError>>,
    /// Ordered runs: how many items the consumer has taken.
    delivered: AtomicUsize,
    /// Ordered runs: the `delivered` count the parked source waits for, `usize::MAX` if none.
    wake_at: AtomicUsize,
    source: OnceLock<Thread>,
    /// Index 0: the source; index `j + 1`: stage `j`.
    totals: Vec<Mutex<Counters>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn new(parts: usize) -> Self {
        Shared {
            cancelled: AtomicBool::new(false),
            error: Mutex::new(None),
            delivered: AtomicUsize::new(0),
            wake_at: AtomicUsize::new(usize::MAX),
            source: OnceLock::new(),
            totals: (0..parts).map(|_| Mutex::default()).collect(),
        }
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Acquire)
    }

    /// Stops the run: every thread gives up at its next item boundary or queue operation (a
    /// thread already blocked on a queue notices within [`POLL`]).
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, SeqCst);
        if let Some(source) = self.source.get() {
            source.unpark();
        }
    }

    /// Records `error` unless an earlier one is already recorded, then cancels.
    pub(crate) fn fail(&self, error: PipelineError) {
        {
            let mut slot = lock(&self.error);
            if slot.is_none() {
                *slot = Some(error);
            }
        }
        self.cancel();
    }

    pub(crate) fn take_error(&self) -> Option<PipelineError> {
        lock(&self.error).take()
    }

    pub(crate) fn set_source(&self, thread: Thread) {
        // Set once, right after the source thread is spawned.
        let _ = self.source.set(thread);
    }

    /// Source side of the ordering window: waits until item `index` may enter, that is until
    /// `index < delivered + window`. Returns `false` if the run was cancelled meanwhile.
    ///
    /// When it has to wait, it asks to be woken only once a quarter of the window is free again,
    /// so that a full window costs one wake-up per few items, not one per item.
    pub(crate) fn admit(&self, index: usize, window: usize) -> bool {
        if index < self.delivered.load(SeqCst).saturating_add(window) {
            return true;
        }
        // index >= window here. Every item before `index` gets delivered eventually, so the
        // target, at most `index`, is reachable.
        let target = index + 1 - window + (window - 1) / 4;
        // Dekker-style handshake with `delivered_up_to`: we publish the target, then read the
        // count; the consumer publishes the count, then reads the target. With SeqCst on all
        // four, at least one side sees the other, and `unpark` before `park` is not lost.
        self.wake_at.store(target, SeqCst);
        let admitted = loop {
            if self.is_cancelled() {
                break false;
            }
            if self.delivered.load(SeqCst) >= target {
                break true;
            }
            thread::park();
        };
        self.wake_at.store(usize::MAX, SeqCst);
        admitted
    }

    /// Consumer side of the ordering window: `count` items have been taken.
    pub(crate) fn delivered_up_to(&self, count: usize) {
        self.delivered.store(count, SeqCst);
        if count >= self.wake_at.load(SeqCst) {
            if let Some(source) = self.source.get() {
                source.unpark();
            }
        }
    }

    /// Adds one thread's counters to its part's total (0: source, `j + 1`: stage `j`).
    pub(crate) fn merge(&self, part: usize, counters: Counters) {
        *lock(&self.totals[part]) += counters;
    }

    pub(crate) fn totals(&self, part: usize) -> Counters {
        *lock(&self.totals[part])
    }
}

/// How long a thread blocked on a queue sleeps before it looks at the cancel flag again.
///
/// Queue operations block in crossbeam with a timeout instead of a `select!` on a cancel
/// channel: a `select!` costs several times a plain operation, on every item, while the poll
/// costs nothing per item and bounds how late a blocked thread notices a cancellation.
const POLL: Duration = Duration::from_millis(10);

/// Takes the next message; `None` when the queue is closed and empty or the run is cancelled.
///
/// # Locking
///
/// Blocks until a message arrives, the senders are gone, or the run is cancelled (noticed within
/// [`POLL`]).
pub(crate) fn recv<T>(rx: &Receiver<T>, shared: &Shared) -> Option<T> {
    match rx.try_recv() {
        Ok(msg) => return Some(msg),
        Err(TryRecvError::Disconnected) => return None,
        Err(TryRecvError::Empty) => {}
    }
    loop {
        match rx.recv_timeout(POLL) {
            Ok(msg) => return Some(msg),
            Err(RecvTimeoutError::Disconnected) => return None,
            Err(RecvTimeoutError::Timeout) if shared.is_cancelled() => return None,
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
}

/// Sends a message; `false` when the receivers are gone or the run is cancelled (the message
/// is then dropped).
///
/// # Locking
///
/// Blocks while the queue is full, until there is room, the receivers are gone, or the run is
/// cancelled (noticed within [`POLL`]).
pub(crate) fn send<T>(tx: &Sender<T>, msg: T, shared: &Shared) -> bool {
    let mut msg = match tx.try_send(msg) {
        Ok(()) => return true,
        Err(TrySendError::Disconnected(_)) => return false,
        Err(TrySendError::Full(msg)) => msg,
    };
    loop {
        match tx.send_timeout(msg, POLL) {
            Ok(()) => return true,
            Err(SendTimeoutError::Disconnected(_)) => return false,
            Err(SendTimeoutError::Timeout(_)) if shared.is_cancelled() => return false,
            Err(SendTimeoutError::Timeout(back)) => msg = back,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::bounded;
    use std::sync::Arc;

    #[test]
    fn cancel_wakes_blocked_queue_operations() {
        let shared = Arc::new(Shared::new(1));
        let (tx, rx) = bounded::<u8>(1);
        assert!(send(&tx, 1, &shared));
        let s = Arc::clone(&shared);
        let blocked_send = thread::spawn(move || send(&tx, 2, &s));
        let (_tx2, rx2) = bounded::<u8>(1);
        let s = Arc::clone(&shared);
        let blocked_recv = thread::spawn(move || recv(&rx2, &s));
        thread::sleep(Duration::from_millis(20));
        shared.cancel();
        assert!(!blocked_send.join().unwrap());
        assert_eq!(blocked_recv.join().unwrap(), None);
        assert_eq!(rx.try_recv(), Ok(1));
    }

    #[test]
    fn window_admits_and_wakes() {
        let shared = Arc::new(Shared::new(1));
        let s = Arc::clone(&shared);
        let source = thread::spawn(move || (0..20).all(|i| s.admit(i, 4)));
        shared.set_source(source.thread().clone());
        for n in 1..=16 {
            thread::sleep(Duration::from_millis(1));
            shared.delivered_up_to(n);
        }
        assert!(source.join().unwrap());

        let shared = Arc::new(Shared::new(1));
        let s = Arc::clone(&shared);
        let stuck = thread::spawn(move || s.admit(100, 4));
        shared.set_source(stuck.thread().clone());
        thread::sleep(Duration::from_millis(20));
        shared.cancel();
        assert!(!stuck.join().unwrap());
    }

    #[test]
    fn first_error_wins() {
        let shared = Shared::new(1);
        shared.fail(PipelineError::failed("a".into(), 1, "one".into()));
        shared.fail(PipelineError::failed("b".into(), 2, "two".into()));
        assert!(shared.is_cancelled());
        assert_eq!(shared.take_error().unwrap().stage(), "a");
        assert!(shared.take_error().is_none());
    }
}
