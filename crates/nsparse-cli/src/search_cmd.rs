//! `nsparse search`: ranked hits for a query, as text or JSON lines.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use nsparse_index::{Hit, HybridCombination, Query, SearchMode, SearchRequest, Searcher};
use nsparse_model::SparseEncoder;
use serde_json::{json, Value};

use crate::index_cmd::{bm25_identity, canonical_spec, BM25};
use crate::model_args::ModelArgs;

/// Score fusion of `--hybrid`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Fusion {
    /// Min-max normalised scores, averaged with equal weights (OpenSearch's default).
    MinMax,
    /// Reciprocal rank fusion with rank constant 60.
    Rrf,
}

/// Arguments of `nsparse search`.
#[derive(Args, Debug)]
pub struct SearchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The index directory.
    #[arg(long)]
    index: PathBuf,
    /// Number of hits.
    #[arg(short, long = "top-k", default_value_t = 10)]
    k: usize,
    /// Print one JSON object per hit instead of text.
    #[arg(long)]
    json: bool,
    /// Show the matched tokens of each hit with query weight, document weight and contribution.
    #[arg(long)]
    explain: bool,
    /// Approximate search (faster, may miss hits); tune with --top-n and --heap-factor.
    #[arg(long)]
    approx: bool,
    /// Approximate: query tokens (highest weights) that select the candidate blocks.
    #[arg(long, default_value_t = 10, requires = "approx")]
    top_n: usize,
    /// Approximate: skip blocks unless their bound beats heap_factor × the k-th score (1 = exact).
    #[arg(long, default_value_t = 1.0, requires = "approx")]
    heap_factor: f32,
    /// OpenSearch two-phase search (prune_ratio 0.4, expansion_rate 5.0, max_window_size 10000).
    #[arg(long, conflicts_with = "approx")]
    two_phase: bool,
    /// Fuse the neural hits with BM25 hits over the same index.
    #[arg(long, value_enum)]
    hybrid: Option<Fusion>,
    /// Memory cap (MiB per segment) of the bound columns that speed up frequent tokens.
    /// Default 0 (none) unless NSPARSE_DENSE_COLUMNS_MAX_MB is set: building a query's columns
    /// takes longer than they save on a single query. Results never change.
    #[arg(long)]
    dense_columns_max_mb: Option<u64>,
    /// The query as a JSON object of feature names and weights, instead of text, e.g.
    /// `'{"tok1": 1.0, "brand:acme": 0.5}'` (OpenSearch's `query_tokens`): names the index
    /// does not have match nothing.
    #[arg(long, conflicts_with_all = ["query", "hybrid"], required_unless_present = "query")]
    query_vector: Option<String>,
    /// The query text.
    query: Option<String>,
}

/// Runs `nsparse search`.
pub fn run(args: SearchArgs) -> Result<()> {
    let dense_columns_max_mb = match args.dense_columns_max_mb {
        Some(mb) => Some(mb),
        None if std::env::var_os(nsparse_index::DENSE_COLUMNS_MAX_MB_ENV).is_some() => {
            nsparse_index::dense_columns_max_mb_from_env()
        }
        None => Some(0),
    };
    let searcher = nsparse_index::ReaderOptions {
        dense_columns_max_mb,
    }
    .open(&args.index)?;
    anyhow::ensure!(args.k > 0, "-k must be at least 1");
    let metadata = searcher.metadata().clone();
    let recorded_spec = metadata
        .get("model_spec")
        .and_then(Value::as_str)
        .unwrap_or("builtin");
    let is_bm25 = recorded_spec == BM25;
    if is_bm25 && args.query_vector.is_some() {
        bail!(
            "{} is a BM25 index; search it with a query text, not --query-vector",
            args.index.display()
        );
    }
    let text = args.query.clone().unwrap_or_default();

    // The model that encodes the query also names the tokens of the explanations.
    let (hits, encoder) = if is_bm25 {
        let tokenizer_model = SparseEncoder::builtin_query_model();
        if args.model.model.as_deref().is_some_and(|m| m != BM25) {
            bail!(
                "{} is a BM25 index; search it without --model (or with --model bm25)",
                args.index.display()
            );
        }
        searcher.check_model(&bm25_identity(&tokenizer_model))?;
        let tokens = tokenizer_model
            .tokenizer()
            .tokenize_document_untruncated(&text)?;
        let hits = searcher.search(
            Query::Bm25(&tokens),
            &SearchRequest::new(args.k)
                .explain(args.explain)
                .with_source(true),
        )?;
        (hits, tokenizer_model)
    } else {
        let mut model = args.model.clone();
        if model.model.is_none() && recorded_spec != "builtin" {
            model.model = Some(recorded_spec.to_string());
        }
        let encoder = model.load(true)?;
        if encoder.fingerprint() != searcher.model() {
            bail!(
                "{} was built with model {} ({}) but the query model is {} ({}); search with the model that built the index",
                args.index.display(),
                recorded_spec,
                searcher.model(),
                model.model.as_deref().map(canonical_spec).unwrap_or_else(|| "builtin".into()),
                encoder.fingerprint()
            );
        }
        let vector: Vec<(u32, f32)> = match &args.query_vector {
            Some(json) => query_vector(json, &searcher, &encoder)?,
            None => encoder.encode_query(&text)?.iter().collect(),
        };
        let mode = if args.approx {
            SearchMode::Approximate {
                top_n: args.top_n,
                heap_factor: args.heap_factor,
            }
        } else if args.two_phase {
            SearchMode::two_phase()
        } else {
            SearchMode::Exact
        };
        let hits = match args.hybrid {
            Some(fusion) => {
                let tokens = encoder.tokenizer().tokenize_document_untruncated(&text)?;
                let combination = match fusion {
                    Fusion::MinMax => HybridCombination::MinMax {
                        weights: [0.5, 0.5],
                    },
                    Fusion::Rrf => HybridCombination::Rrf {
                        rank_constant: 60.0,
                    },
                };
                let request = SearchRequest::new(args.k)
                    .mode(mode)
                    .with_source(true)
                    .fusion(nsparse_index::Fusion {
                        combination,
                        window: None,
                    });
                searcher.search(
                    Query::Hybrid {
                        vector: &vector,
                        tokens: &tokens,
                    },
                    &request,
                )?
            }
            None => searcher.search(
                Query::Neural(&vector),
                &SearchRequest::new(args.k)
                    .mode(mode)
                    .explain(args.explain)
                    .with_source(true),
            )?,
        };
        (hits, encoder)
    };
    print_hits(&searcher, &encoder, &hits, &args)
}

fn print_hits(
    searcher: &Searcher,
    vocab: &SparseEncoder,
    hits: &[Hit],
    args: &SearchArgs,
) -> Result<()> {
    // An open vocabulary names its features itself; a fixed one is the model's.
    let token = |id: u32| {
        searcher
            .feature_name(id)
            .map(|n| n.to_string())
            .or_else(|| vocab.tokenizer().token(id))
            .unwrap_or_else(|| format!("[id {id}]"))
    };
    if hits.is_empty() && !args.json {
        eprintln!(
            "no document of {} ({} documents) matches",
            args.index.display(),
            searcher.num_docs()
        );
    }
    for (rank, hit) in hits.iter().enumerate() {
        let source: Value = match &hit.source {
            Some(bytes) => serde_json::from_slice(bytes).context("stored source is not JSON")?,
            None => Value::Null,
        };
        if args.json {
            let mut line = json!({"_id": hit.id, "_score": hit.score, "_source": source});
            if let Some(explanation) = &hit.explanation {
                line["explanation"] = explanation
                    .iter()
                    .map(|c| {
                        json!({"token": token(c.token), "query_weight": c.query_weight,
                                    "doc_weight": c.doc_weight, "contribution": c.contribution})
                    })
                    .collect();
            }
            println!("{line}");
            continue;
        }
        println!(
            "{:>3}. {}  score {:.4}  {}",
            rank + 1,
            hit.id,
            hit.score,
            snippet(&source, 100)
        );
        if let Some(explanation) = &hit.explanation {
            let parts: Vec<String> = explanation
                .iter()
                .take(8)
                .map(|c| {
                    format!(
                        "{} {:.2}×{:.2}={:.2}",
                        token(c.token),
                        c.query_weight,
                        c.doc_weight,
                        c.contribution
                    )
                })
                .collect();
            let more = explanation.len().saturating_sub(8);
            let tail = if more > 0 {
                format!(", +{more} more")
            } else {
                String::new()
            };
            println!("     matched: {}{tail}", parts.join(", "));
        }
    }
    Ok(())
}

/// The ids of a `--query-vector` object: through the index's own dictionary (open
/// vocabulary) or the model's vocabulary (fixed). Unknown names are dropped, as OpenSearch's
/// `query_tokens` ignores them; a note says how many.
fn query_vector(json: &str, searcher: &Searcher, model: &SparseEncoder) -> Result<Vec<(u32, f32)>> {
    let object: serde_json::Map<String, Value> = serde_json::from_str(json).with_context(|| {
        format!("--query-vector {json:?} is not a JSON object of feature: weight")
    })?;
    let mut named = Vec::with_capacity(object.len());
    for (name, weight) in &object {
        let w = weight
            .as_f64()
            .filter(|w| w.is_finite() && *w >= 0.0 && *w <= f64::from(f32::MAX))
            .with_context(|| {
                format!("--query-vector: the weight of {name:?} is {weight}; weights must be finite numbers ≥ 0")
            })?;
        named.push((name.as_str(), w as f32));
    }
    let vector = if searcher.has_open_vocabulary() {
        searcher.resolve_features(named.iter().copied())?
    } else {
        let names: Vec<&str> = named.iter().map(|p| p.0).collect();
        let ids = model.tokenizer().ids_of(&names);
        named
            .iter()
            .zip(ids)
            .filter_map(|(&(_, w), id)| id.map(|id| (id, w)))
            .collect()
    };
    let unknown = named.len() - vector.len();
    if unknown > 0 {
        eprintln!(
            "note: {unknown} of the query's {} features are not in the index's vocabulary and match nothing",
            named.len()
        );
    }
    Ok(vector)
}

/// The first `chars` characters of the title and text of a stored source.
fn snippet(source: &Value, chars: usize) -> String {
    let field = |k: &str| source.get(k).and_then(Value::as_str).unwrap_or("");
    let text = [field("title"), field("text")]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" — ");
    let cut: String = text.chars().take(chars).collect();
    if cut.len() < text.len() {
        format!("{cut}…")
    } else {
        cut
    }
}
