//! `nsparse index` and `nsparse delete`: building, extending and editing an index directory.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use nsparse_index::{CreateOptions, Document, Index, Vocabulary, WriterOptions};
use nsparse_model::{SparseEncoder, SparseVector};
use serde_json::{json, Value};

use crate::jsonl::{
    check_records, parse_record, parse_vector_line, InputFile, Record, RecordReader, UniqueIds,
};
use crate::model_args::ModelArgs;

/// The `--model` value that selects the built-in BM25 scorer instead of a neural encoder.
pub const BM25: &str = "bm25";

/// Arguments of `nsparse index`.
#[derive(Args, Debug)]
pub struct IndexArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// BEIR corpus.jsonl to encode and index (`_id`, optional `title`, `text`; `-`: standard
    /// input).
    #[arg(long, conflicts_with = "vectors", required_unless_present = "vectors")]
    corpus: Option<PathBuf>,
    /// Pre-encoded `{"_id": ..., "vector": {feature: weight}}` lines to index as they are (`-`:
    /// standard input). A new index gets an open vocabulary: any feature name is accepted (as
    /// OpenSearch's `rank_features` does), the model's tokens (the built-in bert-base-uncased
    /// vocabulary without --model) keeping their token ids.
    #[arg(long)]
    vectors: Option<PathBuf>,
    /// What the keys of the `--vectors` objects are: feature names, or the model's token ids
    /// as decimal strings (`{"2054": 1.2}`, as OpenSearch's `sparse_vector` takes them).
    #[arg(long, value_enum, default_value_t = VectorKeys::Names, requires = "vectors")]
    vector_keys: VectorKeys,
    /// The index directory (created when absent, extended otherwise).
    #[arg(long)]
    index: PathBuf,
    /// Do not store WordPiece tokens for BM25 and hybrid search (smaller index).
    #[arg(long)]
    no_bm25_tokens: bool,
}

/// The keys of pre-encoded vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VectorKeys {
    /// Feature names (the model's token strings, or any other name).
    Names,
    /// The model's token ids, as decimal strings.
    Ids,
}

/// Arguments of `nsparse delete`.
#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// The index directory.
    #[arg(long)]
    index: PathBuf,
    /// `_id`s to delete.
    #[arg(required = true)]
    ids: Vec<String>,
}

/// What the index's manifest records about its encoder, so `search` can rebuild the query side.
pub fn model_metadata(spec: &str, encoder: &SparseEncoder) -> Value {
    json!({
        "model_spec": spec,
        "model_name": encoder.name(),
        "query_mode": format!("{:?}", encoder.query_mode()),
        "created_by": concat!("nsparse ", env!("CARGO_PKG_VERSION")),
    })
}

/// Canonical form of a model argument: absolute path for folders, as given for Hub ids.
pub fn canonical_spec(spec: &str) -> String {
    if spec == BM25 {
        return spec.into();
    }
    std::fs::canonicalize(spec)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| spec.to_string())
}

/// The identity the index stores for the BM25 scorer (tied to the tokenizer that splits the text).
pub fn bm25_identity(tokenizer_model: &SparseEncoder) -> String {
    format!("bm25+{}", tokenizer_model.fingerprint())
}

/// Opens `dir` for writing, creating it for `model` (token ids below `vocab_size`) when it holds
/// no index yet; refuses an index that another model built.
pub fn open_or_create(
    dir: &Path,
    model: &str,
    vocabulary: Vocabulary,
    metadata: Value,
    writer: WriterOptions,
) -> Result<Index> {
    // Index::create refuses a directory that already holds an index, so a wrong guess here can
    // never overwrite one.
    if dir.join("MANIFEST").exists() {
        let index = Index::open(dir, writer)?;
        if index.model() != model {
            bail!(
                "{} was built with model {} but this run uses {model}; index with the same --model, or choose a new --index directory",
                dir.display(),
                index.model()
            );
        }
        return Ok(index);
    }
    let mut options = CreateOptions::new(model).with_vocabulary(vocabulary);
    options.metadata = metadata;
    Ok(Index::create(dir, &options, writer)?)
}

/// Runs `nsparse index`.
///
/// `threads` (the global `--threads`) also bounds the threads that build index segments and
/// parse input lines.
///
/// A failed run leaves no index behind where there was none: what it created (the directory, or
/// the files it added to an existing directory without an index) is removed. Input going into an
/// existing index is checked whole (JSON, `_id`s, vectors' tokens) before anything is written, so
/// bad input anywhere leaves the index as it was; a failure after writing began (encoder or disk
/// error) keeps the documents written before it, each write durable as always, and rerunning the
/// same command completes the job (documents are upserted).
pub fn run_index(args: IndexArgs, threads: Option<usize>) -> Result<()> {
    let created = if args.index.join("MANIFEST").exists() {
        None
    } else {
        Some(CreatedPaths::before_creating(&args.index))
    };
    let result = index_documents(&args, threads, created.is_some());
    match (result, created) {
        (Err(e), Some(created)) => match created.remove() {
            Ok(()) => Err(e.context(format!(
                "nothing was indexed; the new index {} was removed",
                args.index.display()
            ))),
            Err(cleanup) => Err(e.context(format!(
                "the partial index {} could not be removed ({cleanup:#}); delete it by hand",
                args.index.display()
            ))),
        },
        (result, _) => result,
    }
}

/// What a new index directory adds to the file system, to remove it after a failed run (and
/// nothing that existed before).
enum CreatedPaths {
    /// The outermost directory that did not exist (the index directory or an ancestor).
    Directory(PathBuf),
    /// The index directory existed (without an index): its entries before the run.
    Entries(PathBuf, std::collections::HashSet<std::ffi::OsString>),
    /// The directory cannot be listed; nothing will be removed.
    Unknown,
}

impl CreatedPaths {
    fn before_creating(dir: &Path) -> Self {
        if dir.exists() {
            return match std::fs::read_dir(dir) {
                Ok(entries) => CreatedPaths::Entries(
                    dir.to_path_buf(),
                    entries
                        .filter_map(|e| e.ok().map(|e| e.file_name()))
                        .collect(),
                ),
                Err(_) => CreatedPaths::Unknown,
            };
        }
        let mut outermost = dir.to_path_buf();
        for ancestor in dir.ancestors().skip(1) {
            if ancestor.as_os_str().is_empty() || ancestor.exists() {
                break;
            }
            outermost = ancestor.to_path_buf();
        }
        CreatedPaths::Directory(outermost)
    }

    fn remove(self) -> Result<()> {
        match self {
            CreatedPaths::Directory(dir) => match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(e).with_context(|| format!("cannot remove {}", dir.display()))
                }
                _ => Ok(()),
            },
            CreatedPaths::Entries(dir, before) => {
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    return Ok(());
                };
                for entry in entries {
                    let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
                    if before.contains(&entry.file_name()) {
                        continue;
                    }
                    let path = entry.path();
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    }
                    .with_context(|| format!("cannot remove {}", path.display()))?;
                }
                Ok(())
            }
            CreatedPaths::Unknown => Ok(()),
        }
    }
}

/// The body of `nsparse index`; `new_index` when the directory holds no index yet.
fn index_documents(args: &IndexArgs, threads: Option<usize>, new_index: bool) -> Result<()> {
    let bm25 = args.model.model.as_deref() == Some(BM25);
    // BM25 and pre-encoded vectors only need a tokenizer; the built-in query model has it.
    let encoder = if bm25 || (args.vectors.is_some() && args.model.model.is_none()) {
        SparseEncoder::builtin_query_model()
    } else {
        args.model.load(false)?
    };
    if args.corpus.is_some() && !bm25 && !encoder.can_encode_documents() {
        bail!("{} is a query-only model and cannot encode a corpus; pass a document encoder or --model bm25", encoder.name());
    }
    let spec = match &args.model.model {
        Some(spec) => canonical_spec(spec),
        None => "builtin".into(),
    };
    let identity = if bm25 {
        bm25_identity(&encoder)
    } else {
        encoder.fingerprint().to_string()
    };
    let writer = WriterOptions {
        build_threads: threads.unwrap_or(0),
        ..WriterOptions::default()
    };
    let pruning = args.model.pruning()?;
    let input = InputFile::resolve(
        args.corpus
            .as_ref()
            .or(args.vectors.as_ref())
            .expect("clap requires one"),
    )?;
    let input = input.path();
    // A new index of vectors gets an open vocabulary (names outside the model's vocabulary can
    // go in); an existing index keeps what it was created with.
    let vocabulary = if args.vectors.is_some() {
        Vocabulary::Open {
            seed: model_vocabulary(&encoder)?,
        }
    } else {
        let size = u32::try_from(encoder.vocab_size())
            .context("the model's vocabulary has more than u32::MAX tokens")?;
        Vocabulary::fixed(size)
    };
    let mut index = open_or_create(
        &args.index,
        &identity,
        vocabulary,
        model_metadata(&spec, &encoder),
        writer,
    )?;
    let open_vocabulary = index.info().open_vocabulary;
    // Pre-encoded vectors: a line becomes its document's `_id`, the entries the model's
    // vocabulary has (their token ids) and the other names.
    let vector_line = |line: &str, origin: &str| -> Result<VectorLine> {
        let (record, entries) = parse_vector_line(line, origin)?;
        let context = || format!("{origin}: _id {}", record.id);
        let (known, others) =
            resolve_entries(&encoder, &entries, args.vector_keys).with_context(context)?;
        if !others.is_empty() && !open_vocabulary {
            bail!(
                "{}: {:?} is not in the model's vocabulary, and {} has a fixed vocabulary (an index created by an older nsparse, or from a corpus); index these vectors into a new --index directory, which accepts any feature name",
                context(),
                others[0].0,
                args.index.display()
            );
        }
        Ok(VectorLine {
            record,
            known,
            others,
        })
    };
    // A corpus is checked whole first (encoding is slow; bad input should not
    // surface hours in), and so is any input going into an existing index. A
    // vectors file for a new index is checked as it is indexed, in one pass:
    // a failure removes the new index.
    let checked_records = if args.corpus.is_some() {
        Some(check_records(input, threads, |line, origin| {
            Ok(parse_record(line, origin)?.id)
        })?)
    } else if !new_index {
        Some(check_records(input, threads, |line, origin| {
            Ok(vector_line(line, origin)?.record.id)
        })?)
    } else {
        None
    };
    let mut reader = RecordReader::open(input)?.with_threads(threads);
    let mut ids = checked_records.is_none().then(|| UniqueIds::new(input));
    // A vectors file is large and quick to index, so its bar counts bytes:
    // counting its lines first would read it twice. A corpus is counted in
    // documents, which encoding reports as it goes.
    let bar = if args.vectors.is_some() {
        let bytes = std::fs::metadata(input)
            .with_context(|| format!("cannot read {}", input.display()))?
            .len();
        ProgressBar::new(bytes).with_style(
            ProgressStyle::with_template(
                "{spinner} {bar:40} {bytes}/{total_bytes}  {msg}  {binary_bytes_per_sec}  eta {eta}",
            )
            .expect("static template"),
        )
    } else {
        ProgressBar::new(checked_records.unwrap_or(0)).with_style(
            ProgressStyle::with_template(
                "{spinner} {bar:40} {pos}/{len} docs  {per_sec}  eta {eta}",
            )
            .expect("static template"),
        )
    };
    let started = Instant::now();
    let (mut done, mut truncated) = (0usize, 0usize);
    const BULK_DOCS: usize = 100_000;
    let mut pending: Vec<Document> = Vec::new();
    // Turns a record and its vector into a document: pruning, BM25 tokens, stored source.
    let document = |record: Record, mut vector: SparseVector| -> Result<Document> {
        vector.prune(pruning);
        let tokens = if args.no_bm25_tokens && !bm25 {
            None
        } else if record.text.is_empty() {
            // (Vector lines need no text; the tokenizer would return nothing.)
            Some(Vec::new())
        } else {
            Some(
                encoder
                    .tokenizer()
                    .tokenize_document_untruncated(&record.text)?,
            )
        };
        Ok(Document {
            id: record.id,
            vector: vector.iter().collect(),
            tokens,
            // (For vector lines the parser left the vector out.)
            source: serde_json::to_vec(&record.source)?,
        })
    };
    loop {
        let docs: Vec<Document> = if args.vectors.is_some() {
            // Pre-encoded vectors: every document is built on the parsing
            // threads, straight from its line to token ids.
            // Lines with names new to the index wait for them to get ids here.
            let chunk = reader.next_numbered_chunk_with(2048, |line, origin| {
                let parsed = vector_line(line, origin)?;
                if parsed.others.is_empty() {
                    let vector = SparseVector::from_pairs(parsed.known);
                    return Ok(Either::Done(document(parsed.record, vector)?));
                }
                Ok(Either::NeedsIds(parsed))
            })?;
            let mut docs = Vec::with_capacity(chunk.len());
            for (line, parsed) in chunk {
                let doc = match parsed {
                    Either::Done(doc) => doc,
                    Either::NeedsIds(mut parsed) => {
                        let new_ids = index
                            .feature_ids(parsed.others.iter().map(|p| p.0.as_str()))
                            .with_context(|| {
                                format!(
                                    "{}: line {line}: _id {}",
                                    input.display(),
                                    parsed.record.id
                                )
                            })?;
                        parsed
                            .known
                            .extend(new_ids.into_iter().zip(parsed.others.iter().map(|p| p.1)));
                        document(parsed.record, SparseVector::from_pairs(parsed.known))?
                    }
                };
                if let Some(ids) = &mut ids {
                    ids.insert(&doc.id, line)?;
                }
                docs.push(doc);
            }
            docs
        } else {
            // Text chunks stay small so the progress bar moves during encoding.
            let chunk = reader.next_chunk(1024)?;
            let vectors = if bm25 {
                vec![SparseVector::new(); chunk.len()]
            } else {
                let texts: Vec<&str> = chunk.iter().map(|r| r.text.as_str()).collect();
                let before = bar.position();
                let out =
                    encoder.encode_documents(&texts, |n| bar.set_position(before + n as u64))?;
                truncated += out.truncated;
                out.vectors
            };
            chunk
                .into_iter()
                .zip(vectors)
                .map(|(record, vector)| document(record, vector))
                .collect::<Result<_>>()?
        };
        if docs.is_empty() {
            break;
        }
        done += docs.len();
        if args.vectors.is_some() {
            // Pre-encoded vectors: build segments directly (one commit per
            // BULK_DOCS documents) instead of logging every document in the WAL.
            pending.extend(docs);
            if pending.len() >= BULK_DOCS {
                index.bulk_upsert(&pending)?;
                pending.clear();
            }
        } else {
            index.upsert_batch(&docs)?;
        }
        if args.vectors.is_some() {
            bar.set_position(reader.bytes_read());
            bar.set_message(format!("{done} docs"));
        } else {
            bar.set_position(done as u64);
        }
    }
    if !pending.is_empty() {
        index.bulk_upsert(&pending)?;
    }
    index.commit()?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let info = index.info();
    let mut line = format!(
        "indexed {done} documents in {secs:.2} s ({:.1} docs/s); {} now holds {} documents in {} segments",
        done as f64 / secs.max(1e-9),
        args.index.display(),
        info.live_docs,
        info.segments
    );
    if truncated > 0 {
        line += &format!("; {truncated} documents longer than 512 tokens were truncated (--chunk-long-documents keeps them whole)");
    }
    eprintln!("{line}");
    Ok(())
}

/// A parsed vectors line.
struct VectorLine {
    record: Record,
    /// Entries of the model's vocabulary, as token ids.
    known: Vec<(u32, f32)>,
    /// Other feature names (an open vocabulary gives them ids).
    others: Vec<(String, f32)>,
}

/// A vectors line turned into a document, or waiting for ids of its new names.
enum Either {
    Done(Document),
    NeedsIds(VectorLine),
}

/// A vector's entries the model's vocabulary has (token ids), and the other names.
type SplitEntries = (Vec<(u32, f32)>, Vec<(String, f32)>);

/// Splits a vector's entries into the model's token ids and other names, checking weights
/// (finite, ≥ 0). With [`VectorKeys::Ids`] every key must be a token id of the model.
fn resolve_entries(
    encoder: &SparseEncoder,
    entries: &crate::vector_json::TokenWeights<'_>,
    keys: VectorKeys,
) -> Result<SplitEntries> {
    let names: Vec<&str> = entries.iter().map(|(t, _)| t.as_ref()).collect();
    let ids: Vec<Option<u32>> = match keys {
        VectorKeys::Names => encoder.tokenizer().ids_of(&names),
        VectorKeys::Ids => {
            let vocab = encoder.vocab_size();
            names
                .iter()
                .map(|k| match k.parse::<u32>() {
                    Ok(id) if (id as usize) < vocab && k.bytes().all(|b| b.is_ascii_digit()) => {
                        Ok(Some(id))
                    }
                    _ => bail!(
                        "key {k:?} is not a token id of the model (a decimal integer below its vocabulary size {vocab}); use --vector-keys names for feature names"
                    ),
                })
                .collect::<Result<_>>()?
        }
    };
    let (mut known, mut others) = (Vec::with_capacity(names.len()), Vec::new());
    for ((name, weight), id) in entries.iter().zip(ids) {
        if !weight.is_finite() || *weight < 0.0 {
            bail!("feature {name:?} has weight {weight}; weights must be finite and ≥ 0");
        }
        match id {
            Some(id) => known.push((id, *weight)),
            None => others.push((name.to_string(), *weight)),
        }
    }
    Ok((known, others))
}

/// The model's token strings in id order: the seed of an open vocabulary, so the model's
/// token ids stay valid in the index unchanged.
fn model_vocabulary(encoder: &SparseEncoder) -> Result<Vec<String>> {
    let tokenizer = encoder.tokenizer();
    (0..encoder.vocab_size() as u32)
        .map(|id| {
            tokenizer.token(id).with_context(|| {
                format!(
                    "the model's vocabulary has no token for id {id}; its tokenizer must name every id below vocab_size"
                )
            })
        })
        .collect()
}

/// Runs `nsparse delete`.
pub fn run_delete(args: DeleteArgs) -> Result<()> {
    let mut index = Index::open(&args.index, WriterOptions::default())?;
    let mut missing = Vec::new();
    for id in &args.ids {
        if !index.delete(id)? {
            missing.push(id.as_str());
        }
    }
    index.commit()?;
    eprintln!(
        "deleted {} of {} documents from {}",
        args.ids.len() - missing.len(),
        args.ids.len(),
        args.index.display()
    );
    if !missing.is_empty() {
        bail!("not in the index: {}", missing.join(", "));
    }
    Ok(())
}
