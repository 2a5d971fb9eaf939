"""Plain text: encoding detection, binary detection, and the plain-text layout.

Encoding is decided by a simple cascade, in this order:

1. a byte-order mark (UTF-8, UTF-16 LE/BE, UTF-32) wins;
2. BOM-less UTF-16 is recognised by NUL bytes at alternating positions;
3. anything else with NUL bytes, or with many control characters, is binary;
4. strict UTF-8;
5. *mostly* UTF-8 (at least as many valid multi-byte sequences as invalid
   bytes) decodes as UTF-8 with U+FFFD replacements, so one bad byte in a
   UTF-8 file does not turn every "ø" into "Ã¸";
6. otherwise Windows-1252 (a superset of Latin-1 for the printable range).

Plain text keeps its line breaks. Web boilerplate lines are dropped
(`assistant.cleaning`). A short line standing alone before prose is taken as a
heading, so copied web articles get sections. Text that looks like Markdown
(ATX headings) is handed to the Markdown reader by the dispatcher.
"""

from __future__ import annotations

import codecs
import re

from ..cleaning import strip_boilerplate
from ..errors import ReadError
from .layout import Extracted, TextBuilder

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 12, 13)) + b"\x7f"
_HIGH_BYTES = bytes(range(128, 256))
_UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")
_MD_HEADING = re.compile(r"^#{1,6}[ \t]+\S", re.MULTILINE)
_SENTENCE_END = (".", "!", "?", ":", ";", ",", "…")


def _utf16_without_bom(sample: bytes) -> str | None:
    if len(sample) < 4:
        return None
    even = sample[0::2].count(0) / max(1, len(sample[0::2]))
    odd = sample[1::2].count(0) / max(1, len(sample[1::2]))
    if odd > 0.3 and even < 0.05:
        return "utf-16-le"
    if even > 0.3 and odd < 0.05:
        return "utf-16-be"
    return None


def looks_binary(data: bytes) -> bool:
    """NUL bytes, or more than 5% control characters in the first 64 KB."""
    sample = data[:65536]
    if b"\x00" in data:
        return True
    if not sample:
        return False
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    return controls / len(sample) > 0.05


def detect_encoding(data: bytes) -> str:
    """The codec name `decode_text` uses for `data` (see the module docstring)."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name
    utf16 = _utf16_without_bom(data[:4096])
    if utf16:
        return utf16
    if looks_binary(data):
        raise ReadError("binary file")
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    sequences = _UTF8_MULTIBYTE.findall(data)
    valid = len(sequences)
    high = len(data) - len(data.translate(None, _HIGH_BYTES))
    invalid = high - sum(len(m) for m in sequences)
    return "utf-8" if valid >= invalid else "cp1252"


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode `data` as text; return (text, encoding). Raises ReadError('binary file')."""
    encoding = detect_encoding(data)
    text = data.decode(encoding, errors="replace")
    if encoding.startswith("utf-16") or encoding == "utf-32":
        text = text.lstrip("\ufeff")
        if "\x00" in text:
            raise ReadError("binary file")
    return text, encoding


def looks_like_markdown(text: str) -> bool:
    """ATX headings at the start or at least twice: treat as Markdown."""
    first = text.lstrip()[:200]
    return first.startswith("#") and bool(_MD_HEADING.match(first)) or len(_MD_HEADING.findall(text, 0, 200000)) >= 2


def _is_heading_line(paragraph: str, following: str | None) -> bool:
    if "\n" in paragraph or not following or len(paragraph) > 80 or len(following) < 80:
        return False
    if paragraph.endswith(_SENTENCE_END) or "," in paragraph or not paragraph[0].isupper():
        return False
    return len(paragraph.split()) <= 12 and any(c.isalpha() for c in paragraph)


def read_plain(text: str, *, max_chars: int, file_title: str | None = None) -> Extracted:
    """Plain text: blank-line paragraphs, boilerplate dropped, short lone lines as headings."""
    cleaned = strip_boilerplate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    paragraphs = [p.strip() for p in re.split(r"\n[ \t]*\n", "\n".join(cleaned.lines))]
    paragraphs = [p for p in paragraphs if p]
    title = cleaned.breadcrumb_title
    builder = TextBuilder(max_chars)
    for i, paragraph in enumerate(paragraphs):
        following = paragraphs[i + 1] if i + 1 < len(paragraphs) else None
        if title and paragraph == title:
            builder.heading(paragraph, 1)
        elif _is_heading_line(paragraph, following):
            builder.heading(paragraph, 2 if title else 1)
        else:
            builder.paragraph(paragraph, keep_indent=True)
        if builder.full:
            break
    if title is None and paragraphs and len(paragraphs[0]) <= 120 and "\n" not in paragraphs[0]:
        title = paragraphs[0]
    return builder.build(title or file_title, boilerplate_dropped=len(cleaned.dropped))
