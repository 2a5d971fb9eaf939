"""Language centering: each language's offset is taken out before dense vectors are compared."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from assistant import Assistant, Settings
from assistant.centering import META_KEY, MIN_COUNT, LanguageMeans
from assistant.store import Store
from conftest import write_files
from fakes import FakeEmbedder


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _means(vectors: np.ndarray, langs: list[str]) -> LanguageMeans:
    groups = {"nb": "no", "nn": "no"}
    keys = [groups.get(lang, lang) for lang in langs]
    means = {k: vectors[[g == k for g in keys]].mean(axis=0) for k in set(keys)}
    counts = {k: keys.count(k) for k in set(keys)}
    return LanguageMeans(means, vectors.mean(axis=0), counts)


def test_a_language_offset_no_longer_outranks_meaning() -> None:
    rng = np.random.default_rng(0)
    dim = 32
    english, norwegian = np.zeros(dim), np.zeros(dim)
    english[0], norwegian[1] = 1.0, 1.0  # each language's own direction
    topics = _unit(rng.standard_normal((2, dim)))
    topics[:, :2] = 0.0
    # Many passages per language on random topics, plus one on topic 0 in Norwegian and
    # one on topic 1 in English.
    background = rng.standard_normal((2 * MIN_COUNT, dim)) * 0.3
    background[:, :2] = 0.0
    en_bg, no_bg = background[:MIN_COUNT] + english, background[MIN_COUNT:] + norwegian
    answer = topics[0] + norwegian  # Norwegian, answers the question
    distractor = topics[1] * 0.4 + topics[0] * 0.2 + english  # English, weakly related
    vectors = _unit(np.vstack([en_bg, no_bg, answer, distractor]))
    langs = ["en"] * MIN_COUNT + ["nb"] * MIN_COUNT + ["nb", "en"]
    query = _unit(topics[0] + english)  # an English question about topic 0

    raw = vectors[-2:] @ query
    assert raw[1] > raw[0]  # without centering the English passage wins on language alone
    means = _means(vectors, langs)
    centred = means.scores(means.center_query(query, "en"), vectors[-2:], langs[-2:])
    assert centred[0] > centred[1]


def test_one_language_keeps_the_plain_cosine_ranking() -> None:
    rng = np.random.default_rng(1)
    vectors = _unit(rng.standard_normal((3 * MIN_COUNT, 16)).astype(np.float32))
    langs = ["nb"] * len(vectors)
    means = _means(vectors, langs)
    query = _unit(rng.standard_normal(16).astype(np.float32))
    centred = means.scores(means.center_query(query, "nb"), vectors, langs)
    assert np.allclose(centred, vectors @ query, atol=1e-5)
    # a question in a language the corpus lacks is not moved either
    assert np.allclose(means.center_query(query, "en"), query, atol=1e-6)


def test_rare_languages_get_no_offset_and_nynorsk_shares_bokmal() -> None:
    rng = np.random.default_rng(2)
    vectors = _unit(rng.standard_normal((MIN_COUNT + 5, 8)))
    langs = ["nb"] * MIN_COUNT + ["de"] * 5
    means = _means(vectors, langs)
    assert not means.offset("de").any()
    assert np.allclose(means.offset("nn"), means.offset("nb"))
    assert means.offset("nb").any()


def test_the_indexer_records_the_means_and_readers_use_them(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    write_files(corpus, {
        f"no-{i}.md": f"# Kommune {i}\n\nKommunen bygger nytt vannverk og en skole i bygd nummer {i}." for i in range(6)})
    write_files(corpus, {
        f"en-{i}.md": f"# Municipality {i}\n\nThe municipality builds a new school in village number {i}."
        for i in range(6)})
    settings = Settings.load(env={}, index_dir=tmp_path / "index", corpus_dirs=[corpus])
    bot = Assistant.open(settings=settings, embedder=FakeEmbedder())
    bot.index()
    store = Store.open(tmp_path / "index", bot.stamp(), create=False)
    try:
        data = json.loads(store.get_meta(META_KEY) or "{}")
    finally:
        store.close()
    assert set(data["languages"]) == {"no", "en"}
    assert data["languages"]["no"]["count"] == 6 and data["chunks"] == 12
    assert bot.retriever().means is not None
    off = Assistant.open(settings=Settings.load(env={}, index_dir=tmp_path / "index", center_languages=False),
                         embedder=FakeEmbedder())
    assert off.retriever().means is None
    assert off.search("vannverk", k=1)[0].doc_id.startswith("no-")
