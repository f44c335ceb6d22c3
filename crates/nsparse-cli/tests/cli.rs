//! End-to-end tests of the `nsparse` binary on the committed tiny fixture models.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

mod common;
use common::{fails, fixture, nsparse, ok};

fn write_corpus(dir: &Path) -> PathBuf {
    let path = dir.join("corpus.jsonl");
    let lines = [
        r#"{"_id": "d1", "title": "Rain", "text": "Currently New York is rainy."}"#,
        r#"{"_id": "d2", "title": "", "text": "The weather in Paris is sunny and warm."}"#,
        r#"{"_id": "d3", "text": "Hypersonic flow over a blunt body heats the nose."}"#,
        "",
        r#"{"_id": 4, "text": "Boundary layers separate behind shock waves."}"#,
    ];
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

#[test]
fn encode_query_prints_token_weights_by_weight() {
    let out = ok(&["encode", "query", "What's the weather in ny now?"]);
    let map: serde_json::Map<String, Value> = serde_json::from_str(&out).unwrap();
    let keys: Vec<&str> = map.keys().map(String::as_str).collect();
    assert_eq!(&keys[..3], &["ny", "weather", "now"]);
    assert!((map["ny"].as_f64().unwrap() - 5.7729).abs() < 1e-4);
    let weights: Vec<f64> = map.values().map(|v| v.as_f64().unwrap()).collect();
    assert!(weights.windows(2).all(|w| w[0] >= w[1]));
}

#[test]
fn encode_document_and_pruning() {
    let model = fixture("tiny-distilbert");
    let full: serde_json::Map<String, Value> = serde_json::from_str(&ok(&[
        "encode",
        "document",
        "--model",
        &model,
        "Currently New York is rainy.",
    ]))
    .unwrap();
    assert!(full.len() > 3);
    assert!(!full.contains_key("[CLS]") && !full.contains_key("[SEP]"));
    let top: serde_json::Map<String, Value> = serde_json::from_str(&ok(&[
        "encode",
        "document",
        "--model",
        &model,
        "--prune-type",
        "top_k",
        "--prune-ratio",
        "3",
        "Currently New York is rainy.",
    ]))
    .unwrap();
    assert_eq!(top.len(), 3);
    assert_eq!(
        top.keys().collect::<Vec<_>>(),
        full.keys().take(3).collect::<Vec<_>>()
    );
    let e = fails(&[
        "encode",
        "document",
        "--model",
        &model,
        "--prune-type",
        "top_k",
        "--prune-ratio",
        "2.5",
        "x",
    ]);
    assert!(e.contains("positive integer"), "{e}");
}

#[test]
fn encode_documents_writes_one_line_per_record_and_fails_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = write_corpus(dir.path());
    let output = dir.path().join("vectors.jsonl");
    let model = fixture("tiny-bert");
    let out = nsparse(&[
        "encode",
        "documents",
        "--model",
        &model,
        "--input",
        corpus.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("documents/s"));
    let lines: Vec<Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = lines.iter().map(|l| l["_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["d1", "d2", "d3", "4"]);
    assert!(lines
        .iter()
        .all(|l| !l["vector"].as_object().unwrap().is_empty()));

    // A bad line names its file and line, and leaves no output behind.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"_id\": \"a\", \"text\": \"fine\"}\n{\"text\": \"no id\"}\n",
    )
    .unwrap();
    let bad_out = dir.path().join("bad-vectors.jsonl");
    let e = fails(&[
        "encode",
        "documents",
        "--model",
        &model,
        "--input",
        bad.to_str().unwrap(),
        "--output",
        bad_out.to_str().unwrap(),
    ]);
    assert!(e.contains("bad.jsonl:2") && e.contains("_id"), "{e}");
    assert!(!bad_out.exists());
}

#[test]
fn index_search_delete_and_model_check() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = write_corpus(dir.path());
    let index = dir.path().join("idx");
    let (index, corpus) = (index.to_str().unwrap(), corpus.to_str().unwrap());
    let model = fixture("tiny-bert");
    ok(&[
        "index", "--model", &model, "--corpus", corpus, "--index", index,
    ]);
    let hits: Vec<Value> = ok(&[
        "search",
        "--index",
        index,
        "-k",
        "4",
        "--json",
        "--explain",
        "New York rain",
    ])
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect();
    assert!(!hits.is_empty());
    let scores: Vec<f64> = hits.iter().map(|h| h["_score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]));
    let first = &hits[0];
    let contributions: f64 = first["explanation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["contribution"].as_f64().unwrap())
        .sum();
    assert!((contributions - scores[0]).abs() < 1e-3 * scores[0].max(1.0));
    assert!(first["_source"]["text"].is_string());

    // Another model is refused, for searching and for extending the index.
    let e = fails(&[
        "search",
        "--index",
        index,
        "--model",
        &fixture("tiny-distilbert"),
        "rain",
    ]);
    assert!(e.contains("built with model"), "{e}");
    let e = fails(&[
        "index",
        "--model",
        &fixture("tiny-distilbert"),
        "--corpus",
        corpus,
        "--index",
        index,
    ]);
    assert!(e.contains("built with model"), "{e}");

    // Deleting removes the document from results at once.
    let deleted = first["_id"].as_str().unwrap().to_string();
    ok(&["delete", "--index", index, &deleted]);
    let after = ok(&[
        "search",
        "--index",
        index,
        "-k",
        "4",
        "--json",
        "New York rain",
    ]);
    assert!(
        !after.contains(&format!("\"_id\":\"{deleted}\"")),
        "{after}"
    );
    let e = fails(&["delete", "--index", index, "no-such-id"]);
    assert!(e.contains("no-such-id"), "{e}");
}

#[test]
fn bm25_index_needs_no_model() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = write_corpus(dir.path());
    // Index and search with the default threads, then with `--threads 1`
    // (which bounds the build too): the answers are the same.
    let index_and_search = |name: &str, threads: &[&str]| {
        let index = dir.path().join(name);
        let index = index.to_str().unwrap();
        let mut args = threads.to_vec();
        args.extend([
            "index",
            "--model",
            "bm25",
            "--corpus",
            corpus.to_str().unwrap(),
            "--index",
            index,
        ]);
        ok(&args);
        ok(&[
            "search",
            "--index",
            index,
            "-k",
            "2",
            "--json",
            "blunt body hypersonic",
        ])
    };
    let out = index_and_search("bm25", &[]);
    let first: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["_id"], "d3");
    assert_eq!(
        index_and_search("bm25-one-thread", &["--threads", "1"]),
        out
    );
}

#[test]
fn missing_model_folder_is_a_clear_error() {
    let e = fails(&["encode", "document", "--model", "/no/such/model", "text"]);
    assert!(
        e.contains("no such model folder") && e.contains("/no/such/model"),
        "{e}"
    );
    let e = fails(&["encode", "document", "text"]);
    assert!(e.contains("--model"), "{e}");

    // A Hub id that cannot be downloaded says how to get the folder by hand.
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nsparse"))
        .args([
            "encode",
            "document",
            "--model",
            "opensearch-project/some-model",
            "text",
        ])
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env("HF_HOME", cache.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("huggingface-cli download opensearch-project/some-model"),
        "{e}"
    );
    assert!(e.contains("--model"), "{e}");
}

/// Every file under `dir` with its bytes (to show a failed run changed nothing).
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(snapshot(&path));
        } else {
            let bytes = std::fs::read(&path).unwrap();
            out.push((path, bytes));
        }
    }
    out.sort();
    out
}

fn write_lines(path: &Path, lines: &[&str]) -> String {
    std::fs::write(path, lines.join("\n")).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn duplicate_ids_are_refused_with_both_lines_and_leave_no_index() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = write_lines(
        &dir.path().join("corpus.jsonl"),
        &[
            r#"{"_id": "a", "text": "first"}"#,
            r#"{"_id": "b", "text": "second"}"#,
            "",
            r#"{"_id": "a", "text": "first again"}"#,
        ],
    );
    let index = dir.path().join("idx");
    let index_arg = index.to_str().unwrap();
    let e = fails(&[
        "index", "--model", "bm25", "--corpus", &corpus, "--index", index_arg,
    ]);
    assert!(
        e.contains(&format!(
            "{corpus}:4: duplicate _id \"a\" (first at line 1)"
        )),
        "{e}"
    );
    assert!(!index.exists(), "a failed run left {}", index.display());
    // A number and a string with the same text are the same `_id`; in vectors too.
    let vectors = write_lines(
        &dir.path().join("vectors.jsonl"),
        &[
            r#"{"_id": 7, "vector": {"hello": 1.0}}"#,
            r#"{"_id": "x", "vector": {"world": 2.0}}"#,
            r#"{"_id": "7", "vector": {"world": 1.0}}"#,
        ],
    );
    let e = fails(&["index", "--vectors", &vectors, "--index", index_arg]);
    assert!(
        e.contains(&format!(
            "{vectors}:3: duplicate _id \"7\" (first at line 1)"
        )),
        "{e}"
    );
    assert!(!index.exists(), "a failed run left {}", index.display());
}

#[test]
fn invalid_utf8_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut body =
        b"{\"_id\": \"a\", \"text\": \"fine\"}\n\n{\"_id\": \"b\", \"text\": \"caf".to_vec();
    body.extend_from_slice(&[0xe9, b'"', b'}', b'\n']);
    for (name, flag) in [("corpus.jsonl", "--corpus"), ("vectors.jsonl", "--vectors")] {
        let path = dir.path().join(name);
        std::fs::write(&path, &body).unwrap();
        let path = path.to_str().unwrap();
        let index = dir.path().join(format!("idx-{name}"));
        let mut args = vec!["index", flag, path, "--index", index.to_str().unwrap()];
        if flag == "--corpus" {
            args.extend(["--model", "bm25"]);
        }
        let e = fails(&args);
        assert!(
            e.contains(&format!("{path}:3: invalid UTF-8 at byte 26 of the line")),
            "{e}"
        );
        assert!(!index.exists(), "a failed run left {}", index.display());
    }
}

#[test]
fn a_failed_index_run_removes_only_what_it_created() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_lines(
        &dir.path().join("good.jsonl"),
        &[
            r#"{"_id": "g1", "vector": {"hello": 1.0}}"#,
            r#"{"_id": "g2", "vector": {"world": 2.0}}"#,
        ],
    );
    // The bad line comes after a good one, and (in the second file) after more
    // documents than one write holds.
    let bad = write_lines(
        &dir.path().join("bad.jsonl"),
        &[
            r#"{"_id": "n1", "vector": {"hello": 3.0}}"#,
            r#"{"_id": "n2", "vector": {"no-such-token-xyz": -1.0}}"#,
        ],
    );
    let mut long: Vec<String> = (0..5000)
        .map(|i| format!(r#"{{"_id": "l{i}", "vector": {{"hello": 1.0}}}}"#))
        .collect();
    long.push(r#"{"_id": "l-bad", "vector": {"hello": "x"}}"#.into());
    let long_refs: Vec<&str> = long.iter().map(String::as_str).collect();
    let long = write_lines(&dir.path().join("long.jsonl"), &long_refs);

    // A new directory (and its missing parent) is removed.
    let nested = dir.path().join("new/parent/idx");
    for input in [&bad, &long] {
        let e = fails(&[
            "index",
            "--vectors",
            input,
            "--index",
            nested.to_str().unwrap(),
        ]);
        assert!(e.contains("was removed"), "{e}");
        assert!(!dir.path().join("new").exists());
    }
    // An existing directory without an index keeps what it held, and only that.
    let existing = dir.path().join("mine");
    std::fs::create_dir(&existing).unwrap();
    std::fs::write(existing.join("notes.txt"), "keep me").unwrap();
    let before = snapshot(&existing);
    fails(&[
        "index",
        "--vectors",
        &long,
        "--index",
        existing.to_str().unwrap(),
    ]);
    assert_eq!(snapshot(&existing), before);
    // A corpus refused before indexing (no document encoder given) leaves nothing either.
    let corpus = write_corpus(dir.path());
    let fresh = dir.path().join("fresh");
    fails(&[
        "index",
        "--corpus",
        corpus.to_str().unwrap(),
        "--index",
        fresh.to_str().unwrap(),
    ]);
    assert!(!fresh.exists());

    // An existing index is left exactly as it was by bad input anywhere.
    let index = dir.path().join("idx");
    let index_arg = index.to_str().unwrap();
    ok(&["index", "--vectors", &good, "--index", index_arg]);
    let before = snapshot(&index);
    for input in [&bad, &long] {
        let e = fails(&["index", "--vectors", input, "--index", index_arg]);
        assert!(!e.contains("removed"), "{e}");
        assert_eq!(snapshot(&index), before, "{input} changed the index");
    }
    let hits = ok(&[
        "search",
        "--index",
        index_arg,
        "-k",
        "10",
        "--json",
        "hello world",
    ]);
    let ids: Vec<String> = hits
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids.len(), 2, "{hits}");
    assert!(ids.iter().all(|id| id.starts_with('g')), "{hits}");
}

#[test]
fn vectors_index_alike_whatever_the_threads() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..3000)
        .map(|i| {
            format!(
                r#"{{"_id": "d{i}", "vector": {{"hello": {}, "world": {}, "rain": 0.5}}}}"#,
                1 + i % 7,
                (i % 13) as f32 / 4.0 + 0.25
            )
        })
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let vectors = write_lines(&dir.path().join("v.jsonl"), &refs);
    let run = |name: &str, threads: &[&str]| {
        let index = dir.path().join(name);
        let index = index.to_str().unwrap();
        let mut args = threads.to_vec();
        args.extend(["index", "--vectors", &vectors, "--index", index]);
        ok(&args);
        ok(&[
            "search",
            "--index",
            index,
            "-k",
            "20",
            "--json",
            "hello world rain",
        ])
    };
    let all = run("all", &[]);
    assert_eq!(all.lines().count(), 20);
    assert_eq!(run("one", &["--threads", "1"]), all);
    assert_eq!(run("three", &["--threads", "3"]), all);
}

/// Runs nsparse with `stdin` as its standard input.
fn ok_with_stdin(args: &[&str], stdin: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_nsparse"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run nsparse");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nsparse {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn dash_reads_standard_input_and_writes_standard_output() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = write_corpus(dir.path());
    let model = fixture("tiny-bert");
    let from_file = dir.path().join("vectors.jsonl");
    ok(&[
        "encode",
        "documents",
        "--model",
        &model,
        "--input",
        corpus.to_str().unwrap(),
        "--output",
        from_file.to_str().unwrap(),
    ]);
    let piped = ok_with_stdin(
        &[
            "encode",
            "documents",
            "--model",
            &model,
            "-i",
            "-",
            "-o",
            "-",
        ],
        &std::fs::read(&corpus).unwrap(),
    );
    assert_eq!(piped, std::fs::read_to_string(&from_file).unwrap());

    // `nsparse index --vectors -` indexes what it reads from standard input.
    let index = dir.path().join("idx");
    ok_with_stdin(
        &[
            "index",
            "--vectors",
            "-",
            "--index",
            index.to_str().unwrap(),
        ],
        piped.as_bytes(),
    );
    // Query with words the documents' vectors hold (the fixture model's weights are random).
    let words: Vec<String> = piped
        .lines()
        .flat_map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["vector"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<Vec<_>>()
        })
        .filter(|t| t.len() > 2 && t.chars().all(|c| c.is_ascii_lowercase()))
        .take(20)
        .collect();
    let hits = ok(&[
        "search",
        "--index",
        index.to_str().unwrap(),
        "--top-k",
        "2",
        "--json",
        &words.join(" "),
    ]);
    assert_eq!(hits.lines().count(), 2, "--top-k is the long form of -k");
}

#[test]
fn serve_takes_the_encoder_options() {
    let help = ok(&["serve", "--help"]);
    for flag in ["--precision", "--batch-tokens", "--chunk-long-documents"] {
        assert!(help.contains(flag), "nsparse serve --help lacks {flag}");
    }
}
