//! `nsparse eval`: relevance of a model (or BM25) on a BEIR dataset, with the figures BEIR and
//! the OpenSearch neural-sparse papers report.

use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use nsparse_eval::{
    evaluate_dataset, write_run_file, BeirDataset, EvalOptions, EvalReport, IndexLocation, Measure,
    Progress, Scorer, Stage,
};
use nsparse_model::SparseEncoder;

use crate::model_args::ModelArgs;

/// The magic `--model` value for BM25 over the built-in WordPiece tokenizer.
const BM25: &str = "bm25";

/// Options of `nsparse eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The model: a document encoder's folder, or `bm25`.
    #[command(flatten)]
    pub model: ModelArgs,
    /// BEIR dataset folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv.
    #[arg(long)]
    pub dataset: PathBuf,
    /// Qrels split to evaluate (qrels/<split>.tsv).
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Cache the index here: reused when it holds this model's index of this corpus, built
    /// otherwise (default: a temporary index).
    #[arg(long)]
    pub index: Option<PathBuf>,
    /// Write the run as a TREC run file (`qid Q0 docid rank score tag`).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Documents retrieved per query.
    #[arg(short, long = "top-k", default_value_t = 1000)]
    pub k: usize,
    /// Keep retrieved documents whose `_id` equals the query's (BEIR drops them).
    #[arg(long)]
    pub keep_identical_ids: bool,
}

/// Progress bars on stderr, one per stage.
struct Bars {
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress for Bars {
    fn start(&self, stage: Stage, total: u64) {
        let label = match stage {
            Stage::IndexCorpus => "index corpus  ",
            Stage::EncodeQueries => "encode queries",
            Stage::Search => "search        ",
        };
        let template = format!("{label} {{bar:40}} {{pos}}/{{len}}  {{per_sec}}  eta {{eta}}");
        let bar = ProgressBar::new(total)
            .with_style(ProgressStyle::with_template(&template).expect("static template"));
        *self.bar.lock().expect("progress lock") = Some(bar);
    }

    fn update(&self, done: u64) {
        if let Some(bar) = &*self.bar.lock().expect("progress lock") {
            bar.set_position(done);
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.bar.lock().expect("progress lock").take() {
            bar.finish_and_clear();
        }
    }
}

/// Runs `nsparse eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    let is_bm25 = args.model.model.as_deref() == Some(BM25);
    let encoder = if is_bm25 {
        if args.model.idf.is_some() || args.model.neural_queries || args.model.prune_type.is_some()
        {
            bail!("--idf, --neural-queries and --prune-type configure a neural model; BM25 takes none of them");
        }
        SparseEncoder::builtin_query_model()
    } else {
        if args.model.model.is_none() {
            bail!("pass --model DIR (a document encoder's Hugging Face folder) or --model bm25");
        }
        args.model.load(false)?
    };
    let scorer = if is_bm25 {
        Scorer::Bm25(&encoder)
    } else {
        Scorer::Sparse(&encoder)
    };
    let dataset = BeirDataset::load(&args.dataset, &args.split)
        .with_context(|| format!("cannot load the BEIR dataset {}", args.dataset.display()))?;
    let options = EvalOptions {
        k: args.k,
        measures: Measure::HEADLINE.to_vec(),
        drop_identical_ids: !args.keep_identical_ids,
        document_pruning: args.model.pruning()?,
    };
    let location = match &args.index {
        Some(dir) => IndexLocation::Cached(dir),
        None => IndexLocation::Temporary,
    };
    let bars = Bars {
        bar: Mutex::new(None),
    };
    let outcome = evaluate_dataset(&dataset, scorer, location, &options, &bars)?;
    if let Some(path) = &args.output {
        let tag = if is_bm25 { "nsparse-bm25" } else { "nsparse" };
        write_run_file(path, &outcome.run, tag)?;
    }
    if args.json {
        println!("{}", serde_json::to_string(&outcome.report)?);
    } else {
        print!("{}", table(&outcome.report));
    }
    Ok(())
}

fn table(r: &EvalReport) -> String {
    let mut out = format!(
        "{} ({} split): {} queries, {} documents, {} ({}), top {}\n",
        r.dataset, r.split, r.queries, r.documents, r.model, r.scorer, r.k
    );
    for (name, value) in &r.metrics {
        out += &format!("  {name:<22}{:.4}\n", value.as_f64().unwrap_or(f64::NAN));
    }
    match &r.sparsity {
        Some(s) => {
            out += &format!("  {:<22}{:.4}\n", "FLOPS", s.flops);
            out += &format!(
                "  {:<22}{:.1}\n",
                "avg query non-zeros", s.avg_query_nonzeros
            );
            out += &format!("  {:<22}{:.1}\n", "avg doc non-zeros", s.avg_doc_nonzeros);
        }
        None => out += &format!("  {:<22}n/a (BM25)\n", "FLOPS"),
    }
    let t = &r.timings;
    let per = |secs: f64, n: usize| secs / n.max(1) as f64 * 1000.0;
    match (t.encode_docs_s, t.index_s) {
        (Some(enc), Some(idx)) => {
            out += &format!(
                "  {:<22}{enc:.2} s ({:.0} docs/s)\n",
                "encode docs",
                r.documents as f64 / enc.max(1e-9)
            );
            out += &format!("  {:<22}{idx:.2} s\n", "index docs");
        }
        _ => out += &format!("  {:<22}reused cached index\n", "encode docs"),
    }
    out += &format!(
        "  {:<22}{:.3} s ({:.2} ms/query)\n",
        "encode queries",
        t.encode_queries_s,
        per(t.encode_queries_s, r.queries)
    );
    out += &format!(
        "  {:<22}{:.3} s ({:.2} ms/query)\n",
        "search",
        t.search_s,
        per(t.search_s, r.queries)
    );
    if r.truncated_documents > 0 {
        out += &format!(
            "  {} documents longer than 512 tokens were truncated (--chunk-long-documents keeps them whole)\n",
            r.truncated_documents
        );
    }
    out
}
