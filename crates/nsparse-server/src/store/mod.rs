//! The data directory: one nsparse index per OpenSearch index, the pipelines, and the refresh
//! model (writes are durable at once, visible to searches after a refresh, realtime for GET).
//!
//! Layout of `--data`:
//! - `indices/{name}/meta.json` — uuid, settings, mappings;
//! - `indices/{name}/index/` — the nsparse index (WAL, segments);
//! - `indices/{name}/fields/{dir}/` — a BM25-only nsparse index per mapped `text` field,
//!   derived state rebuilt from the main index after an unclean shutdown (see
//!   `field_indexes.rs`; `{dir}` is [`crate::field_dir_name`] of the field path);
//! - `indices/{name}/sparse/{dir}/` — the own nsparse index of each `rank_features` /
//!   `sparse_vector` field (open vocabulary: the field's feature dictionary), written before
//!   the main index in every write and never rebuilt (see `sparse_fields.rs`; an index of an
//!   earlier release keeps its one sparse field in the main index);
//! - `indices/{name}/clean-shutdown` — present only while the field indexes are known to agree
//!   with the main index;
//! - `.staging/{uuid}/` — an index being created: built completely there, then renamed into
//!   `indices/` (so an index exists whole or not at all); leftovers are removed at start;
//! - `.trash/{uuid}/` — a deleted index (renamed out of `indices/` first), removed at start;
//! - `ingest_pipelines.json`, `search_pipelines.json` — `{id: body}`.
//!
//! Every JSON file is replaced atomically (write `.tmp`, fsync, rename, fsync the directory).
//! An index that fails to open at start is served as unavailable (see [`Store::index`]), the
//! others normally. Writes refused because the disk is full answer 429 and change nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use nsparse_index::{CreateOptions, Index};

use serde_json::Value;

use crate::durable::{sync_dir, write_json_atomic};
use crate::error::{ApiError, ApiResult, ServerError};
use crate::field_indexes;
use crate::ingest::{IngestPipeline, SearchPipeline};
use crate::mapping::IndexMeta;
use crate::models::Models;
use crate::names::validate_index_name;

mod handle;
mod pipelines;

use handle::{read, writer_options, META_FILE};
pub use handle::{DocEntry, IndexHandle, OpType, View, WriteOp, WriteResult};
use pipelines::Pipelines;

/// Identity recorded in the nsparse indexes this server creates (vectors come from pipelines of
/// any loaded model or from clients, so no single model fingerprint applies).
pub const INDEX_MODEL_IDENTITY: &str = "opensearch-rest";

/// Indices being created (under the data directory).
const STAGING_DIR: &str = ".staging";
/// Deleted indices being removed (under the data directory).
const TRASH_DIR: &str = ".trash";

/// Every index and pipeline of a data directory.
pub struct Store {
    data: PathBuf,
    models: Models,
    indices: RwLock<BTreeMap<String, Arc<IndexHandle>>>,
    /// Indices that failed to open at start: name → (directory, problem).
    unavailable: RwLock<BTreeMap<String, (PathBuf, String)>>,
    ingest: Pipelines<Arc<IngestPipeline>>,
    search: Pipelines<SearchPipeline>,
    /// Serialises index creation/deletion and pipeline changes.
    admin: Mutex<()>,
}

impl Store {
    /// The loaded models.
    pub fn models(&self) -> &Models {
        &self.models
    }

    /// Opens (or initialises) a data directory: every index, every pipeline. An index that
    /// fails to open is logged and served as unavailable; only a data directory that cannot
    /// be read at all, a locked index (another server uses this data directory) or a corrupt
    /// pipeline file stop the start.
    pub fn open(data: &Path, models: Models) -> Result<Store, ServerError> {
        let indices_dir = data.join("indices");
        std::fs::create_dir_all(&indices_dir).map_err(|e| ServerError::io(&indices_dir, e))?;
        // Leftovers of interrupted creations and deletions.
        for leftover in [STAGING_DIR, TRASH_DIR] {
            let dir = data.join(leftover);
            if dir.exists() {
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot remove leftovers of an interrupted index creation or deletion");
                }
            }
        }
        let mut indices = BTreeMap::new();
        let mut unavailable = BTreeMap::new();
        let entries =
            std::fs::read_dir(&indices_dir).map_err(|e| ServerError::io(&indices_dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ServerError::io(&indices_dir, e))?;
            let dir = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if !dir.join(META_FILE).exists() {
                tracing::warn!(dir = %dir.display(), "removing an index directory whose creation was never acknowledged");
                let _ = std::fs::remove_dir_all(&dir);
                continue;
            }
            match open_index(&name, &dir, &models) {
                Ok(handle) => {
                    tracing::info!(index = %name, docs = handle.view().searcher.num_docs(), "opened index");
                    indices.insert(name, Arc::new(handle));
                }
                Err(ServerError::Index {
                    source: source @ nsparse_index::Error::Locked { .. },
                    ..
                }) => {
                    return Err(ServerError::Index { name, source });
                }
                Err(e) => {
                    tracing::error!(index = %name, error = %e, "index cannot be opened; serving it as unavailable (the other indices are served)");
                    unavailable.insert(name, (dir, e.to_string()));
                }
            }
        }
        let ingest = pipelines::load_ingest(data, &models)?;
        let search = pipelines::load_search(data)?;
        Ok(Store {
            data: data.to_path_buf(),
            models,
            indices: RwLock::new(indices),
            unavailable: RwLock::new(unavailable),
            ingest,
            search,
            admin: Mutex::new(()),
        })
    }

    /// The index `name` (404 when missing; 500 `index_closed_exception` when it failed to
    /// open at start).
    pub fn index(&self, name: &str) -> ApiResult<Arc<IndexHandle>> {
        if let Some(handle) = read(&self.indices).get(name) {
            return Ok(handle.clone());
        }
        if let Some((dir, problem)) = read(&self.unavailable).get(name) {
            return Err(ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "index_closed_exception",
                format!(
                    "index [{name}] is unavailable: it failed to open when the server started: {problem}. \
                     Restore {} from a backup and restart, or DELETE /{name} to drop it",
                    dir.display()
                ),
            )
            .with("index", name)
            .with("index_uuid", "_na_"));
        }
        Err(ApiError::index_not_found(name))
    }

    /// Whether an index `name` exists (open or unavailable).
    pub fn exists(&self, name: &str) -> bool {
        read(&self.indices).contains_key(name) || read(&self.unavailable).contains_key(name)
    }

    /// Indices that failed to open at start, with the problem.
    pub fn unavailable(&self) -> Vec<(String, String)> {
        read(&self.unavailable)
            .iter()
            .map(|(name, (_, problem))| (name.clone(), problem.clone()))
            .collect()
    }

    /// Every index, by name.
    pub fn indices(&self) -> Vec<Arc<IndexHandle>> {
        read(&self.indices).values().cloned().collect()
    }

    /// Creates an index (400 `resource_already_exists_exception` if it exists). Everything is
    /// validated first; the index is then built whole under `.staging/` and renamed into
    /// `indices/`, so a failure (e.g. a full disk, 429) leaves nothing behind.
    pub fn create_index(&self, name: &str, body: &Value) -> ApiResult<Arc<IndexHandle>> {
        validate_index_name(name)?;
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = read(&self.indices).get(name) {
            let uuid = existing.meta().uuid;
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "resource_already_exists_exception",
                format!("index [{name}/{uuid}] already exists"),
            )
            .with("index", name)
            .with("index_uuid", uuid));
        }
        if read(&self.unavailable).contains_key(name) {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "resource_already_exists_exception",
                format!("index [{name}] already exists (it is unavailable; DELETE /{name} first to replace it)"),
            )
            .with("index", name));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let uuid = new_uuid();
        let meta = IndexMeta::from_create_body(body, uuid.clone(), now.as_millis() as u64)?;
        for pipeline in [meta.default_pipeline()].into_iter().flatten() {
            self.ingest_pipeline(&pipeline)?;
        }
        for pipeline in [meta.default_search_pipeline()].into_iter().flatten() {
            self.search_pipeline(&pipeline)?;
        }
        let indices_dir = self.data.join("indices");
        let dir = indices_dir.join(name);
        if dir.exists() {
            // A directory no index was opened from (leftover without meta.json).
            self.discard(&dir)
                .map_err(|e| ApiError::from_server(&e, Some(name)))?;
        }
        let staging = self.data.join(STAGING_DIR).join(&uuid);
        let built = build_index(&staging, &meta, &self.models).and_then(|()| {
            std::fs::rename(&staging, &dir)
                .map_err(|e| ApiError::from_server(&ServerError::io(&dir, e), Some(name)))?;
            sync_dir(&indices_dir).map_err(|e| ApiError::from_server(&e, Some(name)))
        });
        if let Err(e) = built {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e.in_index(name));
        }
        let opened = Index::open(dir.join("index"), writer_options())
            .map_err(ApiError::from)
            .and_then(|index| IndexHandle::open(name, dir.clone(), meta, index, &self.models));
        let handle = match opened {
            Ok(h) => Arc::new(h),
            Err(e) => {
                let _ = self.discard(&dir);
                return Err(e.in_index(name));
            }
        };
        self.indices
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), handle.clone());
        Ok(handle)
    }

    /// Moves `dir` out of `indices/` (atomically) and removes it.
    fn discard(&self, dir: &Path) -> Result<(), ServerError> {
        let trash_root = self.data.join(TRASH_DIR);
        std::fs::create_dir_all(&trash_root).map_err(|e| ServerError::io(&trash_root, e))?;
        let trash = trash_root.join(new_uuid());
        std::fs::rename(dir, &trash).map_err(|e| ServerError::io(dir, e))?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        if let Err(e) = std::fs::remove_dir_all(&trash) {
            // Removed at the next start.
            tracing::warn!(dir = %trash.display(), error = %e, "cannot remove a deleted index's files yet");
        }
        Ok(())
    }

    /// The index `name`, created with default settings when missing (OpenSearch's
    /// `action.auto_create_index` for document writes).
    pub fn index_or_create(&self, name: &str) -> ApiResult<Arc<IndexHandle>> {
        match self.index(name) {
            Ok(h) => Ok(h),
            Err(_) => match self.create_index(name, &Value::Null) {
                Ok(h) => Ok(h),
                Err(e) if e.kind == "resource_already_exists_exception" => self.index(name),
                Err(e) => Err(e),
            },
        }
    }

    /// Deletes an index and its files (also an unavailable one).
    pub fn delete_index(&self, name: &str) -> ApiResult<()> {
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        let unavailable = self
            .unavailable
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        if let Some((dir, _)) = unavailable {
            return self
                .discard(&dir)
                .map_err(|e| ApiError::internal(format!("cannot remove {}: {e}", dir.display())));
        }
        let handle = self
            .indices
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
            .ok_or_else(|| ApiError::index_not_found(name))?;
        // Waits for in-flight writes, and keeps later ones (on a stale handle) out of the files.
        let _writer = handle.writer();
        // The rename out of `indices/` is the deletion; a crash after it leaves only trash.
        self.discard(handle.dir()).map_err(|e| {
            ApiError::internal(format!("cannot remove {}: {e}", handle.dir().display()))
        })
    }

    /// A stored ingest pipeline.
    pub fn ingest_pipeline(&self, id: &str) -> ApiResult<Arc<IngestPipeline>> {
        self.ingest.get(id)
    }

    /// Stored ingest pipeline bodies (`None` = all).
    pub fn ingest_pipeline_bodies(&self, id: Option<&str>) -> ApiResult<BTreeMap<String, Value>> {
        self.ingest.bodies(id)
    }

    /// Stores an ingest pipeline.
    pub fn put_ingest_pipeline(&self, id: &str, body: Value) -> ApiResult<()> {
        let pipeline = Arc::new(IngestPipeline::parse(id, &body, &self.models)?);
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        self.ingest.update(&self.data, id, Some((body, pipeline)))
    }

    /// Deletes an ingest pipeline.
    pub fn delete_ingest_pipeline(&self, id: &str) -> ApiResult<()> {
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        self.ingest.update(&self.data, id, None)
    }

    /// A stored search pipeline.
    pub fn search_pipeline(&self, id: &str) -> ApiResult<SearchPipeline> {
        self.search.get(id)
    }

    /// Stored search pipeline bodies (`None` = all).
    pub fn search_pipeline_bodies(&self, id: Option<&str>) -> ApiResult<BTreeMap<String, Value>> {
        self.search.bodies(id)
    }

    /// Stores a search pipeline.
    pub fn put_search_pipeline(&self, id: &str, body: Value) -> ApiResult<()> {
        let pipeline = SearchPipeline::parse(id, &body)?;
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        self.search.update(&self.data, id, Some((body, pipeline)))
    }

    /// Deletes a search pipeline.
    pub fn delete_search_pipeline(&self, id: &str) -> ApiResult<()> {
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        self.search.update(&self.data, id, None)
    }

    /// Refreshes every index whose interval has passed.
    pub fn refresh_due(&self) {
        for handle in self.indices() {
            if let Err(e) = handle.refresh_if_due() {
                tracing::warn!(index = %handle.name(), error = %e, "periodic refresh failed");
            }
        }
    }

    /// Commits every index and marks it cleanly shut down (shutdown).
    pub fn commit_all(&self) -> Vec<(String, ApiError)> {
        let mut failures = Vec::new();
        for handle in self.indices() {
            if let Err(e) = handle.commit_and_mark_clean() {
                failures.push((handle.name().to_string(), e));
            }
        }
        failures
    }
}

/// Opens the index directory `dir` (meta.json, the nsparse index, the field indexes).
fn open_index(name: &str, dir: &Path, models: &Models) -> Result<IndexHandle, ServerError> {
    let meta_path = dir.join(META_FILE);
    let bytes = std::fs::read(&meta_path).map_err(|e| ServerError::io(&meta_path, e))?;
    let mut meta: IndexMeta = serde_json::from_slice(&bytes).map_err(|e| ServerError::Corrupt {
        path: meta_path.clone(),
        detail: e.to_string(),
    })?;
    meta.derive_fields().map_err(|e| ServerError::Corrupt {
        path: meta_path.clone(),
        detail: e.reason,
    })?;
    let index =
        Index::open(dir.join("index"), writer_options()).map_err(|source| ServerError::Index {
            name: name.to_string(),
            source,
        })?;
    IndexHandle::open(name, dir.to_path_buf(), meta, index, models).map_err(|e| {
        ServerError::Corrupt {
            path: dir.to_path_buf(),
            detail: e.reason,
        }
    })
}

/// Builds a complete, empty index in `dir` (a staging directory): the nsparse index, the
/// field indexes, meta.json and the clean-shutdown marker, all durable.
fn build_index(dir: &Path, meta: &IndexMeta, models: &Models) -> ApiResult<()> {
    let index = Index::create(
        dir.join("index"),
        &CreateOptions::new(INDEX_MODEL_IDENTITY),
        writer_options(),
    )?;
    let fields = field_indexes::open(dir, meta, &BTreeMap::new(), writer_options())?;
    let sparse = crate::sparse_fields::open(dir, meta, &BTreeMap::new(), models, writer_options())?;
    write_json_atomic(
        dir,
        META_FILE,
        &serde_json::to_value(meta).unwrap_or_default(),
    )
    .map_err(|e| ApiError::from_server(&e, None))?;
    field_indexes::mark_clean(dir).map_err(|e| ApiError::from_server(&e, None))?;
    for sub in ["fields", "sparse"] {
        if dir.join(sub).exists() {
            sync_dir(&dir.join(sub)).map_err(|e| ApiError::from_server(&e, None))?;
        }
    }
    // Release the locks: the index is reopened at its final place.
    drop(sparse);
    drop(fields);
    drop(index);
    Ok(())
}

fn new_uuid() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    while out.len() < 22 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(22);
    out
}

/// How often the background task looks for indices due for a refresh.
pub const REFRESH_TICK: Duration = Duration::from_millis(200);
