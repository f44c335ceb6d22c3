//! Reading f32/f16/bf16 tensors out of `model.safetensors` by their Hugging Face names.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::tensor::TensorInfo;
use safetensors::{Dtype, SafeTensors};

use crate::config::Architecture;
use crate::error::{ModelError, Result};

/// A memory-mapped safetensors file with its header parsed once.
pub struct SafetensorsFile {
    path: PathBuf,
    mmap: Mmap,
    data_start: usize,
    tensors: HashMap<String, TensorInfo>,
    arch: Architecture,
}

impl SafetensorsFile {
    /// Maps and validates the header of `path`.
    pub fn open(path: &Path, arch: Architecture) -> Result<Self> {
        let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
        // SAFETY: the map is read-only and lives as long as `self`; a concurrent writer truncating
        // the file could fault the process, which is the documented caveat of every mmap reader
        // (the same as safetensors' own loaders). Model folders are not rewritten in place.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
        let (header_len, metadata) = SafeTensors::read_metadata(&mmap[..]).map_err(|e| {
            ModelError::invalid(
                path,
                format!("not a valid safetensors file ({e}); re-download the model folder"),
            )
        })?;
        let tensors = metadata
            .tensors()
            .into_iter()
            .map(|(name, info)| (name, info.clone()))
            .collect();
        Ok(SafetensorsFile {
            path: path.to_path_buf(),
            mmap,
            data_start: 8 + header_len,
            tensors,
            arch,
        })
    }

    /// Whether a tensor with exactly this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Finds the first of `candidates` that exists, checks its shape and returns it as f32.
    pub fn tensor(&self, candidates: &[String], shape: &[usize]) -> Result<Vec<f32>> {
        let Some((name, info)) = candidates
            .iter()
            .find_map(|n| self.tensors.get(n).map(|info| (n, info)))
        else {
            return Err(ModelError::MissingTensor {
                path: self.path.clone(),
                name: candidates.first().cloned().unwrap_or_default(),
                tried: candidates.join(", "),
                arch: self.arch.name(),
            });
        };
        if info.shape != shape {
            return Err(ModelError::BadTensor {
                path: self.path.clone(),
                name: name.clone(),
                found: format!("shape {:?}", info.shape),
                expected: format!("shape {shape:?}"),
            });
        }
        let (begin, end) = info.data_offsets;
        let bytes = &self.mmap[self.data_start + begin..self.data_start + end];
        let values = match info.dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(ModelError::BadTensor {
                    path: self.path.clone(),
                    name: name.clone(),
                    found: format!("dtype {other:?}"),
                    expected: "F32, F16 or BF16".into(),
                })
            }
        };
        Ok(values)
    }
}

/// The names a logical tensor may carry: with or without the base-model prefix, and with the
/// legacy `gamma`/`beta` LayerNorm names that older checkpoints (e.g. SPLADE-tiny) still use.
pub fn name_variants(prefix: &str, name: &str) -> Vec<String> {
    let mut bases = vec![format!("{prefix}{name}")];
    if !prefix.is_empty() {
        bases.push(name.to_string());
    }
    let mut out = Vec::with_capacity(bases.len() * 2);
    for base in bases {
        if let Some(stem) = base.strip_suffix("LayerNorm.weight") {
            out.push(base.clone());
            out.push(format!("{stem}LayerNorm.gamma"));
        } else if let Some(stem) = base.strip_suffix("LayerNorm.bias") {
            out.push(base.clone());
            out.push(format!("{stem}LayerNorm.beta"));
        } else {
            out.push(base);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_cover_prefix_and_legacy_layer_norm_names() {
        let v = name_variants("bert.", "embeddings.LayerNorm.weight");
        assert!(v.contains(&"bert.embeddings.LayerNorm.weight".to_string()));
        assert!(v.contains(&"bert.embeddings.LayerNorm.gamma".to_string()));
        assert!(v.contains(&"embeddings.LayerNorm.gamma".to_string()));
        assert_eq!(
            name_variants("", "cls.predictions.bias"),
            vec!["cls.predictions.bias"]
        );
    }
}
