//! Fast doubling, GMP style, written once for every [`FibNumber`] type; the addition formula
//! and the step by one that the planner uses.
//!
//! The state is the pair (F(k), F(k-1)). One doubling step costs two squarings:
//!
//! ```text
//! F(2k-1) = F(k)^2 + F(k-1)^2
//! F(2k+1) = 4 F(k)^2 - F(k-1)^2 + 2(-1)^k
//! F(2k)   = F(2k+1) - F(2k-1)
//! ```
//!
//! and [`fib`] replaces the last step by a single product: `F(2k) = F(k) (F(k) + 2 F(k-1))` or
//! `F(2k+1) = (2F(k) + F(k-1)) (2F(k) - F(k-1)) + 2(-1)^k`. The walk starts from the longest
//! prefix of n's bits whose F fits in a `u128` (the machine-word table). The two squarings of a
//! step run under `rayon::join` where the type says they should
//! ([`FibNumber::join_squarings`]); the products themselves are parallel inside.

use super::number::FibNumber;
use super::small;

/// One doubling step: (F(k), F(k-1)) -> (F(2k), F(2k-1)), or -> (F(2k+1), F(2k)) when `odd`.
/// Takes the pair by value so that a big `F(k)` is freed as soon as it is squared.
fn step<N: FibNumber>(a: N, b: N, k_is_odd: bool, odd: bool) -> (N, N) {
    let (a2, b2) = if a.join_squarings() {
        rayon::join(|| a.squared(), || b.squared())
    } else {
        let a2 = a.squared();
        drop(a);
        (a2, b.squared())
    };
    let mut f2km1 = a2.sum(&b2);
    let mut f2kp1 = a2;
    f2kp1.mul_word(4);
    f2kp1.sub_assign_ref(&b2);
    drop(b2);
    if k_is_odd {
        f2kp1.sub_word(2);
    } else {
        f2kp1.add_word(2);
    }
    if odd {
        // f2km1 becomes F(2k) = F(2k+1) - F(2k-1).
        f2km1.rsub_assign_ref(&f2kp1);
        (f2kp1, f2km1)
    } else {
        f2kp1.sub_assign_ref(&f2km1);
        (f2kp1, f2km1)
    }
}

/// (F(k), F(k-1), k) for `k = n >> stop`, doubled up from the `u128` table; `None` as soon as
/// `cancelled()` says so between two steps.
fn pair_below<N: FibNumber>(
    n: u64,
    stop: u32,
    cancelled: &dyn Fn() -> bool,
) -> Option<(N, N, u64)> {
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
    let (mut a, mut b) = (N::from_word(fk), N::from_word(fkm1));
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

/// (F(n), F(n-1)), with F(-1) = 1.
pub(super) fn fib_and_prev<N: FibNumber>(n: u64) -> (N, N) {
    let (a, b, k) = N::scoped(|| pair_below(n, 0, &|| false)).expect("never cancelled");
    debug_assert_eq!(k, n);
    (a, b)
}

/// F(n) by fast doubling, the last step a single (parallel) product.
pub(super) fn fib<N: FibNumber>(n: u64) -> N {
    if let Some(v) = small::fib_u128(n) {
        return N::from_word(v);
    }
    N::scoped(|| {
        let (a, b, k) = pair_below::<N>(n, 1, &|| false).expect("never cancelled");
        debug_assert_eq!(k, n >> 1);
        if n & 1 == 0 {
            // F(2k) = F(k) (F(k) + 2 F(k-1))
            let mut t = b;
            t.mul_word(2);
            t.add_assign_ref(&a);
            a.product(&t)
        } else {
            // F(2k+1) = (2F(k) + F(k-1)) (2F(k) - F(k-1)) + 2(-1)^k
            let mut a2 = a;
            a2.mul_word(2);
            let sum = a2.sum(&b);
            a2.sub_assign_ref(&b);
            drop(b);
            let mut p = sum.product(&a2);
            if k & 1 == 1 {
                p.sub_word(2);
            } else {
                p.add_word(2);
            }
            p
        }
    })
}

/// (F(n), F(n+1)), or `None` when `cancelled()` returns `true` between two doubling steps.
pub(super) fn fib_pair_until<N: FibNumber>(n: u64, cancelled: &dyn Fn() -> bool) -> Option<(N, N)> {
    assert!(n < u64::MAX, "fib_pair: n + 1 overflows u64");
    if let (Some(a), Some(b)) = (small::fib_u128(n), small::fib_u128(n + 1)) {
        return Some((N::from_word(a), N::from_word(b)));
    }
    let (a, b, k) = N::scoped(|| pair_below::<N>(n, 0, cancelled))?;
    debug_assert_eq!(k, n);
    let next = a.sum(&b);
    Some((a, next))
}

/// (F(n), F(n+1)).
pub(super) fn fib_pair<N: FibNumber>(n: u64) -> (N, N) {
    fib_pair_until(n, &|| false).expect("never cancelled")
}

/// From (F(m), F(m+1)) to (F(m+d), F(m+d+1)) by the addition formula
/// F(m+d) = F(d) F(m+1) + F(d-1) F(m), for `d >= 1`; the four products in parallel.
pub(super) fn jump<N: FibNumber>(pair: (&N, &N), d: u64) -> (N, N) {
    let (fm, fm1) = pair;
    let (fd, fdm1) = fib_and_prev::<N>(d);
    let fd1 = fd.sum(&fdm1);
    // F(m+d) = F(d) F(m+1) + F(d-1) F(m);  F(m+d+1) = F(d+1) F(m+1) + F(d) F(m)
    let ((mut x, y), (mut z, w)) = rayon::join(
        || rayon::join(|| fd.product(fm1), || fdm1.product(fm)),
        || rayon::join(|| fd1.product(fm1), || fd.product(fm)),
    );
    x.add_assign_ref(&y);
    z.add_assign_ref(&w);
    (x, z)
}

/// Advances (F(m), F(m+1)) by one, in place: (F(m+1), F(m+2)).
pub(super) fn advance<N: FibNumber>(pair: &mut (N, N)) {
    let (a, b) = pair;
    a.add_assign_ref(b);
    std::mem::swap(a, b);
}

#[cfg(test)]
mod tests {
    use num_bigint::BigUint;

    use super::*;
    use crate::decimal::DecNat;

    /// Doubling, pairs, jumps and steps in `N` against plain iteration in `u128`-free
    /// `BigUint` additions.
    fn agrees_with_iteration<N: FibNumber + ToString>() {
        let (mut a, mut b) = (BigUint::from(0u32), BigUint::from(1u32));
        for n in 0..2000u64 {
            assert_eq!(fib::<N>(n).to_string(), a.to_string(), "F({n})");
            if n % 7 == 0 || n < 200 {
                let (x, y) = fib_pair::<N>(n);
                assert_eq!(
                    (x.to_string(), y.to_string()),
                    (a.to_string(), b.to_string())
                );
            }
            let c = &a + &b;
            a = std::mem::replace(&mut b, c);
        }
        let base = fib_pair::<N>(5000);
        for d in [1u64, 2, 3, 10, 187, 1000, 4096] {
            let (x, y) = jump((&base.0, &base.1), d);
            let (u, v) = fib_pair::<N>(5000 + d);
            assert_eq!(
                (x.to_string(), y.to_string()),
                (u.to_string(), v.to_string())
            );
        }
        let mut p = fib_pair::<N>(300);
        for _ in 0..50 {
            advance(&mut p);
        }
        assert_eq!(p.0.to_string(), fib::<N>(350).to_string());
    }

    #[test]
    fn binary_doubling_matches_iteration() {
        agrees_with_iteration::<BigUint>();
    }

    #[test]
    fn decimal_doubling_matches_iteration() {
        agrees_with_iteration::<DecNat>();
    }

    /// (F(n), F(n+1)) by a plain recursive BigUint doubling, written independently.
    fn big_pair(n: u64) -> (BigUint, BigUint) {
        if n == 0 {
            return (BigUint::from(0u32), BigUint::from(1u32));
        }
        let (a, b) = big_pair(n / 2);
        // F(2k) = F(k) (2F(k+1) - F(k)); F(2k+1) = F(k)^2 + F(k+1)^2
        let c = &a * (&b * 2u32 - &a);
        let d = &a * &a + &b * &b;
        if n % 2 == 0 {
            (c, d)
        } else {
            (d.clone(), c + d)
        }
    }

    #[test]
    fn decimal_doubling_matches_an_independent_doubling_up_to_a_million() {
        for n in [10_000u64, 65_537, 123_457, 300_000, 999_999, 1_000_000] {
            let (a, b) = big_pair(n);
            let f: DecNat = fib(n);
            assert_eq!(f.to_string(), a.to_string(), "F({n})");
            let (x, y) = fib_pair::<DecNat>(n);
            assert_eq!(x, f);
            assert_eq!(BigUint::from(&y), b, "F({})", n + 1);
        }
    }

    #[test]
    fn both_bases_agree_on_big_values_and_cancel() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            for n in [300_001u64, 1_000_000] {
                let dec: DecNat = fib(n);
                assert_eq!(BigUint::from(&dec), fib::<BigUint>(n), "n = {n}");
            }
        });
        assert!(fib_pair_until::<DecNat>(5000, &|| true).is_none());
        assert!(fib_pair_until::<BigUint>(5000, &|| true).is_none());
        // Table values have no step to stop between.
        assert!(fib_pair_until::<DecNat>(10, &|| true).is_some());
    }
}
