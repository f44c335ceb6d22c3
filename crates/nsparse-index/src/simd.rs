//! Vectorised inner loops of the searcher, with scalar fallbacks that give
//! bit-identical results (the searcher's exact mode promises brute-force scores).

/// `acc[i] += w * code[i] as f32` for every `i`: the definition the vector
/// kernel must match. The product and the sum are rounded separately (no
/// fused multiply-add), so the vector and scalar paths agree bit for bit.
fn accumulate_codes_scalar(acc: &mut [f32], w: f32, codes: &[u8]) {
    for (a, &k) in acc.iter_mut().zip(codes) {
        *a += w * k as f32;
    }
}

/// Most columns [`accumulate_dense_batch`] adds in one pass.
pub(crate) const DENSE_BATCH: usize = 4;

/// `acc[i] += w_j * code_j[i]` for the byte columns in order, in one pass
/// over `acc`: each element receives the columns' products one after the
/// other, rounded separately, so the result is bit-identical to adding the
/// columns one pass at a time; the accumulator is read and written once
/// instead of once per column. A zero code adds +0.0.
///
/// # Panics
/// If there are more than [`DENSE_BATCH`] columns or a column's length
/// differs from the accumulator's.
pub(crate) fn accumulate_dense_batch(acc: &mut [f32], cols: &[(f32, &[u8])]) {
    assert!(cols.len() <= DENSE_BATCH, "too many columns in one batch");
    for (_, col) in cols {
        assert_eq!(
            acc.len(),
            col.len(),
            "accumulator and column lengths differ"
        );
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 was detected at run time; every column has the
        // accumulator's length and there are at most DENSE_BATCH of them
        // (asserted above), which is all the function requires.
        unsafe { accumulate_dense_batch_avx2(acc, cols) };
        return;
    }
    for &(w, col) in cols {
        accumulate_codes_scalar(acc, w, col);
    }
}

/// # Safety
/// The CPU must support AVX2; `cols.len() <= DENSE_BATCH` and every column
/// is as long as `acc`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn accumulate_dense_batch_avx2(acc: &mut [f32], cols: &[(f32, &[u8])]) {
    // One kernel per column count: the column pointers and weights stay in
    // registers and the loop over columns unrolls.
    // SAFETY: forwarded from this function's contract.
    unsafe {
        match cols.len() {
            0 => {}
            1 => dense_kernel_avx2::<1>(acc, cols),
            2 => dense_kernel_avx2::<2>(acc, cols),
            3 => dense_kernel_avx2::<3>(acc, cols),
            _ => dense_kernel_avx2::<DENSE_BATCH>(acc, cols),
        }
    }
}

/// Bytes of a column fetched ahead of use: the columns stream from memory,
/// several at once, and the hardware prefetcher alone runs too short a
/// distance ahead of them.
#[cfg(target_arch = "x86_64")]
const DENSE_PREFETCH: usize = 512;

/// # Safety
/// As [`accumulate_dense_batch_avx2`], with exactly `K` columns.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dense_kernel_avx2<const K: usize>(acc: &mut [f32], cols: &[(f32, &[u8])]) {
    use std::arch::x86_64::*;
    let n = acc.len();
    let w: [__m256; K] = std::array::from_fn(|j| _mm256_set1_ps(cols[j].0));
    let c: [*const u8; K] = std::array::from_fn(|j| cols[j].1.as_ptr());
    let a = acc.as_mut_ptr();
    // Add the columns to the 8 documents at `o` (o + 8 <= n).
    let step = |o: usize| {
        // SAFETY: o + 8 <= n, and every column pointer addresses a column of
        // length n.
        unsafe {
            let mut v = _mm256_loadu_ps(a.add(o));
            for j in 0..K {
                let k = _mm_loadl_epi64(c[j].add(o) as *const __m128i);
                let f = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(k));
                v = _mm256_add_ps(v, _mm256_mul_ps(w[j], f));
            }
            _mm256_storeu_ps(a.add(o), v);
        }
    };
    let mut i = 0;
    while i + 64 <= n {
        for &cj in &c {
            // A prefetch never faults, so its address may run past the column.
            _mm_prefetch::<_MM_HINT_T0>(cj.wrapping_add(i + DENSE_PREFETCH) as *const i8);
        }
        for o in (i..i + 64).step_by(8) {
            step(o);
        }
        i += 64;
    }
    while i + 8 <= n {
        step(i);
        i += 8;
    }
    // The tail column by column: per element the order is the same.
    for &(wj, col) in cols {
        accumulate_codes_scalar(&mut acc[i..], wj, &col[i..]);
    }
}

/// Ask for the cache line at `p` to be loaded (a hint; `p` may point
/// anywhere, since a prefetch never faults).
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: SSE is part of the x86_64 baseline, and a prefetch reads
        // nothing the program sees and never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const i8) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
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

    #[test]
    fn prefetch_of_any_address_is_harmless() {
        let v = vec![7u32; 100];
        prefetch(v.as_ptr());
        prefetch(v.as_ptr().wrapping_add(v.len()));
        prefetch(v.as_ptr().wrapping_add(1 << 40));
        prefetch(std::ptr::null::<u32>());
        assert!(v.iter().all(|&x| x == 7));
    }

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

    /// A random byte column: zeros (absent) and codes.
    fn code_column(rng: &mut rand::rngs::StdRng, n: usize, absent: f64) -> Vec<u8> {
        use rand::Rng;
        (0..n)
            .map(|_| {
                if rng.random_bool(absent) {
                    0
                } else {
                    rng.random_range(1..=255)
                }
            })
            .collect()
    }

    #[test]
    fn dense_accumulation_is_bit_identical_to_scalar() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        // Odd lengths exercise the scalar tail after the vector loop.
        for n in [0usize, 1, 7, 15, 16, 17, 33, 63, 64, 65, 1000, 4099] {
            let col = code_column(&mut rng, n, 0.4);
            let start: Vec<f32> = (0..n).map(|_| rng.random_range(0.0f32..20.0)).collect();
            for w in [0.0037f32, 0.01, 0.079, -0.025] {
                let mut fast = start.clone();
                let mut slow = start.clone();
                accumulate_dense_batch(&mut fast, &[(w, &col)]);
                accumulate_codes_scalar(&mut slow, w, &col);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&fast), bits(&slow), "n {n} w {w}");
                // And both equal the plain definition.
                for i in 0..n {
                    let want = start[i] + w * col[i] as f32;
                    assert_eq!(slow[i].to_bits(), want.to_bits());
                }
            }
        }
    }

    #[test]
    fn batched_dense_accumulation_equals_one_column_at_a_time() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for n in [0usize, 5, 8, 23, 64, 1000, 4099] {
            let cols: Vec<Vec<u8>> = (0..DENSE_BATCH)
                .map(|_| code_column(&mut rng, n, 0.3))
                .collect();
            let weights = [0.0037f32, 0.079, 0.01, 0.0425];
            let start: Vec<f32> = (0..n).map(|_| rng.random_range(0.0f32..20.0)).collect();
            for k in 0..=DENSE_BATCH {
                let batch: Vec<(f32, &[u8])> =
                    (0..k).map(|j| (weights[j], cols[j].as_slice())).collect();
                let mut batched = start.clone();
                accumulate_dense_batch(&mut batched, &batch);
                let mut single = start.clone();
                for &(w, col) in &batch {
                    accumulate_codes_scalar(&mut single, w, col);
                }
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&batched), bits(&single), "n {n} k {k}");
            }
        }
    }
}
