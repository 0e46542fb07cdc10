//! The planner's cost model, in estimated nanoseconds on one core.
//!
//! Constants were fitted to `cargo run --release --example calibrate` on the 2-core development
//! machine; only ratios matter to the planner (steps against a fresh start against a jump), so a
//! faster or slower machine plans the same way.

use super::STEP_GAP;
use super::digits::bit_estimate;

/// Nanoseconds per 64-bit word of one big addition.
const ADD_NS_PER_WORD: f64 = 0.55;
/// Nanoseconds of a balanced product of `w`-word operands: `MUL_NS * w^MUL_EXP`.
const MUL_NS: f64 = 8.0;
const MUL_EXP: f64 = 1.47;
/// A fresh (F(n), F(n+1)) by doubling costs about this many full-size products (its last
/// squarings are of half-size operands: 2 M(w/2) (1 + 2^-1.47 + ...) ~ 1.15 M(w), measured).
const PAIR_PRODUCTS: f64 = 1.15;
/// Fixed cost of any task (scheduling, allocation), in nanoseconds.
const TASK_NS: f64 = 2_000.0;

/// Runs planned per thread for a large batch, so work stealing can even out the load.
pub(crate) const RUNS_PER_THREAD: f64 = 4.0;
/// A run is cut only once its own work is this many times the fresh start of the next run.
pub(crate) const START_SHARE: f64 = 1.0;
/// The smallest run worth its own task, in nanoseconds.
pub(crate) const MIN_RUN: f64 = 50_000.0;

fn words(n: u64) -> f64 {
    (bit_estimate(n) as f64 / 64.0).max(1.0)
}

fn mul_words(a: f64, b: f64) -> f64 {
    let (s, l) = if a <= b { (a, b) } else { (b, a) };
    // An unbalanced product is done as l/s balanced products of size s.
    (l / s) * MUL_NS * s.powf(MUL_EXP)
}

/// One addition at size n: the cost of each value of a run.
pub(crate) fn value(n: u64) -> f64 {
    ADD_NS_PER_WORD * words(n)
}

/// `d` additions ending at n.
pub(crate) fn steps(n: u64, d: u64) -> f64 {
    d as f64 * value(n)
}

/// A fresh pair (F(n), F(n+1)) by fast doubling.
pub(crate) fn pair(n: u64) -> f64 {
    TASK_NS + PAIR_PRODUCTS * mul_words(words(n), words(n))
}

/// From the pair at m to the pair at m + d by the addition formula: a pair at d and four
/// products of d-size by m-size.
pub(crate) fn jump(m: u64, d: u64) -> f64 {
    pair(d) + 4.0 * mul_words(words(d), words(m)) + 2.0 * value(m + d)
}

/// The cost of each value of a sequence computed in order: a value close after the previous
/// one is reached by additions, any other needs a fresh pair.
pub(crate) fn sequence(ns: &[u64]) -> Vec<f64> {
    let mut prev: Option<u64> = None;
    ns.iter()
        .map(|&n| {
            let c = match prev {
                Some(p) if p <= n && n - p <= STEP_GAP => steps(n, n - p).max(value(n)),
                _ => pair(n),
            };
            prev = Some(n);
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_orders_the_routes_sensibly() {
        // One step is far cheaper than a fresh start; a jump over a small gap beats a fresh
        // start; a jump over a gap as large as m does not.
        let n = 1_000_000;
        assert!(steps(n, 1) * 100.0 < pair(n));
        assert!(jump(n, 5_000) < pair(n + 5_000));
        assert!(jump(n, n) > pair(2 * n));
    }
}
