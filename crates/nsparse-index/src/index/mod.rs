//! The index directory: manifest, segments, deletion bitmaps, WAL, writer lock.

use serde::Serialize;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::directory::lock::lock_dir;
use crate::error::{Error, Result};
use crate::features::FeatureDictionary;
use crate::index::bulk::BulkInput;
use crate::index::manifest::{FeaturesMeta, Manifest, MANIFEST, MAX_FIXED_VOCAB};
use crate::index::state::{SegEntry, State};
use crate::index::validate::{check_name, prepare};
use crate::index::wal::{WalOp, WalWriter};
use crate::schema::{Bm25Params, CreateOptions, Document, Vocabulary, WriterOptions};
use crate::search::Searcher;
use crate::segment::bound_columns::budget_bytes;

mod bulk;
mod commit;
mod manifest;
mod merge;
mod open;
mod state;
#[cfg(test)]
mod tests;
mod validate;
pub(crate) mod wal;

pub use self::open::{open_reader, verify, VerifyReport};
/// Summary of an index, from the manifest and live state.
#[derive(Debug, Clone, Serialize)]
pub struct IndexInfo {
    /// Model identity given at creation.
    pub model: String,
    /// Free-form metadata given at creation.
    pub metadata: serde_json::Value,
    /// Ids are below this: the fixed vocabulary's size, or the number of feature names of
    /// an open vocabulary.
    pub vocab_size: u32,
    /// Whether the index keeps its own feature dictionary ([`Vocabulary::Open`]).
    pub open_vocabulary: bool,
    /// BM25 parameters.
    pub bm25: Bm25Params,
    /// Committed segments.
    pub segments: usize,
    /// Live (searchable) documents, including uncommitted ones.
    pub live_docs: u64,
    /// Deleted documents still occupying committed segments (purged by merges).
    pub deleted_docs: u64,
    /// Documents buffered in memory (durable in the WAL, not yet in a segment).
    pub buffered_docs: u64,
}

/// The error of a name-based call on an index whose names belong to its model.
pub(crate) fn fixed_vocabulary_error(size: u32) -> Error {
    Error::invalid(
        "feature names",
        format!("this index has a fixed vocabulary of {size} model token ids, and its names belong to the model; map names to ids with the model's tokenizer, or create the index with an open vocabulary (Vocabulary::Open)"),
    )
}

pub(crate) fn seg_file(id: u64) -> String {
    format!("seg-{id:08}.seg")
}

/// Writer handle of an index directory (one per directory, enforced by a lock file).
///
/// Every `add`/`upsert`/`delete` is appended to the write-ahead log and fsynced
/// before it returns: an acknowledged write survives a crash. Writes are visible
/// to new [`Searcher`]s at once; [`Index::commit`] moves buffered documents into
/// an immutable segment (it also runs automatically every `flush_docs` documents).
pub struct Index {
    pub(crate) dir: PathBuf,
    pub(crate) _lock: File,
    pub(crate) manifest: Manifest,
    pub(crate) state: State,
    pub(crate) wal: WalWriter,
    pub(crate) opts: WriterOptions,
    /// Set when a commit's manifest was renamed into place but the directory fsync that makes
    /// the rename durable failed: the files that commit made obsolete (the old WAL among
    /// them) are kept, and every later write first retries the fsync.
    pub(crate) unsynced_commit: Option<Vec<String>>,
    /// After a failed automatic commit, the next one is not tried before this instant, so a
    /// full disk does not cost a segment build per write.
    pub(crate) auto_commit_after: Option<std::time::Instant>,
    /// Feature names below this id are on disk (the dictionary file or the WAL); the ones
    /// after it were added by [`Index::feature_ids`] for a write not yet made, and go to
    /// the WAL with it (or are dropped if it fails).
    pub(crate) durable_features: u32,
}

/// How long a failed automatic commit waits before it is tried again.
const AUTO_COMMIT_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// The writer's committed state before a commit, restored if the commit fails.
pub(crate) struct Checkpoint {
    segments: Vec<SegEntry>,
    manifest: Manifest,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Index {
    /// Create a new index in `dir` (created if missing; must not already hold an index).
    pub fn create(
        dir: impl AsRef<Path>,
        options: &CreateOptions,
        writer: WriterOptions,
    ) -> Result<Index> {
        let dir = dir.as_ref();
        match &options.vocabulary {
            Vocabulary::Fixed { size } if *size == 0 || *size > MAX_FIXED_VOCAB => {
                return Err(Error::invalid(
                    "create options",
                    format!("a fixed vocabulary has 1..={MAX_FIXED_VOCAB} ids, not {size}; use an open vocabulary for larger id spaces"),
                ));
            }
            Vocabulary::Open { seed } => {
                // Checks the seed (valid, unique names) before anything touches the disk.
                FeatureDictionary::from_names(seed.clone()).map_err(|e| {
                    Error::invalid("create options: vocabulary seed", e.to_string())
                })?;
            }
            Vocabulary::Fixed { .. } => {}
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let lock = lock_dir(dir)?;
        if dir.join(MANIFEST).exists() {
            return Err(Error::AlreadyExists {
                path: dir.to_path_buf(),
            });
        }
        let wal_name = "wal-00000001.log".to_string();
        let wal_path = dir.join(&wal_name);
        let _ = std::fs::remove_file(&wal_path);
        let created = Self::create_files(dir, options, &wal_name);
        if created.is_err() {
            // Nothing was acknowledged yet: leave no half-made index that a retry would
            // mistake for an existing one.
            for name in [MANIFEST, &wal_name, &crate::features::file::dict_file(1)] {
                let _ = std::fs::remove_file(dir.join(name));
            }
        }
        let (manifest, wal) = created?;
        let state = State::load(dir, &manifest, budget_bytes(writer.dense_columns_max_mb))?;
        tracing::info!(dir = %dir.display(), model = %options.model, "created index");
        Ok(Index::assemble(dir, lock, manifest, state, wal, writer))
    }

    /// A writer over state just loaded or created (nothing pending).
    fn assemble(
        dir: &Path,
        lock: File,
        manifest: Manifest,
        state: State,
        wal: WalWriter,
        opts: WriterOptions,
    ) -> Index {
        Index {
            dir: dir.to_path_buf(),
            _lock: lock,
            manifest,
            durable_features: state.features().map_or(0, |f| f.len()),
            state,
            wal,
            opts,
            unsynced_commit: None,
            auto_commit_after: None,
        }
    }

    /// The first WAL and manifest of a new index.
    pub(crate) fn create_files(
        dir: &Path,
        options: &CreateOptions,
        wal_name: &str,
    ) -> Result<(Manifest, WalWriter)> {
        let wal = WalWriter::create(&dir.join(wal_name))?;
        let (vocab_size, features) = match &options.vocabulary {
            Vocabulary::Fixed { size } => (*size, None),
            Vocabulary::Open { seed } => {
                let file = (!seed.is_empty()).then(|| crate::features::file::dict_file(1));
                if let Some(file) = &file {
                    let names: Vec<std::sync::Arc<str>> = seed
                        .iter()
                        .map(|n| std::sync::Arc::from(n.as_str()))
                        .collect();
                    crate::directory::atomic::write_atomic(
                        dir,
                        file,
                        &crate::features::file::encode(&names),
                    )?;
                }
                let names = seed.len() as u32;
                (names, Some(FeaturesMeta { file, names }))
            }
        };
        let manifest = Manifest {
            model: options.model.clone(),
            metadata: options.metadata.clone(),
            vocab_size,
            features,
            bm25: options.bm25,
            generation: 1,
            next_segment: 1,
            wal: wal_name.to_string(),
            segments: Vec::new(),
        };
        manifest.store(dir)?;
        Ok((manifest, wal))
    }

    /// Open an existing index for writing: takes the lock, verifies every file,
    /// replays the WAL (dropping a torn, unacknowledged tail) and removes files
    /// left over by an interrupted commit.
    pub fn open(dir: impl AsRef<Path>, writer: WriterOptions) -> Result<Index> {
        let dir = dir.as_ref();
        if !dir.join(MANIFEST).exists() {
            return Err(Error::NotAnIndex {
                path: dir.to_path_buf(),
            });
        }
        let lock = lock_dir(dir)?;
        let manifest = Manifest::load(dir)?;
        let mut state = State::load(dir, &manifest, budget_bytes(writer.dense_columns_max_mb))?;
        check_name(dir, &manifest.wal)?;
        let wal_path = dir.join(&manifest.wal);
        let contents = crate::index::wal::read(&wal_path)?;
        if contents.torn_complete {
            // A record of complete length that fails its checksum may be an acknowledged
            // write damaged on disk: keep its bytes rather than cut them off silently.
            let kept =
                crate::index::wal::keep_dropped_tail(dir, &manifest.wal, contents.valid_len)?;
            tracing::error!(wal = %wal_path.display(), offset = contents.valid_len, bytes = contents.torn_bytes, kept = %kept,
                "the WAL's last record fails its checksum: a write torn by a crash (never acknowledged) or damage to the last acknowledged write; it is not applied, and its bytes are kept in the named file");
        } else if contents.torn_bytes > 0 {
            tracing::warn!(wal = %wal_path.display(), offset = contents.valid_len, bytes = contents.torn_bytes,
                "dropping an incomplete WAL record (a write torn by a crash, never acknowledged)");
        }
        for op in contents.ops {
            state.apply(op, &wal_path)?;
        }
        let wal = WalWriter::reopen(&wal_path, contents.valid_len)?;
        let mut idx = Index::assemble(dir, lock, manifest, state, wal, writer);
        idx.remove_unreferenced();
        Ok(idx)
    }

    /// Directory of the index.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Model identity given at creation.
    pub fn model(&self) -> &str {
        &self.manifest.model
    }

    /// Summary of the index.
    pub fn info(&self) -> IndexInfo {
        let deleted: u64 = self
            .state
            .segments
            .iter()
            .map(|e| e.del.count() as u64)
            .sum();
        IndexInfo {
            model: self.manifest.model.clone(),
            metadata: self.manifest.metadata.clone(),
            vocab_size: self.state.vocab(),
            open_vocabulary: self.state.features().is_some(),
            bm25: self.manifest.bm25,
            segments: self.state.segments.len(),
            live_docs: self.state.live_docs(),
            deleted_docs: deleted,
            buffered_docs: self.state.buf_live as u64,
        }
    }

    /// True if `id` is a live document.
    pub fn contains(&self, id: &str) -> bool {
        self.state.locate(id).is_some()
    }

    /// Add a new document; fails with [`Error::DuplicateId`] if `_id` is live. Durable on return.
    pub fn add(&mut self, doc: &Document) -> Result<()> {
        self.add_batch(std::slice::from_ref(doc))
    }

    /// Add several new documents with one fsync; all-or-nothing validation.
    pub fn add_batch(&mut self, docs: &[Document]) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        for d in docs {
            if self.state.locate(&d.id).is_some() || !seen.insert(d.id.as_str()) {
                return Err(Error::DuplicateId { id: d.id.clone() });
            }
        }
        self.write_docs(docs)
    }

    /// Insert or replace (by `_id`) a document. Durable on return.
    pub fn upsert(&mut self, doc: &Document) -> Result<()> {
        self.write_docs(std::slice::from_ref(doc))
    }

    /// Upsert several documents with one fsync (later duplicates win).
    pub fn upsert_batch(&mut self, docs: &[Document]) -> Result<()> {
        self.write_docs(docs)
    }

    pub(crate) fn write_docs(&mut self, docs: &[Document]) -> Result<()> {
        let written = self.log_docs(docs);
        if written.is_err() {
            self.drop_pending_features();
        }
        written
    }

    fn log_docs(&mut self, docs: &[Document]) -> Result<()> {
        let vocab = self.state.vocab();
        let recs = docs
            .iter()
            .map(|d| prepare(d, vocab))
            .collect::<Result<Vec<_>>>()?;
        let mut ops: Vec<WalOp> = Vec::with_capacity(docs.len() + 1);
        let pending = self.pending_features();
        ops.extend(pending.clone());
        ops.extend(docs.iter().map(|d| WalOp::Upsert {
            id: d.id.clone(),
            vector: d.vector.clone(),
            tokens: d.tokens.clone(),
            source: d.source.clone(),
        }));
        self.sync_unsynced_commit()?;
        self.wal.append(&ops)?;
        // Acknowledged from here on: the WAL holds them until a durable commit does.
        if let Some(WalOp::Features { first, names }) = pending {
            self.durable_features = first + names.len() as u32;
        }
        for r in recs {
            self.state.upsert(r);
        }
        self.auto_commit();
        Ok(())
    }

    /// The WAL record of the feature names added since the last durable write, if any.
    fn pending_features(&self) -> Option<WalOp> {
        let dict = self.state.features()?;
        (dict.len() > self.durable_features).then(|| WalOp::Features {
            first: self.durable_features,
            names: dict
                .names_from(self.durable_features)
                .iter()
                .map(|n| n.to_string())
                .collect(),
        })
    }

    /// Forgets the feature names of a write that failed (nothing on disk refers to them).
    fn drop_pending_features(&mut self) {
        if let Some(dict) = self.state.features() {
            dict.truncate(self.durable_features);
            self.state.sync_vocab();
        }
    }

    /// The ids of feature `names` (in order) in this index's open vocabulary, giving new
    /// names the next free ids. New names become durable with the next successful write
    /// (`add`, `upsert`, `bulk_upsert`, which log them before the documents) or commit;
    /// a failed write drops every name not yet durable, so use the ids in the write that
    /// follows. All names are checked first (non-empty, at most
    /// [`MAX_FEATURE_NAME_BYTES`](crate::MAX_FEATURE_NAME_BYTES) bytes): an error adds none.
    ///
    /// Errors: [`Error::InvalidInput`] for a bad name, or if the index has a fixed
    /// vocabulary (its names belong to its model: map them with the model's tokenizer).
    pub fn feature_ids<'a>(
        &mut self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<u32>> {
        let Some(dict) = self.state.features() else {
            return Err(fixed_vocabulary_error(self.state.vocab()));
        };
        let ids = dict.intern(names)?;
        self.state.sync_vocab();
        Ok(ids)
    }

    /// The id of feature `name`, if the index's open vocabulary has it (`None` for a fixed
    /// vocabulary).
    pub fn feature_id(&self, name: &str) -> Option<u32> {
        self.state.features()?.id_below(name, u32::MAX)
    }

    /// The name of feature `id` in the index's open vocabulary (`None` for a fixed
    /// vocabulary or an unknown id).
    pub fn feature_name(&self, id: u32) -> Option<std::sync::Arc<str>> {
        self.state.features()?.name(id)
    }

    /// Commits once the buffer holds `flush_docs` documents. A failure does not fail the
    /// write that triggered it (that write is in the WAL): it is logged and retried after
    /// [`AUTO_COMMIT_RETRY`].
    pub(crate) fn auto_commit(&mut self) {
        if self.state.buf_live < self.opts.flush_docs.max(1) {
            return;
        }
        let now = std::time::Instant::now();
        if self.auto_commit_after.is_some_and(|t| now < t) {
            return;
        }
        match self.commit() {
            Ok(()) => self.auto_commit_after = None,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "automatic commit failed; the documents stay in the WAL and the commit is retried");
                self.auto_commit_after = Some(now + AUTO_COMMIT_RETRY);
            }
        }
    }

    /// Bulk load: build one segment straight from `docs` and commit it —
    /// durable on return (commit-before-ack), without logging every document
    /// in the WAL. Upsert semantics: live documents with the same `_id` are
    /// replaced; within `docs` the last duplicate wins. The fast path for
    /// building an index from a file of vectors.
    pub fn bulk_upsert(&mut self, docs: &[Document]) -> Result<()> {
        let started = std::time::Instant::now();
        // Last duplicate wins: keep a document only if no later one has its
        // `_id`. The common case, no duplicates, is settled by one `_id`
        // index over the batch (no string copies).
        // Without duplicates the batch's index is also the new segment's.
        let batch_index =
            crate::segment::id_index::IdIndex::build_with(docs.len(), |i| docs[i].id.as_str());
        let kept: Vec<&Document> = if batch_index.is_ok() {
            docs.iter().collect()
        } else {
            let mut last: HashMap<&str, usize> = HashMap::with_capacity(docs.len());
            for (i, d) in docs.iter().enumerate() {
                last.insert(d.id.as_str(), i);
            }
            docs.iter()
                .enumerate()
                .filter(|(i, d)| last.get(d.id.as_str()) == Some(i))
                .map(|(_, d)| d)
                .collect()
        };
        let t0 = std::time::Instant::now();
        let dedup = t0 - started;
        let input = match BulkInput::new(kept, self.state.vocab(), self.opts.build_threads) {
            Ok(input) => input,
            Err(e) => {
                self.drop_pending_features();
                return Err(e);
            }
        };
        let validated = t0.elapsed();
        self.sync_unsynced_commit()?;
        let before = self.checkpoint();
        let mut replaced_buffered = Vec::new();
        for d in &input.docs {
            if let Some(Some(rec)) = self.state.take(&d.id) {
                replaced_buffered.push(rec);
            }
        }
        let mut added = validated;
        let written = (|| {
            if !input.docs.is_empty() {
                self.add_segment(&input, None, batch_index.ok())?;
            }
            added = t0.elapsed();
            // Persist together with any buffered writes and the deletions above.
            self.commit_forced()
        })();
        drop(input);
        if let Err(e) = written {
            self.roll_back(before);
            self.state.restore_buffer(replaced_buffered);
            self.drop_pending_features();
            return Err(e);
        }
        tracing::debug!(
            docs = docs.len(),
            dedup_ms = dedup.as_millis() as u64,
            validate_ms = validated.as_millis() as u64,
            segment_ms = (added - validated).as_millis() as u64,
            commit_ms = (t0.elapsed() - added).as_millis() as u64,
            "bulk upsert"
        );
        Ok(())
    }

    /// Delete by `_id`; returns whether it existed. Durable and invisible to new searchers on return.
    pub fn delete(&mut self, id: &str) -> Result<bool> {
        if self.state.locate(id).is_none() {
            return Ok(false);
        }
        self.sync_unsynced_commit()?;
        self.wal.append(&[WalOp::Delete { id: id.to_string() }])?;
        Ok(self.state.remove(id))
    }

    /// A consistent point-in-time view for searching (cheap to clone, `Send + Sync`);
    /// later writes do not affect it.
    pub fn searcher(&mut self) -> Searcher {
        self.state.snapshot()
    }

    /// Write buffered documents to a new segment and pending deletes to
    /// bitmaps, run the merge policy, switch the manifest atomically and start
    /// a fresh WAL. Does nothing if there is nothing to commit.
    pub fn commit(&mut self) -> Result<()> {
        let dirty = self.state.buf_live > 0 || self.state.segments.iter().any(|e| e.del_dirty);
        if !dirty {
            return Ok(());
        }
        self.commit_forced()
    }
}
