"""The Milvus collections beside the chunks: the embedding cache (`_vectors`) and `_feedback`.

`SideTables` is the part of `milvus_store.MilvusStore` that owns them; it needs
the store's `client` and `names`.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

import numpy as np

from .milvus_schema import BATCH, Names, batches, by_key, feedback_row, iterate, lits


class SideTables:
    client: Any
    names: Names

    # -- embedding cache ------------------------------------------------------
    def _cached_vectors(self, keys: Sequence[str]) -> dict[str, list[float]]:
        return {k: [float(x) for x in v] for k, v in by_key(self.client, self.names.vectors, keys, "vector").items()}

    def missing_vectors(self, keys: Iterable[str]) -> list[str]:
        wanted = list(dict.fromkeys(keys))
        present = by_key(self.client, self.names.vectors, wanted, "key")
        return [k for k in wanted if k not in present]

    def put_vectors(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        rows = [{"key": k, "vector": np.asarray(v, dtype=np.float32).tolist()} for k, v in zip(keys, vectors)]
        for part in batches(rows, BATCH):
            self.client.upsert(self.names.vectors, part)

    def prune_vectors(self, *, slack: float = 0.25, floor: int = 256) -> int:
        """Drop cached vectors no chunk uses, once there are many (as `Store.prune_vectors`)."""
        used = {r["embed_key"] for r in iterate(self.client, self.names.chunks, "id >= 0", ["embed_key"])}
        cached = {r["key"] for r in iterate(self.client, self.names.vectors, 'key != ""', ["key"])}
        orphans = sorted(cached - used)
        if len(orphans) <= max(floor, slack * len(used)):
            return 0
        for part in batches(orphans, BATCH):
            self.client.delete(self.names.vectors, filter=f"key in {lits(part)}")
        return len(orphans)

    # -- feedback -------------------------------------------------------------
    def add_feedback(self, rating: int, question: str, answer: str, hits: list[dict[str, Any]]) -> int:
        return int(self.client.insert(self.names.feedback, [feedback_row(rating, question, answer, hits)])["ids"][0])

    def feedback(self) -> list[dict[str, Any]]:
        rows = iterate(self.client, self.names.feedback, "id >= 0",
                       ["id", "created_at", "rating", "question", "answer", "hits"])
        return [{"id": int(r["id"]), "created_at": float(r["created_at"]), "rating": int(r["rating"]),
                 "question": r["question"], "answer": r["answer"], "hits": json.loads(r["hits"])}
                for r in sorted(rows, key=lambda r: (r["created_at"], r["id"]))]
