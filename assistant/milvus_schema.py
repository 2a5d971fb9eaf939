"""The Milvus collections of one index, created on first use (see `milvus_store`).

Every collection has a vector field, because Milvus requires one; those that
need none carry a two-dimensional placeholder `_v`. Scalar fields used in
filters (`doc_id`, `born`, `key`) get inverted indexes, which a cluster needs
to filter fast at tens of millions of rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .milvus_store import _BM25, _VARCHAR, pymilvus

if TYPE_CHECKING:
    from .milvus_store import Names

_PATH = 8192  # bytes for a document id or a corpus root


def create(client: Any, names: "Names", dim: int, index: str) -> None:
    """Create whichever of the index's collections do not exist yet (the meta collection last)."""
    pm = pymilvus()
    DataType = pm.DataType
    makers = {names.docs: _docs, names.chunks: _chunks, names.vectors: _vectors,
              names.feedback: _feedback, names.meta: _meta}
    for name in names.all():
        if client.has_collection(name):
            continue
        schema, params = makers[name](client, pm, DataType, dim, index)
        client.create_collection(name, schema=schema, consistency_level="Strong")
        # sync=False: pymilvus would otherwise poll each index in 0.5 s sleeps; these are empty.
        client.create_index(name, params, sync=False)
        client.load_collection(name)


def _placeholder(client: Any, schema: Any, DataType: Any) -> Any:
    schema.add_field("_v", DataType.FLOAT_VECTOR, dim=2)
    params = client.prepare_index_params()
    params.add_index("_v", index_type="FLAT", metric_type="L2")
    return params


def _meta(client: Any, pm: Any, DataType: Any, dim: int, index: str) -> tuple[Any, Any]:
    schema = client.create_schema(auto_id=False)
    schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=256)
    schema.add_field("value", DataType.VARCHAR, max_length=_VARCHAR)
    return schema, _placeholder(client, schema, DataType)


def _docs(client: Any, pm: Any, DataType: Any, dim: int, index: str) -> tuple[Any, Any]:
    schema = client.create_schema(auto_id=False)
    schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=128)
    schema.add_field("doc_id", DataType.VARCHAR, max_length=_PATH)
    for name in ("born", "part", "nparts", "size", "mtime_ns"):
        schema.add_field(name, DataType.INT64)
    schema.add_field("tomb", DataType.BOOL)
    schema.add_field("root", DataType.VARCHAR, max_length=_VARCHAR)
    schema.add_field("hash", DataType.VARCHAR, max_length=128)
    schema.add_field("title", DataType.VARCHAR, max_length=_VARCHAR)
    schema.add_field("lang", DataType.VARCHAR, max_length=16)
    schema.add_field("data", DataType.VARCHAR, max_length=_VARCHAR)
    params = _placeholder(client, schema, DataType)
    params.add_index("doc_id", index_type="INVERTED")
    params.add_index("born", index_type="INVERTED")
    return schema, params


def _chunks(client: Any, pm: Any, DataType: Any, dim: int, index: str) -> tuple[Any, Any]:
    schema = client.create_schema(auto_id=True)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("doc_id", DataType.VARCHAR, max_length=_PATH)
    for name in ("born", "ordinal", "start", "stop", "page"):
        schema.add_field(name, DataType.INT64)
    schema.add_field("text", DataType.VARCHAR, max_length=_VARCHAR)
    schema.add_field("headings", DataType.VARCHAR, max_length=_VARCHAR)
    schema.add_field("embed_key", DataType.VARCHAR, max_length=128)
    # Our analyser's stems, space-separated; the standard tokenizer only splits them again.
    schema.add_field("terms", DataType.VARCHAR, max_length=_VARCHAR, enable_analyzer=True,
                     analyzer_params={"tokenizer": "standard"})
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_function(pm.Function(name="bm25", function_type=pm.FunctionType.BM25,
                                    input_field_names=["terms"], output_field_names=["sparse"]))
    params = client.prepare_index_params()
    vector_params = {"M": 16, "efConstruction": 200} if index == "HNSW" else {}
    params.add_index("vector", index_type=index, metric_type="IP", params=vector_params)
    params.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25", params=dict(_BM25))
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
        schema.add_field(name, DataType.VARCHAR, max_length=_VARCHAR)
    return schema, _placeholder(client, schema, DataType)
