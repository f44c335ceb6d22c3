//! OpenSearch's two-phase search.

use crate::search::request::DocFilter;
use crate::search::top_k::{Cand, TopK};
use crate::search::Searcher;

impl Searcher {
    pub(crate) fn run_two_phase(
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
}
