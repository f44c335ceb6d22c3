//! `_id` → document position within one segment.
//!
//! An open-addressing table of positions into the segment's own `ids`
//! vector: 8 bytes per slot (position and 32 hash bits, so a probe that hits
//! another `_id` almost never has to read that string) at a load factor of
//! at most 1/2, no copy of the strings. A `HashMap<String, u32>` cloned every `_id` (one allocation each)
//! and cost 40 bytes per entry; at a million documents building it took
//! longer than writing the segment file. Hashing is std's keyed SipHash with
//! a per-table random key, so chosen `_id`s cannot force long probe chains.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use crate::error::Result;

/// Slot value of an empty slot. A full slot holds `tag << 32 | position + 1`
/// where `tag` is the high half of the `_id`'s hash.
const EMPTY: u64 = 0;

/// Split a hash into the first slot to probe and the tag stored in the slot.
#[inline]
fn slot_and_tag(hash: u64, mask: usize) -> (usize, u64) {
    (hash as usize & mask, hash >> 32 << 32)
}

/// Positions of a segment's `_id`s, looked up by the string.
#[derive(Debug, Default)]
pub(crate) struct IdIndex {
    slots: Vec<u64>,
    hasher: RandomState,
}

impl IdIndex {
    /// Index `ids` (position = document id). On a repeated `_id` returns
    /// `Err(position of the second occurrence)`.
    pub(crate) fn build(ids: &[String]) -> Result<IdIndex, usize> {
        Self::build_with(ids.len(), |i| ids[i].as_str())
    }

    /// [`IdIndex::build`] over `n` strings given by `id(position)`.
    ///
    /// Works in batches: the strings of the next batch are prefetched, then
    /// the batch's hashes computed and their slots prefetched, then its
    /// `_id`s inserted. Inserting one by one waited on two cache misses per
    /// `_id` (its string, its slot): 224-232 vs 73-82 ns per `_id` at a
    /// million (BENCHMARKS.md).
    pub(crate) fn build_with<'a>(
        n: usize,
        id: impl Fn(usize) -> &'a str,
    ) -> Result<IdIndex, usize> {
        const BATCH: usize = 32;
        let capacity = (n * 2).max(8).next_power_of_two();
        let mut index = IdIndex {
            slots: vec![EMPTY; capacity],
            hasher: RandomState::new(),
        };
        let mask = capacity - 1;
        let mut hashes = [0u64; BATCH];
        for pos in 0..BATCH.min(n) {
            crate::simd::prefetch(id(pos).as_ptr());
        }
        for start in (0..n).step_by(BATCH) {
            let end = (start + BATCH).min(n);
            for pos in end..(end + BATCH).min(n) {
                crate::simd::prefetch(id(pos).as_ptr());
            }
            for (h, pos) in hashes.iter_mut().zip(start..end) {
                *h = index.hasher.hash_one(id(pos));
                crate::simd::prefetch(&index.slots[*h as usize & mask]);
            }
            for (&h, pos) in hashes.iter().zip(start..end) {
                let key = id(pos);
                let (mut s, tag) = slot_and_tag(h, mask);
                loop {
                    let slot = index.slots[s];
                    if slot == EMPTY {
                        index.slots[s] = tag | (pos as u64 + 1);
                        break;
                    }
                    if slot >> 32 << 32 == tag && id((slot as u32 - 1) as usize) == key {
                        return Err(pos);
                    }
                    s = (s + 1) & mask;
                }
            }
        }
        Ok(index)
    }

    /// Position of `id` in `ids` (the vector the index was built from).
    #[inline]
    pub(crate) fn get(&self, ids: &[String], id: &str) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let (mut s, tag) = slot_and_tag(self.hasher.hash_one(id), mask);
        loop {
            let slot = self.slots[s];
            if slot == EMPTY {
                return None;
            }
            let pos = slot as u32 - 1;
            if slot >> 32 << 32 == tag && ids[pos as usize] == id {
                return Some(pos);
            }
            s = (s + 1) & mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_id_and_nothing_else() {
        let ids: Vec<String> = (0..10_000).map(|i| format!("doc-{i}")).collect();
        let index = IdIndex::build(&ids).unwrap();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(index.get(&ids, id), Some(i as u32));
        }
        for i in 10_000..11_000 {
            assert_eq!(index.get(&ids, &format!("doc-{i}")), None);
        }
        assert_eq!(index.get(&ids, ""), None);
        assert!(index.slots.len() >= 2 * ids.len());
    }

    #[test]
    fn reports_the_first_repeated_id() {
        let ids: Vec<String> = ["a", "b", "c", "b", "a"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(IdIndex::build(&ids).unwrap_err(), 3);
        let empty: Vec<String> = Vec::new();
        let index = IdIndex::build(&empty).unwrap();
        assert_eq!(index.get(&empty, "a"), None);
        assert_eq!(IdIndex::default().get(&empty, "a"), None);
    }

    /// Repeats inside one insertion batch and across batches (of 32): the
    /// first repeat in position order is reported, whatever its batch.
    #[test]
    fn reports_the_first_repeat_across_batches() {
        let ids = |repeats: &[(usize, usize)]| -> Vec<String> {
            let mut ids: Vec<String> = (0..200).map(|i| format!("doc-{i}")).collect();
            for &(at, of) in repeats {
                ids[at] = ids[of].clone();
            }
            ids
        };
        for (repeats, first) in [
            (vec![(40, 10), (35, 34)], 35),
            (vec![(33, 31)], 33),
            (vec![(31, 30)], 31),
            (vec![(199, 0)], 199),
            (vec![(64, 63), (65, 1)], 64),
        ] {
            assert_eq!(
                IdIndex::build(&ids(&repeats)).unwrap_err(),
                first,
                "{repeats:?}"
            );
        }
        let unique = ids(&[]);
        let index = IdIndex::build(&unique).unwrap();
        for (i, id) in unique.iter().enumerate() {
            assert_eq!(index.get(&unique, id), Some(i as u32));
        }
    }
}
