//! What goes into an index: documents, creation and writer options, BM25 parameters.

use serde::{Deserialize, Serialize};

/// Default WordPiece vocabulary size (bert-base-uncased).
pub const DEFAULT_VOCAB_SIZE: u32 = 30_522;

/// Longest accepted `_id`, in bytes.
pub const MAX_ID_BYTES: usize = 4096;

/// A document to index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Document {
    /// User-chosen unique identifier (`_id`).
    pub id: String,
    /// Sparse vector `(token id, weight)`; weights finite, `0 ≤ w ≤ 65504`, token ids unique.
    pub vector: Vec<(u32, f32)>,
    /// Optional WordPiece token-id sequence of the text, for BM25.
    pub tokens: Option<Vec<u32>>,
    /// Stored source (typically the user's JSON), returned with hits; stored lz4-compressed.
    pub source: Vec<u8>,
}

/// BM25 parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bm25Params {
    /// Term-frequency saturation (default 1.2).
    pub k1: f32,
    /// Length normalisation (default 0.75).
    pub b: f32,
}

impl Default for Bm25Params {
    fn default() -> Self {
        Bm25Params { k1: 1.2, b: 0.75 }
    }
}

/// How an index names its features (the keys of its sparse vectors).
#[derive(Debug, Clone, PartialEq)]
pub enum Vocabulary {
    /// Feature ids are a model's token ids, below `size` (at most 16,777,216); the names
    /// belong to the model (its tokenizer) and are not stored in the index. Every index
    /// written before open vocabularies existed is of this kind.
    Fixed {
        /// Number of ids (the model's `vocab_size`).
        size: u32,
    },
    /// The index keeps its own dictionary of feature names (any non-empty UTF-8 string of
    /// at most [`MAX_FEATURE_NAME_BYTES`](crate::MAX_FEATURE_NAME_BYTES) bytes): ids are
    /// given in order of first use ([`Index::feature_ids`](crate::Index::feature_ids)), up
    /// to `u32::MAX - 1`. The `seed` names (unique) get ids `0..seed.len()` at creation:
    /// seeding a model's vocabulary in token-id order keeps that model's ids valid as they
    /// are, so its encoded documents and queries need no lookup. A document's BM25
    /// token ids ([`Document::tokens`]) are ids of the same vocabulary: seed the
    /// tokenizer's vocabulary to store them.
    Open {
        /// Names given ids `0..seed.len()`.
        seed: Vec<String>,
    },
}

impl Vocabulary {
    /// A fixed vocabulary of `size` model token ids.
    pub fn fixed(size: u32) -> Vocabulary {
        Vocabulary::Fixed { size }
    }

    /// An open vocabulary starting empty.
    pub fn open() -> Vocabulary {
        Vocabulary::Open { seed: Vec::new() }
    }
}

/// Settings fixed when the index is created.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Opaque identity of the encoder model; searches with another model are refused by the CLI.
    pub model: String,
    /// Free-form metadata stored in the manifest.
    pub metadata: serde_json::Value,
    /// Feature ids and names (default: the fixed bert-base-uncased vocabulary).
    pub vocabulary: Vocabulary,
    /// BM25 scorer parameters.
    pub bm25: Bm25Params,
}

impl CreateOptions {
    /// Options for `model` with defaults (the fixed bert-base-uncased vocabulary, BM25
    /// k1=1.2 b=0.75).
    pub fn new(model: impl Into<String>) -> Self {
        CreateOptions {
            model: model.into(),
            metadata: serde_json::Value::Object(Default::default()),
            vocabulary: Vocabulary::fixed(DEFAULT_VOCAB_SIZE),
            bm25: Bm25Params::default(),
        }
    }

    /// These options with `vocabulary`.
    pub fn with_vocabulary(mut self, vocabulary: Vocabulary) -> Self {
        self.vocabulary = vocabulary;
        self
    }
}

/// Writer tuning (not stored in the index).
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// Buffered documents that trigger an automatic [`Index::commit`].
    pub flush_docs: usize,
    /// Log-merge factor: this many segments of one size tier are merged into one.
    pub merge_factor: usize,
    /// Threads that build and write a segment (bulk loads, commits,
    /// merges); 0 uses every core, up to 8. Segments of fewer than 64k
    /// documents are built on one thread. The files do not depend on it.
    pub build_threads: usize,
    /// Memory cap of each segment's bound columns, in MiB, for the searchers
    /// of this writer (the most frequent tokens keep theirs; `Some(0)` turns
    /// them off; `None`: no cap). Results never change, only speed and
    /// memory. A segment plans its columns once, at the first search that
    /// uses them, with the cap of that search.
    pub dense_columns_max_mb: Option<u64>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            flush_docs: 50_000,
            merge_factor: 8,
            build_threads: 0,
            dense_columns_max_mb: None,
        }
    }
}

/// Reader tuning (not stored in the index); [`ReaderOptions::open`] opens a reader.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReaderOptions {
    /// Memory cap of each segment's bound columns, in MiB (see
    /// [`WriterOptions::dense_columns_max_mb`]). A program that runs one
    /// query per process (like `nsparse search`) should pass `Some(0)`:
    /// building the query's columns (~1–3 ms each at 1M documents) costs
    /// more than they save on one query.
    pub dense_columns_max_mb: Option<u64>,
}
