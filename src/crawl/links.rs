//! [`extract_links`]: the links of an HTML page, parsed with an HTML5 parser and resolved.

use std::collections::HashSet;
use std::sync::OnceLock;

use scraper::{Html, Selector};
use url::Url;

fn selector(cell: &'static OnceLock<Selector>, css: &str) -> &'static Selector {
    cell.get_or_init(|| Selector::parse(css).expect("a valid built-in selector"))
}

/// The links of an HTML document: the `href` of every `<a>` and `<area>` element, resolved
/// against `base` (or against the document's first `<base href>`, itself resolved against
/// `base`), without fragments, `http` and `https` only, each URL once, in document order.
///
/// The document is parsed by an HTML5 parser (`scraper`, over `html5ever`), so malformed
/// markup, comments, scripts and attributes in any quoting are handled as a browser would:
/// a link inside a comment or a `<script>` is not a link. Surrounding whitespace in `href` is
/// ignored; links that cannot be resolved (`http://[bad`) are skipped, and so are other
/// schemes (`mailto:`, `javascript:`, `ftp:`). An empty `href` is a link to the page itself.
///
/// # Examples
///
/// ```
/// use parkit::crawl::{extract_links, Url};
///
/// let page = Url::parse("http://example.test/docs/intro.html")?;
/// let html = r#"
///     <a href="setup.html#linux">setup</a>
///     <a href='../index.html'>home</a>
///     <a href="https://other.test/">elsewhere</a>
///     <a href="setup.html">setup, again</a>
///     <a href="mailto:me@example.test">mail</a>
///     <!-- <a href="/hidden">not a link</a> -->
/// "#;
/// let links: Vec<String> = extract_links(&page, html).iter().map(|u| u.to_string()).collect();
/// assert_eq!(links, [
///     "http://example.test/docs/setup.html",
///     "http://example.test/index.html",
///     "https://other.test/",
/// ]);
/// # Ok::<(), url::ParseError>(())
/// ```
pub fn extract_links(base: &Url, html: &str) -> Vec<Url> {
    static BASE: OnceLock<Selector> = OnceLock::new();
    static LINKS: OnceLock<Selector> = OnceLock::new();
    let doc = Html::parse_document(html);
    let base = doc
        .select(selector(&BASE, "base[href]"))
        .next()
        .and_then(|b| b.value().attr("href"))
        .and_then(|href| base.join(href.trim()).ok())
        .unwrap_or_else(|| base.clone());
    let mut seen = HashSet::new();
    let mut links = Vec::new();
    for element in doc.select(selector(&LINKS, "a[href], area[href]")) {
        let Some(href) = element.value().attr("href") else {
            continue;
        };
        let Ok(mut url) = base.join(href.trim()) else {
            continue;
        };
        if !matches!(url.scheme(), "http" | "https") {
            continue;
        }
        url.set_fragment(None);
        if seen.insert(url.clone()) {
            links.push(url);
        }
    }
    links
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(base: &str, html: &str) -> Vec<String> {
        let base = Url::parse(base).unwrap();
        extract_links(&base, html)
            .into_iter()
            .map(|u| u.to_string())
            .collect()
    }

    #[test]
    fn resolves_relative_forms() {
        let html = r#"<a href="7">a</a><a href="../page/2">b</a><a href="/x?q=1#f">c</a>
            <a href="//other.test/y">d</a><a href="  ./9  ">e</a><a href="">self</a>
            <area href="map.html"><A HREF=UPPER>f</A>"#;
        assert_eq!(
            paths("http://h.test/page/5#top", html),
            [
                "http://h.test/page/7",
                "http://h.test/page/2",
                "http://h.test/x?q=1",
                "http://other.test/y",
                "http://h.test/page/9",
                "http://h.test/page/5",
                "http://h.test/page/map.html",
                "http://h.test/page/UPPER",
            ]
        );
    }

    #[test]
    fn honours_base_href() {
        let html = r#"<head><base href="/docs/"></head><a href="a.html">a</a>"#;
        assert_eq!(
            paths("http://h.test/x/y", html),
            ["http://h.test/docs/a.html"]
        );
    }

    #[test]
    fn skips_what_is_not_a_web_link() {
        let html = r#"<a href="javascript:void(0)">j</a><a href="mailto:a@b">m</a>
            <a href="ftp://h.test/f">f</a><a href="http://[bad">bad</a><a name="anchor">n</a>
            <script>document.write('<a href="/in-script">s</a>')</script>
            <link href="/style.css" rel="stylesheet">"#;
        assert!(paths("http://h.test/", html).is_empty());
    }

    #[test]
    fn survives_broken_markup() {
        let html = "<html><body><p><a href=/one>one<a href='/two'>two</p><div><a href=\"/three\"";
        assert_eq!(
            paths("http://h.test/", html),
            ["http://h.test/one", "http://h.test/two"]
        );
        assert!(paths("http://h.test/", "").is_empty());
        assert!(paths("http://h.test/", "\u{0}\u{fffd}<<<>>>").is_empty());
    }
}
