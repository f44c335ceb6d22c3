//! The masked-LM forward pass (DistilBERT or BERT) fused with SPLADE max-pooling.
//!
//! Sequences of a batch are packed back to back (no padding): the dense layers run once over all
//! tokens of the batch, attention runs per sequence, and the vocabulary projection is fused with
//! the max over positions so the `tokens × vocab` logits are never materialised.

use nsparse_kernels::{add_layer_norm, attention, PackedLinear, PackedVocabProjection, Precision};
use rayon::prelude::*;

use crate::config::{Architecture, ModelConfig};
use crate::error::{ModelError, Result};
use crate::sparse::SparseVector;
use crate::weights::{name_variants, SafetensorsFile};

struct LayerNormParams {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

struct TransformerLayer {
    qkv: PackedLinear,
    attention_out: PackedLinear,
    attention_norm: LayerNormParams,
    ffn_in: PackedLinear,
    ffn_out: PackedLinear,
    ffn_norm: LayerNormParams,
}

/// A loaded masked-LM with its weights packed for the kernels.
pub struct MaskedLm {
    config: ModelConfig,
    precision: Precision,
    word_embeddings: Vec<f32>,
    position_embeddings: Vec<f32>,
    /// Row 0 of BERT's token-type table (all inputs are single segments); zeros for DistilBERT.
    token_type_zero: Vec<f32>,
    embedding_norm: LayerNormParams,
    layers: Vec<TransformerLayer>,
    head_transform: PackedLinear,
    head_norm: LayerNormParams,
    projection: PackedVocabProjection,
}

/// Tensor names of one architecture.
struct Names {
    base: &'static str,
    embeddings: &'static str,
    layer: &'static str,
    q: &'static str,
    k: &'static str,
    v: &'static str,
    attention_out: &'static str,
    attention_norm: &'static str,
    ffn_in: &'static str,
    ffn_out: &'static str,
    ffn_norm: &'static str,
    head_dense: &'static str,
    head_norm: &'static str,
    decoder_weight: &'static str,
    decoder_bias: [&'static str; 2],
}

const DISTILBERT: Names = Names {
    base: "distilbert.",
    embeddings: "embeddings.",
    layer: "transformer.layer.",
    q: "attention.q_lin",
    k: "attention.k_lin",
    v: "attention.v_lin",
    attention_out: "attention.out_lin",
    attention_norm: "sa_layer_norm",
    ffn_in: "ffn.lin1",
    ffn_out: "ffn.lin2",
    ffn_norm: "output_layer_norm",
    head_dense: "vocab_transform",
    head_norm: "vocab_layer_norm",
    decoder_weight: "vocab_projector.weight",
    decoder_bias: ["vocab_projector.bias", "vocab_projector.bias"],
};

const BERT: Names = Names {
    base: "bert.",
    embeddings: "embeddings.",
    layer: "encoder.layer.",
    q: "attention.self.query",
    k: "attention.self.key",
    v: "attention.self.value",
    attention_out: "attention.output.dense",
    attention_norm: "attention.output.LayerNorm",
    ffn_in: "intermediate.dense",
    ffn_out: "output.dense",
    ffn_norm: "output.LayerNorm",
    head_dense: "cls.predictions.transform.dense",
    head_norm: "cls.predictions.transform.LayerNorm",
    decoder_weight: "cls.predictions.decoder.weight",
    decoder_bias: ["cls.predictions.bias", "cls.predictions.decoder.bias"],
};

struct Loader<'a> {
    file: &'a SafetensorsFile,
    names: &'static Names,
}

impl Loader<'_> {
    /// A tensor of the base model (`distilbert.` / `bert.` prefix optional).
    fn base(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        self.file
            .tensor(&name_variants(self.names.base, name), shape)
    }

    /// A tensor of the masked-LM head (no prefix).
    fn head(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        self.file.tensor(&name_variants("", name), shape)
    }

    fn norm(
        &self,
        tensor: impl Fn(&str, &[usize]) -> Result<Vec<f32>>,
        stem: &str,
        dim: usize,
    ) -> Result<LayerNormParams> {
        Ok(LayerNormParams {
            gamma: tensor(&format!("{stem}.weight"), &[dim])?,
            beta: tensor(&format!("{stem}.bias"), &[dim])?,
        })
    }
}

impl MaskedLm {
    /// Loads the network from a safetensors file whose shapes must match `config`.
    pub fn load(
        file: &SafetensorsFile,
        config: &ModelConfig,
        precision: Precision,
    ) -> Result<Self> {
        let names = match config.architecture {
            Architecture::DistilBert => &DISTILBERT,
            Architecture::Bert => &BERT,
        };
        let l = Loader { file, names };
        let (h, v, inter) = (
            config.hidden_size,
            config.vocab_size,
            config.intermediate_size,
        );
        let emb = names.embeddings;
        let word_embeddings = l.base(&format!("{emb}word_embeddings.weight"), &[v, h])?;
        let position_embeddings = l.base(
            &format!("{emb}position_embeddings.weight"),
            &[config.max_position_embeddings, h],
        )?;
        let token_type_zero = if config.architecture == Architecture::Bert {
            let table = l.base(
                &format!("{emb}token_type_embeddings.weight"),
                &[config.type_vocab_size, h],
            )?;
            table[..h].to_vec()
        } else {
            vec![0.0; h]
        };
        let embedding_norm = l.norm(|n, s| l.base(n, s), &format!("{emb}LayerNorm"), h)?;
        let linear = |stem: &str, n_out: usize, k: usize| -> Result<(Vec<f32>, Vec<f32>)> {
            Ok((
                l.base(&format!("{stem}.weight"), &[n_out, k])?,
                l.base(&format!("{stem}.bias"), &[n_out])?,
            ))
        };
        let mut layers = Vec::with_capacity(config.num_layers);
        for i in 0..config.num_layers {
            let p = format!("{}{i}.", names.layer);
            // Q, K and V share their input: one GEMM with the three weight matrices stacked.
            let mut qkv_w = Vec::with_capacity(3 * h * h);
            let mut qkv_b = Vec::with_capacity(3 * h);
            for part in [names.q, names.k, names.v] {
                let (w, b) = linear(&format!("{p}{part}"), h, h)?;
                qkv_w.extend_from_slice(&w);
                qkv_b.extend_from_slice(&b);
            }
            let (ao_w, ao_b) = linear(&format!("{p}{}", names.attention_out), h, h)?;
            let (f1_w, f1_b) = linear(&format!("{p}{}", names.ffn_in), inter, h)?;
            let (f2_w, f2_b) = linear(&format!("{p}{}", names.ffn_out), h, inter)?;
            layers.push(TransformerLayer {
                qkv: PackedLinear::new(&qkv_w, 3 * h, h, Some(&qkv_b), precision),
                attention_out: PackedLinear::new(&ao_w, h, h, Some(&ao_b), precision),
                attention_norm: l.norm(
                    |n, s| l.base(n, s),
                    &format!("{p}{}", names.attention_norm),
                    h,
                )?,
                ffn_in: PackedLinear::new(&f1_w, inter, h, Some(&f1_b), precision),
                ffn_out: PackedLinear::new(&f2_w, h, inter, Some(&f2_b), precision),
                ffn_norm: l.norm(|n, s| l.base(n, s), &format!("{p}{}", names.ffn_norm), h)?,
            });
        }
        let head_w = l.head(&format!("{}.weight", names.head_dense), &[h, h])?;
        let head_b = l.head(&format!("{}.bias", names.head_dense), &[h])?;
        let head_norm = l.norm(|n, s| l.head(n, s), names.head_norm, h)?;
        // An untied decoder is its own tensor; a tied one may be omitted from the file.
        let decoder = if file.contains(names.decoder_weight) || !config.tie_word_embeddings {
            l.head(names.decoder_weight, &[v, h])?
        } else {
            word_embeddings.clone()
        };
        let decoder_bias = names
            .decoder_bias
            .iter()
            .find(|n| file.contains(n))
            .map(|n| l.head(n, &[v]))
            .unwrap_or_else(|| l.head(names.decoder_bias[0], &[v]))?;
        Ok(MaskedLm {
            config: config.clone(),
            precision,
            word_embeddings,
            position_embeddings,
            token_type_zero,
            embedding_norm,
            layers,
            head_transform: PackedLinear::new(&head_w, h, h, Some(&head_b), precision),
            head_norm,
            projection: PackedVocabProjection::new(&decoder, v, h, &decoder_bias, precision),
        })
    }

    /// The configuration the network was built from.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The arithmetic the kernels use.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Runs the network over a batch of token-id sequences and returns, per sequence, the dense
    /// pooled vector `max_p ln(1 + relu(logit[p][v]))` (length `vocab_size`).
    ///
    /// Takes `sequences × vocab_size` floats; [`MaskedLm::pool_batch_sparse`] does not.
    pub fn pool_batch(&self, sequences: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let Some((hidden, offsets)) = self.head_states(sequences)? else {
            return Ok(Vec::new());
        };
        let vocab = self.config.vocab_size;
        let mut flat = vec![0.0f32; sequences.len() * vocab];
        self.projection.max_pool_batch(&hidden, &offsets, &mut flat);
        Ok(flat.chunks_exact(vocab).map(<[f32]>::to_vec).collect())
    }

    /// [`MaskedLm::pool_batch`] as sparse vectors (the non-zero entries, same values): memory
    /// follows the non-zeros instead of `sequences × vocab_size`, which matters for large
    /// vocabularies (250,002 tokens × 1,000 short queries would be 1 GB dense).
    pub fn pool_batch_sparse(&self, sequences: &[&[u32]]) -> Result<Vec<SparseVector>> {
        let Some((hidden, offsets)) = self.head_states(sequences)? else {
            return Ok(Vec::new());
        };
        Ok(self
            .projection
            .max_pool_batch_sparse(&hidden, &offsets)
            .into_iter()
            .map(|(ids, weights)| SparseVector::from_sorted(ids, weights))
            .collect())
    }

    /// Checks the sequences and runs everything but the vocabulary projection: the output of the
    /// MLM head's transform and LayerNorm for every token of the batch, packed back to back, with
    /// the sequences' row offsets. `None` for an empty batch.
    fn head_states(&self, sequences: &[&[u32]]) -> Result<Option<(Vec<f32>, Vec<usize>)>> {
        let h = self.config.hidden_size;
        for seq in sequences {
            if seq.is_empty() || seq.len() > self.config.max_position_embeddings {
                return Err(ModelError::InvalidArgument {
                    what: "token sequence",
                    problem: format!(
                        "length {} is outside 1..={} (the model's max_position_embeddings)",
                        seq.len(),
                        self.config.max_position_embeddings
                    ),
                });
            }
            if let Some(id) = seq
                .iter()
                .find(|id| **id as usize >= self.config.vocab_size)
            {
                return Err(ModelError::InvalidArgument {
                    what: "token id",
                    problem: format!(
                        "{id} is outside the model's vocabulary of {}; tokenizer.json and config.json disagree",
                        self.config.vocab_size
                    ),
                });
            }
        }
        let offsets: Vec<usize> = std::iter::once(0)
            .chain(sequences.iter().scan(0, |acc, s| {
                *acc += s.len();
                Some(*acc)
            }))
            .collect();
        let total = *offsets.last().unwrap_or(&0);
        if total == 0 {
            return Ok(None);
        }

        let mut x = vec![0.0f32; total * h];
        for (seq, &start) in sequences.iter().zip(&offsets) {
            for (pos, &id) in seq.iter().enumerate() {
                let row = &mut x[(start + pos) * h..(start + pos + 1) * h];
                let word = &self.word_embeddings[id as usize * h..(id as usize + 1) * h];
                let position = &self.position_embeddings[pos * h..(pos + 1) * h];
                for (((out, w), p), t) in row
                    .iter_mut()
                    .zip(word)
                    .zip(position)
                    .zip(&self.token_type_zero)
                {
                    *out = w + p + t;
                }
            }
        }
        let eps = self.config.layer_norm_eps;
        let norm = |x: &mut [f32], residual: Option<&[f32]>, p: &LayerNormParams| {
            add_layer_norm(x, residual, h, &p.gamma, &p.beta, eps)
        };
        norm(&mut x, None, &self.embedding_norm);

        let mut qkv = vec![0.0f32; total * 3 * h];
        let mut context = vec![0.0f32; total * h];
        let mut scratch = vec![0.0f32; total * h];
        let mut ffn = vec![0.0f32; total * self.config.intermediate_size];
        for layer in &self.layers {
            layer.qkv.forward(&x, total, &mut qkv);
            self.attention_per_sequence(&qkv, &offsets, &mut context);
            layer.attention_out.forward(&context, total, &mut scratch);
            norm(&mut scratch, Some(&x), &layer.attention_norm);
            std::mem::swap(&mut x, &mut scratch);
            layer.ffn_in.forward_gelu(&x, total, &mut ffn);
            layer.ffn_out.forward(&ffn, total, &mut scratch);
            norm(&mut scratch, Some(&x), &layer.ffn_norm);
            std::mem::swap(&mut x, &mut scratch);
        }
        self.head_transform.forward_gelu(&x, total, &mut scratch);
        norm(&mut scratch, None, &self.head_norm);
        scratch.truncate(total * h);
        Ok(Some((scratch, offsets)))
    }

    /// Attention runs sequence by sequence (no cross-document attention, no padding), in parallel.
    fn attention_per_sequence(&self, qkv: &[f32], offsets: &[usize], context: &mut [f32]) {
        let h = self.config.hidden_size;
        let heads = self.config.num_heads;
        let mut outputs = Vec::with_capacity(offsets.len() - 1);
        let mut rest = context;
        for w in offsets.windows(2) {
            let (this, tail) = rest.split_at_mut((w[1] - w[0]) * h);
            outputs.push((w[0], w[1], this));
            rest = tail;
        }
        outputs.into_par_iter().for_each(|(start, end, out)| {
            attention(&qkv[start * 3 * h..end * 3 * h], end - start, h, heads, out);
        });
    }
}
