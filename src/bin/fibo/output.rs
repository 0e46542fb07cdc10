//! What each output line holds and how it is written: F(n), its digit count, its last digits or
//! a residue, as plain values, TSV or JSON lines.

use std::io::Write as _;

use num_bigint::BigUint;
use parkit::decimal::DecNat;
use parkit::fib::{self, Fibonacci};

/// The line format (`--format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The result alone, one per line.
    Value,
    /// n, a tab, then the result.
    Tsv,
    /// One JSON object per line: {"n":10,"digits":2,"value":"55"}.
    Json,
}

/// What is printed for each n.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum What {
    /// F(n) in full.
    Value,
    /// The number of decimal digits of F(n) (`--digits`).
    Digits,
    /// The last K digits of F(n), leading zeros kept (`--last K`).
    Last(u32),
    /// F(n) mod M (`--mod M`).
    Mod(u64),
}

impl What {
    /// Whether this needs the full big number (and so its memory).
    pub fn needs_value(self) -> bool {
        matches!(self, What::Value)
    }

    /// Rough bytes of output per value at n, for sizing work and memory windows.
    pub fn line_bytes(self, n: u64) -> u64 {
        24 + match self {
            What::Value => fib::digit_count(n),
            What::Digits => 20,
            What::Last(k) => u64::from(k).min(fib::digit_count(n)),
            What::Mod(_) => 20,
        }
    }
}

/// Which number representation computes full values (`--engine`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// Decimal from n = 187 on (where F(n) outgrows 128 bits), binary below.
    Auto,
    /// num-bigint fast doubling, then conversion to decimal.
    Binary,
    /// Fast doubling directly in base 10^19 (parkit::decimal): printing is a linear copy.
    Decimal,
}

/// From this n on, `--engine auto` computes in decimal. Below it F(n) fits in a `u128` and is a
/// table look-up. Measured here (2 cores, medians of 3): `fibo 200..2200` 0.007 s decimal vs
/// 0.019 s binary; `100000..102000` 0.10 vs 1.33 s; `1e8` 0.97 vs 30.0 s.
pub const AUTO_DECIMAL_MIN_N: u64 = 187;

/// Blocks with a value from this n on go through the engine's decimal planner (parallel runs,
/// cached pairs, jumps); smaller ones step on the block's own thread. Measured here (2 cores,
/// medians of 9, against stepping only): `200..20200` 1.36x slower through the planner,
/// `20000..30000` 1.03x, `100000..102000` 0.90x.
pub const PLANNER_MIN_N: u64 = 30_000;

/// Renders lines in one format for one kind of result.
#[derive(Clone, Copy, Debug)]
pub struct Printer {
    /// Line format.
    pub format: Format,
    /// What each line holds.
    pub what: What,
    /// Engine for full values.
    pub engine: Engine,
}

impl Printer {
    fn line(&self, out: &mut Vec<u8>, n: u64, digits: u64, text: &str) {
        // Writing into a Vec cannot fail.
        let _ = match (self.format, self.what) {
            (Format::Value, _) => writeln!(out, "{text}"),
            (Format::Tsv, _) => writeln!(out, "{n}\t{text}"),
            (Format::Json, What::Value) => {
                writeln!(out, r#"{{"n":{n},"digits":{digits},"value":"{text}"}}"#)
            }
            (Format::Json, What::Digits) => writeln!(out, r#"{{"n":{n},"digits":{digits}}}"#),
            (Format::Json, What::Last(_)) => {
                writeln!(out, r#"{{"n":{n},"digits":{digits},"last":"{text}"}}"#)
            }
            (Format::Json, What::Mod(m)) => {
                writeln!(out, r#"{{"n":{n},"mod":"{m}","value":"{text}"}}"#)
            }
        };
    }

    /// Appends the line for `n` whose result is `text`, as [`Printer::render`] writes it
    /// (`fibo submit` formats the workers' results with this).
    #[cfg_attr(not(feature = "distributed"), allow(dead_code))]
    pub fn line_for(&self, out: &mut Vec<u8>, n: u64, text: &str) {
        let digits = match self.what {
            What::Value => text.len() as u64,
            What::Digits | What::Last(_) => fib::digit_count(n),
            What::Mod(_) => 0,
        };
        self.line(out, n, digits, text);
    }

    /// The output lines for `ns` (in this order), computed on the engine's pool, in one buffer.
    pub fn render(&self, engine: &Fibonacci, ns: &[u64]) -> Vec<u8> {
        let mut parts = self.render_parts(engine, ns, None).into_iter();
        // One big value is moved, not copied.
        let mut out = parts.next().unwrap_or_default();
        let rest: Vec<Vec<u8>> = parts.collect();
        out.reserve(rest.iter().map(Vec::len).sum());
        for part in rest {
            out.extend_from_slice(&part);
        }
        out
    }

    /// The output lines for `ns` as [`Printer::render`] writes them, in pieces to be written
    /// one after the other: one line per piece where full values were formatted in parallel
    /// (so that the writer need not copy them into one buffer on one thread first), one piece
    /// otherwise. Line buffers come from `buffers` when given, where the writer hands them
    /// back.
    pub fn render_parts(
        &self,
        engine: &Fibonacci,
        ns: &[u64],
        buffers: Option<&LineBuffers>,
    ) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        match self.what {
            What::Value if self.decimal_for(ns) => {
                if ns.iter().all(|&n| n < PLANNER_MIN_N) {
                    self.render_decimal_steps(&mut out, ns);
                } else {
                    return self.render_decimal(engine, ns, buffers);
                }
            }
            What::Value => {
                let lines = engine.batch_map(ns, |n, v: &BigUint| {
                    let text = DecNat::from(v).to_string();
                    let mut line = Vec::with_capacity(text.len() + 48);
                    self.line(&mut line, n, text.len() as u64, &text);
                    line
                });
                out.reserve(lines.iter().map(Vec::len).sum());
                for l in lines {
                    out.extend_from_slice(&l);
                }
            }
            What::Digits => {
                for &n in ns {
                    let d = fib::digit_count(n);
                    self.line(&mut out, n, d, &d.to_string());
                }
            }
            What::Mod(m) => {
                fib::for_each_mod(ns, m, |n, r| self.line(&mut out, n, 0, &r.to_string()));
            }
            What::Last(k) => {
                // Values with at most K digits are whole, computed by the decimal planner
                // (runs of neighbours by additions, in parallel), never in binary then
                // converted; the others are residues mod 10^K.
                engine.for_each_last_digits(ns, k, |n, text| {
                    self.line(&mut out, n, fib::digit_count(n), text);
                });
            }
        }
        vec![out]
    }

    fn decimal_for(&self, ns: &[u64]) -> bool {
        match self.engine {
            Engine::Binary => false,
            Engine::Decimal => true,
            Engine::Auto => ns.iter().any(|&n| n >= AUTO_DECIMAL_MIN_N),
        }
    }

    /// Full values computed in base 10^19 by the engine's decimal planner (runs of close values
    /// by additions, cached pairs reused across blocks, runs in parallel), the digits written
    /// straight into each line.
    fn render_decimal(
        &self,
        engine: &Fibonacci,
        ns: &[u64],
        buffers: Option<&LineBuffers>,
    ) -> Vec<Vec<u8>> {
        let format = self.format;
        engine.batch_map(ns, |n, v: &DecNat| {
            let digits = v.digit_count();
            let size = digits as usize + 48;
            let mut line = buffers.map_or_else(|| Vec::with_capacity(size), |b| b.take(size));
            // Writing into a Vec cannot fail.
            let _ = match format {
                Format::Value => Ok(()),
                Format::Tsv => write!(line, "{n}\t"),
                Format::Json => write!(line, r#"{{"n":{n},"digits":{digits},"value":""#),
            };
            let _ = v.write_to(&mut line);
            line.extend_from_slice(if format == Format::Json {
                b"\"}\n"
            } else {
                b"\n"
            });
            line
        })
    }

    /// Small full values in base 10^19, on this thread ([`fib::for_each_in`]: runs of close
    /// values by additions), the digits copied straight into the output. For values this
    /// small the planner's per-value line buffer costs more than it saves.
    fn render_decimal_steps(&self, out: &mut Vec<u8>, ns: &[u64]) {
        fib::for_each_in(ns, |n, v: &DecNat| {
            // Writing into a Vec cannot fail.
            let _ = match self.format {
                Format::Value => Ok(()),
                Format::Tsv => write!(out, "{n}\t"),
                Format::Json => write!(out, r#"{{"n":{n},"digits":{},"value":""#, v.digit_count()),
            };
            let _ = v.write_to(out);
            out.extend_from_slice(if self.format == Format::Json {
                b"\"}\n"
            } else {
                b"\n"
            });
        });
    }
}

/// Line buffers handed back by the writer once written, for the next lines.
///
/// Lines of big values are allocated on the pool's threads and freed on the writer's; with
/// glibc's per-thread arenas each such buffer was trimmed and faulted in again (measured:
/// `fibo 900000..920000 -j1` 610k page faults where one buffer per block had 180k). Keeping
/// up to a block's worth of them for reuse avoids that.
///
/// # Locking
///
/// Taking and giving lock a mutex briefly, once per line.
#[derive(Debug)]
pub struct LineBuffers {
    /// The kept buffers, and the sum of their capacities.
    free: std::sync::Mutex<(Vec<Vec<u8>>, usize)>,
    max_bytes: usize,
}

impl LineBuffers {
    /// A pool that keeps at most `max_bytes` of buffers.
    pub fn new(max_bytes: usize) -> Self {
        LineBuffers {
            free: std::sync::Mutex::new((Vec::new(), 0)),
            max_bytes,
        }
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, (Vec<Vec<u8>>, usize)> {
        self.free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An empty buffer with room for `size` bytes: a kept one when there is one. New buffers
    /// are rounded up to a grid of sixteen sizes per power of two (at least 4 KiB apart), so
    /// that the slightly longer lines of the next values fit and neighbouring lines get
    /// buffers of one size, which the allocator reuses as they are (a plain sixteenth more
    /// measured 136k page faults on `900000..920000 -j1` against 78k).
    fn take(&self, size: usize) -> Vec<u8> {
        let kept = {
            let mut kept = self.kept();
            let buffer = kept.0.pop();
            kept.1 -= buffer.as_ref().map_or(0, Vec::capacity);
            buffer
        };
        match kept {
            Some(mut buffer) => {
                buffer.reserve(size);
                buffer
            }
            None => {
                let step = (size.next_power_of_two() / 16).max(4096);
                Vec::with_capacity(size.next_multiple_of(step))
            }
        }
    }

    /// Keeps `buffer` for reuse while the pool holds less than its maximum.
    pub fn give(&self, mut buffer: Vec<u8>) {
        let mut kept = self.kept();
        if kept.1 + buffer.capacity() <= self.max_bytes {
            buffer.clear();
            kept.1 += buffer.capacity();
            kept.0.push(buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(p: Printer, ns: &[u64]) -> String {
        let e = Fibonacci::builder().threads(2).build().unwrap();
        String::from_utf8(p.render(&e, ns)).unwrap()
    }

    #[test]
    fn every_format_and_kind() {
        let p = |format, what| Printer {
            format,
            what,
            engine: Engine::Binary,
        };
        assert_eq!(text(p(Format::Value, What::Value), &[10, 0]), "55\n0\n");
        assert_eq!(text(p(Format::Tsv, What::Value), &[10]), "10\t55\n");
        assert_eq!(
            text(p(Format::Json, What::Value), &[10]),
            "{\"n\":10,\"digits\":2,\"value\":\"55\"}\n"
        );
        assert_eq!(
            text(p(Format::Json, What::Digits), &[10]),
            "{\"n\":10,\"digits\":2}\n"
        );
        assert_eq!(text(p(Format::Value, What::Digits), &[100, 1]), "21\n1\n");
        assert_eq!(
            text(p(Format::Value, What::Last(3)), &[30, 10]),
            "040\n55\n"
        );
        assert_eq!(
            text(p(Format::Json, What::Last(3)), &[30]),
            "{\"n\":30,\"digits\":6,\"last\":\"040\"}\n"
        );
        assert_eq!(text(p(Format::Tsv, What::Mod(7)), &[10]), "10\t6\n");
        assert_eq!(
            text(p(Format::Json, What::Mod(7)), &[10]),
            "{\"n\":10,\"mod\":\"7\",\"value\":\"6\"}\n"
        );
    }

    #[test]
    fn line_for_writes_what_render_writes() {
        let e = Fibonacci::builder().threads(2).build().unwrap();
        let ns = [0u64, 1, 10, 30, 187, 1000, 999];
        for format in [Format::Value, Format::Tsv, Format::Json] {
            for what in [What::Value, What::Digits, What::Last(4), What::Mod(97)] {
                let p = Printer {
                    format,
                    what,
                    engine: Engine::Auto,
                };
                let plain = Printer {
                    format: Format::Value,
                    ..p
                };
                // The bare results, as a worker returns them, then formatted here.
                let bare = String::from_utf8(plain.render(&e, &ns)).unwrap();
                let mut out = Vec::new();
                for (&n, text) in ns.iter().zip(bare.lines()) {
                    p.line_for(&mut out, n, text);
                }
                assert_eq!(out, p.render(&e, &ns), "{format:?} {what:?}");
            }
        }
    }

    #[test]
    fn runs_of_residues_and_last_digits_match_the_full_values() {
        let ns: Vec<u64> = (900..1000).chain([5, 2000, 1999, 1999]).collect();
        for k in [4u32, 25] {
            let got = text(
                Printer {
                    engine: Engine::Auto,
                    format: Format::Value,
                    what: What::Last(k),
                },
                &ns,
            );
            for (line, &n) in got.lines().zip(&ns) {
                let s = fib::fib(n).to_string();
                let want = &s[s.len().saturating_sub(k as usize)..];
                assert_eq!(line, want, "n = {n}, k = {k}");
            }
        }
        let m = 1_000_000_007u64;
        let got = text(
            Printer {
                engine: Engine::Auto,
                format: Format::Value,
                what: What::Mod(m),
            },
            &ns,
        );
        for (line, &n) in got.lines().zip(&ns) {
            assert_eq!(line, (fib::fib(n) % m).to_string());
        }
    }

    #[test]
    fn both_engines_print_the_same_lines() {
        let ns: Vec<u64> = [
            0u64, 1, 186, 187, 5000, 1999, 2000, 2001, 2002, 2070, 2000, 90_000,
        ]
        .into_iter()
        .chain(100_000..100_030)
        .collect();
        for format in [Format::Value, Format::Tsv, Format::Json] {
            let at = |engine| {
                text(
                    Printer {
                        format,
                        what: What::Value,
                        engine,
                    },
                    &ns,
                )
            };
            let binary = at(Engine::Binary);
            assert_eq!(binary.lines().count(), ns.len());
            assert_eq!(at(Engine::Decimal), binary, "{format:?}");
            assert_eq!(at(Engine::Auto), binary, "{format:?}");
        }
    }
}
