//! `features-G.dict`: the feature dictionary as of commit generation `G`.
//!
//! A checksummed container (magic `NSPFEATS`, version 1) with one section: the number of
//! names (u32), then per name in id order the length of the prefix it shares with the
//! previous name (varint), the length of the rest (varint) and the rest's bytes. Vocabularies
//! list related tokens next to each other (`##ing`, `##ings`), so the shared prefixes save
//! about a third of the bytes. Reading checks that every name is valid UTF-8, non-empty,
//! within [`MAX_FEATURE_NAME_BYTES`](super::MAX_FEATURE_NAME_BYTES) and unique.

use std::path::Path;
use std::sync::Arc;

use crate::codec::varint::{put_varint, Cursor};
use crate::directory::container::{read_container, section, write_container};
use crate::error::{Error, Result};
use crate::features::{FeatureDictionary, MAX_FEATURE_NAME_BYTES};

const DICT_MAGIC: &[u8; 8] = b"NSPFEATS";

const DICT_VERSION: u32 = 1;

const SEC_NAMES: u32 = 1;

/// The file name of the dictionary written by commit generation `gen`.
pub(crate) fn dict_file(gen: u64) -> String {
    format!("features-{gen:08}.dict")
}

/// The file's bytes for `names` (in id order).
pub(crate) fn encode(names: &[Arc<str>]) -> Vec<u8> {
    let mut body = Vec::with_capacity(names.len() * 8 + 4);
    body.extend_from_slice(&(names.len() as u32).to_le_bytes());
    let mut prev: &[u8] = &[];
    for n in names {
        let b = n.as_bytes();
        let shared = prev.iter().zip(b).take_while(|(a, c)| a == c).count();
        put_varint(&mut body, shared as u64);
        put_varint(&mut body, (b.len() - shared) as u64);
        body.extend_from_slice(&b[shared..]);
        prev = b;
    }
    write_container(DICT_MAGIC, DICT_VERSION, &[(SEC_NAMES, &body)])
}

/// Reads the dictionary file at `path`, which the manifest says holds `expected` names.
pub(crate) fn load(path: &Path, expected: u32) -> Result<FeatureDictionary> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let secs = read_container(path, &bytes, DICT_MAGIC, DICT_VERSION)?;
    let mut c = Cursor::new(section(path, &secs, SEC_NAMES)?, path);
    let n = c.u32()?;
    if n != expected {
        return Err(Error::corrupt(
            path,
            format!("holds {n} feature names, the manifest says {expected}"),
        ));
    }
    // Each name takes at least 2 bytes: bound the allocation by the file.
    if n as usize > bytes.len() / 2 {
        return Err(Error::corrupt(path, "name count exceeds the file size"));
    }
    let mut names = Vec::with_capacity(n as usize);
    let mut prev: Vec<u8> = Vec::new();
    for _ in 0..n {
        let shared = c.varint()? as usize;
        let rest = c.varint()? as usize;
        if shared > prev.len() || shared.saturating_add(rest) > MAX_FEATURE_NAME_BYTES {
            return Err(Error::corrupt(
                path,
                "a feature name's lengths are out of range",
            ));
        }
        prev.truncate(shared);
        prev.extend_from_slice(c.bytes(rest)?);
        let name = String::from_utf8(prev.clone())
            .map_err(|_| Error::corrupt(path, "a feature name is not UTF-8"))?;
        names.push(name);
    }
    c.done()?;
    FeatureDictionary::from_names(names).map_err(|e| Error::corrupt(path, e.to_string()))
}
