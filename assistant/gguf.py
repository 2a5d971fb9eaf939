"""A local GGUF model as a `Generator`, run in-process with `xllamacpp` (optional extra).

`pip install 'kommune-assistent[gguf]'` installs `xllamacpp`, a prebuilt
llama.cpp wheel (no compiler needed). The user supplies the GGUF file; nothing
is downloaded. The model loads on the first `generate` call and stays loaded.
Generation runs in a worker thread so that pieces stream out as they are
decoded and a timeout can stop it.

Measured on 2 shared CPU cores: SmolLM2-135M decodes a few tokens per second
under load; a 1.5B Q4_K_M model about 26 tokens/s on idle cores. Small models
answer poorly; `generate_answer` checks their citations and falls back to the
extractive answer.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from .errors import AssistantError, MissingExtraError
from .generate import GenerationError, GenerationTimeout
from .prompts import build_messages
from .types import Hit

__all__ = ["GGUFGenerator", "INSTALL_HINT"]

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'kommune-assistent[gguf]'"
_DONE = object()


def _import_xllamacpp() -> Any:
    try:
        import xllamacpp
    except ImportError as exc:
        raise MissingExtraError(f"local GGUF models need xllamacpp: {INSTALL_HINT}") from exc
    return xllamacpp


class GGUFGenerator:
    """Answers with a GGUF model file on this machine.

    `threads` defaults to the number of CPU cores; `context` is the context
    window in tokens (passages plus answer must fit).
    """

    def __init__(self, model_path: str | Path, *, context: int = 4096, threads: int | None = None,
                 max_tokens: int = 384, temperature: float = 0.1) -> None:
        self.model_path = Path(model_path)
        self.context = context
        self.threads = threads or max(1, os.cpu_count() or 1)
        self.max_tokens = max_tokens
        self.temperature = temperature
        self._server: Any = None
        self._lock = threading.Lock()  # one generation at a time per loaded model

    def _load(self) -> Any:
        if self._server is None:
            xllamacpp = _import_xllamacpp()
            if not self.model_path.is_file():
                raise AssistantError(f"GGUF model not found: {self.model_path}")
            params = xllamacpp.CommonParams()
            params.model.path = str(self.model_path)
            params.n_ctx = self.context
            params.n_predict = self.max_tokens
            params.cpuparams.n_threads = self.threads
            params.cpuparams_batch.n_threads = self.threads
            t0 = time.perf_counter()
            self._server = xllamacpp.Server(params)
            log.info("loaded %s in %.1f s", self.model_path.name, time.perf_counter() - t0)
        return self._server

    def generate(self, question: str, hits: Sequence[Hit], *, lang: str,
                 history: Sequence[tuple[str, str]] = (), timeout: float = 120.0) -> Iterator[str]:
        """Stream the answer; raises `GenerationTimeout` after `timeout` seconds (loading included)."""
        deadline = time.monotonic() + timeout
        server = self._load()
        request = {
            "messages": build_messages(question, hits, lang, history),
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "stream": True,
        }
        pieces: queue.Queue[Any] = queue.Queue()
        cancel = threading.Event()

        def on_chunk(chunk: Any) -> bool:
            if isinstance(chunk, dict) and (chunk.get("error") or chunk.get("code")):
                error = chunk.get("error") or chunk
                message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
                pieces.put(GenerationError(f"local model error: {message}"))
                return True
            try:
                choice = chunk["choices"][0]
                text = (choice.get("delta") or {}).get("content") or ""
            except (KeyError, IndexError, TypeError):
                text = ""
            if text:
                pieces.put(text)
            return cancel.is_set()  # True asks llama.cpp to stop

        def work() -> None:
            try:
                with self._lock:
                    server.handle_chat_completions(request, on_chunk)
            except Exception as exc:  # reported to the consumer, not lost in the thread
                pieces.put(GenerationError(f"local model failed: {exc}"))
            finally:
                pieces.put(_DONE)

        worker = threading.Thread(target=work, name="gguf-generate", daemon=True)
        worker.start()
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise GenerationTimeout(f"local model did not finish within {timeout:g} s")
                try:
                    item = pieces.get(timeout=remaining)
                except queue.Empty:
                    continue
                if item is _DONE:
                    return
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            cancel.set()
