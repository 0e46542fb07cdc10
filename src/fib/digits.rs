//! Sizes of F(n) without computing it: the exact number of decimal digits, the number of bits,
//! and the memory a computation needs (for refusing impossible inputs up front).

use super::small;

/// log10(phi) as a 0.128 fixed-point fraction (phi is the golden ratio).
const LOG10_PHI: u128 = 0x358036c82451b7f365d3db23845599f5;
/// log10(sqrt 5) as a 0.128 fixed-point fraction.
const LOG10_SQRT5: u128 = 0x5977d95ec10c0219dc1da994fd20dba1;

/// The number of decimal digits of F(n) (1 for F(0) = 0), without computing F(n).
///
/// Exact: for n <= 186 from the machine-word table, beyond from
/// log10 F(n) = n log10(phi) - log10(sqrt 5) + e with |e| < 10^-70, evaluated in 128-bit
/// fixed point (error below 2^-63 for every u64 n, far smaller than the distance of
/// log10 F(n) from an integer).
///
/// # Examples
///
/// ```
/// use parkit::fib::digit_count;
///
/// assert_eq!(digit_count(0), 1);
/// assert_eq!(digit_count(10), 2); // 55
/// assert_eq!(digit_count(1_000_000), 208_988);
/// assert_eq!(digit_count(1_000_000_000), 208_987_640);
/// ```
#[must_use]
pub fn digit_count(n: u64) -> u64 {
    if let Some(v) = small::fib_u128(n) {
        return u64::from(v.checked_ilog10().unwrap_or(0)) + 1;
    }
    // n * LOG10_PHI as a 192-bit number: integer part in `int`, fraction in `frac`.
    let lo = u128::from(n) * (LOG10_PHI & u128::from(u64::MAX));
    let hi = u128::from(n) * (LOG10_PHI >> 64);
    // total = hi * 2^64 + lo
    let (frac, carry) = (hi << 64).overflowing_add(lo);
    let int = (hi >> 64) + u128::from(carry);
    let borrow = frac < LOG10_SQRT5;
    let floor = int - u128::from(borrow);
    (floor + 1) as u64
}

/// The number of bits of F(n), about 0.6942 n (within one bit; exact for n <= 186).
///
/// # Examples
///
/// ```
/// use parkit::fib::bit_estimate;
///
/// assert_eq!(bit_estimate(10), 6); // 55 = 0b110111
/// assert!((694_240..=694_244).contains(&bit_estimate(1_000_000)));
/// ```
#[must_use]
pub fn bit_estimate(n: u64) -> u64 {
    if let Some(v) = small::fib_u128(n) {
        return u64::from(128 - v.leading_zeros());
    }
    // log2(phi) = 0.69424191363061730...; log2(sqrt 5) = 1.16096...
    (n as f64 * 0.694_241_913_630_617_3 - 1.160_964_047_443_681).ceil() as u64
}

/// Bytes that F(n) itself takes in binary (the `BigUint`), rounded up to whole 64-bit words.
///
/// # Examples
///
/// ```
/// use parkit::fib::value_bytes;
///
/// // F(10^15) alone needs about 87 TB.
/// let tb = value_bytes(1_000_000_000_000_000) as f64 / 1e12;
/// assert!((86.0..88.0).contains(&tb));
/// ```
#[must_use]
pub fn value_bytes(n: u64) -> u64 {
    bit_estimate(n).div_ceil(64) * 8
}

/// Peak working memory of computing F(n) in bytes: the value, the doubling state and the
/// products in flight (about six copies of the value, measured with the parallel products),
/// plus the decimal text when `decimal` is set (one byte per digit).
///
/// # Examples
///
/// ```
/// use parkit::fib::{working_bytes, value_bytes, digit_count};
///
/// let n = 10_000_000;
/// assert!(working_bytes(n, true) > value_bytes(n) + digit_count(n));
/// ```
#[must_use]
pub fn working_bytes(n: u64, decimal: bool) -> u64 {
    let text = if decimal { digit_count(n) } else { 0 };
    value_bytes(n)
        .saturating_mul(WORKING_COPIES)
        .saturating_add(text)
}

/// How many copies of F(n) a computation holds at its peak (see [`working_bytes`]).
pub const WORKING_COPIES: u64 = 6;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fib::fib;

    #[test]
    fn digit_count_is_exact_against_the_decimal_string() {
        for n in 0..3000u64 {
            assert_eq!(digit_count(n), fib(n).to_string().len() as u64, "n = {n}");
        }
        for n in [10_000u64, 65_537, 99_999, 100_000, 250_001] {
            assert_eq!(digit_count(n), fib(n).to_string().len() as u64, "n = {n}");
        }
    }

    #[test]
    fn bit_estimate_is_exact_or_one_over() {
        for n in (0..20_000u64).step_by(37) {
            let bits = fib(n).bits();
            let est = bit_estimate(n);
            assert!(est == bits || est == bits + 1, "n = {n}: {est} vs {bits}");
        }
    }

    #[test]
    fn digit_count_handles_the_largest_n() {
        // 0.2089876... * 2^64 = 3.855e18: no overflow, and monotone.
        let d = digit_count(u64::MAX);
        assert!(d > 3_855_000_000_000_000_000 && d < 3_856_000_000_000_000_000);
        assert!(digit_count(u64::MAX - 1) <= d);
    }
}
