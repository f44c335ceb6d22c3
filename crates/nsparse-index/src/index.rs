//! The index directory: manifest, segments, deletion bitmaps, WAL, writer lock.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::{self, quantize, MAX_WEIGHT};
use crate::search::{Searcher, SnapSeg, Snapshot};
use crate::segment::{Bitset, DocRecord, Segment, SegmentInput};
use crate::wal::{self, WalOp, WalWriter};

const MANIFEST: &str = "MANIFEST";
const MANIFEST_MAGIC: &[u8; 8] = b"NSPMANIF";
const MANIFEST_VERSION: u32 = 1;
const LOCK: &str = "LOCK";
/// Default WordPiece vocabulary size (bert-base-uncased).
pub const DEFAULT_VOCAB_SIZE: u32 = 30_522;
/// Longest accepted `_id`, in bytes.
pub const MAX_ID_BYTES: usize = 4096;

/// A document to index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Document {
    /// User-chosen unique identifier (`_id`).
    pub id: String,
    /// Sparse vector `(token id, weight)`; weights finite, `0 ≤ w ≤ 65504`, token ids unique.
    pub vector: Vec<(u32, f32)>,
    /// Optional WordPiece token-id sequence of the text, for BM25.
    pub tokens: Option<Vec<u32>>,
    /// Stored source (typically the user's JSON), returned with hits; stored lz4-compressed.
    pub source: Vec<u8>,
}

/// BM25 parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bm25Params {
    /// Term-frequency saturation (default 1.2).
    pub k1: f32,
    /// Length normalisation (default 0.75).
    pub b: f32,
}

impl Default for Bm25Params {
    fn default() -> Self {
        Bm25Params { k1: 1.2, b: 0.75 }
    }
}

/// Settings fixed when the index is created.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Opaque identity of the encoder model; searches with another model are refused by the CLI.
    pub model: String,
    /// Free-form metadata stored in the manifest.
    pub metadata: serde_json::Value,
    /// Token ids must be `< vocab_size` (at most 65,536).
    pub vocab_size: u32,
    /// BM25 scorer parameters.
    pub bm25: Bm25Params,
}

impl CreateOptions {
    /// Options for `model` with defaults (bert-base-uncased vocabulary, BM25 k1=1.2 b=0.75).
    pub fn new(model: impl Into<String>) -> Self {
        CreateOptions {
            model: model.into(),
            metadata: serde_json::Value::Object(Default::default()),
            vocab_size: DEFAULT_VOCAB_SIZE,
            bm25: Bm25Params::default(),
        }
    }
}

/// Writer tuning (not stored in the index).
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// Buffered documents that trigger an automatic [`Index::commit`].
    pub flush_docs: usize,
    /// Log-merge factor: this many segments of one size tier are merged into one.
    pub merge_factor: usize,
    /// Threads that build and write a segment (bulk loads, commits,
    /// merges); 0 uses every core, up to 8. Segments of fewer than 64k
    /// documents are built on one thread. The files do not depend on it.
    pub build_threads: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            flush_docs: 50_000,
            merge_factor: 8,
            build_threads: 0,
        }
    }
}

/// Summary of an index, from the manifest and live state.
#[derive(Debug, Clone, Serialize)]
pub struct IndexInfo {
    /// Model identity given at creation.
    pub model: String,
    /// Free-form metadata given at creation.
    pub metadata: serde_json::Value,
    /// Vocabulary size.
    pub vocab_size: u32,
    /// BM25 parameters.
    pub bm25: Bm25Params,
    /// Committed segments.
    pub segments: usize,
    /// Live (searchable) documents, including uncommitted ones.
    pub live_docs: u64,
    /// Deleted documents still occupying committed segments (purged by merges).
    pub deleted_docs: u64,
    /// Documents buffered in memory (durable in the WAL, not yet in a segment).
    pub buffered_docs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SegmentMeta {
    id: u64,
    file: String,
    n_docs: u32,
    deletes: Option<String>,
    n_deleted: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    model: String,
    metadata: serde_json::Value,
    vocab_size: u32,
    bm25: Bm25Params,
    generation: u64,
    next_segment: u64,
    wal: String,
    segments: Vec<SegmentMeta>,
}

impl Manifest {
    fn load(dir: &Path) -> Result<Manifest> {
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
        let secs = format::read_container(&path, &bytes, MANIFEST_MAGIC, MANIFEST_VERSION)?;
        let body = format::section(&path, &secs, 1)?;
        let m: Manifest = serde_json::from_slice(body)
            .map_err(|e| Error::corrupt(&path, format!("manifest JSON: {e}")))?;
        if m.vocab_size == 0 || m.vocab_size > 65536 {
            return Err(Error::corrupt(&path, "vocab_size out of range"));
        }
        Ok(m)
    }
    fn to_bytes(&self) -> Result<Vec<u8>> {
        let body = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::invalid("manifest", e.to_string()))?;
        Ok(format::write_container(
            MANIFEST_MAGIC,
            MANIFEST_VERSION,
            &[(1, &body)],
        ))
    }
    fn store(&self, dir: &Path) -> Result<()> {
        format::write_atomic(dir, MANIFEST, &self.to_bytes()?)
    }
}

/// A committed segment as tracked by the writer.
#[derive(Clone)]
struct SegEntry {
    id: u64,
    file: String,
    seg: Arc<Segment>,
    del: Arc<Bitset>,
    del_file: Option<String>,
    del_dirty: bool,
}

#[derive(Clone, Copy, Debug)]
enum Loc {
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
struct State {
    dir: PathBuf,
    vocab: u32,
    segments: Vec<SegEntry>,
    buffer: Vec<Option<DocRecord>>,
    buf_live: usize,
    /// `_id` → position in `buffer` of the buffered documents. Committed
    /// documents are found through their segments' own `_id` indexes: an
    /// `_id` is live in at most one place, so no global map is needed (it
    /// had cost a String copy and a hash insert per document at every build
    /// and open).
    buf_ids: HashMap<String, usize>,
    cached: Option<Searcher>,
    info: Arc<crate::search::SnapInfo>,
}

impl State {
    fn load(dir: &Path, m: &Manifest) -> Result<State> {
        let mut segments: Vec<SegEntry> = Vec::with_capacity(m.segments.len());
        for sm in &m.segments {
            check_name(dir, &sm.file)?;
            let path = dir.join(&sm.file);
            let seg = Segment::load(&path)?;
            if seg.n_docs != sm.n_docs || seg.vocab != m.vocab_size {
                return Err(Error::corrupt(
                    &path,
                    "segment disagrees with the manifest (doc count or vocabulary)",
                ));
            }
            let del = match &sm.deletes {
                Some(f) => {
                    check_name(dir, f)?;
                    Bitset::load(&dir.join(f), seg.n_docs)?
                }
                None => Bitset::new(seg.n_docs),
            };
            if del.count != sm.n_deleted {
                return Err(Error::corrupt(
                    dir.join(MANIFEST),
                    format!("deleted count of {} disagrees with its bitmap", sm.file),
                ));
            }
            // An `_id` is live in at most one segment.
            if !segments.is_empty() {
                for (i, id) in seg.ids.iter().enumerate() {
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
        Ok(State {
            dir: dir.to_path_buf(),
            vocab: m.vocab_size,
            segments,
            buffer: Vec::new(),
            buf_live: 0,
            buf_ids: HashMap::new(),
            cached: None,
            info: Arc::new(crate::search::SnapInfo {
                model: m.model.clone(),
                metadata: m.metadata.clone(),
                vocab: m.vocab_size,
                bm25: m.bm25,
            }),
        })
    }

    /// Where the live document `id` is, if anywhere.
    fn locate(&self, id: &str) -> Option<Loc> {
        if let Some(&i) = self.buf_ids.get(id) {
            return Some(Loc::Buf(i));
        }
        live_in(&self.segments, id)
    }

    /// Number of live documents.
    fn live_docs(&self) -> u64 {
        let committed: u64 = self
            .segments
            .iter()
            .map(|e| (e.seg.n_docs - e.del.count) as u64)
            .sum();
        committed + self.buf_live as u64
    }

    fn remove(&mut self, id: &str) -> bool {
        self.take(id).is_some()
    }

    /// Removes the live document `id`: `None` if there was none, `Some(Some(record))` if it
    /// was buffered (so a failed bulk load can put it back), `Some(None)` if it was committed.
    fn take(&mut self, id: &str) -> Option<Option<DocRecord>> {
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
    fn take_buffer(&mut self) -> Vec<DocRecord> {
        self.buf_live = 0;
        self.buf_ids.clear();
        self.cached = None;
        std::mem::take(&mut self.buffer)
            .into_iter()
            .flatten()
            .collect()
    }

    /// Puts documents taken by [`State::take_buffer`] back, ahead of anything buffered since.
    fn restore_buffer(&mut self, recs: Vec<DocRecord>) {
        let later = std::mem::take(&mut self.buffer);
        self.buf_ids.clear();
        self.buf_live = 0;
        for rec in recs.into_iter().chain(later.into_iter().flatten()) {
            self.upsert(rec);
        }
    }

    fn upsert(&mut self, rec: DocRecord) {
        self.remove(&rec.id);
        self.buf_ids.insert(rec.id.clone(), self.buffer.len());
        self.buffer.push(Some(rec));
        self.buf_live += 1;
        self.cached = None;
    }

    fn apply(&mut self, op: WalOp, wal: &Path) -> Result<()> {
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
        }
        Ok(())
    }

    fn snapshot(&mut self) -> Searcher {
        if let Some(s) = &self.cached {
            return s.clone();
        }
        let mut segs: Vec<SnapSeg> = self
            .segments
            .iter()
            .map(|e| SnapSeg {
                seg: e.seg.clone(),
                del: (e.del.count > 0).then(|| e.del.clone()),
                path: self.dir.join(&e.file),
            })
            .collect();
        if self.buf_live > 0 {
            let recs: Vec<DocRecord> = self.buffer.iter().flatten().cloned().collect();
            segs.push(SnapSeg {
                seg: Arc::new(Segment::build(&recs[..], self.vocab)),
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

fn check_name(dir: &Path, name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') || name.contains('\\') || name.starts_with('.') {
        return Err(Error::corrupt(
            dir.join(MANIFEST),
            format!("bad file name {name:?} in manifest"),
        ));
    }
    Ok(())
}

/// Check a document's `_id` and source size.
fn check_id(doc: &Document) -> Result<()> {
    if doc.id.is_empty() {
        return Err(Error::invalid(
            "document",
            "empty _id (give every document a non-empty _id)",
        ));
    }
    if doc.id.len() > MAX_ID_BYTES {
        return Err(Error::invalid(
            format!("document {:?}", doc.id),
            format!("_id is {} bytes, the limit is {MAX_ID_BYTES}", doc.id.len()),
        ));
    }
    if doc.source.len() > u32::MAX as usize {
        return Err(Error::invalid(
            format!("document {:?}", doc.id),
            "source larger than 4 GiB",
        ));
    }
    Ok(())
}

/// Whether `v`'s tokens strictly ascend below `vocab` and every weight is
/// in `[MIN_WEIGHT / 2, MAX_WEIGHT]`: valid, and kept by quantization
/// ([`crate::format::is_kept`]). The common case, settled by one pass
/// without early exits (a third of the time of the checking loop below,
/// which finds and names the problem, and counts the dropped weights).
fn is_clean_sorted_vector(v: &[(u32, f32)], vocab: u32) -> bool {
    let Some(&(last, _)) = v.last() else {
        return true;
    };
    let keep_bits = (crate::format::MIN_WEIGHT / 2.0).to_bits();
    let span = MAX_WEIGHT.to_bits() - keep_bits;
    // Non-negative floats order like their bits, so one unsigned range
    // check on the bits rejects NaN, infinities, negative values (sign bit
    // set) and weights quantization drops, zeros included.
    let odd_weight = |w: f32| (w.to_bits().wrapping_sub(keep_bits) > span) as u32;
    // The previous token rides in a register, flags are OR-ed as integers
    // and the loop is unrolled by eight: ~1.25 instead of ~1.75 ns per
    // posting over vectors in memory (BENCHMARKS.md, session 13).
    let mut odd = odd_weight(v[0].1);
    let mut prev = v[0].0;
    let mut chunks = v[1..].chunks_exact(8);
    for c in &mut chunks {
        for &(t, w) in c {
            odd |= (prev >= t) as u32 | odd_weight(w);
            prev = t;
        }
    }
    for &(t, w) in chunks.remainder() {
        odd |= (prev >= t) as u32 | odd_weight(w);
        prev = t;
    }
    odd == 0 && last < vocab
}

/// Validate a vector whose tokens are ascending (`v` may be the caller's own
/// slice: no copy): the number of postings it gives (weights that quantize
/// to zero are dropped), or `None` when its tokens are not ascending,
/// nothing else checked.
fn check_sorted_vector(id: &str, v: &[(u32, f32)], vocab: u32) -> Result<Option<usize>> {
    if is_clean_sorted_vector(v, vocab) {
        return Ok(Some(v.len()));
    }
    let kept = || v.iter().filter(|p| crate::format::is_kept(p.1)).count();
    Ok(check_sorted_vector_in_full(id, v, vocab)?.then(kept))
}

/// [`check_sorted_vector`] posting by posting, naming the first problem.
fn check_sorted_vector_in_full(id: &str, v: &[(u32, f32)], vocab: u32) -> Result<bool> {
    let what = || format!("document {id:?}");
    let mut prev: Option<u32> = None;
    for &(t, w) in v {
        if let Some(p) = prev {
            if t < p {
                return Ok(false);
            }
            if t == p {
                return Err(Error::invalid(
                    what(),
                    format!("token id {t} appears twice (merge duplicate tokens first)"),
                ));
            }
        }
        prev = Some(t);
        if t >= vocab {
            return Err(Error::invalid(
                what(),
                format!("token id {t} is outside the vocabulary (size {vocab})"),
            ));
        }
        if !w.is_finite() || !(0.0..=MAX_WEIGHT).contains(&w) {
            return Err(Error::invalid(
                what(),
                format!("weight {w} of token {t} must be finite and in [0, {MAX_WEIGHT}]"),
            ));
        }
    }
    Ok(true)
}

/// Validate and quantize a vector: (token, quantized weight), tokens
/// ascending, zero-quantized weights dropped.
fn quantized_vector(doc: &Document, vocab: u32) -> Result<Vec<(u16, u16)>> {
    let sorted_copy;
    let v: &[(u32, f32)] = if check_sorted_vector(&doc.id, &doc.vector, vocab)?.is_some() {
        &doc.vector
    } else {
        let mut c = doc.vector.clone();
        c.sort_unstable_by_key(|p| p.0);
        sorted_copy = c;
        check_sorted_vector(&doc.id, &sorted_copy, vocab)?;
        &sorted_copy
    };
    Ok(v.iter()
        .filter_map(|&(t, w)| {
            let q = quantize(w);
            (q != 0).then_some((t as u16, q))
        })
        .collect())
}

/// BM25 term frequencies and length from a document's token list.
fn term_frequencies(doc: &Document, vocab: u32) -> Result<(Vec<(u16, u32)>, u32)> {
    let Some(ts) = &doc.tokens else {
        return Ok((Vec::new(), 0));
    };
    if ts.len() > u32::MAX as usize {
        return Err(Error::invalid(
            format!("document {:?}", doc.id),
            "too many tokens",
        ));
    }
    let mut s = ts.clone();
    s.sort_unstable();
    let mut tf: Vec<(u16, u32)> = Vec::new();
    for &t in &s {
        if t >= vocab {
            return Err(Error::invalid(
                format!("document {:?}", doc.id),
                format!("BM25 token id {t} is outside the vocabulary (size {vocab})"),
            ));
        }
        match tf.last_mut() {
            Some(l) if l.0 as u32 == t => l.1 += 1,
            _ => tf.push((t as u16, 1)),
        }
    }
    Ok((tf, ts.len() as u32))
}

/// Validate and quantize a document.
pub(crate) fn prepare(doc: &Document, vocab: u32) -> Result<DocRecord> {
    check_id(doc)?;
    let vec = quantized_vector(doc, vocab)?;
    let (tf, len) = term_frequencies(doc, vocab)?;
    Ok(DocRecord {
        id: doc.id.clone(),
        vec,
        tf,
        len,
        source: doc.source.clone(),
    })
}

/// The documents of one [`Index::bulk_upsert`], validated, read in place by
/// the segment builder: vectors whose tokens arrive ascending (the usual
/// case) are quantized on the fly and never copied.
struct BulkInput<'a> {
    docs: Vec<&'a Document>,
    /// Quantized copies of the vectors that were not in token order, by position in `docs`.
    resorted: HashMap<usize, Vec<(u16, u16)>>,
    /// Per document: its postings (weights that quantize to zero dropped).
    kept: Vec<u32>,
    tf: Vec<(Vec<(u16, u32)>, u32)>,
}

impl<'a> BulkInput<'a> {
    /// Validate every document (on all cores); the first bad one, in batch
    /// order, is the error.
    fn new(docs: Vec<&'a Document>, vocab: u32, threads: usize) -> Result<BulkInput<'a>> {
        type Checked = (
            HashMap<usize, Vec<(u16, u16)>>,
            Vec<u32>,
            Vec<(Vec<(u16, u32)>, u32)>,
        );
        let check = |range: std::ops::Range<usize>| -> Result<Checked> {
            let mut resorted = HashMap::new();
            let mut kept = Vec::with_capacity(range.len());
            let mut tf = Vec::with_capacity(range.len());
            for i in range {
                let d = docs[i];
                check_id(d)?;
                match check_sorted_vector(&d.id, &d.vector, vocab)? {
                    Some(k) => kept.push(k as u32),
                    None => {
                        let q = quantized_vector(d, vocab)?;
                        kept.push(q.len() as u32);
                        resorted.insert(i, q);
                    }
                }
                tf.push(term_frequencies(d, vocab)?);
            }
            Ok((resorted, kept, tf))
        };
        // The same split as the segment build that follows.
        let n = docs.len();
        let ranges = crate::segment::doc_ranges(n, crate::segment::build_threads(n, threads));
        let results = crate::segment::per_range(&ranges, check);
        let mut resorted = HashMap::new();
        let mut kept = Vec::with_capacity(docs.len());
        let mut tf = Vec::with_capacity(docs.len());
        for r in results {
            let (re, k, t) = r?;
            resorted.extend(re);
            kept.extend(k);
            tf.extend(t);
        }
        Ok(BulkInput {
            docs,
            resorted,
            kept,
            tf,
        })
    }
}

impl BulkInput<'_> {
    /// The quantized, re-sorted copy of document `i`'s vector, if its input
    /// was not in token order (otherwise the caller's vector is read in place).
    #[inline]
    fn resorted_vector(&self, i: usize) -> Option<&[(u16, u16)]> {
        // Most batches are sorted: skip the hash lookup per document.
        if self.resorted.is_empty() {
            return None;
        }
        self.resorted.get(&i).map(Vec::as_slice)
    }
}

impl SegmentInput for BulkInput<'_> {
    fn n_docs(&self) -> usize {
        self.docs.len()
    }
    fn id(&self, i: usize) -> &str {
        &self.docs[i].id
    }
    #[inline]
    fn for_each_posting(&self, i: usize, mut f: impl FnMut(u16, u16)) {
        if let Some(v) = self.resorted_vector(i) {
            for &(t, w) in v {
                f(t, w);
            }
            return;
        }
        for &(t, w) in &self.docs[i].vector {
            let q = quantize(w);
            if q != 0 {
                f(t as u16, q);
            }
        }
    }
    #[inline]
    fn count_postings(&self, i: usize, df: &mut [u32]) {
        if let Some(v) = self.resorted_vector(i) {
            for &(t, _) in v {
                df[t as usize] += 1;
            }
            return;
        }
        // Branch-free: a validated weight is kept exactly when it is not
        // below half the smallest one ([`crate::format::is_kept`]).
        for &(t, w) in &self.docs[i].vector {
            df[t as usize] += crate::format::is_kept(w) as u32;
        }
    }
    fn n_postings(&self, i: usize) -> usize {
        self.kept[i] as usize
    }
    fn tf(&self, i: usize) -> &[(u16, u32)] {
        &self.tf[i].0
    }
    fn doc_len(&self, i: usize) -> u32 {
        self.tf[i].1
    }
    fn source(&self, i: usize) -> &[u8] {
        &self.docs[i].source
    }
}

fn seg_file(id: u64) -> String {
    format!("seg-{id:08}.seg")
}

/// Writer handle of an index directory (one per directory, enforced by a lock file).
///
/// Every `add`/`upsert`/`delete` is appended to the write-ahead log and fsynced
/// before it returns: an acknowledged write survives a crash. Writes are visible
/// to new [`Searcher`]s at once; [`Index::commit`] moves buffered documents into
/// an immutable segment (it also runs automatically every `flush_docs` documents).
pub struct Index {
    dir: PathBuf,
    _lock: File,
    manifest: Manifest,
    state: State,
    wal: WalWriter,
    opts: WriterOptions,
    /// Set when a commit's manifest was renamed into place but the directory fsync that makes
    /// the rename durable failed: the files that commit made obsolete (the old WAL among
    /// them) are kept, and every later write first retries the fsync.
    unsynced_commit: Option<Vec<String>>,
    /// After a failed automatic commit, the next one is not tried before this instant, so a
    /// full disk does not cost a segment build per write.
    auto_commit_after: Option<std::time::Instant>,
}

/// How long a failed automatic commit waits before it is tried again.
const AUTO_COMMIT_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// The writer's committed state before a commit, restored if the commit fails.
struct Checkpoint {
    segments: Vec<SegEntry>,
    manifest: Manifest,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn lock_dir(dir: &Path) -> Result<File> {
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

impl Index {
    /// Create a new index in `dir` (created if missing; must not already hold an index).
    pub fn create(
        dir: impl AsRef<Path>,
        options: &CreateOptions,
        writer: WriterOptions,
    ) -> Result<Index> {
        let dir = dir.as_ref();
        if options.vocab_size == 0 || options.vocab_size > 65536 {
            return Err(Error::invalid(
                "create options",
                "vocab_size must be in 1..=65536",
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let lock = lock_dir(dir)?;
        if dir.join(MANIFEST).exists() {
            return Err(Error::AlreadyExists {
                path: dir.to_path_buf(),
            });
        }
        let wal_name = "wal-00000001.log".to_string();
        let wal_path = dir.join(&wal_name);
        let _ = std::fs::remove_file(&wal_path);
        let created = Self::create_files(dir, options, &wal_name);
        if created.is_err() {
            // Nothing was acknowledged yet: leave no half-made index that a retry would
            // mistake for an existing one.
            for name in [MANIFEST, &wal_name] {
                let _ = std::fs::remove_file(dir.join(name));
            }
        }
        let (manifest, wal) = created?;
        let state = State::load(dir, &manifest)?;
        tracing::info!(dir = %dir.display(), model = %options.model, "created index");
        Ok(Index {
            dir: dir.to_path_buf(),
            _lock: lock,
            manifest,
            state,
            wal,
            opts: writer,
            unsynced_commit: None,
            auto_commit_after: None,
        })
    }

    /// The first WAL and manifest of a new index.
    fn create_files(
        dir: &Path,
        options: &CreateOptions,
        wal_name: &str,
    ) -> Result<(Manifest, WalWriter)> {
        let wal = WalWriter::create(&dir.join(wal_name))?;
        let manifest = Manifest {
            model: options.model.clone(),
            metadata: options.metadata.clone(),
            vocab_size: options.vocab_size,
            bm25: options.bm25,
            generation: 1,
            next_segment: 1,
            wal: wal_name.to_string(),
            segments: Vec::new(),
        };
        manifest.store(dir)?;
        Ok((manifest, wal))
    }

    /// Open an existing index for writing: takes the lock, verifies every file,
    /// replays the WAL (dropping a torn, unacknowledged tail) and removes files
    /// left over by an interrupted commit.
    pub fn open(dir: impl AsRef<Path>, writer: WriterOptions) -> Result<Index> {
        let dir = dir.as_ref();
        if !dir.join(MANIFEST).exists() {
            return Err(Error::NotAnIndex {
                path: dir.to_path_buf(),
            });
        }
        let lock = lock_dir(dir)?;
        let manifest = Manifest::load(dir)?;
        let mut state = State::load(dir, &manifest)?;
        check_name(dir, &manifest.wal)?;
        let wal_path = dir.join(&manifest.wal);
        let contents = wal::read(&wal_path)?;
        if contents.torn_complete {
            // A record of complete length that fails its checksum may be an acknowledged
            // write damaged on disk: keep its bytes rather than cut them off silently.
            let kept = wal::keep_dropped_tail(dir, &manifest.wal, contents.valid_len)?;
            tracing::error!(wal = %wal_path.display(), offset = contents.valid_len, bytes = contents.torn_bytes, kept = %kept,
                "the WAL's last record fails its checksum: a write torn by a crash (never acknowledged) or damage to the last acknowledged write; it is not applied, and its bytes are kept in the named file");
        } else if contents.torn_bytes > 0 {
            tracing::warn!(wal = %wal_path.display(), offset = contents.valid_len, bytes = contents.torn_bytes,
                "dropping an incomplete WAL record (a write torn by a crash, never acknowledged)");
        }
        for op in contents.ops {
            state.apply(op, &wal_path)?;
        }
        let wal = WalWriter::reopen(&wal_path, contents.valid_len)?;
        let mut idx = Index {
            dir: dir.to_path_buf(),
            _lock: lock,
            manifest,
            state,
            wal,
            opts: writer,
            unsynced_commit: None,
            auto_commit_after: None,
        };
        idx.remove_unreferenced();
        Ok(idx)
    }

    /// Directory of the index.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Model identity given at creation.
    pub fn model(&self) -> &str {
        &self.manifest.model
    }

    /// Summary of the index.
    pub fn info(&self) -> IndexInfo {
        let deleted: u64 = self.state.segments.iter().map(|e| e.del.count as u64).sum();
        IndexInfo {
            model: self.manifest.model.clone(),
            metadata: self.manifest.metadata.clone(),
            vocab_size: self.manifest.vocab_size,
            bm25: self.manifest.bm25,
            segments: self.state.segments.len(),
            live_docs: self.state.live_docs(),
            deleted_docs: deleted,
            buffered_docs: self.state.buf_live as u64,
        }
    }

    /// True if `id` is a live document.
    pub fn contains(&self, id: &str) -> bool {
        self.state.locate(id).is_some()
    }

    /// Add a new document; fails with [`Error::DuplicateId`] if `_id` is live. Durable on return.
    pub fn add(&mut self, doc: &Document) -> Result<()> {
        self.add_batch(std::slice::from_ref(doc))
    }

    /// Add several new documents with one fsync; all-or-nothing validation.
    pub fn add_batch(&mut self, docs: &[Document]) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        for d in docs {
            if self.state.locate(&d.id).is_some() || !seen.insert(d.id.as_str()) {
                return Err(Error::DuplicateId { id: d.id.clone() });
            }
        }
        self.write_docs(docs)
    }

    /// Insert or replace (by `_id`) a document. Durable on return.
    pub fn upsert(&mut self, doc: &Document) -> Result<()> {
        self.write_docs(std::slice::from_ref(doc))
    }

    /// Upsert several documents with one fsync (later duplicates win).
    pub fn upsert_batch(&mut self, docs: &[Document]) -> Result<()> {
        self.write_docs(docs)
    }

    fn write_docs(&mut self, docs: &[Document]) -> Result<()> {
        let recs = docs
            .iter()
            .map(|d| prepare(d, self.manifest.vocab_size))
            .collect::<Result<Vec<_>>>()?;
        let ops: Vec<WalOp> = docs
            .iter()
            .map(|d| WalOp::Upsert {
                id: d.id.clone(),
                vector: d.vector.clone(),
                tokens: d.tokens.clone(),
                source: d.source.clone(),
            })
            .collect();
        self.sync_unsynced_commit()?;
        self.wal.append(&ops)?;
        // Acknowledged from here on: the WAL holds them until a durable commit does.
        for r in recs {
            self.state.upsert(r);
        }
        self.auto_commit();
        Ok(())
    }

    /// Commits once the buffer holds `flush_docs` documents. A failure does not fail the
    /// write that triggered it (that write is in the WAL): it is logged and retried after
    /// [`AUTO_COMMIT_RETRY`].
    fn auto_commit(&mut self) {
        if self.state.buf_live < self.opts.flush_docs.max(1) {
            return;
        }
        let now = std::time::Instant::now();
        if self.auto_commit_after.is_some_and(|t| now < t) {
            return;
        }
        match self.commit() {
            Ok(()) => self.auto_commit_after = None,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "automatic commit failed; the documents stay in the WAL and the commit is retried");
                self.auto_commit_after = Some(now + AUTO_COMMIT_RETRY);
            }
        }
    }

    /// Bulk load: build one segment straight from `docs` and commit it —
    /// durable on return (commit-before-ack), without logging every document
    /// in the WAL. Upsert semantics: live documents with the same `_id` are
    /// replaced; within `docs` the last duplicate wins. The fast path for
    /// building an index from a file of vectors.
    pub fn bulk_upsert(&mut self, docs: &[Document]) -> Result<()> {
        let started = std::time::Instant::now();
        // Last duplicate wins: keep a document only if no later one has its
        // `_id`. The common case, no duplicates, is settled by one `_id`
        // index over the batch (no string copies).
        // Without duplicates the batch's index is also the new segment's.
        let batch_index = crate::id_index::IdIndex::build_with(docs.len(), |i| docs[i].id.as_str());
        let kept: Vec<&Document> = if batch_index.is_ok() {
            docs.iter().collect()
        } else {
            let mut last: HashMap<&str, usize> = HashMap::with_capacity(docs.len());
            for (i, d) in docs.iter().enumerate() {
                last.insert(d.id.as_str(), i);
            }
            docs.iter()
                .enumerate()
                .filter(|(i, d)| last.get(d.id.as_str()) == Some(i))
                .map(|(_, d)| d)
                .collect()
        };
        let t0 = std::time::Instant::now();
        let dedup = t0 - started;
        let input = BulkInput::new(kept, self.manifest.vocab_size, self.opts.build_threads)?;
        let validated = t0.elapsed();
        self.sync_unsynced_commit()?;
        let before = self.checkpoint();
        let mut replaced_buffered = Vec::new();
        for d in &input.docs {
            if let Some(Some(rec)) = self.state.take(&d.id) {
                replaced_buffered.push(rec);
            }
        }
        let mut added = validated;
        let written = (|| {
            if !input.docs.is_empty() {
                self.add_segment(&input, None, batch_index.ok())?;
            }
            added = t0.elapsed();
            // Persist together with any buffered writes and the deletions above.
            self.commit_forced()
        })();
        drop(input);
        if let Err(e) = written {
            self.roll_back(before);
            self.state.restore_buffer(replaced_buffered);
            return Err(e);
        }
        tracing::debug!(
            docs = docs.len(),
            dedup_ms = dedup.as_millis() as u64,
            validate_ms = validated.as_millis() as u64,
            segment_ms = (added - validated).as_millis() as u64,
            commit_ms = (t0.elapsed() - added).as_millis() as u64,
            "bulk upsert"
        );
        Ok(())
    }

    /// Delete by `_id`; returns whether it existed. Durable and invisible to new searchers on return.
    pub fn delete(&mut self, id: &str) -> Result<bool> {
        if self.state.locate(id).is_none() {
            return Ok(false);
        }
        self.sync_unsynced_commit()?;
        self.wal.append(&[WalOp::Delete { id: id.to_string() }])?;
        Ok(self.state.remove(id))
    }

    /// A consistent point-in-time view for searching (cheap to clone, `Send + Sync`);
    /// later writes do not affect it.
    pub fn searcher(&mut self) -> Searcher {
        self.state.snapshot()
    }

    /// Write buffered documents to a new segment and pending deletes to
    /// bitmaps, run the merge policy, switch the manifest atomically and start
    /// a fresh WAL. Does nothing if there is nothing to commit.
    pub fn commit(&mut self) -> Result<()> {
        let dirty = self.state.buf_live > 0 || self.state.segments.iter().any(|e| e.del_dirty);
        if !dirty {
            return Ok(());
        }
        self.commit_forced()
    }

    /// Commits whatever is buffered or deleted, as one transaction: on `Err` the writer is
    /// exactly as before (buffer, segments, manifest; the WAL still holds every
    /// acknowledged write) and the files the attempt wrote are removed, so it can be retried.
    fn commit_forced(&mut self) -> Result<()> {
        self.sync_unsynced_commit()?;
        let before = self.checkpoint();
        let recs = self.state.take_buffer();
        match self.write_commit(&recs) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.roll_back(before);
                self.state.restore_buffer(recs);
                Err(e)
            }
        }
    }

    /// The state a failed commit returns to.
    fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            segments: self.state.segments.clone(),
            manifest: self.manifest.clone(),
        }
    }

    /// Returns to `before` after a failed commit, and removes the files the attempt left.
    fn roll_back(&mut self, before: Checkpoint) {
        // Segment numbers are never reused, so a half-written file of the failed attempt
        // can never be mistaken for a later segment.
        let next_segment = self.manifest.next_segment;
        self.state.segments = before.segments;
        self.manifest = before.manifest;
        self.manifest.next_segment = next_segment;
        self.state.cached = None;
        self.remove_unreferenced();
    }

    /// Retries the directory fsync of a commit whose manifest rename is not yet known to be
    /// durable; once it succeeds, the files that commit made obsolete are removed.
    fn sync_unsynced_commit(&mut self) -> Result<()> {
        let Some(obsolete) = self.unsynced_commit.take() else {
            return Ok(());
        };
        if let Err(e) = format::fsync_dir(&self.dir) {
            self.unsynced_commit = Some(obsolete);
            return Err(e);
        }
        self.remove_files(obsolete);
        Ok(())
    }

    fn write_commit(&mut self, recs: &[DocRecord]) -> Result<()> {
        let mut obsolete: Vec<String> = Vec::new();
        if !recs.is_empty() {
            self.add_segment(recs, None, None)?;
        }
        // Drop fully deleted segments; persist changed deletion bitmaps.
        let gen = self.manifest.generation + 1;
        let mut keep = Vec::new();
        for mut e in std::mem::take(&mut self.state.segments) {
            if e.del.count == e.seg.n_docs {
                obsolete.push(e.file.clone());
                obsolete.extend(e.del_file.clone());
                continue;
            }
            if e.del_dirty {
                let name = format!("seg-{:08}-{gen:08}.del", e.id);
                format::write_atomic(&self.dir, &name, &e.del.to_bytes(e.seg.n_docs))?;
                if let Some(old) = e.del_file.replace(name) {
                    obsolete.push(old);
                }
                e.del_dirty = false;
            }
            keep.push(e);
        }
        self.state.segments = keep;
        obsolete.extend(self.merge_policy()?);
        self.switch_manifest(gen, obsolete)
    }

    /// Merge until at most `max_segments` segments remain (purging deleted docs), then commit.
    pub fn force_merge(&mut self, max_segments: usize) -> Result<()> {
        self.commit()?;
        let max_segments = max_segments.max(1);
        let any_deleted = self.state.segments.iter().any(|e| e.del.count > 0);
        if self.state.segments.len() <= max_segments && !(max_segments == 1 && any_deleted) {
            return Ok(());
        }
        let before = self.checkpoint();
        let merged = self.merge_down(max_segments);
        if merged.is_err() {
            self.roll_back(before);
        }
        merged
    }

    fn merge_down(&mut self, max_segments: usize) -> Result<()> {
        let mut obsolete = Vec::new();
        while self.state.segments.len() > max_segments
            || (max_segments == 1 && self.state.segments.iter().any(|e| e.del.count > 0))
        {
            let mut order: Vec<(u32, u64)> = self
                .state
                .segments
                .iter()
                .map(|e| (e.seg.n_docs - e.del.count, e.id))
                .collect();
            order.sort_unstable();
            let take = (self.state.segments.len() - max_segments + 1).min(order.len());
            let ids: Vec<u64> = order[..take].iter().map(|x| x.1).collect();
            obsolete.extend(self.merge(&ids)?);
        }
        let gen = self.manifest.generation + 1;
        self.switch_manifest(gen, obsolete)
    }

    fn add_segment<D: SegmentInput + ?Sized>(
        &mut self,
        docs: &D,
        replace: Option<usize>,
        id_index: Option<crate::id_index::IdIndex>,
    ) -> Result<u64> {
        let id = self.manifest.next_segment;
        self.manifest.next_segment += 1;
        let t0 = std::time::Instant::now();
        let name = seg_file(id);
        let seg = Segment::build_and_write(
            docs,
            self.manifest.vocab_size,
            &self.dir,
            &name,
            id_index,
            self.opts.build_threads,
        )?;
        tracing::debug!(
            segment = id,
            docs = seg.n_docs,
            build_and_write_ms = t0.elapsed().as_millis() as u64,
            "built and wrote segment"
        );
        let n = seg.n_docs;
        let e = SegEntry {
            id,
            file: name,
            seg: Arc::new(seg),
            del: Arc::new(Bitset::new(n)),
            del_file: None,
            del_dirty: false,
        };
        match replace {
            Some(pos) => self.state.segments.insert(pos, e),
            None => self.state.segments.push(e),
        }
        self.state.cached = None;
        Ok(id)
    }

    /// Merge the given segments into one; returns the files made obsolete.
    fn merge(&mut self, ids: &[u64]) -> Result<Vec<String>> {
        let mut recs = Vec::new();
        let mut obsolete = Vec::new();
        let mut pos = usize::MAX;
        for &sid in ids {
            let Some(i) = self.state.segments.iter().position(|e| e.id == sid) else {
                continue;
            };
            pos = pos.min(i);
            let e = &self.state.segments[i];
            let path = self.dir.join(&e.file);
            let del = e.del.clone();
            recs.extend(e.seg.records(&path, |d| !del.get(d))?);
        }
        for &sid in ids {
            if let Some(i) = self.state.segments.iter().position(|e| e.id == sid) {
                let e = self.state.segments.remove(i);
                obsolete.push(e.file);
                obsolete.extend(e.del_file);
            }
        }
        let n = recs.len();
        if n > 0 {
            self.add_segment(&recs[..], Some(pos.min(self.state.segments.len())), None)?;
        }
        self.state.cached = None;
        tracing::info!(merged = ids.len(), docs = n, "merged segments");
        Ok(obsolete)
    }

    /// Log-structured policy: merge `merge_factor` segments of the same size tier.
    fn merge_policy(&mut self) -> Result<Vec<String>> {
        let mf = self.opts.merge_factor.max(2);
        let base = self.opts.flush_docs.max(1) as u64;
        let mut obsolete = Vec::new();
        loop {
            let mut tiers: HashMap<u32, Vec<(u64, u64)>> = HashMap::new();
            for e in &self.state.segments {
                let live = (e.seg.n_docs - e.del.count) as u64;
                let mut t = 0u32;
                let mut cap = base * mf as u64;
                while live >= cap && t < 40 {
                    t += 1;
                    cap = cap.saturating_mul(mf as u64);
                }
                tiers.entry(t).or_default().push((live, e.id));
            }
            let mut cand: Vec<(u32, Vec<(u64, u64)>)> =
                tiers.into_iter().filter(|(_, v)| v.len() >= mf).collect();
            cand.sort_by_key(|c| c.0);
            let Some((_, mut segs)) = cand.into_iter().next() else {
                break;
            };
            segs.sort_unstable();
            let ids: Vec<u64> = segs[..mf].iter().map(|s| s.1).collect();
            obsolete.extend(self.merge(&ids)?);
        }
        Ok(obsolete)
    }

    fn switch_manifest(&mut self, gen: u64, mut obsolete: Vec<String>) -> Result<()> {
        self.sync_unsynced_commit()?;
        let wal_name = format!("wal-{gen:08}.log");
        let wal_path = self.dir.join(&wal_name);
        let _ = std::fs::remove_file(&wal_path);
        let new_wal = WalWriter::create(&wal_path)?;
        format::fsync_dir(&self.dir)?;
        let mut m = self.manifest.clone();
        m.generation = gen;
        obsolete.push(std::mem::replace(&mut m.wal, wal_name));
        m.segments = self
            .state
            .segments
            .iter()
            .map(|e| SegmentMeta {
                id: e.id,
                file: e.file.clone(),
                n_docs: e.seg.n_docs,
                deletes: e.del_file.clone(),
                n_deleted: e.del.count,
            })
            .collect();
        let tmp = self.dir.join(format!("{MANIFEST}.tmp"));
        let published = m.to_bytes().and_then(|bytes| {
            format::write_tmp(&tmp, &bytes)?;
            format::rename(&tmp, &self.dir.join(MANIFEST))
        });
        if let Err(e) = published {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        // The new manifest is what the directory shows from here on (a crash now opens it),
        // so the writer adopts it whatever happens next.
        self.manifest = m;
        self.wal = new_wal;
        self.state.cached = None;
        match format::fsync_dir(&self.dir) {
            Ok(()) => self.remove_files(obsolete),
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "the new manifest is in place but not yet durable; keeping the old WAL and retrying before the next write");
                self.unsynced_commit = Some(obsolete);
            }
        }
        Ok(())
    }

    fn remove_files(&self, files: Vec<String>) {
        for f in files {
            if let Err(e) = std::fs::remove_file(self.dir.join(&f)) {
                tracing::warn!(file = %f, error = %e, "could not remove obsolete file");
            }
        }
    }

    /// Remove files not referenced by the manifest (left by an interrupted commit).
    fn remove_unreferenced(&mut self) {
        let mut keep: std::collections::HashSet<String> = [
            MANIFEST.to_string(),
            LOCK.to_string(),
            self.manifest.wal.clone(),
        ]
        .into();
        for s in &self.manifest.segments {
            keep.insert(s.file.clone());
            keep.extend(s.deletes.clone());
        }
        keep.extend(self.unsynced_commit.iter().flatten().cloned());
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let ours = name.ends_with(".seg")
                || name.ends_with(".del")
                || name.ends_with(".log")
                || name.ends_with(".tmp");
            if ours && !keep.contains(&name) {
                tracing::info!(file = %name, "removing file left by an interrupted commit");
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// What [`verify`] checked.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Segments verified.
    pub segments: usize,
    /// Documents in segments (including deleted).
    pub segment_docs: u64,
    /// Deleted documents in segments.
    pub deleted_docs: u64,
    /// Live documents (after WAL replay).
    pub live_docs: u64,
    /// Operations in the WAL.
    pub wal_ops: usize,
    /// Bytes of torn (unacknowledged) WAL tail that would be dropped.
    pub wal_torn_bytes: u64,
    /// Total bytes of index files.
    pub bytes: u64,
}

/// Open an index read-only (no lock; a writer may run concurrently): verify
/// every file and replay the WAL in memory. Retries if a concurrent commit
/// removes a file between reading the manifest and the segments.
pub fn open_reader(dir: impl AsRef<Path>) -> Result<Searcher> {
    open_reader_full(dir.as_ref()).map(|x| x.0)
}

fn open_reader_full(dir: &Path) -> Result<(Searcher, VerifyReport)> {
    let mut attempt = 0;
    loop {
        match open_reader_once(dir) {
            Err(Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound && attempt < 5 =>
            {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => return r,
        }
    }
}

fn open_reader_once(dir: &Path) -> Result<(Searcher, VerifyReport)> {
    let m = Manifest::load(dir)?;
    let mut state = State::load(dir, &m)?;
    check_name(dir, &m.wal)?;
    let wal_path = dir.join(&m.wal);
    let contents = wal::read(&wal_path)?;
    let wal_ops = contents.ops.len();
    for op in contents.ops {
        state.apply(op, &wal_path)?;
    }
    let mut bytes = 0u64;
    let mut files = vec![MANIFEST.to_string(), m.wal.clone()];
    for s in &m.segments {
        files.push(s.file.clone());
        files.extend(s.deletes.clone());
    }
    for f in files {
        bytes += std::fs::metadata(dir.join(&f))
            .map(|x| x.len())
            .unwrap_or(0);
    }
    let report = VerifyReport {
        segments: state.segments.len(),
        segment_docs: state.segments.iter().map(|e| e.seg.n_docs as u64).sum(),
        deleted_docs: state.segments.iter().map(|e| e.del.count as u64).sum(),
        live_docs: state.live_docs(),
        wal_ops,
        wal_torn_bytes: contents.torn_bytes,
        bytes,
    };
    Ok((state.snapshot(), report))
}

/// Verify every file of an index (magic, versions, checksums, structure, WAL)
/// without modifying anything.
pub fn verify(dir: impl AsRef<Path>) -> Result<VerifyReport> {
    open_reader_full(dir.as_ref()).map(|x| x.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn the_fast_vector_check_agrees_with_the_full_one() {
        let weights = [
            0.0,
            -0.0,
            1e-9,
            f32::MIN_POSITIVE,
            0.5,
            MAX_WEIGHT,
            f32::from_bits(MAX_WEIGHT.to_bits() + 1),
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            -1.0,
            -1e-30,
            // Either side of the smallest weight quantization keeps.
            crate::format::MIN_WEIGHT / 2.0,
            f32::from_bits((crate::format::MIN_WEIGHT / 2.0).to_bits() - 1),
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let (mut clean, mut unclean) = (0, 0);
        for _ in 0..20_000 {
            let n = rng.random_range(0..12);
            let mut t = rng.random_range(0..4u32);
            let v: Vec<(u32, f32)> = (0..n)
                .map(|_| {
                    // Mostly ascending; sometimes equal or descending.
                    t = match rng.random_range(0..20) {
                        0 => t,
                        1 => t.saturating_sub(2),
                        _ => t + rng.random_range(1..40),
                    };
                    let w = if rng.random_bool(0.9) {
                        rng.random_range(0.0..4.0)
                    } else {
                        weights[rng.random_range(0..weights.len())]
                    };
                    (t, w)
                })
                .collect();
            let fast = is_clean_sorted_vector(&v, 200);
            let full = matches!(check_sorted_vector_in_full("d", &v, 200), Ok(true))
                // The full check stops at the first descending token.
                && v.windows(2).all(|p| p[0].0 < p[1].0);
            let kept = v.iter().filter(|p| crate::format::is_kept(p.1)).count();
            // The fast check also sends vectors with dropped weights to the
            // full one, which counts them.
            assert_eq!(fast, full && kept == v.len(), "{v:?}");
            if full {
                assert_eq!(check_sorted_vector("d", &v, 200).unwrap(), Some(kept));
            }
            if fast {
                clean += 1;
            } else {
                unclean += 1;
            }
        }
        assert!(clean > 2_000 && unclean > 2_000, "{clean} {unclean}");
        // Longer vectors with at most one fault, at every position: in the
        // unrolled chunks of eight and in the remainder.
        for n in 12..40usize {
            for at in 0..=n {
                for fault in 0..4 {
                    let mut v: Vec<(u32, f32)> = (0..n).map(|i| (3 * i as u32 + 1, 0.5)).collect();
                    let mut kept = n;
                    if at < n {
                        match fault {
                            0 if at > 0 => v[at].0 = v[at - 1].0,
                            1 => v[at].1 = f32::NAN,
                            2 => v[at].1 = -1.0,
                            // Valid, but dropped by quantization.
                            3 => {
                                v[at].1 = 0.0;
                                kept -= 1;
                            }
                            _ => {}
                        }
                    }
                    let fast = is_clean_sorted_vector(&v, 200);
                    let full = matches!(check_sorted_vector_in_full("d", &v, 200), Ok(true))
                        && v.windows(2).all(|p| p[0].0 < p[1].0);
                    assert_eq!(fast, full && kept == n, "n {n} fault {fault} at {at}");
                    if full {
                        assert_eq!(check_sorted_vector("d", &v, 200).unwrap(), Some(kept));
                    }
                }
            }
        }
    }
}
