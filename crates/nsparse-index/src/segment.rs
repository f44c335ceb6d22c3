//! Immutable segments: build from documents, serialize, load and verify.
//!
//! On disk a segment holds the inverted postings (neural and BM25), the `_id`s
//! and compressed sources. The forward index (per-document vectors) and the
//! block-max table used for pruning are *derived* in memory at load time from
//! the postings, so they cost no disk space and cannot disagree with them.

use std::path::Path;

use crate::error::{Error, Result};
use crate::format::{self, dequantize, put_padded_varint, put_varint, Cursor};
use crate::id_index::IdIndex;
use crate::postings::{self, Postings, PostingsBuilder};

pub(crate) const SEG_MAGIC: &[u8; 8] = b"NSPSEG\0\0";
/// Segment format written by this build. Version 3 stores the neural
/// postings tile by tile ([`write_postings`]); version 2 stored them token by
/// token, each block's doc-id gaps bit-packed; version 1 used delta varints.
/// All three are read.
pub(crate) const SEG_VERSION: u32 = 3;
/// Oldest segment format this build reads.
const SEG_OLDEST_READABLE: u32 = 1;

const SEC_META: u32 = 1;
const SEC_IDS: u32 = 2;
const SEC_POSTINGS: u32 = 3;
const SEC_BM25: u32 = 4;
const SEC_SOURCE: u32 = 5;

/// Postings per compression block on disk.
pub(crate) const POSTING_BLOCK: usize = 128;
/// log2 of the number of consecutive doc ids per block-max (pruning) block.
pub(crate) const DOC_BLOCK_SHIFT: u32 = 6;
/// Documents per compressed source chunk.
pub(crate) const SOURCE_CHUNK: usize = 32;

/// A validated, quantized document ready to go into a segment.
#[derive(Clone, Debug)]
pub(crate) struct DocRecord {
    pub id: String,
    /// (token, quantized weight), sorted by token, weights non-zero.
    pub vec: Vec<(u16, u16)>,
    /// BM25 term frequencies (token, tf), sorted by token.
    pub tf: Vec<(u16, u32)>,
    /// BM25 document length in tokens.
    pub len: u32,
    /// Uncompressed source bytes.
    pub source: Vec<u8>,
}

/// In-memory, read-only segment.
#[derive(Debug)]
pub(crate) struct Segment {
    pub n_docs: u32,
    pub vocab: u32,
    pub ids: Vec<String>,
    /// `_id` → position in `ids` (derived at build and load).
    pub id_index: IdIndex,
    /// Neural postings, grouped by token: docs ascending within a token.
    /// Read through [`Segment::postings`] (which loads them) or
    /// [`Segment::post`]: a segment just written by
    /// [`Segment::build_and_write`] leaves them on disk until first use.
    post: std::sync::OnceLock<Postings>,
    /// Serialises the loading of `post` (the load can fail, so it cannot
    /// run inside `OnceLock::get_or_init`).
    post_loading: std::sync::Mutex<()>,
    /// The segment's file, where unloaded postings are read from.
    file: Option<std::path::PathBuf>,
    /// Number of neural postings (known before they are loaded).
    n_post: usize,
    /// Block-max table, built on first use (only the block-max and BMP-style
    /// modes need it; it costs about as much memory as the doc ids).
    pub block_max: std::sync::OnceLock<BlockMax>,
    /// Dense weight columns of the most frequent tokens, built on first use
    /// (see [`DenseColumns`]).
    pub dense: std::sync::OnceLock<DenseColumns>,
    /// Per token, the largest dequantized weight in this segment.
    pub term_max: Vec<f32>,
    // BM25.
    /// Token `t`'s BM25 postings are `tf_post[tf_start[t]..tf_start[t + 1]]`.
    pub tf_start: Vec<usize>,
    /// BM25 postings: (doc id, term frequency), docs ascending per token.
    pub tf_post: Vec<(u32, u32)>,
    pub doc_len: Vec<u32>,
    pub total_len: u64,
    // Sources: lz4 block-compressed chunks of SOURCE_CHUNK docs.
    pub src_chunks: Vec<(usize, usize, usize)>, // (offset, compressed len, uncompressed len)
    pub src_data: Vec<u8>,
}

/// What a segment is built from: validated documents in doc-id order.
///
/// The bulk loader implements it straight over the caller's documents, so a
/// large load never holds a second, quantized copy of every vector.
pub(crate) trait SegmentInput: Sync {
    /// Number of documents.
    fn n_docs(&self) -> usize;
    /// `_id` of document `i`.
    fn id(&self, i: usize) -> &str;
    /// Calls `f(token, quantized weight)` for document `i`'s non-zero
    /// quantized weights, tokens strictly ascending.
    fn for_each_posting(&self, i: usize, f: impl FnMut(u16, u16));
    /// Adds one to `df[token]` for every posting [`SegmentInput::for_each_posting`]
    /// gives of document `i`. An input can count without quantizing.
    #[inline]
    fn count_postings(&self, i: usize, df: &mut [u32]) {
        self.for_each_posting(i, |t, _| df[t as usize] += 1);
    }
    /// The number of postings [`SegmentInput::for_each_posting`] gives of
    /// document `i`, known without reading them.
    fn n_postings(&self, i: usize) -> usize;
    /// BM25 term frequencies of document `i`, tokens ascending.
    fn tf(&self, i: usize) -> &[(u16, u32)];
    /// BM25 length of document `i` in tokens.
    fn doc_len(&self, i: usize) -> u32;
    /// Uncompressed source bytes of document `i`.
    fn source(&self, i: usize) -> &[u8];
}

impl SegmentInput for [DocRecord] {
    fn n_docs(&self) -> usize {
        self.len()
    }
    fn id(&self, i: usize) -> &str {
        &self[i].id
    }
    #[inline]
    fn for_each_posting(&self, i: usize, mut f: impl FnMut(u16, u16)) {
        for &(t, w) in &self[i].vec {
            f(t, w);
        }
    }
    fn n_postings(&self, i: usize) -> usize {
        self[i].vec.len()
    }
    fn tf(&self, i: usize) -> &[(u16, u32)] {
        &self[i].tf
    }
    fn doc_len(&self, i: usize) -> u32 {
        self[i].len
    }
    fn source(&self, i: usize) -> &[u8] {
        &self[i].source
    }
}

/// Threads a segment build uses: `limit`, or with `limit` 0 the machine's
/// cores (at most 8); and at most one per 64k documents so small segments
/// (tests, WAL flushes) stay serial.
pub(crate) fn build_threads(n_docs: usize, limit: usize) -> usize {
    let most = match limit {
        0 => std::thread::available_parallelism()
            .map_or(1, |c| c.get())
            .clamp(1, 8),
        n => n,
    };
    most.min(n_docs / 65_536 + 1)
}

/// Split `0..n` into `parts` contiguous ranges whose starts are multiples of
/// `SOURCE_CHUNK`, so every part compresses whole source chunks.
pub(crate) fn doc_ranges(n: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let chunks = n.div_ceil(SOURCE_CHUNK);
    (0..parts)
        .map(|p| {
            let a = (chunks * p / parts * SOURCE_CHUNK).min(n);
            let b = (chunks * (p + 1) / parts * SOURCE_CHUNK).min(n);
            a..b
        })
        .collect()
}

/// Where one kind of postings (neural or BM25) comes from: document `i`'s
/// `(token, element)` pairs, tokens ascending.
///
/// A trait rather than a closure so the per-posting callback is inlined
/// into the inversion loop (through `&mut dyn FnMut` it was an indirect call
/// per posting).
trait PostingSource: Sync {
    /// What a posting stores for its document.
    type Elem: Copy + Default + Send + Sync;
    /// Call `f(token, element)` for every posting of document `i`.
    fn each(&self, i: usize, f: impl FnMut(u16, Self::Elem));
    /// The number of postings [`PostingSource::each`] gives of document `i`.
    fn len(&self, i: usize) -> usize;
    /// Add one to `df[token]` for every posting of document `i`.
    #[inline]
    fn count(&self, i: usize, df: &mut [u32]) {
        self.each(i, |t, _| df[t as usize] += 1);
    }
}

/// The neural postings of a [`SegmentInput`]: packed (tile offset, f16 weight).
struct NeuralSource<'a, D: ?Sized>(&'a D);

impl<D: SegmentInput + ?Sized> PostingSource for NeuralSource<'_, D> {
    type Elem = u32;
    #[inline]
    fn each(&self, i: usize, mut f: impl FnMut(u16, u32)) {
        self.0
            .for_each_posting(i, |t, w| f(t, postings::pack(i as u32, w)))
    }
    #[inline]
    fn count(&self, i: usize, df: &mut [u32]) {
        self.0.count_postings(i, df)
    }
    fn len(&self, i: usize) -> usize {
        self.0.n_postings(i)
    }
}

/// The BM25 postings of a [`SegmentInput`]: (doc, term frequency).
struct Bm25Source<'a, D: ?Sized>(&'a D);

impl<D: SegmentInput + ?Sized> PostingSource for Bm25Source<'_, D> {
    type Elem = (u32, u32);
    #[inline]
    fn each(&self, i: usize, mut f: impl FnMut(u16, (u32, u32))) {
        for &(t, c) in self.0.tf(i) {
            f(t, (i as u32, c));
        }
    }
    fn len(&self, i: usize) -> usize {
        self.0.tf(i).len()
    }
}

/// Inverts one kind of postings (neural or BM25) on several threads.
///
/// Each thread owns a contiguous range of documents, cut at postings-tile
/// boundaries into *pieces* (at most 2^[`postings::TILE_SHIFT`] documents).
/// Inside every token's list, a piece's postings go after those of the
/// pieces before it, so the lists come out in ascending doc order with no
/// merge, and a token's run in a tile is the postings of that tile's pieces.
struct Inverter {
    /// Exclusive prefix sums: `term_start[t]..term_start[t + 1]` is token
    /// `t`'s run; `term_start[vocab]` is the number of postings.
    term_start: Vec<usize>,
    /// The pieces' documents, in doc order.
    pieces: Vec<std::ops::Range<usize>>,
    /// Per part (thread): its pieces' indexes.
    part_pieces: Vec<std::ops::Range<usize>>,
    /// Per piece, per token: postings of that piece (document frequency).
    piece_df: Vec<Vec<u32>>,
}

/// `range` cut at postings-tile boundaries.
fn tile_pieces(range: std::ops::Range<usize>) -> Vec<std::ops::Range<usize>> {
    let tile = 1usize << postings::TILE_SHIFT;
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
    fn count<S: PostingSource>(
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
    fn invert<S: PostingSource>(&self, src: &S) -> Vec<S::Elem> {
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
    fn into_postings(self, packed: Vec<u32>) -> Postings {
        let vocab = self.term_start.len() - 1;
        let tiles: Vec<u32> = self
            .pieces
            .iter()
            .map(|p| (p.start >> postings::TILE_SHIFT) as u32)
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

/// Append one postings block of format versions 2 and 3 to `buf`.
///
/// `gaps[0]` is the distance from the list's previous doc id plus one (the
/// doc id itself for a list's first block), then every next gap is
/// `doc - previous doc - 1`. Layout: `gaps[0]` as a LEB128 varint; one byte
/// `b`, the bit width of the largest other gap (0 to 32); the other
/// `m - 1` gaps at `b` bits each, least significant bit first, in
/// `ceil((m - 1) · b / 8)` bytes; the `m` f16 weights, little-endian.
///
/// Bit-packing instead of one varint per gap: a block of a frequent token
/// (most postings) needs a few bits per gap instead of a byte. At 1M
/// documents doc ids take 0.86 instead of 1.11 bytes per posting (the file
/// 2.86 instead of 3.11). The gaps are packed in groups ([`pack_groups`])
/// and the weights copied element-wise: ~1.4 instead of ~2.6 ns per
/// posting for this function (BENCHMARKS.md, session 13).
fn encode_block(gaps: &[u32], weights: &[u16], buf: &mut Vec<u8>) {
    put_varint(buf, gaps[0] as u64);
    let rest = &gaps[1..];
    let width = 32 - rest.iter().fold(0u32, |a, &g| a | g).leading_zeros();
    buf.push(width as u8);
    let at = buf.len();
    let n = rest.len();
    let groups = n.div_ceil(PACK_GROUP);
    let packed = (n * width as usize).div_ceil(8);
    // Room for whole groups (the last one padded with zero gaps, whose
    // bytes past `packed` the weights then overwrite or the truncation cuts).
    buf.resize(at + groups * 4 * width as usize + 2 * weights.len(), 0);
    let dst = &mut buf[at..];
    let mut lanes = [0u32; GROUPS_MAX * PACK_GROUP];
    lanes[..n].copy_from_slice(rest);
    match groups {
        0 => {}
        1 => pack_groups::<1>(&lanes, width, dst),
        2 => pack_groups::<2>(&lanes, width, dst),
        3 => pack_groups::<3>(&lanes, width, dst),
        _ => pack_groups::<GROUPS_MAX>(&lanes, width, dst),
    }
    // Element by element, so the compiler vectorises the copy (a cursor
    // bumped per weight kept a bounds check per store).
    for (d, &w) in dst[packed..packed + 2 * weights.len()]
        .chunks_exact_mut(2)
        .zip(weights)
    {
        d.copy_from_slice(&w.to_le_bytes());
    }
    buf.truncate(at + packed + 2 * weights.len());
}

/// Gaps per packing group: 32 gaps of any width `w` fill exactly `w`
/// 32-bit words, so every group starts on a word boundary of the block's
/// bit stream.
const PACK_GROUP: usize = 32;
/// Groups in a block's `POSTING_BLOCK - 1` bit-packed gaps.
const GROUPS_MAX: usize = (POSTING_BLOCK - 1).div_ceil(PACK_GROUP);

/// Bit-pack `G` groups of [`PACK_GROUP`] gaps of `width` bits, group `c`
/// from `lanes[c * 32..]` into `dst[c * 4 * width..]`, least significant bit
/// first: the same bytes as one accumulator running over all the gaps.
///
/// The groups advance in lockstep: one shift amount and one flush test per
/// step serve all of them, and their accumulators are independent chains.
/// One chain over the whole block cost a serial shift/or and a poorly
/// predicted flush branch per gap; with the element-wise weight copy this
/// halves `encode_block`.
#[inline(always)]
fn pack_groups<const G: usize>(lanes: &[u32; GROUPS_MAX * PACK_GROUP], width: u32, dst: &mut [u8]) {
    let stride = 4 * width as usize;
    let dst = &mut dst[..G * stride];
    let mut acc = [0u64; G];
    let (mut bits, mut k) = (0u32, 0usize);
    for j in 0..PACK_GROUP {
        for (c, a) in acc.iter_mut().enumerate() {
            *a |= (lanes[c * PACK_GROUP + j] as u64) << bits;
        }
        bits += width;
        if bits >= 32 {
            for (c, a) in acc.iter_mut().enumerate() {
                let o = c * stride + k;
                dst[o..o + 4].copy_from_slice(&(*a as u32).to_le_bytes());
                *a >>= 32;
            }
            k += 4;
            bits -= 32;
        }
    }
}

/// The reference definition of [`encode_block`]'s bytes: one accumulator
/// over all the gaps (what the encoder did until session 13).
#[cfg(test)]
fn encode_block_serial(gaps: &[u32], weights: &[u16], buf: &mut Vec<u8>) {
    put_varint(buf, gaps[0] as u64);
    let rest = &gaps[1..];
    let width = 32 - rest.iter().fold(0u32, |a, &g| a | g).leading_zeros();
    buf.push(width as u8);
    let at = buf.len();
    let packed = (rest.len() * width as usize).div_ceil(8);
    buf.resize(at + packed + 2 * weights.len() + 8, 0);
    let dst = &mut buf[at..];
    let mut k = 0;
    let (mut acc, mut bits) = (0u64, 0u32);
    for &g in rest {
        acc |= (g as u64) << bits;
        bits += width;
        if bits >= 32 {
            dst[k..k + 4].copy_from_slice(&(acc as u32).to_le_bytes());
            k += 4;
            acc >>= 32;
            bits -= 32;
        }
    }
    dst[k..k + 8].copy_from_slice(&acc.to_le_bytes());
    k += bits.div_ceil(8) as usize;
    for &w in weights {
        dst[k..k + 2].copy_from_slice(&w.to_le_bytes());
        k += 2;
    }
    buf.truncate(at + k);
}

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
/// copies 1.6–2.1 s instead of 2.4–3.0 s, BENCHMARKS.md, session 15).
struct TileEncoder {
    /// The tile's postings counting-sorted by token.
    sorted: Vec<u32>,
    /// Per token: where its next posting goes in `sorted`.
    cursor: Vec<u32>,
    /// The tile's postings per token.
    df: Vec<u32>,
    /// Where each batch of the tile's documents ends.
    batch_ends: Vec<usize>,
    /// Per batch, per token (a row of `vocab` per batch): its postings in
    /// the batch. A row per [`BATCH_POSTINGS`] postings: 16 % of `sorted`'s
    /// size for the bert-base vocabulary.
    batch_df: Vec<u32>,
    /// One batch's postings counting-sorted by token.
    batch: Vec<u32>,
    /// Per token: where its next posting goes in `batch`.
    batch_cursor: Vec<u32>,
    /// The batch size, [`BATCH_POSTINGS`] (smaller in tests).
    batch_postings: usize,
    /// The tile's header and run directory.
    head: Vec<u8>,
    /// The tile's encoded runs (when streaming, those not yet written).
    data: Vec<u8>,
    /// Per token: the largest quantized weight seen (f16 bits of positive
    /// values order like the values).
    max_bits: Vec<u16>,
}

impl TileEncoder {
    /// An encoder for tiles of at most `longest` postings.
    fn new(longest: usize, vocab: usize) -> TileEncoder {
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
    fn count<S: PostingSource>(&mut self, tile: std::ops::Range<usize>, src: &S) {
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
    /// once they are done ([`format::ContainerFile::reserve`]), so it has a
    /// fixed width ([`DATA_LEN_BYTES`], also when buffered, so the file's
    /// bytes do not depend on the thread count).
    fn encode<S: PostingSource<Elem = u32>>(
        &mut self,
        tile: std::ops::Range<usize>,
        src: &S,
        mut out: Option<&mut format::ContainerFile>,
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
                // (BENCHMARKS.md, session 13).
                let m = block.len();
                gaps[0] = postings::offset(block[0]) - next;
                for ((g, &x), &before) in gaps[1..m].iter_mut().zip(&block[1..]).zip(block) {
                    *g = postings::offset(x) - postings::offset(before) - 1;
                }
                for (w, &x) in weights[..m].iter_mut().zip(block) {
                    *w = postings::weight_bits(x);
                }
                most = weights[..m].iter().fold(most, |a, &w| a.max(w));
                next = postings::offset(block[m - 1]) + 1;
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
fn copy_piece(dst: &mut [u32], src: &[u32]) {
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
/// first doc id, its number of docs (2^[`postings::TILE_SHIFT`], fewer in
/// the last tile), its number of runs, per run the token (as the distance
/// from the previous run's token plus one, the first as itself) and its
/// number of postings, the byte length of the runs' data (a varint; this
/// writer pads it to [`DATA_LEN_BYTES`]), then the data:
/// each run's postings in blocks of [`POSTING_BLOCK`] ([`encode_block`]),
/// the run's first gap counted from the tile's first doc. The directory in
/// front lets a reader place every run before decoding any. A reader
/// rejects anything else (tiles out of order, partial tiles before the
/// last), so a token has at most one run per tile, as in memory.
fn write_postings<S: PostingSource<Elem = u32>>(
    out: &mut format::ContainerFile,
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
fn decode_tile_postings(
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
        let tile_end = (first + (1 << postings::TILE_SHIFT)).min(n_docs as u64);
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
        let tile = piece.first >> postings::TILE_SHIFT;
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
                        *x = postings::pack(
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

/// Read the neural postings of the segment file `path` (format 3), after
/// verifying its checksums and that it is the segment described by
/// `n_docs`, `vocab` and `n_post`.
fn load_postings(path: &Path, n_docs: u32, vocab: u32, n_post: usize) -> Result<Postings> {
    let load = |bytes: &[u8]| -> Result<Postings> {
        let (version, secs) = format::read_container_of(path, bytes, SEG_MAGIC, 3..=SEG_VERSION)?;
        let mut c = Cursor::new(format::section(path, &secs, SEC_META)?, path);
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
        let mut c = Cursor::new(format::section(path, &secs, SEC_POSTINGS)?, path);
        // Decoding, like a build, uses the cores (at most one thread per 64k docs).
        let threads = build_threads(n_docs as usize, 0);
        decode_tile_postings(&mut c, vocab as usize, n_docs, n_post, threads)
    };
    match format::map_file(path)? {
        Some(map) => load(&map),
        None => load(&format::read_file(path)?),
    }
}

/// Read the doc ids of one bit-packed postings block ([`encode_block`]) of
/// `m` ≤ [`POSTING_BLOCK`] entries whose first doc id is `start` plus the
/// block's first gap, checking that every doc id is below `limit`.
#[inline]
fn unpack_docs(
    c: &mut Cursor<'_>,
    m: usize,
    start: u64,
    limit: u32,
) -> Result<[u32; POSTING_BLOCK]> {
    let first = c.varint()?;
    let width = c.bytes(1)?[0] as usize;
    if width > 32 {
        return Err(c.err("postings bit width above 32"));
    }
    let packed = c.bytes(((m - 1) * width).div_ceil(8))?;
    // A zero-padded copy lets every gap be read with one 8-byte load.
    let mut padded = [0u8; (POSTING_BLOCK - 1) * 4 + 8];
    padded[..packed.len()].copy_from_slice(packed);
    let mask = (1u64 << width) - 1;
    // Gaps are below 2^32, the first below 2^35 (varint bound) and `start`
    // at most 2^32: sums of at most 128 of them cannot overflow a u64.
    let mut d = start + first;
    let mut docs = [0u32; POSTING_BLOCK];
    docs[0] = d as u32;
    for (i, doc) in docs[1..m].iter_mut().enumerate() {
        let bit = i * width;
        let word = u64::from_le_bytes(padded[bit / 8..bit / 8 + 8].try_into().unwrap_or_default());
        d += ((word >> (bit % 8)) & mask) + 1;
        // Truncation is harmless: the range check below rejects the block.
        *doc = d as u32;
    }
    // Doc ids ascend, so the last one bounds them all.
    if d >= limit as u64 {
        return Err(c.err("doc id out of range in postings"));
    }
    Ok(docs)
}

/// Decode one postings block of format version 2 ([`encode_block`]) of
/// `m` ≤ [`POSTING_BLOCK`] entries onto `out`'s current token, checking
/// every value. `prev` is the list's last doc id so far (`None` at its start).
#[inline]
fn decode_packed_block(
    c: &mut Cursor<'_>,
    m: usize,
    prev: &mut Option<u32>,
    n_docs: u32,
    out: &mut PostingsBuilder,
) -> Result<()> {
    let start = prev.map_or(0, |p| p as u64 + 1);
    let docs = unpack_docs(c, m, start, n_docs)?;
    push_with_weights(c, &docs[..m], out)?;
    *prev = Some(docs[m - 1]);
    Ok(())
}

/// Read the f16 weights of a block whose doc ids are `docs` ([`take_weights`])
/// and push the postings onto `out`'s current token (formats 1 and 2).
#[inline]
fn push_with_weights(c: &mut Cursor<'_>, docs: &[u32], out: &mut PostingsBuilder) -> Result<()> {
    let weights = take_weights(c, docs.len())?;
    for (k, &d) in docs.iter().enumerate() {
        out.push(d, u16::from_le_bytes([weights[2 * k], weights[2 * k + 1]]));
    }
    Ok(())
}

/// The `m` little-endian f16 weights at the cursor (a block's tail in every
/// format), checked to be positive, finite and normal.
#[inline]
fn take_weights<'a>(c: &mut Cursor<'a>, m: usize) -> Result<&'a [u8]> {
    let Some(bytes) = c.buf.get(c.pos..c.pos + 2 * m) else {
        return Err(c.err("truncated weights"));
    };
    let weight = |k: usize| u16::from_le_bytes([bytes[2 * k], bytes[2 * k + 1]]);
    if (0..m).any(|k| !(0x0400..0x7c00).contains(&weight(k))) {
        return Err(c.err("invalid quantized weight"));
    }
    c.pos += 2 * m;
    Ok(bytes)
}

/// Decode one postings block of format version 1 of `m` ≤ [`POSTING_BLOCK`]
/// entries (delta-varint doc ids, then little-endian f16 weights) onto `out`'s current
/// token, checking every value. `prev` is the list's last doc id so far
/// (`None` at its start).
///
/// Works on the raw bytes with a local position: going through
/// [`Cursor`] per value (a call and a length check each) made decoding most
/// of the time to open an index.
#[inline]
fn decode_varint_block(
    c: &mut Cursor<'_>,
    m: usize,
    prev: &mut Option<u32>,
    n_docs: u32,
    out: &mut PostingsBuilder,
) -> Result<()> {
    let buf = c.buf;
    let mut pos = c.pos;
    let mut last = *prev;
    let mut docs = [0u32; POSTING_BLOCK];
    for doc in &mut docs[..m] {
        let mut x = 0u64;
        let mut shift = 0;
        loop {
            let Some(&b) = buf.get(pos) else {
                c.pos = pos;
                return Err(c.err("truncated varint"));
            };
            pos += 1;
            x |= ((b & 0x7f) as u64) << shift;
            if b < 0x80 {
                break;
            }
            shift += 7;
            if shift > 35 {
                c.pos = pos;
                return Err(c.err("overlong doc id varint"));
            }
        }
        // At most 2^35 + 2^32: no overflow in u64.
        let d = last.map_or(x, |q| q as u64 + x + 1);
        if d >= n_docs as u64 {
            c.pos = pos;
            return Err(c.err("doc id out of range in postings"));
        }
        *doc = d as u32;
        last = Some(d as u32);
    }
    c.pos = pos;
    push_with_weights(c, &docs[..m], out)?;
    *prev = last;
    Ok(())
}

/// Join a build thread, passing a panic on to the caller.
fn join_part<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// `f` of every range, each on its own scoped thread; results in range order.
pub(crate) fn per_range<R: Send>(
    ranges: &[std::ops::Range<usize>],
    f: impl Fn(std::ops::Range<usize>) -> R + Sync,
) -> Vec<R> {
    on_threads(ranges.iter().cloned(), f)
}

/// `f` of every item, each on its own scoped thread; results in item order.
///
/// A single item gets its own thread too. Running it on the calling thread
/// instead made the one-thread bulk load ~15 % slower (1M docs, interleaved
/// runs in sessions 9 and 10); with `MALLOC_ARENA_MAX=1` both ways measured
/// alike, which points at the main thread's malloc arena, where the bulk's
/// `_id` strings and sources then came from.
fn on_threads<T: Send, R: Send>(
    items: impl IntoIterator<Item = T>,
    f: impl Fn(T) -> R + Sync,
) -> Vec<R> {
    std::thread::scope(|sc| {
        let f = &f;
        let handles: Vec<_> = items.into_iter().map(|x| sc.spawn(move || f(x))).collect();
        handles.into_iter().map(join_part).collect()
    })
}

/// `0..len` in `parts` contiguous groups of nearly equal size.
fn even_groups(len: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    (0..parts)
        .map(|p| len * p / parts..len * (p + 1) / parts)
        .collect()
}

/// Fault in every page of `buf` ([`crate::memory::populate`]) on `parts`
/// threads, each a contiguous share: faults taken in a tight loop cost less
/// than the same faults spread over the writes that follow (~10 % of a
/// build), and threads faulting pages of the same page table contend in the
/// kernel (2.3x slower than contiguous shares, measured).
fn populate_in_shares<T: Copy + Send>(buf: &mut [T], parts: usize) {
    let share = buf.len().div_ceil(parts.max(1)).max(1);
    on_threads(buf.chunks_mut(share), crate::memory::populate);
}

/// Compress the sources of documents `range` (whole chunks) as
/// `(chunk table relative to the returned bytes, bytes)`.
fn compress_sources<D: SegmentInput + ?Sized>(
    docs: &D,
    range: std::ops::Range<usize>,
) -> (Vec<(usize, usize, usize)>, Vec<u8>) {
    let mut chunks = Vec::with_capacity(range.len().div_ceil(SOURCE_CHUNK));
    let mut data = Vec::new();
    let mut raw = Vec::new();
    let mut start = range.start;
    while start < range.end {
        let end = (start + SOURCE_CHUNK).min(range.end);
        raw.clear();
        for i in start..end {
            let src = docs.source(i);
            put_varint(&mut raw, src.len() as u64);
            raw.extend_from_slice(src);
        }
        let c = lz4_flex::block::compress(&raw);
        chunks.push((data.len(), c.len(), raw.len()));
        data.extend_from_slice(&c);
        start = end;
    }
    (chunks, data)
}

impl Segment {
    /// Build a segment from documents (doc ids are positions in `docs`),
    /// on up to [`build_threads`] threads.
    pub(crate) fn build<D: SegmentInput + ?Sized>(docs: &D, vocab: u32) -> Segment {
        Segment::build_on(docs, vocab, 0)
    }

    /// [`Segment::build`] on at most `threads` threads ([`build_threads`]).
    fn build_on<D: SegmentInput + ?Sized>(docs: &D, vocab: u32, threads: usize) -> Segment {
        let mut s = Segment::build_underived(docs, vocab, threads, true);
        let derived = s.derived(None);
        s.set_derived(derived);
        s
    }

    /// Build a segment straight into the file `dir/name` and return it with
    /// its neural postings left on disk: they are loaded on first use
    /// ([`Segment::postings`]).
    ///
    /// The neural postings never exist in memory as a whole here: each tile
    /// of documents is counting-sorted by token into a buffer the thread
    /// reuses and encoded into the file from there ([`TileEncoder`]). A
    /// segment's in-memory postings are 4 bytes per posting of fresh memory
    /// (1.1 GB at a million documents), and on the machines we measure fresh
    /// memory costs 0.5 to 4 s per GB to fault in, depending on the host:
    /// more than the rest of the inversion. A process that only builds
    /// (`nsparse index`, merges) never pays it; one that searches pays it
    /// once, at the first search, as [`open_reader`](crate::open_reader)
    /// always has. The `_id` index is built while the file is written (the
    /// write waits on the device and leaves the cores partly idle).
    /// `id_index`, when given, is the `_id` index of `docs` already built by
    /// the caller; `threads` limits the threads ([`build_threads`]; 0: every
    /// core).
    pub(crate) fn build_and_write<D: SegmentInput + ?Sized>(
        docs: &D,
        vocab: u32,
        dir: &Path,
        name: &str,
        id_index: Option<IdIndex>,
        threads: usize,
    ) -> Result<Segment> {
        let t0 = std::time::Instant::now();
        let mut s = Segment::build_underived(docs, vocab, threads, false);
        let tiles = tile_pieces(0..docs.n_docs());
        let workers = build_threads(docs.n_docs(), threads);
        let neural = NeuralSource(docs);
        s.n_post = (0..docs.n_docs()).map(|i| docs.n_postings(i)).sum();
        let prepared = t0.elapsed();
        let (index, written) = std::thread::scope(|sc| {
            let seg = &s;
            let index = sc.spawn(move || id_index.map_or_else(|| IdIndex::build(&seg.ids), Ok));
            let written = seg.write_file(dir, name, |out| {
                let (max_bits, total) =
                    write_postings(out, &tiles, &neural, workers, vocab as usize)?;
                // The metadata section, written first, states the total.
                if total != seg.n_post {
                    return Err(Error::invalid(
                        "segment build",
                        format!(
                            "{total} postings sorted, {} counted (a bug in nsparse-index)",
                            seg.n_post
                        ),
                    ));
                }
                Ok(max_bits)
            });
            (join_part(index), written)
        });
        let max_bits = written?;
        let term_max = max_bits
            .into_iter()
            .map(|w| if w == 0 { 0.0 } else { dequantize(w) })
            .collect();
        s.set_derived(index.map(|i| (i, term_max)));
        s.file = Some(dir.join(name));
        tracing::debug!(
            prepare_ms = prepared.as_millis() as u64,
            write_ms = (t0.elapsed() - prepared).as_millis() as u64,
            "built and wrote segment (postings tile by tile, _id index alongside)"
        );
        Ok(s)
    }

    /// The neural postings, read from the segment's file on first use.
    pub(crate) fn postings(&self) -> Result<&Postings> {
        if let Some(p) = self.post.get() {
            return Ok(p);
        }
        let _loading = self
            .post_loading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(p) = self.post.get() {
            return Ok(p);
        }
        let Some(path) = self.file.as_deref() else {
            return Err(Error::invalid(
                "segment",
                "in-memory segment without postings (a bug in nsparse-index)".to_string(),
            ));
        };
        let t0 = std::time::Instant::now();
        let post = load_postings(path, self.n_docs, self.vocab, self.n_post)?;
        tracing::debug!(
            path = %path.display(),
            postings = self.n_post,
            load_ms = t0.elapsed().as_millis() as u64,
            "loaded segment postings"
        );
        Ok(self.post.get_or_init(|| post))
    }

    /// The neural postings, which must be loaded already.
    ///
    /// # Panics
    /// If they are not: every entry point that reads postings calls
    /// [`Segment::postings`] first (searches through
    /// [`Searcher`](crate::Searcher)'s own check, merges through
    /// [`Segment::records`] and the document iterator).
    #[inline]
    pub(crate) fn post(&self) -> &Postings {
        self.post
            .get()
            .expect("segment postings used before Segment::postings loaded them")
    }

    /// Install [`Segment::derived`]'s result.
    ///
    /// # Panics
    /// On a repeated `_id`: every caller deduplicates `_id`s before building.
    fn set_derived(&mut self, derived: std::result::Result<(IdIndex, Vec<f32>), usize>) {
        if let Err(pos) = self.install_derived(derived) {
            panic!("segment input repeats the _id {:?}", self.ids[pos]);
        }
    }

    /// Install [`Segment::derived`]'s result, or pass its error on.
    fn install_derived(
        &mut self,
        derived: std::result::Result<(IdIndex, Vec<f32>), usize>,
    ) -> std::result::Result<(), usize> {
        let (index, term_max) = derived?;
        self.id_index = index;
        self.term_max = term_max;
        Ok(())
    }

    /// The postings, `_id`s and sources of a segment, without the derived
    /// structures.
    ///
    /// With `with_neural` false the neural postings are left out (unloaded,
    /// no file): [`Segment::build_and_write`] streams them into the file.
    fn build_underived<D: SegmentInput + ?Sized>(
        docs: &D,
        vocab: u32,
        threads: usize,
        with_neural: bool,
    ) -> Segment {
        let v = vocab as usize;
        let n = docs.n_docs();
        let ranges = doc_ranges(n, build_threads(n, threads));
        let t0 = std::time::Instant::now();
        let (neural, bm25) = (NeuralSource(docs), Bm25Source(docs));
        let post_inv = with_neural.then(|| Inverter::count(&ranges, v, &neural));
        let tf_inv = Inverter::count(&ranges, v, &bm25);
        let counted = t0.elapsed();
        let post_cell = std::sync::OnceLock::new();
        if let Some(inv) = post_inv {
            let packed = inv.invert(&neural);
            let _ = post_cell.set(inv.into_postings(packed));
        }
        let n_post = post_cell.get().map_or(0, Postings::len);
        let tf_post = tf_inv.invert(&bm25);
        let inverted = t0.elapsed();
        let doc_len: Vec<u32> = (0..n).map(|i| docs.doc_len(i)).collect();
        let total_len = doc_len.iter().map(|&l| l as u64).sum();
        let (parts, ids): (Vec<_>, Vec<Vec<String>>) = per_range(&ranges, |r| {
            let src = compress_sources(docs, r.clone());
            let ids: Vec<String> = r.map(|i| docs.id(i).to_string()).collect();
            (src, ids)
        })
        .into_iter()
        .unzip();
        let mut src_chunks = Vec::with_capacity(n.div_ceil(SOURCE_CHUNK));
        let mut src_data = Vec::with_capacity(parts.iter().map(|p| p.1.len()).sum());
        for (chunks, data) in parts {
            let base = src_data.len();
            src_chunks.extend(chunks.into_iter().map(|(o, c, u)| (base + o, c, u)));
            src_data.extend_from_slice(&data);
        }
        let ids: Vec<String> = ids.into_iter().flatten().collect();
        let seg = Segment {
            n_docs: n as u32,
            vocab,
            id_index: IdIndex::default(),
            ids,
            post: post_cell,
            post_loading: std::sync::Mutex::new(()),
            file: None,
            n_post,
            block_max: std::sync::OnceLock::new(),
            dense: std::sync::OnceLock::new(),
            term_max: Vec::new(),
            tf_start: tf_inv.term_start,
            tf_post,
            doc_len,
            total_len,
            src_chunks,
            src_data,
        };
        tracing::debug!(
            docs = n,
            threads = ranges.len(),
            count_ms = counted.as_millis() as u64,
            invert_ms = (inverted - counted).as_millis() as u64,
            rest_ms = (t0.elapsed() - inverted).as_millis() as u64,
            "built segment"
        );
        seg
    }

    /// The in-memory derived structures (`_id` index, per-token maxima),
    /// computed side by side; the `_id` index only when not `given`. `Err`
    /// carries the position of a repeated `_id`.
    fn derived(&self, given: Option<IdIndex>) -> std::result::Result<(IdIndex, Vec<f32>), usize> {
        let v = self.vocab as usize;
        let (index, term_max) = std::thread::scope(|sc| {
            let ids = &self.ids;
            let index = sc.spawn(move || given.map_or_else(|| IdIndex::build(ids), Ok));
            // Quantized weights are positive f16 bits: their order is the order of the values.
            let term_max: Vec<f32> = (0..v as u32)
                .map(|t| match self.post().max_weight(t) {
                    0 => 0.0,
                    w => dequantize(w),
                })
                .collect();
            (join_part(index), term_max)
        });
        Ok((index?, term_max))
    }

    /// Position of the document with `_id` `id`, deleted or not.
    pub(crate) fn lookup(&self, id: &str) -> Option<u32> {
        self.id_index.get(&self.ids, id)
    }

    /// The block-max table (built on first call).
    pub(crate) fn block_max(&self) -> &BlockMax {
        self.block_max.get_or_init(|| {
            let v = self.vocab as usize;
            let mut bm = BlockMax {
                start: Vec::with_capacity(v + 1),
                block: Vec::new(),
                max: Vec::new(),
                pos: Vec::new(),
            };
            for t in 0..v as u32 {
                bm.start.push(bm.block.len());
                let mut last = u32::MAX;
                for i in self.post().runs(t) {
                    let (base, r) = self.post().run(i);
                    for (p, &x) in self.post().packed[r.clone()].iter().enumerate() {
                        // Blocks are aligned within tiles, so a block's postings are one slice.
                        let b = (base + postings::offset(x)) >> DOC_BLOCK_SHIFT;
                        if b != last {
                            last = b;
                            bm.block.push(b);
                            bm.max.push(0.0f32);
                            bm.pos.push(r.start + p);
                        }
                        if let Some(m) = bm.max.last_mut() {
                            *m = m.max(postings::weight(x));
                        }
                    }
                }
            }
            bm.pos.push(self.post().len());
            bm.start.push(bm.block.len());
            bm
        })
    }

    /// The dense columns (built on first call; empty for small segments).
    pub(crate) fn dense(&self) -> &DenseColumns {
        self.dense.get_or_init(|| DenseColumns::build(self))
    }

    /// Quantized weight of token `t` in `doc` (binary search in the posting list).
    #[inline]
    pub(crate) fn weight(&self, t: u32, doc: u32) -> Option<u16> {
        self.post().weight(t, doc)
    }

    /// Number of neural postings.
    pub(crate) fn n_postings(&self) -> usize {
        self.n_post
    }

    /// Write the segment to `dir/name` (atomically, fsynced), streaming each
    /// section through a small buffer instead of materialising the file;
    /// `postings` writes the neural postings section's bytes (format 3,
    /// [`write_postings`]).
    fn write_file<R>(
        &self,
        dir: &Path,
        name: &str,
        postings: impl FnOnce(&mut format::ContainerFile) -> Result<R>,
    ) -> Result<R> {
        let v = self.vocab as usize;
        let mut out = format::ContainerFile::create(dir, name, SEG_MAGIC, SEG_VERSION, 5)?;

        out.begin(SEC_META);
        let buf = out.buffer();
        buf.extend_from_slice(&self.n_docs.to_le_bytes());
        buf.extend_from_slice(&self.vocab.to_le_bytes());
        buf.extend_from_slice(&self.total_len.to_le_bytes());
        buf.extend_from_slice(&(self.n_post as u64).to_le_bytes());
        buf.extend_from_slice(&(self.tf_post.len() as u64).to_le_bytes());
        out.end()?;

        out.begin(SEC_IDS);
        for id in &self.ids {
            let buf = out.buffer();
            put_varint(buf, id.len() as u64);
            buf.extend_from_slice(id.as_bytes());
            out.spill()?;
        }
        out.end()?;

        out.begin(SEC_POSTINGS);
        let written = postings(&mut out)?;
        out.end()?;

        out.begin(SEC_BM25);
        for &l in &self.doc_len {
            put_varint(out.buffer(), l as u64);
            out.spill()?;
        }
        let n_tf_terms = (0..v)
            .filter(|&t| self.tf_start[t + 1] > self.tf_start[t])
            .count();
        put_varint(out.buffer(), n_tf_terms as u64);
        for t in 0..v {
            let (s, e) = (self.tf_start[t], self.tf_start[t + 1]);
            if s == e {
                continue;
            }
            let buf = out.buffer();
            put_varint(buf, t as u64);
            put_varint(buf, (e - s) as u64);
            let mut prev = 0u32;
            for (p, &(d, f)) in self.tf_post[s..e].iter().enumerate() {
                put_varint(buf, (if p == 0 { d } else { d - prev - 1 }) as u64);
                put_varint(buf, f as u64);
                prev = d;
            }
            out.spill()?;
        }
        out.end()?;

        out.begin(SEC_SOURCE);
        put_varint(out.buffer(), self.src_chunks.len() as u64);
        for &(o, c, u) in &self.src_chunks {
            let buf = out.buffer();
            put_varint(buf, u as u64);
            put_varint(buf, c as u64);
            buf.extend_from_slice(&self.src_data[o..o + c]);
            out.spill()?;
        }
        out.end()?;
        out.finish()?;
        Ok(written)
    }

    /// Parse and verify a segment file's bytes (checksums and structure).
    pub(crate) fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Segment> {
        let (version, secs) =
            format::read_container_of(path, bytes, SEG_MAGIC, SEG_OLDEST_READABLE..=SEG_VERSION)?;
        let decode_block = match version {
            1 => decode_varint_block,
            _ => decode_packed_block,
        };
        let by_tile = version >= 3;
        let mut c = Cursor::new(format::section(path, &secs, SEC_META)?, path);
        let n_docs = c.u32()?;
        let vocab = c.u32()?;
        let total_len = c.u64()?;
        let n_post = c.u64()?;
        let n_tf = c.u64()?;
        c.done()?;
        let corrupt = |d: &str| Error::corrupt(path, d.to_string());
        if vocab == 0 || vocab > 65536 {
            return Err(corrupt("vocabulary size out of range"));
        }
        let v = vocab as usize;
        let n = n_docs as usize;
        // Bound allocations by what the file can possibly hold.
        if n_post > bytes.len() as u64 || n_tf > bytes.len() as u64 || n > bytes.len() {
            return Err(corrupt("counts exceed file size"));
        }
        let decode_ids = || -> Result<Vec<String>> {
            let mut c = Cursor::new(format::section(path, &secs, SEC_IDS)?, path);
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
            let mut c = Cursor::new(format::section(path, &secs, SEC_POSTINGS)?, path);
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

        let mut c = Cursor::new(format::section(path, &secs, SEC_BM25)?, path);
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

        let mut c = Cursor::new(format::section(path, &secs, SEC_SOURCE)?, path);
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
        match format::map_file(path)? {
            Some(map) => Segment::from_bytes(path, &map),
            None => Segment::from_bytes(path, &format::read_file(path)?),
        }
    }

    fn decode_chunk(&self, path: &Path, ch: usize) -> Result<Vec<u8>> {
        let &(o, c, u) = self
            .src_chunks
            .get(ch)
            .ok_or_else(|| Error::corrupt(path, "missing source chunk"))?;
        let raw = lz4_flex::block::decompress(&self.src_data[o..o + c], u).map_err(|e| {
            Error::corrupt(path, format!("source chunk {ch} does not decompress: {e}"))
        })?;
        if raw.len() != u {
            return Err(Error::corrupt(
                path,
                format!("source chunk {ch} has wrong length"),
            ));
        }
        let docs_in = (self.n_docs as usize - ch * SOURCE_CHUNK).min(SOURCE_CHUNK);
        let mut c = Cursor::new(&raw, path);
        for _ in 0..docs_in {
            let l = c.varint()? as usize;
            c.bytes(l)?;
        }
        c.done()?;
        Ok(raw)
    }

    /// Uncompressed source of `doc`.
    pub(crate) fn source(&self, path: &Path, doc: u32) -> Result<Vec<u8>> {
        let ch = doc as usize / SOURCE_CHUNK;
        let raw = self.decode_chunk(path, ch)?;
        let mut c = Cursor::new(&raw, path);
        for i in 0..=(doc as usize % SOURCE_CHUNK) {
            let l = c.varint()? as usize;
            let b = c.bytes(l)?;
            if i == doc as usize % SOURCE_CHUNK {
                return Ok(b.to_vec());
            }
        }
        Err(Error::corrupt(path, "source not found in chunk"))
    }

    /// Start reading documents' forward data in doc-id order (see [`Segment::forward_window`]).
    pub(crate) fn forward_cursor(&self) -> ForwardCursor {
        let v = self.vocab as usize;
        ForwardCursor {
            run: self.post().run_start[..v].to_vec(),
            post: self.post().term_start[..v].to_vec(),
            tf: self.tf_start[..v].to_vec(),
        }
    }

    /// Vectors and term frequencies of docs `start..end`, tokens ascending,
    /// by advancing one cursor per token: O(vocabulary + postings read) per
    /// call instead of a binary search per (token, doc). Windows must be
    /// requested in ascending, non-overlapping order from one cursor.
    pub(crate) fn forward_window(
        &self,
        cur: &mut ForwardCursor,
        start: u32,
        end: u32,
    ) -> Vec<ForwardDoc> {
        let mut out: Vec<ForwardDoc> = (start..end)
            .map(|d| ForwardDoc {
                vec: Vec::new(),
                tf: Vec::new(),
                len: self.doc_len[d as usize],
            })
            .collect();
        for t in 0..self.vocab as usize {
            let runs_end = self.post().run_start[t + 1];
            let (ri, p) = (&mut cur.run[t], &mut cur.post[t]);
            while *ri < runs_end {
                let (base, r) = self.post().run(*ri);
                if base >= end {
                    break;
                }
                while *p < r.end {
                    let x = self.post().packed[*p];
                    let d = base + postings::offset(x);
                    if d >= end {
                        break;
                    }
                    if d >= start {
                        out[(d - start) as usize]
                            .vec
                            .push((t as u16, postings::weight_bits(x)));
                    }
                    *p += 1;
                }
                if *p < r.end {
                    break;
                }
                *ri += 1;
            }
            let (p, pe) = (&mut cur.tf[t], self.tf_start[t + 1]);
            while *p < pe && self.tf_post[*p].0 < end {
                let (d, f) = self.tf_post[*p];
                if d >= start {
                    out[(d - start) as usize].tf.push((t as u16, f));
                }
                *p += 1;
            }
        }
        out
    }

    /// Sources of the documents in source chunk `ch` (`SOURCE_CHUNK` docs, fewer in the last).
    pub(crate) fn chunk_sources(&self, path: &Path, ch: usize) -> Result<Vec<Vec<u8>>> {
        let raw = self.decode_chunk(path, ch)?;
        let docs_in = (self.n_docs as usize - ch * SOURCE_CHUNK).min(SOURCE_CHUNK);
        let mut c = Cursor::new(&raw, path);
        (0..docs_in)
            .map(|_| {
                let l = c.varint()? as usize;
                Ok(c.bytes(l)?.to_vec())
            })
            .collect()
    }

    /// Quantized vector of `doc`, tokens ascending (scans the vocabulary: slow path).
    pub(crate) fn doc_vector(&self, doc: u32) -> Vec<(u16, u16)> {
        (0..self.vocab)
            .filter_map(|t| self.weight(t, doc).map(|w| (t as u16, w)))
            .collect()
    }

    /// All documents' quantized vectors, by inverting the postings (merge-time only).
    fn all_vectors(&self) -> Vec<Vec<(u16, u16)>> {
        let mut out = vec![Vec::new(); self.n_docs as usize];
        for t in 0..self.vocab {
            for (d, w) in self.post().iter(t) {
                out[d as usize].push((t as u16, w));
            }
        }
        out
    }

    /// BM25 term frequencies of `doc` (token, tf), by scanning postings (merge-time only).
    pub(crate) fn all_tfs(&self) -> Vec<Vec<(u16, u32)>> {
        let mut out = vec![Vec::new(); self.n_docs as usize];
        for t in 0..self.vocab as usize {
            for &(d, f) in &self.tf_post[self.tf_start[t]..self.tf_start[t + 1]] {
                out[d as usize].push((t as u16, f));
            }
        }
        out
    }

    /// Reconstruct all documents (for merging). Sources are decompressed.
    pub(crate) fn records(
        &self,
        path: &Path,
        keep: impl Fn(u32) -> bool,
    ) -> Result<Vec<DocRecord>> {
        self.postings()?;
        let tfs = self.all_tfs();
        let vecs = self.all_vectors();
        let mut out = Vec::new();
        for (d, (tf, vec)) in tfs.into_iter().zip(vecs).enumerate() {
            let d = d as u32;
            if !keep(d) {
                continue;
            }
            out.push(DocRecord {
                id: self.ids[d as usize].clone(),
                vec,
                tf,
                len: self.doc_len[d as usize],
                source: self.source(path, d)?,
            });
        }
        Ok(out)
    }
}

/// Per token, one entry per block of 2^`DOC_BLOCK_SHIFT` doc ids the token occurs in.
#[derive(Debug)]
pub(crate) struct BlockMax {
    /// Token `t`'s entries are `start[t]..start[t + 1]`.
    pub start: Vec<usize>,
    /// Block number.
    pub block: Vec<u32>,
    /// Largest dequantized weight of the token in the block.
    pub max: Vec<f32>,
    /// Where the block's postings start in `Postings::packed`, plus a final
    /// entry for the end: entry `i` spans `pos[i]..pos[i + 1]` (the blocks of
    /// all tokens cover the packed postings in order).
    pub pos: Vec<usize>,
}

/// Per-token read positions for [`Segment::forward_window`].
pub(crate) struct ForwardCursor {
    /// Per token: its current tile run and position in `Postings::packed`.
    run: Vec<usize>,
    post: Vec<usize>,
    tf: Vec<usize>,
}

/// One document's data recovered from the inverted postings.
pub(crate) struct ForwardDoc {
    /// (token, quantized weight), tokens ascending.
    pub vec: Vec<(u16, u16)>,
    /// BM25 (token, term frequency), tokens ascending.
    pub tf: Vec<(u16, u32)>,
    /// BM25 document length (number of tokens).
    pub len: u32,
}

/// Deletion bitmap of a segment (bit set = deleted).
#[derive(Clone, Debug, Default)]
pub(crate) struct Bitset {
    pub words: Vec<u64>,
    pub count: u32,
}

pub(crate) const DEL_MAGIC: &[u8; 8] = b"NSPDEL\0\0";
pub(crate) const DEL_VERSION: u32 = 1;

impl Bitset {
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
        format::write_container(DEL_MAGIC, DEL_VERSION, &[(1, &meta), (2, &bits)])
    }
    pub(crate) fn load(path: &Path, n_docs: u32) -> Result<Bitset> {
        let bytes = format::read_file(path)?;
        let secs = format::read_container(path, &bytes, DEL_MAGIC, DEL_VERSION)?;
        let mut c = Cursor::new(format::section(path, &secs, 1)?, path);
        let n = c.u32()?;
        let count = c.u32()?;
        c.done()?;
        if n != n_docs {
            return Err(Error::corrupt(
                path,
                format!("deletion bitmap is for {n} docs, segment has {n_docs}"),
            ));
        }
        let bits = format::section(path, &secs, 2)?;
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

/// Segments below this many documents get no dense columns: their scans are
/// cheap anyway and a column would cost more memory than it saves time.
pub(crate) const DENSE_MIN_DOCS: u32 = 1 << 14;
/// A token gets a bound column when at least 1/`DENSE_DF_DIVISOR` of the
/// segment's documents contain it. A column costs one byte per document of
/// streamed memory, a posting a scatter into the accumulator; measured on
/// the fitted 1M-document bench (BENCHMARKS.md, session 11), 1/16 beat 1/8
/// by ~15 % and 1/32 was no faster at twice the memory.
pub(crate) const DENSE_DF_DIVISOR: u32 = 16;

/// Environment variable capping the dense columns' memory per segment, in MiB
/// (`0` turns them off; unset: no cap). Read once per process.
pub const DENSE_COLUMNS_MAX_MB_ENV: &str = "NSPARSE_DENSE_COLUMNS_MAX_MB";

/// The process's per-segment byte budget for dense columns, fixed by the
/// first search that builds columns (or by [`set_dense_columns_max_mb`]).
static DENSE_BUDGET: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// Cap the memory of each segment's dense columns at `mb` MiB for this
/// process (the most frequent tokens keep theirs; `0` turns them off),
/// overriding [`DENSE_COLUMNS_MAX_MB_ENV`]. Results never change, only speed
/// and memory.
///
/// Call it before the first search: the budget is fixed once a segment has
/// built its columns, and then this returns `false` and changes nothing.
/// A program that runs one query per process (like `nsparse search`) should
/// pass 0: building the query's columns (~1–3 ms each at 1M documents)
/// costs more than they save on one query.
pub fn set_dense_columns_max_mb(mb: u64) -> bool {
    DENSE_BUDGET.set(mb.saturating_mul(1 << 20)).is_ok()
}

/// The per-segment byte budget for dense columns (from
/// [`set_dense_columns_max_mb`], else [`DENSE_COLUMNS_MAX_MB_ENV`], else none).
fn dense_columns_max_bytes() -> u64 {
    *DENSE_BUDGET.get_or_init(|| match std::env::var(DENSE_COLUMNS_MAX_MB_ENV) {
        Err(_) => u64::MAX,
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(mb) => mb.saturating_mul(1 << 20),
            Err(_) => {
                tracing::warn!(
                    value = %v,
                    "{DENSE_COLUMNS_MAX_MB_ENV} is not a whole number of MiB; ignoring it (no cap)"
                );
                u64::MAX
            }
        },
    })
}

/// Bound columns for a segment's most frequent tokens: per document one byte
/// bounding the token's weight from above (0 = absent), plus a position
/// index that finds the exact weight in the postings.
///
/// Frequent tokens dominate query cost (on the SciFact-fitted vectors,
/// tokens in at least 1/8 of the documents carry ~80 % of a query's
/// postings), and a column is scored by a vectorised multiply-add over the
/// documents instead of a scatter per posting. That pass streams the column
/// from memory, so its width is its cost: one byte per document, half of an
/// f16 column (BENCHMARKS.md, session 11). The bytes give an upper bound of
/// each score; the few documents whose bound can reach the top k are
/// rescored from the exact f16 weights, which [`DenseColumn::exact`] reads
/// at the block's position plus the document's rank among the block's
/// non-zero codes (a code is non-zero exactly where there is a posting). The
/// sparse postings stay (explain, merges and the block-max table read them).
/// Memory: a byte per document and four per 64 documents per column.
///
/// Which tokens get a column is decided when the segment's columns are
/// first asked for; each column is built the first time a search needs it
/// (~1–3 ms for 1M documents), so a process pays only for the tokens its
/// queries use, and no search waits for all of them.
#[derive(Debug, Default)]
pub(crate) struct DenseColumns {
    /// Per token: its column number, or `u32::MAX` when it has none.
    slot: Vec<u32>,
    /// The columns, by column number.
    cols: Vec<LazyColumn>,
    n_docs: usize,
}

/// A column's token, code step, and its data once built.
#[derive(Debug)]
struct LazyColumn {
    token: u32,
    /// The weight one code unit stands for.
    step: f32,
    data: std::sync::OnceLock<ColumnData>,
}

/// A built column.
#[derive(Debug)]
struct ColumnData {
    /// One code per document: a code `k > 0` promises `weight <= step * k`
    /// (in f32 arithmetic); 0 = absent.
    codes: Box<[u8]>,
    /// `n_blocks + 1` entries: where each 64-document block's postings start
    /// in the token's list (relative to its first posting).
    blocks: Box<[u32]>,
}

impl ColumnData {
    /// The column of token `t` with code step `step`, from its postings.
    fn build(post: &Postings, n_docs: usize, t: u32, step: f32) -> ColumnData {
        let mut codes = vec![0u8; n_docs];
        // Filled at scattered documents: fault its pages in first.
        crate::memory::populate(&mut codes);
        let mut blocks = vec![0u32; n_docs.div_ceil(1 << DOC_BLOCK_SHIFT) + 1];
        let inv = 1.0 / step;
        // blocks[b] = postings of the token in blocks before b.
        let mut seen = 0u32;
        let mut next_block = 0usize;
        for (d, w) in post.iter(t) {
            let b = d as usize >> DOC_BLOCK_SHIFT;
            while next_block <= b {
                blocks[next_block] = seen;
                next_block += 1;
            }
            codes[d as usize] = bound_code(dequantize(w), step, inv);
            seen += 1;
        }
        blocks[next_block..].fill(seen);
        ColumnData {
            codes: codes.into_boxed_slice(),
            blocks: blocks.into_boxed_slice(),
        }
    }
}

/// One token's bound column (see [`DenseColumns`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct DenseColumn<'a> {
    /// One code per document of the segment.
    pub codes: &'a [u8],
    /// The weight one code unit stands for.
    pub step: f32,
    /// Per 64-document block (+1): where its postings start in `postings`.
    blocks: &'a [u32],
    /// The token's postings, docs ascending.
    postings: &'a [u32],
}

impl DenseColumn<'_> {
    /// Exact quantized weight of this column's token in `doc`, if present.
    #[inline]
    pub(crate) fn exact(&self, doc: u32) -> Option<u16> {
        let d = doc as usize;
        if self.codes[d] == 0 {
            return None;
        }
        // The block's postings are its documents with a non-zero code, in
        // order: the document's rank among them is its posting's position,
        // so the weight is one load away (a search of the block's postings
        // waited on one cache miss after another).
        let b = d >> DOC_BLOCK_SHIFT;
        let rank = nonzero_bytes(&self.codes[b << DOC_BLOCK_SHIFT..d]);
        let x = self.postings[self.blocks[b] as usize + rank];
        debug_assert_eq!(postings::offset(x), doc & postings::TILE_MASK);
        Some(postings::weight_bits(x))
    }

    /// Start loading what [`DenseColumn::exact`] will read for `doc`: its
    /// block's entry and, estimated from it, the line of its posting.
    #[inline]
    pub(crate) fn prefetch(&self, doc: u32) {
        let d = doc as usize;
        let b = d >> DOC_BLOCK_SHIFT;
        let (from, to) = (self.blocks[b] as usize, self.blocks[b + 1] as usize);
        let within = d & ((1 << DOC_BLOCK_SHIFT) - 1);
        let guess = from + (((to - from) * within) >> DOC_BLOCK_SHIFT);
        crate::simd::prefetch(self.postings.as_ptr().wrapping_add(guess));
    }

    /// An upper bound of the token's (dequantized) weight in `doc`; 0 if absent.
    #[inline]
    pub(crate) fn bound(&self, doc: u32) -> f32 {
        self.step * self.codes[doc as usize] as f32
    }
}

/// Number of non-zero bytes in `bytes`, eight at a time.
#[inline]
fn nonzero_bytes(bytes: &[u8]) -> usize {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const ONES: u64 = 0x0101_0101_0101_0101;
    let mut chunks = bytes.chunks_exact(8);
    let mut n = 0usize;
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        // Bit 7 of each byte of `high` is set iff the byte is non-zero
        // (adding 0x7f to the low 7 bits carries into bit 7 unless they are 0).
        let high = (((w & LOW7).wrapping_add(LOW7) | w) >> 7) & ONES;
        // The sum of the eight 0/1 bytes lands in the top byte.
        n += (high.wrapping_mul(ONES) >> 56) as usize;
    }
    n + chunks.remainder().iter().filter(|&&c| c != 0).count()
}

/// Smallest code whose `step × code` is at least `w` (f32 arithmetic), for
/// `inv = 1 / step` and a `step` at least `max / 255` (with `w <= max`).
#[inline]
fn bound_code(w: f32, step: f32, inv: f32) -> u8 {
    if w <= 0.0 {
        return 0;
    }
    // `w * inv` is within a few ulps of `w / step` (≤ 255), so the ceiling
    // is its truncation or one more; the two checks settle it in the
    // arithmetic the searcher uses, without loops or a libm `ceil` call.
    let mut k = ((w * inv) as u32 + 1).clamp(1, 255);
    if k > 1 && step * ((k - 1) as f32) >= w {
        k -= 1;
    }
    if k < 255 && step * (k as f32) < w {
        k += 1;
    }
    k as u8
}

/// The code step for a token whose largest weight is `max`: `step × 255 >=
/// max` holds in f32 arithmetic thanks to the relative margin.
fn code_step(max: f32) -> f32 {
    (max / 255.0) * (1.0 + 1e-6)
}

impl DenseColumns {
    fn build(seg: &Segment) -> DenseColumns {
        DenseColumns::plan(seg, dense_columns_max_bytes())
    }

    /// No columns at all (usable in a `static`).
    pub(crate) const fn none() -> DenseColumns {
        DenseColumns {
            slot: Vec::new(),
            cols: Vec::new(),
            n_docs: 0,
        }
    }

    /// Bytes one column takes for `n` documents.
    pub(crate) fn column_bytes(n: usize) -> u64 {
        n as u64 + 4 * ((n >> DOC_BLOCK_SHIFT) as u64 + 2)
    }

    /// Columns for the segment's frequent tokens, at most `max_bytes` of them
    /// (the most frequent first); each is built on first use.
    pub(crate) fn plan(seg: &Segment, max_bytes: u64) -> DenseColumns {
        let n = seg.n_docs as usize;
        let v = seg.vocab as usize;
        if seg.n_docs < DENSE_MIN_DOCS {
            return DenseColumns::default();
        }
        let min_df = n.div_ceil(DENSE_DF_DIVISOR as usize);
        let df = |t: usize| seg.post().df(t as u32);
        let mut dense: Vec<usize> = (0..v).filter(|&t| df(t) >= min_df).collect();
        // Within the memory budget, the most frequent tokens save the most scatters.
        let max_cols = (max_bytes / DenseColumns::column_bytes(n)).min(v as u64) as usize;
        if dense.len() > max_cols {
            dense.sort_by_key(|&t| (std::cmp::Reverse(df(t)), t));
            dense.truncate(max_cols);
            dense.sort_unstable();
        }
        let mut slot = vec![u32::MAX; if dense.is_empty() { 0 } else { v }];
        for (c, &t) in dense.iter().enumerate() {
            slot[t] = c as u32;
        }
        tracing::debug!(
            docs = n,
            columns = dense.len(),
            most_bytes = dense.len() as u64 * DenseColumns::column_bytes(n),
            "planned bound columns (each built on first use)"
        );
        DenseColumns {
            slot,
            cols: dense
                .iter()
                .map(|&t| LazyColumn {
                    token: t as u32,
                    step: code_step(seg.term_max[t]),
                    data: std::sync::OnceLock::new(),
                })
                .collect(),
            n_docs: n,
        }
    }

    /// Whether token `t` has a bound column.
    #[cfg(test)]
    pub(crate) fn has(&self, t: u32) -> bool {
        self.slot.get(t as usize).is_some_and(|&c| c != u32::MAX)
    }

    /// The bound column of token `t`, if it has one, built from `post` (the
    /// segment's postings) the first time it is asked for.
    #[inline]
    pub(crate) fn column<'a>(&'a self, post: &'a Postings, t: u32) -> Option<DenseColumn<'a>> {
        let c = *self.slot.get(t as usize)? as usize;
        let col = self.cols.get(c)?;
        let data = col
            .data
            .get_or_init(|| ColumnData::build(post, self.n_docs, col.token, col.step));
        Some(DenseColumn {
            codes: &data.codes,
            step: col.step,
            blocks: &data.blocks,
            postings: &post.packed[post.term_start[t as usize]..post.term_start[t as usize + 1]],
        })
    }

    /// Number of columns (built or not).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.cols.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::quantize;
    use rand::{Rng, SeedableRng};

    /// Decode `bytes` as blocks of one list of `m`-sized pieces.
    fn decode_list(bytes: &[u8], sizes: &[usize], n_docs: u32) -> Result<Vec<(u32, u16)>> {
        let path = Path::new("test.seg");
        let mut c = Cursor::new(bytes, path);
        let mut out = PostingsBuilder::new(1, sizes.iter().sum());
        out.start_token(0);
        let mut prev = None;
        for &m in sizes {
            decode_packed_block(&mut c, m, &mut prev, n_docs, &mut out)?;
        }
        c.done()?;
        Ok(out.finish(1).iter(0).collect())
    }

    #[test]
    fn nonzero_bytes_counts_every_non_zero_byte() {
        let mut x = 0x9e37_79b9_u32;
        for len in 0..80 {
            for density in [0u32, 1, 4, 8, 16] {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        // Zero with probability density/16; otherwise any
                        // non-zero byte, 0x80 and 0xff included.
                        if x % 16 < density {
                            0
                        } else {
                            [1u8, 0x7f, 0x80, 0xff, (x >> 8) as u8 | 1][(x >> 4) as usize % 5]
                        }
                    })
                    .collect();
                let want = bytes.iter().filter(|&&b| b != 0).count();
                assert_eq!(nonzero_bytes(&bytes), want, "{bytes:?}");
            }
        }
    }

    /// A bound code is the smallest that covers the weight, in the f32
    /// arithmetic of the searcher, for every f16 weight up to the maximum.
    #[test]
    fn bound_codes_are_the_smallest_upper_bounds() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..200 {
            let max = dequantize(quantize(rng.random_range(1e-3f32..3.0)));
            let step = code_step(max);
            let inv = 1.0 / step;
            assert!(step * 255.0 >= max);
            let mut ws: Vec<f32> = (0..500)
                .map(|_| dequantize(quantize(rng.random_range(0.0..=max))))
                .collect();
            ws.extend([max, step, 2.0 * step, 1e-7, 0.0]);
            for w in ws.into_iter().filter(|&w| w <= max) {
                let k = bound_code(w, step, inv);
                if w <= 0.0 {
                    assert_eq!(k, 0);
                    continue;
                }
                assert!(k >= 1 && step * k as f32 >= w, "w {w} max {max} k {k}");
                assert!(
                    k == 1 || step * ((k - 1) as f32) < w,
                    "w {w} max {max} k {k}"
                );
            }
        }
    }

    /// The grouped packer writes exactly the bytes of one accumulator over
    /// all the gaps, at every width and every block length (the groups'
    /// boundaries at 32, 64 and 96 gaps included), after other blocks in
    /// the buffer.
    #[test]
    fn grouped_packing_equals_the_serial_definition() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(13);
        for width in 0..=32u32 {
            let top = if width == 0 {
                0
            } else {
                u32::MAX >> (32 - width)
            };
            for m in 1..=POSTING_BLOCK {
                let mut gaps: Vec<u32> = (0..m).map(|_| rng.random_range(0..=top)).collect();
                // The widest gap sets the width: make one reach it.
                if m > 1 {
                    gaps[1 + rng.random_range(0..m - 1)] = top;
                }
                let weights: Vec<u16> = (0..m)
                    .map(|_| rng.random_range(0x0400u16..0x7c00))
                    .collect();
                let (mut grouped, mut serial) = (vec![7u8; 3], vec![7u8; 3]);
                encode_block(&gaps, &weights, &mut grouped);
                encode_block_serial(&gaps, &weights, &mut serial);
                assert_eq!(grouped, serial, "width {width}, {m} postings");
            }
        }
    }

    #[test]
    fn packed_blocks_round_trip_at_every_bit_width() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for width in 0..=32u32 {
            for _ in 0..20 {
                // One list of up to three blocks whose gaps use `width` bits.
                let sizes: Vec<usize> = (0..rng.random_range(1..4))
                    .map(|_| rng.random_range(1..=POSTING_BLOCK))
                    .collect();
                let n: usize = sizes.iter().sum();
                let top = if width == 0 {
                    0
                } else {
                    u64::MAX >> (64 - width)
                };
                // Keep the doc ids below 2^32 (the gaps' sum is the last id).
                let cap = (u32::MAX as u64 - 2 * n as u64) / n as u64;
                let mut list = Vec::with_capacity(n);
                let mut next = 0u64;
                for k in 0..n {
                    let g = if k % 17 == 0 {
                        top.min(cap)
                    } else {
                        rng.random_range(0..=top.min(cap))
                    };
                    let d = next + g;
                    list.push((d as u32, rng.random_range(0x0400u16..0x7c00)));
                    next = d + 1;
                }
                let mut bytes = Vec::new();
                let (mut at, mut next) = (0, 0u32);
                for &m in &sizes {
                    let gaps: Vec<u32> = list[at..at + m]
                        .iter()
                        .map(|&(d, _)| {
                            let g = d - next;
                            next = d + 1;
                            g
                        })
                        .collect();
                    let w: Vec<u16> = list[at..at + m].iter().map(|p| p.1).collect();
                    encode_block(&gaps, &w, &mut bytes);
                    at += m;
                }
                let last = list[n - 1].0;
                // Postings store tile offsets in 16 bits: compare doc ids
                // and weights through the builder's own iterator.
                assert_eq!(
                    decode_list(&bytes, &sizes, last + 1).unwrap(),
                    list,
                    "width {width}"
                );
                // A doc id at the bound, a cut and a bad width are errors.
                assert!(decode_list(&bytes, &sizes, last).is_err());
                assert!(decode_list(&bytes[..bytes.len() - 1], &sizes, last + 1).is_err());
            }
        }
        let mut block = Vec::new();
        encode_block(&[5, 1], &[0x3c00, 0x3c00], &mut block);
        block[1] = 33;
        let err = decode_list(&block, &[2], 100).unwrap_err().to_string();
        assert!(err.contains("bit width"), "{err}");
    }

    /// `n` documents over tokens `0..vocab`: per (doc `i`, token `t`) one
    /// xorshift step from `seed`; the token is present when `present(i, t, x)`
    /// for the drawn `x`, with a weight taken from `x`'s high bits.
    fn xorshift_docs(
        n: usize,
        vocab: u16,
        seed: u64,
        present: impl Fn(usize, u16, u64) -> bool,
    ) -> Vec<DocRecord> {
        let mut x = seed;
        (0..n)
            .map(|i| {
                let mut vec = Vec::new();
                for t in 0..vocab {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    if present(i, t, x) {
                        vec.push((t, quantize(0.01 + (x >> 40) as f32 / (1u64 << 24) as f32)));
                    }
                }
                DocRecord {
                    id: format!("d{i}"),
                    vec,
                    tf: Vec::new(),
                    len: 0,
                    source: Vec::new(),
                }
            })
            .collect()
    }

    /// Documents spanning four postings tiles (the build splits them over
    /// the machine's cores, so a tile is cut between two parts), with tokens
    /// that skip whole tiles.
    fn multi_tile_docs() -> Vec<DocRecord> {
        let tile = 1usize << postings::TILE_SHIFT;
        xorshift_docs(3 * tile + 1234, 40, 0x9e37_79b9_7f4a_7c15, |i, t, x| {
            // Token t occurs with probability ~1/(t+2); token 39 only in tile 2.
            if t == 39 {
                i / tile == 2 && x.is_multiple_of(5)
            } else {
                x.is_multiple_of(t as u64 + 2)
            }
        })
    }

    /// `copy_piece` copies exactly its piece at every length, touching
    /// nothing around it.
    #[test]
    fn pieces_are_copied_exactly() {
        let src: Vec<u32> = (1..=80).collect();
        for at in 0..3 {
            for k in 1..=40 {
                let mut dst = vec![0u32; 90];
                copy_piece(&mut dst[at..at + k], &src[at..at + k]);
                for (j, &x) in dst.iter().enumerate() {
                    let want = if (at..at + k).contains(&j) { src[j] } else { 0 };
                    assert_eq!(x, want, "at {at} k {k} j {j}");
                }
            }
        }
    }

    /// A tile sorted in batches of any size (a document each, a few, the
    /// whole tile) encodes to the same bytes, and the encoder counts the
    /// postings the input states.
    #[test]
    fn tiles_sorted_in_batches_of_any_size_encode_alike() {
        let docs = multi_tile_docs();
        let src = NeuralSource(&docs[..]);
        let tile = 1usize << postings::TILE_SHIFT;
        // A whole tile, and the last, partial one.
        for range in [tile..2 * tile, 3 * tile..docs.len()] {
            let stated: usize = range.clone().map(|i| docs.n_postings(i)).sum();
            let encode = |batch_postings: usize| {
                // `longest` 0: the encoder grows its buffer itself.
                let mut e = TileEncoder::new(0, 40);
                e.batch_postings = batch_postings;
                let n = e.encode(range.clone(), &src, None).unwrap();
                assert_eq!(n, stated);
                let batches = e.batch_ends.len();
                (batches, (e.head, e.data, e.max_bits))
            };
            let (one, whole) = encode(usize::MAX);
            assert_eq!(one, 1);
            for batch_postings in [1, 2, 50, 1000, 100_000] {
                let (batches, got) = encode(batch_postings);
                if batch_postings < stated {
                    assert!(batches > 1, "{batch_postings}: {batches} batches");
                }
                assert!(got == whole, "batches of {batch_postings} postings");
            }
        }
    }

    /// The file a one-thread build streams tile by tile and the one three
    /// threads write from buffered tiles are the same bytes.
    #[test]
    fn streamed_and_buffered_tiles_give_the_same_file() {
        let docs = multi_tile_docs();
        let dir = tempfile::tempdir().unwrap();
        let file = |threads: usize| {
            let name = format!("s{threads}.seg");
            Segment::build_and_write(&docs[..], 40, dir.path(), &name, None, threads).unwrap();
            std::fs::read(dir.path().join(name)).unwrap()
        };
        let one = file(1);
        assert!(one == file(3), "the file depends on the thread count");
    }

    #[test]
    fn multi_tile_build_equals_a_plain_inversion_and_round_trips() {
        let docs = multi_tile_docs();
        // One thread, and three, whose document ranges cut tiles 1 and 2 in
        // two (a tile's run then spans two threads' pieces).
        for threads in [1, 3] {
            let seg = Segment::build_on(&docs[..], 40, threads);
            check_multi_tile_segment(&docs, &seg);
            // Written tile by tile, read back lazily and at open: the same
            // postings, run table and per-token maxima.
            let dir = tempfile::tempdir().unwrap();
            let lazy = Segment::build_and_write(&docs[..], 40, dir.path(), "s.seg", None, threads)
                .unwrap();
            assert!(
                lazy.post.get().is_none(),
                "postings stay on disk until used"
            );
            assert_eq!(lazy.n_postings(), seg.n_postings());
            assert_eq!(lazy.term_max, seg.term_max);
            let opened = Segment::load(&dir.path().join("s.seg")).unwrap();
            for back in [lazy.postings().unwrap(), opened.post()] {
                assert_eq!(back.term_start, seg.post().term_start);
                assert_eq!(back.run_start, seg.post().run_start);
                assert_eq!(back.run_tile, seg.post().run_tile);
                assert_eq!(back.run_pos, seg.post().run_pos);
                assert_eq!(back.packed, seg.post().packed);
            }
            assert_eq!(opened.term_max, seg.term_max);
            check_multi_tile_segment(&docs, &lazy);
        }
    }

    /// A few postings over two and a half tiles (a small file to damage).
    fn sparse_multi_tile_docs() -> Vec<DocRecord> {
        let tile = 1usize << postings::TILE_SHIFT;
        xorshift_docs(2 * tile + 4321, 6, 0x2545_f491_4f6c_dd1d, |_, _, x| {
            x.is_multiple_of(60)
        })
    }

    #[test]
    fn an_empty_segment_is_written_and_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let seg = Segment::build_and_write(&[][..], 6, dir.path(), "e.seg", None, 0).unwrap();
        assert_eq!(seg.term_max, vec![0.0; 6]);
        assert_eq!(seg.postings().unwrap().len(), 0);
        let back = Segment::load(&dir.path().join("e.seg")).unwrap();
        assert_eq!(back.post().term_start, vec![0; 7]);
    }

    #[test]
    fn tile_postings_decoder_rejects_damage_without_panicking() {
        let docs = sparse_multi_tile_docs();
        let n = docs.len() as u32;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.seg");
        let seg = Segment::build_and_write(&docs[..], 6, dir.path(), "s.seg", None, 1).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let (_, secs) = format::read_container_of(&path, &bytes, SEG_MAGIC, 3..=3).unwrap();
        let section = format::section(&path, &secs, SEC_POSTINGS)
            .unwrap()
            .to_vec();
        // Decoded on one thread and on three (pieces split between them),
        // the outcome must be the same: equal postings, or the same
        // corruption (the first damaged piece in file order).
        let decode = |b: &[u8]| {
            let on = |threads| {
                decode_tile_postings(&mut Cursor::new(b, &path), 6, n, seg.n_postings(), threads)
            };
            let (one, three) = (on(1), on(3));
            match (&one, &three) {
                (Ok(a), Ok(b)) => assert!(a.packed == b.packed && a.run_pos == b.run_pos),
                (Err(a @ Error::Corrupt { .. }), Err(b @ Error::Corrupt { .. })) => {
                    assert_eq!(a.to_string(), b.to_string())
                }
                _ => panic!("1 and 3 decoding threads disagree: {one:?} vs {three:?}"),
            }
            one
        };
        let intact = decode(&section).unwrap();
        assert_eq!(intact.packed, seg.postings().unwrap().packed);
        let is_corrupt = |r: Result<Postings>| match r {
            Err(Error::Corrupt { .. }) => true,
            Err(e) => panic!("not a corruption error: {e}"),
            Ok(p) => {
                // A change the structure cannot see (a weight, a gap) still
                // decodes to well-formed postings.
                p.check(n).unwrap();
                false
            }
        };
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rejected = 0;
        for _ in 0..3000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut damaged = section.clone();
            let at = (x >> 8) as usize % damaged.len();
            damaged[at] ^= 1 << (x % 8);
            rejected += is_corrupt(decode(&damaged)) as usize;
        }
        assert!(rejected > 300, "only {rejected} of 3000 flips rejected");
        for cut in (0..section.len()).step_by(section.len() / 211 + 1) {
            assert!(is_corrupt(decode(&section[..cut])), "cut at {cut}");
        }
        // A file whose tiles are out of order: the first tile claims to start at doc 1.
        let mut shifted = section.clone();
        assert_eq!(shifted[1], 0, "first tile starts at doc 0");
        shifted[1] = 1;
        let e = decode(&shifted).unwrap_err().to_string();
        assert!(e.contains("not the segment's tiles in order"), "{e}");
    }

    fn check_multi_tile_segment(docs: &[DocRecord], seg: &Segment) {
        let n = docs.len() as u32;
        seg.post().check(n).unwrap();
        let mut want: Vec<Vec<(u32, u16)>> = vec![Vec::new(); 40];
        for (d, doc) in docs.iter().enumerate() {
            for &(t, w) in &doc.vec {
                want[t as usize].push((d as u32, w));
            }
        }
        for (t, list) in want.iter().enumerate() {
            assert_eq!(
                seg.post().iter(t as u32).collect::<Vec<_>>(),
                *list,
                "token {t}"
            );
            for &(d, w) in list.iter().step_by(97) {
                assert_eq!(seg.weight(t as u32, d), Some(w));
            }
        }
        assert_eq!(seg.post().runs(39).len(), 1);

        // Forward windows and whole-vector reconstruction give back the input.
        let mut cur = seg.forward_cursor();
        let mut d = 0u32;
        while d < n {
            let end = (d + 20_000).min(n);
            for (i, f) in seg.forward_window(&mut cur, d, end).into_iter().enumerate() {
                assert_eq!(f.vec, docs[d as usize + i].vec, "doc {}", d as usize + i);
            }
            d = end;
        }
        let all = seg.all_vectors();
        assert!(all.iter().zip(docs).all(|(v, doc)| *v == doc.vec));

        // The block-max table covers every posting of every block.
        let bm = seg.block_max();
        for t in 0..40u32 {
            for e in bm.start[t as usize]..bm.start[t as usize + 1] {
                let base = bm.block[e] << DOC_BLOCK_SHIFT;
                for &x in &seg.post().packed[bm.pos[e]..bm.pos[e + 1]] {
                    let d = base + (postings::offset(x) & ((1 << DOC_BLOCK_SHIFT) - 1));
                    assert_eq!(seg.weight(t, d), Some(postings::weight_bits(x)));
                }
            }
        }
    }
}
