//! Streams results in input order while later blocks are still computing: a bounded window of
//! blocks in flight on the pool, a reorder buffer, and one writer (the calling thread).
//!
//! Memory stays bounded whatever the input: at most `max_blocks` blocks and about `max_bytes`
//! of output are ever held ahead of the writer.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

/// Limits of the window of blocks in flight.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// Blocks submitted but not yet written.
    pub max_blocks: usize,
    /// Estimated output bytes of those blocks (at least one block always runs).
    pub max_bytes: u64,
}

/// A unit of work: its position is its place in the output.
pub trait Block: Send + 'static {
    /// Estimated output bytes, for the window's byte limit.
    fn bytes(&self) -> u64;
    /// Number of inputs in the block, for progress.
    fn len(&self) -> u64;
}

/// How a block failed: the panic message of its computation.
#[derive(Debug)]
pub struct BlockPanic(pub String);

/// Runs `compute` on every block on `pool`, and hands each result to `write` in block order as
/// soon as it and every block before it are done. Stops at the first error of `write` and
/// returns it (blocks still in flight are abandoned, their results dropped).
///
/// Locking behaviour: the calling thread blocks on a channel while waiting for results; it
/// must not be one of `pool`'s threads.
pub fn run<B, C, W, E>(
    pool: &rayon::ThreadPool,
    blocks: impl Iterator<Item = B>,
    window: Window,
    compute: Arc<C>,
    mut write: W,
) -> Result<(), E>
where
    B: Block,
    C: Fn(B) -> Vec<u8> + Send + Sync + 'static,
    W: FnMut(Vec<u8>, u64) -> Result<(), E>,
    E: From<BlockPanic>,
{
    debug_assert!(
        pool.current_thread_index().is_none(),
        "the writer must not be a pool thread"
    );
    let (tx, rx) = crossbeam_channel::unbounded::<(usize, Result<Vec<u8>, BlockPanic>, u64)>();
    let mut blocks = blocks.enumerate().peekable();
    let mut pending: BTreeMap<usize, (Result<Vec<u8>, BlockPanic>, u64)> = BTreeMap::new();
    let mut bytes_in_flight: BTreeMap<usize, u64> = BTreeMap::new();
    let mut flight_bytes = 0u64;
    let mut next_write = 0usize;
    loop {
        // Fill the window.
        while bytes_in_flight.len() < window.max_blocks.max(1) {
            let Some((_, b)) = blocks.peek() else { break };
            let size = b.bytes();
            if !bytes_in_flight.is_empty() && flight_bytes.saturating_add(size) > window.max_bytes {
                break;
            }
            let (i, b) = blocks.next().expect("peeked");
            bytes_in_flight.insert(i, size);
            flight_bytes = flight_bytes.saturating_add(size);
            let (tx, compute) = (tx.clone(), Arc::clone(&compute));
            pool.spawn(move || {
                let len = b.len();
                let out = catch_unwind(AssertUnwindSafe(|| compute(b))).map_err(|p| {
                    BlockPanic(
                        p.downcast_ref::<&str>()
                            .map(|s| (*s).to_string())
                            .or_else(|| p.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "unknown panic".into()),
                    )
                });
                // The receiver is gone only when the writer stopped early: nothing to do.
                let _ = tx.send((i, out, len));
            });
        }
        if bytes_in_flight.is_empty() {
            return Ok(());
        }
        let (i, out, len) = rx.recv().expect("a sender lives in every task in flight");
        pending.insert(i, (out, len));
        while let Some((out, len)) = pending.remove(&next_write) {
            flight_bytes -= bytes_in_flight.remove(&next_write).unwrap_or(0);
            next_write += 1;
            write(out?, len)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct B(u64);
    impl Block for B {
        fn bytes(&self) -> u64 {
            8
        }
        fn len(&self) -> u64 {
            1
        }
    }

    #[derive(Debug)]
    enum E {
        Panic(String),
        Stop,
    }
    impl From<BlockPanic> for E {
        fn from(p: BlockPanic) -> Self {
            E::Panic(p.0)
        }
    }

    fn pool() -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap()
    }

    #[test]
    fn output_is_in_order_and_window_is_bounded() {
        let live = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (l2, p2) = (Arc::clone(&live), Arc::clone(&peak));
        let compute = Arc::new(move |b: B| {
            let now = l2.fetch_add(1, Ordering::SeqCst) + 1;
            p2.fetch_max(now, Ordering::SeqCst);
            // Later blocks finish first.
            std::thread::sleep(std::time::Duration::from_micros(200 * (b.0 % 5)));
            l2.fetch_sub(1, Ordering::SeqCst);
            b.0.to_le_bytes().to_vec()
        });
        let mut seen = Vec::new();
        let w = Window {
            max_blocks: 4,
            max_bytes: 1 << 20,
        };
        run::<_, _, _, E>(&pool(), (0..300).map(B), w, compute, |out, _| {
            seen.push(u64::from_le_bytes(out.try_into().unwrap()));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, (0..300).collect::<Vec<_>>());
        assert!(peak.load(Ordering::SeqCst) <= 4);
    }

    #[test]
    fn a_panic_becomes_an_error_and_writing_stops_early() {
        let compute = Arc::new(|b: B| {
            assert!(b.0 != 7, "block seven fails");
            vec![0]
        });
        let mut written = 0;
        let w = Window {
            max_blocks: 8,
            max_bytes: 1 << 20,
        };
        let err = run::<_, _, _, E>(&pool(), (0..100).map(B), w, compute, |_, _| {
            written += 1;
            Ok(())
        })
        .unwrap_err();
        assert!(
            matches!(err, E::Panic(ref m) if m.contains("block seven")),
            "{err:?}"
        );
        assert_eq!(written, 7);

        let mut count = 0;
        let err = run::<_, _, _, E>(
            &pool(),
            (0..1_000_000).map(B),
            w,
            Arc::new(|_: B| vec![1]),
            |_, _| {
                count += 1;
                if count == 3 { Err(E::Stop) } else { Ok(()) }
            },
        );
        assert!(matches!(err, Err(E::Stop)));
    }
}
