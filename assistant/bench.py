"""`assistant bench`: what every step costs, measured on this machine.

Sections (each figure is the median of `repeat` runs; ratios are measured in
the same run, because shared machines are noisy):

- `indexing`: a full build of the corpus from scratch, chunks/s, and the ratio
  of the pipeline's wall time to a bare `encode` of the exact texts it embeds;
- `incremental`: one document changed, one added, one deleted;
- `latency`: p50/p95 of `search` and `ask` on the real corpus and on synthetic
  stores of the given sizes, with peak RSS and disk size per size
  (`bench_synthetic`, served in a child process per size by `bench_child`);
- `cold_start`: process start to the first answer, with a breakdown;
- `approximate`: recall@10 of the IVF index against exact search, and the
  exact-search cost by size (what `vectors.APPROX_THRESHOLD` rests on);
- `peer`: the LlamaIndex default pipeline on the same corpus and model
  (`bench_peer`), or the reason it was skipped;
- `milvus`: the Milvus backend's dense and BM25 search beside FAISS, with
  recall@10, at the sizes Milvus Lite holds (`bench_milvus`).

The library logs; only the CLI prints. Nothing heavy is imported here.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

log = logging.getLogger(__name__)

DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (2_000,)
QUICK_DOCS = 10


@dataclass(frozen=True)
class BenchOptions:
    corpus: Path
    questions: Path
    output: Path = Path("bench-results/bench.json")
    sizes: tuple[int, ...] = DEFAULT_SIZES
    repeat: int = 3
    build_repeat: int | None = None  # full builds per side (default: repeat); they dominate the run time
    quick: bool = False
    skip_peer: bool = False
    max_docs: int | None = None  # a subset of the corpus (the quick run uses 10 documents)
    recall_size: int | None = None  # default: the largest synthetic size
    # How a child process builds the embedder: "module:factory" (tests), else the settings' model.
    embedder_spec: str | None = None
    sections: tuple[str, ...] = ("indexing", "incremental", "latency", "cold_start", "approximate", "peer",
                                 "milvus")  # "load" (`assistant loadtest`, 2 minutes) runs when named in --only


@dataclass
class Bench:
    """What a bench run shares between its sections."""

    options: BenchOptions
    settings: Any  # assistant.settings.Settings
    embedder: Any  # assistant.embedding.Embedder
    workdir: Path
    corpus: Path  # the (possibly subset) corpus actually indexed
    questions: list[Any] = field(default_factory=list)  # evaluate.Question
    say: Callable[[str], None] = lambda message: None

    @property
    def builds(self) -> int:
        return self.options.build_repeat or self.options.repeat

    def child_args(self) -> list[str]:
        if self.options.embedder_spec:
            return ["--embedder", self.options.embedder_spec]
        return ["--model", self.settings.model]

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        env["ASSISTANT_CACHE"] = str(self.settings.cache_dir)
        return env


# -- statistics ------------------------------------------------------------------
def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return float(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    ms = [s * 1000.0 for s in seconds]
    return {"p50_ms": round(percentile(ms, 50), 2), "p95_ms": round(percentile(ms, 95), 2), "n": len(ms)}


# -- the machine -----------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    versions = {}
    for name in ("torch", "faiss-cpu", "sentence-transformers", "llama-index-core", "numpy"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:  # not installed
            pass
    return {"cores": os.cpu_count(), "cpu": cpu, "ram_gb": ram, "python": platform.python_version(),
            "platform": platform.platform(), "versions": versions, "load_start": list(os.getloadavg())}


# -- the run -----------------------------------------------------------------------
def prepare_corpus(source: Path, target: Path, questions: Sequence[Any], max_docs: int | None) -> Path:
    """A private copy of the corpus (the incremental section edits it); a subset with `max_docs`.

    The subset prefers documents that dev questions point at, so passage@5 still means something.
    """
    from .readers import SUPPORTED_SUFFIXES, is_licence_file

    files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES
                   and not is_licence_file(p)
                   and not any(part.startswith(".") for part in p.relative_to(source).parts))
    if max_docs is not None:
        wanted = [source / q.doc for q in questions if q.doc]
        chosen = list(dict.fromkeys(p for p in wanted if p in set(files)))[:max_docs]
        chosen += [p for p in files if p not in chosen][: max_docs - len(chosen)]
        files = sorted(chosen)
    for path in files:
        dest = target / path.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    return target


def run_bench(options: BenchOptions, *, settings: Any = None, embedder: Any = None,
              say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the benchmark and return its JSON-ready result (also written to `options.output`)."""
    from .embedding import load_embedder
    from .evaluate import load_questions
    from .settings import Settings

    settings = settings or Settings.load()
    embedder = embedder or load_embedder(settings)
    say = say or (lambda message: log.info("%s", message))
    started = time.perf_counter()
    result: dict[str, Any] = {"machine": machine_info(), "options": _options_json(options)}
    with tempfile.TemporaryDirectory(prefix="assistant-bench-") as tmp:
        workdir = Path(tmp)
        questions, _ = load_questions(options.questions) if options.questions.exists() else ([], None)
        corpus = prepare_corpus(options.corpus, workdir / "corpus", questions, options.max_docs)
        present = {p.relative_to(corpus).as_posix() for p in corpus.rglob("*") if p.is_file()}
        questions = [q for q in questions if q.doc is None or q.doc in present]
        bench = Bench(options, replace(settings, corpus_dirs=(corpus,)), embedder, workdir, corpus,
                      questions, say)
        say(f"Loading model {getattr(embedder, 'model_id', '?')} …")
        tick = time.perf_counter()
        dim = embedder.dimension
        embedder.embed(["passage: oppvarming"])  # warm-up, outside every timing
        result["model"] = {"id": embedder.model_id, "dimension": dim,
                           "load_seconds": round(time.perf_counter() - tick, 2),
                           "batch_size": settings.batch_size}
        from . import bench_corpus, bench_milvus, bench_synthetic

        steps: list[tuple[str, Callable[[Bench, dict[str, Any]], Any]]] = [
            ("indexing", bench_corpus.indexing),
            ("incremental", bench_corpus.incremental),
            ("latency", bench_synthetic.latency),
            ("cold_start", bench_corpus.cold_start),
            ("approximate", bench_synthetic.approximate),
            ("peer", _peer),
            ("milvus", bench_milvus.milvus),
            ("load", bench_corpus.load),
        ]
        for name, step in steps:
            if name not in options.sections:
                continue
            say(f"[{name}] …")
            tick = time.perf_counter()
            try:
                result[name] = step(bench, result)
            except Exception as exc:  # one broken section must not lose the others' figures
                log.exception("bench section %s failed", name)
                result[name] = {"error": f"{type(exc).__name__}: {exc}"}
            say(f"[{name}] done in {time.perf_counter() - tick:.0f} s")
    result["machine"]["load_end"] = list(os.getloadavg())
    result["seconds"] = round(time.perf_counter() - started, 1)
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return result


def _peer(bench: Bench, result: dict[str, Any]) -> dict[str, Any]:
    if bench.options.skip_peer:
        return {"skipped": "--skip-peer"}
    from . import bench_peer

    return bench_peer.compare(bench, result)


def _options_json(options: BenchOptions) -> dict[str, Any]:
    out = {k: (str(v) if isinstance(v, Path) else v) for k, v in options.__dict__.items()}
    out["sizes"] = list(options.sizes)
    out["sections"] = list(options.sections)
    return out


# -- the table -------------------------------------------------------------------
def format_table(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [f"machine: {m['cores']} cores, {m['cpu']}, {m['ram_gb']} GB RAM; load "
             f"{m['load_start'][0]:.1f} at start, {m.get('load_end', [float('nan')])[0]:.1f} at end",
             f"model: {result['model']['id']} ({result['model']['dimension']} dims, batch "
             f"{result['model']['batch_size']}); medians of {result['options']['repeat']} runs", ""]
    ix = result.get("indexing")
    if ix and "error" not in ix:
        lines.append(f"indexing   {ix['documents']} docs, {ix['chunks']} chunks: {ix['pipeline_seconds']:.1f} s, "
                     f"{ix['chunks_per_second']:.1f} chunks/s; bare encode {ix['bare_encode_seconds']:.1f} s; "
                     f"ratio {ix['ratio_to_bare_encode']:.3f} (goal ≤ 1.15)")
    inc = result.get("incremental")
    if inc and "error" not in inc:
        for name in ("changed", "added", "deleted"):
            r = inc[name]
            lines.append(f"incremental {name:8} {r['seconds'] * 1000:8.0f} ms, {r['chunks_embedded']:4d} chunks "
                         f"embedded, {r['ratio_to_full_build'] * 100:.2f} % of a full build (goal ≤ 2 %)")
    lat = result.get("latency")
    if lat and "error" not in lat:
        lines += ["", f"{'size':>10} {'index':>8} {'search p50':>11} {'p95':>8} {'ask p50':>9} {'p95':>8} "
                  f"{'dense p50':>10} {'1 thr':>7} {'lex p50':>8} {'lex p95':>8} {'embed':>7} {'RSS MB':>8} {'disk MB':>8}"]
        for row in lat["sizes"]:
            lines.append(
                f"{row['label']:>10} {row['vector_index']:>8} {row['search']['p50_ms']:>11.1f} "
                f"{row['search']['p95_ms']:>8.1f} {row['ask']['p50_ms']:>9.1f} {row['ask']['p95_ms']:>8.1f} "
                f"{row['dense']['p50_ms']:>10.2f} {row['dense_1thread']['p50_ms']:>7.2f} {row['lexical']['p50_ms']:>8.1f} {row['lexical']['p95_ms']:>8.1f} "
                f"{row['embed']['p50_ms']:>7.1f} {row['peak_rss_mb']:>8.0f} {row['disk_mb']:>8.1f}")
        lines.append("(search = as served: the question embedded while the lexical query runs, then dense "
                     "search and fusion; ask = the question's embedding + retrieval + the composed answer)")
    cold = result.get("cold_start")
    if cold and "error" not in cold:
        lines += ["", f"cold start {cold['seconds']:.1f} s to the first answer (goal ≤ 10 s): imports "
                  f"{cold['imports']:.1f} s, open {cold['open']:.2f} s, model load {cold['model_load']:.1f} s, "
                  f"first answer {cold['first_answer']:.2f} s"]
        serve = cold.get("serve")
        if serve:
            lines.append(f"serve ready in {serve['ready']:.1f} s (goal < 15 s; listening after "
                         f"{serve['listening']:.1f} s, questions wait for the model until ready)")
    ap = result.get("approximate")
    if ap and "error" not in ap:
        lines.append("")
        for name, r in ap["recall"].items():
            lines.append(f"approximate ({name} vectors, {ap['size']}): {r['kind']} nprobe {r['nprobe']}, "
                         f"recall@10 {r['recall@10']:.3f} (goal ≥ 0.95), {r['approx_ms']:.2f} ms vs exact "
                         f"{r['exact_ms']:.1f} ms; sweep " + ", ".join(
                             f"{s['nprobe']}: {s['recall@10']:.3f}/{s['ms']:.2f} ms" for s in r["sweep"]))
        lines.append("exact search by size: " + ", ".join(
            f"{row['size']}: {row['p50_ms']:.1f} ms ({row['p50_ms_1thread']:.1f} ms on 1 thread)"
            for row in ap["exact_by_size"]))
    lt = result.get("load")
    if lt and "error" not in lt:
        lat = lt["latency"]
        lines.append(f"\nload: {lt['users']} users for {lt['seconds']:.0f} s with churn: {lt['throughput']:.1f} "
                     f"answers/s, p50 {lat['p50']:.2f} s, p95 {lat['p95']:.2f} s (goal < 2 s), p99 "
                     f"{lat['p99']:.2f} s; errors {lt['errors']}, wrong-document {lt['wrong_document']}")
    peer = result.get("peer")
    if peer and "error" not in peer:
        lines.append("")
        if "skipped" in peer:
            lines.append(f"peer: skipped ({peer['skipped']})")
        else:
            lines.append(f"{'':22}{'ours':>10}{'llamaindex':>12}{'ratio':>8}")
            for key, label in (("index_seconds", "index (s)"), ("reindex_one_change_seconds", "re-index 1 (s)"),
                               ("query_p50_ms", "query p50 (ms)"), ("query_p95_ms", "query p95 (ms)"),
                               ("passage@5", "passage@5")):
                o, p, r = (_num(peer["ours"][key]), _num(peer["llamaindex"][key]),
                           _num(peer["ratios"].get(key)))
                lines.append(f"{label:22}{o:>10.3f}{p:>12.3f}{r:>8.2f}")
            lines.append("(ratio = ours / llamaindex; below 1 is better except passage@5)")
    mv = result.get("milvus")
    if mv and "error" not in mv:
        from .bench_milvus import table_lines

        lines += ["", *table_lines(mv)]
    for name in ("indexing", "incremental", "latency", "cold_start", "approximate", "peer", "milvus"):
        if isinstance(result.get(name), dict) and "error" in result[name]:
            lines.append(f"{name}: failed ({result[name]['error']})")
    lines += ["", f"total {result['seconds']:.0f} s"]
    return "\n".join(lines)


def _num(value: Any) -> float:
    return float("nan") if value is None else float(value)


# -- the command -------------------------------------------------------------------
def _default_shared() -> Path:
    return Path("..") / "shared"


def cmd_bench(args: argparse.Namespace) -> int:
    from .errors import AssistantError
    from .settings import Settings

    settings = Settings.load(model=args.model)
    corpus = Path(args.corpus)
    if not corpus.is_dir():
        raise AssistantError(f"corpus folder {corpus} not found (pass --corpus)")
    questions = Path(args.questions) if args.questions else corpus.parent / "eval" / "questions.jsonl"
    sizes = QUICK_SIZES if args.quick and not args.sizes else tuple(
        int(s.replace("_", "")) for s in (args.sizes or ",".join(map(str, DEFAULT_SIZES))).split(",") if s)
    options = BenchOptions(corpus=corpus, questions=questions, output=Path(args.output), sizes=sizes,
                           repeat=args.repeat or 3, build_repeat=args.build_repeat, quick=args.quick, skip_peer=args.skip_peer,
                           max_docs=QUICK_DOCS if args.quick else None,
                           sections=tuple(args.only.split(",")) if args.only else BenchOptions.sections)
    say = (lambda message: None) if args.json else (lambda message: print(message, file=sys.stderr, flush=True))
    result = run_bench(options, settings=settings, say=say)
    print(json.dumps(result, ensure_ascii=False) if args.json else format_table(result))
    if not args.json:
        print(f"\nwritten to {options.output}", file=sys.stderr)
    return 0


def add_commands(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    p = command("bench", cmd_bench, "measure indexing, latency, memory, cold start and a peer; write JSON")
    p.add_argument("--quick", action="store_true", help="tiny sizes and a 10-document corpus (under a minute)")
    p.add_argument("--sizes", help="synthetic store sizes in chunks, comma-separated (default 10000,100000,1000000)")
    p.add_argument("--output", default="bench-results/bench.json", help="JSON file to write")
    p.add_argument("--corpus", default=str(_default_shared() / "corpus"), help="corpus folder (default ../shared/corpus)")
    p.add_argument("--questions", help="dev questions JSONL (default: <corpus>/../eval/questions.jsonl)")
    p.add_argument("--repeat", type=int, help="runs per figure (default 3)")
    p.add_argument("--build-repeat", type=int, help="full corpus builds per side (default: --repeat)")
    p.add_argument("--skip-peer", action="store_true", help="do not run the LlamaIndex comparison")
    p.add_argument("--only", help="comma-separated sections to run (indexing,incremental,latency,cold_start,"
                   "approximate,peer,milvus; and load, which runs only when named)")


__all__ = ["BenchOptions", "Bench", "run_bench", "format_table", "machine_info", "percentile",
           "latency_summary", "add_commands"]
