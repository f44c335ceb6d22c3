//! Parity with PyTorch on random tiny DistilBERT (f32) and BERT (f16, untied decoder) masked-LMs
//! with the real 30,522-token vocabulary; fixtures from scripts/make_fixtures.py.

mod common;

use common::{check_fixture, fixtures_dir, load, read_fixture};
use nsparse_model::{Architecture, Precision};

/// The brief's parity bound: 1e-4 absolute per weight.
const EXACT_TOLERANCE: f32 = 1e-4;

#[test]
fn tiny_distilbert_matches_pytorch() {
    let encoder = load(&fixtures_dir().join("tiny-distilbert"), Precision::Exact);
    assert_eq!(
        encoder.config().unwrap().architecture,
        Architecture::DistilBert
    );
    let worst = check_fixture(&encoder, &read_fixture("tiny-distilbert"), EXACT_TOLERANCE);
    eprintln!("tiny-distilbert exact: max abs weight error {worst:.2e}");
}

#[test]
fn tiny_bert_f16_untied_matches_pytorch() {
    let encoder = load(&fixtures_dir().join("tiny-bert"), Precision::Exact);
    let config = encoder.config().unwrap();
    assert_eq!(config.architecture, Architecture::Bert);
    assert!(!config.tie_word_embeddings);
    let worst = check_fixture(&encoder, &read_fixture("tiny-bert"), EXACT_TOLERANCE);
    eprintln!("tiny-bert exact: max abs weight error {worst:.2e}");
}

/// The fast (int16) mode trades a little accuracy for speed; its error on the fixtures is
/// measured here and must stay within the documented bound (`Precision::Fast`: 2e-2 absolute).
#[test]
fn fast_mode_error_is_bounded() {
    for name in ["tiny-distilbert", "tiny-bert"] {
        common::assert_fast_mode_error_bounded(name);
    }
}
