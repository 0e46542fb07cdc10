//! [`Crawler`]: the builder, the frontier loop, and the three stages on a
//! [`Pipeline`](crate::pipeline::Pipeline).

use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError, unbounded};
use url::Url;

use super::fetch::Fetcher;
use super::organize::{Limits, Organizer, Parsed, Task};
use super::report::CrawlReport;
use crate::pipeline::{Pipeline, PipelineError};

/// A crawl to run: start URLs, limits, worker counts and the [`Fetcher`] that makes the
/// requests. Build it with [`Crawler::new`] and the setters, named as rayon's
/// `ThreadPoolBuilder` names them ([`max_depth`](Crawler::max_depth),
/// [`fetchers`](Crawler::fetchers), ...), then [`run`](Crawler::run) it (as often as you
/// like).
///
/// See the [module documentation](super) for the pipeline and the frontier loop.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use parkit::crawl::{Crawler, Fetcher};
/// use parkit_test_site::{LocalSite, SitePlan};
///
/// let site = LocalSite::start(SitePlan::new(200))?;
/// let report = Crawler::new([site.url("/")])
///     .max_depth(3)
///     .max_pages(100)
///     .fetchers(8)
///     .parsers(2)
///     .fetcher(Fetcher::builder().timeout(Duration::from_secs(5)).build())
///     .run()?;
/// assert!(report.totals.fetched <= 100);
/// assert!(report.pages.iter().all(|p| p.depth <= 3));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
#[must_use = "a Crawler does nothing until it is run"]
pub struct Crawler {
    start: Vec<String>,
    max_depth: u32,
    max_pages: usize,
    fetchers: usize,
    parsers: usize,
    same_host_only: bool,
    fetcher: Arc<Fetcher>,
}

impl Crawler {
    /// A crawl from `start` (URLs as text; checked by [`run`](Crawler::run)) with the
    /// defaults: depth up to 10, at most 10,000 pages, 16 fetchers and 2 parsers, the start
    /// URLs' hosts only, and [`Fetcher::new`] (10 s per request, no politeness delay, bodies
    /// capped at 2 MiB, at most 5 redirects in a row).
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::crawl::Crawler;
    /// use parkit_test_site::{LocalSite, SitePlan};
    ///
    /// let site = LocalSite::start(SitePlan::new(10))?;
    /// let report = Crawler::new([site.url("/"), site.url("/page/3")]).run()?;
    /// assert_eq!(report.totals.start_urls, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new<I, S>(start: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Crawler {
            start: start.into_iter().map(Into::into).collect(),
            max_depth: 10,
            max_pages: 10_000,
            fetchers: 16,
            parsers: 2,
            same_host_only: true,
            fetcher: Arc::new(Fetcher::new()),
        }
    }

    /// Sets the depth limit: start URLs are at depth 0, the pages they link to at depth 1,
    /// and so on (a redirect's target has the depth of the redirect). Pages deeper than
    /// `depth` are not fetched. Depths are shortest distances whatever the order pages are
    /// fetched in.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::crawl::Crawler;
    /// use parkit_test_site::{LocalSite, SitePlan};
    ///
    /// let site = LocalSite::start(SitePlan::new(100))?;
    /// let report = Crawler::new([site.url("/")]).max_depth(1).run()?;
    /// assert!(report.pages.iter().all(|p| p.depth <= 1));
    /// assert!(report.totals.beyond_depth > 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_depth(mut self, depth: u32) -> Self {
        self.max_depth = depth;
        self
    }

    /// Sets the most URLs fetched (redirects and failures included). Which pages make it
    /// when the limit bites depends on the order in which they finish.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::crawl::Crawler;
    /// use parkit_test_site::{LocalSite, SitePlan};
    ///
    /// let site = LocalSite::start(SitePlan::new(100))?;
    /// let report = Crawler::new([site.url("/")]).max_pages(25).run()?;
    /// assert_eq!(report.totals.fetched, 25);
    /// assert_eq!(site.hits().values().sum::<u64>(), 25);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_pages(mut self, pages: usize) -> Self {
        self.max_pages = pages;
        self
    }

    /// Sets the number of fetch threads: requests in flight at once (16 by default). They
    /// mostly wait on the network, so many more than cores is right.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::crawl::Crawler;
    /// use parkit_test_site::{LocalSite, SitePlan};
    ///
    /// let site = LocalSite::start(SitePlan::new(20))?;
    /// let report = Crawler::new([site.url("/")]).fetchers(4).run()?;
    /// assert_eq!(report.pipeline.stage("fetch").unwrap().workers, 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Panics
    ///
    /// If `fetchers` is 0.
    pub fn fetchers(mut self, fetchers: usize) -> Self {
        assert!(
            fetchers > 0,
            "parkit::crawl: at least one fetcher is needed"
        );
        self.fetchers = fetchers;
        self
    }

    /// Sets the number of threads parsing HTML (2 by default): CPU work, so about the number
    /// of cores at most.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::crawl::Crawler;
    /// use parkit_test_site::{LocalSite, SitePlan};
    ///
    /// let site = LocalSite::start(SitePlan::new(20))?;
    /// let report = Crawler::new([site.url("/")]).parsers(1).run()?;
    /// assert_eq!(report.pipeline.stage("extract").unwrap().workers, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Panics
    ///
    /// If `parsers` is 0.
    pub fn parsers(mut self, parsers: usize) -> Self {
        assert!(parsers > 0, "parkit::crawl: at least one parser is needed");
        self.parsers = parsers;
        self
    }

    /// Whether only the start URLs' hosts are crawled (`true`, the default). Links to other
    /// hosts are counted in [`Totals::other_hosts`](super::Totals::other_hosts) but not
    /// fetched. A start URL that redirects to another host (`http://example.test` to
    /// `https://www.example.test/`) brings that host into the crawl. With `false` the crawl
    /// follows links anywhere, within the depth and page limits.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::crawl::Crawler;
    /// use parkit_test_site::{LocalSite, SitePlan};
    ///
    /// let site = LocalSite::start(SitePlan::new(20))?;
    /// // The home page links to http://localhost:<port>/, another host name.
    /// let report = Crawler::new([site.url("/")]).same_host_only(true).run()?;
    /// assert_eq!(report.totals.other_hosts, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn same_host_only(mut self, same_host_only: bool) -> Self {
        self.same_host_only = same_host_only;
        self
    }

    /// Sets the [`Fetcher`] of the fetch stage ([`Fetcher::new`] by default): its timeout
    /// bounds each request (a page that does not answer in time is reported with
    /// [`FetchErrorKind::Timeout`](super::FetchErrorKind::Timeout)), its politeness delay
    /// spaces the requests to each host, its body cap bounds what is read, its `User-Agent`
    /// is sent, and its [`max_redirects`](Fetcher::max_redirects) bounds chains of redirects:
    /// the URL a longer chain leads to is reported as a broken link instead of being fetched.
    ///
    /// Takes a `Fetcher` or an `Arc<Fetcher>`: the fetch threads, every run of this crawler
    /// and of its clones, and any other holder of the `Arc` share one connection pool and one
    /// politeness table.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use parkit::crawl::{Crawler, Fetcher};
    /// use parkit_test_site::{LocalSite, SitePlan};
    ///
    /// let site = LocalSite::start(SitePlan::new(20).hang(true))?;
    /// let fetcher = Fetcher::builder().timeout(Duration::from_millis(300)).build();
    /// let report = Crawler::new([site.url("/")]).fetcher(fetcher).run()?;
    /// assert_eq!(report.totals.timeouts, 1); // /hang
    ///
    /// // /old/3 redirects to a page: with no redirects allowed, that page is a broken link.
    /// let report = Crawler::new([site.url("/old/3")])
    ///     .fetcher(Fetcher::builder().max_redirects(0).build())
    ///     .run()?;
    /// assert_eq!(report.totals.fetched, 1);
    /// assert_eq!(report.broken.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fetcher(mut self, fetcher: impl Into<Arc<Fetcher>>) -> Self {
        self.fetcher = fetcher.into();
        self
    }

    /// Parses and cleans the start URLs.
    fn start_urls(&self) -> Result<Vec<Url>, CrawlError> {
        self.start
            .iter()
            .map(|text| {
                let invalid = |reason: String| CrawlError::InvalidStartUrl {
                    url: text.clone(),
                    reason,
                };
                let mut url = Url::parse(text.trim()).map_err(|e| invalid(e.to_string()))?;
                if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                    return Err(invalid("not an http or https URL with a host".into()));
                }
                url.set_fragment(None);
                Ok(url)
            })
            .collect()
    }

    /// Runs the crawl: fetches every URL reachable from the start URLs within the limits,
    /// each once, through the fetch -> extract -> organize pipeline, and returns the report.
    ///
    /// Pages that fail (timeouts, 404s, refused connections) are part of the report, not
    /// errors.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::crawl::Crawler;
    /// use parkit_test_site::{LocalSite, SitePlan};
    ///
    /// let site = LocalSite::start(SitePlan::new(100))?;
    /// let report = Crawler::new([site.url("/")]).max_depth(100).run()?;
    /// let expected = site.depths_from("/");
    /// assert_eq!(report.totals.fetched, expected.len());
    /// for page in &report.pages {
    ///     assert_eq!(expected[page.url.path()], page.depth);
    /// }
    /// assert!(site.hits().values().all(|&n| n == 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`CrawlError::InvalidStartUrl`] if a start URL does not parse or is not an `http` or
    /// `https` URL (nothing is fetched then); [`CrawlError::Stage`] if a stage panicked,
    /// which is a bug: the crawl stops and the error names the stage and the URL.
    ///
    /// # Panics
    ///
    /// If a thread cannot be spawned.
    ///
    /// # Locking
    ///
    /// Blocks the calling thread until the crawl ends, which takes at least as long as the
    /// slowest chain of pages (each request up to the fetcher's timeout). The work happens on
    /// the pipeline's own threads; call it from a thread of your own rather than from a rayon
    /// worker.
    pub fn run(&self) -> Result<CrawlReport, CrawlError> {
        let started = Instant::now();
        let start = self.start_urls()?;
        let limits = Limits {
            max_depth: self.max_depth,
            max_pages: self.max_pages,
            max_redirects: self.fetcher.max_redirects(),
            same_host_only: self.same_host_only,
        };
        let (tx, rx) = unbounded();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let organizer = Organizer::new(limits, start, tx, Arc::clone(&in_flight));
        let organizer = Arc::new(Mutex::new(Some(organizer)));
        let frontier = Frontier {
            rx,
            in_flight,
            stop: Arc::new(AtomicBool::new(false)),
            log: Arc::new(Mutex::new(Vec::new())),
        };
        // Stops the source if the run ends early (an error, or a panic unwinding through).
        let _stop = StopOnDrop(Arc::clone(&frontier.stop));
        let log = Arc::clone(&frontier.log);
        let fetcher = Arc::clone(&self.fetcher);
        let org = Arc::clone(&organizer);
        let run = Pipeline::from(frontier)
            .stage("fetch", self.fetchers, move |task: Task| {
                let started = Instant::now();
                let fetched = fetcher.fetch_once(&task.url);
                (task.id, fetched, started.elapsed())
            })
            .stage("extract", self.parsers, |(id, fetched, took)| {
                Parsed::from_fetch(id, fetched, took)
            })
            .stage("organize", 1, move |parsed| {
                if let Some(organizer) = lock(&org).as_mut() {
                    organizer.organize(parsed);
                }
            })
            .unordered()
            .collect_with_report();
        let (_, pipeline) = run.map_err(|source| CrawlError::Stage {
            url: lock(&log).get(source.index()).cloned(),
            source: Box::new(source),
        })?;
        let organizer = lock(&organizer)
            .take()
            .expect("the organizer is taken once, after the run");
        Ok(organizer.finish(pipeline, started.elapsed()))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How long the source waits on the frontier before it looks at the count in flight again.
const POLL: Duration = Duration::from_millis(2);

/// The pipeline's source: URLs from the organizer, until none is in flight.
struct Frontier {
    rx: Receiver<Task>,
    /// URLs sent and not yet organized (the organizer counts them).
    in_flight: Arc<AtomicUsize>,
    /// Set when the run ends early.
    stop: Arc<AtomicBool>,
    /// The URL of each item, by pipeline index, to name it in errors.
    log: Arc<Mutex<Vec<Url>>>,
}

impl Iterator for Frontier {
    type Item = Task;

    /// The next URL to fetch; `None` once no URL is in flight (the crawl is complete) or
    /// the run is stopping.
    ///
    /// Locking behaviour: waits on the channel, waking every [`POLL`] to look at the count.
    fn next(&mut self) -> Option<Task> {
        loop {
            match self.rx.try_recv() {
                Ok(task) => return Some(self.logged(task)),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {}
            }
            // The organizer counts a URL before sending it and uncounts a page after sending
            // its links, so a count of zero means nothing is queued and nothing can be
            // sent any more: the crawl is complete.
            if self.in_flight.load(SeqCst) == 0 || self.stop.load(SeqCst) {
                return None;
            }
            match self.rx.recv_timeout(POLL) {
                Ok(task) => return Some(self.logged(task)),
                Err(RecvTimeoutError::Disconnected) => return None,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }
}

impl Frontier {
    fn logged(&self, task: Task) -> Task {
        lock(&self.log).push(task.url.clone());
        task
    }
}

struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

/// Why a crawl could not run or did not finish. A page that fails is not a `CrawlError`: it
/// is in the [`CrawlReport`].
///
/// Marked `#[non_exhaustive]`: match it with a wildcard arm.
///
/// # Examples
///
/// ```
/// use parkit::crawl::{CrawlError, Crawler};
///
/// let err = Crawler::new(["mailto:someone@example.test"]).run().unwrap_err();
/// assert!(matches!(err, CrawlError::InvalidStartUrl { .. }));
/// assert!(err.to_string().starts_with("invalid start URL 'mailto:someone@example.test'"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CrawlError {
    /// A start URL does not parse, or is not an `http` or `https` URL with a host.
    #[error("invalid start URL '{url}': {reason}")]
    InvalidStartUrl {
        /// The start URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A stage panicked (a bug) and the crawl stopped.
    #[error("the crawl stopped in stage '{}' at {}: {source}",
        source.stage(), url.as_ref().map_or("an unknown URL", Url::as_str))]
    Stage {
        /// The URL being processed, when known.
        url: Option<Url>,
        /// The pipeline's error, naming the stage (boxed: it is large, and rare).
        source: Box<PipelineError>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_start_urls_are_refused_before_anything_runs() {
        for bad in [
            "",
            "not a url",
            "ftp://h.test/",
            "file:///etc/passwd",
            "http://",
        ] {
            let err = Crawler::new([bad]).run().unwrap_err();
            assert!(
                matches!(err, CrawlError::InvalidStartUrl { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn no_start_urls_is_an_empty_crawl() {
        let report = Crawler::new(Vec::<String>::new()).run().unwrap();
        assert_eq!(report.totals.fetched, 0);
        assert!(report.pages.is_empty());
    }

    #[test]
    fn a_refused_connection_is_a_broken_page_not_an_error() {
        // Bind, learn the port, close: nothing listens there any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let report = Crawler::new([format!("http://127.0.0.1:{port}/")])
            .run()
            .unwrap();
        assert_eq!(report.totals.failed, 1);
        assert_eq!(report.broken.len(), 1);
        assert!(report.broken[0].found_on.is_empty());
    }
}
