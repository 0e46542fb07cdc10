//! Schoolbook and Karatsuba multiplication of base-10^19 limb slices.
//!
//! Schoolbook works column by column (product scanning): the products of one output limb are
//! summed in a three-word accumulator, then two reciprocal divisions by the base split off the
//! limb and the carry. One 64x64-bit multiplication per limb pair, and squaring computes each
//! off-diagonal product once and doubles the column.
//!
//! Karatsuba is the subtractive variant: `a*b = z0 + (z0 + z2 - s|a0-a1||b0-b1|) B^h + z2 B^2h`,
//! so the middle product has half-size operands and no carry limb. Unbalanced operands are cut
//! into balanced pieces of the smaller one's length.

use super::limbs::{self, BASE, div_base};

/// From this many limbs (smaller operand) Karatsuba beats schoolbook; measured (see the module
/// docs of [`crate::decimal`]).
pub(crate) const KARATSUBA_MIN: usize = 80;

/// From this many limbs squaring switches to Karatsuba.
pub(crate) const KARATSUBA_SQR_MIN: usize = 128;

/// Splits a three-word column value plus nothing else into (limb, carry).
#[inline(always)]
fn split_column(hi: u64, lo: u128) -> (u64, u128) {
    let (q1, r1) = div_base(hi, (lo >> 64) as u64);
    let (q0, r0) = div_base(r1, lo as u64);
    (r0, (q1 as u128) << 64 | q0 as u128)
}

/// `out = a * b` by product scanning. `out.len() == a.len() + b.len()`, both non-empty.
pub(crate) fn schoolbook(out: &mut [u64], a: &[u64], b: &[u64]) {
    let (la, lb) = (a.len(), b.len());
    debug_assert!(la > 0 && lb > 0 && out.len() == la + lb);
    let mut carry: u128 = 0;
    for (k, o) in out[..la + lb - 1].iter_mut().enumerate() {
        let lo_i = k.saturating_sub(lb - 1);
        let hi_i = k.min(la - 1);
        let mut acc = carry;
        let mut top = 0u64;
        for (&x, &y) in a[lo_i..=hi_i]
            .iter()
            .zip(b[k - hi_i..=k - lo_i].iter().rev())
        {
            let (s, over) = acc.overflowing_add(x as u128 * y as u128);
            acc = s;
            top += u64::from(over);
        }
        (*o, carry) = split_column(top, acc);
    }
    debug_assert!(carry < BASE as u128);
    out[la + lb - 1] = carry as u64;
}

/// `out = a * a` by product scanning, off-diagonal products once. `out.len() == 2 * a.len()`.
pub(crate) fn schoolbook_square(out: &mut [u64], a: &[u64]) {
    let n = a.len();
    debug_assert!(n > 0 && out.len() == 2 * n);
    let mut carry: u128 = 0;
    for (k, o) in out[..2 * n - 1].iter_mut().enumerate() {
        // Pairs i < j with i + j = k.
        let lo_i = k.saturating_sub(n - 1);
        let mut acc = 0u128;
        let mut top = 0u64;
        if k >= 1 {
            let hi_i = (k - 1) / 2;
            if lo_i <= hi_i {
                let ys = &a[k - hi_i..=k - lo_i];
                for (&x, &y) in a[lo_i..=hi_i].iter().zip(ys.iter().rev()) {
                    let (s, over) = acc.overflowing_add(x as u128 * y as u128);
                    acc = s;
                    top += u64::from(over);
                }
            }
        }
        top = top << 1 | (acc >> 127) as u64;
        acc <<= 1;
        if k % 2 == 0 {
            let d = a[k / 2] as u128;
            let (s, over) = acc.overflowing_add(d * d);
            acc = s;
            top += u64::from(over);
        }
        let (s, over) = acc.overflowing_add(carry);
        top += u64::from(over);
        (*o, carry) = split_column(top, s);
    }
    debug_assert!(carry < BASE as u128);
    out[2 * n - 1] = carry as u64;
}

/// `out = a * b` with Karatsuba down to [`KARATSUBA_MIN`]. `out.len() == a.len() + b.len()`.
pub(crate) fn mul(out: &mut [u64], a: &[u64], b: &[u64]) {
    let (a, b) = if a.len() >= b.len() { (a, b) } else { (b, a) };
    let (la, lb) = (a.len(), b.len());
    debug_assert_eq!(out.len(), la + lb);
    if lb == 0 {
        out.fill(0);
        return;
    }
    if lb < KARATSUBA_MIN {
        schoolbook(out, a, b);
        return;
    }
    let h = la.div_ceil(2);
    if lb <= h {
        unbalanced(out, a, b);
        return;
    }
    // a = a0 + a1 B^h, b = b0 + b1 B^h; a1, b1 are no longer than h.
    let (a0, a1) = a.split_at(h);
    let (b0, b1) = b.split_at(h);
    {
        let (lo, hi) = out.split_at_mut(2 * h);
        mul(lo, a0, b0);
        mul(hi, a1, b1);
    }
    let mut da = vec![0u64; h];
    let mut db = vec![0u64; h];
    let neg_a = limbs::abs_diff(&mut da, a0, a1);
    let neg_b = limbs::abs_diff(&mut db, b0, b1);
    let mut z1 = vec![0u64; 2 * h];
    mul(&mut z1, &da, &db);
    combine(out, h, &z1, neg_a != neg_b);
}

/// `out = a * a` with Karatsuba down to [`KARATSUBA_SQR_MIN`]. `out.len() == 2 * a.len()`.
pub(crate) fn square(out: &mut [u64], a: &[u64]) {
    let n = a.len();
    debug_assert_eq!(out.len(), 2 * n);
    if n == 0 {
        return;
    }
    if n < KARATSUBA_SQR_MIN {
        schoolbook_square(out, a);
        return;
    }
    let h = n.div_ceil(2);
    let (a0, a1) = a.split_at(h);
    {
        let (lo, hi) = out.split_at_mut(2 * h);
        square(lo, a0);
        square(hi, a1);
    }
    let mut da = vec![0u64; h];
    limbs::abs_diff(&mut da, a0, a1);
    let mut z1 = vec![0u64; 2 * h];
    square(&mut z1, &da);
    combine(out, h, &z1, false);
}

/// With `out = z0 + z2 B^2h` in place, adds `(z0 + z2 -/+ z1) B^h`: `plus` when the signs of
/// the two differences differed (the middle product is then `z0 + z2 + z1`).
fn combine(out: &mut [u64], h: usize, z1: &[u64], plus: bool) {
    let mut mid = vec![0u64; 2 * h + 1];
    mid[..2 * h].copy_from_slice(&out[..2 * h]);
    let c = limbs::add_assign(&mut mid, &out[2 * h..]);
    debug_assert_eq!(c, 0);
    if plus {
        let c = limbs::add_assign(&mut mid, z1);
        debug_assert_eq!(c, 0);
    } else {
        let b = limbs::sub_assign(&mut mid, z1);
        debug_assert_eq!(b, 0);
    }
    let mut end = mid.len();
    while end > 0 && mid[end - 1] == 0 {
        end -= 1;
    }
    let c = limbs::add_assign(&mut out[h..], &mid[..end]);
    debug_assert_eq!(c, 0);
}

/// `out = a * b` for `b` at most half as long as `a`: `a` cut into `b`-sized pieces.
fn unbalanced(out: &mut [u64], a: &[u64], b: &[u64]) {
    let lb = b.len();
    out.fill(0);
    let mut piece = vec![0u64; 2 * lb];
    for (i, chunk) in a.chunks(lb).enumerate() {
        let p = &mut piece[..chunk.len() + lb];
        mul(p, chunk, b);
        let c = limbs::add_assign(&mut out[i * lb..], p);
        debug_assert_eq!(c, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[u64], b: &[u64]) -> Vec<u64> {
        let mut out = vec![0u64; a.len() + b.len()];
        for (i, &x) in a.iter().enumerate() {
            let mut carry = 0u64;
            for (j, &y) in b.iter().enumerate() {
                let t = x as u128 * y as u128 + out[i + j] as u128 + carry as u128;
                (carry, out[i + j]) = limbs::div_base_wide(t);
            }
            out[i + b.len()] = carry;
        }
        out
    }

    #[test]
    fn schoolbook_and_karatsuba_equal_the_row_by_row_product() {
        let nines = vec![BASE - 1; 300];
        let mixed: Vec<u64> = (0..300u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) % BASE)
            .collect();
        for (la, lb) in [
            (1, 1),
            (3, 2),
            (79, 80),
            (80, 80),
            (129, 128),
            (200, 170),
            (300, 300),
            (300, 7),
            (300, 81),
        ] {
            for (a, b) in [(&nines, &nines), (&mixed, &nines), (&mixed, &mixed)] {
                let (a, b) = (&a[..la], &b[..lb]);
                let want = naive(a, b);
                let mut out = vec![0u64; la + lb];
                schoolbook(&mut out, a, b);
                assert_eq!(out, want, "schoolbook {la}x{lb}");
                out.fill(7);
                mul(&mut out, a, b);
                assert_eq!(out, want, "karatsuba {la}x{lb}");
                let sq = naive(a, a);
                let mut out = vec![0u64; 2 * la];
                schoolbook_square(&mut out, a);
                assert_eq!(out, sq, "schoolbook square {la}");
                out.fill(7);
                square(&mut out, a);
                assert_eq!(out, sq, "karatsuba square {la}");
            }
        }
    }
}
