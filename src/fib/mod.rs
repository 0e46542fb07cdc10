//! Exact Fibonacci numbers, over two number types: F(n) by fast doubling with parallel
//! products in num-bigint's [`BigUint`] or in base 10^19 ([`DecNat`](crate::decimal::DecNat),
//! whose text is a linear copy), a machine-word fast path, F(n) mod m without the big number,
//! and the [`Fibonacci`] engine that plans batches around a shared cache.
//!
//! This module sits above the number types: [`FibNumber`] says what fast doubling, stepping
//! and the addition formula need from a number, and everything here (doubling, jumps, steps,
//! the planner, `batch_map`) is written once over it. [`decimal`](crate::decimal) is a number
//! type that knows no Fibonacci.
//!
//! # How to use
//!
//! - One value: [`fib`] (or [`fib_pair`] for (F(n), F(n+1))); in base 10^19,
//!   [`fib_in::<DecNat>`](fib_in) and [`fib_pair_in`].
//! - Many values, or values over time: a [`Fibonacci`] engine, whose [`Fibonacci::batch`]
//!   reuses earlier results and spreads the work over its threads.
//! - Only some digits: [`fib_mod`], [`last_digits`] and [`digit_count`] never build F(n), so
//!   they work for every `u64` n.
//!
//! Sizes: F(n) has about 0.2090 n decimal digits and 0.6942 n bits; F(10^9) is 209 million
//! digits (87 MB in binary). [`working_bytes`] estimates what a computation needs, so a caller
//! can refuse an input up front.

mod cost;
mod digits;
mod doubling;
mod engine;
mod modular;
mod number;
mod parallel;
mod small;
mod steps;
mod tuning;

use num_bigint::BigUint;

pub use digits::{WORKING_COPIES, bit_estimate, digit_count, value_bytes, working_bytes};
pub use engine::{
    BuildError, Cancelled, DEFAULT_CACHE_BYTES, DecimalPair, Fibonacci, FibonacciBuilder, MAX_N,
};
pub use modular::{advance_mod, fib_mod, fib_pair_mod, fib_pair_mod_pow10, last_digits, zero_pad};
pub use number::FibNumber;
pub use small::{MAX_N as U128_MAX_N, fib_u128};
pub use steps::{for_each_in, for_each_mod};
pub use tuning::{Thresholds, set_thresholds, thresholds};

/// How far apart two inputs may be for the later one to be reached from the earlier by
/// additions (one per step) rather than by a fresh computation: 64.
///
/// Every stepping walk in the crate uses it: [`for_each_in`], [`for_each_mod`], the
/// [`Fibonacci`] engine's planner (which also weighs steps against a fresh start or the
/// addition formula by its cost model) and [`sequence_costs`].
///
/// # Examples
///
/// ```
/// use parkit::fib::{STEP_GAP, sequence_costs};
///
/// let near = sequence_costs(&[1_000_000, 1_000_000 + STEP_GAP])[1];
/// let far = sequence_costs(&[1_000_000, 1_000_000 + STEP_GAP + 1])[1];
/// assert!(near * 10.0 < far);
/// ```
pub const STEP_GAP: u64 = 64;

/// F(n), exactly.
///
/// Fast doubling from the machine-word table (n <= 186 is a table look-up), two squarings per
/// bit of n, the last step a single product. Big products run in parallel on the current rayon
/// pool (call it inside `pool.install` to choose the threads): the two squarings of a step under
/// `rayon::join`, and each big product cut into three parallel half-size products, past the
/// sizes in [`thresholds`].
///
/// Time grows like num-bigint's multiplication (about n^1.47); memory is a few copies of the
/// result ([`working_bytes`]).
///
/// # Examples
///
/// ```
/// use parkit::fib::fib;
///
/// assert_eq!(fib(0).to_string(), "0");
/// assert_eq!(fib(10).to_string(), "55");
/// assert_eq!(fib(200).to_string(), "280571172992510140037611932413038677189525");
/// // Cassini: F(n-1) F(n+1) - F(n)^2 = (-1)^n
/// let n = 10_001;
/// assert_eq!(fib(n - 1) * fib(n + 1) + 1u32, fib(n) * fib(n));
/// ```
#[must_use]
pub fn fib(n: u64) -> BigUint {
    doubling::fib(n)
}

/// F(n), exactly, in the number type `N`: [`fib`] for [`BigUint`], and for
/// [`DecNat`](crate::decimal::DecNat) F(n) in base 10^19, whose text is a linear copy.
///
/// One fast doubling for every type (see [`FibNumber`]): from the machine-word table, two
/// squarings per bit of n (under `rayon::join` where the type says so), the last step a
/// single product; big products are parallel inside, on the current rayon pool.
///
/// # Examples
///
/// ```
/// use parkit::decimal::DecNat;
/// use parkit::fib::{fib, fib_in};
///
/// let d: DecNat = fib_in(10_001);
/// assert_eq!(d.to_string(), fib(10_001).to_string());
/// // Cassini in base 10^19: F(n-1) F(n+1) - F(n)^2 = (-1)^n
/// let n = 10_001;
/// assert_eq!(&fib_in::<DecNat>(n - 1) * &fib_in::<DecNat>(n + 1) + 1, d.square());
/// ```
#[must_use]
pub fn fib_in<N: FibNumber>(n: u64) -> N {
    doubling::fib(n)
}

/// The pair (F(n), F(n+1)) in the number type `N`.
///
/// # Examples
///
/// ```
/// use parkit::decimal::DecNat;
/// use parkit::fib::{fib, fib_pair_in};
///
/// let (a, b) = fib_pair_in::<DecNat>(1000);
/// assert_eq!((a.to_string(), b.to_string()), (fib(1000).to_string(), fib(1001).to_string()));
/// ```
///
/// # Panics
///
/// Panics if `n` is `u64::MAX` (F(n+1) has no index), as well as on memory exhaustion.
#[must_use]
pub fn fib_pair_in<N: FibNumber>(n: u64) -> (N, N) {
    doubling::fib_pair(n)
}

/// The pair (F(n), F(n+1)) as [`fib_pair_in`] computes it, or `None` when `cancelled()`
/// returns `true`: it is asked between two doubling steps, so a computation stops within one
/// step (the last and largest takes about half of the whole time).
///
/// # Examples
///
/// ```
/// use parkit::decimal::DecNat;
/// use parkit::fib::{fib_pair_in, fib_pair_until};
///
/// assert_eq!(fib_pair_until::<DecNat>(5000, &|| false), Some(fib_pair_in(5000)));
/// assert_eq!(fib_pair_until::<DecNat>(5000, &|| true), None);
/// // Small n are a table look-up, with no step to stop between.
/// assert_eq!(fib_pair_until::<DecNat>(10, &|| true), Some(fib_pair_in(10)));
/// ```
///
/// # Panics
///
/// As [`fib_pair_in`]: if `n` is `u64::MAX`, and on memory exhaustion.
#[must_use]
pub fn fib_pair_until<N: FibNumber>(n: u64, cancelled: &dyn Fn() -> bool) -> Option<(N, N)> {
    doubling::fib_pair_until(n, cancelled)
}

/// The pair (F(n), F(n+1)): the start of a run that continues by additions.
///
/// # Examples
///
/// ```
/// use parkit::fib::{fib, fib_pair};
///
/// let (a, b) = fib_pair(1000);
/// assert_eq!(a, fib(1000));
/// assert_eq!(b, fib(1001));
/// ```
///
/// # Panics
///
/// Panics if `n` is `u64::MAX` (F(n+1) has no index), as well as on memory exhaustion.
#[must_use]
pub fn fib_pair(n: u64) -> (BigUint, BigUint) {
    doubling::fib_pair(n)
}

/// Estimated cost, in nanoseconds on one core, of each F(n) of `ns` computed in this order: a
/// value at most [`STEP_GAP`] past the previous one is reached by additions, any other by a fresh fast
/// doubling. The planner's cost model (fitted on the development machine; only ratios matter).
///
/// For cutting a sequence of inputs into pieces of equal work, with
/// [`schedule::split_contiguous`](crate::schedule::split_contiguous), as `fibo submit` does.
///
/// # Examples
///
/// ```
/// use parkit::fib::sequence_costs;
///
/// let c = sequence_costs(&[1_000_000, 1_000_001, 5, 2_000_000]);
/// // The step after 1_000_000 is far cheaper than the fresh start of 2_000_000.
/// assert!(c[1] * 100.0 < c[3]);
/// assert!(c[0] < c[3]);
/// ```
#[must_use]
pub fn sequence_costs(ns: &[u64]) -> Vec<f64> {
    cost::sequence(ns)
}
