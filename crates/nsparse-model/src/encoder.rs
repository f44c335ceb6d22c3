//! The sparse encoder: documents through the masked-LM, queries through idf.json or the network.

use std::collections::HashMap;
use std::path::Path;

use nsparse_kernels::Precision;
use rayon::prelude::*;

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::folder::ModelFiles;
use crate::network::MaskedLm;
use crate::sparse::SparseVector;
use crate::tokenize::{TextTokenizer, TokenizedText};
use crate::weights::SafetensorsFile;

/// The longest input of the encoders, in tokens (special tokens included for documents).
pub const MAX_LENGTH: usize = 512;

/// How queries are turned into vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryMode {
    /// WordPiece tokens weighted by idf.json, no network (the OpenSearch doc-only models).
    InferenceFree,
    /// The same network as documents (SPLADE, OpenSearch bi-encoders).
    BiEncoder,
}

/// How documents longer than [`MAX_LENGTH`] tokens are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LongDocuments {
    /// Keep the first 512 tokens (the models' own behaviour), counting truncated documents.
    #[default]
    Truncate,
    /// Encode consecutive 512-token windows (`[CLS]` + 510 tokens + `[SEP]`, no overlap) and
    /// keep the maximum weight of each token over the windows.
    Chunk,
}

/// Options of a [`SparseEncoder`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EncoderOptions {
    /// Kernel arithmetic: exact fp32, or the faster reduced-precision mode.
    pub precision: Precision,
    /// Upper bound on the tokens packed into one forward pass (memory vs. efficiency).
    pub batch_tokens: usize,
    /// Truncation or chunking of long documents.
    pub long_documents: LongDocuments,
}

impl Default for EncoderOptions {
    fn default() -> Self {
        EncoderOptions {
            precision: Precision::Exact,
            batch_tokens: 4096,
            long_documents: LongDocuments::Truncate,
        }
    }
}

/// Per-token query weights of an inference-free model, indexed by token id.
#[derive(Debug, Clone)]
pub struct Idf {
    weights: Vec<f32>,
}

impl Idf {
    /// Parses idf.json (`{token: weight}`) against a tokenizer's vocabulary. Tokens of the file that
    /// the vocabulary lacks are ignored; vocabulary tokens the file lacks weigh 0.
    pub fn from_json_bytes(bytes: &[u8], origin: &Path, tokenizer: &TextTokenizer) -> Result<Self> {
        let map: HashMap<String, f32> = serde_json::from_slice(bytes).map_err(|e| {
            ModelError::invalid(
                origin,
                format!("not a {{token: weight}} JSON object ({e}); re-download the model folder"),
            )
        })?;
        let mut weights = vec![0.0f32; tokenizer.vocab_size()];
        let mut unknown = 0usize;
        for (token, weight) in map {
            if !weight.is_finite() || weight < 0.0 {
                return Err(ModelError::invalid(
                    origin,
                    format!(
                        "token {token:?} has weight {weight}; idf weights must be finite and ≥ 0"
                    ),
                ));
            }
            match tokenizer.id(&token) {
                Some(id) if (id as usize) < weights.len() => weights[id as usize] = weight,
                _ => unknown += 1,
            }
        }
        if unknown > 0 {
            tracing::warn!(file = %origin.display(), unknown, "idf.json tokens absent from the vocabulary were ignored");
        }
        Ok(Idf { weights })
    }

    /// The weight of a token id (0 when unknown).
    pub fn weight(&self, id: u32) -> f32 {
        self.weights.get(id as usize).copied().unwrap_or(0.0)
    }
}

/// The result of encoding a batch of documents.
#[derive(Debug, Clone, Default)]
pub struct EncodedDocuments {
    /// One vector per input text, in input order.
    pub vectors: Vec<SparseVector>,
    /// How many inputs were longer than 512 tokens and lost their tail.
    pub truncated: usize,
    /// Total tokens fed to the network (special tokens included).
    pub tokens: usize,
}

/// A sparse encoder in the vocabulary of sentence-transformers' `SparseEncoder`:
/// [`encode_query`](Self::encode_query), [`encode_document`](Self::encode_document),
/// [`similarity`](Self::similarity), [`decode`](Self::decode).
pub struct SparseEncoder {
    name: String,
    fingerprint: String,
    tokenizer: TextTokenizer,
    idf: Option<Idf>,
    network: Option<MaskedLm>,
    options: EncoderOptions,
}

impl std::fmt::Debug for SparseEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SparseEncoder")
            .field("name", &self.name)
            .field("query_mode", &self.query_mode())
            .field("has_network", &self.network.is_some())
            .finish()
    }
}

/// The OpenSearch `bert-uncased` query analyzer, embedded in the binary (Apache-2.0, see NOTICE).
mod embedded {
    pub const TOKENIZER_JSON: &[u8] =
        include_bytes!("../assets/opensearch-query-v1/tokenizer.json");
    pub const IDF_JSON: &[u8] = include_bytes!("../assets/opensearch-query-v1/idf.json");
}

/// Name of the embedded query model.
pub const BUILTIN_QUERY_MODEL: &str = "opensearch-bert-uncased-query-v1";

impl SparseEncoder {
    /// The built-in inference-free query encoder: the OpenSearch `bert-uncased` tokenizer and
    /// idf.json, embedded in the binary, so queries need no files at all.
    pub fn builtin_query_model() -> Self {
        let origin = Path::new("<embedded opensearch-query-v1/tokenizer.json>");
        let tokenizer =
            TextTokenizer::from_json_bytes(embedded::TOKENIZER_JSON, origin, MAX_LENGTH)
                .expect("the embedded tokenizer.json is valid (checked by tests)");
        let idf = Idf::from_json_bytes(
            embedded::IDF_JSON,
            Path::new("<embedded idf.json>"),
            &tokenizer,
        )
        .expect("the embedded idf.json is valid (checked by tests)");
        SparseEncoder {
            name: BUILTIN_QUERY_MODEL.into(),
            fingerprint: format!("builtin:{BUILTIN_QUERY_MODEL}"),
            tokenizer,
            idf: Some(idf),
            network: None,
            options: EncoderOptions::default(),
        }
    }

    /// The embedded OpenSearch idf.json, for pairing with another tokenizer of the same vocabulary.
    pub fn builtin_idf_json() -> &'static [u8] {
        embedded::IDF_JSON
    }

    /// Loads a model folder or Hub id (see [`ModelFiles::resolve`]).
    pub fn load(spec: &str, options: EncoderOptions) -> Result<Self> {
        let files = ModelFiles::resolve(spec)?;
        Self::from_files(&files, spec, options)
    }

    /// Loads from already-located files; `name` identifies the model in messages and indexes.
    pub fn from_files(files: &ModelFiles, name: &str, options: EncoderOptions) -> Result<Self> {
        if options.batch_tokens < MAX_LENGTH {
            return Err(ModelError::InvalidArgument {
                what: "batch_tokens",
                problem: format!(
                    "{} is below {MAX_LENGTH}, the longest sequence",
                    options.batch_tokens
                ),
            });
        }
        let config = files
            .config
            .as_deref()
            .map(ModelConfig::from_file)
            .transpose()?;
        let max_length = config
            .as_ref()
            .map_or(MAX_LENGTH, |c| c.max_position_embeddings.min(MAX_LENGTH));
        let tokenizer = if let Some(path) = &files.tokenizer_json {
            let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
            TextTokenizer::from_json_bytes(&bytes, path, max_length)?
        } else {
            let vocab = files.vocab_txt.as_ref().expect("validated by ModelFiles");
            TextTokenizer::from_vocab_txt(vocab, lowercase_setting(files)?, max_length)?
        };
        let idf = files
            .idf
            .as_ref()
            .map(|path| {
                let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
                Idf::from_json_bytes(&bytes, path, &tokenizer)
            })
            .transpose()?;
        let network = match (&config, &files.weights) {
            (Some(config), Some(weights)) => {
                if tokenizer.vocab_size() > config.vocab_size {
                    return Err(ModelError::invalid(
                        files.config.clone().unwrap_or_default(),
                        format!(
                            "vocab_size {} is smaller than the tokenizer's {} tokens; config.json and tokenizer.json belong to different models",
                            config.vocab_size,
                            tokenizer.vocab_size()
                        ),
                    ));
                }
                let file = SafetensorsFile::open(weights, config.architecture)?;
                Some(MaskedLm::load(&file, config, options.precision)?)
            }
            _ => None,
        };
        Ok(SparseEncoder {
            name: name.to_string(),
            fingerprint: files.fingerprint()?,
            tokenizer,
            idf,
            network,
            options,
        })
    }

    /// Replaces (or adds) the idf weights, making queries inference-free; `origin` names the file.
    pub fn with_idf_json(mut self, bytes: &[u8], origin: &Path) -> Result<Self> {
        self.idf = Some(Idf::from_json_bytes(bytes, origin, &self.tokenizer)?);
        Ok(self)
    }

    /// Drops the idf weights so queries go through the network (bi-encoder mode).
    pub fn without_idf(mut self) -> Result<Self> {
        if self.network.is_none() {
            return Err(ModelError::QueryOnly { model: self.name });
        }
        self.idf = None;
        Ok(self)
    }

    /// The model's name as given at load time.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A stable identity of the model files (see [`ModelFiles::fingerprint`]); indexes record it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// How queries are encoded.
    pub fn query_mode(&self) -> QueryMode {
        if self.idf.is_some() {
            QueryMode::InferenceFree
        } else {
            QueryMode::BiEncoder
        }
    }

    /// How this encoder handles documents longer than [`MAX_LENGTH`] tokens.
    pub fn long_documents(&self) -> LongDocuments {
        self.options.long_documents
    }

    /// Whether this model can encode documents (it has network weights).
    pub fn can_encode_documents(&self) -> bool {
        self.network.is_some()
    }

    /// Every token id of this encoder's vectors (documents and queries) is below this: the larger
    /// of the tokenizer's vocabulary (added tokens included) and the network's `vocab_size`
    /// (which may pad the tokenizer's). Indexes of this model's vectors need this many features.
    pub fn vocab_size(&self) -> usize {
        let network = self.network.as_ref().map_or(0, |n| n.config().vocab_size);
        network.max(self.tokenizer.vocab_size())
    }

    /// The network configuration, for models with weights.
    pub fn config(&self) -> Option<&ModelConfig> {
        self.network.as_ref().map(MaskedLm::config)
    }

    /// Encodes one query.
    pub fn encode_query(&self, text: &str) -> Result<SparseVector> {
        match &self.idf {
            Some(idf) => {
                let TokenizedText { ids, .. } = self.tokenizer.tokenize_query(text)?;
                // Unique tokens, each weighted by idf; tokens missing from idf.json weigh 0 and
                // vanish, as in sentence-transformers' inference-free SparseStaticEmbedding.
                Ok(SparseVector::from_pairs(
                    ids.into_iter().map(|id| (id, idf.weight(id))).collect(),
                ))
            }
            None => self.encode_document(text),
        }
    }

    /// Encodes several queries.
    pub fn encode_queries(&self, texts: &[&str]) -> Result<Vec<SparseVector>> {
        match &self.idf {
            Some(_) => texts.par_iter().map(|t| self.encode_query(t)).collect(),
            None => Ok(self.encode_documents(texts, |_| {})?.vectors),
        }
    }

    /// Encodes one document.
    pub fn encode_document(&self, text: &str) -> Result<SparseVector> {
        let mut out = self.encode_documents(&[text], |_| {})?;
        Ok(out.vectors.pop().unwrap_or_default())
    }

    /// Encodes documents in length-sorted, token-packed batches; `progress` is called with the
    /// number of documents finished after each batch.
    pub fn encode_documents(
        &self,
        texts: &[&str],
        progress: impl Fn(usize) + Sync,
    ) -> Result<EncodedDocuments> {
        let network = self.network.as_ref().ok_or_else(|| ModelError::QueryOnly {
            model: self.name.clone(),
        })?;
        // Each document becomes one or more windows (several only in chunked mode).
        let windows: Vec<(Vec<Vec<u32>>, bool)> = texts
            .par_iter()
            .map(|text| self.document_windows(text))
            .collect::<Result<_>>()?;
        let truncated = windows.iter().filter(|w| w.1).count();
        let mut jobs: Vec<(usize, &[u32])> = windows
            .iter()
            .enumerate()
            .flat_map(|(doc, (ws, _))| ws.iter().map(move |w| (doc, w.as_slice())))
            .collect();
        let tokens = jobs.iter().map(|j| j.1.len()).sum();
        // Longest first: similar lengths share a batch and the attention work stays balanced.
        jobs.sort_by_key(|j| std::cmp::Reverse(j.1.len()));

        // Sparse all the way: a dense `vocab_size` array per document would cost 1 MB each with a
        // 250,002-token vocabulary.
        let mut pooled: Vec<Option<SparseVector>> = vec![None; texts.len()];
        let mut remaining: Vec<usize> = windows.iter().map(|w| w.0.len()).collect();
        let mut finished = 0;
        let mut start = 0;
        while start < jobs.len() {
            let mut end = start;
            let mut batch_tokens = 0;
            while end < jobs.len()
                && (end == start || batch_tokens + jobs[end].1.len() <= self.options.batch_tokens)
            {
                batch_tokens += jobs[end].1.len();
                end += 1;
            }
            let batch: Vec<&[u32]> = jobs[start..end].iter().map(|j| j.1).collect();
            let outputs = network.pool_batch_sparse(&batch)?;
            for ((doc, _), out) in jobs[start..end].iter().zip(outputs) {
                match &mut pooled[*doc] {
                    Some(acc) => *acc = acc.max_with(&out),
                    slot => *slot = Some(out),
                }
                remaining[*doc] -= 1;
                if remaining[*doc] == 0 {
                    finished += 1;
                }
            }
            progress(finished);
            start = end;
        }
        let specials = self.tokenizer.special_ids();
        let vectors = pooled
            .into_iter()
            .map(|vector| {
                let mut vector = vector.unwrap_or_default();
                // special_ids() is sorted.
                vector.retain(|id, _| specials.binary_search(&id).is_err());
                vector
            })
            .collect();
        if truncated > 0 {
            // Callers get the count in `EncodedDocuments::truncated` and report it once per run.
            tracing::info!(
                truncated,
                "documents longer than {MAX_LENGTH} tokens were truncated"
            );
        }
        Ok(EncodedDocuments {
            vectors,
            truncated,
            tokens,
        })
    }

    /// The network inputs of one document and whether its tail was cut.
    fn document_windows(&self, text: &str) -> Result<(Vec<Vec<u32>>, bool)> {
        match self.options.long_documents {
            LongDocuments::Truncate => {
                let t = self.tokenizer.tokenize_document(text)?;
                Ok((vec![t.ids], t.truncated))
            }
            LongDocuments::Chunk => {
                let content = self.tokenizer.tokenize_document_untruncated(text)?;
                let (cls, sep) = self.tokenizer.cls_sep().ok_or_else(|| {
                    ModelError::Tokenizer(
                        "the vocabulary has no [CLS]/[SEP] to frame windows".into(),
                    )
                })?;
                let width = self.tokenizer.max_length() - 2;
                let frame = |chunk: &[u32]| {
                    let mut w = Vec::with_capacity(chunk.len() + 2);
                    w.push(cls);
                    w.extend_from_slice(chunk);
                    w.push(sep);
                    w
                };
                let windows = if content.is_empty() {
                    vec![frame(&[])]
                } else {
                    content.chunks(width).map(frame).collect()
                };
                Ok((windows, false))
            }
        }
    }

    /// The relevance score of the neural sparse models: the dot product.
    pub fn similarity(&self, query: &SparseVector, document: &SparseVector) -> f32 {
        query.dot(document)
    }

    /// Token strings with weights, sorted by weight (descending).
    pub fn decode(&self, vector: &SparseVector) -> Vec<(String, f32)> {
        vector
            .by_weight_desc()
            .into_iter()
            .map(|(id, w)| {
                (
                    self.tokenizer
                        .token(id)
                        .unwrap_or_else(|| format!("[id {id}]")),
                    w,
                )
            })
            .collect()
    }

    /// Converts `{token: weight}` back into a vector; unknown tokens are an error naming them.
    pub fn vector_from_tokens<'a>(
        &self,
        tokens: impl IntoIterator<Item = (&'a str, f32)>,
    ) -> Result<SparseVector> {
        let (tokens, weights): (Vec<&str>, Vec<f32>) = tokens.into_iter().unzip();
        let ids = self.tokenizer.ids_of(&tokens);
        let mut pairs = Vec::with_capacity(tokens.len());
        for ((token, weight), id) in tokens.into_iter().zip(weights).zip(ids) {
            let id = id.ok_or_else(|| ModelError::InvalidArgument {
                what: "token",
                problem: format!("{token:?} is not in the model's vocabulary"),
            })?;
            if !weight.is_finite() || weight < 0.0 {
                return Err(ModelError::InvalidArgument {
                    what: "token weight",
                    problem: format!(
                        "{token:?} has weight {weight}; weights must be finite and ≥ 0"
                    ),
                });
            }
            pairs.push((id, weight));
        }
        Ok(SparseVector::from_pairs(pairs))
    }
}

fn lowercase_setting(files: &ModelFiles) -> Result<bool> {
    let Some(path) = &files.tokenizer_config else {
        return Ok(true);
    };
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ModelError::invalid(path, format!("not valid JSON ({e})")))?;
    Ok(json
        .get("do_lower_case")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(true))
}
