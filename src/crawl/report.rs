//! [`CrawlReport`] and its records: pages, broken links, redirects, totals; the summary table
//! and the JSON form.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use url::Url;

use super::fetch::{FetchError, FetchErrorKind, Redirect};
use crate::pipeline::{Report, StageStats};

/// What fetching a URL gave: an HTTP status, or no complete response.
///
/// In the JSON report: `"status": 200, "error": null` or
/// `"status": null, "error": {"kind": "timeout", "message": "..."}`.
///
/// Marked `#[non_exhaustive]`: match it with a wildcard arm.
///
/// # Examples
///
/// ```
/// use parkit::crawl::Outcome;
///
/// assert!(!Outcome::Status(200).is_broken());
/// assert!(Outcome::Status(404).is_broken());
/// assert_eq!(Outcome::Status(301).status(), Some(301));
/// assert_eq!(Outcome::Status(404).to_string(), "404");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// A response with this status code.
    Status(u16),
    /// No complete response: a timeout, a refused connection, too many redirects, ...
    Failed(FetchError),
}

impl Outcome {
    /// Whether a link to this URL is broken: status 400 or more, or no response.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::crawl::Outcome;
    ///
    /// assert!(Outcome::Status(500).is_broken() && !Outcome::Status(302).is_broken());
    /// ```
    pub fn is_broken(&self) -> bool {
        match self {
            Outcome::Status(status) => *status >= 400,
            Outcome::Failed(_) => true,
        }
    }

    /// The status code, `None` for a failure.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::crawl::Outcome;
    ///
    /// assert_eq!(Outcome::Status(200).status(), Some(200));
    /// ```
    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Status(status) => Some(*status),
            Outcome::Failed(_) => None,
        }
    }

    /// The error for a failure, `None` for a status.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::crawl::Outcome;
    ///
    /// assert!(Outcome::Status(200).error().is_none());
    /// ```
    pub fn error(&self) -> Option<&FetchError> {
        match self {
            Outcome::Status(_) => None,
            Outcome::Failed(error) => Some(error),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Status(status) => write!(f, "{status}"),
            Outcome::Failed(error) => write!(f, "{}", error.kind()),
        }
    }
}

/// One fetched URL in a [`CrawlReport`].
///
/// # Examples
///
/// ```
/// use parkit::crawl::Crawler;
/// use parkit_test_site::{LocalSite, SitePlan};
///
/// let site = LocalSite::start(SitePlan::new(10))?;
/// let report = Crawler::new([site.url("/")]).run()?;
/// let home = report.page(&site.url("/")).unwrap();
/// assert_eq!((home.depth, home.outcome.status()), (0, Some(200)));
/// assert!(home.links_out > 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PageRecord {
    /// The URL fetched.
    pub url: Url,
    /// Its distance in links from the nearest start URL (redirects add none).
    pub depth: u32,
    /// Its status, or why there was no response (`status` and `error` in JSON).
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The distinct links found on it (0 unless it is a 2xx HTML page).
    pub links_out: usize,
    /// For a redirect: where to.
    pub redirect_to: Option<Url>,
    /// Its `Content-Type` header.
    pub content_type: Option<String>,
    /// Bytes of body read.
    pub bytes: u64,
    /// Whether the body was cut at the size cap.
    pub truncated: bool,
    /// Time of the request, from sending to the end of the body (`time_ms` in JSON); for a
    /// URL with no response, the time until the request gave up.
    #[serde(rename = "time_ms", serialize_with = "super::json::ms")]
    pub time: Duration,
}

/// A URL that some pages link to and that is broken (status 400 or more, no response, or a
/// redirect chain too long), with the pages it was found on.
///
/// # Examples
///
/// ```
/// use parkit::crawl::Crawler;
/// use parkit_test_site::{LocalSite, SitePlan};
///
/// let site = LocalSite::start(SitePlan::new(40))?;
/// let report = Crawler::new([site.url("/")]).run()?;
/// let missing = report.broken.iter().find(|b| b.url.path() == "/missing/5").unwrap();
/// assert_eq!(missing.problem.status(), Some(404));
/// assert_eq!(missing.found_on[0].path(), "/page/5");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BrokenLink {
    /// The broken URL.
    pub url: Url,
    /// What fetching it gave (`status` and `error` in JSON).
    #[serde(flatten)]
    pub problem: Outcome,
    /// The pages linking to it (or redirecting to it), sorted; empty for a start URL.
    pub found_on: Vec<Url>,
}

/// The counts of a crawl.
///
/// # Examples
///
/// ```
/// use parkit::crawl::Crawler;
/// use parkit_test_site::{LocalSite, SitePlan};
///
/// let site = LocalSite::start(SitePlan::new(30))?;
/// let report = Crawler::new([site.url("/")]).run()?;
/// let t = &report.totals;
/// assert_eq!(t.fetched, report.pages.len());
/// assert_eq!(t.fetched, t.ok + t.redirects + t.http_errors + t.failed);
/// assert!(t.pages_per_sec() > 0.0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Totals {
    /// Distinct start URLs.
    pub start_urls: usize,
    /// URLs fetched (each once).
    pub fetched: usize,
    /// Of those, with status 2xx.
    pub ok: usize,
    /// With status 3xx.
    pub redirects: usize,
    /// With status 400 or more.
    pub http_errors: usize,
    /// With no response.
    pub failed: usize,
    /// Of the failed, those that timed out.
    pub timeouts: usize,
    /// Broken URLs (entries of [`CrawlReport::broken`]).
    pub broken: usize,
    /// Links found, summed over pages (each page's links counted once).
    pub links: u64,
    /// Distinct URLs seen, fetched or not.
    pub distinct_urls: usize,
    /// URLs not fetched because they are on another host.
    pub other_hosts: usize,
    /// URLs not fetched because they are deeper than the depth limit.
    pub beyond_depth: usize,
    /// URLs not fetched because the page limit was reached.
    pub beyond_max_pages: usize,
    /// The largest depth of a fetched page.
    pub max_depth: u32,
    /// Bytes of body read, summed.
    pub bytes: u64,
    /// Wall-clock time of the crawl (`elapsed_ms` in JSON).
    #[serde(rename = "elapsed_ms", serialize_with = "super::json::ms")]
    pub elapsed: Duration,
}

impl Totals {
    /// Fetched URLs per second of wall-clock time.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::crawl::Totals;
    ///
    /// assert_eq!(Totals::default().pages_per_sec(), 0.0);
    /// ```
    pub fn pages_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.fetched as f64 / secs
        } else {
            0.0
        }
    }
}

/// What a crawl found: every fetched page, the broken links with the pages they were found
/// on, the redirects, the totals, and the pipeline's per-stage counters.
///
/// `Display` prints a summary table with at most 10 broken links and 10 redirects; the
/// alternate form (`{:#}`) lists them all. [`to_json`](CrawlReport::to_json) gives the whole
/// report as JSON, and the report implements serde's `Serialize` in that shape.
///
/// Pages are sorted by depth, then URL; broken links by URL; redirects by source URL, so the
/// report of a crawl that did not reach its page limit is the same whatever the number of
/// workers (times aside).
///
/// # Examples
///
/// ```
/// use parkit::crawl::Crawler;
/// use parkit_test_site::{LocalSite, SitePlan};
///
/// let site = LocalSite::start(SitePlan::new(50))?;
/// let report = Crawler::new([site.url("/")]).fetchers(8).run()?;
/// let table = report.to_string();
/// assert!(table.contains("broken links") && table.contains("bottleneck"));
/// let json = report.to_json();
/// assert!(json.starts_with("{\n  \"totals\": {"));
/// assert_eq!(json.matches("\"links_out\"").count(), report.pages.len());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CrawlReport {
    /// Every URL fetched, sorted by depth, then URL.
    pub pages: Vec<PageRecord>,
    /// Broken URLs, sorted by URL.
    pub broken: Vec<BrokenLink>,
    /// Redirects met, sorted by source URL.
    pub redirects: Vec<Redirect>,
    /// The counts.
    pub totals: Totals,
    /// The pipeline run's counters: the source (which waits on the frontier, so its busy
    /// time is mostly waiting), `fetch`, `extract` and `organize`.
    pub pipeline: Report,
}

impl CrawlReport {
    /// The record of a fetched URL, if it was fetched (`url` is parsed, so any spelling of
    /// the same URL finds it).
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::crawl::Crawler;
    /// use parkit_test_site::{LocalSite, SitePlan};
    ///
    /// let site = LocalSite::start(SitePlan::new(10))?;
    /// let report = Crawler::new([site.url("/")]).run()?;
    /// assert!(report.page(&site.url("/page/1#intro")).is_some());
    /// assert!(report.page(&site.url("/nowhere")).is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn page(&self, url: &str) -> Option<&PageRecord> {
        let mut url = Url::parse(url).ok()?;
        url.set_fragment(None);
        self.pages.iter().find(|p| p.url == url)
    }

    /// The stage with the highest busy time per worker among `fetch`, `extract` and
    /// `organize`: the one to give more workers. (The pipeline [`Report`]'s own
    /// [`bottleneck`](Report::bottleneck) also weighs the source, which here spends the
    /// crawl waiting on the frontier.)
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::crawl::Crawler;
    /// use parkit_test_site::{LocalSite, SitePlan};
    ///
    /// let site = LocalSite::start(SitePlan::new(10))?;
    /// let report = Crawler::new([site.url("/")]).run()?;
    /// let name = report.bottleneck().unwrap().name.as_str();
    /// assert!(["fetch", "extract", "organize"].contains(&name));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bottleneck(&self) -> Option<&StageStats> {
        self.pipeline.stages().iter().reduce(|best, s| {
            if s.busy_per_worker() > best.busy_per_worker() {
                s
            } else {
                best
            }
        })
    }

    /// The whole report as pretty-printed JSON (`serde_json`'s layout, two spaces per level):
    /// an object with `totals` (with `pages_per_sec`), `pages`, `broken`, `redirects` and
    /// `pipeline` (one row per stage, the crawl's bottleneck and the elapsed time). Times are
    /// fractional milliseconds to the microsecond, in fields ending `_ms`. Each page reads
    ///
    /// ```text
    /// {"url": "http://127.0.0.1:8080/page/1", "depth": 1, "status": 200, "error": null,
    ///  "links_out": 4, "redirect_to": null, "content_type": "text/html", "bytes": 412,
    ///  "truncated": false, "time_ms": 0.25}
    /// ```
    ///
    /// where a page with no response has `"status": null` and
    /// `"error": {"kind": "timeout", "message": "..."}`; a broken link reads
    /// `{"url", "status", "error", "found_on": [...]}` and a redirect
    /// `{"from", "to", "status"}`.
    ///
    /// The report implements serde's `Serialize` in this shape, so it can also go into a
    /// document of your own, or to another format.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::crawl::Crawler;
    /// use parkit_test_site::{LocalSite, SitePlan};
    ///
    /// let site = LocalSite::start(SitePlan::new(10))?;
    /// let report = Crawler::new([site.url("/")]).run()?;
    /// let json: serde_json::Value = serde_json::from_str(&report.to_json())?;
    /// assert_eq!(json["totals"]["fetched"], report.totals.fetched);
    /// assert_eq!(json["pages"][0]["url"], site.url("/"));
    /// assert_eq!(json["pages"][0]["status"], 200);
    /// assert_eq!(json["pipeline"]["stages"][1]["name"], "fetch");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a crawl report is plain JSON")
    }
}

/// Bytes in the unit that keeps them short.
fn size(bytes: u64) -> String {
    match bytes {
        b if b < 1 << 10 => format!("{b} B"),
        b if b < 1 << 20 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    }
}

impl fmt::Display for CrawlReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.totals;
        let limit = if f.alternate() { usize::MAX } else { 10 };
        let plural = if t.start_urls == 1 { "" } else { "s" };
        writeln!(
            f,
            "crawled {} URLs from {} start URL{plural} in {:.2?}: {:.1} pages/s, {} read, depth up to {}",
            t.fetched,
            t.start_urls,
            t.elapsed,
            t.pages_per_sec(),
            size(t.bytes),
            t.max_depth
        )?;
        writeln!(f, "  {:<14} {:>8}", "2xx", t.ok)?;
        writeln!(f, "  {:<14} {:>8}", "3xx", t.redirects)?;
        writeln!(f, "  {:<14} {:>8}", "4xx/5xx", t.http_errors)?;
        writeln!(
            f,
            "  {:<14} {:>8}   ({} timed out)",
            "no response", t.failed, t.timeouts
        )?;
        writeln!(
            f,
            "links: {} found, {} distinct URLs; not fetched: {} on other hosts, {} beyond the \
             depth limit, {} beyond the page limit",
            t.links, t.distinct_urls, t.other_hosts, t.beyond_depth, t.beyond_max_pages
        )?;
        writeln!(f, "broken links: {}", self.broken.len())?;
        let width = self
            .broken
            .iter()
            .take(limit)
            .map(|b| b.url.as_str().len())
            .max()
            .unwrap_or(0);
        for b in self.broken.iter().take(limit) {
            let on = match b.found_on.as_slice() {
                [] => "(a start URL)".to_owned(),
                [one] => format!("on {one}"),
                [first, rest @ ..] => format!("on {first} (+{} more)", rest.len()),
            };
            writeln!(f, "  {:<8} {:<width$}  {on}", b.problem.to_string(), b.url)?;
        }
        if self.broken.len() > limit {
            writeln!(f, "  ... and {} more", self.broken.len() - limit)?;
        }
        writeln!(f, "redirects: {}", self.redirects.len())?;
        for r in self.redirects.iter().take(limit) {
            writeln!(f, "  {r}")?;
        }
        if self.redirects.len() > limit {
            writeln!(f, "  ... and {} more", self.redirects.len() - limit)?;
        }
        writeln!(f, "pipeline:")?;
        writeln!(f, "{}", self.pipeline.table().indent("  "))?;
        match self.bottleneck() {
            Some(b) => write!(
                f,
                "  bottleneck: {} (the source's busy time is time spent waiting for new URLs)",
                b.name
            ),
            None => write!(f, "  no stages"),
        }
    }
}

/// The outcome of a URL whose redirect chain is longer than the limit.
pub(crate) fn too_many_redirects(limit: u32) -> Outcome {
    Outcome::Failed(FetchError::new(
        FetchErrorKind::Redirect,
        format!("more than {limit} redirects in a row"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_show_their_kind() {
        let failed = too_many_redirects(5);
        assert!(failed.is_broken() && failed.status().is_none());
        assert_eq!(failed.to_string(), "redirect");
        assert_eq!(
            failed.error().unwrap().to_string(),
            "redirect: more than 5 redirects in a row"
        );
    }

    #[test]
    fn sizes_and_durations_are_short() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(3 << 19), "1.5 MiB");
        // The header's elapsed time, as the pipeline's table writes times from 1 ms up.
        assert_eq!(format!("{:.2?}", Duration::from_millis(1500)), "1.50s");
        assert_eq!(format!("{:.2?}", Duration::from_micros(14_755)), "14.76ms");
    }
}
