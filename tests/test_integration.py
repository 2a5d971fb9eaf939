"""The real default model over the seed article and a few documents from ../shared/corpus."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assistant import Assistant, IndexMismatchError, Settings
from conftest import SEED, shared, store_for
from fakes import FakeEmbedder

# KS documents beside the seed article. The full-corpus behaviour, where dozens of NAV pages about
# the social-assistance application compete with it, is measured by `test_dev_eval.py` (slow).
SMALL = [
    "ks-no__workshop-ai",
    "ks-no__fiks-arkiv-specification",
]


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    shutil.copy(SEED, root / SEED.name)
    for name in SMALL:
        shutil.copytree(shared("corpus", name), root / name)
    return root


@pytest.fixture(scope="module", params=["sqlite", "milvus"])
def bot(request: pytest.FixtureRequest, small_corpus: Path,  # type: ignore[no-untyped-def]
        real_embedder, model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Assistant:
    """The small corpus indexed with the real model, on each store backend."""
    index = tmp_path_factory.mktemp("index")
    settings = Settings.load(env={}, index_dir=index, corpus_dirs=[small_corpus], cache_dir=model_cache,
                             store=store_for(request.param, index))
    bot = Assistant.open(settings=settings, embedder=real_embedder)
    report = bot.index()
    assert report.documents_total > 8 and not [s for s in report.skipped if s.reason != "licence file"]
    return bot


KNOWN_GAP = ("multilingual-e5-small ranks other Norwegian passages above the seed article's sosialhjelp passage "
             "for the English headline question (issue #2 keeps this open; see README, Retrieval)")


@pytest.mark.xfail(strict=True, reason=KNOWN_GAP)
def test_english_question_finds_the_norwegian_sosialhjelp_passage_first(bot: Assistant) -> None:
    hit = bot.search("How did the social-assistance application come about?", k=5)[0]
    assert hit.doc_id == SEED.name
    assert "søknad om sosialhjelp" in hit.text and "NAV" in hit.text


def test_norwegian_question_finds_it_first(bot: Assistant) -> None:
    hit = bot.search("Hvordan kom den nye søknaden om sosialhjelp i stand?", k=5)[0]
    assert hit.doc_id == SEED.name and "leverandørmarkedet" in hit.text


def test_norwegian_answer_quotes_the_cooperation_sentence(bot: Assistant) -> None:
    answer = bot.ask("Hvordan kom den nye søknaden om sosialhjelp i stand?")
    assert not answer.refused and answer.citations[0].hit.doc_id == SEED.name
    assert any("NAV" in q and "leverandørmarkedet" in q for c in answer.citations for q in c.quotes)


def test_boilerplate_is_not_indexed(bot: Assistant) -> None:
    doc = bot.document(SEED.name)
    assert doc is not None
    assert "Skip to main content" not in doc.text and "Next article" not in doc.text


def test_update_embeds_only_the_changed_document(bot: Assistant, small_corpus: Path) -> None:
    target = small_corpus / SEED.name
    original = target.read_text(encoding="utf-8")
    try:
        target.write_text(original + "\n\nTilleggsavsnitt: kommunene prøver ut kunstig intelligens i "
                          "saksbehandlingen.\n", encoding="utf-8")
        report = bot.index()
        assert report.changed == (SEED.name,) and not report.added and not report.removed
        assert 1 <= report.chunks_embedded <= 2
        hit = bot.search("kunstig intelligens i saksbehandlingen", k=3)
        assert any("Tilleggsavsnitt" in h.text for h in hit)
    finally:
        target.write_text(original, encoding="utf-8")
        assert bot.index().chunks_embedded == 0  # the old chunks' vectors were still cached


@pytest.mark.xfail(strict=True, reason=KNOWN_GAP)
def test_the_answer_quotes_the_cooperation_sentence(bot: Assistant) -> None:
    answer = bot.ask("How did the social-assistance application come about?")
    assert not answer.refused and answer.citations
    assert answer.citations[0].hit.doc_id == SEED.name
    assert any("NAV" in q and "leverandørmarkedet" in q for c in answer.citations for q in c.quotes)
    assert answer.text.startswith("The sources are in Norwegian")


def test_removed_documents_vanish(bot: Assistant, small_corpus: Path) -> None:
    victim = next(p for p in sorted((small_corpus / "ks-no__workshop-ai").rglob("*.md")))
    doc_id = victim.relative_to(small_corpus).as_posix()
    saved = victim.read_bytes()
    victim.unlink()
    try:
        report = bot.index()
        assert report.removed == (doc_id,)
        first_words = saved.decode("utf-8")[:200]
        assert all(h.doc_id != doc_id for h in bot.search(first_words, k=10))
    finally:
        victim.write_bytes(saved)
        bot.index()


def test_model_mismatch_raises(bot: Assistant) -> None:
    with pytest.raises(IndexMismatchError, match="rebuild"):
        Assistant.open(settings=bot.settings, embedder=FakeEmbedder(dimension=384, model_id="another-model"))


KILLER = """
import sys, os
from assistant import Assistant, Settings
from assistant.embedding import load_embedder
settings = Settings.load(env={}, index_dir=sys.argv[1], corpus_dirs=[sys.argv[2]], cache_dir=sys.argv[3])
bot = Assistant.open(settings=settings)
def progress(stage, done, total):
    if stage == "embed":
        print("EMBEDDING", done, flush=True)
bot.index(progress=progress)
print("DONE", flush=True)
"""


@pytest.mark.slow
def test_sigkill_mid_indexing_leaves_an_index_that_opens_and_answers(
        bot: Assistant, small_corpus: Path, tmp_path: Path) -> None:
    if bot.settings.store:
        pytest.skip("copies the index folder; test_milvus.py kills a Milvus writer between its steps instead")
    index = tmp_path / "index"
    shutil.copytree(bot.index_dir, index)
    extra = small_corpus.parent / "extra"
    shutil.copytree(small_corpus, extra)
    shutil.copytree(shared("corpus", "felleslosninger__docs"), extra / "felleslosninger__docs")
    cache = bot.settings.cache_dir
    proc = subprocess.Popen([sys.executable, "-c", KILLER, str(index), str(extra), str(cache)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    deadline = time.time() + 300
    for line in proc.stdout:
        if line.startswith("EMBEDDING") or time.time() > deadline:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    settings = Settings.load(env={}, index_dir=index, corpus_dirs=[extra])
    survivor = Assistant.open(settings=settings, embedder=bot.embedder)
    assert survivor.info().documents == bot.info().documents
    assert survivor.search("How did the social-assistance application come about?", k=1)[0].doc_id == SEED.name
    report = survivor.index()
    assert report.documents_total > bot.info().documents
