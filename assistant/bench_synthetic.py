"""Synthetic stores at scale, and the bench sections that use them: latency/memory and recall.

A synthetic store has the real schema, stamp and FAISS choice; only its content
is made up: chunk text is words drawn from the corpus vocabulary with their
corpus frequencies, and each vector is a random normalised vector of the
model's dimension. It is written in bulk in one transaction (the lexical rows
are the same stems `lexical.add` would store, computed once per vocabulary
word), then the vector index is built with `vectors.build` and the lexical
segment with `lexical_segment.maintain`, as a rebuild would.
"""

from __future__ import annotations

import json
import logging
import math
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .bench import latency_summary, median

if TYPE_CHECKING:
    from .bench import Bench

log = logging.getLogger(__name__)

WORDS_PER_CHUNK = 130  # about 900 characters, the default chunk size
CHUNKS_PER_DOC = 50
LATENCY_QUESTIONS = 20  # times `repeat` samples per size; `ask` embeds every passage sentence, so it is slow
_WORD = re.compile(r"[0-9A-Za-zÀ-ÖØ-öø-ÿ]+(?:[-'][0-9A-Za-zÀ-ÖØ-öø-ÿ]+)*")


@dataclass(frozen=True)
class Vocabulary:
    words: np.ndarray  # object array of lower-cased words
    stems: np.ndarray  # object array: the word's stem, or "" for a stop word
    probs: np.ndarray  # corpus frequencies, summing to 1


def vocabulary(corpus: Path) -> Vocabulary:
    """The corpus's words with their frequencies and their `lexical.analyse` stems."""
    from . import lexical

    counts: Counter[str] = Counter()
    for path in corpus.rglob("*"):
        if path.is_file():
            try:
                counts.update(_WORD.findall(path.read_text(encoding="utf-8", errors="ignore").lower()))
            except OSError:
                continue
    words = sorted(counts)
    stems = [(lexical.analyse(w) or [""])[0] for w in words]
    freq = np.array([counts[w] for w in words], dtype=np.float64)
    return Vocabulary(np.array(words, dtype=object), np.array(stems, dtype=object), freq / freq.sum())


def build_store(index_dir: Path, n: int, stamp: dict[str, Any], dim: int, vocab: Vocabulary,
                seed: int = 0, batch: int = 20_000) -> dict[str, float]:
    """Write a synthetic store of `n` chunks, its vector index and (from `lexical_segment.THRESHOLD`
    chunks) its lexical segment into `index_dir`, as an index run would. Returns timings."""
    from . import lexical_segment, vectors
    from .store import Store

    rng = np.random.default_rng(seed)
    store = Store.open(index_dir, stamp, create=True)
    tick = time.perf_counter()
    try:
        with store.transaction():
            for start in range(0, n, batch):
                _write_batch(store, rng, vocab, start, min(batch, n - start), dim)
            store.set_meta("generation", "1")
            store.set_meta("updated_at", str(time.time()))
        written = time.perf_counter() - tick
        tick = time.perf_counter()
        vi = vectors.build(store, dim)
        vi.save(index_dir, 1)
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        vector_seconds = time.perf_counter() - tick
        tick = time.perf_counter()
        lexical_segment.maintain(store.db, index_dir)
    finally:
        store.close()
    return {"write_seconds": written, "vector_index_seconds": vector_seconds,
            "lexical_segment_seconds": time.perf_counter() - tick}


def _write_batch(store: Any, rng: np.random.Generator, vocab: Vocabulary, start: int, m: int, dim: int) -> None:
    ids = rng.choice(len(vocab.words), size=(m, WORDS_PER_CHUNK), p=vocab.probs)
    words = vocab.words[ids]
    stems = vocab.stems[ids]
    vecs = random_unit(rng, m, dim)
    texts = [" ".join(row) for row in words]
    terms = [" ".join(s for s in row if s) for row in stems]
    chunk_rows, doc_rows, vec_rows, lex_rows = [], [], [], []
    for first in range(0, m, CHUNKS_PER_DOC):
        group = range(first, min(first + CHUNKS_PER_DOC, m))
        doc_id = f"synthetic/{(start + first) // CHUNKS_PER_DOC:07d}.txt"
        offset = 0
        parts = []
        for ordinal, i in enumerate(group):
            cid = start + i + 1
            text = texts[i]
            chunk_rows.append((cid, doc_id, ordinal, offset, offset + len(text), text, "[]", None, f"syn-{cid}"))
            vec_rows.append((f"syn-{cid}", vecs[i].tobytes()))
            lex_rows.append((cid, terms[i]))
            parts.append(text)
            offset += len(text) + 2
        body = "\n\n".join(parts)
        doc_rows.append((doc_id, "synthetic", doc_id, f"Syntetisk dokument {doc_id}", "nb", f"h{start + first}",
                         len(body), 0, body, "[]", "{}", time.time()))
    db = store.db
    db.executemany("INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", doc_rows)
    db.executemany('INSERT INTO chunks(id, doc_id, ordinal, start, "end", text, headings, page, embed_key) '
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", chunk_rows)
    db.executemany("INSERT INTO vectors(key, vector) VALUES (?, ?)", vec_rows)
    db.executemany("INSERT INTO lexical(rowid, terms) VALUES (?, ?)", lex_rows)


def random_unit(rng: np.random.Generator, m: int, dim: int) -> np.ndarray:
    vecs = rng.standard_normal((m, dim), dtype=np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return vecs


def disk_mb(index_dir: Path) -> float:
    return sum(p.stat().st_size for p in index_dir.rglob("*") if p.is_file()) / 1e6


def _stamp(bench: "Bench") -> dict[str, Any]:
    from .core import Assistant

    return Assistant(bench.settings, bench.embedder).stamp()


def _serve(bench: "Bench", index_dir: Path, questions: list[str]) -> dict[str, Any]:
    qfile = bench.workdir / "questions.json"
    qfile.write_text(json.dumps(questions, ensure_ascii=False), encoding="utf-8")
    cmd = [sys.executable, "-m", "assistant.bench_child", "serve", "--index", str(index_dir),
           "--questions", str(qfile), "--repeat", str(bench.options.repeat), *bench.child_args()]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=bench.child_env(), timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"serving child failed: {proc.stderr.strip()[-2000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _row(label: str, size: int, served: dict[str, Any], index_dir: Path) -> dict[str, Any]:
    search = served["search"]  # as served: the question embedded beside the lexical query
    ask = [e + r for e, r in zip(served["embed"], served["ask"])]
    embed = median(served["embed"])
    return {"label": label, "size": size, "chunks": served["chunks"], "vector_index": served["vector_index"],
            "search": latency_summary(search), "ask": latency_summary(ask),
            "retrieve_only": latency_summary(served["retrieve"]), "embed": latency_summary(served["embed"]),
            "dense": latency_summary(served["dense"]), "dense_1thread": latency_summary(served["dense_1thread"]),
            "omp_threads": served["omp_threads"], "lexical": latency_summary(served["lexical"]),
            "embedding_share": round(embed / median(search), 3) if search else None,
            "peak_rss_mb": round(served["peak_rss_mb"], 1), "disk_mb": round(disk_mb(index_dir), 2),
            "index_load_seconds": round(served["index_load_seconds"], 3)}


def latency(bench: "Bench", result: dict[str, Any]) -> dict[str, Any]:
    """search/ask p50/p95, peak RSS and disk size: the real corpus, then each synthetic size."""
    from .bench_corpus import INDEX_NAME, _build

    questions = [q.question for q in bench.questions][:LATENCY_QUESTIONS] or ["Hvordan søker man om sosialhjelp?"]
    rows = []
    corpus_index = bench.workdir / INDEX_NAME
    if not (corpus_index / "store.sqlite").exists():
        _build(bench, corpus_index)
    served = _serve(bench, corpus_index, questions)
    rows.append(_row("corpus", served["chunks"], served, corpus_index))
    bench.say(f"  corpus: search p95 {rows[-1]['search']['p95_ms']:.1f} ms")
    vocab = vocabulary(bench.corpus)
    stamp = _stamp(bench)
    dim = int(bench.embedder.dimension)
    builds = {}
    for size in bench.options.sizes:
        index_dir = bench.workdir / f"index-synthetic-{size}"
        tick = time.perf_counter()
        builds[size] = {k: round(v, 2) for k, v in build_store(index_dir, size, stamp, dim, vocab).items()}
        bench.say(f"  built {size} synthetic chunks in {time.perf_counter() - tick:.0f} s")
        served = _serve(bench, index_dir, questions)
        rows.append({**_row(f"{size:,}".replace(",", "_"), size, served, index_dir), "build": builds[size]})
        bench.say(f"  {size}: search p95 {rows[-1]['search']['p95_ms']:.1f} ms, "
                  f"lexical p95 {rows[-1]['lexical']['p95_ms']:.1f} ms, RSS {rows[-1]['peak_rss_mb']:.0f} MB")
        _remove(index_dir)
    return {"sizes": rows, "questions": len(questions), "vocabulary": len(vocab.words)}


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


# -- the approximate index -------------------------------------------------------------
def _time_search(index: Any, queries: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """Ids found for each query (one query at a time, as served) and the median ms per query."""
    found, times = [], []
    for q in queries:
        tick = time.perf_counter()
        _, ids = index.search(q.reshape(1, -1), k)
        times.append(time.perf_counter() - tick)
        found.append(ids[0])
    return np.vstack(found), median(times) * 1000.0


def recall_at(exact: np.ndarray, approx: np.ndarray, k: int = 10) -> float:
    hits = sum(len(set(e[:k].tolist()) & set(a[:k].tolist())) for e, a in zip(exact, approx))
    return hits / (k * len(exact))


def _corpus_like(rng: np.random.Generator, centres: np.ndarray, n: int, spread: float = 0.5) -> np.ndarray:
    """Vectors scattered around real chunk vectors (cosine to their centre about 0.9), in batches."""
    out = np.empty((n, centres.shape[1]), dtype=np.float32)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        pick = centres[rng.integers(0, len(centres), size=m)]
        noise = rng.standard_normal((m, centres.shape[1]), dtype=np.float32) / math.sqrt(centres.shape[1])
        block = pick + spread * noise
        out[s:s + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def _recall_for(data: np.ndarray, queries: np.ndarray, k: int = 10) -> dict[str, Any]:
    from . import vectors

    import faiss

    n, dim = data.shape
    kind = vectors.index_kind(n) if n > vectors.APPROX_THRESHOLD else f"ivf{1 << (int(4 * math.sqrt(n)).bit_length() - 1)}"
    exact = faiss.IndexFlatIP(dim)
    exact.add(data)
    truth, exact_ms = _time_search(exact, queries, k)
    del exact
    rng = np.random.default_rng(1)
    sample = data[rng.choice(n, size=min(n, 100_000), replace=False)]
    tick = time.perf_counter()
    index = vectors.new_index(dim, kind, sample)
    train_s = time.perf_counter() - tick
    tick = time.perf_counter()
    index.add_with_ids(data, np.arange(n, dtype=np.int64))  # type: ignore[attr-defined]
    add_s = time.perf_counter() - tick
    default = int(index.nprobe)  # type: ignore[attr-defined]
    nlist = int(kind[3:])
    sweep = []
    for nprobe in sorted({max(1, nlist // 64), max(1, nlist // 32), default, nlist // 8, nlist // 4}):
        index.nprobe = nprobe  # type: ignore[attr-defined]
        found, ms = _time_search(index, queries, k)
        sweep.append({"nprobe": nprobe, "recall@10": round(recall_at(truth, found, k), 4), "ms": round(ms, 3)})
    at_default = next(s for s in sweep if s["nprobe"] == default)
    return {"kind": kind, "nprobe": default, "recall@10": at_default["recall@10"], "approx_ms": at_default["ms"],
            "exact_ms": round(exact_ms, 3), "train_seconds": round(train_s, 2), "add_seconds": round(add_s, 2),
            "sweep": sweep}


def approximate(bench: "Bench", result: dict[str, Any]) -> dict[str, Any]:
    """Recall@10 of the IVF index against exact search, on random and on corpus-like vectors."""
    from . import vectors
    from .bench_corpus import INDEX_NAME
    from .store import DB_NAME, Store, connect

    size = bench.options.recall_size or max(bench.options.sizes)
    dim = int(bench.embedder.dimension)
    rng = np.random.default_rng(7)
    texts = [bench.settings.query_prompt + q.question for q in bench.questions] or ["query: sosialhjelp"]
    queries = np.ascontiguousarray(bench.embedder.embed(texts), dtype=np.float32)
    out: dict[str, Any] = {"size": size, "queries": len(queries), "approx_threshold": vectors.APPROX_THRESHOLD,
                           "recall": {}}
    data = random_unit(rng, size, dim)
    out["exact_by_size"] = []
    import faiss

    for n in sorted({s for s in (10_000, 100_000, 200_000, 500_000, size) if s <= size}):
        flat = faiss.IndexFlatIP(dim)
        flat.add(data[:n])
        _, ms = _time_search(flat, queries, 10)
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        _, ms_1 = _time_search(flat, queries, 10)
        faiss.omp_set_num_threads(threads)
        out["exact_by_size"].append({"size": n, "p50_ms": round(ms, 3), "p50_ms_1thread": round(ms_1, 3)})
        del flat
    bench.say(f"  exact search by size: {out['exact_by_size']}")
    out["recall"]["random"] = _recall_for(data, queries)
    bench.say(f"  random: {out['recall']['random']}")
    del data
    store_path = bench.workdir / INDEX_NAME / DB_NAME
    if store_path.exists():
        store = Store(connect(store_path, readonly=True))
        try:
            centres = np.vstack([v for _, v in store.chunk_vectors()])
        finally:
            store.close()
        out["recall"]["corpus-like"] = _recall_for(_corpus_like(rng, centres, size), queries)
        bench.say(f"  corpus-like: {out['recall']['corpus-like']}")
    return out
