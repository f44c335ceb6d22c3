//! The writer lock: an exclusive `flock` on `LOCK` admits one writer per directory.

use std::fs::{File, OpenOptions};
use std::path::Path;

use crate::error::{Error, Result};

pub(crate) const LOCK: &str = "LOCK";

pub(crate) fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK);
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked {
            path: dir.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}
