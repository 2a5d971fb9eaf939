"""`assistant eval`: retrieval (and answer) quality on a question file.

Two formats, detected from the content:
- JSONL like `shared/eval/questions.jsonl`: `question`, `lang`, `doc` (relative to
  the corpus root, or null when unanswerable), `answer_passage`, `type`.
- SQuAD-style JSON like NorQuAD: the contexts become the corpus (one text file
  each), and each answer span is the gold passage.

A hit counts for passage@k when it comes from the gold document and covers at
least half of the gold quote (longest common run of characters, after folding
case and white space). The same figures are computed for lexical-only and
dense-only search on the same chunks, in the same run. The output keys are
stable: `n`, `passage@1`, `passage@5`, `passage@10`, `doc@5`, `mrr@10`,
`by_lang`, `by_type`, `baselines`, `seconds_index`, `seconds_per_query`, and,
with answers, `refusal_rate`, `false_refusal_rate`, `citation_validity`. A SQuAD
file's questions are all answerable, so its answers measure false refusals
only (`refusal_rate` is None); `--no-answers` measures retrieval alone.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, replace
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any, Callable, Sequence

from .backend import eval_store
from .errors import AssistantError
from .settings import Settings
from .types import Hit

MODES = ("hybrid", "lexical", "dense")


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    lang: str
    doc: str | None
    quote: str
    type: str


def load_questions(path: Path, squad_corpus: Path | None = None) -> tuple[list[Question], Path | None]:
    """Questions from a JSONL or SQuAD file; for SQuAD, also writes its contexts under `squad_corpus`."""
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AssistantError(f"cannot read {path}: {exc.strerror}") from None
    stripped = raw.lstrip()
    if stripped.startswith("{") and '"data"' in stripped[:200]:
        data = json.loads(raw)
        return _squad(data, squad_corpus), squad_corpus
    questions = []
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            q = json.loads(line)
        except json.JSONDecodeError:
            raise AssistantError(f"{path}:{n}: not JSON; expected JSONL or SQuAD JSON") from None
        questions.append(Question(str(q.get("id", n)), q["question"], q.get("lang", "nb"), q.get("doc"),
                                  q.get("answer_passage") or "", q.get("type", "unknown")))
    return questions, None


def _squad(data: dict[str, Any], corpus: Path | None) -> list[Question]:
    """Questions of a SQuAD file; its distinct contexts are written to `corpus`, one file each.

    A context that occurs under several articles (NorQuAD repeats some) is one document,
    so a hit on either copy counts. Files left from other versions of the file are removed.
    """
    if corpus is None:
        raise AssistantError("a SQuAD file needs a folder for its contexts")
    corpus.mkdir(parents=True, exist_ok=True)
    questions = []
    wanted: set[str] = set()
    for a, article in enumerate(data["data"]):
        for para in article["paragraphs"]:
            context = para["context"]
            digest = hashlib.sha256(context.encode("utf-8")).hexdigest()[:12]
            doc_id = f"{para.get('document_id', a)}-{digest}.txt"
            if doc_id not in wanted:
                wanted.add(doc_id)
                target = corpus / doc_id
                if not target.exists():
                    target.write_text(context, encoding="utf-8")
            for qa in para["qas"]:
                if qa.get("is_impossible") or not qa.get("answers"):
                    questions.append(Question(str(qa["id"]), qa["question"], "nb", None, "", "unanswerable"))
                    continue
                questions.append(Question(str(qa["id"]), qa["question"], "nb", doc_id,
                                          qa["answers"][0]["text"], "squad"))
    for stale in corpus.iterdir():
        if stale.name not in wanted:
            stale.unlink()
    return questions


_SPACE = re.compile(r"\s+")


def _fold(text: str) -> str:
    return _SPACE.sub(" ", text).strip().lower()


def covers(quote: str, text: str) -> bool:
    """Does `text` hold at least half of `quote` as one common run of characters?"""
    q, t = _fold(quote), _fold(text)
    if not q:
        return False
    if q in t:
        return True
    m = SequenceMatcher(None, q, t, autojunk=False).find_longest_match(0, len(q), 0, len(t))
    return m.size * 2 >= len(q)


def _score(q: Question, hits: Sequence[Hit]) -> dict[str, float]:
    rank = next((h.rank for h in hits[:10] if h.doc_id == q.doc and covers(q.quote, h.text)), None)
    return {
        "passage@1": float(rank is not None and rank <= 1),
        "passage@5": float(rank is not None and rank <= 5),
        "passage@10": float(rank is not None),
        "doc@5": float(any(h.doc_id == q.doc for h in hits[:5])),
        "mrr@10": 1.0 / rank if rank else 0.0,
    }


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    if not rows:
        return {"n": 0}
    keys = rows[0].keys()
    return {"n": len(rows), **{k: round(sum(r[k] for r in rows) / len(rows), 4) for k in keys}}


def _group(rows: list[tuple[Question, dict[str, float]]], key: Callable[[Question], str]) -> dict[str, Any]:
    groups: dict[str, list[dict[str, float]]] = {}
    for q, r in rows:
        groups.setdefault(key(q), []).append(r)
    return {name: _mean(rs) for name, rs in sorted(groups.items())}


def default_eval_index(settings: Settings, corpus_dirs: Sequence[Path]) -> Path:
    key = json.dumps([settings.model, [str(Path(c).resolve()) for c in corpus_dirs]])
    return settings.cache_dir / "eval-index" / hashlib.sha256(key.encode()).hexdigest()[:16]


def run_eval(path: Path, *, settings: Settings, corpus_dirs: Sequence[str | Path] | None = None,
             index_dir: str | Path | None = None, answers: bool = True,
             progress: Callable[[str], None] | None = None, assistant: Any = None) -> dict[str, Any]:
    from .core import Assistant

    say = progress or (lambda message: None)
    squad_dir = settings.cache_dir / "squad" / hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    questions, squad_corpus = load_questions(path, squad_dir)
    if squad_corpus is not None:
        dirs = [squad_corpus]
    elif corpus_dirs:
        dirs = [Path(c) for c in corpus_dirs]
    else:
        dirs = [path.resolve().parent.parent / "corpus"]
    index = Path(index_dir) if index_dir else default_eval_index(settings, dirs)
    store = eval_store(settings.store, index.name)  # never index the eval corpus into the served store
    bot = assistant or Assistant.open(settings=replace(settings, index_dir=index, corpus_dirs=tuple(dirs),
                                                       store=store))
    say(f"Indexing {', '.join(map(str, dirs))} into {index} …")
    report = bot.index(dirs)
    say(f"  {report.documents_total} documents, {report.chunks_total} chunks "
        f"({report.chunks_embedded} embedded now, {report.seconds:.1f} s)")

    retriever = bot.retriever()
    rows: dict[str, list[tuple[Question, dict[str, float]]]] = {m: [] for m in MODES}
    answerable = [q for q in questions if q.doc]
    tick = time.perf_counter()
    for n, q in enumerate(answerable, 1):
        qvec = retriever.embed_query(q.question)
        for mode in MODES:
            hits = retriever.search(q.question, 10, mode=mode, query_vector=qvec)
            rows[mode].append((q, _score(q, hits)))
        if n % 50 == 0:
            say(f"  searched {n}/{len(answerable)}")
    per_query = (time.perf_counter() - tick) / max(1, len(answerable))

    def summary(mode: str) -> dict[str, Any]:
        return {**_mean([r for _, r in rows[mode]]), "by_lang": _group(rows[mode], lambda q: q.lang),
                "by_type": _group(rows[mode], lambda q: q.type)}

    result: dict[str, Any] = {**summary("hybrid"), "baselines": {m: summary(m) for m in MODES[1:]},
                              "seconds_index": round(report.seconds, 2),
                              "seconds_per_query": round(per_query, 4),
                              "failures": [q.id for q, r in rows["hybrid"] if not r["passage@5"]],
                              "file": str(path), "documents": report.documents_total,
                              "chunks": report.chunks_total}
    if answers:  # a SQuAD file has only answerable questions: its refusal_rate is None
        result.update(_answer_metrics(bot, questions, say))
    return result


def _answer_metrics(bot: Any, questions: list[Question], say: Callable[[str], None]) -> dict[str, Any]:
    from .citations import check_citations

    refused_unanswerable, refused_answerable, valid, wrong = [], [], [], []
    tick = time.perf_counter()
    for q in questions:
        answer = bot.ask(q.question)
        valid.append(check_citations(answer))
        if q.doc is None:
            refused_unanswerable.append(answer.refused)
        else:
            refused_answerable.append(answer.refused)
            if answer.refused:
                wrong.append(q.id)
    say(f"  answered {len(questions)} questions")
    rate = lambda xs: round(sum(xs) / len(xs), 4) if xs else None  # noqa: E731
    return {"refusal_rate": rate(refused_unanswerable), "false_refusal_rate": rate(refused_answerable),
            "citation_validity": rate(valid), "n_unanswerable": len(refused_unanswerable),
            "false_refusals": wrong,
            "seconds_per_answer": round((time.perf_counter() - tick) / max(1, len(questions)), 4)}


def format_report(result: dict[str, Any]) -> str:
    lines = [f"{result['file']}: {result['n']} answerable questions over {result['documents']} documents "
             f"({result['chunks']} chunks)", ""]
    header = f"{'':12}{'passage@1':>10}{'passage@5':>10}{'passage@10':>11}{'doc@5':>8}{'mrr@10':>8}"
    lines.append(header)

    def row(name: str, r: dict[str, Any]) -> str:
        return (f"{name:12}{r.get('passage@1', 0):>10.3f}{r.get('passage@5', 0):>10.3f}"
                f"{r.get('passage@10', 0):>11.3f}{r.get('doc@5', 0):>8.3f}{r.get('mrr@10', 0):>8.3f}")

    lines.append(row("hybrid", result))
    for mode, r in result["baselines"].items():
        lines.append(row(mode, r))
    for group in ("by_lang", "by_type"):
        for name, r in result[group].items():
            lines.append(row(f"  {name} ({r['n']})", r))
    lines.append("")
    lines.append(f"index {result['seconds_index']:.1f} s, {result['seconds_per_query'] * 1000:.0f} ms per query "
                 "(three searches)")
    if "refusal_rate" in result:
        refused = "– (none unanswerable)" if result["refusal_rate"] is None else result["refusal_rate"]
        lines.append(f"refusal rate (unanswerable) {refused}, false refusals "
                     f"{result['false_refusal_rate']}, citation validity {result['citation_validity']}")
    if result["failures"]:
        lines.append("not in top 5: " + ", ".join(result["failures"]))
    return "\n".join(lines)
