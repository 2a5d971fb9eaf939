"""Incremental indexing, the stamp, the lock and crash safety, with a deterministic fake embedder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from assistant import Assistant, IndexLockedError, IndexMismatchError, Settings
from assistant.indexing import writer_lock
from conftest import write_files
from fakes import FakeEmbedder

DOCS = {
    "sosialhjelp.md": "# Sosialhjelp\n\nDen digitale søknaden om sosialhjelp ble laget av kommuner, KS og NAV.\n\n"
                      "## Leverandører\n\nLeverandørmarkedet var med fra starten.",
    "barnehage.txt": "Barnehageplass\n\nAlle barn har rett til barnehageplass fra august.",
    "veier/vei.md": "# Veier\n\nKommunen brøyter de kommunale veiene om vinteren.",
}


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    write_files(root, DOCS)
    return root


def _open(tmp_path: Path, corpus: Path, embedder: FakeEmbedder | None = None, **kw: object) -> Assistant:
    settings = Settings.load(env={}, index_dir=tmp_path / "index", corpus_dirs=[corpus], **kw)
    return Assistant.open(settings=settings, embedder=embedder or FakeEmbedder())


Opener = Callable[..., Assistant]


@pytest.fixture()
def open_bot(tmp_path: Path, store_uri: str) -> Opener:
    """`_open` on each store backend in turn."""
    def opener(corpus: Path, embedder: FakeEmbedder | None = None, **kw: object) -> Assistant:
        return _open(tmp_path, corpus, embedder, store=store_uri, **kw)
    return opener


def test_first_run_indexes_everything_and_search_finds_it(corpus: Path, open_bot: Opener) -> None:
    bot = open_bot(corpus)
    report = bot.index()
    assert sorted(report.added) == sorted(DOCS)
    assert report.documents_total == 3 and report.chunks_total >= 3
    assert report.chunks_embedded == report.chunks_total
    hits = bot.search("søknaden om sosialhjelp", k=3)
    assert hits[0].doc_id == "sosialhjelp.md"
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    doc = bot.document(hits[0].doc_id)
    assert doc is not None and doc.text[hits[0].start:hits[0].end] == hits[0].text
    assert bot.info().documents == 3


def test_second_run_embeds_nothing(corpus: Path, open_bot: Opener) -> None:
    fake = FakeEmbedder()
    bot = open_bot(corpus, fake)
    bot.index()
    before = fake.texts_embedded
    report = open_bot(corpus, fake).index()
    assert report.unchanged == 3 and not report.added and not report.changed
    assert report.chunks_embedded == 0 and fake.texts_embedded == before


def test_changed_document_embeds_only_its_new_chunks(corpus: Path, open_bot: Opener) -> None:
    fake = FakeEmbedder()
    bot = open_bot(corpus, fake)
    bot.index()
    (corpus / "barnehage.txt").write_text("Barnehageplass\n\nSøknadsfristen for barnehageplass er 1. mars.",
                                          encoding="utf-8")
    before = fake.texts_embedded
    report = bot.index()
    assert report.changed == ("barnehage.txt",) and report.unchanged == 2
    assert report.chunks_embedded == fake.texts_embedded - before == 1
    assert bot.search("søknadsfrist barnehageplass", k=1)[0].text.endswith("1. mars.")


def test_touched_but_identical_file_is_unchanged(corpus: Path, open_bot: Opener) -> None:
    bot = open_bot(corpus)
    bot.index()
    os.utime(corpus / "barnehage.txt", ns=(1, 1))
    report = bot.index()
    assert report.unchanged == 3 and report.chunks_embedded == 0


def test_removed_document_vanishes(corpus: Path, open_bot: Opener) -> None:
    bot = open_bot(corpus)
    bot.index()
    (corpus / "veier" / "vei.md").unlink()
    report = bot.index()
    assert report.removed == ("veier/vei.md",)
    assert all(h.doc_id != "veier/vei.md" for h in bot.search("brøyter veiene", k=5))
    assert bot.document("veier/vei.md") is None


def test_rename_embeds_nothing(corpus: Path, open_bot: Opener) -> None:
    fake = FakeEmbedder()
    bot = open_bot(corpus, fake)
    bot.index()
    (corpus / "veier" / "vei.md").rename(corpus / "brøyting.md")
    report = bot.index()
    assert report.added == ("brøyting.md",) and report.removed == ("veier/vei.md",)
    assert report.chunks_embedded == 0
    assert bot.search("brøyter veiene", k=1)[0].doc_id == "brøyting.md"


def test_other_model_is_refused_with_rebuild_hint(corpus: Path, open_bot: Opener) -> None:
    open_bot(corpus).index()
    with pytest.raises(IndexMismatchError, match="--rebuild"):
        open_bot(corpus, FakeEmbedder(dimension=32, model_id="other"))


def test_other_chunking_is_refused(corpus: Path, open_bot: Opener) -> None:
    open_bot(corpus).index()
    with pytest.raises(IndexMismatchError, match="target"):
        open_bot(corpus, chunk_chars=123)


def test_rebuild_replaces_an_index_built_with_another_model(tmp_path: Path, corpus: Path, open_bot: Opener) -> None:
    open_bot(corpus).index()
    other = FakeEmbedder(dimension=32, model_id="other")
    settings = Settings.load(env={}, index_dir=tmp_path / "index", corpus_dirs=[corpus],
                             store=open_bot(corpus).settings.store)
    bot = Assistant(settings, other)
    report = bot.index(rebuild=True)
    assert report.documents_total == 3
    reopened = Assistant.open(settings=settings, embedder=FakeEmbedder(dimension=32, model_id="other"))
    assert reopened.search("sosialhjelp", k=1)[0].doc_id == "sosialhjelp.md"
    assert not list((tmp_path / "index").glob(".rebuild-*"))


def test_second_writer_gets_a_clear_error(tmp_path: Path, corpus: Path, open_bot: Opener) -> None:
    bot = open_bot(corpus)
    with writer_lock(tmp_path / "index"):
        with pytest.raises(IndexLockedError, match="being written"):
            bot.index()
    assert bot.index().documents_total == 3


def test_missing_or_corrupt_vector_file_is_rebuilt_from_the_store(tmp_path: Path, corpus: Path) -> None:
    _open(tmp_path, corpus).index()
    (faiss_file,) = (tmp_path / "index").glob("dense-*.faiss")
    faiss_file.write_bytes(faiss_file.read_bytes()[:100])
    assert _open(tmp_path, corpus).search("sosialhjelp", k=1)[0].doc_id == "sosialhjelp.md"
    faiss_file.unlink()
    assert _open(tmp_path, corpus).search("barnehageplass", k=1)[0].doc_id == "barnehage.txt"
    assert faiss_file.exists()


class _Crash(Exception):
    pass


class _CrashingEmbedder(FakeEmbedder):
    """Fails after `allowed` texts, like a process killed half-way through embedding."""

    def __init__(self, allowed: int) -> None:
        super().__init__()
        self.allowed = allowed

    def embed(self, texts):  # type: ignore[no-untyped-def]
        if self.texts_embedded + len(texts) > self.allowed:
            raise _Crash()
        return super().embed(texts)


def test_crash_mid_run_keeps_previous_index_and_next_run_resumes(corpus: Path, open_bot: Opener) -> None:
    open_bot(corpus).index()
    write_files(corpus, {f"ny-{i}.md": f"# Ny {i}\n\n" + f"Unik tekst nummer {i} om vannverk. " * 80 for i in range(30)})
    crashing = _CrashingEmbedder(allowed=64)
    bot = open_bot(corpus, crashing)
    with pytest.raises(_Crash):
        bot.index()
    # what was committed stays whole and searchable: the old documents, and the new ones
    # published by their words before their vectors (pending), found through the lexical index
    survivor = open_bot(corpus)
    assert survivor.info().documents == 33
    assert survivor.search("sosialhjelp", k=1)[0].doc_id == "sosialhjelp.md"
    assert survivor.search("unik tekst om vannverk", k=1)[0].doc_id.startswith("ny-")
    store = survivor._writer_store()
    try:
        assert len(store.pending_chunks()) > 0
    finally:
        store.close()
    # the next run finishes, re-using the vectors made before the crash
    fake = FakeEmbedder()
    report = open_bot(corpus, fake).index()
    assert report.documents_total == 33
    assert report.chunks_embedded == fake.texts_embedded
    assert report.chunks_embedded <= report.chunks_total - 64
    store = survivor._writer_store()
    try:
        assert store.pending_chunks() == [] and store.dense_count() == report.chunks_total
    finally:
        store.close()


def test_hot_reload_sees_another_writers_update(corpus: Path, open_bot: Opener) -> None:
    reader = open_bot(corpus)
    reader.index()
    assert reader.search("vannverk", k=1)[0].doc_id != "vann.md"
    write_files(corpus, {"vann.md": "# Vann\n\nVannverket leverer drikkevann til innbyggerne."})
    open_bot(corpus).index()  # another process, in effect
    assert reader.search("vannverket drikkevann", k=1)[0].doc_id == "vann.md"


def test_bad_files_are_skipped_with_a_reason_and_the_rest_is_indexed(corpus: Path, open_bot: Opener) -> None:
    (corpus / "tom.txt").write_bytes(b"")
    (corpus / "binær.txt").write_bytes(bytes(range(256)) * 10)
    (corpus / "LICENSE").write_text("MIT License", encoding="utf-8")
    (corpus / "README.md").write_text("# corpus/\n\nCopy documents here.", encoding="utf-8")
    (corpus / "veier" / "README.md").write_text("# Veier\n\nOm veiene i kommunen.", encoding="utf-8")
    (corpus / "SOURCES.md").write_text("| fil | lisens |\n|---|---|\n| veier.md | CC BY |", encoding="utf-8")
    (corpus / "sources.json").write_text('[{"file": "veier.md", "licence": "CC BY"}]', encoding="utf-8")
    (corpus / "veier" / "sources.md").write_text("# Kilder\n\nVegvesenet.", encoding="utf-8")
    report = open_bot(corpus).index()
    reasons = {s.doc: s.reason for s in report.skipped}
    # files describing the corpus folder are skipped at its top only; in a sub-folder they are content
    assert set(reasons) == {"tom.txt", "binær.txt", "LICENSE", "README.md", "SOURCES.md", "sources.json"}
    assert "describes it" in reasons["SOURCES.md"] and "describes it" in reasons["sources.json"]
    assert all(reasons.values()) and all("\n" not in r for r in reasons.values())
    assert report.documents_total == 5


def test_bad_file_does_not_remove_its_previous_version(corpus: Path, open_bot: Opener) -> None:
    bot = open_bot(corpus)
    bot.index()
    (corpus / "barnehage.txt").write_bytes(b"\x00\x01\x02" * 100)
    report = bot.index()
    assert any(s.doc == "barnehage.txt" and "previous version kept" in s.reason for s in report.skipped)
    assert bot.search("barnehageplass", k=1)[0].doc_id == "barnehage.txt"


def test_vectors_in_store_match_the_embedder(corpus: Path, open_bot: Opener) -> None:
    fake = FakeEmbedder()
    bot = open_bot(corpus, fake)
    bot.index()
    hit = bot.search("sosialhjelp", k=1)[0]
    expected = fake.embed([bot.settings.query_prompt + "sosialhjelp"])[0]
    assert hit.dense_score is not None
    stored = next(iter(bot._reader().chunk_vectors([hit.chunk_id])))[1][0]
    assert np.isclose(float(stored @ expected), hit.dense_score, atol=1e-5)


def test_undo_of_an_edit_embeds_nothing_and_orphans_are_pruned_when_many(corpus: Path, open_bot: Opener) -> None:
    bot = open_bot(corpus)
    bot.index()
    original = (corpus / "barnehage.txt").read_text(encoding="utf-8")
    (corpus / "barnehage.txt").write_text(original + "\n\nEt nytt avsnitt.", encoding="utf-8")
    assert bot.index().chunks_embedded >= 1
    (corpus / "barnehage.txt").write_text(original, encoding="utf-8")
    assert bot.index().chunks_embedded == 0  # the old text's vector was kept
    store = bot._writer_store()
    try:
        assert store.prune_vectors(floor=0, slack=0.0) >= 1  # the edit's orphan goes when pruning is due
        assert store.prune_vectors(floor=0, slack=0.0) == 0
    finally:
        store.close()


def test_a_long_document_round_trips_exactly(tmp_path: Path, corpus: Path, open_bot: Opener) -> None:
    text = "# Lang\n\n" + "\n\n".join(f"Avsnitt {i}: blåbærsyltetøy og «sitater» — ÆØÅ {i}." * 12 for i in range(150))
    assert len(text) > 50_000  # more than one 16,000-character piece in the Milvus store
    (corpus / "lang.md").write_text(text, encoding="utf-8")
    bot = open_bot(corpus)
    bot.index()
    doc = bot.document("lang.md")
    assert doc is not None and doc.text.startswith("Lang") and "Avsnitt 149" in doc.text
    for hit in bot.search("blåbærsyltetøy avsnitt 149", k=5):
        assert bot.document(hit.doc_id).text[hit.start:hit.end] == hit.text  # type: ignore[union-attr]
