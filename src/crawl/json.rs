//! How a [`CrawlReport`] serializes with serde, in the shape [`CrawlReport::to_json`]
//! documents: the records derive `Serialize` (in `report.rs` and `fetch.rs`); here are the
//! parts that need a hand: an [`Outcome`] as `status` and `error`, times as fractional
//! milliseconds, the totals with their rate, and the pipeline's counters.

use std::time::Duration;

use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};

use super::report::{CrawlReport, Outcome, Totals};
use crate::pipeline::StageStats;

/// `x` rounded to 3 decimals: milliseconds to the microsecond, rates to a thousandth.
fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

/// A duration as fractional milliseconds (`serialize_with` of the `*_ms` fields).
pub(super) fn ms<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(round3(d.as_secs_f64() * 1e3))
}

/// `"status": 200, "error": null` or `"status": null, "error": {"kind", "message"}`; the
/// records flatten it into their own fields.
impl Serialize for Outcome {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("status", &self.status())?;
        map.serialize_entry("error", &self.error())?;
        map.end()
    }
}

/// The totals and their rate.
#[derive(Serialize)]
struct TotalsJson<'a> {
    #[serde(flatten)]
    totals: &'a Totals,
    pages_per_sec: f64,
}

/// One row of the pipeline's counters.
#[derive(Serialize)]
struct StageJson<'a> {
    name: &'a str,
    workers: usize,
    items: u64,
    #[serde(serialize_with = "ms")]
    busy_ms: Duration,
    #[serde(serialize_with = "ms")]
    busy_per_worker_ms: Duration,
    #[serde(serialize_with = "ms")]
    wait_input_ms: Duration,
    #[serde(serialize_with = "ms")]
    wait_output_ms: Duration,
}

impl<'a> From<&'a StageStats> for StageJson<'a> {
    fn from(s: &'a StageStats) -> Self {
        StageJson {
            name: &s.name,
            workers: s.workers,
            items: s.items,
            busy_ms: s.busy,
            busy_per_worker_ms: s.busy_per_worker(),
            wait_input_ms: s.wait_input,
            wait_output_ms: s.wait_output,
        }
    }
}

/// The pipeline's counters: the source and the stages, the crawl's bottleneck, the time.
#[derive(Serialize)]
struct PipelineJson<'a> {
    stages: Vec<StageJson<'a>>,
    bottleneck: Option<&'a str>,
    #[serde(serialize_with = "ms")]
    elapsed_ms: Duration,
}

/// `{"totals", "pages", "broken", "redirects", "pipeline"}`; see [`CrawlReport::to_json`].
impl Serialize for CrawlReport {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let pipeline = PipelineJson {
            stages: self.pipeline.parts().map(StageJson::from).collect(),
            bottleneck: self.bottleneck().map(|b| b.name.as_str()),
            elapsed_ms: self.pipeline.elapsed(),
        };
        let totals = TotalsJson {
            totals: &self.totals,
            pages_per_sec: round3(self.totals.pages_per_sec()),
        };
        let mut report = s.serialize_struct("CrawlReport", 5)?;
        report.serialize_field("totals", &totals)?;
        report.serialize_field("pages", &self.pages)?;
        report.serialize_field("broken", &self.broken)?;
        report.serialize_field("redirects", &self.redirects)?;
        report.serialize_field("pipeline", &pipeline)?;
        report.end()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use url::Url;

    use super::super::report::{BrokenLink, PageRecord, too_many_redirects};
    use super::*;

    #[test]
    fn outcomes_flatten_into_status_and_error() {
        let url = Url::parse("http://a.test/x").unwrap();
        let page = PageRecord {
            url: url.clone(),
            depth: 2,
            outcome: Outcome::Status(200),
            links_out: 3,
            redirect_to: None,
            content_type: Some("text/html".into()),
            bytes: 10,
            truncated: false,
            time: Duration::from_nanos(1_234_567),
        };
        assert_eq!(
            serde_json::to_value(&page).unwrap(),
            json!({"url": "http://a.test/x", "depth": 2, "status": 200, "error": null,
                   "links_out": 3, "redirect_to": null, "content_type": "text/html",
                   "bytes": 10, "truncated": false, "time_ms": 1.235})
        );
        let broken = BrokenLink {
            url,
            problem: too_many_redirects(5),
            found_on: vec![],
        };
        assert_eq!(
            serde_json::to_string(&broken).unwrap(),
            "{\"url\":\"http://a.test/x\",\"status\":null,\"error\":{\"kind\":\"redirect\",\
             \"message\":\"more than 5 redirects in a row\"},\"found_on\":[]}"
        );
    }
}
