"""``from nsparse.sparse_encoder import SparseEncoder``: the spelling of
``sentence_transformers.sparse_encoder``, so code written for it needs only its import changed."""

from .encoder import SparseEncoder

__all__ = ["SparseEncoder"]
