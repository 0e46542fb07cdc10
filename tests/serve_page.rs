//! The page `fibo serve` answers at `GET /`, driven in a real headless browser.
//!
//! Runs the built `fibo serve --listen 127.0.0.1:0`, Debian's `chromedriver` and `chromium`
//! (all on loopback), types inputs as a person would, and reads the results back from the page:
//! every value against an independent computation here, digit counts, the cache on a second
//! identical submission, the last-K, mod-M and digits modes, "show all", a bad token's message
//! shown inline, rows appearing while a batch still runs, and Cancel. Also checks that every
//! control has a label, that nothing is loaded from elsewhere, and that the page fits a phone's
//! width. Saves screenshots to `target/serve_page.png` and `target/serve_page_phone.png`.
//!
//! Without chromedriver or chromium the test prints a note and passes, unless
//! `PARKIT_REQUIRE_BROWSER=1` (set by CI) makes it fail. `PARKIT_CHROMEDRIVER` and
//! `PARKIT_CHROMIUM` override the programs' paths.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt;
use num_bigint::BigUint;
use serde_json::{Value, json};

/// How long any one wait on the page or a process may take.
const WAIT: Duration = Duration::from_secs(30);

/// What the first submission asks for: small values, a range, a 209-digit value and a folded one.
const INPUTS: &str = "0 1 10 90..=95 1000 1e5";
const INPUT_NS: [u64; 11] = [0, 1, 10, 90, 91, 92, 93, 94, 95, 1000, 100_000];

/// The children this test started, killed (and reaped) when it ends, however it ends.
struct Processes {
    children: Vec<(&'static str, Child)>,
    profile: tempfile::TempDir,
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Processes {
    /// Panics if a child already exited (its name and status in the message).
    fn check_alive(&mut self) {
        for (name, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{name} exited early: {status}");
            }
        }
    }
}

/// F(n) in decimal, computed independently of the crate: `u128` iteration for small n, fast
/// doubling over `BigUint` beyond.
fn fib_decimal(n: u64) -> String {
    if n <= 186 {
        let (mut a, mut b) = (0u128, 1u128);
        for _ in 0..n {
            (a, b) = (b, a + b);
        }
        return a.to_string();
    }
    // (F(k), F(k+1)) from the top bit of n down.
    let (mut a, mut b) = (BigUint::from(0u32), BigUint::from(1u32));
    for bit in (0..64 - n.leading_zeros()).rev() {
        let c = &a * (&b * 2u32 - &a);
        let d = &a * &a + &b * &b;
        if n >> bit & 1 == 1 {
            b = &c + &d;
            a = d;
        } else {
            a = c;
            b = d;
        }
    }
    a.to_string()
}

fn target_dir() -> PathBuf {
    // target/<profile>/fibo: the screenshots go beside the profile folders.
    let exe = Path::new(env!("CARGO_BIN_EXE_fibo"));
    exe.parent()
        .and_then(Path::parent)
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
}

/// Starts `fibo serve --listen 127.0.0.1:0` and reads its address from the first stderr line.
fn start_server() -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fibo"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start fibo serve");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut first = String::new();
        let _ = reader.read_line(&mut first);
        let _ = tx.send(first);
        // Keep draining, so that a chatty server never blocks on a full pipe.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    let first = match rx.recv_timeout(WAIT) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            panic!("fibo serve printed no first line within {WAIT:?}");
        }
    };
    let prefix = "fibo serve: listening on http://";
    let addr = first
        .trim_end()
        .strip_prefix(prefix)
        .and_then(|a| a.parse().ok());
    match addr {
        Some(addr) => (child, addr),
        None => {
            let _ = child.kill();
            panic!("fibo serve's first stderr line is not '{prefix}HOST:PORT': {first:?}");
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Starts chromedriver on a free loopback port and waits until it accepts connections.
fn start_chromedriver(program: &Path) -> (Child, u16) {
    let port = free_port();
    let mut child = Command::new(program)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("chromedriver exited at start: {status}");
        }
        if start.elapsed() > WAIT {
            let _ = child.kill();
            panic!("chromedriver did not listen on port {port} within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, port)
}

/// Polls `script` (a JS expression body, run with `return`) until it returns true.
async fn wait_until(client: &Client, what: &str, script: &str) {
    let start = Instant::now();
    loop {
        let ok = client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("waiting for {what}: {e}"));
        if ok == Value::Bool(true) {
            return;
        }
        if start.elapsed() > WAIT {
            let status = page_text(client, "#status").await;
            let error = page_text(client, "#error").await;
            panic!(
                "timed out after {WAIT:?} waiting for {what} (status {status:?}, error {error:?})"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn page_text(client: &Client, css: &str) -> String {
    match client.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// One row of `#results` as the page shows it.
#[derive(Debug)]
struct Row {
    n: u64,
    digits: Option<u64>,
    /// The whole value (or last digits, or residue) when not folded.
    value: Option<String>,
    /// Head and tail of a folded value.
    folded: Option<(String, String)>,
    download: Option<String>,
    cache: String,
    ms: String,
}

async fn read_rows(client: &Client) -> Vec<Row> {
    let rows = client
        .execute(
            r##"return [...document.querySelectorAll("#results tr")].map(tr => {
                const q = (s) => tr.querySelector(s);
                const num = q("td.value code.num");
                const folded = num && num.classList.contains("folded");
                const a = q("td.value a.download");
                return {
                    n: tr.dataset.n,
                    digits: q("td.digits").textContent,
                    value: num && !folded ? num.textContent : null,
                    head: folded ? q(".head").textContent : null,
                    tail: folded ? q(".tail").textContent : null,
                    download: a ? a.getAttribute("href") : null,
                    ms: q("td.ms").textContent,
                    cache: q("td.cache").textContent,
                };
            });"##,
            vec![],
        )
        .await
        .expect("read the result rows");
    let text = |v: &Value| v.as_str().map(str::to_owned);
    rows.as_array()
        .expect("rows array")
        .iter()
        .map(|r| {
            let digits: String = r["digits"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .filter(char::is_ascii_digit)
                .collect();
            Row {
                n: r["n"]
                    .as_str()
                    .and_then(|n| n.parse().ok())
                    .expect("data-n"),
                digits: digits.parse().ok(),
                value: text(&r["value"]),
                folded: text(&r["head"]).zip(text(&r["tail"])),
                download: text(&r["download"]),
                cache: text(&r["cache"]).unwrap_or_default(),
                ms: text(&r["ms"]).unwrap_or_default(),
            }
        })
        .collect()
}

/// Chooses a mode ("value", "digits", "last", "mod") and its number, types `inputs` and
/// submits.
async fn start_submit(client: &Client, inputs: &str, mode: &str, param: Option<&str>) {
    // "Clear" empties the table and the status, so the wait below sees only this run.
    client
        .find(Locator::Css("#clear"))
        .await
        .expect("#clear")
        .click()
        .await
        .expect("click #clear");
    client
        .find(Locator::Css(&format!("#mode-{mode}")))
        .await
        .expect("mode radio")
        .click()
        .await
        .expect("choose the mode");
    if let Some(param) = param {
        let field = client
            .find(Locator::Css(if mode == "last" {
                "#last-k"
            } else {
                "#mod-m"
            }))
            .await
            .expect("K or M field");
        field.clear().await.expect("clear K/M");
        field.send_keys(param).await.expect("type K/M");
    }
    let input = client.find(Locator::Css("#inputs")).await.expect("#inputs");
    input.clear().await.expect("clear #inputs");
    input.send_keys(inputs).await.expect("type inputs");
    client
        .find(Locator::Css("#go"))
        .await
        .expect("#go")
        .click()
        .await
        .expect("click #go");
}

/// [`start_submit`], then waits until the page says it is done.
async fn submit(client: &Client, inputs: &str, mode: &str, param: Option<&str>) {
    start_submit(client, inputs, mode, param).await;
    wait_until(
        client,
        &format!("the results of '{inputs}'"),
        r#"const s = document.getElementById("status").textContent;
           return !document.getElementById("go").disabled
               && (/^\d[\d,]* values?, /.test(s) || document.getElementById("error").textContent !== "");"#,
    )
    .await;
}

async fn status_line(client: &Client) -> String {
    page_text(client, "#status").await
}

/// Checks every row of a value-mode run against F(n) computed here.
fn check_values(rows: &[Row], ns: &[u64]) {
    let got: Vec<u64> = rows.iter().map(|r| r.n).collect();
    assert_eq!(got, ns, "one row per value, in input order");
    for row in rows {
        let want = fib_decimal(row.n);
        assert_eq!(
            row.digits,
            Some(want.len() as u64),
            "digit count of F({})",
            row.n
        );
        assert!(
            row.ms.parse::<f64>().is_ok_and(|ms| ms >= 0.0),
            "time of F({}) is a number of ms: {:?}",
            row.n,
            row.ms
        );
        assert!(
            ["hit", "miss", "shared"].contains(&row.cache.as_str()),
            "cache of F({}): {:?}",
            row.n,
            row.cache
        );
        match (&row.value, &row.folded) {
            (Some(value), None) => {
                assert!(
                    want.len() <= 1000,
                    "F({}) has {} digits: should be folded",
                    row.n,
                    want.len()
                );
                assert_eq!(value, &want, "value of F({})", row.n);
            }
            (None, Some((head, tail))) => {
                assert!(
                    want.len() > 1000,
                    "F({}) has {} digits: folded",
                    row.n,
                    want.len()
                );
                assert_eq!(head, &want[..40], "first 40 digits of F({})", row.n);
                assert_eq!(
                    tail,
                    &want[want.len() - 40..],
                    "last 40 digits of F({})",
                    row.n
                );
                let link = row
                    .download
                    .as_deref()
                    .expect("a folded value has a download link");
                assert_eq!(
                    link,
                    format!("/fib/{}?download", row.n),
                    "download link of F({})",
                    row.n
                );
            }
            other => panic!(
                "row F({}) shows neither a value nor a fold: {other:?}",
                row.n
            ),
        }
    }
}

/// The browser session's work, separate so that the session is closed however it ends.
async fn exercise(client: &Client, base: &str, shots: &Path) {
    client
        .set_window_size(1280, 1100)
        .await
        .expect("window size");
    client.goto(base).await.expect("open the page");
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#fibo-form"))
        .await
        .expect("the form #fibo-form");

    // Every control has a label, and nothing is loaded from anywhere but the server.
    let unlabelled = client
        .execute(
            r#"return [...document.querySelectorAll("input, select, textarea, button")]
                .filter(e => e.type !== "hidden" && !(e.labels && e.labels.length)
                    && !e.getAttribute("aria-label") && !e.textContent.trim())
                .map(e => e.outerHTML);"#,
            vec![],
        )
        .await
        .expect("label check");
    assert_eq!(unlabelled, json!([]), "controls without a label");
    let foreign = client
        .execute(
            r#"return performance.getEntriesByType("resource").map(r => r.name)
                .filter(u => !u.startsWith(location.origin));"#,
            vec![],
        )
        .await
        .expect("resource check");
    assert_eq!(foreign, json!([]), "the page loads nothing from elsewhere");

    // 1. Values, as they stream.
    submit(client, INPUTS, "value", None).await;
    let rows = read_rows(client).await;
    check_values(&rows, &INPUT_NS);
    let status = status_line(client).await;
    assert!(status.starts_with("11 values, "), "status line: {status:?}");
    assert!(status.ends_with(" ms"), "status line: {status:?}");
    assert_eq!(page_text(client, "#error").await, "", "no error shown");
    client
        .screenshot()
        .await
        .map(|png| std::fs::write(shots.join("serve_page.png"), png))
        .expect("screenshot")
        .expect("write target/serve_page.png");

    // On a phone: nothing wider than the screen.
    client.set_window_size(390, 844).await.expect("phone size");
    client
        .execute(
            r#"document.querySelector('#results tr[data-n="95"]').scrollIntoView();"#,
            vec![],
        )
        .await
        .expect("scroll to the results");
    wait_until(
        client,
        "the page to fit a phone's width",
        "return document.documentElement.scrollWidth <= window.innerWidth;",
    )
    .await;
    client
        .screenshot()
        .await
        .map(|png| std::fs::write(shots.join("serve_page_phone.png"), png))
        .expect("phone screenshot")
        .expect("write target/serve_page_phone.png");
    client
        .set_window_size(1280, 1100)
        .await
        .expect("window size");

    // "show all" replaces the fold with the whole value, fetched from GET /fib/{n}.
    client
        .find(Locator::Css(
            r#"#results tr[data-n="100000"] button.show-all"#,
        ))
        .await
        .expect("show all button of F(100000)")
        .click()
        .await
        .expect("click show all");
    wait_until(
        client,
        "the whole of F(100000)",
        r#"const c = document.querySelector('#results tr[data-n="100000"] code.num');
           return !c.classList.contains("folded") && c.textContent.length > 1000;"#,
    )
    .await;
    let whole = client
        .execute(
            r#"return document.querySelector('#results tr[data-n="100000"] code.num').textContent;"#,
            vec![],
        )
        .await
        .expect("read the whole value");
    assert_eq!(
        whole.as_str(),
        Some(fib_decimal(100_000).as_str()),
        "show all: F(100000)"
    );
    // Pressed again, it folds the value back.
    client
        .find(Locator::Css(
            r#"#results tr[data-n="100000"] button.show-all"#,
        ))
        .await
        .expect("fold button of F(100000)")
        .click()
        .await
        .expect("click fold");
    wait_until(
        client,
        "F(100000) folded again",
        r#"const c = document.querySelector('#results tr[data-n="100000"] code.num');
           return c.classList.contains("folded") && c.querySelector(".head") !== null;"#,
    )
    .await;

    // 2. The same inputs again: every value from the cache.
    submit(client, INPUTS, "value", None).await;
    let rows = read_rows(client).await;
    check_values(&rows, &INPUT_NS);
    let not_cached: Vec<(u64, &str)> = rows
        .iter()
        .filter(|r| r.cache != "hit")
        .map(|r| (r.n, r.cache.as_str()))
        .collect();
    assert_eq!(
        not_cached,
        [],
        "the second submission's values come from the cache"
    );
    let status = status_line(client).await;
    assert!(
        status.starts_with("11 values, 11 from cache, "),
        "status line: {status:?}"
    );

    // 3. Last K digits.
    let ns = [10u64, 1000, 100_000];
    submit(client, "10 1000 1e5", "last", Some("5")).await;
    let rows = read_rows(client).await;
    assert_eq!(rows.iter().map(|r| r.n).collect::<Vec<_>>(), ns);
    for row in &rows {
        let full = fib_decimal(row.n);
        let last = &full[full.len().saturating_sub(5)..];
        let shown = row.value.as_deref().expect("last digits shown");
        assert_eq!(
            shown.trim_start_matches('…'),
            last,
            "last 5 digits of F({})",
            row.n
        );
        assert_eq!(
            row.digits,
            Some(full.len() as u64),
            "digit count of F({})",
            row.n
        );
    }

    // 4. mod M.
    let m = 1_000_000_007u32;
    submit(client, "10 1000 1e5", "mod", Some(&m.to_string())).await;
    let rows = read_rows(client).await;
    assert_eq!(rows.iter().map(|r| r.n).collect::<Vec<_>>(), ns);
    for row in &rows {
        let want = (fib_decimal(row.n).parse::<BigUint>().expect("decimal") % m).to_string();
        assert_eq!(
            row.value.as_deref(),
            Some(want.as_str()),
            "F({}) mod {m}",
            row.n
        );
    }

    // 5. Digit counts only.
    submit(client, "10 1000 1e5", "digits", None).await;
    let rows = read_rows(client).await;
    assert_eq!(rows.iter().map(|r| r.n).collect::<Vec<_>>(), ns);
    for row in &rows {
        assert_eq!(
            row.digits,
            Some(fib_decimal(row.n).len() as u64),
            "digits of F({})",
            row.n
        );
    }

    // 6. A bad token: the server's message inline, the input marked invalid, no rows.
    submit(client, "10 1x0", "value", None).await;
    let error = page_text(client, "#error").await;
    assert!(
        error.contains("1x0"),
        "the error names the bad token: {error:?}"
    );
    let alert = client
        .find(Locator::Css("#error"))
        .await
        .expect("#error")
        .attr("role")
        .await
        .expect("role of #error");
    assert_eq!(alert.as_deref(), Some("alert"), "#error is announced");
    let invalid = client
        .find(Locator::Css("#inputs"))
        .await
        .expect("#inputs")
        .attr("aria-invalid")
        .await
        .expect("aria-invalid of #inputs");
    assert_eq!(
        invalid.as_deref(),
        Some("true"),
        "#inputs is marked invalid"
    );
    assert!(
        read_rows(client).await.is_empty(),
        "no rows for a rejected request"
    );

    // 7. Streaming and Cancel: rows appear while the batch still runs, and Cancel stops it.
    // Far apart, so that each value is computed on its own (neighbours come by one addition).
    let spread: Vec<String> = (0..30u64)
        .map(|k| (1_000_000 + k * 100_003).to_string())
        .collect();
    start_submit(client, &spread.join(" "), "value", None).await;
    wait_until(
        client,
        "the first rows while the batch still runs",
        r#"return document.querySelectorAll('#results tr').length > 0
               && document.getElementById("status").textContent.startsWith("computing")
               && !document.getElementById("cancel").disabled;"#,
    )
    .await;
    client
        .find(Locator::Css("#cancel"))
        .await
        .expect("#cancel")
        .click()
        .await
        .expect("click #cancel");
    wait_until(
        client,
        "the page to say the batch was cancelled",
        r#"return document.getElementById("status").textContent.startsWith("cancelled")
               && !document.getElementById("go").disabled;"#,
    )
    .await;
    let shown = read_rows(client).await.len();
    assert!(
        (1..spread.len()).contains(&shown),
        "cancelled after some of the {} values, not all: {shown}",
        spread.len()
    );
}

fn program(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_in_headless_chromium() {
    let chromedriver = program("PARKIT_CHROMEDRIVER", "/usr/bin/chromedriver");
    let chromium = program("PARKIT_CHROMIUM", "/usr/bin/chromium");
    let missing: Vec<&Path> = [&chromedriver, &chromium]
        .into_iter()
        .filter(|p| !p.exists())
        .map(PathBuf::as_path)
        .collect();
    if !missing.is_empty() {
        if std::env::var("PARKIT_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
            panic!("PARKIT_REQUIRE_BROWSER=1 but not installed: {missing:?}");
        }
        eprintln!(
            "note: skipping the browser test, not installed: {missing:?} (apt-get install chromium chromium-driver)"
        );
        return;
    }

    let profile = tempfile::tempdir().expect("a temporary browser profile");
    let mut processes = Processes {
        children: Vec::new(),
        profile,
    };
    let (server, addr) = start_server();
    processes.children.push(("fibo serve", server));
    let (driver, port) = start_chromedriver(&chromedriver);
    processes.children.push(("chromedriver", driver));

    let args: Vec<String> = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([format!(
        "--user-data-dir={}",
        processes.profile.path().display()
    )])
    .collect();
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": chromium, "args": args },
    });
    let Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    // fantoccini without its TLS features has no ready-made connector: it takes hyper-util's
    // plain HTTP one (chromedriver is on loopback), which needs the dev-dependency
    // `hyper-util = { version = "0.1", features = ["client-legacy", "http1", "tokio"] }`.
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a chromium session through chromedriver");

    let shots = target_dir();
    let outcome =
        std::panic::AssertUnwindSafe(exercise(&client, &format!("http://{addr}/"), &shots))
            .catch_unwind()
            .await;
    // Close the session (chromium quits) before the guard kills chromedriver and the server.
    let _ = client.close().await;
    processes.check_alive();
    drop(processes);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    let mut png = [0u8; 8];
    std::fs::File::open(shots.join("serve_page.png"))
        .and_then(|mut f| f.read_exact(&mut png))
        .expect("read the screenshot back");
    assert_eq!(&png, b"\x89PNG\r\n\x1a\n", "the screenshot is a PNG");
}
