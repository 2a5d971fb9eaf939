"""Thumbs up and down on answers: stored in the index database, exported as JSONL.

    record_feedback(bot, +1, answer_json(answer))   # from the web chat
    assistant feedback export --output feedback.jsonl

Each exported line is one rating: `id`, `created_at` (Unix seconds), `rating`
(1 or -1), `question`, `answer` and the `hits` (passages) the answer was built on.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TextIO

from .backend import parse_store
from .errors import AssistantError
from .store import DB_NAME, Store, connect

if TYPE_CHECKING:
    from .core import Assistant


def record_feedback(bot: "Assistant", rating: int, answer: dict[str, Any]) -> int:
    """Store a rating (+1 or -1) of an answer (as `answer_json` gives it). Returns the row id."""
    if rating not in (1, -1):
        raise ValueError("rating must be 1 or -1")
    return bot.add_feedback(rating, str(answer.get("question", "")), str(answer.get("answer", "")),
                            list(answer.get("hits", [])))


def read_feedback(index_dir: str | Path, store: str = "") -> list[dict[str, Any]]:
    """Every stored rating, oldest first, read without loading a model (`store`: `Settings.store`)."""
    address = parse_store(store)
    if address is not None:
        from .milvus_store import MilvusStore

        shared = MilvusStore.open(address, None, create=False)
        try:
            return shared.feedback()
        finally:
            shared.close()
    path = Path(index_dir) / DB_NAME
    if not path.exists():
        raise AssistantError(f"no index in {index_dir}: run `assistant index` first")
    store = Store(connect(path, readonly=True))
    try:
        return store.feedback()
    finally:
        store.close()


def write_jsonl(rows: list[dict[str, Any]], out: TextIO) -> None:
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False) + "\n")


def cmd_feedback(args: argparse.Namespace) -> int:
    from .cli import _settings

    settings = _settings(args)
    rows = read_feedback(settings.index_dir, settings.store)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            write_jsonl(rows, fh)
        if not args.json:
            print(f"Wrote {len(rows)} ratings to {args.output}.", file=sys.stderr)
    else:
        write_jsonl(rows, sys.stdout)
    return 0


def add_commands(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    p = command("feedback", cmd_feedback, "export the thumbs up/down given in the web chat (JSONL)")
    p.add_argument("action", choices=["export"], help="what to do (export: write one JSON object per rating)")
    p.add_argument("--output", "-o", help="file to write (default: standard output)")
