//! `config.json` of a Hugging Face masked-LM checkpoint, reduced to what the forward pass needs.

use std::path::Path;

use serde_json::Value;

use crate::error::{ModelError, Result};

/// The two transformer families the document encoders use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// `model_type: distilbert` (`DistilBertForMaskedLM`): no token-type embeddings, `vocab_*` head.
    DistilBert,
    /// `model_type: bert` (`BertForMaskedLM`): token-type embeddings, `cls.predictions.*` head.
    Bert,
}

impl Architecture {
    /// The `model_type` string of config.json.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::DistilBert => "distilbert",
            Architecture::Bert => "bert",
        }
    }
}

/// The shape of a masked-LM transformer, as read from `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// DistilBERT or BERT.
    pub architecture: Architecture,
    /// Vocabulary size (30,522 for bert-base-uncased).
    pub vocab_size: usize,
    /// Hidden width.
    pub hidden_size: usize,
    /// Number of transformer layers.
    pub num_layers: usize,
    /// Attention heads per layer.
    pub num_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Longest input the position embeddings cover.
    pub max_position_embeddings: usize,
    /// Number of token types (BERT only; 0 for DistilBERT).
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f32,
    /// Whether the output projection shares the word embedding matrix.
    pub tie_word_embeddings: bool,
}

impl ModelConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        Self::from_json_str(&text).map_err(|problem| ModelError::invalid(path, problem))
    }

    /// Parses the JSON text of a config; the error is a human-readable problem statement.
    pub fn from_json_str(text: &str) -> std::result::Result<Self, String> {
        let json: Value =
            serde_json::from_str(text).map_err(|e| format!("not valid JSON ({e})"))?;
        let model_type = json
            .get("model_type")
            .and_then(Value::as_str)
            .ok_or("no \"model_type\"; expected \"distilbert\" or \"bert\"")?;
        let config = match model_type {
            "distilbert" => {
                if json.get("sinusoidal_pos_embds").and_then(Value::as_bool) == Some(true) {
                    // The embeddings are still stored in the checkpoint, so this is harmless, but say so.
                    tracing::debug!("sinusoidal_pos_embds=true: using the stored position table");
                }
                check_activation(&json, "activation")?;
                ModelConfig {
                    architecture: Architecture::DistilBert,
                    vocab_size: usize_field(&json, "vocab_size")?,
                    hidden_size: usize_field(&json, "dim")?,
                    num_layers: usize_field(&json, "n_layers")?,
                    num_heads: usize_field(&json, "n_heads")?,
                    intermediate_size: usize_field(&json, "hidden_dim")?,
                    max_position_embeddings: usize_field(&json, "max_position_embeddings")?,
                    type_vocab_size: 0,
                    layer_norm_eps: 1e-12,
                    tie_word_embeddings: bool_field(&json, "tie_word_embeddings", true),
                }
            }
            "bert" => {
                check_activation(&json, "hidden_act")?;
                if let Some(kind) = json.get("position_embedding_type").and_then(Value::as_str) {
                    if kind != "absolute" {
                        return Err(format!(
                            "position_embedding_type \"{kind}\" is not supported; only \"absolute\" is"
                        ));
                    }
                }
                ModelConfig {
                    architecture: Architecture::Bert,
                    vocab_size: usize_field(&json, "vocab_size")?,
                    hidden_size: usize_field(&json, "hidden_size")?,
                    num_layers: usize_field(&json, "num_hidden_layers")?,
                    num_heads: usize_field(&json, "num_attention_heads")?,
                    intermediate_size: usize_field(&json, "intermediate_size")?,
                    max_position_embeddings: usize_field(&json, "max_position_embeddings")?,
                    type_vocab_size: usize_field(&json, "type_vocab_size").unwrap_or(2),
                    layer_norm_eps: json
                        .get("layer_norm_eps")
                        .and_then(Value::as_f64)
                        .unwrap_or(1e-12) as f32,
                    tie_word_embeddings: bool_field(&json, "tie_word_embeddings", true),
                }
            }
            other => {
                return Err(format!(
                    "model_type \"{other}\" is not supported; nsparse runs \"distilbert\" and \"bert\" masked-LMs"
                ))
            }
        };
        if config.hidden_size == 0
            || config.num_heads == 0
            || config.hidden_size % config.num_heads != 0
        {
            return Err(format!(
                "hidden size {} is not a positive multiple of the {} attention heads",
                config.hidden_size, config.num_heads
            ));
        }
        if config.max_position_embeddings < 2 || config.vocab_size == 0 {
            return Err("vocab_size and max_position_embeddings must be positive".into());
        }
        Ok(config)
    }
}

fn usize_field(json: &Value, key: &str) -> std::result::Result<usize, String> {
    json.get(key)
        .and_then(Value::as_u64)
        .map(|v| v as usize)
        .ok_or_else(|| format!("missing or non-integer \"{key}\""))
}

fn bool_field(json: &Value, key: &str, default: bool) -> bool {
    json.get(key).and_then(Value::as_bool).unwrap_or(default)
}

fn check_activation(json: &Value, key: &str) -> std::result::Result<(), String> {
    match json.get(key).and_then(Value::as_str).unwrap_or("gelu") {
        "gelu" => Ok(()),
        other => Err(format!(
            "{key} \"{other}\" is not supported; nsparse implements the exact erf \"gelu\" of the OpenSearch and SPLADE models"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_distilbert_and_bert() {
        let d = ModelConfig::from_json_str(
            r#"{"model_type":"distilbert","vocab_size":30522,"dim":768,"n_layers":6,"n_heads":12,
                "hidden_dim":3072,"max_position_embeddings":512,"activation":"gelu"}"#,
        )
        .unwrap();
        assert_eq!(d.architecture, Architecture::DistilBert);
        assert_eq!(
            (d.hidden_size, d.num_layers, d.intermediate_size),
            (768, 6, 3072)
        );
        let b = ModelConfig::from_json_str(
            r#"{"model_type":"bert","vocab_size":30522,"hidden_size":128,"num_hidden_layers":2,
                "num_attention_heads":2,"intermediate_size":512,"max_position_embeddings":512,
                "type_vocab_size":2,"layer_norm_eps":1e-12,"hidden_act":"gelu"}"#,
        )
        .unwrap();
        assert_eq!(b.architecture, Architecture::Bert);
        assert_eq!(b.type_vocab_size, 2);
    }

    #[test]
    fn rejects_unknown_model_type_and_activation() {
        let e = ModelConfig::from_json_str(r#"{"model_type":"roberta"}"#).unwrap_err();
        assert!(e.contains("roberta") && e.contains("distilbert"), "{e}");
        let e = ModelConfig::from_json_str(
            r#"{"model_type":"bert","vocab_size":10,"hidden_size":8,"num_hidden_layers":1,
                "num_attention_heads":2,"intermediate_size":16,"max_position_embeddings":16,
                "hidden_act":"gelu_new"}"#,
        )
        .unwrap_err();
        assert!(e.contains("gelu_new"), "{e}");
        assert!(ModelConfig::from_json_str("not json")
            .unwrap_err()
            .contains("JSON"));
    }
}
