"""The index's source of truth: one SQLite database in WAL mode.

It holds the stamp (format, model, dimension, chunking), the documents with
their cleaned text, the chunks with offsets, the lexical (FTS5) index, and the
embedding cache keyed by the hash of the text that was embedded. Readers never
block the writer (WAL), and every visible change is one transaction, so a
crash at any moment leaves the previous state intact. The FAISS file is
derived from this store (see `vectors.py`).
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from . import lexical
from .errors import IndexCorruptError, IndexLockedError, IndexMismatchError
from .types import Chunk, Document, Section

FORMAT_VERSION = 1
DB_NAME = "store.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY, root TEXT NOT NULL, path TEXT NOT NULL, title TEXT NOT NULL,
    lang TEXT NOT NULL, hash TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    text TEXT NOT NULL, sections TEXT NOT NULL, metadata TEXT NOT NULL, indexed_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT, doc_id TEXT NOT NULL, ordinal INTEGER NOT NULL,
    start INTEGER NOT NULL, "end" INTEGER NOT NULL, text TEXT NOT NULL, headings TEXT NOT NULL,
    page INTEGER, embed_key TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
CREATE INDEX IF NOT EXISTS chunks_key ON chunks(embed_key);
CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS pending (chunk_id INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT, created_at REAL NOT NULL, rating INTEGER NOT NULL,
    question TEXT NOT NULL, answer TEXT NOT NULL, hits TEXT NOT NULL);
"""


@dataclass(frozen=True)
class StoredDocument:
    """A document row without its text: what the indexer needs to diff."""

    id: str
    root: str
    hash: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class StoredChunk:
    id: int
    chunk: Chunk
    title: str
    lang: str


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
    db = sqlite3.connect(uri, uri=True, timeout=30.0, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA busy_timeout = 30000")
    if not readonly:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
    return db


class Store:
    """Typed access to the SQLite store. One instance per connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    @classmethod
    def open(cls, index_dir: Path, stamp: dict[str, Any], *, create: bool) -> "Store":
        path = index_dir / DB_NAME
        if not path.exists() and not create:
            raise IndexMismatchError(f"no index in {index_dir}: run `assistant index` first")
        index_dir.mkdir(parents=True, exist_ok=True)
        try:
            db = connect(path)
            check = db.execute("PRAGMA quick_check(1)").fetchone()
            if check is None or check[0] != "ok":
                db.close()
                raise sqlite3.DatabaseError(f"integrity check failed: {check[0] if check else 'no result'}")
            store = cls(db)
            if create:
                db.executescript(_SCHEMA)
                lexical.create_schema(db)
            store._check_stamp(stamp, index_dir)
        except sqlite3.DatabaseError as exc:
            detail = " ".join(str(exc).split())
            if isinstance(exc, sqlite3.OperationalError) and ("locked" in detail or "busy" in detail):
                raise IndexLockedError(f"index store {path} stayed locked by another process ({detail}); "
                                       "try again when it has finished") from None
            raise IndexCorruptError(f"index store {path} is unreadable ({detail}); "
                                    "run `assistant index --rebuild`") from None
        return store

    def _check_stamp(self, stamp: dict[str, Any], index_dir: Path) -> None:
        stored = self.get_meta("stamp")
        if stored is None:
            with self.transaction():
                self.set_meta("stamp", json.dumps(stamp, sort_keys=True))
                self.set_meta("generation", "0")
            return
        old = json.loads(stored)
        if old != stamp:
            diff = sorted(k for k in set(old) | set(stamp) if old.get(k) != stamp.get(k))
            detail = ", ".join(f"{k}: {old.get(k)!r} -> {stamp.get(k)!r}" for k in diff[:3])
            raise IndexMismatchError(
                f"index {index_dir} was built with other settings ({detail}); "
                "run `assistant index --rebuild`")

    # -- meta -----------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    @property
    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    def transaction(self) -> "_Transaction":
        return _Transaction(self.db)

    # -- documents ------------------------------------------------------------
    def documents(self) -> dict[str, StoredDocument]:
        rows = self.db.execute("SELECT id, root, hash, size, mtime_ns FROM documents")
        return {r[0]: StoredDocument(r[0], r[1], r[2], int(r[3]), int(r[4])) for r in rows}

    def document(self, doc_id: str) -> Document | None:
        row = self.db.execute(
            "SELECT id, title, text, lang, path, sections, metadata FROM documents WHERE id = ?",
            (doc_id,)).fetchone()
        if row is None:
            return None
        sections = tuple(Section(s[0], s[1], tuple(s[2]), s[3]) for s in json.loads(row[5]))
        return Document(row[0], row[1], row[2], row[3], row[4], sections, json.loads(row[6]))

    def touch(self, doc_id: str, size: int, mtime_ns: int) -> None:
        self.db.execute("UPDATE documents SET size = ?, mtime_ns = ? WHERE id = ?", (size, mtime_ns, doc_id))

    def put_document(self, doc: Document, root: str, size: int, mtime_ns: int,
                     chunks: Sequence[Chunk], embed_keys: Sequence[str]) -> list[int]:
        """Replace a document and its chunks; returns the new chunk ids. Inside a transaction."""
        self.delete_document(doc.id)
        sections = json.dumps([[s.start, s.end, list(s.headings), s.page] for s in doc.sections])
        self.db.execute(
            "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (doc.id, root, doc.source, doc.title, doc.lang, doc.hash, size, mtime_ns, doc.text,
             sections, json.dumps(doc.metadata, default=str), time.time()))
        ids: list[int] = []
        for chunk, key in zip(chunks, embed_keys):
            cur = self.db.execute(
                'INSERT INTO chunks(doc_id, ordinal, start, "end", text, headings, page, embed_key) '
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (doc.id, chunk.ordinal, chunk.start, chunk.end, chunk.text,
                 json.dumps(list(chunk.headings)), chunk.page, key))
            ids.append(int(cur.lastrowid or 0))
        lexical.add(self.db, ((i, lexical.chunk_text(doc.title, c)) for i, c in zip(ids, chunks)))
        return ids

    def delete_document(self, doc_id: str) -> list[int]:
        """Remove a document and its chunks; returns the removed chunk ids."""
        ids = [int(r[0]) for r in self.db.execute("SELECT id FROM chunks WHERE doc_id = ?", (doc_id,))]
        lexical.remove(self.db, ids)
        self.db.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
        self.db.execute("DELETE FROM documents WHERE id = ?", (doc_id,))
        return ids

    # -- chunks ---------------------------------------------------------------
    def chunks_by_id(self, ids: Sequence[int]) -> dict[int, StoredChunk]:
        out: dict[int, StoredChunk] = {}
        for batch in _batches(list(ids), 500):
            marks = ",".join("?" * len(batch))
            rows = self.db.execute(
                'SELECT c.id, c.doc_id, c.ordinal, c.start, c."end", c.text, c.headings, c.page, '
                f"d.title, d.lang FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE c.id IN ({marks})",
                batch)
            for r in rows:
                chunk = Chunk(r[1], r[2], r[3], r[4], r[5], tuple(json.loads(r[6])), r[7])
                out[int(r[0])] = StoredChunk(int(r[0]), chunk, r[8], r[9])
        return out

    def chunk_vectors(self, ids: Sequence[int] | None = None,
                      batch: int = 20000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) in batches, for all chunks or the given ones."""
        if ids is None:
            query = "SELECT c.id, v.vector FROM chunks c JOIN vectors v ON v.key = c.embed_key ORDER BY c.id"
            cur = self.db.execute(query)
            while True:
                rows = cur.fetchmany(batch)
                if not rows:
                    return
                yield _unpack(rows)
        else:
            for part in _batches(list(ids), 500):
                marks = ",".join("?" * len(part))
                rows = self.db.execute(
                    "SELECT c.id, v.vector FROM chunks c JOIN vectors v ON v.key = c.embed_key "
                    f"WHERE c.id IN ({marks})", part).fetchall()
                if rows:
                    yield _unpack(rows)

    def lexical_search(self, question: str, k: int, *, doc_freq: "lexical.DocFreq | None" = None,
                       total: int = 0) -> list[tuple[int, float]]:
        """Up to `k` `(chunk_id, BM25)` pairs for `question`, best first (see `lexical.search`)."""
        return lexical.search(self.db, question, k, doc_freq=doc_freq, total=total)

    def pending_chunks(self) -> list[int]:
        """Chunks published by their words whose vectors are not in the vector index yet."""
        try:
            return [int(r[0]) for r in self.db.execute("SELECT chunk_id FROM pending ORDER BY chunk_id")]
        except sqlite3.OperationalError:  # a store from before two-step publishing
            return []

    def set_pending(self, chunk_ids: Sequence[int]) -> None:
        """Inside the writer's transaction."""
        self.db.execute("DELETE FROM pending")
        self.db.executemany("INSERT INTO pending(chunk_id) VALUES (?)", ((i,) for i in chunk_ids))

    def embed_texts(self, ids: Sequence[int], prompt: str,
                    embed_text: Callable[[str, Chunk], str]) -> dict[str, str]:
        """`{embed_key: prompt + embed_text(title, chunk)}` for the given chunks."""
        stored = self.chunks_by_id(ids)
        texts: dict[str, str] = {}
        for batch in _batches(list(stored), 500):
            marks = ",".join("?" * len(batch))
            for cid, key in self.db.execute(f"SELECT id, embed_key FROM chunks WHERE id IN ({marks})", batch):
                texts[key] = prompt + embed_text(stored[cid].title, stored[cid].chunk)
        return texts

    def vectors_by_language(self, limit: int) -> Iterator[tuple[str, np.ndarray]]:
        """Per document language, the vectors of up to `limit` of its chunks (spread over the ids)."""
        langs = [(str(r[0]), int(r[1])) for r in self.db.execute(
            "SELECT d.lang, COUNT(*) FROM chunks c JOIN documents d ON d.id = c.doc_id GROUP BY d.lang")]
        for lang, count in langs:
            step = max(1, -(-count // limit))
            rows = self.db.execute(
                "SELECT c.id, v.vector FROM chunks c JOIN documents d ON d.id = c.doc_id "
                "JOIN vectors v ON v.key = c.embed_key WHERE d.lang = ? AND c.id % ? = 0", (lang, step)).fetchall()
            if rows:
                yield lang, _unpack(rows)[1]

    def vectors_of(self, ids: Sequence[int]) -> dict[int, tuple[np.ndarray, str]]:
        """`{chunk_id: (vector, document language)}` for those of `ids` that have a vector."""
        out: dict[int, tuple[np.ndarray, str]] = {}
        for part in _batches(list(ids), 500):
            marks = ",".join("?" * len(part))
            for cid, blob, lang in self.db.execute(
                    "SELECT c.id, v.vector, d.lang FROM chunks c JOIN vectors v ON v.key = c.embed_key "
                    f"JOIN documents d ON d.id = c.doc_id WHERE c.id IN ({marks})", part):
                out[int(cid)] = (np.frombuffer(blob, dtype=np.float32), str(lang))
        return out

    def dense_count(self) -> int:
        """Vectors in the published vector index (all chunks, for stores from before pending chunks)."""
        value = self.get_meta("dense_count")
        return int(value) if value is not None else self.counts()[1]

    def counts(self) -> tuple[int, int]:
        docs = self.db.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
        chunks = self.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        return int(docs), int(chunks)

    # -- embedding cache ------------------------------------------------------
    def missing_vectors(self, keys: Iterable[str]) -> list[str]:
        wanted = list(dict.fromkeys(keys))
        present: set[str] = set()
        for batch in _batches(wanted, 500):
            marks = ",".join("?" * len(batch))
            present.update(r[0] for r in self.db.execute(
                f"SELECT key FROM vectors WHERE key IN ({marks})", batch))
        return [k for k in wanted if k not in present]

    def put_vectors(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        with self.transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO vectors(key, vector) VALUES (?, ?)",
                ((k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in zip(keys, vectors)))

    def prune_vectors(self, *, slack: float = 0.25, floor: int = 256) -> int:
        """Drop cached vectors that no chunk uses, once there are many of them. Returns how many.

        Orphans are kept up to `floor` or `slack` times the vectors in use, so that
        undoing an edit or restoring a deleted file embeds nothing.
        """
        orphans = "SELECT key FROM vectors WHERE key NOT IN (SELECT embed_key FROM chunks)"
        count = self.db.execute(f"SELECT COUNT(*) FROM ({orphans})").fetchone()[0]
        used = self.db.execute("SELECT COUNT(DISTINCT embed_key) FROM chunks").fetchone()[0]
        if count <= max(floor, slack * used):
            return 0
        with self.transaction():
            cur = self.db.execute(f"DELETE FROM vectors WHERE key IN ({orphans})")
        return int(cur.rowcount or 0)

    # -- feedback -------------------------------------------------------------
    def add_feedback(self, rating: int, question: str, answer: str, hits: list[dict[str, Any]]) -> int:
        with self.transaction():
            cur = self.db.execute(
                "INSERT INTO feedback(created_at, rating, question, answer, hits) VALUES (?, ?, ?, ?, ?)",
                (time.time(), rating, question, answer, json.dumps(hits, ensure_ascii=False)))
        return int(cur.lastrowid or 0)

    def feedback(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT id, created_at, rating, question, answer, hits FROM feedback ORDER BY id")
        return [{"id": r[0], "created_at": r[1], "rating": r[2], "question": r[3], "answer": r[4],
                 "hits": json.loads(r[5])} for r in rows]

    def close(self) -> None:
        self.db.close()


class _Transaction:
    """`BEGIN IMMEDIATE` ... `COMMIT`, or `ROLLBACK` on any exception (nestable: inner ones are no-ops)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.outer = False

    def __enter__(self) -> sqlite3.Connection:
        if not self.db.in_transaction:
            self.db.execute("BEGIN IMMEDIATE")
            self.outer = True
        return self.db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if not self.outer:
            return
        if exc_type is None:
            self.db.execute("COMMIT")
        elif self.db.in_transaction:  # SQLite rolls back by itself on some errors, such as a full disk
            self.db.execute("ROLLBACK")


def _unpack(rows: list[tuple[int, bytes]]) -> tuple[np.ndarray, np.ndarray]:
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vectors = np.vstack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
    return ids, vectors


def _batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
