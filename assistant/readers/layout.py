"""The text layout every reader produces, and the builder that enforces it.

Readers feed headings, paragraphs and pages to a `TextBuilder`; it returns the
cleaned text plus `Section`s whose offsets point into it. The layout rules the
chunker relies on live here and only here:

- paragraphs are separated by exactly one blank line ("\\n\\n");
- a heading is a paragraph of its own (its text only, no markup);
- list items and table rows are single lines inside one paragraph;
- no trailing whitespace, no control characters, no runs of blank lines;
- the text is capped at `max_chars`; `truncated` says whether it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..types import Section

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u200b\ufeff]")
_SPACES = re.compile(r"[ \t\u00a0]+")


@dataclass(frozen=True)
class Extracted:
    """What a format reader returns: cleaned text, its sections, and what it learnt."""

    text: str
    sections: tuple[Section, ...]
    title: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    truncated: bool = False


def clean_line(line: str, keep_indent: bool = False) -> str:
    """Drop control characters, squeeze inner spaces, strip trailing whitespace."""
    line = _CONTROL.sub(" ", line).rstrip()
    if keep_indent:
        return line
    return _SPACES.sub(" ", line).strip()


def normalise_block(text: str, keep_indent: bool = False) -> str:
    """One paragraph: clean lines, no blank lines inside."""
    lines = (clean_line(x, keep_indent) for x in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return "\n".join(x for x in lines if x.strip())


class TextBuilder:
    """Collects paragraphs under a heading path (and page) and lays them out."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max(1, max_chars)
        self._parts: list[str] = []
        self._length = 0
        self._sections: list[Section] = []
        self._headings: list[tuple[int, str]] = []
        self._page: int | None = None
        self._section_start: int | None = None
        self._section_end = 0
        self.truncated = False
        self._last_paragraph = ""

    @property
    def full(self) -> bool:
        return self.truncated

    @property
    def headings(self) -> tuple[str, ...]:
        return tuple(text for _, text in self._headings)

    def _close_section(self) -> None:
        if self._section_start is not None and self._section_end > self._section_start:
            self._sections.append(Section(self._section_start, self._section_end, self.headings, self._page))
        self._section_start = None

    def heading(self, text: str, level: int = 1) -> None:
        """Start a new section under `text` at `level` (1 = top)."""
        text = " ".join(normalise_block(text).split())
        if not text or self.truncated:
            return
        self._close_section()
        while self._headings and self._headings[-1][0] >= level:
            self._headings.pop()
        self._headings.append((level, text))
        self._add(text, dedupe=False)

    def page(self, number: int) -> None:
        """Start the section of page `number` (1-based); headings do not carry over."""
        self._close_section()
        self._page = number

    def paragraph(self, text: str, keep_indent: bool = False) -> None:
        """Add one paragraph; single newlines inside it (list items, rows) are kept."""
        text = normalise_block(text, keep_indent)
        if text and not self.truncated:
            self._add(text, dedupe=True)

    def _add(self, text: str, dedupe: bool) -> None:
        if dedupe and text == self._last_paragraph:
            return  # consecutive duplicates (bylines, repeated captions)
        sep = "\n\n" if self._parts else ""
        room = self.max_chars - self._length - len(sep)
        if room <= 0:
            self.truncated = True
            return
        if len(text) > room:
            cut = text.rfind(" ", 0, room)
            text = text[: cut if cut > room // 2 else room].rstrip()
            self.truncated = True
            if not text:
                return
        start = self._length + len(sep)
        self._parts.append(sep + text)
        self._length = start + len(text)
        if self._section_start is None:
            self._section_start = start
        self._section_end = self._length
        self._last_paragraph = text

    def build(self, title: str | None = None, **metadata: Any) -> Extracted:
        self._close_section()
        return Extracted(
            text="".join(self._parts),
            sections=tuple(self._sections),
            title=title,
            metadata=metadata,
            truncated=self.truncated,
        )
