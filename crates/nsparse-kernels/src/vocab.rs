//! [`PackedVocabProjection`]: masked-LM vocabulary projection fused with
//! SPLADE max-pooling, with an exact int16-screened fast path.

use crate::gemm::{
    self, block_i16, inv_scale, pairs, quant, Kernels, PackedAI16, PackedBI16, KC_I16, NR, Q_I16,
};
use crate::Precision;
use rayon::prelude::*;

/// Vocabulary columns per parallel task (4 panels): the task's m × 64 block of
/// approximate logits stays in L2 while it is screened.
const NCV: usize = 64;
/// Unit roundoff of f32.
const U: f64 = 1.0 / 16_777_216.0;

/// Norms of one row and of its quantisation residual, rounded up to f32.
#[derive(Clone, Copy, Default)]
struct RowNorms {
    /// ‖x − x̃‖ where x̃ = s·q (real-valued).
    resid: f32,
    /// ‖x̃‖.
    quant: f32,
    /// ‖x‖.
    orig: f32,
}

/// Computes [`RowNorms`] in f64 (products of an f32 and an i16 are exact in
/// f64) and rounds up generously so the f32 values are upper bounds.
fn row_norms(row: &[f32], s: f32) -> RowNorms {
    let inv = inv_scale(s);
    let (mut r2, mut q2, mut x2) = (0.0f64, 0.0f64, 0.0f64);
    for &x in row {
        let xt = s as f64 * quant(x, inv) as f64;
        let d = x as f64 - xt;
        r2 += d * d;
        q2 += xt * xt;
        x2 += x as f64 * x as f64;
    }
    let up = |v: f64| (v.sqrt() * (1.0 + 1e-6)) as f32;
    RowNorms {
        resid: up(r2),
        quant: up(q2),
        orig: up(x2),
    }
}

/// The masked-LM vocabulary projection fused with SPLADE max-pooling:
/// `out[v] = max_p ln(1 + relu(h_p · W_v + b_v))`, never materialising the
/// m × vocab logits.
///
/// # Algorithm
/// All logits are first computed in int16 (per-row quantised `h` and `W`,
/// exact integer dot products, |q| ≤ 4095). For every (p, v) a rigorous
/// bound `β_pv` on |approx − fp32 logit| is formed from precomputed norms
/// (Cauchy–Schwarz on the quantisation residuals):
/// `‖r_p‖‖W̃_v‖ + ‖h̃_p‖‖E_v‖ + ‖r_p‖‖E_v‖` plus the rounding of the f32
/// conversion/scaling of the approximation, plus the worst-case rounding of
/// an fp32 dot product `γ_{k+2}(‖h_p‖‖W_v‖ + |b_v|)`, plus an underflow slack.
/// Because the interval `approx ± β` contains the fp32-computed logit too:
/// * `max_p (approx + β) ≤ 0` ⇒ `out[v] = 0` exactly;
/// * otherwise only positions whose upper bound reaches the best lower bound
///   `max_q (approx_q − β_q)` (and is positive) can hold the fp32 maximum;
///   those are recomputed in fp32 and their max is returned.
///
/// So [`Precision::Exact`] returns exactly what a brute-force f64-accumulated
/// computation of all m × vocab logits would return, rounded once to f32
/// (≤ 1 ulp from an f64 reference — tighter than a plain fp32 GEMM), at
/// roughly int16 cost when few logits are near the maximum / positive.
///
/// [`Precision::Fast`] returns `ln1p(relu(max_p approx))`: the logit error is
/// within the quantisation part of the bound above (measured max |Δ| of the
/// pooled output 3e-4…1e-3 on 272×30522×768 with logits of std ≈ 1), and the
/// fp32 copy of `W` is not kept (Exact keeps it: vocab·k·4 bytes extra).
pub struct PackedVocabProjection {
    vocab: usize,
    k: usize,
    precision: Precision,
    q: PackedBI16,
    /// Bias padded to a multiple of NR.
    bias: Vec<f32>,
    /// Per-vocab-row norms (padded).
    norms: Vec<RowNorms>,
    /// fp32 copy of W (vocab × k) for exact recomputation; empty in Fast mode.
    w: Vec<f32>,
    kernels: Kernels,
    portable: bool,
}

impl PackedVocabProjection {
    /// Packs `weight` (`vocab × k`, row-major) and `bias` (`vocab`).
    ///
    /// # Panics
    /// If `weight.len() != vocab * k` or `bias.len() != vocab`.
    pub fn new(weight: &[f32], vocab: usize, k: usize, bias: &[f32], precision: Precision) -> Self {
        Self::with_kernels(weight, vocab, k, bias, precision, false)
    }

    /// Like [`PackedVocabProjection::new`] but forces the portable kernels;
    /// used to test the fallback path on SIMD machines.
    ///
    /// # Panics
    /// As [`PackedVocabProjection::new`].
    pub fn new_portable(
        weight: &[f32],
        vocab: usize,
        k: usize,
        bias: &[f32],
        precision: Precision,
    ) -> Self {
        Self::with_kernels(weight, vocab, k, bias, precision, true)
    }

    fn with_kernels(
        weight: &[f32],
        vocab: usize,
        k: usize,
        bias: &[f32],
        precision: Precision,
        portable: bool,
    ) -> Self {
        assert_eq!(
            weight.len(),
            vocab * k,
            "PackedVocabProjection::new: weight.len() != vocab * k"
        );
        assert_eq!(
            bias.len(),
            vocab,
            "PackedVocabProjection::new: bias.len() != vocab"
        );
        let q = PackedBI16::pack(weight, vocab, k);
        let mut norms = vec![RowNorms::default(); vocab.div_ceil(NR) * NR];
        norms[..vocab]
            .par_iter_mut()
            .enumerate()
            .for_each(|(v, n)| {
                *n = row_norms(&weight[v * k..][..k], q.scales[v]);
            });
        let mut b = vec![0.0f32; vocab.div_ceil(NR) * NR];
        b[..vocab].copy_from_slice(bias);
        let w = match precision {
            Precision::Exact => weight.to_vec(),
            Precision::Fast => Vec::new(),
        };
        Self {
            vocab,
            k,
            precision,
            q,
            bias: b,
            norms,
            w,
            kernels: Kernels::select(portable),
            portable,
        }
    }

    /// Vocabulary size (length of the output).
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// Hidden size (length of each `h` row).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Precision this projection was packed for.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// `out[v] = max over rows p < m of ln(1 + relu(h[p]·W[v] + b[v]))`;
    /// 0 when no logit is positive (and for `m == 0`).
    ///
    /// Uses both rayon workers (tasks of 64 vocabulary entries).
    ///
    /// # Panics
    /// If `h.len() != m * k` or `out.len() != vocab`.
    pub fn max_pool(&self, h: &[f32], m: usize, out: &mut [f32]) {
        self.max_pool_stats(h, m, out);
    }

    /// As [`PackedVocabProjection::max_pool`], returning how many (p, v)
    /// logits were recomputed in fp32 (always 0 in Fast mode).
    ///
    /// # Panics
    /// As [`PackedVocabProjection::max_pool`].
    pub fn max_pool_stats(&self, h: &[f32], m: usize, out: &mut [f32]) -> usize {
        let k = self.k;
        assert_eq!(h.len(), m * k, "max_pool: h.len() != m * k");
        assert_eq!(out.len(), self.vocab, "max_pool: out.len() != vocab");
        self.max_pool_batch_stats(h, &[0, m], out)
    }

    /// [`PackedVocabProjection::max_pool`] for several sequences at once:
    /// sequence `s` is rows `offsets[s]..offsets[s + 1]` of `h`
    /// (`offsets` non-decreasing, starting at 0) and its pooled vector goes
    /// to `out[s·vocab..(s + 1)·vocab]`. Each vocabulary chunk is processed
    /// for all sequences while its weights are in cache, so `W` is read from
    /// memory once per batch instead of once per sequence. Results are
    /// bit-identical to one [`PackedVocabProjection::max_pool`] call per
    /// sequence.
    ///
    /// # Panics
    /// If `offsets` is empty, does not start at 0 or decreases, if
    /// `h.len() != offsets.last() · k` or `out.len() != (offsets.len() − 1) · vocab`.
    pub fn max_pool_batch(&self, h: &[f32], offsets: &[usize], out: &mut [f32]) {
        self.max_pool_batch_stats(h, offsets, out);
    }

    /// As [`PackedVocabProjection::max_pool_batch`], returning how many
    /// (p, v) logits were recomputed in fp32 (always 0 in Fast mode).
    ///
    /// # Panics
    /// As [`PackedVocabProjection::max_pool_batch`].
    pub fn max_pool_batch_stats(&self, h: &[f32], offsets: &[usize], out: &mut [f32]) -> usize {
        let seqs = self.check_batch(h, offsets);
        assert_eq!(
            out.len(),
            seqs * self.vocab,
            "max_pool_batch: out.len() != sequences * vocab"
        );
        let vocab = self.vocab;
        // Each task returns its chunk for every sequence (sequence-major); they are scattered
        // afterwards (chunk-major → sequence-major).
        let (results, recomputed) =
            self.pool_chunks(h, offsets, |res: &mut Vec<f32>, _, _, pooled| {
                res.extend_from_slice(pooled)
            });
        if results.is_empty() {
            out.fill(0.0);
            return 0;
        }
        for (ci, res) in results.iter().enumerate() {
            let v0 = ci * NCV;
            let nc = NCV.min(vocab - v0);
            for (s, r) in res.chunks_exact(nc).enumerate() {
                out[s * vocab + v0..][..nc].copy_from_slice(r);
            }
        }
        recomputed
    }

    /// [`PackedVocabProjection::max_pool_batch`] returning only the non-zero outputs of each
    /// sequence: `(ids, weights)` with ids increasing, the same values as the dense call.
    ///
    /// Memory is proportional to the non-zeros, not to `sequences × vocab`: with a
    /// 250,000-token vocabulary a dense batch of 1,000 short sequences would be 1 GB.
    ///
    /// # Panics
    /// If `offsets` is empty, does not start at 0 or decreases, or if
    /// `h.len() != offsets.last() · k`.
    pub fn max_pool_batch_sparse(&self, h: &[f32], offsets: &[usize]) -> Vec<(Vec<u32>, Vec<f32>)> {
        self.max_pool_batch_sparse_stats(h, offsets).0
    }

    /// As [`PackedVocabProjection::max_pool_batch_sparse`], also returning how many (p, v)
    /// logits were recomputed in fp32 (always 0 in Fast mode).
    ///
    /// # Panics
    /// As [`PackedVocabProjection::max_pool_batch_sparse`].
    #[allow(clippy::type_complexity)]
    pub fn max_pool_batch_sparse_stats(
        &self,
        h: &[f32],
        offsets: &[usize],
    ) -> (Vec<(Vec<u32>, Vec<f32>)>, usize) {
        let seqs = self.check_batch(h, offsets);
        // Per chunk: (sequence, id, weight) of its non-zero outputs, sequence-major, so each
        // sequence's ids come out increasing when the chunks are concatenated in order.
        let (results, recomputed) = self.pool_chunks(
            h,
            offsets,
            |found: &mut Vec<(u32, u32, f32)>, s, v0, pooled| {
                for (j, &w) in pooled.iter().enumerate() {
                    if w != 0.0 {
                        found.push((s as u32, (v0 + j) as u32, w));
                    }
                }
            },
        );
        let mut counts = vec![0usize; seqs];
        for &(s, _, _) in results.iter().flatten() {
            counts[s as usize] += 1;
        }
        let mut out: Vec<(Vec<u32>, Vec<f32>)> = counts
            .iter()
            .map(|&n| (Vec::with_capacity(n), Vec::with_capacity(n)))
            .collect();
        for &(s, v, w) in results.iter().flatten() {
            let (ids, weights) = &mut out[s as usize];
            ids.push(v);
            weights.push(w);
        }
        (out, recomputed)
    }

    /// Checks the batch layout of `h` and `offsets`; returns the number of sequences.
    fn check_batch(&self, h: &[f32], offsets: &[usize]) -> usize {
        assert!(
            offsets.first() == Some(&0) && offsets.windows(2).all(|w| w[0] <= w[1]),
            "max_pool_batch: offsets must start at 0 and be non-decreasing"
        );
        let seqs = offsets.len() - 1;
        assert_eq!(
            h.len(),
            offsets[seqs] * self.k,
            "max_pool_batch: h.len() != rows * k"
        );
        seqs
    }

    /// Runs every vocabulary chunk for every sequence of the batch and hands each sequence's
    /// pooled outputs of the chunk (`nc` values for entries `v0..v0 + nc`) to
    /// `keep(acc, sequence, v0, pooled)`, sequences in order, into one accumulator per chunk.
    /// Returns the accumulators in chunk order (none when the batch has no rows or the
    /// vocabulary is empty) and the number of recomputed logits.
    fn pool_chunks<R: Default + Send>(
        &self,
        h: &[f32],
        offsets: &[usize],
        keep: impl Fn(&mut R, usize, usize, &[f32]) + Sync,
    ) -> (Vec<R>, usize) {
        let k = self.k;
        let seqs = self.check_batch(h, offsets);
        let rows = offsets[seqs];
        if rows == 0 || self.vocab == 0 {
            return (Vec::new(), 0);
        }
        let exact = self.precision == Precision::Exact;
        let inputs: Vec<SeqInput> = offsets
            .windows(2)
            .map(|w| {
                let hs = &h[w[0] * k..w[1] * k];
                let m = w[1] - w[0];
                let a = PackedAI16::pack(hs, m, k, k);
                let hn = if exact {
                    (0..m)
                        .into_par_iter()
                        .map(|p| row_norms(&hs[p * k..][..k], a.scales[p]))
                        .collect()
                } else {
                    Vec::new()
                };
                SeqInput { h: hs, m, a, hn }
            })
            .collect();
        let consts = Consts::new(k);
        let vocab = self.vocab;
        let chunks = vocab.div_ceil(NCV);
        // One task per vocabulary chunk computes it for every sequence.
        let run = |ci: usize, buf: &mut Vec<f32>| -> (R, usize) {
            let v0 = ci * NCV;
            let nc = NCV.min(vocab - v0);
            let mut acc = R::default();
            let mut pooled = [0.0f32; NCV];
            let mut recomputed = 0;
            for (si, s) in inputs.iter().enumerate() {
                let o = &mut pooled[..nc];
                if s.m == 0 {
                    o.fill(0.0);
                } else {
                    recomputed += self.chunk(&s.a, &s.hn, &consts, s.h, s.m, v0, o, buf);
                }
                keep(&mut acc, si, v0, o);
            }
            (acc, recomputed)
        };
        let results: Vec<(R, usize)> = if rows * vocab * k < 1 << 22 {
            let mut buf = Vec::new();
            (0..chunks).map(|ci| run(ci, &mut buf)).collect()
        } else {
            (0..chunks)
                .into_par_iter()
                .map_init(Vec::new, |buf, ci| run(ci, buf))
                .collect()
        };
        let recomputed = results.iter().map(|r| r.1).sum();
        (results.into_iter().map(|r| r.0).collect(), recomputed)
    }

    /// Int16 dot products of rows 0..m with vocabulary entries v0..v0+nc
    /// into `buf` (m × NCV, unscaled); returns the chunk's column scales and
    /// biases padded to NCV (padding columns are computed and ignored, so the
    /// row loops have a fixed trip count and vectorise).
    fn approx_sums(
        &self,
        a: &PackedAI16,
        m: usize,
        v0: usize,
        nc: usize,
        buf: &mut Vec<f32>,
    ) -> ([f32; NCV], [f32; NCV]) {
        buf.clear();
        buf.resize(m * NCV, 0.0);
        // SAFETY: buf holds m rows of NCV ≥ nc columns, exclusively owned here;
        // a and self.q cover all tiles/panels of rows 0..m, columns v0..v0+nc.
        unsafe {
            block_i16(
                self.kernels.i16k,
                a,
                &self.q,
                buf.as_mut_ptr(),
                NCV,
                0..m,
                v0..v0 + nc,
            );
        }
        let mut sb = [0.0f32; NCV];
        let mut bias = [0.0f32; NCV];
        sb[..nc].copy_from_slice(&self.q.scales[v0..v0 + nc]);
        bias[..nc].copy_from_slice(&self.bias[v0..v0 + nc]);
        (sb, bias)
    }

    /// Replaces the raw sums in `buf` by upper bounds `approx + β` and returns
    /// the per-column maxima of the upper and lower bounds.
    #[allow(clippy::too_many_arguments)]
    fn screen(
        &self,
        hn: &[RowNorms],
        cs: &Consts,
        scales: &[f32],
        v0: usize,
        nc: usize,
        buf: &mut [f32],
        sb: [f32; NCV],
        bias: [f32; NCV],
    ) -> ([f32; NCV], [f32; NCV]) {
        // Per-column coefficients of the bound β = r·A1 + ht·A2 + hn·A3 + A0.
        let mut c_a1 = [0.0f32; NCV];
        let mut c_a2 = [0.0f32; NCV];
        let mut c_a3 = [0.0f32; NCV];
        let mut c_a0 = [0.0f32; NCV];
        for j in 0..nc {
            let n = self.norms[v0 + j];
            c_a1[j] = n.quant + n.resid;
            c_a2[j] = n.resid + cs.c1 * n.quant;
            c_a3[j] = cs.c2 * n.orig;
            c_a0[j] = cs.c12 * bias[j].abs() + cs.abs;
        }
        // Pass 1: upper bounds (stored over the raw sums) and column maxima.
        let cc = ColCoef {
            sb,
            bias,
            a1: c_a1,
            a2: c_a2,
            a3: c_a3,
            a0: c_a0,
        };
        let mut max_u = [f32::NEG_INFINITY; NCV];
        let mut max_l = [f32::NEG_INFINITY; NCV];
        bound_pass(buf, scales, hn, &cc, &mut max_u, &mut max_l, self.simd());
        (max_u, max_l)
    }

    fn simd(&self) -> bool {
        !self.portable && gemm::has_avx2_fma()
    }

    /// Processes vocabulary entries `v0 .. v0 + out.len()`.
    #[allow(clippy::too_many_arguments)]
    fn chunk(
        &self,
        a: &PackedAI16,
        hn: &[RowNorms],
        cs: &Consts,
        h: &[f32],
        m: usize,
        v0: usize,
        out: &mut [f32],
        buf: &mut Vec<f32>,
    ) -> usize {
        let nc = out.len();
        let (sb, bias) = self.approx_sums(a, m, v0, nc, buf);
        let rows = buf.chunks_exact_mut(NCV).take(m).zip(&a.scales);
        if self.precision == Precision::Fast {
            let mut best = [f32::NEG_INFINITY; NCV];
            for (row, &sa) in rows {
                let row: &mut [f32; NCV] = row.try_into().expect("NCV row");
                for j in 0..NCV {
                    let approx = row[j] * (sa * sb[j]) + bias[j];
                    best[j] = if approx > best[j] { approx } else { best[j] };
                }
            }
            for (o, &b) in out.iter_mut().zip(&best) {
                *o = b.max(0.0).ln_1p();
            }
            return 0;
        }
        let (max_u, max_l) = self.screen(
            hn,
            cs,
            &a.scales[..m],
            v0,
            nc,
            &mut buf[..m * NCV],
            sb,
            bias,
        );
        // Pass 2: exact fp32 logits for the surviving candidates only.
        let mut thr = [f32::INFINITY; NCV];
        let mut best = [0.0f64; NCV];
        let mut any = false;
        for j in 0..nc {
            if max_u[j] > 0.0 {
                thr[j] = max_l[j];
                any = true;
            }
        }
        let mut recomputed = 0;
        if any {
            // Candidates first, then their dot products with the next pair of
            // rows prefetched: the fp32 rows of W are not in cache (only the
            // int16 copy was just read), so a plain loop waits on memory.
            let mut cands: Vec<(usize, usize)> = Vec::new();
            for p in 0..m {
                let row: &[f32; NCV] = buf[p * NCV..][..NCV].try_into().expect("NCV row");
                let mut mask = cand_mask(row, &thr, self.simd());
                while mask != 0 {
                    let j = mask.trailing_zeros() as usize;
                    mask &= mask - 1;
                    cands.push((p, j));
                }
            }
            let k = self.k;
            for (i, &(p, j)) in cands.iter().enumerate() {
                if let Some(&(pn, jn)) = cands.get(i + 1) {
                    prefetch(&self.w[(v0 + jn) * k..][..k]);
                    if pn != p {
                        prefetch(&h[pn * k..][..k]);
                    }
                }
                let logit = dot_f64(
                    &h[p * k..][..k],
                    &self.w[(v0 + j) * k..][..k],
                    self.portable,
                ) + bias[j] as f64;
                best[j] = best[j].max(logit);
            }
            recomputed = cands.len();
        }
        for (o, &b) in out.iter_mut().zip(&best) {
            *o = b.ln_1p() as f32;
        }
        recomputed
    }
}

/// Asks the CPU to start loading `x` into cache (a hint; no effect on results).
#[inline]
fn prefetch(x: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in x.chunks(16) {
        // SAFETY: prefetching is a hint that cannot fault; the address is
        // inside a live slice anyway. SSE is part of the x86_64 baseline.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                line.as_ptr() as *const i8
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}

/// One sequence of a batched max-pool, quantised and packed.
struct SeqInput<'a> {
    h: &'a [f32],
    m: usize,
    a: PackedAI16,
    hn: Vec<RowNorms>,
}

/// Per-column factors of one chunk (padded to NCV).
struct ColCoef {
    sb: [f32; NCV],
    bias: [f32; NCV],
    a1: [f32; NCV],
    a2: [f32; NCV],
    a3: [f32; NCV],
    a0: [f32; NCV],
}

/// Turns raw integer sums into upper bounds in place and tracks the column
/// maxima of the upper and lower bounds.
///
/// β is inflated by 2⁻¹⁸ relative for the rounding of its own f32
/// evaluation, and |approx|·2⁻²² covers the rounding of approx ± β.
#[inline(always)]
fn bound_pass_body(
    buf: &mut [f32],
    scales: &[f32],
    hn: &[RowNorms],
    cc: &ColCoef,
    max_u: &mut [f32; NCV],
    max_l: &mut [f32; NCV],
) {
    const INFL: f32 = 1.0 + 1.0 / 262_144.0;
    const REL: f32 = 1.0 / 4_194_304.0;
    for ((row, &sa), r) in buf.chunks_exact_mut(NCV).zip(scales).zip(hn) {
        let row: &mut [f32; NCV] = row.try_into().expect("NCV row");
        for j in 0..NCV {
            let approx = row[j] * (sa * cc.sb[j]) + cc.bias[j];
            let beta = (r.resid * cc.a1[j] + r.quant * cc.a2[j] + r.orig * cc.a3[j] + cc.a0[j])
                * INFL
                + approx.abs() * REL;
            let up = approx + beta;
            let lo = approx - beta;
            row[j] = up;
            max_u[j] = if up > max_u[j] { up } else { max_u[j] };
            max_l[j] = if lo > max_l[j] { lo } else { max_l[j] };
        }
    }
}

/// Same body compiled for AVX2 (LLVM vectorises it 8-wide).
///
/// # Safety
/// CPU must support AVX2 and FMA.
#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
#[target_feature(enable = "avx2,fma")]
unsafe fn bound_pass_avx2(
    buf: &mut [f32],
    scales: &[f32],
    hn: &[RowNorms],
    cc: &ColCoef,
    max_u: &mut [f32; NCV],
    max_l: &mut [f32; NCV],
) {
    bound_pass_body(buf, scales, hn, cc, max_u, max_l)
}

fn bound_pass(
    buf: &mut [f32],
    scales: &[f32],
    hn: &[RowNorms],
    cc: &ColCoef,
    max_u: &mut [f32; NCV],
    max_l: &mut [f32; NCV],
    simd: bool,
) {
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    if simd {
        // SAFETY: `simd` is only true after AVX2/FMA detection.
        unsafe { bound_pass_avx2(buf, scales, hn, cc, max_u, max_l) };
        return;
    }
    let _ = simd;
    bound_pass_body(buf, scales, hn, cc, max_u, max_l)
}

/// Bit j set iff `row[j] >= thr[j] && row[j] > 0`.
fn cand_mask(row: &[f32; NCV], thr: &[f32; NCV], simd: bool) -> u64 {
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    if simd {
        // SAFETY: `simd` is only true after AVX2/FMA detection.
        return unsafe { cand_mask_avx2(row, thr) };
    }
    let _ = simd;
    let mut mask = 0u64;
    for j in 0..NCV {
        mask |= ((row[j] >= thr[j] && row[j] > 0.0) as u64) << j;
    }
    mask
}

/// # Safety
/// CPU must support AVX2.
#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
#[target_feature(enable = "avx2,fma")]
unsafe fn cand_mask_avx2(row: &[f32; NCV], thr: &[f32; NCV]) -> u64 {
    #[cfg(target_arch = "x86")]
    use std::arch::x86::*;
    #[cfg(target_arch = "x86_64")]
    use std::arch::x86_64::*;
    let zero = _mm256_setzero_ps();
    let mut mask = 0u64;
    for i in 0..NCV / 8 {
        // SAFETY: 8·i + 8 ≤ NCV for both fixed-size arrays.
        let r = _mm256_loadu_ps(row.as_ptr().add(8 * i));
        let t = _mm256_loadu_ps(thr.as_ptr().add(8 * i));
        let m = _mm256_and_ps(
            _mm256_cmp_ps::<_CMP_GE_OQ>(r, t),
            _mm256_cmp_ps::<_CMP_GT_OQ>(r, zero),
        );
        mask |= (_mm256_movemask_ps(m) as u32 as u64) << (8 * i);
    }
    mask
}

/// Constants of the error bound for one call.
struct Consts {
    c1: f32,
    c2: f32,
    c12: f32,
    abs: f32,
}

impl Consts {
    fn new(k: usize) -> Self {
        // Rounding of the approximation: nb i32→f32 conversions of block
        // sums and nb−1 f32 additions (each ≤ u·Σ|S_j|), the scale product and
        // multiply, and the bias add: 2nb+2 roundings, +2 for second order.
        let nb = pairs(k).div_ceil(KC_I16 / 2).max(1) as f64;
        let c1 = (2.0 * nb + 4.0) * U;
        // Error of the f64-accumulated recomputation (dot + bias), γ_{k+2} in f64.
        let kk = (k + 2) as f64 * 2f64.powi(-53);
        let c2 = kk / (1.0 - kk);
        let abs = ((k as f64 * (Q_I16 as f64).powi(2) + k as f64 + 4.0) * 2f64.powi(-148)) as f32;
        Consts {
            c1: (c1 * 1.0001) as f32,
            c2: (c2 * 1.0001) as f32,
            c12: ((c1 + c2) * 1.0001) as f32,
            abs: abs.max(f32::MIN_POSITIVE),
        }
    }
}

/// Dot product of f32 vectors accumulated in f64. Each f32 × f32 product
/// is exact in f64, so the result is within (n+1)·2⁻⁵³·Σ|aᵢbᵢ| of the real
/// dot product — far tighter than any fp32 summation order.
pub(crate) fn dot_f64(a: &[f32], b: &[f32], portable: bool) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    if !portable && gemm::has_avx2_fma() {
        // SAFETY: AVX2/FMA presence checked just above.
        return unsafe { dot_f64_avx2(a, b) };
    }
    let _ = portable;
    let mut acc = [0.0f64; 4];
    let mut ca = a.chunks_exact(4);
    let mut cb = b.chunks_exact(4);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..4 {
            acc[i] += x[i] as f64 * y[i] as f64;
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        s += *x as f64 * *y as f64;
    }
    s
}

/// # Safety
/// CPU must support AVX2 and FMA.
#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_f64_avx2(a: &[f32], b: &[f32]) -> f64 {
    #[cfg(target_arch = "x86")]
    use std::arch::x86::*;
    #[cfg(target_arch = "x86_64")]
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_pd(); 4];
    let mut i = 0;
    while i + 16 <= n {
        for (u, accu) in acc.iter_mut().enumerate() {
            // SAFETY: i + 4u + 4 ≤ n, within both slices.
            let x = _mm256_cvtps_pd(_mm_loadu_ps(pa.add(i + 4 * u)));
            let y = _mm256_cvtps_pd(_mm_loadu_ps(pb.add(i + 4 * u)));
            *accu = _mm256_fmadd_pd(x, y, *accu);
        }
        i += 16;
    }
    while i + 4 <= n {
        // SAFETY: i + 4 ≤ n.
        let x = _mm256_cvtps_pd(_mm_loadu_ps(pa.add(i)));
        let y = _mm256_cvtps_pd(_mm_loadu_ps(pb.add(i)));
        acc[0] = _mm256_fmadd_pd(x, y, acc[0]);
        i += 4;
    }
    let s = _mm256_add_pd(_mm256_add_pd(acc[0], acc[1]), _mm256_add_pd(acc[2], acc[3]));
    let mut lanes = [0.0f64; 4];
    _mm256_storeu_pd(lanes.as_mut_ptr(), s);
    let mut total = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
    while i < n {
        total += a[i] as f64 * b[i] as f64;
        i += 1;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct check of the screening invariant on every (p, v): the exact
    /// logit is ≤ its upper bound, and each column's best lower bound is ≤
    /// the exact column maximum. Also with the bound shrunk by 2 the upper
    /// bound must fail somewhere (the bound is not vacuous).
    #[test]
    fn bounds_enclose_exact_logits() {
        let mut seed = 42u64;
        let mut rnd = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let mut tight_seen = false;
        for &(m, vocab, k, hs, outlier) in &[
            (13usize, 100usize, 300usize, 1.0f32, false),
            (7, 64, 769, 30.0, true),
            (30, 130, 768, 1e-3, true),
            (5, 20, 2, 1e6, false),
        ] {
            let mut h: Vec<f32> = (0..m * k).map(|_| rnd() * hs).collect();
            if outlier {
                for row in h.chunks_exact_mut(k) {
                    row[0] *= 40.0;
                }
            }
            let w: Vec<f32> = (0..vocab * k).map(|_| rnd() * 0.1).collect();
            let b: Vec<f32> = (0..vocab).map(|_| rnd() * hs).collect();
            for portable in [false, true] {
                let proj = PackedVocabProjection::with_kernels(
                    &w,
                    vocab,
                    k,
                    &b,
                    Precision::Exact,
                    portable,
                );
                let a = PackedAI16::pack(&h, m, k, k);
                let hn: Vec<RowNorms> = (0..m)
                    .map(|p| row_norms(&h[p * k..][..k], a.scales[p]))
                    .collect();
                let cs = Consts::new(k);
                let mut buf = Vec::new();
                for v0 in (0..vocab).step_by(NCV) {
                    let nc = NCV.min(vocab - v0);
                    let (sb, bias) = proj.approx_sums(&a, m, v0, nc, &mut buf);
                    let raw = buf.clone();
                    let (_, max_l) = proj.screen(
                        &hn,
                        &cs,
                        &a.scales[..m],
                        v0,
                        nc,
                        &mut buf[..m * NCV],
                        sb,
                        bias,
                    );
                    for j in 0..nc {
                        let v = v0 + j;
                        let mut best = f64::NEG_INFINITY;
                        for p in 0..m {
                            let exact: f64 = (0..k)
                                .map(|i| h[p * k + i] as f64 * w[v * k + i] as f64)
                                .sum::<f64>()
                                + b[v] as f64;
                            best = best.max(exact);
                            let up = buf[p * NCV + j] as f64;
                            assert!(
                                exact <= up,
                                "m={m} k={k} p={p} v={v}: exact {exact} > upper {up}"
                            );
                            let approx = raw[p * NCV + j] as f64
                                * (a.scales[p] as f64 * sb[j] as f64)
                                + b[v] as f64;
                            if exact > approx + (up - approx) * 0.5 {
                                tight_seen = true;
                            }
                        }
                        assert!(
                            max_l[j] as f64 <= best,
                            "v={v}: lower {} > max {best}",
                            max_l[j]
                        );
                    }
                }
            }
        }
        assert!(
            tight_seen,
            "bound never within 2x of the actual error: suspiciously loose"
        );
    }
}
