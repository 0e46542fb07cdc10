//! The routes: the page, `/fib/{n}`, `/batch`, `/healthz`, `/metrics`; and the layers around
//! them (metrics per request, a panic answered 500, compression).

use std::io::Write as _;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use parkit::decimal::DecNat;
use parkit::fib::{self, DecimalPair};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, Predicate};

use super::super::input::{self, Item};
use super::super::output::{Engine, Format, Printer, What};
use super::api::{self, ApiError, Located, Options, shorten};
use super::hub::{Hub, Key, Outcome, Reservation, Source, TEXT_MAX_DIGITS, panic_message};
use super::stream::{self, STREAM_BYTES};
use super::track::TrackLayer;

/// The page, served from the binary.
const PAGE: &str = include_str!("page.html");

/// Values up to this many digits are answered from memory in one piece; longer ones stream.
const INLINE_DIGITS: u64 = 64 << 10;

/// Values per block of a streamed batch, and its output in bytes: as the CLI cuts its blocks.
const BLOCK_VALUES: usize = 2048;
const BLOCK_BYTES: u64 = 4 << 20;

/// Most values the page's view answers in one request (it is for people to read).
const PAGE_MAX_VALUES: u64 = 10_000;

/// Digits shown at each end of a folded value in the page's view.
const FOLD_EDGE: usize = 40;

/// A response header marking a live stream, which is never compressed: a compressor holds
/// bytes back until it has enough, and the page must see each line as soon as it is ready.
const LIVE: &str = "x-fibo-live";

/// The service's routes and layers over `hub`: the routes twice, behind compression for the
/// clients that ask for it (`Accept-Encoding`) and without it for the others, who then pay
/// nothing for it (the layer cost a cached `GET /fib/1000` about a sixth of its throughput).
pub(crate) fn service(hub: Arc<Hub>) -> Negotiate {
    let compress = DefaultPredicate::new().and(
        |_: StatusCode, _: axum::http::Version, h: &HeaderMap, _: &axum::http::Extensions| {
            !h.contains_key(LIVE)
        },
    );
    let plain = Router::new()
        .route("/", get(page))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/fib/{n}", get(fib_one))
        .route("/batch", post(batch))
        .fallback(not_found)
        .layer(TrackLayer {
            metrics: Arc::clone(&hub.metrics),
        })
        .with_state(hub);
    let compressed = plain
        .clone()
        .layer(CompressionLayer::new().compress_when(compress));
    Negotiate { plain, compressed }
}

/// The routes with and without compression, chosen per request.
#[derive(Clone, Debug)]
pub(crate) struct Negotiate {
    plain: Router,
    compressed: Router,
}

impl<B> tower::Service<axum::http::Request<B>> for Negotiate
where
    B: axum::body::HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = axum::routing::future::RouteFuture<std::convert::Infallible>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        if req.headers().contains_key(header::ACCEPT_ENCODING) {
            self.compressed.call(req)
        } else {
            self.plain.call(req)
        }
    }
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics(State(hub): State<Arc<Hub>>) -> Response {
    let text = hub.metrics.render(&hub.engine);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        body: json!({"error": "no such page; try GET /, GET /fib/10, POST /batch, GET /metrics"}),
    }
}

fn query(q: Result<Query<Vec<(String, String)>>, QueryRejection>) -> Result<Options, ApiError> {
    let Query(pairs) = q.map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;
    api::options_from_query(&pairs)
}

fn content_type(format: Format, batch: bool) -> &'static str {
    match (format, batch) {
        (Format::Json, true) => "application/x-ndjson",
        (Format::Json, false) => "application/json",
        _ => "text/plain; charset=utf-8",
    }
}

/// Refuses a full value past `--max-n`, naming the input.
fn check_n(hub: &Hub, n: u64, token: &str, at: &str) -> Result<(), ApiError> {
    if n > hub.limits.max_n {
        return Err(ApiError::bad_token(
            format!(
                "F({n}) at {at} is over this server's limit of n <= {} (--max-n); digits, last \
                 and mod work for any n",
                hub.limits.max_n
            ),
            token,
            at.into(),
        ));
    }
    Ok(())
}

/// `GET /fib/{n}`: the line `fibo n` prints.
async fn fib_one(
    State(hub): State<Arc<Hub>>,
    path: Result<Path<String>, PathRejection>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let Path(token) = path.map_err(|e| ApiError::bad_request(format!("invalid path: {e}")))?;
    let o = query(q)?;
    let n = input::parse_number(&token).map_err(|reason| {
        ApiError::bad_token(
            format!("invalid input '{}' at path: {reason}", shorten(&token)),
            &token,
            "path".into(),
        )
    })?;
    let (body, source) = match o.what {
        What::Value => {
            check_n(&hub, n, &token, "path")?;
            let digits = fib::digit_count(n);
            let estimate = digits + 64;
            if estimate > hub.limits.max_response_bytes {
                return Err(too_large(estimate, hub.limits.max_response_bytes));
            }
            let (pair, source) = hub.pair(n).await?;
            let body = if digits <= INLINE_DIGITS {
                let mut out = Vec::with_capacity(digits as usize + 64);
                // Writing into a Vec cannot fail.
                let _ = write_value(&mut out, o.format, n, &pair.0);
                hub.metrics.bytes_out.inc_by(out.len() as u64);
                Body::from(out)
            } else if digits <= TEXT_MAX_DIGITS {
                let text = match hub.texts.get(&n) {
                    Some(text) => text,
                    None => {
                        let h = Arc::clone(&hub);
                        // Rendered once, off the async threads, on the engine's pool.
                        tokio::task::spawn_blocking(move || {
                            h.texts.get_or_compute(n, || {
                                let mut text = Vec::with_capacity(digits as usize);
                                let _ = h.engine.pool().install(|| pair.0.write_to(&mut text));
                                Bytes::from(text)
                            })
                        })
                        .await
                        .map_err(|e| ApiError::internal(&e.to_string()))?
                    }
                };
                text_stream(&hub, o.format, n, text)
            } else {
                // One chunk being formatted and one in the connection's buffers.
                let memory = hub.reserve(2 * stream::CHUNK as u64)?;
                value_stream(&hub, o.format, n, pair, memory)
            };
            (body, source)
        }
        What::Digits => {
            let line = Printer {
                format: o.format,
                what: o.what,
                engine: Engine::Auto,
            }
            .render(&hub.engine, &[n]);
            hub.metrics.bytes_out.inc_by(line.len() as u64);
            (Body::from(line), Source::Hit)
        }
        What::Last(_) | What::Mod(_) => {
            let (line, source) = line(&hub, n, o.format, o.what).await?;
            hub.metrics.bytes_out.inc_by(line.len() as u64);
            (Body::from(line), source)
        }
    };
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(o.format, false)),
    );
    h.insert("x-fibo-cache", HeaderValue::from_static(source.as_str()));
    h.insert("x-fibo-digits", HeaderValue::from(fib::digit_count(n)));
    if let Ok(v) = HeaderValue::from_str(&format!(
        "compute;dur={:.3}",
        started.elapsed().as_secs_f64() * 1e3
    )) {
        h.insert("server-timing", v);
    }
    if o.download
        && let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"fib-{n}.txt\""))
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

fn too_large(estimate: u64, limit: u64) -> ApiError {
    ApiError::too_large(
        format!(
            "the response would be about {}, over this server's limit of {} \
             (--max-response-bytes); ask for fewer or smaller values, or for digits, last K or \
             mod M",
            super::super::memory::human(estimate),
            super::super::memory::human(limit)
        ),
        estimate,
        limit,
    )
}

/// Limbs formatted per chunk of a streamed value: about 256 KB of digits.
const STREAM_LIMBS: usize = stream::CHUNK / 19;

/// F(n)'s line as a body that formats its digits chunk by chunk as the connection takes them:
/// no thread waits on the client and only one chunk of text exists at a time (the value itself
/// is shared with the cache).
fn value_stream(
    hub: &Arc<Hub>,
    format: Format,
    n: u64,
    pair: DecimalPair,
    memory: Reservation,
) -> Body {
    let limbs = pair.0.limbs().len().max(1);
    let mut head = Vec::new();
    let _ = match format {
        Format::Value => Ok(()),
        Format::Tsv => write!(head, "{n}\t"),
        Format::Json => write!(
            head,
            r#"{{"n":{n},"digits":{},"value":""#,
            pair.0.digit_count()
        ),
    };
    let tail: &'static [u8] = if format == Format::Json {
        b"\"}\n"
    } else {
        b"\n"
    };
    let metrics = Arc::clone(&hub.metrics);
    let chunks = (0..limbs).step_by(STREAM_LIMBS).map(move |start| {
        let _held = &memory;
        let mut out = Vec::with_capacity(STREAM_LIMBS * 19 + 64);
        if start == 0 {
            out.append(&mut head);
        }
        pair.0
            .write_text_range(start..start + STREAM_LIMBS, &mut out);
        if start + STREAM_LIMBS >= limbs {
            out.extend_from_slice(tail);
        }
        metrics.bytes_out.inc_by(out.len() as u64);
        Ok::<_, std::io::Error>(Bytes::from(out))
    });
    Body::from_stream(tokio_stream::iter(chunks))
}

/// F(n)'s line from its rendered text: the line's head, slices of the shared text (no copy)
/// and its end.
fn text_stream(hub: &Hub, format: Format, n: u64, text: Bytes) -> Body {
    let mut head = Vec::new();
    let _ = match format {
        Format::Value => Ok(()),
        Format::Tsv => write!(head, "{n}\t"),
        Format::Json => write!(head, r#"{{"n":{n},"digits":{},"value":""#, text.len()),
    };
    let tail: &'static [u8] = if format == Format::Json {
        b"\"}\n"
    } else {
        b"\n"
    };
    hub.metrics
        .bytes_out
        .inc_by((head.len() + text.len() + tail.len()) as u64);
    let mut pieces = vec![Bytes::from(head)];
    pieces.extend(
        (0..text.len())
            .step_by(stream::CHUNK)
            .map(|i| text.slice(i..(i + stream::CHUNK).min(text.len()))),
    );
    pieces.push(Bytes::from_static(tail));
    Body::from_stream(tokio_stream::iter(
        pieces.into_iter().map(Ok::<_, std::io::Error>),
    ))
}

/// Writes F(n)'s line as the CLI prints it: `value`, `n<TAB>value` or the JSON object.
fn write_value<W: std::io::Write>(
    w: &mut W,
    format: Format,
    n: u64,
    v: &DecNat,
) -> std::io::Result<()> {
    match format {
        Format::Value => {}
        Format::Tsv => write!(w, "{n}\t")?,
        Format::Json => write!(w, r#"{{"n":{n},"digits":{},"value":""#, v.digit_count())?,
    }
    v.write_to(w)?;
    w.write_all(if format == Format::Json {
        b"\"}\n"
    } else {
        b"\n"
    })
}

/// The line for `--last K` or `--mod M` at n (one computation for concurrent equal requests).
async fn line(
    hub: &Arc<Hub>,
    n: u64,
    format: Format,
    what: What,
) -> Result<(Bytes, Source), ApiError> {
    let (tag, param, memory) = match what {
        What::Last(k) => (1, u64::from(k), 64 * u64::from(k) + (1 << 20)),
        What::Mod(m) => (2, m, 1 << 16),
        _ => (0, 0, 1 << 16),
    };
    let f = match format {
        Format::Value => 0,
        Format::Tsv => 1,
        Format::Json => 2,
    };
    let engine = Arc::clone(&hub.engine);
    let (outcome, source) = hub
        .obtain(Key::Line(n, tag, param, f), memory, move |_| {
            let printer = Printer {
                format,
                what,
                engine: Engine::Auto,
            };
            Some(Outcome::Line(Bytes::from(printer.render(&engine, &[n]))))
        })
        .await?;
    match outcome {
        Outcome::Line(b) => Ok((b, source)),
        Outcome::Pair(_) => Err(ApiError::internal("a line was expected")),
    }
}

/// `POST /batch`: what `fibo` prints for the inputs in the body; or, with `view=page`, one JSON
/// object per value for the page.
async fn batch(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let base = query(q)?;
    let limit = hub.limits.max_body_bytes;
    let bytes = axum::body::to_bytes(body, usize::try_from(limit).unwrap_or(usize::MAX))
        .await
        .map_err(|_| {
            ApiError::too_large(
                format!(
                    "the request body is over this server's limit of {} (--max-body-bytes)",
                    super::super::memory::human(limit)
                ),
                limit + 1,
                limit,
            )
        })?;
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    let (items, o) = if json_body {
        api::from_json(&bytes, base)?
    } else {
        (api::from_text(&bytes)?, base)
    };
    if items.is_empty() {
        return Err(ApiError::bad_request(
            "no input given; send e.g. '10 1000..1005' (or {\"inputs\": [\"10\"]})".into(),
        ));
    }
    let count = check_batch(&hub, &items, o)?;
    let items: Vec<Item> = items.into_iter().map(|(i, _)| i).collect();
    if o.page {
        if count > PAGE_MAX_VALUES {
            return Err(ApiError::too_large(
                format!(
                    "the page shows at most {PAGE_MAX_VALUES} values at once; this asks for \
                     {count} (use POST /batch without view=page for more)"
                ),
                count,
                PAGE_MAX_VALUES,
            ));
        }
        return Ok(page_view(hub, items, o));
    }
    plain(hub, items, o)
}

/// Checks the count, `--max-n` and the response's size; returns the number of values.
fn check_batch(hub: &Hub, items: &[Located], o: Options) -> Result<u64, ApiError> {
    let mut count = 0u64;
    let mut bytes = 0u128;
    for (item, at) in items {
        count = count.saturating_add(item.len());
        if o.what == What::Value {
            check_n(hub, item.max(), &item.max().to_string(), at)?;
        }
        let (first, last) = match *item {
            Item::Single(n) => (n, n),
            Item::Range { first, last } => (first, last),
        };
        // Line sizes grow linearly with n: the middle one times the count.
        let mid = first + (last - first) / 2;
        bytes += u128::from(item.len()) * u128::from(o.what.line_bytes(mid));
    }
    if count > hub.limits.max_inputs {
        return Err(ApiError::too_large(
            format!(
                "{count} input values, over this server's limit of {} (--max-inputs)",
                hub.limits.max_inputs
            ),
            count,
            hub.limits.max_inputs,
        ));
    }
    let estimate = u64::try_from(bytes).unwrap_or(u64::MAX);
    if estimate > hub.limits.max_response_bytes {
        return Err(too_large(estimate, hub.limits.max_response_bytes));
    }
    Ok(count)
}

/// The CLI's output, streamed block by block from a blocking thread: each block's values are
/// computed together on the engine's pool (the batch planner), and sent as soon as they are
/// ready. The client going away or the timeout stops the work between blocks.
fn plain(hub: Arc<Hub>, items: Vec<Item>, o: Options) -> Result<Response, ApiError> {
    let max_n = items.iter().map(Item::max).max().unwrap_or(0);
    let working = if o.what == What::Value {
        fib::working_bytes(max_n, true)
    } else {
        0
    };
    let ticket = hub.ticket(working + BLOCK_BYTES.max(o.what.line_bytes(max_n)) + STREAM_BYTES)?;
    let (mut w, body) = stream::channel(Arc::clone(&hub.metrics));
    let deadline = Instant::now() + hub.limits.timeout;
    let timeout = hub.limits.timeout;
    let printer = Printer {
        format: o.format,
        what: o.what,
        engine: Engine::Auto,
    };
    tokio::task::spawn_blocking(move || {
        let _ticket = ticket;
        let mut block = Vec::new();
        let mut bytes = 0;
        let emit = |block: &mut Vec<u64>, w: &mut stream::ChannelWriter| {
            if w.is_closed() {
                return Err(stream::gone());
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::other(format!(
                    "timed out after {} s",
                    timeout.as_secs_f64()
                )));
            }
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                printer.render(&hub.engine, block)
            }));
            block.clear();
            match run {
                Ok(text) => {
                    w.write_all(&text)?;
                    w.send_now()
                }
                Err(p) => Err(std::io::Error::other(format!(
                    "internal error: {}",
                    panic_message(&*p)
                ))),
            }
        };
        let mut result = Ok(());
        'items: for item in items {
            for n in item.iter() {
                block.push(n);
                bytes += o.what.line_bytes(n);
                if block.len() >= BLOCK_VALUES || bytes >= BLOCK_BYTES {
                    bytes = 0;
                    result = emit(&mut block, &mut w);
                    if result.is_err() {
                        break 'items;
                    }
                }
            }
        }
        if result.is_ok() && !block.is_empty() {
            result = emit(&mut block, &mut w);
        }
        if let Err(e) = result
            && e.kind() != std::io::ErrorKind::BrokenPipe
        {
            w.fail(e.to_string());
        }
    });
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(o.format, true)),
    );
    Ok(r)
}

/// The first and last `k` digits of `v`, which has more than `2 k` digits.
fn head_tail(v: &DecNat, k: usize) -> (String, String) {
    let limbs = v.limbs();
    let take = k.div_ceil(19) + 1;
    let mut head = String::new();
    for (i, limb) in limbs.iter().rev().take(take).enumerate() {
        if i == 0 {
            head.push_str(&limb.to_string());
        } else {
            head.push_str(&format!("{limb:019}"));
        }
    }
    head.truncate(k);
    let mut tail = String::new();
    for limb in limbs.iter().take(take).rev() {
        tail.push_str(&format!("{limb:019}"));
    }
    let tail = tail[tail.len() - k..].to_string();
    (head, tail)
}

/// The page's view: one JSON object per value, in input order, each sent once ready, with its
/// time on the server and where it came from.
fn page_view(hub: Arc<Hub>, items: Vec<Item>, o: Options) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let fold = o.fold.max(2 * FOLD_EDGE as u64);
    tokio::spawn(async move {
        for item in items {
            for n in item.iter() {
                if tx.is_closed() {
                    return;
                }
                let started = Instant::now();
                let line = page_line(&hub, n, o, fold).await;
                let ms = started.elapsed().as_secs_f64() * 1e3;
                let mut v = match line {
                    Ok(v) => v,
                    Err(e) => json!({"n": n, "error": e.message()}),
                };
                v["ms"] = json!((ms * 1000.0).round() / 1000.0);
                let failed = v.get("error").is_some();
                let mut text = v.to_string();
                text.push('\n');
                hub.metrics.bytes_out.inc_by(text.len() as u64);
                if tx.send(Ok(Bytes::from(text))).await.is_err() || failed {
                    return;
                }
            }
        }
    });
    let mut r = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    h.insert(LIVE, HeaderValue::from_static("1"));
    r
}

async fn page_line(
    hub: &Arc<Hub>,
    n: u64,
    o: Options,
    fold: u64,
) -> Result<serde_json::Value, ApiError> {
    let digits = fib::digit_count(n);
    Ok(match o.what {
        What::Value => {
            let (pair, source) = hub.pair(n).await?;
            let v = &pair.0;
            if digits > fold {
                let (head, tail) = head_tail(v, FOLD_EDGE);
                json!({"n": n, "digits": digits, "head": head, "tail": tail, "folded": true,
                       "cache": source.as_str()})
            } else {
                let mut text = Vec::with_capacity(digits as usize);
                let _ = v.write_to(&mut text);
                json!({"n": n, "digits": digits, "value": String::from_utf8_lossy(&text),
                       "cache": source.as_str()})
            }
        }
        What::Digits => json!({"n": n, "digits": digits, "cache": "hit"}),
        What::Last(_) => {
            let (line, source) = line(hub, n, Format::Value, o.what).await?;
            let text = String::from_utf8_lossy(&line).trim_end().to_string();
            json!({"n": n, "digits": digits, "last": text, "cache": source.as_str()})
        }
        What::Mod(m) => {
            let (line, source) = line(hub, n, Format::Value, o.what).await?;
            let text = String::from_utf8_lossy(&line).trim_end().to_string();
            json!({"n": n, "mod": m.to_string(), "value": text, "cache": source.as_str()})
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_values_keep_their_true_ends() {
        let v = parkit::fib::fib_in::<parkit::decimal::DecNat>(5000);
        let s = v.to_string();
        for k in [1, 19, 20, 40] {
            let (h, t) = head_tail(&v, k);
            assert_eq!(h, &s[..k]);
            assert_eq!(t, &s[s.len() - k..]);
        }
    }

    #[tokio::test]
    async fn streamed_values_are_the_cli_lines() {
        use http_body_util::BodyExt;
        let engine = parkit::fib::Fibonacci::builder()
            .threads(1)
            .build()
            .unwrap();
        let hub = Hub::new(
            parkit::fib::Fibonacci::builder()
                .threads(1)
                .build()
                .unwrap(),
            super::super::hub::Limits {
                max_n: 1 << 40,
                max_inputs: 10,
                max_response_bytes: 1 << 30,
                max_body_bytes: 1 << 20,
                timeout: std::time::Duration::from_secs(10),
            },
            2,
            1 << 30,
        );
        // Several chunks, a chunk boundary at the end, and one limb.
        for n in [0u64, 10, 1_000_000, 1_260_000] {
            for format in [Format::Value, Format::Tsv, Format::Json] {
                let pair = Arc::new(parkit::fib::fib_pair_in::<parkit::decimal::DecNat>(n));
                let body = value_stream(&hub, format, n, pair, hub.reserve(1).unwrap());
                let got = body.collect().await.unwrap().to_bytes();
                let cli = Printer {
                    format,
                    what: What::Value,
                    engine: Engine::Auto,
                }
                .render(&engine, &[n]);
                assert!(got == cli, "n = {n}, {format:?}");
            }
        }
    }

    #[test]
    fn value_lines_match_the_cli_printer() {
        let engine = parkit::fib::Fibonacci::builder()
            .threads(1)
            .build()
            .unwrap();
        for n in [0u64, 5, 186, 187, 1000, 40_000] {
            for format in [Format::Value, Format::Tsv, Format::Json] {
                let mut mine = Vec::new();
                write_value(
                    &mut mine,
                    format,
                    n,
                    &parkit::fib::fib_in::<parkit::decimal::DecNat>(n),
                )
                .unwrap();
                let cli = Printer {
                    format,
                    what: What::Value,
                    engine: Engine::Auto,
                }
                .render(&engine, &[n]);
                assert_eq!(mine, cli, "n = {n}, {format:?}");
            }
        }
    }
}
