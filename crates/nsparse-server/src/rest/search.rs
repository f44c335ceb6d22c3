//! `_search` and `_count`: the body grammar (`query`, `size`, `from`, `_source`, `explain`,
//! `track_total_hits`, `sort`), the search pipeline, and the OpenSearch hits shape around
//! [`crate::query`].

use std::time::Instant;

use serde_json::{json, Map, Value};

use super::app::App;
use super::params::{non_negative, parse_body, Params};
use super::reply::Reply;
use crate::error::{ApiError, ApiResult};
use crate::limits::Cancel;
use crate::query::{
    execute, parse_query, ExecContext, ParseContext, SourceFilter, MAX_RESULT_WINDOW,
    TRACK_TOTAL_HITS,
};
use crate::store::IndexHandle;

/// The mode of `neural_sparse` clauses without `method_parameters`: two-phase when the
/// request's (`?search_pipeline=`) or the index's default search pipeline says so.
fn search_context_mode(
    app: &App,
    handle: &IndexHandle,
    params: &Params,
) -> ApiResult<nsparse_index::SearchMode> {
    let name = match params.get("search_pipeline") {
        Some("_none") => None,
        Some(p) => Some(p.to_string()),
        None => handle.meta().default_search_pipeline(),
    };
    let pipeline = name.map(|n| app.store.search_pipeline(&n)).transpose()?;
    Ok(pipeline
        .and_then(|p| p.two_phase())
        .unwrap_or(nsparse_index::SearchMode::Exact))
}

/// `GET|POST /{index}/_search`.
pub(super) fn search(
    app: &App,
    index: &str,
    params: &Params,
    body: &[u8],
    cancel: &Cancel,
) -> ApiResult<Reply> {
    let started = Instant::now();
    let store = &app.store;
    let handle = store.index(index)?;
    let body = match parse_body(body)? {
        Value::Null => Value::Object(Map::new()),
        v @ Value::Object(_) => v,
        _ => return Err(ApiError::parsing("the search body must be a JSON object")),
    };
    let obj = body.as_object().expect("checked above");
    let mut size = 10usize;
    let mut from = 0usize;
    let mut explain = params.flag("explain")?;
    let mut source_filter = SourceFilter::default();
    let mut track_total_hits = TRACK_TOTAL_HITS;
    for (key, value) in obj {
        match key.as_str() {
            "query" => {}
            "size" => size = non_negative(value, "size")?,
            "from" => from = non_negative(value, "from")?,
            "explain" => {
                explain = value
                    .as_bool()
                    .ok_or_else(|| ApiError::x_content("[explain] must be a boolean"))?
            }
            "_source" => source_filter = SourceFilter::parse(value)?,
            "track_total_hits" => {
                track_total_hits = match value {
                    Value::Bool(true) => usize::MAX,
                    Value::Bool(false) => 0,
                    other => non_negative(other, "track_total_hits")?,
                }
            }
            "timeout" | "version" | "seq_no_primary_term" | "stored_fields" | "min_score" => {}
            "sort" => {
                let only_score = match value {
                    Value::String(s) => s == "_score",
                    Value::Array(items) => items
                        .iter()
                        .all(|i| i.as_str() == Some("_score") || i.get("_score").is_some()),
                    Value::Object(o) => o.keys().all(|k| k == "_score"),
                    _ => false,
                };
                if !only_score {
                    return Err(ApiError::illegal_argument(
                        "nsparse sorts hits by _score only",
                    ));
                }
            }
            "aggs" | "aggregations" => {
                return Err(ApiError::parsing(
                    "aggregations are not supported by nsparse",
                ));
            }
            other => {
                return Err(ApiError::parsing(format!(
                    "Unknown key for a START_OBJECT in [{other}]."
                )));
            }
        }
    }
    if let Some(s) = params.usize("size")? {
        size = s;
    }
    if let Some(f) = params.usize("from")? {
        from = f;
    }
    if params.get("scroll").is_some() {
        return Err(ApiError::illegal_argument(
            "scroll searches are not supported by nsparse; page with from and size (up to 10,000 hits)",
        ));
    }
    if params.get("q").is_some() {
        return Err(ApiError::illegal_argument(
            "the q= (query string) parameter is not supported by nsparse; send a query body",
        ));
    }
    if let Some(filter) = params.source_filter() {
        source_filter = filter;
    }
    if from.saturating_add(size) > MAX_RESULT_WINDOW {
        return Err(ApiError::illegal_argument(format!(
            "Result window is too large, from + size must be less than or equal to: [{MAX_RESULT_WINDOW}] but was [{}]",
            from.saturating_add(size)
        )));
    }
    let meta = handle.meta();
    let ctx = ParseContext {
        meta: &meta,
        models: store.models(),
        neural_mode: search_context_mode(app, &handle, params)?,
    };
    let query = obj
        .get("query")
        .cloned()
        .unwrap_or_else(|| json!({"match_all": {}}));
    let parsed = parse_query(&query, &ctx)?;
    cancel.check()?;
    let view = handle.view();
    let outcome = execute(
        &parsed,
        &ExecContext {
            view: &view,
            models: store.models(),
            from,
            size,
            explain,
            track_total_hits,
        },
    )?;
    cancel.check()?;
    let mut hits = Vec::with_capacity(outcome.hits.len());
    for (id, score, explanation) in outcome.hits {
        let mut hit = json!({"_index": index, "_id": id, "_score": score});
        if !source_filter.is_disabled() {
            if let Some(bytes) = view.searcher.get(&id)? {
                let source: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                if let Some(filtered) = source_filter.apply(source) {
                    hit["_source"] = filtered;
                }
            }
        }
        if let Some(e) = explanation {
            hit["_explanation"] = e;
        }
        hits.push(hit);
    }
    Ok(Reply::ok(json!({
        "took": started.elapsed().as_millis() as u64,
        "timed_out": false,
        "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
        "hits": {
            "total": {"value": outcome.total, "relation": if outcome.exact_total { "eq" } else { "gte" }},
            "max_score": outcome.max_score,
            "hits": hits
        }
    })))
}

/// `GET|POST /{index}/_count` with an optional `query`.
pub(super) fn count(app: &App, index: &str, params: &Params, body: &[u8]) -> ApiResult<Reply> {
    let store = &app.store;
    let handle = store.index(index)?;
    let body = parse_body(body)?;
    let view = handle.view();
    let count = match body.get("query") {
        None => {
            if let Some(obj) = body.as_object() {
                if let Some(key) = obj.keys().next() {
                    return Err(ApiError::parsing(format!(
                        "request does not support [{key}]"
                    )));
                }
            }
            view.docs.len()
        }
        Some(query) => {
            let meta = handle.meta();
            let ctx = ParseContext {
                meta: &meta,
                models: store.models(),
                neural_mode: search_context_mode(app, &handle, params)?,
            };
            let parsed = parse_query(query, &ctx)?;
            execute(&parsed, &ExecContext::count(&view, store.models()))?.total
        }
    };
    Ok(Reply::ok(
        json!({"count": count, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0}}),
    ))
}
