//! FLOPS, parsing errors, TREC run files and tie order on small hand-made inputs.

use std::collections::HashMap;
use std::io::Write;

use nsparse_eval::{
    evaluate, flops, read_jsonl, read_run, score_query, write_run, BeirDataset, EvalError, Measure,
    Qrels, Run, Sparsity, TokenCounts,
};

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    path
}

#[test]
fn flops_on_a_hand_computed_example() {
    // Queries: {1,2}, {2}; documents: {1}, {2,3}, {2}, {} (token 3 never in a query).
    let mut q = TokenCounts::new();
    q.add([(1, 0.5), (2, 1.0)]);
    q.add([(2, 2.0), (7, 0.0)]); // zero weights do not count
    let mut d = TokenCounts::new();
    d.add([(1, 1.0)]);
    d.add([(2, 1.0), (3, 1.0)]);
    d.add([(2, 0.3)]);
    d.add([]);
    // p_q = {1: 1/2, 2: 1}; p_d = {1: 1/4, 2: 2/4, 3: 1/4}
    // FLOPS = 1/2·1/4 + 1·1/2 = 0.625
    assert!((flops(&q, &d) - 0.625).abs() < 1e-12);
    let s = Sparsity::of(&q, &d);
    assert!((s.avg_query_nonzeros - 1.5).abs() < 1e-12);
    assert!((s.avg_doc_nonzeros - 1.0).abs() < 1e-12);
    assert_eq!(flops(&TokenCounts::new(), &d), 0.0);
}

#[test]
fn ties_follow_trec_eval_docid_descending() {
    let mut run = Run::new();
    for d in ["a", "B", "z", "10", "9"] {
        run.insert("q", d, 1.0);
    }
    run.insert("q", "top", 2.0);
    run.insert("q", "neg0", -0.0);
    run.insert("q", "pos0", 0.0);
    let order: Vec<&str> = run.ranked("q").into_iter().map(|(d, _)| d).collect();
    assert_eq!(order, ["top", "z", "a", "B", "9", "10", "pos0", "neg0"]);
}

#[test]
fn graded_ndcg_by_hand() {
    let judgments: HashMap<String, i32> = [("a", 2), ("b", 1), ("c", 0), ("d", 3), ("e", -1)]
        .into_iter()
        .map(|(d, g)| (d.to_string(), g))
        .collect();
    // Ranking a, x, b: DCG = 2 + 1/log2(4); ideal over d(3), a(2), b(1) = 3 + 2/log2(3) + 1/2.
    let dcg = 2.0 + 1.0 / 4f64.log2();
    let idcg = 3.0 + 2.0 / 3f64.log2() + 0.5;
    let got = score_query(&judgments, &["a", "x", "b"], Measure::Ndcg(10));
    assert!((got - dcg / idcg).abs() < 1e-12);
    // Recall and MAP divide by the 3 relevant documents, retrieved or not.
    assert!(
        (score_query(&judgments, &["a", "x", "b"], Measure::Recall(100)) - 2.0 / 3.0).abs() < 1e-12
    );
    let map = (1.0 + 2.0 / 3.0) / 3.0;
    assert!((score_query(&judgments, &["a", "x", "b"], Measure::Map(100)) - map).abs() < 1e-12);
    assert_eq!(
        score_query(&judgments, &["x", "c", "e", "b"], Measure::Mrr(10)),
        0.25
    );
    assert_eq!(
        score_query(&judgments, &["x", "c", "e", "b"], Measure::Mrr(3)),
        0.0
    );
}

#[test]
fn mean_skips_unjudged_and_missing_queries() {
    let mut qrels = Qrels::new();
    qrels.insert("q1", "a", 1);
    qrels.insert("q2", "b", 1);
    qrels.insert("q3", "c", 0);
    let mut run = Run::new();
    run.insert("q1", "a", 1.0); // 1.0
    run.add_query("q3"); // no relevant: 0, still counted
    run.insert("q9", "a", 1.0); // unjudged: ignored
    let eval = evaluate(&qrels, &run, &[Measure::Ndcg(10)]);
    assert_eq!(eval.num_queries(), 2); // q2 missing from the run is skipped
    assert_eq!(eval.mean_of(Measure::Ndcg(10)), Some(0.5));
}

#[test]
fn measures_parse_and_print() {
    for s in ["NDCG@10", "Recall@100", "MRR@10", "MAP@100", "P@5"] {
        assert_eq!(s.parse::<Measure>().unwrap().to_string(), s);
    }
    assert!("ndcg@0".parse::<Measure>().is_err());
    assert!("foo@3".parse::<Measure>().is_err());
}

#[test]
fn qrels_parsing_accepts_beir_and_trec_and_names_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let beir = write(
        dir.path(),
        "beir.tsv",
        "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t0\n\nq2\td1\t1\nq1\td1\t1\n",
    );
    let qrels = Qrels::read(&beir).unwrap();
    assert_eq!(qrels.len(), 2);
    assert_eq!(qrels.get("q1").unwrap()["d1"], 1); // last grade wins, as in BEIR
    let trec = write(dir.path(), "trec.txt", "1 0 184 3\n1 0 29 -1\n");
    assert_eq!(Qrels::read(&trec).unwrap().get("1").unwrap()["29"], -1);

    let bad = write(
        dir.path(),
        "bad.tsv",
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0.5\n",
    );
    let err = Qrels::read(&bad).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, EvalError::QrelsLine { line: 3, .. }), "{msg}");
    assert!(
        msg.contains("bad.tsv:3") && msg.contains("integer"),
        "{msg}"
    );
    let short = write(dir.path(), "short.tsv", "q1\td1\t1\nq1 d2\n");
    assert!(Qrels::read(&short)
        .unwrap_err()
        .to_string()
        .contains("short.tsv:2"));
}

#[test]
fn jsonl_and_dataset_errors_name_file_line_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "c.jsonl",
        "{\"_id\": \"a\", \"text\": \"x\"}\n{\"_id\": 5, \"title\": \"T\", \"text\": \"y\"}\n",
    );
    let recs = read_jsonl(&p).unwrap();
    assert_eq!(recs[1].id, "5");
    assert_eq!(recs[1].full_text(), "T y");
    let p = write(
        dir.path(),
        "bad.jsonl",
        "{\"_id\": \"a\", \"text\": \"x\"}\nnot json\n",
    );
    let msg = read_jsonl(&p).unwrap_err().to_string();
    assert!(
        msg.contains("bad.jsonl:2") && msg.contains("\"_id\""),
        "{msg}"
    );
    let p = write(
        dir.path(),
        "dup.jsonl",
        "{\"_id\": \"a\", \"text\": \"x\"}\n{\"_id\": \"a\", \"text\": \"y\"}\n",
    );
    let msg = read_jsonl(&p).unwrap_err().to_string();
    assert!(
        msg.contains("dup.jsonl:2") && msg.contains("line 1"),
        "{msg}"
    );
    let p = write(dir.path(), "notext.jsonl", "{\"_id\": \"a\"}\n");
    assert!(read_jsonl(&p)
        .unwrap_err()
        .to_string()
        .contains("notext.jsonl:1"));

    let ds = dir.path().join("ds");
    write(&ds, "corpus.jsonl", "{\"_id\": \"d1\", \"text\": \"x\"}\n");
    let msg = BeirDataset::load(&ds, "test").unwrap_err().to_string();
    assert!(
        msg.contains("queries.jsonl") && msg.contains("missing"),
        "{msg}"
    );
    write(
        &ds,
        "queries.jsonl",
        "{\"_id\": \"q1\", \"text\": \"x\"}\n{\"_id\": \"q2\", \"text\": \"y\"}\n",
    );
    write(
        &ds,
        "qrels/dev.tsv",
        "query-id\tcorpus-id\tscore\nq1\td1\t1\n",
    );
    let msg = BeirDataset::load(&ds, "test").unwrap_err().to_string();
    assert!(
        msg.contains("test.tsv") && msg.contains("splits present: dev"),
        "{msg}"
    );
    let loaded = BeirDataset::load(&ds, "dev").unwrap();
    assert_eq!(loaded.queries.len(), 1); // q2 has no judgments in the split
    write(
        &ds,
        "qrels/test.tsv",
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq3\td1\t1\n",
    );
    let msg = BeirDataset::load(&ds, "test").unwrap_err().to_string();
    assert!(msg.contains("test.tsv:3") && msg.contains("q3"), "{msg}");
}

#[test]
fn trec_writer_round_trips_in_trec_order() {
    let mut run = Run::new();
    run.insert("q2", "b", 0.5);
    run.insert("q1", "x", 1.25);
    run.insert("q1", "y", 1.25);
    run.insert("q1", "w", 3.0);
    run.add_query("q3");
    let mut out = Vec::new();
    write_run(&mut out, &run, "my run").unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text,
        "q1 Q0 w 1 3 my_run\nq1 Q0 y 2 1.25 my_run\nq1 Q0 x 3 1.25 my_run\nq2 Q0 b 1 0.5 my_run\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "run.trec", &text);
    let back = read_run(&path).unwrap();
    assert_eq!(back.ranked("q1"), run.ranked("q1"));
    let path = write(dir.path(), "dup.trec", "q1 Q0 a 1 2 t\nq1 Q0 a 2 1 t\n");
    assert!(read_run(&path)
        .unwrap_err()
        .to_string()
        .contains("dup.trec:2"));
    let path = write(dir.path(), "short.trec", "q1 Q0 a 1\n");
    assert!(read_run(&path)
        .unwrap_err()
        .to_string()
        .contains("short.trec:1"));
}
