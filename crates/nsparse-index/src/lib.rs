//! nsparse-index: durable inverted index + top-k search (placeholder docs, see below).

mod error;
mod format;
mod index;
mod search;
mod segment;
pub mod synth;
mod wal;

pub use error::{Error, Result};
pub use format::{dequantize, quantize, MAX_WEIGHT, MIN_WEIGHT};
pub use index::{
    open_reader, verify, Bm25Params, CreateOptions, Document, Index, IndexInfo, VerifyReport,
    WriterOptions, DEFAULT_VOCAB_SIZE, MAX_ID_BYTES,
};
pub use search::{
    Hit, HybridCombination, HybridRequest, SearchMode, SearchRequest, Searcher, TokenContribution,
};
