//! Generator of realistic learned-sparse vectors for tests and benchmarks.
//!
//! All shape parameters live in [`SynthParams`] so they can be re-fitted to real
//! encoded vectors (e.g. SciFact through the project's model) later.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Shape of generated documents and queries.
#[derive(Debug, Clone)]
pub struct SynthParams {
    /// Vocabulary size (token ids `0..vocab`).
    pub vocab: u32,
    /// Zipf exponent of token frequencies (rank r has probability ∝ r^-s).
    pub zipf_s: f64,
    /// Median non-zeros per document (log-normal).
    pub nnz_median: f64,
    /// Log-space standard deviation of non-zeros per document.
    pub nnz_sigma: f64,
    /// Cap on non-zeros per document.
    pub nnz_max: usize,
    /// Median document weight (log-normal).
    pub weight_median: f64,
    /// Log-space standard deviation of document weights.
    pub weight_sigma: f64,
    /// Document weights are clamped to `[weight_min, weight_max]`.
    pub weight_min: f64,
    /// See `weight_min`.
    pub weight_max: f64,
    /// Query token count is uniform in this inclusive range.
    pub query_tokens: (usize, usize),
    /// Query (idf-like) weights range: rank-1 tokens get the low end, the rarest the high end.
    pub query_weight: (f64, f64),
}

impl Default for SynthParams {
    fn default() -> Self {
        SynthParams {
            vocab: 30_522,
            zipf_s: 1.0,
            nnz_median: 180.0,
            nnz_sigma: 0.35,
            nnz_max: 600,
            weight_median: 0.45,
            weight_sigma: 0.75,
            weight_min: 0.01,
            weight_max: 3.0,
            query_tokens: (5, 11),
            query_weight: (0.5, 8.0),
        }
    }
}

/// Deterministic generator (seeded).
pub struct Synth {
    p: SynthParams,
    rng: StdRng,
    cdf: Vec<f64>,
    perm: Vec<u32>,
}

impl Synth {
    /// New generator with `seed`.
    pub fn new(p: SynthParams, seed: u64) -> Synth {
        let mut rng = StdRng::seed_from_u64(seed);
        let v = p.vocab.max(1) as usize;
        let mut cdf = Vec::with_capacity(v);
        let mut acc = 0.0;
        for r in 1..=v {
            acc += (r as f64).powf(-p.zipf_s);
            cdf.push(acc);
        }
        for c in &mut cdf {
            *c /= acc;
        }
        // Frequent tokens are scattered over the id space, as in a real vocabulary.
        let mut perm: Vec<u32> = (0..v as u32).collect();
        for i in (1..v).rev() {
            let j = rng.random_range(0..=i);
            perm.swap(i, j);
        }
        Synth { p, rng, cdf, perm }
    }

    fn normal(&mut self) -> f64 {
        let u1: f64 = self.rng.random::<f64>().max(1e-300);
        let u2: f64 = self.rng.random();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    fn rank(&mut self) -> usize {
        let u: f64 = self.rng.random();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }

    /// A document vector (token ids unique, sorted).
    pub fn doc(&mut self) -> Vec<(u32, f32)> {
        let n = (self.p.nnz_median * (self.p.nnz_sigma * self.normal()).exp()).round() as usize;
        let n = n.clamp(1, self.p.nnz_max);
        let n = n.min(self.cdf.len());
        let mut toks: Vec<u32> = Vec::with_capacity(n);
        // Draw distinct tokens: top up after de-duplication a few rounds.
        for _ in 0..16 {
            while toks.len() < n {
                let r = self.rank();
                toks.push(self.perm[r]);
            }
            toks.sort_unstable();
            toks.dedup();
            if toks.len() >= n {
                break;
            }
        }
        toks.into_iter()
            .map(|t| {
                let w = (self.p.weight_median * (self.p.weight_sigma * self.normal()).exp())
                    .clamp(self.p.weight_min, self.p.weight_max);
                (t, w as f32)
            })
            .collect()
    }

    /// A query vector with idf-like weights (rarer tokens weigh more).
    pub fn query(&mut self) -> Vec<(u32, f32)> {
        let (lo, hi) = self.p.query_tokens;
        let n = self.rng.random_range(lo..=hi.max(lo));
        let lv = (self.cdf.len() as f64).ln().max(1.0);
        let mut q: Vec<(u32, f32)> = (0..n)
            .map(|_| {
                let r = self.rank();
                let f = ((r + 1) as f64).ln() / lv;
                let noise = 1.0 + 0.2 * self.normal();
                let w = (self.p.query_weight.0
                    + (self.p.query_weight.1 - self.p.query_weight.0) * f)
                    * noise;
                (
                    self.perm[r],
                    w.clamp(self.p.query_weight.0, self.p.query_weight.1) as f32,
                )
            })
            .collect();
        q.sort_by_key(|p| p.0);
        q.dedup_by_key(|p| p.0);
        q
    }

    /// A token-id sequence (for BM25) of about `len` tokens.
    pub fn text(&mut self, len: usize) -> Vec<u32> {
        (0..len)
            .map(|_| {
                let r = self.rank();
                self.perm[r]
            })
            .collect()
    }
}
