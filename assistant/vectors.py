"""The dense half of retrieval: a FAISS index derived from the store.

The file `dense-<generation>.faiss` mirrors the store at that generation. It is
written to a temporary name and renamed, so it is either whole or absent; when
it is absent or stale it is rebuilt from the vectors in the store. Below
`APPROX_THRESHOLD` vectors the index is exact (`IDMap2,Flat`, inner product);
above it, `IVF<k>,SQ8` trained on a sample, which still supports removal by id.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .store import Store

log = logging.getLogger(__name__)

# Measured by `assistant bench` on 2 shared cores (README, "Performance"): exact search costs
# 32 ms at 50k, 48 ms at 100k, 91 ms at 200k per query; IVF with `nprobe` below costs 1-6 ms
# from 50k to 1M at recall@10 >= 0.955 against exact search (corpus-like vectors).
APPROX_THRESHOLD = 50_000
MIN_NPROBE = 128  # nlist/16 alone gave recall@10 0.91 at 50k-100k; 128 lists gave >= 0.955
_PREFIX = "dense-"


def _faiss():  # type: ignore[no-untyped-def]
    import faiss

    return faiss


def index_kind(n: int) -> str:
    if n <= APPROX_THRESHOLD:
        return "flat"
    nlist = int(4 * math.sqrt(n))
    return f"ivf{1 << (nlist.bit_length() - 1)}"


@dataclass
class VectorIndex:
    index: object  # faiss.Index
    generation: int
    kind: str

    @property
    def size(self) -> int:
        return int(self.index.ntotal)  # type: ignore[attr-defined]

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The `k` nearest vectors by inner product, best first."""
        if self.size == 0 or k <= 0:
            return []
        # One query is faster on one thread: OpenMP's start-up costs more than it saves here
        # (measured: 18 ms vs 48 ms exact at 100k). This sets the calling thread's OpenMP only.
        _faiss().omp_set_num_threads(1)
        scores, ids = self.index.search(query.reshape(1, -1).astype(np.float32), min(k, self.size))  # type: ignore[attr-defined]
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    def update(self, removed: list[int], added_ids: np.ndarray, added: np.ndarray) -> None:
        if removed:
            self.index.remove_ids(np.asarray(removed, dtype=np.int64))  # type: ignore[attr-defined]
        if len(added_ids):
            self.index.add_with_ids(added.astype(np.float32), added_ids.astype(np.int64))  # type: ignore[attr-defined]

    def save(self, index_dir: Path, generation: int) -> Path:
        faiss = _faiss()
        path = index_dir / f"{_PREFIX}{generation}.faiss"
        tmp = index_dir / f".{path.name}.tmp-{os.getpid()}"
        try:
            faiss.write_index(self.index, str(tmp))
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except RuntimeError as exc:  # faiss reports a failed write (such as a full disk) this way
            tmp.unlink(missing_ok=True)
            code = errno.ENOSPC if "No space left" in str(exc) else errno.EIO
            raise OSError(code, f"could not write {path.name}: {os.strerror(code)}") from None
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        self.generation = generation
        return path


def prune(index_dir: Path, generation: int) -> None:
    """Delete the files of generations older than `generation` (after it was committed)."""
    for old in index_dir.glob(f"{_PREFIX}*.faiss"):
        stem = old.stem[len(_PREFIX):]
        if stem.isdigit() and int(stem) < generation:
            old.unlink(missing_ok=True)
    for tmp in index_dir.glob(f".{_PREFIX}*.tmp-*"):  # left by a crash; never one being written
        try:
            if time.time() - tmp.stat().st_mtime > 3600:
                tmp.unlink(missing_ok=True)
        except OSError:
            pass


def nprobe_for(nlist: int) -> int:
    """Inverted lists searched per query: nlist/16, but at least `MIN_NPROBE` (and at most nlist)."""
    return min(nlist, max(MIN_NPROBE, nlist // 16))


def new_index(dim: int, kind: str, sample: np.ndarray | None = None) -> object:
    faiss = _faiss()
    if kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    nlist = int(kind[3:])
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit,
                                          faiss.METRIC_INNER_PRODUCT)
    if sample is None or len(sample) < nlist:
        raise ValueError("an IVF index needs a training sample of at least nlist vectors")
    index.train(sample.astype(np.float32))
    index.nprobe = nprobe_for(nlist)
    return index


def build(store: Store, dim: int) -> VectorIndex:
    """A fresh index from every vector in the store."""
    _, total = store.counts()
    kind = index_kind(total)
    sample = None
    if kind != "flat":
        parts = []
        for _ids, vecs in store.chunk_vectors(batch=50_000):
            parts.append(vecs)
            if sum(len(p) for p in parts) >= 100_000:
                break
        sample = np.vstack(parts)
    index = new_index(dim, kind, sample)
    vi = VectorIndex(index, store.generation, kind)
    for ids, vecs in store.chunk_vectors():
        vi.update([], ids, vecs)
    log.info("built %s vector index with %d vectors", kind, vi.size)
    return vi


def load(index_dir: Path, store: Store, dim: int) -> VectorIndex:
    """The index for the store's current generation: read from disk, or rebuilt and saved."""
    faiss = _faiss()
    generation = store.generation
    path = index_dir / f"{_PREFIX}{generation}.faiss"
    total = store.dense_count()
    if path.exists():
        try:
            index = faiss.read_index(str(path))
            if int(index.ntotal) == total and int(index.d) == dim:
                return VectorIndex(index, generation, index_kind(total))
            log.warning("vector index %s does not match the store; rebuilding it", path.name)
        except RuntimeError as exc:
            log.warning("vector index %s is unreadable (%s); rebuilding it", path.name, exc)
    vi = build(store, dim)
    try:
        vi.save(index_dir, generation)
        prune(index_dir, generation)
    except OSError as exc:  # a read-only or full disk: serve from memory
        log.warning("could not save the rebuilt vector index: %s", exc)
    return vi
