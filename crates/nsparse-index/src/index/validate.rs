//! Checking and preparing documents before they are written.

use std::path::Path;

use crate::error::{Error, Result};
use crate::index::manifest::MANIFEST;
use crate::quantize::{quantize, MAX_WEIGHT};
use crate::schema::{Document, MAX_ID_BYTES};
use crate::segment::DocRecord;

pub(crate) fn check_name(dir: &Path, name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') || name.contains('\\') || name.starts_with('.') {
        return Err(Error::corrupt(
            dir.join(MANIFEST),
            format!("bad file name {name:?} in manifest"),
        ));
    }

    Ok(())
}

/// Check a document's `_id` and source size.
pub(crate) fn check_id(doc: &Document) -> Result<()> {
    if doc.id.is_empty() {
        return Err(Error::invalid(
            "document",
            "empty _id (give every document a non-empty _id)",
        ));
    }

    if doc.id.len() > MAX_ID_BYTES {
        return Err(Error::invalid(
            format!("document {:?}", doc.id),
            format!("_id is {} bytes, the limit is {MAX_ID_BYTES}", doc.id.len()),
        ));
    }

    if doc.source.len() > u32::MAX as usize {
        return Err(Error::invalid(
            format!("document {:?}", doc.id),
            "source larger than 4 GiB",
        ));
    }

    Ok(())
}

/// Whether `v`'s tokens strictly ascend below `vocab` and every weight is
/// in `[MIN_WEIGHT / 2, MAX_WEIGHT]`: valid, and kept by quantization
/// ([`crate::quantize::is_kept`]). The common case, settled by one pass
/// without early exits (a third of the time of the checking loop below,
/// which finds and names the problem, and counts the dropped weights).
pub(crate) fn is_clean_sorted_vector(v: &[(u32, f32)], vocab: u32) -> bool {
    let Some(&(last, _)) = v.last() else {
        return true;
    };

    let keep_bits = (crate::quantize::MIN_WEIGHT / 2.0).to_bits();
    let span = MAX_WEIGHT.to_bits() - keep_bits;
    // Non-negative floats order like their bits, so one unsigned range
    // check on the bits rejects NaN, infinities, negative values (sign bit
    // set) and weights quantization drops, zeros included.
    let odd_weight = |w: f32| (w.to_bits().wrapping_sub(keep_bits) > span) as u32;
    // The previous token rides in a register, flags are OR-ed as integers
    // and the loop is unrolled by eight: ~1.25 instead of ~1.75 ns per
    // posting over vectors in memory (BENCHMARKS.md).
    let mut odd = odd_weight(v[0].1);
    let mut prev = v[0].0;
    let mut chunks = v[1..].chunks_exact(8);
    for c in &mut chunks {
        for &(t, w) in c {
            odd |= (prev >= t) as u32 | odd_weight(w);
            prev = t;
        }
    }

    for &(t, w) in chunks.remainder() {
        odd |= (prev >= t) as u32 | odd_weight(w);
        prev = t;
    }

    odd == 0 && last < vocab
}

/// Validate a vector whose tokens are ascending (`v` may be the caller's own
/// slice: no copy): the number of postings it gives (weights that quantize
/// to zero are dropped), or `None` when its tokens are not ascending,
/// nothing else checked.
pub(crate) fn check_sorted_vector(id: &str, v: &[(u32, f32)], vocab: u32) -> Result<Option<usize>> {
    if is_clean_sorted_vector(v, vocab) {
        return Ok(Some(v.len()));
    }

    let kept = || v.iter().filter(|p| crate::quantize::is_kept(p.1)).count();
    Ok(check_sorted_vector_in_full(id, v, vocab)?.then(kept))
}

/// [`check_sorted_vector`] posting by posting, naming the first problem.
pub(crate) fn check_sorted_vector_in_full(id: &str, v: &[(u32, f32)], vocab: u32) -> Result<bool> {
    let what = || format!("document {id:?}");
    let mut prev: Option<u32> = None;
    for &(t, w) in v {
        if let Some(p) = prev {
            if t < p {
                return Ok(false);
            }
            if t == p {
                return Err(Error::invalid(
                    what(),
                    format!("token id {t} appears twice (merge duplicate tokens first)"),
                ));
            }
        }
        prev = Some(t);
        if t >= vocab {
            return Err(Error::invalid(
                what(),
                format!("token id {t} is outside the vocabulary (size {vocab})"),
            ));
        }
        if !w.is_finite() || !(0.0..=MAX_WEIGHT).contains(&w) {
            return Err(Error::invalid(
                what(),
                format!("weight {w} of token {t} must be finite and in [0, {MAX_WEIGHT}]"),
            ));
        }
    }

    Ok(true)
}

/// Validate and quantize a vector: (token, quantized weight), tokens
/// ascending, zero-quantized weights dropped.
pub(crate) fn quantized_vector(doc: &Document, vocab: u32) -> Result<Vec<(u32, u16)>> {
    let sorted_copy;
    let v: &[(u32, f32)] = if check_sorted_vector(&doc.id, &doc.vector, vocab)?.is_some() {
        &doc.vector
    } else {
        let mut c = doc.vector.clone();
        c.sort_unstable_by_key(|p| p.0);
        sorted_copy = c;
        check_sorted_vector(&doc.id, &sorted_copy, vocab)?;
        &sorted_copy
    };

    Ok(v.iter()
        .filter_map(|&(t, w)| {
            let q = quantize(w);
            (q != 0).then_some((t, q))
        })
        .collect())
}

/// BM25 term frequencies and length from a document's token list.
pub(crate) fn term_frequencies(doc: &Document, vocab: u32) -> Result<(Vec<(u32, u32)>, u32)> {
    let Some(ts) = &doc.tokens else {
        return Ok((Vec::new(), 0));
    };

    if ts.len() > u32::MAX as usize {
        return Err(Error::invalid(
            format!("document {:?}", doc.id),
            "too many tokens",
        ));
    }

    let mut s = ts.clone();
    s.sort_unstable();
    let mut tf: Vec<(u32, u32)> = Vec::new();
    for &t in &s {
        if t >= vocab {
            return Err(Error::invalid(
                format!("document {:?}", doc.id),
                format!("BM25 token id {t} is outside the vocabulary (size {vocab})"),
            ));
        }
        match tf.last_mut() {
            Some(l) if l.0 == t => l.1 += 1,
            _ => tf.push((t, 1)),
        }
    }

    Ok((tf, ts.len() as u32))
}

/// Validate and quantize a document.
pub(crate) fn prepare(doc: &Document, vocab: u32) -> Result<DocRecord> {
    check_id(doc)?;
    let vec = quantized_vector(doc, vocab)?;
    let (tf, len) = term_frequencies(doc, vocab)?;
    Ok(DocRecord {
        id: doc.id.clone(),
        vec,
        tf,
        len,
        source: doc.source.clone(),
    })
}
