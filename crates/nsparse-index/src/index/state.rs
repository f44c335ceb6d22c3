//! The writer's live state: segments with their deletions and the uncommitted buffer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::features::FeatureDictionary;
use crate::index::manifest::{Manifest, MANIFEST};
use crate::index::validate::{check_name, prepare};
use crate::index::wal::WalOp;
use crate::schema::Document;
use crate::search::snapshot::{SnapSeg, Snapshot};
use crate::search::Searcher;
use crate::segment::deletes::Bitset;
use crate::segment::{DocRecord, Segment};

/// A committed segment as tracked by the writer.
#[derive(Clone)]
pub(crate) struct SegEntry {
    pub(super) id: u64,
    pub(super) file: String,
    pub(super) seg: Arc<Segment>,
    pub(super) del: Arc<Bitset>,
    pub(super) del_file: Option<String>,
    pub(super) del_dirty: bool,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Loc {
    Seg(u64, u32),
    Buf(usize),
}

/// The segment holding `id` live, and its position there.
fn live_in(segments: &[SegEntry], id: &str) -> Option<Loc> {
    segments.iter().find_map(|e| {
        e.seg
            .lookup(id)
            .filter(|&d| !e.del.get(d))
            .map(|d| Loc::Seg(e.id, d))
    })
}

/// In-memory state: committed segments + uncommitted buffer + `_id` map.
pub(crate) struct State {
    dir: PathBuf,
    /// Ids are below this (the dictionary's length for an open vocabulary).
    vocab: u32,
    /// The feature dictionary of an open vocabulary.
    features: Option<Arc<FeatureDictionary>>,
    pub(super) segments: Vec<SegEntry>,
    buffer: Vec<Option<DocRecord>>,
    pub(super) buf_live: usize,
    /// `_id` → position in `buffer` of the buffered documents. Committed
    /// documents are found through their segments' own `_id` indexes: an
    /// `_id` is live in at most one place, so no global map is needed (it
    /// had cost a String copy and a hash insert per document at every build
    /// and open).
    buf_ids: HashMap<String, usize>,
    pub(super) cached: Option<Searcher>,
    info: Arc<crate::search::snapshot::SnapInfo>,
}

impl State {
    /// Load the manifest's segments; searchers of the state plan each
    /// segment's bound columns within `dense_max_bytes`.
    pub(crate) fn load(dir: &Path, m: &Manifest, dense_max_bytes: u64) -> Result<State> {
        let mut segments: Vec<SegEntry> = Vec::with_capacity(m.segments.len());
        for sm in &m.segments {
            check_name(dir, &sm.file)?;
            let path = dir.join(&sm.file);
            let seg = Segment::load(&path)?;
            // A segment of an open vocabulary has the dictionary's length when it was built.
            let vocab_ok = match m.features {
                None => seg.vocab() == m.vocab_size,
                Some(_) => seg.vocab() <= m.vocab_size.max(1),
            };
            if seg.n_docs() != sm.n_docs || !vocab_ok {
                return Err(Error::corrupt(
                    &path,
                    "segment disagrees with the manifest (doc count or vocabulary)",
                ));
            }
            let del = match &sm.deletes {
                Some(f) => {
                    check_name(dir, f)?;
                    Bitset::load(&dir.join(f), seg.n_docs())?
                }
                None => Bitset::new(seg.n_docs()),
            };
            if del.count() != sm.n_deleted {
                return Err(Error::corrupt(
                    dir.join(MANIFEST),
                    format!("deleted count of {} disagrees with its bitmap", sm.file),
                ));
            }
            // An `_id` is live in at most one segment.
            if !segments.is_empty() {
                for (i, id) in seg.ids().iter().enumerate() {
                    if !del.get(i as u32) && live_in(&segments, id).is_some() {
                        return Err(Error::corrupt(
                            &path,
                            format!("_id {id:?} is live in two segments"),
                        ));
                    }
                }
            }
            segments.push(SegEntry {
                id: sm.id,
                file: sm.file.clone(),
                seg: Arc::new(seg),
                del: Arc::new(del),
                del_file: sm.deletes.clone(),
                del_dirty: false,
            });
        }
        let features = match &m.features {
            None => None,
            Some(f) => Some(Arc::new(match &f.file {
                None => FeatureDictionary::default(),
                Some(file) => crate::features::file::load(&dir.join(file), f.names)?,
            })),
        };
        Ok(State {
            dir: dir.to_path_buf(),
            vocab: m.vocab_size,
            features: features.clone(),
            segments,
            buffer: Vec::new(),
            buf_live: 0,
            buf_ids: HashMap::new(),
            cached: None,
            info: Arc::new(crate::search::snapshot::SnapInfo {
                model: m.model.clone(),
                metadata: m.metadata.clone(),
                vocab: m.vocab_size,
                features,
                bm25: m.bm25,
                dense_max_bytes,
            }),
        })
    }

    /// Ids are below this.
    pub(crate) fn vocab(&self) -> u32 {
        self.vocab
    }

    /// The vocabulary of segments built now: ids below it (never 0, which segments refuse).
    pub(crate) fn segment_vocab(&self) -> u32 {
        self.vocab.max(1)
    }

    /// The feature dictionary, for an open vocabulary.
    pub(crate) fn features(&self) -> Option<&Arc<FeatureDictionary>> {
        self.features.as_ref()
    }

    /// Follows the dictionary's length after names were added or dropped.
    pub(crate) fn sync_vocab(&mut self) {
        let Some(f) = &self.features else {
            return;
        };
        let v = f.len();
        if v != self.vocab {
            self.vocab = v;
            let mut info = (*self.info).clone();
            info.vocab = v;
            self.info = Arc::new(info);
            self.cached = None;
        }
    }

    /// Where the live document `id` is, if anywhere.
    pub(crate) fn locate(&self, id: &str) -> Option<Loc> {
        if let Some(&i) = self.buf_ids.get(id) {
            return Some(Loc::Buf(i));
        }
        live_in(&self.segments, id)
    }

    /// Number of live documents.
    pub(crate) fn live_docs(&self) -> u64 {
        let committed: u64 = self
            .segments
            .iter()
            .map(|e| (e.seg.n_docs() - e.del.count()) as u64)
            .sum();
        committed + self.buf_live as u64
    }

    pub(crate) fn remove(&mut self, id: &str) -> bool {
        self.take(id).is_some()
    }

    /// Removes the live document `id`: `None` if there was none, `Some(Some(record))` if it
    /// was buffered (so a failed bulk load can put it back), `Some(None)` if it was committed.
    pub(crate) fn take(&mut self, id: &str) -> Option<Option<DocRecord>> {
        let loc = self.locate(id)?;
        let taken = match loc {
            Loc::Buf(i) => {
                self.buf_ids.remove(id);
                self.buf_live -= 1;
                self.buffer[i].take()
            }
            Loc::Seg(sid, d) => {
                if let Some(e) = self.segments.iter_mut().find(|e| e.id == sid) {
                    Arc::make_mut(&mut e.del).set(d);
                    e.del_dirty = true;
                }
                None
            }
        };
        self.cached = None;
        Some(taken)
    }

    /// Takes the buffered documents out (in write order), leaving the buffer empty.
    pub(crate) fn take_buffer(&mut self) -> Vec<DocRecord> {
        self.buf_live = 0;
        self.buf_ids.clear();
        self.cached = None;
        std::mem::take(&mut self.buffer)
            .into_iter()
            .flatten()
            .collect()
    }

    /// Puts documents taken by [`State::take_buffer`] back, ahead of anything buffered since.
    pub(crate) fn restore_buffer(&mut self, recs: Vec<DocRecord>) {
        let later = std::mem::take(&mut self.buffer);
        self.buf_ids.clear();
        self.buf_live = 0;
        for rec in recs.into_iter().chain(later.into_iter().flatten()) {
            self.upsert(rec);
        }
    }

    pub(crate) fn upsert(&mut self, rec: DocRecord) {
        self.remove(&rec.id);
        self.buf_ids.insert(rec.id.clone(), self.buffer.len());
        self.buffer.push(Some(rec));
        self.buf_live += 1;
        self.cached = None;
    }

    pub(crate) fn apply(&mut self, op: WalOp, wal: &Path) -> Result<()> {
        match op {
            WalOp::Upsert {
                id,
                vector,
                tokens,
                source,
            } => {
                let doc = Document {
                    id,
                    vector,
                    tokens,
                    source,
                };
                let rec = prepare(&doc, self.vocab).map_err(|e| {
                    Error::corrupt(wal, format!("logged document fails validation: {e}"))
                })?;
                self.upsert(rec);
            }
            WalOp::Delete { id } => {
                self.remove(&id);
            }
            WalOp::Features { first, names } => {
                let Some(f) = &self.features else {
                    return Err(Error::corrupt(
                        wal,
                        "feature names logged for an index with a fixed vocabulary",
                    ));
                };
                if first != f.len() {
                    return Err(Error::corrupt(
                        wal,
                        format!(
                            "logged feature names start at id {first}, the dictionary has {}",
                            f.len()
                        ),
                    ));
                }
                f.append_new(&names)
                    .map_err(|e| Error::corrupt(wal, format!("logged feature names: {e}")))?;
                self.sync_vocab();
            }
        }
        Ok(())
    }

    pub(crate) fn snapshot(&mut self) -> Searcher {
        if let Some(s) = &self.cached {
            return s.clone();
        }
        let mut segs: Vec<SnapSeg> = self
            .segments
            .iter()
            .map(|e| SnapSeg {
                seg: e.seg.clone(),
                del: (e.del.count() > 0).then(|| e.del.clone()),
                path: self.dir.join(&e.file),
            })
            .collect();
        if self.buf_live > 0 {
            let recs: Vec<DocRecord> = self.buffer.iter().flatten().cloned().collect();
            segs.push(SnapSeg {
                seg: Arc::new(Segment::build(&recs[..], self.segment_vocab())),
                del: None,
                path: self.dir.join("<uncommitted buffer>"),
            });
        }
        let s = Searcher::new(Snapshot {
            segs,
            info: self.info.clone(),
        });
        self.cached = Some(s.clone());
        s
    }
}
