"""The store seam: what the indexer, the retriever and `Assistant` need from a store.

Two backends implement it:

- the embedded default, `store.Store` (SQLite: documents, chunks, FTS5, vector
  cache) with `vectors.VectorIndex` (a FAISS file derived from it), in `index_dir`;
- `milvus_store.MilvusStore` with `milvus_core.MilvusDense`, on a Milvus server
  or cluster (`milvus://host:19530`) or a Milvus Lite file (`milvus-lite:///x.db`).

`Settings.store` chooses: empty for the default, otherwise a URI that
`parse_store` reads. Nothing here imports a backend's client library.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable, Iterator, Protocol, Sequence
from urllib.parse import parse_qs, urlsplit

import numpy as np

from .errors import AssistantError
from .types import Chunk, Document

DEFAULT_PREFIX = "assistant"
_PREFIX = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,200}$")


class DenseIndex(Protocol):
    """Nearest chunks by inner product, at one generation of the store."""

    generation: int
    kind: str

    @property
    def size(self) -> int: ...  # vectors searchable

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]: ...

    def update(self, removed: list[int], added_ids: np.ndarray, added: np.ndarray) -> None: ...

    def save(self, index_dir: Path, generation: int) -> object: ...


class ChunkStore(Protocol):
    """Documents, chunks, their vectors, the lexical index, meta and feedback.

    Changes made inside `transaction()` become visible to readers together, when
    it ends; `generation` counts the changes made visible so far.
    """

    @property
    def generation(self) -> int: ...

    def transaction(self) -> ContextManager[Any]: ...

    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...

    def documents(self) -> dict[str, Any]: ...  # doc id -> StoredDocument

    def document(self, doc_id: str) -> Document | None: ...

    def touch(self, doc_id: str, size: int, mtime_ns: int) -> None: ...

    def put_document(self, doc: Document, root: str, size: int, mtime_ns: int,
                     chunks: Sequence[Chunk], embed_keys: Sequence[str]) -> list[int]: ...

    def delete_document(self, doc_id: str) -> list[int]: ...

    def chunks_by_id(self, ids: Sequence[int]) -> dict[int, Any]: ...  # chunk id -> StoredChunk

    def chunk_vectors(self, ids: Sequence[int] | None = None,
                      batch: int = 20000) -> Iterator[tuple[np.ndarray, np.ndarray]]: ...

    def lexical_search(self, question: str, k: int, *, doc_freq: Any = None,
                       total: int = 0) -> list[tuple[int, float]]: ...

    def pending_chunks(self) -> list[int]: ...  # published by their words, not yet by their vectors

    def set_pending(self, chunk_ids: Sequence[int]) -> None: ...

    def embed_texts(self, ids: Sequence[int], prompt: str,
                    embed_text: Callable[[str, Chunk], str]) -> dict[str, str]: ...

    def dense_count(self) -> int: ...

    def counts(self) -> tuple[int, int]: ...

    def missing_vectors(self, keys: Iterable[str]) -> list[str]: ...

    def put_vectors(self, keys: Sequence[str], vectors: np.ndarray) -> None: ...

    def prune_vectors(self, *, slack: float = 0.25, floor: int = 256) -> int: ...

    def add_feedback(self, rating: int, question: str, answer: str, hits: list[dict[str, Any]]) -> int: ...

    def feedback(self) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class StoreAddress:
    """A parsed `Settings.store`: which Milvus, and the prefix of its collections."""

    kind: str  # "milvus" (a server or cluster) or "milvus-lite" (a local file)
    uri: str  # what pymilvus connects to: http(s)://host:port, or the .db path
    prefix: str = DEFAULT_PREFIX
    index: str = "FLAT"  # the vector index type: FLAT (exact), HNSW, IVF_FLAT, AUTOINDEX, ...

    @property
    def lite(self) -> bool:
        return self.kind == "milvus-lite"

    def display(self) -> str:
        return f"{self.kind}:{self.uri}/{self.prefix}"

    def setting(self) -> str:
        """The `Settings.store` value that `parse_store` reads back as this address."""
        if self.lite:
            return f"milvus-lite://{self.uri}?name={self.prefix}&index={self.index}"
        scheme = "milvus+https" if self.uri.startswith("https://") else "milvus"
        return f"{scheme}://{self.uri.split('://', 1)[1]}/{self.prefix}?index={self.index}"


def parse_store(value: str) -> StoreAddress | None:
    """None for the embedded default (an empty value); otherwise the Milvus address.

        milvus://host:19530[/name][?index=HNSW]        a server or cluster (http)
        milvus+https://host:443[/name][?index=HNSW]    the same over TLS
        milvus-lite:///abs/path/file.db[?name=x]       a Milvus Lite file (one process at a time)
        /path/file.db, ./file.db                       the same, as a plain path

    `name` is the prefix of the collections (default "assistant"), so one Milvus can hold
    several indexes. The vector index defaults to FLAT (exact search, like the default's
    FAISS index); HNSW suits tens of millions of chunks on a cluster.
    """
    value = (value or "").strip()
    if not value:
        return None
    if value.endswith(".db") and "://" not in value:
        return StoreAddress("milvus-lite", str(Path(value).expanduser().absolute()))
    parts = urlsplit(value)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    index = query.get("index", "FLAT").upper()
    if parts.scheme == "milvus-lite":
        path = (parts.netloc + parts.path) if parts.netloc else parts.path
        if not path.endswith(".db"):
            raise AssistantError(f"ASSISTANT_STORE={value!r}: a Milvus Lite path must end in .db")
        prefix = _prefix(query.get("name", DEFAULT_PREFIX), value)
        return StoreAddress("milvus-lite", str(Path(path).expanduser().absolute()), prefix, index)
    if parts.scheme in ("milvus", "milvus+http", "milvus+https"):
        if not parts.hostname:
            raise AssistantError(f"ASSISTANT_STORE={value!r} names no host (milvus://host:19530)")
        scheme = "https" if parts.scheme == "milvus+https" else "http"
        port = parts.port or 19530
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        prefix = _prefix(parts.path.strip("/") or query.get("name", DEFAULT_PREFIX), value)
        return StoreAddress("milvus", f"{scheme}://{host}:{port}", prefix, index)
    raise AssistantError(f"ASSISTANT_STORE={value!r} is not a store this version knows: use "
                         "milvus://host:19530, milvus-lite:///path/file.db, or leave it empty")


def eval_store(value: str, tag: str) -> str:
    """The store for an evaluation index: beside the served one, never the same collections."""
    address = parse_store(value)
    if address is None:
        return value
    safe = re.sub(r"[^A-Za-z0-9_]", "_", tag)[:40]
    return StoreAddress(address.kind, address.uri, f"{address.prefix}_eval_{safe}", address.index).setting()


def _prefix(name: str, value: str) -> str:
    if not _PREFIX.match(name):
        raise AssistantError(f"ASSISTANT_STORE={value!r}: the index name {name!r} must be letters, "
                             "digits and underscores, not starting with a digit")
    return name


__all__ = ["ChunkStore", "DenseIndex", "StoreAddress", "parse_store", "eval_store", "DEFAULT_PREFIX"]
