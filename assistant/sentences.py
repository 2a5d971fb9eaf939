"""Sentence boundaries for Norwegian and English text.

`sentence_spans(text)` returns `(start, end)` character offsets, so callers can
cut exact substrings. A sentence ends at `.`, `!`, `?` or `…` (optionally
followed by closing quotes or brackets) when whitespace and an upper-case
letter, digit, quote or list marker follow, or at a blank line. Common
Norwegian and English abbreviations ("bl.a.", "f.eks.", "nr.", "jf.", "e.g.")
and initials never end a sentence.
"""

from __future__ import annotations

import re

ABBREVIATIONS = frozenset(
    """bl.a f.eks nr jf ca dvs mht osv mv pga iht evt ift bl kl s ref tlf inkl ekskl hhv mfl m.fl
    o.l etc m.m pr vs eks jfr adm avd dir f.o.m t.o.m ibid kap pkt st stk vol mill mrd kr
    e.g i.e mr mrs ms dr prof no fig approx incl dept u.a ev""".split()
)

_CANDIDATE = re.compile(r"[.!?…]+[\"'»”’)\]]*(?=\s)|\n[ \t]*\n")
_WORD_BEFORE = re.compile(r"(\S+)$")
_NEXT_START = re.compile(r"\s+([\"'«“(\[]?[A-ZÆØÅÄÖÜ0-9•\-–*])")


def _is_abbreviation(text: str, dot: int) -> bool:
    """Does the '.' at index `dot` close an abbreviation or an initial?"""
    match = _WORD_BEFORE.search(text, 0, dot)
    if not match:
        return False
    word = match.group(1).lower().lstrip("(\"'«“")
    if not word:
        return False
    if word in ABBREVIATIONS or word.rstrip(".") in ABBREVIATIONS:
        return True
    if len(word) == 1 and word.isalpha():  # initials: "B. A. Gram"
        return True
    return bool(re.fullmatch(r"(?:[a-zæøå]\.)+[a-zæøå]", word))  # "t.o.m", "d.v.s"


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Spans of the sentences in `text[start:end]`, stripped of surrounding whitespace."""
    end = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    pos = start
    for match in _CANDIDATE.finditer(text, start, end):
        cut = match.end()
        if match.group().startswith("\n"):
            cut = match.start()
        else:
            if not _NEXT_START.match(text, cut, end):
                continue
            if match.group()[0] == "." and len(match.group().rstrip("\"'»”’)]")) == 1:
                if _is_abbreviation(text, match.start()):
                    continue
        _append(text, spans, pos, cut)
        pos = match.end()
    _append(text, spans, pos, end)
    return spans


def strip_span(text: str, a: int, b: int) -> tuple[int, int]:
    """`(a, b)` narrowed so that `text[a:b]` has no leading or trailing white space."""
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return a, b


def _append(text: str, spans: list[tuple[int, int]], a: int, b: int) -> None:
    a, b = strip_span(text, a, b)
    if b > a:
        spans.append((a, b))


def split_sentences(text: str) -> list[str]:
    return [text[a:b] for a, b in sentence_spans(text)]
