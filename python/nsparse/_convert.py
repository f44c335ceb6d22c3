"""Conversions of the accepted vector inputs to canonical float32 CSR, and back.

Accepted everywhere a vector or a batch of vectors is expected:

* scipy sparse arrays and matrices (any format; 1-D sparse arrays are one row),
* torch tensors: sparse COO (1-D or 2-D), sparse CSR, or dense (torch is imported only if the
  caller passes a torch object),
* dense numpy arrays (1-D or 2-D),
* ``{token: weight}`` dicts (one row) or lists of them; keys are token strings (looked up in a
  vocabulary) or int token ids,
* a pair ``(token_ids, weights)`` of 1-D arrays (one row; the cheapest form for a single query),
* lists of any of the single-row forms above.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, Optional, Sequence, Tuple

import numpy as np
import scipy.sparse as sp

# Maps token strings to ids; raises ValueError naming unknown tokens.
TokenIds = Callable[[Sequence[str]], np.ndarray]


def is_torch(x: Any) -> bool:
    """True for torch tensors, without importing torch."""
    return type(x).__module__.split(".", 1)[0] == "torch"


def _torch_to_csr(t: Any) -> Tuple[sp.csr_array, bool]:
    """A torch tensor as (CSR, was 1-D)."""
    import torch

    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    one_d = t.dim() == 1
    if t.dim() not in (1, 2):
        raise ValueError(f"invalid vectors: a torch tensor of {t.dim()} dimensions; pass one vector (1-D) or a batch (2-D)")
    shape = (1, t.shape[0]) if one_d else tuple(t.shape)
    if t.layout == torch.sparse_coo:
        t = t.coalesce()
        idx = t.indices().numpy()
        vals = t.values().to(torch.float32).numpy()
        if one_d:
            rows, cols = np.zeros(idx.shape[1], dtype=np.int64), idx[0]
        else:
            rows, cols = idx[0], idx[1]
        m = sp.csr_array((vals, (rows, cols)), shape=shape, dtype=np.float32)
    elif t.layout == torch.sparse_csr:
        m = sp.csr_array(
            (
                t.values().to(torch.float32).numpy(),
                t.col_indices().numpy(),
                t.crow_indices().numpy(),
            ),
            shape=shape,
        )
    elif t.layout == torch.strided:
        m = sp.csr_array(t.to(torch.float32).numpy().reshape(shape))
    else:
        raise ValueError(f"invalid vectors: torch layout {t.layout} is not supported; pass a sparse COO, sparse CSR or dense tensor")
    return m, one_d


def _dict_row(d: dict, token_ids: Optional[TokenIds]) -> Tuple[np.ndarray, np.ndarray]:
    keys = list(d.keys())
    weights = np.fromiter((float(w) for w in d.values()), dtype=np.float64, count=len(keys))
    if all(isinstance(k, str) for k in keys):
        if token_ids is None:
            raise ValueError("invalid vectors: {token: weight} dicts need a vocabulary here; pass token ids or a CSR matrix")
        ids = token_ids(keys)
    elif all(isinstance(k, numbers.Integral) and not isinstance(k, bool) for k in keys):
        ids = np.asarray(keys, dtype=np.int64)
    else:
        raise ValueError("invalid vectors: dict keys must be all token strings or all int token ids")
    return ids, weights


def _pair_row(pair: tuple) -> Tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(pair[0])
    weights = np.asarray(pair[1])
    if ids.ndim != 1 or weights.ndim != 1 or len(ids) != len(weights):
        raise ValueError(
            f"invalid vectors: a (token_ids, weights) pair needs two 1-D arrays of equal length, got shapes {ids.shape} and {weights.shape}"
        )
    if len(ids) and not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"invalid vectors: token ids must be integers, got {ids.dtype}")
    return ids.astype(np.int64, copy=False), weights.astype(np.float64, copy=False)


def _is_pair(x: Any) -> bool:
    return isinstance(x, tuple) and len(x) == 2 and not isinstance(x[0], (str, dict))


def _rows_to_csr(rows: Sequence[Tuple[np.ndarray, np.ndarray]], width: Optional[int]) -> sp.csr_array:
    lengths = np.fromiter((len(r[0]) for r in rows), dtype=np.int64, count=len(rows))
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    if len(rows):
        indices = np.concatenate([r[0] for r in rows]).astype(np.int64, copy=False)
        data = np.concatenate([r[1] for r in rows])
    else:
        indices, data = np.zeros(0, np.int64), np.zeros(0)
    if len(indices) and indices.min() < 0:
        raise ValueError(f"invalid vectors: negative token id {int(indices.min())}")
    cols = int(indices.max()) + 1 if len(indices) else 0
    cols = max(cols, width or 0)
    check_values(data, indptr, "vectors")
    m = sp.csr_array((data.astype(np.float32), indices, indptr), shape=(len(rows), cols))
    return m


def check_values(data: np.ndarray, indptr: np.ndarray, what: str) -> None:
    """ValueError naming the first row with a NaN, infinite or negative weight."""
    bad = ~np.isfinite(data) | (data < 0)
    if bad.any():
        pos = int(np.argmax(bad))
        row = int(np.searchsorted(indptr, pos, side="right") - 1)
        raise ValueError(
            f"invalid {what}: row {row} has weight {data[pos]}; weights must be finite and >= 0"
        )


def to_csr(
    x: Any,
    *,
    token_ids: Optional[TokenIds] = None,
    width: Optional[int] = None,
    what: str = "vectors",
) -> Tuple[sp.csr_array, bool]:
    """``x`` as a canonical float32 CSR array and whether it was a single vector.

    ``token_ids`` maps dict keys to ids; ``width`` is the minimum number of columns.
    Raises ValueError for NaN, infinite or negative weights and for unsupported inputs.
    """
    single = False
    if sp.issparse(x):
        if x.ndim == 1:
            single = True
            coo = x.tocoo()
            m = sp.csr_array(
                (coo.data, (np.zeros(coo.nnz, dtype=np.int64), coo.coords[0])),
                shape=(1, x.shape[0]),
            )
        else:
            m = sp.csr_array(x)
    elif is_torch(x):
        m, single = _torch_to_csr(x)
    elif isinstance(x, np.ndarray):
        if x.ndim not in (1, 2):
            raise ValueError(f"invalid {what}: a numpy array of shape {x.shape}; pass 1-D or 2-D")
        single = x.ndim == 1
        if not np.issubdtype(x.dtype, np.number):
            raise ValueError(f"invalid {what}: a numpy array of dtype {x.dtype}; pass numbers")
        m = sp.csr_array(np.atleast_2d(x).astype(np.float32))
    elif isinstance(x, dict):
        return _rows_to_csr([_dict_row(x, token_ids)], width), True
    elif _is_pair(x):
        return _rows_to_csr([_pair_row(x)], width), True
    elif isinstance(x, (list, tuple)):
        if all(isinstance(r, dict) for r in x):
            return _rows_to_csr([_dict_row(r, token_ids) for r in x], width), False
        if all(_is_pair(r) for r in x):
            return _rows_to_csr([_pair_row(r) for r in x], width), False
        if any(isinstance(r, str) for r in x):
            raise ValueError(f"invalid {what}: got text; encode it first (SparseEncoder.encode_document)")
        parts = [to_csr(r, token_ids=token_ids, width=width, what=what)[0] for r in x]
        cols = max([p.shape[1] for p in parts] + [width or 0])
        m = sp.vstack([_widen(p, cols) for p in parts], format="csr") if parts else sp.csr_array((0, cols))
        m = sp.csr_array(m)
    elif isinstance(x, str):
        raise ValueError(f"invalid {what}: got text; encode it first (SparseEncoder.encode_document)")
    else:
        raise ValueError(
            f"invalid {what}: {type(x).__name__} is not supported; pass a scipy sparse matrix, a torch tensor, "
            "a numpy array, a {token: weight} dict or a list of them"
        )
    if m.dtype != np.float32:
        m = m.astype(np.float32)
    if not m.has_canonical_format:
        m = m.copy()
        m.sum_duplicates()
    check_values(m.data, m.indptr, what)
    if width is not None and m.shape[1] < width:
        m = _widen(m, width)
    return m, single


def _widen(m: sp.csr_array, cols: int) -> sp.csr_array:
    if m.shape[1] == cols:
        return m
    return sp.csr_array((m.data, m.indices, m.indptr), shape=(m.shape[0], cols))


def csr_bytes(m: sp.csr_array) -> Tuple[bytes, bytes, bytes]:
    """The three buffers of the extension: indptr u64, indices u32, data f32 (little-endian)."""
    return (
        np.ascontiguousarray(m.indptr, dtype="<u8").tobytes(),
        np.ascontiguousarray(m.indices, dtype="<u4").tobytes(),
        np.ascontiguousarray(m.data, dtype="<f4").tobytes(),
    )


def csr_from_buffers(indptr: bytearray, indices: bytearray, data: bytearray, width: int) -> sp.csr_array:
    """A CSR array over the extension's returned buffers (no copy)."""
    ip = np.frombuffer(indptr, dtype="<u8")
    nnz = int(ip[-1]) if len(ip) else 0
    idx_dtype = np.int32 if nnz < 2**31 and width < 2**31 else np.int64
    return sp.csr_array(
        (
            np.frombuffer(data, dtype="<f4"),
            np.frombuffer(indices, dtype="<u4").astype(idx_dtype),
            ip.astype(idx_dtype),
        ),
        shape=(len(ip) - 1, width),
    )


def csr_to_torch(m: sp.csr_array, single: bool) -> Any:
    """A torch sparse COO tensor like sentence-transformers returns (1-D for one text)."""
    import torch

    coo = m.tocoo()
    values = torch.from_numpy(np.ascontiguousarray(coo.data, dtype=np.float32))
    if single:
        idx = torch.from_numpy(np.asarray(coo.col, dtype=np.int64)).unsqueeze(0)
        return torch.sparse_coo_tensor(idx, values, (m.shape[1],)).coalesce()
    idx = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    return torch.sparse_coo_tensor(idx, values, tuple(m.shape)).coalesce()
