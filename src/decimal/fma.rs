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
//! limbs (about 271 million digits: F(n) up to n of about 2.6e9 squares within it), and the
//! transform lengths (`2^k`, `3 * 2^k`) divide `p - 1` up to [`MAX_LEN`] `= 3 * 2^31` points.
//! Other products go to the integer transform, whose bounds are `2^59` limbs and `3 * 2^32`
//! points.
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
//! The error analysis, for `|y| < 4p`: `|y w| < 2 p^2 < 2^101`, so `h` has an error of at most
//! `2^48`, which `l` holds exactly; `q` is within 1 of `y w / p` (two roundings of a value
//! below `2^51`, then round to nearest), so `q p - h` is an integer below `p + 2^48 < 2^51`,
//! exact in the fused operation, and the result is below `p + 2^49 < 1.6 p`. The tests run
//! this arithmetic on every instruction set against `u128` arithmetic over the whole range.
//! A product of two variables (pointwise products, twists, radix-3 twiddles) takes its
//! quotient from `h * (1/p)` instead (operands first reduced where they could reach `2p`).
//! A reduction `x - p round(x / p)` brings a value below `4p` to below `0.51 p`.
//!
//! Butterflies: forward `(x, y) -> (x' + t, x' - t)` with `x' = reduce(x)`, `t = y w mod p`
//! (11 operations); inverse `(x, y) -> (reduce(x + y), (x - y) w mod p)` (11 operations).
//! Inputs below `2p` in, outputs below `2p` out, on every level, so no level needs a
//! correction pass.
//!
//! # Transform shape
//!
//! The transforms of `ntt.rs` (twiddle per block, natural order in, a scrambled order out, the
//! inverse its exact reverse; `2^k` and `3 * 2^k` points, the radix-3 pass first; the four-step
//! method from 64 points), with three changes:
//!
//! - Every butterfly runs on whole SIMD vectors: the column pass (`ntt.rs`'s) works on groups of
//!   at least eight columns, and the row pass copies groups of at least eight rows into a
//!   buffer transposed (`row[r][j]` to `buf[j][r]`, in 8 x 8 blocks), so a butterfly's lanes
//!   are rows; the twist runs there too, each lane with its own chains of powers. Levels go
//!   two at a time (four spans per block), so a value is loaded once per two levels.
//! - A product is one convolution, not two transforms and an inverse: the forward column
//!   passes of both operands, then one row pass that, for each row group still in cache,
//!   transforms both operands' rows, multiplies them (times `1/n`), transforms back and
//!   untwists; then the inverse column pass (and the radix-3 pass). That saves three trips
//!   through the whole array per product.
//! - Garner's CRT computes its mixed-radix digits on lanes (256 coefficients at a time) and
//!   splits each coefficient into a limb and a carry with one division by `10^19`.
//!
//! Transforms below 64 points, which only forced small products reach, run the same code one
//! lane at a time. Parallelism is that of `ntt.rs` (column groups, row groups, radix-3 chunks,
//! the primes and the two operands' column passes under `join`); each task enters the SIMD code
//! once, and nothing inside a task is a closure (one not inlined would run without the
//! instruction set).

use std::sync::OnceLock;

use pulp::{Simd, WithSimd};
use rayon::prelude::*;

use super::ntt::{
    self, COLUMN_BUFFER, PAR_MIN_LOG, assemble, block_twiddles, column_pass, give, per_prime,
    sequential_primes, take, transform_len,
};

/// The three primes, each below `2^50` with `3 * 2^31` dividing `p - 1`.
pub(crate) const PRIMES: [u64; 3] = [
    1_125_844_072_267_777,
    1_125_818_302_464_001,
    1_125_798_975_111_169,
];

/// A generator of the multiplicative group of each prime.
const GENERATORS: [u64; 3] = [5, 7, 11];

/// The longest transform: `3 * 2^31` points (`p2 - 1` has no higher power of two), so
/// products of at most that many limbs.
pub(crate) const MAX_LEN: usize = 3 << 31;

/// The longest shorter operand, in limbs, whose product this transform computes exactly:
/// `MAX_SHORTER * (10^19 - 1)^2 < p0 p1 p2` (checked in the tests).
pub(crate) const MAX_SHORTER: usize = 14_269_455;

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
        let (fwd, inv) = block_twiddles(
            |level| {
                let w = pow_mod(g, (p - 1) >> (level + 2), p);
                (w, inv_mod(w, p))
            },
            |x, w| mul_mod(x, w, p),
        );
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
        // Through i64: a signed conversion is one instruction on every x86-64, an unsigned one
        // a branchy sequence without AVX-512 (this code is not in a SIMD task).
        (if r >= self.p { r - self.p } else { r }) as i64 as f64
    }

    /// A residue below `4p` in absolute value as an integer in `[0, p)`.
    #[cfg(test)]
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
            nw: s.sub_f64s(s.splat_f64s(0.0), w),
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
        // (pulp's `neg_f64s` is not always inlined; out of line it costs a call per vector.)
        let nh = s.sub_f64s(s.splat_f64s(0.0), h);
        let l = s.mul_add_f64s(a, b, nh);
        let q = self.round(h, self.pinv);
        let r = s.mul_add_f64s(q, self.p, nh);
        s.sub_f64s(l, r)
    }

    /// `x mod p` in `[0, p)` from a reduced `x` (below `0.51 p` in absolute value).
    #[inline(always)]
    fn positive(self, x: S::f64s) -> S::f64s {
        let s = self.s;
        let negative = s.less_than_f64s(x, s.splat_f64s(0.0));
        s.select_f64s(negative, s.add_f64s(x, self.p), x)
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
/// Two levels at a time (four spans per block, four butterflies per load), so each value is
/// loaded and stored once per two levels; an odd level left over runs alone (the first one
/// forward, the last one inverse).
#[inline(always)]
fn levels<S: Simd>(v: Lanes<S>, tws: &[[f64; 2]], a: &mut [f64], width: usize, inverse: bool) {
    let n = a.len() / width;
    if n < 2 {
        return;
    }
    let odd = n.trailing_zeros() % 2 == 1;
    if inverse {
        let mut half = 1;
        while 4 * half <= n {
            radix4(v, tws, a, half * width, true);
            half *= 4;
        }
        if odd {
            radix2(v, tws, a, half * width, true);
        }
    } else {
        let mut half = n / 2;
        if odd {
            radix2(v, tws, a, half * width, false);
            half /= 2;
        }
        while half >= 2 {
            radix4(v, tws, a, half / 2 * width, false);
            half /= 4;
        }
    }
}

/// One level: blocks of `2 span` values, block `b` with twiddle `tws[b]`.
#[inline(always)]
fn radix2<S: Simd>(v: Lanes<S>, tws: &[[f64; 2]], a: &mut [f64], span: usize, inverse: bool) {
    for (block, &tw) in a.chunks_exact_mut(2 * span).zip(tws) {
        let t = v.tw(tw);
        let (lo, hi) = block.split_at_mut(span);
        let (lo, _) = S::as_mut_simd_f64s(lo);
        let (hi, _) = S::as_mut_simd_f64s(hi);
        for (x, y) in lo.iter_mut().zip(hi) {
            if inverse {
                v.gs(x, y, t);
            } else {
                v.ct(x, y, t);
            }
        }
    }
}

/// Two levels: blocks of four spans of `quarter` values, block `b` with twiddle `tws[b]` on the
/// outer level and `tws[2b]`, `tws[2b + 1]` on its two halves.
#[inline(always)]
fn radix4<S: Simd>(v: Lanes<S>, tws: &[[f64; 2]], a: &mut [f64], quarter: usize, inverse: bool) {
    for (b, block) in a.chunks_exact_mut(4 * quarter).enumerate() {
        let (t, t0, t1) = (v.tw(tws[b]), v.tw(tws[2 * b]), v.tw(tws[2 * b + 1]));
        let (q01, q23) = block.split_at_mut(2 * quarter);
        let (q0, q1) = q01.split_at_mut(quarter);
        let (q2, q3) = q23.split_at_mut(quarter);
        let (q0, _) = S::as_mut_simd_f64s(q0);
        let (q1, _) = S::as_mut_simd_f64s(q1);
        let (q2, _) = S::as_mut_simd_f64s(q2);
        let (q3, _) = S::as_mut_simd_f64s(q3);
        for (((x0, x1), x2), x3) in q0.iter_mut().zip(q1).zip(q2).zip(q3) {
            if inverse {
                v.gs(x0, x1, t0);
                v.gs(x2, x3, t1);
                v.gs(x0, x2, t);
                v.gs(x1, x3, t);
            } else {
                v.ct(x0, x2, t);
                v.ct(x1, x3, t);
                v.ct(x0, x1, t0);
                v.ct(x2, x3, t1);
            }
        }
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

/// A group of consecutive rows of the four-step matrix of a convolution, as one SIMD task:
/// copied transposed into `buf` (so the rows are lanes), twisted and transformed forward, then,
/// while still in cache, multiplied pointwise by the other operand's rows (done the same way
/// in `other`'s buffer) or squared, scaled by `1/n`, transformed back, twisted by the inverse
/// root and copied back. Fusing the pointwise product into the row pass saves three passes over
/// the whole array per product (the forward rows' write, the pointwise pass, the inverse rows'
/// read).
struct Rows<'a> {
    prime: &'a Prime,
    rows: &'a mut [f64],
    buf: &'a mut [f64],
    /// The other operand's rows and a buffer for them (`None` when squaring).
    other: Option<(&'a [f64], &'a mut [f64])>,
    cols: usize,
    /// The index of the first row, and the number of bits of a row index.
    first: usize,
    r_log: u32,
    /// The root of unity of the power-of-two transform's length, and its inverse.
    roots: [u64; 2],
    /// `[1/n, 1/(n p)]` centered, `n` the whole transform's length.
    scale: [f64; 2],
}

impl WithSimd for Rows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let Rows {
            prime,
            rows,
            buf,
            other,
            cols,
            first,
            r_log,
            roots: [root, root_inv],
            scale,
        } = self;
        let g = rows.len() / cols;
        let v = Lanes::new(s, prime.p);
        // (No closures here: a closure is not inlined for sure, and out of line it would lose
        // the instruction set this function is compiled for.)
        let p = prime.p;
        // The forward twist's factors serve both operands.
        let forward = twist_powers(p, first, g, r_log, root);
        let buf = &mut buf[..rows.len()];
        transpose(rows, buf, g, cols);
        twist(v, p, buf, g, &forward);
        levels(v, &prime.fwd, buf, g, false);
        match other {
            Some((b_rows, b_buf)) => {
                let b_buf = &mut b_buf[..rows.len()];
                transpose(b_rows, b_buf, g, cols);
                twist(v, p, b_buf, g, &forward);
                levels(v, &prime.fwd, b_buf, g, false);
                pointwise_lanes(v, buf, Some(b_buf), scale);
            }
            None => pointwise_lanes(v, buf, None, scale),
        }
        levels(v, &prime.inv, buf, g, true);
        twist(v, p, buf, g, &twist_powers(p, first, g, r_log, root_inv));
        transpose(buf, rows, cols, g);
    }
}

/// Writes the `rows x cols` matrix `src` transposed into `dst` (`dst[j][i] = src[i][j]`), in
/// blocks of 8 x 8 read and written as runs of eight (both sides multiples of 8).
#[inline(always)]
fn transpose(src: &[f64], dst: &mut [f64], rows: usize, cols: usize) {
    for (i8, band) in src.chunks_exact(8 * cols).enumerate() {
        for j8 in 0..cols / 8 {
            let mut block = [[0.0f64; 8]; 8];
            for (b, row) in block.iter_mut().zip(band.chunks_exact(cols)) {
                *b = row[8 * j8..8 * j8 + 8].try_into().expect("eight values");
            }
            for (j, out) in dst[8 * j8 * rows..]
                .chunks_exact_mut(rows)
                .take(8)
                .enumerate()
            {
                let out: &mut [f64; 8] = (&mut out[8 * i8..8 * i8 + 8])
                    .try_into()
                    .expect("eight values");
                for (o, b) in out.iter_mut().zip(&block) {
                    *o = b[j];
                }
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

/// `s^0..=s^4` for each of the `g` rows from `first`, `s = root^rev(row)` over `r_log` bits:
/// the twist factors of those rows, computed once per row group and root.
fn twist_powers(p: u64, first: usize, g: usize, r_log: u32, root: u64) -> Vec<[u64; 5]> {
    (0..g)
        .map(|l| {
            let s1 = pow_mod(root, bit_reverse(first + l, r_log) as u64, p);
            let s2 = mul_mod(s1, s1, p);
            let s3 = mul_mod(s2, s1, p);
            [1, s1, s2, s3, mul_mod(s2, s2, p)]
        })
        .collect()
}

/// Multiplies `buf[j][l]` (rows of `g` lanes) by `s_l^j`, given `powers[l] = s_l^0..=s_l^4`
/// (see [`twist_powers`]): four chains of powers per vector (`j` modulo 4), so the
/// multiplications overlap.
#[inline(always)]
fn twist<S: Simd>(v: Lanes<S>, p: u64, buf: &mut [f64], g: usize, powers: &[[u64; 5]]) {
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

/// The fused row pass of a convolution: groups of at least eight rows (about
/// [`COLUMN_BUFFER`] values) as [`Rows`] tasks, on rayon when long.
fn row_pass(
    isa: Isa,
    prime: &Prime,
    a: &mut [f64],
    b: Option<&[f64]>,
    cols: usize,
    scale: [f64; 2],
) {
    let rows = a.len() / cols;
    let root = prime.root(a.len());
    let roots = [root, inv_mod(root, prime.p)];
    let r_log = rows.trailing_zeros();
    let g = (COLUMN_BUFFER / cols).clamp(8, rows);
    let size = g * cols;
    let buffers = || {
        let other = if b.is_some() {
            vec![0.0; size]
        } else {
            Vec::new()
        };
        (vec![0.0; size], other)
    };
    let task = |(buf, b_buf): &mut (Vec<f64>, Vec<f64>), (i, group): (usize, &mut [f64])| {
        isa.run(Rows {
            prime,
            rows: group,
            buf,
            other: b.map(|b| (&b[i * size..(i + 1) * size], &mut b_buf[..])),
            cols,
            first: i * g,
            r_log,
            roots,
            scale,
        });
    };
    if a.len() >= 1 << PAR_MIN_LOG {
        a.par_chunks_mut(size)
            .enumerate()
            .for_each_init(buffers, task);
    } else {
        let mut bufs = buffers();
        a.chunks_mut(size)
            .enumerate()
            .for_each(|item| task(&mut bufs, item));
    }
}

/// The power-of-two part of a convolution: `a` (and `b`) transformed forward, multiplied
/// pointwise (or `a` squared), scaled by `scale` and transformed back into `a`; below `2p` in
/// and out. From 64 points the four-step method: column passes forward, the fused row pass
/// ([`Rows`]), the column pass inverse.
fn convolve_pow2(
    isa: Isa,
    prime: &Prime,
    a: &mut [f64],
    mut b: Option<&mut [f64]>,
    scale: [f64; 2],
) {
    let k = a.len().trailing_zeros();
    if k < FOUR_STEP_MIN_LOG {
        levels_one_lane(isa, prime, a, false);
        if let Some(b) = b.as_deref_mut() {
            levels_one_lane(isa, prime, b, false);
        }
        pointwise(isa, prime, a, b.as_deref(), scale);
        levels_one_lane(isa, prime, a, true);
        return;
    }
    let cols = 1usize << (k - k / 2);
    let par = k >= PAR_MIN_LOG;
    let columns = |x: &mut [f64], inverse: bool| {
        column_pass(x, cols, par, |buf, g| {
            isa.run(Levels {
                prime,
                a: buf,
                width: g,
                inverse,
            })
        })
    };
    both(par, a, b.as_deref_mut(), |x| columns(x, false));
    row_pass(isa, prime, a, b.as_deref(), cols, scale);
    columns(a, true);
}

/// The levels of a power-of-two transform of fewer than 64 points, one lane at a time.
fn levels_one_lane(isa: Isa, prime: &Prime, a: &mut [f64], inverse: bool) {
    isa.run_if(
        false,
        Levels {
            prime,
            a,
            width: 1,
            inverse,
        },
    );
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

/// The three thirds of `a`.
fn thirds(a: &mut [f64]) -> [&mut [f64]; 3] {
    let m = a.len() / 3;
    let (x0, rest) = a.split_at_mut(m);
    let (x1, x2) = rest.split_at_mut(m);
    [x0, x1, x2]
}

/// Runs `op(a, b)` on `a` and `b` (when given), under `join` when `par`.
fn both(par: bool, a: &mut [f64], b: Option<&mut [f64]>, op: impl Fn(&mut [f64]) + Sync) {
    match b {
        Some(b) if par => {
            rayon::join(|| op(a), || op(b));
        }
        Some(b) => {
            op(a);
            op(b);
        }
        None => op(a),
    }
}

/// The cyclic convolution of `a` and `b` (or of `a` with itself) over `a.len()` points
/// (`2^k` or `3 * 2^k`), times `n` (undone by `scale`), into `a`; below `2p` in and out. For
/// `3 * 2^k` points: the radix-3 pass forward, a power-of-two convolution per third (the
/// thirds under `join` when long), the radix-3 pass inverse.
fn convolve(isa: Isa, prime: &Prime, a: &mut [f64], mut b: Option<&mut [f64]>, scale: [f64; 2]) {
    let n = a.len();
    if n % 3 != 0 {
        return convolve_pow2(isa, prime, a, b, scale);
    }
    let par = n >= 3 << PAR_MIN_LOG;
    both(par, a, b.as_deref_mut(), |x| radix3(isa, prime, x, false));
    {
        let [a0, a1, a2] = thirds(a);
        let [b0, b1, b2] = match b {
            Some(b) => thirds(b).map(Some),
            None => [None, None, None],
        };
        let third = |x: &mut [f64], y: Option<&mut [f64]>| convolve_pow2(isa, prime, x, y, scale);
        if par {
            rayon::join(
                || third(a0, b0),
                || rayon::join(|| third(a1, b1), || third(a2, b2)),
            );
        } else {
            third(a0, b0);
            third(a1, b1);
            third(a2, b2);
        }
    }
    radix3(isa, prime, a, true);
}

/// `a = a b scale` (or `a a scale`), lane by lane.
#[inline(always)]
fn pointwise_lanes<S: Simd>(v: Lanes<S>, a: &mut [f64], b: Option<&[f64]>, scale: [f64; 2]) {
    let scale = v.tw(scale);
    let (a, _) = S::as_mut_simd_f64s(a);
    match b {
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

/// Pointwise products of the short transforms (fewer than 64 points), one lane at a time.
fn pointwise(isa: Isa, prime: &Prime, a: &mut [f64], b: Option<&[f64]>, scale: [f64; 2]) {
    struct Pointwise<'a> {
        p: u64,
        a: &'a mut [f64],
        b: Option<&'a [f64]>,
        scale: [f64; 2],
    }
    impl WithSimd for Pointwise<'_> {
        type Output = ();

        #[inline(always)]
        fn with_simd<S: Simd>(self, s: S) {
            pointwise_lanes(Lanes::new(s, self.p), self.a, self.b, self.scale);
        }
    }
    isa.run_if(
        false,
        Pointwise {
            p: prime.p,
            a,
            b,
            scale,
        },
    );
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
    let scale = twiddle(inv_mod(n as u64 % prime.p, prime.p), prime.p);
    let (mut fa, mut fb) = if n >= 1 << PAR_MIN_LOG {
        rayon::join(|| load(prime, a, n), || b.map(|b| load(prime, b, n)))
    } else {
        (load(prime, a, n), b.map(|b| load(prime, b, n)))
    };
    convolve(
        isa,
        prime,
        bytemuck::cast_slice_mut(&mut fa),
        fb.as_mut().map(|v| bytemuck::cast_slice_mut(v)),
        scale,
    );
    if let Some(fb) = fb {
        give(fb);
    }
    fa
}

/// Garner's CRT for the three primes: the mixed-radix digits `v0, v1, v2` of each coefficient
/// (`x = v0 + v1 p0 + v2 p0 p1`) on SIMD lanes, then, one coefficient at a time, `x` plus the
/// carry split into a limb and the next carry with a single division by `10^19`.
#[derive(Clone, Copy, Debug)]
struct Crt {
    isa: Isa,
    /// `[c, c/p]` centered: `p0^-1 mod p1`, `p0 mod p2` and `(p0 p1)^-1 mod p2`.
    c1: [f64; 2],
    p0_2: [f64; 2],
    c2: [f64; 2],
    /// `p0 p1 = hi 10^19 + lo`.
    p01: (u64, u64),
}

/// `2^52`: for an integer `0 <= x < 2^52`, `x + 2^52` is exact and its bits are those of
/// `2^52` plus `x`.
const BIAS: f64 = 4_503_599_627_370_496.0;

/// The integer `x` from `x + 2^52` as [`Garner`] leaves it: a subtraction of bits instead of a
/// float-to-integer conversion (whose NaN and range checks cost more than the rest of a
/// coefficient's arithmetic).
#[inline(always)]
fn unbias(biased: f64) -> u64 {
    biased.to_bits() - BIAS.to_bits()
}

/// Coefficients per SIMD block of the CRT.
const CRT_BLOCK: usize = 256;

/// The mixed-radix digits of a block of coefficients, each in `[0, p_i)`, as `f64` plus `2^52`.
struct Garner<'a> {
    crt: &'a Crt,
    r: [&'a [f64]; 3],
    out: &'a mut [[f64; CRT_BLOCK]; 3],
}

impl WithSimd for Garner<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let [f0, f1, f2] = primes();
        let (l0, l1, l2) = (
            Lanes::new(s, f0.p),
            Lanes::new(s, f1.p),
            Lanes::new(s, f2.p),
        );
        let (c1, p0_2, c2) = (l1.tw(self.crt.c1), l2.tw(self.crt.p0_2), l2.tw(self.crt.c2));
        let [r0, r1, r2] = self.r;
        let n = r0.len();
        let [o0, o1, o2] = self.out;
        let (o0, _) = S::as_mut_simd_f64s(&mut o0[..n]);
        let (o1, _) = S::as_mut_simd_f64s(&mut o1[..n]);
        let (o2, _) = S::as_mut_simd_f64s(&mut o2[..n]);
        let (r0, _) = S::as_simd_f64s(r0);
        let (r1, _) = S::as_simd_f64s(r1);
        let (r2, _) = S::as_simd_f64s(r2);
        for (((((&x, &y), &z), v0), v1), v2) in r0.iter().zip(r1).zip(r2).zip(o0).zip(o1).zip(o2) {
            let a = l0.positive(l0.reduce(x));
            // b = (y - a) / p0 mod p1; c = (z - a - b p0) / (p0 p1) mod p2.
            let b = l1.positive(l1.reduce(l1.mul_tw(s.sub_f64s(y, a), c1)));
            let e = s.sub_f64s(l2.reduce(s.sub_f64s(z, a)), l2.mul_tw(b, p0_2));
            let c = l2.positive(l2.reduce(l2.mul_tw(e, c2)));
            // Biased by 2^52, each digit's integer is the low bits of its f64 (see `unbias`).
            let bias = s.splat_f64s(BIAS);
            (*v0, *v1, *v2) = (
                s.add_f64s(a, bias),
                s.add_f64s(b, bias),
                s.add_f64s(c, bias),
            );
        }
    }
}

impl Crt {
    fn new(isa: Isa) -> Self {
        let [p0, p1, p2] = PRIMES;
        let p01 = u128::from(p0) * u128::from(p1);
        let base = u128::from(super::limbs::BASE);
        Crt {
            isa,
            c1: twiddle(inv_mod(p0 % p1, p1), p1),
            p0_2: twiddle(p0 % p2, p2),
            c2: twiddle(inv_mod(mul_mod(p0, p1, p2), p2), p2),
            p01: ((p01 / base) as u64, (p01 % base) as u64),
        }
    }

    /// Converts the residues (as `f64` bits) of a stretch of coefficients into limbs in place
    /// in `r0`, carrying from `carry`; returns the carry out.
    fn run(&self, r0: &mut [u64], r1: &[u64], r2: &[u64], mut carry: u128) -> u128 {
        let p0 = u128::from(PRIMES[0]);
        let (hi, lo) = (u128::from(self.p01.0), u128::from(self.p01.1));
        let mut digits = [[0.0; CRT_BLOCK]; 3];
        for ((x, y), z) in r0
            .chunks_mut(CRT_BLOCK)
            .zip(r1.chunks(CRT_BLOCK))
            .zip(r2.chunks(CRT_BLOCK))
        {
            let r: [&[f64]; 3] = [&*x, y, z].map(bytemuck::cast_slice);
            let garner = Garner {
                crt: self,
                r,
                out: &mut digits,
            };
            self.isa.run_if(x.len() % 8 == 0, garner);
            let [d0, d1, d2] = &digits;
            for (((x, &a), &b), &c) in x.iter_mut().zip(d0).zip(d1).zip(d2) {
                let (a, b, c) = (unbias(a), unbias(b), unbias(c));
                // x = a + b p0 + c (hi 10^19 + lo): below 2^114 with the carry (< 2^88)
                // before the high part, whose product goes straight to the next carry.
                let low = u128::from(a) + u128::from(b) * p0 + u128::from(c) * lo + carry;
                let (q, limb) = super::limbs::div_base_wide(low);
                *x = limb;
                carry = u128::from(q) + u128::from(c) * hi;
            }
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
    let conv = la + lb - 1;
    assert!(
        la.min(lb) <= MAX_SHORTER && conv <= MAX_LEN,
        "FMA NTT: operands of {la} and {lb} limbs exceed its exact range"
    );
    let n = transform_len(conv);
    let residue = |i: usize| residues(isa, i, a, b, n);
    let [r0, r1, r2] = per_prime(sequential_primes(n), residue);
    let crt = Crt::new(isa);
    assemble([r0, r1, r2], conv, |x, y, z| crt.run(x, y, z, 0))
}

/// Whether a product of `la` and `lb` limbs (both nonzero) is within this transform's range:
/// the shorter operand within [`MAX_SHORTER`], the product within [`MAX_LEN`].
fn fits(la: usize, lb: usize) -> bool {
    la.min(lb) <= MAX_SHORTER && la + lb - 1 <= MAX_LEN
}

/// `a * b` by the fastest exact transform: this one where the CPU has FMA lanes and the
/// product is within its range ([`fits`]), else the integer one.
pub(crate) fn mul(a: &[u64], b: &[u64]) -> Vec<u64> {
    match isa() {
        Some(isa) if fits(a.len(), b.len()) => product(isa, a, Some(b)),
        _ => ntt::mul(a, b),
    }
}

/// `a * a` by the fastest exact transform (see [`mul`]).
pub(crate) fn square(a: &[u64]) -> Vec<u64> {
    match isa() {
        Some(isa) if fits(a.len(), a.len()) => product(isa, a, None),
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
        // Products past 3 * 2^31 limbs (a 14-million-limb operand times a far longer one) go
        // to the integer transform: no prime here has a 2^32-th root of unity.
        assert!(fits(MAX_SHORTER, MAX_LEN + 1 - MAX_SHORTER));
        assert!(!fits(MAX_SHORTER, MAX_LEN + 2 - MAX_SHORTER));
        assert!(!fits(MAX_SHORTER + 1, MAX_SHORTER + 1));
        assert!(primes().iter().all(|f| (f.p - 1) % MAX_LEN as u64 == 0));
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
    fn convolutions_match_the_schoolbook_cyclic_convolution() {
        let mut next = rng(0xc0ff_ee11);
        for isa in Isa::all() {
            for n in [
                1usize, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 768,
            ] {
                for prime in primes() {
                    let p = prime.p;
                    let x: Vec<u64> = (0..n).map(|_| next() % p).collect();
                    let y: Vec<u64> = (0..n).map(|_| next() % p).collect();
                    let mut want = vec![0u64; n];
                    let mut want_sq = vec![0u64; n];
                    for i in 0..n {
                        for j in 0..n {
                            let k = (i + j) % n;
                            want[k] = (want[k] + mul_mod(x[i], y[j], p)) % p;
                            want_sq[k] = (want_sq[k] + mul_mod(x[i], x[j], p)) % p;
                        }
                    }
                    let scale = twiddle(inv_mod(n as u64 % p, p), p);
                    let as_f64 = |v: &[u64]| v.iter().map(|&v| v as f64).collect::<Vec<f64>>();
                    let (mut a, mut b) = (as_f64(&x), as_f64(&y));
                    convolve(isa, prime, &mut a, Some(&mut b), scale);
                    assert!(a.iter().all(|v| v.abs() < 2.0 * p as f64));
                    let got: Vec<u64> = a.iter().map(|&v| prime.normalize(v)).collect();
                    assert_eq!(got, want, "{isa:?}, n = {n}");
                    let mut a = as_f64(&x);
                    convolve(isa, prime, &mut a, None, scale);
                    let got: Vec<u64> = a.iter().map(|&v| prime.normalize(v)).collect();
                    assert_eq!(got, want_sq, "{isa:?}, n = {n}, square");
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
