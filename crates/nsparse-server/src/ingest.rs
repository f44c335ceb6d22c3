//! Ingest and search pipelines, and turning a `_source` into an nsparse [`Document`].

use nsparse_index::{Document, SearchMode};
use nsparse_model::{LongDocuments, Pruning, SparseEncoder, SparseVector};
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::limits::Cancel;
use crate::mapping::{DocValues, IndexMeta};
use crate::models::Models;

/// An ingest pipeline: `sparse_encoding` processors, run in order. The default has none.
#[derive(Debug, Clone, Default)]
pub struct IngestPipeline {
    processors: Vec<SparseEncoding>,
}

/// OpenSearch's `sparse_encoding` processor.
#[derive(Debug, Clone)]
pub struct SparseEncoding {
    /// Document encoder id.
    model_id: String,
    /// Source text field → target vector field.
    field_map: Vec<(String, String)>,
    /// `prune_type` + `prune_ratio`.
    pruning: Pruning,
}

impl IngestPipeline {
    /// Parses and checks a pipeline body (the models must be loaded).
    pub fn parse(id: &str, body: &Value, models: &Models) -> ApiResult<Self> {
        let processors = body
            .get("processors")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                ApiError::parsing(format!(
                    "pipeline [{id}]: [processors] is required and must be an array"
                ))
            })?;
        let mut out = Vec::new();
        for processor in processors {
            let Some((kind, config)) = processor.as_object().and_then(|o| o.iter().next()) else {
                return Err(ApiError::parsing(format!(
                    "pipeline [{id}]: each processor must be an object like {{\"sparse_encoding\": {{...}}}}"
                )));
            };
            if kind != "sparse_encoding" {
                return Err(ApiError::parsing(format!(
                    "No processor type exists with name [{kind}] (nsparse supports only sparse_encoding)"
                )));
            }
            let model_id = config
                .get("model_id")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ApiError::parsing("[sparse_encoding] required property [model_id] is missing")
                })?
                .to_string();
            models.document_encoder(&model_id)?;
            let map = config
                .get("field_map")
                .and_then(Value::as_object)
                .ok_or_else(|| {
                    ApiError::parsing("[sparse_encoding] required property [field_map] is missing")
                })?;
            let mut field_map = Vec::new();
            for (from, to) in map {
                let to = to.as_str().ok_or_else(|| {
                    ApiError::parsing(format!(
                        "[sparse_encoding] field_map [{from}] must name one target field (a string); nested field maps are not supported"
                    ))
                })?;
                field_map.push((from.clone(), to.to_string()));
            }
            let prune_type = config
                .get("prune_type")
                .and_then(Value::as_str)
                .unwrap_or("none");
            let prune_ratio = match config.get("prune_ratio") {
                None => 0.0,
                Some(v) => v.as_f64().ok_or_else(|| {
                    ApiError::x_content("[sparse_encoding] prune_ratio must be a number")
                })? as f32,
            };
            let pruning = Pruning::from_opensearch(prune_type, prune_ratio)?;
            out.push(SparseEncoding {
                model_id,
                field_map,
                pruning,
            });
        }
        Ok(IngestPipeline { processors: out })
    }

    /// Runs the pipeline on many sources at once (one batched encoding per processor and field);
    /// a failing document gets its error and is left out of later processors.
    pub fn run(&self, sources: &mut [ApiResult<Value>], models: &Models) {
        self.run_cancellable(sources, models, &Cancel::default());
    }

    /// [`IngestPipeline::run`] that stops between encoding batches once `cancel` is set (the
    /// request timed out): the documents not encoded yet get a timeout error.
    pub fn run_cancellable(
        &self,
        sources: &mut [ApiResult<Value>],
        models: &Models,
        cancel: &Cancel,
    ) {
        for processor in &self.processors {
            let encoder = match models.document_encoder(&processor.model_id) {
                Ok(e) => e,
                Err(e) => {
                    for s in sources.iter_mut().filter(|s| s.is_ok()) {
                        *s = Err(e.clone());
                    }
                    return;
                }
            };
            for (from, to) in &processor.field_map {
                let mut texts: Vec<(usize, String)> = Vec::new();
                for (i, slot) in sources.iter_mut().enumerate() {
                    let Ok(source) = slot else { continue };
                    match source.get(from) {
                        None | Some(Value::Null) => {}
                        Some(Value::String(s)) => texts.push((i, s.clone())),
                        Some(other) => {
                            let kind = if other.is_array() {
                                "a list"
                            } else {
                                "not a string"
                            };
                            *slot = Err(ApiError::illegal_argument(format!(
                                "sparse_encoding: field [{from}] is {kind}; map a field holding one string"
                            )));
                        }
                    }
                }
                if texts.is_empty() {
                    continue;
                }
                // Truncating encoders read 512 tokens: hand them only the prefix holding them.
                let truncating = encoder.long_documents() == LongDocuments::Truncate;
                let mut refs: Vec<&str> = Vec::with_capacity(texts.len());
                for (_, t) in &texts {
                    refs.push(if truncating {
                        encoder
                            .tokenizer()
                            .truncation_prefix(t)
                            .unwrap_or(t.as_str())
                    } else {
                        t.as_str()
                    });
                }
                if cancel.is_cancelled() {
                    for (i, _) in &texts {
                        sources[*i] = Err(cancelled());
                    }
                    return;
                }
                match encode_cancellable(&encoder, &refs, cancel) {
                    Ok(encoded) => {
                        for ((i, _), mut vector) in texts.iter().zip(encoded) {
                            vector.prune(processor.pruning);
                            if let Ok(Value::Object(o)) = &mut sources[*i] {
                                o.insert(
                                    to.clone(),
                                    Value::Object(Models::decode(&encoder, &vector)),
                                );
                            }
                        }
                    }
                    Err(e) => {
                        for (i, _) in &texts {
                            sources[*i] = Err(e.clone());
                        }
                    }
                }
            }
        }
    }
}

/// Documents encoded per call, between which a cancelled request stops.
const ENCODE_CHUNK: usize = 64;

fn cancelled() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::GATEWAY_TIMEOUT,
        "timeout_exception",
        "the request timed out (--request-timeout-secs) before this document was encoded; it was not stored",
    )
}

/// `encode_documents` in chunks of [`ENCODE_CHUNK`], checking `cancel` between them.
fn encode_cancellable(
    encoder: &SparseEncoder,
    texts: &[&str],
    cancel: &Cancel,
) -> Result<Vec<SparseVector>, ApiError> {
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(ENCODE_CHUNK) {
        if cancel.is_cancelled() {
            return Err(cancelled());
        }
        out.extend(encoder.encode_documents(chunk, |_| {})?.vectors);
    }
    Ok(out)
}

/// A document ready for the index, with the values filters read.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The nsparse document (vector, BM25 tokens, `_source` bytes).
    pub doc: Document,
    /// Filter values.
    pub values: DocValues,
    /// BM25 tokens of each mapped text field present in the document.
    pub field_tokens: std::collections::BTreeMap<String, Vec<u32>>,
    /// The named vector of every sparse field with its own index (empty where absent).
    pub sparse: std::collections::BTreeMap<String, crate::sparse_fields::Named>,
}

/// Checks `source` against the mapping and builds the nsparse document: every sparse field's
/// value is read by OpenSearch's rules ([`crate::sparse_fields::parse_value`]; the main index
/// holds the vector of an earlier release's field), the BM25 tokens come from the text (see
/// [`IndexMeta::analyze`]), and the whole source is stored.
pub fn prepare(meta: &IndexMeta, models: &Models, id: &str, source: &Value) -> ApiResult<Prepared> {
    if id.is_empty() || id.len() > nsparse_index::MAX_ID_BYTES.min(512) {
        return Err(ApiError::illegal_argument(format!(
            "id [{}] is {} bytes long; an _id must have 1 to 512 bytes",
            id.chars().take(64).collect::<String>(),
            id.len()
        )));
    }
    let analyzed = meta.analyze(id, source)?;
    let sparse = crate::sparse_fields::analyze(meta, id, source)?;
    // The sparse field of an index of an earlier release lives in the main index, whose fixed
    // vocabulary is the built-in tokenizer's.
    let vector = match meta
        .main_vector_field()
        .and_then(|path| Some((meta.field(path)?, lookup(source, path)?)))
    {
        None => SparseVector::new(),
        Some((field, value)) => {
            let named = crate::sparse_fields::parse_value(field, id, value)?;
            let sparse_vector = field.type_name == "sparse_vector";
            let mut pairs = Vec::with_capacity(named.len());
            for (name, weight) in &named {
                let token = crate::sparse_fields::feature_name(name);
                match models.builtin_token_id(token, sparse_vector) {
                    Some(id) => pairs.push((id, *weight)),
                    None => return Err(ApiError::mapper_parsing(format!(
                        "failed to parse field [{}] of type [{}] in document with id '{id}': feature [{token}] is not in the bert-base-uncased WordPiece vocabulary (30,522 tokens): this index was created by an earlier nsparse release, which keeps its sparse field in that vocabulary; reindex into a new index to use any feature name",
                        field.path, field.type_name
                    ))),
                }
            }
            SparseVector::from_pairs(pairs)
        }
    };
    // The index-wide BM25 bag is every text field's tokens plus the unmapped strings' (WordPiece
    // splits at whitespace, so this equals tokenizing the joined text).
    let mut field_tokens = std::collections::BTreeMap::new();
    let mut all_tokens = models.bm25_tokens(&analyzed.unmapped_text)?;
    for (field, text) in &analyzed.field_texts {
        let tokens = models.bm25_tokens(text)?;
        all_tokens.extend_from_slice(&tokens);
        field_tokens.insert(field.clone(), tokens);
    }
    let tokens = (!all_tokens.is_empty()).then_some(all_tokens);
    let source = serde_json::to_vec(source)
        .map_err(|e| ApiError::internal(format!("cannot serialise _source: {e}")))?;
    Ok(Prepared {
        doc: Document {
            id: id.to_string(),
            vector: vector.iter().collect(),
            tokens,
            source,
        },
        values: analyzed.values,
        field_tokens,
        sparse,
    })
}

/// The value at a dotted path of a JSON object.
pub fn lookup<'a>(source: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = source.get(path) {
        return Some(v);
    }
    let mut node = source;
    for part in path.split('.') {
        node = node.get(part)?;
    }
    Some(node)
}

/// Merges `patch` into `base` recursively (objects merge, everything else replaces), as a
/// partial update (`update` with `doc`) does.
pub fn merge_source(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                match b.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        merge_source(existing, v)
                    }
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// A search pipeline; nsparse supports `neural_sparse_two_phase_processor`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchPipeline {
    two_phase: Option<SearchMode>,
}

impl SearchPipeline {
    /// The two-phase mode, when the processor is present and enabled.
    pub fn two_phase(&self) -> Option<SearchMode> {
        self.two_phase
    }

    /// Parses and checks a search pipeline body.
    pub fn parse(id: &str, body: &Value) -> ApiResult<Self> {
        let Some(obj) = body.as_object() else {
            return Err(ApiError::parsing(format!(
                "search pipeline [{id}] must be a JSON object"
            )));
        };
        let mut two_phase = None;
        for (key, value) in obj {
            match key.as_str() {
                "description" | "tag" => {}
                "request_processors" => {
                    let list = value.as_array().ok_or_else(|| {
                        ApiError::parsing("[request_processors] must be an array")
                    })?;
                    for processor in list {
                        let Some((kind, config)) =
                            processor.as_object().and_then(|o| o.iter().next())
                        else {
                            return Err(ApiError::parsing("each processor must be an object"));
                        };
                        if kind != "neural_sparse_two_phase_processor" {
                            return Err(ApiError::illegal_argument(format!(
                                "Invalid processor type {kind} (nsparse supports only neural_sparse_two_phase_processor)"
                            )));
                        }
                        two_phase = parse_two_phase(config)?;
                    }
                }
                other => {
                    return Err(ApiError::illegal_argument(format!(
                        "search pipeline [{id}]: [{other}] is not supported (nsparse supports request_processors with neural_sparse_two_phase_processor)"
                    )))
                }
            }
        }
        Ok(SearchPipeline { two_phase })
    }
}

fn parse_two_phase(config: &Value) -> ApiResult<Option<SearchMode>> {
    if config.get("enabled").and_then(Value::as_bool) == Some(false) {
        return Ok(None);
    }
    let params = config
        .get("two_phase_parameter")
        .unwrap_or(config)
        .as_object()
        .cloned()
        .unwrap_or_else(Map::new);
    let SearchMode::TwoPhase {
        mut prune_ratio,
        mut expansion_rate,
        mut max_window_size,
    } = SearchMode::two_phase()
    else {
        unreachable!("two_phase() is TwoPhase")
    };
    let number = |key: &str| -> ApiResult<Option<f64>> {
        match params.get(key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                ApiError::x_content(format!("[{key}] of two_phase_parameter must be a number"))
            }),
        }
    };
    if let Some(v) = number("prune_ratio")? {
        if !(0.0..=1.0).contains(&v) {
            return Err(ApiError::illegal_argument(format!(
                "two-phase prune_ratio {v} must be in [0, 1]"
            )));
        }
        prune_ratio = v as f32;
    }
    if let Some(v) = number("expansion_rate")? {
        if !(v >= 1.0 && v.is_finite()) {
            return Err(ApiError::illegal_argument(format!(
                "two-phase expansion_rate {v} must be at least 1"
            )));
        }
        expansion_rate = v as f32;
    }
    if let Some(v) = number("max_window_size")? {
        if !(50.0..=1e7).contains(&v) {
            return Err(ApiError::illegal_argument(format!(
                "two-phase max_window_size {v} must be in [50, 10000000]"
            )));
        }
        max_window_size = v as usize;
    }
    Ok(Some(SearchMode::TwoPhase {
        prune_ratio,
        expansion_rate,
        max_window_size,
    }))
}
