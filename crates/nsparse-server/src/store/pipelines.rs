//! Stored pipelines: the ingest and search pipelines of a data directory, each kind kept as
//! `{id: body}` in one JSON file, replaced atomically.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use serde_json::Value;

use super::handle::read;
use crate::durable::write_json_atomic;
use crate::error::{ApiError, ApiResult, ServerError};
use crate::ingest::{IngestPipeline, SearchPipeline};
use crate::models::Models;

const INGEST_FILE: &str = "ingest_pipelines.json";
const SEARCH_FILE: &str = "search_pipelines.json";

/// Loads the ingest pipelines of `data`. A pipeline whose model is not loaded this time is
/// kept, and fails at use.
pub(super) fn load_ingest(
    data: &Path,
    models: &Models,
) -> Result<Pipelines<Arc<IngestPipeline>>, ServerError> {
    let mut ingest = BTreeMap::new();
    for (id, body) in read_json_map(&data.join(INGEST_FILE))? {
        match IngestPipeline::parse(&id, &body, models) {
            Ok(p) => {
                ingest.insert(id, (body, Arc::new(p)));
            }
            Err(e) => {
                tracing::warn!(pipeline = %id, error = %e, "ingest pipeline cannot run with the loaded models");
                ingest.insert(id, (body, Arc::new(IngestPipeline::default())));
            }
        }
    }
    Ok(Pipelines {
        file: INGEST_FILE,
        map: RwLock::new(ingest),
        missing: |id| pipeline_missing(format!("pipeline with id [{id}] does not exist")),
    })
}

/// Loads the search pipelines of `data` (an unreadable one is a corrupt data directory).
pub(super) fn load_search(data: &Path) -> Result<Pipelines<SearchPipeline>, ServerError> {
    let mut search = BTreeMap::new();
    for (id, body) in read_json_map(&data.join(SEARCH_FILE))? {
        let p = SearchPipeline::parse(&id, &body).map_err(|e| ServerError::Corrupt {
            path: data.join(SEARCH_FILE),
            detail: e.reason,
        })?;
        search.insert(id, (body, p));
    }
    Ok(Pipelines {
        file: SEARCH_FILE,
        map: RwLock::new(search),
        missing: |id| pipeline_missing(format!("Search pipeline [{id}] does not exist")),
    })
}

/// Pipelines of one kind: the bodies as given and their parsed form, persisted together as
/// `{id: body}` in one file of the data directory.
pub(super) struct Pipelines<T> {
    file: &'static str,
    map: RwLock<BTreeMap<String, (Value, T)>>,
    missing: fn(&str) -> ApiError,
}

impl<T: Clone> Pipelines<T> {
    /// The parsed pipeline `id` (404 when missing).
    pub(super) fn get(&self, id: &str) -> ApiResult<T> {
        read(&self.map)
            .get(id)
            .map(|(_, p)| p.clone())
            .ok_or_else(|| (self.missing)(id))
    }

    /// The bodies as given: all (`None`) or `id`'s.
    pub(super) fn bodies(&self, id: Option<&str>) -> ApiResult<BTreeMap<String, Value>> {
        let map = read(&self.map);
        match id {
            None => Ok(map
                .iter()
                .map(|(k, (b, _))| (k.clone(), b.clone()))
                .collect()),
            Some(id) => map
                .get(id)
                .map(|(b, _)| BTreeMap::from([(id.to_string(), b.clone())]))
                .ok_or_else(|| (self.missing)(id)),
        }
    }

    /// Stores (`Some`) or removes (`None`) a pipeline: the file is replaced first, then memory.
    pub(super) fn update(&self, data: &Path, id: &str, entry: Option<(Value, T)>) -> ApiResult<()> {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        let mut next = map.clone();
        match entry {
            Some(entry) => {
                next.insert(id.to_string(), entry);
            }
            None => {
                next.remove(id).ok_or_else(|| (self.missing)(id))?;
            }
        }
        let file: serde_json::Map<String, Value> = next
            .iter()
            .map(|(k, (b, _))| (k.clone(), b.clone()))
            .collect();
        write_json_atomic(data, self.file, &Value::Object(file))
            .map_err(|e| ApiError::from_server(&e, None))?;
        *map = next;
        Ok(())
    }
}

/// 404 `resource_not_found_exception` for a missing pipeline.
fn pipeline_missing(reason: String) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "resource_not_found_exception",
        reason,
    )
}

fn read_json_map(path: &Path) -> Result<BTreeMap<String, Value>, ServerError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ServerError::Corrupt {
            path: path.to_path_buf(),
            detail: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(ServerError::io(path, e)),
    }
}
