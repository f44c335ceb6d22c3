//! Reading whole files for a one-time decode.

use std::fs::File;
use std::path::Path;

use crate::error::{Error, Result};

/// Map a whole file read-only, for decoding it once; `None` if it is empty
/// (which cannot be mapped) or the system refuses the mapping.
///
/// A segment is decoded into owned memory at open, so mapping saves a copy
/// of the whole file into fresh memory (the page faults of that copy were
/// a third of the time to open a 1 GB segment, BENCHMARKS.md).
pub(crate) fn map_file(path: &Path) -> Result<Option<memmap2::Mmap>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len == 0 {
        return Ok(None);
    }

    // SAFETY: the mapping is private and read-only, and lives only while
    // the caller decodes it. The files mapped here (segments) are immutable:
    // written to a temporary name, fsynced and renamed into place, never
    // modified afterwards, and removed only when no manifest references them
    // (unlinking keeps a mapped file's pages). A third party truncating the
    // file during the decode is outside the index's contract (it would be
    // corruption either way). Tested by every test that reopens an index.
    let map = unsafe { memmap2::Mmap::map(&file) };
    match map {
        Ok(m) => {
            // Start reading the whole file now: decoding then rarely waits
            // for the disk (a cold 0.9 GB segment: 5.2 s to open without it,
            // 4.0 s with it).
            let _ = m.advise(memmap2::Advice::Sequential);
            let _ = m.advise(memmap2::Advice::WillNeed);
            Ok(Some(m))
        }
        Err(_) => Ok(None),
    }
}

/// Read a whole file, naming it on failure.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}
