//! Model folders in their other shapes: vocab.txt instead of tokenizer.json, bf16 weights, and
//! the clear errors of broken folders.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::fixtures_dir;
use nsparse_model::{EncoderOptions, SparseEncoder};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

const TEXTS: &[&str] = &[
    "Currently New York is rainy.",
    "Ångström café [MASK] naïve 中文 😀",
    "",
    "a",
];

fn copy_fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixtures_dir().join(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

fn load(dir: &Path) -> nsparse_model::Result<SparseEncoder> {
    SparseEncoder::load(dir.to_str().unwrap(), EncoderOptions::default())
}

fn encode_all(encoder: &SparseEncoder) -> Vec<nsparse_model::SparseVector> {
    encoder.encode_documents(TEXTS, |_| {}).unwrap().vectors
}

#[test]
fn vocab_txt_folder_encodes_like_tokenizer_json() {
    let reference = encode_all(&load(&fixtures_dir().join("tiny-distilbert")).unwrap());
    let dir = copy_fixture("tiny-distilbert");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("tokenizer.json")).unwrap()).unwrap();
    let mut vocab: Vec<(&str, u64)> = json["model"]["vocab"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(t, id)| (t.as_str(), id.as_u64().unwrap()))
        .collect();
    vocab.sort_by_key(|v| v.1);
    let lines: Vec<&str> = vocab.iter().map(|v| v.0).collect();
    std::fs::write(dir.path().join("vocab.txt"), lines.join("\n") + "\n").unwrap();
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    assert_eq!(encode_all(&load(dir.path()).unwrap()), reference);
}

/// Rewrites every tensor of `src` as bf16 into `bf16_path`, and the same bf16-rounded values as
/// f32 into `f32_path`: both files hold identical weights in different dtypes.
fn write_bf16_pair(src: &Path, bf16_path: &Path, f32_path: &Path) {
    let bytes = std::fs::read(src).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let mut bf16_data: HashMap<String, (Vec<usize>, Vec<u8>)> = HashMap::new();
    let mut f32_data: HashMap<String, (Vec<usize>, Vec<u8>)> = HashMap::new();
    for (name, view) in tensors.tensors() {
        assert_eq!(view.dtype(), Dtype::F32);
        let rounded: Vec<half::bf16> = view
            .data()
            .chunks_exact(4)
            .map(|b| half::bf16::from_f32(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            .collect();
        let shape = view.shape().to_vec();
        bf16_data.insert(
            name.clone(),
            (
                shape.clone(),
                rounded.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
        );
        f32_data.insert(
            name,
            (
                shape,
                rounded
                    .iter()
                    .flat_map(|v| v.to_f32().to_le_bytes())
                    .collect(),
            ),
        );
    }
    let write = |data: &HashMap<String, (Vec<usize>, Vec<u8>)>, dtype: Dtype, path: &Path| {
        let views: Vec<(String, TensorView)> = data
            .iter()
            .map(|(n, (s, d))| (n.clone(), TensorView::new(dtype, s.clone(), d).unwrap()))
            .collect();
        safetensors::serialize_to_file(views, &None, path).unwrap();
    };
    write(&bf16_data, Dtype::BF16, bf16_path);
    write(&f32_data, Dtype::F32, f32_path);
}

#[test]
fn bf16_weights_load_like_their_f32_values() {
    let bf16_dir = copy_fixture("tiny-distilbert");
    let f32_dir = copy_fixture("tiny-distilbert");
    let src = fixtures_dir().join("tiny-distilbert/model.safetensors");
    write_bf16_pair(
        &src,
        &bf16_dir.path().join("model.safetensors"),
        &f32_dir.path().join("model.safetensors"),
    );
    let a = encode_all(&load(bf16_dir.path()).unwrap());
    let b = encode_all(&load(f32_dir.path()).unwrap());
    assert_eq!(a, b);
    assert!(a.iter().any(|v| !v.is_empty()));
}

#[test]
fn broken_folders_are_clear_errors() {
    // config.json that disagrees with the weights.
    let dir = copy_fixture("tiny-distilbert");
    let config_path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["dim"] = serde_json::json!(64);
    config["hidden_dim"] = serde_json::json!(128);
    std::fs::write(&config_path, config.to_string()).unwrap();
    let e = load(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("model.safetensors") && e.contains("shape"),
        "{e}"
    );

    // Unknown architecture.
    config["model_type"] = serde_json::json!("roberta");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let e = load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("config.json") && e.contains("roberta"), "{e}");

    // Truncated weights file.
    let dir = copy_fixture("tiny-bert");
    let weights = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let e = load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("model.safetensors"), "{e}");

    // A tensor missing from the file.
    let dir = copy_fixture("tiny-bert");
    let weights = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, TensorView)> = tensors
        .tensors()
        .into_iter()
        .filter(|(n, _)| !n.contains("layer.1.output.dense.weight"))
        .collect();
    let out = dir.path().join("pruned.safetensors");
    safetensors::serialize_to_file(kept, &None, &out).unwrap();
    std::fs::rename(&out, &weights).unwrap();
    let e = load(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("layer.1.output.dense.weight") && e.contains("not found"),
        "{e}"
    );
}
