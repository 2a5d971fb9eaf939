"""`assistant serve`: the Gradio chat and the JSON API in one FastAPI app, served by uvicorn.

    assistant serve --corpus corpus --port 7860
    ASSISTANT_ADMIN_PASSWORD=... assistant serve      # with the admin tab

`build_app(bot, ...)` returns the app (the JSON API from `api.py` plus the UI
from `webui.py` mounted at `/`); `start_server(app, host, port)` runs it in a
background thread, which is what the tests do. Importing this module is cheap:
gradio, FastAPI and uvicorn are imported only when a server is built.

`assistant serve` loads the model and brings the index up to date in a
background thread (`startup.py`) while it imports gradio, builds the app and
starts listening; "Ready in X s" is printed once both are done, so it means
the chat can answer.
Until then `/api/health` answers 503 with `"ready": false`, the chat says the
model is loading, and questions wait.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

    from .core import Assistant
    from .startup import Startup

log = logging.getLogger(__name__)

ADMIN_PASSWORD_ENV = "ASSISTANT_ADMIN_PASSWORD"


def build_app(bot: "Assistant", *, corpus_dirs: Sequence[str | Path] = (),
              admin_password: str | None = None, startup: "Startup | None" = None) -> "FastAPI":
    """The FastAPI app: `/api/ask`, `/api/search`, `/api/health`, and the chat at `/`.

    The admin tab exists only when `admin_password` is set and there is a corpus folder to upload into.
    With a `startup` that is not ready yet, questions wait for it (see `startup.py`).
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr
    from fastapi import FastAPI

    from .admin import Admin, LoginGate
    from .api import add_api_routes
    from .webhtml import CSS
    from .webui import build_ui

    app = FastAPI(title="kommune-assistent", docs_url="/api/docs", redoc_url=None, openapi_url="/api/openapi.json")
    add_api_routes(app, bot, startup)
    admin = gate = None
    if admin_password and corpus_dirs:
        admin, gate = Admin(bot, corpus_dirs), LoginGate(admin_password, shared=bot)  # limits shared by app servers
    demo = build_ui(bot, admin=admin, gate=gate, startup=startup)
    demo.queue(default_concurrency_limit=4)
    system = ("ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif")
    theme = gr.themes.Soft(font=system, font_mono=("ui-monospace", "monospace"))
    return gr.mount_gradio_app(app, demo, path="/", theme=theme, css=CSS, ssr_mode=False,
                               max_file_size=bot.settings.max_file_bytes, footer_links=["api"])


@dataclass
class RunningServer:
    """A server started by `start_server`: its URL, and `stop()`."""

    server: "uvicorn.Server"
    thread: threading.Thread
    url: str

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the server to stop; open streams (gradio's) are cut after `timeout` seconds."""
        self.server.should_exit = True
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(timeout)


def start_server(app: "FastAPI", host: str = "127.0.0.1", port: int = 0, *, timeout: float = 30.0) -> RunningServer:
    """Serve `app` in a daemon thread; port 0 picks a free one. Returns once it accepts connections."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, name="assistant-web", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the web server did not start on {host}:{port}")
        time.sleep(0.05)
    bound = server.servers[0].sockets[0].getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return RunningServer(server, thread, f"http://{shown}:{bound}")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_serve(args: argparse.Namespace) -> int:
    from .cli import _open, _progress_bar, _settings, _say
    from .startup import Startup

    settings = _settings(args)
    password = os.environ.get(ADMIN_PASSWORD_ENV) or None
    if not is_loopback(args.host) and not password:
        print(f"Warning: serving on {args.host}, reachable from other machines, and {ADMIN_PASSWORD_ENV} "
              "is unset: anyone who can reach it can read the documents through the chat; "
              "the admin tab is off.", file=sys.stderr)
    started = time.monotonic()
    embedder = None
    if settings.model_process:  # starts loading the model now, on the other core
        from .model_process import ProcessEmbedder

        embedder = ProcessEmbedder(settings)
    try:
        bot = _open(args, check=False, embedder=embedder)  # quick: the index is checked in the warm-up
    except BaseException:
        if embedder is not None:
            embedder.close()
        raise
    watchers: list[Any] = []

    def warm_up() -> None:
        """Load the model, check the stamp and bring the index up to date (then watch, if asked)."""
        # Loads the question side of the model (or waits for its process) and makes its first
        # call, which is the slow one, here rather than in a user's question. Indexing loads
        # sentence-transformers only when there is something to embed.
        bot.query_embedder.embed([settings.query_prompt + "oppvarming"])
        if args.no_index:  # an app server sharing a store that another process indexes
            _say(args, f"Serving the index as it is: {bot.info().documents} documents.")
            return
        _say(args, f"Indexing {', '.join(str(d) for d in settings.corpus_dirs)} …")
        report = bot.index(settings.corpus_dirs, progress=_progress_bar(sys.stderr.isatty()) or _log_progress())
        _say(args, f"Index ready: {report.documents_total} documents, {report.chunks_total} chunks "
             f"({len(report.added)} added, {len(report.changed)} changed, {len(report.removed)} removed).")
        for skipped in report.skipped:
            _say(args, f"  skipped {skipped.doc}: {skipped.reason}")
        if args.watch:
            watchers.append(_start_watcher(bot, settings.corpus_dirs))

    # The warm-up (waiting for the model, checking and updating the index) runs while this thread
    # imports gradio and builds the app. The model loads in its own process, so the two run on two
    # cores; the server listens and answers /api/health (503, "ready": false) meanwhile.
    startup = Startup()
    startup.start(warm_up)
    _say(args, "Starting the web server …")
    app = build_app(bot, corpus_dirs=settings.corpus_dirs, admin_password=password, startup=startup)
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                                           access_log=False))
    shown = f"[{args.host}]" if ":" in args.host else args.host

    def announce() -> None:
        startup.finished()
        if startup.error is not None:
            server.should_exit = True
            return
        while not server.started and not server.should_exit:
            time.sleep(0.02)
        if server.started:
            print(f"Ready in {time.monotonic() - started:.1f} s: chat at http://{shown}:{args.port}/ , "
                  f"API at http://{shown}:{args.port}/api/ask (admin tab {'on' if password else 'off'}). "
                  "Ctrl-C stops.", file=sys.stderr)

    threading.Thread(target=announce, name="assistant-announce", daemon=True).start()
    try:
        server.run()
    finally:
        for watcher in watchers:
            watcher.stop()
        error = startup.error  # taken before stopping the model's process, which a loading warm-up would report
        if startup.finished(0):
            bot.close()
        if embedder is not None:
            embedder.close()
    if error is not None:
        raise error
    return 0


def _log_progress() -> Callable[[str, int, int], None]:
    """Progress as plain lines for a log (no terminal): every stage's start and end."""
    def update(stage: str, done: int, total: int) -> None:
        if done == 0 or done >= total:
            print(f"  {stage}: {done}/{total}", file=sys.stderr)
    return update


def _start_watcher(bot: "Assistant", corpus_dirs: Sequence[Path]) -> Any:
    from .errors import AssistantError

    try:
        from .watch import Watcher  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        if exc.name and exc.name.startswith("assistant"):
            raise AssistantError("--watch needs assistant/watch.py, which this install lacks") from None
        raise
    watcher = Watcher(bot, list(corpus_dirs))
    watcher.start()
    print(f"Watching {', '.join(str(d) for d in corpus_dirs)} for changes.", file=sys.stderr)
    return watcher


def add_commands(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    p = command("serve", cmd_serve, "serve the web chat and the JSON API (indexes the corpus first)")
    p.add_argument("--corpus", action="append", help="corpus folder (repeatable; default: corpus/)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--watch", action="store_true", help="re-index when files in the corpus folders change")
    p.add_argument("--no-index", action="store_true",
                   help="serve the index as it is (app servers sharing a Milvus store; see README, Running at scale)")
