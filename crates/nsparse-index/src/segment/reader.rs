//! Opening a segment file: verify the container, decode each section.

use std::path::Path;

use crate::codec::bitpack::POSTING_BLOCK;
use crate::codec::varint::Cursor;
use crate::error::{Error, Result};
use crate::postings::builder::PostingsBuilder;
use crate::postings::legacy::{decode_packed_block, decode_varint_block};
use crate::postings::reader::decode_tile_postings;
use crate::postings::Postings;
use crate::segment::id_index::IdIndex;
use crate::segment::store::SOURCE_CHUNK;
use crate::segment::{
    Segment, SEC_BM25, SEC_IDS, SEC_META, SEC_POSTINGS, SEC_SOURCE, SEG_MAGIC, SEG_OLDEST_READABLE,
    SEG_VERSION,
};
use crate::threads::{build_threads, join_part};

/// Read the neural postings of the segment file `path` (format 3), after
/// verifying its checksums and that it is the segment described by
/// `n_docs`, `vocab` and `n_post`.
pub(crate) fn load_postings(
    path: &Path,
    n_docs: u32,
    vocab: u32,
    n_post: usize,
) -> Result<Postings> {
    let load = |bytes: &[u8]| -> Result<Postings> {
        let (version, secs) = crate::directory::container::read_container_of(
            path,
            bytes,
            SEG_MAGIC,
            3..=SEG_VERSION,
        )?;
        let mut c = Cursor::new(
            crate::directory::container::section(path, &secs, SEC_META)?,
            path,
        );
        let same = c.u32()? == n_docs && c.u32()? == vocab && {
            c.u64()?;
            c.u64()? == n_post as u64
        };
        if !same || version < 3 {
            return Err(Error::corrupt(
                path,
                "the segment file changed after it was written".to_string(),
            ));
        }
        let mut c = Cursor::new(
            crate::directory::container::section(path, &secs, SEC_POSTINGS)?,
            path,
        );
        // Decoding, like a build, uses the cores (at most one thread per 64k docs).
        let threads = build_threads(n_docs as usize, 0);
        decode_tile_postings(&mut c, vocab as usize, n_docs, n_post, threads)
    };

    match crate::directory::mmap::map_file(path)? {
        Some(map) => load(&map),
        None => load(&crate::directory::mmap::read_file(path)?),
    }
}

impl Segment {
    /// Parse and verify a segment file's bytes (checksums and structure).
    pub(crate) fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Segment> {
        let (version, secs) = crate::directory::container::read_container_of(
            path,
            bytes,
            SEG_MAGIC,
            SEG_OLDEST_READABLE..=SEG_VERSION,
        )?;
        let decode_block = match version {
            1 => decode_varint_block,
            _ => decode_packed_block,
        };
        let by_tile = version >= 3;
        let mut c = Cursor::new(
            crate::directory::container::section(path, &secs, SEC_META)?,
            path,
        );
        let n_docs = c.u32()?;
        let vocab = c.u32()?;
        let total_len = c.u64()?;
        let n_post = c.u64()?;
        let n_tf = c.u64()?;
        c.done()?;
        let corrupt = |d: &str| Error::corrupt(path, d.to_string());
        // Any id space up to u32::MAX ids (open vocabularies); 0 is never written.
        if vocab == 0 {
            return Err(corrupt("vocabulary size out of range"));
        }
        let v = vocab as usize;
        let n = n_docs as usize;
        // Bound allocations by what the file can possibly hold.
        if n_post > bytes.len() as u64 || n_tf > bytes.len() as u64 || n > bytes.len() {
            return Err(corrupt("counts exceed file size"));
        }
        let decode_ids = || -> Result<Vec<String>> {
            let mut c = Cursor::new(
                crate::directory::container::section(path, &secs, SEC_IDS)?,
                path,
            );
            let mut ids = Vec::with_capacity(n);
            for _ in 0..n {
                let l = c.varint()? as usize;
                let b = c.bytes(l)?;
                ids.push(String::from_utf8(b.to_vec()).map_err(|_| corrupt("_id is not UTF-8"))?);
            }
            c.done()?;
            Ok(ids)
        };
        let decode_postings = || -> Result<Postings> {
            let mut c = Cursor::new(
                crate::directory::container::section(path, &secs, SEC_POSTINGS)?,
                path,
            );
            if by_tile {
                let threads = build_threads(n_docs as usize, 0);
                return decode_tile_postings(&mut c, v, n_docs, n_post as usize, threads);
            }
            let mut out = PostingsBuilder::new(v, n_post as usize);
            let n_terms = c.varint()?;
            let mut next_t = 0usize;
            for _ in 0..n_terms {
                let t = c.varint()? as usize;
                if t < next_t || t >= v {
                    return Err(corrupt(
                        "posting token ids not ascending or out of vocabulary",
                    ));
                }
                out.start_token(t);
                next_t = t + 1;
                let df = c.varint()? as usize;
                if df == 0 || df > n || out.len() + df > n_post as usize {
                    return Err(corrupt("posting list length out of range"));
                }
                let mut prev = None;
                let mut left = df;
                while left > 0 {
                    let m = left.min(POSTING_BLOCK);
                    decode_block(&mut c, m, &mut prev, n_docs, &mut out)?;
                    left -= m;
                }
            }
            c.done()?;
            if out.len() as u64 != n_post {
                return Err(corrupt("posting count disagrees with header"));
            }
            Ok(out.finish(v))
        };
        // The postings (most of the file) decode on their own thread while
        // this one does the `_id`s.
        let (postings, ids) = std::thread::scope(|sc| {
            let postings = sc.spawn(decode_postings);
            let ids = decode_ids();
            (join_part(postings), ids)
        });
        let ids = ids?;
        let post = postings?;

        let mut c = Cursor::new(
            crate::directory::container::section(path, &secs, SEC_BM25)?,
            path,
        );
        let mut doc_len = Vec::with_capacity(n);
        let mut sum = 0u64;
        for _ in 0..n {
            let l = c.varint_u32()?;
            sum += l as u64;
            doc_len.push(l);
        }
        if sum != total_len {
            return Err(corrupt("BM25 total length disagrees with header"));
        }
        let mut tf_start = vec![0usize; v + 1];
        let mut tf_post = Vec::with_capacity(n_tf as usize);
        let n_terms = c.varint()?;
        let mut next_t = 0usize;
        for _ in 0..n_terms {
            let t = c.varint()? as usize;
            if t < next_t || t >= v {
                return Err(corrupt("BM25 token ids not ascending or out of vocabulary"));
            }
            for s in &mut tf_start[next_t..=t] {
                *s = tf_post.len();
            }
            next_t = t + 1;
            let df = c.varint()? as usize;
            if df == 0 || df > n || tf_post.len() + df > n_tf as usize {
                return Err(corrupt("BM25 posting list length out of range"));
            }
            let mut prev = 0u32;
            for i in 0..df {
                let delta = c.varint_u32()?;
                let d = if i == 0 {
                    delta
                } else {
                    prev.checked_add(delta)
                        .and_then(|x| x.checked_add(1))
                        .ok_or_else(|| corrupt("doc id overflow"))?
                };
                if d >= n_docs {
                    return Err(corrupt("doc id out of range in BM25 postings"));
                }
                let f = c.varint_u32()?;
                if f == 0 || f > doc_len[d as usize] {
                    return Err(corrupt("BM25 term frequency out of range"));
                }
                tf_post.push((d, f));
                prev = d;
            }
        }
        for s in &mut tf_start[next_t..=v] {
            *s = tf_post.len();
        }
        c.done()?;
        if tf_post.len() as u64 != n_tf {
            return Err(corrupt("BM25 posting count disagrees with header"));
        }

        let mut c = Cursor::new(
            crate::directory::container::section(path, &secs, SEC_SOURCE)?,
            path,
        );
        let n_chunks = c.varint()? as usize;
        if n_chunks != n.div_ceil(SOURCE_CHUNK) {
            return Err(corrupt("source chunk count disagrees with document count"));
        }
        let mut src_chunks = Vec::with_capacity(n_chunks);
        let mut src_data = Vec::new();
        for _ in 0..n_chunks {
            let u = c.varint()? as usize;
            let cl = c.varint()? as usize;
            let b = c.bytes(cl)?;
            src_chunks.push((src_data.len(), cl, u));
            src_data.extend_from_slice(b);
        }
        c.done()?;

        let mut s = Segment {
            n_docs,
            vocab,
            ids,
            id_index: IdIndex::default(),
            n_post: post.len(),
            post: std::sync::OnceLock::from(post),
            post_loading: std::sync::Mutex::new(()),
            file: Some(path.to_path_buf()),
            #[cfg(feature = "baselines")]
            block_max: std::sync::OnceLock::new(),
            dense: std::sync::OnceLock::new(),
            term_max: Vec::new(),
            tf_start,
            tf_post,
            doc_len,
            total_len,
            src_chunks,
            src_data,
        };
        let derived = s.derived(None);
        if let Err(pos) = s.install_derived(derived) {
            return Err(corrupt(&format!(
                "_id {:?} appears twice in the segment",
                s.ids[pos]
            )));
        }
        // Sources are verified by checksum; decode them once so a bad chunk is
        // reported at open rather than at fetch time.
        for ch in 0..s.src_chunks.len() {
            s.decode_chunk(path, ch)?;
        }
        Ok(s)
    }

    /// Load and verify a segment file.
    pub(crate) fn load(path: &Path) -> Result<Segment> {
        match crate::directory::mmap::map_file(path)? {
            Some(map) => Segment::from_bytes(path, &map),
            None => Segment::from_bytes(path, &crate::directory::mmap::read_file(path)?),
        }
    }
}
