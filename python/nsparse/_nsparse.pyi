"""Type stubs of the extension module ``nsparse._nsparse`` (PyO3). Use the ``nsparse`` package
API; these classes are its thin Rust core. CSR buffers are little-endian ``indptr`` u64,
``indices`` u32 and ``data`` f32."""

from typing import Any, Callable, Iterable, List, Optional, Tuple, Union

BUILTIN_QUERY_MODEL: str
MAX_LENGTH: int
DEFAULT_VOCAB_SIZE: int
__version__: str

_Csr = Tuple[bytearray, bytearray, bytearray]
_RawHit = Tuple[str, float, Optional[bytes], Optional[List[Tuple[int, float, float, float]]]]

class Encoder:
    def __init__(
        self,
        model: Optional[str] = None,
        *,
        precision: str = "exact",
        threads: Optional[int] = None,
        chunk_long_documents: bool = False,
        batch_tokens: int = 4096,
        prune_type: Optional[str] = None,
        prune_ratio: Optional[float] = None,
        idf: Optional[str] = None,
        neural_queries: bool = False,
    ) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def spec(self) -> str: ...
    @property
    def fingerprint(self) -> str: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def max_seq_length(self) -> int: ...
    @property
    def query_mode(self) -> str: ...
    @property
    def can_encode_documents(self) -> bool: ...
    @property
    def precision(self) -> str: ...
    def encode_queries(self, texts: List[str]) -> _Csr: ...
    def encode_documents(self, texts: List[str]) -> Tuple[bytearray, bytearray, bytearray, int, int]: ...
    def vocab(self) -> List[Optional[str]]: ...
    def tokenize(self, text: str, *, document: bool = True) -> List[int]: ...

class IndexCore:
    @staticmethod
    def create(
        path: str,
        model: str,
        metadata_json: str,
        vocab_size: int,
        bm25_k1: float,
        bm25_b: float,
        build_threads: Optional[int] = None,
        dense_columns_max_mb: Optional[int] = None,
    ) -> "IndexCore": ...
    @staticmethod
    def open(
        path: str, build_threads: Optional[int] = None, dense_columns_max_mb: Optional[int] = None
    ) -> "IndexCore": ...
    def add(
        self,
        ids: List[str],
        indptr: bytes,
        indices: bytes,
        data: bytes,
        sources: Optional[List[bytes]] = None,
        upsert: bool = False,
    ) -> None: ...
    def delete(self, ids: List[str]) -> int: ...
    def commit(self) -> None: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def path(self) -> str: ...
    def info(self) -> Tuple[str, str, int, int, int, int, int]: ...
    def __len__(self) -> int: ...
    def __contains__(self, id: str) -> bool: ...
    def get(self, id: str) -> Optional[bytes]: ...
    def vector(self, id: str) -> Optional[Tuple[bytearray, bytearray]]: ...
    def search(
        self,
        indices: bytes,
        data: bytes,
        k: int,
        mode: str = "exact",
        top_n: Optional[int] = None,
        heap_factor: Optional[float] = None,
        prune_ratio: Optional[float] = None,
        expansion_rate: Optional[float] = None,
        max_window_size: Optional[int] = None,
        explain: bool = False,
        filter: Union[None, Iterable[str], Callable[[str], Any]] = None,
        with_source: bool = True,
    ) -> List[_RawHit]: ...
    def search_batch(
        self,
        indptr: bytes,
        indices: bytes,
        data: bytes,
        k: int,
        mode: str = "exact",
        top_n: Optional[int] = None,
        heap_factor: Optional[float] = None,
        prune_ratio: Optional[float] = None,
        expansion_rate: Optional[float] = None,
        max_window_size: Optional[int] = None,
        threads: Optional[int] = None,
    ) -> Tuple[List[Optional[str]], bytearray]: ...
