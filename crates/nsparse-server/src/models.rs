//! The models a server can use: document encoders loaded with `--model`, and the built-in
//! OpenSearch query analyzer (tokenizer + idf.json) that is always there.

use std::collections::BTreeMap;
use std::sync::Arc;

use nsparse_model::{SparseEncoder, SparseVector};

use crate::error::{ApiError, ApiResult};

/// Model ids that name the built-in query model (OpenSearch's analyzer and tokenizer names).
pub const BUILTIN_IDS: [&str; 3] = [
    "bert-uncased",
    "opensearch-neural-sparse-tokenizer-v1",
    nsparse_model::BUILTIN_QUERY_MODEL,
];

/// Loaded encoders by model id, plus the built-in query model.
#[derive(Clone)]
pub struct Models {
    builtin: Arc<SparseEncoder>,
    encoders: BTreeMap<String, Arc<SparseEncoder>>,
    /// Per encoder id: whether its vocabulary is the built-in one (computed once).
    builtin_vocabulary: BTreeMap<String, bool>,
}

impl std::fmt::Debug for Models {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Models")
            .field("encoders", &self.encoders.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Default for Models {
    fn default() -> Self {
        Models::new()
    }
}

impl Models {
    /// Only the built-in query model.
    pub fn new() -> Self {
        let builtin = SparseEncoder::builtin_query_model();
        Models {
            builtin: Arc::new(builtin),
            encoders: BTreeMap::new(),
            builtin_vocabulary: BTreeMap::new(),
        }
    }

    /// Registers an encoder under `id` (replacing one of the same id).
    pub fn insert(&mut self, id: impl Into<String>, encoder: SparseEncoder) {
        let id = id.into();
        let same = same_vocabulary(&self.builtin, &encoder);
        self.builtin_vocabulary.insert(id.clone(), same);
        self.encoders.insert(id, Arc::new(encoder));
    }

    /// Ids of the registered encoders.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.encoders.keys().map(String::as_str)
    }

    /// The built-in query model; its tokenizer also maps token strings of `rank_features`
    /// values and `query_tokens` to ids, and splits text for BM25.
    pub fn builtin(&self) -> &Arc<SparseEncoder> {
        &self.builtin
    }

    /// The model for `id` (a registered encoder or a built-in name).
    pub fn get(&self, id: &str) -> ApiResult<Arc<SparseEncoder>> {
        if let Some(encoder) = self.encoders.get(id) {
            return Ok(encoder.clone());
        }
        if BUILTIN_IDS.contains(&id) {
            return Ok(self.builtin.clone());
        }
        let known: Vec<&str> = self.ids().chain(BUILTIN_IDS).collect();
        Err(ApiError::illegal_argument(format!(
            "model [{id}] is not loaded; this server knows {} (start it with --model {id}=DIR to add one)",
            known.join(", ")
        )))
    }

    /// A document encoder for `id` (an ingest pipeline's `model_id`).
    pub fn document_encoder(&self, id: &str) -> ApiResult<Arc<SparseEncoder>> {
        let encoder = self.get(id)?;
        if !encoder.can_encode_documents() {
            return Err(ApiError::illegal_argument(format!(
                "model [{id}] is a query-only analyzer and cannot encode documents; use a model loaded with --model"
            )));
        }
        Ok(encoder)
    }

    /// The id of `token` in the built-in (bert-base-uncased) vocabulary: with `token_ids` (a
    /// `sparse_vector` field, whose keys are token ids), `token` is a decimal id.
    pub fn builtin_token_id(&self, token: &str, token_ids: bool) -> Option<u32> {
        let tokenizer = self.builtin.tokenizer();
        if token_ids {
            token
                .parse::<u32>()
                .ok()
                .filter(|&id| (id as usize) < tokenizer.vocab_size())
        } else {
            tokenizer.id(token)
        }
    }

    /// Whether `encoder`'s token ids are the built-in vocabulary's (same tokens in the same
    /// order), so its vectors need no lookup in dictionaries seeded with that vocabulary.
    pub fn shares_builtin_vocabulary(&self, encoder: &SparseEncoder) -> bool {
        if std::ptr::eq(encoder, &*self.builtin) {
            return true;
        }
        match self
            .encoders
            .iter()
            .find(|(_, e)| std::ptr::eq(&***e, encoder))
        {
            Some((id, _)) => self.builtin_vocabulary.get(id).copied().unwrap_or(false),
            None => same_vocabulary(&self.builtin, encoder),
        }
    }

    /// Token ids of `text` for BM25 (the built-in tokenizer, no truncation), tokenized in
    /// pieces so memory stays a small multiple of the text (4 bytes per token).
    pub fn bm25_tokens(&self, text: &str) -> ApiResult<Vec<u32>> {
        Ok(self
            .builtin
            .tokenizer()
            .tokenize_untruncated_in_pieces(text)?)
    }

    /// `{token: weight}` of a vector encoded by `encoder`, for `_source` (as OpenSearch's
    /// `sparse_encoding` writes it).
    pub fn decode(
        encoder: &SparseEncoder,
        vector: &SparseVector,
    ) -> serde_json::Map<String, serde_json::Value> {
        let tokenizer = encoder.tokenizer();
        vector
            .iter()
            .map(|(id, w)| {
                // The shortest decimal of the f32 (as Java's Float.toString in OpenSearch), which
                // parses back to the same f32.
                let shortest: f64 = format!("{w}").parse().unwrap_or(f64::from(w));
                (
                    tokenizer.token(id).unwrap_or_else(|| format!("[id {id}]")),
                    serde_json::Value::from(shortest),
                )
            })
            .collect()
    }

    /// The name of token `id`, for explanations.
    pub fn token_name(&self, id: u32) -> String {
        self.builtin
            .tokenizer()
            .token(id)
            .unwrap_or_else(|| format!("[id {id}]"))
    }
}

/// Whether `b`'s tokenizer has `a`'s tokens under the same ids.
fn same_vocabulary(a: &SparseEncoder, b: &SparseEncoder) -> bool {
    let (a, b) = (a.tokenizer(), b.tokenizer());
    a.vocab_size() == b.vocab_size()
        && (0..a.vocab_size() as u32).all(|id| a.token(id) == b.token(id))
}
