//! Fast doubling on [`BigUint`], GMP style, with the big products run in parallel.
//!
//! The state is the pair (F(k), F(k-1)). One doubling step costs two squarings:
//!
//! ```text
//! F(2k-1) = F(k)^2 + F(k-1)^2
//! F(2k+1) = 4 F(k)^2 - F(k-1)^2 + 2(-1)^k
//! F(2k)   = F(2k+1) - F(2k-1)
//! ```
//!
//! and [`fib`] replaces the last step by a single product. The two squarings of a step are
//! independent and run under `rayon::join` once the operands pass `join_bits` ([`Thresholds`](super::Thresholds)); past
//! `split_bits` each product is itself cut Karatsuba-style into three half-size products that
//! run in parallel, so that the last, full-size product (which dominates the whole computation)
//! also uses every core.

use num_bigint::BigUint;
#[cfg(test)]
use num_traits::One;
use num_traits::Zero;

use super::small;

use super::tuning::{join_bits, split_bits};

/// How many levels of three-way splitting a product gets on a pool of `threads` threads.
fn split_depth(threads: usize) -> u32 {
    match threads {
        0 | 1 => 0,
        2..=3 => 1,
        4..=9 => 2,
        _ => 3,
    }
}

/// `a * b`, cut into parallel pieces on the current rayon pool when big enough.
pub(crate) fn mul(a: &BigUint, b: &BigUint) -> BigUint {
    par_mul(a, b, split_depth(rayon::current_num_threads()))
}

/// `a * a`, cut into parallel pieces on the current rayon pool when big enough.
pub(crate) fn square(a: &BigUint) -> BigUint {
    par_square(a, split_depth(rayon::current_num_threads()))
}

/// Splits `x` at `digits` 32-bit digits into (high, low).
fn split_at(x: &[u32], digits: usize) -> (BigUint, BigUint) {
    if x.len() <= digits {
        (BigUint::zero(), BigUint::from_slice(x))
    } else {
        (
            BigUint::from_slice(&x[digits..]),
            BigUint::from_slice(&x[..digits]),
        )
    }
}

fn par_mul(a: &BigUint, b: &BigUint, depth: u32) -> BigUint {
    let (small_bits, big_bits) = if a.bits() <= b.bits() {
        (a.bits(), b.bits())
    } else {
        (b.bits(), a.bits())
    };
    if depth == 0 || small_bits < split_bits() {
        return a * b;
    }
    let (a32, b32) = (a.to_u32_digits(), b.to_u32_digits());
    let half = a32.len().max(b32.len()).div_ceil(2);
    let shift = half as u64 * 32;
    if small_bits * 2 < big_bits {
        // Unbalanced: split only the bigger operand; two parallel products.
        let (big, small) = if a.bits() >= b.bits() {
            (&a32, b)
        } else {
            (&b32, a)
        };
        let (hi, lo) = split_at(big, half);
        let (h, l) = rayon::join(
            || par_mul(&hi, small, depth - 1),
            || par_mul(&lo, small, depth - 1),
        );
        return (h << shift) + l;
    }
    // Karatsuba: a*b = z2 B^2 + (z1 - z2 - z0) B + z0, three independent products.
    let (ah, al) = split_at(&a32, half);
    let (bh, bl) = split_at(&b32, half);
    let ((z2, z0), z1) = rayon::join(
        || {
            rayon::join(
                || par_mul(&ah, &bh, depth - 1),
                || par_mul(&al, &bl, depth - 1),
            )
        },
        || par_mul(&(&ah + &al), &(&bh + &bl), depth - 1),
    );
    let middle = z1 - &z2 - &z0;
    (z2 << (2 * shift)) + (middle << shift) + z0
}

fn par_square(a: &BigUint, depth: u32) -> BigUint {
    if depth == 0 || a.bits() < split_bits() {
        return a * a;
    }
    let a32 = a.to_u32_digits();
    let half = a32.len().div_ceil(2);
    let shift = half as u64 * 32;
    let (h, l) = split_at(&a32, half);
    // (h B + l)^2 = h^2 B^2 + 2 h l B + l^2
    let ((h2, l2), hl) = rayon::join(
        || rayon::join(|| par_square(&h, depth - 1), || par_square(&l, depth - 1)),
        || par_mul(&h, &l, depth - 1),
    );
    (h2 << (2 * shift)) + (hl << (shift + 1)) + l2
}

/// One doubling step: (F(k), F(k-1)) -> (F(2k), F(2k-1)), or -> (F(2k+1), F(2k)) when `odd`.
fn step(a: &BigUint, b: &BigUint, k_is_odd: bool, odd: bool) -> (BigUint, BigUint) {
    let (a2, b2) = if a.bits() >= join_bits() {
        rayon::join(|| square(a), || square(b))
    } else {
        (a * a, b * b)
    };
    let f2km1 = &a2 + &b2;
    let mut f2kp1 = (a2 << 2u32) - b2;
    if k_is_odd {
        f2kp1 -= 2u32;
    } else {
        f2kp1 += 2u32;
    }
    let f2k = &f2kp1 - &f2km1;
    if odd { (f2kp1, f2k) } else { (f2k, f2km1) }
}

/// (F(k), F(k-1)) for `k = n >> shift`, where `shift` is the number of low bits of `n` still to
/// process, started from the machine-word table and doubled up to `n >> stop`.
fn pair_below(n: u64, stop: u32) -> (BigUint, BigUint, u64) {
    // Start from the largest prefix of n's bits that the u128 table covers.
    let mut shift = 64 - n.leading_zeros();
    let mut k = 0u64;
    while shift > stop && (k << 1 | (n >> (shift - 1)) & 1) <= small::MAX_N {
        shift -= 1;
        k = n >> shift;
    }
    let fk = small::fib_u128(k).expect("k is within the table");
    let fkm1 = if k == 0 {
        1
    } else {
        small::fib_u128(k - 1).expect("k-1 is within the table")
    };
    let (mut a, mut b) = (BigUint::from(fk), BigUint::from(fkm1));
    while shift > stop {
        shift -= 1;
        let bit = (n >> shift) & 1 == 1;
        (a, b) = step(&a, &b, k & 1 == 1, bit);
        k = k << 1 | u64::from(bit);
    }
    (a, b, k)
}

/// (F(n), F(n-1)), with F(-1) = 1.
pub(crate) fn fib_and_prev(n: u64) -> (BigUint, BigUint) {
    let (a, b, k) = pair_below(n, 0);
    debug_assert_eq!(k, n);
    (a, b)
}

/// F(n) by fast doubling, the last step a single (parallel) product.
pub(crate) fn fib(n: u64) -> BigUint {
    if let Some(v) = small::fib_u128(n) {
        return BigUint::from(v);
    }
    let (a, b, k) = pair_below(n, 1);
    debug_assert_eq!(k, n >> 1);
    if n & 1 == 0 {
        // F(2k) = F(k) (F(k) + 2 F(k-1))
        let t = &a + (&b << 1u32);
        mul(&a, &t)
    } else {
        // F(2k+1) = (2F(k) + F(k-1)) (2F(k) - F(k-1)) + 2(-1)^k
        let a2 = &a << 1u32;
        let p = mul(&(&a2 + &b), &(a2 - &b));
        if k & 1 == 1 { p - 2u32 } else { p + 2u32 }
    }
}

/// (F(n), F(n+1)).
pub(crate) fn fib_pair(n: u64) -> (BigUint, BigUint) {
    if let (Some(a), Some(b)) = (
        small::fib_u128(n),
        n.checked_add(1).and_then(small::fib_u128),
    ) {
        return (BigUint::from(a), BigUint::from(b));
    }
    let (a, b) = fib_and_prev(n);
    let next = &a + &b;
    (a, next)
}

/// From (F(m), F(m+1)) to (F(m+d), F(m+d+1)) by the addition formula
/// F(m+d) = F(d) F(m+1) + F(d-1) F(m), for `d >= 1`.
pub(crate) fn jump(pair: (&BigUint, &BigUint), d: u64) -> (BigUint, BigUint) {
    let (fm, fm1) = pair;
    let (fd, fdm1) = fib_and_prev(d);
    let fd1 = &fd + &fdm1;
    // F(m+d) = F(d) F(m+1) + F(d-1) F(m);  F(m+d+1) = F(d+1) F(m+1) + F(d) F(m)
    let ((x, y), (z, w)) = rayon::join(
        || rayon::join(|| mul(&fd, fm1), || mul(&fdm1, fm)),
        || rayon::join(|| mul(&fd1, fm1), || mul(&fd, fm)),
    );
    (x + y, z + w)
}

/// Advances (F(m), F(m+1)) by one, in place: (F(m+1), F(m+2)).
pub(crate) fn advance(pair: &mut (BigUint, BigUint)) {
    let (a, b) = pair;
    *a += &*b;
    std::mem::swap(a, b);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iterate(n: u64) -> BigUint {
        let (mut a, mut b) = (BigUint::zero(), BigUint::one());
        for _ in 0..n {
            let c = &a + &b;
            a = std::mem::replace(&mut b, c);
        }
        a
    }

    #[test]
    fn doubling_matches_iteration() {
        let mut a = BigUint::zero();
        let mut b = BigUint::one();
        for n in 0..1500u64 {
            assert_eq!(fib(n), a, "F({n})");
            assert_eq!(fib_pair(n), (a.clone(), b.clone()), "pair {n}");
            let c = &a + &b;
            a = std::mem::replace(&mut b, c);
        }
    }

    #[test]
    fn jump_and_advance_agree_with_doubling() {
        let base = fib_pair(5000);
        for d in [1u64, 2, 3, 10, 187, 1000, 4096] {
            let (x, y) = jump((&base.0, &base.1), d);
            assert_eq!((x, y), fib_pair(5000 + d), "d = {d}");
        }
        let mut p = fib_pair(300);
        for _ in 0..50 {
            advance(&mut p);
        }
        assert_eq!(p, fib_pair(350));
        assert_eq!(iterate(777), fib(777));
    }

    #[test]
    fn parallel_products_equal_plain_products() {
        // Operands past the split threshold so every split path runs, on a 4-thread pool.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        let a = fib(800_001);
        let b = fib(799_999);
        let c = fib(400_000);
        pool.install(|| {
            assert_eq!(mul(&a, &b), &a * &b);
            assert_eq!(mul(&a, &c), &a * &c);
            assert_eq!(mul(&c, &a), &c * &a);
            assert_eq!(square(&a), &a * &a);
        });
    }
}
