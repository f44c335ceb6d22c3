//! Vectorised inner loops of the searcher, with scalar fallbacks that give
//! bit-identical results (the searcher's exact mode promises brute-force scores).

use crate::format::dequantize;

/// `acc[i] += w * weight(col[i])` for every `i`, where `col` holds quantized
/// (f16) weights and 0 means absent (adds +0.0, which leaves every
/// accumulator value unchanged).
///
/// The product and the sum are rounded separately (no fused multiply-add), as
/// in the scalar scoring paths, so the result is bit-identical to them.
pub(crate) fn accumulate_dense(acc: &mut [f32], w: f32, col: &[u16]) {
    assert_eq!(
        acc.len(),
        col.len(),
        "accumulator and column lengths differ"
    );
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("f16c") {
        // SAFETY: AVX2 and F16C were detected at run time, and the lengths are
        // equal (asserted above), which is all the function requires.
        unsafe { accumulate_dense_avx2(acc, w, col) };
        return;
    }
    accumulate_dense_scalar(acc, w, col);
}

fn accumulate_dense_scalar(acc: &mut [f32], w: f32, col: &[u16]) {
    for (a, &h) in acc.iter_mut().zip(col) {
        if h != 0 {
            *a += w * dequantize(h);
        }
    }
}

/// # Safety
/// The CPU must support AVX2 and F16C, and `acc.len() == col.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn accumulate_dense_avx2(acc: &mut [f32], w: f32, col: &[u16]) {
    use std::arch::x86_64::*;
    let n = acc.len();
    let wv = _mm256_set1_ps(w);
    let a = acc.as_mut_ptr();
    let c = col.as_ptr();
    let mut i = 0;
    // Two vectors per step keep both load ports busy.
    while i + 16 <= n {
        // SAFETY (all pointer accesses below): i + 16 <= n = acc.len() = col.len().
        let h0 = _mm_loadu_si128(c.add(i) as *const __m128i);
        let h1 = _mm_loadu_si128(c.add(i + 8) as *const __m128i);
        let p0 = _mm256_mul_ps(wv, _mm256_cvtph_ps(h0));
        let p1 = _mm256_mul_ps(wv, _mm256_cvtph_ps(h1));
        _mm256_storeu_ps(a.add(i), _mm256_add_ps(_mm256_loadu_ps(a.add(i)), p0));
        _mm256_storeu_ps(
            a.add(i + 8),
            _mm256_add_ps(_mm256_loadu_ps(a.add(i + 8)), p1),
        );
        i += 16;
    }
    accumulate_dense_scalar(&mut acc[i..], w, &col[i..]);
}

/// Documents per chunk of [`chunks_reaching`].
pub(crate) const SCAN_CHUNK: usize = 16;

/// Set `out` to the index of every `SCAN_CHUNK`-element chunk of `acc`
/// holding a value `s` with `s > 0` and `s >= theta` (`theta >= 0`).
///
/// Non-negative floats order like their bit patterns read as `i32`, and
/// negative ones read as negative integers, so the test is an integer
/// maximum: vectorisable without assuming anything about NaN.
pub(crate) fn chunks_reaching(acc: &[f32], theta: f32, out: &mut Vec<u32>) {
    out.clear();
    let threshold = theta.max(0.0).to_bits().max(1) as i32;
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 was detected at run time; the function reads only within `acc`.
        unsafe { chunks_reaching_avx2(acc, threshold, out) };
        return;
    }
    chunks_reaching_scalar(acc, 0, threshold, out);
}

/// `(position, value)` of every element of `acc` in the given chunks (as
/// found by [`chunks_reaching`]), in order.
pub(crate) fn values_in_chunks<'a>(
    acc: &'a [f32],
    chunks: &'a [u32],
) -> impl Iterator<Item = (usize, f32)> + 'a {
    chunks.iter().flat_map(move |&c| {
        let start = c as usize * SCAN_CHUNK;
        let end = (start + SCAN_CHUNK).min(acc.len());
        (start..end).map(move |i| (i, acc[i]))
    })
}

fn chunks_reaching_scalar(acc: &[f32], first_chunk: usize, threshold: i32, out: &mut Vec<u32>) {
    for (c, chunk) in acc.chunks(SCAN_CHUNK).enumerate() {
        if chunk.iter().any(|x| x.to_bits() as i32 >= threshold) {
            out.push((first_chunk + c) as u32);
        }
    }
}

/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn chunks_reaching_avx2(acc: &[f32], threshold: i32, out: &mut Vec<u32>) {
    use std::arch::x86_64::*;
    let below = _mm256_set1_epi32(threshold - 1);
    let full = acc.len() / SCAN_CHUNK;
    let p = acc.as_ptr() as *const __m256i;
    for c in 0..full {
        // SAFETY: chunk c covers floats 16c..16c + 16 <= acc.len().
        let a = _mm256_loadu_si256(p.add(2 * c));
        let b = _mm256_loadu_si256(p.add(2 * c + 1));
        let m = _mm256_cmpgt_epi32(_mm256_max_epi32(a, b), below);
        if _mm256_movemask_epi8(m) != 0 {
            out.push(c as u32);
        }
    }
    chunks_reaching_scalar(&acc[full * SCAN_CHUNK..], full, threshold, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::quantize;

    #[test]
    fn chunks_reaching_finds_exactly_the_chunks_with_a_value_at_theta() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        for n in [0usize, 5, 16, 17, 100, 4096 + 7] {
            let acc: Vec<f32> = (0..n)
                .map(|_| match rng.random_range(0..10) {
                    0 => -rng.random_range(0.0f32..5.0),
                    1..=5 => 0.0,
                    _ => rng.random_range(0.0f32..10.0),
                })
                .collect();
            for theta in [0.0f32, 1e-30, 2.5, 9.9, 11.0] {
                let mut got = Vec::new();
                chunks_reaching(&acc, theta, &mut got);
                let want: Vec<u32> = acc
                    .chunks(SCAN_CHUNK)
                    .enumerate()
                    .filter(|(_, c)| c.iter().any(|&s| s > 0.0 && s >= theta))
                    .map(|(i, _)| i as u32)
                    .collect();
                assert_eq!(got, want, "n {n} theta {theta}");
            }
        }
    }

    #[test]
    fn dense_accumulation_is_bit_identical_to_scalar() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        // Odd lengths exercise the scalar tail after the vector loop.
        for n in [0usize, 1, 7, 15, 16, 17, 33, 1000, 4099] {
            let col: Vec<u16> = (0..n)
                .map(|_| {
                    if rng.random_bool(0.4) {
                        0
                    } else {
                        quantize(rng.random_range(1e-4f32..3.0))
                    }
                })
                .collect();
            let start: Vec<f32> = (0..n).map(|_| rng.random_range(0.0f32..20.0)).collect();
            for w in [0.37f32, 1.0, 7.9, -2.5] {
                let mut fast = start.clone();
                let mut slow = start.clone();
                accumulate_dense(&mut fast, w, &col);
                accumulate_dense_scalar(&mut slow, w, &col);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&fast), bits(&slow), "n {n} w {w}");
                // And both equal the plain definition.
                for i in 0..n {
                    let want = if col[i] == 0 {
                        start[i]
                    } else {
                        start[i] + w * dequantize(col[i])
                    };
                    assert_eq!(slow[i].to_bits(), want.to_bits());
                }
            }
        }
    }
}
