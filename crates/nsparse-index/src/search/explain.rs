//! Per-token explanations and the canonical dot product.

use crate::error::Result;
use crate::quantize::dequantize;
use crate::search::hit::TokenContribution;
use crate::search::Searcher;

impl Searcher {
    pub(crate) fn explain_doc(
        &self,
        q: &[(u32, f32)],
        seg: u32,
        doc: u32,
    ) -> Vec<TokenContribution> {
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
        by_contribution(&mut out);
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
    pub(crate) fn dot(&self, q: &[(u32, f32)], seg: u32, doc: u32) -> f32 {
        let sg = &self.snap.segs[seg as usize].seg;
        let mut s = 0f32;
        for &(t, w) in q {
            if let Some(dw) = sg.weight(t, doc) {
                s += w * dequantize(dw);
            }
        }
        s
    }
}

/// Orders an explanation: largest contribution first, ties by token id.
pub(crate) fn by_contribution(contributions: &mut [TokenContribution]) {
    contributions.sort_by(|a, b| {
        b.contribution
            .total_cmp(&a.contribution)
            .then(a.token.cmp(&b.token))
    });
}
