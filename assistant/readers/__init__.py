"""Readers: turn one file into a `Document`, or say in one line why not.

`read_document(path, root, max_bytes=..., max_chars=...)` is the only entry
point. It picks a reader by suffix, or by content for files without one:

| suffix | reader |
|---|---|
| .md .markdown | Markdown (`markdown.py`) |
| .mdx | MDX: Markdown without JSX/imports (`markdown.py`) |
| .txt .text .csv .tsv .log .rst .adoc and no suffix | plain text (`text.py`); Markdown if it has ATX headings |
| .json | JSON text catalogue (`jsonfile.py`) |
| .html .htm .xhtml | HTML main content (`html.py`) |
| .pdf | PDF, page by page (`pdf.py`) |
| .docx | Word (`docx.py`) |

A file without a suffix is sniffed: `%PDF-` is read as PDF, a ZIP holding
`word/document.xml` as DOCX, `<!doctype html`/`<html` as HTML, and anything
else that decodes as text as plain text. Every other suffix is refused as
"unsupported type" without being opened.

Every failure is an `assistant.errors.ReadError` with a one-line reason;
nothing else escapes, whatever the input. Memory is bounded: the size is
checked before reading (`max_bytes`), a DOCX may inflate to at most four
times `max_bytes`, and the text is capped at `max_chars`
(`metadata["truncated"]` is then True).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

from ..errors import AssistantError, ReadError
from ..language import detect_language
from ..types import Document
from .layout import Extracted

log = logging.getLogger(__name__)

__all__ = ["SUPPORTED_SUFFIXES", "TEXT_SUFFIXES", "read_document", "is_licence_file"]

TEXT_SUFFIXES = frozenset({".txt", ".text", ".csv", ".tsv", ".log", ".rst", ".adoc", ""})
MARKDOWN_SUFFIXES = frozenset({".md", ".markdown", ".mdx"})
HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})
SUPPORTED_SUFFIXES = frozenset(TEXT_SUFFIXES | MARKDOWN_SUFFIXES | HTML_SUFFIXES | {".json", ".pdf", ".docx"})
_LICENCE_NAMES = frozenset({"license", "licence", "copying", "notice", "unlicense"})


def is_licence_file(path: Path | str) -> bool:
    """LICENSE, LICENCE, COPYING, NOTICE (any case, any suffix, e.g. LICENSE.md, COPYING.txt)."""
    name = Path(path).name.lower()
    stem = name.split(".", 1)[0]
    return stem in _LICENCE_NAMES or stem.startswith(("license-", "licence-"))


def _megabytes(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KB" if n >= 1024 else f"{n} bytes"


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "file vanished"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if isinstance(exc, IsADirectoryError):
        return "not a regular file (directory)"
    return f"cannot read file ({exc.strerror or type(exc).__name__})"


def _read_bytes(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, after checking it is a regular file within the size limit."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            kind = "directory" if stat.S_ISDIR(info.st_mode) else "FIFO" if stat.S_ISFIFO(info.st_mode) else "device or socket"
            raise ReadError(f"not a regular file ({kind})")
        if info.st_size > max_bytes:
            raise ReadError(f"file too large ({_megabytes(info.st_size)} > limit {_megabytes(max_bytes)})")
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise ReadError(_os_reason(exc)) from None
    if len(data) > max_bytes:  # it grew after stat
        raise ReadError(f"file too large (> limit {_megabytes(max_bytes)})")
    return data


def _sniff(data: bytes) -> str:
    """The reader for a file without a suffix."""
    head = data[:1024].lstrip().lower()
    if data.startswith(b"%PDF-"):
        return ".pdf"
    if data.startswith(b"PK\x03\x04"):
        return ".docx"
    if head.startswith((b"<!doctype html", b"<html")):
        return ".html"
    return ".txt"


def _extract(suffix: str, data: bytes, path: Path, max_bytes: int, max_chars: int) -> Extracted:
    from . import text as text_reader

    if suffix == ".pdf":
        from .pdf import read_pdf

        return read_pdf(data, max_chars=max_chars)
    if suffix == ".docx":
        from .docx import read_docx

        return read_docx(data, max_chars=max_chars, max_uncompressed=4 * max_bytes)
    source, encoding = text_reader.decode_text(data)
    if not source.strip():
        raise ReadError("empty file (whitespace only)")
    if suffix in HTML_SUFFIXES:
        from .html import read_html

        extracted = read_html(source, max_chars=max_chars)
    elif suffix == ".json":
        from .jsonfile import read_json

        extracted = read_json(source, max_chars=max_chars)
    elif suffix in MARKDOWN_SUFFIXES or (suffix in (".txt", ".text", "") and text_reader.looks_like_markdown(source)):
        from .markdown import read_markdown

        extracted = read_markdown(source, max_chars=max_chars, mdx=suffix == ".mdx")
    else:
        extracted = text_reader.read_plain(source, max_chars=max_chars)
    extracted.metadata.setdefault("encoding", encoding)
    return extracted


def _doc_id(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return Path(os.path.relpath(path, root)).as_posix()


def _read(path: Path, root: Path, max_bytes: int, max_chars: int) -> Document:
    path, root = Path(path), Path(root)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ReadError(f"unsupported type ({suffix})")
    data = _read_bytes(path, max_bytes)
    if not data:
        raise ReadError("empty file")
    if not data.strip():
        raise ReadError("empty file (whitespace only)")
    kind = _sniff(data) if suffix == "" else suffix
    extracted = _extract(kind, data, path, max_bytes, max_chars)
    if not extracted.text.strip():
        raise ReadError("no text (scanned?)" if kind == ".pdf" else "no text after cleaning")
    metadata = {"format": kind.lstrip(".") or "text", **extracted.metadata}
    if extracted.truncated:
        metadata["truncated"] = True
    return Document(
        id=_doc_id(path, root),
        title=(extracted.title or "").strip()[:300] or path.stem,
        text=extracted.text,
        lang=detect_language(extracted.text),
        source=str(path.absolute()),
        sections=extracted.sections,
        metadata=metadata,
    )


def read_document(path: Path, root: Path, *, max_bytes: int, max_chars: int) -> Document:
    """Read one file into a `Document`. Raises only `ReadError` (one-line reason)."""
    try:
        return _read(path, root, max_bytes, max_chars)
    except ReadError:
        raise
    except AssistantError as exc:  # MissingExtraError and friends: keep their message
        raise ReadError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    except RecursionError:
        raise ReadError("structure nested too deeply") from None
    except MemoryError:
        raise ReadError("out of memory while reading") from None
    except OSError as exc:
        raise ReadError(_os_reason(exc)) from None
    except Exception as exc:  # a reader bug or a library surprise must not stop an index run
        log.debug("unexpected error reading %s", path, exc_info=True)
        detail = str(exc).splitlines()[0][:100] if str(exc) else ""
        raise ReadError(f"unreadable ({type(exc).__name__}{': ' + detail if detail else ''})") from None
