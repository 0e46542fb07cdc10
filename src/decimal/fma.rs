//! Multiplication by number-theoretic transforms in double precision: three primes below
//! `2^50`, arithmetic with fused multiply-add on SIMD lanes (four with AVX2, eight with
//! AVX-512), chosen at run time; the integer transform of `ntt.rs` is the fallback.
//!
//! # Primes and the exactness bound
//!
//! | prime | `p - 1` | generator |
//! |---|---|---|
//! | 1125844072267777 | 2^32 * 3 * 23 * 29 * 131 | 5 |
//! | 1125818302464001 | 2^32 * 3^2 * 5^3 * 233 | 7 |
//! | 1125798975111169 | 2^31 * 3^2 * 31 * 1879 | 11 |
//!
//! A coefficient of the convolution of two base-10^19 limb arrays is below
//! `min(len a, len b) * (10^19 - 1)^2`; the product of the primes is about `2^150`, so the CRT
//! recovers every coefficient exactly while the shorter operand has at most [`MAX_SHORTER`]
//! limbs (about 271 million digits: F(n) up to n of about 2.6e9 squares within it). Longer
//! products go to the integer transform, whose bound is `2^59` limbs.
//!
//! # Arithmetic
//!
//! Residues are `f64` values, integers of either sign. Every value stays below `2p` in absolute
//! value (`2p < 2^51`), so sums and differences are exact. A product `y w` by a twiddle `w`
//! (kept in `[-p/2, p/2]` with `wq = w / p` precomputed) is reduced without division:
//!
//! ```text
//! nh = y * (-w)                  // -h, h = fl(y w)
//! l  = fma(y, w, nh)             // y w - h exactly: the rounding error of the product
//! q  = round(y * wq)             // fma(y, wq, 1.5 2^52) - 1.5 2^52: round to nearest
//! r  = fma(q, p, nh)             // q p - h exactly (an integer below 2^51)
//! yw mod p = l - r               // below 1.6 p in absolute value
//! ```
//!
//! The error analysis: `|y w| < p^2 < 2^100`, so `h` has an error below `2^47`, which `l`
//! holds exactly; `q` is within 1 of `y w / p` (two roundings of a value below `2^51`, then
//! round to nearest), so `q p - h` is an integer below `p + 2^48 < 2^51`, exact in the fused
//! operation. A product of two variables (pointwise products, twists, radix-3 twiddles) takes
//! its quotient from `h * (1/p)` instead (operands first reduced where they could reach `2p`).
//! A reduction `x - p round(x / p)` brings a value below `4p` to below `0.51 p`.
//!
//! Butterflies: forward `(x, y) -> (x' + t, x' - t)` with `x' = reduce(x)`, `t = y w mod p`
//! (11 operations); inverse `(x, y) -> (reduce(x + y), (x - y) w mod p)` (11 operations).
//! Inputs below `2p` in, outputs below `2p` out, on every level, so no level needs a
//! correction pass.
//!
//! # Transform shape
//!
//! The same transforms as `ntt.rs` (twiddle per block, natural order in, the same scrambled
//! order out, the inverse its exact reverse; `2^k` and `3 * 2^k` points; the four-step method
//! from 64 points), with one change so that every butterfly runs on whole SIMD vectors: the
//! four-step row pass copies groups of at least eight rows into a buffer transposed (`row[r][j]`
//! to `buf[j][r]`), so a butterfly's lanes are rows and every span is a multiple of eight
//! values; the twist runs there too, each lane with its own chain of powers. The column pass is
//! `ntt.rs`'s, which already works on groups of at least eight columns. Transforms below 64
//! points, which only forced small products reach, run the same code one lane at a time.
//! Parallelism is that of `ntt.rs` (column groups, row groups, radix-3 and pointwise chunks, the
//! primes and the two forward transforms under `join`); each task enters the SIMD code once.

use std::sync::OnceLock;

use pulp::{Simd, WithSimd};
use rayon::prelude::*;

use super::ntt::{
    self, COLUMN_BUFFER, PAR_MIN_LOG, assemble, column_pass, give, per_prime, sequential_primes,
    split_limb, take, transform_len,
};

/// The three primes, each below `2^50` with `3 * 2^31` dividing `p - 1`.
pub(crate) const PRIMES: [u64; 3] = [
    1_125_844_072_267_777,
    1_125_818_302_464_001,
    1_125_798_975_111_169,
];

/// A generator of the multiplicative group of each prime.
const GENERATORS: [u64; 3] = [5, 7, 11];

/// The longest shorter operand, in limbs, whose product this transform computes exactly:
/// `MAX_SHORTER * (10^19 - 1)^2 < p0 p1 p2` (checked in the tests).
pub(crate) const MAX_SHORTER: usize = 14_269_455;

/// Twiddle tables cover sub-transforms of up to `2^TABLE_LOG` points (four-step halves of
/// transforms up to `2^32` points).
const TABLE_LOG: u32 = 16;

/// Power-of-two transforms below `2^FOUR_STEP_MIN_LOG` points run level by level, one lane at a
/// time; from there the four-step method gives every butterfly whole vectors.
const FOUR_STEP_MIN_LOG: u32 = 6;

/// `1.5 * 2^52`: `(x + MAGIC) - MAGIC` is `x` rounded to the nearest integer for `|x| < 2^51`.
const MAGIC: f64 = 6_755_399_441_055_744.0;

/// Radix-3 and pointwise passes run in chunks of this many points (a multiple of every lane
/// count) on rayon.
const CHUNK: usize = 1 << 12;

/// The SIMD instruction set the transforms run on.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Isa {
    /// AVX-512F (with AVX2 and FMA): eight `f64` lanes.
    #[cfg(target_arch = "x86_64")]
    Avx512(pulp::x86::V4),
    /// AVX2 and FMA: four `f64` lanes.
    #[cfg(target_arch = "x86_64")]
    Avx2(pulp::x86::V3),
}

impl Isa {
    /// The best instruction set this CPU has, or `None` (then products use the integer
    /// transform). `PARKIT_NTT=integer` forces the integer transform and `PARKIT_NTT=avx2`
    /// caps the lanes at four: knobs for benchmarks and tests, read once.
    fn detect() -> Option<Isa> {
        let choice = std::env::var("PARKIT_NTT").unwrap_or_default();
        if choice == "integer" {
            return None;
        }
        #[cfg(target_arch = "x86_64")]
        {
            if choice != "avx2"
                && let Some(v4) = pulp::x86::V4::try_new()
            {
                return Some(Isa::Avx512(v4));
            }
            if let Some(v3) = pulp::x86::V3::try_new() {
                return Some(Isa::Avx2(v3));
            }
        }
        None
    }

    /// Every instruction set this CPU has, best first (for tests that run each).
    #[cfg(test)]
    pub(crate) fn all() -> Vec<Isa> {
        let mut all = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(v4) = pulp::x86::V4::try_new() {
                all.push(Isa::Avx512(v4));
            }
            if let Some(v3) = pulp::x86::V3::try_new() {
                all.push(Isa::Avx2(v3));
            }
        }
        all
    }

    /// Runs `op` with this instruction set enabled.
    #[inline(always)]
    fn run<Op: WithSimd>(self, op: Op) -> Op::Output {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512(s) => Simd::vectorize(s, op),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2(s) => Simd::vectorize(s, op),
        }
    }

    /// Runs `op` with this instruction set when `whole` (every slice it walks splits into whole
    /// vectors), else one lane at a time.
    #[inline(always)]
    fn run_if<Op: WithSimd>(self, whole: bool, op: Op) -> Op::Output {
        if whole {
            self.run(op)
        } else {
            Simd::vectorize(pulp::Scalar::new(), op)
        }
    }
}

/// The instruction set products use, detected once; `None` where the CPU has no FMA lanes.
pub(crate) fn isa() -> Option<Isa> {
    static ISA: OnceLock<Option<Isa>> = OnceLock::new();
    *ISA.get_or_init(Isa::detect)
}

/// `a b mod p` in integers (set-up only).
fn mul_mod(a: u64, b: u64, p: u64) -> u64 {
    ((a as u128 * b as u128) % p as u128) as u64
}

/// `x^e mod p` in integers (set-up only).
fn pow_mod(mut x: u64, mut e: u64, p: u64) -> u64 {
    let mut acc = 1 % p;
    x %= p;
    while e > 0 {
        if e & 1 == 1 {
            acc = mul_mod(acc, x, p);
        }
        x = mul_mod(x, x, p);
        e >>= 1;
    }
    acc
}

/// `x^-1 mod p` for `x` not divisible by `p`.
fn inv_mod(x: u64, p: u64) -> u64 {
    pow_mod(x, p - 2, p)
}

/// The representative of `x mod p` in `[-p/2, p/2]`, as `f64`.
fn centered(x: u64, p: u64) -> f64 {
    let x = x % p;
    if x > p / 2 {
        -((p - x) as f64)
    } else {
        x as f64
    }
}

/// A constant multiplier: `[w, w / p]` with `w` centered.
fn twiddle(x: u64, p: u64) -> [f64; 2] {
    let w = centered(x, p);
    [w, w / p as f64]
}

/// Everything one prime's transforms need.
#[derive(Debug)]
struct Prime {
    p: u64,
    g: u64,
    /// `[w, w/p]` of the forward twiddle of each block (see `ntt.rs`).
    fwd: Vec<[f64; 2]>,
    /// The same for the inverse twiddles.
    inv: Vec<[f64; 2]>,
    /// `floor(2^64 / p)`, for reducing limbs.
    barrett: u64,
}

impl Prime {
    fn new(p: u64, g: u64) -> Self {
        let half = 1usize << (TABLE_LOG - 1);
        let mut fwd = vec![0u64; half];
        let mut inv = vec![0u64; half];
        fwd[0] = 1;
        inv[0] = 1;
        // T[b] = w_{2^K}^rev_{K-1}(b) and T[2^L + c] = T[c] w_{2^(L+2)}, as in ntt.rs.
        let mut len = 1;
        let mut level = 0u32;
        while len < half {
            let w = pow_mod(g, (p - 1) >> (level + 2), p);
            let wi = inv_mod(w, p);
            for c in 0..len {
                fwd[len + c] = mul_mod(fwd[c], w, p);
                inv[len + c] = mul_mod(inv[c], wi, p);
            }
            len *= 2;
            level += 1;
        }
        let pair = |t: Vec<u64>| t.into_iter().map(|w| twiddle(w, p)).collect();
        Prime {
            p,
            g,
            fwd: pair(fwd),
            inv: pair(inv),
            barrett: (u128::from(u64::MAX) / u128::from(p)) as u64,
        }
    }

    /// A primitive `n`-th root of unity, consistent across lengths (`n | p - 1`).
    fn root(&self, n: usize) -> u64 {
        debug_assert_eq!((self.p - 1) % n as u64, 0);
        pow_mod(self.g, (self.p - 1) / n as u64, self.p)
    }

    /// `x mod p` as `f64`, for any `x`.
    #[inline(always)]
    fn reduce_limb(&self, x: u64) -> f64 {
        let q = ((u128::from(x) * u128::from(self.barrett)) >> 64) as u64;
        let r = x - q * self.p;
        (if r >= self.p { r - self.p } else { r }) as f64
    }

    /// A residue below `4p` in absolute value as an integer in `[0, p)`.
    #[inline(always)]
    fn normalize(&self, x: f64) -> u64 {
        let p = self.p;
        let u = (x as i64 + 4 * p as i64) as u64;
        let u = u.min(u.wrapping_sub(4 * p));
        let u = u.min(u.wrapping_sub(2 * p));
        u.min(u.wrapping_sub(p))
    }
}

fn primes() -> &'static [Prime; 3] {
    static PRIMES_CTX: OnceLock<[Prime; 3]> = OnceLock::new();
    // Built sequentially, never with rayon (see `ntt::contexts`).
    PRIMES_CTX.get_or_init(|| std::array::from_fn(|i| Prime::new(PRIMES[i], GENERATORS[i])))
}

/// One prime's constants splatted over the lanes of `S`.
#[derive(Clone, Copy, Debug)]
struct Lanes<S: Simd> {
    s: S,
    p: S::f64s,
    np: S::f64s,
    pinv: S::f64s,
    magic: S::f64s,
}

/// A multiplier splatted (or one per lane): `w`, `-w` and `w / p`.
#[derive(Clone, Copy, Debug)]
struct Tw<S: Simd> {
    w: S::f64s,
    nw: S::f64s,
    wq: S::f64s,
}

impl<S: Simd> Lanes<S> {
    #[inline(always)]
    fn new(s: S, p: u64) -> Self {
        let pf = p as f64;
        Lanes {
            s,
            p: s.splat_f64s(pf),
            np: s.splat_f64s(-pf),
            pinv: s.splat_f64s(1.0 / pf),
            magic: s.splat_f64s(MAGIC),
        }
    }

    /// A constant multiplier on every lane.
    #[inline(always)]
    fn tw(self, [w, wq]: [f64; 2]) -> Tw<S> {
        let s = self.s;
        Tw {
            w: s.splat_f64s(w),
            nw: s.splat_f64s(-w),
            wq: s.splat_f64s(wq),
        }
    }

    /// A multiplier per lane from its centered values.
    #[inline(always)]
    fn tw_lanes(self, w: S::f64s) -> Tw<S> {
        let s = self.s;
        Tw {
            w,
            nw: s.neg_f64s(w),
            wq: s.mul_f64s(w, self.pinv),
        }
    }

    /// `x * c` rounded to the nearest integer, for `|x c| < 2^51`.
    #[inline(always)]
    fn round(self, x: S::f64s, c: S::f64s) -> S::f64s {
        self.s
            .sub_f64s(self.s.mul_add_f64s(x, c, self.magic), self.magic)
    }

    /// `x mod p` below `0.51 p` in absolute value, for `|x| < 4p`.
    #[inline(always)]
    fn reduce(self, x: S::f64s) -> S::f64s {
        let q = self.round(x, self.pinv);
        self.s.mul_add_f64s(q, self.np, x)
    }

    /// `y w mod p` below `1.6 p`, for `|y| < 4p` and a centered constant `w`.
    #[inline(always)]
    fn mul_tw(self, y: S::f64s, t: Tw<S>) -> S::f64s {
        let s = self.s;
        let nh = s.mul_f64s(y, t.nw);
        let l = s.mul_add_f64s(y, t.w, nh);
        let q = self.round(y, t.wq);
        let r = s.mul_add_f64s(q, self.p, nh);
        s.sub_f64s(l, r)
    }

    /// `a b mod p` below `1.6 p`, for `|a b| < 1.9 p^2`.
    #[inline(always)]
    fn mul(self, a: S::f64s, b: S::f64s) -> S::f64s {
        let s = self.s;
        let h = s.mul_f64s(a, b);
        let nh = s.neg_f64s(h);
        let l = s.mul_add_f64s(a, b, nh);
        let q = self.round(h, self.pinv);
        let r = s.mul_add_f64s(q, self.p, nh);
        s.sub_f64s(l, r)
    }

    /// Forward butterfly `(x, y) -> (x + w y, x - w y)`, below `2p` in and out.
    #[inline(always)]
    fn ct(self, x: &mut S::f64s, y: &mut S::f64s, t: Tw<S>) {
        let u = self.reduce(*x);
        let v = self.mul_tw(*y, t);
        *x = self.s.add_f64s(u, v);
        *y = self.s.sub_f64s(u, v);
    }

    /// Inverse butterfly `(x, y) -> (x + y, (x - y) w)`, below `2p` in and out.
    #[inline(always)]
    fn gs(self, x: &mut S::f64s, y: &mut S::f64s, t: Tw<S>) {
        let (u, v) = (*x, *y);
        *x = self.reduce(self.s.add_f64s(u, v));
        *y = self.mul_tw(self.s.sub_f64s(u, v), t);
    }
}

/// The levels of a power-of-two transform on `a`, seen as `a.len() / width` vectors of `width`
/// values (`width` a multiple of the lanes): forward (natural in, scrambled out) or inverse.
#[inline(always)]
fn levels<S: Simd>(v: Lanes<S>, tws: &[[f64; 2]], a: &mut [f64], width: usize, inverse: bool) {
    let n = a.len() / width;
    let mut half = if inverse { 1 } else { n / 2 };
    while half > 0 && half < n {
        let span = half * width;
        for (block, &tw) in a.chunks_exact_mut(2 * span).zip(tws) {
            let t = v.tw(tw);
            let (lo, hi) = block.split_at_mut(span);
            let (lo, _) = S::as_mut_simd_f64s(lo);
            let (hi, _) = S::as_mut_simd_f64s(hi);
            if inverse {
                for (x, y) in lo.iter_mut().zip(hi) {
                    v.gs(x, y, t);
                }
            } else {
                for (x, y) in lo.iter_mut().zip(hi) {
                    v.ct(x, y, t);
                }
            }
        }
        half = if inverse { half * 2 } else { half / 2 };
    }
}

/// [`levels`] as one SIMD task.
struct Levels<'a> {
    prime: &'a Prime,
    a: &'a mut [f64],
    width: usize,
    inverse: bool,
}

impl WithSimd for Levels<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let v = Lanes::new(s, self.prime.p);
        let tws = if self.inverse {
            &self.prime.inv
        } else {
            &self.prime.fwd
        };
        levels(v, tws, self.a, self.width, self.inverse);
    }
}

/// A group of consecutive rows of the four-step matrix, transformed as one SIMD task: copied
/// transposed into `buf` (so the rows are lanes), twisted, transformed (forward: twist, then
/// levels; inverse: levels, then twist by the inverse root), copied back.
struct Rows<'a> {
    prime: &'a Prime,
    rows: &'a mut [f64],
    buf: &'a mut [f64],
    cols: usize,
    /// The index of the first row, and the number of bits of a row index.
    first: usize,
    r_log: u32,
    /// The root of unity of the whole transform's length (or its inverse).
    root: u64,
    inverse: bool,
}

impl WithSimd for Rows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let Rows {
            prime,
            rows,
            buf,
            cols,
            first,
            r_log,
            root,
            inverse,
        } = self;
        let g = rows.len() / cols;
        let buf = &mut buf[..rows.len()];
        for (l, row) in rows.chunks_exact(cols).enumerate() {
            for (j, &x) in row.iter().enumerate() {
                buf[j * g + l] = x;
            }
        }
        let v = Lanes::new(s, prime.p);
        if inverse {
            levels(v, &prime.inv, buf, g, true);
            twist(v, prime, buf, g, first, r_log, root);
        } else {
            twist(v, prime, buf, g, first, r_log, root);
            levels(v, &prime.fwd, buf, g, false);
        }
        for (l, row) in rows.chunks_exact_mut(cols).enumerate() {
            for (j, x) in row.iter_mut().enumerate() {
                *x = buf[j * g + l];
            }
        }
    }
}

/// `rev(r)` over `bits` bits.
fn bit_reverse(r: usize, bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        r.reverse_bits() >> (usize::BITS - bits)
    }
}

/// Multiplies `buf[j][l]` (rows of `g` lanes) by `s_l^j`, `s_l = root^rev(first + l)`: four
/// chains of powers per vector (`j` modulo 4), so the multiplications overlap.
#[inline(always)]
fn twist<S: Simd>(
    v: Lanes<S>,
    prime: &Prime,
    buf: &mut [f64],
    g: usize,
    first: usize,
    r_log: u32,
    root: u64,
) {
    let p = prime.p;
    let powers: Vec<[u64; 5]> = (0..g)
        .map(|l| {
            let s1 = pow_mod(root, bit_reverse(first + l, r_log) as u64, p);
            let s2 = mul_mod(s1, s1, p);
            let s3 = mul_mod(s2, s1, p);
            [1, s1, s2, s3, mul_mod(s2, s2, p)]
        })
        .collect();
    let lane_vectors = |e: usize| -> Vec<S::f64s> {
        let vals: Vec<f64> = powers.iter().map(|q| centered(q[e], p)).collect();
        S::as_simd_f64s(&vals).0.to_vec()
    };
    let mut chains: [Vec<S::f64s>; 4] = std::array::from_fn(lane_vectors);
    let step: Vec<Tw<S>> = lane_vectors(4).into_iter().map(|w| v.tw_lanes(w)).collect();
    for quad in buf.chunks_exact_mut(4 * g) {
        for (row, chain) in quad.chunks_exact_mut(g).zip(chains.iter_mut()) {
            let (row, _) = S::as_mut_simd_f64s(row);
            for ((x, t), st) in row.iter_mut().zip(chain.iter_mut()).zip(&step) {
                *x = v.mul(v.reduce(*x), *t);
                *t = v.mul_tw(*t, *st);
            }
        }
    }
}

/// The row pass: groups of at least eight rows (about [`COLUMN_BUFFER`] values) as [`Rows`]
/// tasks, on rayon when `par`.
fn row_pass(isa: Isa, prime: &Prime, a: &mut [f64], cols: usize, root: u64, inverse: bool) {
    let rows = a.len() / cols;
    let r_log = rows.trailing_zeros();
    let g = (COLUMN_BUFFER / cols).clamp(8, rows);
    let task = |buf: &mut Vec<f64>, (i, group): (usize, &mut [f64])| {
        isa.run(Rows {
            prime,
            rows: group,
            buf,
            cols,
            first: i * g,
            r_log,
            root,
            inverse,
        });
    };
    if a.len() >= 1 << PAR_MIN_LOG {
        a.par_chunks_mut(g * cols)
            .enumerate()
            .for_each_init(|| vec![0.0; g * cols], task);
    } else {
        let mut buf = vec![0.0; g * cols];
        a.chunks_mut(g * cols)
            .enumerate()
            .for_each(|item| task(&mut buf, item));
    }
}

/// Forward power-of-two transform, natural order in, below `2p` in and out.
fn forward_pow2(isa: Isa, prime: &Prime, a: &mut [f64]) {
    let k = a.len().trailing_zeros();
    if k < FOUR_STEP_MIN_LOG {
        return isa.run_if(
            false,
            Levels {
                prime,
                a,
                width: 1,
                inverse: false,
            },
        );
    }
    let cols = 1usize << (k - k / 2);
    let par = k >= PAR_MIN_LOG;
    column_pass(a, cols, par, |buf, g| {
        isa.run(Levels {
            prime,
            a: buf,
            width: g,
            inverse: false,
        })
    });
    row_pass(isa, prime, a, cols, prime.root(a.len()), false);
}

/// Inverse of [`forward_pow2`] times the length, below `2p` in and out.
fn inverse_pow2(isa: Isa, prime: &Prime, a: &mut [f64]) {
    let k = a.len().trailing_zeros();
    if k < FOUR_STEP_MIN_LOG {
        return isa.run_if(
            false,
            Levels {
                prime,
                a,
                width: 1,
                inverse: true,
            },
        );
    }
    let cols = 1usize << (k - k / 2);
    let par = k >= PAR_MIN_LOG;
    let root = inv_mod(prime.root(a.len()), prime.p);
    row_pass(isa, prime, a, cols, root, true);
    column_pass(a, cols, par, |buf, g| {
        isa.run(Levels {
            prime,
            a: buf,
            width: g,
            inverse: true,
        })
    });
}

/// One chunk of the radix-3 pass: points `first..` of the three thirds.
struct Radix3<'a> {
    prime: &'a Prime,
    x: [&'a mut [f64]; 3],
    first: usize,
    /// The root of unity of the whole length and a cube root of unity (inverses for the
    /// inverse pass).
    root: u64,
    w3: [f64; 2],
    inverse: bool,
}

impl WithSimd for Radix3<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let Radix3 {
            prime,
            x: [x0, x1, x2],
            first,
            root,
            w3,
            inverse,
        } = self;
        let p = prime.p;
        let v = Lanes::new(s, p);
        let lanes = S::F64_LANES;
        // t1 = root^j on lane j, stepped by root^lanes; t2 = t1^2.
        let start = pow_mod(root, first as u64, p);
        let t0: Vec<f64> = (0..lanes)
            .map(|i| centered(mul_mod(start, pow_mod(root, i as u64, p), p), p))
            .collect();
        let mut t1 = S::as_simd_f64s(&t0).0[0];
        let step = v.tw(twiddle(pow_mod(root, lanes as u64, p), p));
        let w3 = v.tw(w3);
        let (x0, _) = S::as_mut_simd_f64s(x0);
        let (x1, _) = S::as_mut_simd_f64s(x1);
        let (x2, _) = S::as_mut_simd_f64s(x2);
        for ((a0, a1), a2) in x0.iter_mut().zip(x1.iter_mut()).zip(x2.iter_mut()) {
            let t2 = v.mul(t1, t1);
            let (mut y0, mut y1, mut y2) = (v.reduce(*a0), v.reduce(*a1), v.reduce(*a2));
            if inverse {
                y1 = v.mul(y1, t1);
                y2 = v.mul(y2, t2);
            }
            // X0 = y0 + y1 + y2, X1 = y0 - y2 + m, X2 = y0 - y1 - m, m = w3 (y1 - y2).
            let sum = v.reduce(s.add_f64s(s.add_f64s(y0, y1), y2));
            let m = v.mul_tw(s.sub_f64s(y1, y2), w3);
            let z1 = v.reduce(s.add_f64s(s.sub_f64s(y0, y2), m));
            let z2 = v.reduce(s.sub_f64s(s.sub_f64s(y0, y1), m));
            (y0, y1, y2) = (sum, z1, z2);
            if !inverse {
                y1 = v.mul(y1, t1);
                y2 = v.mul(y2, t2);
            }
            (*a0, *a1, *a2) = (y0, y1, y2);
            t1 = v.mul_tw(t1, step);
        }
    }
}

/// The radix-3 pass of a length-`3m` transform (forward: combine, then twiddle; inverse:
/// twiddle by the inverse root, then combine with `w3^-1`).
fn radix3(isa: Isa, prime: &Prime, a: &mut [f64], inverse: bool) {
    let n = a.len();
    let p = prime.p;
    let (mut root, mut w3) = (prime.root(n), prime.root(3));
    if inverse {
        (root, w3) = (inv_mod(root, p), inv_mod(w3, p));
    }
    let w3 = twiddle(w3, p);
    let m = n / 3;
    let (x0, rest) = a.split_at_mut(m);
    let (x1, x2) = rest.split_at_mut(m);
    let whole = m % 8 == 0;
    let chunk = |first: usize, x: [&mut [f64]; 3]| {
        isa.run_if(
            whole,
            Radix3 {
                prime,
                x,
                first,
                root,
                w3,
                inverse,
            },
        )
    };
    if n >= 3 << PAR_MIN_LOG && m % CHUNK == 0 {
        x0.par_chunks_mut(CHUNK)
            .zip(x1.par_chunks_mut(CHUNK))
            .zip(x2.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(c, ((x0, x1), x2))| chunk(c * CHUNK, [x0, x1, x2]));
    } else {
        chunk(0, [x0, x1, x2]);
    }
}

/// Runs `op` on the three thirds of `a`, under `join` when long.
fn on_thirds(a: &mut [f64], op: impl Fn(&mut [f64]) + Sync) {
    let (n, m) = (a.len(), a.len() / 3);
    let (x0, rest) = a.split_at_mut(m);
    let (x1, x2) = rest.split_at_mut(m);
    if n >= 3 << PAR_MIN_LOG {
        rayon::join(|| op(x0), || rayon::join(|| op(x1), || op(x2)));
    } else {
        op(x0);
        op(x1);
        op(x2);
    }
}

/// Forward transform of length `2^k` or `3 * 2^k`, below `2p` in and out.
fn forward(isa: Isa, prime: &Prime, a: &mut [f64]) {
    if a.len() % 3 == 0 {
        radix3(isa, prime, a, false);
        on_thirds(a, |x| forward_pow2(isa, prime, x));
    } else {
        forward_pow2(isa, prime, a);
    }
}

/// Inverse of [`forward`] times the length, below `2p` in and out.
fn inverse(isa: Isa, prime: &Prime, a: &mut [f64]) {
    if a.len() % 3 == 0 {
        on_thirds(a, |x| inverse_pow2(isa, prime, x));
        radix3(isa, prime, a, true);
    } else {
        inverse_pow2(isa, prime, a);
    }
}

/// Pointwise `a = a b / n` (or `a a / n`) on one chunk.
struct Pointwise<'a> {
    prime: &'a Prime,
    a: &'a mut [f64],
    b: Option<&'a [f64]>,
    /// `[1/n, 1/(n p)]` centered.
    scale: [f64; 2],
}

impl WithSimd for Pointwise<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let v = Lanes::new(s, self.prime.p);
        let scale = v.tw(self.scale);
        let (a, _) = S::as_mut_simd_f64s(self.a);
        match self.b {
            Some(b) => {
                let (b, _) = S::as_simd_f64s(b);
                for (x, &y) in a.iter_mut().zip(b) {
                    let z = v.mul(v.reduce(*x), v.reduce(y));
                    *x = v.mul_tw(z, scale);
                }
            }
            None => {
                for x in a.iter_mut() {
                    let u = v.reduce(*x);
                    *x = v.mul_tw(v.mul(u, u), scale);
                }
            }
        }
    }
}

/// Pointwise products over the whole transform, in chunks on rayon when long.
fn pointwise(isa: Isa, prime: &Prime, a: &mut [f64], b: Option<&[f64]>) {
    let n = a.len();
    let scale = twiddle(inv_mod(n as u64 % prime.p, prime.p), prime.p);
    let whole = n % 8 == 0;
    let op = |a: &mut [f64], b: Option<&[f64]>| isa.run_if(whole, Pointwise { prime, a, b, scale });
    if n >= 1 << PAR_MIN_LOG && n % CHUNK == 0 {
        match b {
            Some(b) => a
                .par_chunks_mut(CHUNK)
                .zip(b.par_chunks(CHUNK))
                .for_each(|(x, y)| op(x, Some(y))),
            None => a.par_chunks_mut(CHUNK).for_each(|x| op(x, None)),
        }
    } else {
        op(a, b);
    }
}

/// `x` reduced modulo the prime into a transform buffer of `n` points (zero-padded).
fn load(prime: &Prime, x: &[u64], n: usize) -> Vec<u64> {
    let mut v = take(n);
    let f: &mut [f64] = bytemuck::cast_slice_mut(&mut v);
    let (head, tail) = f.split_at_mut(x.len());
    let fill = |(d, s): (&mut [f64], &[u64])| {
        for (d, &s) in d.iter_mut().zip(s) {
            *d = prime.reduce_limb(s);
        }
    };
    if x.len() >= 1 << PAR_MIN_LOG {
        head.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(fill);
    } else {
        fill((head, x));
    }
    tail.fill(0.0);
    v
}

/// The residues of `a * b` (or `a * a`) modulo prime `i` over `n` points, as `f64` bits below
/// `2p` in absolute value.
fn residues(isa: Isa, i: usize, a: &[u64], b: Option<&[u64]>, n: usize) -> Vec<u64> {
    let prime = &primes()[i];
    let mut fa = load(prime, a, n);
    match b {
        Some(b) => {
            let mut fb = Vec::new();
            let transform_b = |fb: &mut Vec<u64>| {
                *fb = load(prime, b, n);
                forward(isa, prime, bytemuck::cast_slice_mut(fb));
            };
            if n >= 1 << PAR_MIN_LOG {
                rayon::join(
                    || forward(isa, prime, bytemuck::cast_slice_mut(&mut fa)),
                    || transform_b(&mut fb),
                );
            } else {
                forward(isa, prime, bytemuck::cast_slice_mut(&mut fa));
                transform_b(&mut fb);
            }
            pointwise(
                isa,
                prime,
                bytemuck::cast_slice_mut(&mut fa),
                Some(bytemuck::cast_slice(&fb)),
            );
            give(fb);
        }
        None => {
            forward(isa, prime, bytemuck::cast_slice_mut(&mut fa));
            pointwise(isa, prime, bytemuck::cast_slice_mut(&mut fa), None);
        }
    }
    inverse(isa, prime, bytemuck::cast_slice_mut(&mut fa));
    fa
}

/// Garner's CRT for the three primes, with Shoup companions of its constants.
#[derive(Clone, Copy, Debug)]
struct Crt {
    /// `p0^-1 mod p1`.
    c1: [u64; 2],
    /// `p0 mod p2`.
    p0_2: [u64; 2],
    /// `(p0 p1)^-1 mod p2`.
    c2: [u64; 2],
    /// `p0 p1`.
    p01: u128,
}

/// `[w, floor(w 2^64 / p)]`.
fn shoup(w: u64, p: u64) -> [u64; 2] {
    [w, ((u128::from(w) << 64) / u128::from(p)) as u64]
}

/// `x w mod p` in `[0, p)` for `x < 2^64` and a reduced `w` with its companion.
#[inline(always)]
fn shoup_mul(x: u64, [w, wp]: [u64; 2], p: u64) -> u64 {
    let q = ((u128::from(x) * u128::from(wp)) >> 64) as u64;
    let r = x.wrapping_mul(w).wrapping_sub(q.wrapping_mul(p));
    if r >= p { r - p } else { r }
}

impl Crt {
    fn new() -> Self {
        let [p0, p1, p2] = PRIMES;
        Crt {
            c1: shoup(inv_mod(p0 % p1, p1), p1),
            p0_2: shoup(p0 % p2, p2),
            c2: shoup(inv_mod(mul_mod(p0, p1, p2), p2), p2),
            p01: u128::from(p0) * u128::from(p1),
        }
    }

    /// Converts the residues (as `f64` bits) of a stretch of coefficients into limbs in place
    /// in `r0`, carrying from `carry`; returns the carry out.
    fn run(&self, r0: &mut [u64], r1: &[u64], r2: &[u64], mut carry: u128) -> u128 {
        let [f0, f1, f2] = primes();
        let [p0, p1, p2] = PRIMES;
        for ((x, &y), &z) in r0.iter_mut().zip(r1).zip(r2) {
            let v0 = f0.normalize(f64::from_bits(*x));
            let y1 = f1.normalize(f64::from_bits(y));
            let y2 = f2.normalize(f64::from_bits(z));
            // v1 = (y1 - v0) / p0 mod p1; v2 = (y2 - v0 - v1 p0) / (p0 p1) mod p2.
            let v1 = shoup_mul(y1 + 2 * p1 - v0, self.c1, p1);
            let t = shoup_mul(v1, self.p0_2, p2);
            let v2 = shoup_mul(y2 + 4 * p2 - v0 - t, self.c2, p2);
            // x = v0 + v1 p0 + v2 p0 p1 < p0 p1 p2 < 2^150.
            let lo = u128::from(v0) + u128::from(v1) * u128::from(p0);
            let a = u128::from(v2) * (self.p01 as u64) as u128;
            let b = u128::from(v2) * (self.p01 >> 64);
            let (s, c) = lo.overflowing_add(a);
            let hi = b + (s >> 64) + (u128::from(c) << 64);
            let (top, low) = ((hi >> 64) as u64, (hi << 64) | (s as u64) as u128);
            (*x, carry) = split_limb(top, low, carry);
        }
        carry
    }
}

/// `a * b` (or `a * a` when `b` is `None`) on `isa`; normalized limbs. The shorter operand must
/// have at most [`MAX_SHORTER`] limbs.
pub(crate) fn product(isa: Isa, a: &[u64], b: Option<&[u64]>) -> Vec<u64> {
    let la = a.len();
    let lb = b.map_or(la, <[u64]>::len);
    if la == 0 || lb == 0 {
        return Vec::new();
    }
    assert!(
        la.min(lb) <= MAX_SHORTER,
        "FMA NTT: operands of {la} and {lb} limbs exceed its exact range"
    );
    let conv = la + lb - 1;
    let n = transform_len(conv);
    let residue = |i: usize| residues(isa, i, a, b, n);
    let [r0, r1, r2] = per_prime(sequential_primes(n), residue);
    let crt = Crt::new();
    assemble([r0, r1, r2], conv, |x, y, z| crt.run(x, y, z, 0))
}

/// `a * b` by the fastest exact transform: this one where the CPU has FMA lanes and the
/// shorter operand is within [`MAX_SHORTER`], else the integer one.
pub(crate) fn mul(a: &[u64], b: &[u64]) -> Vec<u64> {
    match isa() {
        Some(isa) if a.len().min(b.len()) <= MAX_SHORTER => product(isa, a, Some(b)),
        _ => ntt::mul(a, b),
    }
}

/// `a * a` by the fastest exact transform (see [`mul`]).
pub(crate) fn square(a: &[u64]) -> Vec<u64> {
    match isa() {
        Some(isa) if a.len() <= MAX_SHORTER => product(isa, a, None),
        _ => ntt::square(a),
    }
}

#[cfg(test)]
mod tests {
    use num_bigint::BigUint;

    use super::*;
    use crate::decimal::limbs::BASE;

    #[test]
    fn primes_roots_and_the_exactness_bound() {
        for (prime, &g) in primes().iter().zip(&GENERATORS) {
            let p = prime.p;
            assert!(p < 1 << 50);
            assert_eq!((p - 1) % (3 << 31), 0);
            for n in [2usize, 3, 4, 6, 1 << 20, 3 << 20, 1 << 31, 3 << 31] {
                let w = prime.root(n);
                assert_eq!(pow_mod(w, n as u64, p), 1, "p {p}, n {n}");
                assert_ne!(pow_mod(w, n as u64 / 2, p), 1, "p {p}, n {n}");
                if n % 3 == 0 {
                    assert_ne!(pow_mod(w, n as u64 / 3, p), 1, "p {p}, n {n}");
                }
            }
            assert_eq!(prime.g, g);
            for x in [0, 1, p - 1, p, p + 1, 5 * p + 3, u64::MAX, BASE - 1] {
                assert_eq!(prime.reduce_limb(x), (x % p) as f64);
            }
            for x in [
                0i64,
                1,
                -1,
                p as i64 - 1,
                -(p as i64),
                3 * p as i64 + 5,
                -(3 * p as i64) - 7,
            ] {
                assert_eq!(prime.normalize(x as f64), x.rem_euclid(p as i64) as u64);
            }
        }
        let product: BigUint = PRIMES.iter().map(|&p| BigUint::from(p)).product();
        let limb = BigUint::from(BASE - 1);
        let worst = |len: usize| BigUint::from(len) * &limb * &limb;
        assert!(worst(MAX_SHORTER) < product);
        assert!(worst(MAX_SHORTER + 1) >= product);
    }

    /// A random number generator for tests (xorshift).
    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut s = seed | 1;
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        }
    }

    /// `x`'s residues through the lane arithmetic of `S` against `u128` arithmetic.
    struct Arith {
        xs: Vec<f64>,
        ys: Vec<f64>,
        w: [f64; 2],
        p: u64,
    }

    impl WithSimd for Arith {
        type Output = (Vec<f64>, Vec<f64>, Vec<f64>);

        fn with_simd<S: Simd>(self, s: S) -> Self::Output {
            let v = Lanes::new(s, self.p);
            let t = v.tw(self.w);
            let (xs, _) = S::as_simd_f64s(&self.xs);
            let (ys, _) = S::as_simd_f64s(&self.ys);
            let mut out = (Vec::new(), Vec::new(), Vec::new());
            for (&x, &y) in xs.iter().zip(ys) {
                let put = |o: &mut Vec<f64>, r: S::f64s| {
                    o.extend_from_slice(bytemuck::cast_slice(std::slice::from_ref(&r)))
                };
                put(&mut out.0, v.mul_tw(x, t));
                put(&mut out.1, v.mul(v.reduce(x), v.reduce(y)));
                put(&mut out.2, v.reduce(x));
            }
            out
        }
    }

    #[test]
    fn lane_arithmetic_is_exact_on_every_instruction_set() {
        let mut next = rng(0x5eed);
        for prime in primes() {
            let p = prime.p;
            let pf = p as f64;
            // Inputs over the whole admitted range (below 4p), edges included.
            let mut xs: Vec<f64> = vec![0.0, 1.0, -1.0, 4.0 * pf - 1.0, -(4.0 * pf - 1.0), pf, -pf];
            while xs.len() < 4096 {
                xs.push((next() % (8 * p)) as f64 - 4.0 * pf + 1.0);
            }
            let ys: Vec<f64> = xs.iter().rev().copied().collect();
            for w in [1, p - 1, p / 2, p / 2 + 1, next() % p] {
                let tw = twiddle(w, p);
                let exact = |x: f64, y: u64| {
                    let x = (x as i64).rem_euclid(p as i64) as u64;
                    mul_mod(x, y, p)
                };
                let arith = || Arith {
                    xs: xs.clone(),
                    ys: ys.clone(),
                    w: tw,
                    p,
                };
                let mut runs = vec![Simd::vectorize(pulp::Scalar::new(), arith())];
                for isa in Isa::all() {
                    runs.push(isa.run(arith()));
                }
                for (by_w, prod, red) in runs {
                    for i in 0..xs.len() {
                        let (x, y) = (xs[i], ys[i]);
                        assert!(by_w[i].abs() < 1.6 * pf && prod[i].abs() < 1.6 * pf);
                        assert!(red[i].abs() < 0.51 * pf);
                        assert_eq!(prime.normalize(by_w[i]), exact(x, w));
                        let yr = (y as i64).rem_euclid(p as i64) as u64;
                        assert_eq!(prime.normalize(prod[i]), exact(x, yr));
                        assert_eq!(prime.normalize(red[i]), exact(x, 1));
                    }
                }
            }
        }
    }

    #[test]
    fn inverse_undoes_forward_at_every_shape() {
        for isa in Isa::all() {
            for n in [
                1usize,
                2,
                3,
                4,
                6,
                8,
                12,
                16,
                32,
                48,
                64,
                96,
                128,
                1 << 10,
                3 << 10,
                1 << 13,
                1 << 14,
                3 << 14,
                1 << 15,
                3 << 16,
            ] {
                for prime in primes() {
                    let p = prime.p;
                    let x: Vec<u64> = (0..n as u64).map(|i| (i * 0x9e37_79b9 + 7) % p).collect();
                    let mut y: Vec<f64> = x.iter().map(|&v| v as f64).collect();
                    forward(isa, prime, &mut y);
                    assert!(y.iter().all(|v| v.abs() < 2.0 * p as f64));
                    inverse(isa, prime, &mut y);
                    let ninv = inv_mod(n as u64 % p, p);
                    let back: Vec<u64> = y
                        .iter()
                        .map(|&v| mul_mod(prime.normalize(v), ninv, p))
                        .collect();
                    assert_eq!(back, x, "{isa:?}, n = {n}");
                }
            }
        }
    }

    #[test]
    fn products_match_the_integer_transform_at_every_size_class() {
        let mut next = rng(0xfeed_beef);
        let mut limb = || next() % BASE;
        // Direct levels, four-step, radix-3 thirds, the parallel passes (2^14 points), the
        // primes under join and one after the other; products and squares; the largest limbs.
        for (la, lb) in [
            (1usize, 1usize),
            (3, 2),
            (17, 40),
            (100, 100),
            (448, 1000),
            (4000, 5000),
            (20_000, 12_000),
            (65_536, 65_536),
            (150_000, 140_000),
            (131_072, 1),
        ] {
            let a: Vec<u64> = (0..la).map(|_| limb()).collect();
            let b: Vec<u64> = (0..lb).map(|_| limb()).collect();
            let want = ntt::mul(&a, &b);
            let want_sq = ntt::square(&a);
            for isa in Isa::all() {
                assert_eq!(product(isa, &a, Some(&b)), want, "{isa:?}: {la} x {lb}");
                assert_eq!(product(isa, &a, None), want_sq, "{isa:?}: {la}^2");
            }
            let top = vec![BASE - 1; la];
            for isa in Isa::all() {
                assert_eq!(
                    product(isa, &top, None),
                    ntt::square(&top),
                    "{isa:?}: max {la}"
                );
            }
        }
    }
}
