#!/usr/bin/env python3
"""Python side of the document-encoding benchmark.

Usage (from the repository root; see bench/README.md for the full recipe):

    python3 bench/encode_bench.py --model target/bench-model --docs target/bench-docs.jsonl \
        --threads 2 --engine torch-fp32 [--limit 64] [--dump OUT.jsonl]

Encodes every document with batch 1 and the document-encoder semantics of the
OpenSearch neural-sparse model card ([CLS] ... [SEP], truncation at 512, max
over positions of the MLM logits, log(1 + relu(.)), special ids zeroed) and
prints ONE JSON line:

    {"engine", "docs", "seconds", "docs_per_s", "tokens_per_s", "peak_rss_mb", "threads"}

The timed loop covers tokenization, the forward pass and the pooling of every
document (batch 1), after 3 untimed warm-up documents. tokens_per_s counts the
tokens fed to the model, [CLS]/[SEP] included. peak_rss_mb is this process's
ru_maxrss (so it includes model loading and, for onnxruntime, the export).

Engines:
  torch-fp32   PyTorch, float32, torch.inference_mode()
  torch-bf16   the same under torch.autocast("cpu", dtype=torch.bfloat16)
  onnxruntime  the model is exported once to MODEL/model.onnx (opset 17,
               dynamic sequence axis, output = logits) and run with
               ORT_ENABLE_ALL graph optimisations; pooling in numpy

--dump writes the sparse vectors as {"_id", "ids", "weights"} lines (ids
ascending, weights as float32 values) for accuracy comparisons.

Needs: numpy, torch, transformers; onnxruntime and onnx for that engine.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

try:
    import numpy as np
    import torch
    import transformers
    from transformers import AutoModelForMaskedLM, PreTrainedTokenizerFast
except ImportError as exc:
    sys.exit(f"encode_bench.py: missing Python dependency ({exc}).\n"
             "Install with: pip install numpy torch transformers safetensors")

MAX_LENGTH = 512
WARMUP_DOCS = 3
ENGINES = ("torch-fp32", "torch-bf16", "onnxruntime")


def load_tokenizer(model_dir: Path) -> PreTrainedTokenizerFast:
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        sys.exit(f"encode_bench.py: {path} not found")
    return PreTrainedTokenizerFast(tokenizer_file=str(path), unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", pad_token="[PAD]", mask_token="[MASK]",
                                   model_max_length=MAX_LENGTH)


def pool(logits: np.ndarray, special_ids: list[int]) -> tuple[list[int], list[float]]:
    """[seq, vocab] float32 logits -> sparse document vector (model card)."""
    values = logits.max(axis=0)
    weights = np.log(np.float32(1) + np.maximum(values, np.float32(0)))
    weights[special_ids] = 0
    ids = np.flatnonzero(weights)
    return ids.tolist(), weights[ids].tolist()


class _LogitsOnly(torch.nn.Module):
    """Export wrapper: (input_ids, attention_mask) -> logits only."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def make_torch_engine(model_dir: Path, bf16: bool):
    model = AutoModelForMaskedLM.from_pretrained(model_dir, dtype=torch.float32).eval()

    def run(input_ids: list[int]) -> np.ndarray:
        ids = torch.tensor([input_ids], dtype=torch.long)
        with torch.inference_mode():
            if bf16:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
            else:
                logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        return logits[0].float().numpy()

    return run


def export_onnx(model_dir: Path, onnx_path: Path) -> None:
    """One-time export with the TorchScript-based exporter (dynamo=False), which
    needs no onnxscript; eager attention keeps the graph plain MatMul/Softmax."""
    model = AutoModelForMaskedLM.from_pretrained(model_dir, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    example = torch.tensor([[101, 7592, 2088, 102]], dtype=torch.long)
    tmp = onnx_path.with_suffix(".onnx.tmp")
    with torch.inference_mode():
        torch.onnx.export(
            _LogitsOnly(model), (example, torch.ones_like(example)), str(tmp),
            input_names=["input_ids", "attention_mask"], output_names=["logits"],
            dynamic_axes={"input_ids": {1: "sequence"}, "attention_mask": {1: "sequence"},
                          "logits": {1: "sequence"}},
            opset_version=17, dynamo=False, do_constant_folding=True)
    tmp.replace(onnx_path)
    del model


def make_onnx_engine(model_dir: Path, threads: int):
    try:
        import onnxruntime as ort
    except ImportError as exc:
        sys.exit(f"encode_bench.py: the onnxruntime engine needs onnxruntime and onnx ({exc}).\n"
                 "Install with: pip install onnxruntime onnx")
    onnx_path = model_dir / "model.onnx"
    if not onnx_path.is_file():
        print(f"exporting {onnx_path} (once) ...", file=sys.stderr)
        export_onnx(model_dir, onnx_path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    input_names = {i.name for i in session.get_inputs()}

    def run(input_ids: list[int]) -> np.ndarray:
        ids = np.asarray([input_ids], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        # The exporter may drop an input it found unused.
        feeds = {k: v for k, v in feeds.items() if k in input_names}
        return session.run(["logits"], feeds)[0][0]

    return run


def read_docs(path: Path, limit: int | None) -> list[dict]:
    if not path.is_file():
        sys.exit(f"encode_bench.py: {path} not found (make it with bench/make_bench_docs.py)")
    docs = [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]
    return docs[:limit] if limit else docs


def main() -> None:
    ap = argparse.ArgumentParser(description="Python reference encoder benchmark (batch 1).")
    ap.add_argument("--model", type=Path, required=True, help="HF model folder (make_bench_model.py)")
    ap.add_argument("--docs", type=Path, required=True, help='JSONL of {"_id", "text"}')
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--engine", choices=ENGINES, required=True)
    ap.add_argument("--limit", type=int, default=None, help="encode only the first N documents")
    ap.add_argument("--dump", type=Path, default=None, help="write the sparse vectors here (JSONL)")
    args = ap.parse_args()

    if not (args.model / "config.json").is_file():
        sys.exit(f"encode_bench.py: {args.model} is not a model folder (no config.json)")
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)

    tok = load_tokenizer(args.model)
    special_ids = sorted(tok.all_special_ids)
    docs = read_docs(args.docs, args.limit)
    if args.engine == "onnxruntime":
        run = make_onnx_engine(args.model, args.threads)
    else:
        run = make_torch_engine(args.model, bf16=args.engine == "torch-bf16")

    def encode(text: str) -> tuple[int, list[int], list[float]]:
        input_ids = tok(text, truncation=True, max_length=MAX_LENGTH)["input_ids"]
        ids, weights = pool(run(input_ids), special_ids)
        return len(input_ids), ids, weights

    for d in docs[:WARMUP_DOCS]:
        encode(d["text"])

    results, tokens = [], 0
    start = time.perf_counter()
    for d in docs:
        n, ids, weights = encode(d["text"])
        tokens += n
        results.append((d["_id"], ids, weights))
    seconds = time.perf_counter() - start

    if args.dump:
        with args.dump.open("w", encoding="utf-8") as f:
            for _id, ids, weights in results:
                f.write(json.dumps({"_id": _id, "ids": ids,
                                    "weights": [float(str(np.float32(w))) for w in weights]}) + "\n")

    print(json.dumps({
        "engine": args.engine,
        "docs": len(docs),
        "seconds": round(seconds, 3),
        "docs_per_s": round(len(docs) / seconds, 3),
        "tokens_per_s": round(tokens / seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": args.threads,
    }))


if __name__ == "__main__":
    main()
