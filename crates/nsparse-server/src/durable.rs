//! Durable file replacement: the one way the server writes its own files (`meta.json`, the
//! pipeline files, the clean-shutdown marker).
//!
//! A file is written to `NAME.tmp`, fsynced, renamed over `NAME`, and the directory is fsynced,
//! so after a crash the file holds either its old or its new content, never a mix, and an
//! acknowledged replacement survives.

use std::io::Write;
use std::path::Path;

use serde_json::Value;

use crate::error::ServerError;

/// Replaces `dir/name` with `bytes` atomically and durably: `.tmp`, fsync, rename, fsync the
/// directory. Creates `dir` when missing.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ServerError> {
    std::fs::create_dir_all(dir).map_err(|e| ServerError::io(dir, e))?;
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut file = std::fs::File::create(&tmp).map_err(|e| ServerError::io(&tmp, e))?;
    file.write_all(bytes)
        .map_err(|e| ServerError::io(&tmp, e))?;
    file.sync_all().map_err(|e| ServerError::io(&tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(|e| ServerError::io(&path, e))?;
    sync_dir(dir)
}

/// [`write_atomic`] of `value` as pretty-printed JSON.
pub fn write_json_atomic(dir: &Path, name: &str, value: &Value) -> Result<(), ServerError> {
    let bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    write_atomic(dir, name, &bytes)
}

/// fsyncs a directory (makes renames, creations and removals in it durable).
pub fn sync_dir(dir: &Path) -> Result<(), ServerError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ServerError::io(dir, e))
}
