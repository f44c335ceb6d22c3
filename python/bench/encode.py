"""Document encoding from Python: nsparse.SparseEncoder against sentence-transformers'
SparseEncoder on the same model folder (the random doc-v2-distill-shaped model of
bench/make_bench_model.py) and the same documents (bench/make_bench_docs.py).

usage: encode.py --engine nsparse|nsparse-fast|sentence-transformers --model DIR --docs JSONL
                 [--limit N] [--threads 2] [--batch-size 32] [--dump FILE.npz]

Run each engine in its own process (peak RSS is the process's). Prints one JSON line: documents,
seconds of `encode_document` (after a 4-document warm-up), docs/s, peak RSS in MB. `--dump`
saves the vectors (CSR) so two engines' outputs can be compared (`compare` sub-command:
`encode.py compare A.npz B.npz`).
"""

import argparse
import json
import resource
import sys
import time

import numpy as np
import scipy.sparse as sp


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def compare(a_path, b_path):
    a = sp.load_npz(a_path).astype(np.float64)
    b = sp.load_npz(b_path).astype(np.float64)
    diff = abs(a - b)
    print(json.dumps({"max_abs_diff": float(diff.max()) if diff.nnz else 0.0, "nnz": [int(a.nnz), int(b.nnz)]}))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "compare":
        compare(sys.argv[2], sys.argv[3])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", required=True, choices=["nsparse", "nsparse-fast", "sentence-transformers"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--docs", required=True)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--dump", default=None)
    a = ap.parse_args()
    texts = [json.loads(line)["text"] for line in open(a.docs)][: a.limit]

    if a.engine.startswith("nsparse"):
        import nsparse

        model = nsparse.SparseEncoder(a.model, threads=a.threads, precision="fast" if a.engine == "nsparse-fast" else "exact")

        def encode(batch):
            return model.encode_document(batch, batch_size=a.batch_size)

        version = f"nsparse {nsparse.__version__}"
    else:
        import sentence_transformers
        import torch
        from sentence_transformers.sparse_encoder import SparseEncoder
        from sentence_transformers.sparse_encoder.models import MLMTransformer, SpladePooling

        torch.set_num_threads(a.threads)
        model = SparseEncoder(modules=[MLMTransformer(a.model), SpladePooling(pooling_strategy="max")], device="cpu")

        def encode(batch):
            out = model.encode_document(batch, batch_size=a.batch_size, convert_to_sparse_tensor=True)
            out = out.coalesce()
            idx = out.indices().numpy()
            return sp.csr_array((out.values().numpy(), (idx[0], idx[1])), shape=tuple(out.shape))

        version = f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}"

    encode(texts[:4])
    t = time.perf_counter()
    vectors = encode(texts)
    seconds = time.perf_counter() - t
    if a.dump:
        sp.save_npz(a.dump, sp.csr_matrix(vectors))
    print(json.dumps({
        "engine": a.engine,
        "version": version,
        "docs": len(texts),
        "threads": a.threads,
        "batch_size": a.batch_size,
        "seconds": seconds,
        "docs_per_s": len(texts) / seconds,
        "peak_rss_mb": peak_rss_mb(),
    }), flush=True)


if __name__ == "__main__":
    main()
