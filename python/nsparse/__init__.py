"""nsparse: learned sparse retrieval (OpenSearch inference-free neural sparse models, SPLADE) in
Rust, for Python.

* ``SparseEncoder``: sentence-transformers' ``SparseEncoder`` API (``encode_query``,
  ``encode_document``, ``encode``, ``similarity``, ``decode``) over nsparse's encoder; vectors
  are ``scipy.sparse.csr_array`` (or torch sparse tensors with ``output="torch"``).
* ``Index``: the durable inverted index, built from scipy / torch / ``{token: weight}`` vectors
  and searched exactly or approximately (``search``, ``search_batch``).

Long work runs in Rust with the GIL released. Bad input raises ``ValueError``, file problems
``OSError``, each with a message naming the input, the problem and the fix.
"""

from ._nsparse import BUILTIN_QUERY_MODEL, MAX_LENGTH
from ._nsparse import __version__ as __version__
from .encoder import SparseEncoder, Tokenizer
from .index import Contribution, Hit, Index

__all__ = [
    "BUILTIN_QUERY_MODEL",
    "MAX_LENGTH",
    "Contribution",
    "Hit",
    "Index",
    "SparseEncoder",
    "Tokenizer",
    "__version__",
]
