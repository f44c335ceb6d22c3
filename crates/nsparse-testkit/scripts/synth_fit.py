#!/usr/bin/env python3
"""Fit nsparse-testkit's synthetic vector generator to real encoded vectors, and
print real-vs-synthetic statistics side by side.

Real data: SciFact encoded with the project's encoders (see BENCHMARKS.md):
  nsparse encode documents --model target/cache/splade-tiny --input corpus.jsonl --output docs.jsonl
  nsparse encode queries --input queries.jsonl --output queries.jsonl
Vectors there are keyed by token strings; tokenizer.json maps them to ids.

  synth_fit.py fit DOCS QUERIES TOKENIZER_JSON > crates/nsparse-testkit/src/synth_fitted.rs
  synth_fit.py compare DOCS QUERIES TOKENIZER_JSON SYNTH_JSONL
where SYNTH_JSONL comes from `cargo run --release -p nsparse-index --example synth_dump -- DOCS QUERIES`
(lines {"doc": [[id, w], ...]} or {"query": [[id, w], ...]}).
Needs numpy.
"""
import json
import math
import sys
from collections import Counter

import numpy as np

HEAD = 2048  # tokens whose (real id, df) are committed; the rest follow a power-law tail
RANK_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 1 << 30]


def load(docs_path, queries_path, tok_path):
    vocab = json.load(open(tok_path))["model"]["vocab"]
    def ids(vec):
        return sorted((vocab[t], float(w)) for t, w in vec.items())
    docs = [ids(json.loads(l)["vector"]) for l in open(docs_path)]
    queries = [ids(json.loads(l)["vector"]) for l in open(queries_path)]
    return docs, queries


def stats(docs, queries, rank_of=None):
    """Summary statistics; `rank_of` maps token id -> document-frequency rank (1 = most frequent)."""
    n = len(docs)
    nnz = np.array([len(d) for d in docs])
    df = Counter(t for d in docs for t, _ in d)
    ranked = [t for t, _ in df.most_common()]
    if rank_of is None:
        rank_of = {t: i + 1 for i, t in enumerate(ranked)}
    w = np.array([x for d in docs for _, x in d])
    out = {
        "docs": n,
        "nnz mean": nnz.mean(),
        "nnz p10": np.percentile(nnz, 10),
        "nnz p50": np.median(nnz),
        "nnz p90": np.percentile(nnz, 90),
        "nnz max": nnz.max(),
        "distinct tokens": len(df),
    }
    dfs = sorted(df.values(), reverse=True)
    for r in [1, 10, 100, 1000, 2000, 5000, 10000]:
        out[f"df frac at rank {r}"] = dfs[r - 1] / n if r <= len(dfs) else 0.0
    tot = len(w)
    for lo, hi in [(1, 100), (101, 1000), (1001, 5000), (5001, 1 << 30)]:
        out[f"posting share ranks {lo}-{min(hi, 99999)}"] = sum(dfs[lo - 1:hi]) / tot
    for p in [1, 10, 50, 90, 99]:
        out[f"doc weight p{p}"] = np.percentile(w, p)
    ql = np.array([len(q) for q in queries])
    qw = np.array([x for q in queries for _, x in q])
    out["query tokens mean"] = ql.mean()
    out["query tokens p10"] = np.percentile(ql, 10)
    out["query tokens p90"] = np.percentile(ql, 90)
    for p in [10, 50, 90]:
        out[f"query weight p{p}"] = np.percentile(qw, p)
    # Work per query: postings of the query's tokens, as a fraction of documents.
    frac = {t: c / n for t, c in df.items()}
    work = np.array([sum(frac.get(t, 0.0) for t, _ in q) for q in queries])
    out["query postings / docs mean"] = work.mean()
    out["query postings / docs p90"] = np.percentile(work, 90)
    qr = np.array([rank_of.get(t, 0) for q in queries for t, _ in q])
    out["query tokens absent from docs"] = (qr == 0).mean()
    for lo, hi in zip(RANK_BUCKETS, RANK_BUCKETS[1:]):
        out[f"query tokens at doc rank {lo}-{hi - 1}"] = ((qr >= lo) & (qr < hi)).mean()
    return out


def fit(docs, queries):
    n = len(docs)
    nnz = np.array([len(d) for d in docs])
    df = Counter(t for d in docs for t, _ in d)
    ranked = df.most_common()
    rank_of = {t: i + 1 for i, (t, _) in enumerate(ranked)}
    head = ranked[:HEAD]
    # Tail: df(r) = df(HEAD) * (r / HEAD)^-alpha, fitted on ranks HEAD..(last rank with df >= 3)
    dfs = np.array([c for _, c in ranked], dtype=float) / n
    last = max(i for i, c in enumerate(ranked) if c[1] >= 3) + 1
    r = np.arange(HEAD + 1, last + 1)
    alpha = -np.polyfit(np.log(r / HEAD), np.log(dfs[HEAD:last] / dfs[HEAD - 1]), 1)[0]
    tail_share = dfs[HEAD:].sum() / dfs.sum()
    # Doc weights: log-normal mixture is overkill; store the empirical quantile function (64 points).
    w = np.sort(np.array([x for d in docs for _, x in d]))
    qs = [float(np.quantile(w, (i + 0.5) / 64)) for i in range(64)]
    # Queries: length quantiles; token doc-rank buckets; weight = a + b*ln(df frac) + N(0, sd), per token.
    ql = np.sort(np.array([len(q) for q in queries]))
    qlq = [int(round(np.quantile(ql, (i + 0.5) / 32))) for i in range(32)]
    qr = [rank_of.get(t, 0) for q in queries for t, _ in q]
    absent = sum(1 for x in qr if x == 0) / len(qr)
    bucket = [sum(1 for x in qr if lo <= x < hi) / len(qr) for lo, hi in zip(RANK_BUCKETS, RANK_BUCKETS[1:])]
    xs, ys = [], []
    wa = []
    for q in queries:
        for t, x in q:
            if t in df:
                xs.append(math.log(df[t] / n))
                ys.append(x)
            else:
                wa.append(x)
    b, a = np.polyfit(xs, ys, 1)
    sd = float(np.std(np.array(ys) - (a + b * np.array(xs))))
    return dict(nnz_median=float(np.exp(np.log(nnz).mean())), nnz_sigma=float(np.log(nnz).std()),
                nnz_max=int(nnz.max()), head=head, n=n, alpha=float(alpha), tail_share=float(tail_share),
                tail_ranks=int(len(ranked) * 1.0), weight_quantiles=qs, query_len_quantiles=qlq,
                query_absent=absent, query_rank_buckets=bucket, query_w=(float(a), float(b), sd),
                query_w_absent=float(np.median(wa)) if wa else 5.0)


def emit(f):
    head = f["head"]
    n = f["n"]
    print("//! Generated by `scripts/synth_fit.py fit` from SciFact (5,183 docs) encoded with")
    print("//! SPLADE-tiny (documents) and the built-in idf query model (1,109 queries). Do not edit.")
    print()
    print(f"/// Median non-zeros per document (geometric mean).\npub(crate) const NNZ_MEDIAN: f64 = {f['nnz_median']:.3f};")
    print(f"/// Log-space standard deviation of non-zeros per document.\npub(crate) const NNZ_SIGMA: f64 = {f['nnz_sigma']:.4f};")
    print(f"/// Largest non-zero count seen.\npub(crate) const NNZ_MAX: usize = {f['nnz_max']};")
    print(f"/// Exponent of the power-law document frequency beyond the head table.\npub(crate) const TAIL_ALPHA: f64 = {f['alpha']:.4f};")
    print("/// Empirical document-weight quantiles at (i + 0.5) / 64.")
    print("pub(crate) const WEIGHT_QUANTILES: [f32; 64] = [")
    for i in range(0, 64, 8):
        print("    " + " ".join(f"{x:.5},".replace("e-0", "e-") for x in f["weight_quantiles"][i:i + 8]))
    print("];")
    print("/// Query length quantiles at (i + 0.5) / 32.")
    print("pub(crate) const QUERY_LEN_QUANTILES: [u16; 32] = [")
    print("    " + " ".join(f"{x}," for x in f["query_len_quantiles"]))
    print("];")
    print(f"/// Share of query tokens that no document contains.\npub(crate) const QUERY_ABSENT: f64 = {f['query_absent']:.4f};")
    print("/// Share of query tokens per document-frequency rank bucket [1,4), [4,16), … [16384, ∞).")
    print("pub(crate) const QUERY_RANK_BUCKETS: [f64; 8] = [" + ", ".join(f"{x:.4f}" for x in f["query_rank_buckets"]) + "];")
    a, b, sd = f["query_w"]
    print(f"/// Query weight = A + B × ln(document frequency fraction) + N(0, SD) (fixed per token).\npub(crate) const QUERY_W_A: f64 = {a:.4f};\n/// See `QUERY_W_A`.\npub(crate) const QUERY_W_B: f64 = {b:.4f};\n/// See `QUERY_W_A`.\npub(crate) const QUERY_W_SD: f64 = {sd:.4f};")
    print(f"/// Median query weight of tokens absent from documents.\npub(crate) const QUERY_W_ABSENT: f64 = {f['query_w_absent']:.4f};")
    print(f"/// The {len(head)} most frequent document tokens: (bert-base-uncased id, document frequency × 65535), by frequency.")
    print(f"pub(crate) const HEAD: [(u16, u16); {len(head)}] = [")
    line = []
    for t, c in head:
        line.append(f"({t}, {max(1, round(c / n * 65535))}),")
        if len(line) == 8:
            print("    " + " ".join(line))
            line = []
    if line:
        print("    " + " ".join(line))
    print("];")


def main():
    cmd = sys.argv[1]
    docs, queries = load(*sys.argv[2:5])
    if cmd == "fit":
        emit(fit(docs, queries))
        return
    real = stats(docs, queries)
    sd, sq = [], []
    for l in open(sys.argv[5]):
        o = json.loads(l)
        (sd if "doc" in o else sq).append([tuple(x) for x in o.get("doc", o.get("query"))])
    df = Counter(t for d in docs for t, _ in d)
    syn = stats(sd, sq)
    print(f"{'statistic':<40} {'real (SciFact)':>16} {'synthetic':>16}")
    for k in real:
        print(f"{k:<40} {real[k]:>16.4g} {syn.get(k, float('nan')):>16.4g}")
    # Head-token identity: overlap of the top-100 token ids.
    top = lambda ds: {t for t, _ in Counter(t for d in ds for t, _ in d).most_common(100)}
    print(f"{'top-100 token ids in common':<40} {len(top(docs) & top(sd)):>16}")


if __name__ == "__main__":
    main()
