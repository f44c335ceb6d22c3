//! The data directory: one nsparse index per OpenSearch index, the pipelines, and the refresh
//! model (writes are durable at once, visible to searches after a refresh, realtime for GET).
//!
//! Layout of `--data`:
//! - `indices/{name}/meta.json` — uuid, settings, mappings;
//! - `indices/{name}/index/` — the nsparse index (WAL, segments);
//! - `indices/{name}/fields/{dir}/` — a BM25-only nsparse index per mapped `text` field,
//!   derived state rebuilt from the main index after an unclean shutdown (see
//!   `field_indexes.rs`; `{dir}` is [`crate::field_dir_name`] of the field path);
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

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use nsparse_index::{CreateOptions, Index, Searcher, WriterOptions};

use crate::field_indexes::{self, sync_dir};
use crate::names::validate_index_name;
use serde_json::Value;

use crate::error::{ApiError, ApiResult, ServerError};
use crate::ingest::{merge_source, prepare, IngestPipeline, Prepared, SearchPipeline};
use crate::mapping::{DocValues, IndexMeta};
use crate::models::Models;

/// Identity recorded in the nsparse indexes this server creates (vectors come from pipelines of
/// any loaded model or from clients, so no single model fingerprint applies).
pub const INDEX_MODEL_IDENTITY: &str = "opensearch-rest";

const META_FILE: &str = "meta.json";
const INGEST_FILE: &str = "ingest_pipelines.json";
const SEARCH_FILE: &str = "search_pipelines.json";
/// Indices being created (under the data directory).
const STAGING_DIR: &str = ".staging";
/// Deleted indices being removed (under the data directory).
const TRASH_DIR: &str = ".trash";

/// Buffered documents before the writer commits a segment (bounds the in-memory buffer segment
/// rebuilt at every refresh).
const FLUSH_DOCS: usize = 10_000;

/// The state of one document that filters and ordering need.
#[derive(Debug, Clone)]
pub struct DocEntry {
    /// Order of the last write (ties in ranking follow it, as Lucene's doc order does).
    pub seq: u64,
    /// `_version`: 1 at creation, +1 per write (restarts count from 1).
    pub version: u64,
    /// Filter values.
    pub values: DocValues,
}

/// What searches see: the searcher of the last refresh and the filter values of its documents.
#[derive(Clone)]
pub struct View {
    /// Snapshot of the index at the last refresh.
    pub searcher: Searcher,
    /// Snapshots of the per-field BM25 indexes (mapped `text` fields), same refresh.
    pub fields: Arc<BTreeMap<String, Searcher>>,
    /// `_id` → entry, for exactly the documents of `searcher`.
    pub docs: Arc<HashMap<String, DocEntry>>,
}

#[derive(Clone)]
struct Pending {
    entry: DocEntry,
    source: Arc<Vec<u8>>,
}

struct Writer {
    index: Index,
    /// One BM25-only index per mapped `text` field (empty vectors, no sources).
    fields: BTreeMap<String, Index>,
    /// Writes since the last refresh (`None` = deleted): GET reads them (realtime), refresh
    /// applies them to the view.
    pending: HashMap<String, Option<Pending>>,
    next_seq: u64,
    /// The clean-shutdown marker is on disk (removed before the first write).
    clean: bool,
}

/// One OpenSearch index.
pub struct IndexHandle {
    /// Index name.
    pub name: String,
    dir: PathBuf,
    meta: RwLock<IndexMeta>,
    writer: Mutex<Writer>,
    view: RwLock<View>,
    last_refresh: Mutex<Instant>,
}

/// How a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpType {
    /// Create or replace.
    Index,
    /// Create only (409 if the id exists).
    Create,
}

/// One write of a bulk (or single-document) request, after the ingest pipeline ran.
#[derive(Debug)]
pub enum WriteOp {
    /// `index` / `create` with the prepared document (or the error preparing it).
    Index {
        /// `_id`.
        id: String,
        /// Index or create.
        op_type: OpType,
        /// The document, or why it was refused.
        prepared: ApiResult<Prepared>,
    },
    /// `update` with a partial `doc`.
    Update {
        /// `_id`.
        id: String,
        /// The partial document.
        doc: Value,
        /// `doc_as_upsert`: create the document when missing.
        upsert: bool,
        /// The pipeline to run on the merged source.
        pipeline: Option<Arc<IngestPipeline>>,
    },
    /// `delete`.
    Delete {
        /// `_id`.
        id: String,
    },
}

impl WriteOp {
    /// The `_id` written.
    pub fn id(&self) -> &str {
        match self {
            WriteOp::Index { id, .. } | WriteOp::Update { id, .. } | WriteOp::Delete { id } => id,
        }
    }
}

/// The outcome of one write, rendered by the HTTP layer.
#[derive(Debug, Clone)]
pub struct WriteResult {
    /// `_id`.
    pub id: String,
    /// `created`, `updated`, `deleted`, `not_found`, or the error.
    pub outcome: Result<(&'static str, u64, u64), ApiError>,
}

impl IndexHandle {
    fn open(
        name: &str,
        dir: PathBuf,
        meta: IndexMeta,
        index: Index,
        models: &Models,
    ) -> ApiResult<Self> {
        let mut index = index;
        let searcher = index.searcher();
        let clean = field_indexes::is_clean(&dir);
        let mut fields = if clean {
            field_indexes::open(&dir, &meta, &BTreeMap::new(), writer_options())?
        } else {
            // Not shut down cleanly: the field indexes may disagree with the main index.
            field_indexes::rebuild(&dir, &meta, &searcher, models, writer_options())?
        };
        let mut docs = HashMap::new();
        let mut seq = 0u64;
        for doc in searcher.documents() {
            let doc = doc?;
            let source: Value = serde_json::from_slice(&doc.source).unwrap_or(Value::Null);
            let values = meta
                .analyze(&doc.id, &source)
                .map(|a| a.values)
                .unwrap_or_default();
            docs.insert(
                doc.id,
                DocEntry {
                    seq,
                    version: 1,
                    values,
                },
            );
            seq += 1;
        }
        let field_searchers = fields
            .iter_mut()
            .map(|(k, i)| (k.clone(), i.searcher()))
            .collect();
        Ok(IndexHandle {
            name: name.to_string(),
            dir,
            meta: RwLock::new(meta),
            writer: Mutex::new(Writer {
                index,
                fields,
                pending: HashMap::new(),
                next_seq: seq,
                clean,
            }),
            view: RwLock::new(View {
                searcher,
                fields: Arc::new(field_searchers),
                docs: Arc::new(docs),
            }),
            last_refresh: Mutex::new(Instant::now()),
        })
    }

    /// Settings and mappings.
    pub fn meta(&self) -> IndexMeta {
        read(&self.meta).clone()
    }

    /// Replaces the settings and mappings (persisted first); new text fields get their BM25
    /// index (documents written before have no text there, as in OpenSearch).
    pub fn set_meta(&self, meta: IndexMeta) -> ApiResult<()> {
        let mut writer = self.writer();
        // New field indexes first (an unused empty directory is harmless), then meta.json;
        // only when both worked do they become part of the index.
        let added = field_indexes::open(&self.dir, &meta, &writer.fields, writer_options())
            .map_err(|e| e.in_index(&self.name))?;
        write_json_atomic(
            &self.dir,
            META_FILE,
            &serde_json::to_value(&meta).unwrap_or_default(),
        )
        .map_err(|e| ApiError::from_server(&e, Some(&self.name)))?;
        if !added.is_empty() {
            writer.fields.extend(added);
            let searchers: BTreeMap<String, Searcher> = writer
                .fields
                .iter_mut()
                .map(|(k, i)| (k.clone(), i.searcher()))
                .collect();
            self.view.write().unwrap_or_else(|p| p.into_inner()).fields = Arc::new(searchers);
        }
        *self.meta.write().unwrap_or_else(|p| p.into_inner()) = meta;
        Ok(())
    }

    /// What searches see now.
    pub fn view(&self) -> View {
        read(&self.view).clone()
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes every acknowledged write visible to searches.
    pub fn refresh(&self) -> ApiResult<()> {
        let mut writer = self.writer();
        *self.last_refresh.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        if writer.pending.is_empty() {
            return Ok(());
        }
        let searcher = writer.index.searcher();
        let fields: BTreeMap<String, Searcher> = writer
            .fields
            .iter_mut()
            .map(|(k, i)| (k.clone(), i.searcher()))
            .collect();
        let pending = std::mem::take(&mut writer.pending);
        let mut view = self.view.write().unwrap_or_else(|p| p.into_inner());
        let docs = Arc::make_mut(&mut view.docs);
        for (id, change) in pending {
            match change {
                Some(p) => {
                    docs.insert(id, p.entry);
                }
                None => {
                    docs.remove(&id);
                }
            }
        }
        view.searcher = searcher;
        view.fields = Arc::new(fields);
        Ok(())
    }

    /// Refreshes if the refresh interval has passed and there is something to show.
    pub fn refresh_if_due(&self) -> ApiResult<()> {
        let Ok(Some(interval)) = read(&self.meta).refresh_interval() else {
            return Ok(());
        };
        let due = self
            .last_refresh
            .lock()
            .map(|t| t.elapsed() >= interval)
            .unwrap_or(true);
        if due {
            self.refresh()?;
        }
        Ok(())
    }

    /// Realtime GET: the latest acknowledged source and version of `id`.
    pub fn get(&self, id: &str) -> ApiResult<Option<(Vec<u8>, u64, u64)>> {
        let writer = self.writer();
        if let Some(change) = writer.pending.get(id) {
            return Ok(change
                .as_ref()
                .map(|p| ((*p.source).clone(), p.entry.version, p.entry.seq)));
        }
        drop(writer);
        let view = self.view();
        let Some(entry) = view.docs.get(id) else {
            return Ok(None);
        };
        Ok(view
            .searcher
            .get(id)?
            .map(|source| (source, entry.version, entry.seq)))
    }

    /// Applies writes in order, batching consecutive index operations into one WAL fsync.
    pub fn apply(&self, ops: Vec<WriteOp>, models: &Models) -> Vec<WriteResult> {
        let mut writer = self.writer();
        if writer.clean {
            // From now on the field indexes may disagree with the main index after a crash.
            if let Err(e) = field_indexes::mark_dirty(&self.dir) {
                let e = ApiError::from_server(&e, Some(&self.name));
                return ops
                    .into_iter()
                    .map(|op| WriteResult {
                        id: op.id().to_string(),
                        outcome: Err(e.clone()),
                    })
                    .collect();
            }
            writer.clean = false;
        }
        let mut results = self.apply_ops(&mut writer, ops, models);
        for r in &mut results {
            if let Err(e) = &mut r.outcome {
                *e = e.clone().in_index(&self.name);
            }
        }
        results
    }

    fn apply_ops(
        &self,
        writer: &mut Writer,
        ops: Vec<WriteOp>,
        models: &Models,
    ) -> Vec<WriteResult> {
        let view = self.view();
        let meta = self.meta();
        let mut batch = Batch::default();
        let mut results: Vec<WriteResult> = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                WriteOp::Index {
                    id,
                    op_type,
                    prepared,
                } => {
                    let outcome = prepared.and_then(|prepared| {
                        let current = batch.state(writer, &view, &id);
                        if op_type == OpType::Create {
                            if let Some((version, _)) = current {
                                return Err(version_conflict(&self.name, &id, version));
                            }
                        }
                        Ok(batch.upsert(writer, prepared, current))
                    });
                    results.push(WriteResult { id, outcome });
                }
                WriteOp::Update {
                    id,
                    doc,
                    upsert,
                    pipeline,
                } => {
                    let outcome = self.update(
                        writer,
                        &view,
                        &meta,
                        models,
                        &mut batch,
                        &id,
                        &doc,
                        upsert,
                        pipeline.as_deref(),
                    );
                    results.push(WriteResult { id, outcome });
                }
                WriteOp::Delete { id } => {
                    let flushed = batch.flush(writer);
                    mark_failed(&mut results, flushed);
                    let current = batch.state(writer, &view, &id);
                    let mut field_error = None;
                    for field_index in writer.fields.values_mut() {
                        if let Err(e) = field_index.delete(&id) {
                            field_error = Some(ApiError::from(e));
                        }
                    }
                    let outcome = match field_error {
                        Some(e) => Err(e),
                        None => match writer.index.delete(&id) {
                            Ok(true) => {
                                let version = current.map_or(1, |c| c.0 + 1);
                                let seq = writer.next_seq;
                                writer.next_seq += 1;
                                writer.pending.insert(id.clone(), None);
                                Ok(("deleted", version, seq))
                            }
                            Ok(false) => Ok(("not_found", 1, writer.next_seq)),
                            Err(e) => Err(ApiError::from(e)),
                        },
                    };
                    results.push(WriteResult { id, outcome });
                }
            }
        }
        let flushed = batch.flush(writer);
        mark_failed(&mut results, flushed);
        results
    }

    #[allow(clippy::too_many_arguments)]
    fn update(
        &self,
        writer: &mut Writer,
        view: &View,
        meta: &IndexMeta,
        models: &Models,
        batch: &mut Batch,
        id: &str,
        doc: &Value,
        upsert: bool,
        pipeline: Option<&IngestPipeline>,
    ) -> Result<(&'static str, u64, u64), ApiError> {
        if !doc.is_object() {
            return Err(ApiError::x_content(
                "[update] requires [doc] to be an object",
            ));
        }
        let current = batch.state(writer, view, id);
        let mut source = match current {
            Some(_) => {
                let bytes = batch
                    .source(writer, view, id)?
                    .ok_or_else(|| ApiError::internal(format!("document [{id}] vanished")))?;
                serde_json::from_slice(&bytes).map_err(|e| {
                    ApiError::internal(format!("stored _source of [{id}] is not JSON: {e}"))
                })?
            }
            None if upsert => Value::Object(Default::default()),
            None => {
                return Err(ApiError::new(
                    axum::http::StatusCode::NOT_FOUND,
                    "document_missing_exception",
                    format!("[{id}]: document missing"),
                )
                .with("index", self.name.clone())
                .with("shard", "0")
                .with("index_uuid", meta.uuid.clone()))
            }
        };
        merge_source(&mut source, doc);
        let mut sources = [Ok(source)];
        if let Some(pipeline) = pipeline {
            pipeline.run(&mut sources, models);
        }
        let [source] = sources;
        let prepared = prepare(meta, models, id, &source?)?;
        let (result, version, seq) = batch.upsert(writer, prepared, current);
        Ok((
            if current.is_some() { "updated" } else { result },
            version,
            seq,
        ))
    }

    /// Commits buffered documents to a segment.
    pub fn commit(&self) -> ApiResult<()> {
        let mut writer = self.writer();
        Self::commit_locked(&mut writer).map_err(|e| e.in_index(&self.name))
    }

    fn commit_locked(writer: &mut Writer) -> ApiResult<()> {
        for field_index in writer.fields.values_mut() {
            field_index.commit()?;
        }
        Ok(writer.index.commit()?)
    }

    /// Commits and leaves the clean-shutdown marker (at shutdown): the next start trusts the
    /// field indexes instead of rebuilding them.
    pub fn commit_and_mark_clean(&self) -> ApiResult<()> {
        let mut writer = self.writer();
        Self::commit_locked(&mut writer).map_err(|e| e.in_index(&self.name))?;
        if !writer.clean {
            field_indexes::mark_clean(&self.dir)
                .map_err(|e| ApiError::from_server(&e, Some(&self.name)))?;
            writer.clean = true;
        }
        Ok(())
    }

    /// `(live documents, deleted documents, bytes on disk)` as of the last refresh.
    pub fn stats(&self) -> (u64, u64, u64) {
        let view = self.view();
        let bytes = dir_size(&self.dir);
        (view.searcher.num_docs(), 0, bytes)
    }
}

/// Writes of one `apply` call that are not in the index yet.
#[derive(Default)]
struct Batch {
    docs: Vec<nsparse_index::Document>,
    /// Per-field BM25 tokens of `docs`, same order.
    field_tokens: Vec<BTreeMap<String, Vec<u32>>>,
    /// id → (entry, source) of the documents in `docs`.
    local: HashMap<String, Pending>,
    /// Result slots of `docs` in the results vector are marked by `apply` on failure.
    started: usize,
}

impl Batch {
    /// `(version, seq)` of the live document `id`, seeing this batch, then pending writes, then the view.
    fn state(&self, writer: &Writer, view: &View, id: &str) -> Option<(u64, u64)> {
        if let Some(p) = self.local.get(id) {
            return Some((p.entry.version, p.entry.seq));
        }
        match writer.pending.get(id) {
            Some(change) => change.as_ref().map(|p| (p.entry.version, p.entry.seq)),
            None => view.docs.get(id).map(|e| (e.version, e.seq)),
        }
    }

    fn source(&self, writer: &Writer, view: &View, id: &str) -> ApiResult<Option<Vec<u8>>> {
        if let Some(p) = self.local.get(id) {
            return Ok(Some((*p.source).clone()));
        }
        match writer.pending.get(id) {
            Some(change) => Ok(change.as_ref().map(|p| (*p.source).clone())),
            None => Ok(view.searcher.get(id)?),
        }
    }

    fn upsert(
        &mut self,
        writer: &mut Writer,
        prepared: Prepared,
        current: Option<(u64, u64)>,
    ) -> (&'static str, u64, u64) {
        let version = current.map_or(1, |c| c.0 + 1);
        let seq = writer.next_seq;
        writer.next_seq += 1;
        let id = prepared.doc.id.clone();
        self.local.insert(
            id,
            Pending {
                entry: DocEntry {
                    seq,
                    version,
                    values: prepared.values,
                },
                source: Arc::new(prepared.doc.source.clone()),
            },
        );
        self.docs.push(prepared.doc);
        self.field_tokens.push(prepared.field_tokens);
        (
            if current.is_some() {
                "updated"
            } else {
                "created"
            },
            version,
            seq,
        )
    }

    /// Writes the batch (one fsync); on failure returns the ids that were not written.
    fn flush(&mut self, writer: &mut Writer) -> Option<(Vec<String>, ApiError)> {
        self.started = 0;
        if self.docs.is_empty() {
            return None;
        }
        let docs = std::mem::take(&mut self.docs);
        let field_tokens = std::mem::take(&mut self.field_tokens);
        let local = std::mem::take(&mut self.local);
        let fields_written = writer.fields.iter_mut().try_for_each(|(field, index)| {
            let field_docs: Vec<nsparse_index::Document> = docs
                .iter()
                .zip(&field_tokens)
                .map(|(d, tokens)| nsparse_index::Document {
                    id: d.id.clone(),
                    vector: Vec::new(),
                    tokens: tokens.get(field).cloned().filter(|t| !t.is_empty()),
                    source: Vec::new(),
                })
                .collect();
            index.upsert_batch(&field_docs)
        });
        match fields_written.and_then(|()| writer.index.upsert_batch(&docs)) {
            Ok(()) => {
                for (id, p) in local {
                    writer.pending.insert(id, Some(p));
                }
                None
            }
            Err(e) => Some((docs.into_iter().map(|d| d.id).collect(), ApiError::from(e))),
        }
    }
}

fn mark_failed(results: &mut [WriteResult], failed: Option<(Vec<String>, ApiError)>) {
    let Some((ids, error)) = failed else { return };
    for r in results.iter_mut().rev() {
        if ids.contains(&r.id) && r.outcome.is_ok() {
            r.outcome = Err(error.clone());
        }
    }
}

/// 409 for `create` of an existing id.
pub fn version_conflict(index: &str, id: &str, version: u64) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::CONFLICT,
        "version_conflict_engine_exception",
        format!("[{id}]: version conflict, document already exists (current version [{version}])"),
    )
    .with("index", index)
    .with("shard", "0")
}

/// Every index and pipeline of a data directory.
pub struct Store {
    data: PathBuf,
    /// The loaded models.
    pub models: Models,
    indices: RwLock<BTreeMap<String, Arc<IndexHandle>>>,
    /// Indices that failed to open at start: name → (directory, problem).
    unavailable: RwLock<BTreeMap<String, (PathBuf, String)>>,
    ingest: Pipelines<Arc<IngestPipeline>>,
    search: Pipelines<SearchPipeline>,
    /// Serialises index creation/deletion and pipeline changes.
    admin: Mutex<()>,
}

impl Store {
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
        let mut ingest = BTreeMap::new();
        for (id, body) in read_json_map(&data.join(INGEST_FILE))? {
            match IngestPipeline::parse(&id, &body, &models) {
                Ok(p) => {
                    ingest.insert(id, (body, Arc::new(p)));
                }
                Err(e) => {
                    // A pipeline whose model is not loaded this time is kept, and fails at use.
                    tracing::warn!(pipeline = %id, error = %e, "ingest pipeline cannot run with the loaded models");
                    ingest.insert(
                        id,
                        (
                            body,
                            Arc::new(IngestPipeline {
                                processors: Vec::new(),
                            }),
                        ),
                    );
                }
            }
        }
        let mut search = BTreeMap::new();
        for (id, body) in read_json_map(&data.join(SEARCH_FILE))? {
            let p = SearchPipeline::parse(&id, &body).map_err(|e| ServerError::Corrupt {
                path: data.join(SEARCH_FILE),
                detail: e.reason,
            })?;
            search.insert(id, (body, p));
        }
        Ok(Store {
            data: data.to_path_buf(),
            models,
            indices: RwLock::new(indices),
            unavailable: RwLock::new(unavailable),
            ingest: Pipelines {
                file: INGEST_FILE,
                map: RwLock::new(ingest),
                missing: pipeline_missing,
            },
            search: Pipelines {
                file: SEARCH_FILE,
                map: RwLock::new(search),
                missing: search_pipeline_missing,
            },
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
            let uuid = read(&existing.meta).uuid.clone();
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
        let built = build_index(&staging, &meta).and_then(|()| {
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
        self.discard(&handle.dir)
            .map_err(|e| ApiError::internal(format!("cannot remove {}: {e}", handle.dir.display())))
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
                tracing::warn!(index = %handle.name, error = %e, "periodic refresh failed");
            }
        }
    }

    /// Commits every index and marks it cleanly shut down (shutdown).
    pub fn commit_all(&self) -> Vec<(String, ApiError)> {
        let mut failures = Vec::new();
        for handle in self.indices() {
            if let Err(e) = handle.commit_and_mark_clean() {
                failures.push((handle.name.clone(), e));
            }
        }
        failures
    }
}

/// Pipelines of one kind: the bodies as given and their parsed form, persisted together as
/// `{id: body}` in one file of the data directory.
struct Pipelines<T> {
    file: &'static str,
    map: RwLock<BTreeMap<String, (Value, T)>>,
    missing: fn(&str) -> ApiError,
}

impl<T: Clone> Pipelines<T> {
    fn get(&self, id: &str) -> ApiResult<T> {
        read(&self.map)
            .get(id)
            .map(|(_, p)| p.clone())
            .ok_or_else(|| (self.missing)(id))
    }

    fn bodies(&self, id: Option<&str>) -> ApiResult<BTreeMap<String, Value>> {
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
    fn update(&self, data: &Path, id: &str, entry: Option<(Value, T)>) -> ApiResult<()> {
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

fn pipeline_missing(id: &str) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "resource_not_found_exception",
        format!("pipeline with id [{id}] does not exist"),
    )
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
fn build_index(dir: &Path, meta: &IndexMeta) -> ApiResult<()> {
    let index = Index::create(
        dir.join("index"),
        &CreateOptions::new(INDEX_MODEL_IDENTITY),
        writer_options(),
    )?;
    let fields = field_indexes::open(dir, meta, &BTreeMap::new(), writer_options())?;
    write_json_atomic(
        dir,
        META_FILE,
        &serde_json::to_value(meta).unwrap_or_default(),
    )
    .map_err(|e| ApiError::from_server(&e, None))?;
    field_indexes::mark_clean(dir).map_err(|e| ApiError::from_server(&e, None))?;
    if dir.join("fields").exists() {
        sync_dir(&dir.join("fields")).map_err(|e| ApiError::from_server(&e, None))?;
    }
    // Release the locks: the index is reopened at its final place.
    drop(fields);
    drop(index);
    Ok(())
}

fn search_pipeline_missing(id: &str) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "resource_not_found_exception",
        format!("Search pipeline [{id}] does not exist"),
    )
}

fn writer_options() -> WriterOptions {
    WriterOptions {
        flush_docs: FLUSH_DOCS,
        ..WriterOptions::default()
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
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

/// Writes `dir/name` atomically: `.tmp`, fsync, rename, fsync the directory.
fn write_json_atomic(dir: &Path, name: &str, value: &Value) -> Result<(), ServerError> {
    use std::io::Write;
    std::fs::create_dir_all(dir).map_err(|e| ServerError::io(dir, e))?;
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    let mut file = std::fs::File::create(&tmp).map_err(|e| ServerError::io(&tmp, e))?;
    file.write_all(&bytes)
        .map_err(|e| ServerError::io(&tmp, e))?;
    file.sync_all().map_err(|e| ServerError::io(&tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(|e| ServerError::io(&path, e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ServerError::io(dir, e))
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// How often the background task looks for indices due for a refresh.
pub const REFRESH_TICK: Duration = Duration::from_millis(200);
