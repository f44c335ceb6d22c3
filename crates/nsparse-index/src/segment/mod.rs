//! Immutable segments: build from documents, serialize, load and verify.
//!
//! On disk a segment holds the inverted postings (neural and BM25), the `_id`s
//! and compressed sources. The forward index (per-document vectors) and the
//! block-max table used for pruning are *derived* in memory at load time from
//! the postings, so they cost no disk space and cannot disagree with them.

use crate::error::{Error, Result};
use crate::postings::Postings;
#[cfg(feature = "baselines")]
use crate::segment::block_max::BlockMax;
use crate::segment::bound_columns::DenseColumns;
use crate::segment::id_index::IdIndex;
use crate::segment::reader::load_postings;

#[cfg(feature = "baselines")]
pub(crate) mod block_max;
pub(crate) mod bound_columns;
pub(crate) mod deletes;
pub(crate) mod forward;
pub(crate) mod id_index;
pub(crate) mod input;
pub(crate) mod reader;
pub(crate) mod store;
#[cfg(test)]
mod tests;
pub(crate) mod writer;
/// log2 of the number of consecutive doc ids per 64-document block (block
/// maxima, bound columns' block positions); a block never crosses a tile.
pub(crate) const DOC_BLOCK_SHIFT: u32 = 6;

pub(crate) const SEG_MAGIC: &[u8; 8] = b"NSPSEG\0\0";

/// Segment format written by this build. Version 3 stores the neural
/// postings tile by tile ([`write_postings`]); version 2 stored them token by
/// token, each block's doc-id gaps bit-packed; version 1 used delta varints.
/// All three are read.
pub(crate) const SEG_VERSION: u32 = 3;

/// Oldest segment format this build reads.
pub(crate) const SEG_OLDEST_READABLE: u32 = 1;

pub(crate) const SEC_META: u32 = 1;

pub(crate) const SEC_IDS: u32 = 2;

pub(crate) const SEC_POSTINGS: u32 = 3;

pub(crate) const SEC_BM25: u32 = 4;

pub(crate) const SEC_SOURCE: u32 = 5;

/// A validated, quantized document ready to go into a segment.
#[derive(Clone, Debug)]
pub(crate) struct DocRecord {
    pub id: String,
    /// (token, quantized weight), sorted by token, weights non-zero.
    pub vec: Vec<(u32, u16)>,
    /// BM25 term frequencies (token, tf), sorted by token.
    pub tf: Vec<(u32, u32)>,
    /// BM25 document length in tokens.
    pub len: u32,
    /// Uncompressed source bytes.
    pub source: Vec<u8>,
}

/// In-memory, read-only segment.
#[derive(Debug)]
pub(crate) struct Segment {
    n_docs: u32,
    vocab: u32,
    ids: Vec<String>,
    /// `_id` → position in `ids` (derived at build and load).
    id_index: IdIndex,
    /// Neural postings, grouped by token: docs ascending within a token.
    /// Read through [`Segment::postings`] (which loads them) or
    /// [`Segment::post`]: a segment just written by
    /// [`Segment::build_and_write`] leaves them on disk until first use.
    post: std::sync::OnceLock<Postings>,
    /// Serialises the loading of `post` (the load can fail, so it cannot
    /// run inside `OnceLock::get_or_init`).
    post_loading: std::sync::Mutex<()>,
    /// The segment's file, where unloaded postings are read from.
    file: Option<std::path::PathBuf>,
    /// Number of neural postings (known before they are loaded).
    n_post: usize,
    /// Block-max table, built on first use (only the block-max and BMP-style
    /// modes need it; it costs about as much memory as the doc ids).
    #[cfg(feature = "baselines")]
    block_max: std::sync::OnceLock<BlockMax>,
    /// Dense weight columns of the most frequent tokens, built on first use
    /// (see [`DenseColumns`]).
    dense: std::sync::OnceLock<DenseColumns>,
    /// Per token, the largest dequantized weight in this segment.
    term_max: Vec<f32>,
    // BM25.
    /// Token `t`'s BM25 postings are `tf_post[tf_start[t]..tf_start[t + 1]]`.
    tf_start: Vec<usize>,
    /// BM25 postings: (doc id, term frequency), docs ascending per token.
    tf_post: Vec<(u32, u32)>,
    doc_len: Vec<u32>,
    total_len: u64,
    // Sources: lz4 block-compressed chunks of SOURCE_CHUNK docs.
    src_chunks: Vec<(usize, usize, usize)>, // (offset, compressed len, uncompressed len)
    src_data: Vec<u8>,
}

impl Segment {
    /// Number of documents (deleted or not).
    #[inline]
    pub(crate) fn n_docs(&self) -> u32 {
        self.n_docs
    }

    /// Vocabulary size.
    pub(crate) fn vocab(&self) -> u32 {
        self.vocab
    }

    /// The `_id`s, by document.
    #[inline]
    pub(crate) fn ids(&self) -> &[String] {
        &self.ids
    }

    /// The largest dequantized weight of token `t` in this segment.
    #[inline]
    pub(crate) fn term_max(&self, t: u32) -> f32 {
        self.term_max.get(t as usize).copied().unwrap_or(0.0)
    }

    /// Token `t`'s BM25 postings: (doc id, term frequency), docs ascending.
    #[inline]
    pub(crate) fn bm25_postings(&self, t: u32) -> &[(u32, u32)] {
        &self.tf_post[crate::postings::span(&self.tf_start, t)]
    }

    /// The number of documents containing token `t` (BM25).
    #[inline]
    pub(crate) fn bm25_df(&self, t: u32) -> usize {
        crate::postings::span(&self.tf_start, t).len()
    }

    /// BM25 length of `doc` in tokens.
    #[inline]
    pub(crate) fn doc_len(&self, doc: u32) -> u32 {
        self.doc_len[doc as usize]
    }

    /// Sum of the documents' BM25 lengths.
    pub(crate) fn total_len(&self) -> u64 {
        self.total_len
    }

    /// The neural postings, read from the segment's file on first use.
    pub(crate) fn postings(&self) -> Result<&Postings> {
        if let Some(p) = self.post.get() {
            return Ok(p);
        }
        let _loading = self
            .post_loading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(p) = self.post.get() {
            return Ok(p);
        }
        let Some(path) = self.file.as_deref() else {
            return Err(Error::invalid(
                "segment",
                "in-memory segment without postings (a bug in nsparse-index)".to_string(),
            ));
        };
        let t0 = std::time::Instant::now();
        let post = load_postings(path, self.n_docs, self.vocab, self.n_post)?;
        tracing::debug!(
            path = %path.display(),
            postings = self.n_post,
            load_ms = t0.elapsed().as_millis() as u64,
            "loaded segment postings"
        );
        Ok(self.post.get_or_init(|| post))
    }

    /// The neural postings, which must be loaded already.
    ///
    /// # Panics
    /// If they are not: every entry point that reads postings calls
    /// [`Segment::postings`] first (searches through
    /// [`Searcher`](crate::Searcher)'s own check, merges through
    /// [`Segment::records`] and the document iterator).
    #[inline]
    pub(crate) fn post(&self) -> &Postings {
        self.post
            .get()
            .expect("segment postings used before Segment::postings loaded them")
    }

    /// Position of the document with `_id` `id`, deleted or not.
    pub(crate) fn lookup(&self, id: &str) -> Option<u32> {
        self.id_index.get(&self.ids, id)
    }

    /// The dense columns (planned on first call within `max_bytes`, which
    /// later calls cannot change; empty for small segments).
    pub(crate) fn dense(&self, max_bytes: u64) -> &DenseColumns {
        self.dense
            .get_or_init(|| DenseColumns::plan(self, max_bytes))
    }

    /// The dense columns' cell, for tests that plan them with a budget.
    #[cfg(test)]
    pub(crate) fn dense_cell(&self) -> &std::sync::OnceLock<DenseColumns> {
        &self.dense
    }

    /// Quantized weight of token `t` in `doc` (binary search in the posting list).
    #[inline]
    pub(crate) fn weight(&self, t: u32, doc: u32) -> Option<u16> {
        self.post().weight(t, doc)
    }

    /// Number of neural postings.
    pub(crate) fn n_postings(&self) -> usize {
        self.n_post
    }
}
