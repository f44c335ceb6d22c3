//! Iterating a snapshot's live documents.

use std::collections::VecDeque;

use crate::error::Result;
use crate::quantize::dequantize;
use crate::search::hit::StoredDocument;
use crate::search::snapshot::Snapshot;
use crate::segment::forward::ForwardCursor;
use crate::segment::store::SOURCE_CHUNK;

/// Iterator behind [`Searcher::documents`].
pub(crate) struct DocumentIter<'a> {
    snap: &'a Snapshot,
    seg: usize,
    next: u32,
    cursor: Option<ForwardCursor>,
    buf: VecDeque<StoredDocument>,
    done: bool,
}

impl<'a> DocumentIter<'a> {
    pub(crate) fn new(snap: &'a Snapshot) -> Self {
        DocumentIter {
            snap,
            seg: 0,
            next: 0,
            cursor: None,
            buf: VecDeque::new(),
            done: false,
        }
    }
}

/// Documents per window; a multiple of `SOURCE_CHUNK` so chunks are decoded once.
const EXPORT_WINDOW: u32 = 32 * SOURCE_CHUNK as u32;

impl DocumentIter<'_> {
    /// Fill `buf` with the next window's live documents; false when exhausted.
    fn refill(&mut self) -> Result<bool> {
        while self.seg < self.snap.segs.len() {
            let ss = &self.snap.segs[self.seg];
            let seg = &*ss.seg;
            if self.next >= seg.n_docs() {
                self.seg += 1;
                self.next = 0;
                self.cursor = None;
                continue;
            }
            let start = self.next;
            let end = (start + EXPORT_WINDOW).min(seg.n_docs());
            self.next = end;
            seg.postings()?;
            let cursor = self.cursor.get_or_insert_with(|| seg.forward_cursor());
            let fwd = seg.forward_window(cursor, start, end);
            let mut sources = Vec::new();
            for ch in (start as usize / SOURCE_CHUNK)..(end as usize).div_ceil(SOURCE_CHUNK) {
                sources.extend(seg.chunk_sources(&ss.path, ch)?);
            }
            for ((d, f), source) in (start..end).zip(fwd).zip(sources) {
                if ss.deleted(d) {
                    continue;
                }
                let tokens = (f.len > 0).then(|| {
                    f.tf.iter()
                        .flat_map(|&(t, n)| std::iter::repeat_n(t, n as usize))
                        .collect()
                });
                self.buf.push_back(StoredDocument {
                    id: seg.ids()[d as usize].clone(),
                    vector: f.vec.iter().map(|&(t, w)| (t, dequantize(w))).collect(),
                    tokens,
                    source,
                });
            }
            if !self.buf.is_empty() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl Iterator for DocumentIter<'_> {
    type Item = Result<StoredDocument>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(d) = self.buf.pop_front() {
            return Some(Ok(d));
        }
        if self.done {
            return None;
        }
        match self.refill() {
            Ok(true) => self.buf.pop_front().map(Ok),
            Ok(false) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
