//! Conversions between [`DecNat`] and num-bigint's [`BigUint`], both divide and conquer.
//!
//! - `BigUint -> DecNat`: `x = q D^(2^j) + r` with `D = 10^19`, by num-bigint's division
//!   (Burnikel–Ziegler in 0.5), the two halves converted recursively (in parallel when big)
//!   into the two halves of a limb buffer; short division by `D` at the leaves.
//! - `DecNat -> BigUint`: the limbs are split at a power of two `2^j`, both halves converted
//!   recursively (in parallel when big) and recombined as `hi D^(2^j) + lo` with num-bigint's
//!   multiplication; Horner's rule at the leaves.
//!
//! The powers `D^(2^j)` are computed once per conversion by repeated squaring. The parallel
//! top of both recursions is this crate's [`divide`] (halves of at least [`PAR_LIMBS`] limbs
//! under `rayon::join`); below it the same recursion runs on one thread.

use std::borrow::Cow;

use num_bigint::BigUint;
use num_integer::Integer;

use super::limbs::{BASE, div_base};
use super::nat::DecNat;
use crate::divide::divide;
use crate::granularity::Granularity;

/// Leaves of both recursions have at most this many limbs.
const LEAF_LIMBS: usize = 32;

/// Halves of at least this many limbs are converted under `rayon::join`.
const PAR_LIMBS: usize = 1 << 11;

/// `log2(10^19)`.
const LOG2_BASE: f64 = 63.116_633_802_859_894;

/// `[D, D^2, D^4, ...]` up to and including the first `D^(2^j)` with `2^j >= limbs / 2`.
fn powers(limbs: usize) -> Vec<BigUint> {
    let mut pows = vec![BigUint::from(BASE)];
    while (1usize << pows.len()) < limbs {
        let last = pows.last().expect("not empty");
        pows.push(last * last);
    }
    pows
}

/// Writes the base-D limbs of `words` (little-endian u64 digits) into `out`, which is long
/// enough; the rest of `out` is left as it is (zero).
fn leaf_to_dec(words: &[u64], out: &mut [u64]) {
    let mut w = words.to_vec();
    let mut i = 0;
    while w.last() == Some(&0) {
        w.pop();
    }
    while !w.is_empty() {
        let mut rem = 0u64;
        for x in w.iter_mut().rev() {
            let (q, r) = div_base(rem, *x);
            *x = q;
            rem = r;
        }
        out[i] = rem;
        i += 1;
        while w.last() == Some(&0) {
            w.pop();
        }
    }
}

/// Writes the limbs of `x < D^out.len()` into `out` (length `2^(j+1)`, zeroed), on this thread.
fn to_dec(x: &BigUint, pows: &[BigUint], j: usize, out: &mut [u64]) {
    if out.len() <= LEAF_LIMBS || x.bits() <= 64 * LEAF_LIMBS as u64 / 2 {
        leaf_to_dec(&x.to_u64_digits(), out);
        return;
    }
    let (q, r) = x.div_rem(&pows[j]);
    let (lo, hi) = out.split_at_mut(1 << j);
    to_dec(&r, pows, j - 1, lo);
    to_dec(&q, pows, j - 1, hi);
}

/// [`to_dec`] with the halves of at least [`PAR_LIMBS`] limbs converted in parallel: the
/// problem is a number and the buffer its limbs go to, split by a power of `D` into the two
/// halves of the buffer; there is nothing to combine.
fn par_to_dec(x: &BigUint, pows: &[BigUint], out: &mut [u64]) {
    divide(
        (Cow::Borrowed(x), out),
        Granularity::MinLen(2 * PAR_LIMBS - 1),
        |(_, out)| out.len(),
        |(x, out)| {
            let j = out.len().ilog2() as usize - 1;
            let (q, r) = x.div_rem(&pows[j]);
            let (lo, hi) = out.split_at_mut(1 << j);
            ((Cow::Owned(r), lo), (Cow::Owned(q), hi))
        },
        |(x, out)| to_dec(&x, pows, out.len().ilog2() as usize - 1, out),
        |(), ()| (),
    );
}

impl From<&BigUint> for DecNat {
    /// Converts from binary, divide and conquer by powers of 10^19.
    ///
    /// # Examples
    ///
    /// ```
    /// use num_bigint::BigUint;
    /// use parkit::decimal::DecNat;
    ///
    /// let x = BigUint::from(3u32).pow(1000);
    /// assert_eq!(DecNat::from(&x).to_string(), x.to_string());
    /// ```
    fn from(x: &BigUint) -> DecNat {
        let limbs = (x.bits() as f64 / LOG2_BASE).ceil() as usize + 1;
        if limbs <= LEAF_LIMBS {
            let mut out = vec![0u64; limbs];
            leaf_to_dec(&x.to_u64_digits(), &mut out);
            return DecNat::from_vec(out);
        }
        let pows = powers(limbs);
        let mut out = vec![0u64; 1 << pows.len()];
        par_to_dec(x, &pows, &mut out);
        DecNat::from_vec(out)
    }
}

impl From<BigUint> for DecNat {
    /// Converts from binary; see `From<&BigUint>`.
    ///
    /// # Examples
    ///
    /// ```
    /// use num_bigint::BigUint;
    /// use parkit::decimal::DecNat;
    ///
    /// assert_eq!(DecNat::from(BigUint::from(42u32)), DecNat::from(42u64));
    /// ```
    fn from(x: BigUint) -> DecNat {
        DecNat::from(&x)
    }
}

/// The value of `limbs` (any length), with `pows[j] = D^(2^j)`, on this thread.
fn to_bin(limbs: &[u64], pows: &[BigUint]) -> BigUint {
    if limbs.len() <= LEAF_LIMBS {
        let mut acc = BigUint::default();
        for &x in limbs.iter().rev() {
            acc *= BASE;
            acc += x;
        }
        return acc;
    }
    let j = (limbs.len() - 1).ilog2() as usize;
    let (lo, hi) = limbs.split_at(1 << j);
    to_bin(hi, pows) * &pows[j] + to_bin(lo, pows)
}

/// [`to_bin`] with halves of at least [`PAR_LIMBS`] limbs converted in parallel: split at the
/// largest power of two below the length (high part left, low part right), each result
/// carrying its limb count so that `combine` knows the power of `D` to shift by.
fn par_to_bin(limbs: &[u64], pows: &[BigUint]) -> BigUint {
    let (value, _) = divide(
        limbs,
        Granularity::MinLen(PAR_LIMBS),
        |l| l.len(),
        |l| {
            let (lo, hi) = l.split_at(1 << (l.len() - 1).ilog2());
            (hi, lo)
        },
        |l| (to_bin(l, pows), l.len()),
        |(h, hl), (l, ll)| (h * &pows[ll.ilog2() as usize] + l, hl + ll),
    );
    value
}

impl From<&DecNat> for BigUint {
    /// Converts to binary, divide and conquer with num-bigint's multiplication.
    ///
    /// # Examples
    ///
    /// ```
    /// use num_bigint::BigUint;
    /// use parkit::decimal::DecNat;
    /// use parkit::fib::fib_in;
    ///
    /// let f = fib_in::<DecNat>(5000);
    /// assert_eq!(BigUint::from(&f).to_string(), f.to_string());
    /// ```
    fn from(x: &DecNat) -> BigUint {
        let limbs = x.limbs();
        if limbs.len() <= LEAF_LIMBS {
            return to_bin(limbs, &[]);
        }
        let pows = powers(limbs.len());
        par_to_bin(limbs, &pows)
    }
}

impl From<DecNat> for BigUint {
    /// Converts to binary; see `From<&DecNat>`.
    ///
    /// # Examples
    ///
    /// ```
    /// use num_bigint::BigUint;
    /// use parkit::decimal::DecNat;
    ///
    /// assert_eq!(BigUint::from(DecNat::from(42u64)), BigUint::from(42u32));
    /// ```
    fn from(x: DecNat) -> BigUint {
        BigUint::from(&x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_traits::One;

    #[test]
    fn round_trips_at_the_recursion_edges() {
        let d = BigUint::from(BASE);
        let mut cases = vec![BigUint::default(), BigUint::one(), &d - 1u32, d.clone()];
        for e in [31u32, 32, 33, 63, 64, 65, 200, 2047, 2048, 2049, 5000] {
            let p = d.pow(e);
            cases.push(&p - 1u32);
            cases.push(p.clone());
            cases.push(&p + 1u32);
            cases.push(BigUint::from(7u32).pow(e * 23));
        }
        for x in cases {
            let dec = DecNat::from(&x);
            assert_eq!(dec.to_string(), x.to_string());
            assert_eq!(BigUint::from(&dec), x);
        }
    }
}
