//! Kernel benchmark: GFLOP/s of PackedLinear (Exact / Fast) vs the `gemm`
//! crate, and max_pool time per 272-token document in two weight regimes.
//! Run with `cargo bench -p nsparse-kernels` (about a minute on 2 cores).

use nsparse_kernels::{
    add_layer_norm, attention, gelu_erf, PackedLinear, PackedVocabProjection, Precision,
};
use std::time::Instant;

/// Deterministic pseudo-random numbers (xorshift) in [-1, 1).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}
extern "C" {
    fn clock_gettime(clk: i32, ts: *mut Timespec) -> i32;
}

/// Process CPU seconds (all threads), CLOCK_PROCESS_CPUTIME_ID = 2 on Linux.
fn cpu_now() -> f64 {
    let mut t = Timespec { sec: 0, nsec: 0 };
    // SAFETY: valid out-pointer for clock_gettime.
    unsafe { clock_gettime(2, &mut t) };
    t.sec as f64 + t.nsec as f64 * 1e-9
}

/// Timing of one benchmarked closure.
#[derive(Clone, Copy)]
struct T {
    /// Minimum wall seconds over the reps (least disturbed by other load).
    wall: f64,
    /// Minimum process CPU seconds over the reps, divided by 2 cores: what
    /// the wall time would be on an otherwise idle 2-core machine (rayon
    /// spin-waiting counts as busy, so this is not flattering).
    cpu2: f64,
}

fn time(reps: usize, mut f: impl FnMut()) -> T {
    f();
    let mut wall = f64::INFINITY;
    let mut cpu = f64::INFINITY;
    for _ in 0..reps {
        let c = cpu_now();
        let t = Instant::now();
        f();
        wall = wall.min(t.elapsed().as_secs_f64());
        cpu = cpu.min(cpu_now() - c);
    }
    T {
        wall,
        cpu2: cpu / 2.0,
    }
}

fn gemm_crate(x: &[f32], wt: &[f32], m: usize, n: usize, k: usize, out: &mut [f32]) {
    // out[m×n] = x[m×k] · W^T, W given n×k row-major: rhs(kk, j) = W[j][kk]
    // i.e. rhs column stride k, row stride 1.
    // SAFETY: strides describe the given slices exactly.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            x.as_ptr(),
            1,
            k as isize,
            wt.as_ptr(),
            k as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        )
    }
}

/// ‖a − b‖ / ‖b‖.
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        num += (x as f64 - y as f64).powi(2);
        den += (y as f64).powi(2);
    }
    (num / den).sqrt()
}

fn bench_linear(rng: &mut Rng) {
    println!("== PackedLinear GFLOP/s, 2 threads: wall-clock [cpu-normalised = flop/(process cpu s / 2)] ==");
    println!(
        "{:>5} {:>5} {:>5} | {:>15} {:>15} {:>15} | {:>10} {:>10} | {:>9} {:>9}",
        "m",
        "n",
        "k",
        "exact",
        "fast(i16)",
        "gemm crate",
        "exact/gemm",
        "fast/exact",
        "fast err",
        "w/outlier"
    );
    for &m in &[272usize, 2048] {
        for &(n, k) in &[(2304usize, 768usize), (768, 768), (3072, 768), (768, 3072)] {
            let w = rng.vec(n * k, 0.05);
            let b = rng.vec(n, 0.1);
            let mut x = rng.vec(m * k, 1.0);
            let mut out = vec![0.0f32; m * n];
            let mut exact_out = vec![0.0f32; m * n];
            let flop = 2.0 * (m * n * k) as f64;
            let reps = if m > 1000 { 4 } else { 10 };
            let ex = PackedLinear::new(&w, n, k, Some(&b), Precision::Exact);
            let te = time(reps, || ex.forward(&x, m, &mut exact_out));
            let fa = PackedLinear::new(&w, n, k, Some(&b), Precision::Fast);
            let tf = time(reps, || fa.forward(&x, m, &mut out));
            let err = rel_err(&out, &exact_out);
            // BERT-like activation outliers: two feature columns 20× larger.
            for row in x.chunks_exact_mut(k) {
                row[3] *= 20.0;
                row[k / 2] *= 20.0;
            }
            ex.forward(&x, m, &mut exact_out);
            fa.forward(&x, m, &mut out);
            let err_out = rel_err(&out, &exact_out);
            drop((ex, fa));
            let tg = time(reps, || gemm_crate(&x, &w, m, n, k, &mut out));
            let g = |t: f64| flop / t / 1e9;
            let f = |t: T| format!("{:>6.1} [{:>6.1}]", g(t.wall), g(t.cpu2));
            println!(
                "{:>5} {:>5} {:>5} | {} {} {} | {:>10.2} {:>10.2} | {:>9.1e} {:>9.1e}",
                m,
                n,
                k,
                f(te),
                f(tf),
                f(tg),
                tg.wall / te.wall,
                te.wall / tf.wall,
                err,
                err_out
            );
        }
    }
}

/// Plain fp32 baseline: all m × vocab logits via the packed GEMM, then max.
fn gemm_then_max(lin: &PackedLinear, h: &[f32], m: usize, logits: &mut [f32], out: &mut [f32]) {
    lin.forward(h, m, logits);
    let vocab = out.len();
    out.fill(0.0);
    for row in logits.chunks_exact(vocab) {
        for (o, &l) in out.iter_mut().zip(row) {
            *o = o.max(l);
        }
    }
    for o in out.iter_mut() {
        *o = o.ln_1p();
    }
}

fn bench_pool(rng: &mut Rng) {
    let (m, vocab, k) = (272usize, 30522usize, 768usize);
    println!("== max_pool, one {m}-token doc, vocab {vocab}, k {k} (2 threads) ==");
    let h = rng.vec(m * k, 1.0);
    // Uniform(±0.108) weights give logits of std ≈ 1.
    let w = rng.vec(vocab * k, 0.108);
    let mut out = vec![0.0f32; vocab];
    let mut logits = vec![0.0f32; m * vocab];
    for (name, boff) in [("random-like (b=0)", 0.0f32), ("trained-like (b≈-3)", -3.0)] {
        let b: Vec<f32> = (0..vocab).map(|_| boff + 0.1 * rng.next()).collect();
        let lin_b = PackedLinear::new(&w, vocab, k, Some(&b), Precision::Exact);
        let tb = time(3, || gemm_then_max(&lin_b, &h, m, &mut logits, &mut out));
        let positive = logits.iter().filter(|&&l| l > 0.0).count() as f64 / logits.len() as f64;
        let nonzero = out.iter().filter(|&&o| o > 0.0).count();
        let base = out.clone();
        drop(lin_b);
        let ex = PackedVocabProjection::new(&w, vocab, k, &b, Precision::Exact);
        let mut recomputed = 0;
        let te = time(5, || recomputed = ex.max_pool_stats(&h, m, &mut out));
        let ediff = out
            .iter()
            .zip(&base)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        drop(ex);
        let fa = PackedVocabProjection::new(&w, vocab, k, &b, Precision::Fast);
        let tf = time(5, || fa.max_pool(&h, m, &mut out));
        let fdiff = out
            .iter()
            .zip(&base)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        println!(
            "{name:<22} positive logits {:.3}%, nonzero outputs {nonzero}",
            positive * 100.0
        );
        println!(
            "  fp32 GEMM+max {:7.1} ms | exact {:7.1} ms ({:.2}x, {} of {} logits recomputed, max |Δ| vs fp32 {:.1e}) | fast {:7.1} ms ({:.2}x, max |Δ| {:.1e})",
            tb.wall * 1e3,
            te.wall * 1e3,
            tb.wall / te.wall,
            recomputed,
            m * vocab,
            ediff,
            tf.wall * 1e3,
            tb.wall / tf.wall,
            fdiff
        );
        println!(
            "  cpu-normalised:  fp32 GEMM+max {:7.1} ms | exact {:7.1} ms ({:.2}x) | fast {:7.1} ms ({:.2}x)",
            tb.cpu2 * 1e3,
            te.cpu2 * 1e3,
            tb.cpu2 / te.cpu2,
            tf.cpu2 * 1e3,
            tb.cpu2 / tf.cpu2
        );
    }
}

fn bench_misc(rng: &mut Rng) {
    let (m, hidden, heads, ffn) = (272usize, 768usize, 12usize, 3072usize);
    println!("== other per-layer kernels, m = {m} (2 threads) ==");
    let qkv = rng.vec(m * 3 * hidden, 1.0);
    let mut out = vec![0.0f32; m * hidden];
    let t = time(10, || attention(&qkv, m, hidden, heads, &mut out));
    let flop = 4.0 * (m * m * hidden) as f64;
    println!(
        "attention (12 heads):      {:6.2} ms [{:6.2} cpu-norm], {:.1} GFLOP/s",
        t.wall * 1e3,
        t.cpu2 * 1e3,
        flop / t.wall / 1e9
    );
    let x0 = rng.vec(m * ffn, 3.0);
    let mut x = x0.clone();
    let t = time(10, || {
        x.copy_from_slice(&x0);
        gelu_erf(&mut x)
    });
    println!(
        "gelu_erf ({m}×{ffn}):     {:6.2} ms (incl. copy), single thread",
        t.wall * 1e3
    );
    let g = vec![1.0f32; hidden];
    let b = vec![0.0f32; hidden];
    let r = rng.vec(m * hidden, 1.0);
    let mut y = rng.vec(m * hidden, 1.0);
    let t = time(10, || {
        add_layer_norm(&mut y, Some(&r), hidden, &g, &b, 1e-12)
    });
    println!(
        "add_layer_norm ({m}×{hidden}): {:6.2} ms, single thread",
        t.wall * 1e3
    );
}

fn main() {
    let mut rng = Rng(0x9E3779B97F4A7C15);
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let want = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    if want("linear") {
        bench_linear(&mut rng);
    }
    if want("misc") {
        bench_misc(&mut rng);
    }
    if want("pool") {
        bench_pool(&mut rng);
    }
}
