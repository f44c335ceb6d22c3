//! The FLOPS figure of the OpenSearch neural-sparse evaluation and average vector sizes.

use serde::Serialize;

/// Counts, for a set of sparse vectors, how many vectors have each token non-zero.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenCounts {
    vectors: u64,
    nonzeros: u64,
    // Dense by token id: vocabularies are ~30k tokens, so a Vec beats a map.
    per_token: Vec<u64>,
}

impl TokenCounts {
    /// No vectors yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one vector given as `(token, weight)`; zero weights do not count, and a token
    /// repeated within one vector counts once.
    pub fn add(&mut self, vector: impl IntoIterator<Item = (u32, f32)>) {
        let mut tokens: Vec<u32> = vector
            .into_iter()
            .filter(|&(_, w)| w != 0.0)
            .map(|(t, _)| t)
            .collect();
        tokens.sort_unstable();
        tokens.dedup();
        self.vectors += 1;
        self.nonzeros += tokens.len() as u64;
        for t in tokens {
            let t = t as usize;
            if t >= self.per_token.len() {
                self.per_token.resize(t + 1, 0);
            }
            self.per_token[t] += 1;
        }
    }

    /// Number of vectors added.
    pub fn vectors(&self) -> u64 {
        self.vectors
    }

    /// Mean number of non-zero tokens per vector (0 for no vectors).
    pub fn mean_nonzeros(&self) -> f64 {
        if self.vectors == 0 {
            0.0
        } else {
            self.nonzeros as f64 / self.vectors as f64
        }
    }

    /// Fraction of the vectors that have `token` non-zero.
    pub fn fraction(&self, token: u32) -> f64 {
        match self.per_token.get(token as usize) {
            Some(&c) if self.vectors > 0 => c as f64 / self.vectors as f64,
            _ => 0.0,
        }
    }
}

/// FLOPS as in the OpenSearch neural-sparse papers: `Σ_j p_q(j) · p_d(j)`, where `p_q(j)` and
/// `p_d(j)` are the fractions of queries and of documents whose vector has token `j` non-zero.
/// It is the expected number of token matches (multiply-adds) per query–document pair, so it
/// tracks the cost of scoring with an inverted index.
pub fn flops(queries: &TokenCounts, documents: &TokenCounts) -> f64 {
    let n = queries.per_token.len().min(documents.per_token.len());
    (0..n as u32)
        .map(|t| queries.fraction(t) * documents.fraction(t))
        .sum()
}

/// Sizes of the query and document vectors of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sparsity {
    /// [`flops`] of the queries against the documents.
    pub flops: f64,
    /// Mean non-zero tokens per query vector.
    pub avg_query_nonzeros: f64,
    /// Mean non-zero tokens per document vector.
    pub avg_doc_nonzeros: f64,
}

impl Sparsity {
    /// Summarises the two token counts.
    pub fn of(queries: &TokenCounts, documents: &TokenCounts) -> Self {
        Sparsity {
            flops: flops(queries, documents),
            avg_query_nonzeros: queries.mean_nonzeros(),
            avg_doc_nonzeros: documents.mean_nonzeros(),
        }
    }
}
