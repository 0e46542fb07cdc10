//! [`LocalSite`]: a generated web site served on 127.0.0.1, with cycles, broken links,
//! redirects, slow pages and a page that never answers, for the crawler of
//! [parkit](../parkit/crawl/index.html): its example, tests and doctests use it. It counts the
//! requests for each path and knows its own link graph, so a test can check a crawl against
//! it.
//!
//! Test support, not part of parkit's API: parkit takes it as a dev-dependency, and it is not
//! published. It needs nothing but `std`.

#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations)]

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt::{self, Write as _};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// The shape of a [`LocalSite`]: how many pages, which are slow, whether one never answers.
///
/// The site has a home page `/` and pages `/page/1` to `/page/{pages - 1}`. Page `i` links to
/// pages `2i + 1` and `2i + 2` (so every page is reachable from `/`), back to page
/// `(i - 1) / 2` and to one page far away (cycles), in a mix of href forms (absolute paths,
/// full URLs, relative paths, fragments). Besides:
///
/// - pages with `i % 37 == 5` link to `/missing/{i}`, which answers 404;
/// - pages with `i % 97 == 3` link to `/old/{i}`, which answers 301 to a page;
/// - the home page links to `/loop/a`, where `/loop/a` and `/loop/b` redirect (302) to each
///   other; to `/notes.txt`, a text file whose text looks like a link; to
///   `http://localhost:{port}/`, the same server under another host name; and to a
///   `mailto:` and a `javascript:` URL; it also holds a link inside an HTML comment;
/// - `/big` (linked from nowhere) is a 256 KiB page;
/// - with [`hang`](SitePlan::hang), page `pages / 2` links to `/hang`, which
///   accepts the connection, reads the request and never answers;
/// - with [`slow_pages`](SitePlan::slow_pages), some pages answer late.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use parkit_test_site::SitePlan;
///
/// let plan = SitePlan::new(1000)
///     .slow_pages(50, Duration::from_millis(50), Duration::from_millis(200))
///     .hang(true);
/// assert_eq!(plan.pages(), 1000);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SitePlan {
    pages: usize,
    slow: Option<(usize, Duration, Duration)>,
    hang: bool,
}

impl SitePlan {
    /// A site of `pages` pages (at least 1), none slow and none hanging.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit_test_site::SitePlan;
    ///
    /// assert_eq!(SitePlan::new(0).pages(), 1);
    /// ```
    pub fn new(pages: usize) -> Self {
        SitePlan {
            pages: pages.max(1),
            slow: None,
            hang: false,
        }
    }

    /// Makes one page in `every` (those with `i % every == every / 2`) wait before it
    /// answers, between `min` and `max`, spread deterministically.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use parkit_test_site::{LocalSite, SitePlan};
    ///
    /// let plan = SitePlan::new(10).slow_pages(5, Duration::from_millis(20), Duration::from_millis(40));
    /// let site = LocalSite::start(plan)?;
    /// assert!(site.delay_of("/page/2") >= Duration::from_millis(20));
    /// assert_eq!(site.delay_of("/page/3"), Duration::ZERO);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Panics
    ///
    /// If `every` is 0 or `min > max`.
    pub fn slow_pages(mut self, every: usize, min: Duration, max: Duration) -> Self {
        assert!(
            every > 0 && min <= max,
            "parkit-test-site: bad slow-page plan"
        );
        self.slow = Some((every, min, max));
        self
    }

    /// Adds the page `/hang`, which never answers, linked from page `pages / 2`.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit_test_site::{LocalSite, SitePlan};
    ///
    /// let site = LocalSite::start(SitePlan::new(10).hang(true))?;
    /// assert!(site.links("/page/5").contains(&"/hang".to_string()));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn hang(mut self, hang: bool) -> Self {
        self.hang = hang;
        self
    }

    /// The number of pages (home page included).
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit_test_site::SitePlan;
    ///
    /// assert_eq!(SitePlan::new(7).pages(), 7);
    /// ```
    pub fn pages(&self) -> usize {
        self.pages
    }

    /// Page `i`, if `path` is a page.
    fn page_index(&self, path: &str) -> Option<usize> {
        if path == "/" {
            return Some(0);
        }
        let i: usize = path.strip_prefix("/page/")?.parse().ok()?;
        (i > 0 && i < self.pages && path == page_path(i)).then_some(i)
    }

    /// The links of page `i`: `(href, target path on this site, if any)`.
    fn links_of(&self, i: usize, port: u16) -> Vec<(String, Option<String>)> {
        let n = self.pages;
        let mut targets = Vec::new();
        for child in [2 * i + 1, 2 * i + 2] {
            if child < n {
                targets.push(page_path(child));
            }
        }
        if i > 0 {
            targets.push(page_path((i - 1) / 2));
        }
        let far = (i * 7919 + 13) % n;
        if far != i {
            targets.push(page_path(far));
        }
        if i % 37 == 5 {
            targets.push(format!("/missing/{i}"));
        }
        if i % 97 == 3 {
            targets.push(format!("/old/{i}"));
        }
        if self.hang && i == n / 2 {
            targets.push("/hang".to_owned());
        }
        if i == 0 {
            targets.push("/loop/a".to_owned());
            targets.push("/notes.txt".to_owned());
        }
        let here = page_path(i);
        let mut links: Vec<(String, Option<String>)> = targets
            .into_iter()
            .enumerate()
            .map(|(k, t)| (href(&here, &t, port, i + k), Some(t)))
            .collect();
        if i == 0 {
            links.push((format!("http://localhost:{port}/"), None));
            links.push(("mailto:crawler@example.test".to_owned(), None));
            links.push(("javascript:void(0)".to_owned(), None));
        }
        links
    }

    /// Where `path` redirects, if it does.
    fn redirect_of(&self, path: &str) -> Option<(u16, String)> {
        if let Some(i) = path
            .strip_prefix("/old/")
            .and_then(|i| i.parse::<usize>().ok())
        {
            return (path == format!("/old/{i}"))
                .then(|| (301, page_path((i * 31 + 7) % self.pages)));
        }
        match path {
            "/loop/a" => Some((302, "/loop/b".to_owned())),
            "/loop/b" => Some((302, "/loop/a".to_owned())),
            _ => None,
        }
    }

    fn delay_of(&self, path: &str) -> Duration {
        let (Some((every, min, max)), Some(i)) = (self.slow, self.page_index(path)) else {
            return Duration::ZERO;
        };
        if i % every != every / 2 {
            return Duration::ZERO;
        }
        let span = (max - min).as_millis() as u64;
        min + Duration::from_millis((i as u64 * 7919) % (span + 1))
    }
}

fn page_path(i: usize) -> String {
    if i == 0 {
        "/".to_owned()
    } else {
        format!("/page/{i}")
    }
}

/// One of four spellings of a link from `here` to `target`, chosen by `k`.
fn href(here: &str, target: &str, port: u16, k: usize) -> String {
    match k % 4 {
        0 => target.to_owned(),
        1 => format!("http://127.0.0.1:{port}{target}"),
        2 => match (here.starts_with("/page/"), target.strip_prefix("/page/")) {
            (true, Some(rest)) => rest.to_owned(),
            _ => format!("..{target}"),
        },
        _ => format!("{target}#part-{k}"),
    }
}

/// What the server answers.
enum Answer {
    Page {
        status: u16,
        content_type: &'static str,
        location: Option<String>,
        body: String,
        delay: Duration,
    },
    Never,
}

struct Inner {
    plan: SitePlan,
    port: u16,
    hits: Mutex<BTreeMap<String, u64>>,
    stop: AtomicBool,
}

impl Inner {
    fn answer(&self, path: &str) -> Answer {
        let page = |status, content_type, body: String| Answer::Page {
            status,
            content_type,
            location: None,
            body,
            delay: self.plan.delay_of(path),
        };
        if let Some(i) = self.plan.page_index(path) {
            return page(200, "text/html; charset=utf-8", self.render(i));
        }
        if let Some((status, to)) = self.plan.redirect_of(path) {
            return Answer::Page {
                status,
                content_type: "text/html",
                location: Some(to),
                body: String::new(),
                delay: Duration::ZERO,
            };
        }
        match path {
            "/hang" if self.plan.hang => Answer::Never,
            "/notes.txt" => page(
                200,
                "text/plain",
                "Not HTML, so not parsed: <a href=\"/from-text\">no</a>\n".to_owned(),
            ),
            "/big" => {
                let mut body = String::from("<!doctype html><title>big</title><p>");
                while body.len() < 256 << 10 {
                    body.push_str("All work and no play makes a big page. ");
                }
                body.push_str("<a href=\"/after-the-cap\">end</a>");
                page(200, "text/html", body)
            }
            _ => page(404, "text/html", "<!doctype html><h1>Not found</h1>".into()),
        }
    }

    fn render(&self, i: usize) -> String {
        let mut html = format!(
            "<!doctype html>\n<html><head><title>Page {i}</title></head>\n<body>\n\
             <h1>Page {i}</h1>\n<p>A generated page of {} for parkit's crawler.</p>\n<ul>\n",
            self.plan.pages
        );
        for (href, _) in self.plan.links_of(i, self.port) {
            let _ = writeln!(html, "  <li><a href=\"{href}\">{href}</a></li>");
        }
        html.push_str(
            "</ul>\n<!-- <a href=\"/commented-out\">not a link</a> -->\n</body></html>\n",
        );
        html
    }

    fn count(&self, target: &str) {
        let mut hits = self.hits.lock().unwrap_or_else(PoisonError::into_inner);
        *hits.entry(target.to_owned()).or_insert(0) += 1;
    }
}

/// A generated web site (see [`SitePlan`]) served over HTTP/1.1 on `127.0.0.1` at a free port,
/// by a thread that accepts connections and a thread per connection (keep-alive supported).
/// It counts the requests for each path, and knows its own link graph, so a test can check a
/// crawl against it. Dropping it stops the server.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use std::net::TcpStream;
/// use parkit_test_site::{LocalSite, SitePlan};
///
/// let site = LocalSite::start(SitePlan::new(10))?;
/// let mut conn = TcpStream::connect(site.addr())?;
/// conn.write_all(b"GET /page/1 HTTP/1.0\r\n\r\n")?; // HTTP/1.0: closed after the answer
/// let mut answer = String::new();
/// conn.read_to_string(&mut answer)?;
/// assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"));
/// assert!(answer.contains("<h1>Page 1</h1>"));
/// assert_eq!(site.hits()["/page/1"], 1);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Locking
///
/// [`hits`](LocalSite::hits) and every request lock the counts briefly. Dropping the site
/// waits for the accepting thread, which exits at once; connection threads (a hanging one
/// too) close their connections within 25 ms, in the background.
pub struct LocalSite {
    addr: SocketAddr,
    inner: Arc<Inner>,
    acceptor: Option<JoinHandle<()>>,
}

impl LocalSite {
    /// Binds `127.0.0.1:0` and starts serving `plan`.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit_test_site::{LocalSite, SitePlan};
    ///
    /// let site = LocalSite::start(SitePlan::new(3))?;
    /// assert!(site.addr().ip().is_loopback() && site.addr().port() != 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// If the socket cannot be bound.
    ///
    /// # Panics
    ///
    /// If the server thread cannot be spawned.
    pub fn start(plan: SitePlan) -> io::Result<LocalSite> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            plan,
            port: addr.port(),
            hits: Mutex::new(BTreeMap::new()),
            stop: AtomicBool::new(false),
        });
        let server = Arc::clone(&inner);
        let acceptor = thread::Builder::new()
            .name("parkit-site".into())
            .spawn(move || accept(&listener, &server))
            .expect("parkit-test-site: cannot spawn the site's thread");
        Ok(LocalSite {
            addr,
            inner,
            acceptor: Some(acceptor),
        })
    }

    /// The address served.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit_test_site::{LocalSite, SitePlan};
    ///
    /// let site = LocalSite::start(SitePlan::new(3))?;
    /// assert_eq!(site.url("/"), format!("http://{}/", site.addr()));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The full URL of `path` (which starts with `/`) on this site.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit_test_site::{LocalSite, SitePlan};
    ///
    /// let site = LocalSite::start(SitePlan::new(3))?;
    /// assert!(site.url("/page/2").starts_with("http://127.0.0.1:"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// How many requests each path got (paths never asked for are absent).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use std::net::TcpStream;
    /// use parkit_test_site::{LocalSite, SitePlan};
    ///
    /// let site = LocalSite::start(SitePlan::new(3))?;
    /// assert!(site.hits().is_empty());
    /// let mut conn = TcpStream::connect(site.addr())?;
    /// conn.write_all(b"GET /nope HTTP/1.0\r\n\r\n")?;
    /// conn.read_to_end(&mut Vec::new())?;
    /// assert_eq!(site.hits()["/nope"], 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn hits(&self) -> BTreeMap<String, u64> {
        self.inner
            .hits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Forgets the request counts.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use std::net::TcpStream;
    /// use parkit_test_site::{LocalSite, SitePlan};
    ///
    /// let site = LocalSite::start(SitePlan::new(3))?;
    /// let mut conn = TcpStream::connect(site.addr())?;
    /// conn.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    /// conn.read_to_end(&mut Vec::new())?;
    /// assert_eq!(site.hits().len(), 1);
    /// site.reset_hits();
    /// assert!(site.hits().is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn reset_hits(&self) {
        self.inner
            .hits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The paths on this site that the page at `path` links to, each once, in page order
    /// (empty for what is not a page). Links to other hosts and schemes are left out.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit_test_site::{LocalSite, SitePlan};
    ///
    /// let site = LocalSite::start(SitePlan::new(10))?;
    /// assert_eq!(site.links("/page/1")[..3], ["/page/3", "/page/4", "/"]);
    /// assert!(site.links("/missing/5").is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn links(&self, path: &str) -> Vec<String> {
        let Some(i) = self.inner.plan.page_index(path) else {
            return Vec::new();
        };
        let mut seen = HashSet::new();
        self.inner
            .plan
            .links_of(i, self.addr.port())
            .into_iter()
            .filter_map(|(_, target)| target)
            .filter(|t| seen.insert(t.clone()))
            .collect()
    }

    /// Where `path` redirects to, if it is a redirect.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit_test_site::{LocalSite, SitePlan};
    ///
    /// let site = LocalSite::start(SitePlan::new(10))?;
    /// assert_eq!(site.redirect("/loop/a").as_deref(), Some("/loop/b"));
    /// assert_eq!(site.redirect("/page/1"), None);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn redirect(&self, path: &str) -> Option<String> {
        self.inner.plan.redirect_of(path).map(|(_, to)| to)
    }

    /// How long `path` waits before it answers (zero but for slow pages).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use parkit_test_site::{LocalSite, SitePlan};
    ///
    /// let site = LocalSite::start(SitePlan::new(10))?;
    /// assert_eq!(site.delay_of("/"), Duration::ZERO);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn delay_of(&self, path: &str) -> Duration {
        self.inner.plan.delay_of(path)
    }

    /// Every path on this site reachable from `start`, with its distance: links count 1 and
    /// redirects 0 (the crawler's depths). Broken targets are included; other hosts are not.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit_test_site::{LocalSite, SitePlan};
    ///
    /// let site = LocalSite::start(SitePlan::new(10))?;
    /// let depths = site.depths_from("/");
    /// assert_eq!((depths["/"], depths["/page/1"], depths["/page/7"]), (0, 1, 2));
    /// assert_eq!(depths["/loop/b"], depths["/loop/a"]); // a redirect adds no depth
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn depths_from(&self, start: &str) -> BTreeMap<String, u32> {
        let mut depths = BTreeMap::from([(start.to_owned(), 0u32)]);
        let mut queue = VecDeque::from([(start.to_owned(), 0u32)]);
        // 0-1 breadth-first search: redirects go to the front of the queue.
        while let Some((path, depth)) = queue.pop_front() {
            if depths[&path] < depth {
                continue;
            }
            let edges = self
                .links(&path)
                .into_iter()
                .map(|t| (t, depth + 1))
                .chain(self.redirect(&path).map(|t| (t, depth)));
            for (target, d) in edges {
                if depths.get(&target).is_none_or(|&known| d < known) {
                    depths.insert(target.clone(), d);
                    if d == depth {
                        queue.push_front((target, d));
                    } else {
                        queue.push_back((target, d));
                    }
                }
            }
        }
        depths
    }
}

impl fmt::Debug for LocalSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalSite")
            .field("addr", &self.addr)
            .field("plan", &self.inner.plan)
            .finish_non_exhaustive()
    }
}

impl Drop for LocalSite {
    fn drop(&mut self) {
        self.inner.stop.store(true, SeqCst);
        // Wake the acceptor, blocked in `accept`; if that fails, leave it behind rather
        // than wait for ever.
        let woken = TcpStream::connect(self.addr).is_ok();
        if let (true, Some(acceptor)) = (woken, self.acceptor.take()) {
            let _ = acceptor.join();
        }
    }
}

/// How often a connection thread looks at the stop flag.
const TICK: Duration = Duration::from_millis(25);
/// The largest request head accepted.
const MAX_HEAD: usize = 16 << 10;

fn accept(listener: &TcpListener, inner: &Arc<Inner>) {
    for stream in listener.incoming() {
        if inner.stop.load(SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let inner = Arc::clone(inner);
        let spawned = thread::Builder::new()
            .name("parkit-site-conn".into())
            .spawn(move || {
                let _ = serve(stream, &inner);
            });
        if spawned.is_err() {
            // Out of threads: drop this connection, the client sees it closed.
            continue;
        }
    }
}

/// Serves the requests of one connection until the client closes it or the site stops.
fn serve(mut stream: TcpStream, inner: &Inner) -> io::Result<()> {
    stream.set_read_timeout(Some(TICK))?;
    stream.set_nodelay(true)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let end = loop {
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            if inner.stop.load(SeqCst) || buf.len() > MAX_HEAD {
                return Ok(());
            }
            match stream.read(&mut chunk) {
                Ok(0) => return Ok(()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let mut lines = head.split("\r\n");
        let mut request = lines.next().unwrap_or("").split_whitespace();
        let (_method, target, version) = (
            request.next().unwrap_or(""),
            request.next().unwrap_or("/").to_owned(),
            request.next().unwrap_or("HTTP/1.0"),
        );
        let close = version == "HTTP/1.0"
            || lines.any(|l| {
                let l = l.to_ascii_lowercase();
                l.starts_with("connection:") && l.contains("close")
            });
        inner.count(&target);
        let path = target.split('?').next().unwrap_or("/");
        match inner.answer(path) {
            Answer::Never => {
                // Hold the connection open and say nothing until the site stops.
                while !inner.stop.load(SeqCst) {
                    thread::sleep(TICK);
                }
                let _ = stream.shutdown(Shutdown::Both);
                return Ok(());
            }
            Answer::Page {
                status,
                content_type,
                location,
                body,
                delay,
            } => {
                if !delay.is_zero() {
                    thread::sleep(delay);
                }
                let reason = match status {
                    200 => "OK",
                    301 => "Moved Permanently",
                    302 => "Found",
                    404 => "Not Found",
                    _ => "Unknown",
                };
                let mut out = format!(
                    "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n\
                     Content-Length: {}\r\n",
                    body.len()
                );
                if let Some(location) = location {
                    let _ = write!(out, "Location: {location}\r\n");
                }
                out.push_str(if close {
                    "Connection: close\r\n\r\n"
                } else {
                    "Connection: keep-alive\r\n\r\n"
                });
                out.push_str(&body);
                stream.write_all(out.as_bytes())?;
                if close {
                    return Ok(());
                }
            }
        }
    }
}
