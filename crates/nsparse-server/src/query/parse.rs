//! Parsing: a query body (JSON) → the [`Parsed`] AST. Checks that need the mapping (a filter
//! on a text field, `neural_sparse` on a non-vector field) and the encoding of `query_text`
//! happen here, in the order the body is read, so the first problem in a body is the one
//! reported.

use nsparse_index::SearchMode;
use serde_json::Value;

use nsparse_model::SparseVector;

use super::ast::{BoolQuery, Features, Leaf, LeafKind, Parsed, Pred, Query};
use super::plan::MAX_RESULT_WINDOW;
use crate::error::{ApiError, ApiResult};
use crate::mapping::{FieldType, IndexMeta};
use crate::models::{Models, BUILTIN_IDS};
use crate::sparse_fields::{dictionary_key, feature_name, token_id_key, SparseKind};

/// What the query parser needs to know about the index.
pub struct ParseContext<'a> {
    /// Mappings.
    pub meta: &'a IndexMeta,
    /// Models for `query_text`.
    pub models: &'a Models,
    /// Mode of neural leaves without `method_parameters` (the two-phase search pipeline).
    pub neural_mode: SearchMode,
}

/// Parses a query object (`{"match_all": {}}`, ...).
pub fn parse_query(value: &Value, ctx: &ParseContext<'_>) -> ApiResult<Parsed> {
    let mut leaves = Vec::new();
    let query = parse(value, ctx, &mut leaves)?;
    Ok(Parsed { query, leaves })
}

/// The `boost` of a query body (1 when absent), a finite number ≥ 0.
fn boost(body: &Value, kind: &str) -> ApiResult<f32> {
    match body.get("boost") {
        None => Ok(1.0),
        Some(b) => b
            .as_f64()
            .filter(|b| b.is_finite() && *b >= 0.0)
            .map(|b| b as f32)
            .ok_or_else(|| ApiError::x_content(format!("[{kind}] boost must be a number ≥ 0"))),
    }
}

/// Refuses (as a parsing error, `refusal(key)`) the first key of `obj` not in `allowed`.
fn only_keys(
    obj: &serde_json::Map<String, Value>,
    allowed: &[&str],
    refusal: impl Fn(&str) -> String,
) -> ApiResult<()> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(ApiError::parsing(refusal(key))),
        None => Ok(()),
    }
}

fn single_entry<'a>(value: &'a Value, what: &str) -> ApiResult<(&'a str, &'a Value)> {
    let obj = value.as_object().ok_or_else(|| {
        ApiError::parsing(format!(
            "[{what}] query malformed, must be an object, found {}",
            short(value)
        ))
    })?;
    let mut iter = obj.iter();
    match (iter.next(), iter.next()) {
        (Some((k, v)), None) => Ok((k.as_str(), v)),
        (None, _) => Err(ApiError::parsing(format!(
            "[{what}] query malformed, no start_object after query name"
        ))),
        (Some(_), Some((k2, _))) => Err(ApiError::parsing(format!(
            "[{what}] query malformed, expected a single key, found another key [{k2}]"
        ))),
    }
}

fn parse(value: &Value, ctx: &ParseContext<'_>, leaves: &mut Vec<Leaf>) -> ApiResult<Query> {
    let (kind, body) = single_entry(value, "query")?;
    let boost_of = |v: &Value| boost(v, kind);
    match kind {
        "match_all" => Ok(Query::MatchAll(boost_of(body)?)),
        "match_none" => Ok(Query::MatchNone),
        "bool" => parse_bool(body, ctx, leaves, boost_of(body)?),
        "term" | "terms" => {
            let (field, spec) = field_entry(kind, body)?;
            check_filterable(ctx.meta, kind, field)?;
            let (values, boost) = if kind == "term" {
                match spec {
                    Value::Object(o) => {
                        let v = o.get("value").cloned().ok_or_else(|| {
                            ApiError::parsing(format!("[term] query on [{field}] needs a [value]"))
                        })?;
                        (vec![v], boost_of(spec)?)
                    }
                    other => (vec![other.clone()], 1.0),
                }
            } else {
                let list = spec.as_array().ok_or_else(|| {
                    ApiError::parsing(format!(
                        "[terms] query on [{field}] needs an array of values"
                    ))
                })?;
                (list.clone(), boost_of(body)?)
            };
            Ok(Query::Constant(
                Pred::Terms(field.to_string(), values),
                boost,
            ))
        }
        "range" => {
            let (field, spec) = field_entry(kind, body)?;
            check_filterable(ctx.meta, kind, field)?;
            let obj = spec.as_object().ok_or_else(|| {
                ApiError::parsing(format!(
                    "[range] query on [{field}] must be an object of bounds"
                ))
            })?;
            let mut bounds = Vec::new();
            for (k, v) in obj {
                match k.as_str() {
                    "gt" => bounds.push(("gt", v.clone())),
                    "gte" | "from" => bounds.push(("gte", v.clone())),
                    "lt" => bounds.push(("lt", v.clone())),
                    "lte" | "to" => bounds.push(("lte", v.clone())),
                    "boost" | "format" | "time_zone" | "relation" => {}
                    other => {
                        return Err(ApiError::parsing(format!(
                            "[range] query does not support [{other}]"
                        )))
                    }
                }
            }
            let bounds = bounds.into_iter().filter(|(_, v)| !v.is_null()).collect();
            Ok(Query::Constant(
                Pred::Range(field.to_string(), bounds),
                boost_of(spec)?,
            ))
        }
        "exists" => {
            let field = body
                .get("field")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::parsing("[exists] must be provided with a [field]"))?;
            Ok(Query::Constant(
                Pred::Exists(field.to_string()),
                boost_of(body)?,
            ))
        }
        "ids" => {
            let values = body
                .get("values")
                .and_then(Value::as_array)
                .ok_or_else(|| ApiError::parsing("[ids] query needs [values], an array of ids"))?;
            let ids = values
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            Ok(Query::Constant(Pred::Ids(ids), boost_of(body)?))
        }
        "match" => {
            let (field, spec) = field_entry(kind, body)?;
            let (text, boost) = match spec {
                Value::Object(o) => {
                    only_keys(o, &["query", "boost", "operator", "analyzer"], |key| {
                        format!("[match] query does not support [{key}] in nsparse")
                    })?;
                    if o.get("operator")
                        .and_then(Value::as_str)
                        .is_some_and(|op| !op.eq_ignore_ascii_case("or"))
                    {
                        return Err(ApiError::illegal_argument(
                            "[match] supports only operator [or] in nsparse",
                        ));
                    }
                    let q = o.get("query").ok_or_else(|| {
                        ApiError::parsing(format!("[match] query on [{field}] needs a [query]"))
                    })?;
                    (q.clone(), boost_of(spec)?)
                }
                other => (other.clone(), 1.0),
            };
            match ctx.meta.field_type(field) {
                Some(FieldType::Text) | None => {
                    let text = match &text {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        other => {
                            return Err(ApiError::parsing(format!(
                                "[match] query on [{field}] needs a string, found {}",
                                short(other)
                            )))
                        }
                    };
                    let tokens = ctx.models.bm25_tokens(&text)?;
                    let mapped = ctx.meta.text_fields().any(|f| f == field);
                    leaves.push(Leaf {
                        kind: LeafKind::Bm25 {
                            tokens,
                            field: mapped.then(|| field.to_string()),
                        },
                        k: None,
                        label: if mapped {
                            format!("match on [{field}] (BM25)")
                        } else {
                            format!(
                                "match on unmapped [{field}] (BM25 over all text of the document)"
                            )
                        },
                    });
                    Ok(Query::Leaf(leaves.len() - 1, boost))
                }
                Some(FieldType::Vector) => Err(ApiError::illegal_argument(format!(
                    "[match] cannot search the sparse vector field [{field}]; use neural_sparse"
                ))),
                Some(_) => Ok(Query::Constant(
                    Pred::Terms(field.to_string(), vec![text]),
                    boost,
                )),
            }
        }
        "neural_sparse" => parse_neural(body, ctx, leaves),
        "constant_score" => {
            let filter = body
                .get("filter")
                .ok_or_else(|| ApiError::parsing("[constant_score] requires a [filter]"))?;
            let inner = parse(filter, ctx, leaves)?;
            let pred = inner.pure_pred().ok_or_else(|| {
                ApiError::illegal_argument(
                    "[constant_score] filters cannot contain scoring queries in nsparse",
                )
            })?;
            Ok(Query::Constant(pred, boost_of(body)?))
        }
        other => {
            let known = matches!(
                other,
                "match_phrase"
                    | "multi_match"
                    | "query_string"
                    | "simple_query_string"
                    | "prefix"
                    | "wildcard"
                    | "regexp"
                    | "fuzzy"
                    | "nested"
                    | "knn"
                    | "neural"
                    | "hybrid"
                    | "script_score"
                    | "function_score"
                    | "dis_max"
                    | "boosting"
                    | "match_bool_prefix"
                    | "match_phrase_prefix"
                    | "geo_distance"
                    | "more_like_this"
            );
            Err(ApiError::parsing(if known {
                format!("[{other}] queries are not supported by nsparse (supported: neural_sparse, match, term, terms, range, exists, ids, match_all, match_none, bool, constant_score)")
            } else {
                format!("unknown query [{other}]")
            }))
        }
    }
}

fn field_entry<'a>(kind: &str, body: &'a Value) -> ApiResult<(&'a str, &'a Value)> {
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::parsing(format!("[{kind}] query malformed, must be an object")))?;
    let mut fields = obj
        .iter()
        .filter(|(k, _)| k.as_str() != "boost" && k.as_str() != "_name");
    match (fields.next(), fields.next()) {
        (Some((k, v)), None) => Ok((k.as_str(), v)),
        (None, _) => Err(ApiError::parsing(format!("[{kind}] query needs a field"))),
        (Some((a, _)), Some((b, _))) => Err(ApiError::parsing(format!(
            "[{kind}] query doesn't support multiple fields, found [{a}] and [{b}]"
        ))),
    }
}

fn check_filterable(meta: &IndexMeta, kind: &str, field: &str) -> ApiResult<()> {
    match meta.field_type(field) {
        Some(FieldType::Text) => Err(ApiError::illegal_argument(format!(
            "[{kind}] on the text field [{field}] is not supported by nsparse (text is not kept for filters); use match, or map a keyword sub-field"
        ))),
        Some(FieldType::Vector) => Err(ApiError::illegal_argument(format!(
            "[{kind}] cannot filter on the sparse vector field [{field}]"
        ))),
        _ => Ok(()),
    }
}

fn clauses(
    value: Option<&Value>,
    what: &str,
    ctx: &ParseContext<'_>,
    leaves: &mut Vec<Leaf>,
) -> ApiResult<Vec<Query>> {
    match value {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().map(|q| parse(q, ctx, leaves)).collect(),
        Some(v @ Value::Object(_)) => Ok(vec![parse(v, ctx, leaves)?]),
        Some(other) => Err(ApiError::parsing(format!(
            "[bool] [{what}] must be a query object or an array of them, found {}",
            short(other)
        ))),
    }
}

fn parse_bool(
    body: &Value,
    ctx: &ParseContext<'_>,
    leaves: &mut Vec<Leaf>,
    boost: f32,
) -> ApiResult<Query> {
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::parsing("[bool] query malformed, must be an object"))?;
    only_keys(
        obj,
        &[
            "must",
            "should",
            "filter",
            "must_not",
            "minimum_should_match",
            "boost",
            "_name",
            "adjust_pure_negative",
        ],
        |key| format!("[bool] query does not support [{key}]"),
    )?;
    let minimum_should_match = match obj.get("minimum_should_match") {
        None => None,
        Some(Value::Number(n)) => n.as_u64().map(|n| n as usize),
        Some(Value::String(s)) => s.trim().parse::<usize>().ok(),
        Some(_) => None,
    };
    if obj.get("minimum_should_match").is_some() && minimum_should_match.is_none() {
        return Err(ApiError::illegal_argument(
            "[bool] minimum_should_match must be a non-negative integer in nsparse (percentages are not supported)",
        ));
    }
    Ok(Query::Bool(Box::new(BoolQuery {
        must: clauses(obj.get("must"), "must", ctx, leaves)?,
        should: clauses(obj.get("should"), "should", ctx, leaves)?,
        filter: clauses(obj.get("filter"), "filter", ctx, leaves)?,
        must_not: clauses(obj.get("must_not"), "must_not", ctx, leaves)?,
        minimum_should_match,
        boost,
    })))
}

fn parse_neural(body: &Value, ctx: &ParseContext<'_>, leaves: &mut Vec<Leaf>) -> ApiResult<Query> {
    let (field, spec) = field_entry("neural_sparse", body)?;
    let mapped = match ctx.meta.field(field) {
        Some(f) if f.ty == FieldType::Vector => f,
        _ => {
            return Err(ApiError::illegal_argument(format!(
                "[neural_sparse] query only works on sparse vector fields (rank_features or sparse_vector); [{field}] is {}",
                match ctx.meta.field(field) {
                    Some(f) => format!("of type [{}]", f.type_name),
                    None => "not mapped".to_string(),
                }
            )))
        }
    };
    let kind = SparseKind::of(mapped);
    let in_main = ctx.meta.main_vector_field() == Some(field);
    let obj = spec.as_object().ok_or_else(|| {
        ApiError::parsing(format!(
            "[neural_sparse] query on [{field}] must be an object"
        ))
    })?;
    only_keys(
        obj,
        &[
            "query_text",
            "query_tokens",
            "model_id",
            "analyzer",
            "boost",
            "max_token_score",
            "method_parameters",
            "_name",
        ],
        |key| format!("[neural_sparse] unknown field [{key}]"),
    )?;
    let boost = boost(spec, "neural_sparse")?;
    let features = match (obj.get("query_text"), obj.get("query_tokens")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::illegal_argument(
                "[neural_sparse] query_text and query_tokens cannot both be provided",
            ))
        }
        (Some(text), None) => {
            let text = text.as_str().ok_or_else(|| {
                ApiError::x_content("[neural_sparse] query_text must be a string")
            })?;
            let encoder = match (obj.get("model_id"), obj.get("analyzer")) {
                (Some(id), _) => {
                    let id = id.as_str().ok_or_else(|| {
                        ApiError::x_content("[neural_sparse] model_id must be a string")
                    })?;
                    ctx.models.get(id)?
                }
                (None, Some(analyzer)) => {
                    let name = analyzer.as_str().unwrap_or_default();
                    if !BUILTIN_IDS.contains(&name) {
                        return Err(ApiError::illegal_argument(format!(
                            "[neural_sparse] analyzer [{name}] is not available; nsparse has bert-uncased"
                        )));
                    }
                    ctx.models.builtin().clone()
                }
                (None, None) => ctx.models.builtin().clone(),
            };
            // Only the first 512 tokens count: tokenize just the prefix that holds them.
            let text = encoder.tokenizer().truncation_prefix(text)?;
            let vector = encoder.encode_query(text)?;
            if in_main || ctx.models.shares_builtin_vocabulary(&encoder) {
                Features::BuiltinIds(vector.iter().collect())
            } else {
                // Another vocabulary: look the model's tokens up in the field's dictionary.
                let tokenizer = encoder.tokenizer();
                Features::Named(
                    vector
                        .iter()
                        .filter_map(|(id, w)| {
                            let name = match kind {
                                SparseKind::SparseVector => id.to_string(),
                                SparseKind::RankFeatures => {
                                    dictionary_key(&tokenizer.token(id)?).into_owned()
                                }
                            };
                            Some((name, w))
                        })
                        .collect(),
                )
            }
        }
        (None, Some(tokens)) => {
            let map = tokens.as_object().ok_or_else(|| {
                ApiError::x_content(
                    "[neural_sparse] query_tokens must be an object of token → weight",
                )
            })?;
            let mut named = Vec::with_capacity(map.len());
            for (token, weight) in map {
                let w = weight.as_f64().ok_or_else(|| {
                    ApiError::x_content(format!(
                        "[neural_sparse] query_tokens [{token}] must be a number"
                    ))
                })? as f32;
                if !w.is_finite() || w < 0.0 {
                    return Err(ApiError::illegal_argument(format!(
                        "[neural_sparse] query_tokens [{token}] has weight {w}; weights must be finite and ≥ 0"
                    )));
                }
                if w == 0.0 {
                    continue;
                }
                let name = match kind {
                    SparseKind::RankFeatures => dictionary_key(token).into_owned(),
                    SparseKind::SparseVector => token_id_key(token)
                        .map_err(|problem| {
                            ApiError::illegal_argument(format!(
                                "[neural_sparse] query_tokens key [{token}] on the sparse_vector field [{field}]: {problem} (its keys are token ids)"
                            ))
                        })?
                        .to_string(),
                };
                named.push((name, w));
            }
            if in_main {
                // The main index's fixed vocabulary: unknown tokens match nothing.
                let token_ids = kind == SparseKind::SparseVector;
                let pairs = named.iter().filter_map(|(name, w)| {
                    Some((
                        ctx.models.builtin_token_id(feature_name(name), token_ids)?,
                        *w,
                    ))
                });
                Features::BuiltinIds(SparseVector::from_pairs(pairs.collect()).iter().collect())
            } else {
                Features::Named(named)
            }
        }
        (None, None) => {
            return Err(ApiError::illegal_argument(
                "[neural_sparse] either query_text or query_tokens must be provided",
            ))
        }
    };
    let (mode, k) = match obj.get("method_parameters") {
        None => (ctx.neural_mode, None),
        Some(Value::Object(params)) => {
            let mut top_n = 10usize;
            let mut heap_factor = 1.0f32;
            let mut k = None;
            for (key, value) in params {
                let number = value.as_f64().ok_or_else(|| {
                    ApiError::x_content(format!("[method_parameters] [{key}] must be a number"))
                })?;
                match key.as_str() {
                    "top_n" if number >= 1.0 && number.fract() == 0.0 => top_n = number as usize,
                    "heap_factor" if number > 0.0 && number.is_finite() => heap_factor = number as f32,
                    "k" if number >= 1.0 && number.fract() == 0.0 && number <= MAX_RESULT_WINDOW as f64 => {
                        k = Some(number as usize)
                    }
                    "top_n" | "k" => {
                        return Err(ApiError::illegal_argument(format!(
                            "[method_parameters] [{key}] must be a positive integer (k ≤ {MAX_RESULT_WINDOW})"
                        )))
                    }
                    "heap_factor" => {
                        return Err(ApiError::illegal_argument("[method_parameters] [heap_factor] must be > 0"))
                    }
                    other => {
                        return Err(ApiError::parsing(format!("[method_parameters] unknown parameter [{other}]")))
                    }
                }
            }
            (SearchMode::Approximate { top_n, heap_factor }, k)
        }
        Some(_) => return Err(ApiError::x_content("[method_parameters] must be an object")),
    };
    leaves.push(Leaf {
        kind: LeafKind::Neural {
            field: (!in_main).then(|| field.to_string()),
            features,
            mode,
        },
        k,
        label: format!("neural_sparse on [{field}]"),
    });
    Ok(Query::Leaf(leaves.len() - 1, boost))
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}
