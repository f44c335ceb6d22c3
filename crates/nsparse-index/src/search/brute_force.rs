//! Brute force over every live document (the test oracle).

use crate::search::request::DocFilter;
use crate::search::top_k::{Cand, TopK};
use crate::search::Searcher;

impl Searcher {
    pub(crate) fn run_brute(
        &self,
        q: &[(u32, f32)],
        k: usize,
        filter: Option<DocFilter<'_>>,
    ) -> Vec<Cand> {
        let mut top = TopK::new(k);
        for (si, ss) in self.snap.segs.iter().enumerate() {
            for d in 0..ss.seg.n_docs() {
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
}
