//! Index administration: create, delete, get, mappings, settings and refresh.

use axum::http::StatusCode;
use serde_json::json;

use super::params::{parse_body, require_body, Params};
use super::reply::{acknowledged, shards_summary, Reply};
use crate::error::ApiResult;
use crate::store::Store;

/// `PUT /{index}` with optional `settings` and `mappings`.
pub(super) fn create(store: &Store, index: &str, body: &[u8]) -> ApiResult<Reply> {
    let body = parse_body(body)?;
    store.create_index(index, &body)?;
    Ok(Reply::ok(
        json!({"acknowledged": true, "shards_acknowledged": true, "index": index}),
    ))
}

/// `DELETE /{index}` (`?ignore_unavailable` makes a missing index a success).
pub(super) fn delete(store: &Store, index: &str, params: &Params) -> ApiResult<Reply> {
    match store.delete_index(index) {
        Err(e) if e.status == StatusCode::NOT_FOUND && params.flag("ignore_unavailable")? => {}
        other => other?,
    }
    Ok(acknowledged())
}

/// `GET /{index}`: aliases (none), mappings and settings.
pub(super) fn get(store: &Store, index: &str) -> ApiResult<Reply> {
    let h = store.index(index)?;
    let meta = h.meta();
    Ok(Reply::ok(json!({index: {
        "aliases": {}, "mappings": meta.mappings, "settings": meta.settings_view(index)
    }})))
}

/// `GET /{index}/_mapping`.
pub(super) fn get_mapping(store: &Store, index: &str) -> ApiResult<Reply> {
    let h = store.index(index)?;
    Ok(Reply::ok(json!({index: {"mappings": h.meta().mappings}})))
}

/// `PUT /{index}/_mapping`: adds fields.
pub(super) fn put_mapping(store: &Store, index: &str, body: &[u8]) -> ApiResult<Reply> {
    let h = store.index(index)?;
    let body = require_body(body, "PUT _mapping")?;
    let mut meta = h.meta();
    meta.merge_mapping(&body)?;
    h.set_meta(meta, store.models())?;
    Ok(acknowledged())
}

/// `GET /{index}/_settings`.
pub(super) fn get_settings(store: &Store, index: &str) -> ApiResult<Reply> {
    let h = store.index(index)?;
    Ok(Reply::ok(
        json!({index: {"settings": h.meta().settings_view(index)}}),
    ))
}

/// `PUT /{index}/_settings`: updates dynamic settings; default pipelines must exist.
pub(super) fn put_settings(store: &Store, index: &str, body: &[u8]) -> ApiResult<Reply> {
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
    h.set_meta(meta, store.models())?;
    Ok(acknowledged())
}

/// `POST /{index}/_refresh`.
pub(super) fn refresh(store: &Store, index: &str) -> ApiResult<Reply> {
    store.index(index)?.refresh()?;
    Ok(Reply::ok(shards_summary(1)))
}

/// `POST /_refresh`: every index.
pub(super) fn refresh_all(store: &Store) -> ApiResult<Reply> {
    let all = store.indices();
    for h in &all {
        h.refresh()?;
    }
    Ok(Reply::ok(shards_summary(all.len())))
}
