"""Citations under an answer: find the `[n]` markers, verify them, and list the sources.

`check_citations` holds an `Answer` to its promise: every `[n]` in the text
names a citation, every citation's passage was among the hits shown, every
quote is an exact substring of its passage, and a refusal cites nothing.
`format_sources` renders the numbered sources (or, for a refusal, the
"may be related" hits) as plain text for the CLI, in the answer's language.

Limits: markers are bracketed integers (`[2]`, `[1, 3]`); other spellings such
as `[passage 2]` are normalised by the generator, not here. Quotes are checked
verbatim, so a paraphrase fails the check.
"""

from __future__ import annotations

import re

from .types import Answer, Hit

__all__ = ["check_citations", "citation_markers", "format_sources"]

_MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")


def citation_markers(text: str) -> list[int]:
    """The numbers of every `[n]` (and `[n, m]`) marker in `text`, in order."""
    return [int(n) for group in _MARKER.findall(text) for n in group.split(",")]


def check_citations(answer: Answer) -> bool:
    """True when every `[n]` has a citation whose hit was shown, and every quote is in its hit.

    A refusal must carry no markers and no citations.
    """
    by_number = {c.number: c for c in answer.citations}
    if len(by_number) != len(answer.citations):
        return False
    shown = set(answer.hits)
    for n in citation_markers(answer.text):
        if n not in by_number:
            return False
    for c in answer.citations:
        if c.hit not in shown:
            return False
        if any(not q or q not in c.hit.text for q in c.quotes):
            return False
    if answer.refused and (answer.citations or citation_markers(answer.text)):
        return False
    return True


def format_sources(answer: Answer, *, max_quote_chars: int = 300) -> str:
    """The numbered sources under an answer, one block per citation, for the CLI.

    Refusals list the hits as "may be related" instead.
    """
    lines: list[str] = []
    if answer.refused:
        if not answer.hits:
            return ""
        lines.append("May be related:" if answer.lang == "en" else
                     ("Kan vere relevant:" if answer.lang == "nn" else "Kan være relevant:"))
        for hit in answer.hits[:5]:
            lines.append(f"  - {_where(hit, answer.lang)}")
        return "\n".join(lines)
    if not answer.citations:
        return ""
    lines.append("Sources:" if answer.lang == "en" else ("Kjelder:" if answer.lang == "nn" else "Kilder:"))
    for c in sorted(answer.citations, key=lambda c: c.number):
        lines.append(f"[{c.number}] {_where(c.hit, answer.lang)}")
        for q in c.quotes:
            q = " ".join(q.split())
            if len(q) > max_quote_chars:
                q = q[: max_quote_chars - 1].rstrip() + "…"
            lines.append(f"    «{q}»")
    return "\n".join(lines)


def _where(hit: Hit, lang: str) -> str:
    parts = [hit.title or hit.doc_id]
    if hit.headings:
        parts.append(hit.heading_path)
    if hit.page is not None:
        parts.append(("p. " if lang == "en" else "s. ") + str(hit.page))
    parts.append(f"({hit.doc_id})")
    return " — ".join(parts[:-1]) + " " + parts[-1]
