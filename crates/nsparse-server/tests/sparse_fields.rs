//! Sparse fields with OpenSearch's semantics: any feature name a `rank_features` field accepts,
//! its refusals and error shapes, several sparse fields per index each searchable on its own
//! and in `bool`, `sparse_vector` token ids, and indexes written by an earlier release (the one
//! sparse field in the main index) still served.

use std::collections::BTreeMap;
use std::path::Path;

use axum::http::StatusCode;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

mod common;
use common::Harness;
use nsparse_server::Models;

fn ndjson(lines: &[Value]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn half_round(w: f32) -> f32 {
    nsparse_index::dequantize(nsparse_index::quantize(w))
}

/// Names no WordPiece vocabulary has, and some it has.
fn name(i: usize) -> String {
    match i % 7 {
        0 => format!("tok{i}"),
        1 => format!("brand:acme-{}", i % 13),
        2 => format!("名前{}", i % 17),
        3 => format!("{:x>40}", i % 11), // 40 bytes
        4 => format!("dotted.name.{}", i % 5),
        5 => ["hello", "world", "ocean", "sparse"][i % 4].to_string(),
        _ => String::new(), // OpenSearch accepts the empty feature name
    }
}

type Docs = BTreeMap<String, (BTreeMap<String, f32>, BTreeMap<String, f32>)>;

fn random_features(rng: &mut rand::rngs::StdRng) -> BTreeMap<String, f32> {
    (0..rng.random_range(0..6))
        .map(|_| {
            (
                name(rng.random_range(0..60)),
                rng.random_range(1..40) as f32 / 8.0,
            )
        })
        .collect()
}

/// Every match of `sum over fields of query · doc` (stored weights are f16), best first.
fn brute_force(
    docs: &Docs,
    a: Option<&BTreeMap<String, f32>>,
    b: Option<&BTreeMap<String, f32>>,
) -> Vec<(String, f32)> {
    let dot = |q: Option<&BTreeMap<String, f32>>, d: &BTreeMap<String, f32>| -> f32 {
        q.map_or(0.0, |q| {
            q.iter()
                .filter_map(|(n, w)| d.get(n).map(|dw| w * half_round(*dw)))
                .sum()
        })
    };
    let mut scored: Vec<(String, f32)> = docs
        .iter()
        .map(|(id, (da, db))| (id.clone(), dot(a, da) + dot(b, db)))
        .filter(|p| p.1 > 0.0)
        .collect();
    scored.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
    scored
}

/// `got` is the top 10 of `all` (every match, best first): the same scores, and the same ids
/// wherever a score is not tied.
fn assert_same(got: &[(String, f32)], all: &[(String, f32)], what: &str) {
    let want = &all[..all.len().min(10)];
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g.1 - w.1).abs() <= 1e-4 * w.1.max(1.0),
            "{what}: {got:?} vs {want:?}"
        );
    }
    let distinct = |v: &[(String, f32)], i: usize| {
        (i == 0 || v[i - 1].1 != v[i].1) && (i + 1 == v.len() || v[i + 1].1 != v[i].1)
    };
    for i in 0..want.len() {
        if distinct(all, i) {
            assert_eq!(got[i].0, want[i].0, "{what}: {got:?} vs {want:?}");
        }
    }
}

async fn check_queries(h: &Harness, docs: &Docs, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for q in 0..12 {
        let mut qa = random_features(&mut rng);
        qa.insert("never-seen".into(), 3.0);
        let qb = random_features(&mut rng);
        let got = h
            .hits("two", json!({"neural_sparse": {"a": {"query_tokens": qa}}}))
            .await;
        assert_same(&got, &brute_force(docs, Some(&qa), None), &format!("a {q}"));
        let got = h
            .hits("two", json!({"neural_sparse": {"b": {"query_tokens": qb}}}))
            .await;
        assert_same(&got, &brute_force(docs, None, Some(&qb)), &format!("b {q}"));
        let got = h
            .hits(
                "two",
                json!({"bool": {"should": [
                    {"neural_sparse": {"a": {"query_tokens": qa}}},
                    {"neural_sparse": {"b": {"query_tokens": qb}}}]}}),
            )
            .await;
        assert_same(
            &got,
            &brute_force(docs, Some(&qa), Some(&qb)),
            &format!("bool {q}"),
        );
    }
    // A query of names no document has matches nothing.
    let got = h
        .hits(
            "two",
            json!({"neural_sparse": {"a": {"query_tokens": {"nobody-has-this": 1.0}}}}),
        )
        .await;
    assert!(got.is_empty(), "{got:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_rank_features_fields_take_any_names_and_search_like_brute_force() {
    let h = Harness::new();
    let (status, value) = h
        .json(
            "PUT",
            "/two",
            json!({"mappings": {"properties": {
                "a": {"type": "rank_features"}, "b": {"type": "rank_features"},
                "title": {"type": "text"}}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{value}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut docs: Docs = BTreeMap::new();
    for batch in 0..4 {
        let mut lines = Vec::new();
        for i in 0..150 {
            let id = format!("d{}", rng.random_range(0..400));
            let (a, b) = (random_features(&mut rng), random_features(&mut rng));
            lines.push(json!({"index": {"_id": id}}));
            lines.push(json!({"a": a, "b": b, "title": format!("doc {batch} {i}")}));
            docs.insert(id, (a, b));
        }
        let (status, value) = h
            .call("POST", "/two/_bulk?refresh=true", &ndjson(&lines))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(value["errors"], false, "{value}");
    }
    for id in docs.keys().take(30).cloned().collect::<Vec<_>>() {
        let (status, _) = h.call("DELETE", &format!("/two/_doc/{id}"), "").await;
        assert_eq!(status, StatusCode::OK);
        docs.remove(&id);
    }
    h.call("POST", "/two/_refresh", "").await;
    check_queries(&h, &docs, 1).await;

    // GET _doc and _mapping show both fields as given.
    let (id, (a, b)) = docs.iter().find(|(_, (a, _))| !a.is_empty()).unwrap();
    let (_, doc) = h.call("GET", &format!("/two/_doc/{id}"), "").await;
    assert_eq!(doc["_source"]["a"], json!(a));
    assert_eq!(doc["_source"]["b"], json!(b));
    let (_, mapping) = h.call("GET", "/two/_mapping", "").await;
    assert_eq!(
        mapping["two"]["mappings"]["properties"]["b"]["type"],
        "rank_features"
    );
    // Explanations name the features as given.
    let feature = a.keys().next().unwrap().clone();
    let (_, explained) = h
        .json(
            "POST",
            "/two/_search",
            json!({"explain": true, "query": {"neural_sparse": {"a": {"query_tokens": {feature.clone(): 1.0}}}}}),
        )
        .await;
    let text = explained["hits"]["hits"][0]["_explanation"].to_string();
    assert!(
        text.contains(&format!("token [{}]", feature.replace('"', "\\\""))),
        "{text}"
    );

    // Everything acknowledged (and its names) survives a restart.
    let h = h.restart();
    check_queries(&h, &docs, 1).await;
    let h = h.restart();
    check_queries(&h, &docs, 2).await;
}

/// `(value of field a, what the error's cause must say)`.
fn refusals() -> Vec<(Value, &'static str, &'static str)> {
    vec![
        (json!({"ok": 1.0, "z": 0}), "illegal_argument_exception", "featureValue must be a positive normal float, got: 0.0 for feature z on field a"),
        (json!({"neg": -2.5}), "illegal_argument_exception", "got: -2.5 for feature neg"),
        (json!({"tiny": 1e-39}), "illegal_argument_exception", "positive normal float, got: 1.0E-39 for feature tiny"),
        (json!({"huge": 1e39}), "illegal_argument_exception", "featureValue must be finite, got: Infinity for feature huge"),
        (json!({"s": "NaN"}), "illegal_argument_exception", "featureValue must be finite, got: NaN for feature s"),
        (json!({"s": "abc"}), "number_format_exception", "For input string: \"abc\""),
        (json!({"t": true}), "illegal_argument_exception", "strictly positive float, but got unexpected token VALUE_BOOLEAN"),
        (json!({"l": [1, 2]}), "illegal_argument_exception", "unexpected token START_ARRAY"),
        (json!("text"), "illegal_argument_exception", "[rank_features] fields must be json objects, expected a START_OBJECT but got: VALUE_STRING"),
        (json!([{"x": 1.0}, {"x": 2.0}]), "illegal_argument_exception", "multiple values for the same rank feature [a.x]"),
        (json!({"big": 70000.0}), "illegal_argument_exception", "feature [big] of field [a] has weight 70000.0"),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_values_get_opensearch_errors_and_leave_nothing_written() {
    let h = Harness::new();
    h.json(
        "PUT",
        "/bad",
        json!({"mappings": {"properties": {"a": {"type": "rank_features"},
            "b": {"type": "rank_features"}, "v": {"type": "sparse_vector"}}}}),
    )
    .await;
    for (i, (value, cause_type, cause)) in refusals().into_iter().enumerate() {
        // The document also carries a new name in field b: it must not become known.
        let doc = json!({"b": {format!("fresh-{i}"): 1.0}, "a": value});
        let (status, body) = h.json("PUT", &format!("/bad/_doc/x{i}"), doc).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{value}: {body}");
        assert_eq!(body["error"]["type"], "mapper_parsing_exception", "{body}");
        let reason = body["error"]["reason"].as_str().unwrap();
        assert!(
            reason.contains(&format!(
                "failed to parse field [a] of type [rank_features] in document with id 'x{i}'"
            )),
            "{body}"
        );
        assert_eq!(body["error"]["caused_by"]["type"], cause_type, "{body}");
        let why = body["error"]["caused_by"]["reason"].as_str().unwrap();
        assert!(why.contains(cause), "{value}: {why}");
        let (status, _) = h.call("GET", &format!("/bad/_doc/x{i}"), "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    // A name longer than Lucene's longest term.
    let long = "n".repeat(32_767);
    let (status, body) = h
        .json("PUT", "/bad/_doc/long", json!({"a": {long: 1.0}}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("immense term in field=\"a\""));
    // sparse_vector keys are non-negative integers.
    for (key, cause) in [
        ("hello", "[sparse_vector] fields should be valid integer"),
        (
            "-3",
            "[sparse_vector] fields should be text of non-negative integer",
        ),
        ("2147483648", "should be valid integer"),
        ("1.5", "should be valid integer"),
    ] {
        let (status, body) = h
            .json("PUT", "/bad/_doc/sv", json!({"v": {key: 1.0}}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{key}: {body}");
        assert_eq!(body["error"]["type"], "mapper_parsing_exception");
        let why = body["error"]["caused_by"]["reason"].as_str().unwrap();
        assert!(why.contains(cause) && why.contains(key), "{key}: {why}");
    }
    // In _bulk, each refused item gets its error; the others are written.
    let body = ndjson(&[
        json!({"index": {"_id": "good1"}}),
        json!({"a": {"": 1.0, "x.y": 2.0, "名前": 0.5}, "b": {"fresh-bulk": 1.0}}),
        json!({"index": {"_id": "bad1"}}),
        json!({"a": {"q": 0.0}, "b": {"fresh-bad": 1.0}}),
        json!({"index": {"_id": "good2"}}),
        json!({"v": {"007": 1.0, "99999": 2.0}, "a": {"nulls": null, "s": "1.5"}}),
    ]);
    let (status, value) = h.call("POST", "/bad/_bulk?refresh=true", &body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(value["errors"], true);
    let items = value["items"].as_array().unwrap();
    assert_eq!(items[0]["index"]["status"], 201, "{value}");
    assert_eq!(items[1]["index"]["status"], 400, "{value}");
    assert_eq!(
        items[1]["index"]["error"]["type"],
        "mapper_parsing_exception"
    );
    assert!(items[1]["index"]["error"]["caused_by"]["reason"]
        .as_str()
        .unwrap()
        .contains("for feature q on field a"));
    assert_eq!(items[2]["index"]["status"], 201, "{value}");
    // Names of refused documents never became known; accepted odd names are searchable.
    for i in 0..refusals().len() {
        let got = h
            .hits(
                "bad",
                json!({"neural_sparse": {"b": {"query_tokens": {format!("fresh-{i}"): 1.0}}}}),
            )
            .await;
        assert!(got.is_empty(), "{got:?}");
    }
    let got = h
        .hits(
            "bad",
            json!({"neural_sparse": {"b": {"query_tokens": {"fresh-bad": 1.0}}}}),
        )
        .await;
    assert!(got.is_empty());
    for (name, score) in [("", 1.0), ("x.y", 2.0), ("名前", 0.5)] {
        let got = h
            .hits(
                "bad",
                json!({"neural_sparse": {"a": {"query_tokens": {name: 1.0}}}}),
            )
            .await;
        assert_eq!(got, vec![("good1".to_string(), score)], "{name:?}");
    }
    let got = h
        .hits(
            "bad",
            json!({"neural_sparse": {"a": {"query_tokens": {"s": 2.0}}}}),
        )
        .await;
    assert_eq!(got, vec![("good2".to_string(), 3.0)]);
    // sparse_vector: "007" is token 7; ids beyond the vocabulary are fine.
    let got = h
        .hits(
            "bad",
            json!({"neural_sparse": {"v": {"query_tokens": {"7": 1.0, "99999": 1.0}}}}),
        )
        .await;
    assert_eq!(got, vec![("good2".to_string(), 3.0)]);
    let (status, body) = h
        .json(
            "POST",
            "/bad/_search",
            json!({"query": {"neural_sparse": {"v": {"query_tokens": {"hello": 1.0}}}}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("[hello]"));
    // query_text on a sparse_vector field: the built-in model's token ids.
    let hello = Models::new().builtin().tokenizer().id("hello").unwrap();
    h.json(
        "PUT",
        "/bad/_doc/hi?refresh=true",
        json!({"v": {hello.to_string(): 2.0}}),
    )
    .await;
    let got = h
        .hits(
            "bad",
            json!({"neural_sparse": {"v": {"query_text": "hello"}}}),
        )
        .await;
    assert_eq!(got.first().map(|g| g.0.as_str()), Some("hi"), "{got:?}");
}

/// Writes an index as the previous release laid it out: `meta.json` without `sparse_layout`
/// and the one `rank_features` field's vectors in the main index (fixed bert vocabulary).
fn write_previous_release_index(data: &Path, models: &Models) {
    let dir = data.join("indices/old");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("meta.json"),
        json!({"uuid": "old-uuid", "creation_date": 1, "settings": {},
            "mappings": {"properties": {"emb": {"type": "rank_features"}, "title": {"type": "text"}}}})
        .to_string(),
    )
    .unwrap();
    let mut index = nsparse_index::Index::create(
        dir.join("index"),
        &nsparse_index::CreateOptions::new("opensearch-rest"),
        nsparse_index::WriterOptions::default(),
    )
    .unwrap();
    let tokenizer = models.builtin().tokenizer();
    for (id, features) in [
        ("p", vec![("hello", 2.0f32), ("world", 1.0)]),
        ("q", vec![("world", 3.0)]),
    ] {
        let source =
            json!({"emb": features.iter().cloned().collect::<BTreeMap<_, _>>(), "title": id});
        let mut vector: Vec<(u32, f32)> = features
            .iter()
            .map(|(t, w)| (tokenizer.id(t).unwrap(), *w))
            .collect();
        vector.sort_by_key(|p| p.0);
        index
            .add(&nsparse_index::Document {
                id: id.into(),
                vector,
                tokens: None,
                source: serde_json::to_vec(&source).unwrap(),
            })
            .unwrap();
    }
    index.commit().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_index_of_the_previous_release_opens_searches_and_takes_writes() {
    let dir = tempfile::tempdir().unwrap();
    write_previous_release_index(dir.path(), &Models::new());
    let h = Harness::open(dir, Models::new);
    let query =
        json!({"neural_sparse": {"emb": {"query_tokens": {"world": 1.0, "unknown-name": 5.0}}}});
    assert_eq!(
        h.hits("old", query.clone()).await,
        vec![("q".to_string(), 3.0), ("p".to_string(), 1.0)]
    );
    // Writes keep the field in the main index (WordPiece names only, as before).
    let (status, body) = h
        .json(
            "PUT",
            "/old/_doc/r?refresh=true",
            json!({"emb": {"world": 2.0}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = h
        .json("PUT", "/old/_doc/s", json!({"emb": {"brand:acme": 2.0}}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("brand:acme"));
    // A sparse field added now gets its own index and takes any name.
    let (status, body) = h
        .json(
            "PUT",
            "/old/_mapping",
            json!({"properties": {"extra": {"type": "rank_features"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = h
        .json(
            "PUT",
            "/old/_doc/t?refresh=true",
            json!({"emb": {"hello": 1.0}, "extra": {"brand:acme": 2.0}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let both = json!({"bool": {"should": [
        {"neural_sparse": {"emb": {"query_tokens": {"hello": 1.0}}}},
        {"neural_sparse": {"extra": {"query_tokens": {"brand:acme": 1.0}}}}]}});
    let want = vec![("t".to_string(), 3.0), ("p".to_string(), 2.0)];
    assert_eq!(h.hits("old", both.clone()).await, want);
    let h = h.restart();
    assert_eq!(h.hits("old", both).await, want);
    assert_eq!(
        h.hits("old", query).await,
        vec![
            ("q".to_string(), 3.0),
            ("r".to_string(), 2.0),
            ("p".to_string(), 1.0)
        ]
    );
    assert!(h.dir.path().join("indices/old/sparse").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_field_and_main_writes_is_repaired_at_open() {
    let h = Harness::new();
    h.json(
        "PUT",
        "/c",
        json!({"mappings": {"properties": {"a": {"type": "rank_features"}}}}),
    )
    .await;
    h.json("PUT", "/c/_doc/x", json!({"a": {"old": 1.0}})).await;
    h.json("PUT", "/c/_doc/y", json!({"a": {"old": 2.0}})).await;
    let data = h.dir.path().to_path_buf();
    let Harness { dir, app, .. } = h;
    drop(app);
    // What a crash between the field index write and the main index write leaves: the field
    // index has x's new vector and a document the main index never got, and no marker.
    {
        let path = data
            .join("indices/c/sparse")
            .join(nsparse_server::field_dir_name("a"));
        let mut field =
            nsparse_index::Index::open(&path, nsparse_index::WriterOptions::default()).unwrap();
        let ids = field.feature_ids(["new"]).unwrap();
        for id in ["x", "ghost"] {
            field
                .upsert_batch(&[nsparse_index::Document {
                    id: id.into(),
                    vector: vec![(ids[0], 5.0)],
                    tokens: None,
                    source: b"stale-stamp".to_vec(),
                }])
                .unwrap();
        }
    }
    let _ = std::fs::remove_file(
        data.join("indices/c")
            .join(nsparse_server::CLEAN_SHUTDOWN_MARKER),
    );
    let h = Harness::open(dir, Models::new);
    assert!(h
        .hits(
            "c",
            json!({"neural_sparse": {"a": {"query_tokens": {"new": 1.0}}}})
        )
        .await
        .is_empty());
    assert_eq!(
        h.hits(
            "c",
            json!({"neural_sparse": {"a": {"query_tokens": {"old": 1.0}}}})
        )
        .await,
        vec![("y".to_string(), 2.0), ("x".to_string(), 1.0)]
    );
}
