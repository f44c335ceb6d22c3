//! Ranking metrics with trec_eval's (and so pytrec_eval's) semantics, to 1e-6.
//!
//! Conventions, each checked against pytrec_eval (`pytrec-eval-terrier` 0.5.11, trec_eval 9)
//! by the fixture `tests/fixtures/metrics.json` that `scripts/eval/make_metric_fixtures.py`
//! records:
//! - Documents are ranked by [`trec_order`](crate::trec_order): score descending, then
//!   document id descending (byte order). The order the run lists them in does not matter.
//! - Relevant means grade ≥ 1. Unjudged documents and grades ≤ 0 are non-relevant.
//! - nDCG@k is trec_eval's `ndcg_cut_k`: linear gain (the grade), discount `log2(rank + 1)`,
//!   divided by the DCG of the ideal ranking of *all* judged relevant documents (retrieved or
//!   not) cut at k. A query with no relevant document scores 0.
//! - Recall@k is `recall_k`: relevant documents in the top k over all relevant documents of
//!   the query (0 when it has none), whatever k is.
//! - MAP@k is `map_cut_k`: the sum of precision at each relevant document within the top k,
//!   over all relevant documents of the query.
//! - MRR@k is trec_eval's `recip_rank` computed on the run cut at k: 1/rank of the first
//!   relevant document if it is within the top k, else 0. (BEIR's `evaluate_custom("mrr")`
//!   differs in two ways: it orders tied scores by insertion order rather than by id, and it
//!   divides by the number of qrels queries rather than the queries in the run. Neither
//!   matters when scores are untied and every judged query is in the run, as in `nsparse eval`.)
//! - P@k is `P_k`: relevant documents in the top k over k.
//! - The mean is over the queries present in both the qrels and the run, as pytrec_eval
//!   returns them and BEIR's `EvaluateRetrieval.evaluate` averages them: a run query without
//!   judgments is ignored, a judged query missing from the run is skipped (not counted as 0),
//!   a query in the run with no documents counts as 0, and a judged query with no relevant
//!   document counts as 0. [`crate::pipeline`] puts every judged query in the run, so its
//!   means are over all judged queries.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use crate::error::EvalError;
use crate::run::{Qrels, Run};

/// One measure at one cut-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Measure {
    /// nDCG@k (trec_eval `ndcg_cut_k`).
    Ndcg(usize),
    /// Recall@k (`recall_k`).
    Recall(usize),
    /// MRR@k (`recip_rank` of the run cut at k).
    Mrr(usize),
    /// MAP@k (`map_cut_k`).
    Map(usize),
    /// Precision@k (`P_k`).
    Precision(usize),
}

impl Measure {
    /// The four headline measures of `nsparse eval`: NDCG@10, Recall@100, MRR@10, MAP@100.
    pub const HEADLINE: [Measure; 4] = [
        Measure::Ndcg(10),
        Measure::Recall(100),
        Measure::Mrr(10),
        Measure::Map(100),
    ];

    /// The cut-off.
    pub fn k(self) -> usize {
        match self {
            Measure::Ndcg(k)
            | Measure::Recall(k)
            | Measure::Mrr(k)
            | Measure::Map(k)
            | Measure::Precision(k) => k,
        }
    }
}

impl fmt::Display for Measure {
    /// BEIR's spelling: `NDCG@10`, `Recall@100`, `MRR@10`, `MAP@100`, `P@10`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Measure::Ndcg(k) => write!(f, "NDCG@{k}"),
            Measure::Recall(k) => write!(f, "Recall@{k}"),
            Measure::Mrr(k) => write!(f, "MRR@{k}"),
            Measure::Map(k) => write!(f, "MAP@{k}"),
            Measure::Precision(k) => write!(f, "P@{k}"),
        }
    }
}

impl FromStr for Measure {
    type Err = EvalError;

    /// Parses `NDCG@10`, `recall@100`, `mrr@10`, `map@100`, `p@5` (case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || EvalError::InvalidArgument {
            what: "measure",
            problem: format!(
                "{s:?} is not a measure; use NDCG@k, Recall@k, MRR@k, MAP@k or P@k with k ≥ 1"
            ),
        };
        let (name, k) = s.split_once('@').ok_or_else(bad)?;
        let k: usize = k.parse().map_err(|_| bad())?;
        if k == 0 {
            return Err(bad());
        }
        Ok(match name.to_ascii_lowercase().as_str() {
            "ndcg" => Measure::Ndcg(k),
            "recall" | "r" => Measure::Recall(k),
            "mrr" => Measure::Mrr(k),
            "map" => Measure::Map(k),
            "p" | "precision" => Measure::Precision(k),
            _ => return Err(bad()),
        })
    }
}

/// Scores one query's ranking (documents in the order they are ranked) against its judgments.
pub fn score_query(judgments: &HashMap<String, i32>, ranked: &[&str], measure: Measure) -> f64 {
    let grades: Vec<i32> = ranked
        .iter()
        .map(|d| judgments.get(*d).copied().unwrap_or(0))
        .collect();
    let num_rel = judgments.values().filter(|&&g| g >= 1).count();
    let k = measure.k();
    let top = &grades[..grades.len().min(k)];
    match measure {
        Measure::Ndcg(_) => {
            let mut ideal: Vec<i32> = judgments.values().copied().filter(|&g| g >= 1).collect();
            ideal.sort_unstable_by(|a, b| b.cmp(a));
            ideal.truncate(k);
            let idcg = dcg(&ideal);
            if idcg > 0.0 {
                dcg(top) / idcg
            } else {
                0.0
            }
        }
        Measure::Recall(_) => {
            if num_rel == 0 {
                0.0
            } else {
                top.iter().filter(|&&g| g >= 1).count() as f64 / num_rel as f64
            }
        }
        Measure::Mrr(_) => top
            .iter()
            .position(|&g| g >= 1)
            .map_or(0.0, |i| 1.0 / (i + 1) as f64),
        Measure::Map(_) => {
            if num_rel == 0 {
                return 0.0;
            }
            let mut found = 0usize;
            let mut sum = 0.0;
            for (i, &g) in top.iter().enumerate() {
                if g >= 1 {
                    found += 1;
                    sum += found as f64 / (i + 1) as f64;
                }
            }
            sum / num_rel as f64
        }
        Measure::Precision(_) => top.iter().filter(|&&g| g >= 1).count() as f64 / k as f64,
    }
}

fn dcg(grades: &[i32]) -> f64 {
    grades
        .iter()
        .enumerate()
        .filter(|(_, &g)| g > 0)
        .map(|(i, &g)| g as f64 / ((i + 2) as f64).log2())
        .sum()
}

/// Per-query and mean values of a set of measures.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The measures, in the order asked.
    pub measures: Vec<Measure>,
    /// Query id → one value per measure, for the evaluated queries (judged and in the run).
    pub per_query: BTreeMap<String, Vec<f64>>,
    /// Mean over the evaluated queries, one per measure (0 when none is evaluated).
    pub mean: Vec<f64>,
}

impl Evaluation {
    /// The mean of `measure`, if it was computed.
    pub fn mean_of(&self, measure: Measure) -> Option<f64> {
        let i = self.measures.iter().position(|&m| m == measure)?;
        Some(self.mean[i])
    }

    /// The value of `measure` for `query`, if both were evaluated.
    pub fn query_value(&self, query: &str, measure: Measure) -> Option<f64> {
        let i = self.measures.iter().position(|&m| m == measure)?;
        self.per_query.get(query).map(|v| v[i])
    }

    /// Number of evaluated queries.
    pub fn num_queries(&self) -> usize {
        self.per_query.len()
    }
}

/// Evaluates `run` against `qrels` with pytrec_eval's conventions (see the module docs).
pub fn evaluate(qrels: &Qrels, run: &Run, measures: &[Measure]) -> Evaluation {
    let mut per_query = BTreeMap::new();
    for query in run.queries() {
        let Some(judgments) = qrels.get(query) else {
            continue;
        };
        let ranked = run.ranked(query);
        let ids: Vec<&str> = ranked.iter().map(|(d, _)| *d).collect();
        let values = measures
            .iter()
            .map(|&m| score_query(judgments, &ids, m))
            .collect();
        per_query.insert(query.to_string(), values);
    }
    let n = per_query.len();
    let mean = (0..measures.len())
        .map(|i| {
            if n == 0 {
                0.0
            } else {
                per_query.values().map(|v: &Vec<f64>| v[i]).sum::<f64>() / n as f64
            }
        })
        .collect();
    Evaluation {
        measures: measures.to_vec(),
        per_query,
        mean,
    }
}
