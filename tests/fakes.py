"""Deterministic test doubles for the library's seams.

`FakeEmbedder` satisfies `assistant.embedding.Embedder` without a model: each
text becomes a hashed bag of its lower-cased word tokens, L2-normalised. Texts
that share words get a positive cosine; texts that share none get zero
(unless two of their words land in the same bucket). It
counts its calls so tests can assert that unchanged content is not embedded
again.
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Sequence

import numpy as np

_WORD = re.compile(r"\w+")


class FakeEmbedder:
    """A hashed bag-of-words embedder. `calls`, `texts_embedded` and `seen` record its use."""

    def __init__(self, dimension: int = 64, model_id: str = "fake-bow", fingerprint: str | None = None) -> None:
        if dimension < 1:
            raise ValueError("dimension must be positive")
        self.dimension = dimension
        self.model_id = model_id
        self.fingerprint = fingerprint if fingerprint is not None else f"{model_id}-{dimension}"
        self.calls = 0
        self.texts_embedded = 0
        self.seen: list[str] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one string")
        items = list(texts)
        self.calls += 1
        self.texts_embedded += len(items)
        self.seen.extend(items)
        out = np.zeros((len(items), self.dimension), dtype=np.float32)
        for row, text in enumerate(items):
            words = _WORD.findall(text.lower()) or ["\0"]  # wordless text: one fixed bucket
            for word in words:
                out[row, self._bucket(word)] += 1.0
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out

    def _bucket(self, word: str) -> int:
        # A stable hash (Python's hash() of str changes between runs).
        digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
        return int.from_bytes(digest, "little") % self.dimension


class PickyEmbedder(FakeEmbedder):
    """A `FakeEmbedder` that fails on any text containing "boom" (an error inside a model),
    and takes two seconds over any text containing "slow"."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if any("boom" in text for text in texts):
            raise ValueError("the model choked on boom")
        if any("slow" in text for text in texts):
            time.sleep(2.0)
        return super().embed(texts)


class TwoSidedEmbedder(FakeEmbedder):
    """A FakeEmbedder whose question side (`for_questions`) gives the negated vectors, so a test
    can tell which side embedded a text."""

    def for_questions(self) -> FakeEmbedder:
        outer = self

        class Questions(FakeEmbedder):
            def embed(self, texts: Sequence[str]) -> np.ndarray:
                return -outer.embed(texts)

        return Questions(dimension=self.dimension)
