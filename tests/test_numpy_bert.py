"""The packaged model's numpy forward pass gives sentence-transformers' vectors, without importing torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from assistant import AssistantError, Settings
from assistant.embedding import SentenceTransformerEmbedder, load_embedder, question_embedder
from assistant.numpy_bert import NumpyBert, NumpyEmbedder, supports
from conftest import ENCODER_TEXTS, ROOT, SEED

TEXTS = ENCODER_TEXTS


@pytest.fixture(scope="module")
def folder(real_embedder) -> Path:  # type: ignore[no-untyped-def]
    real_embedder.embed(["query: x"])  # converts the packaged model into its folder
    return Path(real_embedder._source())


def test_same_vectors_as_sentence_transformers(real_embedder, folder: Path) -> None:  # type: ignore[no-untyped-def]
    questions = real_embedder.for_questions()  # ONNX Runtime where it imports (test_onnx_bert.py), else numpy
    assert isinstance(questions, NumpyEmbedder) and questions is not real_embedder
    assert np.abs(questions.embed(TEXTS) - real_embedder.embed(TEXTS)).max() < 1e-5
    ours = NumpyBert.load(folder).encode(TEXTS)
    theirs = real_embedder.embed(TEXTS)
    assert ours.shape == theirs.shape == (len(TEXTS), 384) and ours.dtype == np.float32
    assert np.abs(ours - theirs).max() < 1e-5
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_batches_of_any_size_give_the_same_vectors(folder: Path) -> None:
    model = NumpyBert.load(folder)
    whole = model.encode(TEXTS)
    one_by_one = np.vstack([model.encode([t]) for t in TEXTS])
    small_batches = model.encode(TEXTS, max_batch_tokens=40)
    assert np.abs(whole - one_by_one).max() < 1e-6
    assert np.abs(whole - small_batches).max() < 1e-6
    assert model.encode([]).shape == (0, 384)


def test_identity_and_dimension_without_sentence_transformers(model_cache: Path) -> None:
    embedder = load_embedder(Settings.load(env={}, cache_dir=model_cache))
    assert isinstance(embedder, SentenceTransformerEmbedder)
    questions = question_embedder(embedder)
    assert (questions.model_id, questions.fingerprint) == (embedder.model_id, embedder.fingerprint)
    assert embedder.dimension == 384 and not embedder.is_loaded  # told by the numpy side
    with pytest.raises(TypeError):
        questions.embed("one string")


def test_the_setting_turns_it_off(model_cache: Path) -> None:
    embedder = load_embedder(Settings.load(env={"ASSISTANT_NUMPY_QUESTIONS": "0"}, cache_dir=model_cache))
    assert question_embedder(embedder) is embedder


def test_other_models_are_refused_with_a_reason(folder: Path, tmp_path: Path) -> None:
    assert supports(folder) is None
    copy = tmp_path / "model"
    shutil.copytree(folder, copy)
    pooling = copy / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    pooling.write_text(json.dumps({**config, "pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True}))
    assert supports(copy) == "pooling is not plain mean pooling"
    with pytest.raises(AssistantError, match="cannot compute .* in numpy: pooling"):
        NumpyBert.load(copy)
    (copy / "modules.json").write_text("not json")
    assert "cannot read" in (supports(copy) or "")
    assert "cannot read" in (supports(tmp_path / "missing") or "")


def test_a_damaged_weights_file_is_one_line_error(folder: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(folder, copy)
    (copy / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(AssistantError, match="cannot load") as caught:
        NumpyBert.load(copy)
    assert "\n" not in str(caught.value)


def test_a_question_over_an_index_never_imports_torch(real_embedder, model_cache: Path,  # type: ignore[no-untyped-def]
                                                      tmp_path: Path) -> None:
    from assistant import Assistant

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(SEED, corpus / SEED.name)
    index = tmp_path / "index"
    settings = Settings.load(env={}, index_dir=index, corpus_dirs=[corpus], cache_dir=model_cache)
    with Assistant.open(settings=settings, embedder=real_embedder) as bot:
        bot.index()
    script = (
        "import sys\n"
        "from assistant import Assistant, Settings\n"
        f"s = Settings.load(index_dir={str(index)!r}, cache_dir={str(model_cache)!r})\n"
        "with Assistant.open(settings=s) as bot:\n"
        "    answer = bot.ask('Hvordan kom den nye søknaden om sosialhjelp i stand?')\n"
        "print(answer.hits[0].doc_id, answer.refused, 'torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [SEED.name, "False", "False", "False"]


def test_missing_weights_are_named(folder: Path, tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    copy = tmp_path / "model"
    shutil.copytree(folder, copy)
    weights = load_file(str(copy / "model.safetensors"))
    del weights["encoder.layer.3.output.dense.weight"]
    save_file(weights, str(copy / "model.safetensors"))
    with pytest.raises(AssistantError, match="have no encoder.layer.3.output.dense.weight"):
        NumpyBert.load(copy)
