//! Execution: a [`Parsed`] query and its [`Plan`] → the page of hits, the total and the best
//! score.
//!
//! Every retrieving leaf runs the index's filtered top-k under the plan's required filters.
//! When the plan says one leaf alone decides, its hits are the answer (exact for exact modes).
//! Otherwise the union of the windows (plus every document passing the filters when the plan
//! scans) is rescored exactly: each leaf is searched again restricted to the candidates, and
//! the `bool` tree adds the scores as OpenSearch does.

use std::collections::{HashMap, HashSet};

use nsparse_index::{Hit, SearchMode, SearchRequest, TokenContribution};
use serde_json::{json, Value};

use super::ast::{Features, Leaf, LeafKind, Parsed, Query};
use super::plan::Plan;
use crate::error::ApiResult;
use crate::models::Models;
use crate::store::{DocEntry, View};

/// What a search runs against and what it returns: the snapshot, the models (for token names
/// in explanations) and the page.
#[derive(Clone, Copy)]
pub struct ExecContext<'a> {
    /// The snapshot searched.
    pub view: &'a View,
    /// Models (token names of explanations).
    pub models: &'a Models,
    /// First hit of the page.
    pub from: usize,
    /// Hits in the page.
    pub size: usize,
    /// Attach explanations to the page's hits.
    pub explain: bool,
    /// Matches counted exactly (OpenSearch's `track_total_hits`).
    pub track_total_hits: usize,
}

impl<'a> ExecContext<'a> {
    /// A count: no page, no explanations, every match counted.
    pub fn count(view: &'a View, models: &'a Models) -> Self {
        ExecContext {
            view,
            models,
            from: 0,
            size: 0,
            explain: false,
            track_total_hits: usize::MAX,
        }
    }
}

/// The result of [`execute`].
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The page: `(id, score, explanation)`.
    pub hits: Vec<(String, f32, Option<Value>)>,
    /// Matching documents found.
    pub total: usize,
    /// Whether `total` is exact (`eq`) or a lower bound (`gte`).
    pub exact_total: bool,
    /// Best score.
    pub max_score: Option<f32>,
}

/// Runs a parsed query: `size` hits from `from`, with explanations if asked. Matching documents
/// are counted exactly up to `track_total_hits` (OpenSearch's default is 10,000), except under
/// approximate clauses, whose count is the documents they retrieved.
pub fn execute(parsed: &Parsed, ctx: &ExecContext<'_>) -> ApiResult<Outcome> {
    let view = ctx.view;
    let n_docs = view.docs.len().max(1);
    let plan = Plan::new(
        parsed,
        ctx.from.saturating_add(ctx.size),
        n_docs,
        ctx.track_total_hits,
    );
    let required = &plan.required;
    let filter = |id: &str| view.docs.get(id).is_some_and(|d| required.test(id, d));
    // Without filters every live document of the snapshot passes: skip the per-hit lookups.
    let retrieval_filter: Option<nsparse_index::DocFilter<'_>> =
        if plan.unfiltered { None } else { Some(&filter) };

    let mut exact_total = true;
    let mut leaf_hits: Vec<LeafScores> = vec![HashMap::new(); parsed.leaves.len()];
    let mut candidates: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for &i in &plan.retrieving {
        let leaf = &parsed.leaves[i];
        let k = plan.depth(leaf);
        let hits = run_leaf(
            leaf,
            view,
            k,
            false,
            retrieval_filter,
            Exactness::AsRequested,
        )?;
        if hits.len() >= k && k < n_docs {
            exact_total = false;
        }
        for hit in hits {
            if seen.insert(hit.id.clone()) {
                candidates.push(hit.id.clone());
            }
            leaf_hits[i].insert(hit.id, (hit.score, None));
        }
    }
    if plan.scan {
        for (id, doc) in view.docs.iter() {
            if required.test(id, doc) && seen.insert(id.clone()) {
                candidates.push(id.clone());
            }
        }
    }
    if !plan.single && !candidates.is_empty() {
        // Exact scores of every leaf on every candidate.
        rescore(parsed, view, &candidates, false, &mut leaf_hits)?;
    }
    let mut matches: Vec<(f32, u64, String)> = Vec::new();
    for id in candidates {
        let Some(doc) = view.docs.get(&id) else {
            continue;
        };
        let leaf_score = |i: usize| leaf_hits[i].get(&id).map(|h| h.0);
        if let Some(score) = eval(&parsed.query, &id, doc, &leaf_score) {
            matches.push((score, doc.seq, id));
        }
    }
    matches.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let max_score = matches.first().map(|m| m.0);
    let mut total = matches.len();
    let mut exact_total = exact_total || plan.scan;
    if total > ctx.track_total_hits {
        total = ctx.track_total_hits;
        exact_total = false;
    }
    let page: Vec<(f32, u64, String)> = matches.into_iter().skip(ctx.from).take(ctx.size).collect();
    if ctx.explain && !page.is_empty() {
        let ids: Vec<String> = page.iter().map(|m| m.2.clone()).collect();
        rescore(parsed, view, &ids, true, &mut leaf_hits)?;
    }
    let hits = page
        .into_iter()
        .map(|(score, _, id)| {
            let explanation = ctx
                .explain
                .then(|| explanation(parsed, &leaf_hits, &id, score, ctx.models, view));
            (id, score, explanation)
        })
        .collect();
    Ok(Outcome {
        hits,
        total,
        exact_total,
        max_score,
    })
}

/// Per document: a leaf's exact score and, when asked, its per-token explanation.
type LeafScores = HashMap<String, (f32, Option<Vec<TokenContribution>>)>;

/// Score of a document (`None` = no match), given the exact score of each leaf for it.
fn eval(q: &Query, id: &str, doc: &DocEntry, leaf: &dyn Fn(usize) -> Option<f32>) -> Option<f32> {
    match q {
        Query::MatchAll(boost) => Some(*boost),
        Query::MatchNone => None,
        Query::Leaf(i, boost) => leaf(*i).filter(|s| *s > 0.0).map(|s| s * boost),
        Query::Constant(p, boost) => p.test(id, doc).then_some(*boost),
        Query::Bool(b) => {
            let mut score = 0.0f32;
            for c in &b.must {
                score += eval(c, id, doc, leaf)?;
            }
            for c in &b.filter {
                eval(c, id, doc, leaf)?;
            }
            if b.must_not.iter().any(|c| eval(c, id, doc, leaf).is_some()) {
                return None;
            }
            let mut matched = 0usize;
            for c in &b.should {
                if let Some(s) = eval(c, id, doc, leaf) {
                    matched += 1;
                    score += s;
                }
            }
            (matched >= b.min_should()).then_some(score * b.boost)
        }
    }
}

/// Exact scores (and explanations when asked) of every leaf on `ids`.
fn rescore(
    parsed: &Parsed,
    view: &View,
    ids: &[String],
    explain: bool,
    leaf_hits: &mut [LeafScores],
) -> ApiResult<()> {
    let set: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let in_set = |id: &str| set.contains(id);
    for (i, leaf) in parsed.leaves.iter().enumerate() {
        let hits = run_leaf(
            leaf,
            view,
            set.len(),
            explain,
            Some(&in_set),
            Exactness::Exact,
        )?;
        if !explain {
            leaf_hits[i] = hits
                .into_iter()
                .map(|h| (h.id, (h.score, h.explanation)))
                .collect();
            continue;
        }
        // Explanations only: the scores of the ranking stay those it was ranked by.
        for h in hits {
            if let Some(entry) = leaf_hits[i].get_mut(&h.id) {
                entry.1 = h.explanation;
            }
        }
    }
    Ok(())
}

/// Retrieval runs in the requested (maybe approximate) mode; the rescoring pass is exact.
#[derive(Clone, Copy)]
enum Exactness {
    AsRequested,
    Exact,
}

fn run_leaf(
    leaf: &Leaf,
    view: &View,
    k: usize,
    explain: bool,
    filter: Option<nsparse_index::DocFilter<'_>>,
    exactness: Exactness,
) -> ApiResult<Vec<Hit>> {
    match &leaf.kind {
        LeafKind::Neural {
            field,
            features,
            mode,
        } => {
            let mode = match exactness {
                Exactness::AsRequested => *mode,
                Exactness::Exact => SearchMode::Exact,
            };
            let searcher = match field {
                None => &view.searcher,
                Some(f) => match view.sparse.get(f) {
                    Some(s) => s,
                    None => return Ok(Vec::new()),
                },
            };
            let resolved;
            let vector: &[(u32, f32)] = match features {
                Features::BuiltinIds(ids) => ids,
                Features::Named(named) => {
                    resolved =
                        searcher.resolve_features(named.iter().map(|(n, w)| (n.as_str(), *w)))?;
                    &resolved
                }
            };
            if vector.is_empty() {
                return Ok(Vec::new());
            }
            let req = SearchRequest {
                filter,
                ..SearchRequest::new(k).mode(mode).explain(explain)
            };
            Ok(searcher.search(nsparse_index::Query::Neural(vector), &req)?)
        }
        LeafKind::Bm25 { tokens, field } => {
            let searcher = match field {
                None => &view.searcher,
                Some(f) => match view.fields.get(f) {
                    Some(s) => s,
                    None => return Ok(Vec::new()),
                },
            };
            let req = SearchRequest {
                filter,
                ..SearchRequest::new(k).explain(explain)
            };
            Ok(searcher.search(nsparse_index::Query::Bm25(tokens), &req)?)
        }
    }
}

fn explanation(
    parsed: &Parsed,
    leaf_hits: &[LeafScores],
    id: &str,
    score: f32,
    models: &Models,
    view: &View,
) -> Value {
    let mut details = Vec::new();
    for (i, leaf) in parsed.leaves.iter().enumerate() {
        let Some((leaf_score, contributions)) = leaf_hits[i].get(id) else {
            continue;
        };
        let dictionary = match &leaf.kind {
            LeafKind::Neural { field: Some(f), .. } => view.sparse.get(f),
            _ => None,
        };
        let token_name = |token: u32| match dictionary.and_then(|s| s.feature_name(token)) {
            Some(key) => crate::sparse_fields::feature_name(&key).to_string(),
            None => models.token_name(token),
        };
        let tokens: Vec<Value> = contributions
            .iter()
            .flatten()
            .map(|c| {
                json!({
                    "value": c.contribution,
                    "description": format!(
                        "token [{}]: query weight {} × document weight {}",
                        token_name(c.token), c.query_weight, c.doc_weight
                    ),
                    "details": []
                })
            })
            .collect();
        details.push(json!({"value": leaf_score, "description": leaf.label, "details": tokens}));
    }
    let described: f32 = details
        .iter()
        .filter_map(|d| d["value"].as_f64())
        .sum::<f64>() as f32;
    if (score - described).abs() > 1e-6 * score.abs().max(1.0) || details.is_empty() {
        details.push(json!({
            "value": score - described,
            "description": "constant scores of matching match_all, term, terms, range, exists and ids clauses, and boosts",
            "details": []
        }));
    }
    json!({"value": score, "description": "sum of:", "details": details})
}
