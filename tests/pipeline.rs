//! Protects `parkit::pipeline`: input order, no deadlock and no lost or duplicated item under
//! failures, panics and early drops, threads of its own (not rayon's), backpressure within the
//! ordering window, and the report's counters.

use std::collections::HashSet;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parkit::pipeline::{ErrorKind, Pipeline, PipelineError};
use proptest::prelude::*;

mod common;
use common::watchdog;

const MILLION: u64 = 1_000_000;
/// Queue size for the million-item runs: cheap items want long bursts between thread wake-ups.
const BIG_QUEUE: usize = 256;

/// A seed for this run (from `PARKIT_SEED` if set), printed so that a failure can be replayed.
fn seed(test: &str) -> u64 {
    let seed = std::env::var("PARKIT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            now.as_nanos() as u64
        });
    eprintln!("{test}: PARKIT_SEED={seed}");
    seed
}

/// splitmix64: a random-enough number from a seed and a stream position.
fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The three cheap stages of the million-item runs, as a plain function.
fn three(x: u64) -> u64 {
    ((x * 3 + 1) ^ 0x55) * 2
}

/// Waits up to `secs` seconds for every clone of `token` but ours to be dropped.
fn all_released(token: &Arc<()>, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Arc::strong_count(token) > 1 {
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
    true
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn ordered_output_equals_sequential_map(
        input in prop::collection::vec(any::<u32>(), 0..400),
        workers in prop::collection::vec(1usize..6, 3),
        capacity in 0usize..4,
        window in prop::option::of(1usize..12),
    ) {
        let expected: Vec<String> = input
            .iter()
            .map(|&x| format!("{:x}", u64::from(x) * 3 + 1))
            .collect();
        let mut p = Pipeline::from(input.clone())
            .stage("widen", workers[0], |x: u32| {
                if x % 5 == 0 {
                    thread::yield_now(); // shuffles completion order
                }
                u64::from(x)
            })
            .stage("affine", workers[1], |x| x * 3 + 1)
            .capacity(capacity)
            .stage("hex", workers[2], |x| format!("{x:x}"));
        if let Some(w) = window {
            p = p.window(w);
        }
        let got = watchdog(30, "ordered map", move || p.collect().unwrap());
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn unordered_output_is_a_permutation(
        input in prop::collection::vec(any::<u16>(), 0..400),
        workers in 1usize..6,
    ) {
        let p = Pipeline::from(input.clone())
            .stage("sq", workers, |x: u16| u32::from(x) * u32::from(x))
            .stage("jitter", workers, |x| {
                if x % 3 == 0 {
                    thread::sleep(Duration::from_micros(50));
                }
                x
            })
            .unordered();
        let mut got = watchdog(30, "unordered map", move || p.collect().unwrap());
        let mut expected: Vec<u32> = input.iter().map(|&x| u32::from(x) * u32::from(x)).collect();
        got.sort_unstable();
        expected.sort_unstable();
        prop_assert_eq!(got, expected);
    }
}

#[test]
fn zero_items_one_item_no_stages() {
    let none: Vec<u8> = Pipeline::from(Vec::<u8>::new())
        .stage("a", 3, |x| x + 1)
        .collect()
        .unwrap();
    assert!(none.is_empty());
    let (one, report) = Pipeline::from([41u8])
        .stage("inc", 2, |x| x + 1)
        .stage("show", 2, |x| x.to_string())
        .collect_with_report()
        .unwrap();
    assert_eq!(one, ["42"]);
    assert_eq!(report.items(), 1);
    let passthrough = Pipeline::from(0..10u8).collect().unwrap();
    assert_eq!(passthrough, (0..10).collect::<Vec<_>>());
    let unordered_empty = Pipeline::from(0..0u8).unordered().for_each(drop).unwrap();
    assert_eq!(unordered_empty.sink().unwrap().items, 0);
}

#[test]
fn a_million_items_through_three_stages_in_order() {
    let (sum, count, report) = watchdog(30, "a million items", || {
        let mut expected = 0;
        let mut count = 0u64;
        let mut sum = 0u64;
        let report = Pipeline::from(0..MILLION)
            .stage("scale", 2, |x| x * 3 + 1)
            .capacity(BIG_QUEUE)
            .stage("mask", 2, |x| x ^ 0x55)
            .capacity(BIG_QUEUE)
            .stage("double", 2, |x| x * 2)
            .capacity(BIG_QUEUE)
            .for_each(|x| {
                assert_eq!(x, three(expected), "item {expected} out of order");
                expected += 1;
                count += 1;
                sum = sum.wrapping_add(x);
            })
            .unwrap();
        (sum, count, report)
    });
    assert_eq!(count, MILLION);
    assert_eq!(sum, (0..MILLION).map(three).fold(0u64, u64::wrapping_add));
    for stage in report.stages() {
        assert_eq!(stage.items, MILLION, "{}", stage.name);
    }
    eprintln!("{report}");
}

#[test]
fn a_million_items_unordered_loses_and_duplicates_nothing() {
    let got = watchdog(30, "a million items unordered", || {
        Pipeline::from(0..MILLION)
            .stage("scale", 2, |x| x * 3 + 1)
            .capacity(BIG_QUEUE)
            .stage("mask", 2, |x| x ^ 0x55)
            .capacity(BIG_QUEUE)
            .stage("double", 2, |x| x * 2)
            .capacity(BIG_QUEUE)
            .unordered()
            .collect()
            .unwrap()
    });
    assert_eq!(got.len() as u64, MILLION);
    let distinct: HashSet<u64> = got.into_iter().collect();
    assert_eq!(distinct.len() as u64, MILLION);
    assert!((0..MILLION).all(|x| distinct.contains(&three(x))));
}

/// Runs the million-item pipeline with `fail` put in stage `at_stage` (0, 1 or 2) and checks
/// that the items before the error come out as a prefix in order, and that the error names
/// the stage and the item.
fn million_with_failure(
    at_stage: usize,
    bad: u64,
    fail: fn(u64) -> Result<u64, String>,
    kind: ErrorKind,
) {
    let names = ["scale", "check", "double"];
    let (delivered, error) = watchdog(30, "a million items with a failure", move || {
        let step = move |stage: usize, x: u64| -> Result<u64, String> {
            let y = match stage {
                0 => x * 3 + 1,
                1 => x ^ 0x55,
                _ => x * 2,
            };
            if stage == at_stage {
                fail(x).map(|_| y)
            } else {
                Ok(y)
            }
        };
        let mut out = Pipeline::from(0..MILLION)
            .try_stage("scale", 2, move |x| step(0, x))
            .capacity(BIG_QUEUE)
            .try_stage("check", 2, move |x| step(1, x))
            .capacity(BIG_QUEUE)
            .try_stage("double", 2, move |x| step(2, x))
            .capacity(BIG_QUEUE)
            .into_iter();
        let mut delivered = 0u64;
        let error = loop {
            match out.next() {
                Some(Ok(x)) => {
                    assert_eq!(x, three(delivered), "item {delivered} out of order");
                    delivered += 1;
                }
                Some(Err(e)) => break e,
                None => panic!("the run ended without the error"),
            }
        };
        assert!(out.next().is_none(), "the output ends after the error");
        (delivered, error)
    });
    assert_eq!(error.stage(), names[at_stage]);
    assert_eq!(error.index() as u64, bad);
    assert_eq!(error.kind(), kind);
    assert!(
        delivered <= bad,
        "{delivered} items delivered before item {bad} failed"
    );
}

/// The value item `bad` has when it enters stage `stage` of the million-item pipeline.
fn value_at(stage: usize, bad: u64) -> u64 {
    match stage {
        0 => bad,
        1 => bad * 3 + 1,
        _ => (bad * 3 + 1) ^ 0x55,
    }
}

static BAD_ITEM: AtomicUsize = AtomicUsize::new(usize::MAX);
static BAD_PANIC: AtomicUsize = AtomicUsize::new(usize::MAX);

#[test]
fn a_million_items_with_an_error_at_a_random_index() {
    let seed = seed("error");
    let bad = mix(seed, 0) % MILLION;
    let stage = (mix(seed, 1) % 3) as usize;
    BAD_ITEM.store(value_at(stage, bad) as usize, SeqCst);
    let fail: fn(u64) -> Result<u64, String> = |x| {
        if x == BAD_ITEM.load(SeqCst) as u64 {
            Err(format!("bad value {x}"))
        } else {
            Ok(x)
        }
    };
    million_with_failure(stage, bad, fail, ErrorKind::Failed);
}

#[test]
fn a_million_items_with_a_panic_at_a_random_index() {
    let seed = seed("panic");
    let bad = mix(seed, 2) % MILLION;
    let stage = (mix(seed, 3) % 3) as usize;
    BAD_PANIC.store(value_at(stage, bad) as usize, SeqCst);
    let fail: fn(u64) -> Result<u64, String> = |x| {
        if x == BAD_PANIC.load(SeqCst) as u64 {
            panic!("boom at value {x}");
        }
        Ok(x)
    };
    million_with_failure(stage, bad, fail, ErrorKind::Panicked);
}

#[test]
fn a_million_items_dropped_early_stops_every_thread() {
    let seed = seed("drop");
    let keep = (mix(seed, 4) % 100_000) as usize;
    let token = Arc::new(());
    let (t0, t1, t2, t3) = (
        Arc::clone(&token),
        Arc::clone(&token),
        Arc::clone(&token),
        Arc::clone(&token),
    );
    let took = watchdog(30, "an early drop", move || {
        // The source iterator holds a token until its thread exits.
        let mut out = Pipeline::from((0..MILLION).inspect(move |_| {
            let _held = &t0;
        }))
        .stage("scale", 2, move |x| {
            let _held = &t1;
            x * 3 + 1
        })
        .capacity(BIG_QUEUE)
        .stage("mask", 2, move |x| {
            let _held = &t2;
            x ^ 0x55
        })
        .capacity(BIG_QUEUE)
        .stage("double", 2, move |x| {
            let _held = &t3;
            x * 2
        })
        .into_iter();
        for i in 0..keep {
            assert_eq!(out.next().unwrap().unwrap(), three(i as u64));
        }
        let start = Instant::now();
        drop(out);
        start.elapsed()
    });
    assert!(took < Duration::from_secs(1), "drop blocked for {took:?}");
    assert!(
        all_released(&token, 5),
        "{} threads still hold their stage after the drop",
        Arc::strong_count(&token) - 1
    );
}

#[test]
fn drop_does_not_wait_for_slow_items_and_threads_still_exit() {
    let token = Arc::new(());
    let held = Arc::clone(&token);
    let mut out = Pipeline::from(0..100u32)
        .stage("slow", 4, move |x| {
            let _held = &held;
            thread::sleep(Duration::from_millis(if x == 0 { 0 } else { 300 }));
            x
        })
        .into_iter();
    assert_eq!(out.next().unwrap().unwrap(), 0);
    let start = Instant::now();
    drop(out);
    assert!(
        start.elapsed() < Duration::from_millis(250),
        "drop waited for busy workers"
    );
    assert!(
        all_released(&token, 5),
        "the slow stage's threads did not exit"
    );
}

#[test]
fn errors_stop_the_run_promptly_and_threads_exit() {
    let token = Arc::new(());
    let (held, held2) = (Arc::clone(&token), Arc::clone(&token));
    let start = Instant::now();
    let err = watchdog(30, "an error with a slow stage", move || {
        Pipeline::from(0..)
            .stage("slow", 4, move |x: u64| {
                let _held = &held;
                thread::sleep(Duration::from_millis(20));
                x
            })
            .try_stage("fail", 1, move |x| {
                let _held = &held2;
                if x == 5 { Err("five") } else { Ok(x) }
            })
            .collect()
            .unwrap_err()
    });
    assert_eq!(
        (err.stage(), err.index(), err.kind()),
        ("fail", 5, ErrorKind::Failed)
    );
    assert_eq!(err.to_string(), "stage 'fail' failed on item 5: five");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(
        all_released(&token, 5),
        "threads kept running after the error"
    );
}

#[test]
fn source_errors_and_panics_name_the_source() {
    let err = Pipeline::try_from_iter((0..100u32).map(|i| {
        if i == 42 {
            Err(format!("cannot read record {i}"))
        } else {
            Ok(i)
        }
    }))
    .stage("id", 2, |x| x)
    .collect()
    .unwrap_err();
    assert_eq!(
        (err.stage(), err.index(), err.kind()),
        ("source", 42, ErrorKind::Failed)
    );
    assert_eq!(
        err.to_string(),
        "stage 'source' failed on item 42: cannot read record 42"
    );

    let err = watchdog(30, "a panicking source", || {
        Pipeline::from((0..100u32).map(|i| if i == 7 { panic!("source broke") } else { i }))
            .stage("id", 2, |x| x)
            .collect()
            .unwrap_err()
    });
    assert_eq!(
        (err.stage(), err.index(), err.kind()),
        ("source", 7, ErrorKind::Panicked)
    );
    assert_eq!(err.panic_message(), Some("source broke"));
}

#[test]
fn sink_errors_and_panics_name_the_sink() {
    let err = Pipeline::from(0..1000u32)
        .stage("id", 2, |x| x)
        .try_for_each(|x| {
            if x == 500 {
                Err(std::fmt::Error)
            } else {
                Ok(())
            }
        })
        .unwrap_err();
    assert_eq!(
        (err.stage(), err.index(), err.kind()),
        ("sink", 500, ErrorKind::Failed)
    );
    assert!(
        std::error::Error::source(&err)
            .unwrap()
            .is::<std::fmt::Error>()
    );

    let err = Pipeline::from(0..1000u32)
        .stage("id", 2, |x| x)
        .unordered()
        .for_each(|x| assert_ne!(x, 300, "sink refuses 300"))
        .unwrap_err();
    assert_eq!(
        (err.stage(), err.index(), err.kind()),
        ("sink", 300, ErrorKind::Panicked)
    );
    assert!(err.panic_message().unwrap().contains("sink refuses 300"));
}

#[test]
fn a_slow_first_item_neither_deadlocks_nor_grows_memory() {
    // Item 0 takes long while the others rush by: they pile up in the reorder buffer until the
    // window stops the source, and the consumer keeps draining, so no worker blocks for ever.
    let produced = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&produced);
    let (ahead, out) = watchdog(30, "a slow first item", move || {
        let mut out = Pipeline::from((0..2000usize).inspect(move |_| {
            counter.fetch_add(1, SeqCst);
        }))
        .stage("uneven", 4, |x| {
            if x == 0 {
                thread::sleep(Duration::from_millis(300));
            }
            x
        })
        .capacity(1)
        .window(10)
        .into_iter();
        let first = out.next().unwrap().unwrap();
        let ahead = produced.load(SeqCst);
        let rest: Vec<usize> = out.map(Result::unwrap).collect();
        (
            ahead,
            std::iter::once(first).chain(rest).collect::<Vec<_>>(),
        )
    });
    assert!(
        ahead <= 11,
        "the source ran {ahead} items ahead of a window of 10"
    );
    assert_eq!(out, (0..2000).collect::<Vec<_>>());
}

#[test]
fn blocking_stage_runs_on_its_own_threads_in_parallel() {
    let names = Arc::new(Mutex::new(HashSet::new()));
    let seen = Arc::clone(&names);
    let start = Instant::now();
    let out = watchdog(30, "a blocking stage", move || {
        Pipeline::from(0..64u32)
            .stage("fetch", 16, move |x| {
                assert!(rayon::current_thread_index().is_none(), "on a rayon worker");
                let name = thread::current().name().unwrap_or("").to_owned();
                seen.lock().unwrap().insert(name);
                thread::sleep(Duration::from_millis(20)); // "I/O"
                x
            })
            .stage("cpu", 2, |x| {
                // A CPU stage may use rayon inside.
                use rayon::prelude::*;
                (0..=x).into_par_iter().sum::<u32>()
            })
            .collect()
            .unwrap()
    });
    let took = start.elapsed();
    // Sequentially: 64 x 20 ms = 1.28 s; 16 workers need about 80 ms.
    assert!(
        took < Duration::from_millis(640),
        "no parallel speed-up: {took:?}"
    );
    assert_eq!(out, (0..64u32).map(|x| x * (x + 1) / 2).collect::<Vec<_>>());
    let names = names.lock().unwrap();
    assert!(
        names.len() > 2,
        "only {} threads ran the stage",
        names.len()
    );
    assert!(
        names.iter().all(|n| n.starts_with("parkit-fetch-")),
        "{names:?}"
    );
}

#[test]
fn report_counts_every_item_and_finds_the_bottleneck() {
    let n = 200u64;
    let report = watchdog(30, "a report", move || {
        Pipeline::from(0..n)
            .stage("parse", 2, |x| x + 1)
            .stage("slow", 1, |x| {
                thread::sleep(Duration::from_millis(1));
                x
            })
            .stage("format", 2, |x| x.to_string())
            .for_each(drop)
            .unwrap()
    });
    assert_eq!(report.items(), n);
    assert_eq!(report.source().items, n);
    assert_eq!(report.sink().unwrap().items, n);
    let names: Vec<_> = report.stages().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["parse", "slow", "format"]);
    for stage in report.stages() {
        assert_eq!(stage.items, n, "{}", stage.name);
    }
    let slow = report.stage("slow").unwrap();
    assert_eq!(slow.workers, 1);
    assert!(slow.busy >= Duration::from_millis(n));
    assert_eq!(report.bottleneck().name, "slow");
    // The stages around the slow one waited on it.
    let parse = report.stage("parse").unwrap();
    let format = report.stage("format").unwrap();
    assert!(parse.wait_output > parse.busy && format.wait_input > format.busy);
    assert!(report.elapsed() >= slow.busy);
    let table = report.to_string();
    assert!(table.contains("bottleneck: slow"), "{table}");
    assert_eq!(table.lines().count(), 7, "{table}");
}

/// Runs `pipeline` with a sink slower than everything else and returns the most items the
/// source was ever ahead of the sink.
fn max_ahead(build: impl FnOnce(Box<dyn Iterator<Item = u32> + Send>) -> Pipeline<u32>) -> usize {
    let produced = Arc::new(AtomicUsize::new(0));
    let consumed = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let (p, c, m) = (
        Arc::clone(&produced),
        Arc::clone(&consumed),
        Arc::clone(&max),
    );
    let source = (0..300u32).inspect(move |_| {
        let ahead = p.fetch_add(1, SeqCst) + 1 - c.load(SeqCst);
        m.fetch_max(ahead, SeqCst);
    });
    let pipeline = build(Box::new(source));
    watchdog(30, "a slow sink", move || {
        pipeline
            .for_each(|_| {
                consumed.fetch_add(1, SeqCst);
                thread::sleep(Duration::from_micros(300));
            })
            .unwrap()
    });
    max.load(SeqCst)
}

#[test]
fn backpressure_keeps_the_source_within_the_window() {
    // Explicit window: item i enters only when i < delivered + 5; the sink may be one item
    // behind `delivered` (the one it is handling).
    let ahead = max_ahead(|src| {
        Pipeline::from(src)
            .stage("a", 3, |x| x)
            .capacity(1)
            .stage("b", 3, |x| x)
            .capacity(1)
            .window(5)
    });
    assert!((2..=6).contains(&ahead), "source ran {ahead} items ahead");

    // Default window: every queue's capacity plus every stage's workers: (1 + 1 + 1) + 3 + 3.
    let ahead = max_ahead(|src| {
        Pipeline::from(src)
            .stage("a", 3, |x| x)
            .capacity(1)
            .stage("b", 3, |x| x)
            .capacity(1)
    });
    assert!(ahead <= 9 + 1, "source ran {ahead} items ahead");

    // Unordered: only the queues hold it back: 3 queue slots, 6 workers, one item in the
    // source's hand and one in the sink's.
    let ahead = max_ahead(|src| {
        Pipeline::from(src)
            .stage("a", 3, |x| x)
            .capacity(1)
            .stage("b", 3, |x| x)
            .capacity(1)
            .unordered()
    });
    assert!(ahead <= 3 + 6 + 2, "source ran {ahead} items ahead");
}

#[test]
fn stages_may_change_types_and_fail_with_their_own_errors() {
    #[derive(Debug)]
    struct Page(String);
    let pages = Pipeline::from(vec!["1", "22", "x", "4444"])
        .stage("fetch", 2, |url: &str| Page(format!("<{url}>")))
        .try_stage("parse", 2, |page: Page| {
            page.0
                .trim_matches(|c| c == '<' || c == '>')
                .parse::<u16>()
                .map(|n| (n, page))
        })
        .stage("len", 1, |(n, page)| (n, page.0.len()))
        .collect()
        .unwrap_err();
    assert_eq!((pages.stage(), pages.index()), ("parse", 2));
    let cause = pages.into_source().unwrap();
    assert!(cause.downcast_ref::<std::num::ParseIntError>().is_some());
}

#[test]
fn into_iter_yields_a_prefix_then_the_error_then_nothing() {
    let mut out = Pipeline::from(0..50u32)
        .try_stage("check", 3, |x| if x == 20 { Err("twenty") } else { Ok(x) })
        .into_iter();
    let mut expected = 0;
    let err: PipelineError = loop {
        match out.next().expect("the error comes before the end") {
            Ok(x) => {
                assert_eq!(x, expected);
                expected += 1;
            }
            Err(e) => break e,
        }
    };
    assert!(expected <= 20);
    assert_eq!(err.index(), 20);
    assert!(out.next().is_none() && out.next().is_none());
    assert!(out.report().is_none());
}

#[test]
#[should_panic(expected = "stage 'fetch' needs at least one worker")]
fn zero_workers_panics() {
    let _ = Pipeline::from(0..1u8).stage("fetch", 0, |x| x);
}

#[test]
#[should_panic(expected = "add one first")]
fn capacity_without_a_stage_panics() {
    let _ = Pipeline::from(0..1u8).capacity(4);
}

#[test]
#[should_panic(expected = "window must be at least 1")]
fn empty_window_panics() {
    let _ = Pipeline::from(0..1u8).window(0);
}

#[test]
fn pipelines_are_send_and_errors_are_send_sync() {
    fn send<T: Send>(_: &T) {}
    fn send_sync<T: Send + Sync>() {}
    let p = Pipeline::from(0..3u8).stage("id", 1, |x| x);
    send(&p);
    send_sync::<PipelineError>();
    let debug = format!("{p:?}");
    assert!(
        debug.contains("Pipeline") && debug.contains("\"id\""),
        "{debug}"
    );
    assert_eq!(
        thread::spawn(move || p.collect().unwrap()).join().unwrap(),
        [0, 1, 2]
    );
}
