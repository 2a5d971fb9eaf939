"""The packaged model's encoder in ONNX Runtime gives sentence-transformers' (and numpy's) vectors;
without onnxruntime, questions fall back to the numpy engine."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from assistant import AssistantError, Settings
from assistant.embedding import load_embedder, question_embedder
from assistant.numpy_bert import NumpyBert, NumpyEmbedder
from assistant.onnx_bert import OnnxBert, onnx_missing
from conftest import ENCODER_TEXTS

TEXTS = ENCODER_TEXTS

pytestmark = pytest.mark.skipif(onnx_missing() is not None, reason=str(onnx_missing()))


@pytest.fixture(scope="module")
def folder(real_embedder) -> Path:  # type: ignore[no-untyped-def]
    real_embedder.embed(["query: x"])  # converts the packaged model into its folder
    return Path(real_embedder._source())


@pytest.fixture(scope="module")
def model(folder: Path) -> OnnxBert:
    return OnnxBert.load(folder, threads=1)


def test_same_vectors_as_sentence_transformers_and_numpy(real_embedder, model: OnnxBert,  # type: ignore[no-untyped-def]
                                                         folder: Path) -> None:
    ours = model.encode(TEXTS)  # one padded batch of mixed lengths, 2 to 512 tokens
    theirs = real_embedder.embed(TEXTS)
    assert ours.shape == theirs.shape == (len(TEXTS), 384) and ours.dtype == np.float32
    assert np.abs(ours - theirs).max() < 1e-6
    assert np.abs(ours - NumpyBert.load(folder).encode(TEXTS)).max() < 1e-6
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)
    assert model.encode(TEXTS[-1:]).shape == (1, 384) and len(model.tokenizer.encode(TEXTS[-1]).ids) == 512


def test_batches_of_any_size_give_the_same_vectors(model: OnnxBert) -> None:
    whole = model.encode(TEXTS)
    one_by_one = np.vstack([model.encode([t]) for t in TEXTS])
    small_batches = model.encode(TEXTS, max_batch_tokens=40)  # the long text alone, short ones in pairs
    reversed_order = model.encode(TEXTS[::-1])[::-1]
    short = [e.ids for e in model.tokenizer.encode_batch(TEXTS[:5])]  # 3 to 25 tokens, padded to 25
    padded = model._forward(short)
    for other in (one_by_one, small_batches, reversed_order, padded):
        assert np.abs(whole[:len(other)] - other).max() < 1e-6
    assert model.encode([]).shape == (0, 384) and model.dimension == 384


def test_the_question_engine_is_onnx_runtime_with_the_thread_setting(model_cache: Path) -> None:
    embedder = load_embedder(Settings.load(env={"ASSISTANT_NUM_THREADS": "1"}, cache_dir=model_cache))
    questions = question_embedder(embedder)
    assert isinstance(questions, NumpyEmbedder) and questions.threads == 1
    assert isinstance(questions._loaded(), OnnxBert) and questions._loaded().threads == 1
    assert questions.embed(["query: x"]).shape == (1, 384) and not embedder.is_loaded


def test_without_onnxruntime_questions_fall_back_to_numpy(model_cache: Path, monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    assert "cannot import onnxruntime" in (onnx_missing() or "")
    questions = question_embedder(load_embedder(Settings.load(env={}, cache_dir=model_cache)))
    with caplog.at_level(logging.INFO, logger="assistant.numpy_bert"):
        vectors = questions.embed(TEXTS[:2])
    assert isinstance(questions._loaded(), NumpyBert)
    said = [r.getMessage() for r in caplog.records if "not ONNX Runtime" in r.getMessage()]
    assert len(said) == 1 and "cannot import onnxruntime" in said[0]
    assert vectors.shape == (2, 384)
    with pytest.raises(AssistantError, match="cannot import onnxruntime.*pip install onnxruntime onnx"):
        OnnxBert.load(model_cache)


def test_a_broken_folder_is_a_one_line_error(folder: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(folder, copy)
    pooling = copy / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    pooling.write_text(json.dumps({**config, "pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True}))
    with pytest.raises(AssistantError, match="cannot compute .* with ONNX Runtime: pooling is not plain mean"):
        OnnxBert.load(copy)
    pooling.write_text(json.dumps(config))
    (copy / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(AssistantError, match="cannot load") as caught:
        OnnxBert.load(copy)
    assert "\n" not in str(caught.value)
    shutil.rmtree(copy)
    with pytest.raises(AssistantError, match="cannot read the model folder's configuration"):
        OnnxBert.load(copy)
