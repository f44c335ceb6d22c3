//! Errors of the evaluation crate: each names the file and line at fault and how to fix it.

use std::path::PathBuf;

/// Result with [`EvalError`].
pub type Result<T> = std::result::Result<T, EvalError>;

/// What went wrong while loading a dataset, reading a run or evaluating.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file could not be read or written.
    #[error("{}: {source}; check that the path exists and is readable", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// A BEIR dataset folder lacks a required file.
    #[error("{}: missing; a BEIR dataset folder holds corpus.jsonl, queries.jsonl and qrels/<split>.tsv{hint}", path.display())]
    MissingFile {
        /// The file that should exist.
        path: PathBuf,
        /// Extra advice (for example the splits that do exist).
        hint: String,
    },
    /// A line of a JSON-lines file is malformed.
    #[error("{}:{line}: {problem}; each line must be a JSON object {{\"_id\": \"...\", \"text\": \"...\"}} (\"title\" optional)", path.display())]
    JsonLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// A line of a qrels file is malformed.
    #[error("{}:{line}: {problem}; each line must be `query-id<TAB>corpus-id<TAB>score` with an integer score (BEIR), or `query-id 0 doc-id score` (TREC)", path.display())]
    QrelsLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// A line of a TREC run file is malformed.
    #[error("{}:{line}: {problem}; each line must be `qid Q0 docid rank score tag`", path.display())]
    RunLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// The same `_id` appears twice in one file.
    #[error("{}:{line}: _id {id:?} already appeared on line {first}; ids must be unique, remove or rename one of them", path.display())]
    DuplicateId {
        /// The file.
        path: PathBuf,
        /// 1-based line of the repeat.
        line: usize,
        /// The first line carrying the id.
        first: usize,
        /// The repeated id.
        id: String,
    },
    /// The qrels judge a query that `queries.jsonl` lacks.
    #[error("{}:{line}: query-id {query:?} is not in {}; add the query or drop its judgments", qrels.display(), queries.display())]
    UnknownQuery {
        /// The qrels file.
        qrels: PathBuf,
        /// 1-based qrels line of the query's first judgment.
        line: usize,
        /// The queries file.
        queries: PathBuf,
        /// The query id.
        query: String,
    },
    /// An argument is out of range.
    #[error("{what}: {problem}")]
    InvalidArgument {
        /// The argument.
        what: &'static str,
        /// What is wrong and what to pass instead.
        problem: String,
    },
    /// A reused index does not fit this evaluation.
    #[error("index {}: {problem}", dir.display())]
    IndexMismatch {
        /// The index directory.
        dir: PathBuf,
        /// What does not match and how to fix it.
        problem: String,
    },
    /// Encoding failed.
    #[error(transparent)]
    Model(#[from] nsparse_model::ModelError),
    /// Indexing or search failed.
    #[error(transparent)]
    Index(#[from] nsparse_index::Error),
}

impl EvalError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EvalError::Io {
            path: path.into(),
            source,
        }
    }
}
