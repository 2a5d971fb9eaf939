"""Adding and deleting documents from the browser: login, upload, delete, re-index.

`LoginGate` checks the admin password in constant time and locks a client out
after repeated failures; the password is never logged. `Admin` saves uploads
into the first corpus folder under sanitised names (nothing can escape it),
enforces the readers' types and the size limit, and runs an incremental
`Assistant.index` after each change. Index runs are serialised in this
process and wait for another indexer (such as `--watch`) to finish.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import shutil
import threading
import time
import unicodedata
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

from .errors import AssistantError, IndexLockedError
from .indexing import Progress
from .readers import SUPPORTED_SUFFIXES, is_licence_file
from .types import IndexReport

if TYPE_CHECKING:
    from .core import Assistant

log = logging.getLogger(__name__)

UPLOAD_SUFFIXES = tuple(sorted(s for s in SUPPORTED_SUFFIXES if s))
_UNSAFE = re.compile(r"[^\w.\- ]+")
MAX_NAME = 120


class UploadError(AssistantError):
    """An upload that was refused (type, size or name); the message is one line."""


def sanitise_filename(name: str) -> str:
    """A safe file name for `name`: its last path component, without control or path characters.

    Raises `UploadError` when nothing usable is left or the type is unsupported.
    """
    base = re.split(r"[\\/]", unicodedata.normalize("NFC", name or ""))[-1]
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C")
    base = _UNSAFE.sub("_", base).strip(" .")
    base = re.sub(r"\s+", " ", base)
    stem, dot, suffix = base.rpartition(".")
    if not dot or not stem.strip("._ "):
        raise UploadError(f"{name!r}: the name needs a file type ({', '.join(UPLOAD_SUFFIXES)})")
    suffix = "." + suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise UploadError(f"{name!r}: unsupported type {suffix} (allowed: {', '.join(UPLOAD_SUFFIXES)})")
    stem = stem[: MAX_NAME - len(suffix)].rstrip(" .")
    return stem + suffix


def inside(root: Path, path: Path) -> bool:
    """Whether `path` resolves to somewhere inside `root` (not `root` itself)."""
    root, target = root.resolve(), path.resolve()
    return target != root and target.is_relative_to(root)


class SharedState(Protocol):
    """Small named values that every app server of one index sees (the index's store)."""

    def shared_value(self, key: str) -> str | None: ...

    def set_shared_value(self, key: str, value: str) -> None: ...


class LoginGate:
    """Checks the admin password; after `max_failures` wrong tries in `window` seconds, a client waits.

    With `shared` (the `Assistant`), failed tries are counted in the index's store, so that
    app servers sharing one store (a Milvus cluster, or one SQLite index) share the limit;
    times are then wall-clock seconds. Without it, they are counted in this process.
    """

    def __init__(self, password: str, *, max_failures: int = 5, window: float = 300.0,
                 clock: "Callable[[], float] | None" = None, shared: SharedState | None = None) -> None:
        if not password:
            raise ValueError("an empty admin password would let anyone in")
        self._password = password.encode("utf-8")
        self.max_failures = max_failures
        self.window = window
        self._shared = shared
        self._clock = clock or (time.time if shared is not None else time.monotonic)
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _load(self, client: str) -> deque[float]:
        if self._shared is None:
            return self._failures.setdefault(client, deque())
        try:
            raw = self._shared.shared_value(_LOGIN_KEY + client)
            return deque(float(t) for t in json.loads(raw)) if raw else deque()
        except (ValueError, TypeError):
            return deque()

    def _save(self, client: str, fails: deque[float]) -> None:
        if self._shared is None:
            self._failures[client] = fails
        else:
            self._shared.set_shared_value(_LOGIN_KEY + client, json.dumps(list(fails)))

    def locked_for(self, client: str) -> float:
        """Seconds until `client` may try again (0 when it may now)."""
        with self._lock:
            now = self._clock()
            fails = self._load(client)
            while fails and now - fails[0] > self.window:
                fails.popleft()
            if len(fails) < self.max_failures:
                return 0.0
            return max(0.0, self.window - (now - fails[0]))

    def check(self, client: str, password: str) -> bool:
        """True for the right password; a wrong one counts against `client`. Locked clients always fail."""
        if self.locked_for(client) > 0:
            return False
        ok = hmac.compare_digest(self._password, (password or "").encode("utf-8"))
        with self._lock:
            if not ok:
                fails = self._load(client)
                fails.append(self._clock())
                while len(fails) > self.max_failures:
                    fails.popleft()
                self._save(client, fails)
            elif self._shared is None:
                self._failures.pop(client, None)
            else:
                self._save(client, deque())
        if not ok:
            log.warning("wrong admin password from %s", client)
        return ok


_LOGIN_KEY = "login-failures:"


@dataclass(frozen=True)
class Saved:
    """The outcome of one upload: the name it was saved under, or why it was refused."""

    original: str
    name: str | None = None
    error: str | None = None


class Admin:
    """Upload and delete documents in the corpus folders, then bring the index up to date."""

    def __init__(self, bot: "Assistant", corpus_dirs: Sequence[str | Path], *, lock_wait: float = 120.0) -> None:
        if not corpus_dirs:
            raise ValueError("admin needs at least one corpus folder")
        self.bot = bot
        self.corpus_dirs = [Path(d) for d in corpus_dirs]
        self.upload_dir = self.corpus_dirs[0]
        self.max_bytes = bot.settings.max_file_bytes
        self.lock_wait = lock_wait
        self._index_lock = threading.Lock()

    def save_uploads(self, files: Sequence[tuple[str, Path]]) -> list[Saved]:
        """Copy each (original name, temporary path) into the upload folder under a sanitised name."""
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        saved = []
        for original, tmp in files:
            try:
                saved.append(Saved(original, self._save_one(original, Path(tmp))))
            except UploadError as exc:
                saved.append(Saved(original, error=str(exc)))
        return saved

    def _save_one(self, original: str, tmp: Path) -> str:
        name = sanitise_filename(original)
        if is_licence_file(name):
            raise UploadError(f"{original!r}: licence files are not indexed")
        size = tmp.stat().st_size
        if size > self.max_bytes:
            raise UploadError(f"{original!r} is {size} bytes; the limit is {self.max_bytes}")
        if size == 0:
            raise UploadError(f"{original!r} is empty")
        dest = self.upload_dir / name
        if not inside(self.upload_dir, dest) or dest.is_symlink():
            raise UploadError(f"{original!r}: not a name inside the corpus folder")
        part = dest.with_name(f".{name}.part")
        shutil.copyfile(tmp, part)
        part.replace(dest)
        log.info("saved upload %s", name)
        return name

    def documents(self) -> list[str]:
        """The ids of the indexed documents that live in a corpus folder of this server."""
        roots = {str(d.resolve()) for d in self.corpus_dirs}
        docs = self.bot._reader().documents()
        return sorted(d.id for d in docs.values() if str(Path(d.root).resolve()) in roots)

    def delete(self, doc_id: str, progress: Progress | None = None) -> IndexReport:
        """Remove a document's file from its corpus folder, then the index entry."""
        stored = self.bot._reader().documents().get(doc_id)
        if stored is None:
            raise UploadError(f"no document {doc_id!r} in the index")
        root = Path(stored.root)
        if not any(root.resolve() == d.resolve() for d in self.corpus_dirs):
            raise UploadError(f"{doc_id!r} is not in a corpus folder of this server")
        path = root / doc_id
        if not inside(root, path):
            raise UploadError(f"{doc_id!r}: not a path inside the corpus folder")
        path.unlink(missing_ok=True)
        log.info("deleted %s", doc_id)
        return self.reindex(progress)

    def reindex(self, progress: Progress | None = None) -> IndexReport:
        """An incremental index run over the corpus folders, waiting for any other indexer first."""
        deadline = time.monotonic() + self.lock_wait
        with self._index_lock:
            while True:
                try:
                    return self.bot.index(self.corpus_dirs, progress=progress)
                except IndexLockedError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
