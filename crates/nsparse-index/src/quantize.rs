//! f16 document weights: quantization, dequantization and their bounds.

/// Largest weight representable by the f16 quantization.
pub const MAX_WEIGHT: f32 = 65504.0;

/// Smallest non-zero stored weight (smallest normal f16); smaller inputs round
/// to 0 (dropped) or to this value, whichever is nearer.
pub const MIN_WEIGHT: f32 = 6.103_515_6e-5;

/// Quantize a weight to IEEE binary16 bits (round to nearest even), with
/// subnormals flushed so decoding is a shift and an add. `0` means "absent".
///
/// Errors are detected by the caller (weights must be finite, ≥ 0, ≤ [`MAX_WEIGHT`]).
#[inline]
pub fn quantize(w: f32) -> u16 {
    let x = w.to_bits() & 0x7fff_ffff;
    if x < 0x3880_0000 {
        // Below the smallest normal half (2^-14): snap to 0 or the smallest normal.
        return if w.abs() >= MIN_WEIGHT / 2.0 {
            0x0400
        } else {
            0
        };
    }

    // Rebias the exponent (127 -> 15) and round the mantissa from 23 to 10
    // bits, to nearest even; a carry out of the mantissa bumps the exponent.
    // Callers keep weights at or below MAX_WEIGHT, so the result stays finite.
    (((x - 0x3800_0000) + 0x0fff + ((x >> 13) & 1)) >> 13) as u16
}

/// Whether [`quantize`] keeps the valid weight `w` (finite, ≥ 0): the
/// same as `quantize(w) != 0`, without computing the rounding.
#[inline]
pub(crate) fn is_kept(w: f32) -> bool {
    w.abs() >= MIN_WEIGHT / 2.0
}

/// The reference definition of [`quantize`] (`half`'s conversion plus the
/// subnormal snapping), kept for the equivalence test.
#[cfg(test)]
fn quantize_reference(w: f32) -> u16 {
    let h = half::f16::from_f32(w).to_bits() & 0x7fff;
    if h != 0 && h < 0x0400 {
        if w >= MIN_WEIGHT / 2.0 {
            0x0400
        } else {
            0
        }
    } else {
        h
    }
}

/// Decode a quantized weight (as produced by [`quantize`], non-zero).
#[inline(always)]
pub fn dequantize(h: u16) -> f32 {
    // Normal positive f16 -> f32: rebias exponent from 15 to 127.
    f32::from_bits(((h as u32) << 13) + 0x3800_0000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_equals_the_half_crate_on_every_valid_weight_pattern() {
        // Every 61st f32 bit pattern from 0 to MAX_WEIGHT, plus the edges.
        let max = MAX_WEIGHT.to_bits();
        let mut x = 0u32;
        while x <= max {
            let w = f32::from_bits(x);
            assert_eq!(quantize(w), quantize_reference(w), "w = {w:e} ({x:#x})");
            assert_eq!(is_kept(w), quantize(w) != 0, "w = {w:e} ({x:#x})");
            assert_eq!(is_kept(-w), quantize(-w) != 0, "w = -{w:e}");
            x += 61;
        }
        for w in [
            0.0,
            MIN_WEIGHT,
            MIN_WEIGHT / 2.0,
            2f32.powi(-14),
            2f32.powi(-15),
            1.0,
            MAX_WEIGHT,
        ] {
            assert_eq!(quantize(w), quantize_reference(w), "w = {w:e}");
            let below = f32::from_bits(w.to_bits().saturating_sub(1));
            assert_eq!(quantize(below), quantize_reference(below), "w = {below:e}");
            for v in [w, below] {
                assert_eq!(is_kept(v), quantize(v) != 0, "w = {v:e}");
            }
        }
    }

    #[test]
    fn quantize_roundtrip_error_is_small() {
        let mut w = MIN_WEIGHT;
        while w < 60000.0 {
            let q = quantize(w);
            assert!(q != 0);
            let d = dequantize(q);
            assert!(((d - w) / w).abs() <= 1.0 / 2048.0 + 1e-7, "{w} -> {d}");
            w *= 1.013;
        }
        assert_eq!(quantize(0.0), 0);
        assert_eq!(quantize(1e-9), 0);
        assert_eq!(
            dequantize(quantize(1e-4)),
            MIN_WEIGHT.max(dequantize(quantize(1e-4)))
        );
    }
}
