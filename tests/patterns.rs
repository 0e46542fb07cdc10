//! The data-parallel patterns (`decompose`, `divide`) give the sequential result, in order,
//! under every `Granularity` and thread count; `Tuned` computes each item once; edge cases.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use parkit::decompose::{GranularityExt, ParChunksBy, par_range};
use parkit::divide::divide;
use parkit::granularity::Granularity;
use proptest::prelude::*;
use rayon::prelude::*;

/// Pools of 1 to 4 threads, built once for the whole test binary.
fn pool(threads: usize) -> &'static rayon::ThreadPool {
    static POOLS: OnceLock<Vec<rayon::ThreadPool>> = OnceLock::new();
    let pools = POOLS.get_or_init(|| {
        (1..=4)
            .map(|n| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .unwrap()
            })
            .collect()
    });
    &pools[threads - 1]
}

/// Every variant, zeros included, and `Tuned` targets from 0 to 200 µs.
fn granularity() -> impl Strategy<Value = Granularity> {
    prop_oneof![
        Just(Granularity::Auto),
        Just(Granularity::Sequential),
        (0..20usize).prop_map(Granularity::MinLen),
        (0..40usize).prop_map(Granularity::ChunkSize),
        (0..10usize).prop_map(Granularity::Chunks),
        (0..200u64).prop_map(|us| Granularity::Tuned(Duration::from_micros(us))),
    ]
}

/// Every variant once, with the degenerate zeros.
fn all_granularities() -> Vec<Granularity> {
    vec![
        Granularity::Auto,
        Granularity::Sequential,
        Granularity::MinLen(0),
        Granularity::MinLen(3),
        Granularity::ChunkSize(0),
        Granularity::ChunkSize(1),
        Granularity::ChunkSize(7),
        Granularity::ChunkSize(1_000_000),
        Granularity::Chunks(0),
        Granularity::Chunks(1),
        Granularity::Chunks(5),
        Granularity::Chunks(1_000_000),
        Granularity::tuned(),
        Granularity::Tuned(Duration::ZERO),
        Granularity::Tuned(Duration::from_secs(1)),
    ]
}

/// A little work per item so that `Tuned` has something to time.
fn work(x: u64) -> u64 {
    (0..(x % 7) * 10).fold(x, |a, i| a.rotate_left(5) ^ i.wrapping_mul(0x9e37_79b9))
}

fn concat(mut a: Vec<u64>, b: Vec<u64>) -> Vec<u64> {
    a.extend(b);
    a
}

fn fib_seq(n: u32) -> u64 {
    if n < 2 {
        n.into()
    } else {
        fib_seq(n - 1) + fib_seq(n - 2)
    }
}

fn fib_iter(n: u32) -> u64 {
    (0..n).fold((0u64, 1u64), |(a, b), _| (b, a + b)).0
}

fn merge(a: Vec<u32>, b: Vec<u32>) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if b[j] < a[i] {
            out.push(b[j]);
            j += 1;
        } else {
            out.push(a[i]);
            i += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

fn merge_sort(v: &[u32], g: Granularity) -> Vec<u32> {
    divide(
        v,
        g,
        |s| s.len(),
        |s| s.split_at(s.len() / 2),
        |s| {
            let mut s = s.to_vec();
            s.sort_unstable();
            s
        },
        merge,
    )
}

fn tree_sum(v: &[u64], g: Granularity) -> u64 {
    divide(
        v,
        g,
        |s| s.len(),
        |s| s.split_at(s.len() / 2),
        |s| s.iter().sum::<u64>(),
        |a, b| a + b,
    )
}

fn fib_tree(n: u32, g: Granularity) -> u64 {
    divide(
        n,
        g,
        |&n| n as usize,
        |n| (n - 1, n - 2),
        fib_seq,
        |a, b| a + b,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn slices_equal_sequential(
        v in prop::collection::vec(any::<u64>(), 0..400),
        g in granularity(),
        threads in 1..=4usize,
    ) {
        let expect: Vec<u64> = v.iter().map(|&x| work(x)).collect();
        pool(threads).install(|| {
            let mapped: Vec<u64> = v.par_iter().with_granularity(g).map(|&x| work(x)).collect();
            prop_assert_eq!(mapped, expect.clone());
            let mapped: Vec<u64> = v.par_iter().map(|&x| work(x)).with_granularity(g).collect();
            prop_assert_eq!(mapped, expect.clone());
            // Associative, not commutative: the order of the operands must be kept.
            let joined = v
                .par_iter()
                .with_granularity(g)
                .map(|&x| vec![work(x)])
                .reduce(Vec::new, concat);
            prop_assert_eq!(&joined, &expect);
            let seen: Vec<AtomicUsize> = v.iter().map(|_| AtomicUsize::new(0)).collect();
            let indices: Vec<usize> = (0..v.len()).collect();
            indices.par_iter().with_granularity(g).for_each(|&i| {
                seen[i].fetch_add(1, Relaxed);
            });
            prop_assert!(seen.iter().all(|c| c.load(Relaxed) == 1));
            Ok(())
        })?;
    }

    #[test]
    fn ranges_equal_sequential(
        start in prop_oneof![0..1000u64, (u64::MAX - 1000)..=u64::MAX],
        len in 0..400u64,
        g in granularity(),
        threads in 1..=4usize,
    ) {
        let end = start.saturating_add(len);
        let expect: Vec<u64> = (start..end).map(work).collect();
        pool(threads).install(|| {
            prop_assert_eq!(par_range(start..end).len(), expect.len());
            let mapped: Vec<u64> = par_range(start..end).with_granularity(g).map(work).collect();
            prop_assert_eq!(mapped, expect.clone());
            let joined = par_range(start..end)
                .with_granularity(g)
                .map(|n| vec![work(n)])
                .reduce(Vec::new, concat);
            prop_assert_eq!(&joined, &expect);
            let seen = Mutex::new(Vec::new());
            par_range(start..end)
                .with_granularity(g)
                .for_each(|n| seen.lock().unwrap().push(n));
            let mut seen = seen.into_inner().unwrap();
            seen.sort_unstable();
            prop_assert_eq!(seen, (start..end).collect::<Vec<_>>());
            // Indexed: `zip` and `enumerate` line up with the sequential range.
            let zipped: Vec<(usize, u64)> = par_range(start..end)
                .enumerate()
                .zip(par_range(start..end).with_granularity(g))
                .map(|((i, a), b)| {
                    assert_eq!(a, b);
                    (i, a)
                })
                .collect();
            prop_assert_eq!(zipped, (start..end).enumerate().collect::<Vec<_>>());
            Ok(())
        })?;
    }

    #[test]
    fn with_granularity_keeps_order_under_any_adaptor(
        v in prop::collection::vec(any::<u32>(), 0..300),
        g in granularity(),
        threads in 1..=4usize,
    ) {
        pool(threads).install(|| {
            // `with_granularity` driving the work, then below `enumerate` and `zip`, which
            // ask it for a producer instead.
            let direct: Vec<u32> = v.par_iter().with_granularity(g).map(|x| x ^ 1).collect();
            let enumerated: Vec<(usize, u32)> =
                v.par_iter().copied().with_granularity(g).enumerate().collect();
            let zipped: Vec<(u32, u32)> =
                v.par_iter().copied().with_granularity(g).zip(v.par_iter().copied()).collect();
            let filtered: Vec<u32> =
                v.par_iter().copied().with_granularity(g).filter(|x| x % 3 == 0).collect();
            prop_assert_eq!(direct, v.iter().map(|x| x ^ 1).collect::<Vec<_>>());
            prop_assert_eq!(enumerated, v.iter().copied().enumerate().collect::<Vec<_>>());
            prop_assert_eq!(zipped, v.iter().map(|&x| (x, x)).collect::<Vec<_>>());
            prop_assert_eq!(filtered, v.iter().copied().filter(|x| x % 3 == 0).collect::<Vec<_>>());
            Ok(())
        })?;
    }

    #[test]
    fn chunks_by_cover_the_slice(
        v in prop::collection::vec(any::<u8>(), 0..300),
        g in granularity(),
        threads in 1..=4usize,
    ) {
        pool(threads).install(|| {
            let chunks: Vec<&[u8]> = v.par_chunks_by(g).collect();
            prop_assert_eq!(chunks.concat(), v.clone());
            prop_assert!(chunks.iter().all(|c| !c.is_empty()));
            match g {
                Granularity::ChunkSize(n) => {
                    let n = n.max(1);
                    prop_assert!(chunks.iter().rev().skip(1).all(|c| c.len() == n));
                }
                Granularity::Chunks(k) if !v.is_empty() => {
                    prop_assert_eq!(chunks.len(), k.clamp(1, v.len()));
                    let (lo, hi) = (v.len() / chunks.len(), v.len().div_ceil(chunks.len()));
                    prop_assert!(chunks.iter().all(|c| (lo..=hi).contains(&c.len())));
                }
                Granularity::Sequential => prop_assert!(chunks.len() <= 1),
                _ => {}
            }
            Ok(())
        })?;
    }

    #[test]
    fn tuned_computes_each_item_once(
        len in 0..3000usize,
        spin in 0..2000u64,
        target_us in 0..100u64,
        threads in 1..=4usize,
    ) {
        let g = Granularity::Tuned(Duration::from_micros(target_us));
        let v: Vec<u64> = (0..len as u64).collect();
        let calls = AtomicUsize::new(0);
        let f = |&x: &u64| {
            calls.fetch_add(1, Relaxed);
            (0..spin).fold(x, |a, i| std::hint::black_box(a ^ i))
        };
        pool(threads).install(|| {
            prop_assert_eq!(v.par_iter().with_granularity(g).map(f).collect::<Vec<_>>().len(), len);
            prop_assert_eq!(calls.swap(0, Relaxed), len);
            v.par_iter().map(f).with_granularity(g).reduce(|| 0, |a, b| a ^ b);
            prop_assert_eq!(calls.swap(0, Relaxed), len);
            v.par_iter().with_granularity(g).for_each(|x| { f(x); });
            prop_assert_eq!(calls.swap(0, Relaxed), len);
            par_range(0..len as u64).with_granularity(g).map(|x| f(&x)).count();
            prop_assert_eq!(calls.swap(0, Relaxed), len);
            Ok(())
        })?;
    }

    #[test]
    fn divide_equals_sequential(
        v in prop::collection::vec(any::<u32>(), 0..3000),
        n in 0..22u32,
        g in granularity(),
        threads in 1..=4usize,
    ) {
        let mut sorted = v.clone();
        sorted.sort_unstable();
        let wide: Vec<u64> = v.iter().map(|&x| u64::from(x)).collect();
        pool(threads).install(|| {
            prop_assert_eq!(merge_sort(&v, g), sorted);
            prop_assert_eq!(tree_sum(&wide, g), wide.iter().sum::<u64>());
            prop_assert_eq!(fib_tree(n, g), fib_iter(n));
            Ok(())
        })?;
    }

    #[test]
    fn divide_tuned_solves_each_piece_once(
        len in 0..5000usize,
        target_us in 0..100u64,
        threads in 1..=4usize,
    ) {
        // The pieces solved tile the input: no overlap, no gap, in order.
        let v: Vec<usize> = (0..len).collect();
        let solved = AtomicUsize::new(0);
        let g = Granularity::Tuned(Duration::from_micros(target_us));
        let pieces = pool(threads).install(|| {
            divide(
                &v[..],
                g,
                |s| s.len(),
                |s| s.split_at(s.len() / 2),
                |s| {
                    solved.fetch_add(s.len(), Relaxed);
                    s.to_vec()
                },
                |mut a, b| {
                    a.extend(b);
                    a
                },
            )
        });
        prop_assert_eq!(solved.into_inner(), len);
        prop_assert_eq!(pieces, v);
    }
}

#[test]
fn edge_cases_every_granularity() {
    let empty: [u64; 0] = [];
    for threads in [1, 2, 4] {
        for g in all_granularities() {
            pool(threads).install(|| {
                let map = |items: &[u64], f: fn(u64) -> u64| -> Vec<u64> {
                    items
                        .par_iter()
                        .with_granularity(g)
                        .map(|&x| f(x))
                        .collect()
                };
                let sum = |items: &[u64], identity: u64| {
                    items
                        .par_iter()
                        .copied()
                        .with_granularity(g)
                        .reduce(|| identity, |a, b| a + b)
                };
                let range = |r: std::ops::Range<u64>| -> Vec<u64> {
                    par_range(r).with_granularity(g).collect()
                };
                assert_eq!(map(&empty, |x| x), empty, "{g}");
                assert_eq!(map(&[7], |x| x + 1), [8], "{g}");
                assert_eq!(sum(&empty, 5), 5, "{g}");
                assert_eq!(sum(&[7], 0), 7, "{g}");
                assert_eq!(range(5..5), Vec::<u64>::new(), "{g}");
                #[allow(clippy::reversed_empty_ranges)]
                let reversed = range(9..3);
                assert!(reversed.is_empty(), "{g}");
                assert_eq!(range(u64::MAX - 1..u64::MAX), [u64::MAX - 1], "{g}");
                assert_eq!(range(0..1), [0], "{g}");
                let v: Vec<u64> = (0..10).collect();
                assert_eq!(map(&v, |x| x * 2), (0..20).step_by(2).collect::<Vec<_>>());
                assert_eq!(empty.par_chunks_by(g).count(), 0, "{g}");
                assert_eq!(
                    v.par_chunks_by(g).map(<[u64]>::len).sum::<usize>(),
                    10,
                    "{g}"
                );
                assert_eq!(tree_sum(&[], g), 0, "{g}");
                assert_eq!(tree_sum(&[3], g), 3, "{g}");
                assert_eq!(merge_sort(&[], g), Vec::<u32>::new(), "{g}");
                assert_eq!(fib_tree(0, g), 0, "{g}");
                assert_eq!(fib_tree(1, g), 1, "{g}");
            });
        }
    }
}

#[test]
fn zeros_are_read_as_one() {
    let v: Vec<u32> = (0..10).collect();
    let lens = |g| v.par_chunks_by(g).map(<[u32]>::len).collect::<Vec<_>>();
    assert_eq!(
        lens(Granularity::ChunkSize(0)),
        lens(Granularity::ChunkSize(1))
    );
    assert_eq!(lens(Granularity::Chunks(0)), [10]);
    assert_eq!(lens(Granularity::MinLen(0)), lens(Granularity::MinLen(1)));
    assert_eq!(Granularity::ChunkSize(0).task_len(10), Some(1));
    assert_eq!(Granularity::MinLen(0).task_len(10), Some(1));
    assert_eq!(Granularity::Chunks(0).task_len(10), Some(10));
    // divide: `MinLen(0)` splits down to pieces of 1, `Chunks(0)` solves the whole.
    let pieces = AtomicUsize::new(0);
    let count = |g| {
        pieces.store(0, Relaxed);
        divide(
            &v[..],
            g,
            |s| s.len(),
            |s| s.split_at(s.len() / 2),
            |_| {
                pieces.fetch_add(1, Relaxed);
            },
            |(), ()| (),
        );
        pieces.load(Relaxed)
    };
    assert_eq!(count(Granularity::MinLen(0)), 10);
    assert_eq!(count(Granularity::ChunkSize(0)), 10);
    assert_eq!(count(Granularity::Chunks(0)), 1);
}

#[test]
fn chunk_size_larger_than_len_is_one_task() {
    let v: Vec<u32> = (0..10).collect();
    let chunks: Vec<&[u32]> = v.par_chunks_by(Granularity::ChunkSize(100)).collect();
    assert_eq!(chunks, [&v[..]]);
    let tasks = AtomicUsize::new(0);
    let folded = v
        .par_iter()
        .with_granularity(Granularity::ChunkSize(100))
        .fold(|| tasks.fetch_add(1, Relaxed), |a, _| a)
        .count();
    assert_eq!((folded, tasks.into_inner()), (1, 1));
}

#[test]
fn sequential_stays_on_the_calling_thread() {
    let caller = thread::current().id();
    let v: Vec<u32> = (0..10_000).collect();
    let threads = Mutex::new(HashSet::new());
    let note = || {
        threads.lock().unwrap().insert(thread::current().id());
    };
    pool(4).install(|| {
        let inside = thread::current().id();
        v.par_iter()
            .with_granularity(Granularity::Sequential)
            .for_each(|_| note());
        par_range(0..10_000)
            .with_granularity(Granularity::Sequential)
            .for_each(|_| note());
        v.par_chunks_by(Granularity::Sequential)
            .for_each(|_| note());
        divide(
            &v[..],
            Granularity::Sequential,
            |s| s.len(),
            |s| s.split_at(s.len() / 2),
            |_| note(),
            |(), ()| (),
        );
        assert_eq!(
            threads.lock().unwrap().drain().collect::<Vec<_>>(),
            [inside]
        );
    });
    v.par_iter()
        .with_granularity(Granularity::Sequential)
        .for_each(|_| note());
    assert_eq!(
        threads
            .into_inner()
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        [caller]
    );
}

#[test]
fn tuned_spreads_costly_items_one_per_task() {
    // 16 items of ~1 ms each: every item is a task of its own, so 4 threads share them.
    let v: Vec<u64> = (0..16).collect();
    let tasks = AtomicUsize::new(0);
    pool(4).install(|| {
        v.par_iter()
            .with_granularity(Granularity::tuned())
            .fold(
                || tasks.fetch_add(1, Relaxed),
                |a, _| {
                    thread::sleep(Duration::from_millis(1));
                    a
                },
            )
            .count()
    });
    assert_eq!(tasks.into_inner(), 16);
}

#[test]
fn tuned_groups_cheap_items() {
    // 100,000 trivial items: far fewer tasks than items, and at least one per thread.
    let v: Vec<u64> = (0..100_000).collect();
    let tasks = AtomicUsize::new(0);
    let sum = pool(2).install(|| {
        v.par_iter()
            .with_granularity(Granularity::tuned())
            .fold(
                || {
                    tasks.fetch_add(1, Relaxed);
                    0
                },
                |a, &x| a + x,
            )
            .sum::<u64>()
    });
    assert_eq!(sum, v.iter().sum::<u64>());
    let tasks = tasks.into_inner();
    assert!((2..1_000).contains(&tasks), "{tasks} tasks");
}

#[test]
fn panics_reach_the_caller() {
    let v: Vec<u32> = (0..1000).collect();
    for g in all_granularities() {
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool(2).install(|| {
                v.par_iter()
                    .with_granularity(g)
                    .map(|&x| if x == 777 { panic!("item 777") } else { x })
                    .collect::<Vec<_>>()
            })
        }));
        assert!(r.is_err(), "{g}");
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool(2).install(|| {
                divide(
                    &v[..],
                    g,
                    |s| s.len(),
                    |s| s.split_at(s.len() / 2),
                    |s| assert!(!s.contains(&777), "piece with 777"),
                    |(), ()| (),
                )
            })
        }));
        let msg = r.unwrap_err();
        assert_eq!(msg.downcast_ref::<&str>(), Some(&"piece with 777"), "{g}");
    }
}

#[test]
fn fibonacci_tree_at_several_cutoffs() {
    for cutoff in [0, 1, 5, 10, 20, 30] {
        for g in [Granularity::MinLen(cutoff), Granularity::ChunkSize(cutoff)] {
            assert_eq!(fib_tree(27, g), fib_iter(27), "{g}");
        }
    }
    assert_eq!(fib_tree(27, Granularity::Auto), fib_iter(27));
    assert_eq!(fib_tree(27, Granularity::tuned()), fib_iter(27));
}

#[test]
fn under_producer_adaptors_fixed_cuts_become_length_hints() {
    // `enumerate` asks `with_granularity` for a producer: tasks of n to 2n - 1 items.
    let v: Vec<u32> = (0..10_000).collect();
    let lens = Mutex::new(Vec::new());
    pool(2).install(|| {
        v.par_iter()
            .with_granularity(Granularity::ChunkSize(100))
            .enumerate()
            .fold(|| 0usize, |n, _| n + 1)
            .for_each(|n| lens.lock().unwrap().push(n));
    });
    let lens = lens.into_inner().unwrap();
    assert_eq!(lens.iter().sum::<usize>(), 10_000);
    assert!(lens.iter().all(|n| (100..200).contains(n)), "{lens:?}");
}
