"""Documents that come and go during a load test: `Churn` adds a small document to a
scratch folder and deletes an older one every few seconds, recording when each
removal was committed, so that an answer citing a removed document can be caught.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .core import Assistant

log = logging.getLogger(__name__)

CHURN_PREFIX = "churn-"


@dataclass(frozen=True)
class Question:
    """A question a simulated user asks, in its language."""

    text: str
    lang: str = "nb"

_SYLLABLES = ("ka", "ro", "vi", "ne", "tu", "sa", "lo", "mi", "de", "fu", "bre", "gla", "sto", "pri")


class Churn:
    """Adds a small document to `folder` and deletes an older one, every `every` seconds.

    `gone[doc_id]` is the monotonic time at which the index no longer held the
    deleted document (seen through `bot`), so a request started later must not cite it.
    """

    def __init__(self, bot: "Assistant", folder: Path, *, every: float = 2.0, keep: int = 4, seed: int = 0) -> None:
        self.bot = bot
        self.folder = folder
        self.every = every
        self.keep = keep
        self.rng = random.Random(seed)
        self.alive: list[tuple[str, str]] = []  # (doc id, its unique word)
        self.topics: list[tuple[str, str]] = []  # every document ever added
        self.gone: dict[str, float] = {}
        self.added = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def word(self, n: int) -> str:
        rng = random.Random(n * 7919 + 17)
        return "".join(rng.choice(_SYLLABLES) for _ in range(4)) + str(n)

    def question(self, rng: random.Random) -> Question | None:
        with self._lock:
            if not self.topics:
                return None
            _, word = rng.choice(self.topics)
        return Question(f"Hvilken referansekode har saken om {word}?", "nb")

    def start(self) -> "Churn":
        self.folder.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._loop, name="loadtest-churn", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.step()
            except Exception:  # a failed step must not end the run; it shows in the report as fewer steps
                log.exception("churn step failed")

    def step(self) -> None:
        n = self.added
        word = self.word(n)
        doc_id = f"{CHURN_PREFIX}{n}.md"
        code = f"RK-{n:04d}-{self.rng.randrange(1000, 9999)}"
        text = (f"# Sak om {word}\n\nKommunen har behandlet saken om {word}. Referansekoden for saken om {word} "
                f"er {code}. Saken om {word} er avsluttet, og alle parter har fått svar.\n")
        part = self.folder / f".{doc_id}.part"
        part.write_text(text, encoding="utf-8")
        part.replace(self.folder / doc_id)
        self.added += 1
        with self._lock:
            self.alive.append((doc_id, word))
            self.topics.append((doc_id, word))
            victim = self.alive.pop(0) if len(self.alive) > self.keep else None
        if victim is not None:
            (self.folder / victim[0]).unlink(missing_ok=True)
            self._wait_gone(victim[0])

    def _wait_gone(self, doc_id: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self._stop.is_set() and time.monotonic() < deadline:
            if doc_id not in self.bot._reader().documents():
                self.gone[doc_id] = time.monotonic()
                return
            time.sleep(0.05)
