//! The HTTP layer: authentication, body limit, timeout, routing of OpenSearch paths, and the
//! handlers that turn requests into store operations and OpenSearch-shaped responses.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use rayon::prelude::*;
use serde_json::{json, Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::ingest::{prepare, IngestPipeline};
use crate::limits::Cancel;
use crate::query::{execute, parse_query, Context, SourceFilter, MAX_RESULT_WINDOW};
use crate::store::{IndexHandle, OpType, Store, WriteOp, WriteResult};
use crate::ServerConfig;

/// The shared state of the router.
pub struct App {
    /// Indices, pipelines, models.
    pub store: Arc<Store>,
    /// Limits and credentials.
    pub config: ServerConfig,
}

/// The axum router serving every endpoint (all paths go through one dispatcher so that every
/// error, including unknown paths and bad methods, has OpenSearch's JSON shape).
pub fn router(app: Arc<App>) -> Router {
    Router::new().fallback(dispatch).with_state(app)
}

/// A response body.
enum Reply {
    Json(StatusCode, Value),
    Text(StatusCode, String),
    Empty(StatusCode),
}

impl Reply {
    fn ok(value: Value) -> Self {
        Reply::Json(StatusCode::OK, value)
    }
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    let mut response = (status, value.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    response
}

fn error_response(e: &ApiError) -> Response {
    let mut response = json_response(e.status, &e.body());
    if e.status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"nsparse\" charset=\"UTF-8\""),
        );
    }
    response
}

async fn dispatch(State(app): State<Arc<App>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if let Some((user, password)) = &app.config.basic_auth {
        if !authorised(&parts.headers, user, password) {
            return error_response(&ApiError::new(
                StatusCode::UNAUTHORIZED,
                "security_exception",
                "missing or wrong credentials: send HTTP basic auth with the --user and --password of the server",
            ));
        }
    }
    let limit = app.config.max_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "content_too_long_exception",
            format!("request body is larger than the limit of [{limit}] bytes (--max-body-bytes); split the request"),
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return error_response(&too_large());
    }
    // A client that sends its body too slowly holds a connection, not a worker: bound it too.
    let bytes = match tokio::time::timeout(
        app.config.request_timeout,
        axum::body::to_bytes(body, limit),
    )
    .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => return error_response(&too_large()),
        Err(_) => {
            return error_response(&ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout_exception",
                "the request body did not arrive within --request-timeout-secs",
            ))
        }
    };
    let method = parts.method.clone();
    let uri = parts.uri.clone();
    let is_head = method == Method::HEAD;
    let work_app = app.clone();
    let cancel = Cancel::default();
    let work_cancel = cancel.clone();
    let task = tokio::task::spawn_blocking(move || {
        let path = uri.path().to_string();
        let query = uri.query().unwrap_or("").to_string();
        handle(&work_app, &method, &path, &query, &bytes, &work_cancel)
    });
    let outcome = tokio::time::timeout(app.config.request_timeout, task).await;
    let reply = match outcome {
        Err(_) => {
            // Stop the work at its next check (see `Cancel`): nobody reads its answer.
            cancel.cancel();
            Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout_exception",
                format!(
                    "the request did not finish within {} s (--request-timeout-secs); its remaining work is abandoned, but writes that reached the index complete (check with GET before retrying)",
                    app.config.request_timeout.as_secs_f64()
                ),
            ))
        }
        Ok(Err(join)) => {
            tracing::error!(error = %join, "request handler panicked");
            Err(ApiError::internal(
                "the request failed inside the server (a bug; see the server log)",
            ))
        }
        Ok(Ok(reply)) => reply,
    };
    let response = match reply {
        Ok(Reply::Json(status, value)) => json_response(status, &value),
        Ok(Reply::Text(status, text)) => {
            let mut r = (status, text).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=UTF-8"),
            );
            r
        }
        Ok(Reply::Empty(status)) => status.into_response(),
        Err(e) => error_response(&e),
    };
    if is_head {
        let (mut parts, _) = response.into_parts();
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::empty());
    }
    response
}

fn authorised(headers: &HeaderMap, user: &str, password: &str) -> bool {
    use base64::Engine;
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(encoded) = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
    else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let expected = format!("{user}:{password}");
    // Compare without an early exit, so timing does not reveal the matching prefix.
    decoded.len() == expected.len()
        && decoded
            .iter()
            .zip(expected.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Query-string parameters.
struct Params(HashMap<String, String>);

impl Params {
    fn parse(query: &str) -> Self {
        Params(
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        )
    }
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn flag(&self, key: &str) -> ApiResult<bool> {
        match self.get(key) {
            None | Some("false") => Ok(false),
            Some("") | Some("true") => Ok(true),
            Some(other) => Err(ApiError::illegal_argument(format!(
                "Failed to parse value [{other}] as only [true] or [false] are allowed for [{key}]"
            ))),
        }
    }
    fn usize(&self, key: &str) -> ApiResult<Option<usize>> {
        self.get(key)
            .map(|v| {
                v.parse::<usize>().map_err(|_| {
                    ApiError::illegal_argument(format!(
                        "Failed to parse int parameter [{key}] with value [{v}]"
                    ))
                })
            })
            .transpose()
    }
    /// `refresh`: `true`/empty/`wait_for` refresh before answering.
    fn refresh(&self) -> ApiResult<bool> {
        match self.get("refresh") {
            None | Some("false") => Ok(false),
            Some("") | Some("true") | Some("wait_for") => Ok(true),
            Some(other) => Err(ApiError::illegal_argument(format!(
                "Unknown value for refresh: [{other}]; use true, false or wait_for"
            ))),
        }
    }
}

fn decode_segments(path: &str) -> ApiResult<Vec<String>> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| {
                    ApiError::illegal_argument(format!(
                        "path segment [{s}] is not valid percent-encoded UTF-8"
                    ))
                })
        })
        .collect()
}

fn parse_body(bytes: &[u8]) -> ApiResult<Value> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::parsing(format!(
            "request body is not valid JSON: {e} (send one JSON object)"
        ))
    })
}

fn require_body(bytes: &[u8], what: &str) -> ApiResult<Value> {
    match parse_body(bytes)? {
        Value::Null => Err(ApiError::parsing(format!("{what} requires a request body"))),
        Value::Object(o) => Ok(Value::Object(o)),
        _ => Err(ApiError::parsing(format!(
            "{what}: the body must be a JSON object"
        ))),
    }
}

fn handle(
    app: &App,
    method: &Method,
    path: &str,
    query: &str,
    body: &[u8],
    cancel: &Cancel,
) -> ApiResult<Reply> {
    let segments = decode_segments(path)?;
    let params = Params::parse(query);
    let store = &app.store;
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let m = method.as_str();
    match (m, seg.as_slice()) {
        ("GET" | "HEAD", []) => Ok(Reply::ok(cluster_info(app))),
        ("GET", ["_cluster", "health", ..]) => Ok(Reply::ok(json!({
            "cluster_name": app.config.cluster_name,
            "status": if store.unavailable().is_empty() { "green" } else { "red" }, "timed_out": false,
            "number_of_nodes": 1, "number_of_data_nodes": 1, "active_primary_shards": store.indices().len(),
            "active_shards": store.indices().len(), "relocating_shards": 0, "initializing_shards": 0,
            "unassigned_shards": 0, "active_shards_percent_as_number": 100.0
        }))),
        ("GET", ["_cat", "indices"]) => cat_indices(store, None, &params),
        ("GET", ["_cat", "indices", index]) => cat_indices(store, Some(index), &params),
        ("POST" | "PUT", ["_bulk"]) => bulk(app, None, &params, body, cancel),
        ("GET", ["_ingest", "pipeline"]) => {
            Ok(Reply::ok(to_object(store.ingest_pipeline_bodies(None)?)))
        }
        ("GET", ["_ingest", "pipeline", id]) => Ok(Reply::ok(to_object(
            store.ingest_pipeline_bodies(Some(id))?,
        ))),
        ("PUT", ["_ingest", "pipeline", id]) => {
            store.put_ingest_pipeline(id, require_body(body, "PUT _ingest/pipeline")?)?;
            Ok(Reply::ok(json!({"acknowledged": true})))
        }
        ("DELETE", ["_ingest", "pipeline", id]) => {
            store.delete_ingest_pipeline(id)?;
            Ok(Reply::ok(json!({"acknowledged": true})))
        }
        ("GET", ["_search", "pipeline"]) => {
            Ok(Reply::ok(to_object(store.search_pipeline_bodies(None)?)))
        }
        ("GET", ["_search", "pipeline", id]) => Ok(Reply::ok(to_object(
            store.search_pipeline_bodies(Some(id))?,
        ))),
        ("PUT", ["_search", "pipeline", id]) => {
            store.put_search_pipeline(id, require_body(body, "PUT _search/pipeline")?)?;
            Ok(Reply::ok(json!({"acknowledged": true})))
        }
        ("DELETE", ["_search", "pipeline", id]) => {
            store.delete_search_pipeline(id)?;
            Ok(Reply::ok(json!({"acknowledged": true})))
        }
        ("POST" | "GET", ["_refresh"]) => {
            let all = store.indices();
            for h in &all {
                h.refresh()?;
            }
            Ok(Reply::ok(shards_summary(all.len())))
        }
        ("GET" | "POST", ["_mget"]) => mget(app, None, &params, body),
        (_, [first, ..]) if first.starts_with('_') => Err(no_handler(m, path)),
        ("PUT", [index]) => {
            let body = parse_body(body)?;
            store.create_index(index, &body)?;
            Ok(Reply::ok(
                json!({"acknowledged": true, "shards_acknowledged": true, "index": index}),
            ))
        }
        ("DELETE", [index]) => {
            match store.delete_index(index) {
                Err(e)
                    if e.status == StatusCode::NOT_FOUND
                        && params.flag("ignore_unavailable")? => {}
                other => other?,
            }
            Ok(Reply::ok(json!({"acknowledged": true})))
        }
        ("HEAD", [index]) => Ok(if store.exists(index) {
            Reply::Empty(StatusCode::OK)
        } else {
            Reply::Empty(StatusCode::NOT_FOUND)
        }),
        ("GET", [index]) => {
            let h = store.index(index)?;
            let meta = h.meta();
            Ok(Reply::ok(json!({*index: {
                "aliases": {}, "mappings": meta.mappings, "settings": meta.settings_view(index)
            }})))
        }
        ("GET", [index, "_mapping"]) => {
            let h = store.index(index)?;
            Ok(Reply::ok(json!({*index: {"mappings": h.meta().mappings}})))
        }
        ("PUT" | "POST", [index, "_mapping"]) => {
            let h = store.index(index)?;
            let body = require_body(body, "PUT _mapping")?;
            let mut meta = h.meta();
            meta.merge_mapping(&body)?;
            h.set_meta(meta)?;
            Ok(Reply::ok(json!({"acknowledged": true})))
        }
        ("GET", [index, "_settings"]) => {
            let h = store.index(index)?;
            Ok(Reply::ok(
                json!({*index: {"settings": h.meta().settings_view(index)}}),
            ))
        }
        ("PUT", [index, "_settings"]) => {
            let h = store.index(index)?;
            let body = require_body(body, "PUT _settings")?;
            let mut meta = h.meta();
            meta.merge_settings(&body)?;
            if let Some(p) = meta.default_pipeline() {
                store.ingest_pipeline(&p)?;
            }
            if let Some(p) = meta.default_search_pipeline() {
                store.search_pipeline(&p)?;
            }
            h.set_meta(meta)?;
            Ok(Reply::ok(json!({"acknowledged": true})))
        }
        ("POST" | "GET", [index, "_refresh"]) => {
            store.index(index)?.refresh()?;
            Ok(Reply::ok(shards_summary(1)))
        }
        ("GET" | "POST", [index, "_count"]) => count(app, index, &params, body),
        ("GET" | "POST", [index, "_search"]) => search(app, index, &params, body, cancel),
        ("GET" | "POST", [index, "_mget"]) => mget(app, Some(index), &params, body),
        ("POST" | "PUT", [index, "_bulk"]) => bulk(app, Some(index), &params, body, cancel),
        ("POST", [index, "_doc"]) => {
            let id = auto_id();
            write_one(app, index, &id, OpType::Create, &params, body)
        }
        ("PUT" | "POST", [index, "_doc", id]) => {
            let op = match params.get("op_type") {
                Some("create") => OpType::Create,
                None | Some("index") => OpType::Index,
                Some(other) => {
                    return Err(ApiError::illegal_argument(format!(
                        "opType must be 'create' or 'index', found: [{other}]"
                    )))
                }
            };
            write_one(app, index, id, op, &params, body)
        }
        ("PUT" | "POST", [index, "_create", id]) => {
            write_one(app, index, id, OpType::Create, &params, body)
        }
        ("POST", [index, "_update", id]) => update_one(app, index, id, &params, body),
        ("GET" | "HEAD", [index, "_doc", id]) => get_doc(app, index, id, &params, m == "HEAD"),
        ("GET", [index, "_source", id]) => {
            let h = store.index(index)?;
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
        ("DELETE", [index, "_doc", id]) => {
            let h = store.index(index)?;
            let results = h.apply(vec![WriteOp::Delete { id: id.to_string() }], &store.models);
            if params.refresh()? {
                h.refresh()?;
            }
            single_reply(&h, &results[0])
        }
        _ => Err(no_handler(m, path)),
    }
}

fn no_handler(method: &str, path: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "illegal_argument_exception",
        format!("no handler found for uri [{path}] and method [{method}] (nsparse serves the subset listed in its documentation)"),
    )
}

fn to_object(map: BTreeMap<String, Value>) -> Value {
    Value::Object(map.into_iter().collect())
}

fn shards_summary(n: usize) -> Value {
    json!({"_shards": {"total": n, "successful": n, "failed": 0}})
}

fn cluster_info(app: &App) -> Value {
    json!({
        "name": app.config.node_name,
        "cluster_name": app.config.cluster_name,
        "cluster_uuid": "nsparse-single-node",
        "version": {
            "distribution": "opensearch",
            "number": crate::OPENSEARCH_VERSION,
            "build_type": "nsparse",
            "build_hash": env!("CARGO_PKG_VERSION"),
            "build_date": "2025-01-01T00:00:00.000000Z",
            "build_snapshot": false,
            "lucene_version": "9.12.1",
            "minimum_wire_compatibility_version": "7.10.0",
            "minimum_index_compatibility_version": "7.0.0"
        },
        "tagline": "The OpenSearch Project: https://opensearch.org/"
    })
}

fn cat_indices(store: &Store, only: Option<&str>, params: &Params) -> ApiResult<Reply> {
    let unavailable: Vec<(String, String)> = store
        .unavailable()
        .into_iter()
        .filter(|(name, _)| only.is_none_or(|o| o == name))
        .collect();
    let handles: Vec<Arc<IndexHandle>> = match only {
        Some(_) if !unavailable.is_empty() => Vec::new(),
        Some(name) => vec![store.index(name)?],
        None => store.indices(),
    };
    let mut rows: Vec<(String, Value)> = handles
        .iter()
        .map(|h| {
            let (docs, deleted, bytes) = h.stats();
            (h.name.clone(), json!({
                "health": "green", "status": "open", "index": h.name, "uuid": h.meta().uuid,
                "pri": "1", "rep": "0", "docs.count": docs.to_string(), "docs.deleted": deleted.to_string(),
                "store.size": human_bytes(bytes), "pri.store.size": human_bytes(bytes)
            }))
        })
        .collect();
    // Indices that failed to open: red and closed, as OpenSearch shows a closed index.
    for (name, _) in unavailable {
        rows.push((
            name.clone(),
            json!({
                "health": "red", "status": "close", "index": name, "uuid": "_na_",
                "pri": "1", "rep": "0", "docs.count": "", "docs.deleted": "",
                "store.size": "", "pri.store.size": ""
            }),
        ));
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let rows: Vec<Value> = rows.into_iter().map(|(_, row)| row).collect();
    if params.get("format") == Some("json") {
        return Ok(Reply::ok(Value::Array(rows)));
    }
    let columns = [
        "health",
        "status",
        "index",
        "uuid",
        "pri",
        "rep",
        "docs.count",
        "docs.deleted",
        "store.size",
        "pri.store.size",
    ];
    let mut lines: Vec<Vec<String>> = Vec::new();
    if params.flag("v")? {
        lines.push(columns.iter().map(|c| c.to_string()).collect());
    }
    for row in &rows {
        lines.push(
            columns
                .iter()
                .map(|c| row[*c].as_str().unwrap_or("").to_string())
                .collect(),
        );
    }
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| lines.iter().map(|l| l[i].len()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for line in lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        text.push_str(cells.join(" ").trim_end());
        text.push('\n');
    }
    Ok(Reply::Text(StatusCode::OK, text))
}

fn human_bytes(bytes: u64) -> String {
    let units = ["b", "kb", "mb", "gb", "tb"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}b")
    } else {
        format!("{value:.1}{}", units[unit])
    }
}

/// The pipeline of a write: `?pipeline=` (or the bulk item's), else the index default; `_none` = none.
fn resolve_pipeline(
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

fn write_one(
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
        p.run(&mut sources, &store.models);
    }
    let [source] = sources;
    let prepared = prepare(&handle.meta(), &store.models, id, &source?)?;
    let results = handle.apply(
        vec![WriteOp::Index {
            id: id.to_string(),
            op_type,
            prepared: Ok(prepared),
        }],
        &store.models,
    );
    if params.refresh()? {
        handle.refresh()?;
    }
    single_reply(&handle, &results[0])
}

fn update_one(app: &App, index: &str, id: &str, params: &Params, body: &[u8]) -> ApiResult<Reply> {
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
        &store.models,
    );
    if params.refresh()? {
        handle.refresh()?;
    }
    single_reply(&handle, &results[0])
}

fn item_body(handle_name: &str, result: &WriteResult) -> (StatusCode, Value) {
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
    let (status, body) = item_body(&handle.name, result);
    Ok(Reply::Json(status, body))
}

fn get_doc(app: &App, index: &str, id: &str, params: &Params, head: bool) -> ApiResult<Reply> {
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
            let filter = source_filter_from_params(params)?.unwrap_or_default();
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
fn mget(app: &App, index: Option<&str>, params: &Params, body: &[u8]) -> ApiResult<Reply> {
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
    let filter = source_filter_from_params(params)?.unwrap_or_default();
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

fn source_filter_from_params(params: &Params) -> ApiResult<Option<SourceFilter>> {
    let split = |s: &str| -> Vec<String> {
        s.split(',')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect()
    };
    let mut filter = match params.get("_source") {
        None => None,
        Some("true") | Some("") => Some(SourceFilter::default()),
        Some("false") => Some(SourceFilter {
            disabled: true,
            ..Default::default()
        }),
        Some(list) => Some(SourceFilter {
            includes: split(list),
            ..Default::default()
        }),
    };
    if let Some(inc) = params.get("_source_includes") {
        filter.get_or_insert_with(SourceFilter::default).includes = split(inc);
    }
    if let Some(exc) = params.get("_source_excludes") {
        filter.get_or_insert_with(SourceFilter::default).excludes = split(exc);
    }
    Ok(filter)
}

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
        .and_then(|p| p.two_phase)
        .unwrap_or(nsparse_index::SearchMode::Exact))
}

fn search(
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
    let mut track_total_hits = crate::query::TRACK_TOTAL_HITS;
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
    if let Some(filter) = source_filter_from_params(params)? {
        source_filter = filter;
    }
    if from.saturating_add(size) > MAX_RESULT_WINDOW {
        return Err(ApiError::illegal_argument(format!(
            "Result window is too large, from + size must be less than or equal to: [{MAX_RESULT_WINDOW}] but was [{}]",
            from.saturating_add(size)
        )));
    }
    let meta = handle.meta();
    let ctx = Context {
        meta: &meta,
        models: &store.models,
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
        &view,
        &store.models,
        from,
        size,
        explain,
        track_total_hits,
    )?;
    cancel.check()?;
    let mut hits = Vec::with_capacity(outcome.hits.len());
    for (id, score, explanation) in outcome.hits {
        let mut hit = json!({"_index": index, "_id": id, "_score": score});
        if !source_filter.disabled {
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

fn non_negative(value: &Value, key: &str) -> ApiResult<usize> {
    value
        .as_u64()
        .map(|v| v as usize)
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .ok_or_else(|| {
            ApiError::x_content(format!(
                "[{key}] must be a non-negative integer, found {value}"
            ))
        })
}

fn count(app: &App, index: &str, params: &Params, body: &[u8]) -> ApiResult<Reply> {
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
            let ctx = Context {
                meta: &meta,
                models: &store.models,
                neural_mode: search_context_mode(app, &handle, params)?,
            };
            let parsed = parse_query(query, &ctx)?;
            execute(&parsed, &view, &store.models, 0, 0, false, usize::MAX)?.total
        }
    };
    Ok(Reply::ok(
        json!({"count": count, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0}}),
    ))
}

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

fn bulk(
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
        pipeline.run_cancellable(&mut batch, &store.models, cancel);
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
        let results = handle.apply(ops, &store.models);
        for (idx, result) in applied.into_iter().zip(results) {
            let (status, mut body) = item_body(&handle.name, &result);
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
    meta: &crate::mapping::IndexMeta,
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
                .and_then(|source| prepare(meta, &store.models, &id, &source));
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

fn auto_id() -> String {
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
