"""The JSON API for programs: `POST /api/ask`, `POST /api/search`, `GET /api/health`.

    curl -s localhost:7860/api/ask -H 'content-type: application/json' \\
         -d '{"question": "Hvordan kom den nye søknaden om sosialhjelp i stand?"}'

With `"stream": true`, `/api/ask` answers NDJSON (`application/x-ndjson`), one
JSON object a line: `{"delta": "..."}` pieces of text while a language model
writes, then `{"answer": {...}}` with the same object as the plain call (its
text replaces the streamed one), or `{"error": "..."}`. A bad question is
still a 4xx before the stream starts.

While `assistant serve` is starting (`startup.py`), `/api/health` answers 503
with `"ready": false`, and questions wait for the model instead of failing.

Endpoints are plain (sync) functions, so FastAPI runs the CPU-heavy retrieval
in its thread pool and the event loop stays free. A bad question (empty,
longer than `Settings.max_question_chars`) or a malformed body is a 4xx with
`{"error": "..."}`; it is never a 500. Only `web.build_app` imports this
module (it imports FastAPI at the top).

Back-pressure: at most `Settings.max_concurrent` questions are answered at
once and `Settings.queue` more wait (as coroutines, holding no thread);
beyond that `/api/ask` and `/api/search` answer 503 with `Retry-After` at
once, so a burst can neither exhaust the thread pool nor starve
`/api/health` and the chat page. A damaged store is a 503 telling the
operator to rebuild, never a 500.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterator, TypeVar

from fastapi import FastAPI, Request
from fastapi.concurrency import iterate_in_threadpool, run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field, field_validator

from .answering import answer_json, hit_json
from .errors import AssistantError, QuestionError
from .startup import Startup
from .streaming import Partial, stream_ask

if TYPE_CHECKING:
    from .core import Assistant

log = logging.getLogger(__name__)

MAX_TURNS = 20
MAX_K = 50
RETRY_AFTER_SECONDS = 2
T = TypeVar("T")


class Busy(Exception):
    """Every running slot and every waiting place is taken."""


class Admission:
    """`running` requests at once, `waiting` more queued; the rest are turned away (`Busy`).

    Used from one event loop only; the counters need no lock there.
    """

    def __init__(self, running: int, waiting: int) -> None:
        if running < 1 or waiting < 0:
            raise ValueError("max_concurrent must be at least 1 and queue at least 0")
        self.running = running
        self.capacity = running + waiting
        self.inside = 0      # running plus waiting, now
        self.rejected = 0    # turned away since start
        self._slots: asyncio.Semaphore | None = None

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.inside >= self.capacity:
            self.rejected += 1
            raise Busy()
        if self._slots is None:  # made inside the server's loop
            self._slots = asyncio.Semaphore(self.running)
        self.inside += 1
        try:
            async with self._slots:
                yield
        finally:
            self.inside -= 1

    async def run(self, fn: Callable[[], T]) -> T:
        """`fn()` in the thread pool once a slot is free."""
        async with self.slot():
            return await run_in_threadpool(fn)


def _valid_text(text: str) -> str:
    """`text` with lone UTF-16 surrogates (valid in JSON, not in UTF-8) replaced by U+FFFD."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


class AskRequest(BaseModel):
    question: str
    history: list[tuple[str, str]] = Field(default_factory=list, max_length=MAX_TURNS)
    stream: bool = False

    @field_validator("question")
    @classmethod
    def _question(cls, value: str) -> str:
        return _valid_text(value)

    @field_validator("history")
    @classmethod
    def _history(cls, value: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(_valid_text(u), _valid_text(a)) for u, a in value]


class SearchRequest(BaseModel):
    question: str
    k: int = Field(default=5, ge=1, le=MAX_K)

    @field_validator("question")
    @classmethod
    def _question(cls, value: str) -> str:
        return _valid_text(value)


def ndjson_lines(items: Iterator[Any]) -> Iterator[str]:
    """The NDJSON lines of a streamed answer: deltas of the growing text, then the answer or an error."""
    sent = ""
    try:
        for item in items:
            if isinstance(item, Partial):
                yield json.dumps({"delta": item.text[len(sent):]}, ensure_ascii=False) + "\n"
                sent = item.text
            else:
                yield json.dumps({"answer": answer_json(item)}, ensure_ascii=False) + "\n"
    except (AssistantError, sqlite3.DatabaseError) as exc:
        yield json.dumps({"error": str(exc)}, ensure_ascii=False) + "\n"


def add_api_routes(app: FastAPI, bot: "Assistant", startup: Startup | None = None) -> None:
    """Add the `/api/*` routes for `bot` to `app`; with `startup`, questions wait until it is ready."""
    startup = startup or Startup.done()

    def limit_history(history: list[tuple[str, str]]) -> list[tuple[str, str]]:
        cap = bot.settings.max_question_chars * 4
        for user, reply in history:
            if len(user) > cap or len(reply) > cap * 4:
                raise QuestionError(f"a history turn is too long (limit {cap} characters per question)")
        return history

    admission = Admission(bot.settings.max_concurrent, bot.settings.queue)
    app.state.admission = admission

    def when_ready(fn: Callable[[], T]) -> Callable[[], T]:
        def run() -> T:
            startup.wait()
            return fn()
        return run

    @app.post("/api/ask", response_model=None)
    async def api_ask(req: AskRequest) -> dict[str, Any] | StreamingResponse:
        history = limit_history(req.history)
        if not req.stream:
            return await admission.run(when_ready(lambda: answer_json(bot.ask(req.question, history))))
        question = bot.check_question(req.question)  # a bad question is a 400, not a line in the stream
        if admission.inside >= admission.capacity:
            admission.rejected += 1
            raise Busy()

        async def lines() -> AsyncIterator[str]:
            try:
                async with admission.slot():
                    await run_in_threadpool(startup.wait)
                    async for line in iterate_in_threadpool(ndjson_lines(stream_ask(bot, question, history))):
                        yield line
            except (Busy, AssistantError) as exc:
                yield json.dumps({"error": "busy" if isinstance(exc, Busy) else str(exc)}) + "\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.post("/api/search")
    async def api_search(req: SearchRequest) -> dict[str, Any]:
        hits = await admission.run(when_ready(lambda: bot.search(req.question, k=req.k)))
        return {"question": req.question, "hits": [hit_json(h) for h in hits]}

    @app.get("/api/health", response_model=None)
    def api_health() -> dict[str, Any] | JSONResponse:
        if not startup.ready:
            failed = startup.finished(0)
            return JSONResponse({"status": "failed" if failed else "starting", "ready": False},
                                status_code=503, headers={} if failed else {"Retry-After": "1"})
        return {"status": "ok", "ready": True, **bot.info().to_json()}

    @app.exception_handler(QuestionError)
    def bad_question(request: Request, exc: QuestionError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    def bad_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}"
                             for e in exc.errors())
        return JSONResponse({"error": f"bad request: {problems}"}, status_code=422)

    @app.exception_handler(Busy)
    def busy(request: Request, exc: Busy) -> JSONResponse:
        return JSONResponse({"error": f"busy: {admission.capacity} questions are being answered or waiting; "
                                      f"try again in {RETRY_AFTER_SECONDS} s"},
                            status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    @app.exception_handler(sqlite3.DatabaseError)
    def damaged(request: Request, exc: sqlite3.DatabaseError) -> JSONResponse:
        log.error("index store error: %s", exc)
        return JSONResponse({"error": f"the index store is unreadable ({' '.join(str(exc).split())}); "
                                      "the operator must run "
                                      "`assistant index --rebuild`"}, status_code=503)

    @app.exception_handler(AssistantError)
    def unavailable(request: Request, exc: AssistantError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=503)
