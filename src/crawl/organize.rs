//! The organizer: the crawl's whole state, owned by the pipeline's last stage. It deduplicates
//! URLs, keeps exact depths, applies the limits, sends new URLs to the frontier and counts the
//! URLs in flight; at the end it writes the [`CrawlReport`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use crossbeam_channel::Sender;
use url::Url;

use super::fetch::{FetchErrorKind, Page, Redirect};
use super::report::{BrokenLink, CrawlReport, Outcome, PageRecord, Totals, too_many_redirects};
use crate::pipeline::Report;

/// Index of a URL in the organizer's table.
pub(crate) type NodeId = usize;

/// A URL to fetch, as the frontier sends it to the fetch stage.
#[derive(Debug)]
pub(crate) struct Task {
    pub(crate) id: NodeId,
    pub(crate) url: Url,
}

/// A URL after the fetch and extract stages: what the organizer gets.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) id: NodeId,
    pub(crate) outcome: Outcome,
    pub(crate) links: Vec<Url>,
    pub(crate) location: Option<Url>,
    pub(crate) content_type: Option<String>,
    pub(crate) bytes: u64,
    pub(crate) truncated: bool,
    pub(crate) time: Duration,
}

impl Parsed {
    /// The extract stage's work: the links of a fetched page, or nothing for a failure
    /// (which took `took`, politeness delay included).
    pub(crate) fn from_fetch(
        id: NodeId,
        fetched: Result<Page, super::FetchError>,
        took: Duration,
    ) -> Self {
        match fetched {
            Ok(page) => Parsed {
                id,
                outcome: Outcome::Status(page.status),
                links: page.links(),
                location: page.location,
                content_type: page.content_type,
                bytes: page.bytes,
                truncated: page.truncated,
                time: page.elapsed,
            },
            Err(error) => Parsed {
                id,
                outcome: Outcome::Failed(error),
                links: Vec::new(),
                location: None,
                content_type: None,
                bytes: 0,
                truncated: false,
                time: took,
            },
        }
    }
}

/// The crawl's limits, as the organizer applies them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_depth: u32,
    pub(crate) max_pages: usize,
    pub(crate) max_redirects: u32,
    pub(crate) same_host_only: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Just added, not yet looked at.
    New,
    /// Sent to the frontier, not yet organized.
    Scheduled,
    /// Fetched and organized.
    Done,
    /// Not fetched: on a host outside the crawl.
    OtherHost,
    /// Not fetched (yet): deeper than the limit.
    TooDeep,
    /// Not fetched: the page limit was reached.
    OverLimit,
    /// Not fetched (yet): reached only at the end of a redirect chain longer than the limit.
    TooManyRedirects,
}

#[derive(Debug)]
struct Node {
    url: Url,
    /// Smallest known distance in links from a start URL.
    depth: u32,
    /// Redirects in a row that led here on the path of `depth`.
    hops: u32,
    state: State,
    /// Pages linking or redirecting here, each once.
    referrers: Vec<NodeId>,
    /// Done pages: their links.
    links: Vec<NodeId>,
    /// Done redirects: their target.
    redirect_to: Option<NodeId>,
    /// Done pages: what the fetch gave.
    result: Option<Parsed>,
}

/// The crawl's state. Only the organize stage's single worker touches it during the run.
#[derive(Debug)]
pub(crate) struct Organizer {
    limits: Limits,
    nodes: Vec<Node>,
    index: HashMap<Url, NodeId>,
    /// Hosts the crawl may fetch from when `same_host_only`.
    hosts: HashSet<String>,
    start_urls: usize,
    scheduled: usize,
    /// Organized nodes, in the order they were organized.
    done: Vec<NodeId>,
    redirects: Vec<Redirect>,
    frontier: Sender<Task>,
    /// URLs sent to the frontier and not yet organized.
    in_flight: Arc<AtomicUsize>,
}

fn host(url: &Url) -> &str {
    url.host_str().unwrap_or("")
}

impl Organizer {
    /// An organizer over `start` (fragments ignored, duplicates dropped), which it schedules at once: each of them is
    /// in flight when this returns (up to the page limit).
    pub(crate) fn new(
        limits: Limits,
        start: Vec<Url>,
        frontier: Sender<Task>,
        in_flight: Arc<AtomicUsize>,
    ) -> Self {
        let mut organizer = Organizer {
            limits,
            nodes: Vec::new(),
            index: HashMap::new(),
            hosts: start.iter().map(|u| host(u).to_owned()).collect(),
            start_urls: 0,
            scheduled: 0,
            done: Vec::new(),
            redirects: Vec::new(),
            frontier,
            in_flight,
        };
        for mut url in start {
            url.set_fragment(None);
            if !organizer.index.contains_key(&url) {
                organizer.start_urls += 1;
                organizer.discover(url, None, 0, 0);
            }
        }
        organizer
    }

    /// Records what one scheduled URL gave, discovers its links (and its redirect's target),
    /// schedules those that qualify, and only then counts it out of the URLs in flight.
    pub(crate) fn organize(&mut self, parsed: Parsed) {
        let id = parsed.id;
        debug_assert_eq!(self.nodes[id].state, State::Scheduled);
        let (depth, hops) = (self.nodes[id].depth, self.nodes[id].hops);
        self.nodes[id].state = State::Done;
        self.done.push(id);
        let links: Vec<NodeId> = parsed
            .links
            .iter()
            .map(|link| self.discover(link.clone(), Some(id), depth + 1, 0))
            .collect();
        self.nodes[id].links = links;
        if let (Some(to), Outcome::Status(status)) = (&parsed.location, &parsed.outcome) {
            self.redirects.push(Redirect {
                from: self.nodes[id].url.clone(),
                to: to.clone(),
                status: *status,
            });
            if depth == 0 {
                // A start URL moved (http -> https, example.test -> www.example.test): its
                // new host belongs to the crawl too.
                self.allow_host(host(to).to_owned());
            }
            let target = self.discover(to.clone(), Some(id), depth, hops + 1);
            self.nodes[id].redirect_to = Some(target);
        }
        self.nodes[id].result = Some(parsed);
        // Last: every URL this page made us send is already counted.
        self.in_flight.fetch_sub(1, SeqCst);
    }

    /// Adds `url` to the table if it is new, notes who refers to it, and offers it the path
    /// of length `depth` (`hops` redirects in a row at its end).
    fn discover(&mut self, url: Url, from: Option<NodeId>, depth: u32, hops: u32) -> NodeId {
        let id = match self.index.get(&url) {
            Some(&id) => id,
            None => {
                let id = self.nodes.len();
                self.index.insert(url.clone(), id);
                self.nodes.push(Node {
                    url,
                    depth: u32::MAX,
                    hops: u32::MAX,
                    state: State::New,
                    referrers: Vec::new(),
                    links: Vec::new(),
                    redirect_to: None,
                    result: None,
                });
                id
            }
        };
        if let Some(from) = from {
            self.nodes[id].referrers.push(from);
        }
        self.improve(id, depth, hops);
        id
    }

    /// Lowers the depth of `id` to `depth` if that is shorter, and passes the improvement on
    /// along the links of pages already organized; URLs left out for being too deep get
    /// another chance. Ends because depths only go down.
    ///
    /// A path that ends in more than `max_redirects` redirects in a row is no path: it only
    /// marks a URL reached no other way as the end of too long a chain. Among paths, the
    /// shorter wins, then the one with fewer redirects at its end. (So a redirect reached both
    /// at the end of a long chain and, deeper, by a plain link follows the chain's hop count:
    /// its target may be refused where the deeper path would have allowed it. Rare enough.)
    fn improve(&mut self, id: NodeId, depth: u32, hops: u32) {
        let mut work = vec![(id, depth, hops)];
        while let Some((id, depth, hops)) = work.pop() {
            let node = &mut self.nodes[id];
            if hops > self.limits.max_redirects {
                if node.state == State::New {
                    node.state = State::TooManyRedirects;
                }
                continue;
            }
            if (depth, hops) >= (node.depth, node.hops) {
                continue;
            }
            node.depth = depth;
            node.hops = hops;
            match node.state {
                State::Done => {
                    work.extend(node.links.iter().map(|&l| (l, depth + 1, 0)));
                    work.extend(node.redirect_to.map(|t| (t, depth, hops + 1)));
                }
                State::Scheduled | State::OtherHost => {}
                State::New | State::TooDeep | State::OverLimit | State::TooManyRedirects => {
                    self.consider(id);
                }
            }
        }
    }

    /// Decides whether `id` gets fetched, and if so sends it to the frontier.
    fn consider(&mut self, id: NodeId) {
        let limits = self.limits;
        let node = &self.nodes[id];
        let state = if limits.same_host_only && !self.hosts.contains(host(&node.url)) {
            State::OtherHost
        } else if node.depth > limits.max_depth {
            State::TooDeep
        } else if self.scheduled >= limits.max_pages {
            State::OverLimit
        } else {
            State::Scheduled
        };
        self.nodes[id].state = state;
        if state == State::Scheduled {
            self.scheduled += 1;
            // Count first, then send: the source must never see the channel empty and the
            // count at zero while this URL is on its way.
            self.in_flight.fetch_add(1, SeqCst);
            let task = Task {
                id,
                url: self.nodes[id].url.clone(),
            };
            if self.frontier.send(task).is_err() {
                // The source is gone: the run is being torn down.
                self.in_flight.fetch_sub(1, SeqCst);
            }
        }
    }

    /// Lets the crawl onto `host`, and schedules what it had left out for being there.
    fn allow_host(&mut self, host_name: String) {
        if !self.limits.same_host_only || !self.hosts.insert(host_name.clone()) {
            return;
        }
        let waiting: Vec<NodeId> = (0..self.nodes.len())
            .filter(|&id| {
                self.nodes[id].state == State::OtherHost && host(&self.nodes[id].url) == host_name
            })
            .collect();
        for id in waiting {
            self.consider(id);
        }
    }

    /// The report of the crawl.
    pub(crate) fn finish(self, pipeline: Report, elapsed: Duration) -> CrawlReport {
        let mut totals = Totals {
            start_urls: self.start_urls,
            distinct_urls: self.nodes.len(),
            elapsed,
            ..Totals::default()
        };
        let mut pages = Vec::with_capacity(self.done.len());
        let mut broken = Vec::new();
        let found_on = |node: &Node| {
            let mut on: Vec<Url> = node
                .referrers
                .iter()
                .map(|&r| self.nodes[r].url.clone())
                .collect();
            on.sort();
            on.dedup();
            on
        };
        for node in &self.nodes {
            match node.state {
                State::OtherHost => totals.other_hosts += 1,
                State::TooDeep => totals.beyond_depth += 1,
                State::OverLimit => totals.beyond_max_pages += 1,
                State::TooManyRedirects => broken.push(BrokenLink {
                    url: node.url.clone(),
                    problem: too_many_redirects(self.limits.max_redirects),
                    found_on: found_on(node),
                }),
                State::New | State::Scheduled | State::Done => {}
            }
            let Some(result) = &node.result else {
                continue;
            };
            totals.fetched += 1;
            match &result.outcome {
                Outcome::Status(s) if (200..300).contains(s) => totals.ok += 1,
                Outcome::Status(s) if (300..400).contains(s) => totals.redirects += 1,
                Outcome::Status(s) if *s >= 400 => totals.http_errors += 1,
                Outcome::Status(_) => {}
                Outcome::Failed(e) => {
                    totals.failed += 1;
                    if e.kind() == FetchErrorKind::Timeout {
                        totals.timeouts += 1;
                    }
                }
            }
            totals.links += node.links.len() as u64;
            totals.bytes += result.bytes;
            totals.max_depth = totals.max_depth.max(node.depth);
            if result.outcome.is_broken() {
                broken.push(BrokenLink {
                    url: node.url.clone(),
                    problem: result.outcome.clone(),
                    found_on: found_on(node),
                });
            }
            pages.push(PageRecord {
                url: node.url.clone(),
                depth: node.depth,
                outcome: result.outcome.clone(),
                links_out: node.links.len(),
                redirect_to: result.location.clone(),
                content_type: result.content_type.clone(),
                bytes: result.bytes,
                truncated: result.truncated,
                time: result.time,
            });
        }
        pages.sort_by(|a, b| (a.depth, &a.url).cmp(&(b.depth, &b.url)));
        broken.sort_by(|a, b| a.url.cmp(&b.url));
        let mut redirects = self.redirects;
        redirects.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));
        totals.broken = broken.len();
        CrawlReport {
            pages,
            broken,
            redirects,
            totals,
            pipeline,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::{Receiver, unbounded};

    /// The report of an empty pipeline run, to stand in for the crawl's.
    fn empty_report() -> Report {
        crate::pipeline::Pipeline::from(0..0u8)
            .collect_with_report()
            .unwrap()
            .1
    }

    fn url(path: &str) -> Url {
        Url::parse("http://h.test/").unwrap().join(path).unwrap()
    }

    struct Harness {
        org: Organizer,
        rx: Receiver<Task>,
        in_flight: Arc<AtomicUsize>,
    }

    impl Harness {
        fn new(limits: Limits, start: &[&str]) -> Self {
            let (tx, rx) = unbounded();
            let in_flight = Arc::new(AtomicUsize::new(0));
            let start = start.iter().map(|s| Url::parse(s).unwrap()).collect();
            let org = Organizer::new(limits, start, tx, Arc::clone(&in_flight));
            Harness { org, rx, in_flight }
        }

        /// Takes every scheduled task now in the channel.
        fn take(&self) -> Vec<Task> {
            self.rx.try_iter().collect()
        }

        fn page(&mut self, task: &Task, status: u16, links: &[&str], location: Option<&str>) {
            self.org.organize(Parsed {
                id: task.id,
                outcome: Outcome::Status(status),
                links: links.iter().map(|l| url(l)).collect(),
                location: location.map(url),
                content_type: None,
                bytes: 0,
                truncated: false,
                time: Duration::ZERO,
            });
        }
    }

    fn limits(max_depth: u32, max_pages: usize) -> Limits {
        Limits {
            max_depth,
            max_pages,
            max_redirects: 3,
            same_host_only: true,
        }
    }

    #[test]
    fn counts_in_flight_and_dedupes() {
        let mut h = Harness::new(limits(10, 100), &["http://h.test/", "http://h.test/#x"]);
        let start = h.take();
        assert_eq!((start.len(), h.in_flight.load(SeqCst)), (1, 1));
        h.page(
            &start[0],
            200,
            &["/a", "/b", "/", "http://other.test/"],
            None,
        );
        let next = h.take();
        assert_eq!(next.len(), 2);
        assert_eq!(h.in_flight.load(SeqCst), 2);
        h.page(&next[0], 200, &["/b", "/a", "/"], None);
        h.page(&next[1], 404, &[], None);
        assert!(h.take().is_empty());
        assert_eq!(h.in_flight.load(SeqCst), 0);
        let report = h.org.finish(empty_report(), Duration::ZERO);
        assert_eq!(report.totals.fetched, 3);
        assert_eq!(report.totals.other_hosts, 1);
        assert_eq!(report.broken.len(), 1);
        assert_eq!(report.broken[0].found_on, [url("/"), url("/a")]);
    }

    #[test]
    fn a_shorter_path_found_late_lowers_depths_and_reopens_the_depth_limit() {
        // /far is found first at depth 3 (/ -> /a -> /b -> /far), and only later, when the
        // slow page /s is organized, at depth 2 (/ -> /s -> /far).
        let mut h = Harness::new(limits(3, 100), &["http://h.test/"]);
        let root = h.take().pop().unwrap();
        h.page(&root, 200, &["/a", "/s"], None);
        let mut level1 = h.take();
        let s = level1.pop().unwrap();
        let a = level1.pop().unwrap();
        h.page(&a, 200, &["/b"], None);
        let b = h.take().pop().unwrap();
        h.page(&b, 200, &["/far"], None);
        let far = h.take().pop().unwrap();
        // /far at depth 3 links to /x at depth 4: beyond the limit.
        h.page(&far, 200, &["/x"], None);
        assert!(h.take().is_empty());
        // Now "/s" (depth 1) turns out to link to /far: /far drops to depth 2, /x to 3.
        h.page(&s, 200, &["/far"], None);
        let x = h.take();
        assert_eq!(x.len(), 1);
        assert_eq!(x[0].url, url("/x"));
        h.page(&x[0], 200, &[], None);
        assert_eq!(h.in_flight.load(SeqCst), 0);
        let report = h.org.finish(empty_report(), Duration::ZERO);
        let depth = |p: &str| report.page(url(p).as_str()).unwrap().depth;
        assert_eq!((depth("/far"), depth("/x")), (2, 3));
        assert_eq!(report.totals.beyond_depth, 0);
    }

    #[test]
    fn redirects_are_edges_of_no_depth_and_loops_end() {
        let mut h = Harness::new(limits(1, 100), &["http://h.test/"]);
        let root = h.take().pop().unwrap();
        h.page(&root, 200, &["/old"], None);
        let old = h.take().pop().unwrap();
        h.page(&old, 301, &[], Some("/new"));
        let new = h.take().pop().unwrap();
        assert_eq!(new.url, url("/new"));
        h.page(&new, 302, &[], Some("/old")); // a loop: /old is known, nothing new
        assert!(h.take().is_empty());
        assert_eq!(h.in_flight.load(SeqCst), 0);
        let report = h.org.finish(empty_report(), Duration::ZERO);
        assert_eq!(report.redirects.len(), 2);
        assert_eq!(report.page(url("/new").as_str()).unwrap().depth, 1);
        assert!(report.broken.is_empty());
    }

    #[test]
    fn long_redirect_chains_are_broken_links() {
        let mut h = Harness::new(limits(5, 100), &["http://h.test/"]);
        let mut task = h.take().pop().unwrap();
        h.page(&task, 200, &["/r0"], None);
        for i in 0..3 {
            task = h.take().pop().unwrap();
            h.page(&task, 301, &[], Some(&format!("/r{}", i + 1)));
        }
        // /r3 is the third redirect in a row: within the limit of 3, fetched.
        task = h.take().pop().unwrap();
        h.page(&task, 301, &[], Some("/r4"));
        assert!(h.take().is_empty());
        let report = h.org.finish(empty_report(), Duration::ZERO);
        assert_eq!(report.broken.len(), 1);
        assert_eq!(report.broken[0].url, url("/r4"));
        assert_eq!(report.broken[0].found_on, [url("/r3")]);
    }

    #[test]
    fn a_url_past_a_long_chain_is_still_fetched_when_linked() {
        let mut h = Harness::new(limits(5, 100), &["http://h.test/"]);
        let root = h.take().pop().unwrap();
        h.page(&root, 200, &["/r0", "/slow"], None);
        let mut level1 = h.take();
        let slow = level1.pop().unwrap();
        let mut task = level1.pop().unwrap();
        for i in 0..3 {
            h.page(&task, 301, &[], Some(&format!("/r{}", i + 1)));
            task = h.take().pop().unwrap();
        }
        // /r0 -> /r1 -> /r2 -> /r3 -> /end: the 4th redirect in a row, over the limit of 3.
        h.page(&task, 301, &[], Some("/end"));
        assert!(h.take().is_empty());
        // A plain link from a page at depth 1 makes /end a page at depth 2 with no hops.
        h.page(&slow, 200, &["/end"], None);
        let end = h.take();
        assert_eq!(end.len(), 1);
        assert_eq!(end[0].url, url("/end"));
        h.page(&end[0], 200, &[], None);
        assert_eq!(h.in_flight.load(SeqCst), 0);
        let report = h.org.finish(empty_report(), Duration::ZERO);
        assert!(report.broken.iter().all(|b| b.url != url("/end")));
    }

    #[test]
    fn page_limit_caps_scheduling() {
        let mut h = Harness::new(limits(10, 3), &["http://h.test/"]);
        let root = h.take().pop().unwrap();
        h.page(&root, 200, &["/1", "/2", "/3", "/4"], None);
        let next = h.take();
        assert_eq!(next.len(), 2);
        for t in &next {
            h.page(t, 200, &["/5"], None);
        }
        assert!(h.take().is_empty());
        let report = h.org.finish(empty_report(), Duration::ZERO);
        assert_eq!(report.totals.fetched, 3);
        assert_eq!(report.totals.beyond_max_pages, 3);
    }

    #[test]
    fn a_start_url_that_moves_host_takes_its_new_host_along() {
        let mut h = Harness::new(limits(5, 100), &["http://h.test/"]);
        let root = h.take().pop().unwrap();
        h.page(&root, 301, &[], Some("http://www.h.test/"));
        let www = h.take().pop().unwrap();
        assert_eq!(www.url.as_str(), "http://www.h.test/");
        h.page(
            &www,
            200,
            &["http://www.h.test/a", "http://elsewhere.test/"],
            None,
        );
        assert_eq!(h.take().len(), 1);
    }
}
