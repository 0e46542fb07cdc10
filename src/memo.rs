//! A concurrent compute-once memo cache on [`DashMap`], with an optional memory budget.
//!
//! [`MemoCache`] maps keys to values computed on demand by a closure. Concurrent requests for
//! one key are coalesced: one thread computes, the others wait for its result and share it.
//! Values are cloned out on every hit, so store `Arc<T>` for big values.
//!
//! # Design
//!
//! Each map value is an `Arc<Slot>`: a per-key cell with a `Mutex` around its state (`Empty`,
//! `Running { owner: ThreadId }` or `Ready(value)`) and a `Condvar` on which waiters sleep. A
//! lookup clones the `Arc` out of the map and drops the DashMap shard guard at once; everything
//! after that happens on the slot. The thread that moves a slot from `Empty` to `Running` owns
//! it: it runs the closure with no lock held, stores `Ready`, and wakes the waiters.
//!
//! With a budget, every ready entry is charged `weigher(&key, &value) + ENTRY_OVERHEAD` bytes.
//! When a store takes the total over the budget, the least recently used ready entries (recency
//! is a global tick stamped on each slot at every hit and store) are evicted down to 90 % of the
//! budget; the entry just stored goes last, entries being computed are never evicted, and a
//! single value heavier than the whole budget is handed back but not kept.
//!
//! # Deadlock rules
//!
//! The closure may call the cache for other keys, and rayon (`join`, `par_iter`, ...), freely:
//!
//! - No DashMap guard (`Ref`, `RefMut`, `Entry`, iterator) is held while the closure or the
//!   weigher runs or while a thread waits; the weigher runs with no lock at all. Slot mutexes
//!   are held only briefly (to read or change the state, cloning a value) and a shard guard is
//!   never requested while one is held: the only nesting is a shard guard, then a slot mutex,
//!   inside the cache's own `remove_if` checks. User code that does run under a lock is limited
//!   to `Clone` of values (slot mutex) and `Hash`/`Eq`/`Clone` of keys (shard guard).
//! - Only threads that are not rayon workers ever wait for another thread's computation. A
//!   worker must not block: a worker computing `K` calls `join`, steals a task that asks for `K`
//!   and would block on a cell only it can fill; two workers can do that to each other through a
//!   cycle of steals. A worker that finds `K` running elsewhere computes the value itself (a
//!   *duplicate computation*, counted in [`CacheStats::duplicate_computations`]).
//! - A thread that asks for a key it is computing itself (the closure for `K` asks for `K`) gets
//!   a duplicate computation as well, instead of blocking on itself.
//!
//! "Compute once" therefore holds for callers off the pool; callers on the pool may compute a
//! key more than once when they race, and the first value stored wins. What no cache can
//! resolve is a real cycle between threads off the pool (the closure for `A` waits for `B` while
//! the closure for `B`, on another thread, waits for `A`), or a closure that blocks on another
//! thread asking for the same key: both wait forever.
//!
//! A panic or an `Err` in the closure puts the slot back to `Empty`; waiters wake and one of
//! them computes. A poisoned slot mutex is recovered, so the cache stays usable.

use std::fmt;
use std::hash::Hash;
use std::mem::size_of;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, ThreadId};

use dashmap::DashMap;

/// Bookkeeping bytes charged for every ready entry on top of what the weigher reports.
pub const ENTRY_OVERHEAD: usize = 64;

type Weigher<K, V> = Box<dyn Fn(&K, &V) -> usize + Send + Sync>;

enum State<V> {
    Empty,
    Running { owner: ThreadId },
    Ready(V),
}

struct Cell<V> {
    state: State<V>,
    /// Bytes charged to the cache for this slot: `Some` only while ready and in the map.
    charged: Option<usize>,
    /// Set once the slot has left the map; a detached slot is never charged again.
    detached: bool,
}

struct Slot<V> {
    cell: Mutex<Cell<V>>,
    changed: Condvar,
    tick: AtomicU64,
}

impl<V: Clone> Slot<V> {
    fn new(state: State<V>) -> Self {
        let cell = Cell {
            state,
            charged: None,
            detached: false,
        };
        Slot {
            cell: Mutex::new(cell),
            changed: Condvar::new(),
            tick: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Cell<V>> {
        self.cell.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn value(&self) -> Option<V> {
        match &self.lock().state {
            State::Ready(v) => Some(v.clone()),
            _ => None,
        }
    }

    fn is_charged(&self) -> bool {
        self.lock().charged.is_some()
    }
}

/// Counters of a [`MemoCache`], as returned by [`MemoCache::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered with a ready value.
    pub hits: u64,
    /// Lookups that found no ready value (each computation, [`MemoCache::get`] misses).
    pub misses: u64,
    /// Entries dropped to honour the budget, oversized values included.
    pub evictions: u64,
    /// Ready entries held now.
    pub entries: usize,
    /// Bytes charged for the ready entries now (weigher plus [`ENTRY_OVERHEAD`] each).
    pub bytes: usize,
    /// Highest `bytes` ever seen; may briefly exceed the budget before an eviction.
    pub peak_bytes: usize,
    /// Computations run because a rayon worker or a re-entrant call could not wait.
    pub duplicate_computations: u64,
}

impl CacheStats {
    /// Fraction of lookups that were hits: `hits / (hits + misses)`, 0.0 when there were none.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::memo::CacheStats;
    /// let s = CacheStats { hits: 3, misses: 1, ..CacheStats::default() };
    /// assert_eq!(s.hit_rate(), 0.75);
    /// assert_eq!(CacheStats::default().hit_rate(), 0.0);
    /// ```
    pub fn hit_rate(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

/// A concurrent compute-once memo cache; see the [module documentation](self) for the design.
pub struct MemoCache<K, V> {
    map: DashMap<K, Arc<Slot<V>>>,
    weigher: Option<Weigher<K, V>>,
    budget: Option<usize>,
    clock: AtomicU64,
    evicting: AtomicBool,
    evict_again: AtomicBool,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    duplicates: AtomicU64,
    entries: AtomicUsize,
    bytes: AtomicUsize,
    peak_bytes: AtomicUsize,
}

/// Resets the slot to `Empty` if the owner leaves without storing (panic or `Err`).
struct OwnerGuard<'a, K: Eq + Hash + Clone + Send + Sync, V: Clone + Send + Sync> {
    cache: &'a MemoCache<K, V>,
    key: &'a K,
    slot: &'a Arc<Slot<V>>,
    armed: bool,
}

impl<K: Eq + Hash + Clone + Send + Sync, V: Clone + Send + Sync> Drop for OwnerGuard<'_, K, V> {
    fn drop(&mut self) {
        if self.armed {
            self.cache.abandon(self.key, self.slot);
        }
    }
}

/// Clears the "an eviction pass is running" flag, even on unwind.
struct FlagReset<'a>(&'a AtomicBool);

impl Drop for FlagReset<'_> {
    fn drop(&mut self) {
        self.0.store(false, SeqCst);
    }
}

impl<K, V> MemoCache<K, V> {
    /// The memory budget in bytes, or `None` for an unbounded cache.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::memo::MemoCache;
    /// assert_eq!(MemoCache::<u32, u32>::new().budget(), None);
    /// assert_eq!(MemoCache::<u32, u32>::with_budget(4096).budget(), Some(4096));
    /// ```
    ///
    /// # Locking
    ///
    /// Takes no lock.
    pub fn budget(&self) -> Option<usize> {
        self.budget
    }

    /// A snapshot of the counters.
    ///
    /// Counters are read one by one with no lock, so under concurrent use they may be a few
    /// operations apart from each other.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::memo::MemoCache;
    /// let cache = MemoCache::<u32, u32>::new();
    /// cache.get_or_compute(1, || 10);
    /// cache.get_or_compute(1, || 10);
    /// let s = cache.stats();
    /// assert_eq!((s.hits, s.misses, s.entries), (1, 1, 1));
    /// ```
    ///
    /// # Locking
    ///
    /// Takes no lock; atomic loads only.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            evictions: self.evictions.load(Relaxed),
            entries: self.entries.load(SeqCst),
            bytes: self.bytes.load(SeqCst),
            peak_bytes: self.peak_bytes.load(SeqCst),
            duplicate_computations: self.duplicates.load(Relaxed),
        }
    }

    /// Number of entries holding a ready value (entries being computed are not counted).
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::memo::MemoCache;
    /// let cache = MemoCache::<u32, u32>::new();
    /// cache.insert(1, 1);
    /// assert_eq!(cache.len(), 1);
    /// ```
    ///
    /// # Locking
    ///
    /// Takes no lock; one atomic load.
    pub fn len(&self) -> usize {
        self.entries.load(SeqCst)
    }

    /// Whether no entry holds a ready value.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::memo::MemoCache;
    /// assert!(MemoCache::<u32, u32>::new().is_empty());
    /// ```
    ///
    /// # Locking
    ///
    /// Takes no lock; one atomic load.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Eq + Hash + Clone + Send + Sync, V: Clone + Send + Sync> MemoCache<K, V> {
    /// An unbounded cache whose entries weigh `size_of::<K>() + size_of::<V>()` bytes each (plus
    /// [`ENTRY_OVERHEAD`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::memo::MemoCache;
    /// let cache = MemoCache::<u32, String>::new();
    /// assert!(cache.is_empty() && cache.budget().is_none());
    /// ```
    ///
    /// # Locking
    ///
    /// Takes no lock.
    pub fn new() -> Self {
        MemoCache {
            map: DashMap::new(),
            weigher: None,
            budget: None,
            clock: AtomicU64::new(0),
            evicting: AtomicBool::new(false),
            evict_again: AtomicBool::new(false),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            entries: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            peak_bytes: AtomicUsize::new(0),
        }
    }

    /// A cache that keeps at most about `bytes` bytes of entries, evicting the least recently
    /// used ones beyond that. A budget of 0 keeps nothing (values are still computed).
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::memo::MemoCache;
    /// let cache = MemoCache::<u32, u32>::with_budget(0);
    /// assert_eq!(cache.get_or_compute(1, || 5), 5);
    /// assert!(cache.is_empty());
    /// ```
    ///
    /// # Locking
    ///
    /// Takes no lock.
    pub fn with_budget(bytes: usize) -> Self {
        MemoCache {
            budget: Some(bytes),
            ..Self::new()
        }
    }

    /// Replaces the weigher: `w(&key, &value)` is the size in bytes charged for an entry, to
    /// which [`ENTRY_OVERHEAD`] is added. It applies to values stored from now on.
    ///
    /// The weigher should be cheap and must not call this cache.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::memo::{MemoCache, ENTRY_OVERHEAD};
    /// let cache = MemoCache::<u32, Vec<u8>>::new().with_weigher(|_, v| v.len());
    /// cache.insert(1, vec![0; 100]);
    /// assert_eq!(cache.stats().bytes, 100 + ENTRY_OVERHEAD);
    /// ```
    ///
    /// # Locking
    ///
    /// Takes no lock here; the weigher itself is later called with no lock held.
    pub fn with_weigher(mut self, w: impl Fn(&K, &V) -> usize + Send + Sync + 'static) -> Self {
        self.weigher = Some(Box::new(w));
        self
    }

    /// Returns the value for `key`, computing it with `f` if no value is ready.
    ///
    /// If the value is ready it is a hit and a clone is returned. If the key is free, this
    /// thread marks it running, counts a miss, runs `f` with no lock held, stores the value,
    /// wakes the waiters and evicts if over budget. If another thread is computing the key:
    ///
    /// - off the rayon pool (`rayon::current_thread_index()` is `None`), this thread waits for
    ///   that result (a hit), or, if the computation panics or fails, tries to compute itself;
    /// - on a rayon worker it does not wait (that can deadlock the pool): it runs `f` itself,
    ///   counts a miss and a duplicate computation, stores its value only if none is ready yet,
    ///   and returns its own value.
    ///
    /// A call for a key that this same thread is already computing (`f` for `K` asks for `K`,
    /// a recursion bug) likewise runs `f` in place as a duplicate instead of blocking.
    ///
    /// Guarantee: callers off the rayon pool never run `f` for a key that is being computed or
    /// is ready; they share the one result ("compute once"). The exceptions are exactly the
    /// deadlock-avoiding ones: a rayon worker racing another computation of the key runs its own
    /// `f` (at most once per such call), and so does a same-thread re-entry. A key is computed
    /// anew after its computation panicked or failed, or after it was removed or evicted. A
    /// computing thread returns the value it computed; everyone else gets the stored one.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::memo::MemoCache;
    /// fn fib(cache: &MemoCache<u32, u64>, n: u32) -> u64 {
    ///     cache.get_or_compute(n, || if n < 2 { n as u64 } else { fib(cache, n - 1) + fib(cache, n - 2) })
    /// }
    /// let cache = MemoCache::new();
    /// assert_eq!(fib(&cache, 80), 23_416_728_348_467_685);
    /// assert_eq!(cache.stats().misses, 81);
    /// ```
    ///
    /// # Panics
    ///
    /// A panic in `f` or in the weigher is propagated to the caller after the key has been put
    /// back to free (waiters wake and one of them computes).
    ///
    /// # Locking
    ///
    /// Takes a DashMap shard guard only to clone the key's slot out, then the slot's mutex briefly;
    /// runs `f` and the weigher with no lock held, so `f` may use the cache and rayon. Waits on the
    /// slot's condition variable only off the rayon pool.
    pub fn get_or_compute(&self, key: K, f: impl FnOnce() -> V) -> V {
        match self.try_get_or_compute(key, || Ok::<V, std::convert::Infallible>(f())) {
            Ok(v) => v,
            Err(never) => match never {},
        }
    }

    /// Like [`get_or_compute`](Self::get_or_compute) for a fallible `f`: an error is returned
    /// to this caller and not cached.
    ///
    /// On `Err` the key goes back to free: threads waiting for it wake and one of them runs its
    /// own closure. A later call computes again.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::memo::MemoCache;
    /// let cache = MemoCache::<u32, u32>::new();
    /// assert_eq!(cache.try_get_or_compute(1, || Err::<u32, _>("io")), Err("io"));
    /// assert!(!cache.contains_key(&1));
    /// assert_eq!(cache.try_get_or_compute(1, || Ok::<_, &str>(7)), Ok(7));
    /// ```
    ///
    /// # Panics
    ///
    /// As [`get_or_compute`](Self::get_or_compute): panics in `f` or the weigher propagate.
    ///
    /// # Locking
    ///
    /// As [`get_or_compute`](Self::get_or_compute): no shard guard is held while `f` runs or while
    /// waiting, and waiting happens only off the rayon pool.
    pub fn try_get_or_compute<E>(&self, key: K, f: impl FnOnce() -> Result<V, E>) -> Result<V, E> {
        let me = thread::current().id();
        loop {
            let slot = self.slot_for(&key);
            let mut cell = slot.lock();
            loop {
                match &cell.state {
                    State::Ready(v) => {
                        let v = v.clone();
                        drop(cell);
                        self.touch(&slot);
                        self.hits.fetch_add(1, Relaxed);
                        return Ok(v);
                    }
                    // The slot left the map while free: start again from the map.
                    State::Empty if cell.detached => break,
                    State::Empty => {
                        cell.state = State::Running { owner: me };
                        drop(cell);
                        self.misses.fetch_add(1, Relaxed);
                        return self.compute(key, &slot, true, f);
                    }
                    State::Running { owner }
                        if *owner == me || rayon::current_thread_index().is_some() =>
                    {
                        drop(cell);
                        self.misses.fetch_add(1, Relaxed);
                        self.duplicates.fetch_add(1, Relaxed);
                        return self.compute(key, &slot, false, f);
                    }
                    State::Running { .. } => {
                        cell = slot
                            .changed
                            .wait(cell)
                            .unwrap_or_else(PoisonError::into_inner);
                    }
                }
            }
        }
    }

    /// The ready value for `key`, counting a hit (and refreshing its recency) or a miss.
    ///
    /// A key that is being computed is a miss; this never waits.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::memo::MemoCache;
    /// let cache = MemoCache::<u32, u32>::new();
    /// assert_eq!(cache.get(&1), None);
    /// cache.insert(1, 10);
    /// assert_eq!(cache.get(&1), Some(10));
    /// assert_eq!((cache.stats().hits, cache.stats().misses), (1, 1));
    /// ```
    ///
    /// # Locking
    ///
    /// A shard guard just long enough to clone the slot out, then the slot's mutex while cloning
    /// the value. Never waits.
    pub fn get(&self, key: &K) -> Option<V> {
        let found = self
            .lookup(key)
            .and_then(|slot| slot.value().map(|v| (v, slot)));
        match found {
            Some((v, slot)) => {
                self.touch(&slot);
                self.hits.fetch_add(1, Relaxed);
                Some(v)
            }
            None => {
                self.misses.fetch_add(1, Relaxed);
                None
            }
        }
    }

    /// The ready value for `key`, counting a hit and refreshing its recency when there is one,
    /// and counting nothing otherwise (for a caller that computes elsewhere on a miss and
    /// counts that miss there). Never waits.
    pub(crate) fn hit(&self, key: &K) -> Option<V> {
        let slot = self.lookup(key)?;
        let v = slot.value()?;
        self.touch(&slot);
        self.hits.fetch_add(1, Relaxed);
        Some(v)
    }

    /// The ready value for `key`, like [`get`](Self::get) but touching no counter and no
    /// recency.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::memo::MemoCache;
    /// let cache = MemoCache::<u32, u32>::new();
    /// cache.insert(1, 10);
    /// assert_eq!(cache.peek(&1), Some(10));
    /// assert_eq!(cache.peek(&2), None);
    /// assert_eq!(cache.stats().hits + cache.stats().misses, 0);
    /// ```
    ///
    /// # Locking
    ///
    /// As [`get`](Self::get). Never waits.
    pub fn peek(&self, key: &K) -> Option<V> {
        self.lookup(key).and_then(|slot| slot.value())
    }

    /// Stores `value` under `key`, replacing any previous value, then evicts if over budget.
    ///
    /// A computation of `key` in flight still hands its result to its own waiters, but that
    /// result is not kept. A value heavier than the whole budget is not kept either: the key
    /// is removed and an eviction counted.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::memo::MemoCache;
    /// let cache = MemoCache::<&str, u32>::new();
    /// cache.insert("a", 1);
    /// cache.insert("a", 2);
    /// assert_eq!((cache.get(&"a"), cache.len()), (Some(2), 1));
    /// ```
    ///
    /// # Panics
    ///
    /// If the weigher panics; the cache is left unchanged.
    ///
    /// # Locking
    ///
    /// Calls the weigher with no lock held; a shard write guard for the insertion itself; slot
    /// mutexes briefly afterwards. Never waits.
    pub fn insert(&self, key: K, value: V) {
        let weight = self.weigh(&key, &value);
        if self.budget.is_some_and(|b| weight > b) {
            if let Some((_, old)) = self.map.remove(&key) {
                self.detach(&old);
            }
            self.evictions.fetch_add(1, Relaxed);
            return;
        }
        let slot = Arc::new(Slot::new(State::Ready(value)));
        self.touch(&slot);
        if let Some(old) = self.map.insert(key, Arc::clone(&slot)) {
            self.detach(&old);
        }
        let charged = {
            let mut cell = slot.lock();
            let fresh = !cell.detached && cell.charged.is_none();
            if fresh {
                cell.charged = Some(weight);
                self.charge(weight);
            }
            fresh
        };
        if charged {
            self.evict_if_needed(&slot);
        }
    }

    /// Removes `key`, returning its ready value if it had one.
    ///
    /// A computation of `key` in flight is cut loose: it still serves its waiters, but its
    /// value is not kept. Removal is not counted as an eviction.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::memo::MemoCache;
    /// let cache = MemoCache::<u32, u32>::new();
    /// cache.insert(1, 10);
    /// assert_eq!(cache.remove(&1), Some(10));
    /// assert_eq!(cache.remove(&1), None);
    /// ```
    ///
    /// # Locking
    ///
    /// A shard write guard for the removal, then the slot's mutex. Never waits.
    pub fn remove(&self, key: &K) -> Option<V> {
        let (_, slot) = self.map.remove(key)?;
        self.detach(&slot);
        slot.value()
    }

    /// Whether `key` has a ready value; counts nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::memo::MemoCache;
    /// let cache = MemoCache::<u32, u32>::new();
    /// cache.get_or_compute(3, || 9);
    /// assert!(cache.contains_key(&3) && !cache.contains_key(&4));
    /// ```
    ///
    /// # Locking
    ///
    /// As [`peek`](Self::peek). Never waits.
    pub fn contains_key(&self, key: &K) -> bool {
        self.lookup(key)
            .is_some_and(|slot| matches!(slot.lock().state, State::Ready(_)))
    }

    /// A snapshot of the keys that have ready values, in no particular order.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::memo::MemoCache;
    /// let cache = MemoCache::<u32, u32>::new();
    /// cache.insert(2, 0);
    /// cache.insert(1, 0);
    /// let mut keys = cache.keys();
    /// keys.sort();
    /// assert_eq!(keys, [1, 2]);
    /// ```
    ///
    /// # Locking
    ///
    /// Iterates the map under shard read guards, cloning keys and slots; checks the slots after the
    /// iteration is dropped. Never waits.
    pub fn keys(&self) -> Vec<K> {
        let all = self.snapshot();
        all.into_iter()
            .filter(|(_, slot)| matches!(slot.lock().state, State::Ready(_)))
            .map(|(k, _)| k)
            .collect()
    }

    /// Removes every entry. Counters are kept (except `entries` and `bytes`, which drop to 0
    /// unless other threads store concurrently); computations in flight serve their waiters
    /// but are not kept.
    ///
    /// # Examples
    ///
    /// ```
    /// use parkit::memo::MemoCache;
    /// let cache = MemoCache::<u32, u32>::new();
    /// cache.insert(1, 1);
    /// cache.clear();
    /// assert!(cache.is_empty());
    /// assert_eq!(cache.stats().bytes, 0);
    /// ```
    ///
    /// # Locking
    ///
    /// A snapshot under shard read guards, then one shard write guard per removal, then the slot's
    /// mutex. Never waits.
    pub fn clear(&self) {
        for (key, slot) in self.snapshot() {
            if self
                .map
                .remove_if(&key, |_, cur| Arc::ptr_eq(cur, &slot))
                .is_some()
            {
                self.detach(&slot);
            }
        }
    }

    // ---- internals ----

    fn lookup(&self, key: &K) -> Option<Arc<Slot<V>>> {
        self.map.get(key).map(|r| Arc::clone(r.value()))
    }

    fn slot_for(&self, key: &K) -> Arc<Slot<V>> {
        if let Some(slot) = self.lookup(key) {
            return slot;
        }
        let entry = self
            .map
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Slot::new(State::Empty)));
        Arc::clone(entry.value())
    }

    fn snapshot(&self) -> Vec<(K, Arc<Slot<V>>)> {
        self.map
            .iter()
            .map(|e| (e.key().clone(), Arc::clone(e.value())))
            .collect()
    }

    fn weigh(&self, key: &K, value: &V) -> usize {
        let w = self
            .weigher
            .as_ref()
            .map_or(size_of::<K>() + size_of::<V>(), |w| w(key, value));
        w.saturating_add(ENTRY_OVERHEAD)
    }

    fn touch(&self, slot: &Slot<V>) {
        slot.tick
            .store(self.clock.fetch_add(1, Relaxed) + 1, Relaxed);
    }

    fn charge(&self, weight: usize) {
        let now = self.bytes.fetch_add(weight, SeqCst) + weight;
        self.peak_bytes.fetch_max(now, SeqCst);
        self.entries.fetch_add(1, SeqCst);
    }

    /// Marks a slot that has left the map and refunds its charge; true if it was charged.
    fn detach(&self, slot: &Slot<V>) -> bool {
        let mut cell = slot.lock();
        cell.detached = true;
        let Some(weight) = cell.charged.take() else {
            return false;
        };
        self.bytes.fetch_sub(weight, SeqCst);
        self.entries.fetch_sub(1, SeqCst);
        true
    }

    /// Runs `f` for `key` and stores its value: as the slot's owner (the guard frees the slot
    /// if `f` or the weigher fails) or as a duplicate (nothing to undo).
    fn compute<E>(
        &self,
        key: K,
        slot: &Arc<Slot<V>>,
        owner: bool,
        f: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E> {
        let mut guard = OwnerGuard {
            cache: self,
            key: &key,
            slot,
            armed: owner,
        };
        let value = f()?;
        let weight = self.weigh(&key, &value);
        self.store(&key, slot, &value, weight);
        guard.armed = false;
        Ok(value)
    }

    /// Stores a computed value unless one is ready already, wakes waiters, evicts if needed.
    fn store(&self, key: &K, slot: &Arc<Slot<V>>, value: &V, weight: usize) {
        let oversized = self.budget.is_some_and(|b| weight > b);
        let (attached, charged) = {
            let mut cell = slot.lock();
            if matches!(cell.state, State::Ready(_)) {
                return;
            }
            cell.state = State::Ready(value.clone());
            let attached = !cell.detached;
            if oversized {
                cell.detached = true;
            } else if attached {
                cell.charged = Some(weight);
                self.charge(weight);
            }
            (attached, attached && !oversized)
        };
        self.touch(slot);
        slot.changed.notify_all();
        if oversized && attached {
            self.map.remove_if(key, |_, cur| Arc::ptr_eq(cur, slot));
            self.evictions.fetch_add(1, Relaxed);
        } else if charged {
            self.evict_if_needed(slot);
        }
    }

    /// The owner left without a value: free the slot, drop it from the map, wake waiters.
    fn abandon(&self, key: &K, slot: &Arc<Slot<V>>) {
        let me = thread::current().id();
        {
            let mut cell = slot.lock();
            if !matches!(cell.state, State::Running { owner } if owner == me) {
                return;
            }
            cell.state = State::Empty;
        }
        self.map.remove_if(key, |_, cur| {
            Arc::ptr_eq(cur, slot) && {
                let mut cell = cur.lock();
                let free = matches!(cell.state, State::Empty);
                cell.detached |= free;
                free
            }
        });
        slot.changed.notify_all();
    }

    fn evict_if_needed(&self, protect: &Arc<Slot<V>>) {
        let Some(budget) = self.budget else { return };
        // One pass at a time. A thread that finds a pass running leaves a note and goes; the
        // running thread reads the note only after releasing the flag, and the noting thread
        // rechecks the flag after writing it, so an over-budget store is never left unhandled.
        while self.bytes.load(SeqCst) > budget {
            if self.evicting.swap(true, SeqCst) {
                self.evict_again.store(true, SeqCst);
                if self.evicting.load(SeqCst) {
                    return;
                }
                continue;
            }
            self.evict_again.store(false, SeqCst);
            let evicted = {
                let _reset = FlagReset(&self.evicting);
                self.evict_pass(budget - budget / 10, protect)
            };
            if evicted == 0 && !self.evict_again.load(SeqCst) {
                return;
            }
        }
    }

    /// Evicts ready entries, least recently used first and `protect` last, until `bytes` is at
    /// most `target`. Returns how many were evicted.
    fn evict_pass(&self, target: usize, protect: &Arc<Slot<V>>) -> usize {
        let mut candidates: Vec<(bool, u64, K, Arc<Slot<V>>)> = self
            .snapshot()
            .into_iter()
            .map(|(k, s)| (Arc::ptr_eq(&s, protect), s.tick.load(Relaxed), k, s))
            .collect();
        candidates.sort_unstable_by_key(|c| (c.0, c.1));
        let mut evicted = 0;
        for (_, _, key, slot) in candidates {
            if self.bytes.load(SeqCst) <= target {
                break;
            }
            let removed = self
                .map
                .remove_if(&key, |_, cur| Arc::ptr_eq(cur, &slot) && slot.is_charged());
            if removed.is_some() && self.detach(&slot) {
                self.evictions.fetch_add(1, Relaxed);
                evicted += 1;
            }
        }
        evicted
    }
}

impl<K: Eq + Hash + Clone + Send + Sync, V: Clone + Send + Sync> Default for MemoCache<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> fmt::Debug for MemoCache<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoCache")
            .field("budget", &self.budget)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::{Barrier, mpsc};
    use std::time::Duration;

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    #[test]
    fn same_key_many_threads_computes_once() {
        let cache = MemoCache::<u32, u64>::new();
        let calls = AtomicUsize::new(0);
        let barrier = Barrier::new(8);
        thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        cache.get_or_compute(7, || {
                            calls.fetch_add(1, SeqCst);
                            thread::sleep(Duration::from_millis(20));
                            42
                        })
                    })
                })
                .collect();
            for h in handles {
                assert_eq!(h.join().unwrap(), 42);
            }
        });
        assert_eq!(calls.load(SeqCst), 1);
        let s = cache.stats();
        assert_eq!(
            (s.misses, s.hits, s.duplicate_computations, s.entries),
            (1, 7, 0, 1)
        );
    }

    #[test]
    fn many_keys_many_threads() {
        let cache = MemoCache::<u64, u64>::new();
        let calls = AtomicUsize::new(0);
        let (threads, rounds, keys) = (8u64, 600u64, 97u64);
        thread::scope(|s| {
            for t in 0..threads {
                let (cache, calls) = (&cache, &calls);
                s.spawn(move || {
                    let mut x = t * 7919 + 1;
                    for _ in 0..rounds {
                        x = x
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let k = (x >> 33) % keys;
                        let v = cache.get_or_compute(k, || {
                            calls.fetch_add(1, SeqCst);
                            k * k + 1
                        });
                        assert_eq!(v, k * k + 1);
                    }
                });
            }
        });
        let s = cache.stats();
        let distinct = cache.keys().len();
        assert_eq!(calls.load(SeqCst), distinct);
        assert_eq!(s.misses, distinct as u64);
        assert_eq!(s.hits + s.misses, threads * rounds);
        assert_eq!(s.duplicate_computations, 0);
    }

    /// tri(k) = sum over i <= k of i(i+1)/2, computed with join, par_iter and nested lookups.
    fn tri(cache: &MemoCache<u64, u64>, k: u64) -> u64 {
        cache.get_or_compute(k, || {
            let (own, below) = rayon::join(
                || (0..=k).into_par_iter().sum::<u64>(),
                || if k == 0 { 0 } else { tri(cache, k - 1) },
            );
            own + below
        })
    }

    #[test]
    fn rayon_inside_compute_inside_pool_does_not_deadlock() {
        let expected: Vec<u64> = (0..=40u64)
            .scan(0, |acc, k| {
                *acc += k * (k + 1) / 2;
                Some(*acc)
            })
            .collect();
        for threads in [2, 4] {
            let cache = MemoCache::new();
            let got: Vec<u64> = pool(threads).install(|| {
                (0..600u64)
                    .into_par_iter()
                    .map(|i| tri(&cache, i % 41))
                    .collect()
            });
            for (i, v) in got.iter().enumerate() {
                assert_eq!(*v, expected[i % 41]);
            }
            assert_eq!(cache.len(), 41);
        }
    }

    fn fib(cache: &MemoCache<u32, u128>, n: u32) -> u128 {
        cache.get_or_compute(n, || {
            if n < 2 {
                n as u128
            } else {
                fib(cache, n - 1) + fib(cache, n - 2)
            }
        })
    }

    fn fib_iter(n: u32) -> u128 {
        (0..n).fold((0u128, 1u128), |(a, b), _| (b, a + b)).0
    }

    #[test]
    fn nested_fibonacci_from_pool_and_threads() {
        let cache = MemoCache::new();
        let got: Vec<u128> = pool(4).install(|| {
            (0..151u32)
                .into_par_iter()
                .rev()
                .map(|n| fib(&cache, n))
                .collect()
        });
        for (n, v) in (0..=150u32).rev().zip(got) {
            assert_eq!(v, fib_iter(n));
        }

        let cache = MemoCache::new();
        thread::scope(|s| {
            for t in 0..4u32 {
                let cache = &cache;
                s.spawn(move || assert_eq!(fib(cache, 150 - 13 * t), fib_iter(150 - 13 * t)));
            }
        });
        assert_eq!(fib(&cache, 150), fib_iter(150));
        let s = cache.stats();
        assert_eq!((s.misses, s.duplicate_computations), (151, 0));
    }

    #[test]
    fn same_thread_reentry_does_not_deadlock() {
        let cache = MemoCache::<u32, u32>::new();
        assert_eq!(
            cache.get_or_compute(1, || cache.get_or_compute(1, || 10) + 1),
            11
        );
        assert_eq!(cache.get(&1), Some(10), "the first stored value wins");
        assert_eq!(cache.stats().duplicate_computations, 1);

        let cache = MemoCache::<u32, u32>::new();
        let v = pool(2).install(|| cache.get_or_compute(2, || cache.get_or_compute(2, || 20) + 1));
        assert_eq!(v, 21);
    }

    #[test]
    fn panic_in_compute_frees_the_key_and_wakes_waiters() {
        let cache = MemoCache::<u32, u32>::new();
        let r = catch_unwind(AssertUnwindSafe(|| {
            cache.get_or_compute(1, || panic!("boom"))
        }));
        assert!(r.is_err());
        assert_eq!(cache.peek(&1), None);
        assert_eq!(cache.get_or_compute(1, || 5), 5);
        assert_eq!(cache.len(), 1);

        let ran = AtomicBool::new(false);
        let (tx, rx) = mpsc::channel();
        thread::scope(|s| {
            let owner = s.spawn(|| {
                catch_unwind(AssertUnwindSafe(|| {
                    cache.get_or_compute(7, || {
                        tx.send(()).unwrap();
                        thread::sleep(Duration::from_millis(60));
                        panic!("owner fails")
                    })
                }))
                .is_err()
            });
            rx.recv().unwrap();
            let waiter = s.spawn(|| {
                cache.get_or_compute(7, || {
                    ran.store(true, SeqCst);
                    99
                })
            });
            assert!(owner.join().unwrap());
            assert_eq!(waiter.join().unwrap(), 99);
        });
        assert!(
            ran.load(SeqCst),
            "the waiter computed after the owner panicked"
        );
        assert_eq!(cache.get(&7), Some(99));
    }

    #[test]
    fn errors_are_not_cached_and_waiters_retry() {
        let cache = MemoCache::<u32, u32>::new();
        assert_eq!(
            cache.try_get_or_compute(1, || Err::<u32, _>("no")),
            Err("no")
        );
        assert!(!cache.contains_key(&1) && cache.is_empty());
        assert_eq!(cache.try_get_or_compute(1, || Ok::<_, &str>(3)), Ok(3));
        assert_eq!(cache.try_get_or_compute(1, || Err("unused")), Ok(3));

        let (tx, rx) = mpsc::channel();
        thread::scope(|s| {
            let owner = s.spawn(|| {
                cache.try_get_or_compute(2, || {
                    tx.send(()).unwrap();
                    thread::sleep(Duration::from_millis(40));
                    Err("first fails")
                })
            });
            rx.recv().unwrap();
            let waiter = s.spawn(|| cache.try_get_or_compute(2, || Ok::<_, &str>(22)));
            assert_eq!(owner.join().unwrap(), Err("first fails"));
            assert_eq!(waiter.join().unwrap(), Ok(22));
        });
        assert_eq!(cache.peek(&2), Some(22));
    }

    #[derive(Debug)]
    struct Grenade(Arc<AtomicBool>);

    impl Clone for Grenade {
        fn clone(&self) -> Self {
            assert!(!self.0.load(SeqCst), "clone exploded");
            Grenade(Arc::clone(&self.0))
        }
    }

    #[test]
    fn poisoned_slot_is_recovered() {
        let armed = Arc::new(AtomicBool::new(true));
        let cache = MemoCache::<u32, Grenade>::new();
        cache.insert(1, Grenade(Arc::clone(&armed)));
        assert!(catch_unwind(AssertUnwindSafe(|| cache.get(&1))).is_err());
        armed.store(false, SeqCst);
        assert!(cache.get(&1).is_some());
        assert!(cache.contains_key(&1));
    }

    #[test]
    fn budget_evicts_lru_and_drops_oversized() {
        let budget = 1000;
        let cache = MemoCache::<u32, Vec<u8>>::with_budget(budget).with_weigher(|_, v| v.len());
        let per = 100 + ENTRY_OVERHEAD;
        for i in 0..20 {
            cache.insert(i, vec![0; 100]);
            assert!(cache.get(&0).is_some(), "the recently used entry survives");
            let s = cache.stats();
            assert!(s.bytes <= budget && s.peak_bytes >= s.bytes);
            assert_eq!(s.bytes, s.entries * per);
        }
        let s = cache.stats();
        assert!(s.evictions >= 14 && s.peak_bytes > budget);
        assert!(cache.contains_key(&19) && !cache.contains_key(&1));
        assert_eq!(s.evictions as usize + s.entries, 20);

        let big = cache.get_or_compute(100, || vec![1; 5000]);
        assert_eq!(big.len(), 5000);
        cache.insert(101, vec![1; 5000]);
        assert!(!cache.contains_key(&100) && !cache.contains_key(&101));
        let after = cache.stats();
        assert_eq!(
            (after.evictions, after.entries, after.bytes),
            (s.evictions + 2, s.entries, s.bytes)
        );

        let computed = cache.get_or_compute(200, || vec![2; 100]);
        assert_eq!(computed.len(), 100);
        assert!(cache.contains_key(&200) && cache.stats().bytes <= budget);
    }

    #[test]
    fn running_entries_are_not_evicted() {
        let cache = MemoCache::<u32, Vec<u8>>::with_budget(600).with_weigher(|_, v| v.len());
        let (started_tx, started_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        thread::scope(|s| {
            let cache = &cache;
            let owner = s.spawn(move || {
                cache.get_or_compute(500, || {
                    started_tx.send(()).unwrap();
                    go_rx.recv().unwrap();
                    vec![5; 10]
                })
            });
            started_rx.recv().unwrap();
            for i in 0..30 {
                cache.insert(i, vec![0; 100]);
            }
            assert!(cache.stats().evictions > 0);
            go_tx.send(()).unwrap();
            assert_eq!(owner.join().unwrap(), vec![5; 10]);
        });
        assert_eq!(cache.peek(&500), Some(vec![5; 10]));
        assert!(cache.stats().bytes <= 600);
    }

    #[test]
    fn stats_keys_remove_and_clear() {
        let cache = MemoCache::<u32, u64>::default();
        assert_eq!(cache.get(&1), None);
        assert_eq!(cache.get_or_compute(1, || 10), 10);
        assert_eq!(cache.get(&1), Some(10));
        assert_eq!(cache.peek(&1), Some(10));
        assert_eq!(cache.get_or_compute(1, || unreachable!()), 10);
        let s = cache.stats();
        assert_eq!((s.hits, s.misses), (2, 2));
        assert_eq!(s.hit_rate(), 0.5);
        assert_eq!(
            s.bytes,
            size_of::<u32>() + size_of::<u64>() + ENTRY_OVERHEAD
        );

        cache.insert(2, 20);
        cache.insert(3, 30);
        let mut keys = cache.keys();
        keys.sort_unstable();
        assert_eq!(keys, [1, 2, 3]);
        assert_eq!(cache.remove(&2), Some(20));
        assert_eq!(cache.len(), 2);
        assert!(format!("{cache:?}").contains("hits: 2"));

        cache.clear();
        let s = cache.stats();
        assert!(cache.is_empty() && cache.keys().is_empty());
        assert_eq!((s.bytes, s.entries, s.hits), (0, 0, 2));
        assert!(s.peak_bytes > 0);
    }
}
