//! Searching a snapshot: exact top-k (block-max pruning, term-at-a-time,
//! brute force), approximate top-k, two-phase, BM25, hybrid and explanations.

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::dequantize;
use crate::index::Bm25Params;
use crate::postings::{self, Postings};
use crate::segment::{
    Bitset, DenseColumn, DenseColumns, ForwardCursor, Segment, DOC_BLOCK_SHIFT, SOURCE_CHUNK,
};
use crate::simd::{
    accumulate_dense_batch, chunks_reaching, values_in_chunks, DENSE_BATCH, SCAN_CHUNK,
};

pub(crate) struct SnapInfo {
    pub model: String,
    pub metadata: serde_json::Value,
    pub vocab: u32,
    pub bm25: Bm25Params,
}

pub(crate) struct SnapSeg {
    pub seg: Arc<Segment>,
    pub del: Option<Arc<Bitset>>,
    pub path: PathBuf,
}

impl SnapSeg {
    #[inline]
    fn deleted(&self, d: u32) -> bool {
        self.del.as_ref().is_some_and(|b| b.get(d))
    }
    /// Whether `d` may be a hit: live and accepted by the filter. Only such
    /// documents enter a top-k heap, so pruning thresholds rise only with them.
    #[inline]
    fn accepts(&self, d: u32, filter: Option<DocFilter<'_>>) -> bool {
        !self.deleted(d) && filter.is_none_or(|f| f(&self.seg.ids[d as usize]))
    }
}

/// A predicate on a document's `_id`: only documents for which it returns true can be hits.
///
/// Filtered searches return the exact top-k among the documents that pass
/// (for exact modes), not a filtered top-k of the unfiltered results. The
/// predicate is called lazily, only for documents whose score could enter
/// the top k, so a cheap predicate (e.g. a hash-set lookup) adds little.
pub type DocFilter<'a> = &'a (dyn Fn(&str) -> bool + Sync);

pub(crate) struct Snapshot {
    pub segs: Vec<SnapSeg>,
    pub info: Arc<SnapInfo>,
}

/// How to run a sparse-vector query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SearchMode {
    /// Exact top-k with the default algorithm: tiled MaxScore (chosen by
    /// measurement, see crate docs and BENCHMARKS.md).
    Exact,
    /// Exact top-k by plain term-at-a-time over a dense accumulator (no
    /// pruning; the previous default, kept as a benchmark baseline).
    ExactTaat,
    /// Exact top-k, term-at-a-time MaxScore (benchmark alternative).
    ExactMaxScore,
    /// Exact top-k by block-max pruning over 64-doc blocks (BMP-style; benchmark alternative).
    ExactBlockMax,
    /// Score every live document through the forward index (testing/verification).
    BruteForce,
    /// Approximate top-k (tiled MaxScore with relaxed pruning; returned scores are exact).
    Approximate {
        /// Only the query's `top_n` highest-weight tokens can make a document a
        /// candidate; the other tokens still add to candidates' scores.
        top_n: usize,
        /// A candidate must be able to exceed `heap_factor` × the current k-th
        /// score; `1.0` (with `top_n` ≥ query tokens) is exact, `> 1` prunes
        /// more aggressively (faster, lower recall).
        heap_factor: f32,
    },
    /// OpenSearch-style two-phase search.
    TwoPhase {
        /// Tokens with weight `< prune_ratio × max weight` are deferred to phase 2 (default 0.4).
        prune_ratio: f32,
        /// Phase 1 retrieves `k × expansion_rate` candidates (default 5.0).
        expansion_rate: f32,
        /// Cap on the phase-1 window (default 10,000).
        max_window_size: usize,
    },
}

impl SearchMode {
    /// Two-phase with OpenSearch's defaults (0.4, 5.0, 10,000).
    pub fn two_phase() -> SearchMode {
        SearchMode::TwoPhase {
            prune_ratio: 0.4,
            expansion_rate: 5.0,
            max_window_size: 10_000,
        }
    }
}

/// A sparse-vector search request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchRequest {
    /// Number of hits.
    pub k: usize,
    /// Algorithm.
    pub mode: SearchMode,
    /// Attach per-token explanations to hits.
    pub explain: bool,
    /// Attach stored sources to hits.
    pub with_source: bool,
}

impl SearchRequest {
    /// Exact top-`k`, no explanation, no source.
    pub fn new(k: usize) -> Self {
        SearchRequest {
            k,
            mode: SearchMode::Exact,
            explain: false,
            with_source: false,
        }
    }
    /// Set the mode.
    pub fn mode(mut self, mode: SearchMode) -> Self {
        self.mode = mode;
        self
    }
    /// Request explanations.
    pub fn explain(mut self, yes: bool) -> Self {
        self.explain = yes;
        self
    }
    /// Request sources.
    pub fn with_source(mut self, yes: bool) -> Self {
        self.with_source = yes;
        self
    }
}

/// One matched token's part in a score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TokenContribution {
    /// Token id.
    pub token: u32,
    /// Query weight (for BM25: query term count × idf).
    pub query_weight: f32,
    /// Document weight, dequantized (for BM25: saturated, length-normalised tf).
    pub doc_weight: f32,
    /// `query_weight × doc_weight`.
    pub contribution: f32,
}

/// A search result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    /// Document `_id`.
    pub id: String,
    /// Score (dot product of query and quantized document vector, BM25, or fused score).
    pub score: f32,
    /// Stored source, if requested.
    pub source: Option<Vec<u8>>,
    /// Matched tokens by decreasing contribution, if requested.
    pub explanation: Option<Vec<TokenContribution>>,
    #[serde(skip)]
    addr: (u32, u32),
}

/// A live document as stored in a snapshot (see [`Searcher::documents`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDocument {
    /// Document `_id`.
    pub id: String,
    /// Sparse vector as stored: weights rounded to f16 (see the crate docs),
    /// zero weights dropped, tokens ascending. Re-indexing it reproduces the
    /// same stored vector exactly (f16 rounding is idempotent).
    pub vector: Vec<(u32, f32)>,
    /// BM25 tokens, as a bag: segments keep term frequencies and document
    /// length, not the original sequence, so each token appears as many times
    /// as it occurred, in ascending token order (not text order). Re-indexing
    /// it gives identical BM25 scores. `None` when the document was indexed
    /// without tokens (or with an empty sequence; the two are stored alike).
    pub tokens: Option<Vec<u32>>,
    /// Stored source bytes.
    pub source: Vec<u8>,
}

/// Score fusion for [`Searcher::search_hybrid`], as in OpenSearch's hybrid query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HybridCombination {
    /// Min-max normalise each sub-query's scores to [0, 1], then weighted arithmetic mean.
    MinMax {
        /// Weights of (neural, BM25).
        weights: [f32; 2],
    },
    /// Reciprocal rank fusion: Σ 1 / (rank_constant + rank), rank from 1.
    Rrf {
        /// Usually 60.
        rank_constant: f32,
    },
}

/// A hybrid (neural + BM25) request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HybridRequest {
    /// Number of fused hits.
    pub k: usize,
    /// Hits retrieved from each sub-query before fusion.
    pub window: usize,
    /// Fusion method.
    pub combination: HybridCombination,
    /// Mode of the neural sub-query.
    pub neural_mode: SearchMode,
    /// Attach stored sources.
    pub with_source: bool,
}

impl HybridRequest {
    /// Top-`k` fused with min-max (weights 0.5/0.5), window `max(k, 100)`, exact neural.
    pub fn new(k: usize) -> Self {
        HybridRequest {
            k,
            window: k.max(100),
            combination: HybridCombination::MinMax {
                weights: [0.5, 0.5],
            },
            neural_mode: SearchMode::Exact,
            with_source: false,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Cand {
    score: f32,
    seg: u32,
    doc: u32,
}

impl PartialEq for Cand {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Cand {
    /// Greater = better: higher score, then lower (segment, doc).
    fn cmp(&self, o: &Self) -> Ordering {
        self.score
            .total_cmp(&o.score)
            .then_with(|| (o.seg, o.doc).cmp(&(self.seg, self.doc)))
    }
}

struct TopK {
    k: usize,
    heap: BinaryHeap<Reverse<Cand>>,
}

impl TopK {
    fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k.min(4096) + 1),
        }
    }
    #[inline]
    fn full(&self) -> bool {
        self.heap.len() >= self.k
    }
    /// Score a candidate must exceed to matter (−∞ while not full).
    #[inline]
    fn theta(&self) -> f32 {
        if self.full() {
            self.heap.peek().map_or(f32::NEG_INFINITY, |c| c.0.score)
        } else {
            f32::NEG_INFINITY
        }
    }
    /// The score a candidate must be able to reach: θ × `heap_factor`
    /// (−∞ while not full).
    #[inline]
    fn bar(&self, heap_factor: f32) -> f32 {
        if self.full() {
            self.theta() * heap_factor
        } else {
            f32::NEG_INFINITY
        }
    }
    #[inline]
    fn push(&mut self, c: Cand) {
        if self.k == 0 {
            return;
        }
        if !self.full() {
            self.heap.push(Reverse(c));
        } else if let Some(mut top) = self.heap.peek_mut() {
            if c > top.0 {
                *top = Reverse(c);
            }
        }
    }
    fn into_sorted(self) -> Vec<Cand> {
        let mut v: Vec<Cand> = self.heap.into_iter().map(|r| r.0).collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        v
    }
}

#[derive(Default)]
struct Scratch {
    acc: Vec<f32>,
    /// Accumulator kept all-zero between uses (MaxScore resets what it touches).
    zacc: Vec<f32>,
    touched: Vec<u32>,
    tmp: Vec<f32>,
    terms: Vec<TileTerm>,
    cands: Vec<(u32, f32)>,
    ub: Vec<f32>,
    blocks: Vec<(f32, u32)>,
    /// Chunk numbers from [`chunks_reaching`].
    chunks: Vec<u32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// A consistent, immutable view of an index for searching. Cheap to clone and
/// safe to share across threads; writes after it was taken are not visible.
#[derive(Clone)]
pub struct Searcher {
    snap: Arc<Snapshot>,
}

impl std::fmt::Debug for Searcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Searcher")
            .field("segments", &self.snap.segs.len())
            .finish_non_exhaustive()
    }
}

impl Searcher {
    pub(crate) fn new(snap: Snapshot) -> Searcher {
        Searcher {
            snap: Arc::new(snap),
        }
    }

    /// Model identity the index was created with.
    pub fn model(&self) -> &str {
        &self.snap.info.model
    }

    /// Refuse to search with a different model ([`Error::ModelMismatch`]).
    pub fn check_model(&self, model: &str) -> Result<()> {
        if model == self.snap.info.model {
            Ok(())
        } else {
            Err(Error::ModelMismatch {
                index_model: self.snap.info.model.clone(),
                query_model: model.to_string(),
            })
        }
    }

    /// Free-form metadata given at creation.
    pub fn metadata(&self) -> &serde_json::Value {
        &self.snap.info.metadata
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> u32 {
        self.snap.info.vocab
    }

    /// Number of live documents in this snapshot.
    pub fn num_docs(&self) -> u64 {
        self.snap
            .segs
            .iter()
            .map(|s| (s.seg.n_docs - s.del.as_ref().map_or(0, |d| d.count)) as u64)
            .sum()
    }

    /// Number of segments (including the in-memory buffer, if any).
    pub fn num_segments(&self) -> usize {
        self.snap.segs.len()
    }

    /// Total neural postings (including deleted documents').
    pub fn num_postings(&self) -> u64 {
        self.snap
            .segs
            .iter()
            .map(|s| s.seg.n_postings() as u64)
            .sum()
    }

    fn find(&self, id: &str) -> Option<(u32, u32)> {
        self.snap.segs.iter().enumerate().rev().find_map(|(i, s)| {
            s.seg
                .lookup(id)
                .filter(|&d| !s.deleted(d))
                .map(|d| (i as u32, d))
        })
    }

    /// True if `id` is a live document in this snapshot.
    pub fn contains(&self, id: &str) -> bool {
        self.find(id).is_some()
    }

    /// Every live document of the snapshot, in a stable order (segment
    /// order, then position within the segment; the same for every call on
    /// the same snapshot and its clones).
    ///
    /// Documents are recovered from the postings window by window (1,024
    /// documents at a time, one decompression per source chunk), so a full
    /// pass costs about one scan of the index. An error (a source chunk that
    /// fails to decompress) is yielded once and ends the iteration.
    pub fn documents(&self) -> impl Iterator<Item = Result<StoredDocument>> + '_ {
        DocumentIter {
            snap: &self.snap,
            seg: 0,
            next: 0,
            cursor: None,
            buf: VecDeque::new(),
            done: false,
        }
    }

    /// Stored source of a live document.
    pub fn get(&self, id: &str) -> Result<Option<Vec<u8>>> {
        match self.find(id) {
            None => Ok(None),
            Some((s, d)) => {
                let ss = &self.snap.segs[s as usize];
                ss.seg.source(&ss.path, d).map(Some)
            }
        }
    }

    /// The quantized (stored) vector of a live document, dequantized, tokens
    /// ascending; `None` if `id` is not live. An error only when the
    /// document's segment cannot read its postings from disk.
    pub fn vector(&self, id: &str) -> Result<Option<Vec<(u32, f32)>>> {
        let Some((s, d)) = self.find(id) else {
            return Ok(None);
        };
        let seg = &self.snap.segs[s as usize].seg;
        seg.postings()?;
        Ok(Some(
            seg.doc_vector(d)
                .into_iter()
                .map(|(t, w)| (t as u32, dequantize(w)))
                .collect(),
        ))
    }

    /// Load every segment's neural postings that is still on disk (a
    /// segment just built by this process; see `Segment::build_and_write`),
    /// so the search code after it may read them.
    fn load_postings(&self) -> Result<()> {
        for s in &self.snap.segs {
            s.seg.postings()?;
        }
        Ok(())
    }

    /// Validate a query: tokens in vocabulary, weights finite and ≥ 0; duplicate
    /// tokens are summed, zero weights dropped; sorted by token.
    fn canon(&self, query: &[(u32, f32)]) -> Result<Vec<(u32, f32)>> {
        let mut q: Vec<(u32, f32)> = Vec::with_capacity(query.len());
        for &(t, w) in query {
            if t >= self.snap.info.vocab {
                return Err(Error::invalid(
                    "query",
                    format!(
                        "token id {t} is outside the vocabulary (size {})",
                        self.snap.info.vocab
                    ),
                ));
            }
            if !w.is_finite() || w < 0.0 {
                return Err(Error::invalid(
                    "query",
                    format!("weight {w} of token {t} must be finite and ≥ 0"),
                ));
            }
            q.push((t, w));
        }
        q.sort_by_key(|p| p.0);
        q.dedup_by(|b, a| {
            if a.0 == b.0 {
                a.1 += b.1;
                true
            } else {
                false
            }
        });
        q.retain(|p| p.1 > 0.0);
        Ok(q)
    }

    /// Top-k documents by dot product with `query` (sparse `(token, weight)`).
    ///
    /// Scores are computed in f32 over the quantized document weights, summing
    /// over query tokens in ascending token order, so every exact mode returns
    /// the same scores as brute force bit for bit. Ties are broken by segment
    /// then document order. Documents with score 0 are never returned.
    pub fn search(&self, query: &[(u32, f32)], req: &SearchRequest) -> Result<Vec<Hit>> {
        self.search_filtered(query, req, None)
    }

    /// [`Searcher::search`] restricted to documents accepted by `filter`
    /// (`None` = all live documents).
    ///
    /// Every exact mode returns the exact top-k among accepted documents
    /// (same ids, order and scores as brute force over them): rejected
    /// documents never enter the top-k heap, so pruning thresholds rise only
    /// with accepted documents. Approximate and two-phase modes apply the
    /// filter the same way, so their recall is relative to the filtered exact top-k.
    pub fn search_filtered(
        &self,
        query: &[(u32, f32)],
        req: &SearchRequest,
        filter: Option<DocFilter<'_>>,
    ) -> Result<Vec<Hit>> {
        let q = self.canon(query)?;
        self.load_postings()?;
        let f = filter;
        let cands = match req.mode {
            SearchMode::Exact => self.run_tiled(&q, req.k, f, 1.0, usize::MAX),
            SearchMode::ExactTaat => self.run_taat(&q, req.k, f),
            SearchMode::ExactMaxScore => self.run_maxscore(&q, req.k, f),
            SearchMode::ExactBlockMax => self.run_bmp(&q, &q, 1.0, req.k, f),
            SearchMode::BruteForce => self.run_brute(&q, req.k, f),
            SearchMode::Approximate { top_n, heap_factor } => {
                if !heap_factor.is_finite() || heap_factor <= 0.0 {
                    return Err(Error::invalid(
                        "query",
                        "heap_factor must be finite and > 0 (1.0 = exact)",
                    ));
                }
                self.run_tiled(&q, req.k, f, heap_factor, top_n.max(1))
            }
            SearchMode::TwoPhase {
                prune_ratio,
                expansion_rate,
                max_window_size,
            } => {
                if !(prune_ratio.is_finite() && expansion_rate.is_finite() && expansion_rate > 0.0)
                {
                    return Err(Error::invalid(
                        "query",
                        "prune_ratio and expansion_rate must be finite, expansion_rate > 0",
                    ));
                }
                self.run_two_phase(&q, prune_ratio, expansion_rate, max_window_size, req.k, f)
            }
        };
        self.hits(&q, cands, req.explain, req.with_source)
    }

    fn hits(
        &self,
        q: &[(u32, f32)],
        cands: Vec<Cand>,
        explain: bool,
        with_source: bool,
    ) -> Result<Vec<Hit>> {
        cands
            .into_iter()
            .map(|c| {
                let ss = &self.snap.segs[c.seg as usize];
                Ok(Hit {
                    id: ss.seg.ids[c.doc as usize].clone(),
                    score: c.score,
                    source: if with_source {
                        Some(ss.seg.source(&ss.path, c.doc)?)
                    } else {
                        None
                    },
                    explanation: explain.then(|| self.explain_doc(q, c.seg, c.doc)),
                    addr: (c.seg, c.doc),
                })
            })
            .collect()
    }

    fn explain_doc(&self, q: &[(u32, f32)], seg: u32, doc: u32) -> Vec<TokenContribution> {
        let sg = &self.snap.segs[seg as usize].seg;
        let mut out = Vec::new();
        for &(t, qw) in q {
            if let Some(w) = sg.weight(t, doc) {
                let dw = dequantize(w);
                out.push(TokenContribution {
                    token: t,
                    query_weight: qw,
                    doc_weight: dw,
                    contribution: qw * dw,
                });
            }
        }
        out.sort_by(|a, b| {
            b.contribution
                .total_cmp(&a.contribution)
                .then(a.token.cmp(&b.token))
        });
        out
    }

    /// Per-token explanation of `id`'s score for `query` (`None` if `id` is not live).
    pub fn explain(
        &self,
        query: &[(u32, f32)],
        id: &str,
    ) -> Result<Option<(f32, Vec<TokenContribution>)>> {
        let q = self.canon(query)?;
        let Some((s, d)) = self.find(id) else {
            return Ok(None);
        };
        self.snap.segs[s as usize].seg.postings()?;
        let score = self.dot(&q, s, d);
        Ok(Some((score, self.explain_doc(&q, s, d))))
    }

    /// Dot product of canonical query and a document, summed in token order.
    fn dot(&self, q: &[(u32, f32)], seg: u32, doc: u32) -> f32 {
        let sg = &self.snap.segs[seg as usize].seg;
        let mut s = 0f32;
        for &(t, w) in q {
            if let Some(dw) = sg.weight(t, doc) {
                s += w * dequantize(dw);
            }
        }
        s
    }

    fn run_brute(&self, q: &[(u32, f32)], k: usize, filter: Option<DocFilter<'_>>) -> Vec<Cand> {
        let mut top = TopK::new(k);
        for (si, ss) in self.snap.segs.iter().enumerate() {
            for d in 0..ss.seg.n_docs {
                if !ss.accepts(d, filter) {
                    continue;
                }
                let s = self.dot(q, si as u32, d);
                if s > 0.0 {
                    top.push(Cand {
                        score: s,
                        seg: si as u32,
                        doc: d,
                    });
                }
            }
        }
        top.into_sorted()
    }

    /// Term-at-a-time MaxScore: accumulate terms by decreasing upper bound
    /// (`query weight × segment max weight`) until the bounds of the remaining
    /// terms cannot lift an untouched document past a lower bound of the k-th
    /// score; then only touched documents that can still qualify are rescored
    /// exactly (canonical token order, so scores equal brute force bit for bit).
    fn run_maxscore(&self, q: &[(u32, f32)], k: usize, filter: Option<DocFilter<'_>>) -> Vec<Cand> {
        let mut top = TopK::new(k);
        if k == 0 || q.is_empty() {
            return Vec::new();
        }
        // Float slack for comparing sums taken in different orders.
        const SLACK: f32 = 1.0 - 1e-5;
        SCRATCH.with(|sc| {
            let sc = &mut *sc.borrow_mut();
            for (si, ss) in self.snap.segs.iter().enumerate() {
                let seg = &*ss.seg;
                let mut order: Vec<(f32, u32, f32)> = q
                    .iter()
                    .map(|&(t, w)| (w * seg.term_max[t as usize], t, w))
                    .collect();
                order.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                let mut rest: f32 = order.iter().map(|o| o.0).sum();
                let acc = &mut sc.zacc;
                if acc.len() < seg.n_docs as usize {
                    acc.resize(seg.n_docs as usize, 0.0);
                }
                let touched = &mut sc.touched;
                touched.clear();
                let mut lower = top.theta();
                let mut max_acc = 0f32;
                for &(ub, t, w) in &order {
                    let df = seg.post().df(t);
                    // The k-th best live partial score is a lower bound of the k-th
                    // final score. Computing it costs O(touched): only try when it
                    // could exceed `rest` and would let us skip a long list.
                    if touched.len() >= k
                        && rest < max_acc
                        && df * 4 > touched.len()
                        && touched.len() <= 1 << 16
                    {
                        let tmp = &mut sc.tmp;
                        tmp.clear();
                        tmp.extend(
                            touched
                                .iter()
                                .filter(|&&d| ss.accepts(d, filter))
                                .map(|&d| acc[d as usize]),
                        );
                        if tmp.len() >= k {
                            let (_, kth, _) =
                                tmp.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
                            lower = lower.max(*kth);
                        }
                    }
                    if rest < lower * SLACK {
                        break;
                    }
                    rest -= ub;
                    for (d, qw) in seg.post().iter(t) {
                        let a = &mut acc[d as usize];
                        if *a == 0.0 {
                            touched.push(d);
                        }
                        *a += w * dequantize(qw);
                        max_acc = max_acc.max(*a);
                    }
                }
                let rest = rest.max(0.0) / SLACK;
                // Final lower bound over all touched live documents, then rescore
                // only the few that can reach it.
                let tmp = &mut sc.tmp;
                tmp.clear();
                tmp.extend(
                    touched
                        .iter()
                        .filter(|&&d| ss.accepts(d, filter))
                        .map(|&d| acc[d as usize]),
                );
                if tmp.len() >= k {
                    let (_, kth, _) = tmp.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
                    lower = lower.max(*kth);
                }
                let cut = lower * SLACK;
                for &d in touched.iter() {
                    let a = std::mem::take(&mut acc[d as usize]);
                    if a + rest >= cut
                        && (!top.full() || a + rest >= top.theta() * SLACK)
                        && ss.accepts(d, filter)
                    {
                        let s = self.dot(q, si as u32, d);
                        if s > 0.0 {
                            top.push(Cand {
                                score: s,
                                seg: si as u32,
                                doc: d,
                            });
                        }
                    }
                }
            }
        });
        top.into_sorted()
    }

    /// Tiled MaxScore (see [`tiled_segment`]); `heap_factor` and `top_n`
    /// relax it into the approximate mode (1.0 and all tokens: exact).
    fn run_tiled(
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
                    tile_shift: TILE_SHIFT,
                    bound_columns: k <= BOUND_COLUMNS_MAX_K,
                };
                tiled_segment(ss, si as u32, &p, &mut top, sc);
            }
        });
        top.into_sorted()
    }

    fn run_taat(&self, q: &[(u32, f32)], k: usize, filter: Option<DocFilter<'_>>) -> Vec<Cand> {
        let mut top = TopK::new(k);
        SCRATCH.with(|sc| {
            let acc = &mut sc.borrow_mut().acc;
            for (si, ss) in self.snap.segs.iter().enumerate() {
                let seg = &*ss.seg;
                acc.clear();
                acc.resize(seg.n_docs as usize, 0.0);
                for &(t, w) in q {
                    for i in seg.post().runs(t) {
                        let (base, r) = seg.post().run(i);
                        let acc = &mut acc[base as usize..];
                        for &x in &seg.post().packed[r] {
                            acc[postings::offset(x) as usize] += w * postings::weight(x);
                        }
                    }
                }
                let mut theta = top.theta();
                for (d, &s) in acc.iter().enumerate() {
                    if s > 0.0 && s >= theta && ss.accepts(d as u32, filter) {
                        top.push(Cand {
                            score: s,
                            seg: si as u32,
                            doc: d as u32,
                        });
                        theta = top.theta();
                    }
                }
            }
        });
        top.into_sorted()
    }

    /// Block-max pruning: upper-bound every 64-doc block from `ub_q`, visit
    /// blocks by decreasing bound, stop when a bound cannot beat
    /// `heap_factor × k-th score`. Visited blocks are scored with all of `q`.
    fn run_bmp(
        &self,
        q: &[(u32, f32)],
        ub_q: &[(u32, f32)],
        heap_factor: f32,
        k: usize,
        filter: Option<DocFilter<'_>>,
    ) -> Vec<Cand> {
        let mut top = TopK::new(k);
        if k == 0 || q.is_empty() {
            return Vec::new();
        }
        SCRATCH.with(|sc| {
            let sc = &mut *sc.borrow_mut();
            for (si, ss) in self.snap.segs.iter().enumerate() {
                bmp_segment(ss, si as u32, q, ub_q, heap_factor, &mut top, sc, filter);
            }
        });
        top.into_sorted()
    }

    fn run_two_phase(
        &self,
        q: &[(u32, f32)],
        prune_ratio: f32,
        expansion: f32,
        max_window: usize,
        k: usize,
        filter: Option<DocFilter<'_>>,
    ) -> Vec<Cand> {
        let maxw = q.iter().map(|p| p.1).fold(0f32, f32::max);
        let hi: Vec<(u32, f32)> = q
            .iter()
            .copied()
            .filter(|p| p.1 >= prune_ratio * maxw)
            .collect();
        if hi.len() == q.len() {
            return self.run_tiled(q, k, filter, 1.0, usize::MAX);
        }
        let window = ((k as f64 * expansion as f64).ceil() as usize)
            .max(k)
            .min(max_window.max(k));
        let first = self.run_tiled(&hi, window, filter, 1.0, usize::MAX);
        let mut top = TopK::new(k);
        for c in first {
            top.push(Cand {
                score: self.dot(q, c.seg, c.doc),
                ..c
            });
        }
        top.into_sorted()
    }

    /// BM25 top-k for a query given as WordPiece token ids (repeats count).
    ///
    /// Document frequencies, document count and average length are summed over
    /// the snapshot's segments at query time (deleted documents count until
    /// merged away, as in Lucene), so scores track the corpus as it grows.
    pub fn search_bm25(
        &self,
        query_tokens: &[u32],
        k: usize,
        explain: bool,
        with_source: bool,
    ) -> Result<Vec<Hit>> {
        self.search_bm25_filtered(query_tokens, k, explain, with_source, None)
    }

    /// [`Searcher::search_bm25`] restricted to documents accepted by `filter`:
    /// the exact BM25 top-k among them. Corpus statistics (N, df, average
    /// length) stay those of the whole snapshot, as with a Lucene filter clause.
    pub fn search_bm25_filtered(
        &self,
        query_tokens: &[u32],
        k: usize,
        explain: bool,
        with_source: bool,
        filter: Option<DocFilter<'_>>,
    ) -> Result<Vec<Hit>> {
        let q = self.bm25_query(query_tokens)?;
        let p = self.snap.info.bm25;
        let avg = self.avglen();
        let mut top = TopK::new(k);
        SCRATCH.with(|sc| {
            let acc = &mut sc.borrow_mut().acc;
            for (si, ss) in self.snap.segs.iter().enumerate() {
                let seg = &*ss.seg;
                acc.clear();
                acc.resize(seg.n_docs as usize, 0.0);
                for &(t, w) in &q {
                    let r = seg.tf_start[t as usize]..seg.tf_start[t as usize + 1];
                    for &(d, f) in &seg.tf_post[r] {
                        acc[d as usize] += w * sat_tf(f, seg.doc_len[d as usize], avg, p);
                    }
                }
                let mut theta = top.theta();
                for (d, &s) in acc.iter().enumerate() {
                    if s > 0.0 && s >= theta && ss.accepts(d as u32, filter) {
                        top.push(Cand {
                            score: s,
                            seg: si as u32,
                            doc: d as u32,
                        });
                        theta = top.theta();
                    }
                }
            }
        });
        let cands = top.into_sorted();
        cands
            .into_iter()
            .map(|c| {
                let ss = &self.snap.segs[c.seg as usize];
                let explanation = explain.then(|| {
                    let mut out = Vec::new();
                    for &(t, w) in &q {
                        let r = ss.seg.tf_start[t as usize]..ss.seg.tf_start[t as usize + 1];
                        if let Ok(i) =
                            ss.seg.tf_post[r.clone()].binary_search_by_key(&c.doc, |x| x.0)
                        {
                            let dw = sat_tf(
                                ss.seg.tf_post[r.start + i].1,
                                ss.seg.doc_len[c.doc as usize],
                                avg,
                                p,
                            );
                            out.push(TokenContribution {
                                token: t,
                                query_weight: w,
                                doc_weight: dw,
                                contribution: w * dw,
                            });
                        }
                    }
                    out.sort_by(|a, b| {
                        b.contribution
                            .total_cmp(&a.contribution)
                            .then(a.token.cmp(&b.token))
                    });
                    out
                });
                Ok(Hit {
                    id: ss.seg.ids[c.doc as usize].clone(),
                    score: c.score,
                    source: if with_source {
                        Some(ss.seg.source(&ss.path, c.doc)?)
                    } else {
                        None
                    },
                    explanation,
                    addr: (c.seg, c.doc),
                })
            })
            .collect()
    }

    fn avglen(&self) -> f32 {
        let n: u64 = self.snap.segs.iter().map(|s| s.seg.n_docs as u64).sum();
        let len: u64 = self.snap.segs.iter().map(|s| s.seg.total_len).sum();
        if n == 0 || len == 0 {
            1.0
        } else {
            (len as f64 / n as f64) as f32
        }
    }

    /// BM25 query weights: (token, count × idf), idf = ln(1 + (N − df + 0.5)/(df + 0.5)).
    pub fn bm25_query(&self, query_tokens: &[u32]) -> Result<Vec<(u32, f32)>> {
        let mut ts = query_tokens.to_vec();
        ts.sort_unstable();
        let n: u64 = self.snap.segs.iter().map(|s| s.seg.n_docs as u64).sum();
        let mut out: Vec<(u32, f32)> = Vec::new();
        let mut i = 0;
        while i < ts.len() {
            let t = ts[i];
            if t >= self.snap.info.vocab {
                return Err(Error::invalid(
                    "BM25 query",
                    format!(
                        "token id {t} is outside the vocabulary (size {})",
                        self.snap.info.vocab
                    ),
                ));
            }
            let mut j = i;
            while j < ts.len() && ts[j] == t {
                j += 1;
            }
            let df: u64 = self
                .snap
                .segs
                .iter()
                .map(|s| (s.seg.tf_start[t as usize + 1] - s.seg.tf_start[t as usize]) as u64)
                .sum();
            let idf = (1.0 + (n as f64 - df as f64 + 0.5) / (df as f64 + 0.5)).ln() as f32;
            out.push((t, (j - i) as f32 * idf));
            i = j;
        }
        Ok(out)
    }

    /// Hybrid search: neural top-`window` and BM25 top-`window`, fused.
    pub fn search_hybrid(
        &self,
        vector: &[(u32, f32)],
        tokens: &[u32],
        req: &HybridRequest,
    ) -> Result<Vec<Hit>> {
        self.search_hybrid_filtered(vector, tokens, req, None)
    }

    /// [`Searcher::search_hybrid`] restricted to documents accepted by
    /// `filter`: both sub-queries retrieve their top-`window` among accepted
    /// documents (as OpenSearch applies a hybrid query's filter to every
    /// sub-query), then the fused top-k is taken.
    pub fn search_hybrid_filtered(
        &self,
        vector: &[(u32, f32)],
        tokens: &[u32],
        req: &HybridRequest,
        filter: Option<DocFilter<'_>>,
    ) -> Result<Vec<Hit>> {
        let window = req.window.max(req.k);
        let neural = self.search_filtered(
            vector,
            &SearchRequest::new(window).mode(req.neural_mode),
            filter,
        )?;
        let bm25 = self.search_bm25_filtered(tokens, window, false, false, filter)?;
        let mut fused: HashMap<(u32, u32), f32> = HashMap::new();
        match req.combination {
            HybridCombination::MinMax { weights } => {
                let wsum: f32 = weights.iter().sum();
                if wsum.partial_cmp(&0.0) != Some(Ordering::Greater)
                    || weights.iter().any(|w| !w.is_finite() || *w < 0.0)
                {
                    return Err(Error::invalid(
                        "hybrid query",
                        "weights must be ≥ 0 with a positive sum",
                    ));
                }
                for (hits, w) in [(&neural, weights[0]), (&bm25, weights[1])] {
                    let max = hits
                        .iter()
                        .map(|h| h.score)
                        .fold(f32::NEG_INFINITY, f32::max);
                    let min = hits.iter().map(|h| h.score).fold(f32::INFINITY, f32::min);
                    for h in hits.iter() {
                        let norm = if max > min {
                            (h.score - min) / (max - min)
                        } else {
                            1.0
                        };
                        *fused.entry(h.addr).or_default() += w * norm / wsum;
                    }
                }
            }
            HybridCombination::Rrf { rank_constant } => {
                if !rank_constant.is_finite() || rank_constant < 0.0 {
                    return Err(Error::invalid(
                        "hybrid query",
                        "rank_constant must be finite and ≥ 0 (usually 60)",
                    ));
                }
                for hits in [&neural, &bm25] {
                    for (r, h) in hits.iter().enumerate() {
                        *fused.entry(h.addr).or_default() += 1.0 / (rank_constant + r as f32 + 1.0);
                    }
                }
            }
        }
        let mut v: Vec<Cand> = fused
            .into_iter()
            .map(|((s, d), score)| Cand {
                score,
                seg: s,
                doc: d,
            })
            .collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        v.truncate(req.k);
        self.hits(&[], v, false, req.with_source)
    }
}

#[inline]
fn sat_tf(tf: u32, len: u32, avg: f32, p: Bm25Params) -> f32 {
    let tf = tf as f32;
    tf * (p.k1 + 1.0) / (tf + p.k1 * (1.0 - p.b + p.b * len as f32 / avg))
}

const BLOCK_DOCS: usize = 1 << DOC_BLOCK_SHIFT;

#[allow(clippy::too_many_arguments)]
fn bmp_segment(
    ss: &SnapSeg,
    si: u32,
    q: &[(u32, f32)],
    ub_q: &[(u32, f32)],
    hf: f32,
    top: &mut TopK,
    sc: &mut Scratch,
    filter: Option<DocFilter<'_>>,
) {
    let seg = &*ss.seg;
    let bm = seg.block_max();
    let nb = (seg.n_docs as usize).div_ceil(BLOCK_DOCS);
    if nb == 0 {
        return;
    }
    let ub = &mut sc.ub;
    ub.clear();
    ub.resize(nb, 0.0);
    for &(t, w) in ub_q {
        let r = bm.start[t as usize]..bm.start[t as usize + 1];
        for (&b, &m) in bm.block[r.clone()].iter().zip(&bm.max[r]) {
            ub[b as usize] += w * m;
        }
    }
    let blocks = &mut sc.blocks;
    blocks.clear();
    let cut = top.theta() * hf;
    blocks.extend(
        ub.iter()
            .enumerate()
            .filter(|(_, &u)| u > 0.0 && u > cut)
            .map(|(b, &u)| (u, b as u32)),
    );
    let desc = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    // Score the most promising blocks first to raise the threshold, then
    // sort only the blocks that can still beat it.
    const HEAD: usize = 32;
    let mut start = 0;
    if blocks.len() > HEAD * 4 {
        blocks.select_nth_unstable_by(HEAD, desc);
        blocks[..HEAD].sort_unstable_by(desc);
        for &(u, b) in blocks[..HEAD].iter() {
            if top.full() && u <= top.theta() * hf {
                break;
            }
            score_block(ss, si, q, b, top, filter);
        }
        start = HEAD;
    }
    let cut = top.theta() * hf;
    let mut rest: Vec<(f32, u32)> = blocks[start..]
        .iter()
        .copied()
        .filter(|&(u, _)| u > cut)
        .collect();
    rest.sort_unstable_by(desc);
    for (u, b) in rest {
        if top.full() && u <= top.theta() * hf {
            break;
        }
        score_block(ss, si, q, b, top, filter);
    }
}

#[inline]
fn score_block(
    ss: &SnapSeg,
    si: u32,
    q: &[(u32, f32)],
    b: u32,
    top: &mut TopK,
    filter: Option<DocFilter<'_>>,
) {
    let seg = &*ss.seg;
    let bm = seg.block_max();
    let base = b << DOC_BLOCK_SHIFT;
    let mut acc = [0f32; BLOCK_DOCS];
    let mut mask = 0u64;
    for &(t, w) in q {
        let (s, e) = (bm.start[t as usize], bm.start[t as usize + 1]);
        let Ok(i) = bm.block[s..e].binary_search(&b) else {
            continue;
        };
        let ei = s + i;
        // Blocks lie inside postings tiles: the offset's low bits are the
        // position in the block.
        for &x in &seg.post().packed[bm.pos[ei]..bm.pos[ei + 1]] {
            let l = postings::offset(x) as usize & (BLOCK_DOCS - 1);
            acc[l] += w * postings::weight(x);
            mask |= 1 << l;
        }
    }
    while mask != 0 {
        let l = mask.trailing_zeros();
        mask &= mask - 1;
        let d = base + l;
        let s = acc[l as usize];
        if s > 0.0 && (!top.full() || s >= top.theta()) && ss.accepts(d, filter) {
            top.push(Cand {
                score: s,
                seg: si,
                doc: d,
            });
        }
    }
}

/// Iterator behind [`Searcher::documents`].
struct DocumentIter<'a> {
    snap: &'a Snapshot,
    seg: usize,
    next: u32,
    cursor: Option<ForwardCursor>,
    buf: VecDeque<StoredDocument>,
    done: bool,
}

/// Documents per window; a multiple of `SOURCE_CHUNK` so chunks are decoded once.
const EXPORT_WINDOW: u32 = 32 * SOURCE_CHUNK as u32;

impl DocumentIter<'_> {
    /// Fill `buf` with the next window's live documents; false when exhausted.
    fn refill(&mut self) -> Result<bool> {
        while self.seg < self.snap.segs.len() {
            let ss = &self.snap.segs[self.seg];
            let seg = &*ss.seg;
            if self.next >= seg.n_docs {
                self.seg += 1;
                self.next = 0;
                self.cursor = None;
                continue;
            }
            let start = self.next;
            let end = (start + EXPORT_WINDOW).min(seg.n_docs);
            self.next = end;
            seg.postings()?;
            let cursor = self.cursor.get_or_insert_with(|| seg.forward_cursor());
            let fwd = seg.forward_window(cursor, start, end);
            let mut sources = Vec::new();
            for ch in (start as usize / SOURCE_CHUNK)..(end as usize).div_ceil(SOURCE_CHUNK) {
                sources.extend(seg.chunk_sources(&ss.path, ch)?);
            }
            for ((d, f), source) in (start..end).zip(fwd).zip(sources) {
                if ss.deleted(d) {
                    continue;
                }
                let tokens = (f.len > 0).then(|| {
                    f.tf.iter()
                        .flat_map(|&(t, n)| std::iter::repeat_n(t as u32, n as usize))
                        .collect()
                });
                self.buf.push_back(StoredDocument {
                    id: seg.ids[d as usize].clone(),
                    vector: f
                        .vec
                        .iter()
                        .map(|&(t, w)| (t as u32, dequantize(w)))
                        .collect(),
                    tokens,
                    source,
                });
            }
            if !self.buf.is_empty() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl Iterator for DocumentIter<'_> {
    type Item = Result<StoredDocument>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(d) = self.buf.pop_front() {
            return Some(Ok(d));
        }
        if self.done {
            return None;
        }
        match self.refill() {
            Ok(true) => self.buf.pop_front().map(Ok),
            Ok(false) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// log2 of the documents per tile of [`tiled_segment`]: the tile's f32
/// accumulator (128 KiB) stays in L2 while the postings stream through.
const TILE_SHIFT: u32 = 15;
/// Largest tile any caller may ask for (tests use smaller ones).
const MAX_TILE: usize = 1 << 16;
/// Non-essential terms' bounds may sum to at most this share of the k-th
/// score. Measured on the SciFact-fitted vectors (BENCHMARKS.md): query
/// weights barely depend on token frequency and top scores are close, so
/// MaxScore's candidate completion (binary searches) cost more than the
/// postings it saved; 0 makes every term essential (tiled term-at-a-time).
const NON_ESSENTIAL_SHARE: f32 = 0.0;
/// Relative float slack for comparing bounds summed in different orders.
const BOUND_SLACK: f32 = 1e-4;

/// Number of leading elements of the ascending `list` that are below `bound`.
///
/// Exponential search from the front: a tile's run is a small prefix of the
/// rest of the list, so this touches only cache lines the scan reads next,
/// where a binary search over the whole rest misses the cache at every probe.
fn gallop_below(list: &[u32], bound: u32) -> usize {
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
struct TileTerm {
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
        &post.packed[self.pos..self.tile_end]
    }

    /// Find this search tile's postings `pos..tile_end` (docs in `lo..hi`,
    /// inside one postings tile), skipping postings of earlier tiles left
    /// behind while the term was scored from its bound column.
    #[inline]
    fn locate(&mut self, post: &Postings, lo: u32, hi: u32) {
        if self.tile_end != UNLOCATED {
            return;
        }
        let tile = lo >> postings::TILE_SHIFT;
        while self.run < self.runs_end && post.run_tile[self.run] < tile {
            self.run += 1;
        }
        if self.run == self.runs_end || post.run_tile[self.run] != tile {
            self.tile_end = self.pos;
            return;
        }
        let (base, r) = post.run(self.run);
        // Packed postings compare like their offsets: `p < off << 16` iff `offset(p) < off`.
        let from = self.pos.max(r.start);
        let start = from + gallop_below(&post.packed[from..r.end], (lo - base) << 16);
        let end = if hi - base >= 1 << postings::TILE_SHIFT {
            r.end
        } else {
            start + gallop_below(&post.packed[start..r.end], (hi - base) << 16)
        };
        self.base = base;
        self.pos = start;
        self.tile_end = end;
    }
}

struct TileParams<'a, 'f> {
    q: &'a [(u32, f32)],
    gen: &'a [bool],
    heap_factor: f32,
    filter: Option<DocFilter<'f>>,
    /// log2 of the tile width (`TILE_SHIFT`; smaller in tests to cross many tiles).
    tile_shift: u32,
    /// Score frequent tokens from their bound columns (see [`BOUND_COLUMNS_MAX_K`]).
    bound_columns: bool,
}

/// Largest k for which frequent tokens are scored from their bound columns.
/// Every document whose bound reaches the top k is rescored from exact
/// weights (~0.5–1 µs each), and a larger k means more of them: on the 1M
/// fitted bench, columns win up to k ≈ 500 (k 300: 2.4–3.4 ms against
/// 3.2–3.5 without; k 500: 3.0–3.1 against 3.3–3.4; k 1000: 4.8–7.3
/// against 4.0–5.2). Above it the tokens' postings are scattered like the
/// others'.
const BOUND_COLUMNS_MAX_K: usize = 512;

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
                    let at = postings::guess_in_run(run, d.wrapping_sub(tm.base));
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
                postings::find_in_run(tm.tile_run(self.ss.seg.post()), d.wrapping_sub(tm.base))
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
/// Documents are processed in tiles of 2^`TILE_SHIFT` ids so the dense
/// accumulator stays in L2. Per tile, with θ the current k-th score, the
/// lowest-bound terms whose bounds sum to at most θ are *non-essential*: a
/// document matching only them cannot beat θ, so only the essential terms
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
fn tiled_segment(ss: &SnapSeg, si: u32, p: &TileParams<'_, '_>, top: &mut TopK, sc: &mut Scratch) {
    let seg = &*ss.seg;
    let n = seg.n_docs;
    if n == 0 {
        return;
    }
    let terms = &mut sc.terms;
    terms.clear();
    for (&(t, w), &gen) in p.q.iter().zip(p.gen) {
        let runs = seg.post().runs(t);
        if !runs.is_empty() {
            let s = seg.post().term_start[t as usize];
            terms.push(TileTerm {
                token: t,
                w,
                ub: w * seg.term_max[t as usize],
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
        seg.dense()
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
        tile <= MAX_TILE && p.tile_shift <= postings::TILE_SHIFT,
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
        // Split terms: non-essential while the bounds' sum stays below the bar.
        essential.clear();
        non_essential.clear();
        let mut ne_ub = 0f32;
        for &i in &by_ub {
            let tm = &terms[i];
            if !top.full() {
                // No bar yet: score everything exactly.
                essential.push(i);
            } else if !tm.gen {
                non_essential.push(i);
            } else if (ne_ub + tm.ub) * (1.0 + BOUND_SLACK) < bar * NON_ESSENTIAL_SHARE {
                ne_ub += tm.ub;
                non_essential.push(i);
            } else {
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
                    let at = (postings::offset(x) - skip) as usize & (MAX_TILE - 1);
                    acc[at] += w * postings::weight(x);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::quantize;
    use crate::segment::DocRecord;
    use crate::synth::{Synth, SynthParams};

    fn snapshot(segs: Vec<Vec<Vec<(u32, f32)>>>, deleted_every: u32) -> Searcher {
        let mut out = Vec::new();
        for (si, docs) in segs.into_iter().enumerate() {
            let recs: Vec<DocRecord> = docs
                .into_iter()
                .enumerate()
                .map(|(i, v)| DocRecord {
                    id: format!("s{si}-d{i}"),
                    vec: v
                        .iter()
                        .map(|&(t, w)| (t as u16, quantize(w)))
                        .filter(|p| p.1 != 0)
                        .collect(),
                    tf: Vec::new(),
                    len: 0,
                    source: Vec::new(),
                })
                .collect();
            let seg = Segment::build(&recs[..], 30_522);
            let mut del = Bitset::new(seg.n_docs);
            for d in (0..seg.n_docs).step_by(deleted_every as usize) {
                del.set(d);
            }
            out.push(SnapSeg {
                seg: Arc::new(seg),
                del: Some(Arc::new(del)),
                path: PathBuf::from(format!("seg{si}")),
            });
        }
        Searcher::new(Snapshot {
            segs: out,
            info: Arc::new(SnapInfo {
                model: "m".into(),
                metadata: serde_json::Value::Null,
                vocab: 30_522,
                bm25: Bm25Params::default(),
            }),
        })
    }

    fn tiled(
        s: &Searcher,
        q: &[(u32, f32)],
        k: usize,
        shift: u32,
        f: Option<DocFilter<'_>>,
    ) -> Vec<Cand> {
        let gen = vec![true; q.len()];
        let mut top = TopK::new(k);
        let mut sc = Scratch::default();
        for (si, ss) in s.snap.segs.iter().enumerate() {
            let p = TileParams {
                q,
                gen: &gen,
                heap_factor: 1.0,
                filter: f,
                tile_shift: shift,
                bound_columns: k <= BOUND_COLUMNS_MAX_K,
            };
            tiled_segment(ss, si as u32, &p, &mut top, &mut sc);
        }
        top.into_sorted()
    }

    /// Results as (score bits, segment, doc): equal keys mean bit-identical results.
    fn key(c: &[Cand]) -> Vec<(u32, u32, u32)> {
        c.iter()
            .map(|c| (c.score.to_bits(), c.seg, c.doc))
            .collect()
    }

    /// Tiled search at every tile width in `shifts` and every k in `ks`, with
    /// and without the filter, equals brute force bit for bit.
    fn assert_tiled_equals_brute(
        s: &Searcher,
        q: &[(u32, f32)],
        ks: &[usize],
        shifts: &[u32],
        accept: DocFilter<'_>,
    ) {
        for &k in ks {
            let want = key(&s.run_brute(q, k, None));
            let want_f = key(&s.run_brute(q, k, Some(accept)));
            for &shift in shifts {
                assert_eq!(
                    key(&tiled(s, q, k, shift, None)),
                    want,
                    "shift {shift} k {k}"
                );
                assert_eq!(
                    key(&tiled(s, q, k, shift, Some(accept))),
                    want_f,
                    "filtered, shift {shift} k {k}"
                );
            }
        }
    }

    /// The test corpora are far smaller than a production tile, so small
    /// tiles make the pruning (non-essential terms, candidates, skipped
    /// tiles) run across many tiles. Results must equal brute force exactly:
    /// the top-k under the (score, position) order is unique.
    #[test]
    fn tiled_maxscore_equals_brute_force_across_many_tiles() {
        let mut g = Synth::new(SynthParams::default(), 11);
        let segs: Vec<Vec<Vec<(u32, f32)>>> = [1500usize, 900, 40]
            .iter()
            .map(|&n| (0..n).map(|_| g.doc()).collect())
            .collect();
        let s = snapshot(segs, 13);
        let accept = |id: &str| !id.len().is_multiple_of(3);
        for _ in 0..30 {
            let q = s.canon(&g.query()).unwrap();
            assert_tiled_equals_brute(&s, &q, &[1, 10, 50], &[3, 6, 9, 15], &accept);
        }
    }

    /// A segment of several postings tiles: search tiles of every width up
    /// to a postings tile find each term's run through the tile directory
    /// (with dense columns for the frequent tokens), and every exact mode
    /// equals brute force bit for bit.
    #[test]
    fn search_across_postings_tiles_equals_brute_force() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(17);
        // Skewed token ids: small ids are frequent (dense columns), large ones rare.
        let token = |rng: &mut rand::rngs::StdRng, p: i32| {
            let u: f64 = rng.random();
            (u.powi(p) * 3000.0) as u32
        };
        let n = 2 * (1usize << postings::TILE_SHIFT) + 5000;
        let docs: Vec<Vec<(u32, f32)>> = (0..n)
            .map(|_| {
                let mut v: Vec<(u32, f32)> = (0..12)
                    .map(|_| (token(&mut rng, 4), rng.random_range(0.05f32..3.0)))
                    .collect();
                v.sort_by_key(|p| p.0);
                v.dedup_by_key(|p| p.0);
                v
            })
            .collect();
        let s = snapshot(vec![docs], 11);
        assert!(s.snap.segs[0].seg.dense().len() > 3);
        let accept = |id: &str| !id.ends_with('7');
        for _ in 0..5 {
            let q: Vec<(u32, f32)> = (0..10)
                .map(|_| (token(&mut rng, 2), rng.random_range(0.1f32..2.0)))
                .collect();
            let q = s.canon(&q).unwrap();
            assert_tiled_equals_brute(&s, &q, &[10], &[12, 15, 16], &accept);
            let want = key(&s.run_brute(&q, 10, None));
            assert_eq!(key(&s.run_taat(&q, 10, None)), want);
            assert_eq!(key(&s.run_maxscore(&q, 10, None)), want);
            assert_eq!(key(&s.run_bmp(&q, &q, 1.0, 10, None)), want);
        }
    }

    #[test]
    fn gallop_below_matches_partition_point() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for len in [0usize, 1, 2, 3, 5, 64, 1000] {
            let mut v: Vec<u32> = (0..len).map(|_| rng.random_range(0..5000)).collect();
            v.sort_unstable();
            for bound in [0u32, 1, 17, 2500, 4999, 5000, u32::MAX] {
                assert_eq!(gallop_below(&v, bound), v.partition_point(|&d| d < bound));
            }
        }
    }

    /// A segment large enough for dense columns: frequent tokens are scored
    /// from their columns, the rest from postings, and the scores still equal
    /// brute force bit for bit (also with deletions and a filter).
    #[test]
    fn dense_columns_keep_tiled_search_exact() {
        let mut g = Synth::new(SynthParams::default(), 5);
        let n = crate::segment::DENSE_MIN_DOCS as usize + 1000;
        let s = snapshot(vec![(0..n).map(|_| g.doc()).collect()], 7);
        let cols = s.snap.segs[0].seg.dense();
        assert!(
            cols.len() > 20,
            "expected dense columns, got {}",
            cols.len()
        );
        let accept = |id: &str| !id.ends_with('3');
        // A memory cap keeps the most frequent tokens' columns, and search
        // stays exact with the rest scored from postings.
        {
            let seg = &s.snap.segs[0].seg;
            let n = seg.n_docs as u64;
            // Planned twice, the columns are the same.
            let again = DenseColumns::plan(seg, u64::MAX);
            assert_eq!(again.len(), cols.len());
            for t in 0..30_522u32 {
                assert_eq!(
                    again.column(seg.post(), t),
                    cols.column(seg.post(), t),
                    "token {t}"
                );
                // A code bounds the weight from above and is 0 only where
                // the token is absent; the block positions find the exact
                // weight.
                if let Some(col) = cols.column(seg.post(), t) {
                    for d in 0..seg.n_docs {
                        let exact = seg.weight(t, d);
                        assert_eq!(col.exact(d), exact, "token {t} doc {d}");
                        let w = exact.map_or(0.0, dequantize);
                        assert_eq!(col.codes[d as usize] == 0, exact.is_none());
                        assert!(
                            col.bound(d) >= w,
                            "token {t} doc {d}: {} < {w}",
                            col.bound(d)
                        );
                        assert!(col.bound(d) - w <= col.step * 1.001, "token {t} doc {d}");
                    }
                }
            }
            let capped = DenseColumns::plan(seg, 5 * DenseColumns::column_bytes(n as usize) + 1);
            assert_eq!(capped.len(), 5);
            let df = |t: u32| seg.post().df(t);
            let min_kept = (0..30_522u32)
                .filter(|&t| capped.has(t))
                .map(df)
                .min()
                .unwrap();
            let max_dropped = (0..30_522u32)
                .filter(|&t| cols.has(t) && !capped.has(t))
                .map(df)
                .max()
                .unwrap();
            assert!(min_kept >= max_dropped);
            assert_eq!(DenseColumns::plan(seg, 0).len(), 0);
            let mut tiny = Synth::new(SynthParams::default(), 5);
            let s2 = snapshot(vec![(0..n).map(|_| tiny.doc()).collect()], 7);
            assert!(s2.snap.segs[0]
                .seg
                .dense
                .set(DenseColumns::plan(
                    &s2.snap.segs[0].seg,
                    5 * DenseColumns::column_bytes(n as usize),
                ))
                .is_ok());
            for _ in 0..6 {
                let q = s2.canon(&g.query()).unwrap();
                assert_tiled_equals_brute(&s2, &q, &[10], &[15], &accept);
            }
        }
        let mut dense_terms = 0;
        for _ in 0..12 {
            let q = s.canon(&g.query()).unwrap();
            dense_terms += q.iter().filter(|p| cols.has(p.0)).count();
            assert_tiled_equals_brute(&s, &q, &[1, 10, 100, 300, 600], &[9, 15], &accept);
        }
        assert!(
            dense_terms > 12,
            "queries used only {dense_terms} dense tokens"
        );

        // Approximate mode (candidates completed from dense columns and
        // postings): every returned score is the document's exact score, and
        // with all tokens generating candidates it is the exact top-k.
        for _ in 0..8 {
            let q = s.canon(&g.query()).unwrap();
            let exact = key(&s.run_brute(&q, 10, None));
            assert_eq!(key(&s.run_tiled(&q, 10, None, 1.0, q.len())), exact);
            for (top_n, hf) in [(3usize, 1.0f32), (6, 0.9), (10, 0.8)] {
                let got = s.run_tiled(&q, 10, None, hf, top_n);
                assert_eq!(got.len(), 10.min(exact.len()));
                for c in &got {
                    assert_eq!(c.score.to_bits(), s.dot(&q, c.seg, c.doc).to_bits());
                }
                assert!(got.windows(2).all(|w| w[0].score >= w[1].score));
            }
        }
    }
}
