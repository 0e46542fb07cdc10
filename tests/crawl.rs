//! Protects `parkit::crawl` against a generated site of 1,000 pages on 127.0.0.1 with cycles,
//! broken links, redirects (one a loop), slow pages and a page that never answers: every
//! reachable URL fetched exactly once (counted by the server), exact depths, broken links
//! with the pages they are on, redirects followed and reported, the depth and page limits,
//! timeouts, the same result whatever the number of workers, and no hang.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use parkit::crawl::{CrawlReport, Crawler, FetchErrorKind, Fetcher, Outcome, Url};
use parkit_test_site::{LocalSite, SitePlan};

mod common;
use common::watchdog;

const PAGES: usize = 1000;
const TIMEOUT: Duration = Duration::from_millis(500);

/// The test site: 1,000 pages, one in 50 slow (50-200 ms), and `/hang`.
fn full_site() -> LocalSite {
    let plan = SitePlan::new(PAGES)
        .slow_pages(50, Duration::from_millis(50), Duration::from_millis(200))
        .hang(true);
    LocalSite::start(plan).expect("bind 127.0.0.1:0")
}

fn crawl(what: &str, crawler: Crawler) -> CrawlReport {
    watchdog(20, what, move || crawler.run().expect("the crawl runs"))
}

/// Paths (the site is one host) of the URLs, as a set.
fn paths<'a>(urls: impl IntoIterator<Item = &'a Url>) -> BTreeSet<String> {
    urls.into_iter().map(|u| u.path().to_owned()).collect()
}

/// The pages of the site that link (or redirect) to each path reachable from `/`.
fn referrers(site: &LocalSite) -> BTreeMap<String, BTreeSet<String>> {
    let mut on: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for page in site.depths_from("/").into_keys() {
        for target in site.links(&page).into_iter().chain(site.redirect(&page)) {
            on.entry(target).or_default().insert(page.clone());
        }
    }
    on
}

/// Asserts that the server saw exactly `expected` paths, each once.
fn assert_fetched_once(site: &LocalSite, expected: &BTreeSet<String>) {
    let hits = site.hits();
    let twice: Vec<_> = hits.iter().filter(|&(_, &n)| n != 1).collect();
    assert!(twice.is_empty(), "fetched more than once: {twice:?}");
    let seen: BTreeSet<String> = hits.into_keys().collect();
    let missed: Vec<_> = expected.difference(&seen).collect();
    let extra: Vec<_> = seen.difference(expected).collect();
    assert!(
        missed.is_empty() && extra.is_empty(),
        "missed {missed:?}, extra {extra:?}"
    );
}

#[test]
fn full_crawl_fetches_every_reachable_url_exactly_once() {
    let site = full_site();
    let report = crawl(
        "full crawl",
        Crawler::new([site.url("/")])
            .max_depth(u32::MAX)
            .fetchers(16)
            .fetcher(Fetcher::builder().timeout(TIMEOUT).build()),
    );
    let expected = site.depths_from("/");
    assert!(
        expected.len() > PAGES,
        "the site has {} paths",
        expected.len()
    );
    assert_fetched_once(&site, &expected.keys().cloned().collect());

    // The report agrees with the server, with exact shortest depths.
    let got: BTreeMap<String, u32> = report
        .pages
        .iter()
        .map(|p| (p.url.path().to_owned(), p.depth))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(report.totals.fetched, expected.len());
    assert_eq!(report.totals.max_depth, *expected.values().max().unwrap());

    // Not links: inside a comment, in a text file, on another host name, other schemes.
    assert_eq!(report.totals.other_hosts, 1);
    assert_eq!(report.totals.distinct_urls, expected.len() + 1);
    let home = report.page(&site.url("/")).unwrap();
    assert_eq!(home.links_out, site.links("/").len() + 1); // + the other host

    // Broken links: every /missing/i (404) and /hang (timeout), with the pages they are on.
    let on = referrers(&site);
    let missing: BTreeSet<String> = expected
        .keys()
        .filter(|p| p.starts_with("/missing/"))
        .cloned()
        .collect();
    assert!(missing.len() > 20);
    let broken = paths(report.broken.iter().map(|b| &b.url));
    let mut want = missing.clone();
    want.insert("/hang".into());
    assert_eq!(broken, want);
    for b in &report.broken {
        let path = b.url.path();
        assert_eq!(paths(&b.found_on), on[path], "found_on of {path}");
        if path == "/hang" {
            let error = b.problem.error().expect("no response from /hang");
            assert_eq!(error.kind(), FetchErrorKind::Timeout, "{error}");
        } else {
            assert_eq!(b.problem, Outcome::Status(404));
        }
    }
    assert_eq!(paths(&report.broken[0].found_on).len(), 1);
    assert_eq!(
        (report.totals.timeouts, report.totals.failed),
        (1, 1),
        "{report}"
    );
    assert_eq!(report.totals.http_errors, missing.len());

    // Redirects: followed (their targets are in `expected`, fetched once) and reported.
    let redirects: BTreeSet<(String, String, u16)> = report
        .redirects
        .iter()
        .map(|r| (r.from.path().to_owned(), r.to.path().to_owned(), r.status))
        .collect();
    let want: BTreeSet<(String, String, u16)> = expected
        .keys()
        .filter_map(|p| {
            let to = site.redirect(p)?;
            let status = if p.starts_with("/loop/") { 302 } else { 301 };
            Some((p.clone(), to, status))
        })
        .collect();
    assert!(want.len() >= 3, "{want:?}");
    assert_eq!(redirects, want);
    assert!(redirects.contains(&("/loop/b".into(), "/loop/a".into(), 302)));
    let old = report.page(&site.url("/old/3")).unwrap();
    assert_eq!(old.redirect_to.as_ref().unwrap().path(), "/page/100");
    assert_eq!(report.totals.redirects, want.len());

    // The outputs.
    let table = report.to_string();
    assert!(table.contains("bottleneck: "), "{table}");
    assert!(table.contains("/hang"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["totals"]["fetched"], expected.len());
    assert_eq!(
        json["broken"].as_array().unwrap().len(),
        report.totals.broken
    );
    let stages: Vec<&str> = json["pipeline"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["source", "fetch", "extract", "organize"]);
    let fetch = report.pipeline.stage("fetch").unwrap();
    assert_eq!((fetch.workers, fetch.items), (16, expected.len() as u64));
    assert_eq!(report.pipeline.stage("organize").unwrap().workers, 1);
}

#[test]
fn depth_limit_is_respected() {
    for max_depth in [0, 1, 3] {
        let site = LocalSite::start(SitePlan::new(PAGES)).unwrap();
        let report = crawl(
            "depth-limited crawl",
            Crawler::new([site.url("/")]).max_depth(max_depth),
        );
        let expected: BTreeMap<String, u32> = site
            .depths_from("/")
            .into_iter()
            .filter(|&(_, d)| d <= max_depth)
            .collect();
        assert_fetched_once(&site, &expected.keys().cloned().collect());
        let got: BTreeMap<String, u32> = report
            .pages
            .iter()
            .map(|p| (p.url.path().to_owned(), p.depth))
            .collect();
        assert_eq!(got, expected, "max depth {max_depth}");
        assert!(report.totals.beyond_depth > 0);
    }
}

#[test]
fn page_limit_is_respected() {
    for max_pages in [1, 50, 333] {
        let site = LocalSite::start(SitePlan::new(PAGES)).unwrap();
        let report = crawl(
            "page-limited crawl",
            Crawler::new([site.url("/")])
                .max_pages(max_pages)
                .fetchers(8),
        );
        assert_eq!(report.totals.fetched, max_pages);
        assert_eq!(site.hits().values().sum::<u64>(), max_pages as u64);
        assert!(site.hits().values().all(|&n| n == 1));
        assert!(report.totals.beyond_max_pages > 0);
        // Fetched pages are reachable, never nearer than their shortest distance.
        let depths = site.depths_from("/");
        for page in &report.pages {
            assert!(page.depth >= depths[page.url.path()], "{}", page.url);
        }
    }
}

#[test]
fn same_report_whatever_the_number_of_workers() {
    let site = LocalSite::start(SitePlan::new(300)).unwrap();
    let summary = |fetchers: usize, parsers: usize| {
        site.reset_hits();
        let report = crawl(
            "crawl",
            Crawler::new([site.url("/")])
                .max_depth(u32::MAX)
                .fetchers(fetchers)
                .parsers(parsers),
        );
        assert!(site.hits().values().all(|&n| n == 1));
        let pages: Vec<_> = report
            .pages
            .iter()
            .map(|p| {
                (
                    p.url.clone(),
                    p.depth,
                    p.outcome.clone(),
                    p.links_out,
                    p.redirect_to.clone(),
                )
            })
            .collect();
        (pages, report.broken, report.redirects)
    };
    let one = summary(1, 1);
    assert_eq!(one, summary(8, 2));
    assert_eq!(one, summary(32, 3));
}

#[test]
fn a_silent_server_times_out() {
    let site = full_site();
    let url: Url = site.url("/hang").parse().unwrap();
    let err = watchdog(10, "fetch /hang", move || {
        Fetcher::builder()
            .timeout(TIMEOUT)
            .build()
            .fetch(&url)
            .unwrap_err()
    });
    assert_eq!(err.kind(), FetchErrorKind::Timeout, "{err}");
    assert_eq!(site.hits()["/hang"], 1);
}

#[test]
fn fetch_follows_redirects_within_bounds_and_caps_bodies() {
    let site = LocalSite::start(SitePlan::new(PAGES)).unwrap();
    let fetcher = Fetcher::builder().timeout(Duration::from_secs(5)).build();
    let page = fetcher
        .fetch(&site.url("/old/100").parse().unwrap())
        .unwrap();
    assert_eq!(page.status, 200);
    assert_eq!(page.url.path(), "/old/100");
    assert_eq!(page.final_url.path(), site.redirect("/old/100").unwrap());
    assert_eq!(page.redirects.len(), 1);
    // Links resolve against where the page ended, not where it was asked for.
    let links = paths(&page.links());
    let want: BTreeSet<String> = site.links(page.final_url.path()).into_iter().collect();
    assert_eq!(links, want);

    let looped = fetcher.fetch(&site.url("/loop/a").parse().unwrap());
    assert_eq!(looped.unwrap_err().kind(), FetchErrorKind::Redirect);
    assert_eq!(site.hits()["/loop/a"], 3); // a, b, a, b, a, b: 5 redirects, then give up
    assert_eq!(site.hits()["/loop/b"], 3);

    let big = fetcher.fetch(&site.url("/big").parse().unwrap()).unwrap();
    assert!(!big.truncated && big.body.len() > 256 << 10);
    assert!(paths(&big.links()).contains("/after-the-cap"));
    let capped = Fetcher::builder().max_body(10_000).build();
    let big = capped.fetch(&site.url("/big").parse().unwrap()).unwrap();
    assert!(big.truncated);
    assert_eq!((big.bytes, big.body.len()), (10_000, 10_000));
    assert!(big.links().is_empty());
}

#[test]
fn all_hosts_follows_links_to_other_host_names() {
    // The home page links to http://localhost:<port>/, the same server by another name.
    let site = LocalSite::start(SitePlan::new(20)).unwrap();
    let report = crawl(
        "all hosts",
        Crawler::new([site.url("/")])
            .max_depth(1)
            .same_host_only(false),
    );
    assert_eq!(report.totals.other_hosts, 0);
    let hosts: BTreeSet<String> = report
        .pages
        .iter()
        .map(|p| p.url.host_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        hosts,
        BTreeSet::from(["127.0.0.1".into(), "localhost".into()])
    );
    assert_eq!(site.hits()["/"], 2);
}

#[test]
fn politeness_delay_keeps_every_page() {
    let site = LocalSite::start(SitePlan::new(30)).unwrap();
    let report = crawl(
        "polite crawl",
        Crawler::new([site.url("/")])
            .max_depth(u32::MAX)
            .fetcher(Fetcher::builder().delay(Duration::from_millis(2)).build()),
    );
    assert_eq!(report.totals.fetched, site.depths_from("/").len());
    assert!(site.hits().values().all(|&n| n == 1));
}

#[test]
fn the_crawlers_fetcher_sets_the_body_cap() {
    let site = LocalSite::start(SitePlan::new(20)).unwrap();
    let fetcher = Fetcher::builder().max_body(4096).build();
    let report = crawl(
        "capped crawl",
        Crawler::new([site.url("/big")]).fetcher(fetcher),
    );
    assert_eq!(report.pages.len(), 1);
    assert!(report.pages[0].truncated && report.pages[0].bytes == 4096);
    assert_eq!(report.pages[0].links_out, 0); // the only link is past the cap
    assert_eq!(site.hits()["/big"], 1);
}
