//! Packed GEMM: `C[m × n] = A[m × k] · Bᵀ (+ bias)` where B is given as
//! `n × k` (PyTorch `nn.Linear.weight` layout) and packed once.
//!
//! Layout (BLIS style):
//! * B is packed into panels of [`NR`] = 16 output columns; panel `j` holds,
//!   for every `kk < k`, the 16 values `B[j·16 + c][kk]` contiguously
//!   (one 64-byte line). A k-block of a panel is therefore a contiguous slice.
//! * A is packed into tiles of [`MR`] = 6 rows; tile `t` holds, for every
//!   `kk`, the 6 values `A[t·6 + r][kk]`. Each parallel task packs only its
//!   own rows ([`MC`] ≈ 144), right before using them, so the packed block is
//!   still in L2/L3 and no m × k packed copy is ever allocated.
//! * The micro-kernel keeps a 6 × 16 block of C in 12 ymm accumulators
//!   (2 FMA pipes × 4 cycles latency needs ≥ 8 independent chains).
//! * fp32 has no k-blocking: a tile is computed over the whole k in one call
//!   (the B micro-panel streams from L2) and C is written exactly once, which
//!   also lets an epilogue (GELU) run on the finished tile while it is in L1.
//!   Measured single-thread in-context rate 85–93 GFLOP/s against 73–83 with
//!   256-deep k-blocks (which re-read and re-write C per block).
//!
//! The int16 path uses the same shapes but operates on *pairs* of k values
//! (`vpmaddwd` multiplies i16 pairs and sums each pair exactly into i32).

use crate::buf::AlignedBuf;
use rayon::prelude::*;
use std::ops::Range;

/// Rows of C per micro-tile.
pub(crate) const MR: usize = 6;
/// Columns of C per micro-tile (= packed panel width).
pub(crate) const NR: usize = 16;
/// k-block for fp32 (B micro-panel of 16 KiB stays in L1).
/// k-block for int16, in k values (an even number). Also the overflow horizon
/// of the i32 accumulators: they are flushed to f32 after every block.
pub(crate) const KC_I16: usize = 128;
/// Largest quantised magnitude such that a full int16 k-block cannot overflow
/// i32: `KC_I16 · Q² < 2³¹`.
pub(crate) const Q_I16: i32 = 4095;
const _: () = assert!((KC_I16 as i64) * (Q_I16 as i64) * (Q_I16 as i64) < (1i64 << 31));
const _: () = assert!(KC_I16.is_multiple_of(2));
/// Preferred rows of A per parallel task.
const MC: usize = 144;
/// Below this many multiply-adds a call runs on the calling thread only.
const PAR_MIN_MACS: usize = 1 << 22;

// ---------------------------------------------------------------------------
// Packed operands
// ---------------------------------------------------------------------------

/// B (n × k) packed in fp32 panels of 16 columns.
pub(crate) struct PackedBF32 {
    pub(crate) n: usize,
    pub(crate) k: usize,
    data: AlignedBuf<f32>,
}

impl PackedBF32 {
    /// Packs B where element (j, kk) is `src[j * sn + kk * sk]`.
    pub(crate) fn pack(src: &[f32], n: usize, k: usize, sn: usize, sk: usize) -> Self {
        let panels = n.div_ceil(NR);
        let mut data = AlignedBuf::zeroed(panels * k * NR);
        let pk = k * NR;
        let dst = data.as_mut_slice();
        let fill = |(j, panel): (usize, &mut [f32])| {
            let cols = NR.min(n - j * NR);
            if sn == 1 {
                // Columns contiguous in the source (e.g. V in attention):
                // copy row by row so reads and writes both stream.
                for (kk, dst) in panel.chunks_exact_mut(NR).enumerate() {
                    let s = &src[j * NR + kk * sk..][..cols];
                    dst[..cols].copy_from_slice(s);
                }
            } else {
                for c in 0..cols {
                    let base = (j * NR + c) * sn;
                    for kk in 0..k {
                        panel[kk * NR + c] = src[base + kk * sk];
                    }
                }
            }
        };
        if n * k >= 1 << 20 {
            dst.par_chunks_mut(pk.max(1)).enumerate().for_each(fill);
        } else {
            dst.chunks_mut(pk.max(1)).enumerate().for_each(fill);
        }
        Self { n, k, data }
    }

    fn panel_ptr(&self, j: usize, k0: usize) -> *const f32 {
        debug_assert!(j * self.k * NR + k0 * NR <= self.data.as_slice().len());
        self.data.as_slice()[j * self.k * NR + k0 * NR..].as_ptr()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.data.len_bytes()
    }
}

/// A (m × k) packed into fp32 tiles of 6 rows.
pub(crate) struct PackedAF32 {
    k: usize,
    data: AlignedBuf<f32>,
}

impl PackedAF32 {
    /// Packs A where row r starts at `src[r * lda]`.
    pub(crate) fn pack(src: &[f32], m: usize, k: usize, lda: usize) -> Self {
        Self::pack_with(src, m, k, lda, m * k >= 1 << 18)
    }

    /// [`PackedAF32::pack`] on the calling thread only (`parallel == false`,
    /// for packing inside a GEMM task) or on the rayon pool.
    pub(crate) fn pack_with(src: &[f32], m: usize, k: usize, lda: usize, parallel: bool) -> Self {
        let tiles = m.div_ceil(MR);
        let mut data = AlignedBuf::zeroed(tiles * k * MR);
        let fill = |(t, tile): (usize, &mut [f32])| {
            let rows = MR.min(m - t * MR);
            if rows == MR {
                // Six read streams, one sequential write stream.
                let r: [&[f32]; MR] = std::array::from_fn(|i| &src[(t * MR + i) * lda..][..k]);
                for (kk, dst) in tile.chunks_exact_mut(MR).enumerate() {
                    for i in 0..MR {
                        dst[i] = r[i][kk];
                    }
                }
            } else {
                for r in 0..rows {
                    let row = &src[(t * MR + r) * lda..][..k];
                    for (kk, &v) in row.iter().enumerate() {
                        tile[kk * MR + r] = v;
                    }
                }
            }
        };
        let chunk = (k * MR).max(1);
        if parallel {
            data.as_mut_slice()
                .par_chunks_mut(chunk)
                .enumerate()
                .for_each(fill);
        } else {
            data.as_mut_slice()
                .chunks_mut(chunk)
                .enumerate()
                .for_each(fill);
        }
        Self { k, data }
    }

    fn tile_ptr(&self, t: usize, k0: usize) -> *const f32 {
        self.data.as_slice()[t * self.k * MR + k0 * MR..].as_ptr()
    }
}

/// Number of i16 pairs covering k.
pub(crate) fn pairs(k: usize) -> usize {
    k.div_ceil(2)
}

/// Symmetric per-row quantisation of `row` to integers in [-Q, Q]; returns
/// the scale `s` (row ≈ s · q). Rows of zeros get scale 0.
pub(crate) fn quant_scale(row: &[f32]) -> f32 {
    let amax = row.iter().fold(0.0f32, |a, &v| a.max(v.abs()));
    if amax > 0.0 && amax.is_finite() {
        amax / Q_I16 as f32
    } else {
        0.0
    }
}

/// Reciprocal of a quantisation scale; 0 (all values quantise to 0) when the
/// scale is 0 or so small that the reciprocal overflows, which keeps every
/// `v * inv` finite.
#[inline]
pub(crate) fn inv_scale(s: f32) -> f32 {
    let inv = 1.0 / s;
    if s > 0.0 && inv.is_finite() {
        inv
    } else {
        0.0
    }
}

/// Quantises one value with reciprocal scale `inv` (from [`inv_scale`]);
/// clamped so |q| ≤ Q even when rounding of the scale pushes a value
/// slightly past Q.
#[inline]
pub(crate) fn quant(v: f32, inv: f32) -> i16 {
    // Round-to-nearest-even by adding 1.5·2²³: for |q| < 2²² the low mantissa
    // bits of q + MAGIC are q + 2²², whose low 16 bits are q in two's
    // complement — no (saturating, branchy) float→int conversion needed.
    const MAGIC: f32 = 12_582_912.0;
    let q = (v * inv).clamp(-(Q_I16 as f32), Q_I16 as f32);
    (q + MAGIC).to_bits() as u16 as i16
}

/// B (n × k) quantised to int16 per row (per output column) and packed as
/// panels of 16 columns × k-pairs: for pair t, 16 × (B[c][2t], B[c][2t+1]).
pub(crate) struct PackedBI16 {
    pub(crate) n: usize,
    pub(crate) k: usize,
    data: AlignedBuf<i16>,
    /// Per-column scales, padded with zeros to a multiple of NR.
    pub(crate) scales: Vec<f32>,
}

impl PackedBI16 {
    /// Quantises and packs row-major `src` (n × k).
    pub(crate) fn pack(src: &[f32], n: usize, k: usize) -> Self {
        let panels = n.div_ceil(NR);
        let kp = pairs(k);
        let mut data = AlignedBuf::zeroed(panels * kp * 2 * NR);
        let mut scales = vec![0.0f32; panels * NR];
        let fill = |(j, (panel, sc)): (usize, (&mut [i16], &mut [f32]))| {
            let cols = NR.min(n - j * NR);
            let mut q = vec![0i16; k];
            for c in 0..cols {
                let v = j * NR + c;
                let row = &src[v * k..][..k];
                let s = quant_scale(row);
                let inv = inv_scale(s);
                for (qq, &x) in q.iter_mut().zip(row) {
                    *qq = quant(x, inv);
                }
                sc[c] = s;
                for (kk, &qq) in q.iter().enumerate() {
                    panel[(kk / 2) * 2 * NR + c * 2 + (kk & 1)] = qq;
                }
            }
        };
        data.as_mut_slice()
            .par_chunks_mut((kp * 2 * NR).max(1))
            .zip(scales.par_chunks_mut(NR))
            .enumerate()
            .for_each(fill);
        Self { n, k, data, scales }
    }

    fn panel_ptr(&self, j: usize, p0: usize) -> *const i16 {
        let kp = pairs(self.k);
        self.data.as_slice()[(j * kp + p0) * 2 * NR..].as_ptr()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.data.len_bytes() + self.scales.len() * 4
    }
}

/// A (m × k) quantised per row to int16 and packed into tiles of 6 rows ×
/// k-pairs, each pair stored as one i32 (low half = even k).
pub(crate) struct PackedAI16 {
    k: usize,
    data: AlignedBuf<i32>,
    /// Per-row scales (length m).
    pub(crate) scales: Vec<f32>,
}

impl PackedAI16 {
    /// Quantises and packs A where row r starts at `src[r * lda]`.
    pub(crate) fn pack(src: &[f32], m: usize, k: usize, lda: usize) -> Self {
        Self::pack_with(src, m, k, lda, m * k >= 1 << 16)
    }

    /// [`PackedAI16::pack`] on the calling thread only (`parallel == false`)
    /// or on the rayon pool. Quantisation is per row, so the result for a
    /// row does not depend on which other rows are packed with it.
    pub(crate) fn pack_with(src: &[f32], m: usize, k: usize, lda: usize, parallel: bool) -> Self {
        let tiles = m.div_ceil(MR);
        let kp = pairs(k);
        let mut data = AlignedBuf::zeroed(tiles * kp * MR);
        let mut scales = vec![0.0f32; tiles * MR];
        let fill = |(t, (tile, sc)): (usize, (&mut [i32], &mut [f32]))| {
            let rows = MR.min(m - t * MR);
            let mut inv = [0.0f32; MR];
            let mut rr: [&[f32]; MR] = [&[]; MR];
            for r in 0..rows {
                let row = &src[(t * MR + r) * lda..][..k];
                let s = quant_scale(row);
                sc[r] = s;
                inv[r] = inv_scale(s);
                rr[r] = row;
            }
            let pack2 = |lo: i16, hi: i16| ((lo as u16 as u32) | ((hi as u16 as u32) << 16)) as i32;
            // One sequential write stream; the 6 source rows are read in step.
            for (p, dst) in tile.chunks_exact_mut(MR).enumerate().take(k / 2) {
                for r in 0..rows {
                    let (x0, x1) = (rr[r][2 * p], rr[r][2 * p + 1]);
                    dst[r] = pack2(quant(x0, inv[r]), quant(x1, inv[r]));
                }
            }
            if k % 2 == 1 {
                let p = k / 2;
                for r in 0..rows {
                    tile[p * MR + r] = pack2(quant(rr[r][k - 1], inv[r]), 0);
                }
            }
        };
        let chunk = (kp * MR).max(1);
        if parallel {
            data.as_mut_slice()
                .par_chunks_mut(chunk)
                .zip(scales.par_chunks_mut(MR))
                .enumerate()
                .for_each(fill);
        } else {
            data.as_mut_slice()
                .chunks_mut(chunk)
                .zip(scales.chunks_mut(MR))
                .enumerate()
                .for_each(fill);
        }
        scales.truncate(m);
        Self { k, data, scales }
    }

    fn tile_ptr(&self, t: usize, p0: usize) -> *const i32 {
        let kp = pairs(self.k);
        self.data.as_slice()[(t * kp + p0) * MR..].as_ptr()
    }
}

// ---------------------------------------------------------------------------
// Micro-kernels
// ---------------------------------------------------------------------------

/// fp32 micro-kernel: C[rows × cols] (+)= A_tile · B_panel over `kc` steps.
/// `bias` null means accumulate into C; non-null means C = bias + A·B.
///
/// # Safety
/// `a` must be valid for `kc * MR` reads, `b` for `kc * NR` (64-byte aligned),
/// `bias` (if non-null) for NR reads, and `c` for rows `< rows` with stride
/// `ldc` and columns `< cols`, with `rows ≤ MR`, `cols ≤ NR`.
type KernF32 = unsafe fn(usize, *const f32, *const f32, *mut f32, usize, usize, usize, *const f32);

/// int16 micro-kernel over `kp` k-pairs; C (+)= float(A_tile · B_panel),
/// `first` selects overwrite instead of accumulate.
///
/// # Safety
/// `a` valid for `kp * MR` i32 reads, `b` for `kp * 2 * NR` i16 reads
/// (64-byte aligned), `c` as for [`KernF32`]. `kp * 2 ≤ KC_I16` and all
/// quantised values within ±Q_I16 so the i32 sums cannot overflow.
type KernI16 = unsafe fn(usize, *const i32, *const i16, *mut f32, usize, usize, usize, bool);

/// Writes a computed 6×16 tile into C with edge handling.
///
/// # Safety
/// `c` valid for `rows` rows of `cols` columns at stride `ldc`; `bias`
/// null or valid for NR reads.
#[inline(always)]
unsafe fn store_tile(
    tmp: &[[f32; NR]; MR],
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    bias: *const f32,
    overwrite: bool,
) {
    for (r, row) in tmp.iter().enumerate().take(rows) {
        let cr = c.add(r * ldc);
        for (j, &v) in row.iter().enumerate().take(cols) {
            let base = if !bias.is_null() {
                *bias.add(j)
            } else if overwrite {
                0.0
            } else {
                *cr.add(j)
            };
            *cr.add(j) = base + v;
        }
    }
}

/// Portable fp32 micro-kernel (also the reference semantics of the SIMD one).
///
/// # Safety
/// See [`KernF32`].
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
unsafe fn kern_f32_generic(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    bias: *const f32,
) {
    let mut acc = [[0.0f32; NR]; MR];
    for p in 0..kc {
        let bp = std::slice::from_raw_parts(b.add(p * NR), NR);
        let ap = std::slice::from_raw_parts(a.add(p * MR), MR);
        for r in 0..MR {
            for j in 0..NR {
                // Not `mul_add`: that is a libm call on CPUs without FMA.
                acc[r][j] += ap[r] * bp[j];
            }
        }
    }
    store_tile(&acc, c, ldc, rows, cols, bias, false);
}

/// Portable int16 micro-kernel.
///
/// # Safety
/// See [`KernI16`].
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
unsafe fn kern_i16_generic(
    kp: usize,
    a: *const i32,
    b: *const i16,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    first: bool,
) {
    let mut acc = [[0i32; NR]; MR];
    for p in 0..kp {
        let bp = std::slice::from_raw_parts(b.add(p * 2 * NR), 2 * NR);
        for r in 0..MR {
            let av = *a.add(p * MR + r);
            let a0 = (av as u32 & 0xffff) as u16 as i16 as i32;
            let a1 = ((av as u32) >> 16) as u16 as i16 as i32;
            for j in 0..NR {
                acc[r][j] += a0 * bp[2 * j] as i32 + a1 * bp[2 * j + 1] as i32;
            }
        }
    }
    let mut tmp = [[0.0f32; NR]; MR];
    for r in 0..MR {
        for j in 0..NR {
            tmp[r][j] = acc[r][j] as f32;
        }
    }
    store_tile(&tmp, c, ldc, rows, cols, std::ptr::null(), first);
}

#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
mod x86 {
    use super::{store_tile, MR, NR};
    #[cfg(target_arch = "x86")]
    use std::arch::x86::*;
    #[cfg(target_arch = "x86_64")]
    use std::arch::x86_64::*;

    /// AVX2+FMA fp32 6×16 micro-kernel.
    ///
    /// # Safety
    /// CPU must support AVX2 and FMA; pointer contract of `KernF32`.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn kern_f32_avx2(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        rows: usize,
        cols: usize,
        bias: *const f32,
    ) {
        // C is written once per tile (no k-blocking): start loading its
        // lines now so the final update does not wait on L2/L3.
        for r in 0..rows {
            _mm_prefetch::<_MM_HINT_T0>(c.add(r * ldc) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(c.add(r * ldc + cols - 1) as *const i8);
        }
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        let mut ap = a;
        let mut bp = b;
        // Unrolled by 4 k-steps (fewer loop-carried pointer updates).
        let mut left = kc;
        while left >= 4 {
            for u in 0..4 {
                // SAFETY: bp points into a 64-byte aligned panel line of 16 floats.
                let b0 = _mm256_load_ps(bp.add(u * NR));
                let b1 = _mm256_load_ps(bp.add(u * NR + 8));
                for (r, accr) in acc.iter_mut().enumerate() {
                    let av = _mm256_broadcast_ss(&*ap.add(u * MR + r));
                    accr[0] = _mm256_fmadd_ps(av, b0, accr[0]);
                    accr[1] = _mm256_fmadd_ps(av, b1, accr[1]);
                }
            }
            ap = ap.add(4 * MR);
            bp = bp.add(4 * NR);
            left -= 4;
        }
        for _ in 0..left {
            let b0 = _mm256_load_ps(bp);
            let b1 = _mm256_load_ps(bp.add(8));
            for (r, accr) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*ap.add(r));
                accr[0] = _mm256_fmadd_ps(av, b0, accr[0]);
                accr[1] = _mm256_fmadd_ps(av, b1, accr[1]);
            }
            ap = ap.add(MR);
            bp = bp.add(NR);
        }
        if rows == MR && cols == NR {
            for (r, accr) in acc.iter().enumerate() {
                let cr = c.add(r * ldc);
                let (base0, base1) = if bias.is_null() {
                    (_mm256_loadu_ps(cr), _mm256_loadu_ps(cr.add(8)))
                } else {
                    (_mm256_loadu_ps(bias), _mm256_loadu_ps(bias.add(8)))
                };
                _mm256_storeu_ps(cr, _mm256_add_ps(base0, accr[0]));
                _mm256_storeu_ps(cr.add(8), _mm256_add_ps(base1, accr[1]));
            }
        } else {
            let mut tmp = [[0.0f32; NR]; MR];
            for (t, accr) in tmp.iter_mut().zip(acc.iter()) {
                _mm256_storeu_ps(t.as_mut_ptr(), accr[0]);
                _mm256_storeu_ps(t.as_mut_ptr().add(8), accr[1]);
            }
            store_tile(&tmp, c, ldc, rows, cols, bias, false);
        }
    }

    /// AVX2 int16 6×16 micro-kernel (`vpmaddwd` + `vpaddd`).
    ///
    /// # Safety
    /// CPU must support AVX2; pointer/overflow contract of `KernI16`.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn kern_i16_avx2(
        kp: usize,
        a: *const i32,
        b: *const i16,
        c: *mut f32,
        ldc: usize,
        rows: usize,
        cols: usize,
        first: bool,
    ) {
        let mut acc = [[_mm256_setzero_si256(); 2]; MR];
        let mut ap = a;
        let mut bp = b;
        for _ in 0..kp {
            // SAFETY: bp points at a 64-byte aligned line of 32 i16.
            let b0 = _mm256_load_si256(bp as *const __m256i);
            let b1 = _mm256_load_si256(bp.add(16) as *const __m256i);
            for (r, accr) in acc.iter_mut().enumerate() {
                // vbroadcastss is a pure load on Zen (vpbroadcastd from
                // memory also occupies a vector ALU pipe); same bits.
                let av = _mm256_castps_si256(_mm256_broadcast_ss(&*(ap.add(r) as *const f32)));
                accr[0] = _mm256_add_epi32(accr[0], _mm256_madd_epi16(av, b0));
                accr[1] = _mm256_add_epi32(accr[1], _mm256_madd_epi16(av, b1));
            }
            ap = ap.add(MR);
            bp = bp.add(2 * NR);
        }
        if rows == MR && cols == NR {
            for (r, accr) in acc.iter().enumerate() {
                let cr = c.add(r * ldc);
                let v0 = _mm256_cvtepi32_ps(accr[0]);
                let v1 = _mm256_cvtepi32_ps(accr[1]);
                if first {
                    _mm256_storeu_ps(cr, v0);
                    _mm256_storeu_ps(cr.add(8), v1);
                } else {
                    _mm256_storeu_ps(cr, _mm256_add_ps(_mm256_loadu_ps(cr), v0));
                    _mm256_storeu_ps(cr.add(8), _mm256_add_ps(_mm256_loadu_ps(cr.add(8)), v1));
                }
            }
        } else {
            let mut tmp = [[0.0f32; NR]; MR];
            for (t, accr) in tmp.iter_mut().zip(acc.iter()) {
                _mm256_storeu_ps(t.as_mut_ptr(), _mm256_cvtepi32_ps(accr[0]));
                _mm256_storeu_ps(t.as_mut_ptr().add(8), _mm256_cvtepi32_ps(accr[1]));
            }
            store_tile(&tmp, c, ldc, rows, cols, std::ptr::null(), first);
        }
    }
}

/// Whether the AVX2+FMA kernels can run on this CPU.
#[inline]
pub(crate) fn has_avx2_fma() -> bool {
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "x86")))]
    {
        false
    }
}

fn kern_f32(force_portable: bool) -> KernF32 {
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    if !force_portable && has_avx2_fma() {
        return x86::kern_f32_avx2;
    }
    let _ = force_portable;
    kern_f32_generic
}

fn kern_i16(force_portable: bool) -> KernI16 {
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    if !force_portable && has_avx2_fma() {
        return x86::kern_i16_avx2;
    }
    let _ = force_portable;
    kern_i16_generic
}

// ---------------------------------------------------------------------------
// Drivers
// ---------------------------------------------------------------------------

/// Raw pointer to C shared by parallel tasks that write disjoint tiles.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut f32);
// SAFETY: only used to hand disjoint regions of one buffer to rayon tasks.
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer (a method, so closures capture the whole Send wrapper).
    #[inline]
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// Splits `len` into `blocks` nearly equal parts rounded up to `align`.
fn block_size(len: usize, blocks: usize, align: usize) -> usize {
    len.div_ceil(blocks.max(1)).div_ceil(align) * align
}

/// Runs `f(rows, cols)` over a grid of C blocks, in parallel on the rayon
/// pool when the call is big enough. Block starts are multiples of MR / NR.
pub(crate) fn par_grid(
    m: usize,
    n: usize,
    k: usize,
    f: impl Fn(Range<usize>, Range<usize>) + Sync,
) {
    let macs = m.saturating_mul(n).saturating_mul(k);
    let threads = rayon::current_num_threads();
    if macs < PAR_MIN_MACS || threads == 1 {
        f(0..m, 0..n);
        return;
    }
    let mb = m.div_ceil(MC);
    let panels = n.div_ceil(NR);
    // Each task packs its own rows of A, so row blocks spanning all columns
    // are preferred (A is packed once, while it is in cache); columns are
    // split only when there are too few row blocks for load balance
    // (≥ 4 tasks per thread), never thinner than one panel.
    let nb = if mb >= 4 * threads {
        1
    } else {
        (4 * threads).div_ceil(mb).min(panels)
    };
    let mc = block_size(m, mb, MR);
    let nc = block_size(n, nb, NR);
    let mb = m.div_ceil(mc);
    let nb = n.div_ceil(nc);
    (0..mb * nb).into_par_iter().for_each(|t| {
        let (ib, jb) = (t / nb, t % nb);
        let rows = ib * mc..((ib + 1) * mc).min(m);
        let cols = jb * nc..((jb + 1) * nc).min(n);
        f(rows, cols);
    });
}

/// Applied in place to finished parts of C while they are in L1/L2.
pub(crate) type Epilogue = Option<fn(&mut [f32])>;

/// Serial BLIS loop over one C block for fp32. There is no k-blocking: each
/// 6×16 tile of C is computed over the whole k in one micro-kernel call
/// (the B micro-panel streams from L2, which measured faster than 256-deep
/// k-blocks that re-read and re-write C), then `epilogue` runs on it.
///
/// # Safety
/// `c` points at C(rows.start, cols.start) of a buffer with row stride `ldc`
/// valid for the whole block; no other thread touches the block. `bias` is
/// valid for `b.n` rounded up to NR.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn block_f32(
    kern: KernF32,
    a: &PackedAF32,
    b: &PackedBF32,
    bias: &[f32],
    c: *mut f32,
    ldc: usize,
    rows: Range<usize>,
    cols: Range<usize>,
    epilogue: Epilogue,
) {
    debug_assert_eq!(rows.start % MR, 0);
    debug_assert_eq!(cols.start % NR, 0);
    debug_assert!(bias.len() >= b.n.div_ceil(NR) * NR);
    for j in cols.start / NR..cols.end.div_ceil(NR) {
        let ncols = NR.min(cols.end - j * NR);
        let bp = b.panel_ptr(j, 0);
        let biasp = bias[j * NR..].as_ptr();
        for t in rows.start / MR..rows.end.div_ceil(MR) {
            let nrows = MR.min(rows.end - t * MR);
            let cp = c.add((t * MR - rows.start) * ldc + (j * NR - cols.start));
            kern(a.k, a.tile_ptr(t, 0), bp, cp, ldc, nrows, ncols, biasp);
            if let Some(f) = epilogue {
                for r in 0..nrows {
                    f(std::slice::from_raw_parts_mut(cp.add(r * ldc), ncols));
                }
            }
        }
    }
}

/// Serial BLIS loop over one C block for int16; leaves the *unscaled*
/// integer dot products (as f32) in C.
///
/// # Safety
/// As [`block_f32`].
pub(crate) unsafe fn block_i16(
    kern: KernI16,
    a: &PackedAI16,
    b: &PackedBI16,
    c: *mut f32,
    ldc: usize,
    rows: Range<usize>,
    cols: Range<usize>,
) {
    let kp = pairs(a.k);
    let kcp = KC_I16 / 2;
    // All k-blocks of a tile back to back, so the C tile the i32
    // accumulators are flushed into stays in L1.
    for j in cols.start / NR..cols.end.div_ceil(NR) {
        let ncols = NR.min(cols.end - j * NR);
        for t in rows.start / MR..rows.end.div_ceil(MR) {
            let nrows = MR.min(rows.end - t * MR);
            let cp = c.add((t * MR - rows.start) * ldc + (j * NR - cols.start));
            let mut p0 = 0;
            while p0 < kp {
                let kc = kcp.min(kp - p0);
                kern(
                    kc,
                    a.tile_ptr(t, p0),
                    b.panel_ptr(j, p0),
                    cp,
                    ldc,
                    nrows,
                    ncols,
                    p0 == 0,
                );
                p0 += kc;
            }
        }
    }
}

/// Selected kernels (SIMD when available unless `portable`).
#[derive(Clone, Copy)]
pub(crate) struct Kernels {
    pub(crate) f32k: KernF32,
    pub(crate) i16k: KernI16,
}

impl Kernels {
    pub(crate) fn select(portable: bool) -> Self {
        Self {
            f32k: kern_f32(portable),
            i16k: kern_i16(portable),
        }
    }
}

/// C[m × n] (row stride ldc) = A · Bᵀ + bias, fp32, where row r of A is
/// `x[r·ldx .. r·ldx + k]`. Each task packs the rows of A it needs.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_f32(
    kern: Kernels,
    x: &[f32],
    m: usize,
    ldx: usize,
    b: &PackedBF32,
    bias: &[f32],
    c: &mut [f32],
    ldc: usize,
    epilogue: Epilogue,
) {
    let (n, k) = (b.n, b.k);
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() >= (m - 1) * ldc + n);
    if k == 0 {
        for r in 0..m {
            let row = &mut c[r * ldc..r * ldc + n];
            row.copy_from_slice(&bias[..n]);
            if let Some(f) = epilogue {
                f(row);
            }
        }
        return;
    }
    assert!(ldx >= k && x.len() >= (m - 1) * ldx + k);
    let cp = SendPtr(c.as_mut_ptr());
    par_grid(m, n, k, |rows, cols| {
        let a = PackedAF32::pack_with(&x[rows.start * ldx..], rows.len(), k, ldx, false);
        // SAFETY: par_grid hands out disjoint blocks inside the m × n region
        // of C checked above; `a` covers the block's rows, b all panels.
        unsafe {
            block_f32(
                kern.f32k,
                &a,
                b,
                bias,
                cp.get().add(rows.start * ldc + cols.start),
                ldc,
                0..rows.len(),
                cols,
                epilogue,
            )
        }
    });
}

/// C[m × n] (row stride ldc) = (sa ⊗ sb) ∘ (Ã · B̃ᵀ) + bias, int16, where
/// row r of A is `x[r·ldx .. r·ldx + k]` (quantised per row inside each task).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_i16(
    kern: Kernels,
    x: &[f32],
    m: usize,
    ldx: usize,
    b: &PackedBI16,
    bias: &[f32],
    c: &mut [f32],
    ldc: usize,
    epilogue: Epilogue,
) {
    let (n, k) = (b.n, b.k);
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() >= (m - 1) * ldc + n);
    if k == 0 {
        for r in 0..m {
            let row = &mut c[r * ldc..r * ldc + n];
            row.copy_from_slice(&bias[..n]);
            if let Some(f) = epilogue {
                f(row);
            }
        }
        return;
    }
    assert!(ldx >= k && x.len() >= (m - 1) * ldx + k);
    let cp = SendPtr(c.as_mut_ptr());
    par_grid(m, n, k, |rows, cols| {
        let a = PackedAI16::pack_with(&x[rows.start * ldx..], rows.len(), k, ldx, false);
        // SAFETY: disjoint blocks of the checked region of C, see gemm_f32.
        unsafe {
            let base = cp.get().add(rows.start * ldc + cols.start);
            block_i16(kern.i16k, &a, b, base, ldc, 0..rows.len(), cols.clone());
            for (i, r) in rows.clone().enumerate() {
                let sa = a.scales[i];
                let crow =
                    std::slice::from_raw_parts_mut(cp.get().add(r * ldc + cols.start), cols.len());
                let sb = &b.scales[cols.clone()];
                let bi = &bias[cols.clone()];
                for ((cv, &s), &bv) in crow.iter_mut().zip(sb).zip(bi) {
                    *cv = *cv * (sa * s) + bv;
                }
                if let Some(f) = epilogue {
                    f(crow);
                }
            }
        }
    });
}

#[cfg(test)]
mod kernel_speed {
    use super::*;

    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clk: i32, ts: *mut Timespec) -> i32;
    }
    /// Thread CPU seconds (excludes time preempted by other processes).
    fn cpu() -> f64 {
        let mut t = Timespec { sec: 0, nsec: 0 };
        // SAFETY: valid out-pointer; CLOCK_THREAD_CPUTIME_ID = 3 on Linux.
        unsafe { clock_gettime(3, &mut t) };
        t.sec as f64 + t.nsec as f64 * 1e-9
    }

    /// Manual probe of the single-thread in-context fp32/int16 GEMM rate on the
    /// FFN shape (run with --ignored --nocapture).
    #[test]
    #[ignore]
    fn probe_block() {
        let kern = Kernels::select(false);
        for &(m, n, k) in &[
            (576usize, 3072usize, 768usize),
            (576, 768, 3072),
            (576, 2304, 768),
        ] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5)
                .collect();
            let b: Vec<f32> = (0..n * k)
                .map(|i| ((i * 104729) % 997) as f32 * 1e-3 - 0.5)
                .collect();
            let bias = vec![0.0f32; n.div_ceil(NR) * NR];
            let pb = PackedBF32::pack(&b, n, k, k, 1);
            let pbi = PackedBI16::pack(&b, n, k);
            let mut c = vec![0.0f32; m * n];
            for _ in 0..5 {
                let t = cpu();
                let pa = PackedAF32::pack(&a, m, k, k);
                let tp = cpu() - t;
                let mc = MC;
                let nc = n;
                for i0 in (0..m).step_by(mc) {
                    for j0 in (0..n).step_by(nc) {
                        let rows = i0..(i0 + mc).min(m);
                        let cols = j0..(j0 + nc).min(n);
                        // SAFETY: disjoint in-bounds blocks of c.
                        unsafe {
                            block_f32(
                                kern.f32k,
                                &pa,
                                &pb,
                                &bias,
                                c.as_mut_ptr().add(i0 * n + j0),
                                n,
                                rows,
                                cols,
                                None,
                            )
                        };
                    }
                }
                let tf = cpu() - t;
                let t = cpu();
                let pai = PackedAI16::pack(&a, m, k, k);
                for i0 in (0..m).step_by(mc) {
                    for j0 in (0..n).step_by(nc) {
                        let rows = i0..(i0 + mc).min(m);
                        let cols = j0..(j0 + nc).min(n);
                        // SAFETY: disjoint in-bounds blocks of c.
                        unsafe {
                            block_i16(
                                kern.i16k,
                                &pai,
                                &pbi,
                                c.as_mut_ptr().add(i0 * n + j0),
                                n,
                                rows,
                                cols,
                            )
                        };
                    }
                }
                let ti = cpu() - t;
                let flop = 2.0 * (m * n * k) as f64;
                println!(
                    "{m}x{n}x{k}: f32 {:.1} GFLOP/s (pack {:.1}%)  i16 {:.1} GOP/s",
                    flop / tf / 1e9,
                    100.0 * tp / tf,
                    flop / ti / 1e9
                );
            }
        }
    }

    /// Manual probe of micro-kernel throughput (run with --ignored --nocapture).
    #[test]
    #[ignore]
    fn probe() {
        let k = Kernels::select(false);
        let kc = 256;
        let a = AlignedBuf::<f32>::zeroed(kc * MR);
        let b = AlignedBuf::<f32>::zeroed(kc * NR);
        let ai = AlignedBuf::<i32>::zeroed(kc / 2 * MR);
        let bi = AlignedBuf::<i16>::zeroed(kc * NR);
        let mut c = vec![0.0f32; MR * NR];
        let bias = [0.0f32; NR];
        let iters = 200_000;
        for _ in 0..3 {
            let t = cpu();
            for _ in 0..iters {
                // SAFETY: buffers sized for a full kc-deep 6×16 tile, aligned.
                unsafe {
                    (k.f32k)(
                        kc,
                        a.as_slice().as_ptr(),
                        b.as_slice().as_ptr(),
                        c.as_mut_ptr(),
                        NR,
                        MR,
                        NR,
                        bias.as_ptr(),
                    )
                };
            }
            let tf = cpu() - t;
            let t = cpu();
            for _ in 0..iters {
                // SAFETY: as above; zero operands cannot overflow.
                unsafe {
                    (k.i16k)(
                        kc / 2,
                        ai.as_slice().as_ptr(),
                        bi.as_slice().as_ptr(),
                        c.as_mut_ptr(),
                        NR,
                        MR,
                        NR,
                        true,
                    )
                };
            }
            let ti = cpu() - t;
            let macs = (iters * kc * MR * NR) as f64;
            println!(
                "f32 {:.1} GMAC/s  i16 {:.1} GMAC/s",
                macs / tf / 1e9,
                macs / ti / 1e9
            );
        }
    }
}

#[cfg(test)]
mod quant_tests {
    use super::*;

    #[test]
    fn quant_matches_round_ties_even_and_clamps() {
        let q = Q_I16 as f32;
        let mut xs: Vec<f32> = (-20000..=20000).map(|i| i as f32 * 0.25).collect();
        xs.extend([
            0.5,
            1.5,
            2.5,
            -0.5,
            -1.5,
            q - 0.5,
            q + 0.49,
            q + 7.0,
            -q - 3.0,
            1e30,
            -1e30,
            -0.0,
        ]);
        for &x in &xs {
            let want = x.clamp(-q, q).round_ties_even() as i16;
            assert_eq!(quant(x, 1.0), want, "x = {x}");
        }
        assert_eq!(inv_scale(0.0), 0.0);
        assert_eq!(inv_scale(1e-45), 0.0);
        assert_eq!(inv_scale(0.5), 2.0);
    }
}
