//! Durable file replacement: the one way the server writes its own files (`meta.json`, the
//! pipeline files, the clean-shutdown marker).
//!
//! A file is written to `NAME.tmp`, fsynced, renamed over `NAME`, and the directory is fsynced,
//! so after a crash the file holds either its old or its new content, never a mix, and an
//! acknowledged replacement survives.

use std::path::Path;

use serde_json::Value;

use crate::error::ServerError;

/// Replaces `dir/name` with `bytes` atomically and durably: `.tmp`, fsync, rename, fsync the
/// directory (`nsparse_index::write_atomic`, the one implementation). Creates `dir` when
/// missing.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ServerError> {
    std::fs::create_dir_all(dir).map_err(|e| ServerError::io(dir, e))?;
    nsparse_index::write_atomic(dir, name, bytes).map_err(|e| from_index(dir, e))
}

/// [`write_atomic`] of `value` as pretty-printed JSON.
pub fn write_json_atomic(dir: &Path, name: &str, value: &Value) -> Result<(), ServerError> {
    let bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    write_atomic(dir, name, &bytes)
}

/// fsyncs a directory (makes renames, creations and removals in it durable).
pub fn sync_dir(dir: &Path) -> Result<(), ServerError> {
    nsparse_index::fsync_dir(dir).map_err(|e| from_index(dir, e))
}

/// The server's I/O error for an index write error (keeping the OS error, so a full disk is
/// still recognised).
fn from_index(dir: &Path, e: nsparse_index::Error) -> ServerError {
    match e {
        nsparse_index::Error::Io { path, source } => ServerError::io(path, source),
        other => ServerError::io(dir, std::io::Error::other(other.to_string())),
    }
}
