//! Generator of realistic learned-sparse vectors for tests and benchmarks.
//!
//! The default model ([`SynthParams::default`], `fitted: true`) is fitted to
//! SciFact encoded with the real SPLADE-tiny document encoder and the
//! built-in inference-free (idf) query model: the most frequent 2,048
//! document tokens keep their real bert-base-uncased ids and document
//! frequencies, rarer tokens follow the fitted power law, document weights
//! follow the real weight distribution, and queries have the real length
//! distribution, the real mix of frequent and rare tokens and idf-like weights
//! that are a fixed function of the token. The fit and a side-by-side
//! comparison are produced by `scripts/synth_fit.py` (see BENCHMARKS.md);
//! nothing here reads the real data at run time.
//!
//! `fitted: false` selects the older Zipf model driven by the remaining fields
//! ([`SynthParams::zipf`]), which also works for small vocabularies.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::synth_fitted as fitted;

/// Shape of generated documents and queries.
#[derive(Debug, Clone)]
pub struct SynthParams {
    /// Vocabulary size (token ids `0..vocab`).
    pub vocab: u32,
    /// Use the model fitted to real SPLADE vectors (token identities and
    /// frequencies, weights, queries). Then only `vocab`, `nnz_median`,
    /// `nnz_sigma` and `nnz_max` of the fields below apply; head tokens whose
    /// real id is `≥ vocab` are left out.
    pub fitted: bool,
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
    /// The model fitted to real SPLADE-tiny / idf-query vectors of SciFact.
    fn default() -> Self {
        SynthParams {
            fitted: true,
            nnz_median: fitted::NNZ_MEDIAN,
            nnz_sigma: fitted::NNZ_SIGMA,
            nnz_max: fitted::NNZ_MAX,
            ..SynthParams::zipf()
        }
    }
}

impl SynthParams {
    /// The earlier hand-set Zipf model (not fitted to real data).
    pub fn zipf() -> Self {
        SynthParams {
            vocab: 30_522,
            fitted: false,
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

/// First id used for tail tokens: bert-base-uncased's ids below 999 are
/// `[PAD]`, `[unusedN]` and special tokens, which encoders never emit.
const FIRST_WORD_ID: u32 = 999;
/// Head tokens per thinning group (sorted by frequency, so a group's first
/// probability bounds the rest).
const GROUP: usize = 32;

/// The fitted token model, built once per generator.
struct Fitted {
    /// Head tokens by decreasing document frequency: (id, frequency fraction).
    head: Vec<(u32, f64)>,
    /// Token id of each tail rank (rank `HEAD.len() + 1 + i` at index `i`).
    tail_ids: Vec<u32>,
    /// Cumulative tail probabilities (power law), normalised.
    tail_cdf: Vec<f64>,
    /// Document frequency fraction of the last head token (scale of the tail law).
    tail_base: f64,
}

/// Deterministic generator (seeded).
pub struct Synth {
    p: SynthParams,
    rng: StdRng,
    cdf: Vec<f64>,
    perm: Vec<u32>,
    fit: Option<Fitted>,
}

impl Synth {
    /// New generator with `seed`.
    pub fn new(p: SynthParams, seed: u64) -> Synth {
        let mut rng = StdRng::seed_from_u64(seed);
        let v = p.vocab.max(1) as usize;
        let mut cdf = Vec::new();
        let mut perm = Vec::new();
        let mut fit = None;
        if p.fitted {
            fit = Some(Fitted::new(p.vocab));
        } else {
            cdf.reserve(v);
            let mut acc = 0.0;
            for r in 1..=v {
                acc += (r as f64).powf(-p.zipf_s);
                cdf.push(acc);
            }
            for c in &mut cdf {
                *c /= acc;
            }
            // Frequent tokens are scattered over the id space, as in a real vocabulary.
            perm = (0..v as u32).collect();
            for i in (1..v).rev() {
                let j = rng.random_range(0..=i);
                perm.swap(i, j);
            }
        }
        Synth {
            p,
            rng,
            cdf,
            perm,
            fit,
        }
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

    fn nnz(&mut self) -> usize {
        let n = (self.p.nnz_median * (self.p.nnz_sigma * self.normal()).exp()).round() as usize;
        n.clamp(1, self.p.nnz_max.max(1))
    }

    /// `n` documents `doc-0`, `doc-1`, … with vectors from [`Synth::doc`]
    /// (no BM25 tokens, empty sources): the benchmark and profiling corpus.
    pub fn documents(&mut self, n: usize) -> Vec<nsparse_index::Document> {
        (0..n)
            .map(|i| nsparse_index::Document {
                id: format!("doc-{i}"),
                vector: self.doc(),
                tokens: None,
                source: Vec::new(),
            })
            .collect()
    }

    /// A document vector (token ids unique, sorted).
    pub fn doc(&mut self) -> Vec<(u32, f32)> {
        if self.fit.is_some() {
            return self.fitted_doc();
        }
        let n = self.nnz().min(self.cdf.len());
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

    fn fitted_doc(&mut self) -> Vec<(u32, f32)> {
        let n = self.nnz();
        let Some(fit) = self.fit.as_ref() else {
            return Vec::new();
        };
        // Head: each token independently with its document frequency, scaled
        // by this document's length; geometric skips over a group bounded by
        // its first (largest) probability, then thinning.
        let scale = n as f64 / self.p.nnz_median;
        let mut toks: Vec<u32> = Vec::with_capacity(n + 8);
        for group in fit.head.chunks(GROUP) {
            let pmax = (group[0].1 * scale).min(1.0);
            if pmax <= 0.0 {
                continue;
            }
            let mut i = 0usize;
            loop {
                if pmax < 1.0 {
                    let u: f64 = self.rng.random::<f64>().max(1e-300);
                    i += (u.ln() / (1.0 - pmax).ln()).floor() as usize;
                }
                if i >= group.len() {
                    break;
                }
                let (t, p) = group[i];
                if self.rng.random::<f64>() * pmax < (p * scale).min(1.0) {
                    toks.push(t);
                }
                i += 1;
            }
        }
        // Tail: fill up to `n` from the power law over the remaining ranks.
        let want = n.max(toks.len());
        let head_n = toks.len();
        for _ in 0..16 {
            while toks.len() < want {
                let u: f64 = self.rng.random();
                let r = fit.tail_cdf.partition_point(|&c| c < u);
                toks.push(fit.tail_ids[r.min(fit.tail_ids.len() - 1)]);
            }
            toks[head_n..].sort_unstable();
            let mut tail = toks.split_off(head_n);
            tail.dedup();
            toks.extend(tail);
            if toks.len() >= want {
                break;
            }
        }
        toks.sort_unstable();
        toks.into_iter()
            .map(|t| (t, self.fitted_weight()))
            .collect()
    }

    /// A document weight from the fitted quantile function (linear between quantiles).
    fn fitted_weight(&mut self) -> f32 {
        let q = &fitted::WEIGHT_QUANTILES;
        let x = self.rng.random::<f64>() * q.len() as f64 - 0.5;
        if x <= 0.0 {
            return q[0];
        }
        let i = x.floor() as usize;
        if i + 1 >= q.len() {
            return q[q.len() - 1];
        }
        let f = (x - i as f64) as f32;
        q[i] + (q[i + 1] - q[i]) * f
    }

    /// A query vector with idf-like weights (rarer tokens weigh more).
    pub fn query(&mut self) -> Vec<(u32, f32)> {
        if self.fit.is_some() {
            return self.fitted_query();
        }
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

    fn fitted_query(&mut self) -> Vec<(u32, f32)> {
        let lens = &fitted::QUERY_LEN_QUANTILES;
        let n = lens[self.rng.random_range(0..lens.len())] as usize;
        let Some(fit) = self.fit.as_ref() else {
            return Vec::new();
        };
        let ranks = fit.head.len() + fit.tail_ids.len();
        let mut q: Vec<(u32, f32)> = Vec::with_capacity(n);
        for _ in 0..n {
            let u: f64 = self.rng.random();
            let (rank, absent) = if u < fitted::QUERY_ABSENT {
                // Real queries contain words no document has: the rarest ranks.
                (ranks - self.rng.random_range(0..ranks / 8 + 1), true)
            } else {
                let mut u = self.rng.random::<f64>() * (1.0 - fitted::QUERY_ABSENT);
                let mut b = 0;
                while b + 1 < fitted::QUERY_RANK_BUCKETS.len() && u >= fitted::QUERY_RANK_BUCKETS[b]
                {
                    u -= fitted::QUERY_RANK_BUCKETS[b];
                    b += 1;
                }
                // Buckets are [4^b, 4^(b+1)); log-uniform inside.
                let lo = 4f64.powi(b as i32);
                let hi = (lo * 4.0).min(ranks as f64 + 1.0).max(lo + 1.0);
                let r = (lo.ln() + self.rng.random::<f64>() * (hi.ln() - lo.ln())).exp();
                ((r.floor() as usize).clamp(1, ranks), false)
            };
            let (id, df) = fit.rank(rank);
            let w = if absent {
                fitted::QUERY_W_ABSENT
            } else {
                fitted::QUERY_W_A
                    + fitted::QUERY_W_B * df.ln()
                    + fitted::QUERY_W_SD * token_noise(id)
            };
            q.push((id, w.clamp(0.01, 12.0) as f32));
        }
        q.sort_by_key(|p| p.0);
        q.dedup_by_key(|p| p.0);
        q
    }

    /// A token-id sequence (for BM25) of about `len` tokens.
    pub fn text(&mut self, len: usize) -> Vec<u32> {
        if self.fit.is_some() {
            // Words of a text follow the document-frequency law too.
            let mut d = self.fitted_doc();
            let mut out = Vec::with_capacity(len);
            while out.len() < len && !d.is_empty() {
                let i = self.rng.random_range(0..d.len());
                out.push(d[i].0);
                if self.rng.random::<f64>() < 0.3 {
                    d.swap_remove(i);
                }
            }
            return out;
        }
        (0..len)
            .map(|_| {
                let r = self.rank();
                self.perm[r]
            })
            .collect()
    }
}

/// A fixed standard-normal value per token id (a query model gives a token
/// the same weight in every query).
fn token_noise(id: u32) -> f64 {
    let mut r = StdRng::seed_from_u64(0x9e37_79b9_7f4a_7c15 ^ id as u64);
    let u1: f64 = r.random::<f64>().max(1e-300);
    let u2: f64 = r.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

impl Fitted {
    fn new(vocab: u32) -> Fitted {
        let head: Vec<(u32, f64)> = fitted::HEAD
            .iter()
            .filter(|&&(t, _)| (t as u32) < vocab)
            .map(|&(t, f)| (t as u32, f as f64 / 65535.0))
            .collect();
        let in_head: std::collections::HashSet<u32> = head.iter().map(|h| h.0).collect();
        // Tail ids: a fixed permutation of the remaining word ids (independent
        // of the generator's seed, so documents and queries from different
        // generators share one vocabulary).
        let mut tail_ids: Vec<u32> = (FIRST_WORD_ID.min(vocab / 2)..vocab)
            .filter(|t| !in_head.contains(t))
            .collect();
        let mut rng = StdRng::seed_from_u64(0x5eed_7a11);
        for i in (1..tail_ids.len()).rev() {
            let j = rng.random_range(0..=i);
            tail_ids.swap(i, j);
        }
        if tail_ids.is_empty() {
            tail_ids.push(0);
        }
        let h = fitted::HEAD.len() as f64;
        let mut tail_cdf = Vec::with_capacity(tail_ids.len());
        let mut acc = 0.0;
        for i in 0..tail_ids.len() {
            acc += ((h + 1.0 + i as f64) / h).powf(-fitted::TAIL_ALPHA);
            tail_cdf.push(acc);
        }
        for c in &mut tail_cdf {
            *c /= acc;
        }
        let tail_base = fitted::HEAD.last().map_or(0.01, |x| x.1 as f64 / 65535.0);
        Fitted {
            head,
            tail_ids,
            tail_cdf,
            tail_base,
        }
    }

    /// Token id and document-frequency fraction of a 1-based frequency rank.
    fn rank(&self, r: usize) -> (u32, f64) {
        let h = self.head.len();
        if r <= h {
            return self.head[r - 1];
        }
        let i = (r - h - 1).min(self.tail_ids.len() - 1);
        let f = self.tail_base * ((r as f64) / fitted::HEAD.len() as f64).powf(-fitted::TAIL_ALPHA);
        (self.tail_ids[i], f.max(1e-7))
    }
}
