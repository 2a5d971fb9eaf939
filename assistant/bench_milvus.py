"""`assistant bench` section `milvus`: the Milvus backend's search beside FAISS, by size.

For each size that Milvus Lite holds here (`LITE_SIZES`, capped by the bench's
sizes), one set of vectors (corpus-like when the corpus index was built in this
run, else random unit vectors) is searched three ways with the same question
vectors: FAISS exact (`IndexFlatIP`, the default backend below 50,000 chunks),
and the Milvus chunks collection with a FLAT and with an HNSW index, through
`MilvusStore.dense_search` as queries use it. Recall@10 is against FAISS exact.
BM25 is timed on the same rows, whose terms are drawn from the corpus's
vocabulary. Milvus Lite runs in this process; a cluster's latency adds a
network round trip and gains its own parallelism, so these figures say what
the code costs, not what a cluster would do.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

if TYPE_CHECKING:
    from .bench import Bench

log = logging.getLogger(__name__)

LITE_SIZES = (10_000, 50_000)  # 100,000 rows took minutes to insert into the pure-Python Lite engine here
QUICK_SIZES = (1_000,)
_BATCH = 2_000


def sizes_for(bench: "Bench") -> tuple[int, ...]:
    if bench.options.quick:
        return QUICK_SIZES
    return tuple(s for s in LITE_SIZES if s <= max(bench.options.sizes)) or (min(bench.options.sizes),)


def milvus(bench: "Bench", result: dict[str, Any]) -> dict[str, Any]:
    """The section's JSON: per size, FAISS and Milvus (FLAT, HNSW) latency and recall@10."""
    from .bench import latency_summary
    from .bench_synthetic import _corpus_like, random_unit, recall_at, vocabulary

    try:
        from .milvus_schema import pymilvus

        pymilvus()
        import milvus_lite  # noqa: F401
    except Exception as exc:  # MissingExtraError, or milvus-lite absent
        return {"skipped": str(exc) or "pip install 'kommune-assistent[milvus]'"}
    import faiss

    dim = int(bench.embedder.dimension)
    rng = np.random.default_rng(11)
    questions = [q.question for q in bench.questions] or ["Hvordan søker jeg om sosialhjelp?"]
    queries = np.ascontiguousarray(bench.embedder.embed([bench.settings.query_prompt + q for q in questions]),
                                   dtype=np.float32)
    centres = _corpus_centres(bench)
    vocab = vocabulary(bench.corpus)
    stems = vocab.stems[vocab.stems != ""]
    probs = vocab.probs[vocab.stems != ""]
    probs = probs / probs.sum()
    rows_out = []
    for n in sizes_for(bench):
        data = _corpus_like(rng, centres, n) if centres is not None else random_unit(rng, n, dim)
        exact = faiss.IndexFlatIP(dim)
        exact.add(data)
        faiss_times, truth = [], []
        for q in queries:
            tick = time.perf_counter()
            _, ids = exact.search(q.reshape(1, -1), 10)
            faiss_times.append(time.perf_counter() - tick)
            truth.append(ids[0])
        row: dict[str, Any] = {"size": n, "vectors": "corpus-like" if centres is not None else "random",
                               "faiss_flat": {**latency_summary(faiss_times), "recall@10": 1.0}}
        terms = [" ".join(rng.choice(stems, size=60, p=probs)) for _ in range(n)]
        for index in ("FLAT", "HNSW"):
            row[f"milvus_{index.lower()}"] = _milvus_run(data, terms, queries, questions, np.vstack(truth), index,
                                                        recall_at, latency_summary)
        bench.say(f"  milvus {n}: {row}")
        rows_out.append(row)
    return {"sizes": rows_out, "queries": len(queries), "engine": "milvus-lite (in-process)"}


def _milvus_run(data: np.ndarray, terms: list[str], queries: np.ndarray, questions: list[str], truth: np.ndarray,
                index: str, recall_at: Any, latency_summary: Any) -> dict[str, Any]:
    from .backend import StoreAddress
    from .milvus_schema import Names, connect, create_collections
    from .milvus_store import MilvusStore

    # Milvus Lite's background threads may still write for a moment after `close()`;
    # the folder is removed with retries (`_remove_tree`), not by TemporaryDirectory.
    with _scratch_folder() as tmp:
        address = StoreAddress("milvus-lite", str(Path(tmp) / "bench.db"), "bench", index)
        client = connect(address)
        create_collections(client, Names("bench"), data.shape[1], index)
        tick = time.perf_counter()
        ids: list[int] = []
        for s in range(0, len(data), _BATCH):
            rows = [{"id": i + 1, "doc_id": f"d{i // 8}", "born": 1, "ordinal": i % 8, "start": 0, "stop": 0,
                     "page": -1, "text": "", "headings": "[]", "embed_key": "", "terms": terms[i], "has_vector": True,
                     "vector": data[i].tolist()} for i in range(s, min(s + _BATCH, len(data)))]
            client.insert(address.prefix + "_chunks", rows)
            ids.extend(r["id"] for r in rows)
        client.flush(address.prefix + "_chunks")  # as `MilvusStore` does at each commit
        insert_s = time.perf_counter() - tick
        position = {cid: i for i, cid in enumerate(ids)}
        store = MilvusStore(client, address, data.shape[1], pinned=1)
        store.dense_search(queries[0], 10)  # warm-up
        dense_times, found = [], []
        for q in queries:
            tick = time.perf_counter()
            hits = store.dense_search(q, 10)
            dense_times.append(time.perf_counter() - tick)
            found.append([position[c] for c, _ in hits] + [-1] * (10 - len(hits)))
        lexical_times = []
        for question in questions:
            tick = time.perf_counter()
            store.lexical_search(question, 50)
            lexical_times.append(time.perf_counter() - tick)
        disk = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file()) / 1e6
        client.close()
    return {**latency_summary(dense_times), "recall@10": round(recall_at(truth, np.array(found), 10), 4),
            "lexical": latency_summary(lexical_times), "insert_rows_per_s": round(len(data) / insert_s, 1),
            "disk_mb": round(disk, 1)}


@contextlib.contextmanager
def _scratch_folder() -> Iterator[str]:
    tmp = tempfile.mkdtemp(prefix="bench-milvus-")
    try:
        yield tmp
    finally:
        _remove_tree(Path(tmp))


def _remove_tree(path: Path, attempts: int = 10) -> None:
    for _ in range(attempts):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return
        time.sleep(0.2)
    log.warning("could not remove %s (Milvus Lite still writing into it)", path)


def _corpus_centres(bench: "Bench") -> np.ndarray | None:
    from .bench_corpus import INDEX_NAME
    from .store import DB_NAME, Store, connect

    path = bench.workdir / INDEX_NAME / DB_NAME
    if not path.exists():
        return None
    store = Store(connect(path, readonly=True))
    try:
        return np.vstack([v for _, v in store.chunk_vectors()])
    finally:
        store.close()


def table_lines(section: dict[str, Any]) -> list[str]:
    if "skipped" in section:
        return [f"milvus: skipped ({section['skipped']})"]
    lines = [f"{'size':>10} {'vectors':>12} {'faiss p50':>10} {'milvus flat p50/p95':>20} {'recall':>7} "
             f"{'hnsw p50/p95':>14} {'recall':>7} {'bm25 p50':>9} {'insert/s':>9}"]
    for row in section["sizes"]:
        f, h = row["milvus_flat"], row["milvus_hnsw"]
        lines.append(f"{row['size']:>10} {row['vectors']:>12} {row['faiss_flat']['p50_ms']:>10.2f} "
                     f"{f['p50_ms']:>9.1f} / {f['p95_ms']:<8.1f} {f['recall@10']:>7.3f} "
                     f"{h['p50_ms']:>6.1f} / {h['p95_ms']:<5.1f} {h['recall@10']:>7.3f} "
                     f"{f['lexical']['p50_ms']:>9.1f} {f['insert_rows_per_s']:>9.0f}")
    lines.append(f"(ms; {section['engine']}; recall@10 against FAISS exact)")
    return lines
