"""Incremental indexing: corpus folders → documents → chunks → vectors → store.

One run: take the writer lock, list the corpus, and diff it against the store
(size and mtime first, then the hash of the cleaned text). Only new or changed
documents are chunked; only chunk texts without a cached vector are embedded,
so a rename or an undo embeds nothing. Vectors are cached as they are made,
invisibly to readers; the document and chunk changes become visible in one
transaction, after the matching FAISS file has been written. A kill at any
moment leaves the last complete index, and the next run reuses every vector
already made.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from . import lexical_segment, vectors
from .backend import ChunkStore, DenseIndex
from .centering import refresh_means
from .chunking import ChunkParams, chunk_document
from .embedding import Embedder
from .errors import IndexLockedError, ReadError
from .readers import is_licence_file, read_document
from .types import Chunk, Document, IndexReport, Skipped, content_hash

log = logging.getLogger(__name__)

LOCK_NAME = "writer.lock"
PIPELINE_VERSION = "2"  # bump when readers or chunking change what they produce

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class SourceFile:
    doc_id: str
    root: Path
    path: Path
    size: int
    mtime_ns: int


@dataclass
class _Pending:
    """Documents read and chunked in this run, waiting for one commit."""

    docs: list[tuple[SourceFile, Document, list[Chunk], list[str]]] = field(default_factory=list)
    text_bytes: int = 0


def embed_text(title: str, chunk: Chunk) -> str:
    """What the model sees for a chunk: its document title and heading path, then the text."""
    context = [title] + [h for h in chunk.headings if h != title]
    return "\n".join([" › ".join(c for c in context if c), chunk.text])


@contextmanager
def writer_lock(index_dir: Path) -> Iterator[None]:
    """Only one indexer writes an index at a time; a second one gets a clear error at once."""
    index_dir.mkdir(parents=True, exist_ok=True)
    fh = open(index_dir / LOCK_NAME, "a+")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise IndexLockedError(
                f"index {index_dir} is being written by pid {holder}; wait for it to finish") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        yield
    finally:
        fh.close()


def is_locked(index_dir: Path) -> bool:
    try:
        with open(index_dir / LOCK_NAME, "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def scan(corpus_dirs: Sequence[Path]) -> tuple[list[SourceFile], list[Skipped]]:
    """Every candidate file under the corpus folders, with the ones skipped by name and why."""
    files: dict[str, SourceFile] = {}
    skipped: list[Skipped] = []
    for root in corpus_dirs:
        root = Path(root)
        if not root.is_dir():
            skipped.append(Skipped(str(root), "corpus folder not found"))
            continue
        seen_dirs: set[tuple[int, int]] = set()
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True,
                                                    onerror=lambda e: skipped.append(
                                                        Skipped(str(e.filename), f"unreadable folder: {e.strerror}"))):
            st = os.stat(dirpath)
            if (st.st_dev, st.st_ino) in seen_dirs:
                skipped.append(Skipped(str(Path(dirpath).relative_to(root)), "symlink loop"))
                dirnames[:] = []
                continue
            seen_dirs.add((st.st_dev, st.st_ino))
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                path = Path(dirpath) / name
                doc_id = path.relative_to(root).as_posix()
                if is_licence_file(path):
                    skipped.append(Skipped(doc_id, "licence file"))
                    continue
                if Path(dirpath) == root and _describes_folder(name):
                    skipped.append(Skipped(doc_id, f"{Path(name).stem} of the corpus folder (describes it, "
                                                   "not content)"))
                    continue
                try:
                    st = path.stat()
                except OSError as exc:
                    reason = "symlink loop" if exc.errno == 40 else f"cannot stat: {exc.strerror}"
                    skipped.append(Skipped(doc_id, reason))
                    continue
                if doc_id in files:
                    skipped.append(Skipped(doc_id, f"same path already indexed from {files[doc_id].root}"))
                    continue
                files[doc_id] = SourceFile(doc_id, root, path, st.st_size, st.st_mtime_ns)
    return list(files.values()), skipped


# Files at the top of a corpus folder that describe the folder (what it holds, where the
# documents come from, their licences) rather than being documents themselves.
_FOLDER_FILES = frozenset({"sources", "attribution", "attributions", "credits"})


def _describes_folder(name: str) -> bool:
    stem = Path(name).stem.lower()
    return stem.startswith("readme") or stem in _FOLDER_FILES


class Indexer:
    """Brings a store up to date with corpus folders. Use through `Assistant.index`."""

    def __init__(self, index_dir: Path, store: ChunkStore, embedder: Embedder, params: ChunkParams,
                 *, passage_prompt: str, batch_size: int, max_file_bytes: int, max_doc_chars: int,
                 commit_bytes: int = 64 * 1024 * 1024, interrupt: Callable[[], bool] | None = None,
                 dense: Callable[[], DenseIndex] | None = None) -> None:
        """`interrupt`, checked between embedding batches, ends the run early when it returns True:
        what is embedded so far is published, the rest stays pending for the next run. `dense`
        opens the dense index kept in step with the store (default: the FAISS file in `index_dir`,
        and then the store's lexical index gets a numpy segment when it is large: lexical_segment.py)."""
        self.index_dir = index_dir
        self.interrupt = interrupt
        self.interrupted = False
        self.store = store
        self.embedder = embedder
        self.params = params
        self.passage_prompt = passage_prompt
        self.batch_size = batch_size
        self.max_file_bytes = max_file_bytes
        self.max_doc_chars = max_doc_chars
        self.commit_bytes = commit_bytes
        self.chunks_embedded = 0
        # The dense index kept in step with the store: by default the FAISS file in `index_dir`.
        self._segments = dense is None
        self._dense = dense or (lambda: vectors.load(index_dir, store, embedder.dimension))  # type: ignore[arg-type]
        self._index: DenseIndex | None = None  # loaded at the start of `run`

    def run(self, corpus_dirs: Sequence[Path], progress: Progress | None = None) -> IndexReport:
        started = time.perf_counter()
        timings = {"scan": 0.0, "read": 0.0, "embed": 0.0, "write": 0.0}
        report = _Counts()
        tick = time.perf_counter()
        files, skipped = scan(corpus_dirs)
        report.skipped.extend(skipped)
        stored = self.store.documents()
        fast_path = self.store.get_meta("pipeline") == PIPELINE_VERSION
        timings["scan"] = time.perf_counter() - tick

        self._index = self._dense()
        pending = _Pending()
        present = {f.doc_id for f in files}
        for n, source in enumerate(files, 1):
            if progress:
                progress("read", n, len(files))
            old = stored.get(source.doc_id)
            if fast_path and old and old.size == source.size and old.mtime_ns == source.mtime_ns:
                report.unchanged += 1
                continue
            tick = time.perf_counter()
            try:
                doc = read_document(source.path, source.root, max_bytes=self.max_file_bytes,
                                    max_chars=self.max_doc_chars)
            except ReadError as exc:
                kept = " (previous version kept)" if old else ""
                report.skipped.append(Skipped(source.doc_id, f"{exc}{kept}"))
                continue
            finally:
                timings["read"] += time.perf_counter() - tick
            if doc.metadata.get("truncated"):
                report.skipped.append(Skipped(source.doc_id, f"truncated to {self.max_doc_chars} characters"))
            if old and old.hash == doc.hash:
                self.store.touch(doc.id, source.size, source.mtime_ns)
                report.unchanged += 1
                continue
            chunks = chunk_document(doc, self.params)
            keys = [content_hash(self.passage_prompt + embed_text(doc.title, c)) for c in chunks]
            pending.docs.append((source, doc, chunks, keys))
            pending.text_bytes += len(doc.text)
            (report.changed if old else report.added).append(doc.id)
            if pending.text_bytes >= self.commit_bytes:
                self._flush(pending, [], timings, progress)
                pending = _Pending()
        removed = [doc_id for doc_id in stored if doc_id not in present]
        report.removed.extend(removed)
        self._flush(pending, removed, timings, progress)
        self._finish_pending(timings, progress)  # also what an interrupted or crashed run left
        if self.store.get_meta("pipeline") != PIPELINE_VERSION:
            with self.store.transaction():
                self.store.set_meta("pipeline", PIPELINE_VERSION)
        self.store.prune_vectors()
        if self._segments:
            self._maintain_segment(timings)
        docs_total, chunks_total = self.store.counts()
        return IndexReport(
            added=tuple(report.added), changed=tuple(report.changed), removed=tuple(report.removed),
            unchanged=report.unchanged, skipped=tuple(report.skipped),
            chunks_embedded=self.chunks_embedded, chunks_total=chunks_total, documents_total=docs_total,
            seconds=time.perf_counter() - started, timings=timings)

    def _maintain_segment(self, timings: dict[str, float]) -> None:
        """Write the lexical segment when the index needs one (lexical_segment.py). It only speeds up
        search, so a failure (a full disk) is logged, and FTS5 answers alone."""
        tick = time.perf_counter()
        try:
            if lexical_segment.maintain(self.store.db, self.index_dir) is not None:  # type: ignore[attr-defined]
                timings["lexical_segment"] = time.perf_counter() - tick
        except OSError as exc:
            log.warning("could not write the lexical segment (%s); lexical search uses FTS5 alone", exc)

    def _flush(self, pending: _Pending, removed: list[str], timings: dict[str, float],
               progress: Progress | None) -> None:
        """Publish in two steps: first the documents and their words, then their meaning.

        Step 1 commits the new documents, chunks and lexical index at once, with the vectors
        already cached; chunks still to embed are recorded as pending (searchable by their
        words, and embedded on demand by the retriever). Step 2 embeds them and commits
        their vectors. A crash between the two is finished by the next run (`_finish_pending`).
        """
        if not pending.docs and not removed:
            return
        tick = time.perf_counter()
        with self.store.transaction():
            dropped: list[int] = []
            added_ids: list[int] = []
            for doc_id in removed:
                dropped += self.store.delete_document(doc_id)
            for source, doc, chunks, keys in pending.docs:
                dropped += self.store.delete_document(doc.id)
                added_ids += self.store.put_document(doc, str(source.root), source.size, source.mtime_ns,
                                                     chunks, keys)
            ids, vecs = _collect(self.store, added_ids, self.embedder.dimension)
            with_vector = set(ids.tolist())
            waiting = set(self.store.pending_chunks()) - set(dropped)
            waiting |= {i for i in added_ids if i not in with_vector}
            self._publish(dropped, ids, vecs, sorted(waiting))
        vectors.prune(self.index_dir, self.store.generation)
        timings["write"] += time.perf_counter() - tick
        self._finish_pending(timings, progress)

    def _finish_pending(self, timings: dict[str, float], progress: Progress | None) -> None:
        """Embed the pending chunks (what step 1 published without vectors), then publish them.

        When `interrupt` stops the embedding early, the chunks embedded so far are published
        and the rest stay pending."""
        waiting = self.store.pending_chunks()
        if not waiting:
            return
        tick = time.perf_counter()
        texts = self.store.embed_texts(waiting, self.passage_prompt, embed_text)
        missing = self.store.missing_vectors(texts)
        self._embed([(k, texts[k]) for k in missing], progress)
        timings["embed"] += time.perf_counter() - tick
        tick = time.perf_counter()
        with self.store.transaction():
            still = self.store.pending_chunks()  # the same list: this process holds the writer lock
            ids, vecs = _collect(self.store, still, self.embedder.dimension)
            left = sorted(set(still) - set(ids.tolist()))
            if len(ids) == 0:
                return  # interrupted before any vector was made: nothing new to publish
            if left:
                log.info("%d chunks left pending for the next run", len(left))
            self._publish([], ids, vecs, left)
        vectors.prune(self.index_dir, self.store.generation)
        timings["write"] += time.perf_counter() - tick

    def _publish(self, dropped: list[int], ids: np.ndarray, vecs: np.ndarray, waiting: list[int]) -> None:
        """Inside the writer's transaction: a new generation, whose FAISS file exists before it is visible."""
        generation = self.store.generation + 1
        assert self._index is not None
        self._index.update(dropped, ids, vecs)
        self.store.set_meta("generation", str(generation))
        self.store.set_meta("updated_at", str(time.time()))
        self.store.set_meta("dense_count", str(self._index.size))
        self.store.set_pending(waiting)
        refresh_means(self.store)
        self._index.save(self.index_dir, generation)

    def _embed(self, items: list[tuple[str, str]], progress: Progress | None) -> None:
        total = len(items)
        # Longest first: batches of similar length waste less padding.
        items = sorted(items, key=lambda kv: len(kv[1]), reverse=True)
        done = 0
        step = self.batch_size  # vectors are stored (and `interrupt` checked) after every batch
        for i in range(0, total, step):
            if self.interrupted or (self.interrupt is not None and self.interrupt()):
                log.info("embedding interrupted after %d of %d texts", i, total)
                self.interrupted = True  # for the rest of this run
                return
            part = items[i:i + step]
            vecs = self.embedder.embed([text for _, text in part])
            self.store.put_vectors([key for key, _ in part], vecs)
            done += len(part)
            self.chunks_embedded += len(part)
            if progress:
                progress("embed", done, total)


@dataclass
class _Counts:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[Skipped] = field(default_factory=list)


def _collect(store: ChunkStore, ids: list[int], dim: int) -> tuple[np.ndarray, np.ndarray]:
    parts = list(store.chunk_vectors(ids))
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros((0, dim), dtype=np.float32)
    return np.concatenate([p[0] for p in parts]), np.vstack([p[1] for p in parts])


__all__ = ["Indexer", "SourceFile", "scan", "embed_text", "writer_lock", "is_locked"]
