//! Hybrid search: neural and BM25 top-k fused.

use std::cmp::Ordering;
use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::search::hit::Hit;
use crate::search::request::{HybridCombination, SearchRequest};
use crate::search::top_k::Cand;
use crate::search::Searcher;

impl Searcher {
    /// Hybrid search: neural top-`window` and BM25 top-`window`, each among
    /// the documents `req.filter` accepts (as OpenSearch applies a hybrid
    /// query's filter to every sub-query), fused; then the top `req.k`.
    pub(crate) fn hybrid(
        &self,
        vector: &[(u32, f32)],
        tokens: &[u32],
        req: &SearchRequest<'_>,
    ) -> Result<Vec<Hit>> {
        let fusion = req.fusion.unwrap_or_default();
        let window = fusion.window.unwrap_or(req.k.max(100)).max(req.k);
        let sub = SearchRequest {
            k: window,
            mode: req.mode,
            fusion: None,
            filter: req.filter,
            explain: false,
            with_source: false,
        };
        let neural = self.neural(vector, &sub)?;
        let bm25 = self.bm25(tokens, &sub)?;
        let mut fused: HashMap<(u32, u32), f32> = HashMap::new();
        match fusion.combination {
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
