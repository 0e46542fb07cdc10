//! Walking a list of inputs in order on one thread: each value is reached from the one before
//! by additions when it is at most [`STEP_GAP`] past it, from scratch otherwise. Written once
//! over a small `Walk` trait, for full values in any [`FibNumber`] type, residues mod a word,
//! and residues mod `10^k`.

use num_bigint::BigUint;

use super::number::FibNumber;
use super::{STEP_GAP, doubling, modular};

/// A kind of pair the walk carries: (F(m), F(m+1)) in some form.
trait Walk {
    type Pair;
    /// The pair at `n`, from scratch.
    fn fresh(&self, n: u64) -> Self::Pair;
    /// The pair one further on.
    fn advance(&self, pair: &mut Self::Pair);
}

/// A walk in progress: the last pair reached, and where.
struct Walker<'w, W: Walk> {
    walk: &'w W,
    run: Option<(u64, W::Pair)>,
}

impl<'w, W: Walk> Walker<'w, W> {
    fn new(walk: &'w W) -> Self {
        Walker { walk, run: None }
    }

    /// The pair at `n`: by steps from the last one when `n` is at most [`STEP_GAP`] past it,
    /// from scratch otherwise.
    fn at(&mut self, n: u64) -> &W::Pair {
        let pair = match self.run.take() {
            Some((prev, mut p)) if prev <= n && n - prev <= STEP_GAP => {
                for _ in prev..n {
                    self.walk.advance(&mut p);
                }
                p
            }
            _ => self.walk.fresh(n),
        };
        &self.run.insert((n, pair)).1
    }
}

/// Calls `f(n, &pair)` for every n of `ns` in order.
fn walk<W: Walk>(w: &W, ns: &[u64], mut f: impl FnMut(u64, &W::Pair)) {
    let mut walker = Walker::new(w);
    for &n in ns {
        f(n, walker.at(n));
    }
}

/// Full values in `N`.
struct Full<N>(std::marker::PhantomData<N>);

impl<N: FibNumber> Walk for Full<N> {
    type Pair = (N, N);
    fn fresh(&self, n: u64) -> (N, N) {
        doubling::fib_pair(n)
    }
    fn advance(&self, pair: &mut (N, N)) {
        doubling::advance(pair);
    }
}

/// Residues modulo a word.
struct Word(u64);

impl Walk for Word {
    type Pair = (u64, u64);
    fn fresh(&self, n: u64) -> (u64, u64) {
        modular::fib_pair_mod(n, self.0)
    }
    fn advance(&self, pair: &mut (u64, u64)) {
        *pair = modular::advance_mod(*pair, self.0);
    }
}

/// Residues modulo `10^k`, as big numbers.
struct Pow10 {
    k: u32,
    m: BigUint,
}

impl Walk for Pow10 {
    type Pair = (BigUint, BigUint);
    fn fresh(&self, n: u64) -> (BigUint, BigUint) {
        modular::fib_pair_mod_pow10(n, self.k)
    }
    fn advance(&self, pair: &mut (BigUint, BigUint)) {
        let s = (&pair.0 + &pair.1) % &self.m;
        pair.0 = std::mem::replace(&mut pair.1, s);
    }
}

/// Calls `f(n, &F(n))` for every n of `ns`, in order, on this thread, F(n) in the number type
/// `N`: a value at most [`STEP_GAP`] past the one before is reached by additions, any other by
/// a fresh fast doubling. For many small values, where a trip through the
/// [`Fibonacci`](super::Fibonacci) engine's pool and cache costs more than the arithmetic.
///
/// # Examples
///
/// ```
/// use parkit::decimal::DecNat;
/// use parkit::fib::{fib, for_each_in};
///
/// let mut text = String::new();
/// for_each_in(&[10, 11, 12, 500, 10], |n, v: &DecNat| text += &format!("{n}:{v} "));
/// assert_eq!(text, format!("10:55 11:89 12:144 500:{} 10:55 ", fib(500)));
/// ```
pub fn for_each_in<N: FibNumber>(ns: &[u64], mut f: impl FnMut(u64, &N)) {
    walk(&Full::<N>(std::marker::PhantomData), ns, |n, p| f(n, &p.0));
}

/// Calls `f(n, F(n) mod m)` for every n of `ns`, in input order, on this thread, stepping
/// through close values as [`for_each_in`] does; each residue costs O(log n) word operations
/// at most, so n may be any `u64`.
///
/// # Examples
///
/// ```
/// use parkit::fib::{fib_mod, for_each_mod};
///
/// let ns = [10u64, 11, 1_000_000_000_000, 12];
/// let mut got = Vec::new();
/// for_each_mod(&ns, 1_000_007, |_, r| got.push(r));
/// let want: Vec<u64> = ns.iter().map(|&n| fib_mod(n, 1_000_007)).collect();
/// assert_eq!(got, want);
/// ```
///
/// # Panics
///
/// If `m` is 0.
pub fn for_each_mod(ns: &[u64], m: u64, mut f: impl FnMut(u64, u64)) {
    assert!(m > 0, "for_each_mod: the modulus must be at least 1");
    walk(&Word(m), ns, |n, p| f(n, p.0));
}

/// The largest n whose F(n) has at most `k` digits: digit counts grow with n, so F(n) is
/// given whole by the last-digits walks exactly for `n <= last_whole(k)`.
pub(crate) fn last_whole(k: u32) -> u64 {
    // digit_count(0) = 1 <= k for every k >= 1; F(u64::MAX) has far more than u32::MAX digits.
    let (mut lo, mut hi) = (0u64, u64::MAX);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if super::digit_count(mid) <= u64::from(k) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// Calls `f(n, Some(text))` with the last `k` digits of F(n), leading zeros kept, for every n
/// of `ns` whose F(n) has more than `k` digits, and `f(n, None)` for the others, in order,
/// stepping through close values (residues mod `10^k`). The values with at most `k` digits
/// are whole values, which the [`Fibonacci`](super::Fibonacci) engine computes faster;
/// `last_short` is [`last_whole(k)`](last_whole), computed once by the caller.
pub(crate) fn for_each_last_digits(
    ns: &[u64],
    k: u32,
    last_short: u64,
    mut f: impl FnMut(u64, Option<String>),
) {
    debug_assert_eq!(last_short, last_whole(k));
    let width = k as usize;
    let short = |n: u64| n <= last_short;
    if k <= 19 {
        let word = Word(10u64.pow(k));
        let mut walker = Walker::new(&word);
        for &n in ns {
            let text = (!short(n)).then(|| modular::zero_pad(walker.at(n).0.to_string(), width));
            f(n, text);
        }
    } else {
        // 10^k itself costs seconds for k = 10^7: built only when a value is longer than k.
        if ns.iter().all(|&n| short(n)) {
            ns.iter().for_each(|&n| f(n, None));
            return;
        }
        let pow10 = Pow10 {
            k,
            m: BigUint::from(10u32).pow(k),
        };
        let mut walker = Walker::new(&pow10);
        for &n in ns {
            let text = (!short(n)).then(|| modular::zero_pad(walker.at(n).0.to_string(), width));
            f(n, text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decimal::DecNat;
    use crate::fib::{fib, last_digits};

    #[test]
    fn walks_equal_fresh_computations() {
        let ns = [0u64, 5, 5, 69, 70, 200, 199, 263, 264, 1000, 1064, 1065, 3];
        let mut seen = Vec::new();
        for_each_in(&ns, |n, v: &BigUint| seen.push((n, v.clone())));
        let want: Vec<(u64, BigUint)> = ns.iter().map(|&n| (n, fib(n))).collect();
        assert_eq!(seen, want);
        let mut text = Vec::new();
        for_each_in(&ns, |_, v: &DecNat| text.push(v.to_string()));
        assert_eq!(
            text,
            ns.iter().map(|&n| fib(n).to_string()).collect::<Vec<_>>()
        );
        for m in [1u64, 2, 10, 1_000_000_007, u64::MAX] {
            let mut got = Vec::new();
            for_each_mod(&ns, m, |_, r| got.push(r));
            let want: Vec<u64> = ns
                .iter()
                .map(|&n| u64::try_from(fib(n) % m).unwrap())
                .collect();
            assert_eq!(got, want, "m = {m}");
        }
    }

    #[test]
    fn last_whole_is_where_digit_counts_pass_k() {
        for k in [1u32, 2, 5, 19, 20, 39, 40, 1000, 10_000_000] {
            let n = last_whole(k);
            assert!(crate::fib::digit_count(n) <= u64::from(k), "k = {k}");
            assert!(crate::fib::digit_count(n + 1) > u64::from(k), "k = {k}");
        }
    }

    #[test]
    fn last_digits_walk_matches_last_digits_and_skips_short_values() {
        let ns = [3u64, 500, 501, 540, 2000, 10, 2001];
        for k in [1u32, 5, 19, 20, 60] {
            let mut got = Vec::new();
            for_each_last_digits(&ns, k, last_whole(k), |n, t| got.push((n, t)));
            let want: Vec<(u64, Option<String>)> = ns
                .iter()
                .map(|&n| {
                    let long = u64::from(k) < crate::fib::digit_count(n);
                    (n, long.then(|| last_digits(n, k)))
                })
                .collect();
            assert_eq!(got, want, "k = {k}");
        }
    }
}
