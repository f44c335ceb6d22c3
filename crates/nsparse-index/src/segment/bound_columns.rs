//! Bound columns: a byte per document bounding a frequent token's weight.

use crate::postings::Postings;
use crate::quantize::dequantize;
use crate::segment::{Segment, DOC_BLOCK_SHIFT};

/// Segments below this many documents get no dense columns: their scans are
/// cheap anyway and a column would cost more memory than it saves time.
pub(crate) const DENSE_MIN_DOCS: u32 = 1 << 14;

/// A token gets a bound column when at least 1/`DENSE_DF_DIVISOR` of the
/// segment's documents contain it. A column costs one byte per document of
/// streamed memory, a posting a scatter into the accumulator; measured on
/// the fitted 1M-document bench (BENCHMARKS.md), 1/16 beat 1/8
/// by ~15 % and 1/32 was no faster at twice the memory.
pub(crate) const DENSE_DF_DIVISOR: u32 = 16;

/// Environment variable the CLI and the server read for
/// [`WriterOptions::dense_columns_max_mb`](crate::WriterOptions::dense_columns_max_mb)
/// and [`ReaderOptions::dense_columns_max_mb`](crate::ReaderOptions::dense_columns_max_mb)
/// (see [`dense_columns_max_mb_from_env`]).
pub const DENSE_COLUMNS_MAX_MB_ENV: &str = "NSPARSE_DENSE_COLUMNS_MAX_MB";

/// The bound-column budget in MiB set by [`DENSE_COLUMNS_MAX_MB_ENV`]:
/// `None` when it is unset, or not a whole number (then with a warning).
/// The library never reads the variable itself; programs pass the value on
/// as an option.
pub fn dense_columns_max_mb_from_env() -> Option<u64> {
    let v = std::env::var(DENSE_COLUMNS_MAX_MB_ENV).ok()?;
    match v.trim().parse::<u64>() {
        Ok(mb) => Some(mb),
        Err(_) => {
            tracing::warn!(
                value = %v,
                "{DENSE_COLUMNS_MAX_MB_ENV} is not a whole number of MiB; ignoring it (no cap)"
            );
            None
        }
    }
}

/// The per-segment byte budget of an optional MiB cap (no cap: unlimited).
pub(crate) fn budget_bytes(max_mb: Option<u64>) -> u64 {
    max_mb.map_or(u64::MAX, |mb| mb.saturating_mul(1 << 20))
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
/// f16 column (BENCHMARKS.md). The bytes give an upper bound of
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
        debug_assert_eq!(crate::postings::offset(x), doc & crate::postings::TILE_MASK);
        Some(crate::postings::weight_bits(x))
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
pub(crate) fn nonzero_bytes(bytes: &[u8]) -> usize {
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
pub(crate) fn bound_code(w: f32, step: f32, inv: f32) -> u8 {
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
pub(crate) fn code_step(max: f32) -> f32 {
    (max / 255.0) * (1.0 + 1e-6)
}

impl DenseColumns {
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
            postings: post.term_postings(t),
        })
    }

    /// Number of columns (built or not).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.cols.len()
    }
}
