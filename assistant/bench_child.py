"""The bench's child processes: `cold` (start to first answer) and `serve` (latency and peak RSS).

    python -m assistant.bench_child cold --index DIR --question Q [--model M | --embedder mod:factory]
    python -m assistant.bench_child serve --index DIR --questions FILE --repeat N [...]

Each prints one JSON object on its last line. A fresh process per measurement
keeps peak RSS and start-up costs honest. `--embedder` imports a factory
(tests pass their fake embedder this way); otherwise the model is loaded as
`assistant ask` loads it.
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from typing import Any, Sequence  # noqa: E402


def _embedder(args: argparse.Namespace) -> Any:
    from .embedding import embedder_from_factory, load_embedder
    from .settings import Settings

    return embedder_from_factory(args.embedder) if args.embedder else load_embedder(Settings.load(model=args.model))


def _interpreter_seconds() -> float:
    """Seconds from process creation to this module's first line (interpreter start-up).

    From the kernel's clock-tick start time of this process and the time since boot (Linux;
    0.0 elsewhere). psutil's create_time adds the boot time, which /proc gives in whole seconds.
    """
    try:
        import os

        with open("/proc/self/stat", encoding="ascii") as stat:
            started_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as uptime:
            now = float(uptime.read().split()[0])
        return max(0.0, now - started_ticks / os.sysconf("SC_CLK_TCK") - (time.perf_counter() - _T0))
    except (OSError, ValueError, IndexError):
        return 0.0


def cold(args: argparse.Namespace) -> dict[str, Any]:
    interpreter = _interpreter_seconds()
    tick = time.perf_counter()
    from .answering import answer_question  # noqa: F401  (what `assistant ask` imports)
    from .core import Assistant
    from .settings import Settings

    imports = time.perf_counter() - tick
    tick = time.perf_counter()
    embedder = _embedder(args)  # checks the packaged weights; the model itself loads on first use
    _ = embedder.dimension  # loads the model (opening the index would, for its stamp)
    model_load = time.perf_counter() - tick
    tick = time.perf_counter()
    bot = Assistant.open(args.index, settings=Settings.load(model=args.model), embedder=embedder)
    opened = time.perf_counter() - tick
    tick = time.perf_counter()
    answer = bot.ask(args.question)
    first = time.perf_counter() - tick
    return {"to_first_answer": interpreter + time.perf_counter() - _T0, "interpreter": interpreter,
            "imports": imports, "open": opened, "model_load": model_load,
            "first_answer": first, "citations": len(answer.citations)}


class CachedQueries:
    """An embedder that answers the bench's own query texts from a cache while `cached` is
    set (to time retrieval apart from embedding), and embeds them when it is not."""

    def __init__(self, inner: Any, cache: dict[str, Any]) -> None:
        self.inner = inner
        self.cache = cache
        self.cached = True
        self.model_id = inner.model_id
        self.fingerprint = inner.fingerprint
        self.dimension = inner.dimension

    def embed(self, texts: Sequence[str]) -> Any:
        import numpy as np

        items = list(texts)
        if self.cached and items and all(t in self.cache for t in items):
            return np.vstack([self.cache[t] for t in items])
        return self.inner.embed(items)


def serve(args: argparse.Namespace) -> dict[str, Any]:
    from . import lexical
    from .core import Assistant
    from .embedding import question_embedder
    from .settings import Settings

    settings = Settings.load(model=args.model)
    questions = json.loads(open(args.questions, encoding="utf-8").read())
    embedder = question_embedder(_embedder(args))  # what `Assistant` embeds questions with
    embedder.embed(["query: oppvarming"])  # load and warm up
    embed_s: list[float] = []
    cache: dict[str, Any] = {}
    for _ in range(args.repeat):
        for q in questions:
            text = settings.query_prompt + q
            tick = time.perf_counter()
            cache[text] = embedder.embed([text])[0]
            embed_s.append(time.perf_counter() - tick)
    queries = CachedQueries(embedder, cache)
    bot = Assistant.open(args.index, settings=settings, embedder=queries)
    tick = time.perf_counter()
    retriever = bot.retriever()  # loads the vector index
    load_s = time.perf_counter() - tick
    n = max(settings.candidates, 5 * 4)
    bot.search(questions[0], k=5)  # first touch of the store pages, untimed
    import faiss

    threads = faiss.omp_get_max_threads()
    forget = getattr(bot.query_embedder, "clear", lambda: None)  # the question-vector cache
    dense, dense_1, lex, search, whole, ask = [], [], [], [], [], []
    for _ in range(args.repeat):
        for q in questions:
            qvec = cache[settings.query_prompt + q]
            tick = time.perf_counter()
            retriever.index.search(qvec, n)
            dense.append(time.perf_counter() - tick)
            faiss.omp_set_num_threads(1)  # the same search without OpenMP (see the bench notes)
            tick = time.perf_counter()
            retriever.index.search(qvec, n)
            dense_1.append(time.perf_counter() - tick)
            faiss.omp_set_num_threads(threads)
            tick = time.perf_counter()
            lexical.search(retriever.store.db, q, n, doc_freq=retriever.doc_freq, total=retriever.index.size)
            lex.append(time.perf_counter() - tick)
            tick = time.perf_counter()
            bot.search(q, k=5)
            search.append(time.perf_counter() - tick)
            forget()  # time a question the process has not seen (cold cache)
            queries.cached = False  # as served: the question embedded while the lexical query runs
            tick = time.perf_counter()
            bot.search(q, k=5)
            whole.append(time.perf_counter() - tick)
            queries.cached = True
            forget()
            tick = time.perf_counter()
            bot.ask(q)
            ask.append(time.perf_counter() - tick)
    info = bot.info()
    return {"embed": embed_s, "dense": dense, "dense_1thread": dense_1, "omp_threads": threads, "lexical": lex, "retrieve": search, "search": whole,
            "ask": ask,
            "vector_index": info.vector_index, "chunks": info.chunks, "index_load_seconds": load_s,
            "peak_rss_mb": _peak_rss_mb()}


def _peak_rss_mb() -> float:
    """This process's peak resident memory, in MB: the kernel's VmHWM for this image.

    Not `getrusage().ru_maxrss`: on Linux that carries the parent's peak across fork and exec,
    and the bench's parent holds a model of its own.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m assistant.bench_child")
    parser.add_argument("mode", choices=("cold", "serve"))
    parser.add_argument("--index", required=True)
    parser.add_argument("--question")
    parser.add_argument("--questions", help="JSON list of questions (serve)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model")
    parser.add_argument("--embedder", help="module:factory of an embedder (tests)")
    args = parser.parse_args(argv)
    out = cold(args) if args.mode == "cold" else serve(args)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
