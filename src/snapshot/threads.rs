//! Runs the encoding jobs of a build (one per service) or of a cache read (one per chunk) on
//! several threads, in order, with scoped threads: no pool outlives the build.

/// Services whose fragments are built on several threads when there are at least this many.
const PARALLEL_THRESHOLD: usize = 512;

/// Runs `job` over `items`, on several threads when there are many.
pub(super) fn in_parallel<T: Sync, R: Send>(items: &[T], job: impl Fn(&T) -> R + Sync) -> Vec<R> {
    if items.len() < PARALLEL_THRESHOLD {
        return items.iter().map(&job).collect();
    }
    on_threads(items, job)
}

/// Runs `job` over `items` on as many threads as there are cores (up to 8), in order. A job
/// that panics loses its thread's results: callers that must not lose any compare lengths.
pub(super) fn on_threads<T: Sync, R: Send>(items: &[T], job: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    if items.len() < 2 || threads < 2 {
        return items.iter().map(&job).collect();
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(|| part.iter().map(&job).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().unwrap_or_default())
            .collect()
    })
}
