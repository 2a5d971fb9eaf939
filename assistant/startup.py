"""Serving before the model is loaded: `Startup` runs the warm-up in a thread and gates questions on it.

`assistant serve` starts the warm-up (load the embedding model, check the
index's stamp, bring the index up to date) in a background thread, and
meanwhile imports gradio, builds the app and starts listening. Until the
warm-up is done, `GET /api/health` answers 503 with `"ready": false`, the chat
shows "loading the model …", and a question waits (up to `timeout` seconds)
instead of failing. A warm-up that fails stops the server with its error.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from .errors import AssistantError

log = logging.getLogger(__name__)

__all__ = ["Startup", "NotReadyError", "WAIT_SECONDS"]

WAIT_SECONDS = 120.0  # how long a question waits for the warm-up before it is turned away


class NotReadyError(AssistantError):
    """The assistant is still starting, or its start-up failed."""


class Startup:
    """Whether the server can answer yet. `Startup.done()` is one that is ready from the start."""

    def __init__(self) -> None:
        self._finished = threading.Event()
        self.error: BaseException | None = None

    @classmethod
    def done(cls) -> "Startup":
        startup = cls()
        startup._finished.set()
        return startup

    @property
    def ready(self) -> bool:
        return self._finished.is_set() and self.error is None

    def start(self, warm_up: Callable[[], None]) -> threading.Thread:
        """Run `warm_up()` in a daemon thread; ready when it returns, failed when it raises."""
        def run() -> None:
            try:
                warm_up()
            except BaseException as exc:  # handed to whoever waits; serve re-raises it
                log.error("start-up failed: %s", exc)
                self.error = exc
            finally:
                self._finished.set()

        thread = threading.Thread(target=run, name="assistant-warm-up", daemon=True)
        thread.start()
        return thread

    def finished(self, timeout: float | None = None) -> bool:
        """Block until the warm-up has ended (well or not), or `timeout` seconds pass."""
        return self._finished.wait(timeout)

    def wait(self, timeout: float = WAIT_SECONDS) -> None:
        """Return once ready; raise `NotReadyError` after `timeout` seconds or when the start-up failed."""
        if not self._finished.wait(timeout):
            raise NotReadyError(f"the assistant is still starting (loading the model) after {timeout:g} s; "
                                "try again shortly")
        if self.error is not None:
            raise NotReadyError(f"the assistant failed to start: {self.error}")
