"""An answer as it is written: `stream_ask` turns `Assistant.ask(on_text=...)` into an iterator.

    for item in stream_ask(bot, "Hva er Designsystemet?"):
        if isinstance(item, Partial):
            show(item.text)          # the text so far, growing
        else:
            show_final(item)         # the checked `Answer`

`ask` runs in a worker thread and pushes each streamed piece into a queue; the
iterator yields the text so far at most every `interval` seconds (so a fast
model does not flood the browser), then the final `Answer`, whose text may
differ from the streamed one (invalid citations stripped, or the extractive
fallback). Without a language model, or for a refusal, only the `Answer` comes.
An error in `ask` is raised from the iterator. If the consumer stops early the
worker still finishes its `ask` (bounded by the model's timeout) and is dropped.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Sequence

from .types import Answer

if TYPE_CHECKING:
    from .core import Assistant

__all__ = ["Partial", "stream_ask", "INTERVAL"]

INTERVAL = 0.08  # seconds between two partial texts at most once per this


@dataclass(frozen=True)
class Partial:
    """The answer's text streamed so far (it only grows)."""

    text: str


_DONE = object()


def stream_ask(bot: "Assistant", question: str, history: Sequence[tuple[str, str]] = (), *, k: int = 5,
               interval: float = INTERVAL) -> Iterator[Partial | Answer]:
    """`Partial`s with the growing text while a language model writes, then the `Answer`."""
    pieces: queue.Queue[object] = queue.Queue()
    outcome: dict[str, object] = {}

    def work() -> None:
        try:
            outcome["answer"] = bot.ask(question, history, k=k, on_text=pieces.put)
        except BaseException as exc:  # handed to the consumer, raised there
            outcome["error"] = exc
        finally:
            pieces.put(_DONE)

    worker = threading.Thread(target=work, name="assistant-ask", daemon=True)
    worker.start()
    text, shown, last = "", "", float("-inf")
    while True:
        pending = text != shown
        wait = max(0.0, last + interval - time.monotonic()) if pending else None
        try:
            item = pieces.get(timeout=wait)
        except queue.Empty:
            item = None
        if item is _DONE:
            break
        if isinstance(item, str):
            text += item
        if text != shown and time.monotonic() - last >= interval:
            shown, last = text, time.monotonic()
            yield Partial(text)
    worker.join()
    error = outcome.get("error")
    if isinstance(error, BaseException):
        raise error
    answer = outcome["answer"]
    assert isinstance(answer, Answer)
    yield answer
