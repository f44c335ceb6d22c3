"""``Index``: nsparse's durable inverted index, fed and queried from Python."""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from . import _nsparse
from ._convert import csr_bytes, to_csr
from .encoder import SparseEncoder

PathType = Union[str, "os.PathLike[str]"]
_RESERVED = ("model_spec", "model_name", "query_mode", "created_by")
_MODE_PARAMS = {
    "exact": (),
    "brute_force": (),
    "approximate": ("top_n", "heap_factor"),
    "two_phase": ("prune_ratio", "expansion_rate", "max_window_size"),
}


class Contribution(NamedTuple):
    """One matched token of a hit: ``query_weight * doc_weight = contribution``."""

    token: str
    query_weight: float
    doc_weight: float
    contribution: float


class Hit(NamedTuple):
    """A search result: ``id``, ``score`` (dot product over the stored f16 weights), the stored
    ``source`` (``None`` if none was stored or not requested) and, with ``explain=True``, the
    matched tokens."""

    id: str
    score: float
    source: Any
    explanation: Optional[List[Contribution]]


def _encode_source(s: Any) -> bytes:
    if s is None:
        return b""
    if isinstance(s, (bytes, bytearray, memoryview)):
        return bytes(s)
    try:
        return json.dumps(s, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise ValueError(f"invalid sources: {e}; pass JSON-serialisable values or bytes") from None


def _decode_source(b: Optional[bytes]) -> Any:
    if not b:
        return None
    try:
        return json.loads(b)
    except ValueError:
        return b


def _ids(ids: Union[str, Iterable[Any]], what: str = "ids") -> List[str]:
    if isinstance(ids, str):
        return [ids]
    out = []
    for i, x in enumerate(ids):
        if isinstance(x, (str, int, np.integer)) and not isinstance(x, bool):
            out.append(str(x))
        else:
            raise ValueError(f"invalid {what}: item {i} is a {type(x).__name__}; _ids are str (or int, stored as str)")
    return out


class Index:
    """An index directory opened for writing (one writer per directory; ``close()`` or ``with``
    releases it). Every ``add``/``upsert``/``delete`` is durable (write-ahead log, fsynced) when
    it returns and visible to the next search.

    Create with ``Index.create(path, model=None, ...)``, open with ``Index.open(path)``. The
    index records its model: text queries are encoded by it (the built-in inference-free query
    encoder when ``model`` is ``None``), and ``{token: weight}`` dicts use its tokenizer.
    """

    def __init__(self, *_: Any, **__: Any):
        raise TypeError("use nsparse.Index.create(path, ...) or nsparse.Index.open(path)")

    @classmethod
    def _wrap(cls, core: "_nsparse.IndexCore", encoder: Optional[SparseEncoder]) -> "Index":
        self = cls.__new__(cls)
        self._core = core
        model, metadata, vocab_size, *_ = core.info()
        self._model = model
        self._metadata = json.loads(metadata) if metadata else {}
        self._vocab_size = vocab_size
        self._encoder = None
        if encoder is not None:
            self._check_encoder(encoder)
            self._encoder = encoder
        return self

    @classmethod
    def create(
        cls,
        path: PathType,
        model: Union[None, PathType, SparseEncoder] = None,
        *,
        vocab_size: Optional[int] = None,
        metadata: Optional[dict] = None,
        bm25_k1: float = 1.2,
        bm25_b: float = 0.75,
        build_threads: Optional[int] = None,
        dense_columns_max_mb: Optional[int] = None,
    ) -> "Index":
        """Creates an index in ``path`` (created if missing; must not hold an index).

        ``model``: the encoder whose vectors go in and whose queries come out: ``None`` (the
        built-in inference-free query model: documents from any bert-base-uncased-vocabulary
        document encoder, such as the OpenSearch doc-v2/v3 models), a model folder / Hub id,
        or a ``SparseEncoder``. ``vocab_size`` defaults to the model's. ``metadata`` is stored
        in the manifest. The index is compatible with the ``nsparse`` CLI (``nsparse search
        --index PATH``)."""
        if isinstance(model, SparseEncoder):
            encoder = model
        elif model is None:
            encoder = SparseEncoder.builtin_query_model()
        else:
            encoder = SparseEncoder(model)
        meta = {
            "model_spec": encoder.model_name,
            "model_name": encoder._core.name,
            "query_mode": "InferenceFree" if encoder.query_mode == "inference-free" else "BiEncoder",
            "created_by": f"nsparse-python {_nsparse.__version__}",
        }
        if metadata is not None:
            if not isinstance(metadata, dict):
                raise ValueError("invalid metadata: pass a dict")
            clash = [k for k in metadata if k in _RESERVED]
            if clash:
                raise ValueError(f"invalid metadata: keys {clash} are reserved for the model's description")
            meta.update(metadata)
        try:
            meta_json = json.dumps(meta)
        except (TypeError, ValueError) as e:
            raise ValueError(f"invalid metadata: {e}; pass JSON-serialisable values") from None
        core = _nsparse.IndexCore.create(
            os.fspath(path),
            encoder.fingerprint,
            meta_json,
            int(vocab_size if vocab_size is not None else encoder.vocab_size),
            float(bm25_k1),
            float(bm25_b),
            build_threads,
            dense_columns_max_mb,
        )
        return cls._wrap(core, encoder)

    @classmethod
    def open(
        cls,
        path: PathType,
        *,
        model: Optional[SparseEncoder] = None,
        build_threads: Optional[int] = None,
        dense_columns_max_mb: Optional[int] = None,
    ) -> "Index":
        """Opens an existing index (verifies every file and replays the write-ahead log).
        ``model``: the encoder for text queries when the recorded one is not at hand (it must
        have the fingerprint the index recorded)."""
        core = _nsparse.IndexCore.open(os.fspath(path), build_threads, dense_columns_max_mb)
        try:
            return cls._wrap(core, model)
        except BaseException:
            core.close()
            raise

    # ---- properties ----------------------------------------------------------------------
    @property
    def path(self) -> str:
        return str(self._core.path)

    @property
    def model(self) -> str:
        """The model identity recorded at creation (the encoder's fingerprint)."""
        return self._model

    @property
    def metadata(self) -> dict:
        """The manifest's metadata: the model's description and the caller's keys."""
        return dict(self._metadata)

    @property
    def vocab_size(self) -> int:
        """Token ids of vectors must be below this."""
        return self._vocab_size

    @property
    def closed(self) -> bool:
        return self._core.closed

    def info(self) -> dict:
        """Model, metadata, vocabulary size, segments and document counts."""
        model, metadata, vocab, segments, live, deleted, buffered = self._core.info()
        return {
            "path": self.path,
            "model": model,
            "metadata": json.loads(metadata) if metadata else {},
            "vocab_size": vocab,
            "segments": segments,
            "live_docs": live,
            "deleted_docs": deleted,
            "buffered_docs": buffered,
        }

    def __len__(self) -> int:
        return len(self._core)

    def __contains__(self, id: str) -> bool:
        return self._core.__contains__(str(id))

    def __repr__(self) -> str:
        return f"Index({self.path!r}, documents={len(self) if not self.closed else 'closed'})"

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Releases the writer lock (idempotent)."""
        self._core.close()

    # ---- the model -----------------------------------------------------------------------
    def _check_encoder(self, encoder: SparseEncoder) -> None:
        if encoder.fingerprint != self._model:
            raise ValueError(
                f"the index {self.path} was built with model {self._metadata.get('model_spec', '?')} "
                f"({self._model}) but the encoder is {encoder.model_name} ({encoder.fingerprint}); "
                "use the model that built the index"
            )

    @property
    def encoder(self) -> SparseEncoder:
        """The query encoder of this index (loaded on first use)."""
        if self._encoder is None:
            spec = self._metadata.get("model_spec", "builtin")
            if spec == "bm25":
                raise ValueError(f"{self.path} is a BM25 index; the Python API searches neural indexes")
            if spec == "builtin":
                encoder = SparseEncoder.builtin_query_model()
            else:
                try:
                    encoder = SparseEncoder(spec)
                except OSError as e:
                    raise OSError(
                        f"cannot load the model that built {self.path} ({spec}): {e}; "
                        "pass it with nsparse.Index.open(path, model=SparseEncoder(...))"
                    ) from e
            self._check_encoder(encoder)
            self._encoder = encoder
        return self._encoder

    def _token_ids(self, tokens: Sequence[str]) -> np.ndarray:
        return self.encoder.tokenizer.ids_strict(tokens)

    def _vectors(self, vectors: Any, what: str):
        m, _ = to_csr(vectors, token_ids=self._token_ids, what=what)
        if m.nnz and int(m.indices.max()) >= self._vocab_size:
            raise ValueError(
                f"invalid {what}: token id {int(m.indices.max())} is outside the index's vocabulary of "
                f"{self._vocab_size} (the vectors have {m.shape[1]} columns); encode them with the index's model"
            )
        return m

    # ---- writing -------------------------------------------------------------------------
    def add(self, ids: Union[str, Sequence[Any]], vectors: Any, sources: Optional[Sequence[Any]] = None) -> None:
        """Adds documents: ``ids`` (str, or ints stored as str), one vector per id (scipy CSR
        rows, a torch sparse tensor, a list of ``{token: weight}`` dicts, ...) and optional
        stored ``sources`` (JSON-serialisable values, returned with hits, or bytes). Refuses an
        ``_id`` that is already live or repeated (``upsert`` replaces). All or nothing; durable
        on return. Large batches are written as one segment directly."""
        self._write(ids, vectors, sources, upsert=False)

    def upsert(self, ids: Union[str, Sequence[Any]], vectors: Any, sources: Optional[Sequence[Any]] = None) -> None:
        """Inserts or replaces documents by ``_id`` (later duplicates in the batch win)."""
        self._write(ids, vectors, sources, upsert=True)

    def _write(self, ids, vectors, sources, upsert):
        ids = _ids(ids)
        m = self._vectors(vectors, "vectors")
        if m.shape[0] != len(ids):
            raise ValueError(
                f"invalid vectors: {m.shape[0]} vectors for {len(ids)} ids; pass one vector (row) per id"
            )
        src = None
        if sources is not None:
            src = [_encode_source(s) for s in sources]
        self._core.add(ids, *csr_bytes(m), sources=src, upsert=upsert)

    def delete(self, ids: Union[str, Sequence[Any]]) -> int:
        """Deletes documents by ``_id``; returns how many existed. Durable on return."""
        return self._core.delete(_ids(ids))

    def commit(self) -> None:
        """Moves buffered documents into an immutable segment (not needed for durability)."""
        self._core.commit()

    def get(self, id: str) -> Any:
        """The stored source of ``id`` (``None`` if it has none); KeyError if no live document
        has that ``_id``."""
        raw = self._core.get(str(id))
        if raw is None:
            raise KeyError(id)
        return _decode_source(raw)

    def vector(self, id: str) -> dict:
        """The stored vector of ``id`` as ``{token: weight}`` (weights rounded to f16)."""
        got = self._core.vector(str(id))
        if got is None:
            raise KeyError(id)
        ids = np.frombuffer(got[0], dtype="<u4")
        weights = np.frombuffer(got[1], dtype="<f4")
        names = self.encoder.tokenizer.convert_ids_to_tokens(ids)
        return {t: float(w) for t, w in zip(names, weights)}

    # ---- searching -----------------------------------------------------------------------
    def _query_row(self, query: Any) -> Tuple[bytes, bytes]:
        """One query as (token ids u32 bytes, weights f32 bytes)."""
        if isinstance(query, str):
            m = self.encoder.encode_query(query)
        elif isinstance(query, tuple) and len(query) == 2 and isinstance(query[0], np.ndarray):
            ids, weights = query
            if ids.ndim != 1 or weights.shape != ids.shape:
                raise ValueError(
                    f"invalid query: (token_ids, weights) must be two 1-D arrays of equal length, got {ids.shape} and {weights.shape}"
                )
            w = np.ascontiguousarray(weights, dtype="<f4")
            if len(w) and not (np.isfinite(w).all() and (w >= 0).all()):
                raise ValueError("invalid query: weights must be finite and >= 0")
            if len(ids) and (ids.min() < 0 or ids.max() >= self._vocab_size):
                raise ValueError(f"invalid query: token ids must be in 0..{self._vocab_size}")
            return np.ascontiguousarray(ids, dtype="<u4").tobytes(), w.tobytes()
        else:
            m = self._vectors(query, "query")
        if m.shape[0] != 1:
            raise ValueError(f"invalid query: {m.shape[0]} vectors; search takes one (use search_batch for several)")
        return (
            np.ascontiguousarray(m.indices, dtype="<u4").tobytes(),
            np.ascontiguousarray(m.data, dtype="<f4").tobytes(),
        )

    @staticmethod
    def _mode_params(mode: str, params: dict) -> dict:
        if mode not in _MODE_PARAMS:
            raise ValueError(f'invalid mode: {mode!r} is unknown; use "exact", "approximate", "two_phase" or "brute_force"')
        allowed = _MODE_PARAMS[mode]
        unknown = [p for p in params if p not in allowed]
        if unknown:
            takes = f"mode {mode!r} takes {', '.join(allowed)}" if allowed else f"mode {mode!r} takes none"
            raise ValueError(
                f"invalid search parameters {unknown}: {takes}; top_n and heap_factor belong to mode=\"approximate\", "
                "prune_ratio, expansion_rate and max_window_size to mode=\"two_phase\""
            )
        return params

    def search(
        self,
        query: Any,
        k: int = 10,
        mode: str = "exact",
        explain: bool = False,
        filter: Union[None, Iterable[str], Callable[[str], bool]] = None,
        *,
        source: bool = True,
        **mode_params: Any,
    ) -> List[Hit]:
        """The top-``k`` documents by dot product with ``query``: a text (encoded by the
        index's model), a CSR row, a torch sparse vector, a ``{token: weight}`` dict or a pair
        ``(token_ids, weights)`` of numpy arrays.

        ``mode``: ``"exact"`` (scores equal brute force bit for bit), ``"approximate"``
        (``top_n`` = 10 query tokens select candidates, ``heap_factor`` = 1.0; > 1 prunes
        more), ``"two_phase"`` (OpenSearch's: ``prune_ratio`` 0.4, ``expansion_rate`` 5.0,
        ``max_window_size`` 10,000) or ``"brute_force"``. ``filter``: a collection of ``_id``s
        or a function of an ``_id``; hits are the top-k among accepted documents. ``explain``
        attaches the matched tokens; ``source=False`` skips reading stored sources."""
        params = self._mode_params(mode, mode_params)
        k = _check_k(k)
        ids, weights = self._query_row(query)
        raw = self._core.search(ids, weights, k, mode, explain=bool(explain), filter=filter, with_source=bool(source), **params)
        if not raw:
            return []
        names = self.encoder.tokenizer._tokens if explain else None
        hits = []
        for hid, score, src, expl in raw:
            if expl is not None:
                expl = [Contribution(_tok(names, t), q, d, c) for t, q, d, c in expl]
            hits.append(Hit(hid, score, _decode_source(src), expl))
        return hits

    def search_batch(
        self,
        queries: Any,
        k: int = 10,
        threads: Optional[int] = None,
        mode: str = "exact",
        **mode_params: Any,
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Top-``k`` of many queries at once, on ``threads`` Rust threads (``None``: one per
        core). ``queries``: a list of texts, a CSR matrix (one query per row), a 2-D torch
        sparse tensor or a list of dicts. Returns ``(ids, scores)``: an object array of
        ``_id``s and a float32 array, both ``(n, k)``, ``None`` / NaN past a query's last hit."""
        params = self._mode_params(mode, mode_params)
        k = _check_k(k)
        if isinstance(queries, str):
            raise ValueError("invalid queries: a single str; pass a list of texts (or use search)")
        if isinstance(queries, (list, tuple)) and queries and all(isinstance(q, str) for q in queries):
            m = self.encoder.encode_query(list(queries))
        else:
            m = self._vectors(queries, "queries")
        ids, scores = self._core.search_batch(*csr_bytes(m), k, mode, threads=threads, **params)
        n = m.shape[0]
        id_arr = np.empty(n * k, dtype=object)
        id_arr[:] = ids
        return id_arr.reshape(n, k), np.frombuffer(scores, dtype="<f4").reshape(n, k)


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"invalid k: {k!r}; pass a positive int")
    return int(k)


def _tok(names: Optional[List[Optional[str]]], i: int) -> str:
    t = names[i] if names is not None and i < len(names) else None
    return t if t is not None else f"[id {i}]"
