//! Read-only opening and verification of an index directory.

use serde::Serialize;
use std::path::Path;

use crate::error::{Error, Result};
use crate::index::manifest::{Manifest, MANIFEST};
use crate::index::state::State;
use crate::index::validate::check_name;
use crate::schema::ReaderOptions;
use crate::search::Searcher;
use crate::segment::bound_columns::budget_bytes;

/// What [`verify`] checked.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Segments verified.
    pub segments: usize,
    /// Documents in segments (including deleted).
    pub segment_docs: u64,
    /// Deleted documents in segments.
    pub deleted_docs: u64,
    /// Live documents (after WAL replay).
    pub live_docs: u64,
    /// Operations in the WAL.
    pub wal_ops: usize,
    /// Bytes of torn (unacknowledged) WAL tail that would be dropped.
    pub wal_torn_bytes: u64,
    /// Total bytes of index files.
    pub bytes: u64,
}

/// Open an index read-only (no lock; a writer may run concurrently): verify
/// every file and replay the WAL in memory. Retries if a concurrent commit
/// removes a file between reading the manifest and the segments.
///
/// The same as `ReaderOptions::default().open(dir)` ([`ReaderOptions::open`]).
pub fn open_reader(dir: impl AsRef<Path>) -> Result<Searcher> {
    ReaderOptions::default().open(dir)
}

impl ReaderOptions {
    /// Open the index in `dir` read-only with these options (see [`open_reader`]).
    pub fn open(&self, dir: impl AsRef<Path>) -> Result<Searcher> {
        open_reader_full(dir.as_ref(), self).map(|x| x.0)
    }
}

fn open_reader_full(dir: &Path, options: &ReaderOptions) -> Result<(Searcher, VerifyReport)> {
    let mut attempt = 0;
    loop {
        match open_reader_once(dir, options) {
            Err(Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound && attempt < 5 =>
            {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => return r,
        }
    }
}

fn open_reader_once(dir: &Path, options: &ReaderOptions) -> Result<(Searcher, VerifyReport)> {
    let m = Manifest::load(dir)?;
    let mut state = State::load(dir, &m, budget_bytes(options.dense_columns_max_mb))?;
    check_name(dir, &m.wal)?;
    let wal_path = dir.join(&m.wal);
    let contents = crate::index::wal::read(&wal_path)?;
    let wal_ops = contents.ops.len();
    for op in contents.ops {
        state.apply(op, &wal_path)?;
    }

    let mut bytes = 0u64;
    let mut files = vec![MANIFEST.to_string(), m.wal.clone()];
    files.extend(m.features.iter().flat_map(|f| f.file.clone()));
    for s in &m.segments {
        files.push(s.file.clone());
        files.extend(s.deletes.clone());
    }

    for f in files {
        bytes += std::fs::metadata(dir.join(&f))
            .map(|x| x.len())
            .unwrap_or(0);
    }

    let report = VerifyReport {
        segments: state.segments.len(),
        segment_docs: state.segments.iter().map(|e| e.seg.n_docs() as u64).sum(),
        deleted_docs: state.segments.iter().map(|e| e.del.count() as u64).sum(),
        live_docs: state.live_docs(),
        wal_ops,
        wal_torn_bytes: contents.torn_bytes,
        bytes,
    };

    Ok((state.snapshot(), report))
}

/// Verify every file of an index (magic, versions, checksums, structure, WAL)
/// without modifying anything.
pub fn verify(dir: impl AsRef<Path>) -> Result<VerifyReport> {
    open_reader_full(dir.as_ref(), &ReaderOptions::default()).map(|x| x.1)
}
