//! Sparse encoders of nsparse: everything between text and a sparse vector.
//!
//! This crate owns
//! - the Hugging Face model folder ([`ModelFiles`]: `config.json`, `model.safetensors`,
//!   `tokenizer.json` or `vocab.txt`, optional `idf.json`; or a Hub id),
//! - WordPiece tokenization with the encoders' truncation rules ([`TextTokenizer`]),
//! - the DistilBERT/BERT masked-LM forward pass fused with SPLADE max-pooling ([`MaskedLm`]),
//! - the document encoder and the inference-free or bi-encoder query encoder ([`SparseEncoder`]),
//! - sparse vectors, their dot product and OpenSearch's ingest pruning ([`SparseVector`],
//!   [`Pruning`]),
//! - the built-in OpenSearch `bert-uncased` query model, embedded in the binary.
//!
//! The numeric kernels (GEMM, attention, the fused vocabulary projection) live in
//! `nsparse-kernels`; this crate decides what to compute, that one how fast.

pub mod config;
pub mod encoder;
pub mod error;
pub mod folder;
pub mod network;
pub mod sparse;
mod token_table;
pub mod tokenize;
pub mod weights;

pub use config::{Architecture, ModelConfig};
pub use encoder::{
    EncodedDocuments, EncoderOptions, Idf, LongDocuments, QueryMode, SparseEncoder,
    BUILTIN_QUERY_MODEL, MAX_LENGTH,
};
pub use error::{ModelError, Result};
pub use folder::ModelFiles;
pub use network::MaskedLm;
pub use nsparse_kernels::Precision;
pub use sparse::{Pruning, SparseVector};
pub use tokenize::{TextTokenizer, TokenizedText};

/// Sizes the global rayon pool shared by the encoding kernels (call once, before any encoding).
pub fn init_thread_pool(threads: usize) -> Result<()> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .map_err(|e| ModelError::InvalidArgument {
            what: "threads",
            problem: format!("cannot size the thread pool to {threads}: {e}"),
        })
}
