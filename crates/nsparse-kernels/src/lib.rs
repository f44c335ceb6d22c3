//! Hot numeric kernels of nsparse.
//!
//! This crate owns the CPU arithmetic of the neural-sparse document encoder:
//! packed GEMM for the transformer's linear layers ([`PackedLinear`]), the
//! masked-LM vocabulary projection fused with SPLADE max-pooling
//! ([`PackedVocabProjection`]), multi-head attention ([`attention`]),
//! residual + LayerNorm ([`add_layer_norm`]) and exact-erf GELU ([`gelu_erf`]).
//!
//! # Thread model
//! Large calls split their output into blocks that run as rayon tasks on the
//! global pool (no OS threads are spawned per call). Small calls (below ~4M
//! multiply-adds, or 2¹⁸ elements for GELU / LayerNorm) run on the calling
//! thread. Results do not depend on the number of threads or on nesting. Calls may be nested inside rayon
//! tasks: when the caller already keeps every worker busy (e.g. two documents
//! encoded in parallel on a 2-worker pool), the inner tasks are simply run by
//! the worker that created them or stolen by an idle one, so nothing
//! oversubscribes. All types are `Send + Sync`; kernels take `&self`.
//!
//! Design notes, measured throughput and the error of [`Precision::Fast`]
//! are in the crate's README.md.
//!
//! # SIMD
//! AVX2 + FMA kernels are selected at run time (`is_x86_feature_detected!`);
//! other CPUs and non-x86 targets use portable Rust kernels with the same
//! packed layouts.

mod attention;
mod buf;
mod elementwise;
mod gemm;
mod linear;
mod vocab;

pub use attention::{attention, attention_portable};
pub use elementwise::{add_layer_norm, exp_in_place, gelu_erf, gelu_erf_portable};
pub use linear::PackedLinear;
pub use vocab::PackedVocabProjection;

/// Numeric precision of a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Precision {
    /// fp32 throughout; results match a naive fp32 reference to ~1e-5 relative.
    Exact,
    /// int16 operands with exact integer products (`vpmaddwd`), faster, with
    /// a documented error (see [`PackedLinear`] and [`PackedVocabProjection`]).
    Fast,
}
