//! Memory sizes: the machine's available memory, `--max-memory` values, what a run needs
//! ([`estimate`], [`plan`]), and human-readable byte counts for messages.

use parkit::fib;

use super::input::Inputs;
use super::output::{AUTO_DECIMAL_MIN_N, Engine, What};

/// Memory available to new work, from `/proc/meminfo` (`MemAvailable`); `None` elsewhere.
pub fn available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// The default limit: 90% of the available memory, or 4 GiB where it cannot be read.
pub fn default_limit() -> u64 {
    available().map_or(4 << 30, |b| b / 10 * 9)
}

/// Parses `--max-memory`: a number of bytes with an optional unit, `512M`, `4G`, `1.5T`, `800MB`,
/// `2GiB` (units are powers of 1024; `B` and `iB` suffixes are allowed).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(format!("unknown unit '{unit}' (use K, M, G or T)")),
    };
    let value: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a size like 512M or 4G"))?;
    if !value.is_finite() || value <= 0.0 {
        return Err(format!("'{text}' must be a positive size"));
    }
    let bytes = value * (1u64 << shift) as f64;
    if bytes < 1.0 {
        return Err(format!("'{text}' is less than one byte"));
    }
    if bytes >= u64::MAX as f64 {
        return Err(format!("'{text}' is too large"));
    }
    // `0.5K` is 512 B; a fraction of a byte is rounded to the nearest byte.
    Ok(bytes.round() as u64)
}

/// Output a block of lines aims at: small values are computed and written in blocks of about
/// this many bytes (one value alone when its line is bigger).
pub const BLOCK_BYTES: u64 = 4 << 20;

/// Output the ordering window holds at most (finished and unfinished blocks), unless one block
/// alone is bigger: the window is bounded in bytes, not in blocks, so `-j` does not multiply it.
pub const WINDOW_BYTES: u64 = 64 << 20;

/// What the process costs before any input: code, allocator arenas, the pipeline's queues.
const BASE_BYTES: u64 = 16 << 20;

/// What each thread costs (the touched part of its stack, its allocator arena's start).
const THREAD_BYTES: u64 = 256 << 10;

/// Peak extra bytes, beyond its output line, of computing one value of F(n) for `what`: the
/// engine's working copies (the pair, the products in flight, the NTT's buffers, the binary
/// engine's decimal conversion). Fitted to peak RSS measured here (`/usr/bin/time -f %M`) with a
/// margin.
pub fn value_work(n: u64, what: What, engine: Engine) -> u64 {
    let digits = fib::digit_count(n);
    if !full_value(n, what) {
        return match what {
            // Doubling modulo 10^K in num-bigint: a few numbers of K digits.
            What::Last(k) if k > 19 => 8 * (u64::from(k) / 2 + 8),
            _ => 64,
        };
    }
    let binary = engine == Engine::Binary || (engine == Engine::Auto && n < AUTO_DECIMAL_MIN_N);
    if binary {
        // The pair and the products, then num-bigint's conversion: its text and the line.
        fib::working_bytes(n, false).saturating_add(digits.saturating_mul(BINARY_TEXT_COPIES))
    } else {
        // Base 10^19: 8 bytes per 19 digits, DECIMAL_COPIES of them at the peak.
        (digits / 19 + 1).saturating_mul(8 * DECIMAL_COPIES)
    }
}

/// Whether the line for n holds all of F(n), computed by the engine.
fn full_value(n: u64, what: What) -> bool {
    match what {
        What::Value => true,
        What::Last(k) => u64::from(k) >= fib::digit_count(n),
        What::Digits | What::Mod(_) => false,
    }
}

/// Copies of the value (in base-10^19 limbs) the decimal engine holds at its peak.
const DECIMAL_COPIES: u64 = 8;

/// Copies of the decimal text the binary engine holds besides the line.
const BINARY_TEXT_COPIES: u64 = 5;

/// How a run is laid out so that its memory stays under the limit: see [`plan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Threads of the engine's pool (fewer than asked when the limit needs it).
    pub threads: usize,
    /// Blocks computed at once (the pipeline's compute workers).
    pub workers: usize,
    /// Blocks in flight at most, computing, queued or waiting to be written.
    pub window: usize,
    /// Output bytes a block aims at.
    pub block_bytes: u64,
    /// The engine's cache budget.
    pub cache_bytes: u64,
    /// Peak bytes of the whole run, estimated.
    pub estimate: u64,
}

#[cfg_attr(not(test), allow(dead_code))] // for `fibo serve`
/// The peak memory of a run over `inputs`, all of it: the process and its threads, the inputs,
/// the cache budget, the values being computed (`workers` blocks at once, each with as many
/// values computing as the pool has threads), and the output window.
///
/// The server applies its limit to the sum of this over the requests in flight.
pub fn estimate(
    inputs: &Inputs,
    what: What,
    engine: Engine,
    threads: usize,
    cache_bytes: u64,
) -> u64 {
    let (workers, window) = layout(inputs, what, threads);
    estimate_with(inputs, what, engine, threads, workers, window, cache_bytes)
}

/// The largest line and the bytes of the largest block of `inputs`.
fn sizes(inputs: &Inputs, what: What) -> (u64, u64) {
    let max_n = inputs.max().map_or(0, |(n, _)| n);
    let line = what.line_bytes(max_n);
    (
        line,
        line.max(BLOCK_BYTES.min(line.saturating_mul(inputs.count()))),
    )
}

/// Workers and window before the memory limit: the window bounded by [`WINDOW_BYTES`], at
/// least one block more than the workers so the writer works while they compute.
fn layout(inputs: &Inputs, what: What, threads: usize) -> (usize, usize) {
    let (_, block) = sizes(inputs, what);
    let fit = usize::try_from(WINDOW_BYTES / block.max(1)).unwrap_or(usize::MAX);
    let workers = fit.clamp(1, threads.max(1));
    let window = fit.clamp(workers + 1, 4 * workers);
    (workers, window)
}

fn estimate_with(
    inputs: &Inputs,
    what: What,
    engine: Engine,
    threads: usize,
    workers: usize,
    window: usize,
    cache_bytes: u64,
) -> u64 {
    let max_n = inputs.max().map_or(0, |(n, _)| n);
    let (line, block) = sizes(inputs, what);
    // Values of one block computed at once: up to one per pool thread.
    let per_block = (block / line.max(1)).clamp(1, threads.max(1) as u64);
    let computing = block.saturating_add(per_block.saturating_mul(value_work(max_n, what, engine)));
    let waiting = (window.saturating_sub(workers)) as u64;
    // Each pool thread that multiplies keeps freed buffers in its allocator arena: measured
    // up to a fifth of a value's working copies per thread (`-j 8` against `-j 2`, over
    // repeated runs: the peak varies by a quarter from run to run).
    let per_thread = THREAD_BYTES.saturating_add(value_work(max_n, what, engine) / 5);
    BASE_BYTES
        .saturating_add(per_thread.saturating_mul((threads + workers) as u64))
        .saturating_add(inputs.heap_bytes())
        .saturating_add(cache_bytes)
        .saturating_add(computing.saturating_mul(workers as u64))
        .saturating_add(block.saturating_mul(waiting))
        // The writer's line buffers kept for reuse: at most one block (output::LineBuffers).
        .saturating_add(if what.needs_value() { block } else { 0 })
}

/// Lays a run out under `limit`: fewer blocks at once (down to one value at a time) when the
/// full layout would not fit, and a cache budget of `cache_bytes`, or when not given, what is
/// left up to the engine's default. Errors with the estimate when even one value at a time
/// does not fit.
pub fn plan(
    inputs: &Inputs,
    what: What,
    engine: Engine,
    threads: usize,
    cache_bytes: Option<u64>,
    limit: u64,
) -> Result<Plan, String> {
    let (mut workers, mut window) = layout(inputs, what, threads);
    // Without --cache-mb, room for two pairs at the largest n is kept first: consecutive big
    // values come in blocks of their own, and the next one steps from the cached pair instead
    // of starting afresh (9 s instead of 1.3 s for `50000000..50000008`).
    let fixed = cache_bytes.unwrap_or_else(|| {
        let max_n = inputs.max().map_or(0, |(n, _)| n);
        if full_value(max_n, what) && inputs.count() > 1 {
            4 * (fib::digit_count(max_n) / 19 + 1) * 8
        } else {
            0
        }
    });
    let mut threads = threads.max(1);
    let at = |t, w, win| estimate_with(inputs, what, engine, t, w, win, fixed);
    // Shrink in the order that costs least time: the blocks waiting to be written, the blocks
    // computing at once, the pool's threads, and last the overlap of writing and computing.
    while at(threads, workers, window) > limit && window > 1 {
        if window > workers + 1 {
            window -= 1;
        } else if workers > 1 {
            workers -= 1;
            window = workers + 1;
        } else if threads > 1 {
            threads -= 1;
        } else {
            window = 1;
        }
    }
    let need = at(threads, workers, window);
    if need > limit {
        let (n, origin) = inputs
            .max()
            .map_or((0, String::new()), |(n, o)| (n, o.to_string()));
        return Err(format!(
            "F({n}) at {origin} needs about {} to compute and print, one value at a time, \
             with the cache of {} and the rest of the run: over the memory limit of {} (set \
             with --max-memory; --cache-mb 0 drops the cache); --digits, --last K and --mod M \
             need far less",
            human(need),
            human(fixed),
            human(limit),
        ));
    }
    // One input leaves nothing for a cache to serve: none, so the engine computes that value
    // alone (the last doubling step one product) instead of its pair.
    let cache_bytes = cache_bytes.unwrap_or_else(|| {
        if inputs.count() <= 1 {
            0
        } else {
            (limit - need + fixed).min(fib::DEFAULT_CACHE_BYTES as u64)
        }
    });
    Ok(Plan {
        threads,
        workers,
        window,
        block_bytes: BLOCK_BYTES,
        cache_bytes,
        estimate: need.saturating_sub(fixed).saturating_add(cache_bytes),
    })
}

/// `87 TB`, `1.2 GB`, `512 B`: decimal units, three significant digits.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < UNITS.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else if v >= 100.0 {
        format!("{v:.0} {}", UNITS[i])
    } else if v >= 10.0 {
        format!("{v:.1} {}", UNITS[i])
    } else {
        format!("{v:.2} {}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1.5k"), Ok(1536));
        assert!(parse_size("0").is_err());
        // Regression: fractions of a byte were read as 0 B.
        assert!(
            parse_size("0.5")
                .unwrap_err()
                .contains("less than one byte")
        );
        assert!(parse_size("0.0001K").is_err());
        assert_eq!(parse_size("0.5K"), Ok(512));
        assert_eq!(parse_size("1.6"), Ok(2));
        assert!(parse_size("-1G").is_err());
        assert!(parse_size("4Q").unwrap_err().contains("unit"));
        assert!(parse_size("lots").is_err());
    }

    fn inputs(text: &str) -> Inputs {
        super::super::input::parse_text(text.as_bytes(), "t").unwrap()
    }

    #[test]
    fn the_estimate_counts_what_lives_at_once() {
        let one = inputs("50000000");
        let ten = inputs("50000000..50000010");
        let (v, e) = (What::Value, Engine::Auto);
        // More threads, more cache, more values: more memory; --digits needs next to nothing.
        assert!(estimate(&ten, v, e, 2, 0) > estimate(&one, v, e, 2, 0));
        assert!(estimate(&ten, v, e, 8, 0) > estimate(&ten, v, e, 2, 0));
        assert_eq!(
            estimate(&one, v, e, 2, 1 << 20),
            estimate(&one, v, e, 2, 0) + (1 << 20)
        );
        assert!(estimate(&ten, What::Digits, e, 2, 0) < 32 << 20);
        // The binary engine converts to text: it needs more than the decimal one.
        assert!(estimate(&one, v, Engine::Binary, 2, 0) > estimate(&one, v, e, 2, 0));
        // One value alone (10.4 MB of digits) needs more than its text.
        assert!(estimate(&one, v, e, 1, 0) > 3 * 10_449_382);
    }

    #[test]
    fn plans_fit_under_the_limit_or_say_why() {
        let ten = inputs("50000000..50000010");
        let (v, e) = (What::Value, Engine::Auto);
        let roomy = plan(&ten, v, e, 2, None, 8 << 30).unwrap();
        assert_eq!((roomy.workers, roomy.cache_bytes), (2, 256 << 20));
        let tight = plan(&ten, v, e, 8, None, 120 << 20).unwrap();
        assert!(tight.estimate <= 120 << 20, "{tight:?}");
        assert!(
            tight.workers < roomy.workers || tight.window < roomy.window,
            "{tight:?}"
        );
        // Room for two pairs is kept for the cache.
        assert!(tight.cache_bytes >= 4 * (10_449_382 / 19) * 8, "{tight:?}");
        let err = plan(&ten, v, e, 2, Some(0), 40 << 20).unwrap_err();
        assert!(err.contains("F(50000009) at t:1"), "{err}");
        assert!(err.contains("over the memory limit of 41.9 MB"), "{err}");
        // Only full values reserve cache room: the last digits of F(10^18) need little.
        let huge = inputs("1000000000000000000");
        assert!(plan(&huge, What::Last(65_536), e, 2, None, 64 << 20).is_ok());
        assert!(plan(&huge, What::Digits, e, 2, None, 64 << 20).is_ok());
        // The window is bounded in bytes whatever the thread count.
        let many = inputs("100000..2000000");
        let p = plan(&many, v, e, 256, Some(0), 64 << 30).unwrap();
        assert!(p.window as u64 * BLOCK_BYTES <= 2 * WINDOW_BYTES, "{p:?}");
    }

    #[test]
    fn human_sizes_read_well() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(86_789_000_000_000), "86.8 TB");
        assert_eq!(human(1_234_000), "1.23 MB");
        assert_eq!(human(999_999_999_999_999_999), "1.00 EB");
    }

    #[test]
    fn available_memory_is_plausible_here() {
        if let Some(b) = available() {
            assert!(b > 1 << 20);
        }
        assert!(default_limit() > 0);
    }
}
