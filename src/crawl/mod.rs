//! The book's web crawler: a three-stage pipeline (fetch, extract links, organize) whose last
//! stage feeds the URLs it discovers back to the first. Needs the cargo feature `crawl`.
//!
//! A [`Crawler`] starts from a few URLs and fetches every page it can reach within its limits
//! (depth, number of pages, same host by default), each exactly once, and hands back a
//! [`CrawlReport`]: every page with its status, depth, links and time, the broken links with
//! the pages they were found on, the redirects, totals, and the pipeline's per-stage counters.
//! The report prints as a summary table and as JSON.
//!
//! ```
//! use parkit::crawl::Crawler;
//! use parkit_test_site::{LocalSite, SitePlan};
//!
//! // A generated site of 60 pages on 127.0.0.1, with broken links and redirects.
//! let site = LocalSite::start(SitePlan::new(60))?;
//! let report = Crawler::new([site.url("/")]).fetchers(4).run()?;
//! assert!(report.totals.fetched > 60);
//! assert!(site.hits().values().all(|&n| n == 1)); // every page fetched exactly once
//! assert!(!report.broken.is_empty());
//! println!("{report}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The examples here crawl `parkit_test_site::LocalSite`, a generated site served on
//! 127.0.0.1 that counts its requests and knows its own link graph. It is test support from
//! this repository (`crates/parkit-test-site`, a dev-dependency), not part of parkit's API.
//!
//! The parts can be used on their own: a [`Fetcher`] (timeouts, bounded redirects, a
//! politeness delay per host, a cap on body sizes) works as a pipeline stage of its own, and
//! [`extract_links`] is a plain function over HTML text.
//!
//! # The pipeline, and the loop around it
//!
//! ```text
//!            +--------------------------------------------------------------+
//!            |  frontier: unbounded channel of new URLs + count in flight   |
//!            v                                                              |
//!   source --> fetch (many I/O workers) --> extract (a few CPU workers) --> organize (1)
//! ```
//!
//! - **fetch**: one HTTP request per URL with [`Fetcher::fetch_once`], on
//!   [`fetchers`](Crawler::fetchers) threads (16 by default). Requests block, which
//!   is fine: every stage of a [`Pipeline`](crate::pipeline::Pipeline) has threads of its own,
//!   never rayon's. Redirects are *not* followed here: a 3xx response goes on as a page whose
//!   `Location` the organizer treats like a link, so a redirect's target is fetched once even
//!   when other pages link to it too, and a redirect loop ends like any cycle.
//! - **extract**: parses HTML with an HTML5 parser (`scraper`, over `html5ever`) and resolves
//!   every `<a href>` and `<area href>` against the page's URL (or its `<base href>`), dropping
//!   fragments, on [`parsers`](Crawler::parsers) threads (2 by default).
//! - **organize**: one thread that owns every piece of crawl state without a lock held across
//!   anything but its own bookkeeping: the table of known URLs (deduplication), their depths,
//!   the links of each page, who links to whom (for the broken-link report), redirects, and
//!   the limits. It decides which discovered URLs get fetched and sends them back to the
//!   source.
//!
//! The pipeline is a one-way chain, so the loop closes outside it. The source iterator reads
//! from an unbounded channel, and a counter holds the number of URLs *in flight*: sent to the
//! frontier but not yet organized. The organizer adds one to the counter for each URL it sends,
//! *before* sending it, and subtracts one for the page it is organizing only *after* it has
//! sent that page's new URLs. So the counter is zero only when no page is anywhere in the
//! pipeline and the channel is empty, and from then on nothing can ever be sent again (only
//! the organizer sends, and it has nothing left to organize). The source returns `None` when it
//! finds the channel empty and the counter at zero; the pipeline then drains and ends.
//!
//! Why this cannot deadlock: the organizer never blocks on the frontier (the channel is
//! unbounded), so the ring of bounded queues is broken there; the source waits only on the
//! channel, which it polls, also watching a stop flag set when the run ends early. Why it
//! always ends: the organizer schedules each URL at most once (it keeps every URL it has seen)
//! and at most [`max_pages`](Crawler::max_pages) of them; no stage drops an item (a failed
//! fetch is an outcome, not an error), so each scheduled URL is organized once and subtracted
//! once; and each item takes bounded time: a request is cut off after the fetcher's
//! [`timeout`](Fetcher::timeout) (name resolution, connecting, sending and receiving the whole
//! body), a body is read up to its [`max_body`](Fetcher::max_body) bytes, and the politeness
//! wait is bounded by the delay times the number of threads using the fetcher. Memory is
//! bounded too: the channel never holds more than `max_pages` URLs.
//!
//! **Depths are exact.** Pages finish in any order, so a URL may first be found through a long
//! path while a shorter one is still in the pipeline. The organizer records the smallest depth
//! seen: when a URL turns up at a smaller depth than recorded, it lowers it and passes the
//! improvement on to the links of that page (it keeps them), scheduling URLs that were beyond
//! the depth limit before. A redirect does not add depth. So every page's depth is its
//! shortest link distance from a start URL, and the set of pages fetched (when the page limit
//! is not reached) is the same whatever the number of workers.
//!
//! **Errors.** A page that fails (timeout, refused connection, 404) is part of the report, not
//! an error. [`Crawler::run`] fails only for invalid start URLs, or when a stage panics (a bug):
//! the pipeline stops and the [`CrawlError`] names the stage and the URL.
//!
//! # Locking
//!
//! [`Crawler::run`] blocks its caller until the crawl ends. The organizer's state sits behind
//! a mutex that only the organizer thread takes while the crawl runs (and the caller once it
//! has ended); the fetcher's politeness table is locked briefly per request, never while
//! sleeping or doing I/O.

// fetch:   `Fetcher`: one HTTP GET with timeouts, redirects, politeness and a body cap.
// links:   `extract_links`: an HTML parser over a page, URLs resolved and cleaned.
// crawler: `Crawler`: the builder, the frontier loop and the three stages.
// organize: the organizer's state: URL table, depths, limits, relaxation, the final report.
// report:  `CrawlReport` and its records, summary table and JSON.
// json:    how the report serializes with serde: outcomes, milliseconds, totals, stages.
mod crawler;
mod fetch;
mod json;
mod links;
mod organize;
mod report;

pub use crawler::{CrawlError, Crawler};
pub use fetch::{FetchError, FetchErrorKind, Fetcher, FetcherBuilder, Page, Redirect};
pub use links::extract_links;
pub use report::{BrokenLink, CrawlReport, Outcome, PageRecord, Totals};
pub use url::Url;
