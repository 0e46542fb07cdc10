//! Decimal text of big numbers, on every core.
//!
//! num-bigint converts to decimal with a sequential divide and conquer. Splitting the number at
//! the top, `v = q 10^k + r`, and converting `q` and `r` under `rayon::join` (recursively, a
//! few levels deep) lets the two halves — which is where nearly all the time goes — run side by
//! side.

use num_bigint::BigUint;
use num_integer::Integer;

use super::tuning::decimal_bits;

use std::f64::consts::LOG10_2;

/// The decimal text of `v`, converted in parallel on the current rayon pool when it is big.
///
/// Equal to `v.to_string()`, only faster on several cores for numbers of more than
/// `decimal_bits` ([`Thresholds`](super::Thresholds)) bits (F(n) past n = 380,000 by default).
///
/// # Examples
///
/// ```
/// use parkit::fib::{fib, to_decimal};
///
/// let v = fib(1_000_000);
/// assert_eq!(to_decimal(&v), v.to_string());
/// assert_eq!(to_decimal(&fib(10)), "55");
/// ```
#[must_use]
pub fn to_decimal(v: &BigUint) -> String {
    let threads = rayon::current_num_threads();
    let depth = match threads {
        0 | 1 => 0,
        2..=3 => 2,
        4..=7 => 3,
        _ => 4,
    };
    let mut out = String::with_capacity((v.bits() as f64 * LOG10_2) as usize + 2);
    convert(v, 0, depth, &mut out);
    out
}

/// Appends `v` to `out`, left-padded with zeros to `width` digits.
fn convert(v: &BigUint, width: usize, depth: u32, out: &mut String) {
    if depth == 0 || v.bits() < decimal_bits() {
        let s = v.to_string();
        for _ in s.len()..width {
            out.push('0');
        }
        out.push_str(&s);
        return;
    }
    let digits = (v.bits() as f64 * LOG10_2) as usize;
    let k = digits / 2;
    let (q, r) = v.div_rem(&BigUint::from(10u32).pow(k as u32));
    let (mut hi, lo) = rayon::join(
        || {
            let mut s = String::with_capacity(digits - k + 2);
            convert(&q, width.saturating_sub(k), depth - 1, &mut s);
            s
        },
        || {
            let mut s = String::with_capacity(k);
            convert(&r, k, depth - 1, &mut s);
            s
        },
    );
    hi.push_str(&lo);
    out.push_str(&hi);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fib::fib;

    #[test]
    fn equals_to_string_across_the_split_sizes() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        for n in [0u64, 1, 100, 377_000, 400_000, 1_000_003, 2_500_000] {
            let v = fib(n);
            assert_eq!(pool.install(|| to_decimal(&v)), v.to_string(), "n = {n}");
        }
        // A number with long runs of zeros in its lower half.
        let v = BigUint::from(10u32).pow(300_000) + 7u32;
        assert_eq!(pool.install(|| to_decimal(&v)), v.to_string());
    }
}
