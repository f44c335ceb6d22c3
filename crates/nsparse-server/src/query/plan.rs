//! Planning: a parsed query → what to run. The plan names the filters every match must pass
//! (handed to the index's filtered searches), the scoring leaves that retrieve, whether
//! documents can match through non-scoring clauses alone (then the filters are scanned), and
//! how deep each leaf retrieves.

use super::ast::{Leaf, Parsed, Pred, Query};

/// Matching documents counted exactly by default (OpenSearch's `track_total_hits`).
pub const TRACK_TOTAL_HITS: usize = 10_000;

/// Largest `from + size` (OpenSearch's `index.max_result_window`).
pub const MAX_RESULT_WINDOW: usize = 10_000;

/// Hits every scoring clause retrieves when several are combined.
const MIN_WINDOW: usize = 100;

/// What [`execute`](super::execute) runs for one request.
pub(super) struct Plan {
    /// Filters every match must pass that do not depend on scoring leaves.
    pub(super) required: Pred,
    /// `required` is empty: every live document passes, no per-hit lookups.
    pub(super) unfiltered: bool,
    /// Leaves whose own top hits can contribute matches, ascending, without duplicates.
    pub(super) retrieving: Vec<usize>,
    /// Documents can match with every scoring leaf at zero: the filters are scanned too.
    pub(super) scan: bool,
    /// One scoring leaf and nothing else can match: its hits are the answer, no rescoring.
    pub(super) single: bool,
    /// Hits each retrieving leaf returns at least.
    window: usize,
    /// Matches counted exactly: one more than `track_total_hits` (to tell "more than" from
    /// "exactly"), at most the documents of the snapshot.
    count_depth: usize,
}

impl Plan {
    /// Plans `parsed` for a page ending at `wanted` (`from + size`) over `n_docs` documents.
    pub(super) fn new(
        parsed: &Parsed,
        wanted: usize,
        n_docs: usize,
        track_total_hits: usize,
    ) -> Plan {
        let required = required_pred(&parsed.query);
        let unfiltered = matches!(&required, Pred::And(all) if all.is_empty());
        let mut retrieving = Vec::new();
        retrieving_leaves(&parsed.query, false, &mut retrieving);
        retrieving.sort_unstable();
        retrieving.dedup();
        let scan = matches_without_leaves(&parsed.query);
        let single = !scan && parsed.leaves.len() == 1 && retrieving.len() == 1;
        let window = if single {
            wanted.max(1)
        } else {
            wanted.max(MIN_WINDOW)
        };
        let count_depth = track_total_hits.saturating_add(1).min(n_docs);
        Plan {
            required,
            unfiltered,
            retrieving,
            scan,
            single,
            window,
            count_depth,
        }
    }

    /// How many hits `leaf` retrieves: its own `k`, at least the window; exact modes count
    /// every match anyway, so they go as deep as the count (a deeper heap costs one selection
    /// pass).
    pub(super) fn depth(&self, leaf: &Leaf) -> usize {
        let k = leaf.k.unwrap_or(0).max(self.window);
        if leaf.is_approximate() {
            k
        } else {
            k.max(self.count_depth)
        }
    }
}

/// Filters every match must pass that do not depend on scoring leaves (for the filtered searches).
fn required_pred(q: &Query) -> Pred {
    match q {
        Query::Bool(b) => {
            let mut all = Vec::new();
            for c in b.must.iter().chain(&b.filter) {
                match c.pure_pred() {
                    Some(p) => all.push(p),
                    None => all.push(required_pred(c)),
                }
            }
            for c in &b.must_not {
                if let Some(p) = c.pure_pred() {
                    all.push(Pred::Not(Box::new(p)));
                }
            }
            Pred::And(all)
        }
        other => other.pure_pred().unwrap_or(Pred::And(Vec::new())),
    }
}

/// Whether a document can match with every scoring leaf at zero (then candidates must include
/// documents found by the filters alone).
fn matches_without_leaves(q: &Query) -> bool {
    match q {
        Query::MatchAll(_) | Query::Constant(..) => true,
        Query::MatchNone | Query::Leaf(..) => false,
        Query::Bool(b) => {
            b.must.iter().chain(&b.filter).all(matches_without_leaves)
                && (b.min_should() == 0 || b.should.iter().any(matches_without_leaves))
        }
    }
}

/// Leaves whose own top hits can contribute matches (not those only under `must_not`).
fn retrieving_leaves(q: &Query, negated: bool, out: &mut Vec<usize>) {
    match q {
        Query::Leaf(i, _) if !negated => out.push(*i),
        Query::Bool(b) => {
            for c in b.must.iter().chain(&b.should).chain(&b.filter) {
                retrieving_leaves(c, negated, out);
            }
            for c in &b.must_not {
                retrieving_leaves(c, true, out);
            }
        }
        _ => {}
    }
}
