"""Deterministic test doubles for the library's seams.

`FakeEmbedder` satisfies `assistant.embedding.Embedder` without a model: each
text becomes a hashed bag of its lower-cased word tokens, L2-normalised. Texts
that share words get a positive cosine; texts that share none get zero
(unless two of their words land in the same bucket). It
counts its calls so tests can assert that unchanged content is not embedded
again. `BagEmbedder` (content-word stems, each a fixed random vector) and
`make_hits` serve the tests of extractive answers and refusals.
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Sequence

import numpy as np

from assistant.terms import content_words
from assistant.types import Hit

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


class BagEmbedder:
    """Deterministic: each content-word stem adds a fixed pseudo-random vector. Counts its calls."""

    model_id = "fake-bag"
    dimension = 64

    def __init__(self) -> None:
        self.calls = 0
        self.texts = 0

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        self.texts += len(texts)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for i, text in enumerate(texts):
            text = re.sub(r"^(query|passage): ", "", text)
            for w in content_words(text):
                seed = int.from_bytes(hashlib.sha256(w.encode()).digest()[:4], "little")
                out[i] += np.random.default_rng(seed).standard_normal(self.dimension)
            out[i] += 0.3  # a shared component, so unrelated texts have a small positive cosine
            out[i] /= np.linalg.norm(out[i])
        return out


def make_hits(paragraphs: list[str], *, doc_id: str = "ks-artikkel/seed.txt", title: str = "En innovasjonskraft",
              lang: str = "nb", headings: tuple[str, ...] = ("Innovasjon",), page: int | None = None) -> list[Hit]:
    return [Hit(chunk_id=i, doc_id=doc_id, title=title, text=p, start=0, end=len(p), headings=headings,
                page=page, score=1.0 / (i + 1), rank=i + 1, lang=lang) for i, p in enumerate(paragraphs)]
