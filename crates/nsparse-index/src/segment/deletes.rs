//! Deletion bitmaps (`seg-N-G.del`).

use std::path::Path;

use crate::codec::varint::Cursor;
use crate::error::{Error, Result};

/// Deletion bitmap of a segment (bit set = deleted).
#[derive(Clone, Debug, Default)]
pub(crate) struct Bitset {
    words: Vec<u64>,
    count: u32,
}

pub(crate) const DEL_MAGIC: &[u8; 8] = b"NSPDEL\0\0";

pub(crate) const DEL_VERSION: u32 = 1;

impl Bitset {
    /// Number of set bits (deleted documents).
    #[inline]
    pub(crate) fn count(&self) -> u32 {
        self.count
    }

    pub(crate) fn new(n: u32) -> Bitset {
        Bitset {
            words: vec![0; (n as usize).div_ceil(64)],
            count: 0,
        }
    }

    #[inline]
    pub(crate) fn get(&self, i: u32) -> bool {
        self.words[(i >> 6) as usize] >> (i & 63) & 1 == 1
    }

    pub(crate) fn set(&mut self, i: u32) {
        let w = &mut self.words[(i >> 6) as usize];
        if *w >> (i & 63) & 1 == 0 {
            *w |= 1 << (i & 63);
            self.count += 1;
        }
    }

    pub(crate) fn to_bytes(&self, n_docs: u32) -> Vec<u8> {
        let mut meta = Vec::new();
        meta.extend_from_slice(&n_docs.to_le_bytes());
        meta.extend_from_slice(&self.count.to_le_bytes());
        let bits: Vec<u8> = self.words.iter().flat_map(|w| w.to_le_bytes()).collect();
        crate::directory::container::write_container(
            DEL_MAGIC,
            DEL_VERSION,
            &[(1, &meta), (2, &bits)],
        )
    }

    pub(crate) fn load(path: &Path, n_docs: u32) -> Result<Bitset> {
        let bytes = crate::directory::mmap::read_file(path)?;
        let secs =
            crate::directory::container::read_container(path, &bytes, DEL_MAGIC, DEL_VERSION)?;
        let mut c = Cursor::new(crate::directory::container::section(path, &secs, 1)?, path);
        let n = c.u32()?;
        let count = c.u32()?;
        c.done()?;
        if n != n_docs {
            return Err(Error::corrupt(
                path,
                format!("deletion bitmap is for {n} docs, segment has {n_docs}"),
            ));
        }
        let bits = crate::directory::container::section(path, &secs, 2)?;
        if bits.len() != (n as usize).div_ceil(64) * 8 {
            return Err(Error::corrupt(path, "deletion bitmap has wrong length"));
        }
        let words: Vec<u64> = bits
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect();
        let pop: u32 = words.iter().map(|w| w.count_ones()).sum();
        let tail_ok = n % 64 == 0 || words.last().is_none_or(|w| w >> (n % 64) == 0);
        if pop != count || !tail_ok {
            return Err(Error::corrupt(
                path,
                "deletion bitmap count disagrees with its bits",
            ));
        }
        Ok(Bitset { words, count })
    }
}
