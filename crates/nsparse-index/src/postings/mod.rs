//! The in-memory neural postings of a segment: 4 bytes per posting.
//!
//! Documents are grouped in *tiles* of 2^[`POSTINGS_TILE_SHIFT`] consecutive doc ids.
//! A posting is one `u32`: the document's offset inside its tile in the high
//! 16 bits and the f16 weight bits in the low 16 bits. Within a token's list
//! postings are in doc order, so inside one tile the packed values ascend
//! with the doc id and can be binary-searched as they are. A small directory
//! (one entry per token and non-empty tile) says where each tile's run starts.
//!
//! Why not a `u32` doc id plus a `u16` weight (6 bytes, the previous layout):
//! a segment's postings are most of its memory, and on the machines we
//! measure fresh memory costs ~0.6–1.4 s per GB to fault in. A third fewer
//! bytes is a third less of that at build and open, and a third less to
//! stream per scored posting; the directory also gives a search tile's run
//! directly instead of by searching the doc ids.

use crate::quantize::dequantize;

pub(crate) mod builder;
pub(crate) mod invert;
pub(crate) mod legacy;
pub(crate) mod reader;
pub(crate) mod tile_writer;
/// log2 of the documents per postings tile (doc offsets fit 16 bits).
pub(crate) const POSTINGS_TILE_SHIFT: u32 = 16;

/// Mask of a doc id's offset within its tile.
pub(crate) const TILE_MASK: u32 = (1 << POSTINGS_TILE_SHIFT) - 1;

/// Pack a document's offset within its tile and a quantized weight.
#[inline]
pub(crate) fn pack(doc: u32, w: u16) -> u32 {
    ((doc & TILE_MASK) << 16) | w as u32
}

/// Offset within its tile of the document of a packed posting.
#[inline]
pub(crate) fn offset(p: u32) -> u32 {
    p >> 16
}

/// Quantized weight of a packed posting.
#[inline]
pub(crate) fn weight_bits(p: u32) -> u16 {
    p as u16
}

/// Dequantized weight of a packed posting.
#[inline]
pub(crate) fn weight(p: u32) -> f32 {
    dequantize(p as u16)
}

/// Token `t`'s range in a table of starts (`starts[t]..starts[t + 1]`); empty for a token
/// beyond the table: an open vocabulary grows after a segment is built, and the segment has
/// no postings for the later ids.
#[inline]
pub(crate) fn span(starts: &[usize], t: u32) -> std::ops::Range<usize> {
    let t = t as usize;
    match starts.get(t..t + 2) {
        Some(&[a, b]) => a..b,
        _ => {
            let end = starts.last().copied().unwrap_or(0);
            end..end
        }
    }
}

/// The neural postings of a segment, grouped by token, docs ascending.
#[derive(Debug, Default)]
pub(crate) struct Postings {
    /// Token `t`'s postings are `packed[term_start[t]..term_start[t + 1]]`;
    /// `term_start[vocab]` is the number of postings.
    term_start: Vec<usize>,
    /// Token `t`'s tile runs are `run_start[t]..run_start[t + 1]`.
    run_start: Vec<usize>,
    /// Per run: its tile number.
    run_tile: Vec<u32>,
    /// Per run: where it starts in `packed`, plus a final entry for the end,
    /// so run `i` is `run_pos[i]..run_pos[i + 1]` (runs of consecutive tokens
    /// are adjacent).
    run_pos: Vec<usize>,
    /// Packed postings (see [`pack`]).
    packed: Vec<u32>,
}

impl Postings {
    /// Every posting (see [`pack`]), token by token, each token's in doc order.
    #[inline]
    pub(crate) fn packed(&self) -> &[u32] {
        &self.packed
    }

    /// Where token `t`'s postings start in [`Postings::packed`].
    #[inline]
    pub(crate) fn term_start(&self, t: u32) -> usize {
        span(&self.term_start, t).start
    }

    /// Token `t`'s postings.
    #[inline]
    pub(crate) fn term_postings(&self, t: u32) -> &[u32] {
        &self.packed[span(&self.term_start, t)]
    }

    /// The first of token `t`'s tile runs (see [`Postings::runs`]).
    #[inline]
    pub(crate) fn first_run(&self, t: u32) -> usize {
        span(&self.run_start, t).start
    }

    /// The tile number of run `i`.
    #[inline]
    pub(crate) fn run_tile(&self, i: usize) -> u32 {
        self.run_tile[i]
    }

    /// The directory and the postings, for tests that compare two layouts.
    #[cfg(test)]
    #[allow(clippy::type_complexity)]
    pub(crate) fn parts(&self) -> (&[usize], &[usize], &[u32], &[usize], &[u32]) {
        (
            &self.term_start,
            &self.run_start,
            &self.run_tile,
            &self.run_pos,
            &self.packed,
        )
    }
    /// Number of postings.
    pub(crate) fn len(&self) -> usize {
        self.packed.len()
    }

    /// Number of documents containing token `t`.
    #[inline]
    pub(crate) fn df(&self, t: u32) -> usize {
        span(&self.term_start, t).len()
    }

    /// Token `t`'s run indexes.
    #[inline]
    pub(crate) fn runs(&self, t: u32) -> std::ops::Range<usize> {
        span(&self.run_start, t)
    }

    /// Run `i`: the doc id its offsets are relative to, and where it lies in `packed`.
    #[inline]
    pub(crate) fn run(&self, i: usize) -> (u32, std::ops::Range<usize>) {
        (
            self.run_tile[i] << POSTINGS_TILE_SHIFT,
            self.run_pos[i]..self.run_pos[i + 1],
        )
    }

    /// Token `t`'s postings as (doc id, quantized weight), docs ascending.
    pub(crate) fn iter(&self, t: u32) -> impl Iterator<Item = (u32, u16)> + '_ {
        self.runs(t).flat_map(move |i| {
            let (base, r) = self.run(i);
            self.packed[r]
                .iter()
                .map(move |&p| (base + offset(p), weight_bits(p)))
        })
    }

    /// Quantized weight of token `t` in `doc`, if it occurs there.
    pub(crate) fn weight(&self, t: u32, doc: u32) -> Option<u16> {
        let runs = self.runs(t);
        let tile = doc >> POSTINGS_TILE_SHIFT;
        let i = runs.start + self.run_tile[runs.clone()].binary_search(&tile).ok()?;
        let (_, r) = self.run(i);
        find_in_run(&self.packed[r], doc & TILE_MASK)
    }

    /// Largest quantized weight of token `t` (0 when it has no postings).
    pub(crate) fn max_weight(&self, t: u32) -> u16 {
        let r = span(&self.term_start, t);
        // f16 bits of positive weights order like their values.
        self.packed[r]
            .iter()
            .map(|&p| weight_bits(p))
            .max()
            .unwrap_or(0)
    }

    /// Check the structure (run table consistent with the lists, offsets
    /// strictly ascending in each run, runs in ascending tiles, every doc
    /// below `n_docs`). A description of the first problem on failure.
    #[cfg(test)]
    pub(crate) fn check(&self, n_docs: u32) -> std::result::Result<(), String> {
        let v = self.term_start.len().saturating_sub(1);
        if self.run_start.len() != v + 1 || self.run_pos.len() != self.run_tile.len() + 1 {
            return Err("postings run table has the wrong size".into());
        }
        if self.run_pos.last() != Some(&self.packed.len())
            || self.term_start.last() != Some(&self.packed.len())
        {
            return Err("postings run table does not cover the postings".into());
        }
        for t in 0..v as u32 {
            let runs = self.runs(t);
            let list = self.term_start[t as usize]..self.term_start[t as usize + 1];
            if runs.is_empty() != list.is_empty()
                || (!runs.is_empty()
                    && (self.run_pos[runs.start] != list.start
                        || self.run_pos[runs.end] != list.end))
            {
                return Err(format!("token {t}: tile runs do not match its list"));
            }
            let mut last_tile = None;
            for i in runs {
                let (base, r) = self.run(i);
                if r.is_empty() || last_tile.is_some_and(|l| l >= self.run_tile[i]) {
                    return Err(format!("token {t}: tile runs empty or out of order"));
                }
                last_tile = Some(self.run_tile[i]);
                let run = &self.packed[r];
                if run.windows(2).any(|w| offset(w[0]) >= offset(w[1])) {
                    return Err(format!("token {t}: doc ids not ascending"));
                }
                let last = base as u64 + offset(run[run.len() - 1]) as u64;
                if last >= n_docs as u64 {
                    return Err(format!("token {t}: doc id out of range"));
                }
            }
        }
        Ok(())
    }
}

/// Where the search of a tile run (offsets ascending) for offset `off`
/// starts: the index `off` would have if the run's offsets were evenly
/// spread between its first and last.
#[inline]
pub(crate) fn guess_in_run(run: &[u32], off: u32) -> usize {
    let n = run.len();
    if n < 2 {
        return 0;
    }

    let (first, last) = (offset(run[0]), offset(run[n - 1]));
    if off <= first {
        return 0;
    }

    if off >= last {
        return n - 1;
    }

    ((off - first) as u64 * (n - 1) as u64 / (last - first) as u64) as usize
}

/// The weight stored for document offset `off` in a tile run, if any.
///
/// Interpolation, then an exponential search from the guess: the documents
/// of a run are spread fairly evenly, so the guess is a few entries off and
/// the search reads one or two cache lines, where a binary search waits on
/// a chain of dependent loads across the run.
#[inline]
pub(crate) fn find_in_run(run: &[u32], off: u32) -> Option<u16> {
    if run.is_empty() {
        return None;
    }

    let below = |p: &u32| offset(*p) < off;
    let g = guess_in_run(run, off);
    let i = if below(&run[g]) {
        // run[..lo] is below `off`.
        let (mut lo, mut step) = (g + 1, 1);
        while lo + step <= run.len() && below(&run[lo + step - 1]) {
            lo += step;
            step *= 2;
        }
        let hi = (lo + step).min(run.len());
        lo + run[lo..hi].partition_point(below)
    } else {
        // run[hi] is not below `off`.
        let (mut hi, mut step) = (g, 1);
        while hi >= step && !below(&run[hi - step]) {
            hi -= step;
            step *= 2;
        }
        let lo = hi.saturating_sub(step);
        lo + run[lo..hi].partition_point(below)
    };

    run.get(i)
        .filter(|&&p| offset(p) == off)
        .map(|&p| weight_bits(p))
}

#[cfg(test)]
mod tests;
