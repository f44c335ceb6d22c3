//! The query DSL subset of `_search` and `_count`, in three steps:
//!
//! - [`parse`]: a query body (JSON) → the AST of [`ast`] (queries, predicates, scoring leaves
//!   with their encoded vectors or BM25 tokens), checked against the mapping;
//! - [`plan`]: the AST → what to run (the filters every match must pass, the retrieving leaves
//!   and their depths, whether the filters are scanned, whether one leaf alone decides);
//! - [`execute`]: the plan on a snapshot ([`View`](crate::store::View)) → the page, the total
//!   and the best score, with explanations when asked.
//!
//! `_source` filtering of returned documents is [`source_filter`].

mod ast;
mod execute;
mod parse;
mod plan;
mod predicate;
mod source_filter;

pub use execute::{execute, ExecContext};
pub use parse::{parse_query, ParseContext};
pub use plan::{MAX_RESULT_WINDOW, TRACK_TOTAL_HITS};
pub use source_filter::SourceFilter;
