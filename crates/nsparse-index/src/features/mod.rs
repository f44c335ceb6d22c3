//! The feature dictionary of an open-vocabulary index: feature name (any UTF-8 string) ↔
//! dense id.
//!
//! Ids are given in order of first use and never change or get reused, so segments, WAL
//! records and deletion bitmaps refer to features by id alone. The dictionary only grows:
//! names appended by the writer reach disk in the WAL record written before the first
//! document that uses them (or in the commit's dictionary file, for a bulk load), and every
//! commit that grew it writes the whole dictionary as `features-G.dict` (see [`file`]).
//! Searchers share it with the writer: a name added after a searcher's snapshot resolves to
//! an id that has no postings in that snapshot, so it matches nothing, as an unknown name
//! would.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::error::{Error, Result};

pub(crate) mod file;

/// Longest feature name, in bytes: Lucene's longest term (OpenSearch refuses longer
/// `rank_features` names with an "immense term" error).
pub const MAX_FEATURE_NAME_BYTES: usize = 32_766;

/// Largest number of features of one index: ids run up to `u32::MAX - 1`.
pub const MAX_FEATURES: u64 = u32::MAX as u64;

/// Checks one feature name against the index's rules: non-empty, at most
/// [`MAX_FEATURE_NAME_BYTES`].
pub(crate) fn check_feature_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(
            "feature name",
            "a feature name must not be empty",
        ));
    }
    if name.len() > MAX_FEATURE_NAME_BYTES {
        return Err(Error::invalid(
            format!(
                "feature name {:?}…",
                &name[..char_boundary_at_most(name, 40)]
            ),
            format!(
                "the name is {} bytes; names are at most {MAX_FEATURE_NAME_BYTES} bytes",
                name.len()
            ),
        ));
    }
    Ok(())
}

/// The longest prefix length of `s` of at most `n` bytes that ends on a character boundary.
pub(crate) fn char_boundary_at_most(s: &str, n: usize) -> usize {
    (0..=n.min(s.len()))
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0)
}

#[derive(Default)]
struct Names {
    by_id: Vec<Arc<str>>,
    ids: HashMap<Arc<str>, u32>,
}

impl Names {
    /// Gives the new name `name` the next id.
    fn push(&mut self, name: &str) -> u32 {
        let id = self.by_id.len() as u32;
        let name: Arc<str> = Arc::from(name);
        self.by_id.push(name.clone());
        self.ids.insert(name, id);
        id
    }
}

/// The dictionary, shared by the writer and its searchers (names are only appended).
#[derive(Default)]
pub(crate) struct FeatureDictionary {
    names: RwLock<Names>,
}

impl std::fmt::Debug for FeatureDictionary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeatureDictionary")
            .field("len", &self.len())
            .finish()
    }
}

impl FeatureDictionary {
    /// A dictionary holding `names` with ids `0..names.len()` (names unique, each valid).
    pub(crate) fn from_names(names: Vec<String>) -> Result<FeatureDictionary> {
        let d = FeatureDictionary::default();
        d.append_new(&names)?;
        Ok(d)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Names> {
        // A panic while holding the lock cannot leave `Names` half-updated (see
        // `append_new`), so a poisoned lock is still consistent.
        self.names.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Names> {
        self.names.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of names (the next id).
    pub(crate) fn len(&self) -> u32 {
        self.read().by_id.len() as u32
    }

    /// The id of `name`, if it is known and below `limit`.
    pub(crate) fn id_below(&self, name: &str, limit: u32) -> Option<u32> {
        self.read().ids.get(name).copied().filter(|&id| id < limit)
    }

    /// The name of `id`.
    pub(crate) fn name(&self, id: u32) -> Option<Arc<str>> {
        self.read().by_id.get(id as usize).cloned()
    }

    /// The ids of `names` (in order), appending the unknown ones. All names are checked
    /// before any is added, so an error adds none.
    pub(crate) fn intern<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Result<Vec<u32>> {
        let names: Vec<&str> = names.into_iter().collect();
        {
            let r = self.read();
            if let Some(ids) = names
                .iter()
                .map(|n| r.ids.get(*n).copied())
                .collect::<Option<Vec<u32>>>()
            {
                return Ok(ids);
            }
        }
        for n in &names {
            check_feature_name(n)?;
        }
        let mut w = self.write();
        let fresh = names.iter().filter(|n| !w.ids.contains_key(**n)).count() as u64;
        if w.by_id.len() as u64 + fresh > MAX_FEATURES {
            return Err(Error::invalid(
                "feature names",
                format!(
                    "the index already has {} features and ids run up to {}",
                    w.by_id.len(),
                    MAX_FEATURES - 1
                ),
            ));
        }
        let mut ids = Vec::with_capacity(names.len());
        for n in names {
            let id = match w.ids.get(n) {
                Some(&id) => id,
                None => w.push(n),
            };
            ids.push(id);
        }
        Ok(ids)
    }

    /// Appends `names`, which must all be new and valid (replay of the WAL or of a file).
    pub(crate) fn append_new(&self, names: &[String]) -> Result<()> {
        let mut w = self.write();
        if w.by_id.len() as u64 + names.len() as u64 > MAX_FEATURES {
            return Err(Error::invalid(
                "feature names",
                "more than u32::MAX - 1 features",
            ));
        }
        let mut batch = std::collections::HashSet::with_capacity(names.len());
        for n in names {
            check_feature_name(n)?;
            if w.ids.contains_key(n.as_str()) || !batch.insert(n.as_str()) {
                return Err(Error::invalid(
                    "feature names",
                    format!("the name {n:?} appears twice"),
                ));
            }
        }
        w.by_id.reserve(names.len());
        for n in names {
            w.push(n);
        }
        Ok(())
    }

    /// The names from id `from` on, in id order.
    pub(crate) fn names_from(&self, from: u32) -> Vec<Arc<str>> {
        let r = self.read();
        r.by_id[(from as usize).min(r.by_id.len())..].to_vec()
    }

    /// Removes every name from id `len` on (a failed operation's new names).
    pub(crate) fn truncate(&self, len: u32) {
        let mut w = self.write();
        let from = (len as usize).min(w.by_id.len());
        let cut: Vec<Arc<str>> = w.by_id.drain(from..).collect();
        for n in cut {
            w.ids.remove(&n);
        }
    }
}

#[cfg(test)]
mod tests;
