"""Web boilerplate removal shared by the plain-text and HTML readers.

Pages copied from the web carry lines that are not content: "Skip to main
content", breadcrumbs ("Home » Offentlig sektor » …"), photo credits
("Foto: Getty Images"), "Next article", share buttons and cookie buttons.
Measured on the seed article, "Next article" alone ranked first for an English
question, so they must go.

Every rule matches a *whole, short line* and never a sentence: a line is only
dropped when it is at most a few words long (or has the exact shape of a
breadcrumb or a credit) and does not end like a sentence. Real content that
merely mentions cookies or photos is kept; tests hold both sides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_EXACT = re.compile(
    r"""^(?:
        skip\ to\ (?:main\ )?content | skip\ navigation | hopp\ til\ (?:hoved)?innhold(?:et)? |
        gå\ til\ (?:hoved)?innhold(?:et)? | til\ hovedinnhold |
        (?:next|previous)\ (?:article|post|page|story) | (?:neste|forrige)\ (?:artikkel|sak|side|nyhet) |
        del\ (?:artikkelen|saken|siden|denne\ (?:artikkelen|saken|siden)) | del\ på\ \w+ |
        share(?:\ this)?(?:\ (?:article|page|story|post))? | share\ on\ \w+ |
        back\ to\ top | til\ toppen | tilbake\ til\ toppen | skriv\ ut(?:\ siden)? | print(?:\ this\ page)? |
        (?:godta|aksepter|avvis|tillat)(?:\ alle)?(?:\ (?:informasjonskapsler|cookies))? |
        (?:accept|reject|allow|decline)(?:\ all)?(?:\ cookies)? |
        (?:cookie|informasjonskapsel)[- ]?(?:innstillinger|settings|preferences) |
        innstillinger\ for\ informasjonskapsler
    )[.!]?$""",
    re.IGNORECASE | re.VERBOSE,
)
# "Next article: Title" or "Neste artikkel – Title" (a link with its target's title).
_NEXT_WITH_TITLE = re.compile(r"^(?:next|previous|neste|forrige) (?:article|artikkel|sak|post)\s*[:–—-]\s*\S", re.I)
# "Foto: Getty Images", "Photo: NTB / Scanpix", "Illustrasjon: KS"
_CREDIT = re.compile(
    r"^(?:foto|photo|fotograf|photographer|illustrasjon|illustration|bilde|image|kilde bilde)\s*:\s*\S.{0,78}$",
    re.IGNORECASE,
)
_CRUMB_SEP = re.compile(r"\s+[»›]\s+|\s+>\s+")
_CRUMB_HOME = re.compile(r"^(?:home|hjem|forside|startside|heim|framside)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Boilerplate:
    """The lines kept and what was learnt from the dropped ones."""

    lines: tuple[str, ...]
    dropped: tuple[str, ...]
    breadcrumb_title: str | None


def is_breadcrumb(line: str) -> bool:
    """'Home » Offentlig sektor » Title': two or more » / › separators, or Home/Hjem > …"""
    parts = _CRUMB_SEP.split(line.strip())
    if len(parts) < 2 or len(line) > 250 or line.rstrip().endswith((".", "!", "?")):
        return False
    if any(len(p.split()) > 12 for p in parts):
        return False
    if "»" in line or "›" in line:
        return len(parts) >= 3 or bool(_CRUMB_HOME.match(line.strip()))
    return bool(_CRUMB_HOME.match(line.strip())) and len(parts) >= 2


def is_boilerplate(line: str) -> bool:
    """Is this whole line web furniture rather than content?"""
    text = line.strip()
    if not text or len(text) > 250:
        return False
    if _EXACT.match(text) or _NEXT_WITH_TITLE.match(text) or _CREDIT.match(text):
        return True
    return is_breadcrumb(text)


def strip_boilerplate(lines: list[str]) -> Boilerplate:
    """Drop boilerplate lines; remember the last breadcrumb element, usually the page title."""
    kept: list[str] = []
    dropped: list[str] = []
    crumb_title: str | None = None
    for line in lines:
        if is_boilerplate(line):
            dropped.append(line.strip())
            if crumb_title is None and is_breadcrumb(line):
                crumb_title = _CRUMB_SEP.split(line.strip())[-1].strip() or None
        else:
            kept.append(line)
    return Boilerplate(tuple(kept), tuple(dropped), crumb_title)
