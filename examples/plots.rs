//! The pictures in BENCHMARKS.md (issue 15): reads the CSV files that `scripts/plots.sh`
//! measured and draws them as SVG with `plotters`, and measures the granularity sweep.
//!
//! `scripts/plots.sh` runs it; by hand:
//!
//! - `cargo run --release --example plots -- render [DATA_DIR [OUT_DIR]]` reads
//!   `fibo_vs_gmp.csv`, `scaling.csv` and `granularity.csv` from DATA_DIR (default
//!   `docs/plots/data`) and writes `fibo_vs_gmp.svg`, `scaling.svg` and `granularity.svg` to
//!   OUT_DIR (default `docs/plots`).
//! - `cargo run --release --example plots -- granularity` prints `granularity.csv`: a map over
//!   items whose cost is a calibrated spin (50 ns, 1 µs, 50 µs, 1 ms; about 40 ms of work per
//!   case, as in `benches/granularity.rs`) under `Granularity::ChunkSize(c)` for c = 1, 2, 4,
//!   ..., 4096, medians of 5 runs.
//!
//! The CSV files have a header line; lines that are empty or start with `#` are skipped. A
//! missing or malformed file stops with one line naming the file and the line, and exit status 1.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use parkit::decompose::GranularityExt;
use parkit::granularity::Granularity;
use plotters::prelude::*;
use rayon::prelude::*;

/// One timed run of `tool` on F(n): `fibo_vs_gmp.csv`, `tool,n,seconds`.
#[derive(Debug, Clone, PartialEq)]
struct Timing {
    tool: String,
    n: f64,
    seconds: f64,
}

/// One workload at one thread count: `scaling.csv`, `workload,threads,seconds`.
#[derive(Debug, Clone, PartialEq)]
struct Scaling {
    workload: String,
    threads: f64,
    seconds: f64,
}

/// One cost per item at one chunk size: `granularity.csv`, `cost_ns,chunk_size,seconds`.
#[derive(Debug, Clone, PartialEq)]
struct Grain {
    cost_ns: f64,
    chunk_size: f64,
    seconds: f64,
}

const TIMING_HEADER: &[&str] = &["tool", "n", "seconds"];
const SCALING_HEADER: &[&str] = &["workload", "threads", "seconds"];
const GRAIN_HEADER: &[&str] = &["cost_ns", "chunk_size", "seconds"];

/// A field that must be a finite number above zero.
fn positive(field: &str, name: &str) -> Result<f64, String> {
    match field.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(_) => Err(format!("{name} must be a number above 0, found {field:?}")),
        Err(_) => Err(format!("{name} is not a number: {field:?}")),
    }
}

/// A field that must be a whole number of at least 1.
fn count(field: &str, name: &str) -> Result<f64, String> {
    match field.trim().parse::<u64>() {
        Ok(v) if v >= 1 => Ok(v as f64),
        _ => Err(format!(
            "{name} must be a whole number of at least 1, found {field:?}"
        )),
    }
}

fn text(field: &str, name: &str) -> Result<String, String> {
    let t = field.trim();
    if t.is_empty() {
        Err(format!("{name} is empty"))
    } else {
        Ok(t.to_string())
    }
}

/// Parses `content` (the text of `path`): the first line that is neither empty nor a `#`
/// comment must be `header`, each later one `header.len()` comma-separated fields that `row`
/// turns into a record. Errors read `PATH:LINE: what`; no rows at all is an error too.
fn parse<T>(
    path: &str,
    content: &str,
    header: &[&str],
    row: impl Fn(&[&str]) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let mut lines = content
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    let want = header.join(",");
    match lines.next() {
        None => return Err(format!("{path}: no header line (expected {want:?})")),
        Some((no, l)) => {
            let got: Vec<&str> = l.split(',').map(str::trim).collect();
            if got != header {
                return Err(format!("{path}:{no}: header {l:?}, expected {want:?}"));
            }
        }
    }
    let mut out = Vec::new();
    for (no, l) in lines {
        let fields: Vec<&str> = l.split(',').collect();
        if fields.len() != header.len() {
            return Err(format!(
                "{path}:{no}: {} fields, expected {} ({want})",
                fields.len(),
                header.len()
            ));
        }
        out.push(row(&fields).map_err(|e| format!("{path}:{no}: {e}"))?);
    }
    if out.is_empty() {
        return Err(format!("{path}: no data lines after the header"));
    }
    Ok(out)
}

fn parse_timings(path: &str, content: &str) -> Result<Vec<Timing>, String> {
    parse(path, content, TIMING_HEADER, |f| {
        Ok(Timing {
            tool: text(f[0], "tool")?,
            n: positive(f[1], "n")?,
            seconds: positive(f[2], "seconds")?,
        })
    })
}

fn parse_scaling(path: &str, content: &str) -> Result<Vec<Scaling>, String> {
    parse(path, content, SCALING_HEADER, |f| {
        Ok(Scaling {
            workload: text(f[0], "workload")?,
            threads: count(f[1], "threads")?,
            seconds: positive(f[2], "seconds")?,
        })
    })
}

fn parse_grains(path: &str, content: &str) -> Result<Vec<Grain>, String> {
    parse(path, content, GRAIN_HEADER, |f| {
        Ok(Grain {
            cost_ns: positive(f[0], "cost_ns")?,
            chunk_size: count(f[1], "chunk_size")?,
            seconds: positive(f[2], "seconds")?,
        })
    })
}

fn read(path: &Path) -> Result<(String, String), String> {
    let name = path.display().to_string();
    let content = std::fs::read_to_string(path).map_err(|e| format!("{name}: cannot read: {e}"))?;
    Ok((name, content))
}

/// Points grouped by series name, in the order the names first appear, each sorted by x.
type Series = Vec<(String, Vec<(f64, f64)>)>;

fn group(points: impl IntoIterator<Item = (String, f64, f64)>) -> Series {
    let mut out: Series = Vec::new();
    for (name, x, y) in points {
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => v.push((x, y)),
            None => out.push((name, vec![(x, y)])),
        }
    }
    for (_, v) in &mut out {
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// The range of `values` widened by `pad` times on each side (for log axes).
fn log_range(values: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(v), h.max(v)));
    (lo / pad, hi * pad)
}

/// A tick label: `1e3`, `2.5e-2`, `30`, `0.5`.
fn tick(v: &f64) -> String {
    let v = *v;
    if v == 0.0 {
        "0".to_string()
    } else if (0.01..10_000.0).contains(&v.abs()) {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.1e}").replace(".0e", "e")
    }
}

fn cost_label(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{} ms", tick(&(ns / 1e6)))
    } else if ns >= 1e3 {
        format!("{} µs", tick(&(ns / 1e3)))
    } else {
        format!("{} ns", tick(&ns))
    }
}

const SIZE: (u32, u32) = (900, 560);

/// Line colours, told apart on white (plotters' palette has a pale yellow).
const COLORS: [RGBColor; 8] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(23, 190, 207),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
];

/// Draws `series` as lines with points on log-log axes, with a legend.
fn draw_loglog(
    out: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &Series,
) -> Result<(), Box<dyn std::error::Error>> {
    let all = || series.iter().flat_map(|(_, v)| v.iter().copied());
    let (x0, x1) = log_range(all().map(|p| p.0), 1.5);
    let (y0, y1) = log_range(all().map(|p| p.1), 2.0);
    let root = SVGBackend::new(out, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(56)
        .y_label_area_size(70)
        .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .draw()?;
    draw_lines(&mut chart, series)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn draw_lines<DB: DrawingBackend, CT: CoordTranslate<From = (f64, f64)>>(
    chart: &mut ChartContext<'_, DB, CT>,
    series: &Series,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    for (i, (name, points)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(PointSeries::of_element(
            points.iter().copied(),
            3,
            color.filled(),
            &|c, s, st| Circle::new(c, s, st),
        ))?;
    }
    Ok(())
}

fn render_timings(data: &Path, out: &Path) -> Result<(), String> {
    let (name, content) = read(&data.join("fibo_vs_gmp.csv"))?;
    let rows = parse_timings(&name, &content)?;
    let series = group(rows.into_iter().map(|r| (r.tool, r.n, r.seconds)));
    let path = out.join("fibo_vs_gmp.svg");
    draw_loglog(
        &path,
        "F(n) in decimal, whole process: fibo, GMP (gmpy2) and a pure-Python loop",
        "n",
        "wall time (s)",
        &series,
    )
    .map_err(|e| format!("{}: {e}", path.display()))
}

fn render_grains(data: &Path, out: &Path) -> Result<(), String> {
    let (name, content) = read(&data.join("granularity.csv"))?;
    let rows = parse_grains(&name, &content)?;
    let series = group(rows.into_iter().map(|r| {
        (
            format!("{} per item", cost_label(r.cost_ns)),
            r.chunk_size,
            r.seconds * 1e3,
        )
    }));
    let path = out.join("granularity.svg");
    draw_loglog(
        &path,
        "A map of about 40 ms of nominal work under ChunkSize(c), one line per cost per item",
        "chunk size c (items per task)",
        "wall time (ms)",
        &series,
    )
    .map_err(|e| format!("{}: {e}", path.display()))
}

/// Speedup over the smallest thread count measured, per workload, on linear axes with the
/// ideal line `threads / smallest`.
fn render_scaling(data: &Path, out: &Path) -> Result<(), String> {
    let (name, content) = read(&data.join("scaling.csv"))?;
    let rows = parse_scaling(&name, &content)?;
    let t0 = rows.iter().map(|r| r.threads).fold(f64::MAX, f64::min);
    let t1 = rows.iter().map(|r| r.threads).fold(f64::MIN, f64::max);
    let mut base = BTreeMap::new();
    for r in &rows {
        if r.threads == t0 {
            base.insert(r.workload.clone(), r.seconds);
        }
    }
    let mut points = Vec::new();
    for r in &rows {
        let b = base.get(&r.workload).ok_or_else(|| {
            format!(
                "{name}: workload {:?} has no row at {t0} thread(s)",
                r.workload
            )
        })?;
        points.push((r.workload.clone(), r.threads, b / r.seconds * t0));
    }
    let series = group(points);
    let path = out.join("scaling.svg");
    draw_scaling(&path, &series, t0, t1).map_err(|e| format!("{}: {e}", path.display()))
}

fn draw_scaling(
    out: &Path,
    series: &Series,
    t0: f64,
    t1: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    let top = series
        .iter()
        .flat_map(|(_, v)| v.iter().map(|p| p.1))
        .fold(t1, f64::max)
        * 1.1;
    let root = SVGBackend::new(out, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let x1 = if t1 > t0 { t1 } else { t0 + 1.0 };
    let mut chart = ChartBuilder::on(&root)
        .caption("fibo: speedup over thread count (-j)", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(56)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x1 * 1.05, 0.0..top)?;
    let x_desc = format!("threads (-j); speedup relative to -j {t0}, scaled by {t0}");
    chart
        .configure_mesh()
        .x_desc(if t0 == 1.0 { "threads (-j)" } else { &x_desc })
        .y_desc("speedup (time at the fewest threads / time)")
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            [(t0, t0), (x1, x1)],
            BLACK.mix(0.6).stroke_width(1),
        ))?
        .label("ideal (speedup = threads)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.mix(0.6)));
    draw_lines(&mut chart, series)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn render(data: &Path, out: &Path) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: cannot create: {e}", out.display()))?;
    render_timings(data, out)?;
    render_scaling(data, out)?;
    render_grains(data, out)?;
    Ok(())
}

#[path = "../benches/support/spin.rs"]
mod spin;
use spin::{spin, steps_per_ns};

/// Prints `granularity.csv` to stdout.
fn granularity() {
    let rate = steps_per_ns();
    // (cost per item, items): about 40 ms of work each, as in benches/granularity.rs.
    let costs = [
        (Duration::from_nanos(50), 800_000u64),
        (Duration::from_micros(1), 40_000),
        (Duration::from_micros(50), 800),
        (Duration::from_millis(1), 40),
    ];
    println!(
        "# {} threads; medians of 5 runs after one warm-up; examples/plots.rs granularity",
        rayon::current_num_threads()
    );
    println!("{}", GRAIN_HEADER.join(","));
    for (cost, items) in costs {
        let steps = (cost.as_nanos() as f64 * rate).round() as u64;
        let seeds: Vec<u64> = (0..items).collect();
        for chunk in (0..=12).map(|k| 1usize << k) {
            let policy = Granularity::ChunkSize(chunk);
            let mut runs: Vec<f64> = (0..6)
                .map(|_| {
                    let t = Instant::now();
                    let v: Vec<u64> = black_box(&seeds)
                        .par_iter()
                        .map(|&s| spin(steps, s))
                        .with_granularity(policy)
                        .collect();
                    black_box(v);
                    t.elapsed().as_secs_f64()
                })
                .skip(1)
                .collect();
            runs.sort_by(f64::total_cmp);
            println!("{},{chunk},{:.6}", cost.as_nanos(), runs[runs.len() / 2]);
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("granularity") if args.len() == 1 => {
            granularity();
            Ok(())
        }
        Some("render") if args.len() <= 3 => render(
            Path::new(args.get(1).map_or("docs/plots/data", String::as_str)),
            Path::new(args.get(2).map_or("docs/plots", String::as_str)),
        ),
        _ => Err("usage: plots render [DATA_DIR [OUT_DIR]] | plots granularity".to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plots: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_lines_parse_with_comments_and_blank_lines() {
        let csv = "# measured today\ntool,n,seconds\n\nfibo,1000,0.002\n# gap\ngmpy2, 1e7 ,0.22\n";
        let rows = parse_timings("t.csv", csv).unwrap();
        assert_eq!(
            rows,
            [
                Timing {
                    tool: "fibo".into(),
                    n: 1000.0,
                    seconds: 0.002
                },
                Timing {
                    tool: "gmpy2".into(),
                    n: 1e7,
                    seconds: 0.22
                },
            ]
        );
    }

    #[test]
    fn malformed_lines_name_the_file_and_line() {
        let csv = "tool,n,seconds\nfibo,1000,0.002\nfibo,1000\n";
        assert_eq!(
            parse_timings("d/t.csv", csv).unwrap_err(),
            "d/t.csv:3: 2 fields, expected 3 (tool,n,seconds)"
        );
        let csv = "# c\nworkload,threads,seconds\n`fibo 1e7`,1,0.05\n`fibo 1e7`,two,0.03\n";
        assert_eq!(
            parse_scaling("s.csv", csv).unwrap_err(),
            "s.csv:4: threads must be a whole number of at least 1, found \"two\""
        );
        let csv = "cost_ns,chunk_size,seconds\n50,1,-0.1\n";
        assert_eq!(
            parse_grains("g.csv", csv).unwrap_err(),
            "g.csv:2: seconds must be a number above 0, found \"-0.1\""
        );
        let csv = "tool,n,seconds\nfibo,1e3,NaN\n";
        assert!(
            parse_timings("t.csv", csv)
                .unwrap_err()
                .starts_with("t.csv:2: seconds")
        );
    }

    #[test]
    fn wrong_header_or_no_data_is_an_error() {
        assert_eq!(
            parse_timings("t.csv", "n,seconds\n1,2\n").unwrap_err(),
            "t.csv:1: header \"n,seconds\", expected \"tool,n,seconds\""
        );
        assert_eq!(
            parse_timings("t.csv", "# only a comment\n").unwrap_err(),
            "t.csv: no header line (expected \"tool,n,seconds\")"
        );
        assert_eq!(
            parse_timings("t.csv", "tool,n,seconds\n").unwrap_err(),
            "t.csv: no data lines after the header"
        );
    }

    #[test]
    fn a_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = render(dir.path(), dir.path()).unwrap_err();
        assert!(err.contains("fibo_vs_gmp.csv: cannot read"), "{err}");
    }

    #[test]
    fn renders_three_svgs_with_text_and_any_thread_counts() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let write = |name: &str, s: &str| std::fs::write(p.join(name), s).unwrap();
        write(
            "fibo_vs_gmp.csv",
            "tool,n,seconds\nfibo,1000,0.002\nfibo,100000000,0.4\ngmpy2,1000,0.03\ngmpy2,1e8,2.7\n",
        );
        let mut scaling = "workload,threads,seconds\n".to_string();
        for (t, s) in [(1, 8.0), (2, 4.2), (4, 2.3), (8, 1.3), (16, 0.9)] {
            scaling += &format!("`fibo 1e9`,{t},{s}\n`fibo 1e7`,{t},{}\n", s / 100.0);
        }
        write("scaling.csv", &scaling);
        write(
            "granularity.csv",
            "cost_ns,chunk_size,seconds\n50,1,0.2\n50,4096,0.02\n",
        );
        render(p, p).unwrap();
        for (svg, words) in [
            ("fibo_vs_gmp.svg", ["wall time (s)", "gmpy2"]),
            ("scaling.svg", ["ideal", "`fibo 1e9`"]),
            ("granularity.svg", ["chunk size", "50 ns per item"]),
        ] {
            let s = std::fs::read_to_string(p.join(svg)).unwrap();
            assert!(s.starts_with("<svg"), "{svg}");
            for w in words {
                assert!(s.contains(w), "{svg} lacks {w:?}");
            }
        }
    }

    #[test]
    fn speedup_needs_every_workload_at_the_fewest_threads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(
            p.join("scaling.csv"),
            "workload,threads,seconds\na,1,2\nb,2,1\n",
        )
        .unwrap();
        let err = render_scaling(p, p).unwrap_err();
        assert!(
            err.ends_with("workload \"b\" has no row at 1 thread(s)"),
            "{err}"
        );
    }

    #[test]
    fn ticks_and_costs_read_well() {
        assert_eq!(tick(&1000.0), "1000");
        assert_eq!(tick(&1e8), "1e8");
        assert_eq!(tick(&0.5), "0.5");
        assert_eq!(tick(&0.0), "0");
        assert_eq!(tick(&0.001), "1e-3");
        assert_eq!(cost_label(50.0), "50 ns");
        assert_eq!(cost_label(1000.0), "1 µs");
        assert_eq!(cost_label(1e6), "1 ms");
    }
}
