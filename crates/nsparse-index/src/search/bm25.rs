//! BM25 over the segments' term frequencies.

use crate::error::{Error, Result};
use crate::schema::Bm25Params;
use crate::search::explain::by_contribution;
use crate::search::hit::{Hit, TokenContribution};
use crate::search::request::SearchRequest;
use crate::search::tiled::SCRATCH;
use crate::search::top_k::TopK;
use crate::search::Searcher;

impl Searcher {
    /// BM25 top-k for a query given as WordPiece token ids (repeats count),
    /// the exact BM25 top-k among the documents `req.filter` accepts.
    ///
    /// Document frequencies, document count and average length are summed over
    /// the whole snapshot's segments at query time (deleted documents count
    /// until merged away, as in Lucene; a filter does not change them, as
    /// with a Lucene filter clause), so scores track the corpus as it grows.
    pub(crate) fn bm25(&self, query_tokens: &[u32], req: &SearchRequest<'_>) -> Result<Vec<Hit>> {
        let (k, explain, with_source, filter) = (req.k, req.explain, req.with_source, req.filter);
        let q = self.bm25_query(query_tokens)?;
        let p = self.snap.info.bm25;
        let avg = self.avglen();
        let mut top = TopK::new(k);
        SCRATCH.with(|sc| {
            let acc = &mut sc.borrow_mut().acc;
            for (si, ss) in self.snap.segs.iter().enumerate() {
                let seg = &*ss.seg;
                acc.clear();
                acc.resize(seg.n_docs() as usize, 0.0);
                for &(t, w) in &q {
                    for &(d, f) in seg.bm25_postings(t) {
                        acc[d as usize] += w * sat_tf(f, seg.doc_len(d), avg, p);
                    }
                }
                top.push_accumulated(si as u32, acc, |d| ss.accepts(d, filter));
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
                        let list = ss.seg.bm25_postings(t);
                        if let Ok(i) = list.binary_search_by_key(&c.doc, |x| x.0) {
                            let dw = sat_tf(list[i].1, ss.seg.doc_len(c.doc), avg, p);
                            out.push(TokenContribution {
                                token: t,
                                query_weight: w,
                                doc_weight: dw,
                                contribution: w * dw,
                            });
                        }
                    }
                    by_contribution(&mut out);
                    out
                });
                self.hit(&c, with_source, explanation)
            })
            .collect()
    }

    pub(crate) fn avglen(&self) -> f32 {
        let n: u64 = self.snap.segs.iter().map(|s| s.seg.n_docs() as u64).sum();
        let len: u64 = self.snap.segs.iter().map(|s| s.seg.total_len()).sum();
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
        let n: u64 = self.snap.segs.iter().map(|s| s.seg.n_docs() as u64).sum();
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
            let df: u64 = self.snap.segs.iter().map(|s| s.seg.bm25_df(t) as u64).sum();
            let idf = (1.0 + (n as f64 - df as f64 + 0.5) / (df as f64 + 0.5)).ln() as f32;
            out.push((t, (j - i) as f32 * idf));
            i = j;
        }
        Ok(out)
    }
}

#[inline]
fn sat_tf(tf: u32, len: u32, avg: f32, p: Bm25Params) -> f32 {
    let tf = tf as f32;
    tf * (p.k1 + 1.0) / (tf + p.k1 * (1.0 - p.b + p.b * len as f32 / avg))
}
