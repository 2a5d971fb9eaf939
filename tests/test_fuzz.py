"""Property tests (Hypothesis) for the readers, the chunker and the sentence splitter.

Readers: any bytes under any supported suffix give a `Document` or a `ReadError`, nothing else.
Chunker: chunks are exact slices of the text, numbered 0, 1, 2, ..., never empty, inside
their section. Sentences: spans are ordered, disjoint, inside the text and never empty.
Derandomized with a small budget, so CI runs the same cases every time in a few seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assistant.chunking import ChunkParams, chunk_document
from assistant.errors import ReadError
from assistant.readers import SUPPORTED_SUFFIXES, read_document
from assistant.sentences import sentence_spans
from assistant.types import Document, Section

FUZZ = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SUFFIXES = sorted(SUPPORTED_SUFFIXES)
PIECES = list("ab æøå.!?\n\t#-*<>/[](){}\"'é1:;,\x00🙂") + ["Dr. ", "\n\n", "# ", "<p>", "</div>", "ord "]
TEXTY = st.lists(st.sampled_from(PIECES), max_size=120).map("".join)
PREFIXES = [b"", b"%PDF-1.4\n", b"PK\x03\x04", b"<!doctype html><html>", b"{\"a\": ", b"\xef\xbb\xbf", b"\xff\xfe"]


@FUZZ
@given(suffix=st.sampled_from(SUFFIXES), prefix=st.sampled_from(PREFIXES), body=st.binary(max_size=600))
def test_readers_raise_only_read_error_on_random_bytes(tmp_path_factory: pytest.TempPathFactory, suffix: str,
                                                       prefix: bytes, body: bytes) -> None:
    folder = tmp_path_factory.mktemp("fuzz", numbered=True)
    path = folder / f"f{suffix}"
    path.write_bytes(prefix + body)
    _read_ok_or_read_error(path, folder)


@FUZZ
@given(suffix=st.sampled_from(SUFFIXES), text=TEXTY)
def test_readers_raise_only_read_error_on_random_text(tmp_path_factory: pytest.TempPathFactory, suffix: str,
                                                      text: str) -> None:
    folder = tmp_path_factory.mktemp("fuzz", numbered=True)
    path = folder / f"f{suffix}"
    path.write_text(text, encoding="utf-8")
    _read_ok_or_read_error(path, folder)


def _read_ok_or_read_error(path: Path, root: Path) -> None:
    try:
        doc = read_document(path, root, max_bytes=1_000_000, max_chars=5_000)
    except ReadError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert doc.text.strip() and len(doc.text) <= 5_000 + 200
    for s in doc.sections:
        assert 0 <= s.start <= s.end <= len(doc.text)


@st.composite
def documents(draw: st.DrawFn) -> Document:
    text = draw(TEXTY)
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=6)))
    bounds = [0, *cuts, len(text)]
    sections = tuple(Section(a, b, (f"H{i}",), draw(st.none() | st.integers(1, 3)))
                     for i, (a, b) in enumerate(zip(bounds, bounds[1:])) if draw(st.booleans()))
    return Document("d.md", "T", text, sections=sections)


@FUZZ
@given(doc=documents(), target=st.integers(20, 300), overlap=st.integers(0, 2), min_chars=st.integers(0, 80))
def test_chunks_are_exact_consecutive_nonempty_slices(doc: Document, target: int, overlap: int,
                                                     min_chars: int) -> None:
    chunks = chunk_document(doc, ChunkParams(target=target, overlap=overlap, min_chars=min_chars))
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert 0 <= c.start < c.end <= len(doc.text)
        assert doc.text[c.start:c.end] == c.text and c.text.strip()
        assert c.doc_id == doc.id
    if doc.text.strip() and not doc.sections:
        covered = "".join(c.text for c in chunks)
        assert all(ch in covered for ch in doc.text if not ch.isspace())


@FUZZ
@given(text=TEXTY, data=st.data())
def test_sentence_spans_are_ordered_disjoint_and_nonempty(text: str, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, len(text)))
    spans = sentence_spans(text, start, end)
    last = start
    for a, b in spans:
        assert last <= a < b <= end
        assert text[a:b].strip()
        last = b
    words = [w for w in text[start:end].split() if w]
    joined = " ".join(text[a:b] for a, b in spans)
    assert all(w in joined for w in words)
