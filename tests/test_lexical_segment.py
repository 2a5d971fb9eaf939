"""The numpy BM25 segment of a large index: the same ranking as FTS5, kept current."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from assistant import Assistant, Settings, lexical, lexical_segment
from conftest import write_files
from fakes import FakeEmbedder

WORDS = ("kommune sosialhjelp søknad barnehage skole vei vann renseanlegg budsjett plan innbygger "
         "tjeneste digital leverandør samarbeid tilskudd klage vedtak frist bolig helse omsorg "
         "eldre ungdom kultur idrett næring").split()
QUESTIONS = ["Hvordan søker man om sosialhjelp?", "Hva er klagefristen for vedtak om bolig?",
             "digital tjeneste for eldre og omsorg", "budsjett for skole og barnehage i kommunen",
             "vann og renseanlegg", "Hvilke leverandører samarbeider om tilskudd?", "idrett"]


def _docs(n: int, seed: int = 0) -> dict[str, str]:
    """`n` small documents of varied words (deterministic), two paragraphs each."""
    docs = {}
    for d in range(n):
        paragraphs = []
        for p in range(2):
            k = (d * 7 + p * 3 + seed) % len(WORDS)
            words = [WORDS[(k + j * (d % 5 + 1)) % len(WORDS)] for j in range(8 + (d + p) % 9)]
            paragraphs.append(" ".join(words).capitalize() + ".")
        docs[f"doc{d:03d}.md"] = f"# Dokument {d}\n\n" + "\n\n".join(paragraphs)
    return docs


@pytest.fixture()
def small_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lexical_segment, "THRESHOLD", 10)


def _bot(tmp_path: Path, corpus: Path) -> Assistant:
    settings = Settings.load(env={}, index_dir=tmp_path / "index", corpus_dirs=[corpus])
    return Assistant.open(settings=settings, embedder=FakeEmbedder())


def _indexed(tmp_path: Path, n: int) -> tuple[Assistant, Path, Path]:
    """An assistant over `n` documents, indexed: (assistant, corpus folder, index folder)."""
    corpus = tmp_path / "corpus"
    write_files(corpus, _docs(n))
    bot = _bot(tmp_path, corpus)
    bot.index()
    return bot, corpus, tmp_path / "index"


def _both(index_dir: Path, question: str, k: int = 20) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """The lexical results of FTS5 alone, and with the index's segment."""
    db = sqlite3.connect(str(index_dir / "store.sqlite"))
    try:
        total = db.execute("SELECT count(*) FROM chunks").fetchone()[0]
        plain, with_segment = lexical.DocFreq(), lexical.DocFreq()
        with_segment.segment = lexical_segment.load(index_dir)
        assert with_segment.segment is not None
        return (lexical.search(db, question, k, doc_freq=plain, total=total),
                lexical.search(db, question, k, doc_freq=with_segment, total=total))
    finally:
        db.close()


def _same(a: list[tuple[int, float]], b: list[tuple[int, float]]) -> bool:
    """The same scores in the same order, and the same chunks wherever a score is not tied."""
    if [round(s, 9) for _, s in a] != [round(s, 9) for _, s in b]:
        return False
    scores = [round(s, 9) for _, s in a]
    return all(x == y for (x, _), (y, _), s in zip(a, b, scores) if scores.count(s) == 1)


def test_table_stats_are_fts5s_row_count_and_average_length() -> None:
    db = sqlite3.connect(":memory:")
    lexical.create_schema(db)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    assert lexical_segment.table_stats(db) == (0, 0.0)
    rows = [(i, " ".join(f"ord{j}" for j in range(i % 7 + 1))) for i in range(1, 301)]
    db.executemany("INSERT INTO lexical(rowid, terms) VALUES (?, ?)", rows)
    db.commit()  # FTS5 writes its totals when the transaction ends
    count, avg = lexical_segment.table_stats(db)
    assert count == 300
    assert avg == pytest.approx(sum(i % 7 + 1 for i in range(1, 301)) / 300)


@pytest.mark.parametrize("dense_sum", [0, 10**9], ids=["sorted-sum", "dense-sum"])
def test_the_segment_ranks_as_fts5_does_and_follows_changes(tmp_path: Path, small_threshold: None,
                                                            dense_sum: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lexical_segment, "DENSE_SUM", dense_sum)
    corpus = tmp_path / "corpus"
    write_files(corpus, _docs(40))
    bot = _bot(tmp_path, corpus)
    report = bot.index()
    index_dir = tmp_path / "index"
    first = lexical_segment.newest(index_dir)
    assert first is not None and "lexical_segment" in report.timings
    for q in QUESTIONS:
        plain, fast = _both(index_dir, q)
        assert plain and _same(plain, fast), q

    # one document changed, one added, one removed: under STALE_SHARE, so the segment stays
    # and answers with FTS5 for the new chunks; the removed ones are gone from both
    write_files(corpus, {"doc001.md": "# Endret\n\nNy tekst om sosialhjelp og klagefrist for bolig.",
                         "ny.md": "# Ny\n\nSosialhjelp, søknad og samarbeid med leverandører."})
    (corpus / "doc002.md").unlink()
    bot.index()
    assert lexical_segment.newest(index_dir) == first
    db = sqlite3.connect(str(index_dir / "store.sqlite"))
    alive = {r[0] for r in db.execute("SELECT id FROM chunks")}
    newest_id = max(alive)
    db.close()
    seen_new = False
    for q in QUESTIONS:
        plain, fast = _both(index_dir, q)
        assert _same(plain, fast), q
        assert {i for i, _ in fast} <= alive
        seen_new |= any(i > lexical_segment.load(index_dir).max_id for i, _ in fast)  # type: ignore[union-attr]
    assert seen_new and newest_id > lexical_segment.load(index_dir).max_id  # type: ignore[union-attr]

    # the Assistant's searches use the segment: the same passages as before it was made
    hits = bot.search("Hvordan søker man om sosialhjelp?", k=5)
    assert hits and all(h.chunk_id in alive for h in hits)
    assert bot._doc_freq.segment is not None and bot._doc_freq.segment.path == first
    info = bot.info()
    assert info.lexical == f"fts5 + segment of {bot._doc_freq.segment.size} chunks"
    assert info.size_bytes > sum(f.stat().st_size for f in first.iterdir())


def test_a_stale_segment_is_rewritten_and_the_old_one_removed(tmp_path: Path, small_threshold: None) -> None:
    bot, corpus, index_dir = _indexed(tmp_path, 40)
    first = lexical_segment.newest(index_dir)
    write_files(corpus, _docs(15, seed=5) | {f"extra{i}.md": f"# Ekstra {i}\n\nTilskudd til idrett nummer {i}."
                                              for i in range(10)})
    bot.index()
    second = lexical_segment.newest(index_dir)
    assert second is not None and second != first and not first.exists()  # type: ignore[union-attr]
    for q in QUESTIONS:
        plain, fast = _both(index_dir, q)
        assert _same(plain, fast), q


def test_a_rebuild_replaces_the_segment_and_a_foreign_one_is_not_used(tmp_path: Path,
                                                                    small_threshold: None) -> None:
    bot, _, index_dir = _indexed(tmp_path, 30)
    old = lexical_segment.load(index_dir)
    assert old is not None
    bot.index(rebuild=True)
    new = lexical_segment.load(index_dir)
    assert new is not None and new.uid != old.uid
    assert not any(p.name.startswith(".rebuild") for p in index_dir.iterdir())
    db = sqlite3.connect(str(index_dir / "store.sqlite"))
    try:
        # the old store's segment, kept in memory by a reader, is not used with the new store
        assert old.search(db, ["sosialhjelp"], 5, {}, '"sosialhjelp"') is None
        df = lexical.DocFreq()
        df.segment = old
        total = db.execute("SELECT count(*) FROM chunks").fetchone()[0]
        assert lexical.search(db, "sosialhjelp", 5, doc_freq=df, total=total) == \
            lexical.search(db, "sosialhjelp", 5, doc_freq=lexical.DocFreq(), total=total)
    finally:
        db.close()


def test_a_small_index_has_no_segment_and_a_shrunk_one_drops_it(tmp_path: Path, small_threshold: None,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = tmp_path / "corpus"
    write_files(corpus, _docs(3))
    bot = _bot(tmp_path, corpus)
    monkeypatch.setattr(lexical_segment, "THRESHOLD", 1000)
    bot.index()
    assert lexical_segment.newest(tmp_path / "index") is None
    monkeypatch.setattr(lexical_segment, "THRESHOLD", 4)
    write_files(corpus, _docs(4))
    bot.index()
    assert lexical_segment.newest(tmp_path / "index") is not None
    for name in ("doc001.md", "doc002.md", "doc003.md"):
        (corpus / name).unlink()
    bot.index()
    assert lexical_segment.newest(tmp_path / "index") is None


def test_a_damaged_segment_is_ignored_and_fts5_answers(tmp_path: Path, small_threshold: None,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    bot, corpus, index_dir = _indexed(tmp_path, 30)
    before = [h.chunk_id for h in bot.search("sosialhjelp og søknad", k=5)]
    path = lexical_segment.newest(index_dir)
    assert path is not None
    (path / "postings.npy").write_bytes(b"not numpy")
    assert lexical_segment.load(index_dir) is None
    assert "ignoring lexical segment" in caplog.text
    fresh = _bot(tmp_path, corpus)
    assert [h.chunk_id for h in fresh.search("sosialhjelp og søknad", k=5)] == before


def test_a_crashed_write_leaves_no_segment_and_its_leftovers_are_pruned(tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    leftover = index_dir / ".lexical-99.tmp-12345"
    leftover.mkdir(parents=True)
    (leftover / "meta.json").write_text("{}")
    assert lexical_segment.newest(index_dir) is None
    lexical_segment.prune(index_dir, None)
    assert leftover.exists()  # it could be a write in progress
    hour_ago = time.time() - 7200
    os.utime(leftover, (hour_ago, hour_ago))
    lexical_segment.prune(index_dir, None)
    assert not leftover.exists()


def test_a_hyphenated_stem_is_scored_as_the_phrase_fts5_reads(tmp_path: Path, small_threshold: None) -> None:
    corpus = tmp_path / "corpus"
    write_files(corpus, _docs(20) | {"ks.md": "# KS\n\nKS-artikkelen handler om innovasjon i kommunene.",
                                     "apart.md": "# Artikkelen\n\nArtikkelen om KS og kommunene, KS igjen."})
    _bot(tmp_path, corpus).index()
    plain, fast = _both(tmp_path / "index", "Hva står i KS-artikkelen om kommunene?")
    assert plain and _same(plain, fast)


def test_a_failed_segment_write_keeps_the_run_and_fts5_answers(tmp_path: Path, small_threshold: None,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    corpus = tmp_path / "corpus"
    write_files(corpus, _docs(30))
    bot = _bot(tmp_path, corpus)

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(lexical_segment.np, "save", full_disk)
    report = bot.index()
    assert report.added and "lexical_segment" not in report.timings
    assert "could not write the lexical segment" in caplog.text
    index_dir = tmp_path / "index"
    assert lexical_segment.newest(index_dir) is None
    assert not any(p.name.startswith(".lexical-") for p in index_dir.iterdir())  # the temporary folder is gone
    assert bot.search("sosialhjelp og søknad", k=3)
