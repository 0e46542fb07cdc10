//! The machine-word fast path: F(n) for n <= 186 from a table built at compile time.

/// The largest n whose F(n) fits in a `u128`.
pub const MAX_N: u64 = 186;

const TABLE: [u128; MAX_N as usize + 1] = {
    let mut t = [0u128; MAX_N as usize + 1];
    t[1] = 1;
    let mut i = 2;
    while i <= MAX_N as usize {
        t[i] = t[i - 1] + t[i - 2];
        i += 1;
    }
    t
};

/// F(n) as a `u128`, or `None` when F(n) does not fit (n > 186).
///
/// A table look-up: no arithmetic at all.
///
/// # Examples
///
/// ```
/// use parkit::fib::fib_u128;
///
/// assert_eq!(fib_u128(10), Some(55));
/// assert_eq!(fib_u128(186), Some(332_825_110_087_067_562_321_196_029_789_634_457_848));
/// assert_eq!(fib_u128(187), None);
/// ```
#[must_use]
pub fn fib_u128(n: u64) -> Option<u128> {
    TABLE.get(usize::try_from(n).ok()?).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_the_recurrence_and_ends_at_the_u128_limit() {
        for n in 2..=MAX_N {
            assert_eq!(
                fib_u128(n),
                Some(fib_u128(n - 1).unwrap() + fib_u128(n - 2).unwrap())
            );
        }
        let (a, b) = (fib_u128(MAX_N).unwrap(), fib_u128(MAX_N - 1).unwrap());
        assert!(a.checked_add(b).is_none(), "F(187) must overflow u128");
        assert_eq!(fib_u128(u64::MAX), None);
    }
}
