//! `_ingest/pipeline` and `_search/pipeline`: get, put and delete stored pipelines.

use super::params::require_body;
use super::reply::{acknowledged, to_object, Reply};
use crate::error::ApiResult;
use crate::store::Store;

/// Which pipelines a path names.
#[derive(Clone, Copy)]
pub(super) enum PipelineKind {
    /// `_ingest/pipeline`.
    Ingest,
    /// `_search/pipeline`.
    Search,
}

impl PipelineKind {
    /// The kind of the first path segment (`_ingest` or `_search`).
    pub(super) fn of(segment: &str) -> Self {
        if segment == "_ingest" {
            PipelineKind::Ingest
        } else {
            PipelineKind::Search
        }
    }
}

/// `GET _ingest/pipeline[/{id}]`, `GET _search/pipeline[/{id}]`: `{id: body}`.
pub(super) fn get(store: &Store, kind: PipelineKind, id: Option<&str>) -> ApiResult<Reply> {
    let bodies = match kind {
        PipelineKind::Ingest => store.ingest_pipeline_bodies(id)?,
        PipelineKind::Search => store.search_pipeline_bodies(id)?,
    };
    Ok(Reply::ok(to_object(bodies)))
}

/// `PUT _ingest/pipeline/{id}`, `PUT _search/pipeline/{id}`.
pub(super) fn put(store: &Store, kind: PipelineKind, id: &str, body: &[u8]) -> ApiResult<Reply> {
    match kind {
        PipelineKind::Ingest => {
            store.put_ingest_pipeline(id, require_body(body, "PUT _ingest/pipeline")?)?
        }
        PipelineKind::Search => {
            store.put_search_pipeline(id, require_body(body, "PUT _search/pipeline")?)?
        }
    }
    Ok(acknowledged())
}

/// `DELETE _ingest/pipeline/{id}`, `DELETE _search/pipeline/{id}`.
pub(super) fn delete(store: &Store, kind: PipelineKind, id: &str) -> ApiResult<Reply> {
    match kind {
        PipelineKind::Ingest => store.delete_ingest_pipeline(id)?,
        PipelineKind::Search => store.delete_search_pipeline(id)?,
    }
    Ok(acknowledged())
}
