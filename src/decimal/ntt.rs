//! Multiplication by number-theoretic transforms over three primes, with CRT reconstruction in
//! base 10^19.
//!
//! # Primes and the exactness bound
//!
//! The three primes are `c * 2^k + 1` with `k >= 53` and `3 | c`, all between `2.5e18` and
//! `2^62`:
//!
//! | prime | `p - 1` | generator |
//! |---|---|---|
//! | 4512606826625236993 | 2^53 * 3 * 167 | 7 |
//! | 4242390848983007233 | 2^53 * 3 * 157 | 11 |
//! | 4134304457926115329 | 2^53 * 3^3 * 17 | 7 |
//!
//! Limbs are transformed as they are (no splitting): every limb is below `10^19 < 4p`, which is
//! the input range the lazy butterflies accept. A coefficient of the cyclic convolution of `a`
//! and `b` is a sum of at most `min(len a, len b)` products below `(10^19 - 1)^2`, so it is
//! recovered exactly by the CRT as long as `min(len a, len b) * (10^19 - 1)^2 < p0 p1 p2`
//! (about `2^185.7`), i.e. for operands shorter than `2^59` limbs. The transform length is the
//! smallest `2^k` or `3 * 2^k` not below `len a + len b - 1`; the four-step split below works
//! for `k <= 32`, so products of up to `3 * 2^32` limbs (about `2.4e11` decimal digits, far past
//! any memory) are supported; beyond that the multiplication panics.
//!
//! # Arithmetic
//!
//! Butterflies use Shoup's precomputed-quotient multiplication by a twiddle (`w' = floor(w
//! 2^64 / p)`; one high and two low multiplications) and Harvey's lazy reduction: values stay in
//! `[0, 4p)` through the forward transform and `[0, 2p)` through the inverse, so `p < 2^62` is
//! required. Products of two variables (pointwise products, row twists, radix-3 twiddles) use
//! Montgomery reduction with `R = 2^64`.
//!
//! # Transform shape
//!
//! The forward transform uses Cooley–Tukey butterflies `(x + w y, x - w y)` in their "twiddle
//! per block" form (each level splits `x^2h - c` into `x^h - s` and `x^h + s`, `s^2 = c`):
//! natural order in, bit-reversed order out, each block at each level using one twiddle from a
//! table indexed by block number (the same table serves every length). The inverse is the exact
//! reverse (Gentleman–Sande butterflies with inverse twiddles), so no bit reversal is ever done
//! and the pointwise product never needs natural order.
//!
//! - Lengths up to [`DIRECT_MAX_LOG`] are transformed in place level by level; they fit in L2.
//! - Longer power-of-two lengths use the four-step method: the array is a `rows x cols` matrix
//!   (`rows = 2^floor(k/2)`); groups of columns are copied into a small buffer, transformed
//!   together (each butterfly runs over a whole row of the group), and copied back; then each
//!   row is multiplied by `w^(j * rev(r))` and transformed in place. Column groups and rows are
//!   independent and run in parallel on rayon from [`PAR_MIN_LOG`].
//! - Lengths `3 * 2^k` first do one radix-3 pass (parallel in chunks), then three power-of-two
//!   transforms (under `rayon::join`).
//!
//! The three primes run under `rayon::join(a, || rayon::join(b, c))` (and the two forward
//! transforms of a product under another `join`) up to [`SEQUENTIAL_PRIMES_LOG`]; longer
//! transforms do the primes one after the other, each parallel inside, which keeps the working
//! memory at four transform arrays instead of six. The CRT pass converts the three residues to
//! base-10^19 limbs in place over the first array, in parallel chunks whose carries are settled
//! by a short sequential pass.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use rayon::prelude::*;

use crate::decompose::GranularityExt as _;
use crate::granularity::Granularity;

use super::limbs::{self, div_base, div_base_wide};

/// The three NTT primes.
pub(crate) const PRIMES: [u64; 3] = [
    4_512_606_826_625_236_993,
    4_242_390_848_983_007_233,
    4_134_304_457_926_115_329,
];

/// A generator of the multiplicative group of each prime.
const GENERATORS: [u64; 3] = [7, 11, 7];

/// Twiddle tables cover transforms of up to `2^TABLE_LOG` points.
const TABLE_LOG: u32 = 16;

/// Power-of-two transforms up to `2^DIRECT_MAX_LOG` points are done level by level in place.
pub(crate) const DIRECT_MAX_LOG: u32 = 16;

/// Passes over at least `2^PAR_MIN_LOG` points run on rayon: four-step column groups and rows,
/// the radix-3 pass and the thirds after it, pointwise products, the two forward transforms.
pub(crate) const PAR_MIN_LOG: u32 = 14;

/// Products whose transform length is at least `2^JOIN_MIN_LOG` run the primes under `join`.
pub(crate) const JOIN_MIN_LOG: u32 = 9;

/// Transforms longer than `2^SEQUENTIAL_PRIMES_LOG` points do the primes one at a time.
pub(crate) const SEQUENTIAL_PRIMES_LOG: u32 = 22;

/// The largest supported transform length, `3 * 2^32`.
pub(crate) const MAX_LEN: usize = 3 << 32;

/// Column-group buffers of the four-step method hold about this many elements.
pub(super) const COLUMN_BUFFER: usize = 1 << 15;

/// Transforms of at least this many points take their column groups in pieces four times as
/// long (see [`column_pass`]).
const BIG_TRANSFORM: usize = 1 << 21;

/// CRT chunk length in the parallel case.
const CRT_CHUNK: usize = 1 << 14;

/// A divisor with its Möller–Granlund reciprocal (`d` must have its top bit set).
#[derive(Clone, Copy, Debug)]
struct Divisor {
    d: u64,
    v: u64,
}

impl Divisor {
    const fn new(d: u64) -> Self {
        assert!(d >> 63 == 1);
        Divisor {
            d,
            v: ((u128::MAX / d as u128) - (1u128 << 64)) as u64,
        }
    }

    /// `(hi 2^64 + lo) / d`, for `hi < d`.
    #[inline]
    fn div(self, hi: u64, lo: u64) -> u64 {
        let p = (self.v as u128) * (hi as u128);
        let p = p.wrapping_add(((hi as u128) << 64) | lo as u128);
        let mut q = ((p >> 64) as u64).wrapping_add(1);
        let mut r = lo.wrapping_sub(q.wrapping_mul(self.d));
        if r > p as u64 {
            q = q.wrapping_sub(1);
            r = r.wrapping_add(self.d);
        }
        if r >= self.d {
            q += 1;
        }
        q
    }
}

/// Arithmetic modulo one prime `p`, `2^61 < p < 2^62`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Field {
    p: u64,
    p2: u64,
    /// `p^-1 mod 2^64`.
    pinv: u64,
    /// `2^128 mod p`, to enter Montgomery form.
    r2: u64,
    /// `4p` with its reciprocal, for Shoup quotients.
    four_p: Divisor,
}

impl Field {
    const fn new(p: u64) -> Self {
        assert!(p > 1 << 61 && p < 1 << 62);
        let mut inv = p; // correct to 3 bits; each Newton step doubles that
        let mut i = 0;
        while i < 5 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(p.wrapping_mul(inv)));
            i += 1;
        }
        let r1 = ((1u128 << 64) % p as u128) as u64;
        Field {
            p,
            p2: 2 * p,
            pinv: inv,
            r2: ((r1 as u128 * r1 as u128) % p as u128) as u64,
            four_p: Divisor::new(4 * p),
        }
    }

    /// `t 2^-64 mod p` in `[0, p)`, for `t < p 2^64`.
    #[inline(always)]
    fn redc(&self, t: u128) -> u64 {
        let m = (t as u64).wrapping_mul(self.pinv);
        let u = ((m as u128 * self.p as u128) >> 64) as u64;
        let d = ((t >> 64) as u64).wrapping_sub(u);
        d.min(d.wrapping_add(self.p))
    }

    /// Montgomery product `a b 2^-64 mod p` in `[0, p)`, for `a b < p 2^64`.
    #[inline(always)]
    fn mont(&self, a: u64, b: u64) -> u64 {
        self.redc(a as u128 * b as u128)
    }

    /// `x` in Montgomery form (`x 2^64 mod p`).
    fn mont_form(&self, x: u64) -> u64 {
        self.mont(x % self.p, self.r2)
    }

    /// `a b mod p` for reduced `a`, `b`.
    fn mul(&self, a: u64, b: u64) -> u64 {
        ((a as u128 * b as u128) % self.p as u128) as u64
    }

    /// `x^e mod p` for reduced `x`.
    fn pow(&self, x: u64, mut e: u64) -> u64 {
        let mut base = self.mont_form(x);
        let mut acc = self.mont_form(1);
        while e > 0 {
            if e & 1 == 1 {
                acc = self.mont(acc, base);
            }
            base = self.mont(base, base);
            e >>= 1;
        }
        self.redc(acc as u128)
    }

    /// `x^e` in Montgomery form, from `x` in Montgomery form.
    #[inline]
    fn pow_mont(&self, x: u64, mut e: u64) -> u64 {
        let mut base = x;
        let mut acc = self.mont_form(1);
        while e > 0 {
            if e & 1 == 1 {
                acc = self.mont(acc, base);
            }
            base = self.mont(base, base);
            e >>= 1;
        }
        acc
    }

    fn inv(&self, x: u64) -> u64 {
        self.pow(x, self.p - 2)
    }

    /// The Shoup companion `floor(w 2^64 / p)` of a reduced `w`.
    #[inline]
    fn shoup(&self, w: u64) -> u64 {
        debug_assert!(w < self.p);
        self.four_p.div(w << 2, 0)
    }

    /// `x w mod p` in `[0, 2p)` for any `x`, reduced `w` and its companion `wp`.
    #[inline(always)]
    fn shoup_mul(&self, x: u64, w: u64, wp: u64) -> u64 {
        let q = ((x as u128 * wp as u128) >> 64) as u64;
        x.wrapping_mul(w).wrapping_sub(q.wrapping_mul(self.p))
    }

    /// `[0, 2p)` to `[0, p)`.
    #[inline(always)]
    fn reduce2(&self, x: u64) -> u64 {
        x.min(x.wrapping_sub(self.p))
    }

    /// `[0, 4p)` to `[0, p)`.
    #[inline(always)]
    fn reduce4(&self, x: u64) -> u64 {
        self.reduce2(x.min(x.wrapping_sub(self.p2)))
    }

    #[inline(always)]
    fn add(&self, a: u64, b: u64) -> u64 {
        self.reduce2(a + b)
    }

    #[inline(always)]
    fn sub(&self, a: u64, b: u64) -> u64 {
        let d = a.wrapping_sub(b);
        d.min(d.wrapping_add(self.p))
    }
}

/// Everything one prime's transforms need.
#[derive(Debug)]
struct Ctx {
    f: Field,
    g: u64,
    /// `(T[b], T'[b])`: the forward twiddle of block `b` and its Shoup companion.
    fwd: Vec<[u64; 2]>,
    /// The same for the inverse twiddles.
    inv: Vec<[u64; 2]>,
}

impl Ctx {
    fn new(p: u64, g: u64) -> Self {
        let f = Field::new(p);
        let (fwd, inv) = block_twiddles(
            |level| {
                let w = f.pow(g, (p - 1) >> (level + 2));
                (f.mont_form(w), f.mont_form(f.inv(w)))
            },
            |x, wm| f.mont(x, wm),
        );
        let pair = |t: Vec<u64>| t.into_iter().map(|w| [w, f.shoup(w)]).collect();
        Ctx {
            f,
            g,
            fwd: pair(fwd),
            inv: pair(inv),
        }
    }

    /// A primitive `n`-th root of unity, consistent across lengths (`n | p - 1`).
    fn root(&self, n: usize) -> u64 {
        debug_assert_eq!((self.f.p - 1) % n as u64, 0);
        self.f.pow(self.g, (self.f.p - 1) / n as u64)
    }
}

/// The forward and inverse twiddle tables of a prime, `T[b]` for each block `b` below
/// `2^(TABLE_LOG - 1)`: `T[b] = w_{2^K}^rev_{K-1}(b)`, built as `T[2^L + c] = T[c] w_{2^(L+2)}`.
/// `roots(L)` gives `w_{2^(L+2)}` and its inverse in whatever form `mul(x, w)` takes to return
/// the plain `x w mod p` (Montgomery form here, plain in `fma.rs`).
pub(super) fn block_twiddles(
    roots: impl Fn(u32) -> (u64, u64),
    mul: impl Fn(u64, u64) -> u64,
) -> (Vec<u64>, Vec<u64>) {
    let half = 1usize << (TABLE_LOG - 1);
    let mut fwd = vec![0u64; half];
    let mut inv = vec![0u64; half];
    fwd[0] = 1;
    inv[0] = 1;
    let mut len = 1;
    let mut level = 0u32;
    while len < half {
        let (w, wi) = roots(level);
        for c in 0..len {
            fwd[len + c] = mul(fwd[c], w);
            inv[len + c] = mul(inv[c], wi);
        }
        len *= 2;
        level += 1;
    }
    (fwd, inv)
}

fn contexts() -> &'static [Ctx; 3] {
    static CTX: OnceLock<[Ctx; 3]> = OnceLock::new();
    // Built sequentially, never with rayon: a worker initializing the OnceLock inside `join`
    // could steal a task that also calls `contexts()` and block on the cell only it can fill
    // (seen as a hang of `fibo -j 16 1e7` on a 16-core machine, 1 run in ~30).
    CTX.get_or_init(|| std::array::from_fn(|i| Ctx::new(PRIMES[i], GENERATORS[i])))
}

/// `w`, through an optimisation barrier, so that LLVM leaves the butterfly loop that uses it
/// scalar.
///
/// On the baseline x86-64 target (SSE2) LLVM may auto-vectorize the butterfly loops, two lanes
/// with each 64x64->128-bit product emulated by four 32-bit multiplies, and that vector loop is
/// slower than the scalar one: `fibo 1e7 -j1` took 1.3x as long when it was chosen. Whether it
/// was chosen depended on code elsewhere in the crate (it changed with an unrelated refactor),
/// so the choice is made here, once per four butterflies (the loops take spans four at a
/// time). Measured with it, `fibo 1e7 -j1` runs 0.94x the time of a build with loop
/// vectorization off altogether (BENCHMARKS.md, issue 12). A real vector NTT (f64 FMA lanes)
/// is issue 15's work.
#[inline(always)]
fn scalar(w: u64) -> u64 {
    std::hint::black_box(w)
}

/// `butterfly(x, y, w, wp)` on every pair `(lo[i], hi[i])`, kept scalar: the barrier of
/// [`scalar`] once per four pairs, and the pairs of spans shorter than four one by one.
#[inline(always)]
fn span_pairs(
    lo: &mut [u64],
    hi: &mut [u64],
    w: u64,
    wp: u64,
    butterfly: impl Fn(&mut u64, &mut u64, u64, u64),
) {
    let (mut xs, mut ys) = (lo.chunks_exact_mut(4), hi.chunks_exact_mut(4));
    for (x, y) in (&mut xs).zip(&mut ys) {
        let w = scalar(w);
        for (x, y) in x.iter_mut().zip(y) {
            butterfly(x, y, w, wp);
        }
    }
    for (x, y) in xs.into_remainder().iter_mut().zip(ys.into_remainder()) {
        butterfly(x, y, scalar(w), wp);
    }
}

/// Forward butterfly: `(x, y) -> (x + w y, x - w y)`, inputs and outputs in `[0, 4p)`.
#[inline(always)]
fn ct(f: &Field, x: &mut u64, y: &mut u64, w: u64, wp: u64) {
    let u = (*x).min(x.wrapping_sub(f.p2));
    let t = f.shoup_mul(*y, w, wp);
    *x = u + t;
    *y = u + f.p2 - t;
}

/// Inverse butterfly: `(x, y) -> (x + y, (x - y) w)`, inputs and outputs in `[0, 2p)`.
#[inline(always)]
fn gs(f: &Field, x: &mut u64, y: &mut u64, w: u64, wp: u64) {
    let (u, v) = (*x, *y);
    let s = u + v;
    *x = s.min(s.wrapping_sub(f.p2));
    *y = f.shoup_mul(u + f.p2 - v, w, wp);
}

/// The forward levels of a power-of-two transform on `a`, seen as `a.len() / width` vectors of
/// `width` elements (width 1: one transform; width `g`: `g` interleaved column transforms).
fn fwd_levels(ctx: &Ctx, a: &mut [u64], width: usize) {
    let f = &ctx.f;
    let n = a.len() / width;
    let mut half = n / 2;
    while half > 0 {
        if width == 1 && half == 2 {
            // The last two levels at once, four points per step.
            for (c, q) in a.chunks_exact_mut(4).enumerate() {
                let [w, wp] = ctx.fwd[c];
                let [x0, x1, x2, x3] = q else { unreachable!() };
                ct(f, x0, x2, w, wp);
                ct(f, x1, x3, w, wp);
                let [w, wp] = ctx.fwd[2 * c];
                ct(f, x0, x1, w, wp);
                let [w, wp] = ctx.fwd[2 * c + 1];
                ct(f, x2, x3, w, wp);
            }
            return;
        }
        let span = half * width;
        for (block, tw) in a.chunks_exact_mut(2 * span).zip(&ctx.fwd) {
            let [w, wp] = *tw;
            let (lo, hi) = block.split_at_mut(span);
            span_pairs(lo, hi, w, wp, |x, y, w, wp| ct(f, x, y, w, wp));
        }
        half /= 2;
    }
}

/// The inverse of [`fwd_levels`] times the number of points: bit-reversed in, natural out.
fn inv_levels(ctx: &Ctx, a: &mut [u64], width: usize) {
    let f = &ctx.f;
    let n = a.len() / width;
    let mut half = 1;
    if width == 1 && n >= 4 {
        for (c, q) in a.chunks_exact_mut(4).enumerate() {
            let [x0, x1, x2, x3] = q else { unreachable!() };
            let [w, wp] = ctx.inv[2 * c];
            gs(f, x0, x1, w, wp);
            let [w, wp] = ctx.inv[2 * c + 1];
            gs(f, x2, x3, w, wp);
            let [w, wp] = ctx.inv[c];
            gs(f, x0, x2, w, wp);
            gs(f, x1, x3, w, wp);
        }
        half = 4;
    }
    while half < n {
        let span = half * width;
        for (block, tw) in a.chunks_exact_mut(2 * span).zip(&ctx.inv) {
            let [w, wp] = *tw;
            let (lo, hi) = block.split_at_mut(span);
            span_pairs(lo, hi, w, wp, |x, y, w, wp| gs(f, x, y, w, wp));
        }
        half *= 2;
    }
}

/// `rev(r)` over `bits` bits.
#[inline]
fn bit_reverse(r: usize, bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        r.reverse_bits() >> (usize::BITS - bits)
    }
}

/// Multiplies `row[j]` by `s^j` (`s` in Montgomery form); inputs below `4p`, outputs in
/// `[0, p)`. Four independent chains of powers, so the multiplications overlap.
#[inline]
fn twist(f: &Field, row: &mut [u64], s: u64) {
    let s2 = f.mont(s, s);
    let s4 = f.mont(s2, s2);
    let one = f.mont_form(1);
    let s3 = f.mont(s2, s);
    let mut t = [one, s, s2, s3];
    let mut quads = row.chunks_exact_mut(4);
    for q in &mut quads {
        for (x, t) in q.iter_mut().zip(t.iter_mut()) {
            *x = f.mont(*x, *t);
            *t = f.mont(*t, s4);
        }
    }
    for (x, t) in quads.into_remainder().iter_mut().zip(t) {
        *x = f.mont(*x, t);
    }
}

/// Runs `op` on groups of columns of the `rows x cols` matrix `a`, each group copied into a
/// contiguous `rows x g` buffer and back (`g` a power of two, at least 8 or all columns).
pub(super) fn column_pass<T: Copy + Default + Send + Sync>(
    a: &mut [T],
    cols: usize,
    par: bool,
    op: impl Fn(&mut [T], usize) + Sync,
) {
    let rows = a.len() / cols;
    // In long transforms each row's piece comes from memory: pieces four times as long (a
    // group of 4 * COLUMN_BUFFER values, still within L2) made `fibo -j2 1e9` 0.93x (medians
    // of 5) and left `fibo -j1 1e8` unchanged (0.98x, within the noise); applied to every
    // length, 1e8 lost 2% (issue 15).
    let buffer = if a.len() >= BIG_TRANSFORM {
        4 * COLUMN_BUFFER
    } else {
        COLUMN_BUFFER
    };
    let g = (buffer / rows).clamp(8, cols);
    let mut groups: Vec<Vec<&mut [T]>> = (0..cols / g).map(|_| Vec::with_capacity(rows)).collect();
    for row in a.chunks_exact_mut(cols) {
        for (group, piece) in groups.iter_mut().zip(row.chunks_exact_mut(g)) {
            group.push(piece);
        }
    }
    let work = |buf: &mut Vec<T>, pieces: Vec<&mut [T]>| {
        for (dst, src) in buf.chunks_exact_mut(g).zip(&pieces) {
            dst.copy_from_slice(src);
        }
        op(buf, g);
        for (src, dst) in buf.chunks_exact(g).zip(pieces) {
            dst.copy_from_slice(src);
        }
    };
    if par {
        groups
            .into_par_iter()
            .for_each_init(|| vec![T::default(); rows * g], work);
    } else {
        let mut buf = vec![T::default(); rows * g];
        for group in groups {
            work(&mut buf, group);
        }
    }
}

/// Forward power-of-two transform of `a` (length `2^k`, `k <= 32`), `[0, 4p)` in and out.
fn forward_pow2(ctx: &Ctx, a: &mut [u64]) {
    let k = a.len().trailing_zeros();
    if k <= DIRECT_MAX_LOG {
        fwd_levels(ctx, a, 1);
        return;
    }
    let par = k >= PAR_MIN_LOG;
    let (r_log, c_log) = (k / 2, k - k / 2);
    let cols = 1usize << c_log;
    column_pass(a, cols, par, |buf, g| fwd_levels(ctx, buf, g));
    let f = &ctx.f;
    let w = f.mont_form(ctx.root(a.len()));
    let row = |(r, row): (usize, &mut [u64])| {
        let e = bit_reverse(r, r_log) as u64;
        if e != 0 {
            twist(f, row, f.pow_mont(w, e));
        }
        fwd_levels(ctx, row, 1);
    };
    row_pass(a, cols, par, row);
}

/// The row pass of the four-step method, as data decomposition: rows in tasks of at least
/// `2^PAR_MIN_LOG` points (`Granularity::MinLen`), so short rows are not one task each.
/// (The column pass needs a gather buffer per task, so its tasks are the column groups
/// themselves, each sized by [`COLUMN_BUFFER`].)
fn row_pass(
    a: &mut [u64],
    cols: usize,
    par: bool,
    row: impl Fn((usize, &mut [u64])) + Sync + Send,
) {
    if !par {
        a.chunks_mut(cols).enumerate().for_each(row);
        return;
    }
    let rows_per_task = ((1usize << PAR_MIN_LOG) / cols).max(1);
    a.par_chunks_mut(cols)
        .enumerate()
        .with_granularity(Granularity::MinLen(rows_per_task))
        .for_each(row);
}

/// Inverse of [`forward_pow2`] times the length, `[0, 2p)` in and out.
fn inverse_pow2(ctx: &Ctx, a: &mut [u64]) {
    let k = a.len().trailing_zeros();
    if k <= DIRECT_MAX_LOG {
        inv_levels(ctx, a, 1);
        return;
    }
    let par = k >= PAR_MIN_LOG;
    let (r_log, c_log) = (k / 2, k - k / 2);
    let cols = 1usize << c_log;
    let f = &ctx.f;
    let w = f.mont_form(f.inv(ctx.root(a.len())));
    let row = |(r, row): (usize, &mut [u64])| {
        inv_levels(ctx, row, 1);
        let e = bit_reverse(r, r_log) as u64;
        if e != 0 {
            twist(f, row, f.pow_mont(w, e));
        }
    };
    row_pass(a, cols, par, row);
    column_pass(a, cols, par, |buf, g| inv_levels(ctx, buf, g));
}

/// Splits `a` (length `3m`) into its thirds.
fn thirds(a: &mut [u64]) -> (&mut [u64], &mut [u64], &mut [u64]) {
    let m = a.len() / 3;
    let (x0, rest) = a.split_at_mut(m);
    let (x1, x2) = rest.split_at_mut(m);
    (x0, x1, x2)
}

/// Runs `op` on the three thirds, under `join` when `par`.
fn on_thirds(a: &mut [u64], par: bool, op: impl Fn(&mut [u64]) + Sync) {
    let (x0, x1, x2) = thirds(a);
    if par {
        rayon::join(|| op(x0), || rayon::join(|| op(x1), || op(x2)));
    } else {
        op(x0);
        op(x1);
        op(x2);
    }
}

/// The radix-3 pass of a length-`3m` transform, forward (`INVERSE == false`: combine, then
/// twiddle) or inverse (twiddle by the inverse root, then combine with `w3^-1`).
fn radix3<const INVERSE: bool>(ctx: &Ctx, a: &mut [u64]) {
    let f = ctx.f;
    let f = &f;
    let n = a.len();
    let par = n >= 3 << PAR_MIN_LOG;
    let (mut w, mut w3) = (ctx.root(n), ctx.root(3));
    if INVERSE {
        (w, w3) = (f.inv(w), f.inv(w3));
    }
    let (wm, w3p) = (f.mont_form(w), f.shoup(w3));
    let (x0, x1, x2) = thirds(a);
    let chunk = if par { 1 << 12 } else { x0.len().max(1) };
    let w4 = f.pow_mont(wm, 4);
    let body = |(c, ((x0, x1), x2)): (usize, Triple<'_>)| {
        // Twiddles w^j for a block of 64 j at a time, four independent chains of powers.
        let mut t = [0u64; 4];
        t[0] = f.pow_mont(wm, (c * chunk) as u64);
        for i in 1..4 {
            t[i] = f.mont(t[i - 1], wm);
        }
        let mut tw = [0u64; 64];
        for ((x0, x1), x2) in x0
            .chunks_mut(64)
            .zip(x1.chunks_mut(64))
            .zip(x2.chunks_mut(64))
        {
            for q in tw.chunks_exact_mut(4) {
                for (slot, t) in q.iter_mut().zip(t.iter_mut()) {
                    *slot = *t;
                    *t = f.mont(*t, w4);
                }
            }
            for (((a0, a1), a2), &t1) in
                x0.iter_mut().zip(x1.iter_mut()).zip(x2.iter_mut()).zip(&tw)
            {
                let t2 = f.mont(t1, t1);
                let (mut y0, mut y1, mut y2) = (f.reduce4(*a0), f.reduce4(*a1), f.reduce4(*a2));
                if INVERSE {
                    y1 = f.mont(y1, t1);
                    y2 = f.mont(y2, t2);
                }
                let s = f.add(f.add(y0, y1), y2);
                let m = f.reduce2(f.shoup_mul(f.sub(y1, y2), w3, w3p));
                (y0, y1, y2) = (s, f.add(f.sub(y0, y2), m), f.sub(f.sub(y0, y1), m));
                if !INVERSE {
                    y1 = f.mont(y1, t1);
                    y2 = f.mont(y2, t2);
                }
                (*a0, *a1, *a2) = (y0, y1, y2);
            }
        }
    };
    if par {
        x0.par_chunks_mut(chunk)
            .zip(x1.par_chunks_mut(chunk))
            .zip(x2.par_chunks_mut(chunk))
            .enumerate()
            .for_each(body);
    } else {
        body((0, ((x0, x1), x2)));
    }
}

/// Three slices walked together.
type Triple<'a> = ((&'a mut [u64], &'a mut [u64]), &'a mut [u64]);

/// Forward transform of length `2^k` or `3 * 2^k`, `[0, 4p)` in and out.
fn forward(ctx: &Ctx, a: &mut [u64]) {
    if a.len() % 3 == 0 {
        radix3::<false>(ctx, a);
        on_thirds(a, a.len() >= 3 << PAR_MIN_LOG, |x| forward_pow2(ctx, x));
    } else {
        forward_pow2(ctx, a);
    }
}

/// Inverse of [`forward`] times the length, `[0, 2p)` in and out.
fn inverse(ctx: &Ctx, a: &mut [u64]) {
    if a.len() % 3 == 0 {
        on_thirds(a, a.len() >= 3 << PAR_MIN_LOG, |x| inverse_pow2(ctx, x));
        radix3::<true>(ctx, a);
    } else {
        inverse_pow2(ctx, a);
    }
}

/// The smallest `2^k` or `3 * 2^k` not below `len`.
pub(crate) fn transform_len(len: usize) -> usize {
    assert!(
        len <= MAX_LEN,
        "decimal NTT: a product of {len} limbs exceeds the supported {MAX_LEN}"
    );
    let pow2 = len.next_power_of_two();
    let three = 3 * (pow2 / 4);
    if three >= len { three } else { pow2 }
}

/// Scopes in which freed transform buffers are kept for reuse (see [`BufferScope`]).
static SCOPES: AtomicUsize = AtomicUsize::new(0);

/// Transform buffers kept for reuse while a [`BufferScope`] is alive.
static POOL: Mutex<Vec<Vec<u64>>> = Mutex::new(Vec::new());

/// At most this many buffers are kept.
const POOL_BUFFERS: usize = 6;

/// While alive, transform buffers are recycled instead of returned to the allocator.
///
/// A run of products of similar sizes (the steps of a Fibonacci doubling) otherwise maps and
/// unmaps fresh pages for every transform: page faults and, with several threads, TLB
/// shoot-downs, about a quarter of the run time. The pool keeps at most [`POOL_BUFFERS`]
/// buffers and is emptied when the last scope ends, so nothing stays allocated afterwards.
///
/// # Locking
///
/// A short global mutex around taking and giving buffers; it is never held while other work
/// runs.
#[derive(Debug)]
pub(crate) struct BufferScope(());

impl BufferScope {
    pub(crate) fn new() -> BufferScope {
        SCOPES.fetch_add(1, Ordering::SeqCst);
        BufferScope(())
    }
}

impl Drop for BufferScope {
    fn drop(&mut self) {
        let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
        if SCOPES.fetch_sub(1, Ordering::SeqCst) == 1 {
            pool.clear();
            pool.shrink_to_fit();
        }
    }
}

/// A buffer of `n` elements whose contents are unspecified, recycled when possible.
pub(super) fn take(n: usize) -> Vec<u64> {
    let reused = {
        let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
        let best = pool
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= n)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i);
        match best {
            Some(i) => Some(pool.swap_remove(i)),
            None => {
                // Sizes grow along a doubling: buffers too small now will not be needed
                // again, so they go before a bigger one is allocated.
                let stale = std::mem::take(&mut *pool);
                drop(pool);
                drop(stale);
                None
            }
        }
    };
    match reused {
        Some(mut v) => {
            v.resize(n, 0);
            v
        }
        None => vec![0u64; n],
    }
}

/// Hands a buffer back for reuse (dropped if no scope is alive or the pool is full).
pub(super) fn give(v: Vec<u64>) {
    if SCOPES.load(Ordering::SeqCst) == 0 || v.capacity() < 1 << 12 {
        return;
    }
    let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    if SCOPES.load(Ordering::SeqCst) == 0 {
        return;
    }
    pool.push(v);
    if pool.len() > POOL_BUFFERS {
        // Keep the biggest buffers: sizes only grow along a doubling.
        let smallest = (0..pool.len())
            .min_by_key(|&i| pool[i].capacity())
            .expect("not empty");
        let dropped = pool.swap_remove(smallest);
        drop(pool);
        drop(dropped);
    }
}

/// `x` zero-padded to `n` points.
fn padded(x: &[u64], n: usize) -> Vec<u64> {
    let mut v = take(n);
    v[..x.len()].copy_from_slice(x);
    v[x.len()..].fill(0);
    v
}

/// Pointwise `a = a b 2^-64`, `[0, 4p)` in, `[0, p)` out.
fn pointwise(f: &Field, a: &mut [u64], b: Option<&[u64]>, par: bool) {
    let mul = |x: &mut u64, y: u64| {
        let u = (*x).min(x.wrapping_sub(f.p2));
        let v = y.min(y.wrapping_sub(f.p2));
        *x = f.mont(u, v);
    };
    match (b, par) {
        (Some(b), true) => a
            .par_iter_mut()
            .zip(b.par_iter())
            .with_min_len(1 << 12)
            .for_each(|(x, &y)| mul(x, y)),
        (Some(b), false) => a.iter_mut().zip(b).for_each(|(x, &y)| mul(x, y)),
        (None, true) => a
            .par_iter_mut()
            .with_min_len(1 << 12)
            .for_each(|x| mul(x, *x)),
        (None, false) => a.iter_mut().for_each(|x| mul(x, *x)),
    }
}

/// The residues of `a * b` (or `a * a`) modulo prime `i`, times `n 2^-64`, over `n` points.
fn residues(i: usize, a: &[u64], b: Option<&[u64]>, n: usize) -> Vec<u64> {
    let ctx = &contexts()[i];
    let par = n >= 1 << PAR_MIN_LOG;
    let mut fa = padded(a, n);
    match b {
        Some(b) => {
            let mut fb = Vec::new();
            if par {
                rayon::join(
                    || forward(ctx, &mut fa),
                    || {
                        fb = padded(b, n);
                        forward(ctx, &mut fb);
                    },
                );
            } else {
                forward(ctx, &mut fa);
                fb = padded(b, n);
                forward(ctx, &mut fb);
            }
            pointwise(&ctx.f, &mut fa, Some(&fb), par);
            give(fb);
        }
        None => {
            forward(ctx, &mut fa);
            pointwise(&ctx.f, &mut fa, None, par);
        }
    }
    inverse(ctx, &mut fa);
    fa
}

/// Constants of the CRT for one transform length.
#[derive(Clone, Copy, Debug)]
struct Crt {
    f: [Field; 3],
    /// `2^64 / n mod p_i` and companions: undoes the transform scale and the Montgomery factor.
    scale: [[u64; 2]; 3],
    /// `p0^-1 mod p1`.
    c1: [u64; 2],
    /// `p0 mod p2`.
    p0_2: [u64; 2],
    /// `(p0 p1)^-1 mod p2`.
    c2: [u64; 2],
    /// `p0 p1`.
    p01: u128,
}

impl Crt {
    fn new(n: usize) -> Self {
        let f = [0, 1, 2].map(|i| contexts()[i].f);
        let pair = |f: &Field, w: u64| [w, f.shoup(w)];
        let scale = [0, 1, 2].map(|i| {
            let g = &f[i];
            let two64 = ((1u128 << 64) % g.p as u128) as u64;
            pair(g, g.mul(two64, g.inv(n as u64 % g.p)))
        });
        let [p0, p1, p2] = PRIMES;
        Crt {
            f,
            scale,
            c1: pair(&f[1], f[1].inv(p0 % p1)),
            p0_2: pair(&f[2], p0 % p2),
            c2: pair(&f[2], f[2].inv(f[2].mul(p0 % p2, p1 % p2))),
            p01: p0 as u128 * p1 as u128,
        }
    }

    /// The exact convolution coefficient from its three residues, as three words.
    #[inline(always)]
    fn value(&self, r: [u64; 3]) -> (u64, u128) {
        let [f0, f1, f2] = &self.f;
        let [p0, p1, p2] = PRIMES;
        let [s0, s1, s2] = self.scale;
        let v0 = f0.reduce2(f0.shoup_mul(r[0], s0[0], s0[1]));
        let y1 = f1.reduce2(f1.shoup_mul(r[1], s1[0], s1[1]));
        let y2 = f2.reduce2(f2.shoup_mul(r[2], s2[0], s2[1]));
        let v0_1 = if v0 >= p1 { v0 - p1 } else { v0 };
        let v1 = f1.reduce2(f1.shoup_mul(f1.sub(y1, v0_1), self.c1[0], self.c1[1]));
        let v0_2 = if v0 >= p2 { v0 - p2 } else { v0 };
        let t = f2.reduce2(f2.shoup_mul(v1, self.p0_2[0], self.p0_2[1]));
        let v2 = f2.reduce2(f2.shoup_mul(f2.sub(f2.sub(y2, v0_2), t), self.c2[0], self.c2[1]));
        // x = v0 + v1 p0 + v2 p0 p1 < p0 p1 p2 < 2^186.
        let lo = v0 as u128 + v1 as u128 * p0 as u128;
        let a = v2 as u128 * (self.p01 as u64) as u128;
        let b = v2 as u128 * (self.p01 >> 64);
        let (s, c) = lo.overflowing_add(a);
        let hi = b + (s >> 64) + ((c as u128) << 64);
        // (top word, low two words)
        ((hi >> 64) as u64, (hi << 64) | (s as u64) as u128)
    }

    /// Converts `r0[i], r1[i], r2[i]` to limbs in place in `r0`, carrying from `carry`;
    /// returns the carry out.
    fn run(&self, r0: &mut [u64], r1: &[u64], r2: &[u64], mut carry: u128) -> u128 {
        for ((x, &y), &z) in r0.iter_mut().zip(r1).zip(r2) {
            let (top, low) = self.value([*x, y, z]);
            (*x, carry) = split_limb(top, low, carry);
        }
        carry
    }
}

/// `top 2^128 + low + carry` (below `2^192`, with a quotient by `10^19` below `2^128`) as its
/// lowest base-10^19 limb and the carry into the next one.
#[inline(always)]
pub(super) fn split_limb(top: u64, low: u128, carry: u128) -> (u64, u128) {
    let (low, c) = low.overflowing_add(carry);
    let top = top + u64::from(c);
    let (q1, rem) = div_base(top, (low >> 64) as u64);
    let (q0, limb) = div_base(rem, low as u64);
    (limb, (q1 as u128) << 64 | q0 as u128)
}

/// Adds `carry` (below `2^126`) into `limbs` from the start; returns what is left over past
/// the end.
pub(super) fn add_carry(limbs: &mut [u64], mut carry: u128) -> u128 {
    for x in limbs.iter_mut() {
        if carry == 0 {
            break;
        }
        let (q, r) = div_base_wide(carry + *x as u128);
        *x = r;
        carry = q as u128;
    }
    carry
}

/// `a * b` (or `a * a` when `b` is `None`) by NTT; normalized limbs.
fn product(a: &[u64], b: Option<&[u64]>) -> Vec<u64> {
    let len = a.len() + b.map_or(a.len(), <[u64]>::len);
    let n = transform_len(len.saturating_sub(1).max(1));
    product_with(a, b, sequential_primes(n))
}

/// [`product`], the primes one after the other when `sequential`, else under `join`.
fn product_with(a: &[u64], b: Option<&[u64]>, sequential: bool) -> Vec<u64> {
    let la = a.len();
    let lb = b.map_or(la, <[u64]>::len);
    if la == 0 || lb == 0 {
        return Vec::new();
    }
    let conv = la + lb - 1;
    let n = transform_len(conv);
    let [r0, r1, r2] = per_prime(sequential, |i| residues(i, a, b, n));
    let crt = Crt::new(n);
    assemble([r0, r1, r2], conv, |x, y, z| crt.run(x, y, z, 0))
}

/// Whether a product whose transform has `n` points does its primes one after the other
/// (short products, and long ones to save memory) rather than under `join`.
pub(super) fn sequential_primes(n: usize) -> bool {
    let k = n.trailing_zeros() + 2 * u32::from(n % 3 == 0);
    !(JOIN_MIN_LOG..=SEQUENTIAL_PRIMES_LOG).contains(&k)
}

/// `[res(0), res(1), res(2)]`, one after the other when `sequential`, else under `join`.
pub(super) fn per_prime<T: Send>(sequential: bool, res: impl Fn(usize) -> T + Sync) -> [T; 3] {
    if sequential {
        let r0 = res(0);
        let r1 = res(1);
        [r0, r1, res(2)]
    } else {
        let (r0, (r1, r2)) = rayon::join(|| res(0), || rayon::join(|| res(1), || res(2)));
        [r0, r1, r2]
    }
}

/// The product's limbs from its three residue arrays: `run(x, y, z)` turns the residues of a
/// stretch of coefficients into limbs in place in `x` and returns the carry out of it; long
/// products run it on chunks in parallel and settle the chunks' carries after. The residue
/// buffers go back to the pool; the result is normalized.
pub(super) fn assemble(
    [mut r0, r1, r2]: [Vec<u64>; 3],
    conv: usize,
    run: impl Fn(&mut [u64], &[u64], &[u64]) -> u128 + Sync,
) -> Vec<u64> {
    r0.truncate(conv);
    let carry = if conv >= 4 * CRT_CHUNK {
        let carries: Vec<u128> = r0
            .par_chunks_mut(CRT_CHUNK)
            .zip(r1[..conv].par_chunks(CRT_CHUNK))
            .zip(r2[..conv].par_chunks(CRT_CHUNK))
            .map(|((x, y), z)| run(x, y, z))
            .collect();
        give(r1);
        give(r2);
        let mut pending = 0u128;
        for (chunk, c) in r0.chunks_mut(CRT_CHUNK).zip(carries) {
            pending = add_carry(chunk, pending) + c;
        }
        pending
    } else {
        let carry = run(&mut r0, &r1[..conv], &r2[..conv]);
        give(r1);
        give(r2);
        carry
    };
    let (q, r) = div_base_wide(carry);
    r0.push(r);
    if q != 0 {
        r0.push(q);
    }
    limbs::normalize(&mut r0);
    if r0.capacity() > r0.len() + r0.len() / 8 {
        r0.shrink_to_fit();
    }
    r0
}

/// `a * b` by NTT; normalized limbs.
pub(crate) fn mul(a: &[u64], b: &[u64]) -> Vec<u64> {
    product(a, Some(b))
}

/// `a * a` by NTT, one forward transform per prime; normalized limbs.
pub(crate) fn square(a: &[u64]) -> Vec<u64> {
    product(a, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_constants_and_roots() {
        for (i, ctx) in contexts().iter().enumerate() {
            let f = &ctx.f;
            assert_eq!(PRIMES[i].wrapping_mul(f.pinv), 1);
            assert_eq!(
                f.r2 as u128,
                (1u128 << 64) % f.p as u128 * ((1u128 << 64) % f.p as u128) % f.p as u128
            );
            for n in [2usize, 3, 4, 6, 1 << 20, 3 << 20, 1 << 32, 3 << 32] {
                let w = ctx.root(n);
                assert_eq!(f.pow(w, n as u64), 1, "prime {i}, n {n}");
                assert_ne!(f.pow(w, n as u64 / 2), 1, "prime {i}, n {n}");
                if n % 3 == 0 {
                    assert_ne!(f.pow(w, n as u64 / 3), 1, "prime {i}, n {n}");
                }
            }
            for w in [0, 1, 2, f.p / 3, f.p - 1] {
                let want = (((w as u128) << 64) / f.p as u128) as u64;
                assert_eq!(f.shoup(w), want);
                for x in [0, 1, f.p - 1, 4 * f.p - 1, u64::MAX] {
                    let r = f.shoup_mul(x, w, want);
                    assert!(r < 2 * f.p);
                    assert_eq!(r % f.p, f.mul(x % f.p, w));
                }
            }
            let two = f.mont_form(2);
            assert_eq!(f.redc(two as u128), 2);
        }
    }

    /// `x mod m` for limbs `x`.
    fn residue(x: &[u64], m: u64) -> u64 {
        let base = (super::limbs::BASE % m) as u128;
        x.iter()
            .rev()
            .fold(0u128, |acc, &l| (acc * base + (l % m) as u128) % m as u128) as u64
    }

    #[test]
    fn sequential_and_joined_primes_agree_on_four_step_shapes() {
        // Four-step power-of-two thirds (3 * 2^17 points) and a plain 2^18; checked against
        // each other and modulo a few 61-bit primes (num-bigint is checked elsewhere).
        let mut s = 0x1234_5678_9abc_def1u64;
        let mut limb = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s % super::limbs::BASE
        };
        for (la, lb) in [(150_000usize, 140_000usize), (131_072, 1)] {
            let a: Vec<u64> = (0..la).map(|_| limb()).collect();
            let b: Vec<u64> = (0..lb).map(|_| limb()).collect();
            let joined = product_with(&a, Some(&b), false);
            assert_eq!(product_with(&a, Some(&b), true), joined);
            let sq = product_with(&a, None, true);
            assert_eq!(product_with(&a, None, false), sq);
            for m in [
                2_305_843_009_213_693_951u64,
                4_611_686_018_427_387_847,
                1_000_000_007,
            ] {
                let (ra, rb) = (residue(&a, m) as u128, residue(&b, m) as u128);
                assert_eq!(residue(&joined, m) as u128, ra * rb % m as u128);
                assert_eq!(residue(&sq, m) as u128, ra * ra % m as u128);
            }
        }
    }

    #[test]
    fn transform_lengths() {
        assert_eq!(transform_len(1), 1);
        assert_eq!(transform_len(3), 3);
        assert_eq!(transform_len(5), 6);
        assert_eq!(transform_len(7), 8);
        assert_eq!(transform_len(1000), 1024);
        assert_eq!(transform_len(769), 1024);
        assert_eq!(transform_len(768), 768);
    }

    #[test]
    fn inverse_undoes_forward_at_every_shape() {
        for n in [
            1usize,
            2,
            3,
            4,
            6,
            8,
            12,
            1 << 10,
            3 << 10,
            1 << 13,
            1 << 14,
            1 << 15,
            3 << 14,
        ] {
            for ctx in contexts() {
                let f = &ctx.f;
                let x: Vec<u64> = (0..n as u64).map(|i| (i * 0x9e37_79b9 + 7) % f.p).collect();
                let mut y = x.clone();
                forward(ctx, &mut y);
                // The inverse takes [0, 2p), as the pointwise product leaves it.
                y.iter_mut().for_each(|v| *v = f.reduce4(*v));
                inverse(ctx, &mut y);
                let ninv = f.inv(n as u64 % f.p);
                let back: Vec<u64> = y.iter().map(|&v| f.mul(v % f.p, ninv)).collect();
                assert_eq!(back, x, "n = {n}");
            }
        }
    }
}
