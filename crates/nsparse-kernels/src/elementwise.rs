//! Row-wise and element-wise kernels: residual + LayerNorm, exact GELU,
//! softmax, with vectorised `exp`/`erfc`.
//!
//! The special functions exist twice with the same formulas and
//! coefficients: portable code over the tiny [`Lanes`] abstraction (used
//! with scalar f32) and AVX2 intrinsics in `mod avx`.

#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
use crate::gemm::has_avx2_fma;
use rayon::prelude::*;

/// Operations needed by `exp` / `erfc` on a vector of f32 lanes.
trait Lanes: Copy {
    fn splat(v: f32) -> Self;
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn div(self, o: Self) -> Self;
    /// self * a + b
    fn fma(self, a: Self, b: Self) -> Self;
    fn abs(self) -> Self;
    fn max(self, o: Self) -> Self;
    fn round(self) -> Self;
    /// self * 2^n for integral n in [-126, 127].
    fn ldexp(self, n: Self) -> Self;
    /// Lane-wise `if self < o { a } else { b }`.
    fn select_lt(self, o: Self, a: Self, b: Self) -> Self;
}

impl Lanes for f32 {
    #[inline(always)]
    fn splat(v: f32) -> Self {
        v
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        self + o
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        self - o
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        self * o
    }
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        self / o
    }
    #[inline(always)]
    fn fma(self, a: Self, b: Self) -> Self {
        // Separate ops: `mul_add` is a slow libm call without hardware FMA.
        self * a + b
    }
    #[inline(always)]
    fn abs(self) -> Self {
        f32::abs(self)
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        f32::max(self, o)
    }
    #[inline(always)]
    fn round(self) -> Self {
        self.round_ties_even()
    }
    #[inline(always)]
    fn ldexp(self, n: Self) -> Self {
        self * f32::from_bits(((n as i32 + 127) as u32) << 23)
    }
    #[inline(always)]
    fn select_lt(self, o: Self, a: Self, b: Self) -> Self {
        if self < o {
            a
        } else {
            b
        }
    }
}

/// e^x with ~1–2 ulp error; 0 for x < −87.3, saturates at e^88 for x > 88.
#[inline(always)]
fn exp_l<L: Lanes>(x: L) -> L {
    // Clamp to [-87.3, 88.0] so 2^n stays a normal float.
    let lo = x.max(L::splat(-87.3));
    let xc = lo.select_lt(L::splat(88.0), lo, L::splat(88.0));
    let n = xc.mul(L::splat(std::f32::consts::LOG2_E)).round();
    // Cody–Waite: ln2 split so n·LN2_HI is exact.
    let r = n.fma(L::splat(-0.693_145_75), xc);
    let r = n.fma(L::splat(-1.428_606_8e-6), r);
    // Taylor to degree 7 on |r| ≤ ln2/2: truncation < 1e-8 relative.
    let mut p = L::splat(1.0 / 5040.0);
    p = p.fma(r, L::splat(1.0 / 720.0));
    p = p.fma(r, L::splat(1.0 / 120.0));
    p = p.fma(r, L::splat(1.0 / 24.0));
    p = p.fma(r, L::splat(1.0 / 6.0));
    p = p.fma(r, L::splat(0.5));
    p = p.fma(r, L::splat(1.0));
    p = p.fma(r, L::splat(1.0));
    let y = p.ldexp(n.max(L::splat(-126.0)));
    x.select_lt(L::splat(-87.3), L::splat(0.0), y)
}

/// GELU(x) = x·Φ(x) with Φ via erfc of |x|/√2 (Chebyshev-fitted erfc,
/// relative error ~1.2e-7), evaluated so no cancellation occurs for x < 0.
#[inline(always)]
#[allow(clippy::excessive_precision)] // published coefficients, kept verbatim
fn gelu_l<L: Lanes>(x: L) -> L {
    let z = x.abs().mul(L::splat(std::f32::consts::FRAC_1_SQRT_2));
    let t = L::splat(1.0).div(L::splat(1.0).add(L::splat(0.5).mul(z)));
    let mut p = L::splat(0.170_872_77);
    for c in [
        -0.822_152_23,
        1.488_515_87,
        -1.135_203_98,
        0.278_868_07,
        -0.186_288_06,
        0.096_784_18,
        0.374_091_96,
        1.000_023_68,
        -1.265_512_23,
    ] {
        p = p.fma(t, L::splat(c));
    }
    // erfc(z) = t·exp(−z² + p(t))
    let e = exp_l(z.mul(z).sub(p).mul(L::splat(-1.0)));
    let erfc = t.mul(e);
    // c = x·Φ(−|x|) = 0.5·x·erfc(|x|/√2)
    let c = L::splat(0.5).mul(x).mul(erfc);
    x.select_lt(L::splat(0.0), c, x.sub(c))
}

#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
mod avx {
    //! AVX2 versions of the formulas above, written with intrinsics in
    //! `target_feature` functions so everything inlines into the loops
    //! (generic code over a SIMD trait would leave the intrinsics as calls).
    #[cfg(target_arch = "x86")]
    use std::arch::x86::*;
    #[cfg(target_arch = "x86_64")]
    use std::arch::x86_64::*;

    /// # Safety
    /// CPU must support AVX2 and FMA.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn exp8(x: __m256) -> __m256 {
        let lo = _mm256_max_ps(x, _mm256_set1_ps(-87.3));
        let xc = _mm256_min_ps(lo, _mm256_set1_ps(88.0));
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(xc, _mm256_set1_ps(std::f32::consts::LOG2_E)),
        );
        let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-0.693_145_75), xc);
        let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-1.428_606_8e-6), r);
        let mut p = _mm256_set1_ps(1.0 / 5040.0);
        for c in [
            1.0 / 720.0,
            1.0 / 120.0,
            1.0 / 24.0,
            1.0 / 6.0,
            0.5,
            1.0,
            1.0,
        ] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let e = _mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_cvtps_epi32(n),
            _mm256_set1_epi32(127),
        ));
        let y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
        let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(-87.3));
        _mm256_andnot_ps(under, y)
    }

    /// # Safety
    /// CPU must support AVX2 and FMA.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::excessive_precision)] // published coefficients, kept verbatim
    unsafe fn gelu8(x: __m256) -> __m256 {
        let one = _mm256_set1_ps(1.0);
        let z = _mm256_mul_ps(
            _mm256_andnot_ps(_mm256_set1_ps(-0.0), x),
            _mm256_set1_ps(std::f32::consts::FRAC_1_SQRT_2),
        );
        let t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.5), z, one));
        let mut p = _mm256_set1_ps(0.170_872_77);
        for c in [
            -0.822_152_23,
            1.488_515_87,
            -1.135_203_98,
            0.278_868_07,
            -0.186_288_06,
            0.096_784_18,
            0.374_091_96,
            1.000_023_68,
            -1.265_512_23,
        ] {
            p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(c));
        }
        let e = exp8(_mm256_sub_ps(p, _mm256_mul_ps(z, z)));
        let c = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5), x), _mm256_mul_ps(t, e));
        let neg = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_setzero_ps());
        _mm256_blendv_ps(_mm256_sub_ps(x, c), c, neg)
    }

    /// # Safety
    /// CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn gelu(x: &mut [f32]) {
        let mut chunks = x.chunks_exact_mut(8);
        for c in &mut chunks {
            // SAFETY: c has exactly 8 elements.
            _mm256_storeu_ps(c.as_mut_ptr(), gelu8(_mm256_loadu_ps(c.as_ptr())));
        }
        let rem = chunks.into_remainder();
        // The GEMM epilogue calls this once per 16-float tile row: without
        // this check every call evaluated a third, empty vector.
        if rem.is_empty() {
            return;
        }
        let mut tmp = [0.0f32; 8];
        let n = rem.len();
        tmp[..n].copy_from_slice(rem);
        _mm256_storeu_ps(tmp.as_mut_ptr(), gelu8(_mm256_loadu_ps(tmp.as_ptr())));
        rem.copy_from_slice(&tmp[..n]);
    }

    /// In place `x = exp(x − shift)`, returns the sum.
    ///
    /// # Safety
    /// CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn exp_shift_sum(x: &mut [f32], shift: f32) -> f32 {
        let sh = _mm256_set1_ps(shift);
        let mut acc = _mm256_setzero_ps();
        let mut chunks = x.chunks_exact_mut(8);
        for c in &mut chunks {
            // SAFETY: c has exactly 8 elements.
            let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), sh));
            acc = _mm256_add_ps(acc, e);
            _mm256_storeu_ps(c.as_mut_ptr(), e);
        }
        let mut lanes = [0.0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), acc);
        let mut sum: f32 = lanes.iter().sum();
        let rem = chunks.into_remainder();
        let n = rem.len();
        let mut tmp = [0.0f32; 8];
        tmp[..n].copy_from_slice(rem);
        _mm256_storeu_ps(
            tmp.as_mut_ptr(),
            exp8(_mm256_sub_ps(_mm256_loadu_ps(tmp.as_ptr()), sh)),
        );
        rem.copy_from_slice(&tmp[..n]);
        sum += rem.iter().sum::<f32>();
        sum
    }
}

/// In place exact GELU (erf form, as PyTorch `nn.GELU()` / HF `"gelu"`):
/// `x·0.5·(1 + erf(x/√2))`, max abs error vs f64 ≤ 1e-6 (measured ~3e-7).
///
/// Inputs of more than 2¹⁸ elements are split into rayon tasks.
pub fn gelu_erf(x: &mut [f32]) {
    const CHUNK: usize = 1 << 16;
    if x.len() > 4 * CHUNK {
        x.par_chunks_mut(CHUNK).for_each(gelu_erf_serial);
    } else {
        gelu_erf_serial(x);
    }
}

pub(crate) fn gelu_erf_serial(x: &mut [f32]) {
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    if has_avx2_fma() {
        // SAFETY: AVX2/FMA checked.
        unsafe { avx::gelu(x) };
        return;
    }
    gelu_erf_portable(x);
}

/// Portable (scalar) [`gelu_erf`]; same formula, exposed for testing.
pub fn gelu_erf_portable(x: &mut [f32]) {
    for v in x {
        *v = gelu_l(*v);
    }
}

/// Vectorised e^x of every element (used by tests of the softmax helper).
pub fn exp_in_place(x: &mut [f32]) {
    softmax_exp(x, 0.0);
}

/// In place `x = exp(x − shift)`; returns the sum of the results.
pub(crate) fn softmax_exp(x: &mut [f32], shift: f32) -> f32 {
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    if has_avx2_fma() {
        // SAFETY: AVX2/FMA checked.
        return unsafe { avx::exp_shift_sum(x, shift) };
    }
    let mut s = 0.0;
    for v in x {
        *v = exp_l(*v - shift);
        s += *v;
    }
    s
}

/// In place: `x = LayerNorm(x + residual)` row-wise over `dim` columns
/// (PyTorch semantics: biased variance, `eps` inside the square root).
/// Inputs of ≥ 2¹⁸ elements are split by rows into rayon tasks.
///
/// # Panics
/// If `dim == 0`, `x.len()` is not a multiple of `dim`, `residual` (if any)
/// differs in length from `x`, or `gamma`/`beta` are not `dim` long.
pub fn add_layer_norm(
    x: &mut [f32],
    residual: Option<&[f32]>,
    dim: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    assert!(dim > 0, "add_layer_norm: dim == 0");
    assert_eq!(
        x.len() % dim,
        0,
        "add_layer_norm: x.len() not a multiple of dim"
    );
    assert_eq!(gamma.len(), dim, "add_layer_norm: gamma.len() != dim");
    assert_eq!(beta.len(), dim, "add_layer_norm: beta.len() != dim");
    if let Some(r) = residual {
        assert_eq!(
            r.len(),
            x.len(),
            "add_layer_norm: residual.len() != x.len()"
        );
    }
    let norm_row = |(i, row): (usize, &mut [f32])| {
        if let Some(r) = residual {
            for (a, b) in row.iter_mut().zip(&r[i * dim..(i + 1) * dim]) {
                *a += b;
            }
        }
        let mean = sum8(row, |v| v) / dim as f32;
        let var = sum8(row, |v| (v - mean) * (v - mean)) / dim as f32;
        let rstd = 1.0 / (var + eps).sqrt();
        for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
            *v = (*v - mean) * rstd * g + b;
        }
    };
    // Large inputs (many documents packed together) use the rayon pool.
    if x.len() >= 1 << 18 {
        x.par_chunks_exact_mut(dim).enumerate().for_each(norm_row);
    } else {
        x.chunks_exact_mut(dim).enumerate().for_each(norm_row);
    }
}

/// Sum of `f(v)` with 8 interleaved partial sums (vectorises, and is more
/// accurate than one serial f32 sum).
#[inline]
fn sum8(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut it = x.chunks_exact(8);
    for c in &mut it {
        for i in 0..8 {
            acc[i] += f(c[i]);
        }
    }
    let mut s: f32 = acc.iter().sum();
    for &v in it.remainder() {
        s += f(v);
    }
    s
}
