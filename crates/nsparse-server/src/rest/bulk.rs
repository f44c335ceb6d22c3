//! `_bulk`: the NDJSON grammar, ingest pipelines batched per pipeline, documents prepared in
//! parallel, writes applied in runs of the same index, and per-item results.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use axum::http::StatusCode;
use rayon::prelude::*;
use serde_json::{json, Value};

use super::app::App;
use super::documents::{auto_id, item_body, resolve_pipeline};
use super::params::Params;
use super::reply::Reply;
use crate::error::{ApiError, ApiResult};
use crate::ingest::{prepare, IngestPipeline};
use crate::limits::Cancel;
use crate::mapping::IndexMeta;
use crate::store::{IndexHandle, OpType, Store, WriteOp};

/// One parsed bulk item.
struct BulkItem {
    action: &'static str,
    index: String,
    id: Option<String>,
    pipeline: Option<String>,
    source: Option<ApiResult<Value>>,
}

fn bulk_parse(default_index: Option<&str>, body: &[u8]) -> ApiResult<Vec<BulkItem>> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::illegal_argument("the bulk body is not UTF-8"))?;
    let mut lines = text
        .split('\n')
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let mut items = Vec::new();
    while let Some((n, line)) = lines.next() {
        let action_line: Value = serde_json::from_str(line).map_err(|e| {
            ApiError::illegal_argument(format!(
                "Malformed action/metadata line [{}], expected a JSON object: {e}",
                n + 1
            ))
        })?;
        let Some((action, meta)) = action_line
            .as_object()
            .and_then(|o| (o.len() == 1).then(|| o.iter().next()).flatten())
        else {
            return Err(ApiError::illegal_argument(format!(
                "Malformed action/metadata line [{}], expected an object with one action (index, create, update, delete)",
                n + 1
            )));
        };
        let action: &'static str = match action.as_str() {
            "index" => "index",
            "create" => "create",
            "update" => "update",
            "delete" => "delete",
            other => {
                return Err(ApiError::illegal_argument(format!(
                    "Malformed action/metadata line [{}], expected one of [create, delete, index, update] but found [{other}]",
                    n + 1
                )))
            }
        };
        let meta = meta.as_object().ok_or_else(|| {
            ApiError::illegal_argument(format!(
                "Malformed action/metadata line [{}], the action must be an object",
                n + 1
            ))
        })?;
        let string = |key: &str| -> ApiResult<Option<String>> {
            match meta.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Number(x)) => Ok(Some(x.to_string())),
                Some(_) => Err(ApiError::illegal_argument(format!(
                    "Malformed action/metadata line [{}], [{key}] must be a string",
                    n + 1
                ))),
            }
        };
        let index = match (string("_index")?, default_index) {
            (Some(i), _) => i,
            (None, Some(d)) => d.to_string(),
            (None, None) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "action_request_validation_exception",
                    format!("Validation Failed: 1: index is missing (line {});", n + 1),
                ))
            }
        };
        let source = if action == "delete" {
            None
        } else {
            let (_, source_line) = lines.next().ok_or_else(|| {
                ApiError::illegal_argument(format!("The bulk request must have a source line after the {action} action on line [{}]", n + 1))
            })?;
            Some(
                serde_json::from_str::<Value>(source_line)
                    .map_err(|e| {
                        ApiError::mapper_parsing(format!(
                            "failed to parse: the source on line [{}] is not JSON: {e}",
                            n + 2
                        ))
                    })
                    .and_then(|v| {
                        if v.is_object() {
                            Ok(v)
                        } else {
                            Err(ApiError::mapper_parsing(format!(
                                "failed to parse: the source on line [{}] is not a JSON object",
                                n + 2
                            )))
                        }
                    }),
            )
        };
        items.push(BulkItem {
            action,
            index,
            id: string("_id")?,
            pipeline: string("pipeline")?,
            source,
        });
    }
    Ok(items)
}

/// `POST /_bulk`, `POST /{index}/_bulk`.
pub(super) fn bulk(
    app: &App,
    default_index: Option<&str>,
    params: &Params,
    body: &[u8],
    cancel: &Cancel,
) -> ApiResult<Reply> {
    let started = Instant::now();
    let store = &app.store;
    let refresh = params.refresh()?;
    let mut items = bulk_parse(default_index, body)?;
    cancel.check()?;
    if items.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "action_request_validation_exception",
            "Validation Failed: 1: no requests added;",
        ));
    }
    // Per item: the index handle (or its error), the write op (or its error).
    let mut handles: Vec<ApiResult<Arc<IndexHandle>>> = Vec::with_capacity(items.len());
    for item in &mut items {
        let handle = match item.action {
            "index" | "create" => store.index_or_create(&item.index),
            _ => store.index(&item.index),
        };
        if item.id.is_none() && matches!(item.action, "index" | "create") {
            item.id = Some(auto_id());
        }
        handles.push(handle);
    }
    // Run ingest pipelines, batched per pipeline.
    let mut sources: Vec<Option<ApiResult<Value>>> =
        items.iter_mut().map(|i| i.source.take()).collect();
    let mut pipelines: Vec<Option<ApiResult<Arc<IngestPipeline>>>> =
        Vec::with_capacity(items.len());
    for (item, handle) in items.iter().zip(&handles) {
        let requested = item.pipeline.as_deref().or(params.get("pipeline"));
        pipelines.push(match handle {
            Ok(h) => resolve_pipeline(store, requested, h).transpose(),
            Err(_) => None,
        });
    }
    let mut groups: BTreeMap<usize, (Arc<IngestPipeline>, Vec<usize>)> = BTreeMap::new();
    let mut pipeline_keys: HashMap<*const IngestPipeline, usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        if !matches!(item.action, "index" | "create") {
            continue;
        }
        match &pipelines[i] {
            Some(Ok(p)) => {
                let next = pipeline_keys.len();
                let key = *pipeline_keys.entry(Arc::as_ptr(p)).or_insert(next);
                groups
                    .entry(key)
                    .or_insert_with(|| (p.clone(), Vec::new()))
                    .1
                    .push(i);
            }
            Some(Err(e)) => sources[i] = Some(Err(e.clone())),
            None => {}
        }
    }
    for (pipeline, members) in groups.into_values() {
        let mut batch: Vec<ApiResult<Value>> = members
            .iter()
            .map(|&i| {
                sources[i]
                    .take()
                    .unwrap_or_else(|| Err(ApiError::internal("missing source")))
            })
            .collect();
        pipeline.run_cancellable(&mut batch, store.models(), cancel);
        for (&i, s) in members.iter().zip(batch) {
            sources[i] = Some(s);
        }
    }
    // Build ops and apply them in runs of the same index.
    let mut rendered: Vec<Option<Value>> = vec![None; items.len()];
    let mut touched: Vec<Arc<IndexHandle>> = Vec::new();
    let mut i = 0;
    while i < items.len() {
        let handle = match &handles[i] {
            Err(e) => {
                rendered[i] = Some(bulk_error(&items[i], e));
                i += 1;
                continue;
            }
            Ok(h) => h.clone(),
        };
        cancel.check()?;
        let meta = handle.meta();
        let start = i;
        while i < items.len() && handles[i].as_ref().is_ok_and(|h| Arc::ptr_eq(h, &handle)) {
            i += 1;
        }
        // Checking documents and tokenizing their text is CPU work: spread it over the pool.
        let run_sources: Vec<Option<ApiResult<Value>>> =
            (start..i).map(|j| sources[j].take()).collect();
        let prepared: Vec<ApiResult<WriteOp>> = (start..i)
            .into_par_iter()
            .zip(run_sources)
            .map(|(j, source)| bulk_op(&items[j], source, &pipelines[j], &meta, store))
            .collect();
        let mut ops = Vec::new();
        let mut applied = Vec::new();
        for (j, op) in (start..i).zip(prepared) {
            match op {
                Ok(op) => {
                    ops.push(op);
                    applied.push(j);
                }
                Err(e) => rendered[j] = Some(bulk_error(&items[j], &e)),
            }
        }
        cancel.check()?;
        let results = handle.apply(ops, store.models());
        for (idx, result) in applied.into_iter().zip(results) {
            let (status, mut body) = item_body(handle.name(), &result);
            if body.get("status").is_none() {
                body["status"] = json!(status.as_u16());
            }
            rendered[idx] = Some(json!({items[idx].action: body}));
        }
        if !touched.iter().any(|t| Arc::ptr_eq(t, &handle)) {
            touched.push(handle);
        }
    }
    let rendered: Vec<Value> = rendered
        .into_iter()
        .map(|v| v.unwrap_or(Value::Null))
        .collect();
    let errors = rendered.iter().any(|v| {
        v.as_object()
            .and_then(|o| o.values().next())
            .is_some_and(|b| b.get("error").is_some())
    });
    if refresh {
        for h in &touched {
            h.refresh()?;
        }
    }
    Ok(Reply::ok(
        json!({"took": started.elapsed().as_millis() as u64, "errors": errors, "items": rendered}),
    ))
}

fn bulk_error(item: &BulkItem, e: &ApiError) -> Value {
    json!({item.action: {"_index": item.index, "_id": item.id, "status": e.status.as_u16(), "error": e.cause()}})
}

fn bulk_op(
    item: &BulkItem,
    source: Option<ApiResult<Value>>,
    pipeline: &Option<ApiResult<Arc<IngestPipeline>>>,
    meta: &IndexMeta,
    store: &Store,
) -> ApiResult<WriteOp> {
    let Some(id) = item.id.clone() else {
        return Err(missing_id());
    };
    match item.action {
        "delete" => Ok(WriteOp::Delete { id }),
        "update" => {
            let body = source.unwrap_or_else(|| Err(ApiError::internal("missing source")))?;
            let doc = body.get("doc").cloned().ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "action_request_validation_exception",
                    "Validation Failed: 1: script or doc is missing;",
                )
            })?;
            let pipeline = match pipeline {
                Some(Ok(p)) => Some(p.clone()),
                Some(Err(e)) => return Err(e.clone()),
                None => None,
            };
            Ok(WriteOp::Update {
                id,
                doc,
                upsert: body
                    .get("doc_as_upsert")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                pipeline,
            })
        }
        action => {
            let op_type = if action == "create" {
                OpType::Create
            } else {
                OpType::Index
            };
            let prepared = source
                .unwrap_or_else(|| Err(ApiError::internal("missing source")))
                .and_then(|source| prepare(meta, store.models(), &id, &source));
            Ok(WriteOp::Index {
                id,
                op_type,
                prepared,
            })
        }
    }
}

fn missing_id() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "action_request_validation_exception",
        "Validation Failed: 1: id is missing;",
    )
}
