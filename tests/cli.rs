//! The `fibo` command line, end to end: every option and every bad-input case.

use std::io::Write as _;
use std::process::{Command as StdCommand, Stdio};

use assert_cmd::Command;
use num_bigint::BigUint;
use predicates::prelude::*;

fn fibo() -> Command {
    Command::cargo_bin("fibo").unwrap()
}

/// F(n) by plain iteration: independent of the library.
fn iter_fib(n: u64) -> BigUint {
    let (mut a, mut b) = (BigUint::from(0u32), BigUint::from(1u32));
    for _ in 0..n {
        let c = &a + &b;
        a = std::mem::replace(&mut b, c);
    }
    a
}

fn stdout_of(args: &[&str]) -> String {
    let out = fibo().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs and expects a usage error: exit code 2, nothing on stdout, one line on stderr that
/// contains every one of `needles`.
fn usage_error(args: &[&str], stdin: &str, needles: &[&str]) {
    let out = fibo().args(args).write_stdin(stdin).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(
        out.stdout.is_empty(),
        "{args:?} printed {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{args:?}: one line expected, got {err:?}"
    );
    for n in needles {
        assert!(err.contains(n), "{args:?}: {err:?} should mention {n:?}");
    }
}

#[test]
fn values_and_ranges_in_input_order() {
    let out = stdout_of(&["10", "1000..1005", "3..=4", "0", "10"]);
    let mut want = vec![iter_fib(10)];
    want.extend((1000..1005).map(iter_fib));
    want.extend([iter_fib(3), iter_fib(4), iter_fib(0), iter_fib(10)]);
    let want: Vec<String> = want.iter().map(ToString::to_string).collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), want);
}

#[test]
fn number_spellings() {
    assert_eq!(stdout_of(&["1_0", "1e1", "2.5e1"]), "55\n55\n75025\n");
    assert_eq!(
        stdout_of(&["5..5", "7"]),
        "13\n",
        "an empty range prints nothing"
    );
}

#[test]
fn formats() {
    assert_eq!(
        stdout_of(&["--format", "tsv", "10", "11"]),
        "10\t55\n11\t89\n"
    );
    assert_eq!(
        stdout_of(&["-f", "json", "10"]),
        "{\"n\":10,\"digits\":2,\"value\":\"55\"}\n"
    );
    assert_eq!(stdout_of(&["--format", "value", "12"]), "144\n");
}

#[test]
fn digits_last_and_mod() {
    assert_eq!(
        stdout_of(&["--digits", "10", "1000000", "1e9"]),
        "2\n208988\n208987640\n"
    );
    assert_eq!(stdout_of(&["--last", "3", "30", "10"]), "040\n55\n");
    let s = iter_fib(5000).to_string();
    assert_eq!(
        stdout_of(&["--last", "40", "5000"]),
        format!("{}\n", &s[s.len() - 40..])
    );
    assert_eq!(stdout_of(&["--mod", "1000000007", "100"]), "687995182\n");
    assert_eq!(
        stdout_of(&["--mod", "18446744073709551615", "--format", "json", "10"]),
        "{\"n\":10,\"mod\":\"18446744073709551615\",\"value\":\"55\"}\n"
    );
    // Huge n never builds the number: this is instant and needs no memory.
    let out = stdout_of(&["--last", "12", "1e18", "18446744073709551615"]);
    assert!(out.lines().all(|l| l.len() == 12), "{out}");
    // Pisano period of 1000 is 1500.
    assert_eq!(
        stdout_of(&["--mod", "1000", "1e18"]),
        stdout_of(&["--mod", "1000", "1000"])
    );
}

#[test]
fn files_stdin_and_comments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nums.txt");
    std::fs::write(&path, "# header\n10 11 # trailing\n\n3..=4\n").unwrap();
    let p = path.to_str().unwrap();
    assert_eq!(stdout_of(&["-i", p]), "55\n89\n2\n3\n");
    assert_eq!(
        stdout_of(&["7", "-i", p, "--input", p]),
        "13\n55\n89\n2\n3\n55\n89\n2\n3\n"
    );
    let out = fibo().write_stdin("10\n12\n").output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "55\n144\n");
    let out = fibo()
        .args(["-i", "-"])
        .write_stdin("1e1")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "55\n");
}

#[test]
fn bad_tokens_name_the_token_and_the_place() {
    usage_error(&["10", "abc"], "", &["'abc'", "argument 2"]);
    usage_error(&["-5"], "", &["'-5'", "argument 1", "negative"]);
    usage_error(&["2.5"], "", &["'2.5'", "fraction"]);
    usage_error(&["0x10"], "", &["'0x10'", "hexadecimal"]);
    usage_error(
        &["18446744073709551616"],
        "",
        &["'18446744073709551616'", "64 bits"],
    );
    usage_error(&["10..5"], "", &["'10..5'", "greater"]);
    usage_error(&["1..=2", "3.."], "", &["'3..'", "argument 2"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.txt");
    std::fs::write(&path, "1\n2\n3 x7\n").unwrap();
    let p = path.to_str().unwrap();
    usage_error(&["-i", p], "", &["'x7'", &format!("{p}:3")]);
    usage_error(&[], "5\n-3\n", &["'-3'", "<stdin>:2"]);
    usage_error(&["-i", "/no/such/file"], "", &["/no/such/file"]);
}

#[test]
fn bad_options_are_one_line_errors() {
    usage_error(&["--format", "xml", "10"], "", &["xml"]);
    usage_error(&["--jobs", "0", "10"], "", &["--jobs", "at least 1"]);
    usage_error(&["--mod", "0", "10"], "", &["--mod", "at least 1"]);
    usage_error(&["--last", "0", "10"], "", &["--last"]);
    usage_error(&["--digits", "--last", "3", "10"], "", &["--last"]);
    usage_error(&["--max-memory", "lots", "10"], "", &["lots"]);
    usage_error(&["--frobnicate", "10"], "", &["--frobnicate"]);
}

#[test]
fn no_input_is_a_usage_error_with_a_hint() {
    // Under the test harness stdin is not a terminal, so empty stdin is what is read.
    usage_error(&[], "", &["no number", "--help"]);
    usage_error(&[], "# only a comment\n", &["no number"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.txt");
    std::fs::write(&path, "").unwrap();
    usage_error(&["-i", path.to_str().unwrap()], "", &["no number"]);
}

#[test]
fn inputs_too_big_for_memory_are_refused_with_the_estimate() {
    usage_error(
        &["10", "1e15"],
        "",
        &[
            "F(1000000000000000)",
            "argument 2",
            "86.8 TB",
            "--max-memory",
        ],
    );
    usage_error(
        &["--max-memory", "1M", "1e7"],
        "",
        &["F(10000000)", "1.0", "MB"],
    );
    // --digits, --last and --mod need no big number.
    assert_eq!(stdout_of(&["--digits", "1e15"]), "208987640249979\n");
}

#[test]
fn jobs_and_stats() {
    let out = fibo()
        .args(["-j", "1", "--stats", "1000..1100"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 100);
    assert_eq!(text.lines().nth(5).unwrap(), iter_fib(1005).to_string());
    let err = String::from_utf8(out.stderr).unwrap();
    for w in ["100 inputs", "1 threads", "hits", "misses", "peak"] {
        assert!(err.contains(w), "{err}");
    }
    // Same output whatever the granularity.
    let want = stdout_of(&["--engine", "binary", "1000..1300"]);
    for g in ["seq", "chunk:7", "chunks:3", "min:50", "tuned"] {
        assert_eq!(
            stdout_of(&["--engine", "binary", "--granularity", g, "1000..1300"]),
            want
        );
    }
    usage_error(&["--granularity", "chunk:x", "10"], "", &["chunk:x"]);
    // Same output whatever the thread count.
    assert_eq!(
        stdout_of(&["-j", "3", "900..1100", "5"]),
        stdout_of(&["-j", "1", "900..1100", "5"])
    );
}

#[test]
fn progress_bar_goes_to_stderr_only() {
    let out = fibo().args(["--progress", "1..200"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 199);
    assert_eq!(
        stdout_of(&["--no-progress", "--progress", "--no-progress", "3"]),
        "2\n"
    );
}

#[test]
fn closed_pipe_is_a_quiet_exit() {
    // A reader that takes one line and closes the pipe, while fibo has a million lines to go.
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("fibo"))
        .args(["0..1000000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = [0u8; 64];
    let _ = std::io::Read::read(&mut stdout, &mut buf).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn help_and_version() {
    fibo()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("--last"));
    fibo()
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::contains("fibo"));
}

#[test]
fn large_batch_streams_in_order() {
    let out = stdout_of(&["--mod", "1000000007", "0..200000"]);
    let mut lines = out.lines();
    let m = 1_000_000_007u64;
    let (mut a, mut b) = (0u64, 1u64);
    for n in 0..200_000 {
        assert_eq!(lines.next().unwrap().parse::<u64>().unwrap(), a, "n = {n}");
        (a, b) = (b, (a + b) % m);
    }
    assert!(lines.next().is_none());
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("fibo"))
        .args(["-i", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"20000 20001\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let v: Vec<BigUint> = text.lines().map(|l| l.parse().unwrap()).collect();
    // Cassini-style check on neighbours: F(n+1)^2 - F(n)F(n+2) = (-1)^n, with F(n+2)=F(n)+F(n+1).
    let f2 = &v[0] + &v[1];
    assert_eq!(&v[1] * &v[1], &v[0] * &f2 + 1u32);
}

#[test]
fn first_lines_do_not_wait_for_the_whole_batch() {
    // F(2*10^7) takes seconds to compute and print; F(5) must come out long before.
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("fibo"))
        .args(["5", "2e7"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    assert_eq!(first, "5\n");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the big value should still be computing"
    );
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(rest.trim_end().len(), 4_179_753, "digits of F(2*10^7)");
}

#[cfg(target_os = "linux")]
#[test]
fn memory_stays_bounded_on_a_huge_range() {
    // `fibo 1..1000000 > /dev/null` would print ~100 GB; memory must not follow.
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("fibo"))
        .args(["1..1000000"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0u64;
    for _ in 0..30 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let Ok(text) = std::fs::read_to_string(&status) else {
            break;
        };
        if let Some(kb) = text
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
        {
            peak_kb = peak_kb.max(kb);
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(peak_kb > 0);
    assert!(peak_kb < 700 * 1024, "peak RSS {peak_kb} kB");
}

#[test]
fn many_threads_first_call_does_not_deadlock() {
    // Regression: the NTT tables were built inside a OnceLock with rayon::join; a worker could
    // steal a task needing the same cell and block on it forever (1 run in ~30 with -j 16).
    for _ in 0..40 {
        let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("fibo"))
            .args(["-j", "16", "1e6"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut child2 = StdCommand::new(assert_cmd::cargo::cargo_bin("fibo"))
            .args(["-j", "16", "2e6"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        for c in [&mut child, &mut child2] {
            loop {
                if let Some(status) = c.try_wait().unwrap() {
                    assert!(status.success());
                    break;
                }
                if start.elapsed() > std::time::Duration::from_secs(60) {
                    c.kill().unwrap();
                    panic!("fibo -j 16 hung");
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }
}

/// Peak RSS in bytes of `fibo args` run to the end with stdout to /dev/null, by
/// `/usr/bin/time -f %M` (GNU time); `None` where that tool is missing.
#[cfg(target_os = "linux")]
fn peak_rss(args: &[&str]) -> Option<(u64, std::process::Output)> {
    if !std::path::Path::new("/usr/bin/time").exists() {
        return None;
    }
    let out = StdCommand::new("/usr/bin/time")
        .args(["-f", "peak-kb=%M"])
        .arg(assert_cmd::cargo::cargo_bin("fibo"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let kb: u64 = err
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("peak-kb="))
        .and_then(|v| v.trim().parse().ok())?;
    Some((kb * 1024, out))
}

/// The last `k` digits of F(n) as `--last k` prints them (all of F(n) when shorter).
fn last_of(n: u64, k: usize) -> String {
    let s = iter_fib(n).to_string();
    s[s.len().saturating_sub(k)..].to_string()
}

#[test]
fn last_k_wider_than_a_format_width() {
    // Regression: K > 65535 panicked ("Formatting argument out of range", exit 1).
    let n = 400_000; // 83,595 digits
    let out = stdout_of(&["--last", "70000", "400000"]);
    assert_eq!(out, format!("{}\n", last_of(n, 70_000)));
    let out = stdout_of(&["--last", "65536", "1e18"]);
    assert_eq!(out.trim_end().len(), 65_536);
    assert!(out.trim_end().bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(
        &out.trim_end()[65_536 - 19..],
        stdout_of(&["--last", "19", "1e18"]).trim_end()
    );
    // K up to the documented 10,000,000, F(n) shorter than K: all of F(n).
    let out = stdout_of(&["--last", "10000000", "1000", "0", "-f", "tsv"]);
    assert_eq!(out, format!("1000\t{}\n0\t0\n", iter_fib(1000)));
}

#[test]
fn last_k_covering_the_value_takes_the_full_value_path() {
    // Regression: each such n was recomputed in binary and converted with num-bigint, 30 times
    // slower than the full values (`40000000..40000004 --last 10000000`: 87 s against 1.5 s).
    let args = ["10000000..10000004"];
    let started = std::time::Instant::now();
    let full = stdout_of(&args);
    let full_s = started.elapsed().as_secs_f64();
    let started = std::time::Instant::now();
    let last = stdout_of(&["--last", "10000000", "10000000..10000004"]);
    let last_s = started.elapsed().as_secs_f64();
    assert_eq!(last, full);
    assert_eq!(last.lines().count(), 4);
    assert!(
        last_s < 2.0 * full_s + 0.5,
        "--last took {last_s:.2} s, the full values {full_s:.2} s"
    );
}

/// Spawns `fibo args`, reads `lines` lines, and returns how long they took and whether fibo was
/// still running then (it is killed afterwards).
fn first_lines(args: &[&str], lines: usize) -> (String, std::time::Duration, bool) {
    let started = std::time::Instant::now();
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("fibo"))
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut text = String::new();
    for _ in 0..lines {
        std::io::BufRead::read_line(&mut stdout, &mut text).unwrap();
    }
    let took = started.elapsed();
    let running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    (text, took, running)
}

#[test]
fn ready_lines_are_flushed_while_a_big_value_computes() {
    // Regression: `fibo 1..=10 1e9 | head -3` waited for F(10^9) (6.7 s): the small values
    // shared a block with it, and a ready block waited in the output buffer for the next one.
    for args in [
        &["1..=3", "2e8"][..],
        &["100", "2e8"],
        &["-j", "1", "7", "2e8"],
    ] {
        let want: Vec<String> = match args {
            [_, "2e8"] if args[0] == "100" => vec![iter_fib(100).to_string()],
            [_, _, "7", _] => vec![iter_fib(7).to_string()],
            _ => (1..=3).map(|n| iter_fib(n).to_string()).collect(),
        };
        let (text, took, running) = first_lines(args, want.len());
        assert_eq!(text.lines().collect::<Vec<_>>(), want, "{args:?}");
        assert!(running, "{args:?}: F(2*10^8) should still be computing");
        assert!(
            took.as_secs_f64() < 0.5,
            "{args:?}: first lines after {took:?}"
        );
    }
}

#[cfg(target_os = "linux")]
#[test]
fn max_memory_bounds_the_whole_run() {
    // Regression: the limit was checked against one value while several lived at once:
    // `200000000..200000010 --max-memory 160M` peaked at 620 MB.
    let limit = 120u64 << 20;
    let Some((peak, out)) = peak_rss(&["50000000..50000008", "--max-memory", "120M"]) else {
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(peak <= limit, "peak RSS {peak} over the limit {limit}");
    for j in ["1", "8"] {
        let (peak, out) =
            peak_rss(&["-j", j, "50000000..50000008", "--max-memory", "120M"]).unwrap();
        assert!(out.status.success(), "-j {j}");
        assert!(
            peak <= limit,
            "-j {j}: peak RSS {peak} over the limit {limit}"
        );
    }
    // Same lines as without a limit.
    assert_eq!(
        stdout_of(&[
            "--max-memory",
            "60M",
            "-f",
            "tsv",
            "--last",
            "30",
            "3000000..3000003"
        ]),
        stdout_of(&["-f", "tsv", "--last", "30", "3000000..3000003"])
    );
    // What cannot fit even one value at a time is refused up front, with the estimate:
    // the binary engine's conversion and the cache count too.
    usage_error(
        &[
            "1e8",
            "--engine",
            "binary",
            "--max-memory",
            "74M",
            "--cache-mb",
            "0",
        ],
        "",
        &[
            "F(100000000)",
            "argument 1",
            "MB",
            "77.6 MB",
            "--max-memory",
        ],
    );
    usage_error(
        &["1e7", "--max-memory", "100M", "--cache-mb", "200"],
        "",
        &["F(10000000)", "cache", "--cache-mb"],
    );
}

#[cfg(target_os = "linux")]
#[test]
fn output_window_is_bounded_in_bytes_and_threads_are_capped() {
    // Regression: the window held 4 blocks per thread: with an unread pipe,
    // `100000..2000000 --cache-mb 0 -j 32` held 570 MB, `-j 128` 1.7 GB.
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("fibo"))
        .args(["100000..2000000", "--cache-mb", "0", "-j", "64"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    std::thread::sleep(std::time::Duration::from_secs(4));
    let text = std::fs::read_to_string(&status).unwrap();
    let hwm_kb: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        hwm_kb < 250 * 1024,
        "peak RSS {hwm_kb} kB with an unread pipe"
    );
    usage_error(&["-j", "257", "10"], "", &["--jobs", "at most 256"]);
    let out = fibo()
        .env("RAYON_NUM_THREADS", "100000")
        .arg("10")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("RAYON_NUM_THREADS") && err.contains("at most 256"),
        "{err}"
    );
    let out = fibo()
        .env("RAYON_NUM_THREADS", "3")
        .args(["--stats", "10"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("on 3 threads"));
}

#[cfg(target_os = "linux")]
#[test]
fn many_input_tokens_cost_a_few_bytes_each() {
    // Regression: every token cost about 94 bytes (10^7 tokens: 942 MB).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.txt");
    let mut text = String::with_capacity(12 << 20);
    let mut x = 7u64;
    let mut sum = 0u64;
    let m = 1_000_000_007u64;
    for _ in 0..1_000_000 {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let n = (x >> 34) % 1_000_000_000;
        text.push_str(&n.to_string());
        text.push('\n');
        sum += n;
    }
    std::fs::write(&path, &text).unwrap();
    let p = path.to_str().unwrap();
    let Some((peak, out)) = peak_rss(&["-i", p, "--digits"]) else {
        return;
    };
    assert!(out.status.success());
    assert!(peak < 60 << 20, "peak RSS {peak} for 10^6 tokens");
    // And every token is there, in order.
    let out = stdout_of(&["-i", p, "--format", "tsv", "--mod", &m.to_string()]);
    let ns: Vec<u64> = out
        .lines()
        .map(|l| l.split('\t').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ns.len(), 1_000_000);
    assert_eq!(ns.iter().sum::<u64>(), sum);
    assert_eq!(
        ns[..3],
        text.lines()
            .take(3)
            .map(|l| l.parse().unwrap())
            .collect::<Vec<u64>>()[..]
    );
}

#[test]
fn error_lines_cut_long_tokens_and_escape_control_characters() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.txt");
    std::fs::write(&path, format!("1\n{}x\n", "7".repeat(10 << 20))).unwrap();
    let p = path.to_str().unwrap();
    let out = fibo().args(["-i", p]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.len() < 400, "{} bytes of error", err.len());
    assert!(err.contains("... (10485761 bytes)"), "{err}");
    assert!(err.contains(&format!("{p}:2")), "{err}");
    let out = fibo().args(["10", "\u{1b}[2J\u{7}"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.trim_end().chars().any(char::is_control), "{err:?}");
    assert!(err.contains(r"'\u{1b}[2J\u{7}'"), "{err}");
}

#[cfg(target_os = "linux")]
#[test]
fn unwritable_stderr_or_stdout_keeps_the_exit_codes() {
    // Regression: eprintln! panicked on a full stderr (exit 101); help to a full stdout
    // exited 0.
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    let code = |args: &[&str], err_full: bool| {
        let mut c = StdCommand::new(assert_cmd::cargo::cargo_bin("fibo"));
        c.args(args).stdin(Stdio::null());
        if err_full {
            c.stderr(full()).stdout(Stdio::null());
        } else {
            c.stdout(full()).stderr(Stdio::null());
        }
        c.status().unwrap().code()
    };
    assert_eq!(code(&["x"], true), Some(2));
    assert_eq!(code(&["--frobnicate"], true), Some(2));
    assert_eq!(code(&["--stats", "10"], true), Some(1));
    assert_eq!(code(&["1e15"], true), Some(2));
    assert_eq!(code(&["--help"], false), Some(1));
    assert_eq!(code(&["10"], false), Some(1));
    let out = StdCommand::new(assert_cmd::cargo::cargo_bin("fibo"))
        .args(["--stats", "10"])
        .stderr(full())
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"55\n");
}

#[test]
fn small_option_and_number_rules() {
    // --max-memory 0.5 was read as 0 B.
    usage_error(
        &["--max-memory", "0.5", "10"],
        "",
        &["0.5", "less than one byte"],
    );
    // --format lists the valid values.
    usage_error(
        &["--format", "garbage", "10"],
        "",
        &["garbage", "value, tsv, json"],
    );
    // A negative range is named as an input, not as an unknown option.
    usage_error(&["-1..3"], "", &["'-1..3'", "argument 1", "negative"]);
    usage_error(
        &["5", "-2..=7", "9"],
        "",
        &["'-2..=7'", "argument 2", "negative"],
    );
    // Granularity counts are input numbers; an overflow says why.
    assert_eq!(
        stdout_of(&[
            "--granularity",
            "chunk:1e3",
            "--engine",
            "binary",
            "1000..1010"
        ]),
        stdout_of(&["--engine", "binary", "1000..1010"])
    );
    usage_error(
        &["--granularity", "chunk:99999999999999999999", "10"],
        "",
        &["chunk:99999999999999999999", "64 bits"],
    );
    // One rule: a whole number in any notation.
    assert_eq!(
        stdout_of(&["1.0", "10e-1", "2.00", "1.5e1"]),
        "1\n1\n1\n610\n"
    );
    usage_error(&["1.5"], "", &["'1.5'", "fraction"]);
    // No rustdoc link syntax in the help.
    let help = stdout_of(&["--help"]);
    assert!(!help.contains('`'), "{help}");
    assert!(help.contains("187"), "{help}");
}

#[test]
fn ends_with_its_reader_while_a_big_value_computes() {
    // Regression: `fibo 1..=10 1e9 | head -3` took 6.7 s: fibo noticed the closed pipe only at
    // its next write, after F(10^9).
    let started = std::time::Instant::now();
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("fibo"))
        .args(["1..=10", "2e8"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line, "1\n");
    drop(stdout);
    let closed = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    let after = closed.elapsed();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // F(2*10^8) alone takes about 3 s here.
    let all = started.elapsed();
    assert!(
        all.as_secs_f64() < 1.5,
        "fibo ran {after:?} after its reader left, {all:?} in all"
    );
}

#[test]
fn every_transform_prints_the_same_digits() {
    // PARKIT_NTT picks the integer transform or caps the FMA one at AVX2; whatever the CPU
    // has, the digits are those of plain iteration, for one big value (its last products, of
    // 1,100 limbs, go to a transform) and a batch around it.
    let n = 200_000u64;
    let want = iter_fib(n).to_string();
    let run = |mode: &str| {
        let out = fibo()
            .env("PARKIT_NTT", mode)
            .args(["200000", "199998..200002", "--format", "tsv"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{mode}");
        String::from_utf8(out.stdout).unwrap()
    };
    let auto = run("");
    let first = auto.lines().next().unwrap();
    assert_eq!(first, format!("{n}\t{want}"));
    for mode in ["integer", "avx2"] {
        assert_eq!(run(mode), auto, "PARKIT_NTT={mode}");
    }
}
