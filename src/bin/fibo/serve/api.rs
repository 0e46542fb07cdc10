//! What a request asks for (inputs and options, from a query, a text body or a JSON body) and
//! the error answers, each a status with a JSON body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use clap::ValueEnum;
use serde_json::json;

use super::super::input::{self, Item, Origin, ReadError};
use super::super::output::{Format, What};
use super::super::{parse_last, parse_modulus};

/// An answer that is not a result: a status, a message and optional JSON fields.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub body: serde_json::Value,
}

impl ApiError {
    /// A 400 naming the bad token and where it was.
    pub fn bad_token(message: String, token: &str, at: String) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            body: json!({ "error": message, "token": shorten(token), "at": at }),
        }
    }

    /// A 400 without a token.
    pub fn bad_request(message: String) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            body: json!({ "error": message }),
        }
    }

    /// A 413 with the estimate and the limit it passes.
    pub fn too_large(message: String, estimate: u64, limit: u64) -> Self {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            body: json!({ "error": message, "estimate": estimate, "limit": limit }),
        }
    }

    /// A 503 with `Retry-After`.
    pub fn busy(message: String) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            body: json!({ "error": format!("server busy: {message}; retry shortly") }),
        }
    }

    /// A 504.
    pub fn timeout(secs: f64) -> Self {
        ApiError {
            status: StatusCode::GATEWAY_TIMEOUT,
            body: json!({ "error": format!("timed out after {secs} s") }),
        }
    }

    /// A 500 for a panic inside one request.
    pub fn internal(message: &str) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            body: json!({ "error": format!("internal error: {message}") }),
        }
    }

    /// The message alone.
    pub fn message(&self) -> &str {
        self.body["error"].as_str().unwrap_or("error")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = self.body.to_string();
        body.push('\n');
        let mut r = (self.status, body).into_response();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

/// A token as shown in a message: control characters escaped, long ones cut (the CLI's rule).
pub(crate) fn shorten(token: &str) -> String {
    input::shown(token)
}

/// The options of a request, with the CLI's meanings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Options {
    pub format: Format,
    pub what: What,
    /// `GET /fib/{n}?download`.
    pub download: bool,
    /// `POST /batch?view=page`.
    pub page: bool,
    /// Digits past which the page's view folds a value.
    pub fold: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            format: Format::Value,
            what: What::Value,
            download: false,
            page: false,
            fold: 1000,
        }
    }
}

fn flag(key: &str, v: &str) -> Result<bool, ApiError> {
    match v {
        "" | "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ApiError::bad_token(
            format!(
                "invalid value '{}' for '{key}': expected true or false",
                shorten(v)
            ),
            v,
            format!("query {key}"),
        )),
    }
}

/// Options from the query string; unknown keys are refused (a typo must not go unnoticed).
pub(crate) fn options_from_query(pairs: &[(String, String)]) -> Result<Options, ApiError> {
    let mut o = Options::default();
    let (mut digits, mut last, mut modulus) = (false, None, None);
    for (k, v) in pairs {
        let bad = |reason: String| {
            ApiError::bad_token(
                format!("invalid value '{}' for '{k}': {reason}", shorten(v)),
                v,
                format!("query {k}"),
            )
        };
        match k.as_str() {
            "format" => {
                o.format = Format::from_str(v, true)
                    .map_err(|_| bad("expected value, tsv or json".into()))?;
            }
            "digits" => digits = flag(k, v)?,
            "last" => last = Some(parse_last(v).map_err(bad)?),
            "mod" => modulus = Some(parse_modulus(v).map_err(bad)?),
            "download" => o.download = flag(k, v)?,
            "view" => match v.as_str() {
                "page" => o.page = true,
                "plain" => o.page = false,
                _ => return Err(bad("expected page or plain".into())),
            },
            "fold" => o.fold = input::parse_number(v).map_err(bad)?,
            _ => {
                return Err(ApiError::bad_token(
                    format!(
                        "unknown option '{}' (known: format, digits, last, mod, download, view, \
                         fold)",
                        shorten(k)
                    ),
                    k,
                    "query".into(),
                ));
            }
        }
    }
    o.what = what(digits, last, modulus)?;
    Ok(o)
}

fn what(digits: bool, last: Option<u32>, modulus: Option<u64>) -> Result<What, ApiError> {
    match (digits, last, modulus) {
        (true, None, None) => Ok(What::Digits),
        (false, Some(k), None) => Ok(What::Last(k)),
        (false, None, Some(m)) => Ok(What::Mod(m)),
        (false, None, None) => Ok(What::Value),
        _ => Err(ApiError::bad_request(
            "digits, last and mod cannot be combined: choose one".into(),
        )),
    }
}

/// A JSON `POST /batch` body.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchJson {
    inputs: Vec<serde_json::Value>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    digits: bool,
    #[serde(default)]
    last: Option<serde_json::Value>,
    #[serde(default, rename = "mod")]
    modulus: Option<serde_json::Value>,
}

/// A JSON value as the token it stands for: strings as written, numbers as integers.
fn json_token(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) if n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// Inputs and options from a JSON body; `base` keeps the query's view options.
pub(crate) fn from_json(body: &[u8], base: Options) -> Result<(Vec<Located>, Options), ApiError> {
    let req: BatchJson = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let mut items = Vec::with_capacity(req.inputs.len());
    for (i, v) in req.inputs.iter().enumerate() {
        let at = format!("inputs[{i}]");
        let token = json_token(v).ok_or_else(|| {
            ApiError::bad_token(
                format!("invalid input at {at}: expected a string such as \"10\" or \"1..5\""),
                &v.to_string(),
                at.clone(),
            )
        })?;
        match input::parse_token(&token) {
            Ok(item) => items.extend(item.map(|i| (i, at))),
            Err(reason) => {
                return Err(ApiError::bad_token(
                    format!("invalid input '{}' at {at}: {reason}", shorten(&token)),
                    &token,
                    at,
                ));
            }
        }
    }
    // The query's view options stay; its other options give way to the body's.
    let mut o = Options {
        page: base.page,
        fold: base.fold,
        ..Options::default()
    };
    if let Some(f) = &req.format {
        o.format = Format::from_str(f, true).map_err(|_| {
            ApiError::bad_token(
                format!(
                    "invalid format '{}': expected value, tsv or json",
                    shorten(f)
                ),
                f,
                "format".into(),
            )
        })?;
    }
    // `last` and `mod`: a JSON number or string, read by the CLI's own parser.
    fn option<T>(
        key: &str,
        v: Option<&serde_json::Value>,
        parse: fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ApiError> {
        let Some(v) = v else { return Ok(None) };
        let t = json_token(v).ok_or_else(|| {
            ApiError::bad_token(
                format!("invalid {key}: expected a whole number"),
                &v.to_string(),
                key.into(),
            )
        })?;
        parse(&t).map(Some).map_err(|r| {
            ApiError::bad_token(
                format!("invalid {key} '{}': {r}", shorten(&t)),
                &t,
                key.into(),
            )
        })
    }
    let last = option("last", req.last.as_ref(), parse_last)?;
    let modulus = option("mod", req.modulus.as_ref(), parse_modulus)?;
    o.what = what(req.digits, last, modulus)?;
    Ok((items, o))
}

/// An input and where it was (`line 3`, `inputs[2]`), for messages.
pub(crate) type Located = (Item, String);

fn place(origin: &Origin) -> String {
    match origin {
        Origin::Line { line, .. } => format!("line {line}"),
        Origin::Arg(i) => format!("argument {i}"),
    }
}

/// Inputs from a text body, read exactly as the CLI reads a file.
pub(crate) fn from_text(body: &[u8]) -> Result<Vec<Located>, ApiError> {
    match input::parse_text(body, "<body>") {
        Ok(items) => Ok(items.iter().map(|(i, o)| (i, place(&o))).collect()),
        Err(ReadError::Input(e)) => {
            let at = place(&e.origin);
            Err(ApiError::bad_token(
                format!(
                    "invalid input '{}' at {at}: {}",
                    shorten(&e.token),
                    e.reason
                ),
                &e.token,
                at,
            ))
        }
        Err(ReadError::Utf8 { line, .. }) => Err(ApiError::bad_request(format!(
            "the body's line {line} is not valid UTF-8"
        ))),
        Err(e) => Err(ApiError::bad_request(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &[(&str, &str)]) -> Vec<(String, String)> {
        s.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn query_options_have_the_cli_meanings() {
        let o = options_from_query(&q(&[("format", "json"), ("last", "20")])).unwrap();
        assert_eq!((o.format, o.what), (Format::Json, What::Last(20)));
        let o = options_from_query(&q(&[("digits", "")])).unwrap();
        assert_eq!(o.what, What::Digits);
        let e = options_from_query(&q(&[("mod", "0")])).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.body["at"], "query mod");
        let e = options_from_query(&q(&[("digits", "1"), ("mod", "7")])).unwrap_err();
        assert!(e.message().contains("cannot be combined"), "{e:?}");
        let e = options_from_query(&q(&[("fromat", "json")])).unwrap_err();
        assert!(e.message().contains("unknown option 'fromat'"), "{e:?}");
    }

    #[test]
    fn bodies_parse_as_the_cli_reads_them() {
        let items = from_text(b"10 # ten\n1..3\n1e2\n").unwrap();
        assert_eq!(items[2].1, "line 3");
        assert_eq!(
            items.into_iter().map(|(i, _)| i).collect::<Vec<_>>(),
            [
                Item::Single(10),
                Item::Range { first: 1, last: 2 },
                Item::Single(100)
            ]
        );
        let e = from_text(b"10\n 5 x1\n").unwrap_err();
        assert_eq!(
            (e.body["token"].as_str(), e.body["at"].as_str()),
            (Some("x1"), Some("line 2"))
        );
        let (items, o) = from_json(
            br#"{"inputs": ["10", 7, "1..=2"], "format": "tsv", "mod": "97"}"#,
            Options::default(),
        )
        .unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!((o.format, o.what), (Format::Tsv, What::Mod(97)));
        let e = from_json(br#"{"inputs": ["10", "-3"]}"#, Options::default()).unwrap_err();
        assert_eq!(e.body["at"], "inputs[1]");
    }

    #[test]
    fn long_and_control_tokens_are_shown_safely() {
        assert_eq!(shorten("a\u{1b}b"), "a\\u{1b}b");
        let long = "9".repeat(1000);
        let s = shorten(&long);
        assert!(s.ends_with("... (1000 bytes)") && s.len() < 70, "{s}");
    }
}
