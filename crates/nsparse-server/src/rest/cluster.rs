//! Cluster-level endpoints: `GET /` (cluster info), `_cluster/health` and `_cat/indices`.

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::app::App;
use super::params::Params;
use super::reply::Reply;
use crate::error::ApiResult;
use crate::store::{IndexHandle, Store};

/// The OpenSearch version `GET /` reports.
pub const OPENSEARCH_VERSION: &str = "2.19.0";

/// `GET /`: the cluster info OpenSearch clients check (`version.distribution`, `number`).
pub(super) fn info(app: &App) -> Reply {
    Reply::ok(cluster_info(app))
}

/// `GET _cluster/health`: green unless an index failed to open.
pub(super) fn health(app: &App) -> Reply {
    let store = &app.store;
    Reply::ok(json!({
        "cluster_name": app.config.cluster_name,
        "status": if store.unavailable().is_empty() { "green" } else { "red" }, "timed_out": false,
        "number_of_nodes": 1, "number_of_data_nodes": 1, "active_primary_shards": store.indices().len(),
        "active_shards": store.indices().len(), "relocating_shards": 0, "initializing_shards": 0,
        "unassigned_shards": 0, "active_shards_percent_as_number": 100.0
    }))
}

fn cluster_info(app: &App) -> Value {
    json!({
        "name": app.config.node_name,
        "cluster_name": app.config.cluster_name,
        "cluster_uuid": "nsparse-single-node",
        "version": {
            "distribution": "opensearch",
            "number": OPENSEARCH_VERSION,
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

/// `GET _cat/indices[/{index}]`: a text table (`?v` for headers) or `?format=json`.
pub(super) fn cat_indices(store: &Store, only: Option<&str>, params: &Params) -> ApiResult<Reply> {
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
            (h.name().to_string(), json!({
                "health": "green", "status": "open", "index": h.name(), "uuid": h.meta().uuid,
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
