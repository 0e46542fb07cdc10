//! Exact Fibonacci numbers: F(n) as a [`BigUint`] by fast doubling with parallel products, a
//! machine-word fast path, F(n) mod m without the big number, and the [`Fibonacci`] engine that
//! plans batches around a shared cache.
//!
//! # How to use
//!
//! - One value: [`fib`] (or [`fib_pair`] for (F(n), F(n+1))).
//! - Many values, or values over time: a [`Fibonacci`] engine, whose [`Fibonacci::batch`]
//!   reuses earlier results and spreads the work over its threads.
//! - Only some digits: [`fib_mod`], [`last_digits`] and [`digit_count`] never build F(n), so
//!   they work for every `u64` n.
//!
//! Sizes: F(n) has about 0.2090 n decimal digits and 0.6942 n bits; F(10^9) is 209 million
//! digits (87 MB in binary). [`working_bytes`] estimates what a computation needs, so a caller
//! can refuse an input up front.

mod cost;
mod decimal;
mod digits;
mod doubling;
mod engine;
mod modular;
mod small;
mod tuning;

use num_bigint::BigUint;

pub use decimal::to_decimal;
pub use digits::{WORKING_COPIES, bit_estimate, digit_count, value_bytes, working_bytes};
pub use engine::{
    BuildError, Cancelled, DEFAULT_CACHE_BYTES, DecimalPair, Fibonacci, FibonacciBuilder, MAX_N,
};
pub use modular::{advance_mod, fib_mod, fib_pair_mod, fib_pair_mod_pow10, last_digits, zero_pad};
pub use small::{MAX_N as U128_MAX_N, fib_u128};
pub use tuning::{Thresholds, set_thresholds, thresholds};

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
    assert!(n < u64::MAX, "fib_pair: n + 1 overflows u64");
    doubling::fib_pair(n)
}

/// Estimated cost, in nanoseconds on one core, of each F(n) of `ns` computed in this order: a
/// value at most 64 past the previous one is reached by additions, any other by a fresh fast
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
