//! A bulk load's input: the caller's documents as a segment input, validated once.

use std::collections::HashMap;

use crate::error::Result;
use crate::index::validate::{check_id, check_sorted_vector, quantized_vector, term_frequencies};
use crate::quantize::quantize;
use crate::schema::Document;
use crate::segment::input::SegmentInput;

/// The documents of one [`Index::bulk_upsert`], validated, read in place by
/// the segment builder: vectors whose tokens arrive ascending (the usual
/// case) are quantized on the fly and never copied.
pub(crate) struct BulkInput<'a> {
    pub(super) docs: Vec<&'a Document>,
    /// Quantized copies of the vectors that were not in token order, by position in `docs`.
    resorted: HashMap<usize, Vec<(u32, u16)>>,
    /// Per document: its postings (weights that quantize to zero dropped).
    kept: Vec<u32>,
    tf: Vec<(Vec<(u32, u32)>, u32)>,
}

impl<'a> BulkInput<'a> {
    /// Validate every document (on all cores); the first bad one, in batch
    /// order, is the error.
    pub(crate) fn new(
        docs: Vec<&'a Document>,
        vocab: u32,
        threads: usize,
    ) -> Result<BulkInput<'a>> {
        type Checked = (
            HashMap<usize, Vec<(u32, u16)>>,
            Vec<u32>,
            Vec<(Vec<(u32, u32)>, u32)>,
        );
        let check = |range: std::ops::Range<usize>| -> Result<Checked> {
            let mut resorted = HashMap::new();
            let mut kept = Vec::with_capacity(range.len());
            let mut tf = Vec::with_capacity(range.len());
            for i in range {
                let d = docs[i];
                check_id(d)?;
                match check_sorted_vector(&d.id, &d.vector, vocab)? {
                    Some(k) => kept.push(k as u32),
                    None => {
                        let q = quantized_vector(d, vocab)?;
                        kept.push(q.len() as u32);
                        resorted.insert(i, q);
                    }
                }
                tf.push(term_frequencies(d, vocab)?);
            }
            Ok((resorted, kept, tf))
        };
        // The same split as the segment build that follows.
        let n = docs.len();
        let ranges =
            crate::segment::store::doc_ranges(n, crate::threads::build_threads(n, threads));
        let results = crate::threads::per_range(&ranges, check);
        let mut resorted = HashMap::new();
        let mut kept = Vec::with_capacity(docs.len());
        let mut tf = Vec::with_capacity(docs.len());
        for r in results {
            let (re, k, t) = r?;
            resorted.extend(re);
            kept.extend(k);
            tf.extend(t);
        }
        Ok(BulkInput {
            docs,
            resorted,
            kept,
            tf,
        })
    }
}

impl BulkInput<'_> {
    /// The quantized, re-sorted copy of document `i`'s vector, if its input
    /// was not in token order (otherwise the caller's vector is read in place).
    #[inline]
    pub(crate) fn resorted_vector(&self, i: usize) -> Option<&[(u32, u16)]> {
        // Most batches are sorted: skip the hash lookup per document.
        if self.resorted.is_empty() {
            return None;
        }
        self.resorted.get(&i).map(Vec::as_slice)
    }
}

impl SegmentInput for BulkInput<'_> {
    fn n_docs(&self) -> usize {
        self.docs.len()
    }

    fn id(&self, i: usize) -> &str {
        &self.docs[i].id
    }

    #[inline]
    fn for_each_posting(&self, i: usize, mut f: impl FnMut(u32, u16)) {
        if let Some(v) = self.resorted_vector(i) {
            for &(t, w) in v {
                f(t, w);
            }
            return;
        }
        for &(t, w) in &self.docs[i].vector {
            let q = quantize(w);
            if q != 0 {
                f(t, q);
            }
        }
    }

    #[inline]
    fn count_postings(&self, i: usize, df: &mut [u32]) {
        if let Some(v) = self.resorted_vector(i) {
            for &(t, _) in v {
                df[t as usize] += 1;
            }
            return;
        }
        // Branch-free: a validated weight is kept exactly when it is not
        // below half the smallest one ([`crate::quantize::is_kept`]).
        for &(t, w) in &self.docs[i].vector {
            df[t as usize] += crate::quantize::is_kept(w) as u32;
        }
    }

    fn n_postings(&self, i: usize) -> usize {
        self.kept[i] as usize
    }

    fn tf(&self, i: usize) -> &[(u32, u32)] {
        &self.tf[i].0
    }

    fn doc_len(&self, i: usize) -> u32 {
        self.tf[i].1
    }

    fn source(&self, i: usize) -> &[u8] {
        &self.docs[i].source
    }
}
