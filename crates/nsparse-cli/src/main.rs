//! The `nsparse` command-line tool: encoding, indexing, search and evaluation of learned sparse
//! vectors. Each subcommand lives in its own module; this file parses arguments and sets up
//! logging and threads.

mod encode_cmd;
mod eval_cmd;
mod export_cmd;
mod index_cmd;
mod jsonl;
mod model_args;
mod search_cmd;
mod serve_cmd;
mod vector_json;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Learned sparse retrieval with the OpenSearch neural sparse models.
#[derive(Parser, Debug)]
#[command(name = "nsparse", version, about, long_about = None)]
struct Cli {
    /// Worker threads for encoding, index builds and search (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// More log output (-v: debug, -vv: trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Turn text into sparse vectors.
    #[command(subcommand)]
    Encode(encode_cmd::EncodeCommand),
    /// Build or extend an index from a corpus (encoding it) or from pre-encoded vectors.
    Index(index_cmd::IndexArgs),
    /// Search an index.
    Search(search_cmd::SearchArgs),
    /// Delete documents from an index by `_id`.
    Delete(index_cmd::DeleteArgs),
    /// Evaluate a model on a BEIR-layout dataset (NDCG@10, Recall@100, MRR@10, MAP@100, FLOPS).
    Eval(eval_cmd::EvalArgs),
    /// Serve the OpenSearch neural sparse REST API (indices, ingest pipelines, _search).
    Serve(serve_cmd::ServeArgs),
    /// Write an index as OpenSearch mapping + `_bulk` files, to load it into a cluster.
    Export(export_cmd::ExportArgs),
}

fn main() {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    if let Some(threads) = cli.threads {
        rayon_pool(threads)?;
    }
    match cli.command {
        Command::Encode(cmd) => encode_cmd::run(cmd, cli.threads),
        Command::Index(args) => index_cmd::run_index(args, cli.threads),
        Command::Search(args) => search_cmd::run(args),
        Command::Delete(args) => index_cmd::run_delete(args),
        Command::Eval(args) => eval_cmd::run(args),
        Command::Serve(args) => serve_cmd::run(args),
        Command::Export(args) => export_cmd::run(args),
    }
}

fn rayon_pool(threads: usize) -> Result<()> {
    anyhow::ensure!(threads > 0, "--threads must be at least 1");
    nsparse_model::init_thread_pool(threads)?;
    Ok(())
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
