//! Multi-head self-attention core for one sequence.

use crate::gemm::{block_f32, Kernels, PackedAF32, PackedBF32, SendPtr, NR};
use rayon::prelude::*;

/// Multi-head self-attention core for ONE sequence, token-major layout.
///
/// `qkv` is `[m × 3·hidden]` with Q in columns `0..hidden`, K in
/// `hidden..2·hidden`, V in `2·hidden..3·hidden`; head `h` uses columns
/// `h·d..(h+1)·d` of each (`d = hidden / heads`).
/// Writes `out[m × hidden]` = concat over heads of
/// `softmax(Q_h K_hᵀ / √d) V_h`. No mask. Heads run as rayon tasks; both
/// products use the packed fp32 micro-kernel, the softmax a vectorised exp.
///
/// # Panics
/// If `heads == 0`, `hidden % heads != 0`, `qkv.len() != m·3·hidden` or
/// `out.len() != m·hidden`.
pub fn attention(qkv: &[f32], m: usize, hidden: usize, heads: usize, out: &mut [f32]) {
    attention_impl(qkv, m, hidden, heads, out, false)
}

/// [`attention`] with the portable kernels forced (for testing the fallback).
///
/// # Panics
/// As [`attention`].
pub fn attention_portable(qkv: &[f32], m: usize, hidden: usize, heads: usize, out: &mut [f32]) {
    attention_impl(qkv, m, hidden, heads, out, true)
}

fn attention_impl(
    qkv: &[f32],
    m: usize,
    hidden: usize,
    heads: usize,
    out: &mut [f32],
    portable: bool,
) {
    assert!(
        heads > 0 && hidden.is_multiple_of(heads),
        "attention: hidden must be a multiple of heads"
    );
    assert_eq!(
        qkv.len(),
        m * 3 * hidden,
        "attention: qkv.len() != m * 3 * hidden"
    );
    assert_eq!(out.len(), m * hidden, "attention: out.len() != m * hidden");
    if m == 0 {
        return;
    }
    let d = hidden / heads;
    let kern = Kernels::select(portable);
    let ld = 3 * hidden;
    let scale = 1.0 / (d as f32).sqrt();
    let zeros = vec![0.0f32; m.max(d).div_ceil(NR) * NR];
    let op = SendPtr(out.as_mut_ptr());
    let head = |h: usize| {
        let q = PackedAF32::pack(&qkv[h * d..], m, d, ld);
        let kt = PackedBF32::pack(&qkv[hidden + h * d..], m, d, ld, 1);
        let mut s = vec![0.0f32; m * m];
        // SAFETY: s is m × m with stride m, owned here; q/kt cover m rows/cols.
        unsafe {
            block_f32(
                kern.f32k,
                &q,
                &kt,
                &zeros,
                s.as_mut_ptr(),
                m,
                0..m,
                0..m,
                None,
            )
        };
        for row in s.chunks_exact_mut(m) {
            let mx = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            // softmax(scale·s): exp(scale·(s − max)); scale > 0 keeps the max.
            for v in row.iter_mut() {
                *v *= scale;
            }
            let sum = crate::elementwise::softmax_exp(row, mx * scale);
            let inv = 1.0 / sum;
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
        let p = PackedAF32::pack(&s, m, m, m);
        drop(s);
        let vt = PackedBF32::pack(&qkv[2 * hidden + h * d..], d, m, 1, ld);
        // SAFETY: head h writes only columns h·d..(h+1)·d of the m × hidden
        // output (checked length), disjoint from every other head.
        unsafe {
            block_f32(
                kern.f32k,
                &p,
                &vt,
                &zeros,
                op.get().add(h * d),
                hidden,
                0..m,
                0..d,
                None,
            )
        };
    };
    if m * m * d * heads < 1 << 20 {
        (0..heads).for_each(head);
    } else {
        (0..heads).into_par_iter().for_each(head);
    }
}
