//! End to end with encoders of large vocabularies: the random 105,879-token BERT and 250,002-token
//! DistilBERT fixtures of nsparse-model (generated WordPiece vocabularies, ids far above 65,535)
//! through `nsparse encode`, `index`, `search` and `eval` on a small BEIR folder made here.
//!
//! The expected results come from the library (`nsparse_model`, whose parity with PyTorch the
//! model crate's tests check): the binary must return the same vectors, under the model's own
//! token strings, and the same rankings and scores (up to the index's f16 weights).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nsparse_model::{EncoderOptions, SparseEncoder, SparseVector};
use serde_json::{json, Value};

const MBERT: &str = "tiny-mbert-105879";
const DISTILBERT_250K: &str = "tiny-distilbert-250002";

mod common;
use common::{fixture as model_dir, ok};

/// One corpus document: `_id`, title, text.
struct Doc {
    id: String,
    title: String,
    text: String,
}

impl Doc {
    /// What the model sees (BEIR: title + " " + text).
    fn full_text(&self) -> String {
        if self.title.is_empty() {
            self.text.clone()
        } else {
            format!("{} {}", self.title, self.text)
        }
    }
}

/// Twelve Cranfield abstracts (with titles) and three multilingual documents.
fn documents() -> Vec<Doc> {
    let cranfield =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/cranfield/corpus.jsonl");
    let mut docs: Vec<Doc> = std::fs::read_to_string(cranfield)
        .unwrap()
        .lines()
        .skip(30)
        .take(12)
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            Doc {
                id: format!("c{}", v["_id"].as_str().unwrap()),
                title: v["title"].as_str().unwrap().to_string(),
                text: v["text"].as_str().unwrap().to_string(),
            }
        })
        .collect();
    for (id, text) in [
        (
            "zh",
            "中文信息检索系统 and 日本語のテキスト検索 with sparse vectors",
        ),
        (
            "fr",
            "Le café naïve à Zürich: résumé d'une façade, Ångström près de São Paulo",
        ),
        ("ru", "Ελληνικά και русский текст о поиске информации"),
    ] {
        docs.push(Doc {
            id: id.into(),
            title: String::new(),
            text: text.into(),
        });
    }
    docs
}

fn write_jsonl(path: &Path, lines: impl IntoIterator<Item = Value>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let text: String = lines.into_iter().map(|v| format!("{v}\n")).collect();
    std::fs::write(path, text).unwrap();
}

fn write_corpus(path: &Path, docs: &[Doc]) {
    write_jsonl(
        path,
        docs.iter()
            .map(|d| json!({"_id": d.id, "title": d.title, "text": d.text})),
    );
}

/// The library's scores of `query` against every document, best first (positive ones only).
fn ranking(query: &SparseVector, vectors: &[SparseVector], docs: &[Doc]) -> Vec<(String, f32)> {
    let mut scored: Vec<(String, f32)> = docs
        .iter()
        .zip(vectors)
        .map(|(d, v)| (d.id.clone(), query.dot(v)))
        .filter(|s| s.1 > 0.0)
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored
}

/// Whether the best document wins by a margin that the index's f16 weights cannot undo.
fn clear_winner(ranking: &[(String, f32)]) -> bool {
    match ranking {
        [] => false,
        [_] => true,
        [first, second, ..] => first.1 > 1.02 * second.1,
    }
}

/// Inference-free queries the model's idf.json weighs: for each Cranfield document, up to three of
/// its heaviest whole-word ASCII tokens that tokenize to themselves and have an idf weight. Kept
/// when one document clearly wins; returned with that document.
fn idf_queries(
    encoder: &SparseEncoder,
    vectors: &[SparseVector],
    docs: &[Doc],
) -> Vec<(String, String)> {
    let tokenizer = encoder.tokenizer();
    let mut queries = Vec::new();
    for vector in vectors.iter().take(12) {
        let words: Vec<String> = encoder
            .decode(vector)
            .into_iter()
            .map(|(token, _)| token)
            .filter(|t| t.len() >= 2 && t.bytes().all(|b| b.is_ascii_alphanumeric()))
            .filter(|t| {
                let id = tokenizer.id(t);
                tokenizer.tokenize_query(t).unwrap().ids == [id.unwrap()]
                    && !encoder.encode_query(t).unwrap().is_empty()
            })
            .take(3)
            .collect();
        if words.is_empty() {
            continue;
        }
        let text = words.join(" ");
        let expected = ranking(&encoder.encode_query(&text).unwrap(), vectors, docs);
        if clear_winner(&expected) {
            queries.push((text, expected[0].0.clone()));
        }
    }
    queries
}

/// Bi-encoder queries: the titles of the Cranfield documents, kept when one document clearly wins.
fn neural_queries(
    encoder: &SparseEncoder,
    vectors: &[SparseVector],
    docs: &[Doc],
) -> Vec<(String, String)> {
    docs.iter()
        .take(12)
        .filter_map(|d| {
            let expected = ranking(&encoder.encode_query(&d.title).unwrap(), vectors, docs);
            clear_winner(&expected).then(|| (d.title.clone(), expected[0].0.clone()))
        })
        .collect()
}

/// `nsparse search --json` hits as (`_id`, `_score`).
fn search(index: &Path, extra: &[&str], query: &str) -> Vec<(String, f32)> {
    let mut args = vec![
        "search",
        "--index",
        index.to_str().unwrap(),
        "-k",
        "50",
        "--json",
    ];
    args.extend_from_slice(extra);
    args.push(query);
    ok(&args)
        .lines()
        .map(|l| {
            let hit: Value = serde_json::from_str(l).unwrap();
            (
                hit["_id"].as_str().unwrap().to_string(),
                hit["_score"].as_f64().unwrap() as f32,
            )
        })
        .collect()
}

/// The hits are the library's ranking: same winner, every document that scores clearly above 0,
/// nothing that scores 0, each score within the f16 rounding of the stored weights.
fn assert_hits_match(hits: &[(String, f32)], expected: &[(String, f32)], what: &str) {
    assert!(!hits.is_empty(), "{what}: no hits");
    assert_eq!(hits[0].0, expected[0].0, "{what}: {hits:?} vs {expected:?}");
    assert!(
        hits.windows(2).all(|w| w[0].1 >= w[1].1),
        "{what}: {hits:?}"
    );
    let want: BTreeMap<&str, f32> = expected.iter().map(|(d, s)| (d.as_str(), *s)).collect();
    for (doc, score) in hits {
        let w = want.get(doc.as_str()).copied().unwrap_or(0.0);
        assert!(
            (score - w).abs() <= 2e-3 * w + 1e-5,
            "{what}: {doc} scored {score}, the library says {w}"
        );
    }
    for (doc, score) in expected {
        if *score > 1e-3 {
            assert!(
                hits.iter().any(|h| &h.0 == doc),
                "{what}: {doc} ({score}) missing"
            );
        }
    }
}

/// Writes a BEIR folder: the corpus, the queries, and qrels naming each query's winner.
fn write_beir(dir: &Path, docs: &[Doc], queries: &[(String, String)]) {
    write_corpus(&dir.join("corpus.jsonl"), docs);
    write_jsonl(
        &dir.join("queries.jsonl"),
        queries
            .iter()
            .enumerate()
            .map(|(i, (text, _))| json!({"_id": format!("q{i}"), "text": text})),
    );
    let mut qrels = String::from("query-id\tcorpus-id\tscore\n");
    for (i, (_, doc)) in queries.iter().enumerate() {
        qrels += &format!("q{i}\t{doc}\t1\n");
    }
    std::fs::create_dir_all(dir.join("qrels")).unwrap();
    std::fs::write(dir.join("qrels/test.tsv"), qrels).unwrap();
}

/// `nsparse eval --json` on `dataset`: every query's judged document is its first hit.
fn assert_eval_is_perfect(
    model: &str,
    dataset: &Path,
    extra: &[&str],
    queries: usize,
    docs: usize,
) {
    let run = dataset.join("run.trec");
    let mut args = vec![
        "eval",
        "--model",
        model,
        "--dataset",
        dataset.to_str().unwrap(),
        "--json",
        "-o",
        run.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let report: Value = serde_json::from_str(ok(&args).trim()).unwrap();
    assert_eq!(report["documents"], docs, "{report}");
    assert_eq!(report["queries"], queries, "{report}");
    for measure in ["NDCG@10", "Recall@100", "MRR@10", "MAP@100"] {
        assert_eq!(
            report["metrics"][measure].as_f64(),
            Some(1.0),
            "{measure}: {report}"
        );
    }
    assert!(
        report["sparsity"]["flops"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    let lines = std::fs::read_to_string(run).unwrap();
    assert!(lines.lines().any(|l| l.starts_with("q0 Q0 ")), "{lines}");
}

fn end_to_end(name: &str) {
    let model = model_dir(name);
    let encoder = SparseEncoder::load(&model, EncoderOptions::default()).unwrap();
    let vocab = encoder.vocab_size();
    assert!(vocab > 100_000);
    let docs = documents();
    let texts: Vec<String> = docs.iter().map(Doc::full_text).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let vectors = encoder.encode_documents(&refs, |_| {}).unwrap().vectors;

    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus.jsonl");
    write_corpus(&corpus, &docs);
    let corpus = corpus.to_str().unwrap();

    // encode: the library's vectors, keyed by the model's own token strings.
    let encoded = tmp.path().join("vectors.jsonl");
    ok(&[
        "encode",
        "documents",
        "--model",
        &model,
        "--input",
        corpus,
        "--output",
        encoded.to_str().unwrap(),
    ]);
    let lines = std::fs::read_to_string(&encoded).unwrap();
    let mut high_ids = 0;
    for ((line, doc), want) in lines.lines().zip(&docs).zip(&vectors) {
        let line: Value = serde_json::from_str(line).unwrap();
        assert_eq!(line["_id"], doc.id.as_str());
        let got = encoder
            .vector_from_tokens(
                line["vector"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(t, w)| (t.as_str(), w.as_f64().unwrap() as f32)),
            )
            .unwrap();
        assert_eq!(&got, want, "{name}: vector of {}", doc.id);
        high_ids += got.ids().iter().filter(|&&id| id > 65_535).count();
    }
    assert_eq!(lines.lines().count(), docs.len());
    assert!(high_ids > 100, "{name}: {high_ids} ids above 65,535");

    // index: from the corpus, and from the encoded vectors (token strings → the model's ids).
    let index = tmp.path().join("idx");
    ok(&[
        "index",
        "--model",
        &model,
        "--corpus",
        corpus,
        "--index",
        index.to_str().unwrap(),
    ]);
    let from_vectors = tmp.path().join("idx-vectors");
    ok(&[
        "index",
        "--model",
        &model,
        "--vectors",
        encoded.to_str().unwrap(),
        "--index",
        from_vectors.to_str().unwrap(),
    ]);

    // search: inference-free queries through the folder's idf.json ...
    let queries = idf_queries(&encoder, &vectors, &docs);
    assert!(
        queries.len() >= 3,
        "{name}: {} usable queries",
        queries.len()
    );
    for (query, _) in &queries {
        let expected = ranking(&encoder.encode_query(query).unwrap(), &vectors, &docs);
        let hits = search(&index, &[], query);
        assert_hits_match(&hits, &expected, &format!("{name} idf {query:?}"));
        assert_eq!(search(&from_vectors, &["--model", &model], query), hits);
    }
    // ... and bi-encoder queries through the network.
    let neural = SparseEncoder::load(&model, EncoderOptions::default())
        .unwrap()
        .without_idf()
        .unwrap();
    let titles = neural_queries(&neural, &vectors, &docs);
    assert!(titles.len() >= 3, "{name}: {} usable titles", titles.len());
    for (query, _) in &titles {
        let expected = ranking(&neural.encode_query(query).unwrap(), &vectors, &docs);
        let hits = search(&index, &["--model", &model, "--neural-queries"], query);
        assert_hits_match(&hits, &expected, &format!("{name} bi-encoder {query:?}"));
    }

    // eval on BEIR folders whose qrels name each query's winner.
    let beir = tmp.path().join("beir-idf");
    write_beir(&beir, &docs, &queries);
    assert_eval_is_perfect(&model, &beir, &[], queries.len(), docs.len());
    let beir = tmp.path().join("beir-neural");
    write_beir(&beir, &docs, &titles);
    assert_eval_is_perfect(
        &model,
        &beir,
        &["--neural-queries"],
        titles.len(),
        docs.len(),
    );
}

#[test]
fn mbert_105879_encodes_indexes_searches_and_evaluates() {
    end_to_end(MBERT);
}

#[test]
fn distilbert_250002_encodes_indexes_searches_and_evaluates() {
    end_to_end(DISTILBERT_250K);
}
