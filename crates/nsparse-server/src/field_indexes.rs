//! The per-field BM25 indexes (`fields/` of an index directory) as derived state.
//!
//! A mapped `text` field has its own BM25-only nsparse index so that `match` on it scores that
//! field alone. Its content is a function of the main index's stored sources, and the two are
//! written one after the other, so a crash between the writes can leave them disagreeing. They
//! are therefore treated as derived state:
//!
//! - a clean shutdown (every index committed) leaves the marker [`CLEAN_SHUTDOWN_MARKER`] in
//!   the index directory;
//! - the first write after opening removes the marker (and fsyncs the directory) before it
//!   touches any index, so the marker exists only while the field indexes agree with the
//!   main index;
//! - opening an index without the marker (a crash, a kill, a disk error, an older version)
//!   rebuilds every field index from the main index's sources with `bulk_upsert`.
//!
//! Field index directories are named by [`field_dir_name`] (the hex of short paths, as before,
//! or a fixed-length hash), never by the raw field name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nsparse_index::{CreateOptions, Document, Index, Searcher, WriterOptions};

use crate::durable::{sync_dir, write_atomic};
use crate::error::{ApiError, ApiResult, ServerError};
use crate::mapping::IndexMeta;
use crate::models::Models;
use crate::names::field_dir_name;

/// Identity of the per-text-field BM25 indexes.
const FIELD_INDEX_IDENTITY: &str = "opensearch-rest-text-field";

/// The file whose presence says the field indexes agree with the main index.
pub const CLEAN_SHUTDOWN_MARKER: &str = "clean-shutdown";

/// Documents per `bulk_upsert` of a rebuild (bounds the rebuild's memory).
const REBUILD_CHUNK: usize = 50_000;

/// The directory of the BM25 index of `field` in the index directory `dir`.
pub fn field_dir(dir: &Path, field: &str) -> PathBuf {
    dir.join("fields").join(field_dir_name(field))
}

/// Opens (creating when missing) the BM25 index of every mapped text field of `meta` that is
/// not in `already_open`.
pub fn open(
    dir: &Path,
    meta: &IndexMeta,
    already_open: &BTreeMap<String, Index>,
    options: WriterOptions,
) -> ApiResult<BTreeMap<String, Index>> {
    let mut out = BTreeMap::new();
    for field in meta
        .text_fields()
        .filter(|f| !already_open.contains_key(*f))
    {
        let path = field_dir(dir, field);
        let index = if path.join("MANIFEST").exists() {
            Index::open(&path, options)?
        } else {
            create(&path, options)?
        };
        out.insert(field.to_string(), index);
    }
    Ok(out)
}

fn create(path: &Path, options: WriterOptions) -> ApiResult<Index> {
    Ok(Index::create(
        path,
        &CreateOptions::new(FIELD_INDEX_IDENTITY),
        options,
    )?)
}

/// Replaces every field index of `meta` by one built from the documents of `main`.
pub fn rebuild(
    dir: &Path,
    meta: &IndexMeta,
    main: &Searcher,
    models: &Models,
    options: WriterOptions,
) -> ApiResult<BTreeMap<String, Index>> {
    let fields: Vec<&str> = meta.text_fields().collect();
    let mut out = BTreeMap::new();
    for field in &fields {
        let path = field_dir(dir, field);
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .map_err(|e| ApiError::from_server(&ServerError::io(path.clone(), e), None))?;
        }
        out.insert(field.to_string(), create(&path, options)?);
    }
    if fields.is_empty() {
        return Ok(out);
    }
    let mut chunk: BTreeMap<&str, Vec<Document>> = BTreeMap::new();
    let mut in_chunk = 0usize;
    let mut total = 0usize;
    for doc in main.documents() {
        let doc = doc?;
        let texts = meta.analyze_stored(&doc.id, &doc.source).field_texts;
        for field in &fields {
            let tokens = match texts.get(*field) {
                Some(text) => Some(models.bm25_tokens(text)?).filter(|t| !t.is_empty()),
                None => None,
            };
            chunk.entry(field).or_default().push(Document {
                id: doc.id.clone(),
                vector: Vec::new(),
                tokens,
                source: Vec::new(),
            });
        }
        in_chunk += 1;
        total += 1;
        if in_chunk == REBUILD_CHUNK {
            write_chunk(&mut out, &mut chunk)?;
            in_chunk = 0;
        }
    }
    write_chunk(&mut out, &mut chunk)?;
    tracing::info!(dir = %dir.display(), fields = fields.len(), docs = total, "rebuilt the per-field BM25 indexes from the main index");
    Ok(out)
}

fn write_chunk(
    indexes: &mut BTreeMap<String, Index>,
    chunk: &mut BTreeMap<&str, Vec<Document>>,
) -> ApiResult<()> {
    for (field, docs) in std::mem::take(chunk) {
        if let Some(index) = indexes.get_mut(field) {
            if !docs.is_empty() {
                index.bulk_upsert(&docs)?;
            }
        }
    }
    Ok(())
}

/// True when the index directory `dir` holds the clean-shutdown marker.
pub fn is_clean(dir: &Path) -> bool {
    dir.join(CLEAN_SHUTDOWN_MARKER).exists()
}

/// Writes the clean-shutdown marker (durably: file and directory fsynced).
pub fn mark_clean(dir: &Path) -> Result<(), ServerError> {
    write_atomic(dir, CLEAN_SHUTDOWN_MARKER, b"")
}

/// Removes the clean-shutdown marker durably (before the first write after opening).
pub fn mark_dirty(dir: &Path) -> Result<(), ServerError> {
    let path = dir.join(CLEAN_SHUTDOWN_MARKER);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ServerError::io(&path, e)),
    }
    sync_dir(dir)
}
