//! `nsparse export --format opensearch-bulk`: the exported `_bulk` NDJSON must carry every live
//! document with its source and its vector (token strings, stored f16 weights), in files a
//! cluster accepts, next to a mapping with a `rank_features` field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Map, Value};

fn run_nsparse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nsparse"))
        .args(args)
        .output()
        .expect("run nsparse")
}

/// Runs a command that must succeed; returns (stdout, stderr).
fn succeed(args: &[&str]) -> (String, String) {
    let out = run_nsparse(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "nsparse {args:?} failed: {stderr}");
    (String::from_utf8(out.stdout).unwrap(), stderr)
}

fn tiny_model() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../nsparse-model/tests/fixtures/tiny-distilbert")
        .to_string_lossy()
        .into_owned()
}

fn cranfield_head(dir: &Path, n: usize) -> PathBuf {
    let corpus =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/cranfield/corpus.jsonl");
    let text = std::fs::read_to_string(corpus).unwrap();
    let head: Vec<&str> = text.lines().take(n).collect();
    let path = dir.join("corpus.jsonl");
    std::fs::write(&path, head.join("\n") + "\n").unwrap();
    path
}

/// `export --index INDEX --format opensearch-bulk EXTRA...`.
fn export_args<'a>(index: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["export", "--index", s(index), "--format", "opensearch-bulk"];
    args.extend_from_slice(extra);
    args
}

fn export(index: &Path, extra: &[&str]) -> Output {
    run_nsparse(&export_args(index, extra))
}

fn export_ok(index: &Path, extra: &[&str]) -> (String, String) {
    succeed(&export_args(index, extra))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The (action, source) pairs of `_bulk` NDJSON, checking the action shape.
fn parse_bulk(ndjson: &str, index_name: &str) -> BTreeMap<String, Map<String, Value>> {
    let lines: Vec<&str> = ndjson.lines().collect();
    assert_eq!(lines.len() % 2, 0, "odd number of NDJSON lines");
    let mut docs = BTreeMap::new();
    for pair in lines.chunks(2) {
        let action: Value = serde_json::from_str(pair[0]).unwrap();
        let meta = action["index"].as_object().expect("index action");
        assert_eq!(meta["_index"], index_name);
        let id = meta["_id"].as_str().unwrap().to_string();
        let source: Value = serde_json::from_str(pair[1]).unwrap();
        assert!(
            docs.insert(id.clone(), source.as_object().unwrap().clone())
                .is_none(),
            "{id} exported twice"
        );
    }
    docs
}

fn read_vectors(path: &Path) -> BTreeMap<String, Map<String, Value>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["_id"].as_str().unwrap().to_string(),
                v["vector"].as_object().unwrap().clone(),
            )
        })
        .collect()
}

/// Every exported weight equals the encoder's f32 weight within f16 rounding (2⁻¹¹ relative);
/// weights below the smallest f16 normal may be dropped, nothing else.
fn assert_same_vector(id: &str, exported: &Map<String, Value>, encoded: &Map<String, Value>) {
    for (token, w) in exported {
        let w = w.as_f64().unwrap();
        assert!(w > 0.0, "{id}: {token} has weight {w}");
        let want = encoded
            .get(token)
            .unwrap_or_else(|| panic!("{id}: exported token {token:?} the encoder did not produce"))
            .as_f64()
            .unwrap();
        let tol = want.abs() * 2f64.powi(-11) + 1e-7;
        assert!(
            (w - want).abs() <= tol.max(3.1e-5),
            "{id} {token}: exported {w}, encoded {want}"
        );
    }
    for (token, w) in encoded {
        let w = w.as_f64().unwrap();
        assert!(
            exported.contains_key(token) || w < 6.2e-5,
            "{id}: token {token:?} (weight {w}) missing from the export"
        );
    }
}

#[test]
fn export_round_trips_documents_sources_and_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = cranfield_head(dir.path(), 60);
    let index = dir.path().join("Cranfield Tiny.idx");
    let model = tiny_model();
    succeed(&[
        "index",
        "--model",
        &model,
        "--corpus",
        s(&corpus),
        "--index",
        s(&index),
    ]);
    succeed(&["delete", "--index", s(&index), "7"]);
    let vectors = dir.path().join("vectors.jsonl");
    succeed(&[
        "encode",
        "documents",
        "--model",
        &model,
        "--input",
        s(&corpus),
        "--output",
        s(&vectors),
    ]);
    let encoded = read_vectors(&vectors);

    // A small file limit forces several bulk files, split between documents.
    let out = dir.path().join("export");
    let (_, stderr) = export_ok(&index, &["--output", s(&out), "--max-file-bytes", "100000"]);
    assert!(stderr.contains("exported 59 documents"), "{stderr}");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ndjson"))
        .collect();
    files.sort();
    assert!(
        files.len() > 1,
        "expected several bulk files, got {files:?}"
    );
    let mut ndjson = String::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(
            text.len() <= 100_000,
            "{} has {} bytes",
            f.display(),
            text.len()
        );
        assert!(text.ends_with('\n'));
        ndjson += &text;
    }
    // The default index name is the directory's name made valid for OpenSearch.
    let docs = parse_bulk(&ndjson, "cranfield-tiny.idx");
    let originals: BTreeMap<String, Value> = std::fs::read_to_string(&corpus)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["_id"].as_str().unwrap().to_string(), v)
        })
        .collect();
    assert_eq!(docs.len(), 59);
    assert!(!docs.contains_key("7"), "the deleted document was exported");
    for (id, source) in &docs {
        let original = originals[id].as_object().unwrap();
        for (key, value) in original {
            if key != "_id" {
                assert_eq!(&source[key], value, "{id}: field {key}");
            }
        }
        assert!(!source.contains_key("_id"), "{id}: _id left in the source");
        let vector = source["embedding"].as_object().expect("embedding object");
        assert_same_vector(id, vector, &encoded[id]);
    }

    let mapping: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("mapping.json")).unwrap()).unwrap();
    let properties = &mapping["mappings"]["properties"];
    assert_eq!(properties["embedding"]["type"], "rank_features");
    assert_eq!(properties["title"]["type"], "text");
    assert_eq!(properties["text"]["type"], "text");
    assert!(
        properties.get("metadata").is_none(),
        "an object field mapped as text"
    );
    let load = std::fs::read_to_string(out.join("load.sh")).unwrap();
    assert!(load.contains("/_bulk") && load.contains("cranfield-tiny.idx"));

    // Exporting again into the same non-empty directory is refused, the files stay.
    let again = export(&index, &["--output", s(&out)]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    assert!(out.join("mapping.json").exists());

    // `-`: one body on stdout, the same documents; names and fields as asked.
    let (stdout, stderr) = export_ok(
        &index,
        &[
            "--index-name",
            "papers",
            "--vector-field",
            "sparse",
            "--text-fields",
            "title",
        ],
    );
    let streamed = parse_bulk(&stdout, "papers");
    assert_eq!(streamed.len(), 59);
    assert_eq!(streamed["1"]["sparse"], docs["1"]["embedding"]);
    assert!(
        stderr.contains("curl -XPUT") && stderr.contains("\"sparse\":{\"type\":\"rank_features\"}")
    );
    assert!(
        !stderr.contains("\"text\":{\"type\":\"text\"}"),
        "--text-fields was ignored: {stderr}"
    );
}

#[test]
fn pre_encoded_vectors_export_with_their_token_strings() {
    let dir = tempfile::tempdir().unwrap();
    let vectors = dir.path().join("pre.jsonl");
    std::fs::write(
        &vectors,
        concat!(
            r###"{"_id": "a", "vector": {"wing": 1.25, "##s": 0.5, "flutter": 3.0}, "text": "", "year": 1958}"###,
            "\n",
            r#"{"_id": "b", "vector": {"rocket": 0.0001, "engine": 2.0}, "text": "", "it's": "yes"}"#,
            "\n",
        ),
    )
    .unwrap();
    let index = dir.path().join("pre");
    succeed(&[
        "index",
        "--vectors",
        s(&vectors),
        "--index",
        s(&index),
        "--no-bm25-tokens",
    ]);
    let (stdout, stderr) = export_ok(&index, &[]);
    let docs = parse_bulk(&stdout, "pre");
    let a = docs["a"]["embedding"].as_object().unwrap();
    assert_eq!(a.len(), 3);
    // 1.25, 0.5 and 3.0 are exact in f16 and print as the shortest f32.
    assert!(
        stdout.contains(r#""wing":1.25"#) && stdout.contains(r###""##s":0.5"###),
        "{stdout}"
    );
    assert_eq!(a["flutter"], 3.0);
    assert_eq!(docs["a"]["year"], 1958);
    let b = docs["b"]["embedding"].as_object().unwrap();
    let rocket = b["rocket"].as_f64().unwrap();
    assert!(
        (rocket - 1e-4).abs() <= 1e-4 * 2f64.powi(-10),
        "rocket {rocket}"
    );
    // The single quote in a source survives the printed shell command.
    assert!(stderr.contains("'\\''"), "{stderr}");
}

/// A BM25 index `name` of the first `docs` Cranfield abstracts, in `dir`.
fn bm25_index(dir: &Path, name: &str, docs: usize) -> PathBuf {
    let corpus = cranfield_head(dir, docs);
    let index = dir.join(name);
    succeed(&[
        "index",
        "--model",
        "bm25",
        "--corpus",
        s(&corpus),
        "--index",
        s(&index),
    ]);
    index
}

#[test]
fn bm25_index_exports_sources_without_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let index = bm25_index(dir.path(), "bm25", 5);
    let (stdout, stderr) = export_ok(&index, &[]);
    let docs = parse_bulk(&stdout, "bm25");
    assert_eq!(docs.len(), 5);
    assert!(docs
        .values()
        .all(|d| !d.contains_key("embedding") && d.contains_key("text")));
    assert!(
        stderr.contains("exported 5 documents (0 weights)"),
        "{stderr}"
    );
}

#[test]
fn export_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let out = export(&missing, &[]);
    assert!(!out.status.success());
    let index = bm25_index(dir.path(), "ok", 3);
    let out = export(&index, &["--index-name", "Bad Name"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("index name \"Bad Name\""),
        "{stderr}"
    );
    let out = export(&index, &["--text-fields", "metadata"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("non-string"),
        "{stderr}"
    );
}

/// An index kept by `nsparse serve` (DATA/indices/NAME/index, mapping in ../meta.json) exports
/// with its own mapping, vector field and name.
#[test]
fn served_index_keeps_its_mapping_field_and_name() {
    let dir = tempfile::tempdir().unwrap();
    let served = dir.path().join("data/indices/papers");
    std::fs::create_dir_all(&served).unwrap();
    std::fs::write(
        served.join("meta.json"),
        r#"{"mappings": {"properties": {"vec": {"type": "rank_features"},
            "category": {"type": "keyword"}, "year": {"type": "integer"}}}}"#,
    )
    .unwrap();
    let vectors = dir.path().join("v.jsonl");
    std::fs::write(
        &vectors,
        r#"{"_id": "p1", "vector": {"wing": 2.0}, "text": "", "category": "aero", "year": 1958, "vec": {"wing": 2.0}}"#,
    )
    .unwrap();
    let index = served.join("index");
    succeed(&["index", "--vectors", s(&vectors), "--index", s(&index)]);
    let (stdout, stderr) = export_ok(&index, &[]);
    let docs = parse_bulk(&stdout, "papers");
    assert_eq!(docs["p1"]["vec"]["wing"], 2.0);
    assert!(!docs["p1"].contains_key("embedding"));
    assert!(
        stderr.contains(r#""category":{"type":"keyword"}"#)
            && stderr.contains(r#""vec":{"type":"rank_features"}"#)
            && stderr.contains(r#""year":{"type":"integer"}"#),
        "{stderr}"
    );
}
