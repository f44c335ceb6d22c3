//! Error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong while creating, writing, opening or searching an index.
///
/// Messages name the input (file path or `_id`), the problem and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O call failed.
    #[error("I/O error on {path}: {source} (check the path exists, is writable and the disk is not full)")]
    Io {
        /// File or directory involved.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file failed its magic, checksum or structural checks.
    #[error("index file {path} is corrupt: {detail} (restore the index directory from a backup or rebuild it from the source documents)")]
    Corrupt {
        /// File found corrupt.
        path: PathBuf,
        /// What check failed.
        detail: String,
    },
    /// A file was written by a newer (or unknown) format version.
    #[error("index file {path} has format version {found}, this build reads {} (use a matching nsparse build)", readable_versions(*.oldest, *.newest))]
    UnsupportedVersion {
        /// File involved.
        path: PathBuf,
        /// Version stored in the file.
        found: u32,
        /// Oldest version this build reads.
        oldest: u32,
        /// Newest version this build reads (and the one it writes).
        newest: u32,
    },
    /// `create` was called on a directory that already holds an index.
    #[error("{path} already contains an index (open it instead, or choose an empty directory)")]
    AlreadyExists {
        /// Directory.
        path: PathBuf,
    },
    /// `open` was called on a directory without a manifest.
    #[error("{path} does not contain an nsparse index (no MANIFEST; create one first)")]
    NotAnIndex {
        /// Directory.
        path: PathBuf,
    },
    /// Another process (or handle) holds the writer lock.
    #[error("index {path} is locked by another writer (only one writer process at a time; close the other one, or open read-only)")]
    Locked {
        /// Directory.
        path: PathBuf,
    },
    /// `add` was called with an `_id` that is already live.
    #[error("document _id {id:?} already exists (use upsert to replace it)")]
    DuplicateId {
        /// The `_id`.
        id: String,
    },
    /// A document or query was rejected before touching the index.
    #[error("invalid input for {what}: {detail}")]
    InvalidInput {
        /// What was being validated (e.g. `document "abc"`, `query`).
        what: String,
        /// What is wrong and how to fix it.
        detail: String,
    },
    /// The index was created with a different model.
    #[error("index was built with model {index_model:?} but the query uses {query_model:?} (encode the query with the index's model, or re-index)")]
    ModelMismatch {
        /// Model stored in the index.
        index_model: String,
        /// Model the caller uses.
        query_model: String,
    },
}

/// Result alias of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub(crate) fn corrupt(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.into(),
            detail: detail.into(),
        }
    }
    pub(crate) fn invalid(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::InvalidInput {
            what: what.into(),
            detail: detail.into(),
        }
    }
    /// True when an I/O call failed because the disk (or the user's quota) is full: the
    /// write was refused and nothing acknowledged was lost; it can be retried once space
    /// is freed.
    pub fn is_no_space(&self) -> bool {
        match self {
            Error::Io { source, .. } => is_no_space(source),
            _ => false,
        }
    }

    /// True when the error reports a corrupt (or unreadable-format) file.
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Error::Corrupt { .. } | Error::UnsupportedVersion { .. }
        )
    }
}

/// True for the operating system's "no space left on device" and "disk quota exceeded".
pub(crate) fn is_no_space(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || e.kind() == std::io::ErrorKind::QuotaExceeded
        || matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// "version 2" or "versions 1 to 2", for [`Error::UnsupportedVersion`].
fn readable_versions(oldest: u32, newest: u32) -> String {
    if oldest == newest {
        format!("version {newest}")
    } else {
        format!("versions {oldest} to {newest}")
    }
}
