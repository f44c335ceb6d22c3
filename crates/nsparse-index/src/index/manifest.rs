//! `MANIFEST`: the live segments, the WAL, the model identity.

use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::error::{Error, Result};
use crate::schema::Bm25Params;

pub(crate) const MANIFEST: &str = "MANIFEST";

const MANIFEST_MAGIC: &[u8; 8] = b"NSPMANIF";

const MANIFEST_VERSION: u32 = 1;

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
    pub(super) vocab_size: u32,
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
        let secs = crate::directory::container::read_container(
            &path,
            &bytes,
            MANIFEST_MAGIC,
            MANIFEST_VERSION,
        )?;
        let body = crate::directory::container::section(&path, &secs, 1)?;
        let m: Manifest = serde_json::from_slice(body)
            .map_err(|e| Error::corrupt(&path, format!("manifest JSON: {e}")))?;
        if m.vocab_size == 0 || m.vocab_size > 65536 {
            return Err(Error::corrupt(&path, "vocab_size out of range"));
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
