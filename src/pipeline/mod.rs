//! Task decomposition as a pipeline: stages, each with worker threads of its own, between
//! bounded queues, with output in input order.
//!
//! A [`Pipeline`] pulls items from a source iterator and passes each through a chain of stages
//! (`fetch`, then `parse`, then `store`, ...). Every stage runs its function on as many threads
//! as it is given, so a slow stage gets more workers and a fast one fewer; bounded queues
//! between the stages keep memory in check and make a slow stage push back on the ones before
//! it. The output comes out in input order (or in completion order, after
//! [`unordered`](Pipeline::unordered)), and a [`Report`] tells where the time went.
//!
//! ```
//! use parkit::pipeline::Pipeline;
//!
//! let (lengths, report) = Pipeline::from(vec!["a", "bb", "ccc", "dddd"])
//!     .stage("upper", 2, |s| s.to_uppercase())  // Fn(T) -> U, on 2 threads of its own
//!     .try_stage("check", 1, |s| if s.is_empty() { Err("empty") } else { Ok(s) })
//!     .stage("len", 2, |s| s.len())
//!     .capacity(8)                               // queue in front of "len"
//!     .collect_with_report()?;
//! assert_eq!(lengths, [1, 2, 3, 4]);
//! assert_eq!(report.stage("check").unwrap().items, 4);
//! # Ok::<(), parkit::pipeline::PipelineError>(())
//! ```
//!
//! # Threads of their own, not the rayon pool
//!
//! **The source iterator and every stage worker run on `std` threads created for the run**
//! (named `parkit-source` and `parkit-<stage>-<i>`), never on rayon's worker threads. Stages
//! wait on queues, and stage functions may block on I/O (files, sockets, `sleep`); a rayon
//! worker that blocks is a worker lost to the pool, and when every worker blocks waiting for
//! work that only the pool could do, the pool deadlocks (rayon issues #1269 and #835). So a
//! stage with 16 workers really runs 16 items at once even on 2 cores, which is what an
//! I/O-bound stage wants. A CPU-bound stage should have about as many workers as cores, and its
//! function may use rayon inside (`par_iter`, `join`): that work goes to the rayon pool as
//! usual, from a thread outside it. The source iterator may block too (reading a file, a
//! socket): it holds up only the pipeline's input.
//!
//! The calling thread of [`collect`](Pipeline::collect) and friends blocks until the run ends,
//! so call them from a thread of your own rather than from a rayon worker.
//!
//! # Errors and panics
//!
//! The first failure ends the run: an `Err` from a [`try_stage`](Pipeline::try_stage), from a
//! [`try_from_iter`](Pipeline::try_from_iter) source or from the sink of
//! [`try_for_each`](Pipeline::try_for_each), or a panic anywhere (a stage, the source
//! iterator's `next`, the sink of [`for_each`](Pipeline::for_each)). Panics are caught with
//! `catch_unwind` (the default panic hook still prints its message); they become a
//! [`PipelineError`] that names the stage and the 0-based input index of the item, never a
//! hang or an abort. The run stops promptly: no new item enters, queued items are dropped,
//! threads waiting on a queue wake up and exit, and threads busy with an item finish that item
//! and exit. With `panic = "abort"` in the build profile a panic aborts the process as usual.
//!
//! # Design
//!
//! - **Threads and queues.** The source thread sends `(index, item)` pairs into queue 0; the
//!   workers of stage `j` share queue `j`'s receiver and the sender of queue `j + 1`; the
//!   consumer (the thread calling [`collect`](Pipeline::collect), or the [`IntoIter`]) drains
//!   the last queue. All queues are bounded `crossbeam-channel` queues. The one in front of a
//!   stage holds `max(2 × workers, 64)` items by default (see
//!   [`capacity`](Pipeline::capacity)); the one in front of the consumer is as big as the last
//!   stage's. A full queue blocks its senders, so a slow stage pushes back up to the source.
//!   Small queues bound memory tightly, but nearly every hand-over through them wakes a
//!   sleeping thread, which costs microseconds: the floor of 64 lets threads run in bursts
//!   even for stages with few workers. `examples/pipeline.rs` compares the default queues
//!   with queues of 256 on items of a few microseconds: on 2 busy cores the two ran within
//!   noise of each other (four interleaved runs each, neither ahead in all of them), so
//!   bigger queues pay only for cheaper items or bursty stages.
//! - **Order without deadlock, in bounded memory.** Workers finish items out of order. The
//!   consumer keeps a reorder buffer (a `VecDeque` indexed by `index - delivered`) and, while
//!   it waits for the next item in order, *never stops draining the last queue*: if it did,
//!   the slow item's worker could block for ever sending into a queue full of later items. So
//!   memory is bounded at the source instead: item `i` is admitted only while
//!   `i < delivered + window` (the [`window`](Pipeline::window); by default the number of items
//!   the queues and workers hold), and the buffer never holds more than `window` items. The
//!   waiting source parks and is woken (with some hysteresis) by the consumer.
//!   [`unordered`](Pipeline::unordered) skips both the buffer and the window.
//! - **Cancellation.** One shared flag, set by the first error (which it records; later ones
//!   are dropped) or by the consumer going away. Threads look at it between items, and a
//!   thread blocked on a queue wakes every 10 ms to look at it: crossbeam's timed operations
//!   cost nothing extra per item, where a `select!` on a cancel channel costs several times a
//!   plain send on every item. The source, parked on the ordering window, is unparked.
//! - **Shutdown.** A run that ends normally joins its threads before returning (they are all
//!   exiting by then, so this takes no time). A run that fails, or whose [`IntoIter`] is
//!   dropped early, does not wait for them: a thread busy with an item may take as long as the
//!   item takes, so they are detached and exit on their own after that item.
//! - **Counters.** Each thread accumulates its items, busy time (inside the function) and
//!   waiting times (for input, for room in the next queue) in local variables and merges them
//!   into its stage's total once, as it exits: nothing shared is touched per item.
//!
//! # Locking
//!
//! The pipeline's threads block only on its queues, on the ordering window (the source), and inside
//! user functions; the only locks are held briefly to record the first error and to merge counters
//! at exit.

// builder: `Pipeline`, its settings and the ways to run it.
// stage:   starting a run: the queues, the source thread, the worker threads and their loops.
// shared:  what a run's threads share: cancel flag, first error, ordering window, totals.
// output:  the consumer's end: `IntoIter`, the reorder buffer, shutdown and the report.
// error:   `PipelineError`, `ErrorKind` and `panic_message`.
// stats:   `StageStats`, `Report` and its `StageTable`.
mod builder;
mod error;
mod output;
mod shared;
mod stage;
mod stats;

pub use builder::Pipeline;
pub use error::{ErrorKind, PipelineError, panic_message};
pub use output::IntoIter;
pub use stats::{Report, StageStats, StageTable};
