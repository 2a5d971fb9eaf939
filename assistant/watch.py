"""Keep an index fresh while documents arrive: watch corpus folders, index after a quiet spell.

    watcher = Watcher(bot, ["corpus"], quiet_seconds=1.0, on_report=print)
    watcher.start()   # a background thread; the first run brings the index up to date
    ...
    watcher.stop()

Filesystem events (inotify through `watchdog`) mark the index dirty; a run of
`Assistant.index` starts once `quiet_seconds` pass without a new event, so a
copy of 500 files becomes one run, or a few. Where native events are not
available (no inotify, its watch limit reached, a network file system) the
watcher polls the folders instead. Runs are incremental, so a renamed file
embeds nothing and a run costs what changed. A run that meets another writer
(`IndexLockedError`) is retried later; any other failure is logged and the
watcher keeps going. Readers of the same index (a server) see each finished
run on their next query: see `Assistant.refresh`.

Limits: events for hidden files and folders (names starting with ".") are
ignored, as the indexer skips them; a corpus folder that does not exist when
the watcher starts is not watched (the run reports it as skipped).
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .errors import IndexLockedError

if TYPE_CHECKING:
    from .core import Assistant
    from .types import IndexReport

log = logging.getLogger(__name__)

# Events that say a file was only read (by the indexer itself, among others): not a change.
_READ_ONLY_EVENTS = frozenset({"opened", "closed_no_write"})


class Watcher:
    """Index `corpus_dirs` into `bot`'s index whenever they change. Thread-safe `start`/`stop`."""

    def __init__(self, bot: "Assistant", corpus_dirs: Sequence[str | Path], *, quiet_seconds: float = 1.0,
                 on_report: Callable[["IndexReport"], None] | None = None, polling: bool | None = None,
                 poll_seconds: float = 1.0, retry_seconds: float = 2.0, max_delay_seconds: float = 30.0,
                 index_on_start: bool = True) -> None:
        """`polling`: None tries native events first, True always polls, False never does.

        `max_delay_seconds` bounds how long a stream of events can postpone a run;
        `index_on_start` makes the first run happen at once, to catch what changed while nobody watched.
        """
        self.bot = bot
        self.corpus_dirs = [Path(d) for d in corpus_dirs]
        self.quiet_seconds = quiet_seconds
        self.on_report = on_report
        self.polling = polling
        self.poll_seconds = poll_seconds
        self.retry_seconds = retry_seconds
        self.max_delay_seconds = max_delay_seconds
        self.index_on_start = index_on_start
        self.runs = 0  # finished runs
        self.failures = 0  # runs that raised something other than IndexLockedError
        self._failing = 0  # such failures in a row, for the back-off
        self.mode: str | None = None  # "events" or "polling", once started
        self._cond = threading.Condition()
        self._dirty_since: float | None = None
        self._last_event = 0.0
        self._not_before = 0.0
        self._running = False
        self._stopping = False
        self._observer: Any = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------
    def start(self) -> "Watcher":
        if self._thread is not None:
            raise RuntimeError("the watcher is already started")
        self._stopping = False
        self._observer = self._start_observer()
        if self.index_on_start:
            self.mark_dirty(immediate=True)
        self._thread = threading.Thread(target=self._loop, name="assistant-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop watching; a run in progress finishes first (it is one transaction either way)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout)
            self._observer = None
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> "Watcher":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def idle(self) -> bool:
        """No change waiting and no run in progress."""
        with self._cond:
            return self._dirty_since is None and not self._running

    def wait_idle(self, timeout: float) -> bool:
        """Block until `idle` (True) or `timeout` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._dirty_since is not None or self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    # -- events -----------------------------------------------------------------
    def mark_dirty(self, *, immediate: bool = False) -> None:
        """Note a change; a run follows after the quiet period (at once with `immediate`)."""
        now = time.monotonic()
        with self._cond:
            if self._dirty_since is None:
                self._dirty_since = now
            self._last_event = now - (self.quiet_seconds if immediate else 0.0)
            self._cond.notify_all()

    def _on_event(self, event: Any) -> None:
        if event.event_type in _READ_ONLY_EVENTS:
            return
        if event.is_directory and event.event_type == "modified":
            return  # a folder's own mtime: the event for the file inside it says what changed
        paths = [event.src_path, getattr(event, "dest_path", "")]
        if any(p and self._relevant(Path(p.decode() if isinstance(p, bytes) else p)) for p in paths):
            self.mark_dirty()

    def _relevant(self, path: Path) -> bool:
        if self.bot.index_dir.resolve() in path.resolve().parents:
            return False
        for root in self.corpus_dirs:
            try:
                rel = path.relative_to(root)
            except ValueError:
                try:
                    rel = path.resolve().relative_to(root.resolve())
                except ValueError:
                    continue
            return not any(part.startswith(".") for part in rel.parts)
        return False

    def _start_observer(self) -> Any:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers.polling import PollingObserver

        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                watcher._on_event(event)

        roots = [d for d in self.corpus_dirs if d.is_dir()]
        for missing in sorted(set(self.corpus_dirs) - set(roots)):
            log.warning("corpus folder %s does not exist; not watching it", missing)
        if self.polling is not True:
            try:
                from watchdog.observers import Observer

                observer = Observer()
                for root in roots:
                    observer.schedule(Handler(), str(root), recursive=True)
                observer.start()
                self.mode = "events"
                return observer
            except (OSError, ImportError) as exc:
                if self.polling is False:
                    raise
                log.warning("filesystem events are not available (%s); polling every %.1f s",
                            exc, self.poll_seconds)
        observer = PollingObserver(timeout=self.poll_seconds)
        for root in roots:
            observer.schedule(Handler(), str(root), recursive=True)
        observer.start()
        self.mode = "polling"
        return observer

    # -- the indexing thread ----------------------------------------------------
    def _due(self) -> float | None:
        """Seconds until the next run should start (<= 0: now), or None when nothing is waiting."""
        if self._dirty_since is None:
            return None
        now = time.monotonic()
        quiet_until = self._last_event + self.quiet_seconds
        latest = self._dirty_since + self.max_delay_seconds
        return max(min(quiet_until, latest), self._not_before) - now

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    due = self._due()
                    if due is not None and due <= 0:
                        break
                    self._cond.wait(due)
                if self._stopping:
                    return
                self._dirty_since = None
                self._running = True
            try:
                self._run_once()
            finally:
                with self._cond:
                    self._running = False
                    self._cond.notify_all()

    def _run_once(self) -> None:
        try:
            # New changes stop the embedding of this run's documents (already searchable by
            # their words); the next run publishes the changes, then embeds what is left.
            report = self.bot.index(self.corpus_dirs, interrupt=self._changed_since_start)
        except IndexLockedError as exc:
            log.info("%s; retrying in %.1f s", exc, self.retry_seconds)
            self._retry_later(self.retry_seconds)
            return
        except Exception:  # noqa: BLE001 - the watcher must outlive any one bad run
            self.failures += 1
            self._failing += 1
            delay = self.retry_seconds * 2 ** min(self._failing - 1, 6)
            log.exception("index run failed; retrying in %.1f s", delay)
            self._retry_later(delay)
            return
        self._failing = 0
        self.runs += 1
        log.info("indexed: %d added, %d changed, %d removed, %d chunks embedded in %.2f s",
                 len(report.added), len(report.changed), len(report.removed), report.chunks_embedded,
                 report.seconds)
        if self.on_report is not None:
            try:
                self.on_report(report)
            except Exception:  # noqa: BLE001
                log.exception("on_report callback failed")

    def _changed_since_start(self) -> bool:
        with self._cond:
            return self._dirty_since is not None

    def _retry_later(self, delay: float) -> None:
        """Run again after `delay` seconds (sooner changes wait for it too)."""
        with self._cond:
            now = time.monotonic()
            if self._dirty_since is None:
                self._dirty_since = now
                self._last_event = now - self.quiet_seconds
            self._not_before = now + delay


# -- the command line -----------------------------------------------------------
def _print_report(report: "IndexReport", as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.to_json(), ensure_ascii=False), flush=True)
        return
    stamp = time.strftime("%H:%M:%S")
    print(f"{stamp} indexed in {report.seconds:.1f} s: {len(report.added)} added, "
          f"{len(report.changed)} changed, {len(report.removed)} removed, {report.unchanged} unchanged; "
          f"{report.chunks_embedded} chunks embedded; {report.documents_total} documents.", flush=True)


def cmd_watch(args: argparse.Namespace) -> int:
    from .cli import _open, _say

    bot = _open(args)
    dirs = [Path(d) for d in (args.corpus or bot.settings.corpus_dirs)]
    watcher = Watcher(bot, dirs, quiet_seconds=args.quiet, polling=True if args.poll else None,
                      on_report=lambda r: _print_report(r, args.json))
    watcher.start()
    _say(args, f"Watching {', '.join(map(str, dirs))} ({watcher.mode}); Ctrl-C to stop.")
    try:
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        _say(args, "Stopping …")
    finally:
        watcher.stop()
    return 0


def add_commands(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    p = command("watch", cmd_watch, "index the corpus folders now, then again whenever they change")
    p.add_argument("--corpus", action="append", help="corpus folder (repeatable; default: corpus/)")
    p.add_argument("--quiet", type=float, default=1.0, metavar="SECONDS",
                   help="index after this many seconds without changes (default 1)")
    p.add_argument("--poll", action="store_true", help="poll the folders instead of using filesystem events")


__all__ = ["Watcher", "add_commands"]
