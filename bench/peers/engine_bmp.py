"""BMP, block-max pruning (PyPI bmp: pisa-engine/BMP's Rust engine with pyo3 bindings).

BMP stores document weights as u8 impacts and quantizes each query to at most 32 levels
(its MAX_TERM_WEIGHT); we scale document weights by 255 / (largest weight in the collection)
and round (weights that round to 0 are dropped), which is what its CIFF path expects of an
impact index. Block size 32 (the README's value), no range compression, documents in the
given order (no BP reordering, which the paper applies and which BMP's speed relies on).
Settings: alpha 1.0 / beta 1.0 (no early termination beyond the block bound: exact up to
the quantization) and alpha 0.9 (approximate). `Searcher.search` holds the GIL, so QPS
uses 2 forked processes sharing the loaded index.
"""

import os
import sys
import time

import numpy as np

from common import Csr, dir_bytes, measure, parse_args, run_guarded, write_result

SETTINGS = [(1.0, 1.0), (0.9, 1.0)]
BLOCK = 32


def main():
    args = parse_args(sys.argv[1:])
    import bmp

    docs = Csr(args.data, "docs")
    qcsr = Csr(args.data, "queries")
    queries = [
        {str(t): float(w) for t, w in zip(*qcsr.row(i))} for i in range(len(qcsr))
    ]
    scale = 255.0 / float(docs.values.max())
    os.makedirs(args.work, exist_ok=True)
    path = os.path.join(args.work, "bmp.index")
    t0 = time.perf_counter()
    quantized = np.rint(docs.values * scale).astype(np.int64)
    tokens = docs.indices
    indexer = bmp.Indexer(path, bsize=BLOCK, compress_range=False)
    for i in range(len(docs)):
        a, b = docs.indptr[i], docs.indptr[i + 1]
        indexer.add_document(str(i), {str(t): int(w) for t, w in zip(tokens[a:b].tolist(), quantized[a:b].tolist()) if w > 0})
    indexer.finish()
    searcher = bmp.Searcher(path)
    build_s = time.perf_counter() - t0
    size = dir_bytes(path)

    for alpha, beta in SETTINGS:
        slug = f"bmp-a{alpha}-b{beta}"
        config = f"alpha {alpha}, beta {beta}"

        panics = []

        def search_one(q, alpha=alpha, beta=beta, panics=panics):
            if not q:
                return []
            try:
                ids, _ = searcher.search(q, k=10, alpha=alpha, beta=beta)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as e:  # pyo3 PanicException derives from BaseException
                # BMP 0.2.8 unwraps an empty block list when no block beats its initial
                # threshold; such a query returns nothing and is counted in the notes.
                panics.append(str(e))
                return []
            return [int(d) for d in ids]

        def body(search_one=search_one, slug=slug, config=config, panics=panics):
            run, stats = measure(search_one, queries, qps="fork")
            if panics:
                stats["notes"] = f"{len(set(map(str, panics)))} distinct BMP panics over {len(panics)} calls " \
                    f"(e.g. {panics[0][:80]}); those queries returned no hits"
            stats.update(
                engine="bmp",
                config=config,
                params=f"bmp 0.2.8: Indexer bsize {BLOCK}, compress_range False, u8 impacts "
                f"(scale {scale:.2f}); Searcher.search k 10, {config}",
                build_s=build_s,
                index_bytes=size,
                index_kind="disk (index file; loaded into memory)",
            )
            write_result(args.results, slug, stats, run)

        run_guarded("bmp", slug, config, args.results, body)


if __name__ == "__main__":
    args = parse_args(sys.argv[1:])
    run_guarded("bmp", "bmp", "build", args.results, main)
