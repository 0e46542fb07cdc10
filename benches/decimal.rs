//! Decimal engine benchmarks: F(n) all the way to decimal text against num-bigint, and the
//! time of each multiplication algorithm by size (the data behind the thresholds).
//!
//! `cargo bench --bench decimal`; `cargo test --benches` runs each once as a smoke test.
//! The num-bigint run at n = 10^8 takes about 40 s an iteration, so it is skipped unless
//! `PARKIT_BENCH_SLOW=1` is set.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use num_bigint::BigUint;
use parkit::decimal::{DecNat, MulAlgorithm};

fn fib(n: u64) -> DecNat {
    parkit::fib::fib_in(n)
}

/// F(n) by fast doubling on BigUint, the same formulas as the decimal engine (two squarings a
/// step, the last step one product), sequential: what a num-bigint user would write.
fn biguint_fib(n: u64) -> BigUint {
    if n < 2 {
        return BigUint::from(n);
    }
    // (F(k), F(k-1)) from k = 1, over the bits of n >> 1.
    let half = n >> 1;
    let (mut a, mut b) = (BigUint::from(1u32), BigUint::from(0u32));
    let mut k = 1u64;
    for shift in (0..63 - half.leading_zeros()).rev() {
        let bit = (half >> shift) & 1 == 1;
        let (a2, b2) = (&a * &a, &b * &b);
        let f2km1 = &a2 + &b2;
        let f2kp1 = if k & 1 == 1 {
            (a2 << 2u32) - b2 - 2u32
        } else {
            (a2 << 2u32) - b2 + 2u32
        };
        let f2k = &f2kp1 - &f2km1;
        (a, b) = if bit { (f2kp1, f2k) } else { (f2k, f2km1) };
        k = k << 1 | u64::from(bit);
    }
    if n & 1 == 0 {
        let t = &a + (&b << 1u32);
        &a * &t
    } else {
        let a2 = &a << 1u32;
        let p = (&a2 + &b) * (a2 - &b);
        if k & 1 == 1 { p - 2u32 } else { p + 2u32 }
    }
}

fn fib_text(c: &mut Criterion) {
    let slow = std::env::var_os("PARKIT_BENCH_SLOW").is_some();
    for n in [0, 1, 2, 3, 100, 1001, 65_536] {
        assert_eq!(biguint_fib(n).to_string(), fib(n).to_string(), "F({n})");
    }
    let mut g = c.benchmark_group("decimal/fib-text");
    g.sample_size(10).warm_up_time(Duration::from_millis(500));
    for exp in [6u32, 7, 8] {
        let n = 10u64.pow(exp);
        let id = format!("1e{exp}");
        g.bench_with_input(BenchmarkId::new("decnat", &id), &n, |b, &n| {
            b.iter(|| {
                let f = fib(black_box(n));
                let mut out = Vec::with_capacity(f.digit_count() as usize);
                f.write_to(&mut out).unwrap();
                out
            });
        });
        if exp < 8 || slow {
            g.bench_with_input(BenchmarkId::new("num-bigint", &id), &n, |b, &n| {
                b.iter(|| biguint_fib(black_box(n)).to_string());
            });
        }
    }
    g.finish();
}

/// A `len`-limb operand of pseudo-random limbs.
fn operand(len: usize, seed: u64) -> DecNat {
    let mut s = seed | 1;
    DecNat::from_limbs(
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s % 10_000_000_000_000_000_000) | 1
            })
            .collect(),
    )
}

const ALGORITHMS: [(&str, MulAlgorithm, &[usize]); 3] = [
    (
        "schoolbook",
        MulAlgorithm::Schoolbook,
        &[32, 48, 64, 96, 128, 256],
    ),
    (
        "karatsuba",
        MulAlgorithm::Karatsuba,
        &[64, 96, 128, 256, 384, 448, 512, 768, 1024, 2048],
    ),
    (
        "ntt",
        MulAlgorithm::Ntt,
        &[
            256,
            384,
            448,
            512,
            768,
            1024,
            2048,
            1 << 13,
            1 << 16,
            1 << 19,
        ],
    ),
];

fn products(c: &mut Criterion, square: bool) {
    let mut g = c.benchmark_group(if square {
        "decimal/square"
    } else {
        "decimal/mul"
    });
    g.warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for (name, alg, lens) in ALGORITHMS {
        for &len in lens {
            if len >= 1 << 16 {
                g.sample_size(10);
            }
            let (a, b) = (operand(len, 1), operand(len, 2));
            g.bench_with_input(BenchmarkId::new(name, len), &len, |bench, _| {
                if square {
                    bench.iter(|| black_box(&a).square_using(alg));
                } else {
                    bench.iter(|| black_box(&a).mul_using(&b, alg));
                }
            });
        }
    }
    g.finish();
}

fn mul(c: &mut Criterion) {
    products(c, false);
}

fn square(c: &mut Criterion) {
    products(c, true);
}

fn threads(c: &mut Criterion) {
    // One NTT product on a 1-thread pool and on the default pool: what the parallel passes buy.
    let mut g = c.benchmark_group("decimal/ntt-threads");
    g.sample_size(10);
    let default = rayon::current_num_threads();
    for len in [1usize << 14, 1 << 18] {
        let (a, b) = (operand(len, 3), operand(len, 4));
        for t in [1, default] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap();
            g.bench_function(BenchmarkId::new(format!("{len}-limbs"), t), |bench| {
                bench.iter(|| pool.install(|| black_box(&a) * &b));
            });
        }
    }
    g.finish();
}

criterion_group!(benches, fib_text, mul, square, threads);
criterion_main!(benches);
