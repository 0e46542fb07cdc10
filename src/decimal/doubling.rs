//! Fast doubling for F(n) directly in base 10^19, GMP style.
//!
//! The state is (F(k), F(k-1)); each step costs two squarings:
//!
//! ```text
//! F(2k-1) = F(k)^2 + F(k-1)^2
//! F(2k+1) = 4 F(k)^2 - F(k-1)^2 + 2(-1)^k
//! F(2k)   = F(2k+1) - F(2k-1)
//! ```
//!
//! and [`fib`] replaces the last step by one product: `F(2k) = F(k) (F(k) + 2 F(k-1))` or
//! `F(2k+1) = (2F(k) + F(k-1)) (2F(k) - F(k-1)) + 2(-1)^k`. The walk starts from the longest
//! prefix of n's bits whose F fits in a `u128`.

use super::nat::DecNat;
use super::ntt::BufferScope;
use crate::fib::{U128_MAX_N, fib_u128};

/// The two squarings of a step run under `rayon::join` from this many limbs...
const JOIN_MIN_LIMBS: usize = 128;

/// ...and up to this many: past it each squaring is parallel inside and running them one after
/// the other halves the working memory.
const JOIN_MAX_LIMBS: usize = 1 << 20;

/// One doubling step: (F(k), F(k-1)) -> (F(2k), F(2k-1)), or -> (F(2k+1), F(2k)) when `odd`.
fn step(a: DecNat, b: DecNat, k_is_odd: bool, odd: bool) -> (DecNat, DecNat) {
    let len = a.limbs().len();
    let (a2, b2) = if (JOIN_MIN_LIMBS..JOIN_MAX_LIMBS).contains(&len) {
        rayon::join(|| a.square(), || b.square())
    } else {
        let a2 = a.square();
        drop(a);
        (a2, b.square())
    };
    let mut f2km1 = &a2 + &b2;
    let mut f2kp1 = a2;
    f2kp1 *= 4;
    f2kp1 -= &b2;
    drop(b2);
    if k_is_odd {
        f2kp1 -= 2;
    } else {
        f2kp1 += 2;
    }
    if odd {
        // f2km1 becomes F(2k) = F(2k+1) - F(2k-1).
        f2km1.rsub_assign(&f2kp1);
        (f2kp1, f2km1)
    } else {
        f2kp1 -= &f2km1;
        (f2kp1, f2km1)
    }
}

/// (F(k), F(k-1), k) for `k = n >> stop`, doubled up from the `u128` table; `None` as soon as
/// `cancelled()` says so between two steps.
fn pair_below(n: u64, stop: u32, cancelled: &dyn Fn() -> bool) -> Option<(DecNat, DecNat, u64)> {
    let mut shift = 64 - n.leading_zeros();
    let mut k = 0u64;
    while shift > stop && (k << 1 | (n >> (shift - 1)) & 1) <= U128_MAX_N {
        shift -= 1;
        k = n >> shift;
    }
    let fk = fib_u128(k).expect("k is within the table");
    let fkm1 = if k == 0 {
        1
    } else {
        fib_u128(k - 1).expect("k-1 is within the table")
    };
    let (mut a, mut b) = (DecNat::from(fk), DecNat::from(fkm1));
    while shift > stop {
        if cancelled() {
            return None;
        }
        shift -= 1;
        let bit = (n >> shift) & 1 == 1;
        (a, b) = step(a, b, k & 1 == 1, bit);
        k = k << 1 | u64::from(bit);
    }
    Some((a, b, k))
}

/// F(n), exactly, in base 10^19.
///
/// Fast doubling from the `u128` table (n <= 186 is a look-up), two squarings per bit of n
/// (under `rayon::join` at mid sizes), the last step a single product; big products are
/// parallel inside (see the [module docs](super)), on the current rayon pool. Printing the
/// result ([`DecNat::write_to`]) is then a linear pass.
///
/// Size: F(n) has about `0.20899 n` digits; the working memory peaks near the last products at
/// about five to six times the result's limbs (F(10^9): 88 MB of limbs, 0.49 GB peak RSS). The
/// NTT supports products up to `3 * 2^32` limbs, far beyond memory.
///
/// # Examples
///
/// ```
/// use parkit::decimal::fib;
///
/// assert_eq!(fib(0).to_string(), "0");
/// assert_eq!(fib(10).to_string(), "55");
/// assert_eq!(fib(200).to_string(), "280571172992510140037611932413038677189525");
/// // Cassini: F(n-1) F(n+1) - F(n)^2 = (-1)^n
/// let n = 10_001;
/// assert_eq!(&fib(n - 1) * &fib(n + 1) + 1, fib(n).square());
/// ```
#[must_use]
pub fn fib(n: u64) -> DecNat {
    if let Some(v) = fib_u128(n) {
        return DecNat::from(v);
    }
    let _buffers = BufferScope::new();
    let (a, b, k) = pair_below(n, 1, &|| false).expect("never cancelled");
    debug_assert_eq!(k, n >> 1);
    if n & 1 == 0 {
        // F(2k) = F(k) (F(k) + 2 F(k-1))
        let mut t = b;
        t *= 2;
        t += &a;
        &a * &t
    } else {
        // F(2k+1) = (2F(k) + F(k-1)) (2F(k) - F(k-1)) + 2(-1)^k
        let mut a2 = a;
        a2 *= 2;
        let sum = &a2 + &b;
        a2 -= &b;
        drop(b);
        let p = &sum * &a2;
        if k & 1 == 1 { p - 2 } else { p + 2 }
    }
}

/// The pair (F(n), F(n+1)), exactly, in base 10^19.
///
/// Fast doubling down to the last bit of n (no single-product shortcut), then one addition.
///
/// # Examples
///
/// ```
/// use parkit::decimal::{fib, fib_pair};
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
pub fn fib_pair(n: u64) -> (DecNat, DecNat) {
    fib_pair_until(n, &|| false).expect("never cancelled")
}

/// The pair (F(n), F(n+1)) as [`fib_pair`] computes it, or `None` when `cancelled()` returns
/// `true`: it is asked between two doubling steps, so a computation stops within one step
/// (the last and largest takes about half of the whole time).
///
/// # Examples
///
/// ```
/// use parkit::decimal::{fib_pair, fib_pair_until};
///
/// assert_eq!(fib_pair_until(5000, &|| false), Some(fib_pair(5000)));
/// assert_eq!(fib_pair_until(5000, &|| true), None);
/// // Small n are a table look-up, with no step to stop between.
/// assert_eq!(fib_pair_until(10, &|| true), Some(fib_pair(10)));
/// ```
///
/// # Panics
///
/// As [`fib_pair`]: if `n` is `u64::MAX`, and on memory exhaustion.
#[must_use]
pub fn fib_pair_until(n: u64, cancelled: &dyn Fn() -> bool) -> Option<(DecNat, DecNat)> {
    assert!(n < u64::MAX, "fib_pair: n + 1 overflows u64");
    if let (Some(a), Some(b)) = (fib_u128(n), fib_u128(n + 1)) {
        return Some((DecNat::from(a), DecNat::from(b)));
    }
    let _buffers = BufferScope::new();
    let (a, b, k) = pair_below(n, 0, cancelled)?;
    debug_assert_eq!(k, n);
    let next = &a + &b;
    Some((a, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubling_matches_iteration_past_the_table() {
        let (mut a, mut b) = (DecNat::ZERO, DecNat::from(1u64));
        for n in 0..2000u64 {
            assert_eq!(fib(n), a, "F({n})");
            if n % 7 == 0 || n < 200 {
                assert_eq!(fib_pair(n), (a.clone(), b.clone()), "pair {n}");
            }
            let c = &a + &b;
            a = std::mem::replace(&mut b, c);
        }
    }
}
