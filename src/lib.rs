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
//! The patterns underneath are rayon-style calls on the current rayon pool:
//!
//! ```
//! use parkit::decompose::par_range;
//! use parkit::granularity::Granularity;
//! use parkit::prelude::*;
//! use rayon::prelude::*;
//!
//! // Data decomposition over a u64 range, in tasks of about 50 µs measured as it runs.
//! let squares: u64 = par_range(0..1000)
//!     .with_granularity(Granularity::tuned())
//!     .map(|n| n * n)
//!     .sum();
//! assert_eq!(squares, 332_833_500);
//! ```
//!
//! # Crate layout
//!
//! - [`memo`]: [`MemoCache`](memo::MemoCache), a DashMap-backed cache where each key is
//!   computed once, with a memory budget.
//! - [`granularity`]: [`Granularity`](granularity::Granularity), one policy for how finely
//!   work is cut (Auto, Sequential, MinLen, ChunkSize, Chunks, Tuned), taken by `divide`,
//!   `decompose` and the Fibonacci engine's batch planner.
//! - [`divide`]: divide and conquer over `rayon::join` with the cutoff from a Granularity.
//! - [`decompose`]: data decomposition in rayon's vocabulary: the `with_granularity` adaptor
//!   for any indexed parallel iterator, `par_range` for ranges of `u64`, and `par_chunks_by`
//!   for chunks of a slice.
//! - [`pipeline`]: task decomposition into stages with threads of their own, bounded queues,
//!   ordered output, errors and panics carried to the caller, per-stage counters. It takes
//!   workers per stage and queue capacities rather than a Granularity: items go from stage to
//!   stage one at a time.
//! - [`schedule`]: largest-first dynamic mapping, LPT, affinity and contiguous partitions,
//!   driven by a cost estimate per task rather than a Granularity.
//! - [`prelude`]: the traits that give rayon iterators this crate's adaptors.
//! - [`baseline`]: the book's shared queue with a Condvar, done right, and a thread per input.
//! - [`decimal`]: natural numbers in base 10^19 with parallel NTT multiplication, whose text is
//!   a linear copy: a number type that knows no Fibonacci.
//! - `crawl` (feature `crawl`): the book's web crawler, a fetch -> extract -> organize
//!   pipeline with new URLs fed back to the fetchers.
//! - [`fib`]: above both number types (`BigUint`, `DecNat`): one fast doubling written over
//!   [`FibNumber`](fib::FibNumber), the mod-m path, digit counts, and the
//!   [`Fibonacci`](fib::Fibonacci) batch engine with its one cache.
//! - `fibo` (binary, `src/bin/fibo/`): the command-line tool, the web service and the Celery
//!   worker and client, built on this library.
//!
//! Each layer uses only the ones before it: granularity, then the patterns (`divide`,
//! `decompose`, `pipeline`, `schedule`), `memo`, the number type (`decimal`), `fib`, and the
//! binary; `crawl` and `baseline` sit on the patterns.
//!
//! # Naming
//!
//! As in rayon and std: `par_*` for the parallel version of a sequential operation, `try_*`
//! for a fallible one, `*_in` for a version generic over the number type. Builders
//! ([`FibonacciBuilder`](fib::FibonacciBuilder), [`Pipeline`](pipeline::Pipeline)'s stages,
//! the crawler's) configure with bare names (`threads(4)`, `capacity(64)`), like rayon's
//! `ThreadPoolBuilder` and `std::thread::Builder`; `with_*` is kept for constructors
//! ([`MemoCache::with_budget`](memo::MemoCache::with_budget) and `with_weigher`, like
//! `Vec::with_capacity` and `HashMap::with_hasher`) and for iterator adaptors
//! (`with_granularity`, like rayon's `with_min_len`).
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

/// The traits that give rayon's iterators and slices this crate's adaptors:
/// `use parkit::prelude::*;` beside `use rayon::prelude::*;`.
///
/// # Examples
///
/// ```
/// use parkit::decompose::par_range;
/// use parkit::granularity::Granularity;
/// use parkit::prelude::*;
/// use rayon::prelude::*;
///
/// let evens = par_range(0..10).with_granularity(Granularity::Chunks(2)).filter(|n| n % 2 == 0);
/// assert_eq!(evens.count(), 5);
/// let v = [1, 2, 3, 4, 5];
/// assert_eq!(v.par_chunks_by(Granularity::ChunkSize(2)).count(), 3);
/// ```
pub mod prelude {
    pub use crate::decompose::{GranularityExt, ParChunksBy};
}

pub use num_bigint;
