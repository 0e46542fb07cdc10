//! The choice of multiplication algorithm by operand size.

use super::fma;
use super::karatsuba::{self, KARATSUBA_MIN, KARATSUBA_SQR_MIN};
use super::limbs;
use super::ntt;

/// From this many limbs (smaller operand) a product goes to the NTT.
pub(crate) const NTT_MIN: usize = 448;

/// From this many limbs a square goes to the NTT.
pub(crate) const NTT_SQR_MIN: usize = 512;

/// Which algorithm a [`DecNat`](super::DecNat) product uses.
///
/// [`MulAlgorithm::Auto`] is what `*` and [`DecNat::square`](super::DecNat::square) use: it
/// picks by the smaller operand's length in limbs, at thresholds measured on the development
/// machine (see the [module docs](super)). The others force one algorithm whatever the size,
/// for benchmarks and tests; all give the same result.
///
/// # Examples
///
/// ```
/// use parkit::decimal::{DecNat, MulAlgorithm};
///
/// let x: DecNat = "123456789".repeat(50).parse().unwrap();
/// let auto = x.square();
/// assert_eq!(x.square_using(MulAlgorithm::Schoolbook), auto);
/// assert_eq!(x.mul_using(&x, MulAlgorithm::Ntt), auto);
/// assert_eq!(x.mul_using(&x, MulAlgorithm::IntegerNtt), auto);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MulAlgorithm {
    /// Schoolbook below 80 limbs (128 for squares), Karatsuba below 448 (512 for squares), NTT
    /// from there.
    #[default]
    Auto,
    /// Schoolbook (product scanning): quadratic.
    Schoolbook,
    /// Karatsuba, down to schoolbook below the Auto threshold; never the NTT.
    Karatsuba,
    /// A number-theoretic transform whatever the size: the fastest exact one this CPU has
    /// (f64 FMA on SIMD lanes with AVX2 or AVX-512, for a smaller operand of up to about 14
    /// million limbs), else [`IntegerNtt`](Self::IntegerNtt).
    Ntt,
    /// The integer transform over three primes below `2^62`, one lane, whatever the CPU: the
    /// fallback of [`Ntt`](Self::Ntt), exact to `2^59` limbs; for comparisons.
    IntegerNtt,
}

/// `a * b` as normalized limbs.
pub(crate) fn mul(a: &[u64], b: &[u64], alg: MulAlgorithm) -> Vec<u64> {
    if a.is_empty() || b.is_empty() {
        return Vec::new();
    }
    let small = a.len().min(b.len());
    let alg = match alg {
        MulAlgorithm::Auto if small >= NTT_MIN => MulAlgorithm::Ntt,
        MulAlgorithm::Auto if small >= KARATSUBA_MIN => MulAlgorithm::Karatsuba,
        MulAlgorithm::Auto => MulAlgorithm::Schoolbook,
        other => other,
    };
    match alg {
        MulAlgorithm::Ntt => return fma::mul(a, b),
        MulAlgorithm::IntegerNtt => return ntt::mul(a, b),
        _ => {}
    }
    let mut out = vec![0u64; a.len() + b.len()];
    if alg == MulAlgorithm::Karatsuba {
        karatsuba::mul(&mut out, a, b);
    } else {
        karatsuba::schoolbook(&mut out, a, b);
    }
    limbs::normalize(&mut out);
    out
}

/// `a * a` as normalized limbs.
pub(crate) fn square(a: &[u64], alg: MulAlgorithm) -> Vec<u64> {
    if a.is_empty() {
        return Vec::new();
    }
    let alg = match alg {
        MulAlgorithm::Auto if a.len() >= NTT_SQR_MIN => MulAlgorithm::Ntt,
        MulAlgorithm::Auto if a.len() >= KARATSUBA_SQR_MIN => MulAlgorithm::Karatsuba,
        MulAlgorithm::Auto => MulAlgorithm::Schoolbook,
        other => other,
    };
    match alg {
        MulAlgorithm::Ntt => return fma::square(a),
        MulAlgorithm::IntegerNtt => return ntt::square(a),
        _ => {}
    }
    let mut out = vec![0u64; 2 * a.len()];
    if alg == MulAlgorithm::Karatsuba {
        karatsuba::square(&mut out, a);
    } else {
        karatsuba::schoolbook_square(&mut out, a);
    }
    limbs::normalize(&mut out);
    out
}
