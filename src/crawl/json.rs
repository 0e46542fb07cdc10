//! A small JSON tree and its pretty printer, for [`CrawlReport::to_json`].
//!
//! Written by hand rather than with `serde_json`: a library that pulls `serde_json` into its
//! users' builds adds `impl PartialEq<serde_json::Value> for u64` and friends to every crate
//! that links it, which breaks type inference in code like `x.try_into().unwrap() == 5u64`
//! (it broke one of this crate's own tests under `--all-features`).
//!
//! [`CrawlReport::to_json`]: super::CrawlReport::to_json

use std::fmt::Write as _;
use std::time::Duration;

/// A JSON value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Int(u64),
    /// Written with up to 3 decimals; not finite: `null`.
    Float(f64),
    Str(String),
    Array(Vec<Json>),
    /// Keys in the order given.
    Object(Vec<(&'static str, Json)>),
}

impl Json {
    /// A duration as fractional milliseconds.
    pub(crate) fn ms(d: Duration) -> Json {
        Json::Float(d.as_secs_f64() * 1e3)
    }

    /// A string, or `null`.
    pub(crate) fn opt_str(s: Option<&str>) -> Json {
        s.map_or(Json::Null, |s| Json::Str(s.to_owned()))
    }

    /// Pretty-printed: objects and arrays of containers one entry per line, two spaces per
    /// level; arrays and objects of scalars only, and objects inside arrays, on one line.
    pub(crate) fn pretty(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, 0, true);
        out
    }

    fn is_scalar(&self) -> bool {
        !matches!(self, Json::Array(_) | Json::Object(_))
    }

    fn write(&self, out: &mut String, level: usize, expand: bool) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Json::Float(x) if x.is_finite() => {
                let text = format!("{x:.3}");
                let text = text.trim_end_matches('0').trim_end_matches('.');
                out.push_str(if text == "-0" { "0" } else { text });
            }
            Json::Float(_) => out.push_str("null"),
            Json::Str(s) => string(out, s),
            Json::Array(items) => {
                let expand = expand && items.iter().any(|i| !i.is_scalar());
                out.push('[');
                for (k, item) in items.iter().enumerate() {
                    separate(out, k, level + 1, expand);
                    // Objects inside an array go on one line each: one page, one line.
                    item.write(out, level + 1, false);
                }
                close(out, items.is_empty(), level, expand, ']');
            }
            Json::Object(fields) => {
                let expand = expand && fields.iter().any(|(_, v)| !v.is_scalar());
                out.push('{');
                for (k, (key, value)) in fields.iter().enumerate() {
                    separate(out, k, level + 1, expand);
                    string(out, key);
                    out.push_str(": ");
                    value.write(out, level + 1, expand);
                }
                close(out, fields.is_empty(), level, expand, '}');
            }
        }
    }
}

fn separate(out: &mut String, k: usize, level: usize, expand: bool) {
    if k > 0 {
        out.push(',');
    }
    if expand {
        out.push('\n');
        out.push_str(&"  ".repeat(level));
    } else if k > 0 {
        out.push(' ');
    }
}

fn close(out: &mut String, empty: bool, level: usize, expand: bool, bracket: char) {
    if expand && !empty {
        out.push('\n');
        out.push_str(&"  ".repeat(level));
    }
    out.push(bracket);
}

/// Writes `s` as a JSON string literal.
fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_and_escapes() {
        let v = Json::Array(vec![
            Json::Null,
            Json::Bool(true),
            Json::Int(42),
            Json::Float(1.5),
            Json::Float(2.0),
            Json::Float(0.0001),
            Json::Float(f64::NAN),
            Json::Str("a \"q\" \\ \n\t\u{1}é".into()),
        ]);
        assert_eq!(
            v.pretty(),
            r#"[null, true, 42, 1.5, 2, 0, null, "a \"q\" \\ \n\t\u0001é"]"#
        );
    }

    #[test]
    fn containers_expand_at_the_top_and_rows_stay_on_one_line() {
        let row = |n| Json::Object(vec![("n", Json::Int(n)), ("tags", Json::Array(vec![]))]);
        let v = Json::Object(vec![
            ("rows", Json::Array(vec![row(1), row(2)])),
            ("empty", Json::Object(vec![])),
            ("total", Json::Int(2)),
        ]);
        assert_eq!(
            v.pretty(),
            "{\n  \"rows\": [\n    {\"n\": 1, \"tags\": []},\n    {\"n\": 2, \"tags\": []}\n  ],\
             \n  \"empty\": {},\n  \"total\": 2\n}"
        );
    }
}
