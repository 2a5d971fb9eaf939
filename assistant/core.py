"""`Assistant`: the one core that the CLI, the web app and Python callers share.

    from assistant import Assistant
    bot = Assistant.open("index")
    bot.index(["corpus"])
    hits = bot.search("Hvordan kom søknaden om sosialhjelp i stand?", k=5)
    answer = bot.ask("How did the social-assistance application come about?")

An `Assistant` owns the embedder, a writer store for indexing, one read-only
store connection per thread for searching, and the vector index of the
current generation. After an index run (in this process or another), the next
query notices the new generation and swaps in the new vector index; queries
already running finish on the old one.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from . import lexical, lexical_segment, vectors
from .centering import LanguageMeans
from .chunking import ChunkParams
from .embedding import CachedEmbedder, Embedder, load_embedder, question_embedder
from .errors import IndexWriteError, QuestionError
from .generate import Generator
from .indexing import Indexer, Progress, is_locked, writer_lock
from .retrieve import Retriever
from .settings import Settings
from .store import DB_NAME, FORMAT_VERSION, Store, connect
from .types import Answer, Document, Hit, IndexReport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexInfo:
    index_dir: str
    documents: int
    chunks: int
    model: str
    dimension: int
    vector_index: str
    size_bytes: int
    updated_at: float | None
    generation: int
    lexical: str = "fts5"  # "fts5", or "fts5 + segment of N chunks" (lexical_segment.py)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Assistant:
    """Index documents and answer questions over them. Create with `Assistant.open`."""

    def __new__(cls, settings: Settings, *args: Any, **kwargs: Any) -> "Assistant":
        if settings.store and cls is Assistant:  # `Settings.store` names another backend (backend.py)
            from .milvus_core import MilvusAssistant

            cls = MilvusAssistant
        return super().__new__(cls)

    def __init__(self, settings: Settings, embedder: Embedder, generator: Generator | None = None) -> None:
        self.settings = settings
        self.embedder = embedder
        self._generator = generator
        self.index_dir = Path(settings.index_dir)
        self.params = ChunkParams(target=settings.chunk_chars, overlap=settings.chunk_overlap)
        self._local = threading.local()
        self._swap = threading.Lock()
        self._vectors: vectors.VectorIndex | None = None
        self._means: LanguageMeans | None = None
        self._doc_freq = lexical.DocFreq()
        self._segment_checked = 0.0  # when `index_dir` was last looked at for a newer lexical segment
        self._store_id: tuple[int, int] | None = None
        self._pool: ThreadPoolExecutor | None = None  # runs lexical queries beside the question's embedding
        questions = question_embedder(embedder)  # the packaged model's question engine (ORT or numpy): no torch import
        self.query_embedder: Embedder = (CachedEmbedder(questions, settings.embed_cache)
                                         if settings.embed_cache > 0 else questions)

    @classmethod
    def open(cls, index_dir: str | Path | None = None, *, settings: Settings | None = None,
             embedder: Embedder | None = None, generator: Generator | None = None,
             check: bool = True, **overrides: Any) -> "Assistant":
        """Open (or create) the index in `index_dir`, checking that it was built with these settings.

        `check=False` skips the check (and the creation), for `index(rebuild=True)` over an
        index that is corrupt or was built with other settings.
        """
        settings = settings or Settings.load(**overrides)
        if index_dir is not None:
            settings = replace(settings, index_dir=Path(index_dir))
        bot = cls(settings, embedder or load_embedder(settings), generator)
        if check:
            bot._writer_store().close()  # creates the store, or checks its stamp and its integrity
        return bot

    # -- the stamp: what vectors in this index mean -----------------------------
    def stamp(self) -> dict[str, Any]:
        return {"format": FORMAT_VERSION, "model": self.embedder.model_id,
                "fingerprint": self.embedder.fingerprint, "dimension": self.embedder.dimension,
                "passage_prompt": self.settings.passage_prompt, **self.params.stamp}

    def _writer_store(self) -> Store:
        return Store.open(self.index_dir, self.stamp(), create=True)

    # -- indexing ---------------------------------------------------------------
    def index(self, corpus_dirs: Sequence[str | Path] | None = None, *, rebuild: bool = False,
              progress: Progress | None = None, interrupt: Callable[[], bool] | None = None) -> IndexReport:
        """Bring the index up to date with `corpus_dirs` (default: the settings' corpus folders).

        Documents are published by their words first, then by their vectors. `interrupt`
        (checked between embedding batches) ends the embedding early, leaving the rest for
        the next run: a watcher uses it to handle new changes at once.
        """
        dirs = [Path(d) for d in (corpus_dirs or self.settings.corpus_dirs)]
        try:
            with writer_lock(self.index_dir):
                if rebuild:
                    return self._rebuild(dirs, progress)
                store = self._writer_store()
                try:
                    return self._indexer(store, self.index_dir, interrupt).run(dirs, progress)
                finally:
                    store.close()
        except (OSError, sqlite3.OperationalError) as exc:
            reason = _write_failure(exc)
            if reason is None:
                raise
            raise IndexWriteError(f"could not write the index in {self.index_dir} ({reason}); the previous "
                                  "index is intact: free some space and run `assistant index` again") from None

    def _indexer(self, store: Store, index_dir: Path,
                 interrupt: Callable[[], bool] | None = None) -> Indexer:
        s = self.settings
        return Indexer(index_dir, store, self.embedder, self.params, passage_prompt=s.passage_prompt,
                       batch_size=s.batch_size, max_file_bytes=s.max_file_bytes,
                       max_doc_chars=s.max_doc_chars, interrupt=interrupt)

    def _rebuild(self, dirs: list[Path], progress: Progress | None) -> IndexReport:
        """Build a fresh index beside the old one, then swap it in; the old one serves until then."""
        tmp = self.index_dir / f".rebuild-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            store = Store.open(tmp, self.stamp(), create=True)
            try:
                report = self._indexer(store, tmp).run(dirs, progress)
                store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                store.db.execute("PRAGMA journal_mode = DELETE")
            finally:
                store.close()
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # the old index is untouched; do not leave the half-built one
            raise
        self._close_readers()
        for suffix in ("-wal", "-shm"):
            (self.index_dir / (DB_NAME + suffix)).unlink(missing_ok=True)
        for old in self.index_dir.glob("dense-*.faiss"):
            old.unlink()
        for new in tmp.glob("dense-*.faiss"):
            os.replace(new, self.index_dir / new.name)
        lexical_segment.prune(self.index_dir, None)  # the old store's: chunk ids start again
        os.replace(tmp / DB_NAME, self.index_dir / DB_NAME)
        for new in tmp.glob("lexical-*"):
            os.replace(new, self.index_dir / new.name)
        shutil.rmtree(tmp, ignore_errors=True)
        return report

    # -- reading ----------------------------------------------------------------
    def _reader(self) -> Store:
        """This thread's read-only store connection, reopened when the store file was replaced."""
        path = self.index_dir / DB_NAME
        st = path.stat()
        ident = (st.st_dev, st.st_ino)
        store: Store | None = getattr(self._local, "store", None)
        if store is None or getattr(self._local, "ident", None) != ident:
            if store is not None:
                store.close()
            store = Store(connect(path, readonly=True))
            self._local.store, self._local.ident = store, ident
        return store

    def _close_readers(self) -> None:
        store = getattr(self._local, "store", None)
        if store is not None:
            store.close()
            self._local.store = None
        self._vectors = None

    def refresh(self) -> bool:
        """Swap in the vector index of the newest committed generation. True if it changed."""
        store = self._reader()
        generation = store.generation
        ident = getattr(self._local, "ident", None)
        current = self._vectors
        if current is not None and current.generation == generation and self._store_id == ident:
            return False
        with self._swap:
            current = self._vectors
            if current is not None and current.generation == generation and self._store_id == ident:
                return False
            path = self.index_dir / f"dense-{generation}.faiss"
            if current is not None and not path.exists() and is_locked(self.index_dir):
                return False  # the writer is about to publish it; keep serving the previous one
            self._vectors = vectors.load(self.index_dir, store, self.embedder.dimension)
            self._means = LanguageMeans.load(store) if self.settings.center_languages else None
            self._store_id = ident
            return True

    def retriever(self) -> Retriever:
        self.refresh()
        self._refresh_segment()
        assert self._vectors is not None
        return self._retriever_over(self._reader(), self._vectors)

    def _refresh_segment(self, every: float = 2.0) -> None:
        """Swap in the newest lexical segment (the indexer writes one after its last generation),
        looking at `index_dir` at most every `every` seconds."""
        now = time.monotonic()
        if now - self._segment_checked < every:
            return
        self._segment_checked = now
        self._doc_freq.segment = lexical_segment.load(self.index_dir, self._doc_freq.segment)

    def _retriever_over(self, store: Any, dense: Any) -> Retriever:
        """A `Retriever` over this store and dense index, with this assistant's settings and caches."""
        s = self.settings
        return Retriever(store, dense, self.query_embedder, query_prompt=s.query_prompt,
                         candidates=s.candidates, max_per_doc=s.max_per_doc, passage_prompt=s.passage_prompt,
                         means=self._means, doc_freq=self._doc_freq, pool=self._lexical_pool())

    def _lexical_pool(self) -> ThreadPoolExecutor:
        """Threads for the lexical queries (made on first use, one per concurrent search at most)."""
        pool = self._pool
        if pool is None:
            with self._swap:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max(4, self.settings.max_concurrent),
                                                    thread_name_prefix="assistant-lexical")
                pool = self._pool
        return pool

    def check_question(self, question: str) -> str:
        question = (question or "").strip()
        if not question:
            raise QuestionError("the question is empty")
        if len(question) > self.settings.max_question_chars:
            raise QuestionError(f"the question is {len(question)} characters long; "
                                f"the limit is {self.settings.max_question_chars}")
        return question

    def search(self, question: str, k: int = 5, *, mode: str = "hybrid") -> list[Hit]:
        """The `k` best passages for `question`, best first."""
        return self.retriever().search(self.check_question(question), k, mode=mode)

    def ask(self, question: str, history: Sequence[tuple[str, str]] = (), *, k: int = 5,
            on_text: Callable[[str], None] | None = None) -> Answer:
        """An answer with numbered citations, or a refusal when the documents are silent.

        With a language model configured, `on_text` receives the answer as it streams in.
        """
        from .answering import answer_question

        return answer_question(self, self.check_question(question), history, k=k, on_text=on_text)

    def generator(self) -> Generator | None:
        """The language model from the settings (`llm_url` or `gguf_path`), if any; made on first use."""
        if self._generator is None:
            s = self.settings
            if s.llm_url:
                from .generate import OpenAICompatibleGenerator

                self._generator = OpenAICompatibleGenerator.from_env(base_url=s.llm_url, model=s.llm_model)
            elif s.gguf_path:
                from .gguf import GGUFGenerator

                self._generator = GGUFGenerator(s.gguf_path)
        return self._generator

    def documents(self) -> list[str]:
        """The ids of the indexed documents, sorted."""
        return sorted(self._reader().documents())

    def add_feedback(self, rating: int, question: str, answer: str, hits: list[dict[str, Any]]) -> int:
        """Store a thumbs up (1) or down (-1) with the question, answer and hits."""
        store = Store(connect(self.index_dir / DB_NAME))
        try:
            return store.add_feedback(rating, question, answer, hits)
        finally:
            store.close()

    def shared_value(self, key: str) -> str | None:
        """A small value every app server of this index sees (admin state such as login limits)."""
        return self._reader().get_meta("shared:" + key)

    def set_shared_value(self, key: str, value: str) -> None:
        store = Store(connect(self.index_dir / DB_NAME))
        try:
            with store.transaction():
                store.set_meta("shared:" + key, value)
        finally:
            store.close()

    def document(self, doc_id: str) -> Document | None:
        return self._reader().document(doc_id)

    def info(self) -> IndexInfo:
        store = self._reader()
        docs, chunks = store.counts()
        size = sum(p.stat().st_size for p in self.index_dir.rglob("*") if p.is_file())
        updated = store.get_meta("updated_at")
        segment = lexical_segment.load(self.index_dir, self._doc_freq.segment)  # read only if new
        lexical = f"fts5 + segment of {segment.size} chunks" if segment is not None else "fts5"
        return IndexInfo(str(self.index_dir), docs, chunks, self.embedder.model_id, self.embedder.dimension,
                         vectors.index_kind(chunks), size, float(updated) if updated else None,
                         store.generation, lexical)

    def close(self) -> None:
        self._close_readers()
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)

    def __enter__(self) -> "Assistant":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()



def _write_failure(exc: BaseException) -> str | None:
    """"disk full" (or a quota) when `exc` says the disk refused a write; None for other errors."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return os.strerror(exc.errno).lower()
    if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
        return "disk full"
    return None
