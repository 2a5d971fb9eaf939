"""Bench sections on the real corpus: full build, incremental updates, cold start (and serve readiness).

The model is loaded once by the caller; no timing here includes loading it,
except cold start, which is about exactly that (in a child process).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .bench import median

if TYPE_CHECKING:
    from .bench import Bench

log = logging.getLogger(__name__)

INDEX_NAME = "index-corpus"  # the full build that later sections (latency, cold start) reuse


def chunk_texts(index_dir: Path, passage_prompt: str) -> list[str]:
    """Exactly the texts the indexer embedded for the chunks in this index (prompt + `embed_text`)."""
    from .indexing import embed_text
    from .store import DB_NAME, Store, connect
    from .types import Chunk

    store = Store(connect(index_dir / DB_NAME, readonly=True))
    try:
        rows = store.db.execute(
            'SELECT c.doc_id, c.ordinal, c.start, c."end", c.text, c.headings, c.page, d.title '
            "FROM chunks c JOIN documents d ON d.id = c.doc_id ORDER BY c.id").fetchall()
    finally:
        store.close()
    texts = {}
    for r in rows:
        chunk = Chunk(r[0], r[1], r[2], r[3], r[4], tuple(json.loads(r[5])), r[6])
        text = passage_prompt + embed_text(r[7], chunk)
        texts.setdefault(text, None)  # the indexer embeds each distinct text once
    return list(texts)


def bare_encode(embedder: Any, texts: list[str], batch_size: int) -> float:
    """Seconds for the model alone to embed `texts`: `SentenceTransformer.encode` when there is one."""
    loaded = getattr(embedder, "_loaded", None)
    tick = time.perf_counter()
    if loaded is not None:
        loaded().encode(texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                        show_progress_bar=False)
    else:
        embedder.embed(texts)
    return time.perf_counter() - tick


def _build(bench: "Bench", index_dir: Path) -> tuple[float, Any]:
    from .core import Assistant

    shutil.rmtree(index_dir, ignore_errors=True)
    bot = Assistant.open(index_dir, settings=bench.settings, embedder=bench.embedder)
    try:
        tick = time.perf_counter()
        report = bot.index([bench.corpus])
        return time.perf_counter() - tick, report
    finally:
        bot.close()


def indexing(bench: "Bench", result: dict[str, Any]) -> dict[str, Any]:
    """Full builds from scratch against bare encodes of the same texts, alternating, `repeat` times."""
    pipeline: list[float] = []
    bare: list[float] = []
    ratios: list[float] = []
    report = None
    texts: list[str] = []
    index_dir = bench.workdir / INDEX_NAME
    for n in range(bench.builds):
        seconds, report = _build(bench, index_dir)
        if not texts:
            texts = chunk_texts(index_dir, bench.settings.passage_prompt)
        b = bare_encode(bench.embedder, texts, bench.settings.batch_size)
        pipeline.append(seconds)
        bare.append(b)
        ratios.append(seconds / b if b > 0 else float("nan"))
        bench.say(f"  build {n + 1}: {seconds:.1f} s, bare encode {b:.1f} s, ratio {ratios[-1]:.3f}")
    assert report is not None
    p = median(pipeline)
    return {"documents": report.documents_total, "chunks": report.chunks_total, "texts_embedded": len(texts),
            "pipeline_seconds": round(p, 3), "bare_encode_seconds": round(median(bare), 3),
            "chunks_per_second": round(report.chunks_total / p, 2) if p else None,
            "ratio_to_bare_encode": round(median(ratios), 4), "runs": {"pipeline": pipeline, "bare": bare,
                                                                         "ratios": ratios},
            "timings_last_run": {k: round(v, 3) for k, v in report.timings.items()}}


def _typical_document(corpus: Path) -> Path:
    """The median-sized document: what "one changed document" usually means."""
    from .readers import SUPPORTED_SUFFIXES, is_licence_file

    files = sorted((p for p in corpus.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES
                    and not is_licence_file(p)), key=lambda p: (p.stat().st_size, str(p)))
    return files[len(files) // 2]


_NEW_TEXT = ("# Nytt vedtak om {n}\n\nKommunestyret vedtok i møtet at søknader om sosialhjelp skal "
             "behandles digitalt. Rådmannen legger fram en evaluering av ordningen {n} innen utgangen "
             "av året, med tall for saksbehandlingstid og brukertilfredshet.\n\n"
             "## Oppfølging\n\nTjenesten følges opp av helse- og omsorgsutvalget.\n")


def incremental(bench: "Bench", result: dict[str, Any]) -> dict[str, Any]:
    """Change one document, add one, delete one; each timed against the median full build."""
    from .core import Assistant

    index_dir = bench.workdir / INDEX_NAME
    if not (index_dir / "store.sqlite").exists():
        _build(bench, index_dir)
    full = (result.get("indexing") or {}).get("pipeline_seconds")
    if not full:
        full, _ = _build(bench, index_dir)
    target = _typical_document(bench.corpus)
    original = target.read_bytes()
    added = bench.corpus / "bench-added.md"
    deleted = target.with_name("bench-deleted-" + target.name)
    runs: dict[str, list[tuple[float, int]]] = {"changed": [], "added": [], "deleted": []}
    bot = Assistant.open(index_dir, settings=bench.settings, embedder=bench.embedder)
    try:
        def timed(name: str) -> None:
            tick = time.perf_counter()
            report = bot.index([bench.corpus])
            runs[name].append((time.perf_counter() - tick, report.chunks_embedded))

        for n in range(bench.options.repeat):
            target.write_bytes(original + f"\n\nEndret i måling {n}: nye opplysninger om tjenesten.\n".encode())
            timed("changed")
            added.write_text(_NEW_TEXT.format(n=n), encoding="utf-8")
            timed("added")
            shutil.copy2(target, deleted)  # a document to delete: indexed untimed, then removed
            bot.index([bench.corpus])
            deleted.unlink()
            timed("deleted")
            target.write_bytes(original)
            added.unlink()
            bot.index([bench.corpus])  # back to the corpus as it was (untimed)
    finally:
        bot.close()
        target.write_bytes(original)
        added.unlink(missing_ok=True)
        deleted.unlink(missing_ok=True)
    out: dict[str, Any] = {"document": target.relative_to(bench.corpus).as_posix(),
                           "document_bytes": len(original), "full_build_seconds": round(full, 3)}
    for name, rows in runs.items():
        seconds = median([r[0] for r in rows])
        out[name] = {"seconds": round(seconds, 4), "chunks_embedded": int(median([r[1] for r in rows])),
                     "ratio_to_full_build": round(seconds / full, 5), "runs": [r[0] for r in rows]}
    return out


def cold_start(bench: "Bench", result: dict[str, Any]) -> dict[str, Any]:
    """Process start to the first answer, in a fresh child process, `repeat` times (the first is disk-cold)."""
    index_dir = bench.workdir / INDEX_NAME
    if not (index_dir / "store.sqlite").exists():
        _build(bench, index_dir)
    question = next((q.question for q in bench.questions if q.doc), "Hva er sosialhjelp?")
    runs = []
    for _ in range(bench.options.repeat):
        cmd = [sys.executable, "-m", "assistant.bench_child", "cold", "--index", str(index_dir),
               "--question", question, *bench.child_args()]
        tick = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=bench.child_env(), timeout=900)
        wall = time.perf_counter() - tick
        if proc.returncode != 0:
            raise RuntimeError(f"cold-start child failed: {proc.stderr.strip()[-2000:]}")
        phases = json.loads(proc.stdout.strip().splitlines()[-1])
        # `seconds`: process start to the first answer, as the child clocks it; `wall` adds its exit.
        runs.append({"seconds": phases.pop("to_first_answer"), "wall": wall, **phases})
    keys = ("imports", "open", "model_load", "first_answer", "interpreter", "wall")
    out = {"seconds": round(median([r["seconds"] for r in runs]), 3),
           **{k: round(median([r[k] for r in runs]), 3) for k in keys},
           "question": question, "runs": runs,
           "command": "python -m assistant.bench_child cold (the same steps as `assistant ask`)"}
    if not bench.options.embedder_spec:  # serve loads the model by name; a custom embedder cannot be served
        out["serve"] = serve_ready(bench, index_dir)
    return out


def serve_ready(bench: "Bench", index_dir: Path) -> dict[str, Any]:
    """`assistant serve` over an existing index: process start until it listens, and until
    `/api/health` says ready (the model loaded, the index checked: the chat can answer)."""
    import httpx

    from .loadtest import free_port

    runs = []
    log_path = bench.workdir / "serve.log"
    for _ in range(bench.options.repeat):
        port = free_port()
        cmd = [sys.executable, "-m", "assistant", "serve",
               "--index", str(index_dir), "--corpus", str(bench.corpus), "--port", str(port),
               "--model", bench.settings.model]
        with open(log_path, "w") as log_file:
            tick = time.perf_counter()
            proc = subprocess.Popen(cmd, env=bench.child_env(), stdout=subprocess.DEVNULL, stderr=log_file)
            listening = ready = None
            try:
                while ready is None and time.perf_counter() - tick < 600:
                    if proc.poll() is not None:
                        raise RuntimeError(f"serve exited: {log_path.read_text()[-2000:]}")
                    try:
                        status = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code
                    except httpx.HTTPError:
                        status = 0
                    now = time.perf_counter() - tick
                    if status and listening is None:
                        listening = now
                    if status == 200:
                        ready = now
                    time.sleep(0.05)
            finally:
                proc.terminate()
                proc.wait(30)
        if ready is None or listening is None:
            raise RuntimeError("serve was not ready within 600 s")
        runs.append({"listening": round(listening, 3), "ready": round(ready, 3)})
    return {"ready": round(median([r["ready"] for r in runs]), 3),
            "listening": round(median([r["listening"] for r in runs]), 3), "runs": runs,
            "command": "assistant serve --index INDEX --corpus CORPUS, polling GET /api/health"}


def load(bench: "Bench", result: dict[str, Any]) -> dict[str, Any]:
    """`assistant loadtest` (20 users, 120 s, churn) against `assistant serve --watch` over the corpus index."""
    from dataclasses import replace

    from .loadtest import LoadOptions, load_questions, run_served_load

    index_dir = bench.workdir / INDEX_NAME
    if not (index_dir / "store.sqlite").exists():
        _build(bench, index_dir)
    settings = replace(bench.settings, index_dir=index_dir, corpus_dirs=(bench.corpus,))
    seconds = 20.0 if bench.options.quick else 120.0
    report = run_served_load(settings, load_questions(bench.options.questions), LoadOptions(seconds=seconds),
                             say=bench.say)
    return report.to_json()
