"""The embedding seam: the fake's properties, and the real embedder over the packaged model."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from assistant import packaged_model
from assistant.embedding import (CachedEmbedder, Embedder, SentenceTransformerEmbedder, folder_fingerprint,
                                 load_embedder)
from assistant.errors import AssistantError
from assistant.settings import DEFAULT_MODEL, Settings
from fakes import FakeEmbedder

# ----------------------------------------------------------------- FakeEmbedder


def test_fake_satisfies_the_protocol() -> None:
    assert isinstance(FakeEmbedder(), Embedder)


@pytest.mark.parametrize("dimension", [1, 8, 64, 384])
def test_fake_rows_are_unit_float32(dimension: int) -> None:
    texts = ["Barnehage i kommunen", "", "   ", "😀", "Æ Ø Å", "a " * 1000]
    vectors = FakeEmbedder(dimension).embed(texts)
    assert vectors.shape == (len(texts), dimension)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)


def test_fake_empty_input_has_the_dimension() -> None:
    fake = FakeEmbedder(dimension=32)
    assert fake.embed([]).shape == (0, 32)


def test_fake_is_deterministic_across_instances_and_case() -> None:
    a = FakeEmbedder().embed(["Søknad om sosialhjelp"])
    b = FakeEmbedder().embed(["søknad OM Sosialhjelp"])
    np.testing.assert_array_equal(a, b)


def test_fake_ranks_passages_that_share_words_first() -> None:
    passages = [
        "Snøbrøyting av kommunale veier skjer om natten.",
        "Barnehageplass søkes gjennom kommunens nettside innen 1. mars.",
        "Biblioteket har åpent på lørdager.",
    ]
    fake = FakeEmbedder()
    scores = fake.embed(passages) @ fake.embed(["Hvordan søker jeg barnehageplass?"])[0]
    assert int(np.argmax(scores)) == 1
    assert scores[1] > scores[0] and scores[1] > scores[2]


def test_fake_counts_calls_and_texts() -> None:
    fake = FakeEmbedder()
    fake.embed(["a", "b"])
    fake.embed([])
    fake.embed(["c"])
    assert (fake.calls, fake.texts_embedded, fake.seen) == (3, 3, ["a", "b", "c"])


def test_fake_refuses_a_bare_string() -> None:
    with pytest.raises(TypeError):
        FakeEmbedder().embed("one string")  # type: ignore[arg-type]


# ----------------------------------------------------------------- load_embedder without a model


def test_default_model_is_lazy(tmp_path: Path) -> None:
    embedder = load_embedder(Settings(cache_dir=tmp_path))
    assert embedder.model_id == DEFAULT_MODEL
    assert embedder.fingerprint == packaged_model.WEIGHTS_SHA256
    assert isinstance(embedder, SentenceTransformerEmbedder) and not embedder.is_loaded
    assert not (tmp_path / "models").exists()  # nothing converted until first use


@pytest.mark.parametrize("name", ["./no-such-model", "/no/such/model/dir", "a/b/c"])
def test_missing_local_path_fails_at_once(tmp_path: Path, name: str) -> None:
    with pytest.raises(AssistantError, match="no such folder"):
        load_embedder(Settings(cache_dir=tmp_path, model=name))


def test_unknown_hub_name_fails_with_one_line_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    embedder = load_embedder(Settings(cache_dir=tmp_path, model="kommune-test/does-not-exist"))
    assert embedder.fingerprint == "kommune-test/does-not-exist"
    started = time.monotonic()
    with pytest.raises(AssistantError) as info:
        embedder.embed(["hei"])
    assert time.monotonic() - started < 30  # online, huggingface_hub retries for over a minute
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("cannot load model kommune-test/does-not-exist:")
    assert "pass a local path" in message


def test_broken_local_folder_fails_with_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text("{not json", encoding="utf-8")
    embedder = load_embedder(Settings(cache_dir=tmp_path, model=str(folder)))
    with pytest.raises(AssistantError, match=r"^cannot load model .*broken: ") as info:
        embedder.embed(["hei"])
    assert "\n" not in str(info.value)


def test_folder_fingerprint_follows_configs(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"a": 1}', encoding="utf-8")
    first = folder_fingerprint(tmp_path)
    assert folder_fingerprint(tmp_path) == first
    (tmp_path / "config.json").write_text('{"a": 2}', encoding="utf-8")
    assert folder_fingerprint(tmp_path) != first


def test_batch_size_must_be_positive() -> None:
    with pytest.raises(AssistantError):
        SentenceTransformerEmbedder("x", batch_size=0)


# ----------------------------------------------------------------- the real model


# `real_embedder` (conftest.py): `load_embedder` with the default model, converted once per session.


def test_real_embedder_shapes_and_norms(real_embedder: SentenceTransformerEmbedder) -> None:
    assert isinstance(real_embedder, SentenceTransformerEmbedder)
    assert real_embedder.model_id == DEFAULT_MODEL
    assert real_embedder.dimension == 384
    assert real_embedder.embed([]).shape == (0, 384)
    texts = ["passage: Kort.", "passage: " + "Lang tekst om kommunen. " * 400, "query: ", "passage: 😀 æøå"]
    vectors = real_embedder.embed(texts)
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32 and vectors.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert real_embedder._loaded().max_seq_length == 512


def test_real_embedder_is_batch_invariant(real_embedder: SentenceTransformerEmbedder, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [f"passage: Dokument {i} handler om {'barnehage skole vei'.split()[i % 3]}." + " Mer." * i for i in range(7)]
    monkeypatch.setattr(real_embedder, "batch_size", 1)
    one = real_embedder.embed(texts)
    monkeypatch.setattr(real_embedder, "batch_size", 32)
    many = real_embedder.embed(texts)
    np.testing.assert_allclose((one * many).sum(axis=1), 1.0, atol=1e-4)


def test_real_embedder_retrieves_across_languages(real_embedder: SentenceTransformerEmbedder) -> None:
    passages = [
        "passage: Foreldrebetalingen i barnehagen er maksimalt 3000 kroner i måneden.",
        "passage: Kommunen brøyter veiene når det har kommet mer enn ti centimeter snø.",
        "passage: Biblioteket låner ut bøker, lydbøker og filmer gratis.",
    ]
    matrix = real_embedder.embed(passages)
    for question, expected in [
        ("query: Hva koster barnehage?", 0),
        ("query: When are the roads cleared of snow?", 1),
        ("query: Can I borrow audiobooks for free?", 2),
    ]:
        assert int(np.argmax(matrix @ real_embedder.embed([question])[0])) == expected, question


def test_the_question_cache_returns_the_same_vectors_and_embeds_each_text_once() -> None:
    inner = FakeEmbedder()
    cached = CachedEmbedder(inner, max_items=3)
    first = cached.embed(["query: a", "passage: b", "query: a"])
    assert np.array_equal(first, FakeEmbedder().embed(["query: a", "passage: b", "query: a"]))
    assert inner.texts_embedded == 2  # the repeated text once
    again = cached.embed(["passage: b", "query: a"])
    assert np.array_equal(again, first[[1, 0]]) and inner.texts_embedded == 2
    cached.embed(["c", "d", "e"])  # a bounded LRU: the oldest texts go
    cached.embed(["query: a"])
    assert inner.texts_embedded == 6
    assert cached.embed([]).shape == (0, inner.dimension)
    assert (cached.model_id, cached.fingerprint, cached.dimension) == (inner.model_id, inner.fingerprint,
                                                                       inner.dimension)


def test_weights_that_borrow_a_memory_map_get_their_own_copy() -> None:
    import torch

    from assistant.torch_weights import own_weights

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.LayerNorm(2))
    mapped = bytearray(np.arange(4, dtype=np.float32).tobytes())  # stands in for the weights file's map
    weight = model[0].weight
    weight.data = torch.frombuffer(mapped, dtype=torch.float32).view(2, 2)
    assert not weight.untyped_storage().resizable()
    assert own_weights(model) == 1
    assert model[0].weight is weight and weight.untyped_storage().resizable()  # the same Parameter, own memory
    mapped[:4] = np.float32(99).tobytes()
    assert weight[0, 0].item() == 0.0  # no longer reads the borrowed bytes
    assert own_weights(model) == 0
    weight.data = torch.frombuffer(mapped, dtype=torch.float32).view(2, 2)
    assert own_weights(model, leave=(weight,)) == 0 and not weight.untyped_storage().resizable()
