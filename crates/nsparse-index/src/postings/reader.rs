//! Decoding the format-3 postings section, tiles on several threads into disjoint runs.

use crate::codec::bitpack::{unpack_docs, POSTING_BLOCK};
use crate::codec::varint::Cursor;
use crate::error::Result;
use crate::postings::legacy::take_weights;
use crate::postings::Postings;
use crate::threads::{even_groups, per_range, populate_in_shares};

/// The postings array of a segment being decoded, handed to several
/// threads that each fill their own runs of it.
struct DisjointRuns<'a> {
    base: *mut u32,
    len: usize,
    _array: std::marker::PhantomData<&'a mut [u32]>,
}

// SAFETY: the array is borrowed mutably for 'a; threads only reach it
// through `run`, whose callers promise disjoint ranges.
unsafe impl Sync for DisjointRuns<'_> {}
impl<'a> DisjointRuns<'a> {
    fn new(array: &'a mut [u32]) -> DisjointRuns<'a> {
        DisjointRuns {
            base: array.as_mut_ptr(),
            len: array.len(),
            _array: std::marker::PhantomData,
        }
    }

    /// The `k` elements from `at`.
    ///
    /// # Safety
    /// No two live slices returned by `run` may overlap.
    #[allow(clippy::mut_from_ref)]
    unsafe fn run(&self, at: usize, k: usize) -> &'a mut [u32] {
        assert!(
            at <= self.len && k <= self.len - at,
            "run outside the postings"
        );
        // SAFETY: in bounds (checked above) of the array borrowed for 'a;
        // the caller guarantees no other live slice overlaps it.
        unsafe { std::slice::from_raw_parts_mut(self.base.add(at), k) }
    }
}

/// Decode a neural postings section of format version 3 ([`write_postings`]),
/// checking every value, on up to `threads` threads (the result and any error
/// do not depend on the count); `n_post` is the count the segment's header gives.
pub(crate) fn decode_tile_postings(
    c: &mut Cursor<'_>,
    vocab: usize,
    n_docs: u32,
    n_post: usize,
    threads: usize,
) -> Result<Postings> {
    struct Piece<'a> {
        first: u32,
        end: u32,
        runs: std::ops::Range<usize>,
        data: &'a [u8],
    }

    let n_pieces = c.varint()?;
    if n_pieces > n_docs as u64 {
        return Err(c.err("more postings pieces than documents"));
    }

    // Pass 1: the directories, to know every list's length and place.
    let mut pieces = Vec::with_capacity(n_pieces as usize);
    let mut entries: Vec<(u32, u32)> = Vec::new();
    let mut df = vec![0usize; vocab];
    let mut runs_of = vec![0usize; vocab];
    let (mut next_doc, mut total) = (0u64, 0usize);
    for _ in 0..n_pieces {
        let first = c.varint()?;
        let len = c.varint()?;
        let end = first.saturating_add(len);
        let tile_end = (first + (1 << crate::postings::POSTINGS_TILE_SHIFT)).min(n_docs as u64);
        if first != next_doc || first >= tile_end || end != tile_end {
            return Err(c.err("postings pieces are not the segment's tiles in order"));
        }
        next_doc = end;
        let n_runs = c.varint()?;
        if n_runs > vocab as u64 {
            return Err(c.err("more postings runs in a piece than tokens"));
        }
        let start = entries.len();
        let mut next_t = 0u64;
        for _ in 0..n_runs {
            let t = next_t.saturating_add(c.varint()?);
            let k = c.varint()?;
            if t >= vocab as u64 || k == 0 || k > len {
                return Err(c.err("postings run token or length out of range"));
            }
            total += k as usize;
            if total > n_post {
                return Err(c.err("more postings than the segment header says"));
            }
            df[t as usize] += k as usize;
            runs_of[t as usize] += 1;
            entries.push((t as u32, k as u32));
            next_t = t + 1;
        }
        let data_len = c.varint()?;
        let data = c.bytes(usize::try_from(data_len).unwrap_or(usize::MAX))?;
        pieces.push(Piece {
            first: first as u32,
            end: end as u32,
            runs: start..entries.len(),
            data,
        });
    }

    c.done()?;
    if next_doc != n_docs as u64 || total != n_post {
        return Err(c.err("postings pieces disagree with the segment header"));
    }

    let mut term_start = Vec::with_capacity(vocab + 1);
    let mut run_slot = Vec::with_capacity(vocab + 1);
    let (mut at, mut slot) = (0usize, 0usize);
    for t in 0..vocab {
        term_start.push(at);
        run_slot.push(slot);
        at += df[t];
        slot += runs_of[t];
    }

    term_start.push(at);
    run_slot.push(slot);
    // Every run's place in `packed` and in the run table, in piece order.
    let mut cursor = term_start[..vocab].to_vec();
    let mut fill = run_slot[..vocab].to_vec();
    let mut slots = vec![(0u32, 0usize); entries.len()];
    let mut run_at = Vec::with_capacity(entries.len());
    for piece in &pieces {
        let tile = piece.first >> crate::postings::POSTINGS_TILE_SHIFT;
        for &(t, k) in &entries[piece.runs.clone()] {
            let t = t as usize;
            slots[fill[t]] = (tile, cursor[t]);
            run_at.push(cursor[t]);
            fill[t] += 1;
            cursor[t] += k as usize;
        }
    }

    // Pass 2: decode every run into its place, consecutive pieces on each
    // of `threads` threads.
    let mut packed = vec![0u32; total];
    let parts = threads.clamp(1, pieces.len().max(1));
    populate_in_shares(&mut packed, parts);
    let out = DisjointRuns::new(&mut packed);
    let decode = |group: std::ops::Range<usize>| -> Result<()> {
        for piece in &pieces[group] {
            let mut pc = Cursor::new(piece.data, c.path);
            for (&(_, k), &at) in entries[piece.runs.clone()]
                .iter()
                .zip(&run_at[piece.runs.clone()])
            {
                // SAFETY: `run_at` gives each run the next `k` places of its
                // token's list (`cursor` above), so no two runs overlap, and
                // the runs' lengths sum to `total` = `packed.len()`.
                let dst = unsafe { out.run(at, k as usize) };
                let mut start = piece.first as u64;
                for block in dst.chunks_mut(POSTING_BLOCK) {
                    let m = block.len();
                    let docs = unpack_docs(&mut pc, m, start, piece.end)?;
                    let weights = take_weights(&mut pc, m)?;
                    for (k, (x, &d)) in block.iter_mut().zip(&docs).enumerate() {
                        *x = crate::postings::pack(
                            d,
                            u16::from_le_bytes([weights[2 * k], weights[2 * k + 1]]),
                        );
                    }
                    start = docs[m - 1] as u64 + 1;
                }
            }
            pc.done()?;
        }
        Ok(())
    };

    // The first damaged piece in file order is the one reported.
    per_range(&even_groups(pieces.len(), parts), decode)
        .into_iter()
        .collect::<Result<()>>()?;
    // Pieces are whole tiles: every (token, piece) is one tile run, and the
    // slots are already token-major.
    let (run_tile, mut run_pos): (Vec<u32>, Vec<usize>) = slots.into_iter().unzip();
    run_pos.push(total);
    Ok(Postings {
        term_start,
        run_start: run_slot,
        run_tile,
        run_pos,
        packed,
    })
}
