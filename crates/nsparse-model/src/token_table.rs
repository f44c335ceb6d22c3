//! Token string → id lookup, the hot path of reading pre-encoded vectors.
//!
//! Indexing a file of `{token: weight}` vectors looks up every token string
//! (~285 per document). `Tokenizer::token_to_id` hashes the string twice with
//! SipHash (added tokens, then the model's vocabulary), and a `HashMap<Box<str>,
//! u32>` with any hash still follows a pointer to each key and calls `memcmp`:
//! two cache misses and a call per lookup (~25 % of the CPU time of `nsparse
//! index --vectors` in `perf`, with FNV-1a). Here a key of up to
//! [`INLINE_KEY`] bytes (every WordPiece of bert-base-uncased) is stored in
//! its slot, zero-padded, so a lookup reads one 32-byte slot and compares
//! three words.
//!
//! The table is open addressing with linear probing at a load of at most one
//! half, built once from the fixed vocabulary. Probe chains depend only on the
//! stored keys, so no input can make a lookup slower than the longest chain
//! the vocabulary itself forms.

use std::collections::HashMap;

/// Keys of at most this many bytes live in the slots; longer ones in a map.
pub(crate) const INLINE_KEY: usize = 24;

/// One slot: a zero-padded key, its length (`EMPTY_LEN` when unused) and id.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct Slot {
    key: [u8; INLINE_KEY],
    len: u32,
    id: u32,
}

const EMPTY_LEN: u32 = u32::MAX;

const EMPTY: Slot = Slot {
    key: [0; INLINE_KEY],
    len: EMPTY_LEN,
    id: 0,
};

/// An immutable token string → id map.
pub(crate) struct TokenTable {
    slots: Box<[Slot]>,
    /// `64 - log2(slots.len())`: a slot index is the hash's top bits.
    shift: u32,
    /// Keys longer than [`INLINE_KEY`] bytes (none in the BERT vocabularies).
    long: HashMap<Box<str>, u32>,
}

impl TokenTable {
    /// The table of `entries`; a repeated token keeps its first id.
    pub(crate) fn new(entries: impl IntoIterator<Item = (String, u32)>) -> TokenTable {
        let entries: Vec<(String, u32)> = entries.into_iter().collect();
        let short = entries
            .iter()
            .filter(|(t, _)| t.len() <= INLINE_KEY)
            .count();
        let n_slots = (2 * short).next_power_of_two().max(16);
        let mut table = TokenTable {
            slots: vec![EMPTY; n_slots].into_boxed_slice(),
            shift: 64 - n_slots.trailing_zeros(),
            long: HashMap::new(),
        };
        for (token, id) in entries {
            if token.len() > INLINE_KEY {
                table.long.entry(token.into_boxed_str()).or_insert(id);
                continue;
            }
            let key = padded(token.as_bytes());
            if let Err(empty) = table.probe(&key, token.len(), table.home(&key, token.len())) {
                table.slots[empty] = Slot {
                    key,
                    len: token.len() as u32,
                    id,
                };
            }
        }
        table
    }

    /// The id of `token`.
    #[inline]
    pub(crate) fn get(&self, token: &str) -> Option<u32> {
        let bytes = token.as_bytes();
        if bytes.len() > INLINE_KEY {
            return self.long.get(token).copied();
        }
        let key = padded(bytes);
        let home = self.home(&key, bytes.len());
        let found = self.probe(&key, bytes.len(), home);
        found.ok().map(|i| self.slots[i].id)
    }

    /// The ids of `tokens`, in order, into `out` (cleared first).
    ///
    /// Same answers as [`TokenTable::get`] one by one, but every slot is
    /// located before any is read: the probes are then independent loads in a
    /// short loop, so the CPU overlaps their cache misses (the table is
    /// larger than L2) instead of taking them one after the other between
    /// the parsing work of each token.
    pub(crate) fn get_all(&self, tokens: &[&str], out: &mut Vec<Option<u32>>) {
        out.clear();
        let mut keys: Vec<([u8; INLINE_KEY], usize)> = Vec::with_capacity(tokens.len());
        for token in tokens {
            let bytes = token.as_bytes();
            if bytes.len() > INLINE_KEY {
                keys.push(([0; INLINE_KEY], usize::MAX));
            } else {
                let key = padded(bytes);
                let home = self.home(&key, bytes.len());
                keys.push((key, home));
            }
        }
        for (token, (key, home)) in tokens.iter().zip(&keys) {
            out.push(if *home == usize::MAX {
                self.long.get(*token).copied()
            } else {
                let found = self.probe(key, token.len(), *home);
                found.ok().map(|i| self.slots[i].id)
            });
        }
    }

    /// Linear probe from slot `home` for `key` of `len` bytes: `Ok` with
    /// the slot that holds it, or `Err` with the empty slot that ends its
    /// chain (where it would go).
    #[inline]
    fn probe(&self, key: &[u8; INLINE_KEY], len: usize, home: usize) -> Result<usize, usize> {
        let mask = self.slots.len() - 1;
        let mut i = home;
        loop {
            let slot = &self.slots[i];
            if slot.len == len as u32 && slot.key == *key {
                return Ok(i);
            }
            if slot.len == EMPTY_LEN {
                return Err(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// The slot where the probe for `key` starts.
    #[inline]
    fn home(&self, key: &[u8; INLINE_KEY], len: usize) -> usize {
        // Multiply-xor over the three words; the product's top bits mix
        // every input bit, so they pick the slot (Fibonacci hashing).
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut h = (len as u64).wrapping_mul(K);
        for word in key.chunks_exact(8) {
            let w = u64::from_le_bytes(word.try_into().expect("8-byte chunk"));
            h = (h.rotate_left(23) ^ w).wrapping_mul(K);
        }
        (h >> self.shift) as usize
    }
}

/// `bytes` (at most [`INLINE_KEY`]) zero-padded to a slot key.
#[inline]
fn padded(bytes: &[u8]) -> [u8; INLINE_KEY] {
    let mut key = [0u8; INLINE_KEY];
    key[..bytes.len()].copy_from_slice(bytes);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_key_and_nothing_else() {
        let mut entries: Vec<(String, u32)> = (0..5000u32)
            .map(|i| (format!("t{i}"), i))
            .chain([
                (String::new(), 9000),
                ("a\0".to_string(), 9001),
                ("x".repeat(INLINE_KEY), 9002),
                ("y".repeat(INLINE_KEY + 1), 9003),
                ("##é日本".to_string(), 9004),
            ])
            .collect();
        // A repeated token keeps its first id.
        entries.push(("t7".to_string(), 77_777));
        let table = TokenTable::new(entries.clone());
        for (token, id) in &entries[..entries.len() - 1] {
            assert_eq!(table.get(token), Some(*id), "{token:?}");
        }
        for absent in [
            "a",
            "a\0\0",
            "t",
            "t5000",
            "t10 ",
            "\0",
            &"x".repeat(INLINE_KEY - 1),
            &"y".repeat(INLINE_KEY),
            &"y".repeat(INLINE_KEY + 2),
            "##é日",
        ] {
            assert_eq!(table.get(absent), None, "{absent:?}");
        }
        let mut all: Vec<&str> = entries.iter().map(|(t, _)| t.as_str()).collect();
        let long_absent = "y".repeat(INLINE_KEY + 2);
        all.extend(["a", "t5000", &long_absent]);
        let mut ids = Vec::new();
        table.get_all(&all, &mut ids);
        let one_by_one: Vec<Option<u32>> = all.iter().map(|t| table.get(t)).collect();
        assert_eq!(ids, one_by_one);
        assert_eq!(ids[7], Some(7));
        assert_eq!(ids[all.len() - 1], None);
        // At most half full, so every miss ends at an empty slot.
        assert!(table.slots.len() >= 2 * 5004);
    }

    #[test]
    fn an_empty_table_answers_none() {
        let table = TokenTable::new(Vec::new());
        assert_eq!(table.get(""), None);
        assert_eq!(table.get("ny"), None);
    }
}
