"""Answers that stream: `stream_ask`, the chat's `respond` generator, NDJSON from `/api/ask`, and start-up.

A real chat-completions server on loopback (`llm_server`) trickles its answer
a few characters at a time; the index is tiny and uses the fake embedder.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from assistant.core import Assistant
from assistant.errors import QuestionError
from assistant.settings import Settings
from assistant.startup import NotReadyError, Startup
from assistant.streaming import Partial, stream_ask
from assistant.types import Answer
from fakes import FakeEmbedder
from llm_server import Script, llm_server

LIBRARY = "Biblioteket i sentrum har åpent mandag til fredag fra klokka ti til seks."
DOCS = {
    "bibliotek.md": f"# Bibliotek\n\n{LIBRARY} Lånekort er gratis for alle som bor i kommunen.\n",
    "vann.md": "# Vann og avløp\n\nFaktura for vann og avløp sendes ut fire ganger i året.\n",
}
GENERATED = ("Biblioteket har åpent fra ti til seks på hverdager [1]. Lånekortet er gratis "
             "<b>for alle</b> [1] [7].")


@pytest.fixture
def llm() -> Iterator[tuple[str, Script]]:
    with llm_server() as (url, script):
        script.mode, script.content, script.delay = "trickle", GENERATED, 0.03
        yield url, script


@pytest.fixture
def bot(tmp_path: Path, llm: tuple[str, Script]) -> Iterator[Assistant]:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in DOCS.items():
        (corpus / name).write_text(text, encoding="utf-8")
    settings = Settings.load(env={}, index_dir=tmp_path / "index", corpus_dirs=[corpus], llm_url=llm[0],
                             llm_timeout=20.0)
    with Assistant.open(settings=settings, embedder=FakeEmbedder()) as bot:
        bot.index()
        yield bot


def test_stream_ask_yields_growing_text_then_the_checked_answer(bot: Assistant) -> None:
    items = list(stream_ask(bot, LIBRARY, interval=0.02))
    partials, final = items[:-1], items[-1]
    assert len(partials) >= 2 and all(isinstance(p, Partial) for p in partials)
    texts = [p.text for p in partials]
    assert all(b.startswith(a) and len(b) > len(a) for a, b in zip(texts, texts[1:]))
    assert GENERATED.startswith(texts[-1])
    assert isinstance(final, Answer) and final.backend == "generated"
    assert "[1]" in final.text and "[7]" not in final.text  # the final text is checked; the stream is not
    assert [c.number for c in final.citations] == [1]


def test_stream_ask_throttles_a_fast_stream(bot: Assistant, llm: tuple[str, Script]) -> None:
    llm[1].mode = "stream"  # every piece at once
    items = list(stream_ask(bot, LIBRARY, interval=5.0))
    assert sum(isinstance(i, Partial) for i in items) == 1  # the first piece; then nothing for 5 s
    assert isinstance(items[-1], Answer) and items[-1].backend == "generated"


def test_stream_ask_without_a_model_gives_only_the_answer(bot: Assistant, llm: tuple[str, Script]) -> None:
    llm[1].mode, llm[1].status = "status", 500  # the model fails: the extractive answer, no partials
    items = list(stream_ask(bot, LIBRARY))
    assert len(items) == 1 and isinstance(items[0], Answer) and items[0].backend == "extractive"


def test_stream_ask_raises_the_question_error() -> None:
    bot = Assistant.open(settings=Settings.load(env={}), embedder=FakeEmbedder(), check=False)
    with pytest.raises(QuestionError, match="empty"):
        list(stream_ask(bot, "   "))


def _respond(bot: Assistant, startup: Startup | None = None) -> Any:
    from assistant.webui import build_ui

    demo = build_ui(bot, startup=startup)
    return next(f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "respond")


def test_the_chat_shows_the_growing_escaped_text_then_the_final_answer(bot: Assistant) -> None:
    respond = _respond(bot)
    shown = [out[0][-1]["content"] for out in respond(LIBRARY, [], [], {}, "nb")
             if isinstance(out[0], list) and out[0]]
    assert shown[0] == "Søker i dokumentene …"
    streamed, final = shown[1:-1], shown[-1]
    assert len(streamed) >= 2, shown
    assert all(s.endswith(" ▍") for s in streamed)
    bodies = [s.removesuffix(" ▍") for s in streamed]
    assert all(b.startswith(a) and len(b) > len(a) for a, b in zip(bodies, bodies[1:]))
    assert all("<b>" not in s for s in shown)  # the model's HTML is escaped while it streams, too
    assert any("&lt;b&gt;" in s for s in streamed)
    assert "[1]" in final and "[7]" not in final and "▍" not in final and "&lt;b&gt;for alle&lt;/b&gt;" in final


def test_the_chat_waits_for_the_start_up(bot: Assistant) -> None:
    gate = threading.Event()
    startup = Startup()
    startup.start(lambda: gate.wait(5))
    respond = _respond(bot, startup)
    outputs: list[Any] = []
    worker = threading.Thread(target=lambda: outputs.extend(respond(LIBRARY, [], [], {}, "nb")))
    worker.start()
    time.sleep(0.4)
    assert len(outputs) == 1  # only "searching": the question waits for the model
    gate.set()
    worker.join(20)
    assert "[1]" in outputs[-1][0][-1]["content"]


def test_a_failed_start_up_turns_questions_away() -> None:
    startup = Startup()
    startup.start(lambda: (_ for _ in ()).throw(OSError("disk on fire")))
    assert startup.finished(5) and not startup.ready
    with pytest.raises(NotReadyError, match="disk on fire"):
        startup.wait(0.1)
    slow = Startup()
    slow.start(lambda: time.sleep(2))
    with pytest.raises(NotReadyError, match="still starting"):
        slow.wait(0.05)


@pytest.fixture
def served(bot: Assistant) -> Iterator[tuple[httpx.Client, Startup, threading.Event]]:
    from assistant.web import build_app, start_server

    gate = threading.Event()
    startup = Startup()
    startup.start(lambda: gate.wait(30))
    running = start_server(build_app(bot, startup=startup))
    try:
        with httpx.Client(base_url=running.url, timeout=30) as client:
            yield client, startup, gate
    finally:
        gate.set()
        running.stop()


def test_api_health_and_questions_wait_for_the_start_up(served: tuple[httpx.Client, Startup, threading.Event]) -> None:
    http, startup, gate = served
    r = http.get("/api/health")
    assert r.status_code == 503 and r.json() == {"status": "starting", "ready": False}
    replies: list[httpx.Response] = []
    asking = threading.Thread(target=lambda: replies.append(http.post("/api/ask", json={"question": LIBRARY})))
    asking.start()
    time.sleep(0.4)
    assert not replies  # waiting, not failing
    gate.set()
    asking.join(20)
    assert replies[0].status_code == 200 and "[1]" in replies[0].json()["answer"]
    body = http.get("/api/health").json()
    assert body["ready"] is True and body["status"] == "ok" and body["documents"] == 2


def test_api_streams_ndjson_deltas_then_the_answer(served: tuple[httpx.Client, Startup, threading.Event]) -> None:
    http, _, gate = served
    gate.set()
    lines: list[dict[str, Any]] = []
    arrived: list[float] = []
    with http.stream("POST", "/api/ask", json={"question": LIBRARY, "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
        for line in r.iter_lines():
            if line:
                lines.append(json.loads(line))
                arrived.append(time.monotonic())
    deltas = [x["delta"] for x in lines if "delta" in x]
    assert len(deltas) >= 2 and arrived[-1] - arrived[0] > 0.1  # pieces came over time, not all at the end
    assert GENERATED.startswith("".join(deltas))
    final = lines[-1]["answer"]
    assert final["backend"] == "generated" and "[1]" in final["answer"] and final["citations"][0]["number"] == 1
    bad = http.post("/api/ask", json={"question": "  ", "stream": True})
    assert bad.status_code == 400 and "empty" in bad.json()["error"]
