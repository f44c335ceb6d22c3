//! What a search returns.

use serde::Serialize;

/// One matched token's part in a score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TokenContribution {
    /// Token id.
    pub token: u32,
    /// Query weight (for BM25: query term count × idf).
    pub query_weight: f32,
    /// Document weight, dequantized (for BM25: saturated, length-normalised tf).
    pub doc_weight: f32,
    /// `query_weight × doc_weight`.
    pub contribution: f32,
}

/// A search result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    /// Document `_id`.
    pub id: String,
    /// Score (dot product of query and quantized document vector, BM25, or fused score).
    pub score: f32,
    /// Stored source, if requested.
    pub source: Option<Vec<u8>>,
    /// Matched tokens by decreasing contribution, if requested.
    pub explanation: Option<Vec<TokenContribution>>,
    #[serde(skip)]
    pub(crate) addr: (u32, u32),
}

/// A live document as stored in a snapshot (see [`Searcher::documents`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDocument {
    /// Document `_id`.
    pub id: String,
    /// Sparse vector as stored: weights rounded to f16 (see the crate docs),
    /// zero weights dropped, tokens ascending. Re-indexing it reproduces the
    /// same stored vector exactly (f16 rounding is idempotent).
    pub vector: Vec<(u32, f32)>,
    /// BM25 tokens, as a bag: segments keep term frequencies and document
    /// length, not the original sequence, so each token appears as many times
    /// as it occurred, in ascending token order (not text order). Re-indexing
    /// it gives identical BM25 scores. `None` when the document was indexed
    /// without tokens (or with an empty sequence; the two are stored alike).
    pub tokens: Option<Vec<u32>>,
    /// Stored source bytes.
    pub source: Vec<u8>,
}
