"""The embedding model in a process of its own: `ProcessEmbedder`.

`assistant serve` starts the model's process first, then imports gradio and
builds the web app. The model loads in the child while gradio is imported in
the server, on the other core, instead of one after the other under one
interpreter lock; and embedding under load does not compete with the server
for that lock. Questions (`for_questions()`) go to the child's question
engine (ONNX Runtime or numpy, for the packaged model: loaded in about 2 s); passages to the
full model, which imports torch and sentence-transformers when first asked.
The server embeds through a socket pair: a list of texts goes out, a
float32 array comes back. Several threads may embed at once; the child embeds
up to `workers` lists at a time, as threads in one process would.

The child is `python -m assistant.model_process --fd N`. It reads the
settings, loads `load_embedder(settings)` (or a `module:factory`, for tests),
reports the model's identity and dimension, then serves until the socket
closes: when the server closes it, or dies. It ignores Ctrl-C, so that a
Ctrl-C in the terminal stops the server, which then stops the child. A child
that dies (killed, out of memory) is started again on the next call; a model
that cannot be loaded is an error on every call, not a restart loop.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .embedding import WrappedEmbedder, question_embedder
from .errors import AssistantError
from .settings import Settings

log = logging.getLogger(__name__)

__all__ = ["ProcessEmbedder", "main"]

START_SECONDS = 600.0  # how long a call waits for the model to load (a first conversion takes minutes)


class ProcessEmbedder:
    """An `Embedder` whose model lives in a child process, started at once.

    `factory` ("module:callable", called with no arguments in the child) replaces
    `load_embedder(settings)`; tests pass their fake embedder this way.
    """

    def __init__(self, settings: Settings, *, factory: str | None = None, workers: int = 4) -> None:
        if workers < 1:
            raise AssistantError(f"the model process needs at least one worker, got {workers}")
        self.settings = settings
        self.factory = factory
        self.workers = workers
        self.restarts = 0
        self._lock = threading.Lock()
        self._closed = False
        self._child: _Child | None = _Child(settings, factory, workers)

    @property
    def model_id(self) -> str:
        return self._ready().model_id

    @property
    def fingerprint(self) -> str:
        return self._ready().fingerprint

    @property
    def dimension(self) -> int:
        return self._ready().dimension

    @property
    def pid(self) -> int | None:
        """The child's process id (None once closed)."""
        child = self._child
        return child.proc.pid if child is not None else None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """The vectors of `texts`. A child that dies during the call is replaced and asked once more."""
        return self._embed(texts, questions=False)

    def for_questions(self) -> "_Questions":
        """Embeds with the child's question engine (`question_embedder`): same vectors, and
        for the packaged model no sentence-transformers import in the child."""
        return _Questions(self)

    def _embed(self, texts: Sequence[str], *, questions: bool) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one string")
        items = list(texts)
        child = self._ready()
        if not items:
            return np.zeros((0, child.dimension), dtype=np.float32)
        try:
            return child.submit(items, questions).result()
        except AssistantError:
            if not child.crashed:  # an error of the model itself is the caller's
                raise
        return self._ready().submit(items, questions).result()

    def close(self) -> None:
        """Stop the child (it finishes nothing that is still queued)."""
        with self._lock:
            self._closed = True
            child, self._child = self._child, None
        if child is not None:
            child.stop()

    def __enter__(self) -> "ProcessEmbedder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ready(self) -> "_Child":
        """The running child, once its model is loaded; a child that died is replaced first."""
        with self._lock:
            if self._closed:
                raise AssistantError("the embedding model's process was closed")
            child = self._child
            if child is None or child.crashed:
                if child is not None:
                    log.warning("%s; starting it again", child.error)
                    child.stop()
                    self.restarts += 1
                child = self._child = _Child(self.settings, self.factory, self.workers)
        child.wait_ready()
        return child


class _Questions(WrappedEmbedder):
    """The question side of a `ProcessEmbedder` (same identity, the child's question engine)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner._embed(texts, questions=True)


class _Child:
    """One child process, the socket to it, and the thread that reads its replies."""

    def __init__(self, settings: Settings, factory: str | None, workers: int) -> None:
        ours, theirs = socket.socketpair()
        root = str(Path(__file__).resolve().parents[1])  # the child imports this very package
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
        cmd = [sys.executable, "-m", "assistant.model_process", "--fd", str(theirs.fileno()),
               "--workers", str(workers)]
        try:
            self.proc = subprocess.Popen(cmd, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env)
        except OSError as exc:
            ours.close()
            raise AssistantError(f"cannot start the embedding model's process: {exc}") from None
        finally:
            theirs.close()
        self._socket = ours  # kept to shut it down: closing alone would not wake the reader
        self.conn = Connection(os.dup(ours.fileno()))
        self.model_id = self.fingerprint = ""
        self.dimension = 0
        self.error: AssistantError | None = None
        self.failed = False  # the model could not be loaded: restarting would not help
        self._started = time.monotonic()
        self._loaded = threading.Event()
        self._send_lock = threading.Lock()
        self._pending: dict[int, Future[np.ndarray]] = {}
        self._ids = itertools.count()
        try:
            self._send(("settings", settings, factory))
        except OSError:  # it died at once; the reader sees the closed socket and says so
            pass
        self._reader = threading.Thread(target=self._read, name="assistant-model-replies", daemon=True)
        self._reader.start()

    @property
    def crashed(self) -> bool:
        """It stopped after loading (or while loading) for a reason other than the model itself."""
        return self.error is not None and not self.failed

    def wait_ready(self, timeout: float = START_SECONDS) -> None:
        if not self._loaded.wait(timeout):
            raise AssistantError(f"the embedding model did not load within {timeout:g} s")
        if self.error is not None:
            raise self.error

    def submit(self, texts: list[str], questions: bool = False) -> "Future[np.ndarray]":
        future: Future[np.ndarray] = Future()
        with self._send_lock:
            if self.error is not None:
                raise self.error
            ident = next(self._ids)
            self._pending[ident] = future
            try:
                self.conn.send(("embed", ident, texts, questions))
            except OSError:
                self._pending.pop(ident, None)
                raise AssistantError("the embedding model's process stopped; try again") from None
        return future

    def stop(self, timeout: float = 5.0) -> None:
        try:
            self._socket.shutdown(socket.SHUT_RDWR)  # the child reads end-of-file and exits
        except OSError:
            pass
        self._socket.close()
        self.conn.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout)

    def _send(self, message: tuple[Any, ...]) -> None:
        with self._send_lock:
            self.conn.send(message)

    def _read(self) -> None:
        try:
            while True:
                message = self.conn.recv()
                kind = message[0]
                if kind == "ready":
                    _, self.model_id, self.fingerprint, self.dimension, seconds = message
                    log.info("model %s loaded in its own process in %.1f s (%.1f s since start)",
                             self.model_id, seconds, time.monotonic() - self._started)
                    self._loaded.set()
                elif kind == "failed":
                    self.failed = True
                    self.error = AssistantError(message[1])
                    break
                else:  # ("vectors", id, array) or ("error", id, message)
                    with self._send_lock:
                        future = self._pending.pop(message[1], None)
                    if future is None:
                        continue
                    if kind == "vectors":
                        future.set_result(message[2])
                    else:
                        future.set_exception(AssistantError(message[2]))
        except (EOFError, OSError):
            pass
        code = self.proc.poll()
        if code is None:
            try:
                code = self.proc.wait(5)
            except subprocess.TimeoutExpired:
                code = None
        with self._send_lock:
            if self.error is None:
                how = f"exit code {code}" if code is not None else "its socket closed"
                self.error = AssistantError(f"the embedding model's process stopped ({how})")
            pending, self._pending = self._pending, {}
        for future in pending.values():
            future.set_exception(self.error)
        self._loaded.set()


# -- the child -----------------------------------------------------------------------
def _load(settings: Settings, factory: str | None) -> Any:
    from .embedding import embedder_from_factory, load_embedder

    return embedder_from_factory(factory) if factory else load_embedder(settings)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m assistant.model_process",
                                     description="the embedding model's process (started by assistant serve)")
    parser.add_argument("--fd", type=int, required=True, help="the socket to the server")
    parser.add_argument("--workers", type=int, default=4, help="lists embedded at once")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server stops us when it stops
    logging.basicConfig(level=logging.WARNING, format="model process: %(message)s")
    conn = Connection(args.fd)
    try:
        _, settings, factory = conn.recv()
    except (EOFError, OSError):
        return 0
    started = time.monotonic()
    try:
        embedder = _load(settings, factory)
        identity = (embedder.model_id, embedder.fingerprint, int(embedder.dimension))
    except Exception as exc:  # reported to the server, which shows it
        try:
            conn.send(("failed", str(exc) or type(exc).__name__))
        except OSError:
            pass
        return 1
    try:
        conn.send(("ready", *identity, time.monotonic() - started))
    except OSError:  # the server stopped while the model loaded
        return 0
    send_lock = threading.Lock()
    questions = question_embedder(embedder)

    def work(ident: int, texts: list[str], for_questions: bool) -> None:
        try:
            vectors = (questions if for_questions else embedder).embed(texts)
            reply: tuple[Any, ...] = ("vectors", ident, np.asarray(vectors, dtype=np.float32))
        except Exception as exc:
            reply = ("error", ident, str(exc) or type(exc).__name__)
        try:
            with send_lock:
                conn.send(reply)
        except OSError:  # the server has gone; the main loop sees it too
            pass

    with ThreadPoolExecutor(args.workers, thread_name_prefix="embed") as pool:
        while True:
            try:
                _, ident, texts, for_questions = conn.recv()
            except (EOFError, OSError):
                pool.shutdown(wait=False, cancel_futures=True)
                break
            pool.submit(work, ident, texts, for_questions)
    return 0


if __name__ == "__main__":
    sys.exit(main())
