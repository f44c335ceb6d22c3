//! The default exact search and the approximate one: tiled term-at-a-time
//! with bound columns and exact rescoring.

use std::cell::RefCell;

use crate::postings::Postings;
use crate::quantize::dequantize;
use crate::search::request::DocFilter;
use crate::search::snapshot::SnapSeg;
use crate::search::top_k::{Cand, TopK};
use crate::search::Searcher;
use crate::segment::bound_columns::{DenseColumn, DenseColumns};
use crate::simd::{
    accumulate_dense_batch, chunks_reaching, values_in_chunks, DENSE_BATCH, SCAN_CHUNK,
};

impl Searcher {
    /// Tiled MaxScore (see [`tiled_segment`]); `heap_factor` and `top_n`
    /// relax it into the approximate mode (1.0 and all tokens: exact).
    pub(crate) fn run_tiled(
        &self,
        q: &[(u32, f32)],
        k: usize,
        filter: Option<DocFilter<'_>>,
        heap_factor: f32,
        top_n: usize,
    ) -> Vec<Cand> {
        let mut top = TopK::new(k);
        if k == 0 || q.is_empty() {
            return Vec::new();
        }
        // Tokens that may generate candidates: the `top_n` heaviest.
        let mut gen = vec![true; q.len()];
        if top_n < q.len() {
            let mut by_w: Vec<usize> = (0..q.len()).collect();
            by_w.sort_by(|&a, &b| q[b].1.total_cmp(&q[a].1).then(a.cmp(&b)));
            for &i in &by_w[top_n..] {
                gen[i] = false;
            }
        }
        SCRATCH.with(|sc| {
            let sc = &mut *sc.borrow_mut();
            for (si, ss) in self.snap.segs.iter().enumerate() {
                let p = TileParams {
                    q,
                    gen: &gen,
                    heap_factor,
                    filter,
                    tile_shift: SEARCH_TILE_SHIFT,
                    bound_columns: k <= BOUND_COLUMNS_MAX_K,
                    dense_max_bytes: self.snap.info.dense_max_bytes,
                };
                tiled_segment(ss, si as u32, &p, &mut top, sc);
            }
        });
        top.into_sorted()
    }
}

/// log2 of the documents per tile of [`tiled_segment`]: the tile's f32
/// accumulator (128 KiB) stays in L2 while the postings stream through.
const SEARCH_TILE_SHIFT: u32 = 15;

/// Largest tile any caller may ask for (tests use smaller ones).
const MAX_TILE: usize = 1 << 16;

/// Relative float slack for comparing bounds summed in different orders.
const BOUND_SLACK: f32 = 1e-4;

/// Number of leading elements of the ascending `list` that are below `bound`.
///
/// Exponential search from the front: a tile's run is a small prefix of the
/// rest of the list, so this touches only cache lines the scan reads next,
/// where a binary search over the whole rest misses the cache at every probe.
pub(crate) fn gallop_below(list: &[u32], bound: u32) -> usize {
    let mut lo = 0; // list[..lo] < bound
    let mut step = 1;
    while lo + step <= list.len() && list[lo + step - 1] < bound {
        lo += step;
        step *= 2;
    }

    let hi = (lo + step).min(list.len());
    lo + list[lo..hi].partition_point(|&d| d < bound)
}

/// A query term's state while a segment is scanned tile by tile.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TileTerm {
    token: u32,
    w: f32,
    /// `w ×` the token's largest weight in the segment.
    ub: f32,
    /// May generate candidates (among the `top_n` heaviest tokens).
    gen: bool,
    /// Postings before `pos` are below the current tile. Once [`TileTerm::locate`]
    /// ran for the tile, its postings are `pos..tile_end` (`tile_end` is
    /// `UNLOCATED` until then: bound-column terms skip it), with doc ids
    /// relative to `base`.
    pos: usize,
    tile_end: usize,
    base: u32,
    /// The next postings tile run to look at, and the end of the token's runs.
    run: usize,
    runs_end: usize,
}

/// `TileTerm::tile_end` before the term's run in the tile was located.
const UNLOCATED: usize = usize::MAX;

impl TileTerm {
    /// The term's postings in the located tile, doc offsets from `base`.
    #[inline]
    fn tile_run<'p>(&self, post: &'p Postings) -> &'p [u32] {
        &post.packed()[self.pos..self.tile_end]
    }

    /// Find this search tile's postings `pos..tile_end` (docs in `lo..hi`,
    /// inside one postings tile), skipping postings of earlier tiles left
    /// behind while the term was scored from its bound column.
    #[inline]
    fn locate(&mut self, post: &Postings, lo: u32, hi: u32) {
        if self.tile_end != UNLOCATED {
            return;
        }
        let tile = lo >> crate::postings::POSTINGS_TILE_SHIFT;
        while self.run < self.runs_end && post.run_tile(self.run) < tile {
            self.run += 1;
        }
        if self.run == self.runs_end || post.run_tile(self.run) != tile {
            self.tile_end = self.pos;
            return;
        }
        let (base, r) = post.run(self.run);
        // Packed postings compare like their offsets: `p < off << 16` iff `offset(p) < off`.
        let from = self.pos.max(r.start);
        let start = from + gallop_below(&post.packed()[from..r.end], (lo - base) << 16);
        let end = if hi - base >= 1 << crate::postings::POSTINGS_TILE_SHIFT {
            r.end
        } else {
            start + gallop_below(&post.packed()[start..r.end], (hi - base) << 16)
        };
        self.base = base;
        self.pos = start;
        self.tile_end = end;
    }
}

pub(crate) struct TileParams<'a, 'f> {
    pub(super) q: &'a [(u32, f32)],
    pub(super) gen: &'a [bool],
    pub(super) heap_factor: f32,
    pub(super) filter: Option<DocFilter<'f>>,
    /// log2 of the tile width (`SEARCH_TILE_SHIFT`; smaller in tests to cross many tiles).
    pub(super) tile_shift: u32,
    /// Score frequent tokens from their bound columns (see [`BOUND_COLUMNS_MAX_K`]).
    pub(super) bound_columns: bool,
    /// Bound-column budget per segment, in bytes (see [`Segment::dense`]).
    pub(super) dense_max_bytes: u64,
}

/// Largest k for which frequent tokens are scored from their bound columns.
/// Every document whose bound reaches the top k is rescored from exact
/// weights (~0.5–1 µs each), and a larger k means more of them: on the 1M
/// fitted bench, columns win up to k ≈ 500 (k 300: 2.4–3.4 ms against
/// 3.2–3.5 without; k 500: 3.0–3.1 against 3.3–3.4; k 1000: 4.8–7.3
/// against 4.0–5.2). Above it the tokens' postings are scattered like the
/// others'.
pub(crate) const BOUND_COLUMNS_MAX_K: usize = 512;

/// Candidates of a tile scored first, by decreasing bound, before the rest
/// are sorted: while the top k is not full every document of the tile is a
/// candidate, and scoring the most promising ones first sets a bar that
/// drops almost all of the others unsorted.
const HEAD_CANDIDATES: usize = 32;

/// The rescoring of one tile's candidates (see [`tiled_segment`]).
struct Completion<'a, 'f> {
    ss: &'a SnapSeg,
    si: u32,
    /// The query's terms, canonical order, located in the tile unless they
    /// have a bound column.
    terms: &'a [TileTerm],
    /// Per term: its bound column, if it has one.
    cols: &'a [Option<DenseColumn<'a>>],
    /// Non-essential terms, by decreasing bound.
    non_essential: &'a [usize],
    /// Sum of the bounds of the non-essential terms that generate candidates.
    ne_ub: f32,
    heap_factor: f32,
    filter: Option<DocFilter<'f>>,
}

impl Completion<'_, '_> {
    /// Score the candidates `(doc, bound of the essential terms)` into `top`,
    /// the most promising first, dropping those that cannot reach it.
    fn run(&self, cands: &mut Vec<(u32, f32)>, top: &mut TopK) {
        let desc = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        let head = HEAD_CANDIDATES.max(top.k);
        let mut start = 0;
        if cands.len() > 4 * head {
            cands.select_nth_unstable_by(head, desc);
            cands[..head].sort_unstable_by(desc);
            self.consider_all(&cands[..head], top);
            start = head;
            let bar = self.bar(top);
            let mut kept = start;
            for r in start..cands.len() {
                if self.may_reach(cands[r].1, bar) {
                    cands.swap(kept, r);
                    kept += 1;
                }
            }
            cands.truncate(kept);
        }
        if start < cands.len() {
            cands[start..].sort_unstable_by(desc);
            self.consider_all(&cands[start..], top);
        }
    }

    /// [`Completion::consider`] each of `cands` (bounds decreasing) in turn,
    /// loading the next one's weights meanwhile, until one cannot reach the
    /// bar.
    fn consider_all(&self, cands: &[(u32, f32)], top: &mut TopK) {
        for (i, &c) in cands.iter().enumerate() {
            if let Some(&(next, _)) = cands.get(i + 1) {
                self.prefetch(next);
            }
            if !self.consider(c, top) {
                return;
            }
        }
    }

    /// The score a candidate must be able to reach (−∞ while `top` is not full).
    fn bar(&self, top: &TopK) -> f32 {
        top.bar(self.heap_factor)
    }

    /// Whether a document whose essential terms are bounded by `partial` can
    /// reach `bar` (with slack for sums in different orders).
    fn may_reach(&self, partial: f32, bar: f32) -> bool {
        (partial + self.ne_ub) * (1.0 + BOUND_SLACK) >= bar
    }

    /// Score one candidate into `top` unless its bounds rule it out. Returns
    /// false when even its first bound cannot reach the bar: then no later
    /// candidate (bounds come in decreasing order) can either.
    fn consider(&self, (d, partial): (u32, f32), top: &mut TopK) -> bool {
        if !self.may_reach(partial, self.bar(top)) {
            return false;
        }
        let mut part = partial;
        let mut rest = self.ne_ub;
        for &i in self.non_essential {
            let tm = &self.terms[i];
            if !tm.gen {
                continue;
            }
            rest -= tm.ub;
            part += self.bound_of(i, d);
            if (part + rest.max(0.0)) * (1.0 + BOUND_SLACK) < self.bar(top) {
                return true;
            }
        }
        if !self.ss.accepts(d, self.filter) {
            return true;
        }
        // Exact score in canonical order over every query term.
        let mut s = 0f32;
        for (i, tm) in self.terms.iter().enumerate() {
            if let Some(w) = self.exact_of(i, d) {
                s += tm.w * dequantize(w);
            }
        }
        if s > 0.0 {
            top.push(Cand {
                score: s,
                seg: self.si,
                doc: d,
            });
        }
        true
    }

    /// Start loading the cache lines that hold document `d`'s weights.
    #[inline]
    fn prefetch(&self, d: u32) {
        let post = self.ss.seg.post();
        for (tm, col) in self.terms.iter().zip(self.cols) {
            match col {
                Some(col) => col.prefetch(d),
                None => {
                    let run = tm.tile_run(post);
                    let at = crate::postings::guess_in_run(run, d.wrapping_sub(tm.base));
                    crate::simd::prefetch(run.as_ptr().wrapping_add(at));
                }
            }
        }
    }

    /// An upper bound of term `i`'s contribution to document `d`.
    #[inline]
    fn bound_of(&self, i: usize, d: u32) -> f32 {
        let tm = &self.terms[i];
        match self.cols[i] {
            Some(col) => tm.w * col.bound(d),
            None => self.exact_of(i, d).map_or(0.0, |w| tm.w * dequantize(w)),
        }
    }

    /// Term `i`'s quantized weight in document `d`, if present.
    #[inline]
    fn exact_of(&self, i: usize, d: u32) -> Option<u16> {
        match self.cols[i] {
            Some(col) => col.exact(d),
            None => {
                let tm = &self.terms[i];
                crate::postings::find_in_run(
                    tm.tile_run(self.ss.seg.post()),
                    d.wrapping_sub(tm.base),
                )
            }
        }
    }
}

/// No bound columns: searches with a k above [`BOUND_COLUMNS_MAX_K`].
static NO_COLUMNS: DenseColumns = DenseColumns::none();

/// A guess of the bar a tile's own documents will set: the `k`-th largest of
/// the bounds' maxima over [`SCAN_CHUNK`]-document chunks, less the most
/// the bound columns can overstate a score (`slack`). The k documents
/// holding those maxima score at least that much unless filtered out, so
/// candidates below it rarely matter; 0 when the tile has fewer than `k`
/// chunks with a bound.
fn likely_bar(acc: &[f32], k: usize, slack: f32, maxima: &mut Vec<f32>) -> f32 {
    maxima.clear();
    maxima.extend(
        acc.chunks(SCAN_CHUNK)
            .map(|c| c.iter().fold(0f32, |m, &x| if x > m { x } else { m }))
            .filter(|&m| m > 0.0),
    );
    if k == 0 || maxima.len() < k {
        return 0.0;
    }

    let (_, kth, _) = maxima.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    minus_with_slack(*kth, slack).max(0.0)
}

/// `x − by`, lowered by the relative slack [`BOUND_SLACK`]: a bound at least
/// this value is never ruled out by sums of the same terms in another order.
#[inline]
fn minus_with_slack(x: f32, by: f32) -> f32 {
    (x - by) * (1.0 - BOUND_SLACK) - by * BOUND_SLACK
}

/// Exact top-k by MaxScore over doc-id tiles.
///
/// Documents are processed in tiles of 2^`SEARCH_TILE_SHIFT` ids so the dense
/// accumulator stays in L2. Per tile, with θ the current k-th score, the
/// terms that generate candidates are *essential* (every term in exact
/// mode; the code keeps MaxScore's shape, with the non-essential terms'
/// bound share fixed at 0, see the split below), and only the essential terms
/// are added to the accumulator: postings scattered for rare tokens, byte
/// codes (upper bounds) of the bound columns for frequent ones. Unless
/// every term went in exactly, the accumulator holds upper bounds, and
/// documents whose bound plus the non-essential bound can still beat θ are
/// candidates ([`Completion`]): by decreasing bound, completed over the
/// non-essential terms (dropping out as soon as they cannot make it) and
/// rescored in canonical token order from exact weights, so scores equal
/// brute force bit for bit. While the top k is not full, the candidates
/// whose bound is near the tile's k best ([`likely_bar`]) go first. When
/// every term is essential and none has a bound column (small segments),
/// the accumulator is summed in canonical order and used as is.
///
/// Approximate mode: terms outside the `top_n` heaviest are never essential
/// and their bounds are ignored (they only add to the score of documents
/// found by the others), and θ is multiplied by `heap_factor`.
pub(crate) fn tiled_segment(
    ss: &SnapSeg,
    si: u32,
    p: &TileParams<'_, '_>,
    top: &mut TopK,
    sc: &mut Scratch,
) {
    let seg = &*ss.seg;
    let n = seg.n_docs();
    if n == 0 {
        return;
    }

    let terms = &mut sc.terms;
    terms.clear();
    for (&(t, w), &gen) in p.q.iter().zip(p.gen) {
        let runs = seg.post().runs(t);
        if !runs.is_empty() {
            let s = seg.post().term_start(t);
            terms.push(TileTerm {
                token: t,
                w,
                ub: w * seg.term_max(t),
                gen,
                pos: s,
                tile_end: s,
                base: 0,
                run: runs.start,
                runs_end: runs.end,
            });
        }
    }

    if terms.is_empty() {
        return;
    }

    let dense: &DenseColumns = if p.bound_columns {
        seg.dense(p.dense_max_bytes)
    } else {
        &NO_COLUMNS
    };

    let cols: Vec<Option<DenseColumn<'_>>> = terms
        .iter()
        .map(|tm| dense.column(seg.post(), tm.token))
        .collect();
    // Ascending bound; the non-essential set is a prefix of this order.
    let mut by_ub: Vec<usize> = (0..terms.len()).collect();
    by_ub.sort_by(|&a, &b| terms[a].ub.total_cmp(&terms[b].ub));
    let tile = 1usize << p.tile_shift;
    assert!(
        tile <= MAX_TILE && p.tile_shift <= crate::postings::POSTINGS_TILE_SHIFT,
        "tile of {tile} documents exceeds {MAX_TILE} or a postings tile"
    );
    sc.acc.clear();
    sc.acc.resize(MAX_TILE, 0.0);
    // A fixed-size view: masked indexes need no bounds checks in the scatter.
    let acc: &mut [f32; MAX_TILE] = (&mut sc.acc[..MAX_TILE]).try_into().expect("MAX_TILE");
    let mut essential: Vec<usize> = Vec::with_capacity(terms.len());
    let mut non_essential: Vec<usize> = Vec::with_capacity(terms.len());
    let cands = &mut sc.cands;
    let mut lo = 0u32;
    while lo < n {
        let hi = (lo as usize + tile).min(n as usize) as u32;
        for tm in terms.iter_mut() {
            tm.tile_end = UNLOCATED;
        }
        let bar = top.bar(p.heap_factor);
        // Split terms: every term that generates candidates is essential.
        // (A MaxScore split, which would make the lowest-bound generating
        // terms non-essential, was slower on learned-sparse queries, whose
        // weights barely depend on token frequency and whose top scores are
        // close: completing candidates cost more than the postings it saved;
        // BENCHMARKS.md.) Only the approximate mode's non-generating terms
        // are non-essential, and their bounds are ignored, so the bound share
        // of the non-essential terms, `ne_ub`, is 0.
        essential.clear();
        non_essential.clear();
        let ne_ub = 0f32;
        for &i in &by_ub {
            if top.full() && !terms[i].gen {
                non_essential.push(i);
            } else {
                // No bar yet (score everything exactly), or a generating term.
                essential.push(i);
            }
        }
        if !essential.is_empty() {
            essential.sort_unstable(); // canonical order
            let width = (hi - lo) as usize;
            // Consecutive bound-column terms are added in one pass over the
            // accumulator; they make `acc` an upper bound, not a score.
            let mut bounded = false;
            // Most a bound column's code can overstate a score.
            let mut dense_slack = 0f32;
            let mut batch: [(f32, &[u8]); DENSE_BATCH] = [(0.0, &[]); DENSE_BATCH];
            let mut batched = 0usize;
            for (pos, &i) in essential.iter().enumerate() {
                let tm = &terms[i];
                if let Some(col) = cols[i] {
                    batch[batched] = (tm.w * col.step, &col.codes[lo as usize..hi as usize]);
                    batched += 1;
                    bounded = true;
                    dense_slack += tm.w * col.step;
                    let next_dense = essential.get(pos + 1).is_some_and(|&j| cols[j].is_some());
                    if batched == DENSE_BATCH || !next_dense {
                        accumulate_dense_batch(&mut acc[..width], &batch[..batched]);
                        batched = 0;
                    }
                    continue;
                }
                let tm = &mut terms[i];
                tm.locate(seg.post(), lo, hi);
                let w = tm.w;
                let skip = lo - tm.base;
                for &x in tm.tile_run(seg.post()) {
                    // The run holds docs in lo..hi, so the mask never changes the index.
                    let at = (crate::postings::offset(x) - skip) as usize & (MAX_TILE - 1);
                    acc[at] += w * crate::postings::weight(x);
                }
            }
            if non_essential.is_empty() && !bounded {
                // Every term is in `acc`, summed in canonical order: exact scores.
                let mut theta = top.theta().max(0.0);
                // Vectorised pre-filter at the tile's starting θ (θ only grows,
                // so no chunk that could enter the top-k is missed).
                chunks_reaching(&acc[..width], theta, &mut sc.chunks);
                for (x, s) in values_in_chunks(&acc[..width], &sc.chunks) {
                    let d = lo + x as u32;
                    if s > 0.0 && s >= theta && ss.accepts(d, p.filter) {
                        top.push(Cand {
                            score: s,
                            seg: si,
                            doc: d,
                        });
                        theta = top.theta().max(0.0);
                    }
                }
                acc[..width].fill(0.0);
            } else {
                // Candidates: the partial bound plus the non-essential bound
                // can reach the bar.
                let need = if top.full() {
                    minus_with_slack(bar, ne_ub)
                } else {
                    0.0
                };
                // Until the top k is full every document would be a
                // candidate: take first those whose bound is near the k best
                // of the tile, and the rest only if the bar they set does
                // not rule them out.
                let first = if top.full() {
                    need
                } else {
                    likely_bar(&acc[..width], top.k, dense_slack, &mut sc.tmp).max(need)
                };
                // Bound-column terms are looked up directly; only the
                // others need their run in this tile.
                let mut located = false;
                let mut floor = first;
                let mut ceiling = f32::INFINITY;
                loop {
                    cands.clear();
                    chunks_reaching(&acc[..width], floor.max(0.0), &mut sc.chunks);
                    cands.extend(
                        values_in_chunks(&acc[..width], &sc.chunks)
                            .filter(|&(_, s)| s > 0.0 && s >= floor && s < ceiling)
                            .map(|(x, s)| (lo + x as u32, s)),
                    );
                    if !cands.is_empty() {
                        if !located {
                            for (tm, col) in terms.iter_mut().zip(&cols) {
                                if col.is_none() {
                                    tm.locate(seg.post(), lo, hi);
                                }
                            }
                            non_essential.sort_by(|&a, &b| terms[b].ub.total_cmp(&terms[a].ub));
                            located = true;
                        }
                        let job = Completion {
                            ss,
                            si,
                            terms,
                            cols: &cols,
                            non_essential: &non_essential,
                            ne_ub,
                            heap_factor: p.heap_factor,
                            filter: p.filter,
                        };
                        job.run(cands, top);
                    }
                    // Documents below `floor` remain; they matter only if the
                    // bar now lets a bound below `floor` through.
                    let still = minus_with_slack(top.bar(p.heap_factor), ne_ub);
                    if floor <= need || still >= floor {
                        break;
                    }
                    ceiling = floor;
                    floor = need.max(still);
                }
                acc[..width].fill(0.0);
            }
        }
        for tm in terms.iter_mut() {
            if tm.tile_end != UNLOCATED {
                tm.pos = tm.tile_end;
            }
        }
        lo = hi;
    }
}

/// Per-thread buffers the search algorithms reuse between queries.
#[derive(Default)]
pub(crate) struct Scratch {
    pub(super) acc: Vec<f32>,
    /// Accumulator kept all-zero between uses (MaxScore resets what it touches).
    #[cfg(feature = "baselines")]
    pub(super) zacc: Vec<f32>,
    #[cfg(feature = "baselines")]
    pub(super) touched: Vec<u32>,
    pub(super) tmp: Vec<f32>,
    terms: Vec<TileTerm>,
    cands: Vec<(u32, f32)>,
    #[cfg(feature = "baselines")]
    pub(super) ub: Vec<f32>,
    #[cfg(feature = "baselines")]
    pub(super) blocks: Vec<(f32, u32)>,
    /// Chunk numbers from [`chunks_reaching`].
    chunks: Vec<u32>,
}

thread_local! {
    pub(crate) static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}
