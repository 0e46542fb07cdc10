//! Crawls web pages with the book's three-stage pipeline (fetch -> extract links -> organize,
//! the organizer feeding new URLs back to the fetchers) and prints a summary table, or the
//! whole report as JSON.
//!
//! ```sh
//! cargo run --release --example crawl --features crawl -- [URL...] [--depth N] [--max-pages N]
//!     [--fetchers N] [--parsers N] [--all-hosts] [--timeout-ms N] [--delay-ms N] [--json]
//! ```
//!
//! With no URL it starts a generated site of 1,000 pages (`--site-pages N`) on 127.0.0.1 at a
//! free port, with cycles, broken links, redirects and slow pages, and crawls that, so
//! something shows at once without touching the network. Given URLs, it crawls them, staying
//! on their hosts unless `--all-hosts`, with a politeness delay of 200 ms per host unless
//! `--delay-ms` says otherwise. The example needs the `crawl` feature: without
//! `--features crawl`, cargo stops with "requires the features: `crawl`".
//!
//! Try `--fetchers 1` against the default 16 on the local site: the fetch stage waits on the
//! network, so more fetch threads than cores pay off, while the parsers, on the CPU, want
//! about one per core. The table's last line names the stage that held the crawl back.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use parkit::crawl::{Crawler, Fetcher};
use parkit_test_site::{LocalSite, SitePlan};

/// Crawl web pages with parkit's fetch -> extract -> organize pipeline.
#[derive(Debug, Parser)]
#[command(name = "crawl")]
struct Args {
    /// Start URLs. None: crawl a generated site served on 127.0.0.1.
    urls: Vec<String>,
    /// Follow links up to this depth (start URLs are at depth 0).
    #[arg(long, default_value_t = 10)]
    depth: u32,
    /// Fetch at most this many URLs.
    #[arg(long, default_value_t = 10_000)]
    max_pages: usize,
    /// Threads fetching pages (requests in flight at once).
    #[arg(long, default_value_t = 16, value_parser = positive)]
    fetchers: usize,
    /// Threads parsing HTML.
    #[arg(long, default_value_t = 2, value_parser = positive)]
    parsers: usize,
    /// Follow links to other hosts too (within the depth and page limits).
    #[arg(long)]
    all_hosts: bool,
    /// Time limit of each request, in milliseconds.
    #[arg(long, default_value_t = 10_000, value_parser = positive_u64)]
    timeout_ms: u64,
    /// Least time between two requests to one host, in milliseconds [default: 0 for the
    /// local site, 200 for URLs given].
    #[arg(long)]
    delay_ms: Option<u64>,
    /// Print the whole report as JSON instead of the summary table.
    #[arg(long)]
    json: bool,
    /// Pages of the generated site, when no URL is given.
    #[arg(long, default_value_t = 1000, value_parser = positive)]
    site_pages: usize,
}

fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

fn positive_u64(s: &str) -> Result<u64, String> {
    positive(s).map(|n| n as u64)
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Keep the local site alive for the whole crawl.
    let (site, urls, default_delay) = if args.urls.is_empty() {
        let plan = SitePlan::new(args.site_pages).slow_pages(
            50,
            Duration::from_millis(50),
            Duration::from_millis(200),
        );
        let site = match LocalSite::start(plan) {
            Ok(site) => site,
            Err(e) => {
                eprintln!("crawl: cannot start the local site: {e}");
                return ExitCode::FAILURE;
            }
        };
        let url = site.url("/");
        eprintln!(
            "crawl: no URL given; serving a generated site of {} pages at {url}",
            args.site_pages
        );
        (Some(site), vec![url], 0)
    } else {
        (None, args.urls.clone(), 200)
    };
    let delay = Duration::from_millis(args.delay_ms.unwrap_or(default_delay));
    eprintln!(
        "crawl: {} fetchers, {} parsers, depth {}, at most {} pages, timeout {} ms, delay {} ms",
        args.fetchers,
        args.parsers,
        args.depth,
        args.max_pages,
        args.timeout_ms,
        delay.as_millis()
    );
    let crawler = Crawler::new(urls)
        .max_depth(args.depth)
        .max_pages(args.max_pages)
        .fetchers(args.fetchers)
        .parsers(args.parsers)
        .same_host_only(!args.all_hosts)
        .fetcher(
            Fetcher::builder()
                .timeout(Duration::from_millis(args.timeout_ms))
                .delay(delay)
                .build(),
        );
    match crawler.run() {
        Ok(report) => {
            if args.json {
                println!("{}", report.to_json());
            } else {
                println!("{report}");
            }
            drop(site);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("crawl: {e}");
            ExitCode::FAILURE
        }
    }
}
