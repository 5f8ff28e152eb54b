//! Filling the sharded indexes of a new zone on several threads: shards are independent, so
//! each thread fills a disjoint range of them.
//!
//! A first pass hashes every item (on every thread, each over a run of consecutive inputs) and
//! sorts it by the range of shards its hash picks; a second pass gives each range to one
//! thread, which adds the items of its range from every run, run after run. Each shard so
//! gets its items in the order one thread adding them all would have given them: the tables
//! come out the same as a sequential fill's, which the zone's iteration order (a transfer's
//! record order) follows.

use std::thread;

/// Below this many items one thread fills the index: starting threads would cost more.
const PARALLEL_THRESHOLD: usize = 16_384;

/// Items with their hash, by range of shards: what one run of the first pass sorted.
type Sorted<'a, T> = Vec<Vec<(u64, &'a T)>>;

/// Adds every item of `lists` to `shards` and returns the sum of what `add` returned.
///
/// `hash` gives an item's hash, `shard_of` the index of the shard a hash picks, and `add`
/// puts an item with its hash into that shard.
pub(super) fn fill<S: Send, T: Sync>(
    shards: &mut [S],
    lists: &[&[T]],
    hash: impl Fn(&T) -> u64 + Sync,
    shard_of: impl Fn(u64) -> usize + Sync,
    add: impl Fn(&mut S, u64, &T) -> usize + Sync,
) -> usize {
    let total: usize = lists.iter().map(|list| list.len()).sum();
    let threads = thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8)
        .min(shards.len());
    if threads < 2 || total < PARALLEL_THRESHOLD {
        let mut added = 0;
        for item in lists.iter().flat_map(|list| list.iter()) {
            let hash = hash(item);
            added += add(&mut shards[shard_of(hash)], hash, item);
        }
        return added;
    }
    let per_range = shards.len().div_ceil(threads);
    let ranges = shards.len().div_ceil(per_range);
    let runs = runs(lists, total.div_ceil(threads));
    let (hash, shard_of, add) = (&hash, &shard_of, &add);
    let sorted: Vec<Sorted<'_, T>> = thread::scope(|scope| {
        let handles: Vec<_> = runs
            .iter()
            .map(|run| {
                scope.spawn(move || {
                    let items: usize = run.iter().map(|list| list.len()).sum();
                    // A tenth more than the even share, so few ranges grow their list.
                    let room = items / ranges + items / ranges / 10 + 16;
                    let mut sorted: Sorted<'_, T> =
                        (0..ranges).map(|_| Vec::with_capacity(room)).collect();
                    for item in run.iter().flat_map(|list| list.iter()) {
                        let hash = hash(item);
                        sorted[shard_of(hash) / per_range].push((hash, item));
                    }
                    sorted
                })
            })
            .collect();
        handles.into_iter().map(join).collect()
    });
    thread::scope(|scope| {
        let handles: Vec<_> = shards
            .chunks_mut(per_range)
            .enumerate()
            .map(|(range, owned)| {
                let sorted = &sorted;
                scope.spawn(move || {
                    let first = range * per_range;
                    let mut added = 0;
                    for &(hash, item) in sorted.iter().flat_map(|run| run[range].iter()) {
                        added += add(&mut owned[shard_of(hash) - first], hash, item);
                    }
                    added
                })
            })
            .collect();
        handles.into_iter().map(join).sum()
    })
}

/// `lists` cut into runs of consecutive lists of about `share` items each.
fn runs<'l, 'a, T>(lists: &'l [&'a [T]], share: usize) -> Vec<&'l [&'a [T]]> {
    let mut runs = Vec::new();
    let (mut start, mut items) = (0, 0);
    for (at, list) in lists.iter().enumerate() {
        items += list.len();
        if items >= share {
            runs.push(&lists[start..=at]);
            (start, items) = (at + 1, 0);
        }
    }
    if start < lists.len() {
        runs.push(&lists[start..]);
    }
    runs
}

/// A thread's result; a panic in it (a bug) is passed on, as it would be without threads.
fn join<R>(handle: thread::ScopedJoinHandle<'_, R>) -> R {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The items each shard got, in order, as a sequential fill gives them.
    fn filled(items: &[Vec<u64>], shards: usize) -> (Vec<Vec<u64>>, usize) {
        let lists: Vec<&[u64]> = items.iter().map(Vec::as_slice).collect();
        let mut out = vec![Vec::new(); shards];
        let added = fill(
            &mut out,
            &lists,
            |item| item.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            |hash| (hash >> 24) as usize % shards,
            |shard, _, item| {
                shard.push(*item);
                1
            },
        );
        (out, added)
    }

    #[test]
    fn every_shard_gets_its_items_in_input_order() {
        let items: Vec<Vec<u64>> = (0..500u64)
            .map(|list| (0..(list % 97)).map(|i| list * 1000 + i).collect())
            .collect();
        let total: usize = items.iter().map(Vec::len).sum();
        assert!(total >= PARALLEL_THRESHOLD);
        let (shards, added) = filled(&items, 64);
        assert_eq!(added, total);
        let mut expected = vec![Vec::new(); 64];
        for item in items.iter().flatten() {
            let hash = item.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            expected[(hash >> 24) as usize % 64].push(*item);
        }
        assert_eq!(shards, expected);
    }
}
