"""``SparseEncoder``: the sentence-transformers ``SparseEncoder`` API over nsparse's Rust encoder."""

from __future__ import annotations

import os
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import scipy.sparse as sp

from . import _nsparse
from ._convert import csr_from_buffers, csr_to_torch, is_torch, to_csr

Texts = Union[str, Sequence[str]]
_OUTPUTS = ("scipy", "torch", "dict")


def _texts(texts: Texts, what: str) -> Tuple[List[str], bool]:
    if isinstance(texts, str):
        return [texts], True
    if isinstance(texts, (bytes, bytearray)):
        raise ValueError(f"invalid {what}: got bytes; decode them to str first")
    try:
        items = list(texts)
    except TypeError:
        raise ValueError(f"invalid {what}: {type(texts).__name__} is neither a str nor a list of str") from None
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise ValueError(f"invalid {what}: item {i} is a {type(t).__name__}, not a str")
    return items, False


def _prune_args(prune: Any) -> Tuple[Optional[str], Optional[float]]:
    if prune is None:
        return None, None
    if isinstance(prune, dict):
        unknown = set(prune) - {"prune_type", "prune_ratio"}
        if unknown:
            raise ValueError(f"invalid prune: unknown keys {sorted(unknown)}; use prune_type and prune_ratio")
        return prune.get("prune_type"), prune.get("prune_ratio")
    if isinstance(prune, (tuple, list)) and len(prune) == 2:
        return str(prune[0]), float(prune[1])
    raise ValueError(
        'invalid prune: pass (prune_type, prune_ratio), e.g. ("max_ratio", 0.1), or '
        '{"prune_type": ..., "prune_ratio": ...}'
    )


class Tokenizer:
    """The encoder's WordPiece tokenizer: token strings <-> ids (a small part of the Hugging Face
    tokenizer API: ``convert_ids_to_tokens``, ``convert_tokens_to_ids``, ``get_vocab``,
    ``tokenize``, ``encode``)."""

    def __init__(self, core: "_nsparse.Encoder"):
        self._core = core
        self._vocab: Optional[List[Optional[str]]] = None
        self._ids: Optional[Dict[str, int]] = None

    @property
    def _tokens(self) -> List[Optional[str]]:
        if self._vocab is None:
            self._vocab = self._core.vocab()
        return self._vocab

    @property
    def _token_ids(self) -> Dict[str, int]:
        if self._ids is None:
            self._ids = {t: i for i, t in enumerate(self._tokens) if t is not None}
        return self._ids

    @property
    def vocab_size(self) -> int:
        """Number of ids (the width of the encoder's vectors)."""
        return self._core.vocab_size

    @property
    def model_max_length(self) -> int:
        """Longest input in tokens."""
        return self._core.max_seq_length

    def __len__(self) -> int:
        return self._core.vocab_size

    def get_vocab(self) -> Dict[str, int]:
        """``{token: id}``."""
        return dict(self._token_ids)

    def convert_ids_to_tokens(self, ids: Union[int, Sequence[int]]) -> Union[str, List[str]]:
        """Token strings of ids (``"[id N]"`` for an id without a token)."""
        tokens = self._tokens

        def one(i: int) -> str:
            i = int(i)
            t = tokens[i] if 0 <= i < len(tokens) else None
            return t if t is not None else f"[id {i}]"

        if isinstance(ids, (int, np.integer)):
            return one(ids)
        return [one(i) for i in ids]

    def convert_tokens_to_ids(self, tokens: Union[str, Sequence[str]]) -> Union[Optional[int], List[Optional[int]]]:
        """Ids of token strings (``None`` for a string that is not a token)."""
        table = self._token_ids
        if isinstance(tokens, str):
            return table.get(tokens)
        return [table.get(t) for t in tokens]

    def ids_strict(self, tokens: Sequence[str]) -> np.ndarray:
        """Ids of token strings; a ValueError names the tokens the vocabulary lacks."""
        table = self._token_ids
        try:
            return np.fromiter((table[t] for t in tokens), dtype=np.int64, count=len(tokens))
        except KeyError:
            missing = [t for t in tokens if t not in table]
            shown = ", ".join(repr(t) for t in missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise ValueError(
                f"invalid vectors: {len(missing)} token(s) not in the vocabulary of {self._core.spec}: {shown}; "
                "use the tokens of the model that encoded the vectors"
            ) from None

    def tokenize(self, text: str) -> List[str]:
        """The WordPiece tokens of ``text`` (no special tokens)."""
        return self.convert_ids_to_tokens(self._core.tokenize(text, document=False))

    def encode(self, text: str, add_special_tokens: bool = True) -> List[int]:
        """Token ids of ``text``: as a document (``[CLS] ... [SEP]``) or, without special tokens,
        as a query. Cut at ``model_max_length``."""
        return self._core.tokenize(text, document=add_special_tokens)

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, model_max_length={self.model_max_length})"


class SparseEncoder:
    """A learned-sparse encoder with sentence-transformers' ``SparseEncoder`` API.

    ``model`` is a Hugging Face model folder (``config.json``, ``model.safetensors``,
    ``tokenizer.json`` or ``vocab.txt``, optional ``idf.json``) or a Hub id. Inference-free
    models (with ``idf.json``) encode queries by idf lookup, bi-encoders through the network.
    ``SparseEncoder.builtin_query_model()`` is the OpenSearch ``bert-uncased`` inference-free
    query encoder embedded in the package (no files).

    Parameters: ``precision`` ``"exact"`` (fp32, equal to PyTorch within 1e-4) or ``"fast"``
    (int16 kernels); ``threads`` (``None``: one per core); ``chunk_long_documents`` (encode
    documents over 512 tokens as 512-token windows keeping each token's max, instead of
    truncating); ``prune`` (OpenSearch ingest pruning of document vectors:
    ``("max_ratio", 0.1)``, ``("top_k", 64)``, ``("alpha_mass", 0.5)``, ``("abs_value", 0.1)``);
    ``idf`` (``"builtin"`` or an idf.json path: inference-free queries for any model);
    ``neural_queries`` (queries through the network even with idf.json); ``batch_tokens``
    (tokens per forward pass).
    """

    def __init__(
        self,
        model: Union[str, "os.PathLike[str]"],
        *,
        precision: str = "exact",
        threads: Optional[int] = None,
        chunk_long_documents: bool = False,
        prune: Any = None,
        idf: Optional[str] = None,
        neural_queries: bool = False,
        batch_tokens: int = 4096,
    ):
        if model is None:
            raise ValueError("invalid model: None; pass a model folder or Hub id, or use SparseEncoder.builtin_query_model()")
        model = os.fspath(model)
        prune_type, prune_ratio = _prune_args(prune)
        self._init(
            _nsparse.Encoder(
                model,
                precision=precision,
                threads=threads,
                chunk_long_documents=chunk_long_documents,
                batch_tokens=batch_tokens,
                prune_type=prune_type,
                prune_ratio=prune_ratio,
                idf=None if idf is None else os.fspath(idf),
                neural_queries=neural_queries,
            )
        )

    def _init(self, core: "_nsparse.Encoder") -> None:
        self._core = core
        self._tokenizer = Tokenizer(core)
        self.truncated_documents = 0

    @classmethod
    def builtin_query_model(cls, *, threads: Optional[int] = None) -> "SparseEncoder":
        """The built-in inference-free query encoder (OpenSearch ``bert-uncased`` tokenizer +
        idf.json, embedded): ``encode_query`` works, ``encode_document`` raises ValueError."""
        self = cls.__new__(cls)
        self._init(_nsparse.Encoder(None, threads=threads))
        return self

    # ---- properties ----------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Width of the vectors."""
        return self._core.vocab_size

    @property
    def max_seq_length(self) -> int:
        """Longest input in tokens (longer documents are truncated, or chunked)."""
        return self._core.max_seq_length

    @property
    def tokenizer(self) -> Tokenizer:
        """Token strings <-> ids."""
        return self._tokenizer

    @property
    def model_name(self) -> str:
        """``"builtin"``, the model folder's absolute path, or the Hub id."""
        return self._core.spec

    @property
    def fingerprint(self) -> str:
        """The model files' identity, recorded by indexes built with this model."""
        return self._core.fingerprint

    @property
    def query_mode(self) -> str:
        """``"inference-free"`` or ``"bi-encoder"``."""
        return self._core.query_mode

    @property
    def can_encode_documents(self) -> bool:
        """Whether the model has network weights."""
        return self._core.can_encode_documents

    @property
    def precision(self) -> str:
        return self._core.precision

    def __repr__(self) -> str:
        return repr(self._core)

    # ---- encoding ------------------------------------------------------------------------
    def encode_query(
        self,
        texts: Texts,
        *,
        batch_size: int = 32,
        show_progress_bar: Optional[bool] = None,
        output: str = "scipy",
    ) -> Any:
        """Encodes queries: a ``scipy.sparse.csr_array`` of shape ``(n, vocab_size)`` (``n`` = 1
        for a ``str``), float32; ``output="torch"`` gives a torch sparse COO tensor (1-D for a
        ``str``) and ``output="dict"`` ``{token: weight}`` dicts."""
        return self._encode(texts, False, batch_size, show_progress_bar, output, "queries")

    def encode_document(
        self,
        texts: Texts,
        *,
        batch_size: int = 32,
        show_progress_bar: Optional[bool] = None,
        output: str = "scipy",
    ) -> Any:
        """Encodes documents through the network (see ``encode_query`` for the output)."""
        return self._encode(texts, True, batch_size, show_progress_bar, output, "documents")

    def encode(
        self,
        texts: Texts,
        *,
        batch_size: int = 32,
        show_progress_bar: Optional[bool] = None,
        output: str = "scipy",
    ) -> Any:
        """``encode_document`` for models with a network, ``encode_query`` for query-only models."""
        documents = self._core.can_encode_documents
        return self._encode(texts, documents, batch_size, show_progress_bar, output, "texts")

    def _encode(self, texts, documents, batch_size, show_progress_bar, output, what):
        if output not in _OUTPUTS:
            raise ValueError(f'invalid output: {output!r}; use "scipy", "torch" or "dict"')
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"invalid batch_size: {batch_size!r}; pass a positive int")
        items, single = _texts(texts, what)
        if documents and not self._core.can_encode_documents:
            # The Rust message names the model and what to do.
            self._core.encode_documents([])
        through_network = documents or self._core.query_mode == "bi-encoder"
        n = len(items)
        width = self._core.vocab_size
        if not through_network:
            # Inference-free queries: an idf lookup, all at once on the Rust threads.
            step = max(batch_size, 8192)
            order = None
        else:
            step = batch_size
            # As sentence-transformers does: longest first, so batches hold similar lengths.
            order = np.argsort([-len(t) for t in items], kind="stable") if n > 1 else None
        bar = _progress(show_progress_bar, n, f"Encoding {what}")
        parts = []
        truncated = 0
        try:
            for start in range(0, n, step):
                idx = order[start : start + step] if order is not None else range(start, min(n, start + step))
                chunk = [items[i] for i in idx]
                if documents:
                    indptr, indices, data, cut, _tokens = self._core.encode_documents(chunk)
                    truncated += cut
                else:
                    indptr, indices, data = self._core.encode_queries(chunk)
                parts.append(csr_from_buffers(indptr, indices, data, width))
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
        if documents:
            self.truncated_documents = truncated
            if truncated:
                warnings.warn(
                    f"{truncated} of {n} documents were longer than {self.max_seq_length} tokens and were "
                    "truncated; pass chunk_long_documents=True to encode them whole",
                    stacklevel=3,
                )
        if not parts:
            m = sp.csr_array((0, width), dtype=np.float32)
        elif len(parts) == 1:
            m = parts[0]
        else:
            m = sp.csr_array(sp.vstack(parts, format="csr"))
        if order is not None:
            m = m[np.argsort(order)]
        return self._output(m, single, output)

    def _output(self, m: sp.csr_array, single: bool, output: str) -> Any:
        if output == "torch":
            return csr_to_torch(m, single)
        if output == "dict":
            dicts = self._dicts(m)
            return dicts[0] if single else dicts
        return m

    def _dicts(self, m: sp.csr_array) -> List[Dict[str, float]]:
        tokens = self._tokenizer._tokens
        out = []
        for r in range(m.shape[0]):
            a, b = m.indptr[r], m.indptr[r + 1]
            out.append({_name(tokens, int(i)): float(w) for i, w in zip(m.indices[a:b], m.data[a:b])})
        return out

    # ---- vectors -------------------------------------------------------------------------
    def to_csr(self, vectors: Any) -> sp.csr_array:
        """Any accepted vector input (scipy, torch, numpy, ``{token: weight}`` dicts, lists of
        them) as a float32 CSR array of at least ``vocab_size`` columns."""
        return to_csr(vectors, token_ids=self._tokenizer.ids_strict, width=self.vocab_size)[0]

    def similarity(self, a: Any, b: Any) -> np.ndarray:
        """Dot products: a float32 numpy array of shape ``(len(a), len(b))``. ``a`` and ``b`` are
        scipy sparse, torch tensors (sparse or dense), numpy arrays or ``{token: weight}`` dicts
        (or lists of them)."""
        ma = self.to_csr(a).astype(np.float64)
        mb = self.to_csr(b).astype(np.float64)
        cols = max(ma.shape[1], mb.shape[1])
        ma = _resize(ma, cols)
        mb = _resize(mb, cols)
        return np.asarray((ma @ mb.T).toarray(), dtype=np.float32)

    def decode(self, vectors: Any, top_k: Optional[int] = None) -> Union[List[Tuple[str, float]], List[List[Tuple[str, float]]]]:
        """Token strings with weights, sorted by weight (highest first), at most ``top_k`` each:
        ``[(token, weight), ...]`` for one vector (a 1-D tensor, a dict, or a matrix with one
        row), a list of such lists for several (a 2-D torch tensor always gives a list of lists,
        as in sentence-transformers)."""
        if top_k is not None and (not isinstance(top_k, int) or top_k < 0):
            raise ValueError(f"invalid top_k: {top_k!r}; pass a non-negative int or None")
        two_d_torch = is_torch(vectors) and vectors.dim() == 2
        m, single = to_csr(vectors, token_ids=self._tokenizer.ids_strict, width=self.vocab_size)
        tokens = self._tokenizer._tokens
        rows = []
        for r in range(m.shape[0]):
            a, b = m.indptr[r], m.indptr[r + 1]
            ids, w = m.indices[a:b], m.data[a:b]
            order = np.argsort(-w, kind="stable")[:top_k]
            rows.append([(_name(tokens, int(ids[i])), float(w[i])) for i in order])
        if single or (m.shape[0] == 1 and not two_d_torch):
            return rows[0] if rows else []
        return rows


def _name(tokens: List[Optional[str]], i: int) -> str:
    t = tokens[i] if i < len(tokens) else None
    return t if t is not None else f"[id {i}]"


def _resize(m: sp.csr_array, cols: int) -> sp.csr_array:
    if m.shape[1] == cols:
        return m
    return sp.csr_array((m.data, m.indices, m.indptr), shape=(m.shape[0], cols))


def _progress(show: Optional[bool], total: int, desc: str):
    if not show:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        warnings.warn("show_progress_bar needs tqdm (pip install tqdm); encoding without a bar", stacklevel=4)
        return None
    return tqdm(total=total, desc=desc)
