//! The metrics agree with pytrec_eval to 1e-6 on the recorded synthetic cases
//! (`scripts/eval/make_metric_fixtures.py` writes `fixtures/metrics.json`).

use nsparse_eval::{evaluate, Measure, Qrels, Run};
use serde_json::Value;

fn fixture() -> Value {
    let text = include_str!("fixtures/metrics.json");
    serde_json::from_str(text).expect("fixture is JSON")
}

#[test]
fn per_query_and_mean_values_match_pytrec_eval() {
    let fixture = fixture();
    let tolerance = fixture["tolerance"].as_f64().unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let mut qrels = Qrels::new();
        for (q, docs) in case["qrels"].as_object().unwrap() {
            for (d, g) in docs.as_object().unwrap() {
                qrels.insert(q, d, g.as_i64().unwrap() as i32);
            }
        }
        let mut run = Run::new();
        for (q, docs) in case["run"].as_object().unwrap() {
            run.add_query(q);
            for (d, s) in docs.as_object().unwrap() {
                run.insert(q, d, s.as_f64().unwrap());
            }
        }
        let mean = case["mean"].as_object().unwrap();
        let measures: Vec<Measure> = mean.keys().map(|k| k.parse().unwrap()).collect();
        assert!(measures.contains(&Measure::Ndcg(10)) && measures.contains(&Measure::Mrr(10)));
        let eval = evaluate(&qrels, &run, &measures);

        let expected_queries = case["per_query"].as_object().unwrap();
        let got: Vec<&String> = eval.per_query.keys().collect();
        let want: Vec<&String> = expected_queries.keys().collect();
        let mut want_sorted = want.clone();
        want_sorted.sort();
        assert_eq!(got, want_sorted, "{name}: evaluated query set");

        let mut checked = 0;
        for (q, values) in expected_queries {
            for (m, v) in values.as_object().unwrap() {
                let measure: Measure = m.parse().unwrap();
                let ours = eval.query_value(q, measure).unwrap();
                let theirs = v.as_f64().unwrap();
                assert!(
                    (ours - theirs).abs() <= tolerance,
                    "{name} {q} {m}: nsparse {ours} vs pytrec_eval {theirs}"
                );
                checked += 1;
            }
        }
        assert!(checked > 400, "{name}: only {checked} values checked");
        for (m, v) in mean {
            let ours = eval.mean_of(m.parse().unwrap()).unwrap();
            let theirs = v.as_f64().unwrap();
            assert!(
                (ours - theirs).abs() <= tolerance,
                "{name} mean {m}: nsparse {ours} vs pytrec_eval {theirs}"
            );
        }
    }
}

#[test]
fn fixture_covers_the_edge_cases() {
    let fixture = fixture();
    let case = &fixture["cases"][0];
    let run = case["run"].as_object().unwrap();
    let qrels = case["qrels"].as_object().unwrap();
    let per_query = case["per_query"].as_object().unwrap();
    // A judged query absent from the run is not evaluated.
    assert!(qrels.contains_key("q7") && !run.contains_key("q7") && !per_query.contains_key("q7"));
    // A run query without judgments is ignored.
    assert!(run.contains_key("q_unjudged") && !per_query.contains_key("q_unjudged"));
    // An empty ranking is evaluated as zero.
    assert_eq!(per_query["q6"]["NDCG@10"].as_f64(), Some(0.0));
    // Runs longer than 100 and negative grades exist.
    assert!(run.values().any(|d| d.as_object().unwrap().len() > 1000));
    assert!(qrels.values().any(|d| d
        .as_object()
        .unwrap()
        .values()
        .any(|g| g.as_i64() == Some(-1))));
}
