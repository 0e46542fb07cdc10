//! Process-wide sizes at which the Fibonacci code goes parallel, measured defaults, settable
//! for tuning on other machines (`cargo run --release --example calibrate` sweeps them).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Operand sizes, in bits, from which each kind of parallelism pays for itself.
///
/// # Examples
///
/// ```
/// use parkit::fib::Thresholds;
///
/// let t = Thresholds { join_bits: 1 << 16, ..Thresholds::default() };
/// assert_eq!(t.split_bits, Thresholds::DEFAULT.split_bits);
/// assert!(t.join_bits > Thresholds::DEFAULT.join_bits);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// The two squarings of a doubling step run under `rayon::join` from this size.
    pub join_bits: u64,
    /// One product is cut into three parallel half-size products from this size.
    pub split_bits: u64,
}

impl Thresholds {
    /// The defaults, measured on the 2-core development machine (see CHANGELOG.md).
    pub const DEFAULT: Thresholds = Thresholds {
        join_bits: 1 << 13,
        split_bits: 1 << 18,
    };
}

impl Default for Thresholds {
    fn default() -> Self {
        Self::DEFAULT
    }
}

static JOIN: AtomicU64 = AtomicU64::new(Thresholds::DEFAULT.join_bits);
static SPLIT: AtomicU64 = AtomicU64::new(Thresholds::DEFAULT.split_bits);

/// The thresholds in force.
///
/// # Examples
///
/// ```
/// let t = parkit::fib::thresholds();
/// assert!(t.join_bits > 0 && t.split_bits > 0);
/// ```
#[must_use]
pub fn thresholds() -> Thresholds {
    Thresholds {
        join_bits: JOIN.load(Relaxed),
        split_bits: SPLIT.load(Relaxed),
    }
}

/// Sets the thresholds for the whole process. Results never depend on them, only speed.
///
/// The setting is global: another thread may change it at any time, which is harmless for the
/// values computed, so tune once at start-up.
///
/// # Examples
///
/// ```
/// use parkit::fib::{fib, set_thresholds, thresholds, Thresholds};
///
/// let before = thresholds();
/// let want = fib(300_000);
/// // Everything parallel from the smallest sizes: slower, same value.
/// set_thresholds(Thresholds { join_bits: 64, split_bits: 1 << 12 });
/// assert_eq!(fib(300_000), want);
/// set_thresholds(before);
/// ```
pub fn set_thresholds(t: Thresholds) {
    JOIN.store(t.join_bits, Relaxed);
    SPLIT.store(t.split_bits, Relaxed);
}

pub(crate) fn join_bits() -> u64 {
    JOIN.load(Relaxed)
}

pub(crate) fn split_bits() -> u64 {
    SPLIT.load(Relaxed)
}
