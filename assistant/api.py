"""The JSON API for programs: `POST /api/ask`, `POST /api/search`, `GET /api/health`.

    curl -s localhost:7860/api/ask -H 'content-type: application/json' \\
         -d '{"question": "Hvordan kom den nye søknaden om sosialhjelp i stand?"}'

Endpoints are plain (sync) functions, so FastAPI runs the CPU-heavy retrieval
in its thread pool and the event loop stays free. A bad question (empty,
longer than `Settings.max_question_chars`) or a malformed body is a 4xx with
`{"error": "..."}`; it is never a 500. Only `web.build_app` imports this
module (it imports FastAPI at the top).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from .answering import answer_json, hit_json
from .errors import AssistantError, QuestionError

if TYPE_CHECKING:
    from .core import Assistant

MAX_TURNS = 20
MAX_K = 50


class AskRequest(BaseModel):
    question: str
    history: list[tuple[str, str]] = Field(default_factory=list, max_length=MAX_TURNS)


class SearchRequest(BaseModel):
    question: str
    k: int = Field(default=5, ge=1, le=MAX_K)


def add_api_routes(app: FastAPI, bot: "Assistant") -> None:
    """Add the `/api/*` routes for `bot` to `app`."""

    def limit_history(history: list[tuple[str, str]]) -> list[tuple[str, str]]:
        cap = bot.settings.max_question_chars * 4
        for user, reply in history:
            if len(user) > cap or len(reply) > cap * 4:
                raise QuestionError(f"a history turn is too long (limit {cap} characters per question)")
        return history

    @app.post("/api/ask")
    def api_ask(req: AskRequest) -> dict[str, Any]:
        return answer_json(bot.ask(req.question, limit_history(req.history)))

    @app.post("/api/search")
    def api_search(req: SearchRequest) -> dict[str, Any]:
        hits = bot.search(req.question, k=req.k)
        return {"question": req.question, "hits": [hit_json(h) for h in hits]}

    @app.get("/api/health")
    def api_health() -> dict[str, Any]:
        return {"status": "ok", **bot.info().to_json()}

    @app.exception_handler(QuestionError)
    def bad_question(request: Request, exc: QuestionError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    def bad_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}"
                             for e in exc.errors())
        return JSONResponse({"error": f"bad request: {problems}"}, status_code=422)

    @app.exception_handler(AssistantError)
    def unavailable(request: Request, exc: AssistantError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=503)
