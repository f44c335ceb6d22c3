"""Scores every engine's run against the exact top-10 and prints / writes the comparison table.

usage: report.py --data DIR --results DIR [--title TEXT]  ->  RESULTS_DIR/table.md, results.json

Recall@10 is tie-aware: a returned document counts when its exact (f64) score reaches the exact
10th score, so engines are not charged for picking another document of a tied score; each query's
denominator is min(10, documents with a positive score).
"""

import argparse
import glob
import json
import os

import numpy as np

from common import K, NO_DOC, Csr


def recall(data_dir, run_ids, docs, queries, truth_ids, truth_scores):
    per_query = []
    for q in range(len(queries)):
        valid = truth_ids[q] != NO_DOC
        n = int(valid.sum())
        if n == 0:
            continue
        kth = float(truth_scores[q][n - 1])
        qt, qw = queries.row(q)
        qmap = dict(zip(qt.tolist(), qw.astype(np.float64).tolist()))
        good = 0
        for d in dict.fromkeys(int(x) for x in run_ids[q] if x != NO_DOC):
            if d >= len(docs):
                continue
            dt, dw = docs.row(d)
            s = sum(qmap.get(t, 0.0) * w for t, w in zip(dt.tolist(), dw.astype(np.float64).tolist()))
            if s > 0 and s >= kth * (1 - 1e-6):
                good += 1
        per_query.append(min(good, n) / n)
    return float(np.mean(per_query)) if per_query else float("nan")


def fmt(v, digits=2):
    if v is None:
        return "–"
    if isinstance(v, float) and (v != v):
        return "–"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--title", default="")
    a = ap.parse_args()
    meta = json.load(open(os.path.join(a.data, "meta.json")))
    docs = Csr(a.data, "docs")
    queries = Csr(a.data, "queries")
    nq = len(queries)
    truth_ids = np.fromfile(os.path.join(a.data, "truth.ids"), dtype="<u4").reshape(nq, K)
    truth_scores = np.fromfile(os.path.join(a.data, "truth.scores"), dtype="<f4").reshape(nq, K)

    rows = []
    for path in sorted(glob.glob(os.path.join(a.results, "*.json"))):
        if os.path.basename(path) == "results.json":
            continue
        r = json.load(open(path))
        if "engine" not in r:
            continue
        if r.get("run_file") and os.path.exists(r["run_file"]):
            run = np.fromfile(r["run_file"], dtype="<u4").reshape(nq, K)
            r["recall10"] = recall(a.data, run, docs, queries, truth_ids, truth_scores)
        rows.append(r)
    # A failure row of an engine that produced results for other settings is redundant only
    # when it is the generic build row; keep every other failure.
    order = ["nsparse", "seismic", "bmp", "qdrant-edge", "milvus-lite", "lucene (pyserini)"]
    rows.sort(key=lambda r: (order.index(r["engine"]) if r["engine"] in order else 99, not r.get("config", "").startswith("Exact"), r.get("config", "")))
    base = next((r for r in rows if r["engine"] == "nsparse" and r.get("config", "").startswith("Exact")), None)

    def ratio(r, key, invert=False):
        if not base or key not in r or key not in base or not base[key] or not r[key]:
            return None
        return (base[key] / r[key]) if invert else (r[key] / base[key])

    lines = []
    title = a.title or meta.get("name", "")
    lines.append(
        f"**{title}**: {meta['docs']:,} documents ({meta['doc_nnz_mean']:.1f} non-zeros each), "
        f"{meta['queries']:,} queries ({meta['query_nnz_mean']:.1f} non-zeros each), top-10."
    )
    lines.append("")
    lines.append(
        "| engine | setting | build s | index MB | p50 ms | p99 ms | QPS (2 thr.) | recall@10 | "
        "build × | size × | p50 × | QPS × |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['engine']} | {r.get('config', '')} | failed: {r['error']} | | | | | | | | | |")
            continue
        mb = r["index_bytes"] / 1e6
        kind = "" if r["index_kind"].startswith("disk") else " (mem)"
        lines.append(
            f"| {r['engine']} | {r['config']} | {fmt(r['build_s'], 1)} | {fmt(mb, 1)}{kind} | "
            f"{fmt(r['p50_ms'], 3)} | {fmt(r['p99_ms'], 3)} | {fmt(r['qps_2t'], 0)} | "
            f"{fmt(r.get('recall10'), 4)} | {fmt(ratio(r, 'build_s'))} | {fmt(ratio(r, 'index_bytes'))} | "
            f"{fmt(ratio(r, 'p50_ms'))} | {fmt(ratio(r, 'qps_2t'))} |"
        )
    lines.append("")
    lines.append(
        "Ratios are engine ÷ nsparse exact (build ×, size ×, p50 ×: below 1 means the peer is "
        "faster/smaller; QPS ×: above 1 means the peer serves more queries per second)."
    )
    seen = set()
    details = []
    for r in rows:
        for key in ("params", "qps_note", "notes"):
            text = r.get(key)
            if text and (r["engine"], text) not in seen:
                seen.add((r["engine"], text))
                details.append(f"- {r['engine']}: {text}")
    if details:
        lines.append("")
        lines.extend(details)
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(a.results, "table.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(a.results, "results.json"), "w") as f:
        json.dump({"dataset": meta, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
