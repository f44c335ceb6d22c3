//! `nsparse encode`: text to `{token: weight}` JSON.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use nsparse_model::{Pruning, SparseEncoder, SparseVector};
use serde_json::{Map, Value};

use crate::jsonl::{count_records, write_line, AtomicOutput, InputFile, RecordReader};
use crate::model_args::ModelArgs;

/// What to encode.
#[derive(Subcommand, Debug)]
pub enum EncodeCommand {
    /// Encode one query and print {token: weight}, by weight descending.
    Query {
        #[command(flatten)]
        model: ModelArgs,
        /// The query text.
        text: String,
    },
    /// Encode one document and print {token: weight}, by weight descending.
    Document {
        #[command(flatten)]
        model: ModelArgs,
        /// The document text.
        text: String,
    },
    /// Encode a BEIR corpus.jsonl into {"_id", "vector"} lines.
    Documents {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        files: FileArgs,
    },
    /// Encode a BEIR queries.jsonl into {"_id", "vector"} lines.
    Queries {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        files: FileArgs,
    },
}

/// Input and output files of the bulk commands.
#[derive(clap::Args, Debug)]
pub struct FileArgs {
    /// JSON lines with `_id`, optional `title`, and `text` (`-`: standard input).
    #[arg(long, short)]
    input: PathBuf,
    /// Where to write `{"_id": ..., "vector": {token: weight}}` lines (`-`: standard output).
    #[arg(long, short)]
    output: PathBuf,
}

/// Runs an encode subcommand.
pub fn run(cmd: EncodeCommand, threads: Option<usize>) -> Result<()> {
    match cmd {
        EncodeCommand::Query { model, text } => {
            let encoder = model.load(true)?;
            let vector = pruned(encoder.encode_query(&text)?, model.pruning()?);
            println!("{}", Value::Object(token_map(&encoder, &vector)));
        }
        EncodeCommand::Document { model, text } => {
            let encoder = model.load(false)?;
            let out = encoder.encode_documents(&[text.as_str()], |_| {})?;
            if out.truncated > 0 {
                eprintln!("warning: the document is longer than 512 tokens and was truncated (use --chunk-long-documents to keep all of it)");
            }
            let vector = pruned(
                out.vectors.into_iter().next().unwrap_or_default(),
                model.pruning()?,
            );
            println!("{}", Value::Object(token_map(&encoder, &vector)));
        }
        EncodeCommand::Documents { model, files } => encode_file(&model, &files, false, threads)?,
        EncodeCommand::Queries { model, files } => encode_file(&model, &files, true, threads)?,
    }
    Ok(())
}

fn pruned(mut vector: SparseVector, pruning: Pruning) -> SparseVector {
    vector.prune(pruning);
    vector
}

/// `{token: weight}` in descending weight order.
pub fn token_map(encoder: &SparseEncoder, vector: &SparseVector) -> Map<String, Value> {
    encoder
        .decode(vector)
        .into_iter()
        .map(|(token, weight)| (token, Value::from(weight)))
        .collect()
}

fn encode_file(
    model: &ModelArgs,
    files: &FileArgs,
    queries: bool,
    threads: Option<usize>,
) -> Result<()> {
    let encoder = model.load(queries)?;
    let pruning = model.pruning()?;
    let input = InputFile::resolve(&files.input)?;
    let total = count_records(input.path())?;
    let mut reader = RecordReader::open(input.path())?.with_threads(threads);
    let mut output = AtomicOutput::create(&files.output)?;
    // Progress and the summary go to standard error, so `-o -` keeps standard output clean.
    let shown = if files.output == Path::new("-") {
        "standard output".to_string()
    } else {
        files.output.display().to_string()
    };
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{spinner} {bar:40} {pos}/{len} docs  {per_sec}  eta {eta}")
            .expect("static template"),
    );
    let started = Instant::now();
    let (mut docs, mut tokens, mut truncated) = (0usize, 0usize, 0usize);
    loop {
        let chunk = reader.next_chunk(1024)?;
        if chunk.is_empty() {
            break;
        }
        let texts: Vec<&str> = chunk.iter().map(|r| r.text.as_str()).collect();
        let done_before = bar.position();
        let vectors = if queries && encoder.query_mode() == nsparse_model::QueryMode::InferenceFree
        {
            let v = encoder.encode_queries(&texts)?;
            bar.inc(texts.len() as u64);
            v
        } else {
            let out = encoder.encode_documents(&texts, |finished| {
                bar.set_position(done_before + finished as u64)
            })?;
            tokens += out.tokens;
            truncated += out.truncated;
            out.vectors
        };
        for (record, vector) in chunk.iter().zip(vectors) {
            let vector = pruned(vector, pruning);
            let mut line = Map::new();
            line.insert("_id".into(), Value::String(record.id.clone()));
            line.insert("vector".into(), Value::Object(token_map(&encoder, &vector)));
            write_line(&mut output.writer, &Value::Object(line).to_string())
                .with_context(|| format!("cannot write {shown}"))?;
        }
        docs += chunk.len();
    }
    output.commit()?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let kind = if queries { "queries" } else { "documents" };
    let mut line = format!(
        "encoded {docs} {kind} in {secs:.2} s: {:.1} {kind}/s",
        docs as f64 / secs.max(1e-9)
    );
    if tokens > 0 {
        line += &format!(", {:.0} tokens/s", tokens as f64 / secs.max(1e-9));
    }
    if truncated > 0 {
        line += &format!("; {truncated} longer than 512 tokens were truncated (--chunk-long-documents keeps them whole)");
    }
    eprintln!("{line}; wrote {shown}");
    Ok(())
}
