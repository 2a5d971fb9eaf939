"""The Milvus collections of one index: the connection, their schemas and their rows.

Collections are created on first use (see `milvus_store` for how they are used).
Every collection has a vector field, because Milvus requires one; those that
need none carry a two-dimensional placeholder `_v`. Scalar fields used in
filters (`doc_id`, `born`, `key`) get inverted indexes, which a cluster needs
to filter fast at tens of millions of rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .backend import StoreAddress
from .errors import AssistantError, MissingExtraError
from . import lexical
from .types import Chunk, Document

INSTALL = "pip install 'kommune-assistent[milvus]'"
TOKEN_ENV = "ASSISTANT_MILVUS_TOKEN"
PIECE = 16_000  # characters of document JSON per row: at most 64,000 bytes of UTF-8
VARCHAR = 65_535  # Milvus's longest VARCHAR, in bytes
BATCH = 500  # ids or keys per `in [...]` filter
BM25 = {"bm25_k1": 1.2, "bm25_b": 0.75}  # FTS5's values
DOC_FIELDS = ["key", "doc_id", "born", "part", "nparts", "tomb", "root", "hash", "size", "mtime_ns",
               "title", "lang", "data"]
CHUNK_FIELDS = ["doc_id", "born", "ordinal", "start", "stop", "text", "headings", "page"]
CHUNK_ROW = ["id", *CHUNK_FIELDS, "embed_key", "terms", "has_vector", "vector"]  # all but the BM25 output


def pymilvus() -> Any:
    try:
        import pymilvus as module
    except ImportError:
        raise MissingExtraError(f"the Milvus store needs pymilvus: {INSTALL}") from None
    return module


def connect(address: StoreAddress) -> Any:
    """A `MilvusClient` for the address (Milvus Lite starts in this process)."""
    pm = pymilvus()
    if address.lite:
        try:
            import milvus_lite  # noqa: F401
        except ImportError:
            raise MissingExtraError(f"a Milvus Lite store needs milvus-lite: {INSTALL}") from None
        Path(address.uri).parent.mkdir(parents=True, exist_ok=True)
    _quiet_lite_iterators()
    try:
        return pm.MilvusClient(uri=address.uri, token=os.environ.get(TOKEN_ENV, ""))
    except pm.exceptions.MilvusException as exc:
        hint = (" (a Milvus Lite file is open in one process at a time: serve it with "
                "`milvus-lite server --data-dir FILE` and use milvus://)" if address.lite else "")
        raise AssistantError(f"cannot open Milvus at {address.display()}: {exc.message}{hint}") from None


class _NoMvccWarning(logging.Filter):
    """Milvus Lite (also as a server) has no timestamps; pymilvus warns about that on every query iterator."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("failed to get mvccTs")


def _quiet_lite_iterators() -> None:
    logger = logging.getLogger("pymilvus.client.iterator.query_iterator")
    if not any(isinstance(f, _NoMvccWarning) for f in logger.filters):
        logger.addFilter(_NoMvccWarning())


@dataclass(frozen=True)
class Names:
    prefix: str

    @property
    def meta(self) -> str:
        return f"{self.prefix}_meta"

    @property
    def docs(self) -> str:
        return f"{self.prefix}_docs"

    @property
    def chunks(self) -> str:
        return f"{self.prefix}_chunks"

    @property
    def vectors(self) -> str:
        return f"{self.prefix}_vectors"

    @property
    def feedback(self) -> str:
        return f"{self.prefix}_feedback"

    def all(self) -> list[str]:
        return [self.docs, self.chunks, self.vectors, self.feedback, self.meta]  # meta last: it marks "ready"



_PATH = 8192  # bytes for a document id or a corpus root


def create_collections(client: Any, names: Names, dim: int, index: str) -> None:
    """Create whichever of the index's collections do not exist yet (the meta collection last)."""
    pm = pymilvus()
    DataType = pm.DataType
    makers = {names.docs: _docs, names.chunks: _chunks, names.vectors: _vectors,
              names.feedback: _feedback, names.meta: _meta}
    for name in names.all():
        if client.has_collection(name):
            continue
        schema, params = makers[name](client, pm, DataType, dim, index)
        try:
            client.create_collection(name, schema=schema, consistency_level="Strong")
        except pm.exceptions.MilvusException:
            if not client.has_collection(name):
                raise
            _wait_for(client, names.meta)  # another process is creating them (two servers starting at once)
            return
        # sync=False: pymilvus would otherwise poll each index in 0.5 s sleeps; these are empty.
        client.create_index(name, params, sync=False)
        client.load_collection(name)


def _wait_for(client: Any, name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not client.has_collection(name):
        if time.monotonic() > deadline:
            raise AssistantError(f"Milvus collection {name} did not appear within {timeout:.0f} s")
        time.sleep(0.2)


def _placeholder(client: Any, schema: Any, DataType: Any) -> Any:
    schema.add_field("_v", DataType.FLOAT_VECTOR, dim=2)
    params = client.prepare_index_params()
    params.add_index("_v", index_type="FLAT", metric_type="L2")
    return params


def _meta(client: Any, pm: Any, DataType: Any, dim: int, index: str) -> tuple[Any, Any]:
    schema = client.create_schema(auto_id=False)
    schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=256)
    schema.add_field("value", DataType.VARCHAR, max_length=VARCHAR)
    return schema, _placeholder(client, schema, DataType)


def _docs(client: Any, pm: Any, DataType: Any, dim: int, index: str) -> tuple[Any, Any]:
    schema = client.create_schema(auto_id=False)
    schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=128)
    schema.add_field("doc_id", DataType.VARCHAR, max_length=_PATH)
    for name in ("born", "part", "nparts", "size", "mtime_ns"):
        schema.add_field(name, DataType.INT64)
    schema.add_field("tomb", DataType.BOOL)
    schema.add_field("root", DataType.VARCHAR, max_length=VARCHAR)
    schema.add_field("hash", DataType.VARCHAR, max_length=128)
    schema.add_field("title", DataType.VARCHAR, max_length=VARCHAR)
    schema.add_field("lang", DataType.VARCHAR, max_length=16)
    schema.add_field("data", DataType.VARCHAR, max_length=VARCHAR)
    params = _placeholder(client, schema, DataType)
    params.add_index("doc_id", index_type="INVERTED")
    params.add_index("born", index_type="INVERTED")
    return schema, params


def _chunks(client: Any, pm: Any, DataType: Any, dim: int, index: str) -> tuple[Any, Any]:
    # Ids are ours (a counter in meta), so that an upsert that adds a chunk's vector keeps its id.
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("doc_id", DataType.VARCHAR, max_length=_PATH)
    for name in ("born", "ordinal", "start", "stop", "page"):
        schema.add_field(name, DataType.INT64)
    schema.add_field("has_vector", DataType.BOOL)  # False: published by its words, vector to come
    schema.add_field("text", DataType.VARCHAR, max_length=VARCHAR)
    schema.add_field("headings", DataType.VARCHAR, max_length=VARCHAR)
    schema.add_field("embed_key", DataType.VARCHAR, max_length=128)
    # Our analyser's stems, space-separated; the standard tokenizer only splits them again.
    schema.add_field("terms", DataType.VARCHAR, max_length=VARCHAR, enable_analyzer=True,
                     analyzer_params={"tokenizer": "standard"})
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_function(pm.Function(name="bm25", function_type=pm.FunctionType.BM25,
                                    input_field_names=["terms"], output_field_names=["sparse"]))
    params = client.prepare_index_params()
    vector_params = {"M": 16, "efConstruction": 200} if index == "HNSW" else {}
    params.add_index("vector", index_type=index, metric_type="IP", params=vector_params)
    params.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25", params=dict(BM25))
    params.add_index("doc_id", index_type="INVERTED")
    params.add_index("born", index_type="INVERTED")
    return schema, params


def _vectors(client: Any, pm: Any, DataType: Any, dim: int, index: str) -> tuple[Any, Any]:
    schema = client.create_schema(auto_id=False)
    schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=128)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    params = client.prepare_index_params()
    params.add_index("vector", index_type="FLAT", metric_type="IP")  # looked up by key, never searched
    return schema, params


def _feedback(client: Any, pm: Any, DataType: Any, dim: int, index: str) -> tuple[Any, Any]:
    schema = client.create_schema(auto_id=True)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("created_at", DataType.DOUBLE)
    schema.add_field("rating", DataType.INT64)
    for name in ("question", "answer", "hits"):
        schema.add_field(name, DataType.VARCHAR, max_length=VARCHAR)
    return schema, _placeholder(client, schema, DataType)


def meta_value(client: Any, collection: str, key: str) -> str | None:
    rows = client.query(collection, filter=f"key == {lit(key)}", output_fields=["value"])
    return str(rows[0]["value"]) if rows else None


def doc_key(doc_id: str, born: int, part: int) -> str:
    return f"{hashlib.sha256(doc_id.encode('utf-8')).hexdigest()[:32]}:{born}:{part}"


def doc_rows(doc: Document, root: str, size: int, mtime_ns: int, born: int) -> list[dict[str, Any]]:
    data = json.dumps({"title": doc.title, "text": doc.text, "lang": doc.lang, "source": doc.source,
                       "sections": [[s.start, s.end, list(s.headings), s.page] for s in doc.sections],
                       "metadata": doc.metadata}, ensure_ascii=False, default=str)
    pieces = [data[i:i + PIECE] for i in range(0, len(data), PIECE)] or [""]
    return [{"key": doc_key(doc.id, born, i), "doc_id": doc.id, "born": born, "part": i, "nparts": len(pieces),
             "tomb": False, "root": clip(root) if i == 0 else "", "hash": doc.hash if i == 0 else "",
             "size": size, "mtime_ns": mtime_ns, "title": clip(doc.title) if i == 0 else "",
             "lang": doc.lang if i == 0 else "", "data": piece, "_v": [0.0, 0.0]}
            for i, piece in enumerate(pieces)]


def chunk_rows(doc: Document, chunks: Sequence[Chunk], keys: Sequence[str], vectors: dict[str, list[float]],
               first: int, born: int, dim: int) -> list[dict[str, Any]]:
    """Chunk rows with ids from `first`; a chunk without a cached vector waits for one (`has_vector`)."""
    zero = [0.0] * dim
    return [{"id": first + n, "doc_id": doc.id, "born": born, "ordinal": c.ordinal, "start": c.start, "stop": c.end,
             "text": c.text, "headings": json.dumps(list(c.headings), ensure_ascii=False),
             "page": -1 if c.page is None else c.page, "embed_key": key,
             "terms": " ".join(lexical.analyse(lexical.chunk_text(doc.title, c))),  # our stems
             "has_vector": key in vectors, "vector": vectors.get(key, zero)}
            for n, (c, key) in enumerate(zip(chunks, keys))]


def feedback_row(rating: int, question: str, answer: str, hits: list[dict[str, Any]]) -> dict[str, Any]:
    encoded = json.dumps(hits, ensure_ascii=False)
    if len(encoded.encode("utf-8")) > VARCHAR:  # keep the hits' ids and scores, drop their texts
        encoded = json.dumps([{k: v for k, v in h.items() if k != "text"} for h in hits], ensure_ascii=False)
    return {"created_at": time.time(), "rating": int(rating), "question": clip(question), "answer": clip(answer),
            "hits": encoded if len(encoded.encode("utf-8")) <= VARCHAR else "[]", "_v": [0.0, 0.0]}


def tombstone(doc_id: str, born: int) -> dict[str, Any]:
    """The row that says: from generation `born` on, this document is gone (or being replaced)."""
    return {"key": doc_key(doc_id, born, 0), "doc_id": doc_id, "born": born, "part": 0, "nparts": 0, "tomb": True,
            "root": "", "hash": "", "size": 0, "mtime_ns": 0, "title": "", "lang": "", "data": "", "_v": [0.0, 0.0]}


def unpack_vectors(rows: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """The ids and vectors of chunk rows, as arrays."""
    ids = np.fromiter((int(r["id"]) for r in rows), dtype=np.int64, count=len(rows))
    return ids, np.asarray([r["vector"] for r in rows], dtype=np.float32)


def iterate(client: Any, collection: str, where: str, fields: list[str]) -> Iterator[dict[str, Any]]:
    iterator = client.query_iterator(collection, batch_size=1000, filter=where, output_fields=fields)
    try:
        while True:
            rows = iterator.next()
            if not rows:
                return
            yield from rows
    finally:
        iterator.close()


def by_key(client: Any, collection: str, keys: Sequence[str], field: str) -> dict[str, Any]:
    """`{key: row[field]}` for the rows of `collection` whose primary key `key` is in `keys`."""
    out: dict[str, Any] = {}
    for part in batches(list(dict.fromkeys(keys)), BATCH):
        for r in client.query(collection, filter=f"key in {lits(part)}", output_fields=["key", field]):
            out[r["key"]] = r[field]
    return out


def lit(value: str) -> str:
    """A string literal for a Milvus filter expression."""
    return json.dumps(value, ensure_ascii=False)


def lits(values: Sequence[str]) -> str:
    return "[" + ", ".join(lit(v) for v in values) + "]"


def clip(text: str, limit: int = VARCHAR) -> str:
    data = text.encode("utf-8")
    return text if len(data) <= limit else data[:limit].decode("utf-8", errors="ignore")


def batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
