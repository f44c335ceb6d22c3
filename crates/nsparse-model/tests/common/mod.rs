//! Shared helpers of the parity tests: reading the PyTorch fixtures and comparing vectors.

#![allow(dead_code)]

use std::path::PathBuf;

use nsparse_model::{EncoderOptions, Precision, SparseEncoder, SparseVector};
use serde::Deserialize;

/// One text of a fixture file, with PyTorch's outputs.
#[derive(Deserialize)]
pub struct FixtureText {
    pub text: String,
    pub input_ids: Vec<u32>,
    pub truncated: bool,
    pub ids: Vec<u32>,
    pub weights: Vec<f32>,
    pub query_ids: Vec<u32>,
}

/// A fixture file written by scripts/make_fixtures.py.
#[derive(Deserialize)]
pub struct Fixture {
    pub model: String,
    /// The ids whose document weight PyTorch zeroed (the tokenizer's special tokens).
    #[serde(default)]
    pub special_ids: Vec<u32>,
    pub texts: Vec<FixtureText>,
}

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn read_fixture(name: &str) -> Fixture {
    let path = fixtures_dir().join(format!("{name}.expected.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn load(dir: &std::path::Path, precision: Precision) -> SparseEncoder {
    let options = EncoderOptions {
        precision,
        ..EncoderOptions::default()
    };
    SparseEncoder::load(dir.to_str().unwrap(), options).unwrap_or_else(|e| panic!("{e}"))
}

/// Largest absolute weight difference, and the ids whose non-zero status differs although one
/// side's weight is ≥ `min_weight`.
pub fn compare(
    ours: &SparseVector,
    ids: &[u32],
    weights: &[f32],
    min_weight: f32,
) -> (f32, Vec<u32>) {
    let expected =
        SparseVector::from_pairs(ids.iter().copied().zip(weights.iter().copied()).collect());
    let mut all: Vec<u32> = ours.ids().iter().chain(expected.ids()).copied().collect();
    all.sort_unstable();
    all.dedup();
    let mut max_err = 0.0f32;
    let mut set_mismatch = Vec::new();
    for id in all {
        let (a, b) = (ours.get(id), expected.get(id));
        max_err = max_err.max((a - b).abs());
        if (a == 0.0) != (b == 0.0) && a.max(b) >= min_weight {
            set_mismatch.push(id);
        }
    }
    (max_err, set_mismatch)
}

/// Checks a whole fixture: tokenization, query ids, and document vectors within `tolerance`.
/// Returns the largest weight error seen.
pub fn check_fixture(encoder: &SparseEncoder, fixture: &Fixture, tolerance: f32) -> f32 {
    let tokenizer = encoder.tokenizer();
    for t in &fixture.texts {
        let doc = tokenizer.tokenize_document(&t.text).unwrap();
        assert_eq!(
            doc.ids, t.input_ids,
            "{}: document tokens of {:?}",
            fixture.model, t.text
        );
        assert_eq!(
            doc.truncated, t.truncated,
            "{}: truncation of {:?}",
            fixture.model, t.text
        );
        let mut query = tokenizer.tokenize_query(&t.text).unwrap().ids;
        query.sort_unstable();
        query.dedup();
        assert_eq!(
            query, t.query_ids,
            "{}: query tokens of {:?}",
            fixture.model, t.text
        );
    }
    // All texts in one call: exercises length-sorted, token-packed batching.
    let texts: Vec<&str> = fixture.texts.iter().map(|t| t.text.as_str()).collect();
    let encoded = encoder.encode_documents(&texts, |_| {}).unwrap();
    assert_eq!(
        encoded.truncated,
        fixture.texts.iter().filter(|t| t.truncated).count()
    );
    let mut worst = 0.0f32;
    for (t, ours) in fixture.texts.iter().zip(&encoded.vectors) {
        let (err, mismatch) = compare(ours, &t.ids, &t.weights, tolerance);
        assert!(
            err <= tolerance && mismatch.is_empty(),
            "{}: {:?}: max error {err}, non-zero set differs at {mismatch:?}",
            fixture.model,
            t.text
        );
        worst = worst.max(err);
    }
    // One at a time gives the same vectors as the packed batch.
    for (t, batched) in fixture.texts.iter().zip(&encoded.vectors).take(8) {
        let single = encoder.encode_document(&t.text).unwrap();
        let (err, _) = compare(&single, batched.ids(), batched.weights(), tolerance);
        assert!(
            err <= 1e-5,
            "{}: batch vs single differ by {err}",
            fixture.model
        );
    }
    worst
}

/// The fast (int16) mode's largest weight error on fixture `name` stays within the documented
/// bound (`Precision::Fast`: 2e-2 absolute); the error is printed.
pub fn assert_fast_mode_error_bounded(name: &str) {
    let encoder = load(&fixtures_dir().join(name), Precision::Fast);
    let fixture = read_fixture(name);
    let texts: Vec<&str> = fixture.texts.iter().map(|t| t.text.as_str()).collect();
    let encoded = encoder.encode_documents(&texts, |_| {}).unwrap();
    let mut worst = 0.0f32;
    for (t, ours) in fixture.texts.iter().zip(&encoded.vectors) {
        worst = worst.max(compare(ours, &t.ids, &t.weights, f32::INFINITY).0);
    }
    eprintln!("{name} fast: max abs weight error {worst:.2e}");
    assert!(worst < 2e-2, "{name}: fast-mode error {worst}");
}
