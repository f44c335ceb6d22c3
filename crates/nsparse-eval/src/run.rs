//! Relevance judgments ([`Qrels`]) and retrieval results ([`Run`]).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::error::{EvalError, Result};

/// Graded relevance judgments: query id → document id → integer grade.
///
/// As in trec_eval (relevance level 1), a document is relevant when its grade is ≥ 1; grades
/// ≤ 0 (BEIR's `0`, TREC's `-1`) mark judged non-relevant documents, which count neither as
/// gain nor in the ideal ranking. A repeated (query, document) pair keeps the last grade, as
/// BEIR's loader does.
#[derive(Debug, Clone, Default)]
pub struct Qrels {
    judgments: BTreeMap<String, HashMap<String, i32>>,
    // First line of each query's judgments, for error messages.
    first_line: HashMap<String, usize>,
}

impl Qrels {
    /// Empty judgments.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `grade` for `doc` under `query` (replacing an earlier grade).
    pub fn insert(&mut self, query: impl Into<String>, doc: impl Into<String>, grade: i32) {
        self.judgments
            .entry(query.into())
            .or_default()
            .insert(doc.into(), grade);
    }

    /// Reads a BEIR qrels file (`query-id<TAB>corpus-id<TAB>score`, integer score) or a TREC
    /// one (`query-id iteration doc-id score`, whitespace separated).
    ///
    /// The first line is skipped when its score column is not an integer (BEIR's
    /// `query-id corpus-id score` header); BEIR's loader skips line 1 unconditionally, which
    /// would silently drop a judgment from a header-less file. Blank lines are ignored.
    pub fn read(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| EvalError::io(path, e))?;
        let mut qrels = Qrels::new();
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line_no = i + 1;
            let line = line.map_err(|e| EvalError::io(path, e))?;
            let line = line.trim_end_matches(['\r', '\n']);
            if line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = if line.contains('\t') {
                line.split('\t').map(str::trim).collect()
            } else {
                line.split_whitespace().collect()
            };
            let bad = |problem: String| EvalError::QrelsLine {
                path: path.to_path_buf(),
                line: line_no,
                problem,
            };
            let (query, doc, grade) = match fields.as_slice() {
                [q, d, g] => (*q, *d, *g),
                [q, _, d, g] => (*q, *d, *g),
                _ => {
                    return Err(bad(format!(
                        "{} fields where 3 (BEIR) or 4 (TREC) are expected",
                        fields.len()
                    )))
                }
            };
            let grade: i32 = match grade.parse() {
                Ok(g) => g,
                Err(_) if line_no == 1 => continue,
                Err(_) => {
                    return Err(bad(format!(
                    "score {grade:?} is not an integer (pytrec_eval and BEIR take integer grades)"
                )))
                }
            };
            if query.is_empty() || doc.is_empty() {
                return Err(bad("empty query-id or corpus-id".into()));
            }
            qrels.first_line.entry(query.to_string()).or_insert(line_no);
            qrels.insert(query, doc, grade);
        }
        Ok(qrels)
    }

    /// The judgments of `query`, if it has any.
    pub fn get(&self, query: &str) -> Option<&HashMap<String, i32>> {
        self.judgments.get(query)
    }

    /// Query ids with judgments, ascending.
    pub fn queries(&self) -> impl Iterator<Item = &str> {
        self.judgments.keys().map(String::as_str)
    }

    /// Number of judged queries.
    pub fn len(&self) -> usize {
        self.judgments.len()
    }

    /// Whether no query is judged.
    pub fn is_empty(&self) -> bool {
        self.judgments.is_empty()
    }

    /// The line of `query`'s first judgment in the file it was read from.
    pub(crate) fn line_of(&self, query: &str) -> usize {
        self.first_line.get(query).copied().unwrap_or(0)
    }
}

impl PartialEq for Qrels {
    // Where the judgments were read from does not make two qrels different.
    fn eq(&self, other: &Self) -> bool {
        self.judgments == other.judgments
    }
}

impl Eq for Qrels {}

/// Retrieval results: query id → document id → score, as pytrec_eval takes them.
///
/// A document appears at most once per query (inserting it again replaces its score). A query
/// may be present with no documents: it is then evaluated, scoring 0 everywhere.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Run {
    results: BTreeMap<String, HashMap<String, f64>>,
}

impl Run {
    /// An empty run.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `score` for `doc` under `query` (replacing an earlier score).
    pub fn insert(&mut self, query: impl Into<String>, doc: impl Into<String>, score: f64) {
        self.results
            .entry(query.into())
            .or_default()
            .insert(doc.into(), score);
    }

    /// Makes `query` present in the run even if it retrieved nothing, so that it is evaluated
    /// (as 0) instead of skipped.
    pub fn add_query(&mut self, query: impl Into<String>) {
        self.results.entry(query.into()).or_default();
    }

    /// The scores of `query`, if it is in the run.
    pub fn get(&self, query: &str) -> Option<&HashMap<String, f64>> {
        self.results.get(query)
    }

    /// Query ids in the run, ascending.
    pub fn queries(&self) -> impl Iterator<Item = &str> {
        self.results.keys().map(String::as_str)
    }

    /// Number of queries in the run.
    pub fn len(&self) -> usize {
        self.results.len()
    }

    /// Whether the run has no query.
    pub fn is_empty(&self) -> bool {
        self.results.is_empty()
    }

    /// The documents of `query` in trec_eval's order (see [`trec_order`]); empty when absent.
    pub fn ranked(&self, query: &str) -> Vec<(&str, f64)> {
        let mut docs: Vec<(&str, f64)> = self
            .results
            .get(query)
            .map(|m| m.iter().map(|(d, &s)| (d.as_str(), s)).collect())
            .unwrap_or_default();
        docs.sort_by(|a, b| trec_order(*a, *b));
        docs
    }

    /// Keeps the first `k` documents of every query in trec_eval's order.
    pub fn truncate(&mut self, k: usize) {
        for docs in self.results.values_mut() {
            if docs.len() > k {
                let mut ranked: Vec<(String, f64)> = docs.drain().collect();
                ranked.sort_by(|a, b| trec_order((&a.0, a.1), (&b.0, b.1)));
                ranked.truncate(k);
                docs.extend(ranked);
            }
        }
    }
}

/// trec_eval's ranking order, which pytrec_eval inherits: score descending, ties broken by
/// document id descending in byte order (`strcmp(b, a)`); the rank column of a run file is
/// ignored. Verified against pytrec_eval: with equal scores, `"z"` ranks before `"b"` before
/// `"a"`, and `"a"` before `"B"`. NaN scores sort as the largest values (`f64::total_cmp`).
pub fn trec_order(a: (&str, f64), b: (&str, f64)) -> Ordering {
    b.1.total_cmp(&a.1)
        .then_with(|| b.0.as_bytes().cmp(a.0.as_bytes()))
}
