"""Value objects that cross module boundaries.

Every object here is a frozen dataclass: readers produce `Document`s, the
chunker produces `Chunk`s, retrieval produces `Hit`s, composition produces an
`Answer`, and indexing produces an `IndexReport`. Nothing here does I/O.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


def content_hash(text: str) -> str:
    """The sha256 of a text, used to decide what must be embedded again."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Section:
    """A span of a document's text that sits under one heading path.

    `start`/`end` are character offsets into `Document.text`. Readers that
    know about pages (PDF) also set `page` (1-based).
    """

    start: int
    end: int
    headings: tuple[str, ...] = ()
    page: int | None = None


@dataclass(frozen=True)
class Document:
    """One cleaned document, ready to chunk.

    `id` is the path relative to its corpus root, with forward slashes; it is
    stable across runs and machines. `text` is the cleaned text that chunk
    offsets point into. `sections` optionally describe its structure.
    """

    id: str
    title: str
    text: str
    lang: str = "nb"
    source: str = ""
    sections: tuple[Section, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def hash(self) -> str:
        return content_hash(self.text)


@dataclass(frozen=True)
class Chunk:
    """A piece of a document: `doc_text[start:end] == text`."""

    doc_id: str
    ordinal: int
    start: int
    end: int
    text: str
    headings: tuple[str, ...] = ()
    page: int | None = None

    @property
    def heading_path(self) -> str:
        return " › ".join(self.headings)


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its scores. `rank` starts at 1."""

    chunk_id: int
    doc_id: str
    title: str
    text: str
    start: int
    end: int
    headings: tuple[str, ...]
    page: int | None
    score: float
    rank: int
    dense_score: float | None = None
    lexical_score: float | None = None
    lang: str = "nb"

    @property
    def heading_path(self) -> str:
        return " › ".join(self.headings)


@dataclass(frozen=True)
class Skipped:
    """A file that was not indexed, and why (one line)."""

    doc: str
    reason: str


@dataclass(frozen=True)
class IndexReport:
    """What one `index` run did. Counts are documents unless named otherwise."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: int = 0
    skipped: tuple[Skipped, ...] = ()
    chunks_embedded: int = 0
    chunks_total: int = 0
    documents_total: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict, hash=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "added": len(self.added),
            "changed": len(self.changed),
            "removed": len(self.removed),
            "unchanged": self.unchanged,
            "skipped": [{"doc": s.doc, "reason": s.reason} for s in self.skipped],
            "chunks_embedded": self.chunks_embedded,
            "chunks_total": self.chunks_total,
            "documents_total": self.documents_total,
            "seconds": round(self.seconds, 3),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "added_docs": list(self.added),
            "changed_docs": list(self.changed),
            "removed_docs": list(self.removed),
        }


@dataclass(frozen=True)
class Citation:
    """Citation `[number]` in an answer: the passage (a `Hit`) and the quoted sentences."""

    number: int
    hit: Hit
    quotes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Answer:
    """The reply to a question: text with `[n]` markers and the citations they point to."""

    question: str
    text: str
    citations: tuple[Citation, ...]
    hits: tuple[Hit, ...]
    lang: str
    refused: bool = False
    timings: dict[str, float] = field(default_factory=dict, hash=False, compare=False)
    # "extractive" (quoted sentences), "generated" (a language model's checked answer) or "refusal".
    backend: str = "extractive"
