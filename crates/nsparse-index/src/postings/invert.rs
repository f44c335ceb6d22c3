//! In-memory inversion on several threads: documents to token-major lists.

use crate::postings::Postings;
use crate::threads::{on_threads, per_range, populate_in_shares};

/// Where one kind of postings (neural or BM25) comes from: document `i`'s
/// `(token, element)` pairs, tokens ascending.
///
/// A trait rather than a closure so the per-posting callback is inlined
/// into the inversion loop (through `&mut dyn FnMut` it was an indirect call
/// per posting).
pub(crate) trait PostingSource: Sync {
    /// What a posting stores for its document.
    type Elem: Copy + Default + Send + Sync;
    /// Call `f(token, element)` for every posting of document `i`.
    fn each(&self, i: usize, f: impl FnMut(u32, Self::Elem));
    /// The number of postings [`PostingSource::each`] gives of document `i`.
    fn len(&self, i: usize) -> usize;
    /// Add one to `df[token]` for every posting of document `i`.
    #[inline]
    fn count(&self, i: usize, df: &mut [u32]) {
        self.each(i, |t, _| df[t as usize] += 1);
    }
}

/// Inverts one kind of postings (neural or BM25) on several threads.
///
/// Each thread owns a contiguous range of documents, cut at postings-tile
/// boundaries into *pieces* (at most 2^[`crate::postings::POSTINGS_TILE_SHIFT`] documents).
/// Inside every token's list, a piece's postings go after those of the
/// pieces before it, so the lists come out in ascending doc order with no
/// merge, and a token's run in a tile is the postings of that tile's pieces.
pub(crate) struct Inverter {
    /// Exclusive prefix sums: `term_start[t]..term_start[t + 1]` is token
    /// `t`'s run; `term_start[vocab]` is the number of postings.
    pub(crate) term_start: Vec<usize>,
    /// The pieces' documents, in doc order.
    pieces: Vec<std::ops::Range<usize>>,
    /// Per part (thread): its pieces' indexes.
    part_pieces: Vec<std::ops::Range<usize>>,
    /// Per piece, per token: postings of that piece (document frequency).
    piece_df: Vec<Vec<u32>>,
}

/// `range` cut at postings-tile boundaries.
pub(crate) fn tile_pieces(range: std::ops::Range<usize>) -> Vec<std::ops::Range<usize>> {
    let tile = 1usize << crate::postings::POSTINGS_TILE_SHIFT;
    let mut pieces = Vec::new();
    let mut a = range.start;
    while a < range.end {
        let b = ((a / tile + 1) * tile).min(range.end);
        pieces.push(a..b);
        a = b;
    }

    pieces
}

impl Inverter {
    /// Count postings per piece and token.
    pub(crate) fn count<S: PostingSource>(
        ranges: &[std::ops::Range<usize>],
        vocab: usize,
        src: &S,
    ) -> Inverter {
        let per_part: Vec<Vec<(std::ops::Range<usize>, Vec<u32>)>> = per_range(ranges, |r| {
            tile_pieces(r)
                .into_iter()
                .map(|piece| {
                    let mut df = vec![0u32; vocab];
                    for i in piece.clone() {
                        src.count(i, &mut df);
                    }
                    (piece, df)
                })
                .collect()
        });
        let mut pieces = Vec::new();
        let mut piece_df = Vec::new();
        let mut part_pieces = Vec::with_capacity(per_part.len());
        for part in per_part {
            let first = pieces.len();
            for (piece, df) in part {
                pieces.push(piece);
                piece_df.push(df);
            }
            part_pieces.push(first..pieces.len());
        }
        let mut term_start = vec![0usize; vocab + 1];
        for t in 0..vocab {
            let df: usize = piece_df.iter().map(|d| d[t] as usize).sum();
            term_start[t + 1] = term_start[t] + df;
        }
        Inverter {
            term_start,
            pieces,
            part_pieces,
            piece_df,
        }
    }

    /// Fill every token's list with the elements of `src`.
    pub(crate) fn invert<S: PostingSource>(&self, src: &S) -> Vec<S::Elem> {
        let vocab = self.term_start.len() - 1;
        let total = self.term_start[vocab];
        let parts = self.part_pieces.len();
        let mut out = vec![S::Elem::default(); total];
        // Fault the output pages in before the copies.
        populate_in_shares(&mut out, parts);
        // Per piece, per token: the piece's slice of the token's list.
        // Carving the array into disjoint slices lets the threads write in
        // parallel without sharing anything mutable.
        let mut dst: Vec<Vec<&mut [S::Elem]>> = (0..self.pieces.len())
            .map(|_| Vec::with_capacity(vocab))
            .collect();
        {
            let mut rest = &mut out[..];
            for t in 0..vocab {
                for (c, d) in dst.iter_mut().enumerate() {
                    let k = self.piece_df[c][t] as usize;
                    let (head, tail) = std::mem::take(&mut rest).split_at_mut(k);
                    d.push(head);
                    rest = tail;
                }
            }
        }
        let mut dst = dst.into_iter();
        let work: Vec<_> = self
            .part_pieces
            .iter()
            .map(|ps| {
                let own: Vec<_> = dst.by_ref().take(ps.len()).collect();
                (ps.clone(), own)
            })
            .collect();
        on_threads(work, |(ps, own)| {
            invert_pieces(&self.pieces[ps.clone()], &self.piece_df[ps], own, src)
        });
        out
    }

    /// The neural postings from the inverted lists: a token's run in a tile
    /// is the postings of that tile's pieces.
    pub(crate) fn into_postings(self, packed: Vec<u32>) -> Postings {
        let vocab = self.term_start.len() - 1;
        let tiles: Vec<u32> = self
            .pieces
            .iter()
            .map(|p| (p.start >> crate::postings::POSTINGS_TILE_SHIFT) as u32)
            .collect();
        let mut run_start = Vec::with_capacity(vocab + 1);
        let mut run_tile = Vec::new();
        let mut run_pos = Vec::new();
        for t in 0..vocab {
            run_start.push(run_tile.len());
            let mut pos = self.term_start[t];
            for (c, &tile) in tiles.iter().enumerate() {
                let k = self.piece_df[c][t] as usize;
                // A tile split between two parts continues the same run.
                if k > 0 && (run_tile.last() != Some(&tile) || run_start[t] == run_tile.len()) {
                    run_tile.push(tile);
                    run_pos.push(pos);
                }
                pos += k;
            }
        }
        run_start.push(run_tile.len());
        run_pos.push(packed.len());
        Postings {
            term_start: self.term_start,
            run_start,
            run_tile,
            run_pos,
            packed,
        }
    }
}

/// One thread's inversion of its pieces into their slices of every token's
/// list.
///
/// A piece's postings are counting-sorted by token into a buffer of the
/// piece's size, then every token's run is copied to its place in one go.
/// Scattering straight into the full arrays costs a cache and TLB miss per
/// posting at millions of documents; a copied run costs one. The buffer is
/// a whole tile (up to ~75 MB at 285 postings per document), so each token's
/// run is copied once per tile rather than once per small chunk, and it is
/// backed by transparent huge pages ([`crate::memory::huge_page_vec`]) so
/// the scatter's 30k write streams stay within the TLB's reach.
fn invert_pieces<S: PostingSource>(
    pieces: &[std::ops::Range<usize>],
    piece_df: &[Vec<u32>],
    dst: Vec<Vec<&mut [S::Elem]>>,
    src: &S,
) {
    let longest = piece_df
        .iter()
        .map(|df| df.iter().map(|&k| k as usize).sum::<usize>())
        .max()
        .unwrap_or(0);
    let mut local: Vec<S::Elem> = crate::memory::huge_page_vec(longest);
    let vocab = piece_df.first().map_or(0, |df| df.len());
    // u32 positions keep the per-token cursors (120 KiB) in L2.
    let mut cursor = vec![0u32; vocab];
    for ((piece, df), mut dst) in pieces.iter().zip(piece_df).zip(dst) {
        let mut run = 0u32;
        for (c, &k) in cursor.iter_mut().zip(df) {
            *c = run;
            run += k;
        }
        let local = &mut local[..run as usize];
        for i in piece.clone() {
            src.each(i, |t, e| {
                let c = &mut cursor[t as usize];
                local[*c as usize] = e;
                *c += 1;
            });
        }
        let mut s0 = 0usize;
        for (d, &k) in dst.iter_mut().zip(df) {
            let e = s0 + k as usize;
            d.copy_from_slice(&local[s0..e]);
            s0 = e;
        }
    }
}
