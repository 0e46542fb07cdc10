//! Synthetic work of a known cost, shared by `benches/granularity.rs` and `examples/plots.rs`
//! (each includes this file with `#[path]`).

use std::hint::black_box;
use std::time::Instant;

/// About one nanosecond's worth of dependent arithmetic per step, opaque to the optimiser.
pub fn spin(steps: u64, seed: u64) -> u64 {
    let mut x = seed;
    for i in 0..steps {
        x = black_box(x.wrapping_mul(0x5851_f42d_4c95_7f2d).wrapping_add(i));
    }
    x
}

/// Spin steps per nanosecond on this machine: the best of a few 2 ms runs.
pub fn steps_per_ns() -> f64 {
    let steps = 1 << 20;
    let best = (0..5)
        .map(|_| {
            let t = Instant::now();
            black_box(spin(steps, 1));
            t.elapsed()
        })
        .min()
        .expect("five runs");
    steps as f64 / best.as_nanos().max(1) as f64
}
