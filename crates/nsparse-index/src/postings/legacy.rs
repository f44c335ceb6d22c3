//! Block decoders of the token-major postings: varint gaps (format 1) and
//! bit-packed gaps (formats 2 and 3).

use crate::codec::bitpack::{unpack_docs, POSTING_BLOCK};
use crate::codec::varint::Cursor;
use crate::error::Result;
use crate::postings::builder::PostingsBuilder;

/// Decode one postings block of format version 2 ([`encode_block`]) of
/// `m` ≤ [`POSTING_BLOCK`] entries onto `out`'s current token, checking
/// every value. `prev` is the list's last doc id so far (`None` at its start).
#[inline]
pub(crate) fn decode_packed_block(
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
pub(crate) fn take_weights<'a>(c: &mut Cursor<'a>, m: usize) -> Result<&'a [u8]> {
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
pub(crate) fn decode_varint_block(
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
