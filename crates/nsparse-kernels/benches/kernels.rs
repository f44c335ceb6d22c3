//! Kernel benchmark: GFLOP/s of PackedLinear (Exact / Fast) vs the `gemm`
//! crate, and max_pool time per 272-token document in two weight regimes.
//! Run with `cargo bench -p nsparse-kernels` (about a minute on 2 cores).

use nsparse_kernels::{PackedLinear, Precision};
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

/// Minimum wall time of `reps` runs after one warm-up, in seconds.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut ts: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    // The minimum is the least disturbed by other processes on the machine.
    ts.sort_by(|a, b| a.partial_cmp(b).unwrap());
    ts[0]
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

fn bench_linear(rng: &mut Rng) {
    println!("== PackedLinear GFLOP/s (2 threads) ==");
    println!(
        "{:>5} {:>5} {:>5} | {:>8} {:>8} {:>8} | {:>10} {:>10}",
        "m", "n", "k", "exact", "fast", "gemm-crt", "exact/gemm", "fast/exact"
    );
    for &m in &[272usize, 2048] {
        for &(n, k) in &[(2304usize, 768usize), (768, 768), (3072, 768), (768, 3072)] {
            let w = rng.vec(n * k, 0.05);
            let b = rng.vec(n, 0.1);
            let x = rng.vec(m * k, 1.0);
            let mut out = vec![0.0f32; m * n];
            let flop = 2.0 * (m * n * k) as f64;
            let reps = if m > 1000 { 5 } else { 11 };
            let ex = PackedLinear::new(&w, n, k, Some(&b), Precision::Exact);
            let te = time(reps, || ex.forward(&x, m, &mut out));
            drop(ex);
            let fa = PackedLinear::new(&w, n, k, Some(&b), Precision::Fast);
            let tf = time(reps, || fa.forward(&x, m, &mut out));
            drop(fa);
            let tg = time(reps, || gemm_crate(&x, &w, m, n, k, &mut out));
            let g = |t: f64| flop / t / 1e9;
            println!(
                "{:>5} {:>5} {:>5} | {:>8.1} {:>8.1} {:>8.1} | {:>10.2} {:>10.2}",
                m,
                n,
                k,
                g(te),
                g(tf),
                g(tg),
                tg / te,
                te / tf
            );
        }
    }
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
}
