//! The encoder object: `nsparse_model::SparseEncoder` with its own thread pool and pruning.

use std::path::Path;

use nsparse_model::{
    EncoderOptions, LongDocuments, Precision, Pruning, QueryMode, SparseEncoder, SparseVector,
};
use pyo3::prelude::*;
use pyo3::types::PyByteArray;

use crate::csr::CsrOut;
use crate::errors::{model_err, value_err};

/// Returned CSR buffers: `(indptr, indices, data)`.
type CsrBuffers<'py> = (
    Bound<'py, PyByteArray>,
    Bound<'py, PyByteArray>,
    Bound<'py, PyByteArray>,
);

/// A loaded sparse encoder (wrapped by `nsparse.SparseEncoder`).
///
/// Encoding runs with the GIL released, on this encoder's own rayon pool when it was created
/// with `threads`, else on the global pool (one thread per core).
#[pyclass(module = "nsparse._nsparse", frozen)]
pub struct Encoder {
    inner: SparseEncoder,
    /// `"builtin"`, the absolute path of the model folder, or the Hub id as given.
    spec: String,
    pool: Option<rayon::ThreadPool>,
    pruning: Pruning,
    precision: Precision,
}

impl Encoder {
    /// The wrapped encoder.
    pub fn inner(&self) -> &SparseEncoder {
        &self.inner
    }

    /// Runs `f` on this encoder's pool (or the caller's thread, for the global pool).
    fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }

    /// Width of the vectors: the network's vocabulary, or the tokenizer's for query-only models.
    fn width(&self) -> usize {
        let network = self.inner.config().map_or(0, |c| c.vocab_size);
        network.max(self.inner.tokenizer().vocab_size())
    }
}

/// A rayon pool of `threads` threads (`what` names the argument in errors).
pub fn thread_pool(what: &str, threads: usize) -> PyResult<rayon::ThreadPool> {
    if threads == 0 {
        return Err(value_err(
            what,
            "0 threads; pass a positive count, or None for one per core",
        ));
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("nsparse-{i}"))
        .build()
        .map_err(|e| value_err(what, format!("cannot start {threads} threads: {e}")))
}

fn vectors_to_csr(vectors: &[SparseVector]) -> CsrOut {
    let mut out = CsrOut::with_rows(vectors.len());
    for v in vectors {
        out.push_row(v.ids(), v.weights());
    }
    out
}

#[pymethods]
impl Encoder {
    /// Loads `model` (a model folder or a Hub id; `None`: the built-in inference-free query
    /// model). `idf` (`"builtin"` or an idf.json path) makes queries inference-free;
    /// `neural_queries` drops the folder's idf.json so queries go through the network.
    #[new]
    #[pyo3(signature = (model=None, *, precision="exact", threads=None, chunk_long_documents=false,
                        batch_tokens=4096, prune_type=None, prune_ratio=None, idf=None,
                        neural_queries=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        model: Option<String>,
        precision: &str,
        threads: Option<usize>,
        chunk_long_documents: bool,
        batch_tokens: usize,
        prune_type: Option<String>,
        prune_ratio: Option<f32>,
        idf: Option<String>,
        neural_queries: bool,
    ) -> PyResult<Self> {
        let precision = match precision {
            "exact" => Precision::Exact,
            "fast" => Precision::Fast,
            other => {
                return Err(value_err(
                    "precision",
                    format!("{other:?} is unknown; use \"exact\" (fp32, equal to PyTorch) or \"fast\" (int16 kernels)"),
                ))
            }
        };
        let pruning =
            match (prune_type.as_deref(), prune_ratio) {
                (None, None) => Pruning::None,
                (Some(kind), Some(ratio)) => {
                    Pruning::from_opensearch(kind, ratio).map_err(model_err)?
                }
                (Some(kind), None) => {
                    return Err(value_err(
                        "prune",
                        format!("prune type {kind:?} needs a ratio, e.g. (\"{kind}\", 0.1)"),
                    ))
                }
                (None, Some(_)) => return Err(value_err(
                    "prune",
                    "a ratio without a prune type; pass (type, ratio), e.g. (\"max_ratio\", 0.1)",
                )),
            };
        let pool = threads.map(|n| thread_pool("threads", n)).transpose()?;
        let options = EncoderOptions {
            precision,
            batch_tokens,
            long_documents: if chunk_long_documents {
                LongDocuments::Chunk
            } else {
                LongDocuments::Truncate
            },
        };
        let (inner, spec) = py
            .detach(|| -> nsparse_model::Result<_> {
                let (encoder, spec) = match &model {
                    None => (SparseEncoder::builtin_query_model(), "builtin".to_string()),
                    Some(spec) => {
                        let canonical = std::fs::canonicalize(spec)
                            .map(|p| p.to_string_lossy().into_owned())
                            .unwrap_or_else(|_| spec.clone());
                        (SparseEncoder::load(spec, options)?, canonical)
                    }
                };
                let encoder = match idf.as_deref() {
                    None => encoder,
                    Some("builtin") => encoder.with_idf_json(
                        SparseEncoder::builtin_idf_json(),
                        Path::new("<embedded idf.json>"),
                    )?,
                    Some(path) => {
                        let bytes = std::fs::read(path).map_err(|source| {
                            nsparse_model::ModelError::Io {
                                path: path.into(),
                                source,
                            }
                        })?;
                        encoder.with_idf_json(&bytes, Path::new(path))?
                    }
                };
                let encoder = if neural_queries {
                    encoder.without_idf()?
                } else {
                    encoder
                };
                Ok((encoder, spec))
            })
            .map_err(model_err)?;
        Ok(Encoder {
            inner,
            spec,
            pool,
            pruning,
            precision,
        })
    }

    /// The model's name as given (`opensearch-bert-uncased-query-v1` for the built-in one).
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// `"builtin"`, the model folder's absolute path, or the Hub id.
    #[getter]
    fn spec(&self) -> &str {
        &self.spec
    }

    /// The model's identity (what an index records).
    #[getter]
    fn fingerprint(&self) -> &str {
        self.inner.fingerprint()
    }

    /// Width of the vectors (the network's vocabulary size).
    #[getter]
    fn vocab_size(&self) -> usize {
        self.width()
    }

    /// Longest input in tokens (special tokens included for documents).
    #[getter]
    fn max_seq_length(&self) -> usize {
        self.inner.tokenizer().max_length()
    }

    /// `"inference-free"` (idf.json) or `"bi-encoder"` (the network).
    #[getter]
    fn query_mode(&self) -> &'static str {
        match self.inner.query_mode() {
            QueryMode::InferenceFree => "inference-free",
            QueryMode::BiEncoder => "bi-encoder",
        }
    }

    /// Whether the model has network weights.
    #[getter]
    fn can_encode_documents(&self) -> bool {
        self.inner.can_encode_documents()
    }

    /// `"exact"` or `"fast"`.
    #[getter]
    fn precision(&self) -> &'static str {
        match self.precision {
            Precision::Exact => "exact",
            Precision::Fast => "fast",
        }
    }

    /// Encodes queries; returns CSR buffers `(indptr, indices, data)`.
    fn encode_queries<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
    ) -> PyResult<CsrBuffers<'py>> {
        let csr = py
            .detach(|| {
                self.run(|| {
                    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                    self.inner.encode_queries(&refs).map(|v| vectors_to_csr(&v))
                })
            })
            .map_err(model_err)?;
        csr.into_py(py)
    }

    /// Encodes documents (pruned as configured); returns `(indptr, indices, data, truncated,
    /// tokens)`: the CSR buffers, how many inputs lost their tail at 512 tokens, and the tokens
    /// fed to the network.
    #[allow(clippy::type_complexity)]
    fn encode_documents<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
    ) -> PyResult<(
        Bound<'py, PyByteArray>,
        Bound<'py, PyByteArray>,
        Bound<'py, PyByteArray>,
        usize,
        usize,
    )> {
        let (csr, truncated, tokens) = py
            .detach(|| {
                self.run(|| {
                    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                    let mut out = self.inner.encode_documents(&refs, |_| {})?;
                    if self.pruning != Pruning::None {
                        out.vectors.iter_mut().for_each(|v| v.prune(self.pruning));
                    }
                    Ok::<_, nsparse_model::ModelError>((
                        vectors_to_csr(&out.vectors),
                        out.truncated,
                        out.tokens,
                    ))
                })
            })
            .map_err(model_err)?;
        let (a, b, c) = csr.into_py(py)?;
        Ok((a, b, c, truncated, tokens))
    }

    /// Every token string by id (`None` for ids the tokenizer lacks).
    fn vocab(&self) -> Vec<Option<String>> {
        let tokenizer = self.inner.tokenizer();
        (0..self.width() as u32)
            .map(|id| tokenizer.token(id))
            .collect()
    }

    /// Token ids of `text`: as a document (`[CLS] … [SEP]`, cut at `max_seq_length`) or as a
    /// query (no special tokens).
    #[pyo3(signature = (text, *, document=true))]
    fn tokenize(&self, py: Python<'_>, text: &str, document: bool) -> PyResult<Vec<u32>> {
        let tokenizer = self.inner.tokenizer();
        py.detach(|| {
            if document {
                tokenizer.tokenize_document(text)
            } else {
                tokenizer.tokenize_query(text)
            }
        })
        .map(|t| t.ids)
        .map_err(model_err)
    }

    fn __repr__(&self) -> String {
        format!(
            "SparseEncoder(model={:?}, query_mode={:?}, documents={}, precision={:?})",
            self.spec,
            self.query_mode(),
            self.inner.can_encode_documents(),
            self.precision()
        )
    }
}
