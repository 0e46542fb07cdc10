//! Products of big [`BigUint`]s cut into parallel pieces: num-bigint multiplies on one thread.
//!
//! Past `split_bits` ([`Thresholds`](super::Thresholds)) a product is cut Karatsuba-style into
//! three half-size products (a square into two squares and a product) that run in parallel,
//! recursively to a depth set by the thread count, so that the last, full-size product of a
//! Fibonacci computation (which dominates it) also uses every core.
//!
//! This is divide and conquer, but not [`divide`](crate::divide::divide)'s shape: `divide`
//! splits a problem in two and combines two results, while a Karatsuba product splits into
//! three subproducts whose combination needs all three (`z2 B^2 + (z1 - z2 - z0) B + z0`), and
//! the split is by depth (how many levels the pool can use), not by a size cutoff. Forcing it
//! into two-way splits would add a level of nesting and a tuple of results per level for no
//! gain, so the recursion is written here with nested `rayon::join`.

use num_bigint::BigUint;
use num_traits::Zero;

use super::tuning::split_bits;

/// How many levels of three-way splitting a product gets on a pool of `threads` threads: the
/// fewest levels whose `3^depth` pieces cover every thread (1 thread: none, 2-3: one, 4-9:
/// two), at most three.
fn split_depth(threads: usize) -> u32 {
    let mut depth = 0;
    while 3usize.pow(depth) < threads && depth < 3 {
        depth += 1;
    }
    depth
}

/// `a * b`, cut into parallel pieces on the current rayon pool when big enough.
pub(super) fn mul(a: &BigUint, b: &BigUint) -> BigUint {
    par_mul(a, b, split_depth(rayon::current_num_threads()))
}

/// `a * a`, cut into parallel pieces on the current rayon pool when big enough.
pub(super) fn square(a: &BigUint) -> BigUint {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fib::fib;

    #[test]
    fn split_depth_covers_the_threads() {
        let depths: Vec<u32> = [1, 2, 3, 4, 9, 10, 27, 28, 256]
            .iter()
            .map(|&t| split_depth(t))
            .collect();
        assert_eq!(depths, [0, 1, 1, 2, 2, 3, 3, 3, 3]);
        assert_eq!(split_depth(0), 0);
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
