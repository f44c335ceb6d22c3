"""Shared loader and timing protocol of the Python peer-benchmark helpers.

The data directory is written by `peer-bench synth|import` (crates/nsparse-eval/src/bin/peer_bench.rs):
CSR matrices docs.{indptr,indices,values} and queries.{...} (u64 / u32 / f32 little-endian), row
numbers are document ids. Every helper measures the same way as the Rust side: one warm-up pass
over all queries (its rankings are the run scored for recall), one timed pass with one query at a
time on one thread (p50 / p99), then queries per second with 2 workers for at least ~3 s of work.
"""

import json
import os
import sys
import time
import traceback

import numpy as np

K = 10
NO_DOC = 0xFFFFFFFF


class Csr:
    """One sparse matrix of the shared format."""

    def __init__(self, data_dir, stem):
        def arr(ext, dtype):
            return np.fromfile(os.path.join(data_dir, f"{stem}.{ext}"), dtype=dtype)

        self.indptr = arr("indptr", "<u8").astype(np.int64)
        self.indices = arr("indices", "<u4")
        self.values = arr("values", "<f4")
        if self.indptr[0] != 0 or self.indptr[-1] != len(self.indices) or len(self.values) != len(self.indices):
            raise ValueError(f"{data_dir}/{stem}.*: inconsistent CSR files; regenerate the data directory")

    def __len__(self):
        return len(self.indptr) - 1

    def row(self, i):
        a, b = self.indptr[i], self.indptr[i + 1]
        return self.indices[a:b], self.values[a:b]


def percentile(sorted_ms, p):
    return sorted_ms[int(round((len(sorted_ms) - 1) * p))]


def dir_bytes(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def rounds_for(one_pass_s, target_s=3.0):
    """Repetitions of the query set giving about `target_s` of work for 2 workers."""
    return int(min(100, max(1, np.ceil(target_s / max(one_pass_s, 1e-6)))))


def qps_forked(search_one, queries, rounds):
    """QPS of 2 forked worker processes, each taking every other query.

    For engines whose Python binding holds the GIL during a search (threads would serialise):
    the index is loaded once and shared copy-on-write, as two threads would share it.
    """
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pids = []
    for part in range(2):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.write(ready_w, b"x")
                os.read(go_r, 1)
                for _ in range(rounds):
                    for q in queries[part::2]:
                        search_one(q)
            except BaseException:
                traceback.print_exc()
                code = 1
            os._exit(code)
        pids.append(pid)
    for _ in pids:
        os.read(ready_r, 1)
    t0 = time.perf_counter()
    os.write(go_w, b"x" * len(pids))
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        if status != 0:
            raise RuntimeError("a QPS worker process failed (see its traceback above)")
    elapsed = time.perf_counter() - t0
    for fd in (ready_r, ready_w, go_r, go_w):
        os.close(fd)
    return rounds * len(queries) / elapsed


def qps_threads(search_one, queries, rounds):
    """QPS of 2 Python threads (for clients that release the GIL, e.g. gRPC)."""
    import threading

    errors = []

    def work(part):
        try:
            for _ in range(rounds):
                for q in queries[part::2]:
                    search_one(q)
        except BaseException as e:  # reported after join
            errors.append(e)

    threads = [threading.Thread(target=work, args=(p,)) for p in range(2)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return rounds * len(queries) / (time.perf_counter() - t0)


def measure(search_one, queries, qps="fork", batch_qps=None):
    """Runs the protocol; `search_one(q)` returns ranked row ids. Returns (run ids, stats).

    `qps` is "fork" or "threads"; `batch_qps(rounds)` (the engine's own 2-thread batch API),
    when given, replaces both.
    """
    run = np.full((len(queries), K), NO_DOC, dtype="<u4")
    for i, q in enumerate(queries):
        ids = list(search_one(q))[:K]
        run[i, : len(ids)] = ids
    lat = []
    for q in queries:
        t = time.perf_counter()
        search_one(q)
        lat.append((time.perf_counter() - t) * 1e3)
    lat.sort()
    rounds = rounds_for(sum(lat) / 1e3)
    if batch_qps is not None:
        qps_value, note = batch_qps(rounds)
    elif qps == "threads":
        qps_value, note = qps_threads(search_one, queries, rounds), "2 Python threads"
    else:
        qps_value, note = qps_forked(search_one, queries, rounds), "2 forked processes sharing the loaded index"
    return run, {
        "p50_ms": percentile(lat, 0.5),
        "p99_ms": percentile(lat, 0.99),
        "qps_2t": qps_value,
        "qps_note": note,
    }


def write_result(results_dir, slug, result, run=None):
    os.makedirs(results_dir, exist_ok=True)
    if run is not None:
        run_file = os.path.join(results_dir, f"{slug}.ids")
        run.tofile(run_file)
        result["run_file"] = run_file
    with open(os.path.join(results_dir, f"{slug}.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(f"{slug}: {json.dumps(result)}", file=sys.stderr)


def write_failure(results_dir, slug, engine, config, reason):
    """An engine that cannot install or run is a row with the reason, never silently missing."""
    write_result(results_dir, slug, {"engine": engine, "config": config, "error": reason})


def parse_args(argv):
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="data directory written by peer-bench")
    ap.add_argument("--work", required=True, help="scratch directory for this engine's index")
    ap.add_argument("--results", required=True, help="where result JSON and run ids go")
    return ap.parse_args(argv)


def run_guarded(engine, slug, config, results_dir, body):
    """Runs `body()`; any exception becomes a failure row naming the error."""
    try:
        body()
    except BaseException as e:  # noqa: BLE001 - every failure must become a row
        traceback.print_exc()
        write_failure(results_dir, slug, engine, config, f"{type(e).__name__}: {e}"[:400])
