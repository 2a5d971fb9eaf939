"""The Milvus backend of the store seam (`backend.ChunkStore`): one set of collections.

Five collections share a prefix (default `assistant`): `_meta` (stamp,
generation, pipeline), `_docs` (documents, their text in ≤16,000-character
pieces), `_chunks` (chunk rows with their vector and their BM25 terms),
`_vectors` (the embedding cache, keyed by the hash of the embedded text) and
`_feedback`. The same code talks to a Milvus cluster and to Milvus Lite.

Milvus has no multi-row transactions, so visibility is by generation. Every
document and chunk row carries `born`, the generation that wrote it; readers
see rows with `born <= generation` and, per document, only its newest version
(a tombstone row marks a deletion). A transaction writes its rows at the next
generation, then publishes them by writing that number to `_meta` (one row,
atomic), then deletes the versions it replaced. A crash before publishing
leaves rows nobody sees, which the next transaction removes; a crash after it
leaves old versions that readers already ignore, which the next transaction
also removes. `chunks_by_id` drops chunks of a replaced version, so a hit
always slices its document's current text.

Lexical search is Milvus's own BM25 (a sparse field filled by a BM25 function)
over the terms of our Norwegian analyser (`lexical.analyse`: stop words,
Snowball stems), joined by spaces, so Milvus's standard tokenizer only splits
them again and Norwegian stemming stays ours.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from . import lexical
from .backend import StoreAddress
from .errors import IndexCorruptError, IndexMismatchError
from .milvus_schema import (BATCH, CHUNK_FIELDS, CHUNK_ROW, DOC_FIELDS, Names, batches, chunk_rows,
                            connect, create_collections, doc_rows, iterate, lit, lits, meta_value,
                            pymilvus, tombstone, unpack_vectors)
from .milvus_tables import SideTables
from .store import StoredChunk, StoredDocument
from .types import Chunk, Document, Section

log = logging.getLogger(__name__)

@dataclass
class _Pending:
    """A transaction under way: the generation it will publish and what it replaced."""

    generation: int
    meta: dict[str, str] = field(default_factory=dict)
    touched: set[str] = field(default_factory=set)
    retired: set[int] = field(default_factory=set)


class MilvusStore(SideTables):
    """`backend.ChunkStore` on Milvus. `at(generation)` gives a read view pinned to a generation."""

    def __init__(self, client: Any, address: StoreAddress, dim: int, *, pinned: int | None = None) -> None:
        self.client = client
        self.address = address
        self.names = Names(address.prefix)
        self.dim = dim
        self._pinned = pinned
        self._pending: _Pending | None = None

    @classmethod
    def open(cls, address: StoreAddress, stamp: dict[str, Any] | None, *, create: bool) -> "MilvusStore":
        """Open (or with `create`, create) the collections and check the stamp (None: skip the check)."""
        client = connect(address)
        pm = pymilvus()
        for attempt in range(5):  # another process may be creating the collections at this moment
            try:
                return cls._open(client, address, stamp, create)
            except pm.exceptions.MilvusException as exc:
                if attempt == 4:
                    raise IndexCorruptError(f"index {address.display()} is unreadable ({exc.message}); "
                                            "run `assistant index --rebuild`") from None
                time.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")

    @classmethod
    def _open(cls, client: Any, address: StoreAddress, stamp: dict[str, Any] | None,
              create: bool) -> "MilvusStore":
        names = Names(address.prefix)
        if not client.has_collection(names.meta):
            if not create or stamp is None:
                raise IndexMismatchError(f"no index in {address.display()}: run `assistant index` first")
            create_collections(client, names, int(stamp["dimension"]), address.index)
        for name in names.all():  # a rebuild's rename leaves collections released
            client.load_collection(name)
        stored = meta_value(client, names.meta, "stamp")
        old = json.loads(stored) if stored else {}
        store = cls(client, address, int(old.get("dimension") or (stamp or {}).get("dimension", 0)))
        if stamp is not None:
            store._check_stamp(old, stamp)
        return store

    def _check_stamp(self, old: dict[str, Any], stamp: dict[str, Any]) -> None:
        if not old:
            self._upsert_meta({"stamp": json.dumps(stamp, sort_keys=True), "generation": "0"})
            return
        if old != stamp:
            diff = sorted(k for k in set(old) | set(stamp) if old.get(k) != stamp.get(k))
            detail = ", ".join(f"{k}: {old.get(k)!r} -> {stamp.get(k)!r}" for k in diff[:3])
            raise IndexMismatchError(f"index {self.address.display()} was built with other settings "
                                     f"({detail}); run `assistant index --rebuild`")

    def at(self, generation: int) -> "MilvusStore":
        """A read view of this store as of `generation` (sharing the connection)."""
        return MilvusStore(self.client, self.address, self.dim, pinned=generation)

    # -- meta and generations -------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        return meta_value(self.client, self.names.meta, key)

    def set_meta(self, key: str, value: str) -> None:
        if self._pending is not None:
            self._pending.meta[key] = value
        else:
            self._upsert_meta({key: value})

    def _upsert_meta(self, values: dict[str, str]) -> None:
        rows = [{"key": k, "value": v, "_v": [0.0, 0.0]} for k, v in values.items()]
        if rows:
            self.client.upsert(self.names.meta, rows)

    @property
    def generation(self) -> int:
        if self._pinned is not None:
            return self._pinned
        return int(self.get_meta("generation") or 0)

    @property
    def view(self) -> int:
        """The generation reads see: the published one, or inside a transaction its own rows too."""
        return self._pending.generation if self._pending is not None else self.generation

    @contextmanager
    def transaction(self) -> Iterator["MilvusStore"]:
        """Rows written inside become visible together at the end (see the module docstring)."""
        if self._pending is not None:
            yield self
            return
        published = self.generation
        self._recover(published)
        self._pending = _Pending(published + 1)
        try:
            yield self
        except BaseException:
            pending, self._pending = self._pending, None
            self._discard(pending.generation)
            raise
        pending, self._pending = self._pending, None
        self._publish(pending)

    def _publish(self, pending: _Pending) -> None:
        meta = dict(pending.meta)
        generation = meta.pop("generation", str(pending.generation) if pending.touched else None)
        if generation is not None:
            meta["collect"] = generation  # old versions to delete; cleared when they are gone
        self._upsert_meta(meta)
        if generation is None:
            return
        if self.address.lite:  # Lite searches unflushed rows in pure Python (1.3 s for 5,000 vectors)
            for name in (self.names.vectors, self.names.chunks, self.names.docs):
                self.client.flush(name)  # a cluster seals segments itself and rate-limits flushes
        self._upsert_meta({"generation": generation})  # the moment the change becomes visible
        self._collect(sorted(pending.touched), int(generation))
        self._upsert_meta({"collect": ""})

    def _discard(self, generation: int) -> None:
        self.client.delete(self.names.chunks, filter=f"born >= {generation}")
        self.client.delete(self.names.docs, filter=f"born >= {generation}")

    def recover(self) -> None:
        """Repair what a writer killed mid-commit left. Call only while holding the writer lock."""
        self._recover(self.generation)

    def _recover(self, published: int) -> None:
        """Remove what a crashed writer left: unpublished rows, and versions it had replaced."""
        self._discard(published + 1)
        if self.get_meta("collect"):
            latest = self._latest_versions(published, None, with_tombs=True)
            stale = [d for d, v in latest.items() if v["tomb"] or self._has_older(d, v["born"])]
            for doc_id in stale:
                self._collect([doc_id], latest[doc_id]["born"])
            self._upsert_meta({"collect": ""})

    def _has_older(self, doc_id: str, born: int) -> bool:
        rows = self.client.query(self.names.docs, filter=f"doc_id == {lit(doc_id)} and born < {born}",
                                 output_fields=["born"], limit=1)
        return bool(rows)

    def _collect(self, doc_ids: list[str], generation: int) -> None:
        """Delete the versions of `doc_ids` older than `generation`, then tombstones at it."""
        for part in batches(doc_ids, BATCH):
            where = f"doc_id in {lits(part)}"
            self.client.delete(self.names.chunks, filter=f"{where} and born < {generation}")
            self.client.delete(self.names.docs, filter=f"{where} and born < {generation}")
            self.client.delete(self.names.docs, filter=f"{where} and born == {generation} and tomb == true")

    # -- documents ------------------------------------------------------------
    def _latest_versions(self, generation: int, doc_ids: Sequence[str] | None,
                         *, with_tombs: bool = False) -> dict[str, dict[str, Any]]:
        """The newest visible part-0 row per document (tombstones only if asked)."""
        fields = ["doc_id", "born", "tomb", "root", "hash", "size", "mtime_ns", "title", "lang"]
        where = f"part == 0 and born <= {generation}"
        if doc_ids is None:
            rows: Iterable[dict[str, Any]] = iterate(self.client, self.names.docs, where, fields)
        else:
            rows = [r for part in batches(list(dict.fromkeys(doc_ids)), BATCH)
                    for r in self.client.query(self.names.docs, filter=f"{where} and doc_id in {lits(part)}",
                                               output_fields=fields)]
        latest: dict[str, dict[str, Any]] = {}
        for row in rows:
            old = latest.get(row["doc_id"])
            if old is None or row["born"] > old["born"]:
                latest[row["doc_id"]] = row
        return latest if with_tombs else {d: r for d, r in latest.items() if not r["tomb"]}

    def documents(self) -> dict[str, StoredDocument]:
        return {d: StoredDocument(d, r["root"], r["hash"], int(r["size"]), int(r["mtime_ns"]))
                for d, r in self._latest_versions(self.view, None).items()}

    def document(self, doc_id: str) -> Document | None:
        row = self._latest_versions(self.view, [doc_id]).get(doc_id)
        if row is None:
            return None
        parts = self.client.query(self.names.docs, filter=f"doc_id == {lit(doc_id)} and born == {row['born']}",
                                  output_fields=["part", "data"])
        data = json.loads("".join(p["data"] for p in sorted(parts, key=lambda p: p["part"])))
        sections = tuple(Section(s[0], s[1], tuple(s[2]), s[3]) for s in data["sections"])
        return Document(doc_id, data["title"], data["text"], data["lang"], data["source"], sections,
                        data["metadata"])

    def touch(self, doc_id: str, size: int, mtime_ns: int) -> None:
        row = self._latest_versions(self.view, [doc_id]).get(doc_id)
        if row is None:
            return
        (full,) = self.client.query(self.names.docs, filter=f"doc_id == {lit(doc_id)} and born == {row['born']} "
                                    "and part == 0", output_fields=[*DOC_FIELDS, "_v"])
        self.client.upsert(self.names.docs, [{**full, "size": size, "mtime_ns": mtime_ns}])

    def put_document(self, doc: Document, root: str, size: int, mtime_ns: int,
                     chunks: Sequence[Chunk], embed_keys: Sequence[str]) -> list[int]:
        """Write a new version of `doc` and its chunks; visible when the transaction ends."""
        with self.transaction():
            assert self._pending is not None
            born = self._pending.generation
            self.delete_document(doc.id)
            vectors = self._cached_vectors(embed_keys)  # chunks without one are pending (two-step publishing)
            first = int(self.get_meta("next_chunk_id") or 1)
            self._upsert_meta({"next_chunk_id": str(first + len(chunks))})  # ids are never reused
            rows = chunk_rows(doc, chunks, embed_keys, vectors, first, born, self.dim)
            for part in batches(rows, BATCH):
                self.client.insert(self.names.chunks, part)
            self.client.upsert(self.names.docs, doc_rows(doc, root, size, mtime_ns, born))
            return [int(r["id"]) for r in rows]

    def delete_document(self, doc_id: str) -> list[int]:
        """Hide a document and its chunks when the transaction ends; returns the hidden chunk ids."""
        with self.transaction():
            pending = self._pending
            assert pending is not None
            row = self._latest_versions(pending.generation - 1, [doc_id]).get(doc_id)
            pending.touched.add(doc_id)
            if row is None:
                return []
            ids = [int(r["id"]) for r in self.client.query(
                self.names.chunks, filter=f"doc_id == {lit(doc_id)} and born == {row['born']}",
                output_fields=["id"])]
            self.client.upsert(self.names.docs, [tombstone(doc_id, pending.generation)])
            fresh = [i for i in ids if i not in pending.retired]
            pending.retired.update(fresh)
            return fresh

    # -- chunks ---------------------------------------------------------------
    def chunks_by_id(self, ids: Sequence[int]) -> dict[int, StoredChunk]:
        """The chunks of the current version of their documents (others are dropped)."""
        rows = [r for part in batches([int(i) for i in ids], BATCH)
                for r in self.client.query(self.names.chunks, filter=f"id in {list(part)}",
                                           output_fields=CHUNK_FIELDS)]
        docs = self._latest_versions(self.view, [r["doc_id"] for r in rows])
        out: dict[int, StoredChunk] = {}
        for r in rows:
            doc = docs.get(r["doc_id"])
            if doc is None or doc["born"] != r["born"]:
                continue
            page = None if r["page"] < 0 else int(r["page"])
            chunk = Chunk(r["doc_id"], int(r["ordinal"]), int(r["start"]), int(r["stop"]), r["text"],
                          tuple(json.loads(r["headings"])), page)
            out[int(r["id"])] = StoredChunk(int(r["id"]), chunk, doc["title"], doc["lang"])
        return out

    def chunk_vectors(self, ids: Sequence[int] | None = None,
                      batch: int = 20000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) of the chunks whose vector is in the embedding cache, as `Store` gives them."""
        if ids is None:
            keyed = list(iterate(self.client, self.names.chunks, f"born <= {self.view}", ["id", "embed_key"]))
        else:
            keyed = [r for part in batches([int(i) for i in ids], BATCH) for r in self.client.query(
                self.names.chunks, filter=f"id in {list(part)}", output_fields=["id", "embed_key"])]
        for part in batches(keyed, min(batch, BATCH)):
            cached = self._cached_vectors([r["embed_key"] for r in part])
            rows = [{"id": r["id"], "vector": cached[r["embed_key"]]} for r in part if r["embed_key"] in cached]
            if rows:
                yield unpack_vectors(rows)

    def vectors_by_language(self, limit: int) -> Iterator[tuple[str, np.ndarray]]:
        """Per document language, the vectors of up to `limit` of its current chunks (for centering)."""
        docs = self._latest_versions(self.view, None)
        by_lang: dict[str, list[str]] = {}
        for r in iterate(self.client, self.names.chunks, f"born <= {self.view}", ["doc_id", "born", "embed_key"]):
            doc = docs.get(r["doc_id"])
            if doc is not None and doc["born"] == r["born"]:
                by_lang.setdefault(doc["lang"], []).append(r["embed_key"])
        for lang, keys in sorted(by_lang.items()):
            cached = self._cached_vectors(keys[::max(1, -(-len(keys) // limit))])
            if cached:
                yield lang, np.asarray(list(cached.values()), dtype=np.float32)

    def vectors_of(self, ids: Sequence[int]) -> dict[int, tuple[np.ndarray, str]]:
        """`{chunk_id: (vector, document language)}` for those of `ids` that have a vector."""
        rows = [r for part in batches([int(i) for i in ids], BATCH) for r in self.client.query(
            self.names.chunks, filter=f"id in {part}", output_fields=["id", "doc_id", "embed_key"])]
        docs = self._latest_versions(self.view, [r["doc_id"] for r in rows])
        cached = self._cached_vectors([r["embed_key"] for r in rows])
        return {int(r["id"]): (np.asarray(cached[r["embed_key"]], dtype=np.float32), docs[r["doc_id"]]["lang"])
                for r in rows if r["embed_key"] in cached and r["doc_id"] in docs}

    def pending_chunks(self) -> list[int]:
        """Chunks published by their words whose vector is not searchable yet."""
        rows = iterate(self.client, self.names.chunks, f"born <= {self.view} and has_vector == false", ["id"])
        return sorted(int(r["id"]) for r in rows)

    def set_pending(self, chunk_ids: Sequence[int]) -> None:
        """Nothing to store: a chunk is pending while its row has no vector (`has_vector`)."""

    def embed_texts(self, ids: Sequence[int], prompt: str,
                    embed_text: Callable[[str, Chunk], str]) -> dict[str, str]:
        """`{embed_key: prompt + embed_text(title, chunk)}` for the given (current) chunks."""
        stored = self.chunks_by_id(ids)
        texts: dict[str, str] = {}
        for part in batches(list(stored), BATCH):
            for r in self.client.query(self.names.chunks, filter=f"id in {part}", output_fields=["id", "embed_key"]):
                texts[r["embed_key"]] = prompt + embed_text(stored[r["id"]].title, stored[r["id"]].chunk)
        return texts

    def set_vectors(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        """Make these chunks searchable by meaning (rows without a vector get it; ids are kept)."""
        given = {int(i): v for i, v in zip(ids, vectors)}
        for part in batches(sorted(given), BATCH):
            rows = self.client.query(self.names.chunks, filter=f"id in {part} and has_vector == false",
                                     output_fields=CHUNK_ROW)
            for r in rows:
                r.update(has_vector=True, vector=np.asarray(given[int(r["id"])], dtype=np.float32).tolist())
            if rows:
                self.client.upsert(self.names.chunks, rows)

    def dense_count(self) -> int:
        return self._count(f"born <= {self.view} and has_vector == true")

    def _count(self, where: str) -> int:
        return int(self.client.query(self.names.chunks, filter=where, output_fields=["count(*)"])[0]["count(*)"])

    def lexical_search(self, question: str, k: int, *, doc_freq: Any = None,
                       total: int = 0) -> list[tuple[int, float]]:
        """BM25 over our stems (`doc_freq`, the default's common-stem cut, is not applied here)."""
        terms = lexical.query_terms(question)
        if not terms or k <= 0:
            return []
        found = self.client.search(self.names.chunks, data=[" ".join(terms)], anns_field="sparse", limit=k,
                                   filter=f"born <= {self.view}", output_fields=["born"],
                                   search_params={"metric_type": "BM25"})
        return [(int(h["id"]), abs(float(h["distance"]))) for h in found[0]]  # Lite: negative, a server: positive

    def dense_search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        if k <= 0:
            return []
        params: dict[str, Any] = {"metric_type": "IP"}
        if self.address.index == "HNSW":
            params["params"] = {"ef": max(64, k)}
        found = self.client.search(self.names.chunks, data=[np.asarray(query, dtype=np.float32).tolist()],
                                   anns_field="vector", limit=min(k, 16384),
                                   filter=f"born <= {self.view} and has_vector == true",
                                   output_fields=["born"], search_params=params)
        return [(int(h["id"]), float(h["distance"])) for h in found[0]]

    def counts(self) -> tuple[int, int]:
        return len(self._latest_versions(self.view, None)), self._count(f"born <= {self.view}")

    def close(self) -> None:
        self.client.close()
