//! End to end on a tiny synthetic BEIR dataset: BM25 through the library, with a fresh, a
//! reused and a refused cached index.

use std::io::Write;
use std::path::Path;

use nsparse_eval::{
    evaluate_dataset, read_run, write_run_file, BeirDataset, EvalOptions, IndexLocation, Measure,
    Scorer, Silent,
};
use nsparse_model::{Pruning, SparseEncoder};

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::File::create(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

/// Six documents; each query names words that only its relevant documents hold. Query `d6`
/// shares its id with a document that matches it best, which BEIR's convention drops.
fn dataset(dir: &Path) {
    let docs = [
        ("d1", "Volcanoes", "lava erupts from the volcano crater"),
        (
            "d2",
            "",
            "the volcano is dormant and its crater holds a lake",
        ),
        ("d3", "Penguins", "penguins swim in cold antarctic water"),
        (
            "d4",
            "",
            "emperor penguins huddle through the antarctic winter",
        ),
        ("d5", "Bread", "bakers knead dough and bake bread in ovens"),
        ("d6", "", "sourdough bread bread bread starter culture"),
    ];
    let corpus: String = docs
        .iter()
        .map(|(id, title, text)| {
            format!(
                "{}\n",
                serde_json::json!({"_id": id, "title": title, "text": text})
            )
        })
        .collect();
    write(&dir.join("corpus.jsonl"), &corpus);
    write(
        &dir.join("queries.jsonl"),
        concat!(
            "{\"_id\": \"q1\", \"text\": \"volcano crater lava\"}\n",
            "{\"_id\": \"q2\", \"text\": \"antarctic penguins\"}\n",
            "{\"_id\": \"d6\", \"text\": \"sourdough bread\"}\n",
            "{\"_id\": \"q4\", \"text\": \"unjudged query\"}\n",
            "{\"_id\": \"q5\", \"text\": \"zzzz qqqq\"}\n",
        ),
    );
    write(
        &dir.join("qrels/test.tsv"),
        "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t1\nq2\td3\t1\nq2\td4\t1\nd6\td5\t1\nq5\td1\t1\n",
    );
}

#[test]
fn bm25_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("tiny");
    dataset(&data);
    let ds = BeirDataset::load(&data, "test").unwrap();
    assert_eq!(ds.corpus.len(), 6);
    assert_eq!(ds.queries.len(), 4); // q4 is unjudged

    let tokenizer = SparseEncoder::builtin_query_model();
    let options = EvalOptions {
        k: 10,
        measures: vec![
            Measure::Ndcg(10),
            Measure::Recall(100),
            Measure::Mrr(10),
            Measure::Map(100),
        ],
        drop_identical_ids: true,
        document_pruning: Pruning::None,
    };
    let out = evaluate_dataset(
        &ds,
        Scorer::Bm25(&tokenizer),
        IndexLocation::Temporary,
        &options,
        &Silent,
    )
    .unwrap();
    // q1, q2 rank their relevant documents first (perfect); d6 finds d5 once d6 itself is
    // dropped; q5 matches nothing and counts as 0.
    let run = &out.run;
    assert_eq!(run.len(), 4);
    assert!(run.get("q5").unwrap().is_empty());
    assert!(!run.get("d6").unwrap().contains_key("d6"));
    assert_eq!(run.ranked("d6")[0].0, "d5");
    assert_eq!(run.ranked("q1")[0].0, "d1");
    let e = &out.evaluation;
    assert_eq!(e.num_queries(), 4);
    assert_eq!(e.query_value("q2", Measure::Ndcg(10)), Some(1.0));
    assert_eq!(e.query_value("q5", Measure::Recall(100)), Some(0.0));
    assert_eq!(e.query_value("d6", Measure::Mrr(10)), Some(1.0));
    let recall = out.report.metrics["Recall@100"].as_f64().unwrap();
    assert_eq!(recall, 0.75);
    assert_eq!(out.report.queries, 4);
    assert!(out.report.sparsity.is_none());
    assert!(!out.report.index_reused);
    assert!(out.report.timings.encode_docs_s.is_some());

    // Without BEIR's convention the query's own document comes back first.
    let keep = EvalOptions {
        drop_identical_ids: false,
        ..options.clone()
    };
    let kept = evaluate_dataset(
        &ds,
        Scorer::Bm25(&tokenizer),
        IndexLocation::Temporary,
        &keep,
        &Silent,
    )
    .unwrap();
    assert_eq!(kept.run.ranked("d6")[0].0, "d6");

    // A cached index is built once, then reused with identical results.
    let cache = tmp.path().join("cache");
    let first = evaluate_dataset(
        &ds,
        Scorer::Bm25(&tokenizer),
        IndexLocation::Cached(&cache),
        &options,
        &Silent,
    )
    .unwrap();
    let second = evaluate_dataset(
        &ds,
        Scorer::Bm25(&tokenizer),
        IndexLocation::Cached(&cache),
        &options,
        &Silent,
    )
    .unwrap();
    assert!(!first.report.index_reused && second.report.index_reused);
    assert_eq!(second.report.timings.encode_docs_s, None);
    assert_eq!(first.run, second.run);
    assert_eq!(first.report.metrics, out.report.metrics);

    // The run file round-trips.
    let path = tmp.path().join("run.trec");
    write_run_file(&path, &out.run, "bm25").unwrap();
    let back = read_run(&path).unwrap();
    for q in ["q1", "q2", "d6"] {
        let a: Vec<&str> = back.ranked(q).iter().map(|d| d.0).collect();
        let b: Vec<&str> = out.run.ranked(q).iter().map(|d| d.0).collect();
        assert_eq!(a, b);
    }

    // A cached index of another corpus is refused with advice.
    let other = tmp.path().join("other");
    dataset(&other);
    write(
        &other.join("corpus.jsonl"),
        "{\"_id\": \"x\", \"text\": \"one doc\"}\n",
    );
    let ds2 = BeirDataset::load(&other, "test").unwrap();
    let err = evaluate_dataset(
        &ds2,
        Scorer::Bm25(&tokenizer),
        IndexLocation::Cached(&cache),
        &options,
        &Silent,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("another corpus") && msg.contains("delete"),
        "{msg}"
    );
}

#[test]
fn a_query_only_model_cannot_encode_the_corpus() {
    let tmp = tempfile::tempdir().unwrap();
    dataset(tmp.path());
    let ds = BeirDataset::load(tmp.path(), "test").unwrap();
    let model = SparseEncoder::builtin_query_model();
    let err = evaluate_dataset(
        &ds,
        Scorer::Sparse(&model),
        IndexLocation::Temporary,
        &EvalOptions::default(),
        &Silent,
    )
    .unwrap_err();
    assert!(err.to_string().contains("query-only"), "{err}");
}

/// Checks every score of `run` against the f32 dot product of the encoder's query vector and
/// its document vector pruned by `pruning` (the index stores f16 weights, hence the tolerance);
/// returns the document vectors.
fn assert_scores_are_dot_products(
    ds: &BeirDataset,
    encoder: &SparseEncoder,
    run: &nsparse_eval::Run,
    pruning: Pruning,
) -> Vec<nsparse_model::SparseVector> {
    let docs: Vec<_> = ds
        .corpus
        .iter()
        .map(|r| {
            let mut v = encoder.encode_document(&r.full_text()).unwrap();
            v.prune(pruning);
            v
        })
        .collect();
    for q in &ds.queries {
        let qv = encoder.encode_query(&q.text).unwrap();
        for (doc, score) in run.ranked(&q.id) {
            let i = ds.corpus.iter().position(|r| r.id == doc).unwrap();
            let exact = f64::from(qv.dot(&docs[i]));
            assert!(
                (score - exact).abs() <= 2e-3 * exact.abs().max(1.0),
                "{} {doc}: {score} vs {exact}",
                q.id
            );
        }
    }
    docs
}

/// The committed random tiny DistilBERT of nsparse-model: a real document encoder that needs no
/// download (its rankings are meaningless, its arithmetic is not).
fn tiny_model() -> SparseEncoder {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../nsparse-model/tests/fixtures/tiny-distilbert");
    SparseEncoder::load(dir.to_str().unwrap(), Default::default()).unwrap()
}

#[test]
fn sparse_end_to_end_scores_match_exact_dot_products() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("tiny");
    dataset(&data);
    let ds = BeirDataset::load(&data, "test").unwrap();
    let encoder = tiny_model();
    let cache = tmp.path().join("cache");
    let options = EvalOptions {
        k: 10,
        ..EvalOptions::default()
    };
    let out = evaluate_dataset(
        &ds,
        Scorer::Sparse(&encoder),
        IndexLocation::Cached(&cache),
        &options,
        &Silent,
    )
    .unwrap();
    assert_eq!(out.report.scorer, "bi-encoder");
    assert_eq!(out.report.model, encoder.fingerprint());
    assert_eq!(out.run.len(), 4);

    // Scores are the dot products of the encoder's vectors (documents stored as f16).
    let docs = assert_scores_are_dot_products(&ds, &encoder, &out.run, Pruning::None);

    // FLOPS from the encoder's own vectors agrees with the report.
    let mut qc = nsparse_eval::TokenCounts::new();
    for q in &ds.queries {
        qc.add(encoder.encode_query(&q.text).unwrap().iter());
    }
    // The index stores f16 weights: ones too small for f16's normal range are not stored.
    let mut dc = nsparse_eval::TokenCounts::new();
    for d in &docs {
        dc.add(d.iter().filter(|&(_, w)| nsparse_index::quantize(w) != 0));
    }
    let s = out.report.sparsity.unwrap();
    assert!((s.flops - nsparse_eval::flops(&qc, &dc)).abs() < 1e-9);
    assert!((s.avg_query_nonzeros - qc.mean_nonzeros()).abs() < 1e-9);
    assert!((s.avg_doc_nonzeros - dc.mean_nonzeros()).abs() < 1e-9);

    // Inference-free queries reuse the same cached index (same document vectors).
    let free = tiny_model()
        .with_idf_json(SparseEncoder::builtin_idf_json(), Path::new("<builtin>"))
        .unwrap();
    let again = evaluate_dataset(
        &ds,
        Scorer::Sparse(&free),
        IndexLocation::Cached(&cache),
        &options,
        &Silent,
    )
    .unwrap();
    assert!(again.report.index_reused);
    assert_eq!(again.report.scorer, "inference-free");

    // A BM25 evaluation refuses the learned-sparse index.
    let bm25 = SparseEncoder::builtin_query_model();
    let err = evaluate_dataset(
        &ds,
        Scorer::Bm25(&bm25),
        IndexLocation::Cached(&cache),
        &options,
        &Silent,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("built with model") && msg.contains("bm25+"),
        "{msg}"
    );
}

#[test]
fn document_pruning_follows_opensearch_and_gets_its_own_cached_index() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("tiny");
    dataset(&data);
    let ds = BeirDataset::load(&data, "test").unwrap();
    let encoder = tiny_model();
    let cache = tmp.path().join("cache");
    let pruning = Pruning::TopK(3);
    let options = EvalOptions {
        k: 10,
        document_pruning: pruning,
        ..EvalOptions::default()
    };
    let out = evaluate_dataset(
        &ds,
        Scorer::Sparse(&encoder),
        IndexLocation::Cached(&cache),
        &options,
        &Silent,
    )
    .unwrap();
    assert!(
        out.report.model.ends_with("+prune=top_k:3"),
        "{}",
        out.report.model
    );
    // Every stored document keeps at most its 3 largest weights, as PruneUtils' top_k does.
    let s = out.report.sparsity.unwrap();
    assert!(
        s.avg_doc_nonzeros <= 3.0 && s.avg_doc_nonzeros > 0.0,
        "{}",
        s.avg_doc_nonzeros
    );
    // Scores are dot products with the pruned document vectors.
    assert_scores_are_dot_products(&ds, &encoder, &out.run, pruning);
    // The unpruned evaluation refuses the pruned cached index instead of reusing it silently.
    let err = evaluate_dataset(
        &ds,
        Scorer::Sparse(&encoder),
        IndexLocation::Cached(&cache),
        &EvalOptions {
            k: 10,
            ..EvalOptions::default()
        },
        &Silent,
    )
    .unwrap_err();
    assert!(err.to_string().contains("+prune=top_k:3"), "{err}");
    // BM25 has nothing to prune.
    let bm25 = SparseEncoder::builtin_query_model();
    let err = evaluate_dataset(
        &ds,
        Scorer::Bm25(&bm25),
        IndexLocation::Temporary,
        &options,
        &Silent,
    )
    .unwrap_err();
    assert!(err.to_string().contains("BM25"), "{err}");
}
