//! The query AST: what [`parse`](super::parse) makes of a query body, before any planning.

pub use super::predicate::Pred;
use nsparse_index::SearchMode;

/// A parsed query.
#[derive(Debug, Clone)]
pub enum Query {
    /// Every document, constant score.
    MatchAll(f32),
    /// No document.
    MatchNone,
    /// A scoring leaf (index into [`Parsed::leaves`]) with its boost.
    Leaf(usize, f32),
    /// A filter-like query with a constant score (its boost) when it matches.
    Constant(Pred, f32),
    /// `bool`.
    Bool(Box<BoolQuery>),
}

/// `bool` clauses.
#[derive(Debug, Clone, Default)]
pub struct BoolQuery {
    pub(super) must: Vec<Query>,
    pub(super) should: Vec<Query>,
    pub(super) filter: Vec<Query>,
    pub(super) must_not: Vec<Query>,
    pub(super) minimum_should_match: Option<usize>,
    pub(super) boost: f32,
}

impl BoolQuery {
    /// The number of `should` clauses a document must match: `minimum_should_match`, else 1
    /// when the `bool` has only `should` clauses, else 0.
    pub(super) fn min_should(&self) -> usize {
        self.minimum_should_match.unwrap_or(usize::from(
            self.must.is_empty() && self.filter.is_empty() && !self.should.is_empty(),
        ))
    }
}

/// A scoring leaf.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub(super) kind: LeafKind,
    /// Retrieval depth requested by the query (`method_parameters.k`).
    pub(super) k: Option<usize>,
    /// Shown in explanations.
    pub(super) label: String,
}

/// What a scoring leaf searches.
#[derive(Debug, Clone)]
pub(super) enum LeafKind {
    Neural {
        /// The sparse field's own index; `None` = the main index (the field of an index of
        /// an earlier release).
        field: Option<String>,
        features: Features,
        mode: SearchMode,
    },
    Bm25 {
        tokens: Vec<u32>,
        /// The mapped text field with its own BM25 index; `None` = the index-wide text.
        field: Option<String>,
    },
}

/// The query vector of a `neural_sparse` leaf.
#[derive(Debug, Clone)]
pub(super) enum Features {
    /// Token ids of the built-in (bert-base-uncased) vocabulary: ids as they are of the main
    /// index and of every field dictionary (seeded with that vocabulary).
    BuiltinIds(Vec<(u32, f32)>),
    /// Dictionary keys of the field, resolved against the snapshot searched (unknown names
    /// are dropped: no document has them).
    Named(Vec<(String, f32)>),
}

impl Leaf {
    /// Whether the leaf retrieves approximately (`method_parameters` or a two-phase pipeline).
    pub(super) fn is_approximate(&self) -> bool {
        matches!(
            self.kind,
            LeafKind::Neural {
                mode: SearchMode::Approximate { .. },
                ..
            }
        )
    }
}

/// A parsed search request.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The query tree.
    pub(super) query: Query,
    /// Its scoring leaves.
    pub(super) leaves: Vec<Leaf>,
}

impl Query {
    /// The predicate of a subtree without scoring leaves (`None` if it has leaves).
    pub(super) fn pure_pred(&self) -> Option<Pred> {
        match self {
            Query::MatchAll(_) => Some(Pred::And(Vec::new())),
            Query::MatchNone => Some(Pred::Not(Box::new(Pred::And(Vec::new())))),
            Query::Leaf(..) => None,
            Query::Constant(p, _) => Some(p.clone()),
            Query::Bool(b) => {
                if !b.should.is_empty() {
                    return None;
                }
                let mut all = Vec::new();
                for c in b.must.iter().chain(&b.filter) {
                    all.push(c.pure_pred()?);
                }
                for c in &b.must_not {
                    all.push(Pred::Not(Box::new(c.pure_pred()?)));
                }
                Some(Pred::And(all))
            }
        }
    }
}
