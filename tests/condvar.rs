//! The hand-written shared-queue design: no item lost or repeated, over many runs with many
//! workers, and a clean shutdown.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use parkit::baseline::{WorkQueue, condvar_map, thread_per_input};

#[test]
fn no_item_lost_or_repeated_over_many_runs() {
    for run in 0..200usize {
        let workers = 1 + run % 16;
        let n = (run * 37) % 500;
        let calls = AtomicUsize::new(0);
        let inputs: Vec<usize> = (0..n).collect();
        let out = condvar_map(inputs, workers, |x| {
            calls.fetch_add(1, Ordering::Relaxed);
            if x % 97 == 0 {
                std::thread::yield_now();
            }
            x * 3
        });
        assert_eq!(
            calls.load(Ordering::Relaxed),
            n,
            "run {run}: each item exactly once"
        );
        assert_eq!(
            out.iter().map(|(_, r)| *r).collect::<Vec<_>>(),
            (0..n).map(|x| x * 3).collect::<Vec<_>>()
        );
        assert!(out.iter().all(|(w, _)| *w < workers));
    }
}

#[test]
fn many_producers_and_consumers_share_one_queue() {
    let q = WorkQueue::new();
    let seen = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        let consumers: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    while let Some(x) = q.pop() {
                        mine.push(x);
                    }
                    seen.lock().unwrap().extend(mine);
                })
            })
            .collect();
        std::thread::scope(|p| {
            for t in 0..4u32 {
                let q = &q;
                p.spawn(move || (0..10_000).for_each(|i| q.push(t * 10_000 + i)));
            }
        });
        q.close();
        for c in consumers {
            c.join().unwrap();
        }
    });
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.len(), 40_000);
    assert_eq!(seen.into_iter().collect::<HashSet<_>>().len(), 40_000);
}

#[test]
fn workers_waiting_on_an_empty_queue_shut_down() {
    // No inputs at all: every worker waits, then close wakes them all.
    let out = condvar_map(Vec::<u8>::new(), 8, |x| x);
    assert!(out.is_empty());
}

#[test]
fn thread_per_input_keeps_order() {
    assert_eq!(
        thread_per_input((0..50).collect(), |x: u64| x * x),
        (0..50).map(|x| x * x).collect::<Vec<_>>()
    );
}
