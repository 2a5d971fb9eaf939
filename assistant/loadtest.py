"""`assistant loadtest`: simulated users over the HTTP API while documents come and go.

    assistant loadtest --corpus ../shared/corpus --seconds 120 --users 20
    assistant loadtest --url http://127.0.0.1:7860 --seconds 30      # a server that is already running

Without `--url` it starts `assistant serve --watch` in its own process on
127.0.0.1 (a free port), over the corpus folders plus a scratch folder: a
churn thread adds a small document there and deletes an older one every few
seconds, and the server's watcher keeps the index up to date. Each user asks dev-set
questions (and churn questions), follows up about half of the time with the
previous answer as history, and honours `Retry-After`. Requests go to
loopback only: any other host is refused. The run is bounded by `--seconds`
and `--max-requests`, and stops by itself.

The report: throughput, p50/p95/p99 latency, errors (anything but a 200, a
4xx or a 503 counts), rejections (503, back-pressure), and wrong answers:
a citation of a churn document whose removal was committed before the
request started, or a citation whose quote is not in a retrieved passage of
that document.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence
from urllib.parse import urlsplit

from .bench import percentile
from .churn import Churn, Question
from .errors import AssistantError

if TYPE_CHECKING:
    from .settings import Settings

log = logging.getLogger(__name__)

FOLLOW_UPS = {"nb": "Kan du si mer om det?", "nn": "Kan du seie meir om det?", "en": "Can you tell me more about that?"}


@dataclass(frozen=True)
class LoadOptions:
    users: int = 20
    seconds: float = 120.0
    max_requests: int = 50_000
    followup_rate: float = 0.5
    churn_rate: float = 0.2  # share of questions about churn documents
    churn_every: float = 2.0  # seconds between churn steps (one add, and a delete once enough exist)
    timeout: float = 60.0  # per request
    seed: int = 0


@dataclass(frozen=True)
class LoadReport:
    url: str
    users: int
    seconds: float
    requests: int
    ok: int
    errors: int
    rejected: int
    client_errors: int
    wrong_document: int
    bad_quotes: int
    throughput: float
    latency: dict[str, float]
    latency_by_kind: dict[str, dict[str, float]]  # "question", "follow-up", "churn": count, p50, p95
    churn_added: int
    churn_removed: int
    cpus: int
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    error_samples: tuple[str, ...] = ()
    wrong_samples: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check_loopback_url(url: str) -> str:
    """`url` without a trailing slash, or `AssistantError` unless it is http(s) on a loopback address."""
    from .web import is_loopback

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AssistantError(f"{url!r} is not an http URL")
    if not is_loopback(parts.hostname):
        raise AssistantError(f"the load test only sends requests to loopback (127.0.0.1, ::1), not {parts.hostname}")
    return url.rstrip("/")


def load_questions(path: Path) -> list[Question]:
    """The dev questions (JSONL with `question` and `lang`)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            out.append(Question(str(row["question"]), str(row.get("lang") or "nb")))
    if not out:
        raise AssistantError(f"no questions in {path}")
    return out


# -- users ------------------------------------------------------------------------
@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    by_kind: dict[str, list[float]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # ok, rejected, client_error, error
    errors: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    bad_quotes: int = 0
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, kind: str, error: str | None = None) -> None:
        with self.lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            if error is not None:
                self.errors.append(error[:200])


def check_answer(body: dict[str, Any], started: float, gone: dict[str, float]) -> list[str]:
    """What is wrong with one `/api/ask` answer: deleted documents cited, quotes not in their passage."""
    problems = []
    passages: dict[str, list[str]] = {}
    for hit in body.get("hits", []):
        passages.setdefault(hit["doc_id"], []).append(hit["text"])
    for c in body.get("citations", []):
        doc = c["doc_id"]
        if doc in gone and gone[doc] < started:
            problems.append(f"cites {doc}, removed {started - gone[doc]:.2f} s before the request")
        for quote in c.get("quotes", []):
            if not any(quote and quote in text for text in passages.get(doc, [])):
                problems.append(f"quote not in a passage of {doc}: {quote[:60]!r}")
    return problems


def _user(n: int, url: str, questions: Sequence[Question], options: LoadOptions, churn: Churn | None,
          deadline: float, tally: _Tally) -> None:
    import httpx

    rng = random.Random(options.seed * 1000 + n)
    history: list[tuple[str, str]] = []
    lang = "nb"
    with httpx.Client(base_url=url, timeout=options.timeout) as client:
        while time.monotonic() < deadline:
            with tally.lock:
                if tally.requests >= options.max_requests:
                    return
                tally.requests += 1
            if history and rng.random() < options.followup_rate:
                question, kind = Question(FOLLOW_UPS.get(lang, FOLLOW_UPS["nb"]), lang), "follow-up"
            else:
                picked = churn.question(rng) if churn is not None and rng.random() < options.churn_rate else None
                question, kind = picked or rng.choice(questions), "churn" if picked else "question"
                history = []
            lang = question.lang
            payload = {"question": question.text, "history": [list(t) for t in history[-3:]]}
            started = time.monotonic()
            try:
                r = client.post("/api/ask", json=payload)
            except Exception as exc:  # a timeout or a refused connection is an error of the run
                tally.count("error", f"{type(exc).__name__}: {exc}")
                continue
            elapsed = time.monotonic() - started
            if r.status_code == 503 and "retry-after" in r.headers:
                tally.count("rejected")
                time.sleep(min(float(r.headers["retry-after"]), max(0.0, deadline - time.monotonic())))
                continue
            if 400 <= r.status_code < 500:
                tally.count("client_error")
                continue
            if r.status_code != 200:
                tally.count("error", f"HTTP {r.status_code}: {r.text[:160]}")
                continue
            body = r.json()
            problems = check_answer(body, started, churn.gone if churn is not None else {})
            tally.count("ok")
            with tally.lock:
                tally.latencies.append(elapsed)
                tally.by_kind.setdefault(kind, []).append(elapsed)
                tally.wrong += [p for p in problems if p.startswith("cites")]
                tally.bad_quotes += sum(1 for p in problems if p.startswith("quote"))
            history.append((question.text, str(body.get("answer", ""))))


def run_load(url: str, questions: Sequence[Question], options: LoadOptions = LoadOptions(),
             churn: Churn | None = None) -> LoadReport:
    """Run `options.users` users against `url` (loopback only) until the time or request budget is spent."""
    url = check_loopback_url(url)
    if not questions:
        raise AssistantError("the load test needs questions")
    tally = _Tally()
    load_before = os.getloadavg()
    t0 = time.monotonic()
    deadline = t0 + options.seconds
    threads = [threading.Thread(target=_user, args=(n, url, questions, options, churn, deadline, tally),
                                name=f"loadtest-user-{n}", daemon=True) for n in range(options.users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()) + options.timeout + 5)
    seconds = time.monotonic() - t0
    lat = tally.latencies
    counts = tally.counts
    return LoadReport(
        url=url, users=options.users, seconds=round(seconds, 2), requests=sum(counts.values()),
        ok=counts.get("ok", 0), errors=counts.get("error", 0), rejected=counts.get("rejected", 0),
        client_errors=counts.get("client_error", 0),
        wrong_document=len(tally.wrong), bad_quotes=tally.bad_quotes,
        throughput=round(counts.get("ok", 0) / seconds, 2) if seconds else 0.0,
        latency={"p50": percentile(lat, 50), "p95": percentile(lat, 95), "p99": percentile(lat, 99),
                 "max": max(lat) if lat else float("nan"), "mean": sum(lat) / len(lat) if lat else float("nan")},
        latency_by_kind={kind: {"count": len(v), "p50": percentile(v, 50), "p95": percentile(v, 95)}
                         for kind, v in sorted(tally.by_kind.items())},
        churn_added=churn.added if churn else 0, churn_removed=len(churn.gone) if churn else 0,
        cpus=os.cpu_count() or 1, load_before=tuple(round(x, 2) for x in load_before),  # type: ignore[arg-type]
        load_after=tuple(round(x, 2) for x in os.getloadavg()),  # type: ignore[arg-type]
        error_samples=tuple(tally.errors[:5]), wrong_samples=tuple(tally.wrong[:5]))


def run_served_load(settings: "Settings", questions: Sequence[Question], options: LoadOptions = LoadOptions(),
                    *, say: Callable[[str], None] = lambda m: None, ready_timeout: float = 900.0) -> LoadReport:
    """Serve `settings.corpus_dirs` with `assistant serve --watch` in its own process, churn, and run the load.

    The server is the real command, in a separate process, so the simulated users
    (threads of this process) do not share its interpreter lock. It indexes at
    start-up; this process only reads the index, to tell when a deleted churn
    document has left it.
    """
    from .core import Assistant

    scratch = Path(tempfile.mkdtemp(prefix="loadtest-churn-"))
    dirs = [*settings.corpus_dirs, scratch]
    port = free_port()
    command = [sys.executable, "-m", "assistant", "serve", "--index", str(settings.index_dir),
               "--model", settings.model, "--port", str(port), "--watch"]
    for d in dirs:
        command += ["--corpus", str(d)]
    log_file = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
    say(f"Starting `assistant serve --watch` on port {port} (it indexes {len(dirs)} folders first) …")
    server = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    bot = None
    try:
        _wait_ready(url, server, log_file, ready_timeout)
        bot = Assistant.open(settings=settings)
        info = bot.info()
        say(f"Server ready: {info.documents} documents, {info.chunks} chunks.")
        churn = Churn(bot, scratch, every=options.churn_every, seed=options.seed).start()
        try:
            say(f"{options.users} users for {options.seconds:.0f} s against {url} …")
            return run_load(url, questions, options, churn)
        finally:
            churn.stop()
    finally:
        _stop_server(server)
        log_file.close()
        shutil.rmtree(scratch, ignore_errors=True)
        if bot is not None:
            try:
                bot.index(list(settings.corpus_dirs))  # leave the index without the churn documents
            except AssistantError as exc:
                log.warning("could not tidy the index after the load test: %s", exc)
            bot.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, server: "subprocess.Popen[bytes]", log_file: Any, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            log_file.seek(0)
            tail = " | ".join(log_file.read().strip().splitlines()[-3:])
            raise AssistantError(f"the server exited ({server.returncode}) before it was ready: {tail}")
        try:
            if httpx.get(url + "/api/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssistantError(f"the server was not ready within {timeout:.0f} s")


def _stop_server(server: "subprocess.Popen[bytes]") -> None:
    """Ctrl-C, as a person would stop it; kill it if it does not stop within 30 s."""
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def format_report(r: LoadReport) -> str:
    lat = r.latency
    lines = [
        f"{r.users} users, {r.seconds:.0f} s against {r.url}",
        f"requests {r.requests}: ok {r.ok}, errors {r.errors}, rejected (503) {r.rejected}, 4xx {r.client_errors}",
        f"throughput {r.throughput:.2f} answers/s",
        f"latency p50 {lat['p50']:.3f} s, p95 {lat['p95']:.3f} s, p99 {lat['p99']:.3f} s, max {lat['max']:.3f} s",
        "  by kind: " + "; ".join(f"{kind} {v['count']:.0f}: p50 {v['p50']:.3f} s, p95 {v['p95']:.3f} s"
                                  for kind, v in r.latency_by_kind.items()),
        f"wrong-document answers {r.wrong_document}, quotes not in their passage {r.bad_quotes}",
        f"churn: {r.churn_added} documents added, {r.churn_removed} removed",
        f"machine: {r.cpus} CPUs, load average {r.load_before[0]:.2f} before, {r.load_after[0]:.2f} after",
    ]
    lines += [f"  error: {e}" for e in r.error_samples] + [f"  wrong: {w}" for w in r.wrong_samples]
    return "\n".join(lines)


def cmd_loadtest(args: argparse.Namespace) -> int:
    from .cli import _settings

    url = check_loopback_url(args.url) if args.url else None  # refuse other hosts before any work
    questions_path = Path(args.questions)
    if not questions_path.is_file():
        raise AssistantError(f"questions file {questions_path} not found (pass --questions)")
    questions = load_questions(questions_path)
    options = LoadOptions(users=args.users, seconds=args.seconds, max_requests=args.max_requests, seed=args.seed)
    say = (lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
    if url:
        report = run_load(url, questions, options)
    else:
        if not args.corpus:
            args.corpus = [str(Path("..") / "shared" / "corpus")]
        settings = _settings(args)
        if args.index is None:
            from dataclasses import replace

            settings = replace(settings, index_dir=Path("bench-results") / "loadtest-index")
        report = run_served_load(settings, questions, options, say=say)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report.to_json(), ensure_ascii=False, indent=1), encoding="utf-8")
    print(json.dumps(report.to_json(), ensure_ascii=False) if args.json else format_report(report))
    return 0 if report.errors == 0 and report.wrong_document == 0 and report.bad_quotes == 0 else 1


def add_commands(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    p = command("loadtest", cmd_loadtest, "simulated users over the HTTP API on loopback while documents "
                "come and go; reports throughput, latency and errors")
    p.add_argument("--corpus", action="append", help="corpus folder (repeatable; default ../shared/corpus)")
    p.add_argument("--questions", default=str(Path("..") / "shared" / "eval" / "questions.jsonl"),
                   help="dev questions JSONL (default ../shared/eval/questions.jsonl)")
    p.add_argument("--url", help="target a server already running on loopback instead (no churn then)")
    p.add_argument("--users", type=int, default=20, help="concurrent users (default 20)")
    p.add_argument("--seconds", type=float, default=120.0, help="duration (default 120)")
    p.add_argument("--max-requests", type=int, default=50_000, help="stop after this many requests")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default="bench-results/loadtest.json", help="JSON file to write")


__all__ = ["LoadOptions", "LoadReport", "Question", "Churn", "check_loopback_url", "load_questions",
           "run_load", "run_served_load", "check_answer", "format_report", "free_port", "add_commands"]
