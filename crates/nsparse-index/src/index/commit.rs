//! The commit transaction: checkpoint, write, publish the manifest, or roll back.

use std::sync::Arc;

use crate::directory::lock::LOCK;
use crate::error::Result;
use crate::index::manifest::{SegmentMeta, MANIFEST};
use crate::index::state::SegEntry;
use crate::index::wal::WalWriter;
use crate::index::{seg_file, Checkpoint, Index};
use crate::segment::deletes::Bitset;
use crate::segment::input::SegmentInput;
use crate::segment::{DocRecord, Segment};

impl Index {
    /// Commits whatever is buffered or deleted, as one transaction: on `Err` the writer is
    /// exactly as before (buffer, segments, manifest; the WAL still holds every
    /// acknowledged write) and the files the attempt wrote are removed, so it can be retried.
    pub(crate) fn commit_forced(&mut self) -> Result<()> {
        self.sync_unsynced_commit()?;
        let before = self.checkpoint();
        let recs = self.state.take_buffer();
        match self.write_commit(&recs) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.roll_back(before);
                self.state.restore_buffer(recs);
                Err(e)
            }
        }
    }

    /// The state a failed commit returns to.
    pub(crate) fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            segments: self.state.segments.clone(),
            manifest: self.manifest.clone(),
        }
    }

    /// Returns to `before` after a failed commit, and removes the files the attempt left.
    pub(crate) fn roll_back(&mut self, before: Checkpoint) {
        // Segment numbers are never reused, so a half-written file of the failed attempt
        // can never be mistaken for a later segment.
        let next_segment = self.manifest.next_segment;
        self.state.segments = before.segments;
        self.manifest = before.manifest;
        self.manifest.next_segment = next_segment;
        self.state.cached = None;
        self.remove_unreferenced();
    }

    /// Retries the directory fsync of a commit whose manifest rename is not yet known to be
    /// durable; once it succeeds, the files that commit made obsolete are removed.
    pub(crate) fn sync_unsynced_commit(&mut self) -> Result<()> {
        let Some(obsolete) = self.unsynced_commit.take() else {
            return Ok(());
        };
        if let Err(e) = crate::directory::atomic::fsync_dir(&self.dir) {
            self.unsynced_commit = Some(obsolete);
            return Err(e);
        }
        self.remove_files(obsolete);
        Ok(())
    }

    pub(crate) fn write_commit(&mut self, recs: &[DocRecord]) -> Result<()> {
        let mut obsolete: Vec<String> = Vec::new();
        if !recs.is_empty() {
            self.add_segment(recs, None, None)?;
        }
        // Drop fully deleted segments; persist changed deletion bitmaps.
        let gen = self.manifest.generation + 1;
        let mut keep = Vec::new();
        for mut e in std::mem::take(&mut self.state.segments) {
            if e.del.count() == e.seg.n_docs() {
                obsolete.push(e.file.clone());
                obsolete.extend(e.del_file.clone());
                continue;
            }
            if e.del_dirty {
                let name = format!("seg-{:08}-{gen:08}.del", e.id);
                crate::directory::atomic::write_atomic(
                    &self.dir,
                    &name,
                    &e.del.to_bytes(e.seg.n_docs()),
                )?;
                if let Some(old) = e.del_file.replace(name) {
                    obsolete.push(old);
                }
                e.del_dirty = false;
            }
            keep.push(e);
        }
        self.state.segments = keep;
        obsolete.extend(self.merge_policy()?);
        self.switch_manifest(gen, obsolete)
    }

    pub(crate) fn add_segment<D: SegmentInput + ?Sized>(
        &mut self,
        docs: &D,
        replace: Option<usize>,
        id_index: Option<crate::segment::id_index::IdIndex>,
    ) -> Result<u64> {
        let id = self.manifest.next_segment;
        self.manifest.next_segment += 1;
        let t0 = std::time::Instant::now();
        let name = seg_file(id);
        let seg = Segment::build_and_write(
            docs,
            self.state.segment_vocab(),
            &self.dir,
            &name,
            id_index,
            self.opts.build_threads,
        )?;
        tracing::debug!(
            segment = id,
            docs = seg.n_docs(),
            build_and_write_ms = t0.elapsed().as_millis() as u64,
            "built and wrote segment"
        );
        let n = seg.n_docs();
        let e = SegEntry {
            id,
            file: name,
            seg: Arc::new(seg),
            del: Arc::new(Bitset::new(n)),
            del_file: None,
            del_dirty: false,
        };
        match replace {
            Some(pos) => self.state.segments.insert(pos, e),
            None => self.state.segments.push(e),
        }
        self.state.cached = None;
        Ok(id)
    }

    pub(crate) fn switch_manifest(&mut self, gen: u64, mut obsolete: Vec<String>) -> Result<()> {
        self.sync_unsynced_commit()?;
        let wal_name = format!("wal-{gen:08}.log");
        let wal_path = self.dir.join(&wal_name);
        let _ = std::fs::remove_file(&wal_path);
        let new_wal = WalWriter::create(&wal_path)?;
        crate::directory::atomic::fsync_dir(&self.dir)?;
        let mut m = self.manifest.clone();
        m.generation = gen;
        obsolete.push(std::mem::replace(&mut m.wal, wal_name));
        if let (Some(dict), Some(meta)) = (self.state.features(), m.features.as_mut()) {
            // The dictionary only grows: a commit that added names writes it whole.
            let names = dict.names_from(0);
            if names.len() as u32 != meta.names {
                let file = crate::features::file::dict_file(gen);
                crate::directory::atomic::write_atomic(
                    &self.dir,
                    &file,
                    &crate::features::file::encode(&names),
                )?;
                obsolete.extend(meta.file.replace(file));
                meta.names = names.len() as u32;
            }
            m.vocab_size = meta.names;
        }
        m.segments = self
            .state
            .segments
            .iter()
            .map(|e| SegmentMeta {
                id: e.id,
                file: e.file.clone(),
                n_docs: e.seg.n_docs(),
                deletes: e.del_file.clone(),
                n_deleted: e.del.count(),
            })
            .collect();
        let tmp = self.dir.join(format!("{MANIFEST}.tmp"));
        let published = m.to_bytes().and_then(|bytes| {
            crate::directory::atomic::write_tmp(&tmp, &bytes)?;
            crate::directory::atomic::rename(&tmp, &self.dir.join(MANIFEST))
        });
        if let Err(e) = published {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        // The new manifest is what the directory shows from here on (a crash now opens it),
        // so the writer adopts it whatever happens next.
        self.manifest = m;
        if let Some(f) = &self.manifest.features {
            self.durable_features = f.names;
        }
        self.wal = new_wal;
        self.state.cached = None;
        match crate::directory::atomic::fsync_dir(&self.dir) {
            Ok(()) => self.remove_files(obsolete),
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "the new manifest is in place but not yet durable; keeping the old WAL and retrying before the next write");
                self.unsynced_commit = Some(obsolete);
            }
        }
        Ok(())
    }

    pub(crate) fn remove_files(&self, files: Vec<String>) {
        for f in files {
            if let Err(e) = std::fs::remove_file(self.dir.join(&f)) {
                tracing::warn!(file = %f, error = %e, "could not remove obsolete file");
            }
        }
    }

    /// Remove files not referenced by the manifest (left by an interrupted commit).
    pub(crate) fn remove_unreferenced(&mut self) {
        let mut keep: std::collections::HashSet<String> = [
            MANIFEST.to_string(),
            LOCK.to_string(),
            self.manifest.wal.clone(),
        ]
        .into();
        for s in &self.manifest.segments {
            keep.insert(s.file.clone());
            keep.extend(s.deletes.clone());
        }
        keep.extend(self.manifest.features.iter().flat_map(|f| f.file.clone()));
        keep.extend(self.unsynced_commit.iter().flatten().cloned());
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let ours = name.ends_with(".seg")
                || name.ends_with(".del")
                || name.ends_with(".log")
                || name.ends_with(".dict")
                || name.ends_with(".tmp");
            if ours && !keep.contains(&name) {
                tracing::info!(file = %name, "removing file left by an interrupted commit");
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}
