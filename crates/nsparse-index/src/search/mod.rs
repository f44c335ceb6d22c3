//! Searching a snapshot: exact top-k (block-max pruning, term-at-a-time,
//! brute force), approximate top-k, two-phase, BM25, hybrid and explanations.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::quantize::dequantize;
use crate::search::documents::DocumentIter;
use crate::search::snapshot::Snapshot;
use crate::search::top_k::Cand;

#[cfg(feature = "baselines")]
mod baselines;
mod bm25;
mod brute_force;
mod documents;
mod explain;
mod hit;
mod hybrid;
mod request;
pub(crate) mod snapshot;
#[cfg(test)]
mod tests;
mod tiled;
mod top_k;
mod two_phase;

pub use self::hit::{Hit, StoredDocument, TokenContribution};
pub use self::request::{DocFilter, Fusion, HybridCombination, Query, SearchMode, SearchRequest};
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

    /// Ids are below this: the fixed vocabulary's size, or the number of feature names the
    /// open vocabulary had at this snapshot.
    pub fn vocab_size(&self) -> u32 {
        self.snap.info.vocab
    }

    /// Whether the index keeps its own feature dictionary (an open vocabulary); otherwise
    /// its ids are a model's token ids and the names belong to the model.
    pub fn has_open_vocabulary(&self) -> bool {
        self.snap.info.features.is_some()
    }

    /// The id of feature `name` in this snapshot (`None` for an unknown name, a name added
    /// after the snapshot, or a fixed vocabulary).
    pub fn feature_id(&self, name: &str) -> Option<u32> {
        self.snap
            .info
            .features
            .as_ref()?
            .id_below(name, self.snap.info.vocab)
    }

    /// The name of feature `id` (open vocabularies; `None` otherwise or for an unknown id).
    pub fn feature_name(&self, id: u32) -> Option<std::sync::Arc<str>> {
        if id >= self.snap.info.vocab {
            return None;
        }
        self.snap.info.features.as_ref()?.name(id)
    }

    /// A query keyed by feature names, as ids of this snapshot's open vocabulary: unknown
    /// names are dropped, since no document has them (OpenSearch's `rank_features`
    /// semantics), as are zero weights; repeated names are summed by the search.
    ///
    /// Errors: [`Error::InvalidInput`] if the index has a fixed vocabulary (map names with
    /// its model's tokenizer) or a weight is negative or not finite (naming the feature).
    pub fn resolve_features<'a>(
        &self,
        named: impl IntoIterator<Item = (&'a str, f32)>,
    ) -> Result<Vec<(u32, f32)>> {
        let Some(dict) = &self.snap.info.features else {
            return Err(crate::index::fixed_vocabulary_error(self.snap.info.vocab));
        };
        let mut out = Vec::new();
        for (name, w) in named {
            if !w.is_finite() || w < 0.0 {
                return Err(Error::invalid(
                    "query",
                    format!("weight {w} of feature {name:?} must be finite and ≥ 0"),
                ));
            }
            if let Some(id) = dict.id_below(name, self.snap.info.vocab) {
                out.push((id, w));
            }
        }
        Ok(out)
    }

    /// Number of live documents in this snapshot.
    pub fn num_docs(&self) -> u64 {
        self.snap
            .segs
            .iter()
            .map(|s| (s.seg.n_docs() - s.del.as_ref().map_or(0, |d| d.count())) as u64)
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

    pub(crate) fn find(&self, id: &str) -> Option<(u32, u32)> {
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
        DocumentIter::new(&self.snap)
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
                .map(|(t, w)| (t, dequantize(w)))
                .collect(),
        ))
    }

    /// Load every segment's neural postings that is still on disk (a
    /// segment just built by this process; see `Segment::build_and_write`),
    /// so the search code after it may read them.
    pub(crate) fn load_postings(&self) -> Result<()> {
        for s in &self.snap.segs {
            s.seg.postings()?;
        }
        Ok(())
    }

    /// Validate a query: tokens in vocabulary, weights finite and ≥ 0; duplicate
    /// tokens are summed, zero weights dropped; sorted by token.
    pub(crate) fn canon(&self, query: &[(u32, f32)]) -> Result<Vec<(u32, f32)>> {
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

    /// The top `req.k` documents for `query`, best first, among those
    /// `req.filter` accepts (see [`Query`] and [`SearchRequest`]).
    ///
    /// Neural scores are computed in f32 over the quantized document weights,
    /// summing over query tokens in ascending token order, so every exact mode
    /// returns the same scores as brute force bit for bit. BM25 weights follow
    /// the snapshot's corpus statistics (see the crate docs); a hybrid score
    /// is the fusion of the two. Ties are broken by segment then document
    /// order. Documents with score 0 are never returned (neural, BM25).
    ///
    /// Errors: [`Error::InvalidInput`] for a token outside the vocabulary, a
    /// negative or non-finite weight, invalid mode or fusion parameters, or a
    /// setting that does not apply to the query (see [`SearchRequest`]).
    pub fn search(&self, query: Query<'_>, req: &SearchRequest<'_>) -> Result<Vec<Hit>> {
        if req.fusion.is_some() && !matches!(query, Query::Hybrid { .. }) {
            return Err(Error::invalid(
                "search request",
                "fusion applies to hybrid queries only; leave it unset",
            ));
        }
        match query {
            Query::Neural(vector) => self.neural(vector, req),
            Query::Bm25(tokens) => {
                if req.mode != SearchMode::Exact {
                    return Err(Error::invalid(
                        "search request",
                        "the mode is the neural algorithm; a BM25 query is always exact, leave it at SearchMode::Exact",
                    ));
                }
                self.bm25(tokens, req)
            }
            Query::Hybrid { vector, tokens } => {
                if req.explain {
                    return Err(Error::invalid(
                        "search request",
                        "hybrid hits carry no explanation; search the neural or BM25 query alone to explain it",
                    ));
                }
                self.hybrid(vector, tokens, req)
            }
        }
    }

    /// Neural search of `query` (sparse `(token, weight)`), as `req.mode` says.
    pub(crate) fn neural(&self, query: &[(u32, f32)], req: &SearchRequest<'_>) -> Result<Vec<Hit>> {
        let q = self.canon(query)?;
        self.load_postings()?;
        let f = req.filter;
        let cands = match req.mode {
            SearchMode::Exact => self.run_tiled(&q, req.k, f, 1.0, usize::MAX),
            #[cfg(feature = "baselines")]
            SearchMode::ExactTaat => self.run_taat(&q, req.k, f),
            #[cfg(feature = "baselines")]
            SearchMode::ExactMaxScore => self.run_maxscore(&q, req.k, f),
            #[cfg(feature = "baselines")]
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

    pub(crate) fn hits(
        &self,
        q: &[(u32, f32)],
        cands: Vec<Cand>,
        explain: bool,
        with_source: bool,
    ) -> Result<Vec<Hit>> {
        cands
            .into_iter()
            .map(|c| {
                let explanation = explain.then(|| self.explain_doc(q, c.seg, c.doc));
                self.hit(&c, with_source, explanation)
            })
            .collect()
    }

    /// The hit of candidate `c`: its `_id`, score, explanation, and stored source when asked.
    pub(crate) fn hit(
        &self,
        c: &Cand,
        with_source: bool,
        explanation: Option<Vec<TokenContribution>>,
    ) -> Result<Hit> {
        let ss = &self.snap.segs[c.seg as usize];
        Ok(Hit {
            id: ss.seg.ids()[c.doc as usize].clone(),
            score: c.score,
            source: if with_source {
                Some(ss.seg.source(&ss.path, c.doc)?)
            } else {
                None
            },
            explanation,
            addr: (c.seg, c.doc),
        })
    }
}
