//! [`DecNat`]: the natural number type, its small arithmetic, comparison and text.

use std::cmp::Ordering;
use std::error::Error;
use std::fmt;
use std::io;
use std::ops::{Add, AddAssign, Mul, MulAssign, Sub, SubAssign};
use std::str::FromStr;

use super::limbs::{self, BASE, DIGITS};
use super::mul::{self, MulAlgorithm};
use super::text;

/// A natural number in base 10^19: little-endian `u64` limbs, each below 10^19, with no high
/// zero limbs (zero has no limbs at all).
///
/// Printing is a linear copy of the limbs, so a number computed in this form reaches decimal
/// text at memory speed; see the [module docs](super) for the multiplication algorithms.
///
/// Arithmetic follows `BigUint`: `+`, `-` (panics on underflow; [`DecNat::checked_sub`]
/// returns `None` instead), `*` on references, in-place forms with `u64` operands, `Ord`.
///
/// # Examples
///
/// ```
/// use parkit::decimal::DecNat;
///
/// let a: DecNat = "12345678901234567890123".parse().unwrap();
/// let b = DecNat::from(1_000_000_007u64);
/// let p = &a * &b;
/// assert_eq!(p.to_string(), "12345678987654320198764975230861");
/// assert_eq!(&(&p - &a) + &a, p);
/// assert_eq!(p.clone() - &a + &a, p);
/// assert!(b < a);
/// assert_eq!(a.digit_count(), 23);
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct DecNat {
    limbs: Vec<u64>,
}

impl DecNat {
    /// Zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::decimal::DecNat;
    ///
    /// assert!(DecNat::ZERO.is_zero());
    /// assert_eq!(DecNat::ZERO.to_string(), "0");
    /// ```
    pub const ZERO: DecNat = DecNat { limbs: Vec::new() };

    /// Builds a number from little-endian base-10^19 limbs; high zero limbs are dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::decimal::DecNat;
    ///
    /// let x = DecNat::from_limbs(vec![5, 1, 0]);
    /// assert_eq!(x.to_string(), "10000000000000000005");
    /// assert_eq!(x.limbs(), &[5, 1]);
    /// ```
    ///
    /// # Panics
    ///
    /// Panics if a limb is 10^19 or more.
    #[must_use]
    pub fn from_limbs(mut limbs: Vec<u64>) -> DecNat {
        assert!(
            limbs.iter().all(|&x| x < BASE),
            "DecNat::from_limbs: a limb is not below 10^19"
        );
        limbs::normalize(&mut limbs);
        DecNat { limbs }
    }

    /// Wraps limbs known to be valid (below the base), normalizing them.
    pub(crate) fn from_vec(mut limbs: Vec<u64>) -> DecNat {
        debug_assert!(limbs.iter().all(|&x| x < BASE));
        limbs::normalize(&mut limbs);
        DecNat { limbs }
    }

    /// The limbs, little-endian, without high zeros (empty for zero).
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::decimal::DecNat;
    ///
    /// assert_eq!(DecNat::from(10_000_000_000_000_000_042u128).limbs(), &[42, 1]);
    /// assert!(DecNat::ZERO.limbs().is_empty());
    /// ```
    #[must_use]
    pub fn limbs(&self) -> &[u64] {
        &self.limbs
    }

    /// The limbs by value, little-endian, without high zeros.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::decimal::DecNat;
    ///
    /// assert_eq!(DecNat::from(7u64).into_limbs(), vec![7]);
    /// ```
    #[must_use]
    pub fn into_limbs(self) -> Vec<u64> {
        self.limbs
    }

    /// Whether the number is zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::decimal::DecNat;
    ///
    /// assert!(DecNat::from(0u64).is_zero());
    /// assert!(!DecNat::from(1u64).is_zero());
    /// ```
    #[must_use]
    pub fn is_zero(&self) -> bool {
        self.limbs.is_empty()
    }

    /// The number of decimal digits in its text (1 for zero).
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::decimal::DecNat;
    /// use parkit::fib::fib_in;
    ///
    /// assert_eq!(DecNat::ZERO.digit_count(), 1);
    /// assert_eq!(DecNat::from(10_000_000_000_000_000_000u128).digit_count(), 20);
    /// assert_eq!(fib_in::<DecNat>(1_000_000).digit_count(), 208_988);
    /// ```
    #[must_use]
    pub fn digit_count(&self) -> u64 {
        match self.limbs.last() {
            None => 1,
            Some(&top) => {
                (self.limbs.len() as u64 - 1) * DIGITS as u64 + u64::from(top.ilog10() + 1)
            }
        }
    }

    /// `self - other`, or `None` if `other` is larger.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::decimal::DecNat;
    ///
    /// let (a, b) = (DecNat::from(5u64), DecNat::from(7u64));
    /// assert_eq!(b.checked_sub(&a), Some(DecNat::from(2u64)));
    /// assert_eq!(a.checked_sub(&b), None);
    /// ```
    #[must_use]
    pub fn checked_sub(&self, other: &DecNat) -> Option<DecNat> {
        if *self < *other {
            return None;
        }
        let mut out = self.clone();
        limbs::sub_assign(&mut out.limbs, &other.limbs);
        limbs::normalize(&mut out.limbs);
        Some(out)
    }

    /// `self` squared: cheaper than `self * self` (one transform per prime at NTT sizes).
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::decimal::DecNat;
    ///
    /// let x: DecNat = "99999999999999999999".parse().unwrap();
    /// assert_eq!(x.square().to_string(), "9999999999999999999800000000000000000001");
    /// ```
    #[must_use]
    pub fn square(&self) -> DecNat {
        self.square_using(MulAlgorithm::Auto)
    }

    /// `self * other` with a chosen algorithm (benchmarks, tests); `*` uses
    /// [`MulAlgorithm::Auto`].
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::decimal::{DecNat, MulAlgorithm};
    ///
    /// let a = DecNat::from(u128::MAX);
    /// let b = DecNat::from(12_345u64);
    /// let want = &a * &b;
    /// for alg in [
    ///     MulAlgorithm::Schoolbook,
    ///     MulAlgorithm::Karatsuba,
    ///     MulAlgorithm::Ntt,
    ///     MulAlgorithm::IntegerNtt,
    /// ] {
    ///     assert_eq!(a.mul_using(&b, alg), want);
    /// }
    /// ```
    #[must_use]
    pub fn mul_using(&self, other: &DecNat, alg: MulAlgorithm) -> DecNat {
        DecNat::from_vec(mul::mul(&self.limbs, &other.limbs, alg))
    }

    /// `self` squared with a chosen algorithm.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::decimal::{DecNat, MulAlgorithm};
    ///
    /// let a = DecNat::from(u128::MAX);
    /// assert_eq!(a.square_using(MulAlgorithm::Ntt), &a * &a);
    /// ```
    #[must_use]
    pub fn square_using(&self, alg: MulAlgorithm) -> DecNat {
        DecNat::from_vec(mul::square(&self.limbs, alg))
    }

    /// Appends part of the decimal text to `out`: the limbs at positions `limbs` counted from
    /// the most significant (position 0 is the top limb, written without leading zeros; every
    /// other limb is 19 digits). Positions past the last limb are ignored. Consecutive ranges
    /// concatenate to the whole text, so a big number can be streamed in pieces of bounded
    /// size, on any thread (this never enters a rayon pool).
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::decimal::DecNat;
    /// use parkit::fib::fib_in;
    ///
    /// let v = fib_in::<DecNat>(1000);
    /// let n = v.limbs().len();
    /// let mut text = Vec::new();
    /// for start in (0..n).step_by(2) {
    ///     v.write_text_range(start..start + 2, &mut text);
    /// }
    /// assert_eq!(text, v.to_string().as_bytes());
    /// ```
    pub fn write_text_range(&self, limbs: std::ops::Range<usize>, out: &mut Vec<u8>) {
        text::write_range(&self.limbs, limbs, out);
    }

    /// Writes the decimal text to `w`, with no intermediate `String`: the top limb unpadded,
    /// every other limb as 19 digits, converted in blocks (in parallel on the current rayon pool
    /// for big numbers) and written block by block.
    ///
    /// Blocking behaviour: the writes happen on the calling thread, so `w` may block; do not
    /// call this from inside a rayon task with a writer that can block for long.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::decimal::DecNat;
    /// use parkit::fib::fib_in;
    ///
    /// let mut out = Vec::new();
    /// fib_in::<DecNat>(100).write_to(&mut out).unwrap();
    /// assert_eq!(out, b"354224848179261915075");
    /// ```
    ///
    /// # Errors
    ///
    /// Any error `w` returns.
    pub fn write_to<W: io::Write + ?Sized>(&self, w: &mut W) -> io::Result<()> {
        text::write_to(&self.limbs, w)
    }

    /// `self = other - self`, panicking if `other < self`.
    pub(crate) fn rsub_assign(&mut self, other: &DecNat) {
        let borrow = limbs::rsub_assign(&mut self.limbs, &other.limbs);
        assert_eq!(borrow, 0, "DecNat subtraction underflow");
        limbs::normalize(&mut self.limbs);
    }
}

impl From<u64> for DecNat {
    /// # Examples
    ///
    /// ```
    /// use parkit::decimal::DecNat;
    ///
    /// assert_eq!(DecNat::from(u64::MAX).to_string(), u64::MAX.to_string());
    /// ```
    fn from(v: u64) -> DecNat {
        DecNat::from_vec(vec![v % BASE, v / BASE])
    }
}

impl From<u128> for DecNat {
    /// # Examples
    ///
    /// ```
    /// use parkit::decimal::DecNat;
    ///
    /// assert_eq!(DecNat::from(u128::MAX).to_string(), u128::MAX.to_string());
    /// ```
    fn from(v: u128) -> DecNat {
        let b = BASE as u128;
        DecNat::from_vec(vec![(v % b) as u64, (v / b % b) as u64, (v / b / b) as u64])
    }
}

impl Ord for DecNat {
    fn cmp(&self, other: &DecNat) -> Ordering {
        limbs::cmp(&self.limbs, &other.limbs)
    }
}

impl PartialOrd for DecNat {
    fn partial_cmp(&self, other: &DecNat) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl AddAssign<&DecNat> for DecNat {
    fn add_assign(&mut self, other: &DecNat) {
        if self.limbs.len() < other.limbs.len() {
            self.limbs.resize(other.limbs.len(), 0);
        }
        let carry = limbs::add_assign(&mut self.limbs, &other.limbs);
        if carry != 0 {
            self.limbs.push(carry);
        }
    }
}

impl Add<&DecNat> for &DecNat {
    type Output = DecNat;

    fn add(self, other: &DecNat) -> DecNat {
        let (big, small) = if self.limbs.len() >= other.limbs.len() {
            (self, other)
        } else {
            (other, self)
        };
        let mut out = Vec::with_capacity(big.limbs.len() + 1);
        out.extend_from_slice(&big.limbs);
        let mut out = DecNat { limbs: out };
        out += small;
        out
    }
}

impl Add<&DecNat> for DecNat {
    type Output = DecNat;

    fn add(mut self, other: &DecNat) -> DecNat {
        self += other;
        self
    }
}

impl AddAssign<u64> for DecNat {
    fn add_assign(&mut self, v: u64) {
        *self += &DecNat::from(v);
    }
}

impl Add<u64> for DecNat {
    type Output = DecNat;

    fn add(mut self, v: u64) -> DecNat {
        self += v;
        self
    }
}

impl SubAssign<&DecNat> for DecNat {
    /// # Panics
    ///
    /// Panics if `other > self`.
    fn sub_assign(&mut self, other: &DecNat) {
        let borrow = if self.limbs.len() >= other.limbs.len() {
            limbs::sub_assign(&mut self.limbs, &other.limbs)
        } else {
            1
        };
        assert_eq!(borrow, 0, "DecNat subtraction underflow");
        limbs::normalize(&mut self.limbs);
    }
}

impl Sub<&DecNat> for &DecNat {
    type Output = DecNat;

    /// # Panics
    ///
    /// Panics if `other > self`.
    fn sub(self, other: &DecNat) -> DecNat {
        self.checked_sub(other)
            .expect("DecNat subtraction underflow")
    }
}

impl Sub<&DecNat> for DecNat {
    type Output = DecNat;

    /// # Panics
    ///
    /// Panics if `other > self`.
    fn sub(mut self, other: &DecNat) -> DecNat {
        self -= other;
        self
    }
}

impl SubAssign<u64> for DecNat {
    /// # Panics
    ///
    /// Panics if `v > self`.
    fn sub_assign(&mut self, v: u64) {
        *self -= &DecNat::from(v);
    }
}

impl Sub<u64> for DecNat {
    type Output = DecNat;

    /// # Panics
    ///
    /// Panics if `v > self`.
    fn sub(mut self, v: u64) -> DecNat {
        self -= v;
        self
    }
}

impl MulAssign<u64> for DecNat {
    fn mul_assign(&mut self, m: u64) {
        if m < BASE {
            let carry = limbs::mul_small(&mut self.limbs, m, 0);
            if carry != 0 {
                self.limbs.push(carry);
            }
            limbs::normalize(&mut self.limbs);
        } else {
            *self = &*self * &DecNat::from(m);
        }
    }
}

impl Mul<u64> for DecNat {
    type Output = DecNat;

    fn mul(mut self, m: u64) -> DecNat {
        self *= m;
        self
    }
}

impl Mul<&DecNat> for &DecNat {
    type Output = DecNat;

    fn mul(self, other: &DecNat) -> DecNat {
        if std::ptr::eq(self, other) {
            return self.square();
        }
        self.mul_using(other, MulAlgorithm::Auto)
    }
}

impl fmt::Display for DecNat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        text::fmt(&self.limbs, f)
    }
}

impl fmt::Debug for DecNat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.limbs.len() <= 4 {
            write!(f, "DecNat({self})")
        } else {
            write!(f, "DecNat({} digits)", self.digit_count())
        }
    }
}

/// The error of parsing a [`DecNat`] from text.
///
/// # Examples
///
/// ```
/// use parkit::decimal::DecNat;
///
/// let err = "12x".parse::<DecNat>().unwrap_err();
/// assert_eq!(err.to_string(), "invalid digit in a decimal number");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseDecNatError {
    kind: ParseErrorKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ParseErrorKind {
    Empty,
    InvalidDigit,
}

impl fmt::Display for ParseDecNatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            ParseErrorKind::Empty => "cannot parse a decimal number from an empty string",
            ParseErrorKind::InvalidDigit => "invalid digit in a decimal number",
        })
    }
}

impl Error for ParseDecNatError {}

impl FromStr for DecNat {
    type Err = ParseDecNatError;

    /// Parses ASCII decimal digits (no sign, no separators); leading zeros are allowed.
    fn from_str(s: &str) -> Result<DecNat, ParseDecNatError> {
        if s.is_empty() {
            return Err(ParseDecNatError {
                kind: ParseErrorKind::Empty,
            });
        }
        text::parse(s.as_bytes())
            .map(|limbs| DecNat { limbs })
            .ok_or(ParseDecNatError {
                kind: ParseErrorKind::InvalidDigit,
            })
    }
}
