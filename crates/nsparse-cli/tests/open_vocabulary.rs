//! `nsparse index --vectors` with any feature names (an open vocabulary), `--vector-keys ids`,
//! `nsparse search --query-vector` against brute force, and `nsparse export` of the names.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use nsparse_index::{dequantize, quantize};
use serde_json::{json, Value};

mod common;
use common::{fails, ok};

/// A name of a 250,002-token vocabulary, or one no model has.
fn name(r: u64) -> String {
    match r % 5 {
        0 => format!("brand:acme-{}", r % 97),
        1 => format!("名前{}", r % 89),
        2 => format!("{:0>40}", r % 83),
        _ => format!("▁tok{}", r % 250_002),
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

type Vector = BTreeMap<String, f32>;

fn random_vector(rng: &mut Rng, n: usize) -> Vector {
    (0..n)
        .map(|_| {
            let r = rng.next();
            // Bert tokens too, which keep their model ids.
            let key = if r.is_multiple_of(11) {
                ["weather", "rain", "new", "york"][(r % 4) as usize].to_string()
            } else {
                name(r >> 8)
            };
            (key, 0.05 + (r >> 40) as f32 / (1u64 << 24) as f32 * 3.0)
        })
        .collect()
}

fn write_vectors(path: &Path, docs: &[(String, Vector)]) {
    let lines: Vec<String> = docs
        .iter()
        .map(|(id, v)| json!({"_id": id, "vector": v, "n": id}).to_string())
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// Top-10 `(id, score)` over the stored f16 weights.
fn brute_force(docs: &HashMap<String, Vector>, query: &Vector) -> Vec<(String, f32)> {
    let mut scored: Vec<(String, f32)> = docs
        .iter()
        .map(|(id, v)| {
            let s: f64 = query
                .iter()
                .filter_map(|(k, w)| {
                    v.get(k)
                        .map(|dw| f64::from(*w) * f64::from(dequantize(quantize(*dw))))
                })
                .sum();
            (id.clone(), s as f32)
        })
        .filter(|p| p.1 > 0.0)
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.truncate(10);
    scored
}

fn search(index: &str, query: &Vector) -> Vec<(String, f32)> {
    let q = serde_json::to_string(query).unwrap();
    ok(&["search", "--index", index, "--json", "--query-vector", &q])
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["_id"].as_str().unwrap().to_string(),
                v["_score"].as_f64().unwrap() as f32,
            )
        })
        .collect()
}

fn assert_same_ranking(got: &[(String, f32)], want: &[(String, f32)], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g.1 - w.1).abs() <= 1e-4 * w.1.max(1.0),
            "{what}: {got:?} vs {want:?}"
        );
    }
    // Ids must agree wherever the scores leave no tie.
    let distinct = want.windows(2).all(|p| (p[0].1 - p[1].1).abs() > 1e-4);
    if distinct {
        let ids = |v: &[(String, f32)]| v.iter().map(|p| p.0.clone()).collect::<Vec<_>>();
        assert_eq!(ids(got), ids(want), "{what}");
    }
}

#[test]
fn vectors_with_any_names_index_search_and_export_like_brute_force() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Enough names that the dictionary's ids pass 65,535.
    let docs: Vec<(String, Vector)> = (0..4000)
        .map(|i| (format!("d{i}"), random_vector(&mut rng, 30)))
        .collect();
    let first = dir.path().join("first.jsonl");
    let second = dir.path().join("second.jsonl");
    write_vectors(&first, &docs[..2500]);
    write_vectors(&second, &docs[2500..]);
    let index = dir.path().join("idx");
    let index = index.to_str().unwrap();
    ok(&[
        "index",
        "--vectors",
        first.to_str().unwrap(),
        "--index",
        index,
    ]);
    // A second run adds documents (and names) to the existing index.
    ok(&[
        "index",
        "--vectors",
        second.to_str().unwrap(),
        "--index",
        index,
    ]);
    let reader = nsparse_index::open_reader(index).unwrap();
    assert!(reader.has_open_vocabulary());
    assert!(
        reader.vocab_size() > 65_536,
        "ids above 65,535: {}",
        reader.vocab_size()
    );
    // Model tokens keep their bert-base-uncased ids.
    assert_eq!(reader.feature_id("weather"), Some(4633));
    let live: HashMap<String, Vector> = docs.into_iter().collect();
    for qi in 0..25 {
        let mut query = random_vector(&mut rng, 8);
        query.insert("never-indexed-name".into(), 4.0);
        let want = brute_force(&live, &query);
        assert!(!want.is_empty());
        assert_same_ranking(&search(index, &query), &want, &format!("query {qi}"));
    }

    // Export: every document's vector under its names.
    let out = dir.path().join("export");
    ok(&[
        "export",
        "--index",
        index,
        "--format",
        "opensearch-bulk",
        "--output",
        out.to_str().unwrap(),
    ]);
    let mut exported = 0;
    for entry in std::fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "ndjson") {
            let text = std::fs::read_to_string(&path).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            for pair in lines.chunks(2) {
                let action: Value = serde_json::from_str(pair[0]).unwrap();
                let body: Value = serde_json::from_str(pair[1]).unwrap();
                let id = action["index"]["_id"].as_str().unwrap();
                let got: BTreeMap<String, f32> =
                    serde_json::from_value(body["embedding"].clone()).unwrap();
                let want: BTreeMap<String, f32> = live[id]
                    .iter()
                    .map(|(k, w)| (k.clone(), dequantize(quantize(*w))))
                    .collect();
                assert_eq!(got, want, "{id}");
                exported += 1;
            }
        }
    }
    assert_eq!(exported, 4000);
}

#[test]
fn token_id_keys_bad_weights_and_fixed_vocabularies_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    // Token ids of the built-in bert-base-uncased vocabulary (4633 = "weather").
    std::fs::write(
        path("ids.jsonl"),
        "{\"_id\": \"a\", \"vector\": {\"4633\": 2.0, \"4542\": 1.0}}\n",
    )
    .unwrap();
    ok(&[
        "index",
        "--vectors",
        &path("ids.jsonl"),
        "--vector-keys",
        "ids",
        "--index",
        &path("ids"),
    ]);
    let hits = search(&path("ids"), &[("weather".to_string(), 1.0)].into());
    assert_eq!(hits, vec![("a".to_string(), 2.0)]);
    std::fs::write(
        path("bad-id.jsonl"),
        "{\"_id\": \"b\", \"vector\": {\"30522\": 1.0}}\n",
    )
    .unwrap();
    let e = fails(&[
        "index",
        "--vectors",
        &path("bad-id.jsonl"),
        "--vector-keys",
        "ids",
        "--index",
        &path("ids"),
    ]);
    assert!(e.contains("\"30522\"") && e.contains("token id"), "{e}");

    // A bad weight names the feature; nothing is written.
    std::fs::write(
        path("bad.jsonl"),
        "{\"_id\": \"c\", \"vector\": {\"brand:fine\": 1.0}}\n{\"_id\": \"d\", \"vector\": {\"brand:acme\": -1.5}}\n",
    )
    .unwrap();
    let e = fails(&[
        "index",
        "--vectors",
        &path("bad.jsonl"),
        "--index",
        &path("ids"),
    ]);
    assert!(e.contains("brand:acme") && e.contains("-1.5"), "{e}");
    let reader = nsparse_index::open_reader(path("ids")).unwrap();
    assert_eq!(reader.num_docs(), 1);
    assert_eq!(reader.feature_id("brand:fine"), None);

    // An index built from a corpus has the model's fixed vocabulary: other names are refused
    // before anything is written.
    std::fs::write(
        path("corpus.jsonl"),
        "{\"_id\": \"t\", \"text\": \"rain in new york\"}\n",
    )
    .unwrap();
    ok(&[
        "index",
        "--model",
        "bm25",
        "--corpus",
        &path("corpus.jsonl"),
        "--index",
        &path("fixed"),
    ]);
    std::fs::write(
        path("names.jsonl"),
        "{\"_id\": \"n\", \"vector\": {\"brand:acme\": 1.0}}\n",
    )
    .unwrap();
    let e = fails(&[
        "index",
        "--model",
        "bm25",
        "--vectors",
        &path("names.jsonl"),
        "--index",
        &path("fixed"),
    ]);
    assert!(
        e.contains("fixed vocabulary") && e.contains("brand:acme"),
        "{e}"
    );
}
