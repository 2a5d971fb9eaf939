"""Generative answers: one `Generator` seam, an OpenAI-compatible HTTP backend, and the checks.

A `Generator` streams the text of an answer to a question over numbered hits.
`OpenAICompatibleGenerator` speaks the chat-completions protocol (Ollama,
vLLM, llama.cpp server, OpenAI, Azure OpenAI), streaming by server-sent events
or not. `generate_answer` turns the stream into an `Answer`: it strips
citations that point at nothing and falls back to the extractive answer when
the model fails, times out, returns garbage or cites nothing. The local GGUF
backend lives in `assistant.gguf` (optional extra).

Configuration comes from explicit arguments or the environment:
`ASSISTANT_LLM_URL` (base URL, e.g. http://localhost:11434/v1),
`ASSISTANT_LLM_MODEL`, and `ASSISTANT_LLM_API_KEY` (or `OPENAI_API_KEY`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

from .terms import content_words
from .errors import AssistantError
from .prompts import build_messages
from .sentences import sentence_spans
from .types import Answer, Citation, Hit

__all__ = [
    "Generator",
    "GenerationError",
    "GenerationTimeout",
    "OpenAICompatibleGenerator",
    "build_messages",
    "clean_citations",
    "generate_answer",
]

log = logging.getLogger(__name__)


class GenerationError(AssistantError):
    """The language model could not produce an answer (connection, HTTP status, bad payload)."""


class GenerationTimeout(GenerationError):
    """The language model did not finish within the time allowed."""


class Generator(Protocol):
    """Streams the pieces of an answer to `question` from the numbered `hits` ([1] is hits[0])."""

    def generate(self, question: str, hits: Sequence[Hit], *, lang: str,
                 history: Sequence[tuple[str, str]] = (), timeout: float = 60.0) -> Iterator[str]: ...


@dataclass(frozen=True)
class OpenAICompatibleGenerator:
    """A chat-completions client. `base_url` is the API root (".../v1") or the full endpoint URL."""

    base_url: str
    model: str = "default"
    api_key: str | None = field(default=None, repr=False)
    stream: bool = True
    temperature: float = 0.1
    max_tokens: int = 512
    headers: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "OpenAICompatibleGenerator":
        """Build from `ASSISTANT_LLM_URL`, `ASSISTANT_LLM_MODEL`, `ASSISTANT_LLM_API_KEY`/`OPENAI_API_KEY`.

        Overrides that are None are ignored. Raises `AssistantError` when no URL is set.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {
            "base_url": env.get("ASSISTANT_LLM_URL", ""),
            "model": env.get("ASSISTANT_LLM_MODEL") or "default",
            "api_key": env.get("ASSISTANT_LLM_API_KEY") or env.get("OPENAI_API_KEY") or None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        if not values["base_url"]:
            raise AssistantError("no language model configured: set ASSISTANT_LLM_URL "
                                 "(e.g. http://localhost:11434/v1)")
        return cls(**values)

    @property
    def endpoint(self) -> str:
        url = self.base_url.rstrip("/")
        path = url.split("?", 1)[0]
        return url if path.endswith("/chat/completions") else url + "/chat/completions"

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream, application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
            if ".openai.azure.com" in self.base_url:
                headers["api-key"] = self.api_key
        headers.update(self.headers)
        return headers

    def generate(self, question: str, hits: Sequence[Hit], *, lang: str,
                 history: Sequence[tuple[str, str]] = (), timeout: float = 60.0) -> Iterator[str]:
        """Stream the answer's text; raises `GenerationError` / `GenerationTimeout`."""
        import httpx  # a base dependency, imported on use so that importing this module stays light

        payload = {
            "model": self.model,
            "messages": build_messages(question, hits, lang, history),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "stream": self.stream,
        }
        deadline = time.monotonic() + timeout
        try:
            with httpx.Client(timeout=httpx.Timeout(timeout)) as client:
                with client.stream("POST", self.endpoint, json=payload, headers=self._headers()) as response:
                    if response.status_code >= 400:
                        body = response.read().decode("utf-8", "replace")
                        raise GenerationError(f"language model answered HTTP {response.status_code}: "
                                              f"{_one_line(body)}")
                    kind = response.headers.get("content-type", "")
                    if "text/event-stream" in kind:
                        yield from _read_sse(response.iter_lines(), deadline)
                    else:
                        _check_deadline(deadline)
                        yield _message_content(_loads(response.read().decode("utf-8", "replace")))
        except httpx.TimeoutException as exc:
            raise GenerationTimeout(f"language model timed out after {timeout:g} s") from exc
        except httpx.HTTPError as exc:
            raise GenerationError(f"cannot reach the language model at {self.endpoint}: {exc}") from exc


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check_deadline(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise GenerationTimeout("language model did not finish in time")


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise GenerationError(f"language model sent invalid JSON: {_one_line(text)}") from exc


def _error_of(data: Any) -> str | None:
    if isinstance(data, dict) and data.get("error"):
        err = data["error"]
        return err.get("message", str(err)) if isinstance(err, dict) else str(err)
    return None


def _message_content(data: Any) -> str:
    """The text of a non-streaming chat-completions response."""
    error = _error_of(data)
    if error:
        raise GenerationError(f"language model error: {_one_line(error)}")
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise GenerationError("language model response has no choices[0].message.content") from exc
    return content or ""


def _delta_content(data: Any) -> str:
    """The text of one streamed chat-completions chunk ("" for role-only or final chunks)."""
    error = _error_of(data)
    if error:
        raise GenerationError(f"language model error: {_one_line(error)}")
    choices = data.get("choices") if isinstance(data, dict) else None
    if not choices:
        return ""  # keep-alives and usage-only chunks
    choice = choices[0] if isinstance(choices, list) else None
    delta = (choice.get("delta") or choice.get("message") or {}) if isinstance(choice, dict) else None
    content = delta.get("content") if isinstance(delta, dict) else None
    if delta is None or not isinstance(content, (str, type(None))):
        raise GenerationError("language model sent a malformed chunk")
    return content or ""


def _read_sse(lines: Iterator[str], deadline: float) -> Iterator[str]:
    """Yield the content of each `data:` event until `[DONE]` or the end of the stream."""
    for line in lines:
        _check_deadline(deadline)
        if not line.startswith("data:"):
            continue  # blank separators, comments (": ping"), "event:" and "id:" lines
        data = line[5:].strip()
        if data == "[DONE]":
            return
        if not data:
            continue
        piece = _delta_content(_loads(data))
        if piece:
            yield piece


_ALIAS = re.compile(r"\[(?:passage|source|kilde|kjelde|doc(?:ument)?)\s*(\d+)\]", re.IGNORECASE)
_MARKERS = re.compile(r"\s*\[(\d+(?:\s*,\s*\d+)*)\]")


def clean_citations(text: str, n_hits: int) -> tuple[str, list[int]]:
    """Rewrite `[passage 2]` as `[2]`, drop numbers outside 1..n_hits; return the text and the kept numbers."""
    text = _ALIAS.sub(r"[\1]", text)
    kept: list[int] = []

    def fix(match: re.Match[str]) -> str:
        numbers = [int(n) for n in match.group(1).split(",")]
        valid = [n for n in numbers if 1 <= n <= n_hits]
        kept.extend(n for n in valid if n not in kept)
        if not valid:
            return ""
        lead = match.group(0)[: len(match.group(0)) - len(match.group(0).lstrip())]
        return lead + "".join(f"[{n}]" for n in valid)

    return _MARKERS.sub(fix, text), kept


def _is_garbage(text: str) -> bool:
    words = re.findall(r"[^\W\d_]{2,}", text)
    if len(words) < 3:
        return True
    letters = sum(ch.isalpha() for ch in text)
    return letters < 0.5 * len(text.replace(" ", "") or "x")


def _quotes_for(text: str, number: int, hit: Hit) -> tuple[str, ...]:
    """The sentence of `hit` that shares most content words with the answer's sentences citing `[number]`."""
    marker = f"[{number}]"
    claims = " ".join(text[a:b] for a, b in sentence_spans(text) if marker in text[a:b]) or text
    claim_words = set(content_words(claims))
    best, best_overlap = "", 0
    for a, b in sentence_spans(hit.text):
        overlap = len(claim_words & set(content_words(hit.text[a:b])))
        if overlap > best_overlap:
            best, best_overlap = hit.text[a:b], overlap
    return (best,) if best else ()


def generate_answer(generator: Generator, question: str, hits: Sequence[Hit], *, lang: str,
                    history: Sequence[tuple[str, str]] = (), timeout: float = 60.0,
                    fallback: Callable[[], Answer], on_text: Callable[[str], None] | None = None) -> Answer:
    """Ask `generator`, check its answer, and return it, or `fallback()` when it is not usable.

    `on_text` receives each streamed piece as it arrives (for a live display); the
    final answer's text may differ, because invalid citations are removed.
    """
    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout
    pieces: list[str] = []
    reason = ""
    try:
        for piece in generator.generate(question, hits, lang=lang, history=history, timeout=timeout):
            pieces.append(piece)
            if on_text is not None:
                on_text(piece)
            if time.monotonic() > deadline:
                raise GenerationTimeout(f"language model did not finish within {timeout:g} s")
    except GenerationError as exc:
        reason = str(exc)
    except Exception as exc:  # a backend bug must not cost the user the answer
        reason = f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - t0

    text, cited = clean_citations("".join(pieces).strip(), len(hits))
    if not reason:
        if _is_garbage(text):
            reason = "the model returned no usable text"
        elif not cited:
            reason = "the model cited no passage"
    if reason:
        log.warning("generative answer not used (%s); using the extractive answer", reason)
        answer = fallback()
        return replace(answer, timings={**answer.timings, "generate": seconds})

    citations = tuple(Citation(number=n, hit=hits[n - 1], quotes=_quotes_for(text, n, hits[n - 1]))
                      for n in sorted(cited))
    return Answer(question=question, text=text, citations=citations, hits=tuple(hits), lang=lang,
                  refused=False, timings={"generate": seconds}, backend="generated")
