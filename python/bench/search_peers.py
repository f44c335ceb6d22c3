"""Search from Python: nsparse's Python package against Seismic's, BMP's and Qdrant Edge's Python
bindings, on the peer benchmark's shared vector files (bench/peers/README.md; written by
`peer-bench synth|import`).

usage: search_peers.py --engine nsparse|seismic|bmp|qdrant --data DIR --work DIR --out FILE.json
                       [--repeats 3]

Each engine builds its index once from the same f32 vectors, then the protocol of
bench/peers/common.py runs `--repeats` times (warm-up pass whose rankings are scored for
recall@10, single-threaded per-query latency p50/p99, throughput with 2 workers); the JSON
holds every repetition and their medians. Recall is bench/peers/report.py's tie-aware
recall@10 against the f64 brute force in truth.*.

Rows per engine: the engine's single-query call (p50/p99) with its own batch API for QPS where
it has one, and its single-query call driven by 2 workers (Python threads for engines that
release the GIL, else 2 forked processes sharing the loaded index).
"""

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "bench", "peers"))

from common import K, NO_DOC, Csr, measure  # noqa: E402
from report import recall  # noqa: E402


def run_ids(search_one, queries):
    run = np.full((len(queries), K), NO_DOC, dtype="<u4")
    for i, q in enumerate(queries):
        ids = list(search_one(q))[:K]
        run[i, : len(ids)] = ids
    return run


def repeat(label, config, search_one, queries, repeats, qps_kind=None, batch_qps=None, scorer=None):
    """`repeats` runs of the common protocol; medians of p50, p99 and QPS."""
    runs = []
    for _ in range(repeats):
        if qps_kind is None and batch_qps is None:
            raise ValueError("pass qps_kind or batch_qps")
        run, stats = measure(search_one, queries, qps=qps_kind or "fork", batch_qps=batch_qps)
        runs.append(stats)
    out = {
        "engine": label,
        "config": config,
        "runs": runs,
        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
        "qps_2t": statistics.median(r["qps_2t"] for r in runs),
        "qps_note": runs[0]["qps_note"],
        "recall10": scorer(run),
    }
    print(json.dumps({k: v for k, v in out.items() if k != "runs"}), file=sys.stderr, flush=True)
    return out


def engine_nsparse(docs, qcsr, work, repeats, scorer):
    import scipy.sparse as sp

    import nsparse

    m = sp.csr_array((docs.values, docs.indices, docs.indptr), shape=(len(docs), 30522))
    ids = [str(i) for i in range(len(docs))]
    t0 = time.perf_counter()
    index = nsparse.Index.create(os.path.join(work, "nsparse"), build_threads=2)
    index.add(ids, m)  # one batch: written as one segment (bulk path), durable on return
    build_s = time.perf_counter() - t0
    del m
    qm = sp.csr_array((qcsr.values, qcsr.indices, qcsr.indptr), shape=(len(qcsr), 30522))
    queries = [(qcsr.row(i)[0].astype(np.int64), qcsr.row(i)[1]) for i in range(len(qcsr))]
    rows = []
    for mode, params, config in [
        ("exact", {}, "exact"),
        ("two_phase", {}, "two-phase (OpenSearch defaults)"),
    ]:
        def search_one(q, mode=mode, params=params):
            return [int(h.id) for h in index.search(q, k=K, mode=mode, source=False, **params)]

        def batch_qps(rounds, mode=mode, params=params):
            t = time.perf_counter()
            for _ in range(rounds):
                index.search_batch(qm, k=K, threads=2, mode=mode, **params)
            return rounds * len(queries) / (time.perf_counter() - t), "search_batch(threads=2)"

        r = repeat("nsparse (python)", f"{config}: search(); QPS search_batch", search_one, queries, repeats, batch_qps=batch_qps, scorer=scorer)
        # search_batch's own rankings must be the per-query ones.
        bids, _ = index.search_batch(qm, k=K, threads=2, mode=mode, **params)
        brun = np.array([[int(x) if x is not None else NO_DOC for x in row] for row in bids], dtype="<u4")
        r["search_batch_recall10"] = scorer(brun)
        rows.append(r)
        rows.append(repeat("nsparse (python)", f"{config}: search() from 2 Python threads", search_one, queries, repeats, qps_kind="threads", scorer=scorer))
    for r in rows:
        r.update(build_s=build_s, params=f"nsparse {nsparse.__version__}, Index.add of one CSR batch, build_threads 2; search(k=10, source=False)")
    index.close()
    return rows


def engine_seismic(docs, qcsr, work, repeats, scorer):
    import seismic
    from seismic import SeismicDataset, SeismicIndex

    string_type = seismic.get_seismic_string()
    queries = [
        (str(i), np.array([str(t) for t in qcsr.row(i)[0]], dtype=string_type), np.asarray(qcsr.row(i)[1], dtype=np.float32))
        for i in range(len(qcsr))
    ]
    t0 = time.perf_counter()
    dataset = SeismicDataset()
    dataset.add_documents_by_id([str(i) for i in range(len(docs))], docs.indices.astype(np.int64), docs.values, docs.indptr)
    index = SeismicIndex.build_from_dataset(dataset, num_threads=2)
    build_s = time.perf_counter() - t0
    del dataset
    query_cut, heap_factor = 20, 0.9

    def search_one(q):
        return [int(r[2]) for r in index.search(q[0], q[1], q[2], K, query_cut, heap_factor)]

    def batch_qps(rounds):
        ids = np.array([q[0] for q in queries], dtype=string_type)
        comps = [q[1] for q in queries]
        vals = [q[2] for q in queries]
        t = time.perf_counter()
        for _ in range(rounds):
            index.batch_search(ids, comps, vals, K, query_cut, heap_factor, num_threads=2)
        return rounds * len(queries) / (time.perf_counter() - t), "batch_search(num_threads=2)"

    config = f"query_cut {query_cut}, heap_factor {heap_factor}"
    rows = [
        repeat("seismic", f"{config}: search(); QPS batch_search", search_one, queries, repeats, batch_qps=batch_qps, scorer=scorer),
        repeat("seismic", f"{config}: search() from 2 processes", search_one, queries, repeats, qps_kind="fork", scorer=scorer),
    ]
    from importlib.metadata import version

    for r in rows:
        r.update(build_s=build_s, params=f"pyseismic-lsr {version('pyseismic-lsr')}, build_from_dataset defaults, num_threads 2")
    return rows


def engine_bmp(docs, qcsr, work, repeats, scorer):
    import bmp

    queries = [{str(t): float(w) for t, w in zip(*qcsr.row(i))} for i in range(len(qcsr))]
    scale = 255.0 / float(docs.values.max())
    path = os.path.join(work, "bmp.index")
    t0 = time.perf_counter()
    quantized = np.rint(docs.values * scale).astype(np.int64)
    indexer = bmp.Indexer(path, bsize=32, compress_range=False)
    for i in range(len(docs)):
        a, b = docs.indptr[i], docs.indptr[i + 1]
        indexer.add_document(str(i), {str(t): int(w) for t, w in zip(docs.indices[a:b].tolist(), quantized[a:b].tolist()) if w > 0})
    indexer.finish()
    searcher = bmp.Searcher(path)
    build_s = time.perf_counter() - t0

    def search_one(q):
        if not q:
            return []
        try:
            ids, _ = searcher.search(q, k=K, alpha=1.0, beta=1.0)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:  # pyo3 PanicException (see bench/peers/engine_bmp.py)
            return []
        return [int(d) for d in ids]

    rows = [repeat("bmp", "alpha 1.0, beta 1.0: search() from 2 processes", search_one, queries, repeats, qps_kind="fork", scorer=scorer)]
    for r in rows:
        r.update(build_s=build_s, params=f"bmp, block 32, u8 impacts (scale {scale:.2f}); Searcher.search has no batch API")
    return rows


def engine_qdrant(docs, qcsr, work, repeats, scorer):
    from qdrant_edge import (
        EdgeConfig,
        EdgeShard,
        EdgeSparseVectorParams,
        Point,
        Query,
        QueryBatchRequest,
        QueryRequest,
        SparseVector,
        UpdateOperation,
    )

    name = "splade"
    t0 = time.perf_counter()
    shard = EdgeShard.create(os.path.join(work, "qdrant"), EdgeConfig(sparse_vectors={name: EdgeSparseVectorParams()}))
    for start in range(0, len(docs), 2000):
        points = []
        for i in range(start, min(len(docs), start + 2000)):
            t, w = docs.row(i)
            points.append(Point(i, {name: SparseVector(t.tolist(), w.tolist())}, {}))
        shard.update(UpdateOperation.upsert_points(points))
    shard.optimize()
    shard.flush()
    build_s = time.perf_counter() - t0

    def request(q):
        return QueryRequest(limit=K, query=Query.Nearest(q, using=name), with_payload=False, with_vector=False)

    queries = [SparseVector(qcsr.row(i)[0].tolist(), qcsr.row(i)[1].tolist()) for i in range(len(qcsr))]

    def search_one(q):
        return [int(p.id) for p in shard.query(request(q))]

    def batch_qps(rounds):
        # query_batch runs on the calling thread; two Python threads each run half the batch.
        import threading

        halves = [QueryBatchRequest([request(q) for q in queries[p::2]]) for p in range(2)]

        def work(p):
            for _ in range(rounds):
                shard.query_batch(halves[p])

        threads = [threading.Thread(target=work, args=(p,)) for p in range(2)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        return rounds * len(queries) / (time.perf_counter() - t), "query_batch, half the queries on each of 2 Python threads"

    rows = [
        repeat("qdrant-edge", "default sparse index: query(); QPS query_batch", search_one, queries, repeats, batch_qps=batch_qps, scorer=scorer),
        repeat("qdrant-edge", "default sparse index: query() from 2 Python threads", search_one, queries, repeats, qps_kind="threads", scorer=scorer),
    ]
    from importlib.metadata import version

    for r in rows:
        r.update(build_s=build_s, params=f"qdrant-edge-py {version('qdrant-edge-py')}, EdgeSparseVectorParams() defaults, optimize() after upsert")
    shard.close()
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", required=True, choices=["nsparse", "seismic", "bmp", "qdrant"])
    ap.add_argument("--data", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    docs = Csr(a.data, "docs")
    qcsr = Csr(a.data, "queries")
    nq = len(qcsr)
    truth_ids = np.fromfile(os.path.join(a.data, "truth.ids"), dtype="<u4").reshape(nq, K)
    truth_scores = np.fromfile(os.path.join(a.data, "truth.scores"), dtype="<f4").reshape(nq, K)

    def scorer(run):
        return recall(a.data, run, docs, qcsr, truth_ids, truth_scores)

    engine = globals()[f"engine_{a.engine}"]
    try:
        rows = engine(docs, qcsr, a.work, a.repeats, scorer)
    except Exception as e:  # noqa: BLE001 - a failing engine is a row saying why
        import traceback

        traceback.print_exc()
        rows = [{"engine": a.engine, "config": "", "error": f"{type(e).__name__}: {e}"[:400]}]
    with open(a.out, "w") as f:
        json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
