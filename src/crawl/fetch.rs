//! [`Fetcher`]: one HTTP GET with a timeout, bounded redirects, a politeness delay per host and
//! a cap on body sizes; its [`Page`], [`Redirect`] and [`FetchError`].

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;
use ureq::Agent;
use url::Url;

use super::links::extract_links;

/// Fetches web pages over HTTP(S): a timeout on the whole request, redirects followed up to a
/// bound, a politeness delay between requests to the same host, and a cap on body sizes.
///
/// [`Fetcher::new`] gives the defaults; [`Fetcher::builder`] sets them one by one, as rayon's
/// `ThreadPoolBuilder` does for a pool. The getters ([`timeout`](Fetcher::timeout), ...) read
/// them back.
///
/// One `Fetcher` is meant to be shared by every fetching thread (it is `Send + Sync`; share it
/// by reference or in an `Arc`): the threads then share its connection pool and its
/// politeness table. Proxies from the environment are not used: requests go straight to the
/// server.
///
/// Status codes are results, not errors: a 404 is an `Ok(Page)` with `status` 404. Only
/// requests that get no complete response fail, with a [`FetchError`].
///
/// # Examples
///
/// As a pipeline stage, with eight requests at a time:
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use parkit::crawl::{Fetcher, Url};
/// use parkit::pipeline::Pipeline;
/// use parkit_test_site::{LocalSite, SitePlan};
///
/// let site = LocalSite::start(SitePlan::new(20))?;
/// let fetcher = Arc::new(Fetcher::builder().timeout(Duration::from_secs(5)).build());
/// let urls: Vec<Url> = (1..20).map(|i| site.url(&format!("/page/{i}")).parse().unwrap()).collect();
/// let statuses = Pipeline::from(urls)
///     .stage("fetch", 8, move |url| fetcher.fetch(&url).map(|page| page.status))
///     .collect()?;
/// assert!(statuses.iter().all(|s| matches!(s, Ok(200))));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Fetcher {
    agent: Agent,
    timeout: Duration,
    max_body: usize,
    max_redirects: u32,
    user_agent: String,
    polite: Politeness,
}

impl Default for Fetcher {
    fn default() -> Self {
        Fetcher::new()
    }
}

/// The `User-Agent` header sent by default.
const USER_AGENT: &str = concat!("parkit-crawl/", env!("CARGO_PKG_VERSION"));

/// The settings of a [`Fetcher`], set one by one; [`build`](FetcherBuilder::build) makes the
/// fetcher. Made by [`Fetcher::builder`] (or `FetcherBuilder::default()`), with the defaults of
/// [`Fetcher::new`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use parkit::crawl::Fetcher;
///
/// let fetcher = Fetcher::builder()
///     .timeout(Duration::from_secs(5))
///     .delay(Duration::from_millis(250))
///     .max_body(1 << 20)
///     .max_redirects(3)
///     .user_agent("book-crawler/1.0")
///     .build();
/// assert_eq!(fetcher.timeout(), Duration::from_secs(5));
/// assert_eq!((fetcher.max_body(), fetcher.max_redirects()), (1 << 20, 3));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "a FetcherBuilder does nothing until it is built"]
pub struct FetcherBuilder {
    timeout: Duration,
    delay: Duration,
    max_body: usize,
    max_redirects: u32,
    user_agent: String,
}

impl Default for FetcherBuilder {
    fn default() -> Self {
        FetcherBuilder {
            timeout: Duration::from_secs(10),
            delay: Duration::ZERO,
            max_body: 2 << 20,
            max_redirects: 5,
            user_agent: USER_AGENT.to_owned(),
        }
    }
}

impl FetcherBuilder {
    /// Sets the time limit of each request (10 s by default): resolving the host name,
    /// connecting, sending the request and receiving the whole response (headers and body).
    /// When it runs out the request fails with [`FetchErrorKind::Timeout`] (see the example of
    /// [`FetchError`]), so a server that accepts a connection and never answers holds a thread
    /// for at most this long. With redirects followed by [`fetch`](Fetcher::fetch), each hop
    /// gets its own limit.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use parkit::crawl::Fetcher;
    ///
    /// let fetcher = Fetcher::builder().timeout(Duration::from_millis(500)).build();
    /// assert_eq!(fetcher.timeout(), Duration::from_millis(500));
    /// ```
    ///
    /// # Panics
    ///
    /// If `timeout` is zero.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        assert!(
            !timeout.is_zero(),
            "parkit::crawl: the request timeout must be more than zero"
        );
        self.timeout = timeout;
        self
    }

    /// Sets the politeness delay: requests to one host (whatever the port) start at least
    /// this far apart, across every thread using the fetcher. Zero (the default) turns it
    /// off. Be kind to servers you do not own: a few hundred milliseconds is usual.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use parkit::crawl::Fetcher;
    ///
    /// let fetcher = Fetcher::builder().delay(Duration::from_millis(250)).build();
    /// assert_eq!(fetcher.delay(), Duration::from_millis(250));
    /// ```
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Sets the most bytes of a body that are read (2 MiB by default); the rest is not
    /// downloaded and the page is marked [`truncated`](Page::truncated). Links are still
    /// extracted from the part that was read.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::crawl::Fetcher;
    /// use parkit_test_site::{LocalSite, SitePlan};
    ///
    /// let site = LocalSite::start(SitePlan::new(5))?;
    /// let fetcher = Fetcher::builder().max_body(1000).build();
    /// let page = fetcher.fetch(&site.url("/big").parse()?)?;
    /// assert!(page.truncated && page.body.len() <= 1000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Sets how many redirects [`fetch`](Fetcher::fetch) follows before it gives up with
    /// [`FetchErrorKind::Redirect`] (5 by default), and how long a chain of redirects a
    /// [`Crawler`](super::Crawler) using the fetcher follows.
    /// [`fetch_once`](Fetcher::fetch_once) follows none.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::crawl::{FetchErrorKind, Fetcher};
    /// use parkit_test_site::{LocalSite, SitePlan};
    ///
    /// let site = LocalSite::start(SitePlan::new(20))?;
    /// let url = site.url("/loop/a").parse()?; // /loop/a -> /loop/b -> /loop/a -> ...
    /// let err = Fetcher::builder().max_redirects(3).build().fetch(&url).unwrap_err();
    /// assert_eq!(err.kind(), FetchErrorKind::Redirect);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_redirects(mut self, redirects: u32) -> Self {
        self.max_redirects = redirects;
        self
    }

    /// Sets the `User-Agent` header (`parkit-crawl/<version>` by default).
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::crawl::Fetcher;
    ///
    /// let fetcher = Fetcher::builder().user_agent("book-crawler/1.0").build();
    /// assert_eq!(fetcher.user_agent(), "book-crawler/1.0");
    /// ```
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// The fetcher with these settings.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::crawl::{Fetcher, FetcherBuilder};
    ///
    /// let fetcher = FetcherBuilder::default().build();
    /// assert_eq!(fetcher.timeout(), Fetcher::new().timeout());
    /// ```
    pub fn build(self) -> Fetcher {
        Fetcher {
            agent: agent(self.timeout, &self.user_agent),
            timeout: self.timeout,
            max_body: self.max_body,
            max_redirects: self.max_redirects,
            user_agent: self.user_agent,
            polite: Politeness::new(self.delay),
        }
    }
}

impl Fetcher {
    /// A fetcher with a 10 s timeout per request, at most 5 redirects, bodies capped at 2 MiB
    /// and no politeness delay; [`builder`](Fetcher::builder) sets them otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use parkit::crawl::Fetcher;
    ///
    /// let fetcher = Fetcher::new();
    /// assert_eq!(fetcher.timeout(), Duration::from_secs(10));
    /// assert_eq!(fetcher.delay(), Duration::ZERO);
    /// ```
    pub fn new() -> Self {
        FetcherBuilder::default().build()
    }

    /// A [`FetcherBuilder`] with the defaults of [`new`](Fetcher::new), to set the timeout,
    /// the politeness delay, the body cap, the redirects followed and the `User-Agent`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use parkit::crawl::Fetcher;
    ///
    /// let fetcher = Fetcher::builder().timeout(Duration::from_millis(500)).build();
    /// assert_eq!(fetcher.timeout(), Duration::from_millis(500));
    /// assert_eq!(fetcher.max_redirects(), 5);
    /// ```
    pub fn builder() -> FetcherBuilder {
        FetcherBuilder::default()
    }

    /// The time limit of each request; see [`FetcherBuilder::timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::crawl::Fetcher;
    ///
    /// assert_eq!(Fetcher::new().timeout().as_secs(), 10);
    /// ```
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The politeness delay per host; see [`FetcherBuilder::delay`].
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::crawl::Fetcher;
    ///
    /// assert!(Fetcher::new().delay().is_zero());
    /// ```
    pub fn delay(&self) -> Duration {
        self.polite.delay
    }

    /// The cap on body sizes in bytes; see [`FetcherBuilder::max_body`].
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::crawl::Fetcher;
    ///
    /// assert_eq!(Fetcher::new().max_body(), 2 << 20);
    /// ```
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// How many redirects [`fetch`](Fetcher::fetch) follows; see
    /// [`FetcherBuilder::max_redirects`].
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::crawl::Fetcher;
    ///
    /// assert_eq!(Fetcher::new().max_redirects(), 5);
    /// ```
    pub fn max_redirects(&self) -> u32 {
        self.max_redirects
    }

    /// The `User-Agent` header sent; see [`FetcherBuilder::user_agent`].
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::crawl::Fetcher;
    ///
    /// assert!(Fetcher::new().user_agent().starts_with("parkit-crawl/"));
    /// ```
    pub fn user_agent(&self) -> &str {
        &self.user_agent
    }

    /// Fetches `url`, following up to [`max_redirects`](Fetcher::max_redirects) redirects
    /// (each hop waits for its host's politeness delay and gets its own timeout); the page
    /// records the hops in [`redirects`](Page::redirects) and where it ended in
    /// [`final_url`](Page::final_url).
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::crawl::Fetcher;
    /// use parkit_test_site::{LocalSite, SitePlan};
    ///
    /// let site = LocalSite::start(SitePlan::new(40))?;
    /// let page = Fetcher::new().fetch(&site.url("/old/3").parse()?)?; // a 301 to a page
    /// assert_eq!((page.status, page.redirects.len()), (200, 1));
    /// assert_eq!(page.redirects[0].status, 301);
    /// assert_eq!(page.final_url, page.redirects[0].to);
    /// assert!(page.is_html() && !page.links().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// A [`FetchError`] when no complete response came back: [`Timeout`], no such host,
    /// refused connection, TLS or protocol failure, a scheme other than `http` and `https`,
    /// or more than `max_redirects` redirects (or one without a usable `Location`:
    /// [`FetchErrorKind::Redirect`]).
    ///
    /// [`Timeout`]: FetchErrorKind::Timeout
    ///
    /// # Locking
    ///
    /// Blocks the calling thread for the politeness delay and the requests, each bounded by
    /// the timeout. Do not call it on a rayon worker thread.
    pub fn fetch(&self, url: &Url) -> Result<Page, FetchError> {
        let started = Instant::now();
        let mut redirects = Vec::new();
        let mut page = self.fetch_once(url)?;
        while let Some(to) = page.location.clone() {
            if redirects.len() as u32 >= self.max_redirects {
                return Err(FetchError::new(
                    FetchErrorKind::Redirect,
                    format!("more than {} redirects", self.max_redirects),
                ));
            }
            redirects.push(Redirect {
                from: page.url.clone(),
                to: to.clone(),
                status: page.status,
            });
            page = self.fetch_once(&to)?;
        }
        if page.is_redirect() {
            return Err(FetchError::new(
                FetchErrorKind::Redirect,
                format!("status {} without a usable Location", page.status),
            ));
        }
        page.url = url.clone();
        page.redirects = redirects;
        page.elapsed = started.elapsed();
        Ok(page)
    }

    /// Makes a single request for `url` and does not follow a redirect: a 3xx response comes
    /// back as a page whose [`location`](Page::location) holds the resolved target. This is
    /// what the [`Crawler`](super::Crawler)'s fetch stage calls, so that it can treat a
    /// redirect like a link. The body is read only for successful (2xx) HTML responses.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::crawl::Fetcher;
    /// use parkit_test_site::{LocalSite, SitePlan};
    ///
    /// let site = LocalSite::start(SitePlan::new(40))?;
    /// let page = Fetcher::new().fetch_once(&site.url("/old/3").parse()?)?;
    /// assert_eq!(page.status, 301);
    /// assert!(page.location.is_some() && page.body.is_empty());
    /// let missing = Fetcher::new().fetch_once(&site.url("/missing/1").parse()?)?;
    /// assert_eq!(missing.status, 404);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`fetch`](Fetcher::fetch), except for redirects, which are not errors here.
    ///
    /// # Locking
    ///
    /// As [`fetch`](Fetcher::fetch), for one request.
    pub fn fetch_once(&self, url: &Url) -> Result<Page, FetchError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::new(
                FetchErrorKind::Other,
                format!("unsupported scheme '{}'", url.scheme()),
            ));
        }
        self.polite.wait(url.host_str().unwrap_or(""));
        let started = Instant::now();
        let response = self.agent.get(url.as_str()).call().map_err(classify)?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header("content-type");
        let location = if (300..400).contains(&status) {
            header("location").and_then(|l| url.join(l.trim()).ok())
        } else {
            None
        };
        let mut page = Page {
            url: url.clone(),
            final_url: url.clone(),
            status,
            content_type,
            body: String::new(),
            bytes: 0,
            truncated: false,
            location,
            redirects: Vec::new(),
            elapsed: Duration::ZERO,
        };
        if (200..300).contains(&status) && page.is_html() {
            let limit = u64::try_from(self.max_body).unwrap_or(u64::MAX);
            let mut buf = Vec::new();
            response
                .into_body()
                .into_reader()
                .take(limit.saturating_add(1))
                .read_to_end(&mut buf)
                .map_err(|e| classify(ureq::Error::from(e)))?;
            page.bytes = buf.len() as u64;
            if buf.len() > self.max_body {
                buf.truncate(self.max_body);
                page.bytes = buf.len() as u64;
                page.truncated = true;
            }
            page.body = String::from_utf8_lossy(&buf).into_owned();
        }
        page.elapsed = started.elapsed();
        Ok(page)
    }
}

fn agent(timeout: Duration, user_agent: &str) -> Agent {
    Agent::config_builder()
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .http_status_as_error(false)
        .proxy(None)
        .user_agent(user_agent)
        .build()
        .into()
}

/// Start times of the next request allowed per host.
#[derive(Debug)]
struct Politeness {
    delay: Duration,
    next: Mutex<HashMap<String, Instant>>,
}

impl Politeness {
    fn new(delay: Duration) -> Self {
        Politeness {
            delay,
            next: Mutex::new(HashMap::new()),
        }
    }

    /// Books the next free slot for `host` at or after `now` and returns its start: slots are
    /// `delay` apart, handed out in call order.
    fn reserve(&self, host: &str, now: Instant) -> Instant {
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = next.get(host).map_or(now, |&t| t.max(now));
        next.insert(host.to_owned(), slot + self.delay);
        slot
    }

    /// Sleeps until this thread's slot for `host`.
    ///
    /// Locking behaviour: the table is locked only to book the slot, not while sleeping.
    fn wait(&self, host: &str) {
        if self.delay.is_zero() {
            return;
        }
        let now = Instant::now();
        let slot = self.reserve(host, now);
        if slot > now {
            thread::sleep(slot - now);
        }
    }
}

/// A web page as [`Fetcher`] got it.
///
/// # Examples
///
/// ```
/// use parkit::crawl::Fetcher;
/// use parkit_test_site::{LocalSite, SitePlan};
///
/// let site = LocalSite::start(SitePlan::new(10))?;
/// let page = Fetcher::new().fetch(&site.url("/page/1").parse()?)?;
/// assert_eq!(page.status, 200);
/// assert_eq!(page.bytes, page.body.len() as u64);
/// assert!(page.links().iter().any(|u| u.path() == "/page/3"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Page {
    /// The URL asked for.
    pub url: Url,
    /// The URL of the response, after redirects.
    pub final_url: Url,
    /// The HTTP status code.
    pub status: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body as text (invalid UTF-8 replaced), read only for 2xx HTML responses and at
    /// most [`max_body`](Fetcher::max_body) bytes of it.
    pub body: String,
    /// Bytes of body read.
    pub bytes: u64,
    /// Whether the body was cut at [`max_body`](Fetcher::max_body).
    pub truncated: bool,
    /// For a 3xx response that was not followed: its `Location`, resolved against the URL.
    pub location: Option<Url>,
    /// The redirects followed to get here, in order.
    pub redirects: Vec<Redirect>,
    /// Time taken by the request(s), from sending to the end of the body, without the
    /// politeness delay.
    pub elapsed: Duration,
}

impl Page {
    /// Whether the body is HTML: the content type is `text/html` or `application/xhtml+xml`,
    /// or missing.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::crawl::Fetcher;
    /// use parkit_test_site::{LocalSite, SitePlan};
    ///
    /// let site = LocalSite::start(SitePlan::new(10))?;
    /// let fetcher = Fetcher::new();
    /// assert!(fetcher.fetch(&site.url("/").parse()?)?.is_html());
    /// assert!(!fetcher.fetch(&site.url("/notes.txt").parse()?)?.is_html());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_html(&self) -> bool {
        self.content_type.as_deref().is_none_or(|t| {
            let t = t.trim_start().to_ascii_lowercase();
            t.starts_with("text/html") || t.starts_with("application/xhtml+xml")
        })
    }

    /// Whether the status is a redirection (3xx).
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::crawl::Fetcher;
    /// use parkit_test_site::{LocalSite, SitePlan};
    ///
    /// let site = LocalSite::start(SitePlan::new(40))?;
    /// assert!(Fetcher::new().fetch_once(&site.url("/old/3").parse()?)?.is_redirect());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_redirect(&self) -> bool {
        (300..400).contains(&self.status)
    }

    /// The links of the page ([`extract_links`] over the body, against the final URL); empty
    /// unless the page is a 2xx HTML page.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::crawl::Fetcher;
    /// use parkit_test_site::{LocalSite, SitePlan};
    ///
    /// let site = LocalSite::start(SitePlan::new(10))?;
    /// let page = Fetcher::new().fetch(&site.url("/page/2").parse()?)?;
    /// assert!(page.links().iter().all(|u| u.fragment().is_none()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn links(&self) -> Vec<Url> {
        if (200..300).contains(&self.status) && self.is_html() {
            extract_links(&self.final_url, &self.body)
        } else {
            Vec::new()
        }
    }
}

/// One redirect: `from` answered `status` with `Location: to`.
///
/// # Examples
///
/// ```
/// use parkit::crawl::{Redirect, Url};
///
/// let hop = Redirect {
///     from: Url::parse("http://a.test/old")?,
///     to: Url::parse("http://a.test/new")?,
///     status: 301,
/// };
/// assert_eq!(hop.to_string(), "301 http://a.test/old -> http://a.test/new");
/// # Ok::<(), url::ParseError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Redirect {
    /// The URL that redirected.
    pub from: Url,
    /// Its `Location`, resolved against `from`.
    pub to: Url,
    /// The status code (301, 302, 303, 307 or 308, usually).
    pub status: u16,
}

impl fmt::Display for Redirect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} -> {}", self.status, self.from, self.to)
    }
}

/// Why a request got no complete response; see [`FetchError::kind`].
///
/// Marked `#[non_exhaustive]`: match it with a wildcard arm.
///
/// # Examples
///
/// ```
/// use parkit::crawl::FetchErrorKind;
///
/// assert_eq!(FetchErrorKind::Timeout.to_string(), "timeout");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum FetchErrorKind {
    /// The request ran out of time (see [`FetcherBuilder::timeout`]).
    Timeout,
    /// The host name could not be resolved.
    Dns,
    /// The connection was refused, reset or could not be made.
    Connect,
    /// TLS failed (certificate, handshake).
    Tls,
    /// The server's answer was not valid HTTP.
    Protocol,
    /// Too many redirects, or a redirect without a usable `Location`.
    Redirect,
    /// Another I/O error while sending or receiving.
    Io,
    /// Anything else, such as a scheme other than `http` and `https`.
    Other,
}

impl FetchErrorKind {
    fn as_str(self) -> &'static str {
        match self {
            FetchErrorKind::Timeout => "timeout",
            FetchErrorKind::Dns => "dns",
            FetchErrorKind::Connect => "connect",
            FetchErrorKind::Tls => "tls",
            FetchErrorKind::Protocol => "protocol",
            FetchErrorKind::Redirect => "redirect",
            FetchErrorKind::Io => "io",
            FetchErrorKind::Other => "other",
        }
    }
}

impl fmt::Display for FetchErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request that got no complete response: its [`kind`](FetchError::kind) and a message.
///
/// `Display` reads `timeout: <message>`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use parkit::crawl::{FetchErrorKind, Fetcher};
/// use parkit_test_site::{LocalSite, SitePlan};
///
/// let site = LocalSite::start(SitePlan::new(10).hang(true))?;
/// let fetcher = Fetcher::builder().timeout(Duration::from_millis(300)).build();
/// let err = fetcher.fetch(&site.url("/hang").parse()?).unwrap_err(); // never answers
/// assert_eq!(err.kind(), FetchErrorKind::Timeout);
/// assert!(err.to_string().starts_with("timeout: "));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct FetchError {
    kind: FetchErrorKind,
    message: String,
}

impl FetchError {
    pub(crate) fn new(kind: FetchErrorKind, message: impl Into<String>) -> Self {
        FetchError {
            kind,
            message: message.into(),
        }
    }

    /// What went wrong, as a category.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::crawl::{FetchErrorKind, Fetcher, Url};
    ///
    /// let err = Fetcher::new().fetch(&Url::parse("ftp://127.0.0.1/")?).unwrap_err();
    /// assert_eq!(err.kind(), FetchErrorKind::Other);
    /// # Ok::<(), url::ParseError>(())
    /// ```
    pub fn kind(&self) -> FetchErrorKind {
        self.kind
    }

    /// What went wrong, in words (from the HTTP client).
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::crawl::{Fetcher, Url};
    ///
    /// let err = Fetcher::new().fetch(&Url::parse("ftp://127.0.0.1/")?).unwrap_err();
    /// assert_eq!(err.message(), "unsupported scheme 'ftp'");
    /// # Ok::<(), url::ParseError>(())
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for FetchError {}

/// Sorts an HTTP client error into a [`FetchErrorKind`].
fn classify(error: ureq::Error) -> FetchError {
    use FetchErrorKind as K;
    let kind = match &error {
        ureq::Error::Timeout(_) => K::Timeout,
        ureq::Error::HostNotFound => K::Dns,
        ureq::Error::ConnectionFailed => K::Connect,
        ureq::Error::Io(e) => match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => K::Timeout,
            io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
            | io::ErrorKind::AddrNotAvailable
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable => K::Connect,
            _ => K::Io,
        },
        ureq::Error::TooManyRedirects | ureq::Error::RedirectFailed => K::Redirect,
        ureq::Error::Protocol(_) => K::Protocol,
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) => K::Tls,
        _ => K::Other,
    };
    FetchError::new(kind, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn politeness_books_slots_a_delay_apart_per_host() {
        let polite = Politeness::new(Duration::from_millis(100));
        let t0 = Instant::now();
        let ms = |t: Instant| (t - t0).as_millis();
        assert_eq!(ms(polite.reserve("a", t0)), 0);
        assert_eq!(ms(polite.reserve("a", t0)), 100);
        assert_eq!(ms(polite.reserve("b", t0)), 0);
        assert_eq!(ms(polite.reserve("a", t0)), 200);
        // Once the host has been quiet long enough, the next request goes at once.
        let later = t0 + Duration::from_secs(1);
        assert_eq!(ms(polite.reserve("a", later)), 1000);
        assert_eq!(ms(polite.reserve("a", later)), 1100);
    }

    #[test]
    fn io_errors_are_sorted() {
        let refused = ureq::Error::Io(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(classify(refused).kind(), FetchErrorKind::Connect);
        let timeout = ureq::Error::Timeout(ureq::Timeout::Global);
        assert_eq!(classify(timeout).kind(), FetchErrorKind::Timeout);
        let wrapped = ureq::Error::from(io::Error::other(ureq::Error::Timeout(
            ureq::Timeout::RecvBody,
        )));
        assert_eq!(classify(wrapped).kind(), FetchErrorKind::Timeout);
        assert_eq!(
            classify(ureq::Error::HostNotFound).to_string(),
            "dns: host not found"
        );
    }
}
