//! Fuzzing of the REST body parsers and the query DSL, in-process (`router` + `oneshot`, as in
//! `server.rs`): generated `_search` bodies (every query type, wrong types, huge and odd
//! numbers, deep nesting), `_bulk` NDJSON (truncated lines, wrong actions, missing sources),
//! index creation bodies (settings, mappings, names), `_mget`, `_update`, `_doc` and `_count`
//! bodies, and byte-level mutations of valid bodies.
//!
//! What must hold for every request: no panic, an answer below 500 (a body that cannot be
//! served is the client's error), a JSON error body naming a type and a reason, and the server
//! still answering `GET /` afterwards. Cases per property: 256 (64 for index creation, which
//! writes to disk), or `NSPARSE_FUZZ_CASES`; failures are kept in
//! `fuzz_requests.proptest-regressions` next to this file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use nsparse_model::{EncoderOptions, SparseEncoder};
use nsparse_server::{router, App, Models, ServerConfig};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use tower::ServiceExt;

fn cases(default: u32) -> u32 {
    std::env::var("NSPARSE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(default: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default),
        max_shrink_iters: 300,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    }
}

struct Server {
    _dir: tempfile::TempDir,
    app: Arc<App>,
    rt: tokio::runtime::Runtime,
}

fn tiny_model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../nsparse-model/tests/fixtures/tiny-distilbert")
}

const MAPPING: &str = r#"{"settings": {"index": {"refresh_interval": "-1"}},
  "mappings": {"properties": {"emb": {"type": "rank_features"}, "text": {"type": "text"},
  "tag": {"type": "keyword"}, "year": {"type": "long"}, "when": {"type": "date"},
  "flag": {"type": "boolean"}, "title": {"type": "text", "fields": {"raw": {"type": "keyword"}}}}}}"#;

/// One server for the whole file, with an index `docs` of a few documents and an ingest
/// pipeline.
fn server() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut models = Models::new();
        models.insert(
            "tiny",
            SparseEncoder::load(tiny_model_dir().to_str().unwrap(), EncoderOptions::default())
                .unwrap(),
        );
        let app = {
            let _guard = rt.enter();
            App::open(ServerConfig::new(dir.path()), models).unwrap()
        };
        let s = Server {
            _dir: dir,
            app,
            rt,
        };
        let setup = [
            ("PUT", "/docs", MAPPING.to_string()),
            (
                "PUT",
                "/_ingest/pipeline/enc",
                json!({"processors": [{"sparse_encoding": {"model_id": "tiny",
                    "field_map": {"text": "emb"}}}]})
                .to_string(),
            ),
            (
                "PUT",
                "/_search/pipeline/two",
                json!({"request_processors": [{"neural_sparse_two_phase_processor": {
                    "two_phase_parameter": {"prune_ratio": 0.4}}}]})
                .to_string(),
            ),
            (
                "POST",
                "/_bulk?refresh=true",
                [
                    json!({"index": {"_index": "docs", "_id": "a"}}),
                    json!({"emb": {"hello": 2.0, "world": 1.0}, "text": "hello world of search",
                        "tag": "x", "year": 2001, "when": "2001-02-03", "flag": true, "title": "Hello"}),
                    json!({"index": {"_index": "docs", "_id": "b"}}),
                    json!({"emb": {"hello": 1.0, "sparse": 3.0}, "text": "sparse retrieval models",
                        "tag": "y", "year": 2010}),
                    json!({"index": {"_index": "docs", "_id": "c", "pipeline": "enc"}}),
                    json!({"text": "the world is large", "tag": "x", "year": 2020}),
                ]
                .iter()
                .map(|l| format!("{l}\n"))
                .collect(),
            ),
        ];
        for (method, path, body) in setup {
            let (status, text) = s.call(method, path, body.into_bytes());
            assert!(status.is_success(), "{method} {path}: {status} {text}");
        }
        s
    })
}

impl Server {
    fn call(&self, method: &str, path: &str, body: Vec<u8>) -> (StatusCode, String) {
        self.rt.block_on(async {
            let request = Request::builder()
                .method(method)
                .uri(path)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body))
                .unwrap();
            let response = router(self.app.clone()).oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            (status, String::from_utf8_lossy(&bytes).into_owned())
        })
    }

    /// Sends the request and checks the answer: below 500, errors in OpenSearch's shape, and
    /// the server still up. Returns the status and the body.
    fn check(&self, method: &str, path: &str, body: Vec<u8>) -> (StatusCode, String) {
        let shown = String::from_utf8_lossy(&body)
            .chars()
            .take(2000)
            .collect::<String>();
        let (status, text) = self.call(method, path, body);
        assert!(
            status.as_u16() < 500,
            "{method} {path} answered {status}: {text}\nbody: {shown}"
        );
        if status.is_client_error() && method != "HEAD" && status != StatusCode::NOT_FOUND {
            let value: Value = serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("{method} {path}: {status} without JSON: {text}"));
            assert!(
                value["error"]["type"].is_string() || value["errors"].is_boolean(),
                "{method} {path}: {status}: no error type: {text}\nbody: {shown}"
            );
        }
        let (up, _) = self.call("GET", "/", Vec::new());
        assert_eq!(up, StatusCode::OK, "GET / after {method} {path}: {shown}");
        (status, text)
    }
}

// ---------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------

/// Strings that stress parsers: empty, long, unicode, NaN-like, numbers as text, paths.
fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z]{1,8}",
        2 => prop::sample::select(vec![
            "", " ", "NaN", "-Infinity", "Infinity", "1e309", "-0", "0x10", "2001-02-03",
            "now-1d", "null", "true", "hello world", "[CLS]", "##s", "emb", "text", "_id",
            "a..b", ".", "..", "*", "x.keyword", "🦀", "\u{0}", "é", "2^40", "1.5e-400",
        ]).prop_map(String::from),
        1 => any::<String>(),
        1 => (1usize..5000).prop_map(|n| "word ".repeat(n)),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-3i64..20).prop_map(|n| json!(n)),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(|x| json!(x)),
        prop::sample::select(vec![
            json!(0),
            json!(-1),
            json!(1e308),
            json!(-1e308),
            json!(f64::MIN_POSITIVE),
            json!(1u64 << 40),
            json!(i64::MIN),
            json!(u64::MAX),
            json!(0.5),
            json!(-0.0),
            json!(1_000_000_000),
        ]),
    ]
}

/// Any JSON value, a few levels deep.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((string(), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "emb", "text", "tag", "year", "when", "flag", "title", "title.raw", "_id", "nope",
            "tag.keyword", "text.keyword", "",
        ]).prop_map(String::from),
        1 => string(),
    ]
}

/// A value of the kind a clause expects most of the time, anything sometimes.
fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => string().prop_map(Value::String),
        2 => number(),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => value(),
    ]
}

fn obj(pairs: Vec<(String, Value)>) -> Value {
    Value::Object(pairs.into_iter().collect())
}

/// Optional extra keys, known and unknown, with any values.
fn extras() -> impl Strategy<Value = Vec<(String, Value)>> {
    prop::collection::vec(
        (
            prop_oneof![
                3 => prop::sample::select(vec![
                    "boost", "query", "model_id", "analyzer", "operator", "minimum_should_match",
                    "_name", "method_parameters", "gte", "lt", "format", "values", "value",
                ]).prop_map(String::from),
                1 => string(),
            ],
            prop_oneof![3 => scalar(), 1 => value()],
        ),
        0..3,
    )
}

fn with_extras(mut v: Value, extra: Vec<(String, Value)>) -> Value {
    if let Value::Object(m) = &mut v {
        for (k, x) in extra {
            m.insert(k, x);
        }
    }
    v
}

/// A query clause of the DSL, well-formed or nearly.
fn query() -> impl Strategy<Value = Value> {
    let neural = (
        field(),
        prop_oneof![
            string().prop_map(|s| ("query_text".to_string(), Value::String(s))),
            prop::collection::vec((string(), number()), 0..6)
                .prop_map(|kv| ("query_tokens".to_string(), obj(kv.into_iter().collect()))),
            value().prop_map(|v| ("query_tokens".to_string(), v)),
        ],
        prop::option::of(prop::sample::select(vec![
            "tiny",
            "bert-uncased",
            "nope",
            "opensearch-neural-sparse-tokenizer-v1",
            "",
        ])),
        prop::option::of(
            (number(), number(), number())
                .prop_map(|(t, h, k)| json!({"top_n": t, "heap_factor": h, "k": k})),
        ),
        extras(),
    )
        .prop_map(|(f, (key, q), model, params, extra)| {
            let mut inner = Map::new();
            inner.insert(key, q);
            if let Some(m) = model {
                inner.insert("model_id".into(), json!(m));
            }
            if let Some(p) = params {
                inner.insert("method_parameters".into(), p);
            }
            json!({"neural_sparse": {f: with_extras(Value::Object(inner), extra)}})
        });
    let matcher = (field(), scalar(), any::<bool>(), extras()).prop_map(|(f, q, long, extra)| {
        if long {
            json!({"match": {f: with_extras(json!({"query": q}), extra)}})
        } else {
            json!({"match": {f: q}})
        }
    });
    let term = (field(), scalar(), extras())
        .prop_map(|(f, v, extra)| json!({"term": {f: with_extras(json!({"value": v}), extra)}}));
    let terms = (field(), prop::collection::vec(scalar(), 0..5))
        .prop_map(|(f, v)| json!({"terms": {f: v}}));
    let range = (
        field(),
        prop::collection::vec(
            (
                prop::sample::select(vec!["gte", "gt", "lte", "lt", "from", "to", "format", "x"]),
                scalar(),
            ),
            0..4,
        ),
    )
        .prop_map(|(f, bounds)| {
            let b: Map<String, Value> = bounds.into_iter().map(|(k, v)| (k.into(), v)).collect();
            json!({"range": {f: b}})
        });
    let ids = prop::collection::vec(scalar(), 0..5).prop_map(|v| json!({"ids": {"values": v}}));
    let exists = field().prop_map(|f| json!({"exists": {"field": f}}));
    let simple = prop_oneof![
        Just(json!({"match_all": {}})),
        Just(json!({"match_none": {}})),
        value().prop_map(|v| json!({"match_all": v})),
    ];
    let leaf = prop_oneof![
        3 => neural,
        2 => matcher,
        2 => term,
        1 => terms,
        2 => range,
        1 => ids,
        1 => exists,
        1 => simple,
        1 => value(),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        let list = prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            inner.clone(),
        ];
        prop_oneof![
            (
                prop::collection::vec(
                    (
                        prop::sample::select(vec!["must", "should", "filter", "must_not", "x"]),
                        list
                    ),
                    0..4
                ),
                prop::option::of(scalar()),
                prop::option::of(number()),
            )
                .prop_map(|(clauses, msm, boost)| {
                    let mut b: Map<String, Value> =
                        clauses.into_iter().map(|(k, v)| (k.into(), v)).collect();
                    if let Some(m) = msm {
                        b.insert("minimum_should_match".into(), m);
                    }
                    if let Some(x) = boost {
                        b.insert("boost".into(), x);
                    }
                    json!({"bool": b})
                }),
            (inner, prop::option::of(number()))
                .prop_map(|(f, boost)| json!({"constant_score": {"filter": f, "boost": boost}})),
        ]
    })
}

fn words() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            "hello", "world", "sparse", "ocean", "search", "the", "zzz",
        ]),
        1..4,
    )
    .prop_map(|w| w.join(" "))
}

/// A well-formed query on the mapped fields (most of them match something).
fn valid_query() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        (
            words(),
            prop::option::of(prop::sample::select(vec!["tiny", "bert-uncased"])),
            prop::option::of((1u32..10, 0.5f32..2.0, 1u32..10)),
        )
            .prop_map(|(text, model, params)| {
                let mut q = json!({"query_text": text});
                if let Some(m) = model {
                    q["model_id"] = json!(m);
                }
                if let Some((top_n, heap_factor, k)) = params {
                    q["method_parameters"] =
                        json!({"top_n": top_n, "heap_factor": heap_factor, "k": k});
                }
                json!({"neural_sparse": {"emb": q}})
            }),
        prop::collection::vec((words(), 0.1f32..5.0), 1..4).prop_map(|kv| {
            let tokens: Map<String, Value> = kv.into_iter().map(|(t, w)| (t, json!(w))).collect();
            json!({"neural_sparse": {"emb": {"query_tokens": tokens}}})
        }),
        (
            prop::sample::select(vec!["text", "title", "tag", "nope"]),
            words()
        )
            .prop_map(|(f, w)| json!({"match": {f: w}})),
        prop::sample::select(vec![
            json!({"term": {"tag": "x"}}),
            json!({"term": {"year": 2001}}),
            json!({"terms": {"tag": ["x", "y"]}}),
            json!({"term": {"flag": true}}),
            json!({"exists": {"field": "tag"}}),
            json!({"ids": {"values": ["a", "b", "zz"]}}),
            json!({"match_all": {}}),
        ]),
        (1990i64..2030, 1990i64..2030)
            .prop_map(|(a, b)| json!({"range": {"year": {"gte": a, "lt": b}}})),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        (
            prop::collection::vec(
                (
                    prop::sample::select(vec!["must", "should", "filter", "must_not"]),
                    prop::collection::vec(inner, 1..3),
                ),
                1..3,
            ),
            prop::option::of(0u32..3),
        )
            .prop_map(|(clauses, msm)| {
                let mut b: Map<String, Value> = clauses
                    .into_iter()
                    .map(|(k, v)| (k.into(), json!(v)))
                    .collect();
                if let Some(m) = msm {
                    b.insert("minimum_should_match".into(), json!(m));
                }
                json!({"bool": b})
            })
    })
}

/// A `_search` body: a query and the other top-level keys, right or wrong.
fn search_body() -> impl Strategy<Value = Value> {
    prop_oneof![
        2 => (valid_query(), 0u32..20, 0u32..5, any::<bool>(), any::<bool>()).prop_map(
            |(q, size, from, explain, source)| {
                json!({"query": q, "size": size, "from": from, "explain": explain, "_source": source})
            }
        ),
        3 => any_search_body(),
    ]
}

/// A `_search` body with anything in it.
fn any_search_body() -> impl Strategy<Value = Value> {
    (
        prop_oneof![4 => query(), 1 => value()],
        prop::collection::vec(
            (
                prop::sample::select(vec![
                    "size",
                    "from",
                    "_source",
                    "explain",
                    "sort",
                    "track_total_hits",
                    "timeout",
                    "min_score",
                    "aggs",
                    "unknown",
                ]),
                prop_oneof![number(), value()],
            ),
            0..4,
        ),
        any::<bool>(),
    )
        .prop_map(|(q, top, has_query)| {
            let mut m = Map::new();
            if has_query {
                m.insert("query".into(), q);
            }
            for (k, v) in top {
                m.insert(k.into(), v);
            }
            Value::Object(m)
        })
}

fn doc_id() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::sample::select(vec!["a", "b", "c", "new1", "new2", "x"]).prop_map(|s| json!(s)),
        1 => scalar(),
    ]
}

/// A document source: mapped fields with right or wrong values, unknown fields.
fn source() -> impl Strategy<Value = Value> {
    prop::collection::vec(
        (
            field(),
            prop_oneof![
                2 => prop::collection::vec((string(), number()), 0..5)
                    .prop_map(|kv| obj(kv.into_iter().collect())),
                3 => scalar(),
                1 => value(),
            ],
        ),
        0..5,
    )
    .prop_map(obj)
}

/// One `_bulk` item: an action line and (mostly) a source line, or garbage.
fn bulk_item() -> impl Strategy<Value = String> {
    let action = (
        prop::sample::select(vec!["index", "create", "update", "delete", "upsert", ""]),
        prop::option::of(prop_oneof![
            3 => Just(json!("docs")),
            1 => scalar(),
        ]),
        prop::option::of(doc_id()),
        prop::option::of(prop::sample::select(vec!["enc", "nope", "_none"])),
    )
        .prop_map(|(a, index, id, pipeline)| {
            let mut meta = Map::new();
            if let Some(i) = index {
                meta.insert("_index".into(), i);
            }
            if let Some(i) = id {
                meta.insert("_id".into(), i);
            }
            if let Some(p) = pipeline {
                meta.insert("pipeline".into(), json!(p));
            }
            json!({a: meta})
        });
    let body = prop_oneof![
        3 => (words(), prop::collection::vec((words(), 0.1f32..5.0), 0..4), 1990i64..2030)
            .prop_map(|(text, emb, year)| {
                let emb: Map<String, Value> = emb.into_iter().map(|(t, w)| (t, json!(w))).collect();
                json!({"text": text, "emb": emb, "tag": "x", "year": year})
            }),
        3 => source(),
        1 => (source(), any::<bool>()).prop_map(|(d, up)| json!({"doc": d, "doc_as_upsert": up})),
        1 => value(),
    ];
    (
        prop_oneof![5 => action, 1 => value()],
        prop::option::of(body),
        0..12u8,
    )
        .prop_map(|(a, b, shape)| {
            let a = a.to_string();
            let b = b.map(|b| b.to_string());
            match (shape, b) {
                // A line cut short.
                (0, Some(b)) => format!("{a}\n{}\n", half(&b)),
                (1, _) => format!("{}\n", half(&a)),
                (2, Some(b)) => format!("{a}\n\n{b}\n"),
                (3, Some(b)) => format!("{a} {b}\n"),
                (_, Some(b)) => format!("{a}\n{b}\n"),
                (_, None) => format!("{a}\n"),
            }
        })
}

/// The first half of `s` (to a char boundary).
fn half(s: &str) -> &str {
    let mut at = s.len() / 2;
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    &s[..at]
}

/// Byte-level mutations of a body: flips, cuts, insertions of JSON punctuation.
fn mutate(body: &[u8], edits: &[(prop::sample::Index, u8, u8)]) -> Vec<u8> {
    let mut b = body.to_vec();
    for (at, kind, byte) in edits {
        let n = b.len();
        let i = if n == 0 { 0 } else { at.index(n) };
        match kind % 5 {
            0 if n > 0 => b[i] ^= byte | 1,
            1 => b.truncate(i),
            2 => {
                let punctuation = b"{}[]\":,\\0e-.\n";
                b.insert(i.min(n), punctuation[*byte as usize % punctuation.len()]);
            }
            3 if n > 0 => {
                b.remove(i);
            }
            _ => b.insert(i.min(n), *byte),
        }
    }
    b
}

fn edits() -> impl Strategy<Value = Vec<(prop::sample::Index, u8, u8)>> {
    prop::collection::vec(
        (any::<prop::sample::Index>(), any::<u8>(), any::<u8>()),
        1..6,
    )
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn search_bodies(body in search_body(), path in prop::sample::select(vec![
        "/docs/_search", "/docs/_search?search_pipeline=two", "/docs/_count",
        "/docs/_search?size=3&from=1", "/_search", "/nope/_search",
    ])) {
        let s = server();
        let (status, text) = s.check("POST", path, body.to_string().into_bytes());
        if status == StatusCode::OK && path.contains("_search") {
            let v: Value = serde_json::from_str(&text).unwrap();
            prop_assert!(v["hits"]["hits"].is_array(), "{}", text);
        }
    }

    #[test]
    fn mutated_search_bodies(body in search_body(), edits in edits()) {
        let bytes = mutate(body.to_string().as_bytes(), &edits);
        server().check("POST", "/docs/_search", bytes);
    }

    #[test]
    fn bulk_bodies(items in prop::collection::vec(bulk_item(), 0..8), edits in prop::option::of(edits()), path in prop::sample::select(vec![
        "/_bulk", "/docs/_bulk", "/_bulk?refresh=true", "/docs/_bulk?pipeline=enc", "/nope/_bulk",
        "/_bulk?refresh=wait_for",
    ])) {
        let mut body = items.concat().into_bytes();
        if let Some(e) = edits {
            body = mutate(&body, &e);
        }
        let (status, text) = server().check("POST", path, body);
        if status == StatusCode::OK {
            let v: Value = serde_json::from_str(&text).unwrap();
            prop_assert!(v["items"].is_array(), "{}", text);
            for item in v["items"].as_array().unwrap() {
                let result = item.as_object().and_then(|o| o.values().next());
                prop_assert!(result.is_some(), "bulk item without an action: {}", text);
                let code = result.unwrap()["status"].as_u64().unwrap_or(0);
                prop_assert!(code > 0 && code < 500, "bulk item answered {}: {}", code, text);
            }
        }
    }

    #[test]
    fn document_bodies(
        id in prop_oneof![doc_id().prop_map(|v| v.as_str().unwrap_or("x").to_string()), "[a-z0-9%._-]{1,12}"],
        doc in source(),
        update in prop_oneof![
            source().prop_map(|d| json!({"doc": d})),
            (source(), any::<bool>()).prop_map(|(d, up)| json!({"doc": d, "doc_as_upsert": up})),
            value(),
        ],
        mget in prop_oneof![
            prop::collection::vec(doc_id(), 0..5).prop_map(|ids| json!({"ids": ids})),
            prop::collection::vec((prop::option::of(scalar()), doc_id()), 0..5).prop_map(|d| {
                json!({"docs": d.into_iter().map(|(i, id)| json!({"_index": i, "_id": id})).collect::<Vec<_>>()})
            }),
            value(),
        ],
        edits in prop::option::of(edits()),
    ) {
        let s = server();
        let id = percent_encode(&id);
        let maybe = |v: &Value| {
            let b = v.to_string().into_bytes();
            match &edits {
                Some(e) => mutate(&b, e),
                None => b,
            }
        };
        s.check("PUT", &format!("/docs/_doc/{id}"), maybe(&doc));
        s.check("POST", &format!("/docs/_doc/{id}?pipeline=enc&refresh=true"), maybe(&doc));
        s.check("PUT", &format!("/docs/_create/{id}"), maybe(&doc));
        s.check("POST", &format!("/docs/_update/{id}"), maybe(&update));
        s.check("POST", "/docs/_mget", maybe(&mget));
        s.check("POST", "/_mget", maybe(&mget));
        s.check("GET", &format!("/docs/_doc/{id}"), Vec::new());
        s.check("GET", &format!("/docs/_source/{id}"), Vec::new());
        s.check("DELETE", &format!("/docs/_doc/{id}"), Vec::new());
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// Index creation with generated names, settings and mappings; what was created is
    /// deleted again, and `docs` is untouched.
    #[test]
    fn index_creation_bodies(
        name in prop_oneof![
            3 => "[a-z][a-z0-9_-]{0,10}",
            1 => string(),
        ],
        settings in prop::option::of(prop_oneof![
            prop::collection::vec((prop::sample::select(vec![
                "index.sparse", "index.default_pipeline", "index.search.default_pipeline",
                "index.refresh_interval", "number_of_shards", "index.number_of_shards",
                "number_of_replicas", "index", "x",
            ]), scalar()), 0..4).prop_map(|kv| obj(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
            value(),
        ]),
        mappings in prop::option::of(prop_oneof![
            prop::collection::vec((field(), prop_oneof![
                prop::sample::select(vec![
                    "rank_features", "sparse_vector", "text", "keyword", "long", "integer",
                    "float", "double", "date", "boolean", "banana", "object", "nested",
                ]).prop_map(|t| json!({"type": t})),
                value(),
            ]), 0..4).prop_map(|kv| json!({"properties": obj(kv)})),
            value(),
        ]),
        edits in prop::option::of(edits()),
    ) {
        let s = server();
        let mut body = Map::new();
        if let Some(x) = settings {
            body.insert("settings".into(), x);
        }
        if let Some(x) = mappings {
            body.insert("mappings".into(), x);
        }
        let mut bytes = Value::Object(body).to_string().into_bytes();
        if let Some(e) = &edits {
            bytes = mutate(&bytes, e);
        }
        let path = format!("/{}", percent_encode(&name));
        let (status, _) = s.check("PUT", &path, bytes);
        if status == StatusCode::OK {
            s.check("PUT", &format!("{path}/_mapping"), json!({"properties": {"extra": {"type": "keyword"}}}).to_string().into_bytes());
            s.check("PUT", &format!("{path}/_settings"), json!({"index": {"refresh_interval": "5s"}}).to_string().into_bytes());
            let (deleted, text) = s.check("DELETE", &path, Vec::new());
            prop_assert_eq!(deleted, StatusCode::OK, "{}", text);
        }
        let (status, _) = s.check("GET", "/docs/_count", Vec::new());
        prop_assert_eq!(status, StatusCode::OK);
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push_str("%20");
    }
    out
}

/// Inputs a generator rarely reaches: nesting far beyond any parser's limit, huge arrays and
/// strings, numbers out of every range.
#[test]
fn extreme_bodies() {
    let s = server();
    let deep_array = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let mut deep_bool = json!({"match_all": {}});
    for _ in 0..120 {
        deep_bool = json!({"bool": {"must": [deep_bool]}});
    }
    let deeper = format!(
        "{{\"query\":{}{{\"match_all\":{{}}}}{}}}",
        "{\"bool\":{\"should\":".repeat(2000),
        "}}".repeat(2000)
    );
    let many_tokens: Map<String, Value> =
        (0..50_000).map(|i| (format!("t{i}"), json!(1.0))).collect();
    let bodies: Vec<(&str, &str, Vec<u8>)> = vec![
        ("POST", "/docs/_search", deep_array.clone().into_bytes()),
        ("POST", "/docs/_search", format!("{{\"query\":{deep_array}}}").into_bytes()),
        ("POST", "/docs/_search", json!({"query": deep_bool}).to_string().into_bytes()),
        ("POST", "/docs/_search", deeper.into_bytes()),
        ("POST", "/docs/_search", json!({"query": {"neural_sparse": {"emb": {"query_tokens": many_tokens}}}}).to_string().into_bytes()),
        ("POST", "/docs/_search", json!({"query": {"match": {"text": "word ".repeat(200_000)}}}).to_string().into_bytes()),
        ("POST", "/docs/_search", json!({"query": {"neural_sparse": {"emb": {"query_text": "hello ".repeat(100_000)}}}}).to_string().into_bytes()),
        ("POST", "/docs/_search", json!({"query": {"ids": {"values": (0..100_000).map(|i| i.to_string()).collect::<Vec<_>>()}}}).to_string().into_bytes()),
        ("POST", "/docs/_search", br#"{"size": 1e400}"#.to_vec()),
        ("POST", "/docs/_search", br#"{"size": 18446744073709551616}"#.to_vec()),
        ("POST", "/docs/_search", br#"{"size": 4294967296, "from": 18446744073709551615}"#.to_vec()),
        ("POST", "/docs/_search", br#"{"from": 9223372036854775807, "size": 10}"#.to_vec()),
        ("POST", "/docs/_search", br#"{"query": {"range": {"year": {"gte": 1e400}}}}"#.to_vec()),
        ("POST", "/docs/_search", br#"{"query": {"range": {"year": {"gte": -9223372036854775809}}}}"#.to_vec()),
        ("POST", "/docs/_search", br#"{"query": {"neural_sparse": {"emb": {"query_tokens": {"hello": 1e39}}}}}"#.to_vec()),
        ("POST", "/docs/_search", br#"{"query": {"neural_sparse": {"emb": {"query_tokens": {"hello": -1}}}}}"#.to_vec()),
        ("POST", "/docs/_search", br#"{"query": {"neural_sparse": {"emb": {"query_text": "x", "method_parameters": {"top_n": -1, "heap_factor": 0, "k": 0}}}}}"#.to_vec()),
        ("POST", "/docs/_search", br#"{"query": {"neural_sparse": {"emb": {"query_text": "x", "method_parameters": {"top_n": 18446744073709551615, "heap_factor": 1e308}}}}}"#.to_vec()),
        ("POST", "/docs/_search", b"\xff\xfe{}".to_vec()),
        ("POST", "/docs/_search", b"{\"query\": {\"match\": {\"text\": \"\\ud800\"}}}".to_vec()),
        ("POST", "/_bulk", "{\"index\":{\"_index\":\"docs\"}}\n".repeat(10_000).into_bytes()),
        ("POST", "/_bulk", format!("{{\"index\":{{\"_index\":\"docs\",\"_id\":\"big\"}}}}\n{{\"emb\": {}}}\n", serde_json::to_string(&many_tokens).unwrap()).into_bytes()),
        ("POST", "/_bulk", format!("{{\"index\":{{\"_index\":\"docs\",\"_id\":\"{}\"}}}}\n{{}}\n", "i".repeat(100_000)).into_bytes()),
        ("POST", "/_bulk", format!("{{\"index\":{{\"_index\":\"docs\",\"_id\":\"deep\"}}}}\n{{\"x\":{deep_array}}}\n").into_bytes()),
        ("PUT", "/docs/_doc/huge-number", br#"{"year": 1e400}"#.to_vec()),
        ("PUT", "/docs/_doc/huge-number", br#"{"year": 1099511627776, "when": "not a date", "flag": "maybe"}"#.to_vec()),
        ("PUT", "/docs/_doc/emb-wrong", br#"{"emb": {"hello": "NaN", "world": -1, "x": 1e39}}"#.to_vec()),
        ("PUT", "/wide", json!({"mappings": {"properties": (0..2000).map(|i| (format!("f{i}"), json!({"type": "keyword"}))).collect::<Map<String, Value>>()}}).to_string().into_bytes()),
        ("DELETE", "/wide", Vec::new()),
        ("PUT", "/x", json!({"mappings": {"properties": {"t".repeat(300): {"type": "text"}}}}).to_string().into_bytes()),
        ("PUT", "/y", json!({"settings": {"number_of_shards": 0}}).to_string().into_bytes()),
        ("PUT", "/z", json!({"mappings": {"properties": {"a..b": {"type": "text"}, "": {"type": "keyword"}}}}).to_string().into_bytes()),
        ("POST", "/docs/_mget", json!({"ids": (0..100_000).map(|i| i.to_string()).collect::<Vec<_>>()}).to_string().into_bytes()),
        ("POST", "/docs/_update/a", json!({"doc": {"emb": deep_bool}}).to_string().into_bytes()),
    ];
    for (method, path, body) in bodies {
        s.check(method, path, body);
    }
    // Whatever was created is removed; `docs` still searches.
    for name in ["/x", "/y", "/z", "/wide"] {
        s.call("DELETE", name, Vec::new());
    }
    let (status, text) = s.check(
        "POST",
        "/docs/_search?refresh=true",
        json!({"query": {"match_all": {}}}).to_string().into_bytes(),
    );
    assert_eq!(status, StatusCode::OK, "{text}");
}
