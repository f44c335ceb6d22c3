//! Relevance evaluation for nsparse: numbers you can compare with published ones.
//!
//! This crate owns
//! - BEIR dataset folders ([`BeirDataset`]: `corpus.jsonl`, `queries.jsonl`,
//!   `qrels/<split>.tsv`),
//! - judgments and runs ([`Qrels`], [`Run`]) and TREC run files ([`write_run`], [`read_run`]),
//! - the ranking metrics NDCG@k, Recall@k, MRR@k, MAP@k and P@k ([`evaluate`], [`Measure`]),
//!   equal to pytrec_eval's to 1e-6 (the conventions are in [`metrics`]),
//! - the FLOPS figure of the OpenSearch neural-sparse evaluation ([`flops`], [`Sparsity`]),
//! - the end-to-end pipeline behind `nsparse eval` ([`pipeline::evaluate_dataset`]).
//!
//! Encoding belongs to `nsparse-model` and indexing and search to `nsparse-index`; this crate
//! only drives them and judges the result.

pub mod beir;
pub mod error;
pub mod metrics;
pub mod pipeline;
pub mod run;
pub mod sparsity;
pub mod trec;

pub use beir::{read_jsonl, BeirDataset, Record};
pub use error::{EvalError, Result};
pub use metrics::{evaluate, score_query, Evaluation, Measure};
pub use pipeline::{
    bm25_identity, evaluate_dataset, EvalOptions, EvalOutcome, EvalReport, IndexLocation, Progress,
    Scorer, Silent, Stage, Timings,
};
pub use run::{trec_order, Qrels, Run};
pub use sparsity::{flops, Sparsity, TokenCounts};
pub use trec::{read_run, write_run, write_run_file};
