//! The REST API in-process: the router is driven with `tower::ServiceExt::oneshot`, and one test
//! runs the real listener with graceful shutdown. The ingest model is the committed tiny random
//! DistilBERT (real bert-base-uncased vocabulary), so nothing needs the network.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use nsparse_model::{EncoderOptions, Pruning, SparseEncoder};
use nsparse_server::{router, App, Models, ServerConfig};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tower::ServiceExt;

fn tiny_model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../nsparse-model/tests/fixtures/tiny-distilbert")
}

fn tiny_encoder() -> SparseEncoder {
    SparseEncoder::load(
        tiny_model_dir().to_str().unwrap(),
        EncoderOptions::default(),
    )
    .unwrap()
}

fn models() -> Models {
    let mut models = Models::new();
    models.insert("tiny", tiny_encoder());
    models
}

struct Harness {
    dir: tempfile::TempDir,
    app: Arc<App>,
}

impl Harness {
    fn new() -> Self {
        Self::with_config(|_| {})
    }

    fn with_config(edit: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig::new(dir.path());
        edit(&mut config);
        let app = App::open(config, models()).unwrap();
        Harness { dir, app }
    }

    /// Drops the server state (releasing the index locks) and opens the data directory again.
    fn restart(self) -> Self {
        let Harness { dir, app } = self;
        let config = app.config.clone();
        drop(app);
        let app = App::open(config, models()).unwrap();
        Harness { dir, app }
    }

    async fn raw(&self, request: Request<Body>) -> (StatusCode, String, Option<String>) {
        let response = router(self.app.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            String::from_utf8_lossy(&bytes).into_owned(),
            content_type,
        )
    }

    async fn call(&self, method: &str, path: &str, body: &str) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let (status, text, _) = self.raw(request).await;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    async fn json(&self, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(method, path, &body.to_string()).await
    }

    async fn search(&self, index: &str, body: Value) -> Value {
        let (status, value) = self.json("POST", &format!("/{index}/_search"), body).await;
        assert_eq!(status, StatusCode::OK, "{value}");
        value
    }
}

fn ids(response: &Value) -> Vec<String> {
    response["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["_id"].as_str().unwrap().to_string())
        .collect()
}

fn score_of(response: &Value, id: &str) -> f64 {
    response["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["_id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {response}"))["_score"]
        .as_f64()
        .unwrap()
}

fn assert_error(value: &Value, status: u16, kind: &str) {
    assert_eq!(value["status"], status, "{value}");
    assert_eq!(value["error"]["type"], kind, "{value}");
    assert_eq!(value["error"]["root_cause"][0]["type"], kind, "{value}");
    assert!(value["error"]["reason"]
        .as_str()
        .is_some_and(|r| !r.is_empty()));
}

fn ndjson(lines: &[Value]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

const MAPPING: &str = r#"{"settings": {"index": {"refresh_interval": "-1"}},
  "mappings": {"properties": {"emb": {"type": "rank_features"}, "text": {"type": "text"},
  "tag": {"type": "keyword"}, "year": {"type": "long"}}}}"#;

/// Four documents with hand-made vectors (weights exact in f16).
async fn corpus(h: &Harness) {
    let (status, _) = h.call("PUT", "/docs", MAPPING).await;
    assert_eq!(status, StatusCode::OK);
    let body = ndjson(&[
        json!({"index": {"_index": "docs", "_id": "a"}}),
        json!({"emb": {"hello": 2.0, "world": 1.0}, "text": "hello world of search", "tag": "x", "year": 2001}),
        json!({"index": {"_index": "docs", "_id": "b"}}),
        json!({"emb": {"hello": 1.0, "sparse": 3.0}, "text": "sparse retrieval models", "tag": "y", "year": 2010}),
        json!({"index": {"_index": "docs", "_id": "c"}}),
        json!({"emb": {"world": 4.0}, "text": "the world is large", "tag": "x", "year": 2020}),
        json!({"index": {"_index": "docs", "_id": "d"}}),
        json!({"emb": {"ocean": 0.5}, "text": "an ocean of sparse data", "year": 1999}),
    ]);
    let (status, value) = h.call("POST", "/_bulk?refresh=true", &body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(value["errors"], false, "{value}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_info_and_index_lifecycle() {
    let h = Harness::new();
    let (status, info) = h.call("GET", "/", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(info["version"]["distribution"], "opensearch");
    assert!(info["version"]["number"].as_str().unwrap().starts_with('2'));
    assert!(info["tagline"].is_string() && info["cluster_name"].is_string());
    let (status, text, _) = h.raw(Request::head("/").body(Body::empty()).unwrap()).await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, ""));

    let (status, value) = h.call("PUT", "/docs", MAPPING).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        value,
        json!({"acknowledged": true, "shards_acknowledged": true, "index": "docs"})
    );
    let (status, value) = h.call("PUT", "/docs", MAPPING).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&value, 400, "resource_already_exists_exception");

    let (_, value) = h.call("GET", "/docs", "").await;
    assert_eq!(
        value["docs"]["mappings"]["properties"]["emb"]["type"],
        "rank_features"
    );
    assert_eq!(value["docs"]["settings"]["index"]["refresh_interval"], "-1");
    let (_, value) = h.call("GET", "/docs/_mapping", "").await;
    assert_eq!(
        value["docs"]["mappings"]["properties"]["year"]["type"],
        "long"
    );

    let (status, _) = h
        .json(
            "PUT",
            "/docs/_settings",
            json!({"index": {"refresh_interval": "2s"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, value) = h.call("GET", "/docs/_settings", "").await;
    assert_eq!(value["docs"]["settings"]["index"]["refresh_interval"], "2s");
    let (status, value) = h
        .json(
            "PUT",
            "/docs/_settings",
            json!({"index.number_of_shards": 3}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&value, 400, "illegal_argument_exception");
    let (status, _) = h
        .json("PUT", "/docs/_settings", json!({"refresh_interval": "-1"}))
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, value) = h
        .json(
            "PUT",
            "/bad",
            json!({"mappings": {"properties": {"f": {"type": "banana"}}}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&value, 400, "mapper_parsing_exception");
    let (status, _) = h.call("HEAD", "/bad", "").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a refused index is not created"
    );
    let (status, value) = h.call("PUT", "/Upper", "{}").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&value, 400, "invalid_index_name_exception");

    let (status, text, content_type) = h
        .raw(Request::get("/_cat/indices?v").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.unwrap().starts_with("text/plain"));
    assert!(text.starts_with("health status index"), "{text}");
    assert!(text.contains("docs"));
    let (_, value) = h.call("GET", "/_cat/indices?format=json", "").await;
    assert_eq!(value[0]["index"], "docs");
    assert_eq!(value[0]["docs.count"], "0");

    let (status, _) = h.call("DELETE", "/docs", "").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h.call("HEAD", "/docs", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, value) = h.call("DELETE", "/docs", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&value, 404, "index_not_found_exception");
    assert_eq!(value["error"]["index"], "docs");
    let (status, _) = h.call("DELETE", "/docs?ignore_unavailable=true", "").await;
    assert_eq!(status, StatusCode::OK);
    // The name is free again.
    let (status, _) = h.call("PUT", "/docs", MAPPING).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_items_report_results_and_errors_like_opensearch() {
    let h = Harness::new();
    corpus(&h).await;
    let body = ndjson(&[
        json!({"create": {"_index": "docs", "_id": "a"}}),
        json!({"text": "duplicate"}),
        json!({"index": {"_index": "docs", "_id": "e"}}),
        json!({"emb": {"notawordpiecetoken": 0.0}}),
        json!({"index": {"_index": "docs", "_id": "f"}}),
        json!({"year": "nineteen"}),
        json!({"update": {"_index": "docs", "_id": "b"}}),
        json!({"doc": {"tag": "z"}}),
        json!({"update": {"_index": "docs", "_id": "missing"}}),
        json!({"doc": {"tag": "z"}}),
        json!({"delete": {"_index": "docs", "_id": "d"}}),
        json!({"delete": {"_index": "docs", "_id": "d"}}),
        json!({"index": {"_index": "docs"}}),
        json!({"emb": {"hello": 1.0}}),
        json!({"delete": {"_index": "nope", "_id": "x"}}),
    ]);
    let (status, value) = h.call("POST", "/_bulk", &body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(value["errors"], true);
    assert!(value["took"].is_u64());
    let items = value["items"].as_array().unwrap();
    assert_eq!(items.len(), 9);

    let conflict = &items[0]["create"];
    assert_eq!(conflict["status"], 409);
    assert_eq!(conflict["_id"], "a");
    assert_eq!(
        conflict["error"]["type"],
        "version_conflict_engine_exception"
    );
    assert_eq!(
        conflict["error"]["reason"],
        "[a]: version conflict, document already exists (current version [1])"
    );
    // Any feature name is accepted (as OpenSearch does); a zero weight is not.
    let zero_weight = &items[1]["index"];
    assert_eq!(zero_weight["status"], 400);
    assert_eq!(zero_weight["error"]["type"], "mapper_parsing_exception");
    assert!(zero_weight["error"]["caused_by"]["reason"]
        .as_str()
        .unwrap()
        .contains("positive normal float, got: 0.0 for feature notawordpiecetoken on field emb"));
    assert_eq!(
        items[2]["index"]["error"]["type"],
        "mapper_parsing_exception"
    );
    let updated = &items[3]["update"];
    assert_eq!(
        (
            updated["status"].clone(),
            updated["result"].clone(),
            updated["_version"].clone()
        ),
        (json!(200), json!("updated"), json!(2))
    );
    assert_eq!(items[4]["update"]["status"], 404);
    assert_eq!(
        items[4]["update"]["error"]["type"],
        "document_missing_exception"
    );
    assert_eq!(items[5]["delete"]["result"], "deleted");
    assert_eq!(items[6]["delete"]["result"], "not_found");
    assert_eq!(items[6]["delete"]["status"], 404);
    assert_eq!(items[7]["index"]["status"], 201);
    assert!(items[7]["index"]["_id"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));
    assert_eq!(
        items[8]["delete"]["error"]["type"],
        "index_not_found_exception"
    );

    // The update merged into the stored source (realtime GET, before any refresh).
    let (status, doc) = h.call("GET", "/docs/_doc/b", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["found"], true);
    assert_eq!(doc["_source"]["tag"], "z");
    assert_eq!(doc["_source"]["text"], "sparse retrieval models");
    assert_eq!(doc["_source"]["emb"]["sparse"], 3.0);
    let (status, doc) = h.call("GET", "/docs/_doc/d", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(doc, json!({"_index": "docs", "_id": "d", "found": false}));

    // A malformed action line fails the whole request.
    let (status, value) = h
        .call(
            "POST",
            "/_bulk",
            "{\"index\":{\"_index\":\"docs\"}}\n{\"a\":1}\n[1,2]\n",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&value, 400, "illegal_argument_exception");
    let (status, value) = h.call("POST", "/_bulk", "{\"jump\":{}}\n").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&value, 400, "illegal_argument_exception");
    // A bad source line fails only its item.
    let (_, value) = h
        .call(
            "POST",
            "/docs/_bulk",
            "{\"index\":{\"_id\":\"g\"}}\n{not json\n{\"index\":{\"_id\":\"h\"}}\n{\"year\":3}\n",
        )
        .await;
    assert_eq!(
        value["items"][0]["index"]["error"]["type"],
        "mapper_parsing_exception"
    );
    assert_eq!(value["items"][1]["index"]["result"], "created");
}

#[tokio::test(flavor = "multi_thread")]
async fn single_document_endpoints() {
    let h = Harness::new();
    corpus(&h).await;
    let (status, value) = h
        .json(
            "PUT",
            "/docs/_doc/n1",
            json!({"emb": {"hello": 1.0}, "tag": "q"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(value["result"], "created");
    let (status, value) = h
        .json(
            "PUT",
            "/docs/_doc/n1",
            json!({"emb": {"hello": 2.0}, "tag": "q"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (value["result"].clone(), value["_version"].clone()),
        (json!("updated"), json!(2))
    );
    let (status, value) = h.json("PUT", "/docs/_create/n1", json!({"tag": "q"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&value, 409, "version_conflict_engine_exception");
    let (status, value) = h
        .json("PUT", "/docs/_doc/n1?op_type=create", json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{value}");
    let (status, value) = h.json("POST", "/docs/_doc", json!({"tag": "auto"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let auto = value["_id"].as_str().unwrap().to_string();
    let (status, _) = h.call("HEAD", &format!("/docs/_doc/{auto}"), "").await;
    assert_eq!(status, StatusCode::OK);
    let (status, value) = h
        .json("POST", "/docs/_update/n1", json!({"doc": {"tag": "r"}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{value}");
    let (_, doc) = h
        .call("GET", "/docs/_doc/n1?_source_includes=tag", "")
        .await;
    assert_eq!(doc["_source"], json!({"tag": "r"}));
    let (status, value) = h.call("DELETE", "/docs/_doc/n1", "").await;
    assert_eq!(
        (status, value["result"].clone()),
        (StatusCode::OK, json!("deleted"))
    );
    let (status, value) = h.call("DELETE", "/docs/_doc/n1", "").await;
    assert_eq!(
        (status, value["result"].clone()),
        (StatusCode::NOT_FOUND, json!("not_found"))
    );
    let (status, _) = h.call("HEAD", "/docs/_doc/n1", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // _mget: realtime, per-document found / error.
    let (status, value) = h
        .json("POST", "/_mget", json!({"docs": [{"_index": "docs", "_id": "a"}, {"_index": "docs", "_id": "zz"}, {"_index": "nope", "_id": "a"}]}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(value["docs"][0]["_source"]["tag"], "x");
    assert_eq!(value["docs"][1]["found"], false);
    assert_eq!(
        value["docs"][2]["error"]["type"],
        "index_not_found_exception"
    );
    let (_, value) = h
        .json(
            "POST",
            "/docs/_mget?_source=tag",
            json!({"ids": ["b", "c"]}),
        )
        .await;
    assert_eq!(value["docs"][1]["_source"], json!({"tag": "x"}));

    // _source comes back exactly as sent (floats round-trip bit for bit).
    let raw = r#"{"emb":{"hello":7.5951313972473145,"world":0.9421564340591431},"score":0.30000000000000004}"#;
    let (status, _) = h.call("PUT", "/docs/_doc/exact", raw).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, text, _) = h
        .raw(
            Request::get("/docs/_doc/exact")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert!(text.contains(&format!("\"_source\":{raw}")), "{text}");

    // Writing to a missing index creates it (OpenSearch's auto_create_index).
    let (status, _) = h.json("PUT", "/fresh/_doc/1", json!({"title": "x"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = h.call("HEAD", "/fresh", "").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_are_searchable_after_refresh_and_realtime_for_get() {
    let h = Harness::new();
    corpus(&h).await;
    let query = json!({"query": {"neural_sparse": {"emb": {"query_tokens": {"ocean": 1.0, "zebra": 1.0}}}}});
    assert_eq!(ids(&h.search("docs", query.clone()).await), vec!["d"]);

    let (status, _) = h
        .json("PUT", "/docs/_doc/new", json!({"emb": {"ocean": 9.0}}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, doc) = h.call("GET", "/docs/_doc/new", "").await;
    assert_eq!(
        (status, doc["found"].clone()),
        (StatusCode::OK, json!(true))
    );
    assert_eq!(
        ids(&h.search("docs", query.clone()).await),
        vec!["d"],
        "not refreshed yet (refresh_interval -1)"
    );
    let (_, count) = h.call("GET", "/docs/_count", "").await;
    assert_eq!(count["count"], 4);

    let (status, _) = h.call("POST", "/docs/_refresh", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        ids(&h.search("docs", query.clone()).await),
        vec!["new", "d"]
    );
    let (_, count) = h.call("GET", "/docs/_count", "").await;
    assert_eq!(count["count"], 5);

    // ?refresh=true makes a delete visible at once.
    let (status, _) = h.call("DELETE", "/docs/_doc/new?refresh=true", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&h.search("docs", query.clone()).await), vec!["d"]);

    // The periodic refresh picks up writes once the interval has passed.
    let (_, value) = h
        .json("PUT", "/timed", json!({"settings": {"refresh_interval": "1ms"}, "mappings": {"properties": {"emb": {"type": "rank_features"}}}}))
        .await;
    assert_eq!(value["acknowledged"], true);
    h.json("PUT", "/timed/_doc/1", json!({"emb": {"ocean": 1.0}}))
        .await;
    std::thread::sleep(std::time::Duration::from_millis(20));
    h.app.store.refresh_due();
    let (_, count) = h.call("GET", "/timed/_count", "").await;
    assert_eq!(count["count"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn search_kinds_scores_filters_and_pagination() {
    let h = Harness::new();
    corpus(&h).await;

    // neural_sparse with raw tokens: exact dot products.
    let r = h
        .search("docs", json!({"query": {"neural_sparse": {"emb": {"query_tokens": {"hello": 1.0, "world": 0.5}}}}}))
        .await;
    assert_eq!(ids(&r), vec!["a", "c", "b"]);
    assert_eq!(score_of(&r, "a"), 2.5);
    assert_eq!(score_of(&r, "c"), 2.0);
    assert_eq!(score_of(&r, "b"), 1.0);
    assert_eq!(r["hits"]["total"], json!({"value": 3, "relation": "eq"}));
    assert_eq!(r["hits"]["max_score"], 2.5);
    assert_eq!(r["hits"]["hits"][0]["_source"]["tag"], "x");
    assert_eq!(r["_shards"]["failed"], 0);
    assert_eq!(r["timed_out"], false);

    // Boost multiplies.
    let r = h
        .search("docs", json!({"query": {"neural_sparse": {"emb": {"query_tokens": {"world": 1.0}, "boost": 2.0}}}}))
        .await;
    assert_eq!(score_of(&r, "c"), 8.0);

    // query_text through the built-in analyzer and through the tiny bi-encoder.
    let r = h
        .search("docs", json!({"query": {"neural_sparse": {"emb": {"query_text": "sparse", "analyzer": "bert-uncased"}}}}))
        .await;
    assert_eq!(ids(&r), vec!["b"]);
    // The tiny model is a bi-encoder (no idf.json): the query goes through the network, so a
    // document holding the same text's vector matches with the dot product of the two.
    let encoder = tiny_encoder();
    let vector = encoder.encode_document("hello sparse world").unwrap();
    let emb: serde_json::Map<String, Value> = encoder
        .decode(&vector)
        .into_iter()
        .map(|(t, w)| (t, json!(w)))
        .collect();
    let (status, _) = h
        .json("PUT", "/docs/_doc/t?refresh=true", json!({"emb": emb}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let r = h
        .search("docs", json!({"query": {"neural_sparse": {"emb": {"query_text": "hello sparse world", "model_id": "tiny"}}}}))
        .await;
    assert_eq!(ids(&r)[0], "t");
    let expected: f32 = vector.iter().map(|(_, w)| w * half_round(w)).sum();
    assert!(
        (score_of(&r, "t") as f32 - expected).abs() <= expected * 1e-4,
        "{r}"
    );
    h.call("DELETE", "/docs/_doc/t?refresh=true", "").await;

    // Approximate and two-phase modes agree with exact search on this small corpus.
    let exact = h
        .search("docs", json!({"query": {"neural_sparse": {"emb": {"query_tokens": {"hello": 1.0, "world": 0.5, "sparse": 0.1}}}}}))
        .await;
    let approx = h
        .search("docs", json!({"query": {"neural_sparse": {"emb": {"query_tokens": {"hello": 1.0, "world": 0.5, "sparse": 0.1},
            "method_parameters": {"top_n": 2, "heap_factor": 1.0, "k": 10}}}}}))
        .await;
    assert_eq!(ids(&approx), ids(&exact));
    let (status, _) = h
        .json("PUT", "/_search/pipeline/two", json!({"request_processors": [{"neural_sparse_two_phase_processor":
            {"tag": "t", "enabled": true, "two_phase_parameter": {"prune_ratio": 0.4, "expansion_rate": 5.0, "max_window_size": 100}}}]}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, two) = h
        .json("POST", "/docs/_search?search_pipeline=two", json!({"query": {"neural_sparse": {"emb": {"query_tokens": {"hello": 1.0, "world": 0.5, "sparse": 0.1}}}}}))
        .await;
    assert_eq!(ids(&two), ids(&exact));
    assert_eq!(score_of(&two, "a"), score_of(&exact, "a"));

    // BM25 match over the text fields.
    let r = h
        .search("docs", json!({"query": {"match": {"text": "sparse"}}}))
        .await;
    let mut found = ids(&r);
    found.sort();
    assert_eq!(found, vec!["b", "d"]);
    let r = h
        .search(
            "docs",
            json!({"query": {"match": {"text": {"query": "sparse retrieval"}}}, "explain": true}),
        )
        .await;
    assert_eq!(ids(&r)[0], "b");
    assert!(
        r["hits"]["hits"][0]["_explanation"]["details"][0]["details"]
            .as_array()
            .is_some_and(|d| !d.is_empty())
    );

    // Filters: term, terms, range, exists, ids, must_not; scores come from the scoring clause only.
    let neural = json!({"neural_sparse": {"emb": {"query_tokens": {"hello": 1.0, "world": 1.0}}}});
    let filtered =
        |filter: Value| json!({"query": {"bool": {"must": [neural.clone()], "filter": [filter]}}});
    let r = h
        .search("docs", filtered(json!({"term": {"tag": "x"}})))
        .await;
    assert_eq!(ids(&r), vec!["c", "a"]);
    assert_eq!(score_of(&r, "c"), 4.0);
    let r = h
        .search(
            "docs",
            filtered(json!({"terms": {"tag": ["y", "nothing"]}})),
        )
        .await;
    assert_eq!(ids(&r), vec!["b"]);
    let r = h
        .search(
            "docs",
            filtered(json!({"range": {"year": {"gte": 2005, "lt": 2020}}})),
        )
        .await;
    assert_eq!(ids(&r), vec!["b"]);
    let r = h
        .search("docs", filtered(json!({"ids": {"values": ["a", "b"]}})))
        .await;
    assert_eq!(ids(&r), vec!["a", "b"]);
    let r = h
        .search("docs", filtered(json!({"terms": {"_id": ["c", "b"]}})))
        .await;
    assert_eq!(ids(&r), vec!["c", "b"]);
    let r = h
        .search("docs", json!({"query": {"bool": {"must": [neural.clone()], "must_not": [{"term": {"tag": "x"}}]}}}))
        .await;
    assert_eq!(ids(&r), vec!["b"]);
    let r = h
        .search(
            "docs",
            json!({"query": {"bool": {"filter": [{"exists": {"field": "tag"}}]}}}),
        )
        .await;
    assert_eq!(r["hits"]["total"]["value"], 3);
    assert_eq!(r["hits"]["hits"][0]["_score"], 0.0);

    // A bool summing neural and BM25 clauses: each hit's score is the sum of its clause scores.
    let bm25 = json!({"match": {"text": "world"}});
    let both = h
        .search(
            "docs",
            json!({"query": {"bool": {"should": [neural.clone(), bm25.clone()]}}}),
        )
        .await;
    let only_neural = h.search("docs", json!({"query": neural.clone()})).await;
    let only_bm25 = h.search("docs", json!({"query": bm25})).await;
    for id in ["a", "c"] {
        let sum = score_of(&only_neural, id) + score_of(&only_bm25, id);
        assert!((score_of(&both, id) - sum).abs() < 1e-4, "{id}: {both}");
    }
    assert_eq!(score_of(&both, "b"), score_of(&only_neural, "b"));

    // Pagination: from/size over a stable order, with the full total.
    let all = h
        .search("docs", json!({"query": {"match_all": {}}, "size": 10}))
        .await;
    assert_eq!(all["hits"]["total"]["value"], 4);
    let page1 = h
        .search("docs", json!({"query": {"match_all": {}}, "size": 2}))
        .await;
    let page2 = h
        .search(
            "docs",
            json!({"query": {"match_all": {}}, "size": 2, "from": 2}),
        )
        .await;
    let mut paged = ids(&page1);
    paged.extend(ids(&page2));
    assert_eq!(paged, ids(&all));
    let (_, r) = h
        .json("POST", "/docs/_search?size=1&from=1", json!({}))
        .await;
    assert_eq!(ids(&r), vec![ids(&all)[1].clone()]);

    // _source filtering.
    let r = h.search("docs", json!({"query": {"ids": {"values": ["a"]}}, "_source": {"includes": ["t*"], "excludes": ["text"]}})).await;
    assert_eq!(r["hits"]["hits"][0]["_source"], json!({"tag": "x"}));
    let r = h
        .search(
            "docs",
            json!({"query": {"ids": {"values": ["a"]}}, "_source": false}),
        )
        .await;
    assert!(r["hits"]["hits"][0].get("_source").is_none());

    // Totals are exact up to track_total_hits; explanations add up to the score.
    let r = h
        .search(
            "docs",
            json!({"query": {"match": {"text": "world"}}, "size": 1}),
        )
        .await;
    assert_eq!(r["hits"]["total"], json!({"value": 2, "relation": "eq"}));
    let r = h
        .search(
            "docs",
            json!({"query": {"match_all": {}}, "track_total_hits": 2}),
        )
        .await;
    assert_eq!(r["hits"]["total"], json!({"value": 2, "relation": "gte"}));
    assert_eq!(ids(&r).len(), 4);
    let r = h
        .search(
            "docs",
            json!({"query": {"bool": {"should": [neural.clone(), {"match": {"text": "world"}}],
            "must": [{"range": {"year": {"gte": 2000}}}]}}, "explain": true}),
        )
        .await;
    for hit in r["hits"]["hits"].as_array().unwrap() {
        let e = &hit["_explanation"];
        assert!((e["value"].as_f64().unwrap() - hit["_score"].as_f64().unwrap()).abs() < 1e-9);
        let parts: f64 = e["details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["value"].as_f64().unwrap())
            .sum();
        assert!((parts - e["value"].as_f64().unwrap()).abs() < 1e-4, "{e}");
    }

    // _count with a query.
    let (_, count) = h
        .json(
            "POST",
            "/docs/_count",
            json!({"query": {"range": {"year": {"lt": 2015}}}}),
        )
        .await;
    assert_eq!(count["count"], 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn ingest_pipeline_encodes_text_with_the_loaded_model() {
    let h = Harness::new();
    let (status, value) = h
        .json("PUT", "/_ingest/pipeline/enc", json!({"description": "d", "processors": [{"sparse_encoding":
            {"model_id": "tiny", "field_map": {"body": "emb"}, "prune_type": "top_k", "prune_ratio": 5}}]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{value}");
    let (_, listed) = h.call("GET", "/_ingest/pipeline/enc", "").await;
    assert_eq!(
        listed["enc"]["processors"][0]["sparse_encoding"]["model_id"],
        "tiny"
    );
    let (status, value) = h
        .json("PUT", "/_ingest/pipeline/bad", json!({"processors": [{"sparse_encoding": {"model_id": "absent", "field_map": {"a": "b"}}}]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{value}");
    let (status, _) = h
        .json(
            "PUT",
            "/_ingest/pipeline/bad",
            json!({"processors": [{"set": {"field": "a", "value": 1}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, _) = h
        .json("PUT", "/enc", json!({"settings": {"index.default_pipeline": "enc"},
            "mappings": {"properties": {"emb": {"type": "rank_features"}, "body": {"type": "text"}}}}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let text = "sparse retrieval with learned term weights";
    let (status, value) = h
        .json("PUT", "/enc/_doc/1?refresh=true", json!({"body": text}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{value}");

    let (_, doc) = h.call("GET", "/enc/_doc/1", "").await;
    let stored = doc["_source"]["emb"].as_object().unwrap().clone();
    let encoder = tiny_encoder();
    let mut expected = encoder.encode_document(text).unwrap();
    expected.prune(Pruning::TopK(5));
    let decoded = encoder.decode(&expected);
    assert_eq!(stored.len(), decoded.len());
    for (token, weight) in &decoded {
        let got = stored[token].as_f64().unwrap() as f32;
        assert_eq!(got, *weight, "token {token}");
    }
    // The generated vector is what the index searches.
    let (top_token, top_weight) = &decoded[0];
    let r = h
        .search("enc", json!({"query": {"neural_sparse": {"emb": {"query_tokens": {top_token.clone(): 1.0}}}}}))
        .await;
    assert_eq!(ids(&r), vec!["1"]);
    let half = half_round(*top_weight);
    assert!((score_of(&r, "1") as f32 - half).abs() <= half * 1e-3);
    // _none skips the default pipeline: the document then carries no vector.
    let (status, _) = h
        .json(
            "PUT",
            "/enc/_doc/2?pipeline=_none&refresh=true",
            json!({"body": text}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, doc) = h.call("GET", "/enc/_doc/2", "").await;
    assert!(doc["_source"].get("emb").is_none());
    let (status, _) = h.call("DELETE", "/_ingest/pipeline/enc", "").await;
    assert_eq!(status, StatusCode::OK);
    let (status, value) = h.call("GET", "/_ingest/pipeline/enc", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{value}");
}

/// f16 rounding of a stored weight, for comparing scores.
fn half_round(w: f32) -> f32 {
    nsparse_index::dequantize(nsparse_index::quantize(w))
}

#[tokio::test(flavor = "multi_thread")]
async fn everything_acknowledged_survives_a_restart() {
    let h = Harness::new();
    corpus(&h).await;
    h.json("PUT", "/_ingest/pipeline/enc", json!({"processors": [{"sparse_encoding": {"model_id": "tiny", "field_map": {"text": "emb"}}}]})).await;
    h.json(
        "PUT",
        "/_search/pipeline/two",
        json!({"request_processors": [{"neural_sparse_two_phase_processor": {}}]}),
    )
    .await;
    // Acknowledged but never refreshed nor committed.
    h.json(
        "PUT",
        "/docs/_doc/late",
        json!({"emb": {"ocean": 7.0}, "tag": "late"}),
    )
    .await;
    h.call("DELETE", "/docs/_doc/c", "").await;
    let h = h.restart();
    let (_, count) = h.call("GET", "/docs/_count", "").await;
    assert_eq!(count["count"], 4);
    let r = h
        .search(
            "docs",
            json!({"query": {"neural_sparse": {"emb": {"query_tokens": {"ocean": 1.0}}}}}),
        )
        .await;
    assert_eq!(ids(&r), vec!["late", "d"]);
    let r = h
        .search("docs", json!({"query": {"term": {"tag": "late"}}}))
        .await;
    assert_eq!(ids(&r), vec!["late"]);
    let (status, _) = h.call("GET", "/docs/_doc/c", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, value) = h.call("GET", "/_ingest/pipeline", "").await;
    assert!(value.get("enc").is_some());
    let (_, value) = h.call("GET", "/_search/pipeline/two", "").await;
    assert!(value.get("two").is_some());
    let (_, value) = h.call("GET", "/docs/_settings", "").await;
    assert_eq!(value["docs"]["settings"]["index"]["refresh_interval"], "-1");
    assert!(h.dir.path().join("indices/docs/meta.json").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_have_opensearch_shapes_and_codes() {
    let h = Harness::new();
    corpus(&h).await;
    let cases: &[(&str, &str, &str, u16, &str)] = &[
        (
            "POST",
            "/missing/_search",
            "{}",
            404,
            "index_not_found_exception",
        ),
        (
            "POST",
            "/docs/_search",
            "{\"query\": ",
            400,
            "parsing_exception",
        ),
        (
            "POST",
            "/docs/_search",
            r#"{"query": {"bogus": {}}}"#,
            400,
            "parsing_exception",
        ),
        (
            "POST",
            "/docs/_search",
            r#"{"size": "many"}"#,
            400,
            "x_content_parse_exception",
        ),
        (
            "POST",
            "/docs/_search",
            r#"{"query": {"neural_sparse": {"text": {"query_text": "x"}}}}"#,
            400,
            "illegal_argument_exception",
        ),
        (
            "POST",
            "/docs/_search",
            r#"{"query": {"neural_sparse": {"emb": {"query_text": "x", "model_id": "nope"}}}}"#,
            400,
            "illegal_argument_exception",
        ),
        (
            "POST",
            "/docs/_search",
            r#"{"aggs": {}}"#,
            400,
            "parsing_exception",
        ),
        (
            "POST",
            "/docs/_search",
            r#"{"from": 9999, "size": 2}"#,
            400,
            "illegal_argument_exception",
        ),
        (
            "POST",
            "/docs/_search?size=18446744073709551615",
            r#"{"from": 18446744073709551615}"#,
            400,
            "illegal_argument_exception",
        ),
        (
            "GET",
            "/docs/_frobnicate",
            "",
            400,
            "illegal_argument_exception",
        ),
        ("PATCH", "/docs", "", 400, "illegal_argument_exception"),
        (
            "PUT",
            "/_search/pipeline/p",
            r#"{"request_processors": [{"oracle": {}}]}"#,
            400,
            "illegal_argument_exception",
        ),
        (
            "POST",
            "/docs/_search?search_pipeline=absent",
            "{}",
            404,
            "resource_not_found_exception",
        ),
        ("PUT", "/docs/_doc/x", "[1, 2]", 400, "parsing_exception"),
        (
            "POST",
            "/docs/_search?scroll=1m",
            "{}",
            400,
            "illegal_argument_exception",
        ),
        (
            "POST",
            "/docs/_mget",
            "{}",
            400,
            "action_request_validation_exception",
        ),
        ("GET", "/docs/_doc/x?refresh=maybe", "", 404, ""),
        (
            "DELETE",
            "/docs/_doc/x?refresh=maybe",
            "",
            400,
            "illegal_argument_exception",
        ),
    ];
    for &(method, path, body, status, kind) in cases {
        let (got, value) = h.call(method, path, body).await;
        assert_eq!(got.as_u16(), status, "{method} {path} {body}: {value}");
        if !kind.is_empty() {
            assert_error(&value, status, kind);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_guards_every_endpoint() {
    use base64::Engine;
    let h = Harness::with_config(|c| c.basic_auth = Some(("admin".into(), "s3cret".into())));
    let (status, value) = h.call("GET", "/", "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&value, 401, "security_exception");
    let with = |credentials: &str| {
        let token = base64::engine::general_purpose::STANDARD.encode(credentials);
        Request::get("/")
            .header(header::AUTHORIZATION, format!("Basic {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let (status, _, _) = h.raw(with("admin:s3cret")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = h.raw(with("admin:wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = h.raw(with("admin:s3cret2")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_bodies_get_413() {
    let h = Harness::with_config(|c| c.max_body_bytes = 1000);
    h.call("PUT", "/small", "{}").await;
    let big = json!({"text": "x".repeat(2000)}).to_string();
    let (status, value) = h.call("PUT", "/small/_doc/1", &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&value, 413, "content_too_long_exception");
    // A declared Content-Length over the limit is refused before reading the body.
    let request = Request::put("/small/_doc/1")
        .header(header::CONTENT_LENGTH, "5000")
        .body(Body::from(big))
        .unwrap();
    let (status, _, _) = h.raw(request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _) = h
        .json("PUT", "/small/_doc/1", json!({"text": "short"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_paths_and_bodies_never_crash_the_server() {
    let h = Harness::new();
    corpus(&h).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let methods = ["GET", "PUT", "POST", "DELETE", "HEAD"];
    let paths = [
        "/",
        "/docs",
        "/docs/_search",
        "/docs/_count",
        "/_bulk",
        "/docs/_bulk",
        "/docs/_doc/a",
        "/docs/_doc",
        "/docs/_create/z",
        "/docs/_update/a",
        "/_ingest/pipeline/p",
        "/_search/pipeline/p",
        "/docs/_mapping",
        "/_cat/indices",
        "/docs/_refresh",
        "/%FF%FE",
        "/docs/_doc/%C0",
        "/a/b/c/d/e",
        "/docs/_search?size=-1&from=x",
    ];
    let json_fragments = [
        "{",
        "}",
        "[",
        "]",
        "\"query\"",
        ":",
        "{\"match_all\":{}}",
        "{\"bool\":",
        "\"must\"",
        "null",
        "1e999",
        "-1",
        "{\"neural_sparse\":{\"emb\":{\"query_tokens\":{\"hello\":-1}}}}",
        "{\"range\":{\"year\":{\"gte\":\"x\"}}}",
        "\"size\":",
        "\n",
        "{\"index\":{}}",
        "{\"update\":{\"_id\":\"a\"}}",
        "\"\\ud800\"",
    ];
    for round in 0..300 {
        let method = methods[rng.random_range(0..methods.len())];
        let path = if rng.random_bool(0.2) {
            let len = rng.random_range(1..30);
            let raw: String = (0..len)
                .map(|_| rng.random_range(0x21u8..0x7f) as char)
                .collect();
            format!("/{}", raw.replace(['?', '#', ' '], "x"))
        } else {
            paths[rng.random_range(0..paths.len())].to_string()
        };
        let body: Vec<u8> = if rng.random_bool(0.5) {
            (0..rng.random_range(0..200))
                .map(|_| rng.random())
                .collect()
        } else {
            (0..rng.random_range(0..12))
                .map(|_| json_fragments[rng.random_range(0..json_fragments.len())])
                .collect::<String>()
                .into_bytes()
        };
        let Ok(request) = Request::builder()
            .method(method)
            .uri(&path)
            .body(Body::from(body.clone()))
        else {
            continue;
        };
        let (status, text, content_type) = h.raw(request).await;
        assert!(
            status.as_u16() < 500,
            "round {round}: {method} {path} {:?} gave {status}: {text}",
            String::from_utf8_lossy(&body)
        );
        if method != "HEAD"
            && content_type
                .as_deref()
                .is_some_and(|c| c.starts_with("application/json"))
        {
            let value: Value = serde_json::from_str(&text).unwrap();
            if status.as_u16() >= 400 && value.get("error").is_some_and(Value::is_object) {
                assert_eq!(value["status"], status.as_u16());
            }
        }
    }
    // The server still answers, and the data directory opens again (no corrupt state).
    let (status, _) = h.call("GET", "/_cat/indices?format=json", "").await;
    assert_eq!(status, StatusCode::OK);
    let h = h.restart();
    let (status, _) = h.call("GET", "/", "").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn real_listener_serves_and_shuts_down_gracefully() {
    let h = Harness::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(nsparse_server::serve(listener, h.app.clone(), async move {
        let _ = stopped.await;
    }));
    let send = |request: String| async move {
        tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            response
        })
        .await
        .unwrap()
    };
    let body = json!({"mappings": {"properties": {"emb": {"type": "rank_features"}}}}).to_string();
    let response = send(format!(
        "PUT /live HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ))
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let doc = json!({"emb": {"hello": 1.0}}).to_string();
    let response = send(format!(
        "PUT /live/_doc/1 HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{doc}",
        doc.len()
    ))
    .await;
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    // Shutdown committed the buffered document into a segment.
    let segments = std::fs::read_dir(h.dir.path().join("indices/live/index"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".seg")
        })
        .count();
    assert_eq!(segments, 1);
    let h = h.restart();
    let (_, count) = h.call("GET", "/live/_count", "").await;
    assert_eq!(count["count"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn match_searches_only_the_named_text_field() {
    let h = Harness::new();
    let (status, _) = h
        .json("PUT", "/two", json!({"mappings": {"properties": {"title": {"type": "text"}, "body": {"type": "text"}}}}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let body = ndjson(&[
        json!({"index": {"_index": "two", "_id": "1"}}),
        json!({"title": "wing design", "body": "flutter of a wing", "note": "propeller"}),
        json!({"index": {"_index": "two", "_id": "2"}}),
        json!({"title": "flutter analysis", "body": "wing loads"}),
        json!({"index": {"_index": "two", "_id": "3"}}),
        json!({"title": "unrelated", "body": "nothing here"}),
    ]);
    let (_, value) = h.call("POST", "/_bulk?refresh=true", &body).await;
    assert_eq!(value["errors"], false, "{value}");
    let r = h
        .search("two", json!({"query": {"match": {"title": "flutter"}}}))
        .await;
    assert_eq!(ids(&r), vec!["2"]);
    assert_eq!(r["hits"]["total"]["value"], 1);
    let r = h
        .search("two", json!({"query": {"match": {"body": "flutter"}}}))
        .await;
    assert_eq!(ids(&r), vec!["1"]);
    // An unmapped field falls back to all the document's text.
    let r = h
        .search("two", json!({"query": {"match": {"note": "propeller"}}}))
        .await;
    assert_eq!(ids(&r), vec!["1"]);
    // Deletes and updates reach the field indexes.
    h.call("DELETE", "/two/_doc/2?refresh=true", "").await;
    let r = h
        .search("two", json!({"query": {"match": {"title": "flutter"}}}))
        .await;
    assert!(ids(&r).is_empty(), "{r}");
    h.json(
        "POST",
        "/two/_update/3?refresh=true",
        json!({"doc": {"title": "flutter again"}}),
    )
    .await;
    let r = h
        .search("two", json!({"query": {"match": {"title": "flutter"}}}))
        .await;
    assert_eq!(ids(&r), vec!["3"]);
    // A text field added later gets its own index; the field indexes survive a restart.
    let (status, _) = h
        .json(
            "PUT",
            "/two/_mapping",
            json!({"properties": {"summary": {"type": "text"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    h.json(
        "PUT",
        "/two/_doc/4?refresh=true",
        json!({"summary": "flutter summary"}),
    )
    .await;
    let r = h
        .search("two", json!({"query": {"match": {"summary": "flutter"}}}))
        .await;
    assert_eq!(ids(&r), vec!["4"]);
    let h = h.restart();
    let r = h
        .search("two", json!({"query": {"match": {"title": "flutter"}}}))
        .await;
    assert_eq!(ids(&r), vec!["3"]);
    let r = h
        .search("two", json!({"query": {"match": {"summary": "flutter"}}}))
        .await;
    assert_eq!(ids(&r), vec!["4"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_bulk_writes_and_searches_stay_consistent() {
    let h = Arc::new(Harness::new());
    corpus(&h).await;
    let mut tasks = Vec::new();
    for writer in 0..4 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            for batch in 0..5 {
                let mut lines = Vec::new();
                for n in 0..20 {
                    let id = format!("w{writer}-{batch}-{n}");
                    lines.push(json!({"index": {"_index": "docs", "_id": id}}));
                    lines.push(json!({"emb": {"ocean": 1.0 + n as f64}, "text": "ocean waves", "tag": "bulk"}));
                }
                let (status, value) = h.call("POST", "/_bulk", &ndjson(&lines)).await;
                assert_eq!(status, StatusCode::OK);
                assert_eq!(value["errors"], false, "{value}");
            }
        }));
    }
    for _ in 0..4 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..20 {
                let r = h
                    .search("docs", json!({"query": {"bool": {"must": [{"match": {"text": "ocean"}}], "filter": [{"exists": {"field": "text"}}]}}}))
                    .await;
                let total = r["hits"]["total"]["value"].as_u64().unwrap();
                assert!(total >= 1 && total as usize >= ids(&r).len());
                h.call("POST", "/docs/_refresh", "").await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    h.call("POST", "/docs/_refresh", "").await;
    let (_, count) = h.call("GET", "/docs/_count", "").await;
    assert_eq!(count["count"], 4 + 4 * 5 * 20);
    let (_, count) = h
        .json(
            "POST",
            "/docs/_count",
            json!({"query": {"term": {"tag": "bulk"}}}),
        )
        .await;
    assert_eq!(count["count"], 400);
    let r = h
        .search(
            "docs",
            json!({"query": {"match": {"text": "ocean"}}, "size": 0}),
        )
        .await;
    assert_eq!(r["hits"]["total"]["value"], 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn sparse_vector_fields_take_token_ids() {
    let h = Harness::new();
    let (status, value) = h
        .json(
            "PUT",
            "/ann",
            json!({"settings": {"index": {"sparse": true}},
            "mappings": {"properties": {"sv": {"type": "sparse_vector",
                "method": {"name": "seismic", "parameters": {"n_postings": 100}}}}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{value}");
    let hello = tiny_encoder().tokenizer().id("hello").unwrap();
    h.json(
        "PUT",
        "/ann/_doc/a",
        json!({"sv": {hello.to_string(): 2.0}}),
    )
    .await;
    // OpenSearch's sparse_vector keys are token ids: a token string is refused.
    let (status, value) = h
        .json("PUT", "/ann/_doc/b", json!({"sv": {"hello": 1.0}}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&value, 400, "mapper_parsing_exception");
    assert!(value["error"]["caused_by"]["reason"]
        .as_str()
        .unwrap()
        .contains("[sparse_vector] fields should be valid integer, got [hello]"));
    // Ids beyond the built-in vocabulary are ids like any other.
    h.json(
        "PUT",
        "/ann/_doc/c?refresh=true",
        json!({"sv": {"99999": 1.0, hello.to_string(): 1.0}}),
    )
    .await;
    let r = h
        .search(
            "ann",
            json!({"query": {"neural_sparse": {"sv": {"query_tokens": {hello.to_string(): 1.0},
            "method_parameters": {"top_n": 10, "heap_factor": 1.0, "k": 10}}}}}),
        )
        .await;
    assert_eq!(ids(&r), vec!["a", "c"]);
    assert_eq!(score_of(&r, "a"), 2.0);
    let r = h
        .search(
            "ann",
            json!({"query": {"neural_sparse": {"sv": {"query_tokens": {"99999": 3.0}}}}}),
        )
        .await;
    assert_eq!(ids(&r), vec!["c"]);
    assert_eq!(score_of(&r, "c"), 3.0);
}
