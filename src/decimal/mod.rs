//! Exact decimal big numbers: [`DecNat`], naturals in base 10^19, with NTT multiplication on
//! every core. A number type and nothing more: it knows no Fibonacci.
//! [`fib_in::<DecNat>`](crate::fib::fib_in) and the [`Fibonacci`](crate::fib::Fibonacci)
//! engine compute F(n) in it.
//!
//! Printing F(n) from binary costs far more than computing it (num-bigint: 7.3 s for F(10^8),
//! 30.7 s more for its text). Computed in base-10^19 limbs, F(n) prints with a linear copy.
//!
//! # How to use
//!
//! ```
//! use parkit::decimal::DecNat;
//! use parkit::fib::fib_in;
//!
//! let f: DecNat = fib_in(1000);
//! let mut text = Vec::new();
//! f.write_to(&mut text).unwrap();
//! assert_eq!(text.len() as u64, f.digit_count());
//! assert!(text.starts_with(b"43466557686937456435"));
//! // Arithmetic like BigUint's, and conversions both ways.
//! let b = num_bigint::BigUint::from(&f);
//! assert_eq!(DecNat::from(&b), f);
//! ```
//!
//! # Design
//!
//! A [`DecNat`] is a `Vec<u64>` of limbs below 10^19, little-endian, normalized. Additions and
//! small products carry in base 10^19; a two-word value is split by the base with a
//! precomputed-reciprocal division (10^19 > 2^63 is already normalized), two multiplications.
//!
//! Products pick an algorithm by the smaller operand's length ([`MulAlgorithm`]):
//!
//! - schoolbook, column by column with a three-word accumulator, below 80 limbs (128 for
//!   squares, which compute each off-diagonal product once);
//! - Karatsuba (subtractive, no carry limb in the middle product) below 448 limbs (512 for
//!   squares);
//! - a number-theoretic transform, limbs transformed as they are and the coefficients rebuilt
//!   by Garner's CRT straight into base 10^19, in one of two kinds:
//!   - where the CPU has FMA lanes (AVX-512 or AVX2, detected at run time) and the smaller
//!     operand has at most 14,269,455 limbs: three primes below `2^50`, arithmetic in `f64`
//!     with fused multiply-add, eight or four lanes at a time, the pointwise product fused into
//!     the four-step row pass; see `fma.rs` (`PARKIT_NTT=integer` in the environment turns
//!     it off, `PARKIT_NTT=avx2` caps it at four lanes);
//!   - otherwise three primes below `2^62` in integers, one lane: exact while the smaller
//!     operand has fewer than `2^59` limbs; transform lengths `2^k` and `3 * 2^k` up to
//!     `3 * 2^32`, so products up to about `1.3e10` limbs (`2.4e11` digits); a longer product
//!     panics. Butterflies use Shoup multiplication with lazy reduction, pointwise products
//!     Montgomery. Transforms up to `2^16` points work in place level by level (in L2);
//!     longer ones use the four-step method (column groups, twist, rows) so every pass works
//!     in cache; see `ntt.rs`.
//!
//! Parallelism lives inside the big products: the three primes under
//! `rayon::join(a, || rayon::join(b, c))`, the two forward transforms of a product under
//! `join`, the column groups and rows of a four-step transform and the chunks of the radix-3,
//! pointwise and CRT passes on rayon from `2^14` points. Transforms past `2^22` points run the
//! primes one after the other (each still parallel inside) to keep the peak memory near four
//! transform arrays. In the Fibonacci doubling ([`crate::fib`]) the two squarings of a step run
//! under `join` from 128 to `2^20` limbs; past that each is parallel inside and running them in
//! turn saves memory. While a whole computation runs in a buffer scope (the Fibonacci code
//! opens one around each doubling), freed transform buffers are recycled instead of returned
//! to the allocator (which would unmap and re-fault them every step: a quarter of the run time
//! went to page faults and TLB shoot-downs); the pool empties when the scope ends.
//!
//! The thresholds were measured on the 2-core development machine (shared with other builds),
//! as minima of 25 runs on one and two threads and as criterion medians; the `decimal` bench
//! (`decimal/mul/*`, `decimal/square/*`) reproduces the curves:
//!
//! | crossover | limbs (smaller operand) | time there |
//! |---|---|---|
//! | schoolbook -> Karatsuba, product | 80 | 5 us |
//! | schoolbook -> Karatsuba, square | 128 | 7 us |
//! | Karatsuba -> NTT, product | 448 | 73 us |
//! | Karatsuba -> NTT, square | 512 | 58 us |
//! | in-place -> four-step transform | `2^16` points | 0.53 ms per transform |
//!
//! Measured end to end (F(n) computed and written to a file, same machine, shared, medians):
//! 0.04 s for n = 10^7, 0.65 s for n = 10^8 and 5 to 6 s for n = 10^9 (peak RSS 494 MB, 2.4
//! times the 209 MB of text), against 0.36 s, 3.15 s and 49 s for `str(gmpy2.fib(n))` (GMP).
//!
//! Text: [`DecNat::write_to`] and `Display` convert blocks of limbs to ASCII eight digits at a
//! time in one `u64` (SIMD within a register), in parallel for big numbers, and write each
//! block as it is done: no `String` of the whole number.

mod convert;
mod fma;
mod karatsuba;
mod limbs;
mod mul;
mod nat;
mod ntt;
mod text;

#[cfg(test)]
mod tests;

pub use mul::MulAlgorithm;
pub use nat::{DecNat, ParseDecNatError};
pub(crate) use ntt::BufferScope;
