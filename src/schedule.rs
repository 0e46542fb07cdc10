//! Processing and mapping: putting tasks of known (estimated) cost onto workers so none idles.
//!
//! The book's last design step, in four tools:
//!
//! - **Dynamic, largest first** ([`par_map_largest_first`]): every worker takes the most
//!   expensive task still waiting. Long tasks start at once and short ones fill the gaps at the
//!   end, so the finish is even (greedy list scheduling on sorted costs: within 4/3 of the
//!   optimal finish when the costs are exact).
//! - **Static, balanced groups** ([`partition_lpt`]): tasks split into `k` groups of about equal
//!   total cost (LPT: longest processing time first, each to the least-loaded group), for
//!   mapping onto `k` machines or threads once, up front.
//! - **Affinity** ([`partition_by_key`]): tasks that share data (same key) stay in one group, so
//!   the shared data is loaded once; groups are still balanced by LPT over the bundles.
//! - **Contiguous** ([`split_contiguous`]): a sequence cut into ranges of about equal cost,
//!   for when neighbours share work and order must be kept.
//!
//! Costs are `f64` in any unit (estimated nanoseconds, items, bytes): only ratios matter. For
//! F(n), num-bigint's cost grows about as n^1.47; the Fibonacci batch planner uses
//! [`par_map_largest_first`] with its own cost model.
//!
//! These tools take no [`Granularity`](crate::granularity::Granularity): each task is one unit
//! of scheduling, handed out or placed whole, so the caller sets the grain by what it calls a
//! task, and the partitions take the number of groups or parts to make.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Indices of `costs` ordered by decreasing cost; equal costs keep input order.
///
/// # Examples
///
/// ```
/// use parkit::schedule::largest_first;
///
/// assert_eq!(largest_first(&[1.0, 5.0, 3.0, 5.0]), [1, 3, 2, 0]);
/// ```
#[must_use]
pub fn largest_first(costs: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..costs.len()).collect();
    order.sort_by(|&a, &b| costs[b].total_cmp(&costs[a]));
    order
}

/// Tasks split into groups: which task goes where, and each group's total cost.
///
/// # Examples
///
/// ```
/// use parkit::schedule::partition_lpt;
///
/// let p = partition_lpt(&[3.0, 3.0, 2.0, 2.0, 2.0], 2);
/// assert_eq!(p.groups().len(), 2);
/// // LPT gives {3, 2, 2} and {3, 2}: 7, where {3, 3} and {2, 2, 2} would give 6.
/// // That is the price of a greedy rule: never worse than 4/3 of the best.
/// assert_eq!(p.makespan(), 7.0);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Partition {
    groups: Vec<Vec<usize>>,
    loads: Vec<f64>,
}

impl Partition {
    /// Task indices of each group, largest task first within a group.
    ///
    /// # Examples
    ///
    /// ```
    /// let p = parkit::schedule::partition_lpt(&[1.0, 4.0], 2);
    /// assert_eq!(p.groups(), [vec![1], vec![0]]);
    /// ```
    #[must_use]
    pub fn groups(&self) -> &[Vec<usize>] {
        &self.groups
    }

    /// Total cost of each group, in the order of [`Partition::groups`].
    ///
    /// # Examples
    ///
    /// ```
    /// let p = parkit::schedule::partition_lpt(&[1.0, 4.0, 2.0], 2);
    /// assert_eq!(p.loads(), [4.0, 3.0]);
    /// ```
    #[must_use]
    pub fn loads(&self) -> &[f64] {
        &self.loads
    }

    /// The largest group load: the time to finish when groups run side by side.
    ///
    /// # Examples
    ///
    /// ```
    /// let p = parkit::schedule::partition_lpt(&[5.0, 1.0, 1.0], 2);
    /// assert_eq!(p.makespan(), 5.0);
    /// ```
    #[must_use]
    pub fn makespan(&self) -> f64 {
        self.loads.iter().copied().fold(0.0, f64::max)
    }

    /// Makespan over the mean load: 1.0 is a perfect balance.
    ///
    /// # Examples
    ///
    /// ```
    /// let p = parkit::schedule::partition_lpt(&[2.0, 2.0, 2.0, 2.0], 2);
    /// assert_eq!(p.imbalance(), 1.0);
    /// ```
    #[must_use]
    pub fn imbalance(&self) -> f64 {
        let total: f64 = self.loads.iter().sum();
        if total <= 0.0 {
            return 1.0;
        }
        self.makespan() / (total / self.loads.len() as f64)
    }
}

/// LPT over bundles: each bundle (a list of task indices with a total cost) goes, largest
/// first, to the group with the smallest load so far.
fn lpt(bundles: Vec<(f64, Vec<usize>)>, k: usize) -> Partition {
    let k = k.max(1);
    let mut bundles = bundles;
    bundles.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut groups = vec![Vec::new(); k];
    let mut loads = vec![0.0f64; k];
    for (cost, tasks) in bundles {
        let (g, _) = loads
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1).then(a.0.cmp(&b.0)))
            .expect("k >= 1");
        loads[g] += cost;
        groups[g].extend(tasks);
    }
    Partition { groups, loads }
}

/// Splits tasks with the given costs into `k` groups of about equal total cost (LPT).
///
/// The result is within 4/3 of the best possible makespan. `k = 0` is treated as 1.
///
/// # Examples
///
/// ```
/// use parkit::schedule::partition_lpt;
///
/// let costs = [7.0, 5.0, 4.0, 3.0, 3.0, 2.0];
/// let p = partition_lpt(&costs, 3);
/// assert_eq!(p.loads().iter().sum::<f64>(), 24.0);
/// assert!(p.makespan() <= 9.0);
/// ```
#[must_use]
pub fn partition_lpt(costs: &[f64], k: usize) -> Partition {
    lpt(
        costs
            .iter()
            .enumerate()
            .map(|(i, &c)| (c, vec![i]))
            .collect(),
        k,
    )
}

/// Like [`partition_lpt`], but tasks with equal `key` always land in the same group (they share
/// data that should be loaded once); bundles of equal keys are balanced by LPT.
///
/// # Examples
///
/// ```
/// use parkit::schedule::partition_by_key;
///
/// // (file, cost): the two tasks on "a" stay together.
/// let tasks = [("a", 4.0), ("b", 3.0), ("a", 1.0), ("c", 3.0)];
/// let p = partition_by_key(&tasks, |t| t.0, |t| t.1, 2);
/// let group_of = |i: usize| p.groups().iter().position(|g| g.contains(&i)).unwrap();
/// assert_eq!(group_of(0), group_of(2));
/// assert_eq!(p.makespan(), 6.0);
/// ```
#[must_use]
pub fn partition_by_key<T, K: Hash + Eq>(
    tasks: &[T],
    key: impl Fn(&T) -> K,
    cost: impl Fn(&T) -> f64,
    k: usize,
) -> Partition {
    let mut bundles: Vec<(f64, Vec<usize>)> = Vec::new();
    let mut index: HashMap<K, usize> = HashMap::new();
    for (i, t) in tasks.iter().enumerate() {
        let b = *index.entry(key(t)).or_insert_with(|| {
            bundles.push((0.0, Vec::new()));
            bundles.len() - 1
        });
        bundles[b].0 += cost(t);
        bundles[b].1.push(i);
    }
    lpt(bundles, k)
}

/// Splits a sequence of tasks into at most `parts` contiguous, non-empty ranges of about equal
/// total cost: the cut for part `j` is the item boundary nearest to `j/parts` of the total.
///
/// Use it where order matters and neighbours share work, so tasks cannot be scattered the way
/// [`partition_lpt`] scatters them: `fibo submit` cuts its inputs this way, because a worker
/// reaches consecutive F(n) by additions but scattered ones need a fresh start each. Each part
/// costs at most `total / parts` plus the largest single cost. Negative or NaN costs count as
/// zero; when every cost is zero, parts are cut by count.
///
/// # Examples
///
/// ```
/// use parkit::schedule::split_contiguous;
///
/// // One expensive task at the end gets a part of its own.
/// let costs = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 6.0];
/// assert_eq!(split_contiguous(&costs, 2), [0..6, 6..7]);
/// // Never more parts than tasks, never an empty part.
/// assert_eq!(split_contiguous(&[1.0, 1.0], 5), [0..1, 1..2]);
/// assert!(split_contiguous(&[], 3).is_empty());
/// ```
#[must_use]
pub fn split_contiguous(costs: &[f64], parts: usize) -> Vec<std::ops::Range<usize>> {
    let n = costs.len();
    if n == 0 {
        return Vec::new();
    }
    let parts = parts.clamp(1, n);
    let total: f64 = costs.iter().map(|c| c.max(0.0)).sum();
    let cost = |i: usize| {
        if total > 0.0 { costs[i].max(0.0) } else { 1.0 }
    };
    let total = if total > 0.0 { total } else { n as f64 };
    let mut bounds = vec![0usize];
    let (mut i, mut acc) = (0usize, 0.0f64);
    for j in 1..parts {
        let target = total * j as f64 / parts as f64;
        // Leave at least one task for this part and for each part after it.
        let lo = bounds[bounds.len() - 1] + 1;
        let hi = n - (parts - j);
        // Cut before task i once the middle of task i lies past the target.
        while i < hi && (i < lo || acc + cost(i) / 2.0 < target) {
            acc += cost(i);
            i += 1;
        }
        bounds.push(i);
    }
    bounds.push(n);
    bounds.windows(2).map(|w| w[0]..w[1]).collect()
}

/// Runs `f` on every task on the current rayon pool, most expensive first, each worker taking
/// the next most expensive task as it frees up; results in input order.
///
/// Unlike a plain `par_iter`, which cuts the index range in halves, this starts the longest
/// tasks at once on every thread and leaves the short ones for the end, so no thread is left
/// alone with a long task while the others idle. `f` may itself use rayon.
///
/// # Examples
///
/// ```
/// use parkit::schedule::par_map_largest_first;
///
/// let sizes = [10u64, 1_000, 10, 100_000];
/// let sums = par_map_largest_first(&sizes, |&n| n as f64, |&n| (0..n).sum::<u64>());
/// assert_eq!(sums, [45, 499_500, 45, 4_999_950_000]);
/// ```
///
/// # Panics
///
/// A panic in `f` propagates to the caller once the running tasks end, as with `rayon::scope`.
///
/// # Locking
///
/// Blocks the calling thread until every task has run (a caller that is a worker of the pool
/// takes part in the work meanwhile, as in `rayon::scope`). Tasks are handed out through one
/// atomic counter; each worker takes a mutex once, at the end, to hand in its results.
pub fn par_map_largest_first<T, R, C, F>(tasks: &[T], cost: C, f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    C: Fn(&T) -> f64,
    F: Fn(&T) -> R + Sync,
{
    if tasks.len() <= 1 {
        return tasks.iter().map(&f).collect();
    }
    let costs: Vec<f64> = tasks.iter().map(cost).collect();
    let order = largest_first(&costs);
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<(usize, R)>> = Mutex::new(Vec::with_capacity(tasks.len()));
    let workers = rayon::current_num_threads().min(tasks.len()).max(1);
    rayon::scope(|s| {
        for _ in 0..workers {
            s.spawn(|_| {
                let mut mine = Vec::new();
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = order.get(k) else { break };
                    mine.push((i, f(&tasks[i])));
                }
                // One lock per worker, not per task.
                done.lock().unwrap_or_else(|e| e.into_inner()).extend(mine);
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lpt_is_within_four_thirds_of_a_lower_bound() {
        let costs: Vec<f64> = (1..=50).map(|i| ((i * 7919) % 97) as f64 + 1.0).collect();
        for k in 1..8 {
            let p = partition_lpt(&costs, k);
            let total: f64 = costs.iter().sum();
            let max = costs.iter().copied().fold(0.0, f64::max);
            let lower = (total / k as f64).max(max);
            assert!(p.makespan() <= lower * 4.0 / 3.0 + 1e-9, "k = {k}");
            let mut all: Vec<usize> = p.groups().iter().flatten().copied().collect();
            all.sort_unstable();
            assert_eq!(all, (0..costs.len()).collect::<Vec<_>>());
        }
    }

    #[test]
    fn largest_first_runs_every_task_once_in_input_order() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let calls = AtomicUsize::new(0);
        let tasks: Vec<u64> = (0..500).map(|i| (i * 37) % 101).collect();
        let out = pool.install(|| {
            par_map_largest_first(
                &tasks,
                |&t| t as f64,
                |&t| {
                    calls.fetch_add(1, Ordering::Relaxed);
                    t * 2
                },
            )
        });
        assert_eq!(out, tasks.iter().map(|t| t * 2).collect::<Vec<_>>());
        assert_eq!(calls.load(Ordering::Relaxed), tasks.len());
    }

    #[test]
    fn contiguous_parts_cover_every_task_once_and_balance() {
        let costs: Vec<f64> = (0..300).map(|i| f64::from((i * 7919) % 97 + 1)).collect();
        let max = costs.iter().copied().fold(0.0, f64::max);
        let total: f64 = costs.iter().sum();
        for parts in [1, 2, 3, 7, 64, 299, 300, 1000] {
            let r = split_contiguous(&costs, parts);
            assert_eq!(r.len(), parts.min(costs.len()), "parts = {parts}");
            assert_eq!(r[0].start, 0);
            assert_eq!(r[r.len() - 1].end, costs.len());
            for w in r.windows(2) {
                assert_eq!(w[0].end, w[1].start);
            }
            for p in &r {
                assert!(!p.is_empty());
                let load: f64 = costs[p.clone()].iter().sum();
                assert!(
                    load <= total / r.len() as f64 + max,
                    "parts = {parts}: {load}"
                );
            }
        }
        // Zero costs are cut by count.
        assert_eq!(split_contiguous(&[0.0; 6], 3), [0..2, 2..4, 4..6]);
        assert_eq!(split_contiguous(&[f64::NAN, 1.0, 1.0], 2), [0..2, 2..3]);
    }

    #[test]
    fn affinity_keeps_keys_together() {
        let tasks: Vec<(u32, f64)> = (0..40).map(|i| (i % 6, f64::from(i % 5 + 1))).collect();
        let p = partition_by_key(&tasks, |t| t.0, |t| t.1, 3);
        for key in 0..6 {
            let groups: std::collections::HashSet<usize> = (0..tasks.len())
                .filter(|&i| tasks[i].0 == key)
                .map(|i| p.groups().iter().position(|g| g.contains(&i)).unwrap())
                .collect();
            assert_eq!(groups.len(), 1, "key {key}");
        }
    }
}
