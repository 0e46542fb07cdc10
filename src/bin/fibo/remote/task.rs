//! The task contract: `fibo.batch(ns, format="value", last=None)` returns the lines plain
//! `fibo` prints for `ns`, in order, in value format: F(n) (`"value"`), its digit count
//! (`"digits"`) or its last `last` digits (`"last"`).
//!
//! Here is everything both sides must agree on, and nothing that talks to Redis: the message
//! a client sends ([`batch_message`], a Celery protocol 2 message with a JSON body, as
//! celery-rs's `send_task` builds it), how the worker reads and checks one as Python binds a
//! call ([`read_message`]), the one mapping between fibo's output kinds and the task's
//! arguments ([`Output`]), the work itself ([`Job`]) and the result layout (celery-rs's
//! `TaskMeta`, which Python's Celery reads too: [`success_json`], [`failure_meta`],
//! [`read_meta`], [`failure_message`]).

use celery::backend::{TaskMeta, TaskState};
use celery::error::TaskError;
use celery::protocol::TryDeserializeMessage as _;
use parkit::fib::{self, Fibonacci};
use serde_json::value::RawValue;

use super::super::memory;
use super::super::output::{Engine, Format, Printer, What};

/// The task's name, as Python clients call it.
pub const TASK: &str = "fibo.batch";

/// The task's parameters, in Python's positional order.
const PARAMS: [&str; 3] = ["ns", "format", "last"];

/// Most bytes of results in one task: Redis holds values up to 512 MiB (`proto-max-bulk-len`),
/// and the result is JSON.
pub(crate) const MAX_RESULT_BYTES: u64 = 480 << 20;

/// The largest string Redis stores (its `proto-max-bulk-len` at most): a result whose JSON
/// is longer fails with that reason instead of being sent.
pub(crate) const REDIS_MAX_STRING: u64 = 512 << 20;

/// What a task prints for each n, as its `format` and `last` arguments: the one mapping
/// between fibo's output kinds ([`What`]) and the task contract, both ways.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Output {
    /// `"value"`, `"digits"` or `"last"`.
    pub format: &'static str,
    /// K for `"last"`.
    pub last: Option<u32>,
}

impl Output {
    /// The arguments that make a task print `what`; `None` for `--mod`, which no task does
    /// (it needs no big number: the client computes it).
    pub(crate) fn of(what: What) -> Option<Output> {
        let (format, last) = match what {
            What::Value => ("value", None),
            What::Digits => ("digits", None),
            What::Last(k) => ("last", Some(k)),
            What::Mod(_) => return None,
        };
        Some(Output { format, last })
    }

    /// The output kind a call's arguments ask for (`None`: Python's defaults, `"value"` and
    /// no `last`), checked.
    pub(crate) fn what(format: Option<&str>, last: Option<u32>) -> Result<What, String> {
        match (format.unwrap_or("value"), last) {
            ("value", _) => Ok(What::Value),
            ("digits", _) => Ok(What::Digits),
            ("last", Some(k @ 1..=10_000_000)) => Ok(What::Last(k)),
            ("last", _) => Err("format \"last\" needs last = K, from 1 to 10000000".into()),
            (other, _) => Err(format!(
                "unknown format \"{other}\"; expected \"value\", \"digits\" or \"last\""
            )),
        }
    }
}

/// A `fibo.batch(ns, format, last)` call as a Celery message (protocol 2, JSON body, the
/// arguments by keyword, as celery-rs's `send_task` builds it) for `queue`: its task id and
/// its text. Reusable by any client of the worker contract.
pub(crate) fn batch_message(
    ns: Vec<u64>,
    format: &str,
    last: Option<u32>,
    queue: &str,
) -> Result<(String, String), String> {
    use celery::protocol::{
        DeliveryInfo, Message, MessageBodyEmbed, MessageHeaders, MessageProperties,
    };

    /// The keyword arguments, named as [`PARAMS`].
    #[derive(serde::Serialize)]
    struct Kwargs<'a> {
        ns: Vec<u64>,
        format: &'a str,
        last: Option<u32>,
    }
    // [args, kwargs, embed]: no positional arguments, and no canvas.
    let body = (
        [0u8; 0],
        Kwargs { ns, format, last },
        MessageBodyEmbed::default(),
    );
    let id = uuid::Uuid::new_v4().to_string();
    let message = Message {
        properties: MessageProperties {
            correlation_id: id.clone(),
            content_type: "application/json".into(),
            content_encoding: "utf-8".into(),
            reply_to: None,
            delivery_info: None,
        },
        headers: MessageHeaders {
            id: id.clone(),
            task: TASK.into(),
            // As celery-rs names the process that produced a task.
            origin: Some(format!("gen{}@{}", std::process::id(), super::hostname())),
            retries: Some(0),
            ..Default::default()
        },
        raw_body: serde_json::to_vec(&body).map_err(|e| e.to_string())?,
    };
    let info = DeliveryInfo {
        exchange: String::new(),
        routing_key: queue.to_string(),
    };
    let json = message
        .json_serialized(Some(info))
        .map_err(|e| e.to_string())?;
    let json = String::from_utf8(json).map_err(|e| e.to_string())?;
    Ok((id, json))
}

/// One task's work, checked.
#[derive(Debug)]
pub(crate) struct Job {
    pub ns: Vec<u64>,
    pub what: What,
}

impl Job {
    /// Checks the task's arguments.
    pub(crate) fn new(
        ns: Vec<u64>,
        format: Option<&str>,
        last: Option<u32>,
    ) -> Result<Job, String> {
        let what = Output::what(format, last)?;
        Ok(Job { ns, what })
    }

    /// Output bytes, about.
    pub(crate) fn bytes(&self) -> u64 {
        self.ns
            .iter()
            .fold(0u64, |acc, &n| acc.saturating_add(self.what.line_bytes(n)))
    }

    /// Why this job would not fit in `limit` bytes, if it would not: another worker with
    /// more memory may still take it.
    pub(crate) fn over(&self, limit: u64) -> Option<String> {
        if self.what.needs_value()
            && let Some(&n) = self.ns.iter().max()
        {
            let need = fib::working_bytes(n, true);
            if need > limit {
                return Some(format!(
                    "F({n}) needs about {} while computing, over this worker's memory limit \
                     of {}",
                    memory::human(need),
                    memory::human(limit)
                ));
            }
        }
        // The lines, the strings and their JSON are held at once.
        let need = self.bytes().saturating_mul(3);
        (need > limit).then(|| {
            format!(
                "{} inputs make about {} of results, over this worker's memory limit of {}; \
                 send smaller chunks",
                self.ns.len(),
                memory::human(need),
                memory::human(limit)
            )
        })
    }

    /// The lines, on the engine's pool; refused when they would not fit in `limit` bytes.
    pub(crate) fn run(&self, engine: &Fibonacci, limit: u64) -> Result<Vec<String>, String> {
        let bytes = self.bytes();
        if bytes > MAX_RESULT_BYTES {
            return Err(format!(
                "{} inputs make about {} of results, more than one Redis value holds ({}); \
                 send smaller chunks",
                self.ns.len(),
                memory::human(bytes),
                memory::human(MAX_RESULT_BYTES)
            ));
        }
        if let Some(why) = self.over(limit) {
            return Err(why);
        }
        let printer = Printer {
            format: Format::Value,
            what: self.what,
            engine: Engine::Auto,
        };
        let run = std::panic::AssertUnwindSafe(|| {
            engine.pool().install(|| printer.render(engine, &self.ns))
        });
        let text = std::panic::catch_unwind(run).map_err(|p| {
            let msg = parkit::pipeline::panic_message(&*p).unwrap_or_default();
            format!("internal error: {msg}")
        })?;
        let text = String::from_utf8(text).map_err(|e| format!("internal error: {e}"))?;
        Ok(text.lines().map(str::to_string).collect())
    }
}

/// A failure that Python's Celery turns back into `exc_type(message)` (a builtin exception:
/// `ValueError`, `TypeError`, `NotImplementedError`).
pub(crate) fn failure_meta(task_id: &str, exc_type: &str, message: &str) -> TaskMeta {
    let mut meta = TaskMeta::failure(task_id, &TaskError::UnexpectedError(message.into()));
    meta.result = Some(serde_json::json!({
        "exc_type": exc_type,
        "exc_message": [message],
        "exc_module": "builtins",
    }));
    meta
}

/// A success in celery-rs's `TaskMeta` layout (which Python's Celery reads too), serialized
/// straight from the lines: no `serde_json::Value` copy of a result that may be hundreds of MB.
pub(crate) fn success_json(id: &str, lines: &[String]) -> serde_json::Result<String> {
    #[derive(serde::Serialize)]
    struct Success<'a, D> {
        task_id: &'a str,
        status: TaskState,
        result: &'a [String],
        traceback: Option<String>,
        children: [u8; 0],
        date_done: &'a D,
    }
    let stamp = TaskMeta::success(id, &())?;
    serde_json::to_string(&Success {
        task_id: id,
        status: TaskState::Success,
        result: lines,
        traceback: None,
        children: [],
        date_done: &stamp.date_done,
    })
}

/// A stored task state, parsed (`None`: missing or unreadable). A result reader for any
/// client of the worker contract.
pub(crate) fn read_meta(raw: Option<String>) -> Option<TaskMeta> {
    raw.and_then(|r| serde_json::from_str::<TaskMeta>(&r).ok())
}

/// The message of a failed task: fibo's (`meta.exc_message`) or, as Python's Celery stores
/// it, `result.exc_message` (a list of arguments or a string).
pub(crate) fn failure_message(meta: &TaskMeta) -> String {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(a) => Some(
            a.iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        _ => None,
    };
    meta.meta
        .as_ref()
        .and_then(|m| m.get("exc_message"))
        .and_then(text)
        .or_else(|| {
            let r = meta.result.as_ref()?;
            let kind = r
                .get("exc_type")
                .and_then(|t| t.as_str())
                .unwrap_or("error");
            r.get("exc_message")
                .and_then(text)
                .map(|m| format!("{kind}: {m}"))
                .or_else(|| text(r))
        })
        .unwrap_or_else(|| "unknown error".into())
}

/// Why a message is not run: the exception Python's Celery raises for it (a builtin type)
/// and its message.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub exc_type: &'static str,
    pub message: String,
}

impl Refusal {
    /// Bad argument values (Python's `ValueError`).
    pub(crate) fn value(message: impl Into<String>) -> Refusal {
        Refusal {
            exc_type: "ValueError",
            message: message.into(),
        }
    }

    /// A call Python itself would refuse: wrong arity, unknown keywords (`TypeError`).
    fn call(message: impl Into<String>) -> Refusal {
        Refusal {
            exc_type: "TypeError",
            message: message.into(),
        }
    }

    /// Something Celery can send that fibo does not do (`NotImplementedError`).
    fn unsupported(message: impl Into<String>) -> Refusal {
        Refusal {
            exc_type: "NotImplementedError",
            message: message.into(),
        }
    }
}

/// A message read off the queue.
#[derive(Debug)]
pub(crate) enum Taken {
    /// A `fibo.batch` call to run.
    Run(Job),
    /// Refused; the failure is also stored under these ids: the callbacks the message
    /// carries, whose results a client may be waiting on (a chord's or a chain's).
    Refuse(Refusal, Vec<String>),
}

/// Reads a Celery message: its task id and what to do with it, or why it has no id to answer
/// under.
pub(crate) fn read_message(raw: &str) -> Result<(String, Taken), String> {
    let v: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| format!("not a JSON message: {e}"))?;
    let id = v["headers"]["id"]
        .as_str()
        .or_else(|| v["properties"]["correlation_id"].as_str())
        .ok_or("a message without a task id")?
        .to_string();
    let taken = read_call(&v, raw).unwrap_or_else(|r| Taken::Refuse(r, Vec::new()));
    Ok((id, taken))
}

/// Most characters of a bad argument shown in a message.
const SHOWN: usize = 60;

/// An argument's JSON text for a message, cut short.
fn shown(raw: &str) -> String {
    let raw = raw.trim();
    match raw.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{}...", &raw[..end]),
        None => raw.to_string(),
    }
}

/// The call in a message (`v` is `raw` parsed), checked as Python checks
/// `fibo.batch(ns, format="value", last=None)`.
fn read_call(v: &serde_json::Value, raw: &str) -> Result<Taken, Refusal> {
    let headers = &v["headers"];
    if let Some(c) = headers.get("compression").filter(|c| !c.is_null()) {
        return Err(Refusal::unsupported(format!(
            "compressed messages ({c}) are not supported by fibo worker; send them without \
             compression"
        )));
    }
    let content = v["content-type"].as_str().unwrap_or("no content type");
    if content != "application/json" {
        return Err(Refusal::unsupported(format!(
            "messages in {content} are not supported by fibo worker; send JSON (Celery's \
             task_serializer = \"json\", the default)"
        )));
    }
    let Some(task) = headers["task"].as_str() else {
        return Err(Refusal::unsupported(
            "Celery message protocol 1 is not supported by fibo worker; send protocol 2 \
             (task_protocol = 2, the default)",
        ));
    };
    if task != TASK {
        // A shared broker's default queue may carry other apps' tasks: give each app its
        // own queue (--queue).
        return Err(Refusal::value(format!(
            "this worker runs {TASK} only, not {task}"
        )));
    }
    let message = serde_json::from_str::<celery::protocol::Delivery>(raw)
        .map_err(|e| e.to_string())
        .and_then(|d| d.try_deserialize_message().map_err(|e| e.to_string()))
        .map_err(|e| Refusal::value(format!("an unreadable {TASK} message: {e}")))?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    if message
        .headers
        .eta
        .is_some_and(|t| t.timestamp_millis() > now_ms)
    {
        return Err(Refusal::unsupported(
            "a countdown or eta is not supported by fibo worker",
        ));
    }
    if message
        .headers
        .expires
        .is_some_and(|t| t.timestamp_millis() <= now_ms)
    {
        return Err(Refusal::value("the task expired before a worker took it"));
    }
    let body = std::str::from_utf8(&message.raw_body)
        .map_err(|e| Refusal::value(format!("an unreadable {TASK} message: {e}")))?;
    let bad_body = || {
        Refusal::value(format!(
            "a {TASK} message whose body is not [args, kwargs, embed]"
        ))
    };
    let parts: Vec<&RawValue> = serde_json::from_str(body).map_err(|_| bad_body())?;
    let args: Vec<&RawValue> = match parts.first() {
        Some(a) => serde_json::from_str(a.get()).map_err(|_| bad_body())?,
        None => Vec::new(),
    };
    let kwargs: std::collections::BTreeMap<String, &RawValue> = match parts.get(1) {
        Some(k) => serde_json::from_str(k.get()).map_err(|_| bad_body())?,
        None => Default::default(),
    };
    let embed: serde_json::Value = match parts.get(2) {
        Some(e) => serde_json::from_str(e.get()).map_err(|_| bad_body())?,
        None => serde_json::Value::Null,
    };
    // Canvas: fibo runs the task but does not send callbacks on (Celery's worker does). The
    // callbacks' ids get the failure too, so that a client waiting on a chain's or a chord's
    // result hears of it.
    let mut canvas = Vec::new();
    let mut also = Vec::new();
    for (key, what) in [
        ("callbacks", "link"),
        ("errbacks", "link_error"),
        ("chain", "chain"),
        ("chord", "chord"),
    ] {
        match &embed[key] {
            serde_json::Value::Null => continue,
            serde_json::Value::Array(a) if a.is_empty() => continue,
            serde_json::Value::Array(a) => a.iter().for_each(|s| callback_ids(s, &mut also)),
            other => callback_ids(other, &mut also),
        }
        canvas.push(what);
    }
    if !canvas.is_empty() {
        let why = Refusal::unsupported(format!(
            "Celery canvas ({}) is not supported by fibo worker: send {TASK} tasks on their own \
             and combine their results in the client",
            canvas.join(", ")
        ));
        return Ok(Taken::Refuse(why, also));
    }
    // Bound as Python binds a call: positional arguments first, then keywords.
    if args.len() > PARAMS.len() {
        return Err(Refusal::call(format!(
            "{TASK}() takes from 1 to 3 positional arguments but {} were given",
            args.len()
        )));
    }
    let mut given: [Option<&RawValue>; 3] = [None; 3];
    for (slot, a) in given.iter_mut().zip(&args) {
        *slot = Some(*a);
    }
    for (k, v) in &kwargs {
        let Some(i) = PARAMS.iter().position(|p| p == k) else {
            return Err(Refusal::call(format!(
                "{TASK}() got an unexpected keyword argument '{k}'"
            )));
        };
        if given[i].is_some() {
            return Err(Refusal::call(format!(
                "{TASK}() got multiple values for argument '{k}'"
            )));
        }
        given[i] = Some(*v);
    }
    fn present(v: Option<&RawValue>) -> Option<&RawValue> {
        v.filter(|v| v.get().trim() != "null")
    }
    let Some(ns) = present(given[0]) else {
        return Err(Refusal::call(format!(
            "{TASK}() missing 1 required positional argument: 'ns'"
        )));
    };
    let items: Vec<&RawValue> = serde_json::from_str(ns.get()).map_err(|_| {
        Refusal::value(format!(
            "bad arguments: {TASK}'s ns must be a list of integers from 0 to {}, not {}",
            u64::MAX,
            shown(ns.get())
        ))
    })?;
    let ns = items
        .iter()
        .enumerate()
        .map(|(i, x)| {
            x.get().trim().parse::<u64>().map_err(|_| {
                Refusal::value(format!(
                    "bad arguments: {TASK}'s ns[{i}] is {}, not an integer from 0 to {}",
                    shown(x.get()),
                    u64::MAX
                ))
            })
        })
        .collect::<Result<Vec<u64>, Refusal>>()?;
    let format = match present(given[1]) {
        None => None,
        Some(f) => Some(serde_json::from_str::<String>(f.get()).map_err(|_| {
            Refusal::value(format!(
                "bad arguments: {TASK}'s format must be \"value\", \"digits\" or \"last\", not {}",
                shown(f.get())
            ))
        })?),
    };
    let last = match present(given[2]) {
        None => None,
        Some(k) => Some(k.get().trim().parse::<u64>().map_err(|_| {
            Refusal::value(format!(
                "bad arguments: {TASK}'s last must be an integer from 1 to 10000000, not {}",
                shown(k.get())
            ))
        })?),
    };
    let last = last.map(|k| u32::try_from(k).unwrap_or(u32::MAX));
    Job::new(ns, format.as_deref(), last)
        .map(Taken::Run)
        .map_err(|e| Refusal::value(format!("bad arguments to {TASK}: {e}")))
}

/// The task ids in a callback signature (a frozen one has `options.task_id`), and in the
/// signatures it nests (a chain's or a group's `kwargs.tasks`, a chord's `kwargs.body`).
fn callback_ids(sig: &serde_json::Value, ids: &mut Vec<String>) {
    if ids.len() >= 1000 {
        return;
    }
    if let Some(id) = sig["options"]["task_id"].as_str() {
        ids.push(id.to_string());
    }
    if let Some(tasks) = sig["kwargs"]["tasks"].as_array() {
        tasks.iter().for_each(|t| callback_ids(t, ids));
    }
    if sig["kwargs"]["body"].is_object() {
        callback_ids(&sig["kwargs"]["body"], ids);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_messages_are_read_from_fibo_and_from_python_workers() {
        let fibo = failure_meta("a", "ValueError", "F(9) is too big");
        assert_eq!(failure_message(&fibo), "F(9) is too big");
        // As Python's Celery stores an exception.
        let mut python = TaskMeta::failure("b", &TaskError::UnexpectedError(String::new()));
        python.meta = None;
        python.result = Some(serde_json::json!({
            "exc_type": "ZeroDivisionError",
            "exc_message": ["division by zero"],
            "exc_module": "builtins",
        }));
        assert_eq!(
            failure_message(&python),
            "ZeroDivisionError: division by zero"
        );
        python.result = Some(serde_json::json!("boom"));
        assert_eq!(failure_message(&python), "boom");
    }

    #[test]
    fn messages_are_read_as_python_binds_a_call() {
        let (id, raw) = batch_message(vec![10, 20], "last", Some(3), "q").unwrap();
        let (got, taken) = read_message(&raw).unwrap();
        assert_eq!(got, id);
        let Taken::Run(job) = taken else {
            panic!("{taken:?}")
        };
        assert_eq!(job.ns, [10, 20]);
        assert!(matches!(job.what, What::Last(3)));
        // The same message with another body (args, kwargs, embed), as Python sends it.
        let with_body = |body: &str| {
            let mut v: serde_json::Value = serde_json::from_str(&raw).unwrap();
            let b64 = |s: &str| {
                // A tiny base64 encoder: enough for a test.
                const A: &[u8] =
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
                let mut out = String::new();
                for c in s.as_bytes().chunks(3) {
                    let n = c
                        .iter()
                        .enumerate()
                        .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
                    for k in 0..4 {
                        if k <= c.len() {
                            out.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
                        } else {
                            out.push('=');
                        }
                    }
                }
                out
            };
            v["body"] = b64(body).into();
            match read_message(&v.to_string()).unwrap().1 {
                Taken::Run(job) => Ok(job.ns),
                Taken::Refuse(r, also) => Err((r.exc_type, r.message, also)),
            }
        };
        assert_eq!(with_body("[[[1, 2]], {}, {}]"), Ok(vec![1, 2]));
        assert_eq!(
            with_body(r#"[[], {"ns": [5], "format": null}, null]"#),
            Ok(vec![5])
        );
        let e = with_body("[[[18446744073709551616]], {}, {}]").unwrap_err();
        assert!(e.1.contains("ns[0] is 18446744073709551616"), "{e:?}");
        let e = with_body("[[[1], \"value\", 3, 4], {}, {}]").unwrap_err();
        assert_eq!(e.0, "TypeError");
        let e = with_body(r#"[[[1]], {"lats": 3}, {}]"#).unwrap_err();
        assert!(e.1.contains("'lats'"), "{e:?}");
        let e =
            with_body(r#"[[[1]], {}, {"chord": {"task": "t", "options": {"task_id": "abc"}}}]"#)
                .unwrap_err();
        assert_eq!(e.0, "NotImplementedError");
        assert!(e.1.contains("chord"), "{e:?}");
        assert_eq!(e.2, ["abc"]);
    }

    #[test]
    fn jobs_check_their_arguments() {
        assert!(matches!(
            Job::new(vec![1], None, None).unwrap().what,
            What::Value
        ));
        assert!(matches!(
            Job::new(vec![1], Some("last"), Some(3)).unwrap().what,
            What::Last(3)
        ));
        assert!(Job::new(vec![1], Some("last"), None).is_err());
        let e = Job::new(vec![1], Some("hex"), None).err().unwrap();
        assert!(e.contains("\"hex\""), "{e}");
    }

    #[test]
    fn jobs_return_plain_fibo_lines_and_refuse_what_does_not_fit() {
        let e = Fibonacci::builder().threads(2).build().unwrap();
        let ns = vec![10, 0, 300, 299];
        let lines = Job::new(ns.clone(), None, None)
            .unwrap()
            .run(&e, u64::MAX)
            .unwrap();
        let want: Vec<String> = ns.iter().map(|&n| fib::fib(n).to_string()).collect();
        assert_eq!(lines, want);
        let lines = Job::new(vec![30, 1000], Some("last"), Some(3))
            .unwrap()
            .run(&e, u64::MAX)
            .unwrap();
        assert_eq!(lines[0], "040");
        assert_eq!(lines[1], (fib::fib(1000) % 1000u32).to_string());
        let digits = Job::new(vec![100], Some("digits"), None).unwrap();
        assert_eq!(digits.run(&e, u64::MAX).unwrap(), ["21"]);
        let big = Job::new(vec![1_000_000_000], None, None).unwrap();
        let err = big.run(&e, 1 << 20).unwrap_err();
        assert!(
            err.contains("F(1000000000)") && err.contains("memory limit"),
            "{err}"
        );
    }

    #[test]
    fn output_kinds_and_task_arguments_map_both_ways() {
        for what in [
            What::Value,
            What::Digits,
            What::Last(1),
            What::Last(10_000_000),
        ] {
            let args = Output::of(what).unwrap();
            assert_eq!(Output::what(Some(args.format), args.last), Ok(what));
        }
        assert_eq!(
            Output::of(What::Last(7)),
            Some(Output {
                format: "last",
                last: Some(7)
            })
        );
        // --mod is no task: the client computes it.
        assert_eq!(Output::of(What::Mod(1000)), None);
        // Python's defaults: format="value", last=None.
        assert_eq!(Output::what(None, None), Ok(What::Value));
        assert_eq!(Output::what(Some("digits"), Some(3)), Ok(What::Digits));
        assert!(Output::what(Some("last"), Some(0)).is_err());
        assert!(Output::what(Some("last"), Some(10_000_001)).is_err());
    }

    #[test]
    fn messages_are_celery_protocol_2_with_keyword_arguments() {
        let (id, raw) = batch_message(vec![10, 20], "last", Some(3), "q").unwrap();
        let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
        let headers = &v["headers"];
        assert_eq!(headers["id"], id.as_str());
        assert_eq!(v["properties"]["correlation_id"], id.as_str());
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
        assert_eq!(headers["task"], TASK);
        assert_eq!(headers["retries"], 0);
        assert_eq!(headers["timelimit"], serde_json::json!([null, null]));
        assert!(headers["eta"].is_null() && headers["expires"].is_null());
        let origin = headers["origin"].as_str().unwrap();
        assert!(origin.starts_with(&format!("gen{}@", std::process::id())));
        assert_eq!(v["content-type"], "application/json");
        assert_eq!(v["content-encoding"], "utf-8");
        assert_eq!(v["properties"]["body_encoding"], "base64");
        assert_eq!(
            v["properties"]["delivery_info"],
            serde_json::json!({"exchange": "", "routing_key": "q"})
        );
        // The body as celery-rs's `send_task` wrote it: [args, kwargs, embed].
        let message = serde_json::from_str::<celery::protocol::Delivery>(&raw)
            .unwrap()
            .try_deserialize_message()
            .unwrap();
        assert_eq!(
            std::str::from_utf8(&message.raw_body).unwrap(),
            r#"[[],{"ns":[10,20],"format":"last","last":3},{"callbacks":null,"errbacks":null,"chain":null,"chord":null}]"#
        );
        // A fresh id each time.
        assert_ne!(batch_message(vec![1], "value", None, "q").unwrap().0, id);
    }

    #[test]
    fn results_are_stored_in_celerys_layout() {
        let json = success_json("abc", &["1".into(), "22".into()]).unwrap();
        let meta = read_meta(Some(json)).unwrap();
        assert_eq!(meta.task_id, "abc");
        assert!(matches!(meta.status, TaskState::Success));
        assert_eq!(meta.result, Some(serde_json::json!(["1", "22"])));
        assert!(read_meta(Some("not json".into())).is_none());
        assert!(read_meta(None).is_none());
    }
}
