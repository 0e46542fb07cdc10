//! # parkit
//!
//! Data-parallel patterns on rayon's work-stealing pool, a compute-once concurrent memo cache,
//! and exact big Fibonacci numbers, with the `fibo` command-line tool on top.
//!
//! # How to use
//!
//! ```
//! use parkit::fib::{fib, Fibonacci};
//!
//! // One value, its big products run in parallel.
//! assert_eq!(fib(90).to_string(), "2880067194370816120");
//!
//! // Many values through one engine and its cache: duplicates computed once, neighbours
//! // reached by additions, the work spread over every core, results in input order.
//! let engine = Fibonacci::new();
//! let values = engine.batch(&[100, 10, 100]);
//! assert_eq!(values[1].to_string(), "55");
//! assert_eq!(values[0], values[2]);
//! ```
//!
//! # Crate layout
//!
//! - [`memo`]: [`MemoCache`](memo::MemoCache), a DashMap-backed cache where each key is
//!   computed once, with a memory budget.
//! - [`granularity`]: [`Granularity`](granularity::Granularity), one policy for how finely
//!   work is cut, shared by every pattern (Auto, Sequential, MinLen, ChunkSize, Chunks, Tuned).
//! - [`divide`]: divide and conquer over `rayon::join` with the cutoff from a Granularity.
//! - [`decompose`]: data decomposition: map, for_each and map/reduce over slices and ranges.
//! - [`pipeline`]: task decomposition into stages with threads of their own, bounded queues,
//!   ordered output, errors and panics carried to the caller, per-stage counters.
//! - [`schedule`]: largest-first dynamic mapping, LPT and affinity partitions.
//! - [`baseline`]: the book's shared queue with a Condvar, done right, and a thread per input.
//! - [`decimal`]: natural numbers in base 10^19 with parallel NTT multiplication, and F(n)
//!   computed directly in decimal, so printing is a linear copy.
//! - `crawl` (feature `crawl`): the book's web crawler, a fetch -> extract -> organize
//!   pipeline with new URLs fed back to the fetchers.
//! - [`fib`]: fast doubling, the mod-m path, digit counts, and the [`Fibonacci`](fib::Fibonacci)
//!   batch engine.
//! - `fibo` (binary, `src/bin/fibo/`): the command-line tool, the web service and the Celery
//!   worker and client, built on this library.
#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations)]
#![warn(unreachable_pub)]

pub mod baseline;
#[cfg(feature = "crawl")]
pub mod crawl;
pub mod decimal;
pub mod decompose;
pub mod divide;
pub mod fib;
pub mod granularity;
pub mod memo;
pub mod pipeline;
pub mod schedule;

pub use num_bigint;
