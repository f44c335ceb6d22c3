//! Documents recovered from the postings: forward windows, vectors, merge records.

use std::path::Path;

use crate::error::Result;
use crate::segment::{DocRecord, Segment};

/// Per-token read positions for [`Segment::forward_window`].
pub(crate) struct ForwardCursor {
    /// Per token: its current tile run and position in `Postings::packed`.
    run: Vec<usize>,
    post: Vec<usize>,
    tf: Vec<usize>,
}

/// One document's data recovered from the inverted postings.
pub(crate) struct ForwardDoc {
    /// (token, quantized weight), tokens ascending.
    pub vec: Vec<(u32, u16)>,
    /// BM25 (token, term frequency), tokens ascending.
    pub tf: Vec<(u32, u32)>,
    /// BM25 document length (number of tokens).
    pub len: u32,
}

impl Segment {
    /// Start reading documents' forward data in doc-id order (see [`Segment::forward_window`]).
    pub(crate) fn forward_cursor(&self) -> ForwardCursor {
        let v = self.vocab as usize;
        ForwardCursor {
            run: (0..v as u32).map(|t| self.post().first_run(t)).collect(),
            post: (0..v as u32).map(|t| self.post().term_start(t)).collect(),
            tf: self.tf_start[..v].to_vec(),
        }
    }

    /// Vectors and term frequencies of docs `start..end`, tokens ascending,
    /// by advancing one cursor per token: O(vocabulary + postings read) per
    /// call instead of a binary search per (token, doc). Windows must be
    /// requested in ascending, non-overlapping order from one cursor.
    pub(crate) fn forward_window(
        &self,
        cur: &mut ForwardCursor,
        start: u32,
        end: u32,
    ) -> Vec<ForwardDoc> {
        let mut out: Vec<ForwardDoc> = (start..end)
            .map(|d| ForwardDoc {
                vec: Vec::new(),
                tf: Vec::new(),
                len: self.doc_len[d as usize],
            })
            .collect();
        for t in 0..self.vocab as usize {
            let runs_end = self.post().first_run(t as u32 + 1);
            let (ri, p) = (&mut cur.run[t], &mut cur.post[t]);
            while *ri < runs_end {
                let (base, r) = self.post().run(*ri);
                if base >= end {
                    break;
                }
                while *p < r.end {
                    let x = self.post().packed()[*p];
                    let d = base + crate::postings::offset(x);
                    if d >= end {
                        break;
                    }
                    if d >= start {
                        out[(d - start) as usize]
                            .vec
                            .push((t as u32, crate::postings::weight_bits(x)));
                    }
                    *p += 1;
                }
                if *p < r.end {
                    break;
                }
                *ri += 1;
            }
            let (p, pe) = (&mut cur.tf[t], self.tf_start[t + 1]);
            while *p < pe && self.tf_post[*p].0 < end {
                let (d, f) = self.tf_post[*p];
                if d >= start {
                    out[(d - start) as usize].tf.push((t as u32, f));
                }
                *p += 1;
            }
        }
        out
    }

    /// Quantized vector of `doc`, tokens ascending (scans the vocabulary: slow path).
    pub(crate) fn doc_vector(&self, doc: u32) -> Vec<(u32, u16)> {
        (0..self.vocab)
            .filter_map(|t| self.weight(t, doc).map(|w| (t, w)))
            .collect()
    }

    /// All documents' quantized vectors, by inverting the postings (merge-time only).
    pub(crate) fn all_vectors(&self) -> Vec<Vec<(u32, u16)>> {
        let mut out = vec![Vec::new(); self.n_docs as usize];
        for t in 0..self.vocab {
            for (d, w) in self.post().iter(t) {
                out[d as usize].push((t, w));
            }
        }
        out
    }

    /// BM25 term frequencies of `doc` (token, tf), by scanning postings (merge-time only).
    pub(crate) fn all_tfs(&self) -> Vec<Vec<(u32, u32)>> {
        let mut out = vec![Vec::new(); self.n_docs as usize];
        for t in 0..self.vocab as usize {
            for &(d, f) in &self.tf_post[self.tf_start[t]..self.tf_start[t + 1]] {
                out[d as usize].push((t as u32, f));
            }
        }
        out
    }

    /// Reconstruct all documents (for merging). Sources are decompressed.
    pub(crate) fn records(
        &self,
        path: &Path,
        keep: impl Fn(u32) -> bool,
    ) -> Result<Vec<DocRecord>> {
        self.postings()?;
        let tfs = self.all_tfs();
        let vecs = self.all_vectors();
        let mut out = Vec::new();
        for (d, (tf, vec)) in tfs.into_iter().zip(vecs).enumerate() {
            let d = d as u32;
            if !keep(d) {
                continue;
            }
            out.push(DocRecord {
                id: self.ids[d as usize].clone(),
                vec,
                tf,
                len: self.doc_len[d as usize],
                source: self.source(path, d)?,
            });
        }
        Ok(out)
    }
}
