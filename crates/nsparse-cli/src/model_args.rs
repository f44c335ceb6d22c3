//! The `--model` argument and the encoder options every command shares.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use nsparse_model::{EncoderOptions, LongDocuments, Precision, Pruning, SparseEncoder};

/// Kernel arithmetic, as a command-line value.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum PrecisionArg {
    /// fp32, equal to PyTorch within 1e-4 per weight.
    Exact,
    /// Reduced-precision kernels: faster, with a small measured error.
    Fast,
}

/// How a document encoder runs: the options every command that loads one shares
/// (`encode`, `index`, `search`, `eval`, `serve`).
#[derive(Args, Debug, Clone)]
pub struct EncoderArgs {
    /// Kernel arithmetic for the network.
    #[arg(long, value_enum, default_value_t = PrecisionArg::Exact)]
    pub precision: PrecisionArg,
    /// Tokens packed into one forward pass.
    #[arg(long, default_value_t = 4096)]
    pub batch_tokens: usize,
    /// Encode documents longer than 512 tokens as 512-token windows and keep each token's max
    /// weight, instead of truncating them.
    #[arg(long)]
    pub chunk_long_documents: bool,
}

impl EncoderArgs {
    /// The encoder options these arguments ask for.
    pub fn options(&self) -> EncoderOptions {
        EncoderOptions {
            precision: match self.precision {
                PrecisionArg::Exact => Precision::Exact,
                PrecisionArg::Fast => Precision::Fast,
            },
            batch_tokens: self.batch_tokens,
            long_documents: if self.chunk_long_documents {
                LongDocuments::Chunk
            } else {
                LongDocuments::Truncate
            },
        }
    }
}

/// Options naming and configuring the model.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Hugging Face model folder (config.json, model.safetensors, tokenizer.json, optional idf.json)
    /// or Hub id such as opensearch-project/opensearch-neural-sparse-encoding-doc-v2-distill.
    /// Queries default to the built-in OpenSearch bert-uncased idf model.
    #[arg(long, short)]
    pub model: Option<String>,
    #[command(flatten)]
    pub encoder: EncoderArgs,
    /// Queries through the network even when the model has idf.json (bi-encoder mode).
    #[arg(long, conflicts_with = "idf")]
    pub neural_queries: bool,
    /// Weight queries with this idf.json (`builtin` = the embedded OpenSearch one), making them
    /// inference-free whatever the model folder holds.
    #[arg(long)]
    pub idf: Option<String>,
    /// OpenSearch ingest pruning type: top_k, max_ratio, alpha_mass or abs_value.
    #[arg(long, requires = "prune_ratio")]
    pub prune_type: Option<String>,
    /// The pruning parameter of --prune-type.
    #[arg(long, requires = "prune_type")]
    pub prune_ratio: Option<f32>,
}

impl ModelArgs {
    /// Loads the model (the built-in query model when none is given and `queries_only`).
    pub fn load(&self, queries_only: bool) -> Result<SparseEncoder> {
        let encoder = match (&self.model, queries_only) {
            (None, true) => SparseEncoder::builtin_query_model(),
            (None, false) => anyhow::bail!(
                "documents need a document encoder: pass --model DIR (a Hugging Face model folder) or a Hub id"
            ),
            (Some(spec), _) => {
                SparseEncoder::load(spec, self.encoder.options())?
            }
        };
        let encoder = match &self.idf {
            Some(idf) if idf == "builtin" => encoder.with_idf_json(
                SparseEncoder::builtin_idf_json(),
                std::path::Path::new("<embedded idf.json>"),
            )?,
            Some(path) => {
                let bytes = std::fs::read(path).with_context(|| format!("cannot read {path}"))?;
                encoder.with_idf_json(&bytes, std::path::Path::new(path))?
            }
            None => encoder,
        };
        Ok(if self.neural_queries {
            encoder.without_idf()?
        } else {
            encoder
        })
    }

    /// The ingest pruning rule.
    pub fn pruning(&self) -> Result<Pruning> {
        match (&self.prune_type, self.prune_ratio) {
            (Some(kind), Some(ratio)) => Ok(Pruning::from_opensearch(kind, ratio)?),
            _ => Ok(Pruning::None),
        }
    }
}
