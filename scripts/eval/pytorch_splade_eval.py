#!/usr/bin/env python3
"""SPLADE-tiny on a BEIR dataset with PyTorch/transformers + pytrec_eval: the reference that
`nsparse eval` is checked against.

It computes, independently of nsparse, what `nsparse eval --model DIR` (bi-encoder queries) and
`nsparse eval --model DIR --idf builtin` (inference-free queries) compute:
  documents  title + " " + text (title omitted when empty), [CLS] ... [SEP], truncated at 512
             tokens, max over positions of the MLM logits, log(1 + relu(.)), special ids zeroed
             (the OpenSearch model card's document encoder);
  queries    bi-encoder: the same encoder on the query text; inference-free: the unique tokens of
             the query (no special tokens, 512 max), each weighted by the idf.json that nsparse
             embeds (crates/nsparse-model/assets/opensearch-query-v1/idf.json);
  retrieval  exact dot products (scipy sparse), top 1000 per query, a document whose _id equals
             the query id dropped (BEIR's ignore_identical_ids);
  metrics    pytrec_eval NDCG@10 (ndcg_cut_10), Recall@100, MAP@100 (map_cut_100), MRR@10
             (recip_rank of the run cut at 10), averaged over the judged queries.

Usage (from the repository root; ~1-2 min on 2 cores for SciFact's 5,183 documents):
    scripts/fetch-splade-tiny.sh target/cache/splade-tiny
    python3 scripts/eval/pytorch_splade_eval.py --model target/cache/splade-tiny \
        --dataset PATH/TO/scifact [--split test] [--runs-dir DIR] [--json]

Requirements: python3 >= 3.10, torch, transformers 5, numpy, scipy, and
`pip install pytrec-eval-terrier` (the `pytrec_eval` sdist needs network access at build time).
"""
import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytrec_eval
import scipy.sparse as sp
import torch
from transformers import BertForMaskedLM, PreTrainedTokenizerFast

MAX_LENGTH = 512
REPO = Path(__file__).resolve().parents[2]
BUILTIN_IDF = REPO / "crates/nsparse-model/assets/opensearch-query-v1/idf.json"


def load_beir(dataset: Path, split: str):
    qrels = {}
    with open(dataset / "qrels" / f"{split}.tsv", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_MINIMAL)
        next(reader)
        for qid, did, score in reader:
            qrels.setdefault(qid, {})[did] = int(score)
    corpus = []
    with open(dataset / "corpus.jsonl") as f:
        for line in f:
            d = json.loads(line)
            title, text = d.get("title") or "", d.get("text") or ""
            corpus.append((str(d["_id"]), f"{title} {text}" if title else text))
    queries = []
    with open(dataset / "queries.jsonl") as f:
        for line in f:
            q = json.loads(line)
            if str(q["_id"]) in qrels:
                queries.append((str(q["_id"]), q.get("text") or ""))
    return corpus, queries, qrels


def load_model(model_dir: Path):
    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(model_dir / "tokenizer.json"),
        unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]",
        mask_token="[MASK]", model_max_length=MAX_LENGTH,
    )
    model = BertForMaskedLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    return tok, model.float().eval()


def encode(model, tok, texts, batch_tokens, label):
    """SPLADE vectors as a CSR matrix (rows in input order); length-sorted batches of at most
    `batch_tokens` padded tokens, so the [tokens x vocab] logits stay a few hundred MB."""
    vocab = model.config.vocab_size
    specials = torch.tensor(sorted(tok.all_special_ids))
    ids = tok(texts, add_special_tokens=True, truncation=True, max_length=MAX_LENGTH)["input_ids"]
    order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
    batches, current = [], []
    for i in order:
        if current and len(ids[i]) * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    rows = [None] * len(texts)
    started, done = time.time(), 0
    with torch.inference_mode():
        for batch in batches:
            width = max(len(ids[i]) for i in batch)
            input_ids = torch.zeros((len(batch), width), dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, i in enumerate(batch):
                input_ids[r, :len(ids[i])] = torch.tensor(ids[i])
                mask[r, :len(ids[i])] = 1
            logits = model(input_ids=input_ids, attention_mask=mask).logits
            # log(1 + relu(.)) is non-decreasing, so it commutes with the max over positions:
            # take the max of the raw logits over real (unpadded) positions first.
            logits.masked_fill_(mask.unsqueeze(-1) == 0, float("-inf"))
            values = logits.max(dim=1).values
            weights = torch.log(1 + torch.relu(values))
            weights[:, specials] = 0
            for r, i in enumerate(batch):
                nz = torch.nonzero(weights[r]).flatten()
                rows[i] = (nz.numpy(), weights[r, nz].numpy())
            done += len(batch)
            print(f"\r{label}: {done}/{len(order)}", end="", file=sys.stderr)
    print(f"\r{label}: {len(order)} in {time.time() - started:.1f} s", file=sys.stderr)
    return to_csr(rows, vocab)


def to_csr(rows, vocab):
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(r[0]) for r in rows])
    indices = np.concatenate([r[0] for r in rows]) if rows else np.zeros(0, np.int64)
    data = np.concatenate([r[1] for r in rows]).astype(np.float32) if rows else np.zeros(0, np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=(len(rows), vocab))


def inference_free_queries(tok, texts, vocab):
    idf_map = json.loads(BUILTIN_IDF.read_text())
    idf = np.zeros(vocab, dtype=np.float32)
    for token, weight in idf_map.items():
        tid = tok.convert_tokens_to_ids(token)
        if tid is not None and tid != tok.unk_token_id and tid < vocab:
            idf[tid] = weight
    if "[UNK]" in idf_map:
        idf[tok.unk_token_id] = idf_map["[UNK]"]
    rows = []
    for text in texts:
        ids = np.array(sorted(set(tok(text, add_special_tokens=False, truncation=True, max_length=MAX_LENGTH)["input_ids"])), dtype=np.int64)
        w = idf[ids] if len(ids) else np.zeros(0, np.float32)
        keep = w != 0
        rows.append((ids[keep], w[keep]))
    return to_csr(rows, vocab)


def retrieve(q, d, query_ids, doc_ids, k=1000):
    scores = (q @ d.T).toarray()  # queries x documents, float32 dot products
    run = {}
    for i, qid in enumerate(query_ids):
        s = scores[i]
        top = np.argsort(-s, kind="stable")[:k + 1]
        hits = {}
        for j in top:
            if s[j] <= 0 or doc_ids[j] == qid:
                continue
            hits[doc_ids[j]] = float(s[j])
            if len(hits) == k:
                break
        run[qid] = hits
    return run


def evaluate(qrels, run):
    ev = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100", "map_cut.100"})
    res = ev.evaluate(run)
    # MRR@10: recip_rank of the run cut at 10 in trec_eval's order (score desc, docid desc).
    cut = {q: dict(sorted(d.items(), key=lambda kv: (kv[1], kv[0].encode()), reverse=True)[:10]) for q, d in run.items()}
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut)
    n = len(res)
    return {
        "NDCG@10": sum(v["ndcg_cut_10"] for v in res.values()) / n,
        "Recall@100": sum(v["recall_100"] for v in res.values()) / n,
        "MRR@10": sum(v["recip_rank"] for v in rr.values()) / n,
        "MAP@100": sum(v["map_cut_100"] for v in res.values()) / n,
        "queries": n,
    }


def flops(q, d):
    pq = np.asarray((q != 0).sum(axis=0)).ravel() / q.shape[0]
    pd = np.asarray((d != 0).sum(axis=0)).ravel() / d.shape[0]
    return float(pq @ pd)


def write_run(path, run, tag):
    with open(path, "w") as f:
        for qid in sorted(run):
            ranked = sorted(run[qid].items(), key=lambda kv: (kv[1], kv[0].encode()), reverse=True)
            for rank, (did, s) in enumerate(ranked, 1):
                f.write(f"{qid} Q0 {did} {rank} {s} {tag}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=REPO / "target/cache/splade-tiny")
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--batch-tokens", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs-dir", type=Path, help="also write TREC runs here")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    corpus, queries, qrels = load_beir(args.dataset, args.split)
    tok, model = load_model(args.model)
    doc_ids = [d for d, _ in corpus]
    query_ids = [q for q, _ in queries]
    docs = encode(model, tok, [t for _, t in corpus], args.batch_tokens, "encode docs")
    out = {"dataset": str(args.dataset), "split": args.split, "documents": len(corpus),
           "avg_doc_nonzeros": docs.nnz / docs.shape[0]}
    modes = {
        "bi-encoder": lambda: encode(model, tok, [t for _, t in queries], args.batch_tokens, "encode queries"),
        "inference-free": lambda: inference_free_queries(tok, [t for _, t in queries], model.config.vocab_size),
    }
    for mode, make in modes.items():
        q = make()
        run = retrieve(q, docs, query_ids, doc_ids)
        res = evaluate(qrels, run)
        res["FLOPS"] = flops(q, docs)
        res["avg_query_nonzeros"] = q.nnz / q.shape[0]
        out[mode] = res
        if args.runs_dir:
            args.runs_dir.mkdir(parents=True, exist_ok=True)
            write_run(args.runs_dir / f"pytorch-{mode}.trec", run, f"pytorch-{mode}")
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{args.dataset} ({args.split}): {len(query_ids)} queries, {len(corpus)} documents, "
              f"avg doc non-zeros {out['avg_doc_nonzeros']:.1f}")
        for mode in modes:
            r = out[mode]
            print(f"  {mode:<15} " + "  ".join(f"{k} {r[k]:.4f}" for k in ("NDCG@10", "Recall@100", "MRR@10", "MAP@100", "FLOPS"))
                  + f"  avg query non-zeros {r['avg_query_nonzeros']:.1f}")


if __name__ == "__main__":
    main()
