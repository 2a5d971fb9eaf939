"""Split a `Document` into `Chunk`s that follow its structure.

Order of cuts: section (heading) boundaries first, then paragraphs (blank
lines), then sentences, then whitespace for the rare run-on sentence. Short
sections (a heading with a line or two) are glued to the text that follows, so
a heading never stands alone. Every chunk is an exact slice of the document:
`doc.text[chunk.start:chunk.end] == chunk.text`.

Sizes are in characters. The default target (see `Settings.chunk_chars`) was
chosen by measurement on the dev questions (README, "Retrieval").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .sentences import sentence_spans, strip_span
from .types import Chunk, Document, Section

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")

CHUNKER_VERSION = 1


@dataclass(frozen=True)
class ChunkParams:
    target: int = 900
    overlap: int = 1  # sentences repeated when a paragraph is cut mid-way
    min_chars: int = 200  # smaller sections are glued to the next one

    @property
    def stamp(self) -> dict[str, int]:
        return {"chunker": CHUNKER_VERSION, "target": self.target, "overlap": self.overlap,
                "min_chars": self.min_chars}


def _units(text: str, start: int, end: int, target: int) -> list[tuple[int, int]]:
    """Paragraph spans in [start, end); paragraphs longer than `target` become sentence spans."""
    units: list[tuple[int, int]] = []
    pos = start
    breaks = [(m.start(), m.end()) for m in _PARAGRAPH_BREAK.finditer(text, start, end)]
    for b_start, b_end in breaks + [(end, end)]:
        a, b = strip_span(text, pos, b_start)
        pos = b_end
        if a >= b:
            continue
        if b - a <= target:
            units.append((a, b))
            continue
        for s_a, s_b in sentence_spans(text, a, b):
            if s_b - s_a <= target:
                units.append((s_a, s_b))
            else:
                units.extend(_hard_split(text, s_a, s_b, target))
    return units


def _hard_split(text: str, a: int, b: int, target: int) -> list[tuple[int, int]]:
    """Cut an over-long run of text at whitespace (or anywhere, if it has none)."""
    out: list[tuple[int, int]] = []
    while b - a > target:
        cut = text.rfind(" ", a + target // 2, a + target)
        if cut <= a:
            cut = a + target
        out.append((a, cut))
        a = cut
        while a < b and text[a].isspace():
            a += 1
    if b > a:
        out.append((a, b))
    return out


def _merged_sections(doc: Document, min_chars: int) -> list[Section]:
    """The document's sections, with short ones glued onto the following section."""
    sections = [s for s in doc.sections if s.end > s.start] or [Section(0, len(doc.text))]
    merged: list[Section] = []
    pending: Section | None = None
    for section in sections:
        if pending is not None:
            same_page = pending.page == section.page or pending.page is None or section.page is None
            if same_page:
                section = Section(pending.start, section.end, section.headings or pending.headings,
                                  pending.page if pending.page is not None else section.page)
            else:
                merged.append(pending)
            pending = None
        if len(doc.text[section.start:section.end].strip()) < min_chars:
            pending = section
        else:
            merged.append(section)
    if pending is not None:
        if merged and merged[-1].end <= pending.start and (merged[-1].page == pending.page):
            last = merged.pop()
            merged.append(Section(last.start, pending.end, last.headings, last.page))
        else:
            merged.append(pending)
    return merged


def chunk_document(doc: Document, params: ChunkParams = ChunkParams()) -> list[Chunk]:
    """Cut `doc` into chunks of about `params.target` characters."""
    text = doc.text
    chunks: list[Chunk] = []
    for section in _merged_sections(doc, params.min_chars):
        units = _units(text, section.start, section.end, params.target)
        groups: list[list[tuple[int, int]]] = []
        current: list[tuple[int, int]] = []
        for unit in units:
            if current and unit[1] - current[0][0] > params.target:
                groups.append(current)
                carried = _overlap(text, current, unit, params.overlap)
                current = carried
            current.append(unit)
        if current:
            groups.append(current)
        # A small tail is folded into the previous chunk when the result stays reasonable.
        if len(groups) > 1 and groups[-1][-1][1] - groups[-1][0][0] < params.min_chars:
            tail = groups.pop()
            if tail[-1][1] - groups[-1][0][0] <= params.target * 1.3:
                groups[-1] = groups[-1] + [u for u in tail if u[0] >= groups[-1][-1][1]]
            else:
                groups.append(tail)
        for group in groups:
            start, end = group[0][0], group[-1][1]
            chunks.append(Chunk(doc.id, len(chunks), start, end, text[start:end],
                                section.headings, section.page))
    return chunks


def _overlap(text: str, previous: list[tuple[int, int]], nxt: tuple[int, int],
             sentences: int) -> list[tuple[int, int]]:
    """Units to repeat at the start of the next chunk: the last sentences of a paragraph
    that continues across the cut (never a whole paragraph)."""
    if sentences <= 0:
        return []
    last = previous[-1]
    gap = text[last[1]:nxt[0]]
    if "\n" in gap:  # the cut falls between paragraphs: no overlap needed
        return []
    return previous[-sentences:] if len(previous) > sentences else []
