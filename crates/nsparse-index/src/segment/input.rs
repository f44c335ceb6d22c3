//! What a segment is built from, and its two kinds of postings as inversion sources.

use crate::postings::invert::PostingSource;
use crate::segment::DocRecord;

/// What a segment is built from: validated documents in doc-id order.
///
/// The bulk loader implements it straight over the caller's documents, so a
/// large load never holds a second, quantized copy of every vector.
pub(crate) trait SegmentInput: Sync {
    /// Number of documents.
    fn n_docs(&self) -> usize;
    /// `_id` of document `i`.
    fn id(&self, i: usize) -> &str;
    /// Calls `f(token, quantized weight)` for document `i`'s non-zero
    /// quantized weights, tokens strictly ascending.
    fn for_each_posting(&self, i: usize, f: impl FnMut(u32, u16));
    /// Adds one to `df[token]` for every posting [`SegmentInput::for_each_posting`]
    /// gives of document `i`. An input can count without quantizing.
    #[inline]
    fn count_postings(&self, i: usize, df: &mut [u32]) {
        self.for_each_posting(i, |t, _| df[t as usize] += 1);
    }

    /// The number of postings [`SegmentInput::for_each_posting`] gives of
    /// document `i`, known without reading them.
    fn n_postings(&self, i: usize) -> usize;
    /// BM25 term frequencies of document `i`, tokens ascending.
    fn tf(&self, i: usize) -> &[(u32, u32)];
    /// BM25 length of document `i` in tokens.
    fn doc_len(&self, i: usize) -> u32;
    /// Uncompressed source bytes of document `i`.
    fn source(&self, i: usize) -> &[u8];
}

impl SegmentInput for [DocRecord] {
    fn n_docs(&self) -> usize {
        self.len()
    }

    fn id(&self, i: usize) -> &str {
        &self[i].id
    }

    #[inline]
    fn for_each_posting(&self, i: usize, mut f: impl FnMut(u32, u16)) {
        for &(t, w) in &self[i].vec {
            f(t, w);
        }
    }

    fn n_postings(&self, i: usize) -> usize {
        self[i].vec.len()
    }

    fn tf(&self, i: usize) -> &[(u32, u32)] {
        &self[i].tf
    }

    fn doc_len(&self, i: usize) -> u32 {
        self[i].len
    }

    fn source(&self, i: usize) -> &[u8] {
        &self[i].source
    }
}

/// The neural postings of a [`SegmentInput`]: packed (tile offset, f16 weight).
pub(crate) struct NeuralSource<'a, D: ?Sized>(pub(crate) &'a D);

impl<D: SegmentInput + ?Sized> PostingSource for NeuralSource<'_, D> {
    type Elem = u32;
    #[inline]
    fn each(&self, i: usize, mut f: impl FnMut(u32, u32)) {
        self.0
            .for_each_posting(i, |t, w| f(t, crate::postings::pack(i as u32, w)))
    }

    #[inline]
    fn count(&self, i: usize, df: &mut [u32]) {
        self.0.count_postings(i, df)
    }

    fn len(&self, i: usize) -> usize {
        self.0.n_postings(i)
    }
}

/// The BM25 postings of a [`SegmentInput`]: (doc, term frequency).
pub(crate) struct Bm25Source<'a, D: ?Sized>(pub(crate) &'a D);

impl<D: SegmentInput + ?Sized> PostingSource for Bm25Source<'_, D> {
    type Elem = (u32, u32);
    #[inline]
    fn each(&self, i: usize, mut f: impl FnMut(u32, (u32, u32))) {
        for &(t, c) in self.0.tf(i) {
            f(t, (i as u32, c));
        }
    }

    fn len(&self, i: usize) -> usize {
        self.0.tf(i).len()
    }
}
