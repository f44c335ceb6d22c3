//! Property tests of every public kernel against naive f64 references.

use nsparse_kernels::*;
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// References
// ---------------------------------------------------------------------------

fn ref_linear(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    m: usize,
    n: usize,
    k: usize,
) -> (Vec<f64>, Vec<f64>) {
    // Returns (exact result, Σ|x||w| + |b| scale per element).
    let mut y = vec![0.0; m * n];
    let mut s = vec![0.0; m * n];
    for r in 0..m {
        for j in 0..n {
            let mut acc = b.map_or(0.0, |b| b[j] as f64);
            let mut sc = b.map_or(0.0, |b| (b[j] as f64).abs());
            for kk in 0..k {
                let p = x[r * k + kk] as f64 * w[j * k + kk] as f64;
                acc += p;
                sc += p.abs();
            }
            y[r * n + j] = acc;
            s[r * n + j] = sc;
        }
    }
    (y, s)
}

/// Reference pooled output and the f64 logit max per v, with Σ|h||w|+|b| of the argmax.
fn ref_pool(
    h: &[f32],
    w: &[f32],
    b: &[f32],
    m: usize,
    vocab: usize,
    k: usize,
) -> Vec<(f64, f64, f64)> {
    (0..vocab)
        .map(|v| {
            let mut best = f64::NEG_INFINITY;
            let mut scale: f64 = 0.0;
            for p in 0..m {
                let mut acc = b[v] as f64;
                let mut sc = (b[v] as f64).abs();
                for kk in 0..k {
                    let t = h[p * k + kk] as f64 * w[v * k + kk] as f64;
                    acc += t;
                    sc += t.abs();
                }
                best = best.max(acc);
                scale = scale.max(sc);
            }
            (best.max(0.0).ln_1p(), best, scale)
        })
        .collect()
}

/// erf in f64 via the everywhere-convergent positive series
/// erf z = 2/√π e^{−z²} Σ 2ⁿ z^{2n+1} / (1·3·…·(2n+1)).
fn erf64(z: f64) -> f64 {
    let a = z.abs();
    let mut term = a;
    let mut sum = a;
    let mut n = 0.0;
    while term > sum * 1e-18 {
        n += 1.0;
        term *= 2.0 * a * a / (2.0 * n + 1.0);
        sum += term;
    }
    let r = 2.0 / std::f64::consts::PI.sqrt() * (-a * a).exp() * sum;
    r.min(1.0).copysign(z)
}

fn gelu64(x: f64) -> f64 {
    x * 0.5 * (1.0 + erf64(x / std::f64::consts::SQRT_2))
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

fn vec_f32(n: usize, scale: f32) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-1.0f32..1.0, n)
        .prop_map(move |v| v.into_iter().map(|x| x * scale).collect())
}

/// (m, n, k, x, w, bias)
fn linear_case() -> impl Strategy<Value = (usize, usize, usize, Vec<f32>, Vec<f32>, Vec<f32>)> {
    (1usize..40, 1usize..70, 1usize..300).prop_flat_map(|(m, n, k)| {
        (
            Just(m),
            Just(n),
            Just(k),
            vec_f32(m * k, 1.0),
            vec_f32(n * k, 0.5),
            vec_f32(n, 1.0),
        )
    })
}

fn check_linear_exact(
    layer: &PackedLinear,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    m: usize,
    n: usize,
    k: usize,
) {
    let mut out = vec![f32::NAN; m * n];
    layer.forward(x, m, &mut out);
    let (y, s) = ref_linear(x, w, Some(b), m, n, k);
    for i in 0..m * n {
        let tol = (k as f64 + 2.0) * 6e-8 * s[i] + 1e-30;
        assert!(
            (out[i] as f64 - y[i]).abs() <= tol,
            "i={i} got {} want {} tol {tol}",
            out[i],
            y[i]
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn linear_exact_matches_reference((m, n, k, x, w, b) in linear_case()) {
        let layer = PackedLinear::new(&w, n, k, Some(&b), Precision::Exact);
        check_linear_exact(&layer, &x, &w, &b, m, n, k);
        let port = PackedLinear::new_portable(&w, n, k, Some(&b), Precision::Exact);
        check_linear_exact(&port, &x, &w, &b, m, n, k);
    }

    #[test]
    fn linear_fast_within_quantisation_bound((m, n, k, x, w, b) in linear_case()) {
        let (y, s) = ref_linear(&x, &w, Some(&b), m, n, k);
        for portable in [false, true] {
            let layer = if portable {
                PackedLinear::new_portable(&w, n, k, Some(&b), Precision::Fast)
            } else {
                PackedLinear::new(&w, n, k, Some(&b), Precision::Fast)
            };
            let mut out = vec![f32::NAN; m * n];
            layer.forward(&x, m, &mut out);
            for r in 0..m {
                // Per-element rounding to step max|row|/4095 ⇒ residual ≤ half a step.
                let xs = x[r * k..][..k].iter().fold(0.0f32, |a, v| a.max(v.abs())) as f64 / 4095.0;
                for j in 0..n {
                    let ws = w[j * k..][..k].iter().fold(0.0f32, |a, v| a.max(v.abs())) as f64 / 4095.0;
                    let mut bound = 0.0;
                    for kk in 0..k {
                        let (xa, wa) = ((x[r * k + kk] as f64).abs(), (w[j * k + kk] as f64).abs());
                        bound += 0.5 * xs * (wa + 0.5 * ws) + 0.5 * ws * xa;
                    }
                    bound += 1e-5 * s[r * n + j] + 1e-30;
                    let e = (out[r * n + j] as f64 - y[r * n + j]).abs();
                    prop_assert!(e <= bound, "r={} j={} err {} bound {}", r, j, e, bound);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Vocabulary projection + max-pool
// ---------------------------------------------------------------------------

/// Asserts Exact max_pool equals the f64 reference within the fp32 dot
/// rounding bound (and 1e-4 absolute).
fn check_pool_exact(h: &[f32], w: &[f32], b: &[f32], m: usize, vocab: usize, k: usize) {
    let r = ref_pool(h, w, b, m, vocab, k);
    for portable in [false, true] {
        let proj = if portable {
            PackedVocabProjection::new_portable(w, vocab, k, b, Precision::Exact)
        } else {
            PackedVocabProjection::new(w, vocab, k, b, Precision::Exact)
        };
        let mut out = vec![f32::NAN; vocab];
        proj.max_pool(h, m, &mut out);
        for v in 0..vocab {
            let (want, logit, scale) = r[v];
            let got = out[v] as f64;
            // f64-accumulated logits (error ≤ ~k·2⁻⁵³·scale, damped by
            // ln1p' = 1/(1+logit)) rounded once to f32: ≤ 1 ulp-ish.
            let dl = (k as f64 + 4.0) * 2.3e-16 * scale / (1.0 + logit.max(0.0));
            let tol = 1.2e-7 * want + dl + 1e-40;
            assert!(
                (got - want).abs() <= tol,
                "portable={portable} v={v} got {got} want {want} (logit {logit}) tol {tol}"
            );
            assert!((got - want).abs() <= 1e-4, "v={v} got {got} want {want}");
        }
    }
}

/// (m, vocab, k, h, w, bias offset)
fn pool_case() -> impl Strategy<Value = (usize, usize, usize, Vec<f32>, Vec<f32>, Vec<f32>)> {
    (1usize..24, 1usize..150, 1usize..200, -3.0f32..1.0).prop_flat_map(|(m, vocab, k, boff)| {
        (
            Just(m),
            Just(vocab),
            Just(k),
            vec_f32(m * k, 2.0),
            vec_f32(vocab * k, 0.3),
            vec_f32(vocab, 1.0).prop_map(move |b| b.into_iter().map(|x| x + boff).collect()),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn pool_exact_random((m, vocab, k, h, w, b) in pool_case()) {
        check_pool_exact(&h, &w, &b, m, vocab, k);
    }

    /// Scaled inputs: tiny and huge magnitudes (logits stay finite).
    #[test]
    fn pool_exact_magnitudes((m, vocab, k, h, w, b) in pool_case(), e in -20i32..15) {
        let s = 10f32.powi(e);
        let h: Vec<f32> = h.iter().map(|v| v * s).collect();
        let b: Vec<f32> = b.iter().map(|v| v * s).collect();
        check_pool_exact(&h, &w, &b, m, vocab, k);
    }

    /// Logits clustered at 0 (bias = −(row dot) ± tiny) and exact ties
    /// (duplicated rows of h).
    #[test]
    fn pool_exact_adversarial((m, vocab, k, h, w, _b) in pool_case(), jitter in vec_f32(150, 1e-6), dup in 0usize..24) {
        let mut h = h;
        // Ties: copy row 0 into another row.
        if m > 1 {
            let d = 1 + dup % (m - 1);
            let r0: Vec<f32> = h[..k].to_vec();
            h[d * k..(d + 1) * k].copy_from_slice(&r0);
        }
        // Bias makes row 0's logit ≈ 0 for every v: the hardest case for screening.
        let b: Vec<f32> = (0..vocab)
            .map(|v| {
                let d: f64 = (0..k).map(|kk| h[kk] as f64 * w[v * k + kk] as f64).sum();
                (-d) as f32 + jitter[v % jitter.len()]
            })
            .collect();
        check_pool_exact(&h, &w, &b, m, vocab, k);
    }

    /// Near-ties: every row is one base row plus a perturbation far below
    /// the int16 quantisation error, so the screening must keep many
    /// candidates and the exact recomputation must pick the true maximum.
    #[test]
    fn pool_exact_near_ties((m, vocab, k, h, w, b) in pool_case(), eps in 1e-7f32..1e-3) {
        let base: Vec<f32> = h[..k].to_vec();
        let h: Vec<f32> = (0..m * k).map(|i| base[i % k] + eps * h[i]).collect();
        let b: Vec<f32> = b.iter().map(|v| v + 3.0).collect();
        check_pool_exact(&h, &w, &b, m, vocab, k);
    }

    #[test]
    fn pool_fast_within_bound((m, vocab, k, h, w, b) in pool_case()) {
        let r = ref_pool(&h, &w, &b, m, vocab, k);
        let proj = PackedVocabProjection::new(&w, vocab, k, &b, Precision::Fast);
        let mut out = vec![f32::NAN; vocab];
        proj.max_pool(&h, m, &mut out);
        let hn = (0..m).map(|p| h[p * k..][..k].iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt()).fold(0.0, f64::max);
        let ha = h.iter().fold(0.0f32, |a, v| a.max(v.abs())) as f64;
        for v in 0..vocab {
            let wr = &w[v * k..][..k];
            let wn = wr.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            let wa = wr.iter().fold(0.0f32, |a, x| a.max(x.abs())) as f64;
            // Cauchy–Schwarz with per-element residual ≤ half a quantisation step.
            let rk = (k as f64).sqrt() * 0.5 / 4095.0;
            let bound = rk * ha * wn + hn * rk * wa + rk * rk * ha * wa + 1e-5 * r[v].2 + 1e-6;
            prop_assert!((out[v] as f64 - r[v].0).abs() <= bound, "v={} got {} want {} bound {}", v, out[v], r[v].0, bound);
        }
    }
}

#[test]
fn pool_single_row_and_panel_edges() {
    // m = 1, vocab not a multiple of 16 or 64, k odd and not a multiple of 8.
    for &(m, vocab, k) in &[
        (1usize, 1usize, 1usize),
        (1, 17, 3),
        (7, 65, 13),
        (13, 130, 257),
        (2, 200, 769),
    ] {
        let mut s = 1u64;
        let mut rnd = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let h: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
        let w: Vec<f32> = (0..vocab * k).map(|_| rnd() * 0.2).collect();
        let b: Vec<f32> = (0..vocab).map(|_| rnd() * 0.5 - 0.2).collect();
        check_pool_exact(&h, &w, &b, m, vocab, k);
    }
}

#[test]
fn pool_zero_inputs_and_empty() {
    let (vocab, k) = (40, 10);
    let w = vec![0.0f32; vocab * k];
    let b: Vec<f32> = (0..vocab).map(|v| v as f32 - 20.0).collect();
    let h = vec![0.0f32; 3 * k];
    check_pool_exact(&h, &w, &b, 3, vocab, k);
    let proj = PackedVocabProjection::new(&w, vocab, k, &b, Precision::Exact);
    let mut out = vec![1.0f32; vocab];
    proj.max_pool(&[], 0, &mut out);
    assert!(out.iter().all(|&v| v == 0.0));
}

#[test]
fn pool_large_parallel_case_matches() {
    // Big enough to take the parallel path and several k-blocks.
    let (m, vocab, k) = (40, 700, 600);
    let mut s = 7u64;
    let mut rnd = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    let h: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
    let w: Vec<f32> = (0..vocab * k).map(|_| rnd() * 0.1).collect();
    let b: Vec<f32> = (0..vocab).map(|_| rnd() - 0.5).collect();
    check_pool_exact(&h, &w, &b, m, vocab, k);
}

#[test]
#[should_panic(expected = "max_pool: h.len() != m * k")]
fn pool_panics_on_bad_h() {
    let proj = PackedVocabProjection::new(&[0.0; 6], 2, 3, &[0.0; 2], Precision::Exact);
    proj.max_pool(&[0.0; 5], 2, &mut [0.0; 2]);
}

#[test]
#[should_panic(expected = "forward: out.len() != m * n_out")]
fn linear_panics_on_bad_out() {
    let layer = PackedLinear::new(&[0.0; 6], 2, 3, None, Precision::Exact);
    layer.forward(&[0.0; 3], 1, &mut [0.0; 3]);
}

#[test]
fn linear_large_parallel_and_no_bias() {
    let (m, n, k) = (100, 300, 520);
    let x: Vec<f32> = (0..m * k)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect();
    let w: Vec<f32> = (0..n * k)
        .map(|i| ((i * 104729 % 997) as f32 / 997.0) - 0.5)
        .collect();
    let layer = PackedLinear::new(&w, n, k, None, Precision::Exact);
    let mut out = vec![0.0; m * n];
    layer.forward(&x, m, &mut out);
    let (y, s) = ref_linear(&x, &w, None, m, n, k);
    for i in 0..m * n {
        assert!((out[i] as f64 - y[i]).abs() <= (k as f64 + 2.0) * 6e-8 * s[i]);
    }
}

// ---------------------------------------------------------------------------
// Attention, LayerNorm, GELU
// ---------------------------------------------------------------------------

fn ref_attention(qkv: &[f32], m: usize, hidden: usize, heads: usize) -> Vec<f64> {
    let d = hidden / heads;
    let mut out = vec![0.0; m * hidden];
    for h in 0..heads {
        for i in 0..m {
            let mut s: Vec<f64> = (0..m)
                .map(|j| {
                    (0..d)
                        .map(|t| {
                            qkv[i * 3 * hidden + h * d + t] as f64
                                * qkv[j * 3 * hidden + hidden + h * d + t] as f64
                        })
                        .sum::<f64>()
                        / (d as f64).sqrt()
                })
                .collect();
            let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let mut z = 0.0;
            for v in s.iter_mut() {
                *v = (*v - mx).exp();
                z += *v;
            }
            for t in 0..d {
                out[i * hidden + h * d + t] = (0..m)
                    .map(|j| s[j] / z * qkv[j * 3 * hidden + 2 * hidden + h * d + t] as f64)
                    .sum();
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn attention_matches_reference(m in 1usize..40, heads in 1usize..5, d in 1usize..24, seed in vec_f32(1, 1.0)) {
        let hidden = heads * d;
        let n = m * 3 * hidden;
        let qkv: Vec<f32> = (0..n).map(|i| (i as f32 * 0.618 + seed[0]).sin() * 2.0).collect();
        let want = ref_attention(&qkv, m, hidden, heads);
        for portable in [false, true] {
            let mut out = vec![f32::NAN; m * hidden];
            if portable {
                attention_portable(&qkv, m, hidden, heads, &mut out);
            } else {
                attention(&qkv, m, hidden, heads, &mut out);
            }
            for i in 0..m * hidden {
                prop_assert!((out[i] as f64 - want[i]).abs() <= 2e-5, "i={} {} vs {}", i, out[i], want[i]);
            }
        }
    }

    #[test]
    fn layer_norm_matches_reference(rows in 1usize..6, dim in 1usize..100, x in vec_f32(600, 3.0), r in vec_f32(600, 1.0), with_res: bool) {
        let n = rows * dim;
        let mut xs = x[..n].to_vec();
        let gamma: Vec<f32> = (0..dim).map(|i| 1.0 + i as f32 * 0.01).collect();
        let beta: Vec<f32> = (0..dim).map(|i| i as f32 * -0.02).collect();
        let res = with_res.then(|| &r[..n]);
        add_layer_norm(&mut xs, res, dim, &gamma, &beta, 1e-12);
        for row in 0..rows {
            let v: Vec<f64> = (0..dim).map(|i| x[row * dim + i] as f64 + res.map_or(0.0, |r| r[row * dim + i] as f64)).collect();
            let mean = v.iter().sum::<f64>() / dim as f64;
            let var = v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / dim as f64;
            for i in 0..dim {
                let want = (v[i] - mean) / (var + 1e-12).sqrt() * gamma[i] as f64 + beta[i] as f64;
                prop_assert!((xs[row * dim + i] as f64 - want).abs() <= 2e-4 * (1.0 + want.abs()).min(1e9), "{} vs {}", xs[row * dim + i], want);
            }
        }
    }
}

#[test]
fn gelu_error_below_1e6() {
    // Dense sweep plus every float exponent range, odd lengths for the tails.
    let mut xs: Vec<f32> = (-400_000..=400_000).map(|i| i as f32 * 5e-5).collect();
    for e in -40..40 {
        for s in [-1.0f32, 1.0] {
            xs.push(s * 1.37 * 2f32.powi(e));
        }
    }
    xs.extend([0.0, -0.0, 1e30, -1e30, 87.0, -87.0, 200.0, -200.0]);
    for portable in [false, true] {
        let mut y = xs.clone();
        if portable {
            gelu_erf_portable(&mut y);
        } else {
            gelu_erf(&mut y);
        }
        let mut worst = 0.0f64;
        for (&x, &g) in xs.iter().zip(&y) {
            let e = (g as f64 - gelu64(x as f64)).abs();
            worst = worst.max(e);
        }
        assert!(worst <= 1e-6, "portable={portable} worst abs error {worst}");
    }
}

#[test]
fn exp_is_accurate() {
    let xs: Vec<f32> = (-8700..8800).map(|i| i as f32 * 0.01 + 0.003).collect();
    let mut y = xs.clone();
    exp_in_place(&mut y);
    for (&x, &e) in xs.iter().zip(&y) {
        let want = (x as f64).exp();
        if x < -87.3 {
            assert_eq!(e, 0.0);
        } else {
            assert!(
                ((e as f64 - want) / want).abs() < 4e-7,
                "x={x} {e} vs {want}"
            );
        }
    }
}

#[test]
fn nested_parallel_calls_agree_with_serial() {
    // Two large calls inside rayon::join (as the model crate does when it
    // encodes two documents at once) must give the same bits as serial calls.
    let (m, n, k, vocab) = (96, 512, 384, 1000);
    let x: Vec<f32> = (0..m * k)
        .map(|i| ((i * 31 % 211) as f32 / 105.0) - 1.0)
        .collect();
    let w: Vec<f32> = (0..n * k)
        .map(|i| ((i * 17 % 97) as f32 / 970.0) - 0.05)
        .collect();
    let wv: Vec<f32> = (0..vocab * k)
        .map(|i| ((i * 13 % 101) as f32 / 1010.0) - 0.05)
        .collect();
    let bv: Vec<f32> = (0..vocab).map(|v| (v % 7) as f32 * 0.1 - 0.3).collect();
    let lin = PackedLinear::new(&w, n, k, None, Precision::Exact);
    let proj = PackedVocabProjection::new(&wv, vocab, k, &bv, Precision::Exact);
    let mut y1 = vec![0.0; m * n];
    let mut p1 = vec![0.0; vocab];
    lin.forward(&x, m, &mut y1);
    proj.max_pool(&x, m, &mut p1);
    let ((y2, p2), (y3, p3)) = rayon::join(
        || {
            let mut y = vec![0.0; m * n];
            let mut p = vec![0.0; vocab];
            lin.forward(&x, m, &mut y);
            proj.max_pool(&x, m, &mut p);
            (y, p)
        },
        || {
            let mut y = vec![0.0; m * n];
            let mut p = vec![0.0; vocab];
            proj.max_pool(&x, m, &mut p);
            lin.forward(&x, m, &mut y);
            (y, p)
        },
    );
    assert_eq!(y1, y2);
    assert_eq!(y1, y3);
    assert_eq!(p1, p2);
    assert_eq!(p1, p3);
}

#[test]
fn layer_norm_large_parallel_path() {
    let (rows, dim) = (400, 768);
    let x0: Vec<f32> = (0..rows * dim)
        .map(|i| ((i * 37 % 1009) as f32 / 100.0) - 5.0)
        .collect();
    let r: Vec<f32> = (0..rows * dim)
        .map(|i| ((i * 11 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let gamma: Vec<f32> = (0..dim).map(|i| 0.5 + (i % 7) as f32 * 0.1).collect();
    let beta: Vec<f32> = (0..dim).map(|i| (i % 5) as f32 * 0.01).collect();
    let mut x = x0.clone();
    add_layer_norm(&mut x, Some(&r), dim, &gamma, &beta, 1e-12);
    for row in 0..rows {
        let v: Vec<f64> = (0..dim)
            .map(|i| x0[row * dim + i] as f64 + r[row * dim + i] as f64)
            .collect();
        let mean = v.iter().sum::<f64>() / dim as f64;
        let var = v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / dim as f64;
        for i in 0..dim {
            let want = (v[i] - mean) / (var + 1e-12).sqrt() * gamma[i] as f64 + beta[i] as f64;
            assert!((x[row * dim + i] as f64 - want).abs() <= 1e-4 * (1.0 + want.abs()));
        }
    }
}

#[test]
fn packed_types_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<PackedLinear>();
    assert_send_sync::<PackedVocabProjection>();
    assert_send_sync::<Precision>();
}

fn lcg_values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0) * scale
        })
        .collect()
}

#[test]
fn pool_batch_matches_one_call_per_sequence() {
    let (vocab, k) = (700, 200);
    let lens = [17usize, 0, 40, 1, 6];
    let rows: usize = lens.iter().sum();
    let h = lcg_values(rows * k, 11, 1.0);
    let w = lcg_values(vocab * k, 12, 0.1);
    let b = lcg_values(vocab, 13, 0.5);
    let mut offsets = vec![0];
    for l in lens {
        offsets.push(offsets.last().unwrap() + l);
    }
    for precision in [Precision::Exact, Precision::Fast] {
        let proj = PackedVocabProjection::new(&w, vocab, k, &b, precision);
        let mut batched = vec![f32::NAN; lens.len() * vocab];
        proj.max_pool_batch(&h, &offsets, &mut batched);
        for (s, win) in offsets.windows(2).enumerate() {
            let mut single = vec![f32::NAN; vocab];
            proj.max_pool(&h[win[0] * k..win[1] * k], win[1] - win[0], &mut single);
            assert_eq!(
                &batched[s * vocab..(s + 1) * vocab],
                &single[..],
                "{precision:?} sequence {s}"
            );
        }
    }
}

#[test]
#[should_panic(expected = "offsets must start at 0")]
fn pool_batch_panics_on_bad_offsets() {
    let proj = PackedVocabProjection::new(&[0.0; 6], 2, 3, &[0.0; 2], Precision::Exact);
    proj.max_pool_batch(&[0.0; 6], &[1, 2], &mut [0.0; 2]);
}

#[test]
fn results_do_not_depend_on_thread_count() {
    // Large enough for the parallel paths, with row counts that split into
    // different task grids on 1 and 3 threads.
    let (m, n, k, vocab) = (301, 400, 520, 900);
    let x = lcg_values(m * k, 21, 1.0);
    let w = lcg_values(n * k, 22, 0.05);
    let wv = lcg_values(vocab * k, 23, 0.05);
    let bv = lcg_values(vocab, 24, 0.3);
    let offsets = [0, 120, 301];
    let run = |threads: usize, precision: Precision| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let lin = PackedLinear::new(&w, n, k, Some(&bv[..n]), precision);
            let proj = PackedVocabProjection::new(&wv, vocab, k, &bv, precision);
            let mut y = vec![0.0; m * n];
            lin.forward(&x, m, &mut y);
            let mut p = vec![0.0; 2 * vocab];
            proj.max_pool_batch(&x, &offsets, &mut p);
            let mut att = vec![0.0; 120 * 160];
            nsparse_kernels::attention(&x[..120 * 480], 120, 160, 4, &mut att);
            (y, p, att)
        })
    };
    for precision in [Precision::Exact, Precision::Fast] {
        let one = run(1, precision);
        let three = run(3, precision);
        assert_eq!(one.0, three.0, "{precision:?} linear");
        assert_eq!(one.1, three.1, "{precision:?} max_pool_batch");
        assert_eq!(one.2, three.2, "{precision:?} attention");
    }
}

#[test]
fn forward_gelu_equals_forward_then_gelu() {
    // Shapes with partial tiles/panels, on the serial and the parallel path.
    for (m, n, k) in [(7usize, 37usize, 29usize), (150, 300, 130)] {
        let x = lcg_values(m * k, 31, 1.0);
        let w = lcg_values(n * k, 32, 0.2);
        let b = lcg_values(n, 33, 0.5);
        for precision in [Precision::Exact, Precision::Fast] {
            for portable in [false, true] {
                let layer = if portable {
                    PackedLinear::new_portable(&w, n, k, Some(&b), precision)
                } else {
                    PackedLinear::new(&w, n, k, Some(&b), precision)
                };
                let mut want = vec![0.0; m * n];
                layer.forward(&x, m, &mut want);
                if portable {
                    nsparse_kernels::gelu_erf_portable(&mut want);
                } else {
                    nsparse_kernels::gelu_erf(&mut want);
                }
                let mut got = vec![0.0; m * n];
                layer.forward_gelu(&x, m, &mut got);
                assert_eq!(got, want, "{m}x{n}x{k} {precision:?} portable={portable}");
            }
        }
    }
}

/// Vocabularies far beyond 65,536 entries with the small hidden sizes of the large-vocabulary
/// fixtures: Exact stays within the f64 reference bound (SIMD and portable kernels) on the
/// parallel path.
#[test]
fn pool_exact_large_vocabularies() {
    for (m, vocab, k) in [(12usize, 250_002usize, 8usize), (9, 105_879, 16)] {
        let h = lcg_values(m * k, 41, 1.5);
        let w = lcg_values(vocab * k, 42, 0.4);
        let b: Vec<f32> = lcg_values(vocab, 43, 1.0)
            .into_iter()
            .map(|x| x - 0.9)
            .collect();
        check_pool_exact(&h, &w, &b, m, vocab, k);
    }
}

/// `max_pool_batch_sparse` returns exactly the non-zero entries of `max_pool_batch`, ids
/// increasing, for every precision and both kernel families, including empty sequences and ids
/// above 65,535.
#[test]
fn sparse_pool_batch_equals_the_dense_one() {
    for (vocab, k, lens) in [
        (250_002usize, 8usize, vec![9usize, 0, 30, 1]),
        (105_879, 16, vec![3, 5]),
        (700, 200, vec![17, 0, 40, 1, 6]),
        (70, 3, vec![0]),
    ] {
        let rows: usize = lens.iter().sum();
        let h = lcg_values(rows * k, 51, 1.5);
        let w = lcg_values(vocab * k, 52, 0.4);
        let b: Vec<f32> = lcg_values(vocab, 53, 1.0)
            .into_iter()
            .map(|x| x - 0.9)
            .collect();
        let mut offsets = vec![0];
        for l in &lens {
            offsets.push(offsets.last().unwrap() + l);
        }
        for precision in [Precision::Exact, Precision::Fast] {
            for portable in [false, true] {
                let proj = if portable {
                    PackedVocabProjection::new_portable(&w, vocab, k, &b, precision)
                } else {
                    PackedVocabProjection::new(&w, vocab, k, &b, precision)
                };
                let mut dense = vec![f32::NAN; lens.len() * vocab];
                let n_dense = proj.max_pool_batch_stats(&h, &offsets, &mut dense);
                let (sparse, n_sparse) = proj.max_pool_batch_sparse_stats(&h, &offsets);
                assert_eq!(n_sparse, n_dense);
                assert_eq!(sparse.len(), lens.len());
                let mut high = 0;
                for (s, (ids, weights)) in sparse.iter().enumerate() {
                    let row = &dense[s * vocab..(s + 1) * vocab];
                    let want: Vec<(u32, f32)> = row
                        .iter()
                        .enumerate()
                        .filter(|(_, w)| **w != 0.0)
                        .map(|(v, w)| (v as u32, *w))
                        .collect();
                    let got: Vec<(u32, f32)> =
                        ids.iter().copied().zip(weights.iter().copied()).collect();
                    assert_eq!(
                        got, want,
                        "vocab {vocab} {precision:?} portable={portable} seq {s}"
                    );
                    if lens[s] == 0 {
                        assert!(ids.is_empty());
                    }
                    high += ids.iter().filter(|&&v| v > 65_535).count();
                }
                if vocab > 65_536 {
                    assert!(high > 0, "vocab {vocab}: no id above 65,535");
                }
            }
        }
    }
    // No rows at all: one empty vector per sequence.
    let proj = PackedVocabProjection::new(&[0.5; 6], 2, 3, &[1.0; 2], Precision::Exact);
    assert_eq!(
        proj.max_pool_batch_sparse(&[], &[0, 0, 0]),
        vec![(vec![], vec![]), (vec![], vec![])]
    );
}
