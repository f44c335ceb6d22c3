"""Seismic (PyPI pyseismic-lsr) on the shared vectors.

Index: SeismicIndex.build_from_dataset with the library's defaults (n_postings 3500,
centroid_fraction 0.1, summary_energy 0.4, doc_cut 15), 2 build threads. Queries: the
README's query_cut 20 with heap_factor 0.7 and a higher-recall 0.9. Documents are added by
integer component id, so a query addresses token 42 as "42".
"""

import os
import sys
import time

import numpy as np

from common import Csr, dir_bytes, measure, parse_args, run_guarded, write_result

SETTINGS = [(20, 0.7), (20, 0.9)]


def main():
    args = parse_args(sys.argv[1:])
    import seismic
    from seismic import SeismicDataset, SeismicIndex

    docs = Csr(args.data, "docs")
    qcsr = Csr(args.data, "queries")
    string_type = seismic.get_seismic_string()
    queries = [
        (str(i), np.array([str(t) for t in qcsr.row(i)[0]], dtype=string_type), np.asarray(qcsr.row(i)[1], dtype=np.float32))
        for i in range(len(qcsr))
    ]
    t0 = time.perf_counter()
    try:
        dataset = SeismicDataset(dim=30522)
    except TypeError:
        dataset = SeismicDataset()
    n_docs = len(docs)
    dataset.add_documents_by_id(
        [str(i) for i in range(n_docs)],
        docs.indices.astype(np.int64),
        docs.values,
        docs.indptr,
    )
    # The dataset holds its own copy: free ours before the memory-hungry build.
    del docs
    index = SeismicIndex.build_from_dataset(dataset, num_threads=2)
    build_s = time.perf_counter() - t0
    del dataset
    os.makedirs(args.work, exist_ok=True)
    stem = os.path.join(args.work, "seismic")
    index.save(stem)
    size = sum(dir_bytes(os.path.join(args.work, f)) for f in os.listdir(args.work) if f.startswith("seismic"))

    for query_cut, heap_factor in SETTINGS:
        def search_one(q, qc=query_cut, hf=heap_factor):
            res = index.search(q[0], q[1], q[2], 10, qc, hf)
            return [int(r[2]) for r in res]

        def batch_qps(rounds, qc=query_cut, hf=heap_factor):
            ids = np.array([q[0] for q in queries], dtype=string_type)
            comps = [q[1] for q in queries]
            vals = [q[2] for q in queries]
            t = time.perf_counter()
            for _ in range(rounds):
                index.batch_search(ids, comps, vals, 10, qc, hf, num_threads=2)
            return rounds * len(queries) / (time.perf_counter() - t), "batch_search(num_threads=2)"

        slug = f"seismic-qc{query_cut}-hf{heap_factor}"
        config = f"query_cut {query_cut}, heap_factor {heap_factor}"

        def body(search_one=search_one, batch_qps=batch_qps, slug=slug, config=config):
            run, stats = measure(search_one, queries, batch_qps=batch_qps)
            stats.update(
                engine="seismic",
                config=config,
                params=f"pyseismic-lsr {__import__('importlib.metadata').metadata.version('pyseismic-lsr')}: build_from_dataset defaults "
                "(n_postings 3500, centroid_fraction 0.1, summary_energy 0.4, doc_cut 15), num_threads 2; "
                f"search k 10, {config}",
                build_s=build_s,
                index_bytes=size,
                index_kind="disk (saved .index.seismic; searched in memory)",
            )
            write_result(args.results, slug, stats, run)

        run_guarded("seismic", slug, config, args.results, body)


if __name__ == "__main__":
    args = parse_args(sys.argv[1:])
    run_guarded("seismic", "seismic", "build", args.results, main)
