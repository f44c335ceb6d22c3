//! The golden check of the OpenSearch model card, on the built-in inference-free query model.

use nsparse_model::{QueryMode, SparseEncoder, SparseVector};

fn weight(encoder: &SparseEncoder, vector: &SparseVector, token: &str) -> f32 {
    vector.get(encoder.tokenizer().id(token).expect("token in vocabulary"))
}

#[test]
fn model_card_query_weights_and_score() {
    let encoder = SparseEncoder::builtin_query_model();
    assert_eq!(encoder.query_mode(), QueryMode::InferenceFree);
    assert!(!encoder.can_encode_documents());
    let query = encoder
        .encode_query("What's the weather in ny now?")
        .unwrap();

    for (token, expected) in [("ny", 5.7729), ("weather", 4.5684), ("now", 3.5895)] {
        let got = weight(&encoder, &query, token);
        assert!(
            (got - expected).abs() < 1e-4,
            "{token}: {got} vs {expected}"
        );
    }
    for special in ["[CLS]", "[SEP]"] {
        assert_eq!(
            weight(&encoder, &query, special),
            0.0,
            "{special} must not be in a query"
        );
    }
    // Every query token once, weighted by idf: what ' s the weather in ny now ?
    let decoded: Vec<String> = encoder.decode(&query).into_iter().map(|p| p.0).collect();
    for token in ["what", "'", "s", "the", "weather", "in", "ny", "now", "?"] {
        assert!(
            decoded.iter().any(|t| t == token),
            "{token} missing from {decoded:?}"
        );
    }
    assert_eq!(decoded.len(), 9, "{decoded:?}");
    assert!((weight(&encoder, &query, "the") - 0.135_301_65).abs() < 1e-6);

    // The document side of the model card (doc-v2-distill weights for the matched tokens).
    let doc = encoder
        .vector_from_tokens([("ny", 1.4109f32), ("weather", 1.4673), ("now", 0.7473)])
        .unwrap();
    let score = encoder.similarity(&query, &doc);
    assert!((score - 17.5307).abs() < 1e-3, "score {score}");
}

#[test]
fn repeated_tokens_count_once_and_unknown_tokens_are_rejected_in_token_maps() {
    let encoder = SparseEncoder::builtin_query_model();
    let once = encoder.encode_query("weather").unwrap();
    let thrice = encoder.encode_query("weather weather WEATHER").unwrap();
    assert_eq!(once, thrice);
    assert!(encoder.vector_from_tokens([("notatoken!!", 1.0)]).is_err());
    assert!(encoder.vector_from_tokens([("ny", -1.0)]).is_err());
    assert!(encoder.encode_query("").unwrap().is_empty());
}

#[test]
fn query_only_model_cannot_encode_documents() {
    let encoder = SparseEncoder::builtin_query_model();
    let e = encoder
        .encode_document("a document")
        .unwrap_err()
        .to_string();
    assert!(e.contains("query-only"), "{e}");
}

#[test]
fn long_queries_are_cut_at_512_tokens() {
    let encoder = SparseEncoder::builtin_query_model();
    let words: Vec<String> = (0..700).map(|i| format!("w{i}")).collect();
    let t = encoder
        .tokenizer()
        .tokenize_query(&words.join(" "))
        .unwrap();
    assert!(t.truncated);
    assert_eq!(t.ids.len(), 512);
}
