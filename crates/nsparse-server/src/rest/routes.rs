//! The routing table: OpenSearch paths and methods → the handlers of each area. Paths under
//! `_` that no route serves, and every other unknown path, are a 400 "no handler found".

use axum::http::{Method, StatusCode};

use super::app::App;
use super::documents::auto_id;
use super::params::{decode_segments, Params};
use super::pipelines::PipelineKind;
use super::reply::Reply;
use super::{bulk, cluster, documents, indices, pipelines, search};
use crate::error::{ApiError, ApiResult};
use crate::limits::Cancel;
use crate::store::OpType;

/// Runs the request `method path?query` with `body` (on the blocking pool).
pub(super) fn handle(
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
        ("GET" | "HEAD", []) => Ok(cluster::info(app)),
        ("GET", ["_cluster", "health", ..]) => Ok(cluster::health(app)),
        ("GET", ["_cat", "indices"]) => cluster::cat_indices(store, None, &params),
        ("GET", ["_cat", "indices", index]) => cluster::cat_indices(store, Some(index), &params),
        ("POST" | "PUT", ["_bulk"]) => bulk::bulk(app, None, &params, body, cancel),
        ("GET", [area @ ("_ingest" | "_search"), "pipeline"]) => {
            pipelines::get(store, PipelineKind::of(area), None)
        }
        ("GET", [area @ ("_ingest" | "_search"), "pipeline", id]) => {
            pipelines::get(store, PipelineKind::of(area), Some(id))
        }
        ("PUT", [area @ ("_ingest" | "_search"), "pipeline", id]) => {
            pipelines::put(store, PipelineKind::of(area), id, body)
        }
        ("DELETE", [area @ ("_ingest" | "_search"), "pipeline", id]) => {
            pipelines::delete(store, PipelineKind::of(area), id)
        }
        ("POST" | "GET", ["_refresh"]) => indices::refresh_all(store),
        ("GET" | "POST", ["_mget"]) => documents::mget(app, None, &params, body),
        (_, [first, ..]) if first.starts_with('_') => Err(no_handler(m, path)),
        ("PUT", [index]) => indices::create(store, index, body),
        ("DELETE", [index]) => indices::delete(store, index, &params),
        ("HEAD", [index]) => Ok(if store.exists(index) {
            Reply::Empty(StatusCode::OK)
        } else {
            Reply::Empty(StatusCode::NOT_FOUND)
        }),
        ("GET", [index]) => indices::get(store, index),
        ("GET", [index, "_mapping"]) => indices::get_mapping(store, index),
        ("PUT" | "POST", [index, "_mapping"]) => indices::put_mapping(store, index, body),
        ("GET", [index, "_settings"]) => indices::get_settings(store, index),
        ("PUT", [index, "_settings"]) => indices::put_settings(store, index, body),
        ("POST" | "GET", [index, "_refresh"]) => indices::refresh(store, index),
        ("GET" | "POST", [index, "_count"]) => search::count(app, index, &params, body),
        ("GET" | "POST", [index, "_search"]) => search::search(app, index, &params, body, cancel),
        ("GET" | "POST", [index, "_mget"]) => documents::mget(app, Some(index), &params, body),
        ("POST" | "PUT", [index, "_bulk"]) => bulk::bulk(app, Some(index), &params, body, cancel),
        ("POST", [index, "_doc"]) => {
            documents::write(app, index, &auto_id(), OpType::Create, &params, body)
        }
        ("PUT" | "POST", [index, "_doc", id]) => documents::index(app, index, id, &params, body),
        ("PUT" | "POST", [index, "_create", id]) => {
            documents::write(app, index, id, OpType::Create, &params, body)
        }
        ("POST", [index, "_update", id]) => documents::update(app, index, id, &params, body),
        ("GET" | "HEAD", [index, "_doc", id]) => {
            documents::get(app, index, id, &params, m == "HEAD")
        }
        ("GET", [index, "_source", id]) => documents::get_source(app, index, id),
        ("DELETE", [index, "_doc", id]) => documents::delete(app, index, id, &params),
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
