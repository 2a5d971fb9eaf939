"""Hybrid retrieval: dense (FAISS) and lexical (BM25) candidates, fused, diversified.

Fusion is a weighted sum of the dense cosine, min-max normalised over the
candidates, and the BM25 score divided by the best BM25 score. The lexical
weight depends on the question: Norwegian stems match Norwegian text well, but
an English question over Norwegian documents matches little of use, so its
lexical weight is scaled by how many of its stems the index knows *and* by the
question's language. The weights were chosen on the dev questions and checked
on NorQuAD (README, "Retrieval"). Candidates found by only one side get their
missing dense score computed exactly from the stored vector.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import lexical
from .embedding import Embedder
from .language import detect_language, is_norwegian
from .store import Store, StoredChunk
from .types import Hit
from .vectors import VectorIndex


@dataclass(frozen=True)
class FusionWeights:
    """Lexical weight relative to dense (dense weight is 1), and the cross-language offset.

    `cross_language` is added to the cosine of a passage in another language
    than the question: multilingual embedders score same-language pairs higher
    than translations of the same content, so without it an English question
    prefers any English text to the Norwegian passage that answers it.
    """

    norwegian: float = 0.3
    english: float = 0.1
    cross_language: float = 0.0


def language_group(lang: str) -> str:
    return "no" if is_norwegian(lang) else lang


@dataclass(frozen=True)
class Candidate:
    chunk_id: int
    dense: float
    lexical: float


class Retriever:
    """Searches one consistent view of the index (a store connection and its vector index)."""

    def __init__(self, store: Store, index: VectorIndex, embedder: Embedder, *, query_prompt: str,
                 candidates: int = 50, max_per_doc: int = 3,
                 weights: FusionWeights = FusionWeights()) -> None:
        self.store = store
        self.index = index
        self.embedder = embedder
        self.query_prompt = query_prompt
        self.candidates = candidates
        self.max_per_doc = max_per_doc
        self.weights = weights

    def embed_query(self, question: str) -> np.ndarray:
        return self.embedder.embed([self.query_prompt + question])[0]

    def search(self, question: str, k: int = 5, *, mode: str = "hybrid",
               query_vector: np.ndarray | None = None) -> list[Hit]:
        """The `k` best passages; `mode` is "hybrid", "dense" or "lexical" (the last two are baselines)."""
        if k <= 0:
            return []
        n = max(self.candidates, k * 4)
        dense: dict[int, float] = {}
        lex: dict[int, float] = {}
        qvec = None
        if mode in ("hybrid", "dense"):
            qvec = self.embed_query(question) if query_vector is None else query_vector
            dense = self._dense(question, qvec, n)
        if mode in ("hybrid", "lexical"):
            try:
                lex = dict(lexical.search(self.store.db, question, n))
            except sqlite3.OperationalError:
                lex = {}
        if mode == "hybrid" and qvec is not None:
            missing = [i for i in lex if i not in dense]
            if missing:
                langs = self._chunk_groups(missing)
                mine = language_group(detect_language(question))
                for ids, vecs in self.store.chunk_vectors(missing):
                    for cid, score in zip(ids.tolist(), (vecs @ qvec).tolist()):
                        bonus = self.weights.cross_language if langs.get(cid, mine) != mine else 0.0
                        dense[cid] = score + bonus
        scored = self._fuse(question, dense, lex, mode)
        chunks = self.store.chunks_by_id([c for c, _ in scored[: n * 2]])
        return self._diversify(scored, chunks, dense, lex, k)

    def _groups(self) -> dict[str, np.ndarray]:
        """Chunk ids by language group, computed once per vector-index generation."""
        if self.index.groups is None:
            rows = self.store.db.execute(
                "SELECT c.id, d.lang FROM chunks c JOIN documents d ON d.id = c.doc_id").fetchall()
            groups: dict[str, list[int]] = {}
            for cid, lang in rows:
                groups.setdefault(language_group(lang), []).append(int(cid))
            self.index.groups = {g: np.asarray(ids, dtype=np.int64) for g, ids in groups.items()}
        return self.index.groups

    def _chunk_groups(self, ids: Sequence[int]) -> dict[int, str]:
        marks = ",".join("?" * len(ids))
        rows = self.store.db.execute(
            f"SELECT c.id, d.lang FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE c.id IN ({marks})",
            list(ids)).fetchall()
        return {int(cid): language_group(lang) for cid, lang in rows}

    def _dense(self, question: str, qvec: np.ndarray, n: int) -> dict[int, float]:
        """Dense candidates from every language group, cross-language cosines offset upwards.

        Each other-language group is searched on its own, so its best passages are
        candidates even when many same-language passages score higher.
        """
        offset = self.weights.cross_language
        groups = self._groups() if offset else {}
        if len(groups) <= 1:
            return dict(self.index.search(qvec, n))
        mine = language_group(detect_language(question))
        dense: dict[int, float] = {}
        for group, ids in groups.items():
            bonus = 0.0 if group == mine else offset
            for cid, score in self.index.search(qvec, n, among=ids):
                dense[cid] = score + bonus
        return dense

    def _fuse(self, question: str, dense: dict[int, float], lex: dict[int, float],
              mode: str) -> list[tuple[int, float]]:
        if mode == "dense":
            return sorted(dense.items(), key=lambda kv: -kv[1])
        if mode == "lexical":
            return sorted(lex.items(), key=lambda kv: -kv[1])
        weight = self.lexical_weight(question)
        d_values = list(dense.values())
        d_lo, d_hi = (min(d_values), max(d_values)) if d_values else (0.0, 1.0)
        d_span = (d_hi - d_lo) or 1.0
        l_hi = max(lex.values()) if lex else 1.0
        fused: dict[int, float] = {}
        for cid in set(dense) | set(lex):
            d = (dense.get(cid, d_lo) - d_lo) / d_span
            lx = lex.get(cid, 0.0) / l_hi if l_hi > 0 else 0.0
            fused[cid] = d + weight * lx
        return sorted(fused.items(), key=lambda kv: -kv[1])

    def lexical_weight(self, question: str) -> float:
        lang = detect_language(question)
        if is_norwegian(lang):
            return self.weights.norwegian
        return self.weights.english

    def _diversify(self, scored: Sequence[tuple[int, float]], chunks: dict[int, StoredChunk],
                   dense: dict[int, float], lex: dict[int, float], k: int) -> list[Hit]:
        """Best first, at most `max_per_doc` chunks per document; the rest fill up if too few."""
        hits: list[Hit] = []
        per_doc: dict[str, list[int]] = {}
        deferred: list[tuple[int, float]] = []
        for cid, score in scored:
            stored = chunks.get(cid)
            if stored is None:  # removed since the vector index was loaded
                continue
            taken = per_doc.setdefault(stored.chunk.doc_id, [])
            if len(taken) >= self.max_per_doc:
                deferred.append((cid, score))
                continue
            taken.append(stored.chunk.ordinal)
            hits.append(_hit(stored, score, len(hits) + 1, dense.get(cid), lex.get(cid)))
            if len(hits) == k:
                return hits
        for cid, score in deferred:  # fill up when diversity left too few
            if len(hits) == k:
                break
            hits.append(_hit(chunks[cid], score, len(hits) + 1, dense.get(cid), lex.get(cid)))
        return hits


def _hit(stored: StoredChunk, score: float, rank: int, dense: float | None, lex: float | None) -> Hit:
    c = stored.chunk
    return Hit(chunk_id=stored.id, doc_id=c.doc_id, title=stored.title, text=c.text, start=c.start,
               end=c.end, headings=c.headings, page=c.page, score=float(score), rank=rank,
               dense_score=dense, lexical_score=lex, lang=stored.lang)
