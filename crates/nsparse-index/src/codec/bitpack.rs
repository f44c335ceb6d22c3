//! Blocks of 128 postings: the first doc-id gap as a varint, one byte of
//! bit width, the other 127 gaps bit-packed, then the f16 weights.

use crate::codec::varint::{put_varint, Cursor};
use crate::error::Result;

/// Postings per compression block on disk.
pub(crate) const POSTING_BLOCK: usize = 128;

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
/// posting for this function (BENCHMARKS.md).
pub(crate) fn encode_block(gaps: &[u32], weights: &[u16], buf: &mut Vec<u8>) {
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
/// over all the gaps (the encoder's earlier, slower form).
#[cfg(test)]
pub(crate) fn encode_block_serial(gaps: &[u32], weights: &[u16], buf: &mut Vec<u8>) {
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

/// Read the doc ids of one bit-packed postings block ([`encode_block`]) of
/// `m` ≤ [`POSTING_BLOCK`] entries whose first doc id is `start` plus the
/// block's first gap, checking that every doc id is below `limit`.
#[inline]
pub(crate) fn unpack_docs(
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
