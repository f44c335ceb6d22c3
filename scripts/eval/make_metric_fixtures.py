#!/usr/bin/env python3
"""Records pytrec_eval's metric values on synthetic runs, for nsparse-eval's parity test.

Writes crates/nsparse-eval/tests/fixtures/metrics.json: for each case, the qrels, the run, and
pytrec_eval's per-query values and means (averaged over the queries pytrec_eval returns, as BEIR's
EvaluateRetrieval.evaluate does). The Rust test `tests/metrics_parity.rs` compares to 1e-6 without
Python.

The cases are synthetic (seeded, no data set involved) and cover: graded and binary qrels, tied
scores, queries with no relevant document, judged queries missing from the run, run queries with
no judgments, a query with an empty ranking, unjudged retrieved documents, runs longer than 100,
judged non-relevant documents (grade 0 and -1), and numeric ids whose byte order differs from their
numeric order.

MRR@k is trec_eval's recip_rank on the run cut at k. It is recorded two ways that must agree:
recip_rank of the full run with ranks beyond k zeroed (rank <= k iff recip_rank >= 1/k, which uses
trec_eval's own ordering), and recip_rank of the run cut at k in (score desc, docid desc) order.
Their agreement is checked here, which also confirms trec_eval's tie-breaking.

Requirements: python3, `pip install pytrec-eval-terrier` (the PyPI `pytrec_eval` sdist downloads
trec_eval from the network at build time and fails offline). Usage:
    python3 scripts/eval/make_metric_fixtures.py [OUT.json]
"""
import json
import math
import random
import sys
from importlib import metadata

import pytrec_eval

CUTS_NDCG = [1, 3, 5, 10, 100, 1000]
CUTS_RECALL = [1, 5, 10, 100, 1000]
CUTS_MAP = [10, 100, 1000]
CUTS_P = [1, 5, 10]
CUTS_MRR = [1, 5, 10, 100]

PYTREC_MEASURES = {
    "ndcg_cut." + ",".join(map(str, CUTS_NDCG)),
    "recall." + ",".join(map(str, CUTS_RECALL)),
    "map_cut." + ",".join(map(str, CUTS_MAP)),
    "P." + ",".join(map(str, CUTS_P)),
    "recip_rank",
}


def trec_sorted(docs):
    """trec_eval's order: score descending, then docid descending (strcmp on bytes)."""
    return sorted(docs.items(), key=lambda kv: (kv[1], kv[0].encode()), reverse=True)


def make_case(name, seed, graded):
    rng = random.Random(seed)
    qrels, run = {}, {}
    n_queries = 24
    for qi in range(n_queries):
        qid = f"q{qi}"
        pool = [f"d{rng.randrange(400)}" for _ in range(60)] + [str(rng.randrange(200)) for _ in range(20)]
        pool = list(dict.fromkeys(pool))
        judged = rng.sample(pool, k=min(len(pool), rng.randrange(3, 25)))
        qrels[qid] = {}
        for d in judged:
            if graded:
                qrels[qid][d] = rng.choice([0, 0, 1, 1, 2, 3])
            else:
                qrels[qid][d] = rng.choice([0, 1])
        kind = qi % 8
        if kind == 0:
            # No relevant document at all (only grade 0, and -1 once).
            qrels[qid] = {d: 0 for d in judged}
            if graded:
                qrels[qid][judged[0]] = -1
        elif kind == 1 and graded:
            # A judged non-relevant document with a negative grade among relevant ones.
            qrels[qid][judged[0]] = -1
        length = rng.choice([5, 10, 40, 120, 150, 1200]) if kind != 2 else 150
        docs = {}
        candidates = pool + [f"u{rng.randrange(5000)}" for _ in range(length)]  # unjudged docs
        rng.shuffle(candidates)
        for d in candidates[:length]:
            # Relevant documents tend to score higher, so the top ranks hold some of them.
            boost = max(qrels[qid].get(d, 0), 0) * rng.random()
            if kind in (3, 4):
                # Heavy ties: coarse scores, so ids decide the order.
                docs[d] = float(rng.randrange(4) + round(boost))
            else:
                docs[d] = round(rng.uniform(0, 30) + 12 * boost, 3)
        if kind == 5:
            # Ties between numeric ids whose byte order differs from numeric order ("9" > "10").
            for d in ("9", "10", "100", "d9", "D9"):
                docs[d] = 7.5
                qrels[qid].setdefault(d, 1)
        run[qid] = docs
    # A judged query missing from the run (pytrec_eval skips it; so does the mean).
    del run["q7"]
    # A run query without judgments (ignored).
    run["q_unjudged"] = {"d1": 3.0, "d2": 2.0}
    # A judged query with an empty ranking (evaluated, all zero).
    run["q6"] = {}
    return name, qrels, run


def evaluate(qrels, run):
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, PYTREC_MEASURES)
    full = evaluator.evaluate(run)
    per_query = {}
    for qid, m in full.items():
        values = {}
        for k in CUTS_NDCG:
            values[f"NDCG@{k}"] = m[f"ndcg_cut_{k}"]
        for k in CUTS_RECALL:
            values[f"Recall@{k}"] = m[f"recall_{k}"]
        for k in CUTS_MAP:
            values[f"MAP@{k}"] = m[f"map_cut_{k}"]
        for k in CUTS_P:
            values[f"P@{k}"] = m[f"P_{k}"]
        rr = m["recip_rank"]
        for k in CUTS_MRR:
            values[f"MRR@{k}"] = rr if rr >= 1.0 / k - 1e-12 else 0.0
        per_query[qid] = values
    # Cross-check MRR@k with pytrec_eval on runs cut at k in trec order.
    for k in CUTS_MRR:
        cut = {q: dict(trec_sorted(d)[:k]) for q, d in run.items()}
        got = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut)
        for q, m in got.items():
            assert math.isclose(m["recip_rank"], per_query[q][f"MRR@{k}"], abs_tol=1e-12), (k, q)
    names = list(next(iter(per_query.values())).keys())
    mean = {n: sum(v[n] for v in per_query.values()) / len(per_query) for n in names}
    return per_query, mean


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "crates/nsparse-eval/tests/fixtures/metrics.json"
    cases = []
    for name, seed, graded in (("graded", 11, True), ("binary", 23, False)):
        name, qrels, run = make_case(name, seed, graded)
        per_query, mean = evaluate(qrels, run)
        cases.append({"name": name, "qrels": qrels, "run": run, "per_query": per_query, "mean": mean})
    fixture = {
        "generator": "scripts/eval/make_metric_fixtures.py",
        "pytrec_eval": "pytrec-eval-terrier " + metadata.version("pytrec-eval-terrier"),
        "tolerance": 1e-6,
        "cases": cases,
    }
    with open(out, "w") as f:
        json.dump(fixture, f, indent=None, sort_keys=False)
        f.write("\n")
    print(f"wrote {out}: " + ", ".join(f"{c['name']} ({len(c['per_query'])} queries)" for c in cases))


if __name__ == "__main__":
    main()
