"""DOCX: paragraphs, headings and tables, in document order, with python-docx.

Before python-docx sees the file, the ZIP is checked: it must be a ZIP, it
must hold `word/document.xml`, and the entries' declared uncompressed sizes
must stay under a limit (a zip bomb is refused before anything is inflated).
Headings come from the paragraph style ("Heading 1".."Heading 9", the
Norwegian "Overskrift N", and "Title"/"Tittel" as level 1) and form the
heading path of sections. List paragraphs become "- " lines of one paragraph.
Table rows become one line each, cells joined by " | " (horizontally merged
cells, which python-docx repeats, are written once).
"""

from __future__ import annotations

import io
import re
import zipfile

from ..errors import ReadError
from .layout import Extracted, TextBuilder

_HEADING_STYLE = re.compile(r"^(?:heading|overskrift)\s*(\d)$", re.IGNORECASE)
_TITLE_STYLE = frozenset({"title", "tittel"})
_LIST_STYLE = re.compile(r"list|liste", re.IGNORECASE)
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def check_zip(data: bytes, max_uncompressed: int) -> None:
    """Refuse what is not a DOCX, or would inflate beyond `max_uncompressed` bytes."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ReadError("not a DOCX (not a ZIP file)") from None
    with archive:
        infos = archive.infolist()
        names = {i.filename for i in infos}
        if "word/document.xml" not in names:
            raise ReadError("not a DOCX (zip without word/document.xml)")
        total = sum(i.file_size for i in infos)
        if total > max_uncompressed or len(infos) > 10_000:
            raise ReadError(f"DOCX too large when unpacked ({total / 1e6:.0f} MB > limit {max_uncompressed / 1e6:.0f} MB; zip bomb?)")


def _level(style_name: str) -> int | None:
    name = style_name.strip().lower()
    if name in _TITLE_STYLE:
        return 1
    m = _HEADING_STYLE.match(name)
    return int(m.group(1)) if m else None


def _row_text(row: object) -> str:
    cells: list[str] = []
    for cell in row.cells:  # type: ignore[attr-defined]
        text = " ".join(cell.text.split())
        if text and (not cells or cells[-1] != text):
            cells.append(text)
    return " | ".join(cells)


def read_docx(data: bytes, *, max_chars: int, max_uncompressed: int) -> Extracted:
    check_zip(data, max_uncompressed)
    try:
        import docx
        from docx.table import Table
        from docx.text.paragraph import Paragraph
    except ImportError:
        from ..errors import MissingExtraError

        raise MissingExtraError("reading DOCX needs python-docx: pip install python-docx") from None
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises KeyError, ValueError, lxml errors...
        raise ReadError(f"corrupt DOCX: {type(exc).__name__}") from None
    builder = TextBuilder(max_chars)
    items: list[str] = []
    first_heading: str | None = None

    def flush_list() -> None:
        if items:
            builder.paragraph("\n".join(items))
            items.clear()

    for element in document.element.body.iterchildren():
        if builder.full:
            break
        if element.tag == _W + "p":
            paragraph = Paragraph(element, document)
            text = paragraph.text.strip()
            if not text:
                continue
            style = paragraph.style.name if paragraph.style is not None else ""
            level = _level(style or "")
            if level:
                flush_list()
                builder.heading(text, level)
                first_heading = first_heading or text
            elif _LIST_STYLE.search(style or "") or element.find(f"{_W}pPr/{_W}numPr") is not None:
                items.append("- " + " ".join(text.split()))
            else:
                flush_list()
                builder.paragraph(text)
        elif element.tag == _W + "tbl":
            flush_list()
            rows = [_row_text(row) for row in Table(element, document).rows]
            builder.paragraph("\n".join(r for r in rows if r))
    flush_list()
    title = (document.core_properties.title or "").strip() or first_heading
    return builder.build(title, format="docx")
