//! Property tests: every result checked against an independent computation — plain iteration
//! for small n, and identities (Cassini, the addition formula / d'Ocagne, gcd, mod m) for big n.

use num_bigint::BigUint;
use num_integer::Integer;
use parkit::fib::{Fibonacci, digit_count, fib, fib_mod, fib_pair, last_digits};
use proptest::prelude::*;

fn iterate(n: u64) -> BigUint {
    let (mut a, mut b) = (BigUint::from(0u32), BigUint::from(1u32));
    for _ in 0..n {
        let c = &a + &b;
        a = std::mem::replace(&mut b, c);
    }
    a
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn small_n_equals_iteration(n in 0u64..=2000) {
        prop_assert_eq!(fib(n), iterate(n));
    }

    #[test]
    fn cassini(n in 1u64..400_000) {
        // F(n-1) F(n+1) - F(n)^2 = (-1)^n
        let (a, b) = fib_pair(n);
        let prev = &b - &a;
        let lhs = prev * &b;
        let sq = &a * &a;
        if n % 2 == 0 { prop_assert_eq!(lhs, sq + 1u32); } else { prop_assert_eq!(lhs + 1u32, sq); }
    }

    #[test]
    fn addition_formula(m in 1u64..200_000, n in 1u64..200_000) {
        // F(m+n) = F(m) F(n+1) + F(m-1) F(n)
        let (fm, fm1) = fib_pair(m);
        let fmm1 = &fm1 - &fm;
        let (fn_, fn1) = fib_pair(n);
        prop_assert_eq!(fib(m + n), &fm * &fn1 + &fmm1 * &fn_);
    }

    #[test]
    fn docagne(m in 1u64..100_000, n in 1u64..100_000) {
        // d'Ocagne: F(m) F(n+1) - F(m+1) F(n) = (-1)^n F(m-n), for m >= n
        let (m, n) = if m >= n { (m, n) } else { (n, m) };
        let (fm, fm1) = fib_pair(m);
        let (fn_, fn1) = fib_pair(n);
        let (l, r) = (&fm * &fn1, &fm1 * &fn_);
        let d = fib(m - n);
        if n % 2 == 0 { prop_assert_eq!(l, r + d); } else { prop_assert_eq!(l + d, r); }
    }

    #[test]
    fn gcd_of_fibonacci_is_fibonacci_of_gcd(m in 1u64..60_000, n in 1u64..60_000) {
        prop_assert_eq!(fib(m).gcd(&fib(n)), fib(m.gcd(&n)));
    }

    #[test]
    fn residues_match_the_full_value(n in 0u64..300_000, m in 1u64..=u64::MAX) {
        prop_assert_eq!(BigUint::from(fib_mod(n, m)), fib(n) % m);
    }

    #[test]
    fn last_digits_and_digit_count_match_the_decimal_text(n in 0u64..60_000, k in 1u32..80) {
        let s = fib(n).to_string();
        prop_assert_eq!(digit_count(n), s.len() as u64);
        let want = &s[s.len().saturating_sub(k as usize)..];
        prop_assert_eq!(last_digits(n, k), want);
    }

    #[test]
    fn engine_batch_equals_single_values(
        ns in proptest::collection::vec(prop_oneof![0u64..300, 10_000u64..10_400, 0u64..200_000], 1..60),
        threads in 1usize..4,
    ) {
        let e = Fibonacci::builder().threads(threads).build().unwrap();
        let got = e.batch(&ns);
        for (i, &n) in ns.iter().enumerate() {
            prop_assert_eq!(&got[i], &fib(n));
        }
        // A second batch through the warm cache gives the same values.
        prop_assert_eq!(e.batch(&ns), got);
    }

    #[test]
    fn decimal_planner_equals_binary_values_cold_and_warm(
        ns in proptest::collection::vec(prop_oneof![0u64..300, 30_000u64..30_400, 0u64..300_000], 1..40),
        later in proptest::collection::vec(0u64..320_000, 1..20),
        threads in 1usize..4,
    ) {
        let e = Fibonacci::builder().threads(threads).build().unwrap();
        for batch in [&ns, &later, &ns] {
            let got = e.batch_decimal(batch);
            for (v, &n) in got.iter().zip(batch.iter()) {
                prop_assert_eq!(v.to_string(), fib(n).to_string(), "n = {}", n);
            }
        }
    }
}

#[test]
fn big_values_satisfy_cassini_at_a_million() {
    let n = 1_000_001u64;
    let (a, b) = fib_pair(n);
    let prev = &b - &a;
    assert_eq!(prev * &b + 1u32, &a * &a); // n odd
    assert_eq!(fib(n), a);
    assert_eq!(digit_count(n), a.to_string().len() as u64);
}

#[test]
fn parallel_result_is_the_same_on_any_pool() {
    let n = 3_000_000;
    let want = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| fib(n));
    for t in [2, 3, 8] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build()
            .unwrap();
        assert_eq!(pool.install(|| fib(n)), want, "{t} threads");
    }
    assert_eq!(
        fib_mod(n, 1_000_000_007),
        u64::try_from(&want % 1_000_000_007u64).unwrap()
    );
}

#[test]
fn decimal_engine_last_digits_match_the_mod_path_up_to_a_billion() {
    // The lowest base-10^19 limb of F(n) computed in decimal is F(n) mod 10^19, which the
    // machine-word path computes independently.
    let m = 10_000_000_000_000_000_000u64;
    for n in [
        187u64,
        99_991,
        1_234_567,
        12_345_679,
        100_000_007,
        1_000_000_000,
    ] {
        let v = parkit::fib::fib_in::<parkit::decimal::DecNat>(n);
        assert_eq!(v.limbs()[0], fib_mod(n, m), "n = {n}");
        assert_eq!(v.digit_count(), digit_count(n), "n = {n}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn decimal_engine_equals_binary_engine(n in 0u64..1_000_000) {
        prop_assert_eq!(parkit::fib::fib_in::<parkit::decimal::DecNat>(n).to_string(), fib(n).to_string());
    }
}
