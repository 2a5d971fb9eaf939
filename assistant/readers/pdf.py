"""PDF: text page by page with pypdf, cleaned of print furniture.

pypdf (BSD) was chosen over PyMuPDF (AGPL) by measurement on the 148 pages
in ../shared/formats: the same text (within 0.5 % of characters); PyMuPDF's
plain text puts every table cell on a line of its own, while pypdf's layout
mode keeps columns apart, so rows can be rebuilt. PyMuPDF is much faster
(0.3 s for 148 pages against 5.5 s for pypdf's plain mode and about 9 s for
its layout mode, on 2 cores), but reading is a small share of indexing time
next to embedding, and AGPL would bind every deployment. See README.

Per page (layout mode): lines that repeat among the first or last two
non-blank lines of many pages (running headers and footers, digits ignored)
and bare page numbers are dropped; dot leaders are squeezed; blank lines
separate paragraphs; a line starting at the left margin with column gaps of
four or more spaces is a table row, written "a | b | c", and indented lines
after it continue its last cell; a word hyphenated across a line break is
joined ("kommu-\\nnene" → "kommunene") unless a conjunction follows
("helse- og omsorg"); before a capital the hyphen is kept ("e-\\nID" → "e-ID").
Each page is one section with `page` set. A PDF with no text layer is
refused as "no text (scanned?)"; an encrypted one that the empty password
does not open is refused as "encrypted PDF".
"""

from __future__ import annotations

import io
import logging
import re
from collections import Counter

from ..errors import ReadError
from .layout import Extracted, TextBuilder

log = logging.getLogger(__name__)

_EDGE = 2  # lines at the top and bottom of a page that may be headers/footers
_PAGE_NUMBER = re.compile(r"^(?:(?:side|page|s\.)\s*)?\d{1,4}(?:\s*(?:/|av|of)\s*\d{1,4})?$|^[ivxlc]{1,6}$", re.I)
_DOT_LEADER = re.compile(r"(?:\s?\.){4,}\s*|(?:\s?…){2,}\s*|_{5,}")
_BULLET = re.compile(r"^(?:[•●▪■◦‣∙·\-–*]\s|\d{1,2}[.)]\s|[a-z][.)]\s)")
_CONJUNCTIONS = frozenset("og eller samt and or to til enn".split())
_HYPHEN_END = re.compile(r"(\w)-$")
_NO_TEXT_LETTERS = 20
_COLUMN_GAP = re.compile(r"\s{4,}")
_ROW = "\x00row:"


def _key(line: str) -> str:
    return re.sub(r"\d+", "#", " ".join(line.split()).lower())


def _furniture(pages: list[list[str]]) -> set[str]:
    """Normalised lines that occur at a page edge on at least 30 % of pages (and 3 pages)."""
    counts: Counter[str] = Counter()
    for lines in pages:
        filled = [x for x in lines if x.strip()]
        edge = {_key(x) for x in filled[:_EDGE] + filled[-_EDGE:]}
        counts.update(edge)
    needed = max(3, int(0.3 * len(pages)))
    return {k for k, n in counts.items() if n >= needed and k.strip("# ")}


def _strip_page(lines: list[str], furniture: set[str]) -> list[str]:
    """Blank out running headers/footers and page numbers among the first and last non-blank lines."""
    out = list(lines)
    filled = [i for i, x in enumerate(out) if x.strip()]
    for i in filled[:_EDGE] + filled[-_EDGE:]:
        line = out[i].strip()
        if _key(line) in furniture or _PAGE_NUMBER.match(line):
            out[i] = ""
    return out


def _join_hyphen(prev: str, line: str) -> str | None:
    """`prev` + `line` joined across a line-end hyphen, or None when it is no soft hyphen.

    "kommu-" + "nene" → "kommunene"; "e-" + "ID" → "e-ID" (capital: the hyphen is real);
    "helse-" + "og omsorg" → None (a conjunction follows: "helse- og omsorg").
    """
    m = _HYPHEN_END.search(prev)
    if not m or not line or not m.group(1).isalpha():
        return None
    first = line.split()[0]
    if first.lower().strip(",.") in _CONJUNCTIONS:
        return None
    if first[0].islower():
        return prev[:-1] + line
    if first[0].isupper() or first[0].isdigit():
        return prev + line
    return None


def _blocks(lines: list[str]) -> list[list[str]]:
    """Layout lines to blocks: blank lines separate prose; table rows become "a | b | c" lines.

    A row is a line starting near the left margin with column gaps of four or more
    spaces; indented lines after a row continue its last cell (multi-line cells).
    """
    blocks: list[list[str]] = [[]]
    in_table = False
    for raw in lines:
        raw = _DOT_LEADER.sub("  ", raw.rstrip())
        if not raw.strip():
            if not in_table and blocks[-1]:
                blocks.append([])
            continue
        indent = len(raw) - len(raw.lstrip())
        cells = [c for c in _COLUMN_GAP.split(raw.strip()) if c]
        if len(cells) >= 2 and indent < 12:
            if not in_table and blocks[-1]:
                blocks.append([])
            blocks[-1].append(_ROW + " | ".join(" ".join(c.split()) for c in cells))
            in_table = True
        elif in_table and indent >= 12 and blocks[-1]:
            last = blocks[-1][-1]
            text = " ".join(raw.split())
            blocks[-1][-1] = _join_hyphen(last, text) or last + " " + text
        else:
            if in_table:
                blocks.append([])
            in_table = False
            blocks[-1].append(" ".join(raw.split()))
    return [b for b in blocks if b]


def paragraphs(lines: list[str]) -> list[str]:
    """Join a page's layout lines into paragraphs (see the module docstring)."""
    out: list[str] = []
    for block in _blocks(lines):
        if block[0].startswith(_ROW):
            out.append("\n".join(x[len(_ROW):] for x in block))
            continue
        current = block[0]
        for line in block[1:]:
            joined = _join_hyphen(current, line)
            if joined is not None:
                current = joined
            elif _BULLET.match(line):
                out.append(current)
                current = line
            else:
                current = current + " " + line
        out.append(current)
    return _group_bullets(out)


def _group_bullets(paras: list[str]) -> list[str]:
    """Consecutive bullet paragraphs become one paragraph, one item per line."""
    out: list[str] = []
    for para in paras:
        if out and _BULLET.match(para) and _BULLET.match(out[-1].rsplit("\n", 1)[-1]):
            out[-1] += "\n" + para
        else:
            out.append(para)
    return out


def _title(reader: object, first_page: list[str]) -> str | None:
    meta = getattr(reader, "metadata", None)
    title = (getattr(meta, "title", None) or "") if meta else ""
    title = " ".join(str(title).split())
    if title and not re.match(r"(?i)^(untitled|microsoft word|document\d*$|\S+\.(docx?|pdf|odt)$)", title):
        return title
    return first_page[0][:120] if first_page else None


def read_pdf(data: bytes, *, max_chars: int) -> Extracted:
    try:
        import pypdf
        from pypdf.errors import PdfReadError
    except ImportError:  # pragma: no cover - pypdf is a base dependency
        from ..errors import MissingExtraError

        raise MissingExtraError("reading PDF needs pypdf: pip install pypdf") from None
    try:
        reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")
            except Exception as exc:  # missing crypto backend, unknown algorithm
                raise ReadError(f"encrypted PDF ({type(exc).__name__})") from None
            if not opened:
                raise ReadError("encrypted PDF")
        pages_obj = list(reader.pages)
    except ReadError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as exc:
        raise ReadError(f"corrupt PDF: {type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''}".rstrip(": ")) from None
    pages: list[list[str]] = []
    failed = 0
    budget = max_chars * 2
    for page in pages_obj:
        try:
            text = page.extract_text(extraction_mode="layout") or ""
        except Exception as exc:  # one bad page must not lose the others
            log.debug("page extraction failed: %s", exc)
            failed += 1
            text = ""
        pages.append(text.replace("\r", "\n").split("\n"))
        budget -= len(text)
        if budget < 0:
            break
    if sum(sum(c.isalnum() for c in line) for lines in pages for line in lines) < _NO_TEXT_LETTERS:
        raise ReadError("no text (scanned?)" if not failed else "corrupt PDF: no page could be read")
    furniture = _furniture(pages)
    builder = TextBuilder(max_chars)
    cleaned = [_strip_page(lines, furniture) for lines in pages]
    for number, lines in enumerate(cleaned, start=1):
        builder.page(number)
        for paragraph in paragraphs(lines):
            builder.paragraph(paragraph)
        if builder.full:
            break
    first = next((lines for lines in cleaned if lines), [])
    metadata = {"format": "pdf", "pages": len(pages_obj)}
    if failed:
        metadata["pages_failed"] = failed
    return builder.build(_title(reader, first), **metadata)
