//! Slice arithmetic on base-10^19 limbs: the carries, borrows and divisions by the base that
//! every other part of the engine is built from.
//!
//! A limb is a `u64` below [`BASE`]; slices are little-endian. Division of a two-word number by
//! the base uses the Möller–Granlund method with a precomputed reciprocal: 10^19 is above 2^63,
//! so it is already "normalized" and one division costs two multiplications and a few
//! additions, against a library call for a plain `u128 / u64`.

/// The limb base, 10^19: the largest power of ten below 2^64.
pub(crate) const BASE: u64 = 10_000_000_000_000_000_000;

/// Decimal digits in one limb.
pub(crate) const DIGITS: usize = 19;

/// `floor((2^128 - 1) / BASE) - 2^64`, the Möller–Granlund reciprocal of the base.
const BASE_INV: u64 = ((u128::MAX / BASE as u128) - (1u128 << 64)) as u64;

/// `(hi * 2^64 + lo) / BASE` and the remainder, for `hi < BASE` (so the quotient fits a word).
#[inline(always)]
pub(crate) fn div_base(hi: u64, lo: u64) -> (u64, u64) {
    debug_assert!(hi < BASE);
    let p = (BASE_INV as u128) * (hi as u128);
    let p = p.wrapping_add(((hi as u128) << 64) | lo as u128);
    let mut q = ((p >> 64) as u64).wrapping_add(1);
    let mut r = lo.wrapping_sub(q.wrapping_mul(BASE));
    if r > p as u64 {
        q = q.wrapping_sub(1);
        r = r.wrapping_add(BASE);
    }
    if r >= BASE {
        q += 1;
        r -= BASE;
    }
    (q, r)
}

/// `v / BASE` and `v % BASE` for `v < BASE * 2^64`.
#[inline(always)]
pub(crate) fn div_base_wide(v: u128) -> (u64, u64) {
    div_base((v >> 64) as u64, v as u64)
}

/// Drops high zero limbs.
#[inline]
pub(crate) fn normalize(v: &mut Vec<u64>) {
    while v.last() == Some(&0) {
        v.pop();
    }
}

/// `a += b` limb-wise over `b.len()` limbs, then the carry through the rest of `a`; returns the
/// carry out of `a` (0 or 1). Requires `a.len() >= b.len()`.
#[inline]
pub(crate) fn add_assign(a: &mut [u64], b: &[u64]) -> u64 {
    debug_assert!(a.len() >= b.len());
    let mut carry = 0u64;
    let (head, tail) = a.split_at_mut(b.len());
    for (x, &y) in head.iter_mut().zip(b) {
        let t = *x as u128 + (y + carry) as u128;
        carry = u64::from(t >= BASE as u128);
        *x = (t - (carry * BASE) as u128) as u64;
    }
    add_small(tail, carry)
}

/// `a += c` for a small `c < BASE`, propagated through `a`; returns the carry out (0 or 1).
#[inline]
pub(crate) fn add_small(a: &mut [u64], c: u64) -> u64 {
    let mut carry = c;
    for x in a.iter_mut() {
        if carry == 0 {
            return 0;
        }
        let t = *x + carry;
        if t >= BASE {
            *x = t - BASE;
            carry = 1;
        } else {
            *x = t;
            carry = 0;
        }
    }
    carry
}

/// `a -= b` limb-wise over `b.len()` limbs, then the borrow through the rest of `a`; returns the
/// borrow out of `a` (0 or 1). Requires `a.len() >= b.len()`.
#[inline]
pub(crate) fn sub_assign(a: &mut [u64], b: &[u64]) -> u64 {
    debug_assert!(a.len() >= b.len());
    let mut borrow = 0u64;
    let (head, tail) = a.split_at_mut(b.len());
    for (x, &y) in head.iter_mut().zip(b) {
        let s = y + borrow;
        let under = *x < s;
        *x = x.wrapping_sub(s).wrapping_add(if under { BASE } else { 0 });
        borrow = u64::from(under);
    }
    sub_small(tail, borrow)
}

/// `a -= c` for a small `c < BASE`, propagated through `a`; returns the borrow out (0 or 1).
#[inline]
pub(crate) fn sub_small(a: &mut [u64], c: u64) -> u64 {
    let mut borrow = c;
    for x in a.iter_mut() {
        if borrow == 0 {
            return 0;
        }
        if *x >= borrow {
            *x -= borrow;
            borrow = 0;
        } else {
            *x = *x + BASE - borrow;
            borrow = 1;
        }
    }
    borrow
}

/// `a = b - a`, for `b >= a` as numbers (`a` is extended to `b.len()`); returns the borrow,
/// which is 0 exactly when the precondition held.
pub(crate) fn rsub_assign(a: &mut Vec<u64>, b: &[u64]) -> u64 {
    if a.len() < b.len() {
        a.resize(b.len(), 0);
    }
    let mut borrow = 0u64;
    for (x, &y) in a.iter_mut().zip(b) {
        let s = *x + borrow;
        let under = y < s;
        *x = y.wrapping_sub(s).wrapping_add(if under { BASE } else { 0 });
        borrow = u64::from(under);
    }
    // Limbs of `a` beyond `b` must be zero for the result to be non-negative.
    for x in a[b.len()..].iter_mut() {
        if borrow == 0 && *x == 0 {
            continue;
        }
        let s = *x + borrow;
        *x = if s == 0 { 0 } else { BASE - s };
        borrow = 1;
    }
    borrow
}

/// `a * m + c` in place for `m, c < BASE`; returns the carry out (below `BASE`).
#[inline]
pub(crate) fn mul_small(a: &mut [u64], m: u64, c: u64) -> u64 {
    let mut carry = c;
    for x in a.iter_mut() {
        let t = (*x as u128) * (m as u128) + carry as u128;
        let (q, r) = div_base_wide(t);
        *x = r;
        carry = q;
    }
    carry
}

/// Compares two normalized or equally padded limb slices as numbers.
pub(crate) fn cmp(a: &[u64], b: &[u64]) -> std::cmp::Ordering {
    let la = a.len() - a.iter().rev().take_while(|&&x| x == 0).count();
    let lb = b.len() - b.iter().rev().take_while(|&&x| x == 0).count();
    la.cmp(&lb)
        .then_with(|| a[..la].iter().rev().cmp(b[..lb].iter().rev()))
}

/// `|a - b|` into `out` (`out.len() == a.len() >= b.len()`), returning whether `a < b`.
pub(crate) fn abs_diff(out: &mut [u64], a: &[u64], b: &[u64]) -> bool {
    debug_assert!(out.len() == a.len() && a.len() >= b.len());
    if cmp(a, b) == std::cmp::Ordering::Less {
        out.fill(0);
        out[..b.len()].copy_from_slice(b);
        let borrow = sub_assign(out, a);
        debug_assert_eq!(borrow, 0);
        true
    } else {
        out.copy_from_slice(a);
        let borrow = sub_assign(out, b);
        debug_assert_eq!(borrow, 0);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reciprocal_division_matches_u128_division_at_the_edges() {
        let his = [0, 1, 2, BASE / 2, BASE - 2, BASE - 1];
        let los = [
            0,
            1,
            BASE - 1,
            BASE,
            BASE + 1,
            u64::MAX / 2,
            u64::MAX - 1,
            u64::MAX,
        ];
        for &hi in &his {
            for &lo in &los {
                let v = ((hi as u128) << 64) | lo as u128;
                let want = ((v / BASE as u128) as u64, (v % BASE as u128) as u64);
                assert_eq!(div_base(hi, lo), want, "hi = {hi}, lo = {lo}");
            }
        }
    }

    proptest! {
        #[test]
        fn reciprocal_division_matches_u128_division(hi in 0..BASE, lo: u64) {
            let v = ((hi as u128) << 64) | lo as u128;
            prop_assert_eq!(div_base(hi, lo), ((v / BASE as u128) as u64, (v % BASE as u128) as u64));
        }
    }

    #[test]
    fn carries_and_borrows_ripple_through_nines() {
        let nines = vec![BASE - 1; 5];
        let mut a = nines.clone();
        assert_eq!(add_small(&mut a, 1), 1);
        assert!(a.iter().all(|&x| x == 0));
        assert_eq!(sub_small(&mut a, 1), 1);
        assert_eq!(a, nines);
        let mut b = vec![0, 0, 1];
        assert_eq!(sub_assign(&mut b, &[1]), 0);
        assert_eq!(b, vec![BASE - 1, BASE - 1, 0]);
        let mut c = vec![5, 0];
        assert_eq!(rsub_assign(&mut c, &[7, 1]), 0);
        assert_eq!(c, vec![2, 1]);
        let mut d = vec![8, 0];
        assert_eq!(rsub_assign(&mut d, &[7, 1]), 0);
        assert_eq!(d, vec![BASE - 1, 0]);
        let mut e = vec![0, 2];
        assert_eq!(rsub_assign(&mut e, &[7]), 1);
        let mut m = vec![BASE - 1, BASE - 1];
        assert_eq!(mul_small(&mut m, BASE - 1, BASE - 1), BASE - 1);
        assert_eq!(m, vec![0, 0]);
    }
}
