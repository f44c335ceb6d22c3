#!/usr/bin/env python3
"""Build the document set of the encoding benchmark.

Usage (from the repository root):

    python3 bench/make_bench_docs.py target/bench-docs.jsonl

Writes 256 lines {"_id": "bench-000", "text": "..."}: each text concatenates
consecutive Cranfield abstracts (data/cranfield/corpus.jsonl, "text" field)
until it has at least 250 BERT tokens (counting [CLS] and [SEP]), then keeps
the shortest prefix of whole words that still reaches 250 tokens, so every
document has 250-272 tokens (checked). The next document starts at the next
unused abstract. Deterministic: no randomness involved.

Needs: transformers (tokenizers), for the bundled bert-base-uncased tokenizer.
"""

import json
import sys
from pathlib import Path

try:
    from transformers import PreTrainedTokenizerFast
except ImportError as exc:
    sys.exit(f"make_bench_docs.py: missing Python dependency ({exc}).\n"
             "Install with: pip install transformers")

REPO = Path(__file__).resolve().parents[1]
TOKENIZER_JSON = REPO / "crates/nsparse-model/assets/opensearch-query-v1/tokenizer.json"
CRANFIELD = REPO / "data/cranfield/corpus.jsonl"
N_DOCS = 256
MIN_TOKENS, MAX_TOKENS = 250, 272  # range the docs are cut to
CHECK_RANGE = (240, 272)  # the range promised to the bench consumers


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.exit("usage: python3 bench/make_bench_docs.py OUT.jsonl")
    out = Path(sys.argv[1])
    tok = PreTrainedTokenizerFast(tokenizer_file=str(TOKENIZER_JSON), unk_token="[UNK]",
                                  cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]",
                                  mask_token="[MASK]")

    def n_tokens(words: list[str]) -> int:
        return len(tok(" ".join(words))["input_ids"])  # with [CLS] and [SEP]

    abstracts = [json.loads(line)["text"] for line in CRANFIELD.open(encoding="utf-8")]
    docs, i = [], 0
    while len(docs) < N_DOCS:
        if i >= len(abstracts):
            sys.exit(f"make_bench_docs.py: corpus exhausted after {len(docs)} documents")
        words: list[str] = []
        while n_tokens(words) < MIN_TOKENS and i < len(abstracts):
            words += abstracts[i].split()
            i += 1
        if n_tokens(words) < MIN_TOKENS:
            continue  # ran out of corpus on a partial document; the check above exits
        # Shortest word prefix reaching MIN_TOKENS (token counts grow with the prefix).
        lo, hi = 1, len(words)
        while lo < hi:
            mid = (lo + hi) // 2
            if n_tokens(words[:mid]) >= MIN_TOKENS:
                hi = mid
            else:
                lo = mid + 1
        words = words[:lo]
        count = n_tokens(words)
        if count > MAX_TOKENS:  # one huge word; drop it rather than break the range
            words = words[:-1]
            count = n_tokens(words)
        assert CHECK_RANGE[0] <= count <= CHECK_RANGE[1], count
        docs.append({"_id": f"bench-{len(docs):03d}", "text": " ".join(words)})

    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    counts = [n_tokens(d["text"].split()) for d in docs]
    print(f"wrote {out}: {len(docs)} documents, {min(counts)}-{max(counts)} tokens "
          f"(mean {sum(counts) / len(counts):.1f}), used {i} of {len(abstracts)} abstracts")


if __name__ == "__main__":
    main()
