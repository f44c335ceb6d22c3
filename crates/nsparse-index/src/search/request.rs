//! What a search asks for.

/// A predicate on a document's `_id`: only documents for which it returns true can be hits.
///
/// Filtered searches return the exact top-k among the documents that pass
/// (for exact modes), not a filtered top-k of the unfiltered results. The
/// predicate is called lazily, only for documents whose score could enter
/// the top k, so a cheap predicate (e.g. a hash-set lookup) adds little.
pub type DocFilter<'a> = &'a (dyn Fn(&str) -> bool + Sync);

/// How to run a sparse-vector query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SearchMode {
    /// Exact top-k with the default algorithm: tiled term-at-a-time with bound columns (chosen by
    /// measurement, see crate docs and BENCHMARKS.md).
    Exact,
    /// Exact top-k by plain term-at-a-time over a dense accumulator (no
    /// pruning; the previous default, kept as a benchmark baseline).
    #[cfg(feature = "baselines")]
    ExactTaat,
    /// Exact top-k, term-at-a-time MaxScore (benchmark alternative).
    #[cfg(feature = "baselines")]
    ExactMaxScore,
    /// Exact top-k by block-max pruning over 64-doc blocks (BMP-style; benchmark alternative).
    #[cfg(feature = "baselines")]
    ExactBlockMax,
    /// Score every live document through the forward index (testing/verification).
    BruteForce,
    /// Approximate top-k (the tiled search with relaxed pruning; returned scores are exact).
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

/// What a search looks for; its variant decides how documents are scored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Query<'q> {
    /// A sparse vector of `(token, weight)`: documents scored by dot product
    /// with the algorithm of [`SearchRequest::mode`].
    Neural(&'q [(u32, f32)]),
    /// A token-id sequence: documents scored by BM25 (repeated tokens count
    /// as often as they occur).
    Bm25(&'q [u32]),
    /// Both: the neural and the BM25 top hits fused as
    /// [`SearchRequest::fusion`] says (as in OpenSearch's hybrid query).
    Hybrid {
        /// The neural sub-query.
        vector: &'q [(u32, f32)],
        /// The BM25 sub-query.
        tokens: &'q [u32],
    },
}

/// A search request: how many hits, by which algorithm, among which
/// documents, and what to attach to them.
///
/// Settings that do not apply to the query are refused with
/// [`Error::InvalidInput`](crate::Error::InvalidInput) rather than ignored:
/// a neural `mode` other than [`SearchMode::Exact`] on a BM25 query,
/// `fusion` on a non-hybrid query, `explain` on a hybrid query.
#[derive(Clone, Copy)]
pub struct SearchRequest<'f> {
    /// Number of hits.
    pub k: usize,
    /// Algorithm of the neural query (alone or in a hybrid).
    pub mode: SearchMode,
    /// How a hybrid query fuses its sub-queries (`None`: [`Fusion::default`]).
    pub fusion: Option<Fusion>,
    /// Only documents whose `_id` it accepts can be hits (`None`: every live document).
    ///
    /// Every exact mode returns the exact top-k among accepted documents
    /// (same ids, order and scores as brute force over them): rejected
    /// documents never enter the top-k heap, so pruning thresholds rise only
    /// with accepted documents. Approximate and two-phase modes apply the
    /// filter the same way, so their recall is relative to the filtered exact
    /// top-k. BM25 keeps the corpus statistics of the whole snapshot (as a
    /// Lucene filter clause does); a hybrid query filters both sub-queries.
    pub filter: Option<DocFilter<'f>>,
    /// Attach per-token explanations to hits (neural and BM25 queries).
    pub explain: bool,
    /// Attach stored sources to hits.
    pub with_source: bool,
}

impl std::fmt::Debug for SearchRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchRequest")
            .field("k", &self.k)
            .field("mode", &self.mode)
            .field("fusion", &self.fusion)
            .field("filter", &self.filter.map(|_| "…"))
            .field("explain", &self.explain)
            .field("with_source", &self.with_source)
            .finish()
    }
}

impl<'f> SearchRequest<'f> {
    /// Top-`k` by the exact algorithm, every live document, no explanation,
    /// no source.
    pub fn new(k: usize) -> Self {
        SearchRequest {
            k,
            mode: SearchMode::Exact,
            fusion: None,
            filter: None,
            explain: false,
            with_source: false,
        }
    }
    /// Set the neural algorithm.
    pub fn mode(mut self, mode: SearchMode) -> Self {
        self.mode = mode;
        self
    }
    /// Set a hybrid query's fusion.
    pub fn fusion(mut self, fusion: Fusion) -> Self {
        self.fusion = Some(fusion);
        self
    }
    /// Restrict hits to documents whose `_id` `filter` accepts.
    pub fn filter(mut self, filter: DocFilter<'f>) -> Self {
        self.filter = Some(filter);
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

/// Score fusion of a hybrid [`Query`], as in OpenSearch's hybrid query.
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

/// How a hybrid query fuses its neural and BM25 hits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fusion {
    /// Score combination.
    pub combination: HybridCombination,
    /// Hits retrieved from each sub-query before fusion (`None`: `max(k, 100)`;
    /// never fewer than `k`).
    pub window: Option<usize>,
}

impl Default for Fusion {
    /// Min-max normalisation with weights 0.5/0.5, window `max(k, 100)`.
    fn default() -> Self {
        Fusion {
            combination: HybridCombination::MinMax {
                weights: [0.5, 0.5],
            },
            window: None,
        }
    }
}
