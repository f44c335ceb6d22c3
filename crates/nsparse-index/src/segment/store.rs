//! Stored sources: lz4-compressed chunks of 32 documents.

use std::path::Path;

use crate::codec::varint::{put_varint, Cursor};
use crate::error::{Error, Result};
use crate::segment::input::SegmentInput;
use crate::segment::Segment;

/// Documents per compressed source chunk.
pub(crate) const SOURCE_CHUNK: usize = 32;

/// Split `0..n` into `parts` contiguous ranges whose starts are multiples of
/// `SOURCE_CHUNK`, so every part compresses whole source chunks.
pub(crate) fn doc_ranges(n: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let chunks = n.div_ceil(SOURCE_CHUNK);
    (0..parts)
        .map(|p| {
            let a = (chunks * p / parts * SOURCE_CHUNK).min(n);
            let b = (chunks * (p + 1) / parts * SOURCE_CHUNK).min(n);
            a..b
        })
        .collect()
}

/// Compress the sources of documents `range` (whole chunks) as
/// `(chunk table relative to the returned bytes, bytes)`.
pub(crate) fn compress_sources<D: SegmentInput + ?Sized>(
    docs: &D,
    range: std::ops::Range<usize>,
) -> (Vec<(usize, usize, usize)>, Vec<u8>) {
    let mut chunks = Vec::with_capacity(range.len().div_ceil(SOURCE_CHUNK));
    let mut data = Vec::new();
    let mut raw = Vec::new();
    let mut start = range.start;
    while start < range.end {
        let end = (start + SOURCE_CHUNK).min(range.end);
        raw.clear();
        for i in start..end {
            let src = docs.source(i);
            put_varint(&mut raw, src.len() as u64);
            raw.extend_from_slice(src);
        }
        let c = lz4_flex::block::compress(&raw);
        chunks.push((data.len(), c.len(), raw.len()));
        data.extend_from_slice(&c);
        start = end;
    }

    (chunks, data)
}

impl Segment {
    pub(crate) fn decode_chunk(&self, path: &Path, ch: usize) -> Result<Vec<u8>> {
        let &(o, c, u) = self
            .src_chunks
            .get(ch)
            .ok_or_else(|| Error::corrupt(path, "missing source chunk"))?;
        let raw = lz4_flex::block::decompress(&self.src_data[o..o + c], u).map_err(|e| {
            Error::corrupt(path, format!("source chunk {ch} does not decompress: {e}"))
        })?;
        if raw.len() != u {
            return Err(Error::corrupt(
                path,
                format!("source chunk {ch} has wrong length"),
            ));
        }
        let docs_in = (self.n_docs as usize - ch * SOURCE_CHUNK).min(SOURCE_CHUNK);
        let mut c = Cursor::new(&raw, path);
        for _ in 0..docs_in {
            let l = c.varint()? as usize;
            c.bytes(l)?;
        }
        c.done()?;
        Ok(raw)
    }

    /// Uncompressed source of `doc`.
    pub(crate) fn source(&self, path: &Path, doc: u32) -> Result<Vec<u8>> {
        let ch = doc as usize / SOURCE_CHUNK;
        let raw = self.decode_chunk(path, ch)?;
        let mut c = Cursor::new(&raw, path);
        for i in 0..=(doc as usize % SOURCE_CHUNK) {
            let l = c.varint()? as usize;
            let b = c.bytes(l)?;
            if i == doc as usize % SOURCE_CHUNK {
                return Ok(b.to_vec());
            }
        }
        Err(Error::corrupt(path, "source not found in chunk"))
    }

    /// Sources of the documents in source chunk `ch` (`SOURCE_CHUNK` docs, fewer in the last).
    pub(crate) fn chunk_sources(&self, path: &Path, ch: usize) -> Result<Vec<Vec<u8>>> {
        let raw = self.decode_chunk(path, ch)?;
        let docs_in = (self.n_docs as usize - ch * SOURCE_CHUNK).min(SOURCE_CHUNK);
        let mut c = Cursor::new(&raw, path);
        (0..docs_in)
            .map(|_| {
                let l = c.varint()? as usize;
                Ok(c.bytes(l)?.to_vec())
            })
            .collect()
    }
}
