"""Markdown and MDX: structure kept, markup dropped.

Before parsing, outside code fences, the source is cleaned of what is not
prose: YAML/TOML front matter (its `title` and `description` are kept as
title and first paragraph), Liquid (`{{ site.baseurl }}`, `{% … %}`), Kramdown
attributes and TOC markers (`{:toc}`, `{: .class}`), MDX `import`/`export`
lines and `{/* comments */}`, HTML comments, mermaid diagrams, and JSX/HTML
tags (their text children stay, and so do prose attributes such as image captions).
JSX and HTML tables (`<Table>/<TableRow>/<TableCell>`, `<table>/<tr>/<td>`)
become pipe tables so each row stays one line.

The cleaned source is parsed with markdown-it-py (CommonMark plus tables).
Headings become the heading path of sections; links keep their text; images
are dropped; emphasis markers vanish; lists are one item per line ("- ", "1. ");
table rows are "cell | cell"; ordinary code blocks are kept as text.
"""

from __future__ import annotations

import re
from typing import Iterator

from markdown_it import MarkdownIt
from markdown_it.token import Token

from .layout import Extracted, TextBuilder

_FRONT_MATTER = re.compile(r"\A\ufeff?(?:---|\+\+\+)[ \t]*\n(.*?)\n(?:---|\+\+\+|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_FM_FIELD = re.compile(r"^(title|description)\s*[:=]\s*(.*)$", re.MULTILINE)
_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})[ \t]*([\w+-]*)")
_LIQUID = re.compile(r"\{%.*?%\}|\{\{.*?\}\}", re.DOTALL)
_KRAMDOWN = re.compile(r"^[ \t]*(?:[*+-]|\d+\.)[ \t]+TOC[ \t]*\n[ \t]*\{:toc\}|\{:[^}\n]*\}", re.MULTILINE)
_IMPORT = re.compile(r"^(?:import|export)\s.*?(?:;|\n(?=\s*\n)|$)", re.MULTILINE | re.DOTALL)
_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
_MDX_COMMENT = re.compile(r"\{/\*.*?\*/\}", re.DOTALL)
_MERMAID_DIV = re.compile(r"<div[^>]*class=[\"'][^\"']*mermaid[^\"']*[\"'][^>]*>.*?</div>", re.DOTALL | re.IGNORECASE)
_TAG_START = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9.:_-]*)")
_HTML_TAGS = frozenset(
    """a abbr address article aside b bdi big blockquote body br button caption center cite code col colgroup dd
    del details dfn div dl dt em figcaption figure font footer form h1 h2 h3 h4 h5 h6 head header hr html i iframe
    img input ins kbd label li link main mark meta nav noscript ol p picture pre q s samp script section select small
    source span strike strong style sub summary sup svg table tbody td template textarea tfoot th thead time tr track
    tt u ul var video wbr""".split()
)
_DROP_CONTENT = frozenset({"script", "style", "svg", "template", "head", "noscript"})
_TABLE = frozenset({"table", "Table"})
_ROW = frozenset({"tr", "TableRow"})
_CELL = frozenset({"td", "th", "TableCell", "TableHeaderCell"})
_EMPHASIS = re.compile(r"(\*\*|__|\*|`)(?=\S)(.+?)(?<=\S)\1")


def _scan_tag_end(s: str, pos: int) -> int:
    """Index after the '>' closing a tag whose name ends at `pos`; -1 if none. Skips quotes and {…}."""
    depth = 0
    quote = ""
    limit = min(len(s), pos + 20000)
    i = pos
    while i < limit:
        c = s[i]
        if quote:
            if c == quote:
                quote = ""
        elif c in "\"'" and depth == 0 or c == "`" and depth > 0:
            quote = c
        elif c == "{":
            depth += 1
        elif c == "}":
            depth = max(0, depth - 1)
        elif c == ">" and depth == 0:
            return i + 1
        elif c == "<" and depth == 0 and s.startswith("</", i):
            return -1
        i += 1
    return -1


def _tags(s: str) -> Iterator[tuple[int, int, str, bool, bool]]:
    """(start, end, name, closing, self_closing) for every JSX/HTML tag in `s`."""
    i = 0
    while True:
        j = s.find("<", i)
        if j < 0:
            return
        m = _TAG_START.match(s, j)
        if m and (m.group(2)[0].isupper() or m.group(2).lower() in _HTML_TAGS):
            end = _scan_tag_end(s, m.end())
            if end > 0:
                yield j, end, m.group(2), m.group(1) == "/", s[end - 2] == "/"
                i = end
                continue
        if s.startswith(("<>", "</>"), j):
            yield j, j + (2 if s[j + 1] == ">" else 3), "", s[j + 1] == "/", False
            i = j + 2
            continue
        i = j + 1


def _cell_text(text: str) -> str:
    text = " ".join(_EMPHASIS.sub(r"\2", text).split())
    return text.replace("|", "\\|")


def _table_to_markdown(region: str) -> str:
    rows: list[list[str]] = []
    caption: list[str] = []
    cell: list[str] | None = None
    pos = 0
    in_caption = False
    for start, end, name, closing, _ in _tags(region):
        chunk = region[pos:start]
        if cell is not None:
            cell.append(chunk)
        elif in_caption:
            caption.append(chunk)
        pos = end
        if name in _ROW and not closing:
            rows.append([])
        elif name in _CELL:
            if closing and cell is not None:
                if not rows:
                    rows.append([])
                rows[-1].append(_cell_text("".join(cell)))
                cell = None
            elif not closing:
                cell = []
        elif name.lower() == "caption":
            in_caption = not closing
    rows = [r for r in rows if any(r)]
    out = []
    if "".join(caption).strip():
        out.append(_cell_text("".join(caption)) + "\n")
    if rows:
        width = max(len(r) for r in rows)
        lines = ["| " + " | ".join(r + [""] * (width - len(r))) + " |" for r in rows]
        lines.insert(1, "|" + " --- |" * width)
        out.append("\n".join(lines))
    return "\n\n" + "\n".join(out) + "\n\n"


_TEXT_ATTRIBUTE = re.compile(r"""\b(?:caption|title|description|summary|heading)=(?:'([^'<>]*)'|"([^"<>]*)")""")


def _text_attributes(tag: str) -> list[str]:
    """Prose held in a tag's attributes (`caption='…'`): values of three words or more."""
    values = (" ".join((m.group(1) or m.group(2) or "").split()) for m in _TEXT_ATTRIBUTE.finditer(tag))
    return [v for v in values if len(v.split()) >= 3]


def _strip_tags(s: str) -> str:
    """Replace JSX/HTML tags with a space; tables become pipe tables; script-like content goes."""
    out: list[str] = []
    pos = 0
    skip_until: tuple[str, int] | None = None  # (name, depth)
    table_start: int | None = None
    table_name = ""
    table_depth = 0
    for start, end, name, closing, self_closing in _tags(s):
        if skip_until is not None:
            if name == skip_until[0]:
                depth = skip_until[1] + (-1 if closing else 0 if self_closing else 1)
                skip_until = None if depth == 0 else (name, depth)
                if skip_until is None:
                    pos = end
            continue
        if table_start is not None:
            if name == table_name and not self_closing:
                table_depth += -1 if closing else 1
                if table_depth == 0:
                    out.append(_table_to_markdown(s[table_start:start]))
                    table_start = None
                    pos = end
            continue
        out.append(s[pos:start])
        pos = end
        captions = [] if closing else _text_attributes(s[start:end])
        if captions:  # image captions and the like are content: keep them as paragraphs
            out.append("\n\n" + "\n\n".join(captions) + "\n\n")
        if closing or self_closing:
            out.append(" ")
        elif name.lower() in _DROP_CONTENT:
            skip_until = (name, 1)
        elif name in _TABLE:
            table_start, table_name, table_depth = end, name, 1
        else:
            out.append(" ")
    if table_start is not None:
        out.append(_table_to_markdown(s[table_start:]))
    elif skip_until is None:
        out.append(s[pos:])
    return "".join(out)


def _clean_prose(s: str, mdx: bool) -> str:
    s = _HTML_COMMENT.sub(" ", s)
    s = _MERMAID_DIV.sub("\n", s)
    s = _LIQUID.sub("", s)
    s = _KRAMDOWN.sub("", s)
    if mdx:
        s = _IMPORT.sub("", s)
        s = _MDX_COMMENT.sub("", s)
    s = _strip_tags(s)
    # A line left with only spaces is blank; that keeps paragraphs apart.
    return re.sub(r"(?m)^[ \t]+$", "", s)


def preprocess(source: str, mdx: bool) -> tuple[str, dict[str, str]]:
    """Front matter fields and the cleaned Markdown source (code fences untouched, mermaid dropped)."""
    fields: dict[str, str] = {}
    m = _FRONT_MATTER.match(source)
    if m:
        for key, value in _FM_FIELD.findall(m.group(1)):
            fields.setdefault(key, value.strip().strip("'\"").strip())
        source = source[m.end():]
    out: list[str] = []
    prose: list[str] = []
    lines = source.split("\n")
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence:
            prose.append(lines[i])
            i += 1
            continue
        out.append(_clean_prose("\n".join(prose), mdx))
        prose = []
        marker = fence.group(1)
        j = i + 1
        while j < len(lines) and not lines[j].lstrip().startswith(marker):
            j += 1
        if fence.group(2).lower() != "mermaid":
            out.append("\n".join(lines[i:j + 1]))
        i = j + 1
    out.append(_clean_prose("\n".join(prose), mdx))
    return "\n".join(out), fields


def _inline(token: Token) -> str:
    parts: list[str] = []
    for child in token.children or ():
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type == "softbreak":
            parts.append(" ")
        elif child.type == "hardbreak":
            parts.append("\n")
    return "".join(parts)


def _parser(mdx: bool) -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False}).enable("table").enable("strikethrough")
    if mdx:
        md.disable("code")  # MDX has no indented code; JSX children are often indented
    return md


def read_markdown(source: str, *, max_chars: int, mdx: bool = False) -> Extracted:
    """Markdown (or MDX when `mdx`) source to cleaned, sectioned text."""
    cleaned, fields = preprocess(source, mdx)
    tokens = _parser(mdx).parse(cleaned)
    builder = TextBuilder(max_chars)
    description = fields.get("description", "")
    if description and description not in cleaned:
        builder.paragraph(description)
    first_heading: str | None = None
    first_h1: str | None = None
    list_lines: list[str] = []
    item: list[str] | None = None
    stack: list[list[int]] = []  # per open list: [ordered, next number]
    rows: list[str] = []
    cells: list[str] = []

    def flush_item() -> None:
        nonlocal item
        if item is not None and "".join(item).strip():
            depth = len(stack) - 1
            list_lines.append("  " * max(0, depth) + " ".join(" ".join(item).split()))
        item = [] if item is not None else None

    for i, tok in enumerate(tokens):
        if builder.full:
            break
        kind = tok.type
        if kind == "heading_open":
            text = _inline(tokens[i + 1]).strip()
            level = int(tok.tag[1])
            if text:
                first_heading = first_heading or text
                if level == 1:
                    first_h1 = first_h1 or text
                if stack:
                    (item if item is not None else list_lines).append(text)
                else:
                    builder.heading(text, level)
        elif kind in ("bullet_list_open", "ordered_list_open"):
            flush_item()
            start = int(tok.attrGet("start") or 1) if kind == "ordered_list_open" else 0
            stack.append([kind == "ordered_list_open", start])
        elif kind in ("bullet_list_close", "ordered_list_close"):
            flush_item()
            stack.pop()
            item = None if not stack else []
            if not stack:
                builder.paragraph("\n".join(list_lines), keep_indent=True)
                list_lines = []
        elif kind == "list_item_open":
            flush_item()
            ordered, number = stack[-1]
            item = [f"{number}." if ordered else "-"]
            stack[-1][1] += 1
        elif kind == "list_item_close":
            flush_item()
        elif kind == "inline" and tokens[i - 1].type in ("paragraph_open",):
            text = _inline(tok)
            if item is not None:
                item.append(text)
            else:
                builder.paragraph(text)
        elif kind in ("fence", "code_block"):
            if item is not None:
                item.append(" ".join(tok.content.split()))
            else:
                builder.paragraph(tok.content, keep_indent=True)
        elif kind == "inline" and tokens[i - 1].type in ("th_open", "td_open"):
            cells.append(" ".join(_inline(tok).split()))
        elif kind == "tr_close":
            if any(cells):
                rows.append(" | ".join(c for c in cells if c))
            cells = []
        elif kind == "table_close":
            builder.paragraph("\n".join(rows))
            rows = []
    title = fields.get("title") or first_h1 or first_heading
    return builder.build(title, format="mdx" if mdx else "markdown")
