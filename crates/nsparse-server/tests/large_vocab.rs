//! `nsparse serve` with encoders of large vocabularies: the random 105,879-token BERT and
//! 250,002-token DistilBERT fixtures of nsparse-model (token ids far above 65,535). A
//! `sparse_encoding` pipeline writes the documents' vectors under the model's own token
//! strings, and `neural_sparse` with `query_text` (the folder's idf.json) or `query_tokens`
//! ranks as the library's vectors do.

use std::collections::BTreeMap;
use std::path::Path;

use axum::http::StatusCode;
use nsparse_model::{EncoderOptions, SparseEncoder};
use nsparse_server::Models;
use serde_json::{json, Value};

mod common;
use common::Harness;

const MODELS: [&str; 2] = ["tiny-mbert-105879", "tiny-distilbert-250002"];

fn encoder(name: &str) -> SparseEncoder {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../nsparse-model/tests/fixtures")
        .join(name);
    SparseEncoder::load(dir.to_str().unwrap(), EncoderOptions::default()).unwrap()
}

fn models() -> Models {
    let mut models = Models::new();
    for name in MODELS {
        models.insert(name, encoder(name));
    }
    models
}

const TEXTS: [&str; 8] = [
    "Hypersonic flow over a blunt body heats the nose.",
    "東京の天気は雨です。明日は晴れるでしょう。",
    "Le vent souffle fort sur la côte bretonne ce matin.",
    "Η θάλασσα είναι ήρεμη σήμερα το πρωί.",
    "Погода в Москве сегодня холодная и ветреная.",
    "서울의 날씨는 맑고 따뜻합니다.",
    "Boundary layers separate behind shock waves at high Mach numbers.",
    "Currently New York is rainy.",
];

/// Top 10 `(id, score)` of `query` over the documents' f16-stored weights.
fn brute_force(docs: &[(String, Vec<(u32, f32)>)], query: &[(u32, f32)]) -> Vec<(String, f32)> {
    let q: BTreeMap<u32, f32> = query.iter().copied().collect();
    let mut scored: Vec<(String, f32)> = docs
        .iter()
        .map(|(id, v)| {
            let s: f32 = v
                .iter()
                .filter_map(|(t, w)| {
                    q.get(t)
                        .map(|qw| qw * nsparse_index::dequantize(nsparse_index::quantize(*w)))
                })
                .sum();
            (id.clone(), s)
        })
        .filter(|p| p.1 > 0.0)
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.truncate(10);
    scored
}

fn assert_ranking(got: &[(String, f32)], want: &[(String, f32)], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g.1 - w.1).abs() <= 1e-3 * w.1.max(1.0),
            "{what}: {got:?} vs {want:?}"
        );
    }
    if want.windows(2).all(|p| (p[0].1 - p[1].1).abs() > 1e-3) {
        let ids = |v: &[(String, f32)]| v.iter().map(|p| p.0.clone()).collect::<Vec<_>>();
        assert_eq!(ids(got), ids(want), "{what}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn large_vocabulary_models_ingest_and_query_through_the_rest_api() {
    let h = Harness::with_models(models);
    for name in MODELS {
        let model = encoder(name);
        let index = format!("idx-{}", &name[5..]);
        let pipeline = format!("enc-{}", &name[5..]);
        let (status, body) = h
            .json(
                "PUT",
                &format!("/_ingest/pipeline/{pipeline}"),
                json!({"processors": [{"sparse_encoding": {"model_id": name, "field_map": {"text": "emb"}}}]}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = h
            .json(
                "PUT",
                &format!("/{index}"),
                json!({"settings": {"default_pipeline": pipeline},
                       "mappings": {"properties": {"emb": {"type": "rank_features"}, "text": {"type": "text"}}}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        for (i, text) in TEXTS.iter().enumerate() {
            let (status, body) = h
                .json(
                    "PUT",
                    &format!("/{index}/_doc/d{i}?pipeline={pipeline}&refresh=true"),
                    json!({ "text": text }),
                )
                .await;
            assert!(status.is_success(), "{name} d{i}: {body}");
        }
        let encoded = model
            .encode_documents(&TEXTS, |_| {})
            .unwrap()
            .vectors
            .into_iter()
            .enumerate()
            .map(|(i, v)| (format!("d{i}"), v.iter().collect::<Vec<_>>()))
            .collect::<Vec<_>>();
        assert!(
            encoded
                .iter()
                .flat_map(|(_, v)| v)
                .any(|(t, _)| *t > 65_535),
            "{name}: ids above 65,535 are exercised"
        );

        // The stored source holds the vector under the model's own token strings.
        let (_, doc) = h.json("GET", &format!("/{index}/_doc/d1"), json!({})).await;
        let stored: BTreeMap<String, f64> =
            serde_json::from_value(doc["_source"]["emb"].clone()).unwrap();
        let want: BTreeMap<String, f64> = model
            .decode(&nsparse_model::SparseVector::from_pairs(
                encoded[1].1.clone(),
            ))
            .into_iter()
            .map(|(t, w)| (t, f64::from(w)))
            .collect();
        assert_eq!(
            stored.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{name}"
        );

        // query_text, encoded by the same model (its idf.json: inference-free).
        for query in ["weather rain", "東京 天気", "shock waves", "θάλασσα"] {
            let q: Vec<(u32, f32)> = model.encode_query(query).unwrap().iter().collect();
            let got = h
                .hits(
                    &index,
                    json!({"neural_sparse": {"emb": {"query_text": query, "model_id": name}}}),
                )
                .await;
            assert_ranking(
                &got,
                &brute_force(&encoded, &q),
                &format!("{name} {query:?}"),
            );
        }
        // query_tokens with the model's token strings, and names no document has.
        let top: Vec<(String, f32)> = model
            .decode(&nsparse_model::SparseVector::from_pairs(
                encoded[4].1.clone(),
            ))
            .into_iter()
            .take(5)
            .collect();
        let mut tokens: serde_json::Map<String, Value> =
            top.iter().map(|(t, w)| (t.clone(), json!(w))).collect();
        tokens.insert("no-such-token".into(), json!(3.0));
        let q: Vec<(u32, f32)> = top
            .iter()
            .map(|(t, w)| (model.tokenizer().id(t).unwrap(), *w))
            .collect();
        let got = h
            .hits(
                &index,
                json!({"neural_sparse": {"emb": {"query_tokens": tokens}}}),
            )
            .await;
        assert_eq!(got.first().map(|p| p.0.as_str()), Some("d4"), "{name}");
        assert_ranking(&got, &brute_force(&encoded, &q), &format!("{name} tokens"));
    }
}
