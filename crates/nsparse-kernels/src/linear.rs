//! [`PackedLinear`]: a pre-packed `nn.Linear`.

use crate::gemm::{self, Kernels, PackedBF32, PackedBI16, NR};
use crate::Precision;

enum Weights {
    F32(PackedBF32),
    I16(PackedBI16),
}

/// A linear layer `y = x · Wᵀ + b` with `W` given row-major as PyTorch
/// stores `nn.Linear.weight` (`n_out × k`), packed once at load time.
///
/// [`Precision::Exact`] packs fp32 panels for an AVX2/FMA 6×16 micro-kernel.
/// [`Precision::Fast`] quantises `W` per output row and `x` per input row to
/// int16 (|q| ≤ 4095, i.e. 13 bits) and multiplies with `vpmaddwd`; the
/// integer products are exact, so the only error is the quantisation of the
/// operands: per output `|err| ≤ ‖x−x̃‖‖W_j‖ + ‖x̃‖‖W_j−W̃_j‖` (+ f32
/// rounding). Measured ‖y_fast − y‖/‖y‖ ≈ 2.4e-4 for well-spread activations,
/// ≈ 2e-3 when a few activation columns are 20× larger (BERT-like outliers).
pub struct PackedLinear {
    n_out: usize,
    k: usize,
    precision: Precision,
    /// Bias padded with zeros to a multiple of the panel width.
    bias: Vec<f32>,
    weights: Weights,
    kernels: Kernels,
    /// Portable kernels forced (the epilogue then uses the portable GELU too).
    portable: bool,
}

impl PackedLinear {
    /// Packs `weight` (`n_out × k`, row-major) and optional `bias` (`n_out`).
    ///
    /// # Panics
    /// If `weight.len() != n_out * k` or `bias.len() != n_out`.
    pub fn new(
        weight: &[f32],
        n_out: usize,
        k: usize,
        bias: Option<&[f32]>,
        precision: Precision,
    ) -> Self {
        Self::with_kernels(weight, n_out, k, bias, precision, false)
    }

    /// Like [`PackedLinear::new`] but forces the portable (non-SIMD) kernels;
    /// used to test the fallback path on SIMD machines.
    ///
    /// # Panics
    /// As [`PackedLinear::new`].
    pub fn new_portable(
        weight: &[f32],
        n_out: usize,
        k: usize,
        bias: Option<&[f32]>,
        precision: Precision,
    ) -> Self {
        Self::with_kernels(weight, n_out, k, bias, precision, true)
    }

    fn with_kernels(
        weight: &[f32],
        n_out: usize,
        k: usize,
        bias: Option<&[f32]>,
        precision: Precision,
        portable: bool,
    ) -> Self {
        assert_eq!(
            weight.len(),
            n_out * k,
            "PackedLinear::new: weight.len() != n_out * k"
        );
        let mut b = vec![0.0f32; n_out.div_ceil(NR) * NR];
        if let Some(bias) = bias {
            assert_eq!(bias.len(), n_out, "PackedLinear::new: bias.len() != n_out");
            b[..n_out].copy_from_slice(bias);
        }
        let weights = match precision {
            Precision::Exact => Weights::F32(PackedBF32::pack(weight, n_out, k, k, 1)),
            Precision::Fast => Weights::I16(PackedBI16::pack(weight, n_out, k)),
        };
        Self {
            n_out,
            k,
            precision,
            bias: b,
            weights,
            kernels: Kernels::select(portable),
            portable,
        }
    }

    /// Number of outputs per row.
    pub fn n_out(&self) -> usize {
        self.n_out
    }

    /// Number of inputs per row.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Precision this layer was packed for.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Bytes held by the packed weights.
    pub fn packed_bytes(&self) -> usize {
        match &self.weights {
            Weights::F32(w) => w.bytes(),
            Weights::I16(w) => w.bytes(),
        }
    }

    /// `out[m × n_out] = x[m × k] · Wᵀ + b` (row-major; overwrites `out`).
    ///
    /// Uses both rayon workers for large calls (see the crate docs).
    ///
    /// # Panics
    /// If `x.len() != m * k` or `out.len() != m * n_out`.
    pub fn forward(&self, x: &[f32], m: usize, out: &mut [f32]) {
        self.check_dense(x, m, out);
        self.forward_strided(x, m, self.k, out, self.n_out);
    }

    /// `out = gelu_erf(x · Wᵀ + b)`: [`PackedLinear::forward`] followed by
    /// [`crate::gelu_erf`] (bit-identical to calling both), with the GELU
    /// applied to each finished tile of the output while it is still in
    /// cache instead of in a second pass over `out`.
    ///
    /// # Panics
    /// As [`PackedLinear::forward`].
    pub fn forward_gelu(&self, x: &[f32], m: usize, out: &mut [f32]) {
        self.check_dense(x, m, out);
        let gelu: fn(&mut [f32]) = if self.portable {
            crate::elementwise::gelu_erf_portable
        } else {
            crate::elementwise::gelu_erf_serial
        };
        self.run(x, m, self.k, out, self.n_out, Some(gelu));
    }

    /// The length checks of the unstrided entry points.
    fn check_dense(&self, x: &[f32], m: usize, out: &[f32]) {
        assert_eq!(
            x.len(),
            m * self.k,
            "PackedLinear::forward: x.len() != m * k"
        );
        assert_eq!(
            out.len(),
            m * self.n_out,
            "PackedLinear::forward: out.len() != m * n_out"
        );
    }

    /// As [`PackedLinear::forward`] but with row strides: row `r` of `x` is
    /// `x[r·ldx .. r·ldx + k]`, row `r` of the result goes to
    /// `out[r·ldo .. r·ldo + n_out]` (other elements untouched).
    ///
    /// # Panics
    /// If `ldx < k`, `ldo < n_out` or a slice is too short for `m` rows.
    pub fn forward_strided(&self, x: &[f32], m: usize, ldx: usize, out: &mut [f32], ldo: usize) {
        assert!(
            ldx >= self.k && ldo >= self.n_out,
            "forward_strided: stride smaller than row"
        );
        if m == 0 {
            return;
        }
        assert!(
            x.len() >= (m - 1) * ldx + self.k,
            "forward_strided: x too short"
        );
        assert!(
            out.len() >= (m - 1) * ldo + self.n_out,
            "forward_strided: out too short"
        );
        self.run(x, m, ldx, out, ldo, None);
    }

    fn run(
        &self,
        x: &[f32],
        m: usize,
        ldx: usize,
        out: &mut [f32],
        ldo: usize,
        epilogue: gemm::Epilogue,
    ) {
        match &self.weights {
            Weights::F32(w) => {
                gemm::gemm_f32(self.kernels, x, m, ldx, w, &self.bias, out, ldo, epilogue);
            }
            Weights::I16(w) => {
                gemm::gemm_i16(self.kernels, x, m, ldx, w, &self.bias, out, ldo, epilogue);
            }
        }
    }
}
