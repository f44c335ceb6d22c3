//! The query DSL subset: parsing `_search` / `_count` bodies and running them on a [`View`].
//!
//! Execution: every scoring leaf (`neural_sparse`, BM25 `match`) retrieves its top window with the
//! index's filtered search, restricted by the query's required filters (`filter`, `must_not`,
//! non-scoring `must` clauses of the top-level `bool`). When the query has one scoring leaf and
//! nothing else can make a document match, those hits are the answer (exact for exact modes).
//! Otherwise the union of the windows (plus, when non-scoring clauses alone can match a
//! document, every document that passes the filters) is rescored exactly: each leaf is searched
//! again restricted to the candidates, and the `bool` tree adds the scores as OpenSearch does.

use std::collections::{HashMap, HashSet};

use nsparse_index::{Hit, SearchMode, SearchRequest, TokenContribution};
use serde_json::{json, Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::mapping::{FieldType, FilterValue, IndexMeta};
use crate::models::{Models, BUILTIN_IDS};
use crate::store::{DocEntry, View};

/// Hits every scoring clause retrieves when several are combined.
const MIN_WINDOW: usize = 100;

/// Matching documents counted exactly by default (OpenSearch's `track_total_hits`).
pub const TRACK_TOTAL_HITS: usize = 10_000;

/// Largest `from + size` (OpenSearch's `index.max_result_window`).
pub const MAX_RESULT_WINDOW: usize = 10_000;

/// A parsed query.
#[derive(Debug, Clone)]
pub enum Query {
    /// Every document, constant score.
    MatchAll(f32),
    /// No document.
    MatchNone,
    /// A scoring leaf (index into [`Parsed::leaves`]) with its boost.
    Leaf(usize, f32),
    /// A filter-like query with a constant score (its boost) when it matches.
    Constant(Pred, f32),
    /// `bool`.
    Bool(Box<BoolQuery>),
}

/// `bool` clauses.
#[derive(Debug, Clone, Default)]
pub struct BoolQuery {
    must: Vec<Query>,
    should: Vec<Query>,
    filter: Vec<Query>,
    must_not: Vec<Query>,
    minimum_should_match: Option<usize>,
    boost: f32,
}

/// A predicate on a document's filter values.
#[derive(Debug, Clone)]
pub enum Pred {
    /// `term` / `terms`: any value of the field equals one of these.
    Terms(String, Vec<Value>),
    /// `range`.
    Range(String, Vec<(&'static str, Value)>),
    /// `exists`.
    Exists(String),
    /// `ids`.
    Ids(HashSet<String>),
    /// Conjunction (empty = true).
    And(Vec<Pred>),
    /// Negation.
    Not(Box<Pred>),
}

/// A scoring leaf.
#[derive(Debug, Clone)]
pub struct Leaf {
    kind: LeafKind,
    /// Retrieval depth requested by the query (`method_parameters.k`).
    k: Option<usize>,
    /// Shown in explanations.
    label: String,
}

#[derive(Debug, Clone)]
enum LeafKind {
    Neural {
        vector: Vec<(u32, f32)>,
        mode: SearchMode,
    },
    Bm25 {
        tokens: Vec<u32>,
        /// The mapped text field with its own BM25 index; `None` = the index-wide text.
        field: Option<String>,
    },
}

/// What the query parser needs to know about the index.
pub struct Context<'a> {
    /// Mappings.
    pub meta: &'a IndexMeta,
    /// Models for `query_text`.
    pub models: &'a Models,
    /// Mode of neural leaves without `method_parameters` (the two-phase search pipeline).
    pub neural_mode: SearchMode,
}

/// A parsed search request.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The query tree.
    pub query: Query,
    /// Its scoring leaves.
    pub leaves: Vec<Leaf>,
}

/// The result of [`execute`].
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The page: `(id, score, explanation)`.
    pub hits: Vec<(String, f32, Option<Value>)>,
    /// Matching documents found.
    pub total: usize,
    /// Whether `total` is exact (`eq`) or a lower bound (`gte`).
    pub exact_total: bool,
    /// Best score.
    pub max_score: Option<f32>,
}

/// Parses a query object (`{"match_all": {}}`, ...).
pub fn parse_query(value: &Value, ctx: &Context<'_>) -> ApiResult<Parsed> {
    let mut leaves = Vec::new();
    let query = parse(value, ctx, &mut leaves)?;
    Ok(Parsed { query, leaves })
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

fn parse(value: &Value, ctx: &Context<'_>, leaves: &mut Vec<Leaf>) -> ApiResult<Query> {
    let (kind, body) = single_entry(value, "query")?;
    let boost_of = |v: &Value| -> ApiResult<f32> {
        match v.get("boost") {
            None => Ok(1.0),
            Some(b) => b
                .as_f64()
                .filter(|b| b.is_finite() && *b >= 0.0)
                .map(|b| b as f32)
                .ok_or_else(|| ApiError::x_content(format!("[{kind}] boost must be a number ≥ 0"))),
        }
    };
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
                    for key in o.keys() {
                        if !matches!(key.as_str(), "query" | "boost" | "operator" | "analyzer") {
                            return Err(ApiError::parsing(format!(
                                "[match] query does not support [{key}] in nsparse"
                            )));
                        }
                    }
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
            let pred = pure_pred(&inner).ok_or_else(|| {
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
    ctx: &Context<'_>,
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
    ctx: &Context<'_>,
    leaves: &mut Vec<Leaf>,
    boost: f32,
) -> ApiResult<Query> {
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::parsing("[bool] query malformed, must be an object"))?;
    for key in obj.keys() {
        if !matches!(
            key.as_str(),
            "must"
                | "should"
                | "filter"
                | "must_not"
                | "minimum_should_match"
                | "boost"
                | "_name"
                | "adjust_pure_negative"
        ) {
            return Err(ApiError::parsing(format!(
                "[bool] query does not support [{key}]"
            )));
        }
    }
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

fn parse_neural(body: &Value, ctx: &Context<'_>, leaves: &mut Vec<Leaf>) -> ApiResult<Query> {
    let (field, spec) = field_entry("neural_sparse", body)?;
    let numeric_ids = ctx
        .meta
        .field(field)
        .is_some_and(|f| f.type_name == "sparse_vector");
    match ctx.meta.field_type(field) {
        Some(FieldType::Vector) => {}
        _ => {
            return Err(ApiError::illegal_argument(format!(
                "[neural_sparse] query only works on the sparse vector field (rank_features or sparse_vector); [{field}] is {}",
                match ctx.meta.field(field) {
                    Some(f) => format!("of type [{}]", f.type_name),
                    None => "not mapped".to_string(),
                }
            )))
        }
    }
    let obj = spec.as_object().ok_or_else(|| {
        ApiError::parsing(format!(
            "[neural_sparse] query on [{field}] must be an object"
        ))
    })?;
    for key in obj.keys() {
        if !matches!(
            key.as_str(),
            "query_text"
                | "query_tokens"
                | "model_id"
                | "analyzer"
                | "boost"
                | "max_token_score"
                | "method_parameters"
                | "_name"
        ) {
            return Err(ApiError::parsing(format!(
                "[neural_sparse] unknown field [{key}]"
            )));
        }
    }
    let boost = match obj.get("boost") {
        None => 1.0,
        Some(b) => b
            .as_f64()
            .filter(|b| b.is_finite() && *b >= 0.0)
            .ok_or_else(|| ApiError::x_content("[neural_sparse] boost must be a number ≥ 0"))?
            as f32,
    };
    let vector: Vec<(u32, f32)> = match (obj.get("query_text"), obj.get("query_tokens")) {
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
            encoder.encode_query(text)?.iter().collect()
        }
        (None, Some(tokens)) => {
            let map = tokens.as_object().ok_or_else(|| {
                ApiError::x_content(
                    "[neural_sparse] query_tokens must be an object of token → weight",
                )
            })?;
            let mut pairs = Vec::with_capacity(map.len());
            for (token, weight) in map {
                let w = weight.as_f64().ok_or_else(|| {
                    ApiError::x_content(format!(
                        "[neural_sparse] query_tokens [{token}] must be a number"
                    ))
                })?;
                pairs.push((token.as_str(), w as f32));
            }
            ctx.models
                .vector_from_tokens(pairs, numeric_ids, false)
                .map_err(ApiError::illegal_argument)?
                .iter()
                .collect()
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
        kind: LeafKind::Neural { vector, mode },
        k,
        label: format!("neural_sparse on [{field}]"),
    });
    Ok(Query::Leaf(leaves.len() - 1, boost))
}

/// The predicate of a subtree without scoring leaves (`None` if it has leaves).
fn pure_pred(q: &Query) -> Option<Pred> {
    match q {
        Query::MatchAll(_) => Some(Pred::And(Vec::new())),
        Query::MatchNone => Some(Pred::Not(Box::new(Pred::And(Vec::new())))),
        Query::Leaf(..) => None,
        Query::Constant(p, _) => Some(p.clone()),
        Query::Bool(b) => {
            if !b.should.is_empty() {
                return None;
            }
            let mut all = Vec::new();
            for c in b.must.iter().chain(&b.filter) {
                all.push(pure_pred(c)?);
            }
            for c in &b.must_not {
                all.push(Pred::Not(Box::new(pure_pred(c)?)));
            }
            Some(Pred::And(all))
        }
    }
}

/// Filters every match must pass that do not depend on scoring leaves (for the filtered searches).
fn required_pred(q: &Query) -> Pred {
    match q {
        Query::Bool(b) => {
            let mut all = Vec::new();
            for c in b.must.iter().chain(&b.filter) {
                match pure_pred(c) {
                    Some(p) => all.push(p),
                    None => all.push(required_pred(c)),
                }
            }
            for c in &b.must_not {
                if let Some(p) = pure_pred(c) {
                    all.push(Pred::Not(Box::new(p)));
                }
            }
            Pred::And(all)
        }
        other => pure_pred(other).unwrap_or(Pred::And(Vec::new())),
    }
}

/// Whether a document can match with every scoring leaf at zero (then candidates must include
/// documents found by the filters alone).
fn matches_without_leaves(q: &Query) -> bool {
    match q {
        Query::MatchAll(_) | Query::Constant(..) => true,
        Query::MatchNone | Query::Leaf(..) => false,
        Query::Bool(b) => {
            b.must.iter().chain(&b.filter).all(matches_without_leaves)
                && (min_should(b) == 0 || b.should.iter().any(matches_without_leaves))
        }
    }
}

fn min_should(b: &BoolQuery) -> usize {
    b.minimum_should_match.unwrap_or(usize::from(
        b.must.is_empty() && b.filter.is_empty() && !b.should.is_empty(),
    ))
}

/// Leaves whose own top hits can contribute matches (not those only under `must_not`).
fn retrieving_leaves(q: &Query, negated: bool, out: &mut Vec<usize>) {
    match q {
        Query::Leaf(i, _) if !negated => out.push(*i),
        Query::Bool(b) => {
            for c in b.must.iter().chain(&b.should).chain(&b.filter) {
                retrieving_leaves(c, negated, out);
            }
            for c in &b.must_not {
                retrieving_leaves(c, true, out);
            }
        }
        _ => {}
    }
}

impl Pred {
    /// Whether the document passes.
    pub fn test(&self, id: &str, doc: &DocEntry) -> bool {
        match self {
            Pred::And(all) => all.iter().all(|p| p.test(id, doc)),
            Pred::Not(p) => !p.test(id, doc),
            Pred::Ids(ids) => ids.contains(id),
            Pred::Exists(field) => values(doc, field).next().is_some(),
            Pred::Terms(field, targets) if field == "_id" => targets
                .iter()
                .any(|t| equals(&FilterValue::Str(id.into()), t)),
            Pred::Terms(field, targets) => {
                values(doc, field).any(|v| targets.iter().any(|t| equals(v, t)))
            }
            Pred::Range(field, bounds) => values(doc, field).any(|v| {
                bounds.iter().all(|(op, bound)| match compare(v, bound) {
                    None => false,
                    Some(ord) => match *op {
                        "gt" => ord.is_gt(),
                        "gte" => ord.is_ge(),
                        "lt" => ord.is_lt(),
                        _ => ord.is_le(),
                    },
                })
            }),
        }
    }
}

fn values<'a>(doc: &'a DocEntry, field: &'a str) -> impl Iterator<Item = &'a FilterValue> + 'a {
    let direct = doc.values.iter().any(|(p, _)| &**p == field);
    // Unmapped strings are kept once; `x.keyword` reads them like OpenSearch's dynamic sub-field.
    let path = match field.strip_suffix(".keyword") {
        Some(base) if !direct => base,
        _ => field,
    };
    doc.values
        .iter()
        .filter(move |(p, _)| &**p == path)
        .map(|(_, v)| v)
}

fn equals(v: &FilterValue, target: &Value) -> bool {
    match (v, target) {
        (FilterValue::Str(s), Value::String(t)) => **s == **t,
        (FilterValue::Str(s), Value::Number(n)) => **s == n.to_string(),
        (FilterValue::Str(s), Value::Bool(b)) => **s == b.to_string(),
        (FilterValue::Num(x), Value::Number(n)) => n.as_f64() == Some(*x),
        (FilterValue::Num(x), Value::String(t)) => t.trim().parse::<f64>().ok() == Some(*x),
        (FilterValue::Bool(b), Value::Bool(t)) => b == t,
        (FilterValue::Bool(b), Value::String(t)) => b.to_string() == *t,
        _ => false,
    }
}

fn compare(v: &FilterValue, bound: &Value) -> Option<std::cmp::Ordering> {
    match (v, bound) {
        (FilterValue::Num(x), Value::Number(n)) => x.partial_cmp(&n.as_f64()?),
        (FilterValue::Num(x), Value::String(t)) => x.partial_cmp(&t.trim().parse::<f64>().ok()?),
        (FilterValue::Str(s), Value::String(t)) => Some((**s).cmp(t.as_str())),
        (FilterValue::Str(s), Value::Number(n)) => {
            s.trim().parse::<f64>().ok()?.partial_cmp(&n.as_f64()?)
        }
        _ => None,
    }
}

/// Score of a document (`None` = no match), given the exact score of each leaf for it.
fn eval(q: &Query, id: &str, doc: &DocEntry, leaf: &dyn Fn(usize) -> Option<f32>) -> Option<f32> {
    match q {
        Query::MatchAll(boost) => Some(*boost),
        Query::MatchNone => None,
        Query::Leaf(i, boost) => leaf(*i).filter(|s| *s > 0.0).map(|s| s * boost),
        Query::Constant(p, boost) => p.test(id, doc).then_some(*boost),
        Query::Bool(b) => {
            let mut score = 0.0f32;
            for c in &b.must {
                score += eval(c, id, doc, leaf)?;
            }
            for c in &b.filter {
                eval(c, id, doc, leaf)?;
            }
            if b.must_not.iter().any(|c| eval(c, id, doc, leaf).is_some()) {
                return None;
            }
            let mut matched = 0usize;
            for c in &b.should {
                if let Some(s) = eval(c, id, doc, leaf) {
                    matched += 1;
                    score += s;
                }
            }
            (matched >= min_should(b)).then_some(score * b.boost)
        }
    }
}

/// Per document: a leaf's exact score and, when asked, its per-token explanation.
type LeafScores = HashMap<String, (f32, Option<Vec<TokenContribution>>)>;

/// Runs a parsed query: `size` hits from `from`, with explanations if asked. Matching documents
/// are counted exactly up to `track_total_hits` (OpenSearch's default is 10,000), except under
/// approximate clauses, whose count is the documents they retrieved.
#[allow(clippy::too_many_arguments)]
pub fn execute(
    parsed: &Parsed,
    view: &View,
    models: &Models,
    from: usize,
    size: usize,
    explain: bool,
    track_total_hits: usize,
) -> ApiResult<Outcome> {
    let wanted = from.saturating_add(size);
    let n_docs = view.docs.len().max(1);
    let required = required_pred(&parsed.query);
    let filter = |id: &str| view.docs.get(id).is_some_and(|d| required.test(id, d));
    // Without filters every live document of the snapshot passes: skip the per-hit lookups.
    let unfiltered = matches!(&required, Pred::And(all) if all.is_empty());
    let retrieval_filter: Option<nsparse_index::DocFilter<'_>> =
        if unfiltered { None } else { Some(&filter) };
    let mut retrieving = Vec::new();
    retrieving_leaves(&parsed.query, false, &mut retrieving);
    retrieving.sort_unstable();
    retrieving.dedup();
    let scan = matches_without_leaves(&parsed.query);
    let single = !scan && parsed.leaves.len() == 1 && retrieving.len() == 1;
    let window = if single {
        wanted.max(1)
    } else {
        wanted.max(MIN_WINDOW)
    };
    // One more than the tracked count tells "more than track_total_hits" from "exactly".
    let count_depth = track_total_hits.saturating_add(1).min(n_docs);

    let mut exact_total = true;
    let mut leaf_hits: Vec<LeafScores> = vec![HashMap::new(); parsed.leaves.len()];
    let mut candidates: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for &i in &retrieving {
        let leaf = &parsed.leaves[i];
        let approximate = matches!(
            leaf.kind,
            LeafKind::Neural {
                mode: SearchMode::Approximate { .. },
                ..
            }
        );
        let mut k = leaf.k.unwrap_or(0).max(window);
        if !approximate {
            // Exact modes count every match anyway; a deeper heap costs one selection pass.
            k = k.max(count_depth);
        }
        let hits = run_leaf(
            leaf,
            view,
            k,
            false,
            retrieval_filter,
            Exactness::AsRequested,
        )?;
        if hits.len() >= k && k < n_docs {
            exact_total = false;
        }
        for hit in hits {
            if seen.insert(hit.id.clone()) {
                candidates.push(hit.id.clone());
            }
            leaf_hits[i].insert(hit.id, (hit.score, None));
        }
    }
    if scan {
        for (id, doc) in view.docs.iter() {
            if required.test(id, doc) && seen.insert(id.clone()) {
                candidates.push(id.clone());
            }
        }
    }
    if !single && !candidates.is_empty() {
        // Exact scores of every leaf on every candidate.
        rescore(parsed, view, &candidates, false, &mut leaf_hits)?;
    }
    let mut matches: Vec<(f32, u64, String)> = Vec::new();
    for id in candidates {
        let Some(doc) = view.docs.get(&id) else {
            continue;
        };
        let leaf_score = |i: usize| leaf_hits[i].get(&id).map(|h| h.0);
        if let Some(score) = eval(&parsed.query, &id, doc, &leaf_score) {
            matches.push((score, doc.seq, id));
        }
    }
    matches.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let max_score = matches.first().map(|m| m.0);
    let mut total = matches.len();
    let mut exact_total = exact_total || scan;
    if total > track_total_hits {
        total = track_total_hits;
        exact_total = false;
    }
    let page: Vec<(f32, u64, String)> = matches.into_iter().skip(from).take(size).collect();
    if explain && !page.is_empty() {
        let ids: Vec<String> = page.iter().map(|m| m.2.clone()).collect();
        rescore(parsed, view, &ids, true, &mut leaf_hits)?;
    }
    let hits = page
        .into_iter()
        .map(|(score, _, id)| {
            let explanation = explain.then(|| explanation(parsed, &leaf_hits, &id, score, models));
            (id, score, explanation)
        })
        .collect();
    Ok(Outcome {
        hits,
        total,
        exact_total,
        max_score,
    })
}

/// Exact scores (and explanations when asked) of every leaf on `ids`.
fn rescore(
    parsed: &Parsed,
    view: &View,
    ids: &[String],
    explain: bool,
    leaf_hits: &mut [LeafScores],
) -> ApiResult<()> {
    let set: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let in_set = |id: &str| set.contains(id);
    for (i, leaf) in parsed.leaves.iter().enumerate() {
        let hits = run_leaf(
            leaf,
            view,
            set.len(),
            explain,
            Some(&in_set),
            Exactness::Exact,
        )?;
        if !explain {
            leaf_hits[i] = hits
                .into_iter()
                .map(|h| (h.id, (h.score, h.explanation)))
                .collect();
            continue;
        }
        // Explanations only: the scores of the ranking stay those it was ranked by.
        for h in hits {
            if let Some(entry) = leaf_hits[i].get_mut(&h.id) {
                entry.1 = h.explanation;
            }
        }
    }
    Ok(())
}

/// Retrieval runs in the requested (maybe approximate) mode; the rescoring pass is exact.
#[derive(Clone, Copy)]
enum Exactness {
    AsRequested,
    Exact,
}

fn run_leaf(
    leaf: &Leaf,
    view: &View,
    k: usize,
    explain: bool,
    filter: Option<nsparse_index::DocFilter<'_>>,
    exactness: Exactness,
) -> ApiResult<Vec<Hit>> {
    match &leaf.kind {
        LeafKind::Neural { vector, mode } => {
            let mode = match exactness {
                Exactness::AsRequested => *mode,
                Exactness::Exact => SearchMode::Exact,
            };
            let req = SearchRequest::new(k).mode(mode).explain(explain);
            Ok(view.searcher.search_filtered(vector, &req, filter)?)
        }
        LeafKind::Bm25 { tokens, field } => {
            let searcher = match field {
                None => &view.searcher,
                Some(f) => match view.fields.get(f) {
                    Some(s) => s,
                    None => return Ok(Vec::new()),
                },
            };
            Ok(searcher.search_bm25_filtered(tokens, k, explain, false, filter)?)
        }
    }
}

fn explanation(
    parsed: &Parsed,
    leaf_hits: &[LeafScores],
    id: &str,
    score: f32,
    models: &Models,
) -> Value {
    let mut details = Vec::new();
    for (i, leaf) in parsed.leaves.iter().enumerate() {
        let Some((leaf_score, contributions)) = leaf_hits[i].get(id) else {
            continue;
        };
        let tokens: Vec<Value> = contributions
            .iter()
            .flatten()
            .map(|c| {
                json!({
                    "value": c.contribution,
                    "description": format!(
                        "token [{}]: query weight {} × document weight {}",
                        models.token_name(c.token), c.query_weight, c.doc_weight
                    ),
                    "details": []
                })
            })
            .collect();
        details.push(json!({"value": leaf_score, "description": leaf.label, "details": tokens}));
    }
    let described: f32 = details
        .iter()
        .filter_map(|d| d["value"].as_f64())
        .sum::<f64>() as f32;
    if (score - described).abs() > 1e-6 * score.abs().max(1.0) || details.is_empty() {
        details.push(json!({
            "value": score - described,
            "description": "constant scores of matching match_all, term, terms, range, exists and ids clauses, and boosts",
            "details": []
        }));
    }
    json!({"value": score, "description": "sum of:", "details": details})
}

/// `_source` filtering: `true`/`false`, a pattern, a list, or `{includes, excludes}`.
#[derive(Debug, Clone, Default)]
pub struct SourceFilter {
    /// `_source: false`.
    pub disabled: bool,
    /// Patterns to keep (empty = all).
    pub includes: Vec<String>,
    /// Patterns to drop.
    pub excludes: Vec<String>,
}

impl SourceFilter {
    /// Parses the `_source` value of a search body.
    pub fn parse(value: &Value) -> ApiResult<Self> {
        let list = |v: &Value| -> ApiResult<Vec<String>> {
            match v {
                Value::String(s) => Ok(vec![s.clone()]),
                Value::Array(items) => items
                    .iter()
                    .map(|i| {
                        i.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| ApiError::parsing("[_source] patterns must be strings"))
                    })
                    .collect(),
                Value::Null => Ok(Vec::new()),
                _ => Err(ApiError::parsing("[_source] patterns must be strings")),
            }
        };
        Ok(match value {
            Value::Bool(b) => SourceFilter {
                disabled: !b,
                ..Default::default()
            },
            Value::String(_) | Value::Array(_) => SourceFilter {
                includes: list(value)?,
                ..Default::default()
            },
            Value::Object(o) => SourceFilter {
                disabled: false,
                includes: list(
                    o.get("includes")
                        .or_else(|| o.get("include"))
                        .unwrap_or(&Value::Null),
                )?,
                excludes: list(
                    o.get("excludes")
                        .or_else(|| o.get("exclude"))
                        .unwrap_or(&Value::Null),
                )?,
            },
            _ => {
                return Err(ApiError::parsing(
                    "[_source] must be a boolean, a string, an array or an object",
                ))
            }
        })
    }

    /// Applies the filter to a source.
    pub fn apply(&self, source: Value) -> Option<Value> {
        if self.disabled {
            return None;
        }
        if self.includes.is_empty() && self.excludes.is_empty() {
            return Some(source);
        }
        Some(filter_object(source, "", self))
    }
}

fn filter_object(value: Value, prefix: &str, f: &SourceFilter) -> Value {
    let Value::Object(obj) = value else {
        return value;
    };
    let mut out = Map::new();
    for (k, v) in obj {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if f.excludes.iter().any(|p| glob(p, &path)) {
            continue;
        }
        let included = f.includes.is_empty() || f.includes.iter().any(|p| glob(p, &path));
        if included {
            // Excludes may still reach inside.
            let v = if v.is_object() && !f.excludes.is_empty() {
                filter_object(
                    v,
                    &path,
                    &SourceFilter {
                        includes: Vec::new(),
                        ..f.clone()
                    },
                )
            } else {
                v
            };
            out.insert(k, v);
        } else if v.is_object()
            && f.includes
                .iter()
                .any(|p| p.starts_with(&format!("{path}.")))
        {
            let inner = filter_object(v, &path, f);
            if inner.as_object().is_some_and(|o| !o.is_empty()) {
                out.insert(k, inner);
            }
        }
    }
    Value::Object(out)
}

/// `*` wildcard match.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(mut remaining) = text.strip_prefix(head) else {
                return false;
            };
            let parts: Vec<&str> = rest.split('*').collect();
            for (i, part) in parts.iter().enumerate() {
                if i == parts.len() - 1 {
                    return remaining.ends_with(part);
                }
                match remaining.find(part) {
                    Some(pos) => remaining = &remaining[pos + part.len()..],
                    None => return false,
                }
            }
            true
        }
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_patterns() {
        assert!(glob("a*", "abc"));
        assert!(glob("*c", "abc"));
        assert!(glob("a*c", "abc"));
        assert!(!glob("a*d", "abc"));
        assert!(glob("meta.*", "meta.year"));
    }

    #[test]
    fn source_filter_includes_and_excludes() {
        let src = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": 4});
        let f = SourceFilter::parse(&json!({"includes": ["b.c", "a"]})).unwrap();
        assert_eq!(
            f.apply(src.clone()).unwrap(),
            json!({"a": 1, "b": {"c": 2}})
        );
        let f = SourceFilter::parse(&json!({"excludes": ["b.d", "e"]})).unwrap();
        assert_eq!(
            f.apply(src.clone()).unwrap(),
            json!({"a": 1, "b": {"c": 2}})
        );
        assert!(SourceFilter::parse(&json!(false))
            .unwrap()
            .apply(src)
            .is_none());
    }
}
