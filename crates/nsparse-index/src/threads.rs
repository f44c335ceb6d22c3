//! Running a build's parts on scoped threads.

/// Threads a segment build uses: `limit`, or with `limit` 0 the machine's
/// cores (at most 8); and at most one per 64k documents so small segments
/// (tests, WAL flushes) stay serial.
pub(crate) fn build_threads(n_docs: usize, limit: usize) -> usize {
    let most = match limit {
        0 => std::thread::available_parallelism()
            .map_or(1, |c| c.get())
            .clamp(1, 8),
        n => n,
    };

    most.min(n_docs / 65_536 + 1)
}

/// Join a build thread, passing a panic on to the caller.
pub(crate) fn join_part<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// `f` of every range, each on its own scoped thread; results in range order.
pub(crate) fn per_range<R: Send>(
    ranges: &[std::ops::Range<usize>],
    f: impl Fn(std::ops::Range<usize>) -> R + Sync,
) -> Vec<R> {
    on_threads(ranges.iter().cloned(), f)
}

/// `f` of every item, each on its own scoped thread; results in item order.
///
/// A single item gets its own thread too. Running it on the calling thread
/// instead made the one-thread bulk load ~15 % slower (1M docs, interleaved
/// runs); with `MALLOC_ARENA_MAX=1` both ways measured
/// alike, which points at the main thread's malloc arena, where the bulk's
/// `_id` strings and sources then came from.
pub(crate) fn on_threads<T: Send, R: Send>(
    items: impl IntoIterator<Item = T>,
    f: impl Fn(T) -> R + Sync,
) -> Vec<R> {
    std::thread::scope(|sc| {
        let f = &f;
        let handles: Vec<_> = items.into_iter().map(|x| sc.spawn(move || f(x))).collect();
        handles.into_iter().map(join_part).collect()
    })
}

/// `0..len` in `parts` contiguous groups of nearly equal size.
pub(crate) fn even_groups(len: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    (0..parts)
        .map(|p| len * p / parts..len * (p + 1) / parts)
        .collect()
}

/// Fault in every page of `buf` ([`crate::memory::populate`]) on `parts`
/// threads, each a contiguous share: faults taken in a tight loop cost less
/// than the same faults spread over the writes that follow (~10 % of a
/// build), and threads faulting pages of the same page table contend in the
/// kernel (2.3x slower than contiguous shares, measured).
pub(crate) fn populate_in_shares<T: Copy + Send>(buf: &mut [T], parts: usize) {
    let share = buf.len().div_ceil(parts.max(1)).max(1);
    on_threads(buf.chunks_mut(share), crate::memory::populate);
}
