//! Slice arithmetic on base-10^19 limbs: the carries, borrows and divisions by the base that
//! every other part of the engine is built from.
//!
//! A limb is a `u64` below [`BASE`]; slices are little-endian. Division of a two-word number by
//! the base uses the Möller–Granlund method with a precomputed reciprocal: 10^19 is above 2^63,
//! so it is already "normalized" and one division costs two multiplications and a few
//! additions, against a library call for a plain `u128 / u64`.

use rayon::prelude::*;

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
    let (head, tail) = a.split_at_mut(b.len());
    if b.len() >= PAR_LIMBS {
        let carry = in_chunks(head, b, add_head, add_small);
        return add_small(tail, carry);
    }
    let mut carry = 0u64;
    for (x, &y) in head.iter_mut().zip(b) {
        let t = *x as u128 + (y + carry) as u128;
        carry = u64::from(t >= BASE as u128);
        *x = (t - (carry * BASE) as u128) as u64;
    }
    add_small(tail, carry)
}

/// `a += b` over equal lengths; returns the carry out.
#[inline]
fn add_head(a: &mut [u64], b: &[u64]) -> u64 {
    let mut carry = 0u64;
    for (x, &y) in a.iter_mut().zip(b) {
        let t = *x as u128 + (y + carry) as u128;
        carry = u64::from(t >= BASE as u128);
        *x = (t - (carry * BASE) as u128) as u64;
    }
    carry
}

/// From this many limbs the carry passes (`add_assign`, `sub_assign`, `rsub_assign`,
/// `mul_small`) run in chunks on rayon: in a Fibonacci doubling step they are the work between
/// the products that one thread did alone.
pub(crate) const PAR_LIMBS: usize = 1 << 16;

/// Limbs per chunk of a parallel carry pass.
const PAR_CHUNK: usize = 1 << 14;

/// `op(a, b)` over equal lengths, returning its carry (or borrow) out, on rayon in chunks (for
/// `a` of at least [`PAR_LIMBS`] limbs; out of line, so the short passes stay as they were):
/// each chunk as if nothing came in, then each chunk's incoming carry
/// added in order by `settle` (`add_small` or `sub_small`; a chunk's own carry and the one
/// its incoming carry makes never both occur, so their sum is the carry out).
#[inline(never)]
fn in_chunks<F: Fn(&mut [u64], &[u64]) -> u64 + Sync>(
    a: &mut [u64],
    b: &[u64],
    op: F,
    settle: fn(&mut [u64], u64) -> u64,
) -> u64 {
    let outs: Vec<u64> = a
        .par_chunks_mut(PAR_CHUNK)
        .zip(b.par_chunks(PAR_CHUNK))
        .map(|(x, y)| op(x, y))
        .collect();
    let mut carry = 0;
    for (chunk, out) in a.chunks_mut(PAR_CHUNK).zip(outs) {
        carry = settle(chunk, carry) + out;
    }
    carry
}

/// `a += c` for any `c < BASE`, propagated through `a`; returns the carry out (0 or 1).
#[inline]
pub(crate) fn add_small(a: &mut [u64], c: u64) -> u64 {
    let mut carry = c;
    for x in a.iter_mut() {
        if carry == 0 {
            return 0;
        }
        // A limb plus a carry near BASE passes 2^64: the wrapped sum less BASE is then right.
        let (t, over) = x.overflowing_add(carry);
        if over || t >= BASE {
            *x = t.wrapping_sub(BASE);
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
    let (head, tail) = a.split_at_mut(b.len());
    let borrow = if b.len() >= PAR_LIMBS {
        in_chunks(head, b, sub_head, sub_small)
    } else {
        sub_head(head, b)
    };
    sub_small(tail, borrow)
}

/// `a -= b` over equal lengths; returns the borrow out.
#[inline]
fn sub_head(a: &mut [u64], b: &[u64]) -> u64 {
    let mut borrow = 0u64;
    for (x, &y) in a.iter_mut().zip(b) {
        let s = y + borrow;
        let under = *x < s;
        *x = x.wrapping_sub(s).wrapping_add(if under { BASE } else { 0 });
        borrow = u64::from(under);
    }
    borrow
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
    let head = &mut a[..b.len()];
    let mut borrow = if b.len() >= PAR_LIMBS {
        in_chunks(head, b, rsub_head, sub_small)
    } else {
        rsub_head(head, b)
    };
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

/// `a = b - a` over equal lengths; returns the borrow out.
#[inline]
fn rsub_head(a: &mut [u64], b: &[u64]) -> u64 {
    let mut borrow = 0u64;
    for (x, &y) in a.iter_mut().zip(b) {
        let s = *x + borrow;
        let under = y < s;
        *x = y.wrapping_sub(s).wrapping_add(if under { BASE } else { 0 });
        borrow = u64::from(under);
    }
    borrow
}

/// `a * m + c` in place for `m, c < BASE`; returns the carry out (below `BASE`). Long `a` in
/// chunks on rayon (see [`PAR_LIMBS`]).
#[inline]
pub(crate) fn mul_small(a: &mut [u64], m: u64, c: u64) -> u64 {
    if a.len() < PAR_LIMBS {
        return mul_small_seq(a, m, c);
    }
    let outs: Vec<u64> = a
        .par_chunks_mut(PAR_CHUNK)
        .map(|x| mul_small_seq(x, m, 0))
        .collect();
    // A chunk's carry out is below m, so adding the 0 or 1 of the settling stays below BASE.
    let mut carry = c;
    for (chunk, out) in a.chunks_mut(PAR_CHUNK).zip(outs) {
        carry = add_small(chunk, carry) + out;
    }
    carry
}

/// [`mul_small`] on one thread. Multipliers up to 4 (the doubling's 2 and 4) need no division:
/// a limb times m plus a carry below 4 is below `4 BASE`, so the carry out is a count of
/// comparisons.
#[inline]
fn mul_small_seq(a: &mut [u64], m: u64, c: u64) -> u64 {
    let mut carry = c;
    if m <= 4 && c < 4 {
        let base = BASE as u128;
        for x in a.iter_mut() {
            let t = (*x as u128) * (m as u128) + carry as u128;
            carry = u64::from(t >= base) + u64::from(t >= 2 * base) + u64::from(t >= 3 * base);
            *x = (t - carry as u128 * base) as u64;
        }
        return carry;
    }
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

    /// Limbs from a xorshift stream, with runs of `BASE - 1` and of zeros so carries and
    /// borrows ripple across chunk boundaries.
    fn limbs(len: usize, seed: u64) -> Vec<u64> {
        let mut s = seed | 1;
        (0..len)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                match (i / 5000) % 4 {
                    1 => BASE - 1,
                    3 => 0,
                    _ => s % BASE,
                }
            })
            .collect()
    }

    #[test]
    fn chunked_carry_passes_match_one_pass() {
        let n = 3 * PAR_LIMBS + 12_345;
        for seed in [1u64, 7, 99] {
            let (a, b) = (limbs(n, seed), limbs(n - 777, seed ^ 0xabcd));
            // add
            let (mut x, mut y) = (a.clone(), a.clone());
            let c = add_assign(&mut x, &b);
            let (head, tail) = y.split_at_mut(b.len());
            let want = add_small(tail, add_head(head, &b));
            assert_eq!((x, c), (y, want), "add, seed {seed}");
            // sub
            let (mut x, mut y) = (a.clone(), a.clone());
            let c = sub_assign(&mut x, &b);
            let (head, tail) = y.split_at_mut(b.len());
            let want = sub_small(tail, sub_head(head, &b));
            assert_eq!((x, c), (y, want), "sub, seed {seed}");
            // reverse sub over equal lengths
            let (mut x, mut y) = (b.clone(), b.clone());
            let c = rsub_assign(&mut x, &a[..b.len()]);
            let want = rsub_head(&mut y, &a[..b.len()]);
            assert_eq!((x, c), (y, want), "rsub, seed {seed}");
            // multiply by a word: the comparison path and the division path
            for m in [2u64, 3, 4, 7, BASE - 1] {
                let (mut x, mut y) = (a.clone(), a.clone());
                assert_eq!(
                    mul_small(&mut x, m, 1),
                    mul_small_seq(&mut y, m, 1),
                    "m {m}"
                );
                assert_eq!(x, y, "m {m}, seed {seed}");
            }
        }
    }

    #[test]
    fn carries_and_borrows_ripple_through_every_chunk() {
        let n = 2 * PAR_LIMBS + 5;
        // (BASE^n - 1) + 1 = BASE^n: a carry through every limb and out.
        let mut nines = vec![BASE - 1; n];
        let mut one = vec![0u64; n];
        one[0] = 1;
        assert_eq!(add_assign(&mut nines, &one), 1);
        assert!(nines.iter().all(|&x| x == 0));
        // BASE^(n-1) - 1: a borrow through every limb but the top.
        let mut top = vec![0u64; n];
        top[n - 1] = 1;
        assert_eq!(sub_assign(&mut top, &one), 0);
        assert!(top[..n - 1].iter().all(|&x| x == BASE - 1) && top[n - 1] == 0);
        // A chunk's carry out near BASE into a next chunk whose first limb is BASE - 1 (the
        // settling once added them in a u64, past 2^64), for multipliers near BASE.
        let mut edge: Vec<u64> = limbs(2 * PAR_LIMBS, 5);
        for k in 1..edge.len() / PAR_CHUNK {
            edge[k * PAR_CHUNK - 1] = BASE - 1;
            edge[k * PAR_CHUNK] = BASE - 1;
        }
        for m in [BASE - 1, BASE - 2, 9_500_000_000_000_000_000] {
            let (mut x, mut y) = (edge.clone(), edge.clone());
            assert_eq!(
                mul_small(&mut x, m, BASE - 1),
                mul_small_seq(&mut y, m, BASE - 1),
                "m {m}"
            );
            assert_eq!(x, y, "m {m}");
        }
        let mut top = vec![BASE - 1; 3];
        assert_eq!(add_small(&mut top, BASE - 1), 1);
        assert_eq!(top, vec![BASE - 2, 0, 0]);
        // 4 (BASE^n - 1) / ... : every limb times 4 carries 3.
        let mut nines = vec![BASE - 1; n];
        assert_eq!(mul_small(&mut nines, 4, 0), 3);
        assert_eq!(nines[0], BASE - 4);
        assert!(nines[1..].iter().all(|&x| x == BASE - 1));
    }
}
