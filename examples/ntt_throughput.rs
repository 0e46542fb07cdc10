//! How close the decimal engine's transforms come to the machine's limit, on one core.
//!
//! `cargo run --release --example ntt_throughput`
//!
//! 1. The limit: fused multiply-adds per second on this core's widest SIMD lanes (pulp picks
//!    AVX-512 or AVX2 at run time), measured with twelve independent accumulator chains. A
//!    butterfly of the FMA transform is 11 vector operations of that class (`src/decimal/fma.rs`),
//!    so the limit in butterflies per second is `lanes * ops per second / 11`.
//! 2. The transforms: squares of random numbers of `L` limbs by [`MulAlgorithm::Ntt`] (the FMA
//!    transform) and [`MulAlgorithm::IntegerNtt`] (the scalar integer one), on a one-thread pool,
//!    medians of 7. A square does six transforms of `n` points (three primes, forward and
//!    inverse); counted as `6 * n/2 * log2(n)` radix-2 butterflies, everything else in the square
//!    (load, twist, pointwise, CRT) included in the time.
//!
//! `cargo run --release --example ntt_throughput -- LIMBS` instead squares a random number of
//! `LIMBS` limbs 20 times with the FMA transform on one thread and nothing else, for a profiler
//! (`perf record`).

use std::time::Instant;

use parkit::decimal::{DecNat, MulAlgorithm};
use pulp::{Arch, Simd, WithSimd};

/// Twelve independent chains of `x = x * a + b` on full vectors for `iters` rounds; returns the
/// lanes and the sum of the accumulators (so the work is not optimised away).
struct Peak {
    iters: u64,
}

impl WithSimd for Peak {
    type Output = (usize, f64);

    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) -> (usize, f64) {
        let a = s.splat_f64s(0.999_999_9);
        let b = s.splat_f64s(1e-9);
        let mut acc = [s.splat_f64s(1.0); 12];
        for _ in 0..self.iters {
            for x in &mut acc {
                *x = s.mul_add_f64s(*x, a, b);
            }
        }
        let mut total = 0.0;
        for x in acc {
            let lanes: &[f64] = bytemuck::cast_slice(std::slice::from_ref(&x));
            total += lanes.iter().sum::<f64>();
        }
        (S::F64_LANES, total)
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The transform length a square of `limbs` limbs uses (the smallest `2^k` or `3 * 2^k` not
/// below `2 limbs - 1`).
fn transform_len(limbs: usize) -> usize {
    let len = 2 * limbs - 1;
    let pow2 = len.next_power_of_two();
    if 3 * (pow2 / 4) >= len {
        3 * (pow2 / 4)
    } else {
        pow2
    }
}

/// A random number of `limbs` limbs.
fn random(limbs: usize, state: &mut u64) -> DecNat {
    let digits: String = (0..19 * limbs)
        .map(|_| {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            char::from(b'0' + (*state % 10) as u8)
        })
        .collect();
    digits.parse().expect("digits")
}

fn main() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    if let Some(limbs) = std::env::args().nth(1) {
        let limbs: usize = limbs.parse().expect("LIMBS: a number of limbs");
        let x = random(limbs, &mut state);
        pool.install(|| {
            for _ in 0..20 {
                std::hint::black_box(x.square_using(MulAlgorithm::Ntt));
            }
        });
        return;
    }
    let arch = Arch::new();
    let iters = 20_000_000u64;
    let peak = (0..5)
        .map(|_| {
            let start = Instant::now();
            let (lanes, sink) = arch.dispatch(Peak { iters });
            let secs = start.elapsed().as_secs_f64();
            assert!(sink.is_finite());
            (lanes, (12 * iters) as f64 / secs)
        })
        .max_by(|x, y| x.1.total_cmp(&y.1))
        .expect("five runs");
    let (lanes, vec_ops) = peak;
    let limit = lanes as f64 * vec_ops / 11.0;
    println!("arch {arch:?}: {lanes} f64 lanes");
    println!(
        "FMA throughput: {:.2} G vector FMAs/s = {:.1} G flop-lanes/s; limit {:.2} G butterflies/s",
        vec_ops / 1e9,
        lanes as f64 * vec_ops / 1e9,
        limit / 1e9
    );

    println!(
        "| limbs | points | FMA NTT square | G butterflies/s | of the limit | integer NTT square | G butterflies/s | FMA / integer time |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for limbs in [1usize << 12, 1 << 15, 1 << 18, 1 << 20, 1 << 21] {
        let x = random(limbs, &mut state);
        let n = transform_len(x.limbs().len());
        let butterflies = 6.0 * (n / 2) as f64 * (n as f64).log2();
        let time = |alg: MulAlgorithm| {
            pool.install(|| {
                let reps = (20_000_000 / n).clamp(3, 51) | 1;
                median(
                    (0..reps)
                        .map(|_| {
                            let start = Instant::now();
                            std::hint::black_box(x.square_using(alg));
                            start.elapsed().as_secs_f64()
                        })
                        .collect(),
                )
            })
        };
        let (fma, int) = (time(MulAlgorithm::Ntt), time(MulAlgorithm::IntegerNtt));
        assert_eq!(
            x.square_using(MulAlgorithm::Ntt),
            x.square_using(MulAlgorithm::IntegerNtt)
        );
        let rate = |t: f64| butterflies / t;
        println!(
            "| {limbs} | {n} | {:.2} ms | {:.2} | {:.0}% | {:.2} ms | {:.2} | {:.2} |",
            fma * 1e3,
            rate(fma) / 1e9,
            100.0 * rate(fma) / limit,
            int * 1e3,
            rate(int) / 1e9,
            fma / int
        );
    }
}
