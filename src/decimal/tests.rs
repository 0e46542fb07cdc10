//! Cross-module tests: products against num-bigint across every threshold, conversions and
//! text.

use num_bigint::BigUint;
use proptest::prelude::*;

use super::karatsuba::{KARATSUBA_MIN, KARATSUBA_SQR_MIN};
use super::limbs::BASE;
use super::mul::{NTT_MIN, NTT_SQR_MIN};
use super::ntt::PAR_MIN_LOG;
use super::{DecNat, MulAlgorithm};

fn big(x: &DecNat) -> BigUint {
    BigUint::from(x)
}

/// Limbs of one of several shapes: random, all nines, mostly zero, runs of zeros and nines.
fn limbs_strategy(max_len: usize) -> impl Strategy<Value = Vec<u64>> {
    (1..=max_len, 0u8..5, any::<u64>()).prop_map(|(len, shape, seed)| {
        let mut s = seed | 1;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let mut v: Vec<u64> = (0..len)
            .map(|i| match shape {
                0 => next() % BASE,
                1 => BASE - 1,
                2 if next() % 16 == 0 => next() % BASE,
                2 => 0,
                3 if (i / 7) % 2 == 0 => 0,
                3 => BASE - 1,
                _ => [0, 1, BASE - 1, next() % BASE][(next() % 4) as usize],
            })
            .collect();
        // Keep the top limb non-zero so the length (and so the algorithm) is what was drawn.
        if let Some(top) = v.last_mut() {
            if *top == 0 {
                *top = 1 + next() % (BASE - 1);
            }
        }
        v
    })
}

/// Lengths that straddle a threshold `t`.
fn around(t: usize) -> impl Strategy<Value = usize> {
    (t.saturating_sub(3).max(1))..=(t + 3)
}

fn check_product(a: &[u64], b: &[u64]) -> Result<(), TestCaseError> {
    let (x, y) = (
        DecNat::from_limbs(a.to_vec()),
        DecNat::from_limbs(b.to_vec()),
    );
    let want = big(&x) * big(&y);
    let auto = &x * &y;
    prop_assert_eq!(big(&auto), want.clone());
    for alg in [
        MulAlgorithm::Karatsuba,
        MulAlgorithm::Ntt,
        MulAlgorithm::IntegerNtt,
    ] {
        prop_assert_eq!(x.mul_using(&y, alg), auto.clone(), "{:?}", alg);
    }
    if a.len().min(b.len()) <= 300 {
        prop_assert_eq!(x.mul_using(&y, MulAlgorithm::Schoolbook), auto.clone());
    }
    Ok(())
}

fn check_square(a: &[u64]) -> Result<(), TestCaseError> {
    let x = DecNat::from_limbs(a.to_vec());
    let want = big(&x) * big(&x);
    let auto = x.square();
    prop_assert_eq!(big(&auto), want);
    for alg in [
        MulAlgorithm::Karatsuba,
        MulAlgorithm::Ntt,
        MulAlgorithm::IntegerNtt,
    ] {
        prop_assert_eq!(x.square_using(alg), auto.clone(), "{:?}", alg);
    }
    if a.len() <= 300 {
        prop_assert_eq!(x.square_using(MulAlgorithm::Schoolbook), auto.clone());
    }
    Ok(())
}

fn with_len(len: usize, shape: Vec<u64>) -> Vec<u64> {
    let mut v: Vec<u64> = shape.iter().cycle().take(len).copied().collect();
    if let Some(top) = v.last_mut() {
        *top = (*top).max(1);
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn small_products_match_num_bigint(a in limbs_strategy(300), b in limbs_strategy(300)) {
        check_product(&a, &b)?;
        check_square(&a)?;
    }

    #[test]
    fn products_around_the_thresholds_match_num_bigint(
        la in prop_oneof![
            around(KARATSUBA_MIN),
            around(KARATSUBA_SQR_MIN),
            around(NTT_MIN),
            around(NTT_SQR_MIN),
            around(2 * KARATSUBA_MIN),
        ],
        lb in prop_oneof![around(KARATSUBA_MIN), around(KARATSUBA_SQR_MIN), around(NTT_MIN), 1usize..2000],
        a in limbs_strategy(8),
        b in limbs_strategy(8),
    ) {
        check_product(&with_len(la, a.clone()), &with_len(lb, b))?;
        check_square(&with_len(la, a))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    #[test]
    fn parallel_ntt_products_match_num_bigint(
        la in (1usize << PAR_MIN_LOG) / 2..(1 << (PAR_MIN_LOG + 2)),
        lb in 1usize..(1 << (PAR_MIN_LOG + 2)),
        a in limbs_strategy(64),
        b in limbs_strategy(64),
    ) {
        let (a, b) = (with_len(la, a), with_len(lb, b));
        let (x, y) = (DecNat::from_limbs(a), DecNat::from_limbs(b));
        let want = big(&x) * big(&y);
        prop_assert_eq!(big(&x.mul_using(&y, MulAlgorithm::Ntt)), want.clone());
        prop_assert_eq!(big(&x.mul_using(&y, MulAlgorithm::IntegerNtt)), want);
        prop_assert_eq!(big(&x.square()), big(&x) * big(&x));
    }
}

#[test]
fn extreme_operands_at_every_transform_shape() {
    // All nines (the largest convolution coefficients) and a lone top limb over zeros, at
    // power-of-two and three-times-power-of-two transform lengths, direct and four-step.
    for len in [
        1usize,
        2,
        3,
        700,
        1536,
        4096,
        6000,
        1 << 14,
        3 << 13,
        40_000,
        70_000,
        100_000,
    ] {
        let nines = DecNat::from_limbs(vec![BASE - 1; len]);
        // (10^(19 len) - 1)^2 = 10^(38 len) - 2 10^(19 len) + 1, digit by digit.
        let d = 19 * len;
        let want = format!("{}8{}1", "9".repeat(d - 1), "0".repeat(d - 1));
        for alg in [MulAlgorithm::Ntt, MulAlgorithm::IntegerNtt] {
            assert_eq!(
                nines.square_using(alg).to_string(),
                want,
                "len {len}, {alg:?}"
            );
        }
        assert_eq!(
            nines
                .mul_using(&nines.clone(), MulAlgorithm::Ntt)
                .to_string(),
            want
        );
        if len <= 40_000 {
            let mut sparse = vec![0u64; len];
            sparse[len - 1] = BASE - 1;
            sparse[0] = 1;
            let sparse = DecNat::from_limbs(sparse);
            let (bn, bs) = (big(&nines), big(&sparse));
            assert_eq!(
                big(&nines.mul_using(&sparse, MulAlgorithm::Ntt)),
                &bn * &bs,
                "len {len}"
            );
            assert_eq!(big(&sparse.square()), &bs * &bs, "len {len}");
        }
    }
}

#[test]
fn conversions_round_trip_and_text_agrees() {
    // 0, 1, then powers of 7 from one limb to about 8,000 limbs, one less than a power of ten.
    let numbers = [0u32, 1, 22, 200, 4_000, 40_000, 80_001]
        .iter()
        .map(|&e| BigUint::from(7u32).pow(e) - u32::from(e > 0))
        .chain([BigUint::from(10u32).pow(19 * 300) - 1u32]);
    for x in numbers {
        let f: DecNat = x.to_string().parse().unwrap();
        assert_eq!(BigUint::from(&f), x);
        let b = BigUint::from(&f);
        assert_eq!(DecNat::from(&b), f);
        let s = f.to_string();
        assert_eq!(s, b.to_string());
        let mut w = Vec::new();
        f.write_to(&mut w).unwrap();
        assert_eq!(w, s.as_bytes());
        assert_eq!(f.digit_count(), s.len() as u64);
        assert_eq!(s.parse::<DecNat>().unwrap(), f);
        assert_eq!(format!("{f:>5}").trim_start(), s);
    }
    assert_eq!(format!("{:>6}", DecNat::from(42u64)), "    42");
    assert_eq!(format!("{:06}", DecNat::from(42u64)), "000042");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn conversions_round_trip(a in limbs_strategy(3000)) {
        let x = DecNat::from_limbs(a);
        let b = BigUint::from(&x);
        prop_assert_eq!(b.to_string(), x.to_string());
        prop_assert_eq!(DecNat::from(&b), x.clone());
        let mut w = Vec::new();
        x.write_to(&mut w).unwrap();
        prop_assert_eq!(w, x.to_string().into_bytes());
    }

    #[test]
    fn add_sub_and_small_ops_match_num_bigint(
        a in limbs_strategy(40),
        b in limbs_strategy(40),
        m: u64,
    ) {
        let (x, y) = (DecNat::from_limbs(a), DecNat::from_limbs(b));
        let (bx, by) = (big(&x), big(&y));
        prop_assert_eq!(big(&(&x + &y)), &bx + &by);
        prop_assert_eq!(x.cmp(&y), bx.cmp(&by));
        match x.checked_sub(&y) {
            Some(d) => prop_assert_eq!(big(&d), &bx - &by),
            None => prop_assert!(bx < by),
        }
        prop_assert_eq!(big(&(x.clone() * m)), &bx * m);
        prop_assert_eq!(big(&(x.clone() + m)), &bx + m);
        if bx >= BigUint::from(m) {
            prop_assert_eq!(big(&(x.clone() - m)), &bx - m);
        }
    }
}

#[test]
#[should_panic(expected = "underflow")]
fn subtraction_underflow_panics() {
    let _ = &DecNat::from(1u64) - &DecNat::from(2u64);
}
