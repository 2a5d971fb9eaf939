"""Chunking follows structure and every chunk is an exact slice of its document."""

from __future__ import annotations

import pytest

from assistant.chunking import ChunkParams, chunk_document
from assistant.sentences import split_sentences
from assistant.types import Document, Section


def _doc(text: str, sections: tuple[Section, ...] = ()) -> Document:
    return Document(id="d.md", title="Tittel", text=text, sections=sections)


@pytest.mark.parametrize("text", [
    "", "   ", "Én setning.", "a" * 5000, "Ord " * 3000,
    "Avsnitt en.\n\nAvsnitt to.\n\n\n\nAvsnitt tre med æøå.",
    "Linje\nlinje\n" * 400, "😀 " * 2000, "\n\n\n",
])
def test_offsets_reproduce_text(text: str) -> None:
    doc = _doc(text)
    chunks = chunk_document(doc, ChunkParams(target=300))
    for c in chunks:
        assert doc.text[c.start:c.end] == c.text
        assert c.text.strip()
        assert len(c.text) <= 300 * 1.3 + 1
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))


def test_paragraphs_are_not_cut_when_they_fit() -> None:
    paragraphs = [f"Dette er avsnitt nummer {i}. " + "Det handler om kommunene. " * 5 for i in range(12)]
    doc = _doc("\n\n".join(p.strip() for p in paragraphs))
    chunks = chunk_document(doc, ChunkParams(target=400))
    for p in paragraphs:
        assert any(p.strip() in c.text for c in chunks), p


def test_long_paragraph_splits_at_sentences_with_overlap() -> None:
    sentences = [f"Setning {i} handler bl.a. om kommune nr. {i} og f.eks. NAV." for i in range(40)]
    doc = _doc(" ".join(sentences))
    chunks = chunk_document(doc, ChunkParams(target=300, overlap=1))
    assert len(chunks) > 3
    for c in chunks:
        assert c.text.endswith("NAV.")  # never cut inside a sentence, nor after "bl.a."/"nr."
    # one sentence of overlap between consecutive chunks of the same paragraph
    assert chunks[0].text.split(". ")[-1] in chunks[1].text


def test_short_heading_section_is_glued_to_the_next() -> None:
    text = "Innledning\n\nKort.\n\nHoveddel\n\n" + "Lang tekst om samarbeid mellom kommuner. " * 20
    cut = text.index("Hoveddel")
    doc = _doc(text, (Section(0, cut, ("Innledning",)), Section(cut, len(text), ("Hoveddel",))))
    chunks = chunk_document(doc, ChunkParams(target=2000))
    assert len(chunks) == 1
    assert chunks[0].text.startswith("Innledning")
    assert chunks[0].headings == ("Hoveddel",)


def test_sections_carry_headings_and_pages() -> None:
    a = "Første side. " * 30
    b = "Andre side. " * 30
    text = a + "\n\n" + b
    doc = _doc(text, (Section(0, len(a), ("Rapport", "Del 1"), 1), Section(len(a) + 2, len(text), ("Rapport", "Del 2"), 2)))
    chunks = chunk_document(doc, ChunkParams(target=2000))
    assert [(c.headings, c.page) for c in chunks] == [(("Rapport", "Del 1"), 1), (("Rapport", "Del 2"), 2)]
    assert chunks[0].heading_path == "Rapport › Del 1"


def test_norwegian_abbreviations_do_not_end_sentences() -> None:
    text = "Kommunene har bl.a. ansvar for skole, jf. opplæringsloven. Se f.eks. kap. 3 og nr. 4. Ny setning her."
    assert split_sentences(text) == [
        "Kommunene har bl.a. ansvar for skole, jf. opplæringsloven.",
        "Se f.eks. kap. 3 og nr. 4.",
        "Ny setning her.",
    ]
