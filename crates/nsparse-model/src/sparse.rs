//! Sparse vectors over a vocabulary, their dot product and OpenSearch's ingest pruning.

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// A sparse vector: strictly increasing token ids with their (positive) weights.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SparseVector {
    ids: Vec<u32>,
    weights: Vec<f32>,
}

impl SparseVector {
    /// The empty vector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a vector from `(id, weight)` pairs in any order; zero weights are dropped and
    /// duplicate ids keep their largest weight.
    pub fn from_pairs(mut pairs: Vec<(u32, f32)>) -> Self {
        pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
        pairs.dedup_by_key(|p| p.0);
        let (ids, weights) = pairs.into_iter().filter(|p| p.1 != 0.0).unzip();
        SparseVector { ids, weights }
    }

    /// Builds a vector from a dense array, keeping the non-zero entries.
    pub fn from_dense(dense: &[f32]) -> Self {
        let (ids, weights) = dense
            .iter()
            .enumerate()
            .filter(|(_, w)| **w != 0.0)
            .map(|(i, w)| (i as u32, *w))
            .unzip();
        SparseVector { ids, weights }
    }

    /// A vector from ids that are already strictly increasing with non-zero weights (the
    /// projection's output); checked in debug builds.
    pub(crate) fn from_sorted(ids: Vec<u32>, weights: Vec<f32>) -> Self {
        debug_assert_eq!(ids.len(), weights.len());
        debug_assert!(ids.windows(2).all(|w| w[0] < w[1]));
        debug_assert!(weights.iter().all(|&w| w != 0.0));
        SparseVector { ids, weights }
    }

    /// The element-wise maximum of two vectors (over the union of their ids): how the windows
    /// of a chunked document are pooled.
    pub(crate) fn max_with(&self, other: &SparseVector) -> SparseVector {
        let mut out = SparseVector {
            ids: Vec::with_capacity(self.len() + other.len()),
            weights: Vec::with_capacity(self.len() + other.len()),
        };
        let (mut i, mut j) = (0, 0);
        while i < self.len() && j < other.len() {
            let (a, b) = (self.ids[i], other.ids[j]);
            let (id, w) = match a.cmp(&b) {
                std::cmp::Ordering::Less => (a, self.weights[i]),
                std::cmp::Ordering::Greater => (b, other.weights[j]),
                std::cmp::Ordering::Equal => (a, self.weights[i].max(other.weights[j])),
            };
            i += usize::from(a <= b);
            j += usize::from(b <= a);
            out.ids.push(id);
            out.weights.push(w);
        }
        out.ids.extend_from_slice(&self.ids[i..]);
        out.weights.extend_from_slice(&self.weights[i..]);
        out.ids.extend_from_slice(&other.ids[j..]);
        out.weights.extend_from_slice(&other.weights[j..]);
        out
    }

    /// Token ids, increasing.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Weights, parallel to [`ids`](Self::ids).
    pub fn weights(&self) -> &[f32] {
        &self.weights
    }

    /// Number of non-zero entries.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when no entry is non-zero.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The weight of `id`, 0 when absent.
    pub fn get(&self, id: u32) -> f32 {
        self.ids.binary_search(&id).map_or(0.0, |i| self.weights[i])
    }

    /// `(id, weight)` pairs in id order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, f32)> + '_ {
        self.ids.iter().copied().zip(self.weights.iter().copied())
    }

    /// Pairs sorted by weight, descending (ties by id).
    pub fn by_weight_desc(&self) -> Vec<(u32, f32)> {
        let mut pairs: Vec<_> = self.iter().collect();
        pairs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        pairs
    }

    /// Dot product, the relevance score of the neural sparse models (accumulated in f64).
    pub fn dot(&self, other: &SparseVector) -> f32 {
        let (mut i, mut j, mut sum) = (0, 0, 0.0f64);
        while i < self.ids.len() && j < other.ids.len() {
            match self.ids[i].cmp(&other.ids[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    sum += f64::from(self.weights[i]) * f64::from(other.weights[j]);
                    i += 1;
                    j += 1;
                }
            }
        }
        sum as f32
    }

    /// Keeps the entries for which `keep(id, weight)` holds.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(u32, f32) -> bool) {
        let mut k = 0;
        for i in 0..self.ids.len() {
            if keep(self.ids[i], self.weights[i]) {
                self.ids[k] = self.ids[i];
                self.weights[k] = self.weights[i];
                k += 1;
            }
        }
        self.ids.truncate(k);
        self.weights.truncate(k);
    }

    /// Applies an ingest pruning rule (see [`Pruning`]).
    pub fn prune(&mut self, pruning: Pruning) {
        match pruning {
            Pruning::None => {}
            Pruning::TopK(k) => {
                if self.len() > k {
                    let order = self.by_weight_desc();
                    let mut keep: Vec<u32> = order[..k].iter().map(|p| p.0).collect();
                    keep.sort_unstable();
                    self.retain(|id, _| keep.binary_search(&id).is_ok());
                }
            }
            Pruning::MaxRatio(ratio) => {
                let max = self.weights.iter().copied().fold(0.0f32, f32::max);
                self.retain(|_, w| w >= ratio * max);
            }
            Pruning::AbsValue(threshold) => self.retain(|_, w| w >= threshold),
            Pruning::AlphaMass(alpha) => {
                // OpenSearch sums in double, stores the total as float, accumulates in float.
                let total = self.weights.iter().map(|w| f64::from(*w)).sum::<f64>() as f32;
                let mut prefix = 0.0f32;
                let mut keep = Vec::new();
                for (id, w) in self.by_weight_desc() {
                    prefix += w;
                    if prefix <= alpha * total {
                        keep.push(id);
                    }
                }
                keep.sort_unstable();
                self.retain(|id, _| keep.binary_search(&id).is_ok());
            }
        }
    }
}

/// OpenSearch's `sparse_encoding` ingest pruning (`prune_type` + `prune_ratio`), with the same
/// semantics as neural-search's `PruneUtils`:
/// - `top_k`: keep the k highest weights;
/// - `max_ratio`: keep weights ≥ ratio × the largest weight;
/// - `alpha_mass`: walking weights in decreasing order, keep each while the running sum stays
///   ≤ alpha × the total;
/// - `abs_value`: keep weights ≥ the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Pruning {
    /// Keep everything.
    #[default]
    None,
    /// `top_k`.
    TopK(usize),
    /// `max_ratio`, in [0, 1).
    MaxRatio(f32),
    /// `alpha_mass`, in [0, 1).
    AlphaMass(f32),
    /// `abs_value`, ≥ 0.
    AbsValue(f32),
}

impl Pruning {
    /// Parses OpenSearch's `prune_type` name and `prune_ratio`, validated like OpenSearch does.
    pub fn from_opensearch(prune_type: &str, prune_ratio: f32) -> Result<Self> {
        let bad = |allowed: &str| ModelError::InvalidArgument {
            what: "prune_ratio",
            problem: format!("{prune_ratio} is not valid for prune_type {prune_type}: {allowed}"),
        };
        Ok(match prune_type {
            "none" | "" => Pruning::None,
            "top_k" => {
                if !(prune_ratio > 0.0 && prune_ratio.fract() == 0.0) {
                    return Err(bad("a positive integer is required"));
                }
                Pruning::TopK(prune_ratio as usize)
            }
            "max_ratio" | "alpha_mass" => {
                if !(0.0..1.0).contains(&prune_ratio) {
                    return Err(bad("it must be in [0, 1)"));
                }
                if prune_type == "max_ratio" {
                    Pruning::MaxRatio(prune_ratio)
                } else {
                    Pruning::AlphaMass(prune_ratio)
                }
            }
            "abs_value" => {
                if !(prune_ratio >= 0.0 && prune_ratio.is_finite()) {
                    return Err(bad("it must be a finite number ≥ 0"));
                }
                Pruning::AbsValue(prune_ratio)
            }
            other => {
                return Err(ModelError::InvalidArgument {
                    what: "prune_type",
                    problem: format!(
                    "\"{other}\" is unknown; use none, top_k, max_ratio, alpha_mass or abs_value"
                ),
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(pairs: &[(u32, f32)]) -> SparseVector {
        SparseVector::from_pairs(pairs.to_vec())
    }

    fn kept_ids(mut vector: SparseVector, pruning: Pruning) -> Vec<u32> {
        vector.prune(pruning);
        vector.ids().to_vec()
    }

    #[test]
    fn from_pairs_sorts_dedups_and_drops_zeros() {
        let s = v(&[(5, 1.0), (2, 0.0), (1, 3.0), (5, 2.0)]);
        assert_eq!(s.ids(), &[1, 5]);
        assert_eq!(s.weights(), &[3.0, 2.0]);
        assert_eq!(s.get(5), 2.0);
        assert_eq!(s.get(2), 0.0);
    }

    #[test]
    fn max_with_is_the_element_wise_maximum() {
        let a = v(&[(1, 2.0), (3, 1.5), (9, 4.0), (70_000, 1.0)]);
        let b = v(&[(0, 1.0), (3, 2.0), (9, 0.5), (10, 7.0), (250_001, 3.0)]);
        let want = v(&[
            (0, 1.0),
            (1, 2.0),
            (3, 2.0),
            (9, 4.0),
            (10, 7.0),
            (70_000, 1.0),
            (250_001, 3.0),
        ]);
        assert_eq!(a.max_with(&b), want);
        assert_eq!(b.max_with(&a), want);
        assert_eq!(a.max_with(&SparseVector::new()), a);
        assert_eq!(SparseVector::new().max_with(&b), b);
    }

    #[test]
    fn dot_matches_dense_dot() {
        let a = v(&[(1, 2.0), (3, 1.5), (9, 4.0)]);
        let b = v(&[(0, 1.0), (3, 2.0), (9, 0.5), (10, 7.0)]);
        assert_eq!(a.dot(&b), 1.5 * 2.0 + 4.0 * 0.5);
        assert_eq!(a.dot(&SparseVector::new()), 0.0);
    }

    // The cases below are the ones of OpenSearch neural-search's PruneUtilsTests.
    #[test]
    fn pruning_matches_opensearch() {
        let s = v(&[(0, 10.0), (1, 8.0), (2, 5.0), (3, 2.0)]);
        assert_eq!(kept_ids(s.clone(), Pruning::TopK(2)), vec![0, 1]);
        assert_eq!(kept_ids(s.clone(), Pruning::MaxRatio(0.7)), vec![0, 1]);
        assert_eq!(kept_ids(s.clone(), Pruning::AbsValue(5.0)), vec![0, 1, 2]);
        let s = v(&[(0, 10.0), (1, 6.0), (2, 3.0), (3, 1.0)]);
        assert_eq!(kept_ids(s.clone(), Pruning::AlphaMass(0.8)), vec![0, 1]);
        // The element that crosses the mass is dropped (current OpenSearch semantics).
        assert_eq!(kept_ids(s, Pruning::AlphaMass(0.7)), vec![0]);
        assert_eq!(
            kept_ids(SparseVector::new(), Pruning::TopK(5)),
            Vec::<u32>::new()
        );
    }

    #[test]
    fn pruning_ratio_validation() {
        assert!(Pruning::from_opensearch("top_k", 2.5).is_err());
        assert!(Pruning::from_opensearch("top_k", 0.0).is_err());
        assert!(Pruning::from_opensearch("max_ratio", 1.0).is_err());
        assert!(Pruning::from_opensearch("alpha_mass", -0.1).is_err());
        assert!(Pruning::from_opensearch("abs_value", -1.0).is_err());
        assert!(Pruning::from_opensearch("bogus", 0.5).is_err());
        assert_eq!(
            Pruning::from_opensearch("top_k", 3.0).unwrap(),
            Pruning::TopK(3)
        );
        assert_eq!(
            Pruning::from_opensearch("max_ratio", 0.1).unwrap(),
            Pruning::MaxRatio(0.1)
        );
    }
}
