"""A frozen BM25 segment for large indexes: FTS5's postings copied into numpy arrays.

FTS5 ranks a query by calling bm25() once for every chunk that holds one of
its stems, about 2.7 µs a chunk on these cores: a question whose stems are in
60,000 of a million chunks took 160 ms (README, Performance). Summing the same
term weights over the same postings in numpy takes a few milliseconds.

From `THRESHOLD` chunks up, the indexer copies the stems of every chunk up to
the newest chunk id into `lexical-<max id>/` beside the store: the vocabulary,
each stem's chunks with its count in them, and each chunk's length in tokens.
The folder is written under a temporary name and renamed, so it is whole or
absent, and its arrays are memory-mapped when read. Chunk ids only grow
(AUTOINCREMENT), so a chunk in the segment never changes: chunks added since
are asked of FTS5 with `rowid > max id`, and chunks removed since are dropped
by checking the best candidates against the store. The scores are FTS5's own
bm25 (k1 1.2, b 0.75, its idf floor, and the row count and token total FTS5
keeps), so a query ranks as it would in FTS5 alone; a test compares the two.
A stem with a hyphen ("ks-artikkel") is a phrase to FTS5; the segment keeps
no positions, so FTS5 scores such a stem alone (rowid <= max id), unless its
parts are common (`PHRASE_BUDGET`). The indexer writes a new segment once the chunks added or removed
since reach `STALE_SHARE` of the index.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sqlite3
import time
import uuid
from array import array
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

log = logging.getLogger(__name__)

FORMAT = 1
# Chunks from which the indexer keeps a segment. FTS5 answers 1,178 chunks in 0.7 ms (p50) and
# 10,000 in 2.2 ms (p95 5.9 ms), but 100,000 in 16 ms (p95 38 ms); writing a segment took 14 s at
# 100,000 chunks and 128 s at a million (README, Performance), so about 3 s at this size.
THRESHOLD = 20_000
STALE_SHARE = 0.2  # a new segment once this share of the index was added or removed since
K1, B = 1.2, 0.75  # FTS5's bm25() defaults
# A hyphenated stem is a phrase, scored by FTS5 from its parts' positions: when its parts are
# in more chunks than this together (lexical.POSTINGS_BUDGET), the phrase is left out. Measured
# over the 1M synthetic store: "id-port" (in 197k and 116k chunks) took 470 ms.
PHRASE_BUDGET = 60_000
DENSE_SUM = 8  # postings over 1/DENSE_SUM of the chunks are summed into an array of every chunk
_PREFIX = "lexical-"
_ARRAYS = ("offsets", "postings", "counts", "ids", "lengths")


def tokens(stems: str) -> list[str]:
    """FTS5's tokens of a stored stems text: its unicode61 tokenizer also splits at - and '."""
    return stems.replace("-", " ").replace("'", " ").split()


@dataclass(frozen=True)
class Segment:
    """The postings of the chunks with ids up to `max_id`, as they were when it was written."""

    path: Path
    ident: tuple[int, int]  # the folder's device and inode: a rewrite under the same name differs
    uid: str  # the store's `lexical_uid`: a segment is only used with the store it was written from
    max_id: int
    vocab: dict[str, int]  # token -> row of `offsets`
    offsets: np.ndarray  # int64, len(vocab) + 1: a token's postings are [offsets[t], offsets[t + 1])
    postings: np.ndarray  # int32: positions in `ids` (ascending within a token)
    counts: np.ndarray  # uint16: the token's count in that chunk
    ids: np.ndarray  # int64: the chunk ids, ascending
    lengths: np.ndarray  # int32: each chunk's length in tokens

    @property
    def size(self) -> int:
        return len(self.ids)

    def postings_of(self, token: str) -> tuple[np.ndarray, np.ndarray]:
        """Positions (in `ids`) of the chunks holding `token`, and its count in each."""
        row = self.vocab.get(token)
        if row is None:
            return _EMPTY
        a, b = int(self.offsets[row]), int(self.offsets[row + 1])
        return self.postings[a:b], self.counts[a:b]

    def search(self, db: sqlite3.Connection, stems: Sequence[str], k: int, df: dict[str, int],
               expression: str) -> list[tuple[int, float]] | None:
        """Up to `k` `(chunk_id, bm25)` pairs, best first, over the segment and the chunks added
        since (FTS5, `expression`); `df` holds the stems' chunk counts in the whole index.
        None when the store is not the one the segment was written from (it was rebuilt)."""
        if store_uid(db) != self.uid:
            return None
        rows, avg = table_stats(db)
        found = self._best(db, stems, k, df, rows, avg)
        newer = db.execute(
            "SELECT rowid, -bm25(lexical) FROM lexical WHERE lexical MATCH ? AND rowid > ? "
            "ORDER BY bm25(lexical) LIMIT ?", (expression, self.max_id, k)).fetchall()
        found += [(int(r[0]), float(r[1])) for r in newer]
        return sorted(found, key=lambda p: -p[1])[:k]

    def _best(self, db: sqlite3.Connection, stems: Sequence[str], k: int, df: dict[str, int],
              rows: int, avg: float) -> list[tuple[int, float]]:
        positions, weights = [], []
        for stem in stems:
            parts = tokens(stem)
            if len(parts) > 1:  # a phrase to FTS5: its own score for it, over the segment's chunks
                if sum(len(self.postings_of(p)[0]) for p in parts) > PHRASE_BUDGET:
                    continue  # FTS5 would read all those chunks' positions: left out, as common stems are
                found = db.execute("SELECT rowid, -bm25(lexical) FROM lexical WHERE lexical MATCH ? AND rowid <= ?",
                                   ('"' + stem.replace('"', '""') + '"', self.max_id)).fetchall()
                ids = np.array([r[0] for r in found], dtype=np.int64)
                pos = np.minimum(np.searchsorted(self.ids, ids), max(self.size - 1, 0))
                held = self.ids[pos] == ids if len(ids) else np.zeros(0, dtype=bool)
                positions.append(pos[held])
                weights.append(np.array([r[1] for r in found], dtype=np.float64)[held])
                continue
            pos, count = self.postings_of(stem)
            if not len(pos):
                continue
            n = df.get(stem) or len(pos)
            idf = math.log(max(rows - n + 0.5, 1e-9) / (n + 0.5))  # counts cached since: never below 0
            tf = count.astype(np.float64)
            norm = K1 * (1 - B + B * self.lengths[pos] / avg) if avg > 0 else K1
            positions.append(pos)
            weights.append(max(idf, 1e-6) * tf * (K1 + 1) / (tf + norm))
        pos = np.concatenate(positions) if positions else np.zeros(0, dtype=np.int64)
        if not len(pos):
            return []
        if DENSE_SUM * len(pos) > self.size:  # many postings: one sum over every chunk beats sorting them
            dense = np.bincount(pos, weights=np.concatenate(weights), minlength=self.size)
            chunks = np.flatnonzero(dense)
            scores = dense[chunks]
        else:
            chunks, inverse = np.unique(pos, return_inverse=True)
            scores = np.bincount(inverse, weights=np.concatenate(weights))
        out: dict[int, float] = {}
        order = _ranked(scores, 2 * k + 16)
        start = 0
        while len(out) < k and start < len(scores):  # skip chunks removed since the segment was written
            if start >= len(order):
                order = _ranked(scores, len(scores))
            part = order[start:start + 4 * k + 16]
            ids = self.ids[chunks[part]]
            alive = _existing(db, ids.tolist())
            out.update((int(i), float(s)) for i, s in zip(ids, scores[part]) if int(i) in alive)
            start += len(part)
        return sorted(out.items(), key=lambda p: -p[1])[:k]


def _ranked(scores: np.ndarray, m: int) -> np.ndarray:
    """Indices of the `m` highest scores, highest first."""
    if m < len(scores):
        best = np.argpartition(-scores, m - 1)[:m]
        return best[np.argsort(-scores[best], kind="stable")]
    return np.argsort(-scores, kind="stable")


_EMPTY = (np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.uint16))


def _existing(db: sqlite3.Connection, ids: list[int]) -> set[int]:
    marks = ",".join("?" * len(ids))
    return {int(r[0]) for r in db.execute(f"SELECT id FROM chunks WHERE id IN ({marks})", ids)}


def store_uid(db: sqlite3.Connection, *, create: bool = False) -> str | None:
    """The store's id for its segments (made by the writer with the first segment)."""
    row = db.execute("SELECT value FROM meta WHERE key = 'lexical_uid'").fetchone()
    if row is None and create:
        db.execute("INSERT INTO meta(key, value) VALUES ('lexical_uid', ?)", (uuid.uuid4().hex,))
        return store_uid(db)
    return None if row is None else str(row[0])


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    """An SQLite varint at `buf[i]`: the value and the offset after it."""
    value = 0
    for _ in range(8):
        byte = buf[i]
        i += 1
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, i
    return (value << 8) | buf[i], i + 1


def table_stats(db: sqlite3.Connection) -> tuple[int, float]:
    """FTS5's row count and average row length in tokens, which its bm25() uses.

    FTS5 keeps both in its "averages" record (row 1 of `lexical_data`: the row count, then
    each column's token total, as varints); counting them instead would read every row."""
    row = db.execute("SELECT block FROM lexical_data WHERE id = 1").fetchone()
    if not row or not row[0]:
        return 0, 0.0
    count, i = _varint(bytes(row[0]), 0)
    total, _ = _varint(bytes(row[0]), i)
    return count, (total / count if count else 0.0)


def write(db: sqlite3.Connection, index_dir: Path) -> Path:
    """Copy the stems of every chunk in the lexical index into a new segment folder."""
    started = time.perf_counter()
    max_id = int(db.execute("SELECT coalesce(max(rowid), 0) FROM lexical").fetchone()[0])
    vocab: dict[str, int] = {}
    token_rows, positions, counts, ids, lengths = array("i"), array("i"), array("H"), array("q"), array("i")
    cur = db.execute("SELECT rowid, terms FROM lexical WHERE rowid <= ? ORDER BY rowid", (max_id,))
    while batch := cur.fetchmany(10_000):
        for rowid, text in batch:
            found = tokens(text or "")
            position = len(ids)
            ids.append(int(rowid))
            lengths.append(len(found))
            for token, count in Counter(found).items():
                token_rows.append(vocab.setdefault(token, len(vocab)))
                positions.append(position)
                counts.append(min(count, 65535))
    rows = np.frombuffer(token_rows, dtype=np.int32) if len(token_rows) else np.zeros(0, np.int32)
    order = np.argsort(rows, kind="stable")  # by token, then chunk (positions were appended in order)
    offsets = np.zeros(len(vocab) + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=len(vocab)), out=offsets[1:])
    arrays = {"offsets": offsets, "postings": np.asarray(positions, dtype=np.int32)[order],
              "counts": np.asarray(counts, dtype=np.uint16)[order], "ids": np.asarray(ids, dtype=np.int64),
              "lengths": np.asarray(lengths, dtype=np.int32)}
    path = index_dir / f"{_PREFIX}{max_id}"
    tmp = index_dir / f".{path.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for name, values in arrays.items():
            np.save(tmp / f"{name}.npy", values)
        (tmp / "vocab.json").write_text(json.dumps(list(vocab), ensure_ascii=False), encoding="utf-8")
        meta = {"format": FORMAT, "uid": store_uid(db, create=True), "max_id": max_id, "chunks": len(ids),
                "postings": len(rows), "terms": len(vocab)}
        (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        shutil.rmtree(path, ignore_errors=True)  # the same chunks again (a rewrite after removals)
        os.replace(tmp, path)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote lexical segment %s: %d chunks, %d postings in %.1f s", path.name, len(ids), len(rows),
             time.perf_counter() - started)
    return path


def _checked(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A segment's meta and its memory-mapped arrays, checked against each other (not the vocabulary)."""
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT:
        raise ValueError(f"format {meta.get('format')}, expected {FORMAT}")
    arrays = {name: np.load(path / f"{name}.npy", mmap_mode="r") for name in _ARRAYS}
    if len(arrays["offsets"]) != meta["terms"] + 1 or len(arrays["ids"]) != meta["chunks"] \
            or len(arrays["postings"]) != meta["postings"]:
        raise ValueError("its files do not agree")
    return meta, arrays


def read(path: Path) -> Segment:
    """The segment in `path`, its arrays memory-mapped. Raises OSError or ValueError when damaged."""
    meta, arrays = _checked(path)
    terms = json.loads((path / "vocab.json").read_text(encoding="utf-8"))
    if len(terms) != meta["terms"]:
        raise ValueError("its vocabulary does not agree")
    return Segment(path, _ident(path), str(meta["uid"]), int(meta["max_id"]),
                   {t: i for i, t in enumerate(terms)}, **arrays)


def newest(index_dir: Path) -> Path | None:
    """The folder of the newest segment in `index_dir`, if any."""
    found = [(int(p.name[len(_PREFIX):]), p) for p in index_dir.glob(f"{_PREFIX}*")
             if p.is_dir() and p.name[len(_PREFIX):].isdigit()]
    return max(found)[1] if found else None


def load(index_dir: Path, current: Segment | None = None) -> Segment | None:
    """The newest segment (`current` when it still is), or None; a damaged one is logged and ignored."""
    path = newest(index_dir)
    if path is None:
        return None
    try:
        if current is not None and current.path == path and current.ident == _ident(path):
            return current
        return read(path)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("ignoring lexical segment %s (%s); FTS5 answers alone", path.name, exc)
        return None


def _ident(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino


def stale_share(db: sqlite3.Connection, max_id: int, chunks: int) -> float:
    """The share of the index added or removed since a segment of `chunks` chunks up to `max_id`."""
    rows, _ = table_stats(db)
    newer = int(db.execute("SELECT count(*) FROM chunks WHERE id > ?", (max_id,)).fetchone()[0])
    removed = max(chunks - (rows - newer), 0)
    return (newer + removed) / max(rows, 1)


def maintain(db: sqlite3.Connection, index_dir: Path) -> Path | None:
    """After an index run: write a segment when the index is large enough and has none, or
    when its segment is stale or damaged; remove older segments. Returns the new segment's folder.
    Reads the current segment's meta and array headers only, not its vocabulary."""
    rows, _ = table_stats(db)
    path = newest(index_dir)
    meta = None
    if path is not None:
        try:
            meta = _checked(path)[0]
        except (OSError, ValueError, KeyError) as exc:
            log.warning("lexical segment %s is damaged (%s); writing it again", path.name, exc)
    written = None
    if meta is None or stale_share(db, int(meta["max_id"]), int(meta["chunks"])) >= STALE_SHARE:
        if rows >= THRESHOLD:
            written = write(db, index_dir)
        elif path is not None:  # the index shrank below the threshold: FTS5 alone is fast
            shutil.rmtree(path, ignore_errors=True)
    prune(index_dir, newest(index_dir))
    return written


def prune(index_dir: Path, keep: Path | None) -> None:
    """Delete segments other than `keep`, and temporary folders a crash left (after an hour)."""
    for old in index_dir.glob(f"{_PREFIX}*"):
        if old != keep and old.is_dir() and old.name[len(_PREFIX):].isdigit():
            shutil.rmtree(old, ignore_errors=True)
    for tmp in index_dir.glob(f".{_PREFIX}*.tmp-*"):
        try:
            if time.time() - tmp.stat().st_mtime > 3600:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass
