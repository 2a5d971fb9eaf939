"""The `assistant` command line. Talkative where the library is quiet; errors are one line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import AssistantError
from .settings import Settings


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.load(index_dir=getattr(args, "index", None), model=getattr(args, "model", None),
                         corpus_dirs=getattr(args, "corpus", None) or None)


def _open(args: argparse.Namespace, *, check: bool = True, embedder: Any = None):  # type: ignore[no-untyped-def]
    from .core import Assistant

    settings = _settings(args)
    _say(args, f"Loading model {settings.model} …")
    return Assistant.open(settings=settings, check=check, embedder=embedder)


def _say(args: argparse.Namespace, message: str) -> None:
    if not getattr(args, "json", False):
        print(message, file=sys.stderr)


def _progress_bar(enabled: bool) -> Callable[[str, int, int], None] | None:
    if not enabled:
        return None
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None or bar.total != total:
            if bar is not None:
                bar.close()
            label = {"read": "Reading", "embed": "Embedding"}.get(stage, stage)
            bar = bars[stage] = tqdm(total=total, desc=label, unit="doc" if stage == "read" else "chunk",
                                     file=sys.stderr, leave=False)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def cmd_index(args: argparse.Namespace) -> int:
    bot = _open(args, check=not args.rebuild)  # a rebuild must work over a damaged or mismatched index
    report = bot.index(rebuild=args.rebuild, progress=_progress_bar(not args.json and sys.stderr.isatty()))
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False))
        return 0
    print(f"Indexed in {report.seconds:.1f} s: {len(report.added)} added, {len(report.changed)} changed, "
          f"{len(report.removed)} removed, {report.unchanged} unchanged; {report.chunks_embedded} chunks embedded; "
          f"{report.documents_total} documents, {report.chunks_total} chunks in the index.")
    for s in report.skipped:
        print(f"  skipped {s.doc}: {s.reason}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from .answering import hit_json

    bot = _open(args)
    hits = bot.search(args.question, k=args.k)
    if args.json:
        print(json.dumps([hit_json(h) for h in hits], ensure_ascii=False))
        return 0
    for h in hits:
        where = f" › {h.heading_path}" if h.heading_path else ""
        page = f" (s. {h.page})" if h.page else ""
        print(f"[{h.rank}] {h.score:.3f}  {h.doc_id}{page}{where}")
        print("    " + h.text[:400].replace("\n", " ") + ("…" if len(h.text) > 400 else ""))
    if not hits:
        print("No passages found.")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from datetime import datetime

    info = _open(args).info()
    if args.json:
        print(json.dumps(info.to_json(), ensure_ascii=False))
        return 0
    updated = datetime.fromtimestamp(info.updated_at).isoformat(timespec="seconds") if info.updated_at else "never"
    print(f"index:      {info.index_dir}\ndocuments:  {info.documents}\nchunks:     {info.chunks}\n"
          f"model:      {info.model} ({info.dimension} dims)\nvectors:    {info.vector_index}\n"
          f"lexical:    {info.lexical}\n"
          f"size:       {info.size_bytes / 1e6:.1f} MB\nupdated:    {updated}")
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    from .answering import answer_json, format_answer

    bot = _open(args)
    if args.question:
        answer = bot.ask(args.question)
        print(json.dumps(answer_json(answer), ensure_ascii=False) if args.json else format_answer(answer))
        return 0
    history: list[tuple[str, str]] = []
    print("Ask a question (empty line or Ctrl-D to quit).", file=sys.stderr)
    while True:
        try:
            question = input("> ").strip()
        except EOFError:
            break
        if not question:
            break
        try:
            answer = bot.ask(question, history)
        except AssistantError as exc:
            print(f"Error: {exc}")
            continue
        print(format_answer(answer) + "\n")
        history.append((question, answer.text))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import format_report, run_eval

    result = run_eval(Path(args.file), settings=_settings(args), corpus_dirs=args.corpus or None,
                      index_dir=args.index, progress=None if args.json else (lambda m: print(m, file=sys.stderr)),
                      answers=not args.no_answers)
    print(json.dumps(result, ensure_ascii=False) if args.json else format_report(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="assistant", description="kommune-assistent: cited answers "
                                     "from Norwegian municipal documents.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the library does")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        p.add_argument("--index", help="index folder (default: index/ or $ASSISTANT_INDEX)")
        p.add_argument("--model", help="sentence-transformers model name or local path "
                       "(default: the packaged multilingual-e5-small)")
        p.add_argument("--json", action="store_true", help="print one JSON object")
        return p

    p = command("index", cmd_index, "index the corpus folders incrementally")
    p.add_argument("--corpus", action="append", help="corpus folder (repeatable; default: corpus/)")
    p.add_argument("--rebuild", action="store_true", help="build a fresh index and swap it in")

    p = command("search", cmd_search, "show the best passages for a question")
    p.add_argument("question")
    p.add_argument("-k", type=int, default=5, help="how many passages (default 5)")

    p = command("ask", cmd_ask, "answer a question with citations (interactive without a question)")
    p.add_argument("question", nargs="?")

    command("info", cmd_info, "show what the index holds")

    p = command("eval", cmd_eval, "measure retrieval (and answers) on a JSONL or SQuAD-style file")
    p.add_argument("file")
    p.add_argument("--corpus", action="append", help="corpus folder (JSONL files; default: ../shared/corpus)")
    p.add_argument("--no-answers", action="store_true", help="measure retrieval only")

    for extra in _extra_commands():
        extra(sub, command)
    return parser


def _extra_commands() -> list[Callable[..., None]]:
    """Subcommands that live beside their features (serve, watch, bench, feedback)."""
    found = []
    for module, name in (("web", "add_commands"), ("watch", "add_commands"), ("bench", "add_commands"),
                         ("feedback", "add_commands"), ("loadtest", "add_commands")):
        try:
            mod = __import__(f"assistant.{module}", fromlist=[name])
        except ImportError as exc:
            if exc.name and exc.name.startswith("assistant"):
                continue
            raise
        found.append(getattr(mod, name))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # it warns about every odd PDF it still reads
    try:
        return int(args.func(args))
    except AssistantError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
