//! The format-3 postings section: tiles of 65,536 documents, each sorted
//! by token in cache-sized batches and encoded run by run.

use crate::codec::bitpack::{encode_block, POSTING_BLOCK};
use crate::codec::varint::{put_padded_varint, put_varint};
use crate::error::Result;
use crate::postings::invert::PostingSource;
use crate::threads::on_threads;

/// Postings a batch of a tile's documents gives at most (unless one
/// document alone gives more): a batch is counting-sorted in a buffer of
/// 4 bytes per posting that stays in a core's L2 cache (1 MB here).
const BATCH_POSTINGS: usize = 192 << 10;

/// One thread's encoder of postings tiles, with buffers reused from tile to
/// tile (so after the first tile they are warm memory, not fresh pages).
///
/// A tile's postings are sorted by token in two steps: each batch of
/// consecutive documents ([`BATCH_POSTINGS`]) is counting-sorted in a
/// cache-resident buffer, and then each token's postings of the batch are
/// copied, as one piece, after its earlier ones in the tile's buffer. A
/// single counting sort into the ~75 MB tile buffer writes ~30k streams at
/// once, and most of its stores miss the cache: a batch's piece for a token
/// lands in one or two lines instead (1M documents, one thread: scatter and
/// copies 1.6–2.1 s instead of 2.4–3.0 s, BENCHMARKS.md).
pub(crate) struct TileEncoder {
    /// The tile's postings counting-sorted by token.
    sorted: Vec<u32>,
    /// Per token: where its next posting goes in `sorted`.
    cursor: Vec<u32>,
    /// The tile's postings per token.
    df: Vec<u32>,
    /// Where each batch of the tile's documents ends.
    pub(crate) batch_ends: Vec<usize>,
    /// Per batch, per token (a row of `vocab` per batch): its postings in
    /// the batch. A row per [`BATCH_POSTINGS`] postings: 16 % of `sorted`'s
    /// size for the bert-base vocabulary.
    batch_df: Vec<u32>,
    /// One batch's postings counting-sorted by token.
    batch: Vec<u32>,
    /// Per token: where its next posting goes in `batch`.
    batch_cursor: Vec<u32>,
    /// The batch size, [`BATCH_POSTINGS`] (smaller in tests).
    pub(crate) batch_postings: usize,
    /// The tile's header and run directory.
    pub(crate) head: Vec<u8>,
    /// The tile's encoded runs (when streaming, those not yet written).
    pub(crate) data: Vec<u8>,
    /// Per token: the largest quantized weight seen (f16 bits of positive
    /// values order like the values).
    pub(crate) max_bits: Vec<u16>,
}

impl TileEncoder {
    /// An encoder for tiles of at most `longest` postings.
    pub(crate) fn new(longest: usize, vocab: usize) -> TileEncoder {
        TileEncoder {
            // Huge pages: the copies write ~30k places per batch, which
            // 4 KiB pages would spread over more TLB entries than there are.
            sorted: crate::memory::huge_page_vec(longest),
            cursor: vec![0; vocab],
            df: vec![0; vocab],
            batch_ends: Vec::new(),
            batch_df: Vec::new(),
            batch: Vec::new(),
            batch_cursor: vec![0; vocab],
            batch_postings: BATCH_POSTINGS,
            head: Vec::new(),
            data: Vec::new(),
            max_bits: vec![0; vocab],
        }
    }

    /// Cut the documents `tile` into batches and count each batch's
    /// postings per token, and the tile's.
    pub(crate) fn count<S: PostingSource>(&mut self, tile: std::ops::Range<usize>, src: &S) {
        let vocab = self.df.len();
        self.batch_ends.clear();
        let mut in_batch = 0usize;
        for i in tile.clone() {
            let k = src.len(i);
            if in_batch > 0 && in_batch + k > self.batch_postings {
                self.batch_ends.push(i);
                in_batch = 0;
            }
            in_batch += k;
        }
        self.batch_ends.push(tile.end);
        self.batch_df.resize(self.batch_ends.len() * vocab, 0);
        self.df.fill(0);
        let mut start = tile.start;
        for (row, &end) in self.batch_df.chunks_exact_mut(vocab).zip(&self.batch_ends) {
            // Zeroed and summed while it is in cache.
            row.fill(0);
            for i in start..end {
                src.count(i, row);
            }
            for (d, &k) in self.df.iter_mut().zip(&*row) {
                *d += k;
            }
            start = end;
        }
    }

    /// Sort and encode the postings of the documents `tile` (one whole
    /// tile, or the segment's last, partial one); returns the tile's number
    /// of postings. With `out`, the tile goes straight into the file as it
    /// is encoded; without, into `head` and `data` for the caller to
    /// append.
    ///
    /// Streaming saves copying a tile's ~50 MB of runs from memory once
    /// more (its pieces are copied while in cache) and the device gets them
    /// as they come instead of in one burst. It needs the runs' byte length
    /// before the runs: that varint is written as a zero stretch and filled
    /// once they are done ([`crate::directory::container::ContainerFile::reserve`]), so it has a
    /// fixed width ([`DATA_LEN_BYTES`], also when buffered, so the file's
    /// bytes do not depend on the thread count).
    pub(crate) fn encode<S: PostingSource<Elem = u32>>(
        &mut self,
        tile: std::ops::Range<usize>,
        src: &S,
        mut out: Option<&mut crate::directory::container::ContainerFile>,
    ) -> Result<usize> {
        self.count(tile.clone(), src);
        let TileEncoder {
            sorted,
            cursor,
            df,
            batch_ends,
            batch_df,
            batch,
            batch_cursor,
            head,
            data,
            max_bits,
            ..
        } = self;
        let vocab = df.len();
        let total = starts_of(df, cursor);
        if sorted.len() < total as usize {
            // Only if the caller's `longest` was short: not on a hot path.
            *sorted = crate::memory::huge_page_vec(total as usize);
        }
        let sorted = &mut sorted[..total as usize];
        let mut start = tile.start;
        for (row, &end) in batch_df.chunks_exact(vocab).zip(batch_ends.iter()) {
            let n = starts_of(row, batch_cursor);
            if batch.len() < n as usize {
                batch.resize(n as usize, 0);
            }
            let batch = &mut batch[..n as usize];
            for i in start..end {
                src.each(i, |t, e| {
                    let c = &mut batch_cursor[t as usize];
                    batch[*c as usize] = e;
                    *c += 1;
                });
            }
            let mut from = 0usize;
            for (c, &k) in cursor.iter_mut().zip(row) {
                if k > 0 {
                    let (at, k) = (*c as usize, k as usize);
                    copy_piece(&mut sorted[at..at + k], &batch[from..from + k]);
                    *c += k as u32;
                    from += k;
                }
            }
            start = end;
        }
        head.clear();
        data.clear();
        // Room for the worst case (6 bytes per posting: 32-bit gaps, block
        // headers) up front, of the whole tile or of one piece and a run:
        // growing by doubling would copy and fault in about twice the
        // memory, and pages of the room never written are never touched.
        let room = match out {
            Some(_) => STREAM_PIECE + 6 * tile.len(),
            None => 6 * total as usize,
        };
        data.reserve(room + 4096);
        put_varint(head, tile.start as u64);
        put_varint(head, tile.len() as u64);
        put_varint(head, df.iter().filter(|&&k| k > 0).count() as u64);
        let mut next_t = 0usize;
        for (t, &k) in df.iter().enumerate() {
            if k > 0 {
                put_varint(head, (t - next_t) as u64);
                put_varint(head, k as u64);
                next_t = t + 1;
            }
        }
        if let Some(out) = out.as_deref_mut() {
            out.append(head)?;
            out.reserve(DATA_LEN_BYTES)?;
        }
        let mut streamed = 0usize;
        let mut gaps = [0u32; POSTING_BLOCK];
        let mut weights = [0u16; POSTING_BLOCK];
        let mut at = 0usize;
        for (t, &k) in df.iter().enumerate() {
            if k == 0 {
                continue;
            }
            let run = &sorted[at..at + k as usize];
            at += k as usize;
            // Offsets are within the tile, which starts at a tile boundary:
            // the run's first gap is its first doc's offset.
            let mut next = 0u32;
            let mut most = max_bits[t];
            for block in run.chunks(POSTING_BLOCK) {
                // Gaps from neighbouring offsets, weights and their maximum
                // in separate loops without a carried value, which the
                // compiler vectorises: with the gap carried from posting to
                // posting, this loop and `encode_block` took ~1.6x as long
                // (BENCHMARKS.md).
                let m = block.len();
                gaps[0] = crate::postings::offset(block[0]) - next;
                for ((g, &x), &before) in gaps[1..m].iter_mut().zip(&block[1..]).zip(block) {
                    *g = crate::postings::offset(x) - crate::postings::offset(before) - 1;
                }
                for (w, &x) in weights[..m].iter_mut().zip(block) {
                    *w = crate::postings::weight_bits(x);
                }
                most = weights[..m].iter().fold(most, |a, &w| a.max(w));
                next = crate::postings::offset(block[m - 1]) + 1;
                encode_block(&gaps[..m], &weights[..m], data);
            }
            max_bits[t] = most;
            if let Some(out) = out.as_deref_mut() {
                if data.len() >= STREAM_PIECE {
                    out.append(data)?;
                    streamed += data.len();
                    data.clear();
                }
            }
        }
        let mut len = Vec::with_capacity(DATA_LEN_BYTES);
        put_padded_varint(&mut len, (streamed + data.len()) as u64, DATA_LEN_BYTES);
        match out {
            Some(out) => {
                out.append(data)?;
                out.fill(&len)?;
                data.clear();
            }
            None => head.extend_from_slice(&len),
        }
        Ok(total as usize)
    }
}

/// Set `starts` to the exclusive prefix sums of `counts` (where each
/// token's postings start in a buffer sorted by token) and return the total.
#[inline]
fn starts_of(counts: &[u32], starts: &mut [u32]) -> u32 {
    let mut total = 0u32;
    for (s, &k) in starts.iter_mut().zip(counts) {
        *s = total;
        total += k;
    }

    total
}

/// Copy `src` into `dst` (of the same, non-zero length) in fixed-size
/// moves, overlapping within the piece instead of calling `memcpy`: most
/// pieces hold a few postings, and `memcpy`'s call and size dispatch cost
/// more than the copy.
#[inline(always)]
pub(crate) fn copy_piece(dst: &mut [u32], src: &[u32]) {
    let k = dst.len();
    debug_assert!(k > 0 && src.len() == k);
    if k >= 4 {
        let mut j = 0;
        while j + 4 < k {
            dst[j..j + 4].copy_from_slice(&src[j..j + 4]);
            j += 4;
        }
        dst[k - 4..].copy_from_slice(&src[k - 4..]);
    } else if k >= 2 {
        dst[..2].copy_from_slice(&src[..2]);
        dst[k - 2..].copy_from_slice(&src[k - 2..]);
    } else {
        dst[0] = src[0];
    }
}

/// Bytes of a tile's runs a streaming [`TileEncoder`] collects before
/// writing them (they stay in cache until copied).
const STREAM_PIECE: usize = 128 << 10;

/// Width of a tile's runs byte length in the file: a LEB128 varint padded
/// with continuation bytes, which any varint reader accepts. Five bytes
/// hold 35 bits, and a tile's runs are at most 6 bytes × 2^16 documents ×
/// 2^16 tokens < 2^35 bytes.
const DATA_LEN_BYTES: usize = 5;

/// Write the neural postings section of format version 3, tile by tile, on
/// `workers` threads; returns per token the largest quantized weight.
///
/// Layout: the number of tiles, then per tile of documents, in order: its
/// first doc id, its number of docs (2^[`crate::postings::POSTINGS_TILE_SHIFT`], fewer in
/// the last tile), its number of runs, per run the token (as the distance
/// from the previous run's token plus one, the first as itself) and its
/// number of postings, the byte length of the runs' data (a varint; this
/// writer pads it to [`DATA_LEN_BYTES`]), then the data:
/// each run's postings in blocks of [`POSTING_BLOCK`] ([`encode_block`]),
/// the run's first gap counted from the tile's first doc. The directory in
/// front lets a reader place every run before decoding any. A reader
/// rejects anything else (tiles out of order, partial tiles before the
/// last), so a token has at most one run per tile, as in memory.
pub(crate) fn write_postings<S: PostingSource<Elem = u32>>(
    out: &mut crate::directory::container::ContainerFile,
    tiles: &[std::ops::Range<usize>],
    src: &S,
    workers: usize,
    vocab: usize,
) -> Result<(Vec<u16>, usize)> {
    put_varint(out.buffer(), tiles.len() as u64);
    let longest = tiles
        .iter()
        .map(|tile| tile.clone().map(|i| src.len(i)).sum::<usize>())
        .max()
        .unwrap_or(0);
    let workers = workers.clamp(1, tiles.len().max(1));
    let mut encoders: Vec<TileEncoder> = (0..workers)
        .map(|_| TileEncoder::new(longest, vocab))
        .collect();
    let mut total = 0usize;
    if let [e] = &mut encoders[..] {
        // One thread: each tile goes into the file as it is encoded.
        for tile in tiles {
            total += e.encode(tile.clone(), src, Some(out))?;
        }
    } else {
        for round in tiles.chunks(workers) {
            let jobs = encoders.iter_mut().zip(round);
            let done = on_threads(jobs, |(e, tile)| e.encode(tile.clone(), src, None));
            for n in done {
                total += n?;
            }
            for e in &encoders[..round.len()] {
                out.append(&e.head)?;
                out.append(&e.data)?;
            }
        }
    }

    let mut max_bits = vec![0u16; vocab];
    for e in &encoders {
        for (m, &b) in max_bits.iter_mut().zip(&e.max_bits) {
            *m = (*m).max(b);
        }
    }

    Ok((max_bits, total))
}
