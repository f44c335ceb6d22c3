//! One OpenSearch index: its nsparse index, per-field BM25 indexes, settings and mappings,
//! the searchable view of the last refresh, and the write path (batched WAL writes, realtime
//! GET, versions and sequence numbers).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use nsparse_index::{Index, Searcher, WriterOptions};
use serde_json::Value;

use crate::durable::write_json_atomic;
use crate::error::{ApiError, ApiResult};
use crate::field_indexes;
use crate::ingest::{merge_source, prepare, IngestPipeline, Prepared};
use crate::mapping::{DocValues, IndexMeta};
use crate::models::Models;
use crate::sparse_fields;

/// The settings and mappings file of an index directory.
pub(super) const META_FILE: &str = "meta.json";

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
    /// Snapshots of the sparse fields' own indexes, same refresh.
    pub sparse: Arc<BTreeMap<String, Searcher>>,
    /// `_id` → entry, for exactly the documents of `searcher`.
    pub docs: Arc<HashMap<String, DocEntry>>,
}

#[derive(Clone)]
struct Pending {
    entry: DocEntry,
    source: Arc<Vec<u8>>,
}

/// The write side of an index (behind the handle's mutex).
pub(super) struct Writer {
    index: Index,
    /// One BM25-only index per mapped `text` field (empty vectors, no sources).
    fields: BTreeMap<String, Index>,
    /// The own index of every sparse field (not the main index's): vectors with their
    /// dictionary, and the stamp of the main document's source.
    sparse: BTreeMap<String, Index>,
    /// Writes since the last refresh (`None` = deleted): GET reads them (realtime), refresh
    /// applies them to the view.
    pending: HashMap<String, Option<Pending>>,
    next_seq: u64,
    /// The clean-shutdown marker is on disk (removed before the first write).
    clean: bool,
}

/// One OpenSearch index.
pub struct IndexHandle {
    name: String,
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
    pub(super) fn open(
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
        let mut sparse =
            sparse_fields::open(&dir, &meta, &BTreeMap::new(), models, writer_options())?;
        // After a crash, the field documents of the write in flight may disagree with the
        // main index: their stamps tell (see sparse_fields.rs).
        let check_sparse = !clean && !sparse.is_empty();
        let mut stamps = HashMap::new();
        let mut docs = HashMap::new();
        let mut seq = 0u64;
        for doc in searcher.documents() {
            let doc = doc?;
            if check_sparse {
                stamps.insert(doc.id.clone(), sparse_fields::stamp(&doc.source));
            }
            let values = meta.analyze_stored(&doc.id, &doc.source).values;
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
        if check_sparse {
            let repaired = sparse_fields::repair(&meta, &mut sparse, &searcher, &stamps)?;
            if repaired > 0 {
                tracing::info!(dir = %dir.display(), documents = repaired, "rewrote the sparse field documents of writes in flight at the last stop");
            }
        }
        let field_searchers = searchers(&mut fields);
        let sparse_searchers = searchers(&mut sparse);
        Ok(IndexHandle {
            name: name.to_string(),
            dir,
            meta: RwLock::new(meta),
            writer: Mutex::new(Writer {
                index,
                fields,
                sparse,
                pending: HashMap::new(),
                next_seq: seq,
                clean,
            }),
            view: RwLock::new(View {
                searcher,
                fields: Arc::new(field_searchers),
                sparse: Arc::new(sparse_searchers),
                docs: Arc::new(docs),
            }),
            last_refresh: Mutex::new(Instant::now()),
        })
    }

    /// The index name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The index directory.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Settings and mappings.
    pub fn meta(&self) -> IndexMeta {
        read(&self.meta).clone()
    }

    /// Replaces the settings and mappings (persisted first); new text fields get their BM25
    /// index and new sparse fields their own index (documents written before have no value
    /// there, as in OpenSearch).
    pub fn set_meta(&self, meta: IndexMeta, models: &Models) -> ApiResult<()> {
        let mut writer = self.writer();
        // New field indexes first (an unused empty directory is harmless), then meta.json;
        // only when both worked do they become part of the index.
        let added = field_indexes::open(&self.dir, &meta, &writer.fields, writer_options())
            .map_err(|e| e.in_index(&self.name))?;
        let added_sparse =
            sparse_fields::open(&self.dir, &meta, &writer.sparse, models, writer_options())
                .map_err(|e| e.in_index(&self.name))?;
        write_json_atomic(
            &self.dir,
            META_FILE,
            &serde_json::to_value(&meta).unwrap_or_default(),
        )
        .map_err(|e| ApiError::from_server(&e, Some(&self.name)))?;
        if !added.is_empty() {
            writer.fields.extend(added);
            let searchers = searchers(&mut writer.fields);
            self.view.write().unwrap_or_else(|p| p.into_inner()).fields = Arc::new(searchers);
        }
        if !added_sparse.is_empty() {
            writer.sparse.extend(added_sparse);
            let searchers = searchers(&mut writer.sparse);
            self.view.write().unwrap_or_else(|p| p.into_inner()).sparse = Arc::new(searchers);
        }
        *self.meta.write().unwrap_or_else(|p| p.into_inner()) = meta;
        Ok(())
    }

    /// What searches see now.
    pub fn view(&self) -> View {
        read(&self.view).clone()
    }

    /// The writer, locked (writes and refreshes are serialised by it).
    pub(super) fn writer(&self) -> MutexGuard<'_, Writer> {
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
        let fields = searchers(&mut writer.fields);
        let sparse = searchers(&mut writer.sparse);
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
        view.sparse = Arc::new(sparse);
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
                    let flushed = batch.flush(writer, &view, &meta);
                    mark_failed(&mut results, flushed);
                    let current = batch.state(writer, &view, &id);
                    // The main index first: a field document without a main document is
                    // removed at the next open after a crash (sparse_fields::repair).
                    let outcome = match writer.index.delete(&id) {
                        Ok(found) => {
                            let mut field_error = None;
                            for field_index in
                                writer.sparse.values_mut().chain(writer.fields.values_mut())
                            {
                                if let Err(e) = field_index.delete(&id) {
                                    field_error = Some(ApiError::from(e));
                                }
                            }
                            if found {
                                // Gone from the main index, whatever the field indexes say
                                // (a retry cleans them: deleting a missing id is harmless).
                                writer.pending.insert(id.clone(), None);
                            }
                            match (field_error, found) {
                                (Some(e), _) => Err(e),
                                (None, true) => {
                                    let version = current.map_or(1, |c| c.0 + 1);
                                    let seq = writer.next_seq;
                                    writer.next_seq += 1;
                                    Ok(("deleted", version, seq))
                                }
                                (None, false) => Ok(("not_found", 1, writer.next_seq)),
                            }
                        }
                        Err(e) => Err(ApiError::from(e)),
                    };
                    results.push(WriteResult { id, outcome });
                }
            }
        }
        let flushed = batch.flush(writer, &view, &meta);
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
        for field_index in writer.sparse.values_mut().chain(writer.fields.values_mut()) {
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
    /// Named vectors of the sparse fields with their own index, same order.
    sparse: Vec<BTreeMap<String, sparse_fields::Named>>,
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
        self.sparse.push(prepared.sparse);
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

    /// Writes the batch: the sparse fields' own indexes (names interned), the BM25 field
    /// indexes, then the main index, one fsync each. On failure returns the ids that were not
    /// written, after putting the sparse field documents already written back to the state
    /// before the batch (the main index's, as `view` and the pending writes show it).
    fn flush(
        &mut self,
        writer: &mut Writer,
        view: &View,
        meta: &IndexMeta,
    ) -> Option<(Vec<String>, ApiError)> {
        self.started = 0;
        if self.docs.is_empty() {
            return None;
        }
        let docs = std::mem::take(&mut self.docs);
        let field_tokens = std::mem::take(&mut self.field_tokens);
        let sparse = std::mem::take(&mut self.sparse);
        let local = std::mem::take(&mut self.local);
        let mut written_sparse: Vec<String> = Vec::new();
        let mut sparse_written = Ok(());
        for (field, index) in writer.sparse.iter_mut() {
            let field_docs: Result<Vec<nsparse_index::Document>, ApiError> = docs
                .iter()
                .zip(&sparse)
                .map(|(d, named)| {
                    let vector = named.get(field).map(Vec::as_slice).unwrap_or_default();
                    sparse_fields::field_document(
                        index,
                        &d.id,
                        vector,
                        sparse_fields::stamp(&d.source),
                    )
                })
                .collect();
            match field_docs.and_then(|field_docs| Ok(index.upsert_batch(&field_docs)?)) {
                Ok(()) => written_sparse.push(field.clone()),
                Err(e) => {
                    sparse_written = Err(e);
                    break;
                }
            }
        }
        let written = sparse_written.and_then(|()| {
            writer.fields.iter_mut().try_for_each(|(field, index)| {
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
            })?;
            Ok(writer.index.upsert_batch(&docs)?)
        });
        match written {
            Ok(()) => {
                for (id, p) in local {
                    writer.pending.insert(id, Some(p));
                }
                None
            }
            Err(e) => {
                let ids: Vec<String> = docs.into_iter().map(|d| d.id).collect();
                if !written_sparse.is_empty() {
                    let mut restore: BTreeMap<String, Index> = written_sparse
                        .iter()
                        .filter_map(|f| Some((f.clone(), writer.sparse.remove(f)?)))
                        .collect();
                    let pending = &writer.pending;
                    let before = |id: &str| -> ApiResult<Option<Vec<u8>>> {
                        match pending.get(id) {
                            Some(change) => Ok(change.as_ref().map(|p| (*p.source).clone())),
                            None if view.docs.contains_key(id) => Ok(view.searcher.get(id)?),
                            None => Ok(None),
                        }
                    };
                    if let Err(restore_error) =
                        sparse_fields::rewrite(meta, &mut restore, &ids, &before)
                    {
                        // The next start after any stop repairs them (the marker is gone).
                        tracing::error!(error = %restore_error, "a failed write left sparse field documents ahead of the main index; they are rewritten at the next start");
                    }
                    writer.sparse.extend(restore);
                }
                Some((ids, e))
            }
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
fn version_conflict(index: &str, id: &str, version: u64) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::CONFLICT,
        "version_conflict_engine_exception",
        format!("[{id}]: version conflict, document already exists (current version [{version}])"),
    )
    .with("index", index)
    .with("shard", "0")
}

/// A snapshot of each index of `indexes`.
fn searchers(indexes: &mut BTreeMap<String, Index>) -> BTreeMap<String, Searcher> {
    indexes
        .iter_mut()
        .map(|(k, i)| (k.clone(), i.searcher()))
        .collect()
}

/// The writer options of every index the server opens.
pub(super) fn writer_options() -> WriterOptions {
    WriterOptions {
        flush_docs: FLUSH_DOCS,
        dense_columns_max_mb: nsparse_index::dense_columns_max_mb_from_env(),
        ..WriterOptions::default()
    }
}

/// A read guard, also after a panic in another holder.
pub(super) fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
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
