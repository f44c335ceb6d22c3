//! Parity with PyTorch on random masked-LMs with large generated WordPiece vocabularies:
//! a cased BERT of 105,879 tokens laid out like bert-base-multilingual-cased, and an uncased
//! DistilBERT of 250,002 tokens with `[MASK]` at the last id (both hidden ≤ 16, tied projection,
//! f16). Fixtures and each folder's random idf.json come from scripts/make_fixtures.py.

mod common;

use std::collections::HashMap;

use common::{check_fixture, compare, fixtures_dir, load, read_fixture, Fixture};
use nsparse_model::{
    Architecture, EncoderOptions, LongDocuments, MaskedLm, ModelConfig, Precision, QueryMode,
    SparseEncoder, SparseVector,
};

/// The brief's parity bound: 1e-4 absolute per weight.
const EXACT_TOLERANCE: f32 = 1e-4;

/// (fixture name, vocab_size, architecture, special ids).
const MODELS: [(&str, usize, Architecture, &[u32]); 2] = [
    (
        "tiny-mbert-105879",
        105_879,
        Architecture::Bert,
        &[0, 100, 101, 102, 103],
    ),
    (
        "tiny-distilbert-250002",
        250_002,
        Architecture::DistilBert,
        &[0, 1, 2, 3, 250_001],
    ),
];

fn idf_json(name: &str) -> HashMap<String, f32> {
    let path = fixtures_dir().join(name).join("idf.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn check_document_parity(name: &str, vocab: usize, arch: Architecture, specials: &[u32]) {
    let encoder = load(&fixtures_dir().join(name), Precision::Exact);
    let config = encoder.config().unwrap();
    assert_eq!(config.architecture, arch);
    assert_eq!(config.vocab_size, vocab);
    assert!(config.tie_word_embeddings);
    assert_eq!(encoder.tokenizer().vocab_size(), vocab);
    assert_eq!(encoder.vocab_size(), vocab);
    assert_eq!(encoder.tokenizer().special_ids(), specials);
    let fixture = read_fixture(name);
    assert_eq!(fixture.special_ids, specials);
    let worst = check_fixture(&encoder, &fixture, EXACT_TOLERANCE);
    eprintln!("{name} exact: max abs weight error {worst:.2e}");

    // The vectors really use the ids a u16 cannot hold (in proportion to the range above
    // 65,535), up to the last ones.
    let ids: Vec<u32> = fixture.texts.iter().flat_map(|t| t.ids.clone()).collect();
    let high = ids.iter().filter(|&&id| id > u32::from(u16::MAX)).count();
    assert!(
        high * vocab > ids.len() * (vocab - 65_536) / 2,
        "{name}: {high} of {} ids above 65,535",
        ids.len()
    );
    assert!(ids.iter().any(|&id| id as usize >= vocab - vocab / 50));
    for t in &fixture.texts {
        assert!(t.ids.iter().all(|id| specials.binary_search(id).is_err()));
    }
}

#[test]
fn mbert_105879_matches_pytorch() {
    let (name, vocab, arch, specials) = MODELS[0];
    check_document_parity(name, vocab, arch, specials);
}

#[test]
fn distilbert_250002_matches_pytorch() {
    let (name, vocab, arch, specials) = MODELS[1];
    check_document_parity(name, vocab, arch, specials);
}

/// The folder's idf.json weighs queries by token string: each unique query token PyTorch's
/// tokenizer produced gets its idf.json weight, tokens the file lacks (and special tokens) weigh 0,
/// and the file's strings that are not in the vocabulary are ignored.
#[test]
fn inference_free_queries_use_the_folders_idf_json() {
    for (name, _, _, specials) in MODELS {
        let encoder = load(&fixtures_dir().join(name), Precision::Exact);
        assert_eq!(encoder.query_mode(), QueryMode::InferenceFree);
        let idf = idf_json(name);
        assert!(idf.keys().any(|t| encoder.tokenizer().id(t).is_none()));
        let fixture = read_fixture(name);
        let (mut weighted, mut missing, mut high) = (0, 0, 0);
        for t in &fixture.texts {
            let query = encoder.encode_query(&t.text).unwrap();
            let expected = SparseVector::from_pairs(
                t.query_ids
                    .iter()
                    .map(|&id| {
                        let token = encoder.tokenizer().token(id).unwrap();
                        (id, idf.get(&token).copied().unwrap_or(0.0))
                    })
                    .collect(),
            );
            assert_eq!(query, expected, "{name}: query {:?}", t.text);
            assert!(query
                .ids()
                .iter()
                .all(|id| specials.binary_search(id).is_err()));
            weighted += query.len();
            missing += t.query_ids.len() - query.len();
            high += query.ids().iter().filter(|&&id| id > 65_535).count();
            // Feature names are the model's own token strings, and they map back.
            let decoded = encoder.decode(&query);
            for (token, weight) in &decoded {
                assert_eq!(idf[token], *weight, "{name}: {token:?}");
            }
            let back = encoder
                .vector_from_tokens(decoded.iter().map(|(t, w)| (t.as_str(), *w)))
                .unwrap();
            assert_eq!(back, query);
        }
        assert!(
            weighted > 100 && missing > 10 && high > 50,
            "{name}: {weighted} {missing} {high}"
        );
        let batch: Vec<&str> = fixture.texts.iter().map(|t| t.text.as_str()).collect();
        let queries = encoder.encode_queries(&batch).unwrap();
        for (t, q) in fixture.texts.iter().zip(&queries) {
            assert_eq!(*q, encoder.encode_query(&t.text).unwrap());
        }
    }
}

/// Without idf.json a query goes through the network: the document path, so it matches PyTorch too.
#[test]
fn bi_encoder_queries_equal_the_document_path() {
    for (name, ..) in MODELS {
        let encoder = load(&fixtures_dir().join(name), Precision::Exact)
            .without_idf()
            .unwrap();
        assert_eq!(encoder.query_mode(), QueryMode::BiEncoder);
        let fixture = read_fixture(name);
        let texts: Vec<&str> = fixture.texts.iter().map(|t| t.text.as_str()).collect();
        let queries = encoder.encode_queries(&texts).unwrap();
        let documents = encoder.encode_documents(&texts, |_| {}).unwrap().vectors;
        assert_eq!(queries, documents, "{name}");
        for (t, q) in fixture.texts.iter().zip(&queries).take(12) {
            assert_eq!(*q, encoder.encode_query(&t.text).unwrap(), "{name}");
            let (err, mismatch) = compare(q, &t.ids, &t.weights, EXACT_TOLERANCE);
            assert!(
                err <= EXACT_TOLERANCE && mismatch.is_empty(),
                "{name}: {err} {mismatch:?}"
            );
        }
        // A query and a document that share tokens score their dot product.
        let (q, d) = (&queries[8], &documents[7]);
        assert!(encoder.similarity(q, d) > 0.0);
        assert_eq!(encoder.similarity(q, d), q.dot(d));
    }
}

/// Every token string of the vocabulary maps to its id and back (the token table at 250k entries,
/// CJK and accented keys included).
#[test]
fn every_token_string_round_trips() {
    for (name, vocab, ..) in MODELS {
        let encoder = load(&fixtures_dir().join(name), Precision::Fast);
        let tokenizer = encoder.tokenizer();
        let mut tokens = Vec::with_capacity(vocab);
        for id in 0..vocab as u32 {
            let token = tokenizer.token(id).unwrap();
            assert_eq!(tokenizer.id(&token), Some(id), "{name}: {token:?}");
            tokens.push(token);
        }
        assert_eq!(tokenizer.token(vocab as u32), None);
        let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
        let ids = tokenizer.ids_of(&refs);
        assert!(ids.iter().enumerate().all(|(i, id)| *id == Some(i as u32)));
        assert!(tokens
            .iter()
            .any(|t| t.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))));
    }
    let mbert = load(&fixtures_dir().join(MODELS[0].0), Precision::Fast);
    for word in ["café", "Zürich", "Ångström"] {
        assert!(mbert.tokenizer().id(word).is_some(), "{word}");
    }
}

/// The sparse pooling the encoder uses equals the dense one, bit for bit, on a whole batch, and
/// chunked long documents are the element-wise maximum of their windows.
#[test]
fn sparse_pooling_equals_dense_and_chunks_take_the_maximum() {
    for (name, ..) in MODELS {
        let dir = fixtures_dir().join(name);
        let config = ModelConfig::from_file(&dir.join("config.json")).unwrap();
        let file = nsparse_model::weights::SafetensorsFile::open(
            &dir.join("model.safetensors"),
            config.architecture,
        )
        .unwrap();
        let fixture: Fixture = read_fixture(name);
        for precision in [Precision::Exact, Precision::Fast] {
            let network = MaskedLm::load(&file, &config, precision).unwrap();
            let batch: Vec<&[u32]> = fixture
                .texts
                .iter()
                .map(|t| t.input_ids.as_slice())
                .collect();
            let dense = network.pool_batch(&batch).unwrap();
            let sparse = network.pool_batch_sparse(&batch).unwrap();
            assert_eq!(dense.len(), sparse.len());
            for (d, s) in dense.iter().zip(&sparse) {
                assert_eq!(*s, SparseVector::from_dense(d), "{name} {precision:?}");
            }
        }

        let chunking = SparseEncoder::load(
            dir.to_str().unwrap(),
            EncoderOptions {
                long_documents: LongDocuments::Chunk,
                ..EncoderOptions::default()
            },
        )
        .unwrap();
        let network = MaskedLm::load(&file, &config, Precision::Exact).unwrap();
        let long = fixture.texts.iter().find(|t| t.truncated).unwrap();
        let tokenizer = chunking.tokenizer();
        let content = tokenizer.tokenize_document_untruncated(&long.text).unwrap();
        let (cls, sep) = tokenizer.cls_sep().unwrap();
        let windows: Vec<Vec<u32>> = content
            .chunks(tokenizer.max_length() - 2)
            .map(|c| [&[cls][..], c, &[sep][..]].concat())
            .collect();
        assert!(windows.len() >= 2);
        let mut want = vec![0.0f32; config.vocab_size];
        for window in &windows {
            let pooled = network.pool_batch(&[window.as_slice()]).unwrap();
            for (w, p) in want.iter_mut().zip(&pooled[0]) {
                *w = w.max(*p);
            }
        }
        for &id in tokenizer.special_ids() {
            want[id as usize] = 0.0;
        }
        let got = chunking.encode_document(&long.text).unwrap();
        assert_eq!(got, SparseVector::from_dense(&want), "{name}");
    }
}

/// The fast (int16) mode's error stays within the documented bound (2e-2) on these models too.
#[test]
fn fast_mode_error_is_bounded() {
    for (name, ..) in MODELS {
        common::assert_fast_mode_error_bounded(name);
    }
}
