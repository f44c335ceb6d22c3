//! The sparse fields' own indexes (`sparse/` of an index directory), and OpenSearch's rules for
//! their values.
//!
//! Every `rank_features` or `sparse_vector` field of an index created by this release has an
//! nsparse index of its own with an open vocabulary: the field's feature dictionary. Unlike the
//! per-field BM25 indexes, these are not derived state: they hold the only copy of the
//! feature names' ids, so they are written before the main index in every write (their WAL is
//! fsynced before the write is acknowledged) and never rebuilt.
//!
//! - A `rank_features` dictionary is seeded with the bert-base-uncased WordPiece vocabulary in
//!   id order (the built-in tokenizer's tokens), so the ids of the built-in models' vectors
//!   are valid as they are. Names are escaped by [`dictionary_key`] (the dictionary refuses
//!   the empty name OpenSearch accepts).
//! - A `sparse_vector` dictionary (OpenSearch 3.3+, keys are token ids) is seeded with the
//!   decimal names `"0"`, `"1"`, ... of the same vocabulary, so token id `k` of the built-in
//!   vocabulary is id `k` of the field; a key is stored as the canonical decimal of the integer
//!   it parses to, so `"007"` and `"7"` are the same token, and larger ids get new ids.
//!
//! Each field document carries a stamp of the main document's `_source` ([`stamp`]). Writes
//! go to the field indexes first and to the main index last (deletions the other way round),
//! so after a crash the field documents that disagree with the main index are exactly those
//! whose stamp differs from their main document's, or that have no main document;
//! [`repair`] (run when the index was not shut down cleanly) rewrites them from the main
//! index's `_source`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use nsparse_index::{CreateOptions, Document, Index, Searcher, Vocabulary, WriterOptions};
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::ingest::lookup;
use crate::mapping::{Field, IndexMeta};
use crate::models::Models;
use crate::names::field_dir_name;

/// Identity of the per-sparse-field indexes.
const SPARSE_INDEX_IDENTITY: &str = "opensearch-rest-sparse-field";

/// Lucene's longest term (OpenSearch refuses longer feature names at indexing).
pub const MAX_FEATURE_NAME_BYTES: usize = 32_766;

/// Feature names and weights of one field of one document (names as the field's dictionary
/// keeps them, see [`dictionary_key`]).
pub type Named = Vec<(String, f32)>;

/// The two sparse field types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SparseKind {
    /// `rank_features`: any feature name.
    RankFeatures,
    /// `sparse_vector`: keys are non-negative integer token ids.
    SparseVector,
}

impl SparseKind {
    /// The kind of a mapped sparse field.
    pub fn of(field: &Field) -> SparseKind {
        if field.type_name == "sparse_vector" {
            SparseKind::SparseVector
        } else {
            SparseKind::RankFeatures
        }
    }

    fn type_name(self) -> &'static str {
        match self {
            SparseKind::RankFeatures => "rank_features",
            SparseKind::SparseVector => "sparse_vector",
        }
    }
}

/// The directory of the index of sparse field `field` in the index directory `dir`.
pub fn field_dir(dir: &Path, field: &str) -> PathBuf {
    dir.join("sparse").join(field_dir_name(field))
}

/// Opens (creating when missing) the index of every sparse field of `meta` that has its own
/// and is not in `already_open`.
pub fn open(
    dir: &Path,
    meta: &IndexMeta,
    already_open: &BTreeMap<String, Index>,
    models: &Models,
    options: WriterOptions,
) -> ApiResult<BTreeMap<String, Index>> {
    let mut out = BTreeMap::new();
    for field in meta.vector_fields() {
        if !meta.has_own_sparse_index(&field.path) || already_open.contains_key(&field.path) {
            continue;
        }
        let path = field_dir(dir, &field.path);
        let index = if path.join("MANIFEST").exists() {
            Index::open(&path, options)?
        } else {
            let seed = seed(SparseKind::of(field), models);
            Index::create(
                &path,
                &CreateOptions::new(SPARSE_INDEX_IDENTITY)
                    .with_vocabulary(Vocabulary::Open { seed }),
                options,
            )?
        };
        out.insert(field.path.clone(), index);
    }
    Ok(out)
}

/// The names given ids `0..vocab` when a field's dictionary is created: the built-in
/// tokenizer's tokens (`rank_features`) or their ids in decimal (`sparse_vector`).
fn seed(kind: SparseKind, models: &Models) -> Vec<String> {
    let tokenizer = models.builtin().tokenizer();
    (0..tokenizer.vocab_size() as u32)
        .map(|id| match kind {
            SparseKind::SparseVector => id.to_string(),
            SparseKind::RankFeatures => dictionary_key(
                &tokenizer
                    .token(id)
                    .unwrap_or_else(|| format!("[unused id {id}]")),
            )
            .into_owned(),
        })
        .collect()
}

/// The dictionary key of feature name `name`: the name itself, except that a name that is
/// empty or starts with NUL gets one more NUL in front (the dictionary refuses empty names;
/// OpenSearch accepts them). [`feature_name`] undoes it.
pub fn dictionary_key(name: &str) -> Cow<'_, str> {
    if name.is_empty() || name.starts_with('\0') {
        Cow::Owned(format!("\0{name}"))
    } else {
        Cow::Borrowed(name)
    }
}

/// The feature name of dictionary key `key` (see [`dictionary_key`]).
pub fn feature_name(key: &str) -> &str {
    key.strip_prefix('\0').unwrap_or(key)
}

/// The canonical name of a `sparse_vector` key: the decimal of the integer it parses to
/// (Java's `Integer.parseInt`: an optional sign and digits, within `i32`), or the OpenSearch
/// error message for a key that is not a non-negative integer.
pub fn token_id_key(key: &str) -> Result<u32, &'static str> {
    match key.parse::<i32>() {
        Ok(id) if id >= 0 => Ok(id as u32),
        Ok(_) => Err("[sparse_vector] fields should be text of non-negative integer"),
        Err(_) => Err("[sparse_vector] fields should be valid integer"),
    }
}

/// Java's `Float.toString` (as OpenSearch's messages print weights).
pub fn java_float(x: f32) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let abs = x.abs();
    if abs == 0.0 || (1e-3..1e7).contains(&abs) {
        let text = format!("{x}");
        return if text.contains('.') {
            text
        } else {
            format!("{text}.0")
        };
    }
    let text = format!("{x:e}");
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    let mantissa = if mantissa.contains('.') {
        mantissa.to_string()
    } else {
        format!("{mantissa}.0")
    };
    format!("{mantissa}E{exponent}")
}

fn token_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "VALUE_NULL",
        Value::Bool(_) => "VALUE_BOOLEAN",
        Value::Number(_) => "VALUE_NUMBER",
        Value::String(_) => "VALUE_STRING",
        Value::Array(_) => "START_ARRAY",
        Value::Object(_) => "START_OBJECT",
    }
}

/// Reads the value of sparse field `field` in document `id` as OpenSearch's
/// `RankFeaturesFieldMapper` / neural-search's `SparseVectorFieldMapper` do: an object (or an
/// array of objects) of feature → weight; `null` weights are skipped; numbers and numeric
/// strings are read as 32-bit floats, which Lucene's `FeatureField` requires to be finite
/// and at least the smallest positive normal float; a feature given twice is refused;
/// `sparse_vector` keys must be non-negative 32-bit integers. Errors are OpenSearch's:
/// a 400 `mapper_parsing_exception` whose `caused_by` names the feature and the problem.
pub fn parse_value(field: &Field, id: &str, value: &Value) -> ApiResult<Named> {
    let kind = SparseKind::of(field);
    let ty = kind.type_name();
    let path = &field.path;
    let fail = |cause_type: &str, cause: String| {
        let preview: String = value.to_string().chars().take(80).collect();
        ApiError::mapper_parsing(format!(
            "failed to parse field [{path}] of type [{ty}] in document with id '{id}'. Preview of field's value: '{preview}'"
        ))
        .with("caused_by", json!({"type": cause_type, "reason": cause}))
    };
    let not_an_object = |other: &Value| {
        fail(
            "illegal_argument_exception",
            format!(
                "[{ty}] fields must be json objects, expected a START_OBJECT but got: {}",
                token_name(other)
            ),
        )
    };
    let objects: Vec<&serde_json::Map<String, Value>> = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Object(o) => vec![o],
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::Object(o) => out.push(o),
                    Value::Null => {}
                    other => return Err(not_an_object(other)),
                }
            }
            out
        }
        other => return Err(not_an_object(other)),
    };
    let mut out: Named = Vec::new();
    let mut seen: HashMap<String, ()> = HashMap::new();
    for object in objects {
        for (feature, weight) in object {
            let w: f32 = match weight {
                Value::Null => continue,
                Value::Number(n) => n.as_f64().map_or(f32::NAN, |x| x as f32),
                Value::String(s) => match s.trim().parse::<f32>() {
                    Ok(x) => x,
                    Err(_) => {
                        return Err(fail(
                            "number_format_exception",
                            format!("For input string: \"{s}\""),
                        ))
                    }
                },
                other => {
                    return Err(fail(
                        "illegal_argument_exception",
                        format!(
                            "[{ty}] fields take hashes that map a feature to a strictly positive float, but got unexpected token {}",
                            token_name(other)
                        ),
                    ))
                }
            };
            let name = match kind {
                SparseKind::RankFeatures => dictionary_key(feature).into_owned(),
                SparseKind::SparseVector => match token_id_key(feature) {
                    Ok(token) => token.to_string(),
                    Err(message) => {
                        return Err(fail(
                            "illegal_argument_exception",
                            format!("{message}, got [{feature}]"),
                        ))
                    }
                },
            };
            if seen.insert(name.clone(), ()).is_some() {
                let what = match kind {
                    SparseKind::RankFeatures => "rank feature",
                    SparseKind::SparseVector => "key",
                };
                return Err(fail(
                    "illegal_argument_exception",
                    format!(
                        "[{ty}] fields do not support indexing multiple values for the same {what} [{path}.{feature}] in the same document"
                    ),
                ));
            }
            if !w.is_finite() {
                return Err(fail(
                    "illegal_argument_exception",
                    format!(
                        "featureValue must be finite, got: {} for feature {feature} on field {path}",
                        java_float(w)
                    ),
                ));
            }
            if w < f32::MIN_POSITIVE {
                return Err(fail(
                    "illegal_argument_exception",
                    format!(
                        "featureValue must be a positive normal float, got: {} for feature {feature} on field {path} which is less than the minimum positive normal float: {}",
                        java_float(w),
                        java_float(f32::MIN_POSITIVE)
                    ),
                ));
            }
            if w > nsparse_index::MAX_WEIGHT {
                return Err(fail(
                    "illegal_argument_exception",
                    format!(
                        "feature [{feature}] of field [{path}] has weight {}, above the largest weight nsparse stores ({}, the largest half-precision float); scale the vector down",
                        java_float(w),
                        nsparse_index::MAX_WEIGHT
                    ),
                ));
            }
            if name.len() > MAX_FEATURE_NAME_BYTES {
                let prefix: String = feature.chars().take(30).collect();
                return Err(ApiError::illegal_argument(format!(
                    "Document contains at least one immense term in field=\"{path}\" (whose UTF8 encoding is longer than the max length {MAX_FEATURE_NAME_BYTES}), all of which were skipped. The prefix of the first immense term is: '{prefix}...'; feature names can be at most {MAX_FEATURE_NAME_BYTES} bytes long, this one has {}",
                    feature.len()
                )));
            }
            out.push((name, w));
        }
    }
    Ok(out)
}

/// The named vectors of every sparse field with its own index in `source` (an empty vector
/// where the document has none).
pub fn analyze(meta: &IndexMeta, id: &str, source: &Value) -> ApiResult<BTreeMap<String, Named>> {
    let mut out = BTreeMap::new();
    for field in meta.vector_fields() {
        if !meta.has_own_sparse_index(&field.path) {
            continue;
        }
        let named = match lookup(source, &field.path) {
            None => Vec::new(),
            Some(value) => parse_value(field, id, value)?,
        };
        out.insert(field.path.clone(), named);
    }
    Ok(out)
}

/// A stamp of a main document's `_source` bytes (64-bit FNV-1a), kept as the source of its
/// field documents: equal stamps mean the field document was written with that source.
pub fn stamp(source: &[u8]) -> Vec<u8> {
    let hash = source.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    hash.to_le_bytes().to_vec()
}

/// The field document of `id` for `named` (names interned in `index`, new ones durable with
/// the write that follows).
pub fn field_document(
    index: &mut Index,
    id: &str,
    named: &[(String, f32)],
    stamp: Vec<u8>,
) -> ApiResult<Document> {
    let ids = index.feature_ids(named.iter().map(|(n, _)| n.as_str()))?;
    Ok(Document {
        id: id.to_string(),
        vector: ids.into_iter().zip(named.iter().map(|p| p.1)).collect(),
        tokens: None,
        source: stamp,
    })
}

/// Makes the documents of `ids` in the field indexes agree with `source_of` (the main
/// index's `_source` of each, `None` = no such document): rewritten from it, or deleted.
pub fn rewrite(
    meta: &IndexMeta,
    indexes: &mut BTreeMap<String, Index>,
    ids: &[String],
    source_of: &dyn Fn(&str) -> ApiResult<Option<Vec<u8>>>,
) -> ApiResult<()> {
    let mut fixed: BTreeMap<String, Vec<Document>> = BTreeMap::new();
    let mut gone: Vec<&str> = Vec::new();
    for id in ids {
        let Some(bytes) = source_of(id)? else {
            gone.push(id);
            continue;
        };
        let source: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let named = analyze(meta, id, &source).unwrap_or_default();
        for (field, index) in indexes.iter_mut() {
            let vector = named.get(field).map(Vec::as_slice).unwrap_or_default();
            let doc = field_document(index, id, vector, stamp(&bytes))?;
            fixed.entry(field.clone()).or_default().push(doc);
        }
    }
    for (field, index) in indexes.iter_mut() {
        if let Some(docs) = fixed.remove(field.as_str()) {
            index.upsert_batch(&docs)?;
        }
        for id in &gone {
            index.delete(id)?;
        }
    }
    Ok(())
}

/// After a stop other than a clean shutdown: rewrites every field document whose stamp is not
/// its main document's (a write in flight at the crash), and deletes field documents without
/// a main document. `main_stamps` holds the stamp of every main document.
pub fn repair(
    meta: &IndexMeta,
    indexes: &mut BTreeMap<String, Index>,
    main: &Searcher,
    main_stamps: &HashMap<String, Vec<u8>>,
) -> ApiResult<usize> {
    let mut stale: Vec<String> = Vec::new();
    for index in indexes.values_mut() {
        for doc in index.searcher().documents() {
            let doc = doc?;
            if main_stamps.get(&doc.id) != Some(&doc.source) {
                stale.push(doc.id);
            }
        }
    }
    stale.sort_unstable();
    stale.dedup();
    if !stale.is_empty() {
        rewrite(meta, indexes, &stale, &|id| Ok(main.get(id)?))?;
    }
    Ok(stale.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_float_prints_like_java() {
        assert_eq!(java_float(0.0), "0.0");
        assert_eq!(java_float(-1.0), "-1.0");
        assert_eq!(java_float(1.5), "1.5");
        assert_eq!(java_float(f32::INFINITY), "Infinity");
        assert_eq!(java_float(f32::MIN_POSITIVE), "1.1754944E-38");
        assert_eq!(java_float(1e-5), "1.0E-5");
        assert_eq!(java_float(1e7), "1.0E7");
    }

    #[test]
    fn dictionary_keys_round_trip_and_never_collide() {
        for name in ["", "\0", "\0a", "a", "tok1", "名前"] {
            let key = dictionary_key(name);
            assert!(!key.is_empty());
            assert_eq!(feature_name(&key), name);
        }
        assert_ne!(dictionary_key(""), dictionary_key("\0"));
    }

    #[test]
    fn token_id_keys_follow_integer_parse_int() {
        assert_eq!(token_id_key("007"), Ok(7));
        assert_eq!(token_id_key("+5"), Ok(5));
        assert!(token_id_key("-1").unwrap_err().contains("non-negative"));
        assert!(token_id_key("2147483648")
            .unwrap_err()
            .contains("valid integer"));
        assert!(token_id_key("a").unwrap_err().contains("valid integer"));
        assert!(token_id_key("").unwrap_err().contains("valid integer"));
    }
}
