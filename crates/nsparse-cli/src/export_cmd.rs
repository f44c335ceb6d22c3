//! `nsparse export`: an index as the files that load the same documents and vectors into an
//! OpenSearch cluster (the scale-out path).
//!
//! The output is a directory with `mapping.json` (the body of `PUT /{index}`: a `rank_features`
//! field for the vectors, `text` fields for the string fields of the sources), `bulk-NNNNN.ndjson`
//! files (`_bulk` bodies, each at most `--max-file-bytes`, whole documents only) and `load.sh`
//! (curl: create the index, post each file, stop at the first item error). Vectors are written
//! as `{token string: weight}`: OpenSearch keys rank features by name, so token ids go through the
//! vocabulary of the model that built the index. Weights are the index's stored f16 values.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use nsparse_index::{open_reader, Searcher, StoredDocument};
use nsparse_model::{EncoderOptions, SparseEncoder};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::index_cmd::{canonical_spec, BM25};

/// Export formats.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ExportFormat {
    /// `mapping.json` for `PUT /{index}` and `_bulk` NDJSON files for `POST /_bulk`.
    OpensearchBulk,
}

/// Arguments of `nsparse export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The index directory.
    #[arg(long)]
    index: PathBuf,
    /// What to write.
    #[arg(long, value_enum)]
    format: ExportFormat,
    /// A new directory for mapping.json, bulk-NNNNN.ndjson and load.sh, or `-` for one `_bulk`
    /// body on stdout (the index-creation command is then printed on stderr).
    #[arg(long, default_value = "-")]
    output: String,
    /// OpenSearch index name (default: the index directory's name, made a valid index name).
    #[arg(long)]
    index_name: Option<String>,
    /// Field of the `rank_features` vector in the exported documents (replaces a source field of
    /// that name). Default: the served index's `rank_features` field, else `embedding`.
    #[arg(long)]
    vector_field: Option<String>,
    /// Source fields to map as `text` (default: every top-level field whose values are all
    /// strings). Other fields are left to OpenSearch's dynamic mapping.
    #[arg(long, value_delimiter = ',')]
    text_fields: Option<Vec<String>>,
    /// Largest `_bulk` file in bytes (default 10 MiB; OpenSearch refuses bodies over
    /// `http.max_content_length`, 100 MB by default).
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    max_file_bytes: u64,
    /// Model folder whose vocabulary names the tokens, when the one the index records has moved
    /// (it must be the same model: its fingerprint is checked).
    #[arg(long)]
    model: Option<String>,
    /// The sparse fields are in the stored sources as sent, not in the index's vectors (an
    /// index of `nsparse serve` whose every sparse field has an index of its own).
    #[arg(skip)]
    vectors_in_source: bool,
}

/// Source fields OpenSearch reserves; a document that carries one in its body is rejected.
const METADATA_FIELDS: &[&str] = &[
    "_id",
    "_index",
    "_source",
    "_routing",
    "_type",
    "_version",
    "_seq_no",
    "_primary_term",
    "_field_names",
    "_ignored",
    "_doc_count",
    "_size",
];

/// What the export wrote and dropped, for the summary line.
#[derive(Default)]
struct Tally {
    documents: u64,
    weights: u64,
    /// Stored weights ≤ 0 or not finite: OpenSearch rejects such rank features.
    dropped_weights: u64,
    /// Reserved fields (`_id`, …) removed from sources.
    dropped_metadata: u64,
    /// Documents without any weight (no vector field written).
    empty_vectors: u64,
}

impl ExportArgs {
    fn vector_field(&self) -> &str {
        self.vector_field.as_deref().unwrap_or("embedding")
    }
}

/// An index that `nsparse serve` keeps (`DATA/indices/NAME/index`, with its mapping in
/// `DATA/indices/NAME/meta.json`).
struct Served {
    /// The mapping's `properties`.
    properties: Map<String, Value>,
    /// NAME.
    name: String,
    /// Where the sparse fields' vectors are: `None` for the previous release's layout (the
    /// one sparse field in the index's vectors); otherwise `Some(field)` when the index's
    /// vectors still hold `field` (an index created by the previous release) and the other
    /// sparse fields are in the sources as sent, `Some(None)` when every one is.
    per_field_main: Option<Option<String>>,
}

fn served_mapping(index_dir: &Path) -> Result<Option<Served>> {
    let Some(parent) = index_dir
        .canonicalize()
        .ok()
        .and_then(|d| d.parent().map(Path::to_path_buf))
    else {
        return Ok(None);
    };
    let meta_path = parent.join("meta.json");
    if !meta_path.is_file() || !parent.parent().is_some_and(|p| p.ends_with("indices")) {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&meta_path)
        .with_context(|| format!("cannot read {}", meta_path.display()))?;
    let meta: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", meta_path.display()))?;
    let Some(properties) = meta
        .pointer("/mappings/properties")
        .and_then(Value::as_object)
    else {
        return Ok(None);
    };
    let name = parent
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let per_field_main = meta
        .pointer("/sparse_layout/per_field")
        .map(|p| p.get("main").and_then(Value::as_str).map(str::to_owned));
    Ok(Some(Served {
        properties: properties.clone(),
        name,
        per_field_main,
    }))
}

/// Runs `nsparse export`.
pub fn run(mut args: ExportArgs) -> Result<()> {
    let served = served_mapping(&args.index)?;
    match served.as_ref().map(|s| &s.per_field_main) {
        // Every sparse field is in the sources as sent: they are exported as they are.
        Some(Some(None)) => args.vectors_in_source = true,
        // The index's vectors are the field the previous release kept there.
        Some(Some(Some(main))) if args.vector_field.is_none() => {
            args.vector_field = Some(main.clone())
        }
        _ if args.vector_field.is_none() => {
            // A served index names its vector field in its mapping.
            args.vector_field = served.as_ref().and_then(|s| {
                let mut vectors = s.properties.iter().filter(|(_, p)| {
                    matches!(p["type"].as_str(), Some("rank_features" | "sparse_vector"))
                });
                match (vectors.next(), vectors.next()) {
                    (Some((name, _)), None) => Some(name.clone()),
                    _ => None,
                }
            });
        }
        _ => {}
    }
    let ExportFormat::OpensearchBulk = args.format;
    anyhow::ensure!(
        args.max_file_bytes >= 1024,
        "--max-file-bytes {} is too small; use at least 1024 (default 10 MiB)",
        args.max_file_bytes
    );
    anyhow::ensure!(
        !args.vector_field().is_empty() && !args.vector_field().starts_with('_'),
        "--vector-field {:?}: OpenSearch field names must be non-empty and not start with '_'",
        args.vector_field()
    );
    let searcher = open_reader(&args.index)?;
    let names = if searcher.has_open_vocabulary() {
        FeatureNames::Index(searcher.clone())
    } else {
        FeatureNames::Model(Box::new(vocabulary_model(&searcher, &args)?))
    };
    let vocabulary = &names;
    let index_name = match &args.index_name {
        Some(name) => {
            check_index_name(name)?;
            name.clone()
        }
        None => match &served {
            Some(served) => served.name.clone(),
            None => default_index_name(&args.index)?,
        },
    };
    let mut fields = FieldKinds::default();
    let mut tally = Tally::default();
    if args.output == "-" {
        let stdout = std::io::stdout();
        let mut out = BufWriter::new(stdout.lock());
        for doc in searcher.documents() {
            let line = bulk_pair(
                &doc?,
                &index_name,
                &args,
                vocabulary,
                &mut fields,
                &mut tally,
            )?;
            out.write_all(line.as_bytes())
                .context("cannot write to stdout")?;
        }
        out.flush().context("cannot write to stdout")?;
        let mapping = mapping(
            &searcher,
            &args,
            &fields,
            served.as_ref().map(|s| &s.properties),
        )?;
        eprintln!(
            "exported {} documents ({} weights) as one _bulk body; create the index first:\n  curl -XPUT \"$OPENSEARCH_URL/{index_name}\" -H 'Content-Type: application/json' -d '{}'",
            tally.documents,
            tally.weights,
            serde_json::to_string(&mapping)?.replace('\'', "'\\''")
        );
    } else {
        let files = write_directory(
            &searcher,
            &args,
            &index_name,
            vocabulary,
            &mut fields,
            &mut tally,
            served.as_ref().map(|s| &s.properties),
        )?;
        eprintln!(
            "exported {} documents ({} weights) of {} to {}: mapping.json, {files} bulk file(s), load.sh\n  load into OpenSearch: OPENSEARCH_URL=http://localhost:9200 sh {}/load.sh",
            tally.documents,
            tally.weights,
            args.index.display(),
            args.output,
            args.output
        );
    }
    if tally.dropped_weights > 0 {
        eprintln!(
            "warning: dropped {} weights that were zero, negative or not finite (OpenSearch rank_features must be positive)",
            tally.dropped_weights
        );
    }
    if tally.dropped_metadata > 0 {
        eprintln!(
            "note: removed {} reserved fields (_index, _routing, …) from sources; OpenSearch refuses them in a document body",
            tally.dropped_metadata
        );
    }
    if tally.empty_vectors > 0 && tally.empty_vectors < tally.documents {
        eprintln!(
            "note: {} documents have no weights and were written without a {} field",
            tally.empty_vectors,
            args.vector_field()
        );
    }
    Ok(())
}

/// What names an index's feature ids in the export: its own dictionary (an open
/// vocabulary) or the tokenizer of the model that built it.
enum FeatureNames {
    Index(Searcher),
    Model(Box<SparseEncoder>),
}

impl FeatureNames {
    fn name(&self, id: u32) -> Option<String> {
        match self {
            FeatureNames::Index(s) => s.feature_name(id).map(|n| n.to_string()),
            FeatureNames::Model(m) => m.tokenizer().token(id),
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            FeatureNames::Index(_) => "index's feature dictionary",
            FeatureNames::Model(_) => "model's vocabulary",
        }
    }
}

/// The model whose tokenizer's vocabulary names the index's token ids.
///
/// Indexes record the model spec in their metadata (`nsparse index` does); `builtin` and BM25
/// indexes use the embedded OpenSearch bert-uncased tokenizer, as does an index without a spec.
fn vocabulary_model(searcher: &Searcher, args: &ExportArgs) -> Result<SparseEncoder> {
    let recorded = searcher
        .metadata()
        .get("model_spec")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let spec = args.model.clone().or(recorded);
    let encoder = match spec.as_deref() {
        None | Some("builtin") | Some(BM25) => SparseEncoder::builtin_query_model(),
        Some(spec) => {
            let encoder = SparseEncoder::load(spec, EncoderOptions::default()).with_context(|| {
                format!(
                    "{} records model {spec}, whose vocabulary names the tokens; pass --model DIR if the folder has moved",
                    args.index.display()
                )
            })?;
            if encoder.fingerprint() != searcher.model() {
                bail!(
                    "{} was built with model {} but {} has fingerprint {}; pass --model with the folder that built the index",
                    args.index.display(),
                    searcher.model(),
                    canonical_spec(spec),
                    encoder.fingerprint()
                );
            }
            encoder
        }
    };
    let tokenizer = encoder.tokenizer();
    if tokenizer.vocab_size() as u64 != u64::from(searcher.vocab_size()) {
        bail!(
            "{} has a vocabulary of {} tokens but the model's tokenizer has {}; pass --model with the folder that built the index",
            args.index.display(),
            searcher.vocab_size(),
            tokenizer.vocab_size()
        );
    }
    Ok(encoder)
}

/// Writes the export directory atomically (a sibling `.partial` directory renamed at the end).
/// Returns the number of bulk files.
fn write_directory(
    searcher: &Searcher,
    args: &ExportArgs,
    index_name: &str,
    vocabulary: &FeatureNames,
    fields: &mut FieldKinds,
    tally: &mut Tally,
    served: Option<&Map<String, Value>>,
) -> Result<usize> {
    let dir = PathBuf::from(&args.output);
    if dir.exists() {
        let empty = std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_none();
        if !empty {
            bail!(
                "{} already exists and is not empty; choose a new --output directory",
                dir.display()
            );
        }
    }
    let partial = PathBuf::from(format!("{}.partial", args.output));
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("cannot remove the leftover {}", partial.display()))?;
    }
    std::fs::create_dir_all(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let mut files = BulkFiles::new(&partial, args.max_file_bytes);
    for doc in searcher.documents() {
        let pair = bulk_pair(&doc?, index_name, args, vocabulary, fields, tally)?;
        files.write(&pair)?;
    }
    let count = files.finish()?;
    let mapping = mapping(searcher, args, fields, served)?;
    write_file(
        &partial.join("mapping.json"),
        &(serde_json::to_string_pretty(&mapping)? + "\n"),
    )?;
    write_file(&partial.join("load.sh"), &load_script(index_name))?;
    if dir.exists() {
        std::fs::remove_dir(&dir).with_context(|| format!("cannot replace {}", dir.display()))?;
    }
    std::fs::rename(&partial, &dir)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), dir.display()))?;
    // Make the files and the rename durable, as the index's own writes are.
    nsparse_index::fsync_dir(&dir)?;
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    nsparse_index::fsync_dir(parent)?;
    Ok(count)
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    let mut file =
        File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|_| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `_bulk` files of at most `limit` bytes, split between documents.
struct BulkFiles<'a> {
    dir: &'a Path,
    limit: u64,
    current: Option<(BufWriter<File>, u64)>,
    count: usize,
}

impl<'a> BulkFiles<'a> {
    fn new(dir: &'a Path, limit: u64) -> Self {
        BulkFiles {
            dir,
            limit,
            current: None,
            count: 0,
        }
    }

    /// Appends one action + source pair, starting a new file when it would not fit. A pair
    /// larger than the limit gets a file of its own (and a warning): splitting it is impossible.
    fn write(&mut self, pair: &str) -> Result<()> {
        let len = pair.len() as u64;
        if self
            .current
            .as_ref()
            .is_some_and(|(_, used)| used + len > self.limit)
        {
            self.close()?;
        }
        if self.current.is_none() {
            self.count += 1;
            let path = self.path(self.count);
            let file =
                File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
            self.current = Some((BufWriter::new(file), 0));
        }
        if len > self.limit {
            eprintln!(
                "warning: one document's bulk entry is {len} bytes, over --max-file-bytes {}; it has its own file {}",
                self.limit,
                self.path(self.count).display()
            );
        }
        let path = self.path(self.count);
        let (writer, used) = self.current.as_mut().expect("opened above");
        writer
            .write_all(pair.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        *used += len;
        Ok(())
    }

    fn path(&self, n: usize) -> PathBuf {
        self.dir.join(format!("bulk-{n:05}.ndjson"))
    }

    fn close(&mut self) -> Result<()> {
        if let Some((writer, _)) = self.current.take() {
            let path = self.path(self.count);
            let file = writer
                .into_inner()
                .map_err(|e| e.into_error())
                .with_context(|| format!("cannot write {}", path.display()))?;
            file.sync_all()
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<usize> {
        self.close()?;
        Ok(self.count)
    }
}

/// The action line and the source line of one document, both newline-terminated.
fn bulk_pair(
    doc: &StoredDocument,
    index_name: &str,
    args: &ExportArgs,
    vocabulary: &FeatureNames,
    fields: &mut FieldKinds,
    tally: &mut Tally,
) -> Result<String> {
    let mut source: Map<String, Value> = if doc.source.is_empty() {
        Map::new()
    } else {
        match serde_json::from_slice(&doc.source) {
            Ok(Value::Object(map)) => map,
            Ok(_) => bail!(
                "document {:?}: the stored source is not a JSON object, which OpenSearch requires",
                doc.id
            ),
            Err(e) => bail!("document {:?}: the stored source is not JSON: {e}", doc.id),
        }
    };
    // `nsparse index` keeps the corpus line's `_id` in the source; it goes to the action line.
    if source.get("_id").and_then(Value::as_str) == Some(doc.id.as_str()) {
        source.remove("_id");
    }
    for field in METADATA_FIELDS {
        if source.remove(*field).is_some() {
            tally.dropped_metadata += 1;
        }
    }
    if !args.vectors_in_source {
        source.remove(args.vector_field());
    }
    fields.observe(&source);
    let mut features = Vec::with_capacity(doc.vector.len());
    for &(id, weight) in &doc.vector {
        // Stored weights are positive f16 values by construction; a non-positive one would make
        // OpenSearch reject the whole document, so it is dropped and counted instead.
        if !(weight.is_finite() && weight > 0.0) {
            tally.dropped_weights += 1;
            continue;
        }
        let token = vocabulary.name(id).with_context(|| {
            format!(
                "document {:?}: feature id {id} has no name in the {}",
                doc.id,
                vocabulary.describe()
            )
        })?;
        features.push((token, weight));
    }
    tally.documents += 1;
    tally.weights += features.len() as u64;
    if features.is_empty() {
        tally.empty_vectors += 1;
    }
    let action = json!({"index": {"_index": index_name, "_id": doc.id}});
    let body = ExportedSource {
        fields: &source,
        vector_field: args.vector_field(),
        features: &features,
    };
    let mut out = String::with_capacity(64 + doc.source.len() + features.len() * 16);
    writeln!(out, "{action}").expect("writing to a String");
    out.push_str(&serde_json::to_string(&body)?);
    out.push('\n');
    Ok(out)
}

/// A source plus its vector as `{token: weight}`, with weights printed as the shortest f32
/// decimal (serde_json's `Value` would widen them to f64 and print 17 digits).
struct ExportedSource<'a> {
    fields: &'a Map<String, Value>,
    vector_field: &'a str,
    features: &'a [(String, f32)],
}

impl Serialize for ExportedSource<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let with_vector = !self.features.is_empty();
        let mut map =
            serializer.serialize_map(Some(self.fields.len() + usize::from(with_vector)))?;
        for (key, value) in self.fields {
            map.serialize_entry(key, value)?;
        }
        if with_vector {
            map.serialize_entry(self.vector_field, &Features(self.features))?;
        }
        map.end()
    }
}

struct Features<'a>(&'a [(String, f32)]);

impl Serialize for Features<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (token, weight) in self.0 {
            map.serialize_entry(token, weight)?;
        }
        map.end()
    }
}

/// Which top-level source fields held only strings, in first-seen order.
#[derive(Default)]
struct FieldKinds {
    order: Vec<String>,
    not_string: std::collections::HashSet<String>,
    seen: std::collections::HashSet<String>,
}

impl FieldKinds {
    fn observe(&mut self, source: &Map<String, Value>) {
        for (key, value) in source {
            if self.seen.insert(key.clone()) {
                self.order.push(key.clone());
            }
            if !value.is_string() && !value.is_null() {
                self.not_string.insert(key.clone());
            }
        }
    }

    fn string_fields(&self) -> impl Iterator<Item = &String> {
        self.order.iter().filter(|k| !self.not_string.contains(*k))
    }
}

/// The body of `PUT /{index}`.
///
/// A served index's own mapping is kept (its keyword, numeric, … fields); otherwise string
/// fields become `text` and the rest is left to OpenSearch's dynamic mapping.
fn mapping(
    searcher: &Searcher,
    args: &ExportArgs,
    fields: &FieldKinds,
    served: Option<&Map<String, Value>>,
) -> Result<Value> {
    let mut properties = served.cloned().unwrap_or_default();
    // nsparse's `sparse_vector` fields (OpenSearch 3.3's, of its neural-search plugin) become
    // plain `rank_features` fields, which every cluster has and `neural_sparse` queries.
    for p in properties.values_mut() {
        if p["type"] == "sparse_vector" {
            *p = json!({"type": "rank_features"});
        }
    }
    if !args.vectors_in_source {
        properties.insert(
            args.vector_field().to_string(),
            json!({"type": "rank_features"}),
        );
    }
    let text_fields: Vec<String> = match &args.text_fields {
        Some(list) => {
            for name in list {
                if fields.not_string.contains(name) {
                    bail!("--text-fields {name}: some documents hold a non-string value there; OpenSearch would reject them as text");
                }
                if name == args.vector_field() {
                    bail!("--text-fields {name} is the --vector-field");
                }
            }
            list.clone()
        }
        None if served.is_some() => Vec::new(),
        None => fields.string_fields().cloned().collect(),
    };
    for name in text_fields {
        properties.insert(name, json!({"type": "text"}));
    }
    let mut meta = searcher.metadata().clone();
    if let Some(m) = meta.as_object_mut() {
        m.insert("nsparse_model_fingerprint".into(), searcher.model().into());
        m.insert(
            "exported_by".into(),
            concat!("nsparse ", env!("CARGO_PKG_VERSION")).into(),
        );
    }
    Ok(json!({"mappings": {"_meta": meta, "properties": properties}}))
}

/// The script that loads an export directory with curl.
fn load_script(index_name: &str) -> String {
    format!(
        r#"#!/bin/sh
# Loads this nsparse export into OpenSearch: creates index {index_name} (mapping.json), posts
# every bulk-NNNNN.ndjson to /_bulk, stops at the first failed item, then refreshes.
#   OPENSEARCH_URL  cluster address (default http://localhost:9200)
#   CURL_OPTS       extra curl options, e.g. "-u admin:secret --cacert ca.pem"
set -eu
cd "$(dirname "$0")"
url=${{OPENSEARCH_URL:-http://localhost:9200}}
curl -sS --fail-with-body ${{CURL_OPTS:-}} -XPUT "$url/{index_name}" \
    -H 'Content-Type: application/json' --data-binary @mapping.json
echo
for f in bulk-*.ndjson; do
    out=$(curl -sS --fail-with-body ${{CURL_OPTS:-}} -XPOST "$url/_bulk" \
        -H 'Content-Type: application/x-ndjson' --data-binary @"$f")
    case $out in
    *'"errors":false'*) echo "$f: loaded" ;;
    *) echo "$f: some items failed: $(printf '%s' "$out" | head -c 2000)" >&2; exit 1 ;;
    esac
done
curl -sS --fail-with-body ${{CURL_OPTS:-}} -XPOST "$url/{index_name}/_refresh"
echo
"#
    )
}

/// The directory name as an OpenSearch index name: lowercase, forbidden characters as `-`.
fn default_index_name(dir: &Path) -> Result<String> {
    let base = dir
        .canonicalize()
        .unwrap_or_else(|_| dir.to_path_buf())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut name: String = base
        .to_lowercase()
        .chars()
        .map(|c| if is_forbidden(c) { '-' } else { c })
        .collect();
    name = name.trim_start_matches(['-', '_', '+', '.']).to_string();
    if check_index_name(&name).is_err() {
        bail!(
            "cannot make an OpenSearch index name of {:?}; pass --index-name",
            dir.display().to_string()
        );
    }
    Ok(name)
}

fn is_forbidden(c: char) -> bool {
    nsparse_server::is_forbidden_in_index_name(c) || c.is_whitespace()
}

/// OpenSearch's index-name rules, as the server checks them
/// ([`nsparse_server::validate_index_name`]).
fn check_index_name(name: &str) -> Result<()> {
    nsparse_server::validate_index_name(name).map_err(|e| {
        anyhow::anyhow!(
            "index name {name:?} is refused by OpenSearch: {}; choose another --index-name",
            e.reason
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_names_follow_opensearch_rules() {
        assert!(check_index_name("cranfield-v2").is_ok());
        for bad in ["", "Upper", "a b", "_x", "-x", "a/b", "a#b", ".", "a:b"] {
            assert!(check_index_name(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(
            default_index_name(Path::new("/tmp/My Index.idx")).unwrap(),
            "my-index.idx"
        );
    }

    #[test]
    fn weights_print_as_shortest_f32() {
        let fields = Map::new();
        let features = vec![("wing".to_string(), 0.1f32), ("##s".to_string(), 1.5)];
        let body = ExportedSource {
            fields: &fields,
            vector_field: "v",
            features: &features,
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r###"{"v":{"wing":0.1,"##s":1.5}}"###
        );
    }

    #[test]
    fn bulk_files_split_between_documents() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = BulkFiles::new(dir.path(), 1024);
        let pair = format!("{}\n{}\n", "a".repeat(300), "b".repeat(200));
        for _ in 0..5 {
            files.write(&pair).unwrap();
        }
        assert_eq!(files.finish().unwrap(), 3);
        for n in 1..=3 {
            let text =
                std::fs::read_to_string(dir.path().join(format!("bulk-{n:05}.ndjson"))).unwrap();
            assert!(
                text.len() <= 1024 && text.len().is_multiple_of(pair.len()),
                "{n}: {}",
                text.len()
            );
        }
    }
}
