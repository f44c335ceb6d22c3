"""Milvus Lite 2.5.1 (PyPI milvus-lite, the embedded Milvus C++ engine behind pymilvus).

Collection: INT64 primary key (the row number) + SPARSE_FLOAT_VECTOR; indexes
SPARSE_INVERTED_INDEX and SPARSE_WAND, metric IP, drop_ratio_build 0 (keep every weight),
search drop_ratio_search 0 (exact within the index). Build time = insert + flush + index + load.
The Lite server runs in its own process and pymilvus talks to it over a local socket (gRPC),
so timings include that round trip, which every Milvus Lite user pays. QPS: 2 Python threads
(the gRPC client releases the GIL while it waits).
"""

import os
import shutil
import sys
import time

import numpy as np

from common import Csr, dir_bytes, measure, parse_args, run_guarded, write_result

INDEXES = ["SPARSE_INVERTED_INDEX", "SPARSE_WAND"]
BATCH = 2000


def main():
    args = parse_args(sys.argv[1:])
    from pymilvus import DataType, MilvusClient
    import pymilvus

    docs = Csr(args.data, "docs")
    qcsr = Csr(args.data, "queries")
    queries = [{int(t): float(w) for t, w in zip(*qcsr.row(i))} for i in range(len(qcsr))]
    for index_type in INDEXES:
        slug = f"milvus-{index_type.lower()}"
        config = f"{index_type}, IP"

        def body(index_type=index_type, slug=slug, config=config):
            work = os.path.join(args.work, index_type.lower())
            shutil.rmtree(work, ignore_errors=True)
            os.makedirs(work)
            client = MilvusClient(os.path.join(work, "milvus.db"))
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.INT64, is_primary=True)
            schema.add_field("vec", DataType.SPARSE_FLOAT_VECTOR)
            t0 = time.perf_counter()
            client.create_collection("bench", schema=schema)
            for start in range(0, len(docs), BATCH):
                rows = []
                for i in range(start, min(start + BATCH, len(docs))):
                    t, w = docs.row(i)
                    rows.append({"id": i, "vec": dict(zip(t.tolist(), w.tolist()))})
                client.insert("bench", rows)
            client.flush("bench")
            params = client.prepare_index_params()
            params.add_index(
                field_name="vec",
                index_type=index_type,
                metric_type="IP",
                params={"drop_ratio_build": 0.0},
            )
            client.create_index("bench", params)
            client.load_collection("bench")
            build_s = time.perf_counter() - t0
            size = dir_bytes(work)
            search_params = {"metric_type": "IP", "params": {"drop_ratio_search": 0.0}}

            def search_one(q):
                if not q:
                    return []
                res = client.search("bench", data=[q], anns_field="vec", limit=10, search_params=search_params)
                return [int(h["id"]) for h in res[0]]

            run, stats = measure(search_one, queries, qps="threads")
            stats.update(
                engine="milvus-lite",
                config=config,
                params=f"milvus-lite 2.5.1, pymilvus {pymilvus.__version__}: {index_type}, metric IP, "
                "drop_ratio_build 0.0, drop_ratio_search 0.0, limit 10",
                build_s=build_s,
                index_bytes=size,
                index_kind="disk (milvus.db directory)",
            )
            write_result(args.results, slug, stats, run)
            client.close()

        run_guarded("milvus-lite", slug, config, args.results, body)


if __name__ == "__main__":
    args = parse_args(sys.argv[1:])
    run_guarded("milvus-lite", "milvus-lite", "setup", args.results, main)
