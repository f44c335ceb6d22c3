#!/usr/bin/env python3
"""Build the random-weight encoder used by the encoding benchmark.

Usage (from the repository root):

    python3 bench/make_bench_model.py target/bench-model

Writes a Hugging Face model folder to OUT_DIR: config.json, model.safetensors
(float32, ~268 MB) and tokenizer.json (the bundled bert-base-uncased vocab).
The architecture is the one of opensearch-neural-sparse-encoding-doc-v2-distill
(DistilBertForMaskedLM: dim 768, 6 layers, 12 heads, FFN 3072, vocab 30,522,
512 positions, gelu, tied projector). Weights are transformers' default
initialisation with seed 0: the speed is that of the real model, the output
is not meaningful (and not sparse). Do not commit the folder.

Needs: torch, transformers, safetensors.
"""

import shutil
import sys
from pathlib import Path

try:
    import torch
    import transformers
    from transformers import DistilBertConfig, DistilBertForMaskedLM
except ImportError as exc:
    sys.exit(f"make_bench_model.py: missing Python dependency ({exc}).\n"
             "Install with: pip install torch transformers safetensors")

REPO = Path(__file__).resolve().parents[1]
TOKENIZER_JSON = REPO / "crates/nsparse-model/assets/opensearch-query-v1/tokenizer.json"


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.exit("usage: python3 bench/make_bench_model.py OUT_DIR")
    out = Path(sys.argv[1])
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(0)
    config = DistilBertConfig(
        vocab_size=30522,
        dim=768,
        n_layers=6,
        n_heads=12,
        hidden_dim=3072,
        max_position_embeddings=512,
        activation="gelu",
        sinusoidal_pos_embds=False,
        pad_token_id=0,
        tie_word_embeddings=True,
    )
    model = DistilBertForMaskedLM(config).eval()
    out.mkdir(parents=True, exist_ok=True)
    model.to(torch.float32).save_pretrained(out, safe_serialization=True)
    shutil.copyfile(TOKENIZER_JSON, out / "tokenizer.json")
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {out} ({n / 1e6:.1f}M parameters, float32)")


if __name__ == "__main__":
    main()
