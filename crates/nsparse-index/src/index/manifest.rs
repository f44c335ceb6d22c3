//! `MANIFEST`: the live segments, the WAL, the model identity.

use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::error::{Error, Result};
use crate::schema::Bm25Params;

pub(crate) const MANIFEST: &str = "MANIFEST";

const MANIFEST_MAGIC: &[u8; 8] = b"NSPMANIF";

/// Version 2 added `features` (open vocabularies); version 1 manifests (fixed vocabularies
/// of at most 65,536 ids) are still read.
const MANIFEST_VERSION: u32 = 2;

const MANIFEST_OLDEST_READABLE: u32 = 1;

/// Largest fixed (model) vocabulary; larger id spaces use an open vocabulary.
pub(crate) const MAX_FIXED_VOCAB: u32 = 1 << 24;

/// The feature dictionary of an open-vocabulary index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct FeaturesMeta {
    /// `features-G.dict` holding the names (none while the dictionary is empty).
    pub(crate) file: Option<String>,
    /// Number of names in it.
    pub(crate) names: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SegmentMeta {
    pub(super) id: u64,
    pub(super) file: String,
    pub(super) n_docs: u32,
    pub(super) deletes: Option<String>,
    pub(super) n_deleted: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub(super) model: String,
    pub(super) metadata: serde_json::Value,
    /// Ids are below this: the model's vocabulary size, or for an open vocabulary the
    /// number of feature names in `features`.
    pub(super) vocab_size: u32,
    /// Present exactly when the index has an open vocabulary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) features: Option<FeaturesMeta>,
    pub(crate) bm25: Bm25Params,
    pub(super) generation: u64,
    pub(super) next_segment: u64,
    pub(super) wal: String,
    pub(super) segments: Vec<SegmentMeta>,
}

impl Manifest {
    pub(crate) fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotAnIndex {
                    path: dir.to_path_buf(),
                })
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        let (version, secs) = crate::directory::container::read_container_of(
            &path,
            &bytes,
            MANIFEST_MAGIC,
            MANIFEST_OLDEST_READABLE..=MANIFEST_VERSION,
        )?;
        let body = crate::directory::container::section(&path, &secs, 1)?;
        let m: Manifest = serde_json::from_slice(body)
            .map_err(|e| Error::corrupt(&path, format!("manifest JSON: {e}")))?;
        let in_range = match &m.features {
            None if version == 1 => (1..=65_536).contains(&m.vocab_size),
            None => (1..=MAX_FIXED_VOCAB).contains(&m.vocab_size),
            Some(f) => version >= 2 && f.names == m.vocab_size && f.file.is_some() == (f.names > 0),
        };
        if !in_range {
            return Err(Error::corrupt(
                &path,
                "vocab_size out of range or disagrees with the feature dictionary",
            ));
        }
        if let Some(file) = m.features.as_ref().and_then(|f| f.file.as_ref()) {
            crate::index::validate::check_name(dir, file)?;
        }
        Ok(m)
    }

    pub(crate) fn to_bytes(&self) -> Result<Vec<u8>> {
        let body = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::invalid("manifest", e.to_string()))?;
        Ok(crate::directory::container::write_container(
            MANIFEST_MAGIC,
            MANIFEST_VERSION,
            &[(1, &body)],
        ))
    }

    pub(crate) fn store(&self, dir: &Path) -> Result<()> {
        crate::directory::atomic::write_atomic(dir, MANIFEST, &self.to_bytes()?)
    }
}
