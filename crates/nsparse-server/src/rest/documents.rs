//! Single documents: `_doc` (index, create, get, delete), `_create`, `_update`, `_source` and
//! `_mget`, with the response shapes `_bulk` items share.

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::app::App;
use super::params::{require_body, Params};
use super::reply::Reply;
use crate::error::{ApiError, ApiResult};
use crate::ingest::{prepare, IngestPipeline};
use crate::store::{IndexHandle, OpType, Store, WriteOp, WriteResult};

/// `PUT|POST /{index}/_doc/{id}` (`?op_type=create|index`).
pub(super) fn index(
    app: &App,
    index: &str,
    id: &str,
    params: &Params,
    body: &[u8],
) -> ApiResult<Reply> {
    let op = match params.get("op_type") {
        Some("create") => OpType::Create,
        None | Some("index") => OpType::Index,
        Some(other) => {
            return Err(ApiError::illegal_argument(format!(
                "opType must be 'create' or 'index', found: [{other}]"
            )))
        }
    };
    write(app, index, id, op, params, body)
}

/// `GET /{index}/_source/{id}`: the stored source alone.
pub(super) fn get_source(app: &App, index: &str, id: &str) -> ApiResult<Reply> {
    let h = app.store.index(index)?;
    match h.get(id)? {
        Some((source, _, _)) => Ok(Reply::ok(
            serde_json::from_slice(&source).unwrap_or(Value::Null),
        )),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "resource_not_found_exception",
            format!("Document not found [{index}]/[{id}]"),
        )),
    }
}

/// `DELETE /{index}/_doc/{id}`.
pub(super) fn delete(app: &App, index: &str, id: &str, params: &Params) -> ApiResult<Reply> {
    let store = &app.store;
    let h = store.index(index)?;
    let results = h.apply(vec![WriteOp::Delete { id: id.to_string() }], store.models());
    if params.refresh()? {
        h.refresh()?;
    }
    single_reply(&h, &results[0])
}

/// The pipeline of a write: `?pipeline=` (or the bulk item's), else the index default; `_none` = none.
pub(super) fn resolve_pipeline(
    store: &Store,
    requested: Option<&str>,
    handle: &IndexHandle,
) -> ApiResult<Option<Arc<IngestPipeline>>> {
    let name = match requested {
        Some("_none") => return Ok(None),
        Some(p) => Some(p.to_string()),
        None => handle.meta().default_pipeline(),
    };
    name.map(|n| store.ingest_pipeline(&n)).transpose()
}

/// Indexes (or, with [`OpType::Create`], creates) one document: `?pipeline=`, `?refresh=`.
pub(super) fn write(
    app: &App,
    index: &str,
    id: &str,
    op_type: OpType,
    params: &Params,
    body: &[u8],
) -> ApiResult<Reply> {
    let store = &app.store;
    let source = require_body(body, "indexing a document")?;
    let handle = store.index_or_create(index)?;
    let pipeline = resolve_pipeline(store, params.get("pipeline"), &handle)?;
    let mut sources = [Ok(source)];
    if let Some(p) = &pipeline {
        p.run(&mut sources, store.models());
    }
    let [source] = sources;
    let prepared = prepare(&handle.meta(), store.models(), id, &source?)?;
    let results = handle.apply(
        vec![WriteOp::Index {
            id: id.to_string(),
            op_type,
            prepared: Ok(prepared),
        }],
        store.models(),
    );
    if params.refresh()? {
        handle.refresh()?;
    }
    single_reply(&handle, &results[0])
}

/// `POST /{index}/_update/{id}`: `doc` merged into the stored source, `doc_as_upsert`.
pub(super) fn update(
    app: &App,
    index: &str,
    id: &str,
    params: &Params,
    body: &[u8],
) -> ApiResult<Reply> {
    let store = &app.store;
    let body = require_body(body, "_update")?;
    let handle = store.index(index)?;
    let doc = body.get("doc").cloned().ok_or_else(|| {
        ApiError::illegal_argument("Validation Failed: 1: script or doc is missing;")
    })?;
    let upsert = body
        .get("doc_as_upsert")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let pipeline = resolve_pipeline(store, params.get("pipeline"), &handle)?;
    let results = handle.apply(
        vec![WriteOp::Update {
            id: id.to_string(),
            doc,
            upsert,
            pipeline,
        }],
        store.models(),
    );
    if params.refresh()? {
        handle.refresh()?;
    }
    single_reply(&handle, &results[0])
}

/// The status and body of one write's result (a single write's reply, a `_bulk` item).
pub(super) fn item_body(handle_name: &str, result: &WriteResult) -> (StatusCode, Value) {
    match &result.outcome {
        Ok((outcome, version, seq)) => {
            let status = match *outcome {
                "created" => StatusCode::CREATED,
                "not_found" => StatusCode::NOT_FOUND,
                _ => StatusCode::OK,
            };
            (
                status,
                json!({
                    "_index": handle_name, "_id": result.id, "_version": version, "result": outcome,
                    "_shards": {"total": 1, "successful": 1, "failed": 0},
                    "_seq_no": seq, "_primary_term": 1
                }),
            )
        }
        Err(e) => (
            e.status,
            json!({"_index": handle_name, "_id": result.id, "status": e.status.as_u16(), "error": e.cause()}),
        ),
    }
}

fn single_reply(handle: &IndexHandle, result: &WriteResult) -> ApiResult<Reply> {
    if let Err(e) = &result.outcome {
        return Err(e.clone());
    }
    let (status, body) = item_body(handle.name(), result);
    Ok(Reply::Json(status, body))
}

/// `GET|HEAD /{index}/_doc/{id}` (realtime).
pub(super) fn get(
    app: &App,
    index: &str,
    id: &str,
    params: &Params,
    head: bool,
) -> ApiResult<Reply> {
    let handle = app.store.index(index)?;
    match handle.get(id)? {
        None => Ok(if head {
            Reply::Empty(StatusCode::NOT_FOUND)
        } else {
            Reply::Json(
                StatusCode::NOT_FOUND,
                json!({"_index": index, "_id": id, "found": false}),
            )
        }),
        Some(_) if head => Ok(Reply::Empty(StatusCode::OK)),
        Some((source, version, seq)) => {
            let source: Value = serde_json::from_slice(&source).map_err(|e| {
                ApiError::internal(format!("stored _source of [{id}] is not JSON: {e}"))
            })?;
            let filter = params.source_filter().unwrap_or_default();
            let mut body = json!({"_index": index, "_id": id, "_version": version, "_seq_no": seq,
                "_primary_term": 1, "found": true});
            if let Some(source) = filter.apply(source) {
                body["_source"] = source;
            }
            Ok(Reply::ok(body))
        }
    }
}

/// `_mget`: `{"docs": [{"_index", "_id", "_source"?}]}` or, with an index, `{"ids": [...]}`.
pub(super) fn mget(
    app: &App,
    index: Option<&str>,
    params: &Params,
    body: &[u8],
) -> ApiResult<Reply> {
    let body = require_body(body, "_mget")?;
    let mut requests: Vec<(String, String)> = Vec::new();
    let id_text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    if let Some(docs) = body.get("docs").and_then(Value::as_array) {
        for doc in docs {
            let target = doc.get("_index").and_then(Value::as_str).or(index);
            let (Some(target), Some(id)) = (target, doc.get("_id").and_then(id_text)) else {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "action_request_validation_exception",
                    "Validation Failed: 1: each doc of _mget needs an _index (or an index in the path) and an _id;",
                ));
            };
            requests.push((target.to_string(), id));
        }
    } else if let (Some(ids), Some(index)) = (body.get("ids").and_then(Value::as_array), index) {
        for id in ids {
            let id = id
                .as_str()
                .map(str::to_string)
                .or_else(|| id_text(id))
                .ok_or_else(|| ApiError::x_content("[ids] of _mget must be strings"))?;
            requests.push((index.to_string(), id));
        }
    } else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "action_request_validation_exception",
            "Validation Failed: 1: no documents to get; send {\"docs\": [...]} or, with an index, {\"ids\": [...]};",
        ));
    }
    let filter = params.source_filter().unwrap_or_default();
    let docs: Vec<Value> = requests
        .into_iter()
        .map(|(target, id)| match app.store.index(&target).and_then(|h| h.get(&id)) {
            Err(e) => json!({"_index": target, "_id": id, "error": e.cause()}),
            Ok(None) => json!({"_index": target, "_id": id, "found": false}),
            Ok(Some((source, version, seq))) => {
                let mut doc = json!({"_index": target, "_id": id, "_version": version, "_seq_no": seq,
                    "_primary_term": 1, "found": true});
                let source: Value = serde_json::from_slice(&source).unwrap_or(Value::Null);
                if let Some(source) = filter.apply(source) {
                    doc["_source"] = source;
                }
                doc
            }
        })
        .collect();
    Ok(Reply::ok(json!({"docs": docs})))
}

/// A new document id (time-ordered prefix, random suffix).
pub(super) fn auto_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    format!("{:012x}{:08x}", nanos & 0xffff_ffff_ffff, h.finish() as u32)
}
