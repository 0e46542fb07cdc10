//! The number types Fibonacci runs on: what fast doubling, stepping and jumping need from a
//! natural number, for num-bigint's [`BigUint`] (base 2^64) and [`DecNat`] (base 10^19).

use std::sync::Arc;

use num_bigint::BigUint;

use super::parallel;
use super::tuning::join_bits;
use crate::decimal::DecNat;

/// A natural-number type that fast doubling, stepping and the addition formula can run on:
/// [`BigUint`] (binary, then converted to print) or [`DecNat`] (base 10^19, printing is a
/// linear copy).
///
/// Every Fibonacci computation in this crate, [`fib_in`](super::fib_in) and the
/// [`Fibonacci`](super::Fibonacci) engine's planner included, is written once over this trait.
/// Its methods are what one doubling step needs (two squarings, additions, subtractions, a
/// multiple by a word), what the addition formula needs (products), and the byte size a cache
/// weighs. The trait is sealed: the engine keeps one cache for both types, and each type's
/// place in it is part of the implementation.
///
/// # Examples
///
/// ```
/// use num_bigint::BigUint;
/// use parkit::decimal::DecNat;
/// use parkit::fib::{FibNumber, fib_in};
///
/// // The same computation in either base gives the same number.
/// fn digits<N: FibNumber + ToString>(n: u64) -> String {
///     fib_in::<N>(n).to_string()
/// }
/// assert_eq!(digits::<BigUint>(1000), digits::<DecNat>(1000));
/// assert_eq!(DecNat::from_word(7).product(&DecNat::from_word(6)), DecNat::from_word(42));
/// ```
pub trait FibNumber: Clone + Send + Sync + sealed::Sealed + 'static {
    /// The number `v`.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::fib::FibNumber;
    /// use parkit::decimal::DecNat;
    ///
    /// assert_eq!(DecNat::from_word(u128::MAX).to_string(), u128::MAX.to_string());
    /// ```
    fn from_word(v: u128) -> Self;

    /// `self * self`, parallel inside on the current rayon pool when big.
    ///
    /// # Examples
    ///
    /// ```
    /// use num_bigint::BigUint;
    /// use parkit::fib::FibNumber;
    ///
    /// assert_eq!(BigUint::from_word(12).squared(), BigUint::from(144u32));
    /// ```
    #[must_use]
    fn squared(&self) -> Self;

    /// `self * other`, parallel inside on the current rayon pool when big.
    ///
    /// # Examples
    ///
    /// ```
    /// use num_bigint::BigUint;
    /// use parkit::fib::FibNumber;
    ///
    /// assert_eq!(BigUint::from_word(12).product(&BigUint::from_word(3)), BigUint::from(36u32));
    /// ```
    #[must_use]
    fn product(&self, other: &Self) -> Self;

    /// `self + other`.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::fib::FibNumber;
    /// use parkit::decimal::DecNat;
    ///
    /// assert_eq!(DecNat::from_word(2).sum(&DecNat::from_word(3)), DecNat::from_word(5));
    /// ```
    #[must_use]
    fn sum(&self, other: &Self) -> Self;

    /// `self += other`.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::fib::FibNumber;
    /// use parkit::decimal::DecNat;
    ///
    /// let mut x = DecNat::from_word(2);
    /// x.add_assign_ref(&DecNat::from_word(3));
    /// assert_eq!(x, DecNat::from_word(5));
    /// ```
    fn add_assign_ref(&mut self, other: &Self);

    /// `self -= other`.
    ///
    /// # Panics
    ///
    /// If `other > self`.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::fib::FibNumber;
    /// use parkit::decimal::DecNat;
    ///
    /// let mut x = DecNat::from_word(5);
    /// x.sub_assign_ref(&DecNat::from_word(3));
    /// assert_eq!(x, DecNat::from_word(2));
    /// ```
    fn sub_assign_ref(&mut self, other: &Self);

    /// `self = other - self`.
    ///
    /// # Panics
    ///
    /// If `self > other`.
    ///
    /// # Examples
    ///
    /// ```
    /// use num_bigint::BigUint;
    /// use parkit::fib::FibNumber;
    ///
    /// let mut x = BigUint::from_word(3);
    /// x.rsub_assign_ref(&BigUint::from_word(5));
    /// assert_eq!(x, BigUint::from(2u32));
    /// ```
    fn rsub_assign_ref(&mut self, other: &Self);

    /// `self *= k`.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::fib::FibNumber;
    /// use parkit::decimal::DecNat;
    ///
    /// let mut x = DecNat::from_word(7);
    /// x.mul_word(4);
    /// assert_eq!(x, DecNat::from_word(28));
    /// ```
    fn mul_word(&mut self, k: u64);

    /// `self += k`.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::fib::FibNumber;
    /// use parkit::decimal::DecNat;
    ///
    /// let mut x = DecNat::from_word(7);
    /// x.add_word(2);
    /// assert_eq!(x, DecNat::from_word(9));
    /// ```
    fn add_word(&mut self, k: u64);

    /// `self -= k`.
    ///
    /// # Panics
    ///
    /// If `k > self`.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::fib::FibNumber;
    /// use parkit::decimal::DecNat;
    ///
    /// let mut x = DecNat::from_word(7);
    /// x.sub_word(2);
    /// assert_eq!(x, DecNat::from_word(5));
    /// ```
    fn sub_word(&mut self, k: u64);

    /// Bytes of heap the value holds: what a cache weighs it at.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::fib::{FibNumber, fib_in};
    /// use parkit::decimal::DecNat;
    ///
    /// // F(10^5) has 20,899 digits: 1,100 limbs of 19 digits, 8 bytes each.
    /// assert_eq!(fib_in::<DecNat>(100_000).heap_bytes(), 1_100 * 8);
    /// ```
    fn heap_bytes(&self) -> usize;

    /// Whether the two squarings of a doubling step at this size run under `rayon::join`
    /// (rather than one after the other, each parallel inside).
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::fib::FibNumber;
    /// use parkit::decimal::DecNat;
    ///
    /// // Small squarings cost less than a join.
    /// assert!(!DecNat::from_word(5).join_squarings());
    /// ```
    fn join_squarings(&self) -> bool;

    /// Runs `f`, a whole computation in this type, with whatever scratch state its products
    /// keep between calls (the decimal NTT recycles its transform buffers inside).
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::fib::FibNumber;
    /// use parkit::decimal::DecNat;
    ///
    /// let x = DecNat::scoped(|| DecNat::from_word(3).squared());
    /// assert_eq!(x, DecNat::from_word(9));
    /// ```
    fn scoped<R>(f: impl FnOnce() -> R) -> R {
        f()
    }
}

/// The sealing trait, and each type's place in the engine's one cache.
pub(crate) mod sealed {
    use super::{Arc, BigUint, DecNat};

    /// A cached pair (F(m), F(m+1)) in one of the types.
    #[derive(Clone, Debug)]
    pub enum Cached {
        /// num-bigint.
        Binary(Arc<(BigUint, BigUint)>),
        /// Base 10^19.
        Decimal(Arc<(DecNat, DecNat)>),
    }

    /// Which type a cache key holds.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum Base {
        /// num-bigint.
        Binary,
        /// Base 10^19.
        Decimal,
    }

    /// Not implementable outside this crate.
    pub trait Sealed: Sized {
        /// This type's tag in cache keys.
        const BASE: Base;
        /// A pair into the cache's value type.
        fn wrap(pair: Arc<(Self, Self)>) -> Cached;
        /// The pair back out, if it is this type's.
        fn unwrap(cached: &Cached) -> Option<Arc<(Self, Self)>>;
    }

    impl Sealed for BigUint {
        const BASE: Base = Base::Binary;
        fn wrap(pair: Arc<(Self, Self)>) -> Cached {
            Cached::Binary(pair)
        }
        fn unwrap(cached: &Cached) -> Option<Arc<(Self, Self)>> {
            match cached {
                Cached::Binary(p) => Some(Arc::clone(p)),
                Cached::Decimal(_) => None,
            }
        }
    }

    impl Sealed for DecNat {
        const BASE: Base = Base::Decimal;
        fn wrap(pair: Arc<(Self, Self)>) -> Cached {
            Cached::Decimal(pair)
        }
        fn unwrap(cached: &Cached) -> Option<Arc<(Self, Self)>> {
            match cached {
                Cached::Decimal(p) => Some(Arc::clone(p)),
                Cached::Binary(_) => None,
            }
        }
    }
}

impl FibNumber for BigUint {
    fn from_word(v: u128) -> Self {
        BigUint::from(v)
    }
    fn squared(&self) -> Self {
        parallel::square(self)
    }
    fn product(&self, other: &Self) -> Self {
        parallel::mul(self, other)
    }
    fn sum(&self, other: &Self) -> Self {
        self + other
    }
    fn add_assign_ref(&mut self, other: &Self) {
        *self += other;
    }
    fn sub_assign_ref(&mut self, other: &Self) {
        *self -= other;
    }
    fn rsub_assign_ref(&mut self, other: &Self) {
        *self = other - &*self;
    }
    fn mul_word(&mut self, k: u64) {
        *self *= k;
    }
    fn add_word(&mut self, k: u64) {
        *self += k;
    }
    fn sub_word(&mut self, k: u64) {
        *self -= k;
    }
    fn heap_bytes(&self) -> usize {
        self.bits().div_ceil(64) as usize * 8
    }
    fn join_squarings(&self) -> bool {
        self.bits() >= join_bits()
    }
}

/// The two squarings of a decimal step run under `rayon::join` from this many limbs...
const JOIN_MIN_LIMBS: usize = 128;

/// ...and up to this many: past it each squaring is parallel inside and running them one after
/// the other halves the working memory.
const JOIN_MAX_LIMBS: usize = 1 << 20;

impl FibNumber for DecNat {
    fn from_word(v: u128) -> Self {
        DecNat::from(v)
    }
    fn squared(&self) -> Self {
        self.square()
    }
    fn product(&self, other: &Self) -> Self {
        self * other
    }
    fn sum(&self, other: &Self) -> Self {
        self + other
    }
    fn add_assign_ref(&mut self, other: &Self) {
        *self += other;
    }
    fn sub_assign_ref(&mut self, other: &Self) {
        *self -= other;
    }
    fn rsub_assign_ref(&mut self, other: &Self) {
        self.rsub_assign(other);
    }
    fn mul_word(&mut self, k: u64) {
        *self *= k;
    }
    fn add_word(&mut self, k: u64) {
        *self += k;
    }
    fn sub_word(&mut self, k: u64) {
        *self -= k;
    }
    fn heap_bytes(&self) -> usize {
        self.limbs().len() * 8
    }
    fn join_squarings(&self) -> bool {
        (JOIN_MIN_LIMBS..JOIN_MAX_LIMBS).contains(&self.limbs().len())
    }
    fn scoped<R>(f: impl FnOnce() -> R) -> R {
        let _buffers = crate::decimal::BufferScope::new();
        f()
    }
}
