"""JSON text catalogues: every string value with its key path.

A message catalogue such as `messages/nb.json` becomes one line per entry,
"key.path: value", grouped into one section per top-level key (the heading
is that key). Entries sharing their first two keys form one paragraph. List
items get their index in the path ("0.doc: …"), so a top-level list of
records reads fine too. Inline markup in values (`<lenke>…</lenke>`) is
dropped. Numbers, booleans and nulls are not text; a JSON file with no
string that contains a letter is refused with a reason. The title is the value
that at least two keys named "title" share ("AppHeader.title",
"Informasjon.title": "Søknad om økonomisk sosialhjelp"), since the file name
("nb.json") says nothing; without one, the file name stays.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any, Iterator

from ..errors import ReadError
from .layout import Extracted, TextBuilder

_TAG = re.compile(r"</?[A-Za-z][\w-]*\s*/?>")
_MAX_DEPTH = 200


def _entries(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    """(key path, string) pairs, depth-first, iteratively (deep JSON must not recurse)."""
    stack: list[tuple[tuple[str, ...], Any]] = [(path, value)]
    while stack:
        here, node = stack.pop()
        if len(here) > _MAX_DEPTH:
            continue
        if isinstance(node, dict):
            stack.extend((here + (str(k),), v) for k, v in reversed(list(node.items())))
        elif isinstance(node, list):
            stack.extend((here + (str(i),), v) for i, v in reversed(list(enumerate(node))))
        elif isinstance(node, str):
            text = " ".join(_TAG.sub("", node).split())
            if any(c.isalpha() for c in text):
                yield here, text


def read_json(source: str, *, max_chars: int) -> Extracted:
    try:
        data = json.loads(source)
    except RecursionError:
        raise ReadError("JSON nested too deeply") from None
    except ValueError as exc:
        raise ReadError(f"invalid JSON: {str(exc).splitlines()[0][:120]}") from None
    builder = TextBuilder(max_chars)
    section: str | None = None
    group: tuple[str, ...] | None = None
    lines: list[str] = []
    count = 0
    titles: list[str] = []
    for path, text in _entries(data):
        count += 1
        if path and path[-1].lower() == "title" and len(text) <= 80:
            titles.append(text)
        top = path[0] if path else ""
        if top != section:
            builder.paragraph("\n".join(lines))
            lines = []
            section = top
            if top:
                builder.heading(top, 1)
        key = path[:2] if len(path) > 2 else path[:1]
        if key != group and lines:
            builder.paragraph("\n".join(lines))
            lines = []
        group = key
        lines.append(f"{'.'.join(path) or '(value)'}: {text}")
        if builder.full:
            break
    builder.paragraph("\n".join(lines))
    if count == 0:
        raise ReadError("no text in JSON (no string values)")
    return builder.build(_title(titles), format="json", entries=count)


def _title(titles: list[str]) -> str | None:
    """The catalogue's title: the value most keys named "title" share, if at least two do
    ("AppHeader.title" and "Informasjon.title": "Søknad om økonomisk sosialhjelp")."""
    if not titles:
        return None
    best, count = Counter(titles).most_common(1)[0]  # on a tie, the first seen
    return best if count >= 2 else None
