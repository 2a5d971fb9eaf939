"""`Assistant` on a Milvus store: what changes when `Settings.store` names Milvus.

The indexer, the retriever, answering and the web app are the same; only
where the store lives differs. Every query reads the published generation
from the store (one small query), so an index update made by any process, on
any machine, is seen by the next question everywhere; app servers keep no
state of their own. Feedback goes to the store too.

The writer lock is still a file in `index_dir`: run one indexer at a time per
store (several app servers on one machine share it through that folder).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .backend import StoreAddress, parse_store
from .centering import LanguageMeans
from .core import Assistant, IndexInfo
from .embedding import Embedder
from .generate import Generator
from .indexing import Indexer, Progress
from .milvus_schema import Names, connect
from .milvus_store import MilvusStore
from .retrieve import Retriever
from .settings import Settings
from .types import IndexReport

log = logging.getLogger(__name__)

_REBUILD_SUFFIX = "__rebuild"


class MilvusAssistant(Assistant):
    """An `Assistant` whose documents, chunks, vectors and feedback live in Milvus."""

    def __init__(self, settings: Settings, embedder: Embedder, generator: Generator | None = None) -> None:
        super().__init__(settings, embedder, generator)
        address = parse_store(settings.store)
        assert address is not None
        self.address: StoreAddress = address
        self._shared: MilvusStore | None = None
        self._open_lock = threading.Lock()

    @property
    def vector_kind(self) -> str:
        return f"milvus-{self.address.index.lower()}"

    def _writer_store(self) -> MilvusStore:  # type: ignore[override]
        return MilvusStore.open(self.address, self.stamp(), create=True)

    def _indexer(self, store: Any, index_dir: Path, interrupt: Callable[[], bool] | None = None) -> Indexer:
        store.recover()  # called under the writer lock: finish what a killed writer left
        s = self.settings
        return Indexer(index_dir, store, self.embedder, self.params, passage_prompt=s.passage_prompt,
                       batch_size=s.batch_size, max_file_bytes=s.max_file_bytes, max_doc_chars=s.max_doc_chars,
                       interrupt=interrupt, dense=lambda: MilvusDense(store, store.generation, self.vector_kind))

    def _rebuild(self, dirs: list[Path], progress: Progress | None) -> IndexReport:
        """Build fresh collections beside the old ones, then swap them in by renaming."""
        tmp = replace(self.address, prefix=self.address.prefix + _REBUILD_SUFFIX)
        _drop(tmp)  # what a crashed rebuild left behind
        store = MilvusStore.open(tmp, self.stamp(), create=True)
        try:
            report = self._indexer(store, self.index_dir).run(dirs, progress)
            old = _open_any(self.address)
            if old is not None:
                # Readers compare generations: never let the new index go back in time.
                previous = old.generation
                if previous >= store.generation:
                    store.set_meta("generation", str(previous + 1))
                old.close()
            _drop(self.address)
            self._close_readers()
            _rename(store, tmp, self.address)
        except BaseException:
            _drop(tmp)
            raise
        finally:
            store.close()
        return report

    # -- reading ----------------------------------------------------------------
    def _reader(self) -> MilvusStore:  # type: ignore[override]
        """The connection shared by this process's readers (a Milvus client is thread-safe)."""
        store = self._shared
        if store is None:
            with self._open_lock:
                if self._shared is None:
                    self._shared = MilvusStore.open(self.address, self.stamp(), create=False)
                store = self._shared
        return store

    def _close_readers(self) -> None:
        with self._open_lock:
            if self._shared is not None:
                self._shared.close()
                self._shared = None
        self._vectors = None

    def refresh(self) -> bool:
        """Follow the store's published generation. True if it changed."""
        store = self._reader()
        generation = store.generation
        current = self._vectors
        if isinstance(current, MilvusDense) and current.generation == generation and current.store is store:
            return False
        self._vectors = MilvusDense(store, generation, self.vector_kind)  # type: ignore[assignment]
        self._means = LanguageMeans.load(store.at(generation)) if self.settings.center_languages else None
        return True

    def retriever(self) -> Retriever:
        self.refresh()
        dense = self._vectors
        assert isinstance(dense, MilvusDense)
        return self._retriever_over(dense.store.at(dense.generation), dense)

    def add_feedback(self, rating: int, question: str, answer: str, hits: list[dict[str, Any]]) -> int:
        return self._reader().add_feedback(rating, question, answer, hits)

    def shared_value(self, key: str) -> str | None:
        return self._reader().get_meta("shared:" + key)

    def set_shared_value(self, key: str, value: str) -> None:
        self._reader().set_meta("shared:" + key, value)  # outside a run: written at once

    def info(self) -> IndexInfo:
        store = self._reader()
        docs, chunks = store.counts()
        size = 0
        if self.address.lite:
            size = sum(p.stat().st_size for p in Path(self.address.uri).rglob("*") if p.is_file())
        updated = store.get_meta("updated_at")
        return IndexInfo(self.address.display(), docs, chunks, self.embedder.model_id, self.embedder.dimension,
                         self.vector_kind, size, float(updated) if updated else None, store.generation,
                         "milvus bm25")


@dataclass
class MilvusDense:
    """`backend.DenseIndex` on the chunks collection: the vectors live in the chunk rows.

    `put_document` writes the vectors already in the cache; `update` adds the others (two-step
    publishing), and removals need nothing: replaced chunks are hidden by their generation."""

    store: MilvusStore
    generation: int
    kind: str
    _size: tuple[int, int] | None = None

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        return self.store.at(self.generation).dense_search(query, k)

    @property
    def size(self) -> int:
        """Searchable vectors at this generation (counted once per generation)."""
        if self._size is None or self._size[0] != self.generation:
            self._size = (self.generation, self.store.at(self.generation).dense_count())
        return self._size[1]

    def update(self, removed: list[int], added_ids: np.ndarray, added: np.ndarray) -> None:
        self.store.set_vectors(added_ids.tolist(), added)

    def save(self, index_dir: Path, generation: int) -> None:
        self.generation = generation


def _drop(address: StoreAddress) -> None:
    """Remove every collection of the index at `address`."""
    client = connect(address)
    try:
        for name in Names(address.prefix).all():
            if client.has_collection(name):
                client.drop_collection(name)
    finally:
        client.close()


def _rename(store: MilvusStore, source: StoreAddress, target: StoreAddress) -> None:
    """Give the collections at `source` the names of `target` (which must not exist)."""
    for old, new in zip(Names(source.prefix).all(), Names(target.prefix).all()):
        store.client.rename_collection(old, new)


def _open_any(address: StoreAddress) -> MilvusStore | None:
    """The index at `address` whatever its stamp, or None when there is none."""
    from .errors import IndexMismatchError

    try:
        return MilvusStore.open(address, None, create=False)
    except IndexMismatchError:
        return None
