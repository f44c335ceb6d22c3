//! The end-to-end evaluation behind `nsparse eval`: index a BEIR corpus (or reuse a cached
//! index), encode the judged queries, retrieve, and score the run.

use std::path::Path;
use std::time::Instant;

use nsparse_index::{
    CreateOptions, Document, Index, Query, SearchRequest, Searcher, Vocabulary, WriterOptions,
};
use nsparse_model::{Pruning, SparseEncoder};
use serde::Serialize;

use crate::beir::{BeirDataset, Record};
use crate::error::{EvalError, Result};
use crate::metrics::{evaluate, Evaluation, Measure};
use crate::run::Run;
use crate::sparsity::{Sparsity, TokenCounts};

/// Documents encoded and indexed per batch: large enough for the encoder's length-sorted
/// packing, small enough to show progress.
const DOC_BATCH: usize = 512;
/// Queries encoded per batch (only matters for progress).
const QUERY_BATCH: usize = 64;

/// How documents are scored.
#[derive(Debug, Clone, Copy)]
pub enum Scorer<'a> {
    /// BM25 (k1 = 1.2, b = 0.75) over the WordPiece tokens of this model's tokenizer, normally
    /// [`SparseEncoder::builtin_query_model`].
    Bm25(&'a SparseEncoder),
    /// Learned sparse vectors: the encoder encodes the documents, and the queries in its own
    /// query mode (inference-free with idf weights, or through the network).
    Sparse(&'a SparseEncoder),
}

impl Scorer<'_> {
    /// The model identity the index records, so that a cached index is only reused by the
    /// encoder that built it. Query modes share one identity: they share the document vectors.
    pub fn identity(&self) -> String {
        match self {
            Scorer::Bm25(tokenizer) => format!("bm25+{}", tokenizer.fingerprint()),
            Scorer::Sparse(encoder) => encoder.fingerprint().to_string(),
        }
    }
}

/// The identity of a BM25 index over the built-in tokenizer, as `nsparse index --model bm25`
/// records it.
pub fn bm25_identity() -> String {
    Scorer::Bm25(&SparseEncoder::builtin_query_model()).identity()
}

/// A long-running step of the evaluation, for progress reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Encoding (or, for BM25, tokenizing) and indexing the corpus.
    IndexCorpus,
    /// Encoding the queries.
    EncodeQueries,
    /// Retrieving the top k of every query.
    Search,
}

/// Receives progress; the CLI draws bars, tests ignore it.
pub trait Progress: Sync {
    /// A stage of `total` items begins.
    fn start(&self, _stage: Stage, _total: u64) {}
    /// `done` items of the current stage are finished.
    fn update(&self, _done: u64) {}
    /// The current stage is over.
    fn finish(&self) {}
}

/// Progress that goes nowhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {}

/// Where the index lives.
#[derive(Debug, Clone, Copy)]
pub enum IndexLocation<'a> {
    /// A temporary directory, removed afterwards.
    Temporary,
    /// This directory: reused when it holds an index of the same model and corpus, built there
    /// otherwise.
    Cached(&'a Path),
}

/// What to compute.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Documents retrieved per query (BEIR uses 1000).
    pub k: usize,
    /// Measures to average.
    pub measures: Vec<Measure>,
    /// Drop a retrieved document whose `_id` equals the query's, as BEIR's
    /// `EvaluateRetrieval(..., ignore_identical_ids=True)` does (ArguAna, Quora).
    pub drop_identical_ids: bool,
    /// OpenSearch ingest pruning applied to every document vector before indexing (the
    /// `sparse_encoding` processor's `prune_type`/`prune_ratio`); queries are not pruned.
    pub document_pruning: Pruning,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            k: 1000,
            measures: Measure::HEADLINE.to_vec(),
            drop_identical_ids: true,
            document_pruning: Pruning::None,
        }
    }
}

/// The index identity of `scorer` with `pruning` applied to the documents: a pruned index is
/// another index, so a cached one is only reused with the same pruning.
fn pruned_identity(scorer: Scorer<'_>, pruning: Pruning) -> String {
    let identity = scorer.identity();
    match pruning {
        Pruning::None => identity,
        Pruning::TopK(k) => format!("{identity}+prune=top_k:{k}"),
        Pruning::MaxRatio(r) => format!("{identity}+prune=max_ratio:{r}"),
        Pruning::AlphaMass(r) => format!("{identity}+prune=alpha_mass:{r}"),
        Pruning::AbsValue(r) => format!("{identity}+prune=abs_value:{r}"),
    }
}

/// Wall-clock seconds of each step; `None` for a step that did not run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Timings {
    /// Encoding (or tokenizing) the corpus; `None` when a cached index was reused.
    pub encode_docs_s: Option<f64>,
    /// Writing and committing the index; `None` when reused.
    pub index_s: Option<f64>,
    /// Encoding (or tokenizing) the queries.
    pub encode_queries_s: f64,
    /// Retrieving the top k of all queries.
    pub search_s: f64,
}

/// The figures of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    /// Dataset folder.
    pub dataset: String,
    /// Split evaluated.
    pub split: String,
    /// Index model identity.
    pub model: String,
    /// `bm25`, `inference-free` or `bi-encoder`.
    pub scorer: String,
    /// Documents in the corpus.
    pub documents: usize,
    /// Judged queries evaluated.
    pub queries: usize,
    /// Documents retrieved per query.
    pub k: usize,
    /// Whether a cached index was reused.
    pub index_reused: bool,
    /// Documents longer than the encoder's 512 tokens (truncated); 0 when reused or BM25.
    pub truncated_documents: usize,
    /// Mean of each measure, in the order asked, keyed by BEIR's name (`NDCG@10`, ...).
    pub metrics: serde_json::Map<String, serde_json::Value>,
    /// FLOPS and vector sizes (not defined for BM25).
    pub sparsity: Option<Sparsity>,
    /// Step timings.
    pub timings: Timings,
}

/// A report together with the run and per-query values it came from.
#[derive(Debug, Clone)]
pub struct EvalOutcome {
    /// The headline figures.
    pub report: EvalReport,
    /// The retrieved documents.
    pub run: Run,
    /// Per-query and mean values.
    pub evaluation: Evaluation,
}

/// Evaluates `scorer` on `dataset`: builds or reuses the index, retrieves `options.k`
/// documents for every judged query, and scores the run.
pub fn evaluate_dataset(
    dataset: &BeirDataset,
    scorer: Scorer<'_>,
    location: IndexLocation<'_>,
    options: &EvalOptions,
    progress: &dyn Progress,
) -> Result<EvalOutcome> {
    if options.k == 0 {
        return Err(EvalError::InvalidArgument {
            what: "k",
            problem: "must be at least 1 (BEIR uses 1000)".into(),
        });
    }
    if let Scorer::Sparse(encoder) = scorer {
        if !encoder.can_encode_documents() {
            return Err(EvalError::InvalidArgument {
                what: "model",
                problem: format!(
                    "{} is query-only and cannot encode the corpus; pass a document encoder or bm25",
                    encoder.name()
                ),
            });
        }
    }
    if options.document_pruning != Pruning::None && matches!(scorer, Scorer::Bm25(_)) {
        return Err(EvalError::InvalidArgument {
            what: "document_pruning",
            problem: "prunes learned sparse vectors; BM25 has none to prune".into(),
        });
    }
    let identity = pruned_identity(scorer, options.document_pruning);
    let temp;
    let (dir, reuse) = match location {
        IndexLocation::Temporary => {
            temp = tempfile::Builder::new()
                .prefix("nsparse-eval-")
                .tempdir()
                .map_err(|e| EvalError::io(std::env::temp_dir(), e))?;
            (temp.path().join("index"), false)
        }
        IndexLocation::Cached(dir) => (dir.to_path_buf(), dir.join("MANIFEST").exists()),
    };
    let mut timings = Timings::default();
    let mut truncated_documents = 0;
    let mut index = if reuse {
        let index = Index::open(&dir, WriterOptions::default())?;
        check_cached(&index, &identity, &dataset.corpus)?;
        index
    } else {
        let (Scorer::Bm25(model) | Scorer::Sparse(model)) = scorer;
        // Token ids below the model's vocabulary size (BM25 tokens are tokenizer ids too).
        let vocab_size =
            u32::try_from(model.vocab_size()).map_err(|_| EvalError::InvalidArgument {
                what: "model",
                problem: format!("a vocabulary of {} tokens is too large", model.vocab_size()),
            })?;
        let mut create =
            CreateOptions::new(identity.clone()).with_vocabulary(Vocabulary::fixed(vocab_size));
        create.metadata = serde_json::json!({
            "model_spec": match scorer { Scorer::Bm25(_) => "bm25".to_string(), Scorer::Sparse(e) => e.name().to_string() },
            "created_by": "nsparse eval",
            "dataset": dataset.dir.display().to_string(),
        });
        let mut index = Index::create(&dir, &create, WriterOptions::default())?;
        let stats = index_corpus(
            &mut index,
            &dataset.corpus,
            scorer,
            options.document_pruning,
            progress,
        )?;
        timings.encode_docs_s = Some(stats.encode_s);
        timings.index_s = Some(stats.index_s);
        truncated_documents = stats.truncated;
        index
    };
    let searcher = index.searcher();
    let doc_counts = match scorer {
        Scorer::Bm25(_) => None,
        Scorer::Sparse(_) => Some(document_token_counts(&searcher, &dataset.corpus)?),
    };
    let started = Instant::now();
    let queries = encode_queries(&dataset.queries, scorer, progress)?;
    timings.encode_queries_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let run = retrieve(&searcher, &dataset.queries, &queries, options, progress)?;
    timings.search_s = started.elapsed().as_secs_f64();

    let evaluation = evaluate(&dataset.qrels, &run, &options.measures);
    let metrics = options
        .measures
        .iter()
        .zip(&evaluation.mean)
        .map(|(m, &v)| (m.to_string(), serde_json::json!(v)))
        .collect();
    let sparsity = doc_counts.map(|docs| {
        let mut q = TokenCounts::new();
        for query in &queries {
            if let EncodedQuery::Vector(v) = query {
                q.add(v.iter().copied());
            }
        }
        Sparsity::of(&q, &docs)
    });
    let scorer_name = match scorer {
        Scorer::Bm25(_) => "bm25",
        Scorer::Sparse(e) => match e.query_mode() {
            nsparse_model::QueryMode::InferenceFree => "inference-free",
            nsparse_model::QueryMode::BiEncoder => "bi-encoder",
        },
    };
    let report = EvalReport {
        dataset: dataset.dir.display().to_string(),
        split: dataset.split.clone(),
        model: identity,
        scorer: scorer_name.into(),
        documents: dataset.corpus.len(),
        queries: evaluation.num_queries(),
        k: options.k,
        index_reused: reuse,
        truncated_documents,
        metrics,
        sparsity,
        timings,
    };
    Ok(EvalOutcome {
        report,
        run,
        evaluation,
    })
}

/// Time spent building an index.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct IndexStats {
    /// Seconds encoding (or tokenizing).
    pub encode_s: f64,
    /// Seconds writing and committing.
    pub index_s: f64,
    /// Documents truncated to the encoder's maximum length.
    pub truncated: usize,
}

/// Adds `corpus` to `index` (vectors pruned by `pruning` for [`Scorer::Sparse`], token
/// sequences with empty vectors for [`Scorer::Bm25`]) and commits.
pub fn index_corpus(
    index: &mut Index,
    corpus: &[Record],
    scorer: Scorer<'_>,
    pruning: Pruning,
    progress: &dyn Progress,
) -> Result<IndexStats> {
    let mut stats = IndexStats::default();
    progress.start(Stage::IndexCorpus, corpus.len() as u64);
    for (b, batch) in corpus.chunks(DOC_BATCH).enumerate() {
        let before = (b * DOC_BATCH) as u64;
        let texts: Vec<String> = batch.iter().map(Record::full_text).collect();
        let started = Instant::now();
        let docs: Vec<Document> = match scorer {
            Scorer::Bm25(tokenizer) => batch
                .iter()
                .zip(&texts)
                .map(|(r, text)| {
                    Ok(Document {
                        id: r.id.clone(),
                        vector: Vec::new(),
                        tokens: Some(tokenizer.tokenizer().tokenize_document_untruncated(text)?),
                        source: Vec::new(),
                    })
                })
                .collect::<Result<_>>()?,
            Scorer::Sparse(encoder) => {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                let out =
                    encoder.encode_documents(&refs, |n| progress.update(before + n as u64))?;
                stats.truncated += out.truncated;
                batch
                    .iter()
                    .zip(out.vectors)
                    .map(|(r, mut v)| {
                        v.prune(pruning);
                        Document {
                            id: r.id.clone(),
                            vector: v.iter().collect(),
                            // Sparse retrieval needs no BM25 statistics; skipping them keeps the
                            // index small.
                            tokens: None,
                            source: Vec::new(),
                        }
                    })
                    .collect()
            }
        };
        stats.encode_s += started.elapsed().as_secs_f64();
        let started = Instant::now();
        index.upsert_batch(&docs)?;
        stats.index_s += started.elapsed().as_secs_f64();
        progress.update(before + batch.len() as u64);
    }
    let started = Instant::now();
    index.commit()?;
    stats.index_s += started.elapsed().as_secs_f64();
    progress.finish();
    Ok(stats)
}

/// Refuses a cached index built by another model or from another corpus.
fn check_cached(index: &Index, identity: &str, corpus: &[Record]) -> Result<()> {
    let mismatch = |problem: String| EvalError::IndexMismatch {
        dir: index.dir().to_path_buf(),
        problem,
    };
    if index.model() != identity {
        return Err(mismatch(format!(
            "built with model {} but this evaluation uses {identity}; pass another --index directory or delete this one",
            index.model()
        )));
    }
    let live = index.info().live_docs;
    if live != corpus.len() as u64 {
        return Err(mismatch(format!(
            "holds {live} documents but the corpus has {}; it was built from another corpus (or its build was interrupted): delete it to rebuild",
            corpus.len()
        )));
    }
    if let Some(r) = corpus.iter().find(|r| !index.contains(&r.id)) {
        return Err(mismatch(format!(
            "lacks corpus document {:?}; it was built from another corpus: delete it to rebuild",
            r.id
        )));
    }
    Ok(())
}

/// Token counts of the documents as stored in the index, so that a fresh and a reused index
/// report the same FLOPS (weights that quantize to zero are not stored, hence not counted).
fn document_token_counts(searcher: &Searcher, corpus: &[Record]) -> Result<TokenCounts> {
    let mut counts = TokenCounts::new();
    for r in corpus {
        if let Some(v) = searcher.vector(&r.id)? {
            counts.add(v);
        }
    }
    Ok(counts)
}

/// A query ready for the searcher.
#[derive(Debug, Clone, PartialEq)]
pub enum EncodedQuery {
    /// WordPiece tokens for BM25 (repeats count).
    Tokens(Vec<u32>),
    /// A sparse vector `(token, weight)`.
    Vector(Vec<(u32, f32)>),
}

/// Encodes `queries` for `scorer` (BM25: untruncated WordPiece tokens of the query text).
pub fn encode_queries(
    queries: &[Record],
    scorer: Scorer<'_>,
    progress: &dyn Progress,
) -> Result<Vec<EncodedQuery>> {
    progress.start(Stage::EncodeQueries, queries.len() as u64);
    let mut out = Vec::with_capacity(queries.len());
    for batch in queries.chunks(QUERY_BATCH) {
        let texts: Vec<String> = batch.iter().map(Record::full_text).collect();
        match scorer {
            Scorer::Bm25(tokenizer) => {
                for text in &texts {
                    out.push(EncodedQuery::Tokens(
                        tokenizer.tokenizer().tokenize_document_untruncated(text)?,
                    ));
                }
            }
            Scorer::Sparse(encoder) => {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                for v in encoder.encode_queries(&refs)? {
                    out.push(EncodedQuery::Vector(v.iter().collect()));
                }
            }
        }
        progress.update(out.len() as u64);
    }
    progress.finish();
    Ok(out)
}

/// Retrieves the top `options.k` documents of every query; every query enters the run, even
/// one that retrieves nothing, so it counts as 0 in the means.
pub fn retrieve(
    searcher: &Searcher,
    queries: &[Record],
    encoded: &[EncodedQuery],
    options: &EvalOptions,
    progress: &dyn Progress,
) -> Result<Run> {
    progress.start(Stage::Search, queries.len() as u64);
    let mut run = Run::new();
    // One extra hit leaves k after dropping the query's own document.
    let depth = options.k + usize::from(options.drop_identical_ids);
    for (i, (query, encoded)) in queries.iter().zip(encoded).enumerate() {
        let hits = match encoded {
            EncodedQuery::Tokens(tokens) => {
                searcher.search(Query::Bm25(tokens), &SearchRequest::new(depth))?
            }
            EncodedQuery::Vector(v) => {
                searcher.search(Query::Neural(v), &SearchRequest::new(depth))?
            }
        };
        run.add_query(query.id.clone());
        hits.into_iter()
            .filter(|h| !(options.drop_identical_ids && h.id == query.id))
            .take(options.k)
            .for_each(|h| run.insert(query.id.clone(), h.id, f64::from(h.score)));
        progress.update(i as u64 + 1);
    }
    progress.finish();
    Ok(run)
}
