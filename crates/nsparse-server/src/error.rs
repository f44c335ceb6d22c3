//! Errors: the REST error body OpenSearch clients parse, and the startup errors of the server.

use std::path::PathBuf;

use axum::http::StatusCode;
use serde_json::{json, Map, Value};

/// An error answered to a REST client, in OpenSearch's shape:
/// `{"error":{"root_cause":[{type, reason, ...}], type, reason, ...}, "status": N}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// OpenSearch exception type, e.g. `index_not_found_exception`.
    pub kind: &'static str,
    /// Human-readable reason: the input, the problem and the fix.
    pub reason: String,
    /// Extra fields OpenSearch puts next to `type`/`reason` (e.g. `index`, `index_uuid`).
    pub extra: Map<String, Value>,
}

impl ApiError {
    /// An error with no extra fields.
    pub fn new(status: StatusCode, kind: &'static str, reason: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            reason: reason.into(),
            extra: Map::new(),
        }
    }

    /// Adds an extra field to the error object.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    /// 400 `illegal_argument_exception`.
    pub fn illegal_argument(reason: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "illegal_argument_exception",
            reason,
        )
    }

    /// 400 `parsing_exception` (malformed or unknown query syntax).
    pub fn parsing(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "parsing_exception", reason)
    }

    /// 400 `x_content_parse_exception` (a value of the wrong JSON type).
    pub fn x_content(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "x_content_parse_exception", reason)
    }

    /// 400 `mapper_parsing_exception` (a mapping or a document that does not fit it).
    pub fn mapper_parsing(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "mapper_parsing_exception", reason)
    }

    /// 404 `index_not_found_exception` for `index`.
    pub fn index_not_found(index: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "index_not_found_exception",
            format!("no such index [{index}]"),
        )
        .with("index", index)
        .with("resource.id", index)
        .with("resource.type", "index_or_alias")
        .with("index_uuid", "_na_")
    }

    /// 500 for failures of the server itself (disk, corrupt files): the message says what failed.
    pub fn internal(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "exception", reason)
    }

    /// 429 `cluster_block_exception`: the disk (or quota) is full, so writes to `index` are
    /// refused, as OpenSearch refuses them past the flood-stage watermark. Nothing was written;
    /// writes resume by themselves once space is freed (each write simply tries again).
    pub fn disk_full(index: Option<&str>, detail: impl std::fmt::Display) -> Self {
        let name = index.unwrap_or("_all");
        let reason = format!(
            "index [{name}] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has read-only-allow-delete block]; \
             the disk of the data directory is full ({detail}): nothing of this write was stored; \
             free disk space (or delete an index) and retry: writes resume by themselves once space is available"
        );
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, DISK_FULL_KIND, reason);
        if let Some(index) = index {
            e = e.with("index", index);
        }
        e
    }

    /// True for the 429 of [`ApiError::disk_full`].
    pub fn is_disk_full(&self) -> bool {
        self.kind == DISK_FULL_KIND && self.status == StatusCode::TOO_MANY_REQUESTS
    }

    /// Names `index` in a disk-full error made where the index was not known (e.g. converted
    /// from an index error); other errors are returned unchanged.
    pub fn in_index(self, index: &str) -> Self {
        if !self.is_disk_full() || self.extra.contains_key("index") {
            return self;
        }
        let reason = self
            .reason
            .replacen("index [_all]", &format!("index [{index}]"), 1);
        ApiError { reason, ..self }.with("index", index)
    }

    /// A server-side failure (meta.json, pipelines): 429 when the disk is full, 500 otherwise.
    pub fn from_server(e: &ServerError, index: Option<&str>) -> Self {
        if e.is_no_space() {
            Self::disk_full(index, e)
        } else {
            Self::internal(e.to_string())
        }
    }

    /// The error object (`type`, `reason`, extras) without the envelope, as bulk items embed it.
    pub fn cause(&self) -> Value {
        let mut cause = Map::new();
        cause.insert("type".into(), self.kind.into());
        cause.insert("reason".into(), self.reason.clone().into());
        for (k, v) in &self.extra {
            cause.insert(k.clone(), v.clone());
        }
        Value::Object(cause)
    }

    /// The full response body.
    pub fn body(&self) -> Value {
        let cause = self.cause();
        let mut error = Map::new();
        // As OpenSearch, the root cause carries no `caused_by` of its own.
        let mut root = cause.clone();
        if let Some(root) = root.as_object_mut() {
            root.remove("caused_by");
        }
        error.insert("root_cause".into(), json!([root]));
        for (k, v) in cause.as_object().into_iter().flatten() {
            error.insert(k.clone(), v.clone());
        }
        json!({"error": error, "status": self.status.as_u16()})
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.kind, self.status, self.reason)
    }
}

impl std::error::Error for ApiError {}

/// The OpenSearch type of the disk-full (flood-stage) refusal.
const DISK_FULL_KIND: &str = "cluster_block_exception";

impl From<nsparse_index::Error> for ApiError {
    fn from(e: nsparse_index::Error) -> Self {
        if e.is_no_space() {
            return ApiError::disk_full(None, &e);
        }
        match e {
            nsparse_index::Error::InvalidInput { .. } => ApiError::illegal_argument(e.to_string()),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<nsparse_model::ModelError> for ApiError {
    fn from(e: nsparse_model::ModelError) -> Self {
        match e {
            nsparse_model::ModelError::InvalidArgument { .. } => {
                ApiError::illegal_argument(e.to_string())
            }
            other => ApiError::internal(other.to_string()),
        }
    }
}

/// Result alias for request handling.
pub type ApiResult<T> = std::result::Result<T, ApiError>;

/// What can stop the server from starting or shutting down cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A file or directory of the data directory could not be read or written.
    #[error("I/O error on {path}: {source} (check the --data directory exists and is writable)")]
    Io {
        /// Path involved.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file of the data directory is not what this server wrote.
    #[error("{path} is not valid: {detail} (restore it from a backup, or remove the index directory to drop that index)")]
    Corrupt {
        /// File involved.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// An nsparse index under the data directory failed to open.
    #[error("index {name:?}: {source}")]
    Index {
        /// OpenSearch index name.
        name: String,
        /// Underlying error.
        #[source]
        source: nsparse_index::Error,
    },
    /// A `--model` folder failed to load.
    #[error("model {name:?}: {source}")]
    Model {
        /// Model id.
        name: String,
        /// Underlying error.
        #[source]
        source: nsparse_model::ModelError,
    },
    /// A configuration value is unusable.
    #[error("{0}")]
    Config(String),
}

impl ServerError {
    /// True when the disk (or the user's quota) is full: the write was refused and can be
    /// retried once space is freed.
    pub fn is_no_space(&self) -> bool {
        match self {
            ServerError::Io { source, .. } => is_no_space(source),
            ServerError::Index { source, .. } => source.is_no_space(),
            _ => false,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ServerError::Io {
            path: path.into(),
            source,
        }
    }
}

/// True for the operating system's "no space left on device" and "disk quota exceeded".
pub(crate) fn is_no_space(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}
