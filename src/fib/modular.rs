//! F(n) mod m by fast doubling in machine words, and so the last K digits, without ever building
//! F(n): O(log n) steps whatever n is (n = 10^18 takes microseconds).

use num_bigint::BigUint;
use num_traits::{One, Zero};

use super::digits;

/// (F(k), F(k+1)) mod m for k = n, by doubling on (F(k), F(k+1)):
/// F(2k) = F(k)(2F(k+1) - F(k)), F(2k+1) = F(k)^2 + F(k+1)^2.
fn pair_mod(n: u64, m: u64) -> (u64, u64) {
    let m128 = u128::from(m);
    let (mut a, mut b) = (0u128, 1u128 % m128);
    for shift in (0..64 - n.leading_zeros()).rev() {
        let two_b_minus_a = (2 * b + m128 - a) % m128;
        let c = a * two_b_minus_a % m128;
        let d = (a * a % m128 + b * b % m128) % m128;
        (a, b) = if (n >> shift) & 1 == 1 {
            (d, (c + d) % m128)
        } else {
            (c, d)
        };
    }
    // Both are < m <= u64::MAX.
    (a as u64, b as u64)
}

/// F(n) mod `m`, computed in machine words, for any `n` and any modulus up to 2^64 - 1.
///
/// Products are taken in `u128`, so no intermediate overflows; the cost is O(log n)
/// word operations and no big number is ever built.
///
/// # Examples
///
/// ```
/// use parkit::fib::fib_mod;
///
/// assert_eq!(fib_mod(10, 7), 55 % 7);
/// assert_eq!(fib_mod(100, 1_000_000_007), 687_995_182);
/// // Pisano period of 10 is 60.
/// assert_eq!(fib_mod(1_000_000_000_000_000_000, 10), fib_mod(1_000_000_000_000_000_000 % 60, 10));
/// ```
///
/// # Panics
///
/// Panics if `m` is zero.
#[must_use]
pub fn fib_mod(n: u64, m: u64) -> u64 {
    assert!(m != 0, "fib_mod: the modulus must not be zero");
    pair_mod(n, m).0
}

/// (F(n), F(n+1)) mod `m`: the start of a run that continues by additions mod `m`.
///
/// # Examples
///
/// ```
/// use parkit::fib::fib_pair_mod;
///
/// assert_eq!(fib_pair_mod(10, 100), (55, 89));
/// ```
///
/// # Panics
///
/// Panics if `m` is zero.
#[must_use]
pub fn fib_pair_mod(n: u64, m: u64) -> (u64, u64) {
    assert!(m != 0, "fib_pair_mod: the modulus must not be zero");
    pair_mod(n, m)
}

/// (F(n), F(n+1)) mod a big modulus, by the same doubling in [`BigUint`].
fn pair_mod_big(n: u64, m: &BigUint) -> (BigUint, BigUint) {
    let (mut a, mut b) = (BigUint::zero(), BigUint::one() % m);
    for shift in (0..64 - n.leading_zeros()).rev() {
        let two_b_minus_a = ((&b << 1u32) + m - &a) % m;
        let c = (&a * two_b_minus_a) % m;
        let d = (&a * &a + &b * &b) % m;
        (a, b) = if (n >> shift) & 1 == 1 {
            let s = (&c + &d) % m;
            (d, s)
        } else {
            (c, d)
        };
    }
    (a, b)
}

/// The last `k` decimal digits of F(n), exactly as they stand in F(n): leading zeros kept, or
/// all of F(n) when it has `k` digits or fewer.
///
/// For `k <= 19` this runs in machine words ([`fib_mod`] with m = 10^k); beyond, by doubling
/// modulo 10^k in [`BigUint`]. Either way F(n) itself is never built unless it is shorter than
/// `k` digits, so `n` may be as large as `u64::MAX`.
///
/// # Examples
///
/// ```
/// use parkit::fib::last_digits;
///
/// assert_eq!(last_digits(10, 5), "55"); // F(10) = 55 is shorter than 5 digits
/// assert_eq!(last_digits(30, 3), "040"); // F(30) = 832040: the leading zero is kept
/// assert_eq!(last_digits(1_000_000_000_000_000_000, 4).len(), 4);
/// ```
#[must_use]
pub fn last_digits(n: u64, k: u32) -> String {
    if k == 0 {
        return String::new();
    }
    if u64::from(k) >= digits::digit_count(n) {
        // All of F(n): computed in base 10^19, whose text is a linear copy.
        return super::fib_in::<crate::decimal::DecNat>(n).to_string();
    }
    let text = if k <= 19 {
        fib_mod(n, 10u64.pow(k)).to_string()
    } else {
        pair_mod_big(n, &BigUint::from(10u32).pow(k)).0.to_string()
    };
    zero_pad(text, k as usize)
}

/// `text` with leading zeros up to `width` characters, as the last K digits of a number are
/// written (`fibo --last K`); text already as long is returned as it is.
///
/// By hand: a format width (`{:0>width$}`) above 65535 panics ("Formatting argument out of
/// range"), and K goes up to 10,000,000 digits.
///
/// # Examples
///
/// ```
/// use parkit::fib::zero_pad;
///
/// assert_eq!(zero_pad("40".into(), 3), "040");
/// assert_eq!(zero_pad("12345".into(), 3), "12345");
/// let wide = zero_pad("7".into(), 70_000);
/// assert!(wide.len() == 70_000 && wide.ends_with("007"));
/// ```
pub fn zero_pad(text: String, width: usize) -> String {
    if text.len() >= width {
        return text;
    }
    let mut out = String::with_capacity(width);
    out.extend(std::iter::repeat_n('0', width - text.len()));
    out.push_str(&text);
    out
}

/// Steps a run of residues forward: (F(i), F(i+1)) mod m -> (F(i+1), F(i+2)) mod m.
///
/// With [`fib_pair_mod`] as the start, consecutive residues cost one addition each.
///
/// # Examples
///
/// ```
/// use parkit::fib::{advance_mod, fib_mod, fib_pair_mod};
///
/// let m = 1_000_000_007;
/// let mut p = fib_pair_mod(1_000, m);
/// for _ in 0..10 {
///     p = advance_mod(p, m);
/// }
/// assert_eq!(p.0, fib_mod(1_010, m));
/// ```
#[must_use]
pub fn advance_mod(pair: (u64, u64), m: u64) -> (u64, u64) {
    let s = (u128::from(pair.0) + u128::from(pair.1)) % u128::from(m);
    (pair.1, s as u64)
}

/// (F(n), F(n+1)) mod 10^k as big numbers: the start of a run of last-`k`-digit values when `k`
/// is past what [`fib_pair_mod`] covers (k > 19).
///
/// # Examples
///
/// ```
/// use parkit::fib::{fib, fib_pair_mod_pow10};
///
/// let (a, _) = fib_pair_mod_pow10(500, 30);
/// let full = fib(500).to_string();
/// assert_eq!(format!("{a:0>30}"), full[full.len() - 30..]);
/// ```
#[must_use]
pub fn fib_pair_mod_pow10(n: u64, k: u32) -> (BigUint, BigUint) {
    pair_mod_big(n, &BigUint::from(10u32).pow(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mod_matches_full_value() {
        for n in (0..3000u64).step_by(7) {
            let f = super::super::fib(n);
            for m in [
                1u64,
                2,
                10,
                97,
                1_000_000_007,
                u64::MAX,
                u64::MAX - 58,
                1 << 63,
            ] {
                let want = &f % m;
                assert_eq!(BigUint::from(fib_mod(n, m)), want, "F({n}) mod {m}");
            }
        }
    }

    #[test]
    fn last_digits_match_the_decimal_string() {
        for n in (0..4000u64).step_by(13) {
            let s = super::super::fib(n).to_string();
            for k in [1u32, 2, 5, 19, 20, 25, 60, 900] {
                let k_us = k as usize;
                let want = if s.len() <= k_us {
                    s.clone()
                } else {
                    s[s.len() - k_us..].to_string()
                };
                assert_eq!(last_digits(n, k), want, "n = {n}, k = {k}");
            }
        }
    }

    #[test]
    fn last_digits_wider_than_a_format_width() {
        // Regression: widths above 65535 panicked in `format!("{v:0>width$}")`.
        let n = 400_000; // 83,595 digits
        let full = super::super::fib(n).to_string();
        assert_eq!(full.len(), 83_595);
        for k in [65_536u32, 70_000, 83_594] {
            let got = last_digits(n, k);
            assert_eq!(got, full[full.len() - k as usize..], "k = {k}");
        }
        // Shorter than K: all of F(n).
        assert_eq!(last_digits(n, 100_000), full);
        assert_eq!(last_digits(n, 10_000_000), full);
        // Huge n: exactly K digits, leading zeros kept.
        let big = last_digits(1_000_000_000_000_000_000, 65_536);
        assert_eq!(big.len(), 65_536);
        assert!(big.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(
            big[big.len() - 19..],
            last_digits(1_000_000_000_000_000_000, 19)
        );
        assert_eq!(zero_pad("42".into(), 70_000).len(), 70_000);
        assert!(zero_pad("42".into(), 70_000).ends_with("00042"));
    }

    #[test]
    fn pisano_periods_hold_for_huge_n() {
        // The Pisano period of 10^k is 15 * 10^(k-1) for k >= 3.
        let period = 15 * 10u64.pow(5);
        for n in [10u64.pow(18), u64::MAX, 123_456_789_012_345_678] {
            assert_eq!(fib_mod(n, 10u64.pow(6)), fib_mod(n % period, 10u64.pow(6)));
        }
    }

    #[test]
    fn runs_by_addition_match_doubling() {
        let m = 1_000_000_007;
        let mut p = fib_pair_mod(10_000, m);
        for i in 1..500 {
            p = advance_mod(p, m);
            assert_eq!(p, fib_pair_mod(10_000 + i, m));
        }
        let big = fib_pair_mod_pow10(12_345, 30);
        let full = super::super::fib_pair(12_345);
        let m30 = BigUint::from(10u32).pow(30);
        assert_eq!(big, (&full.0 % &m30, &full.1 % &m30));
    }
}
