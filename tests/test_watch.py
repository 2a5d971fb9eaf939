"""The live index: the watcher, and readers that keep answering while it writes."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from assistant import Assistant, IndexLockedError, Settings
from assistant.indexing import writer_lock
from assistant.types import IndexReport
from assistant.vectors import VectorIndex
from assistant.watch import Watcher
from conftest import SEED, write_files
from fakes import FakeEmbedder

DOCS = {
    "sosialhjelp.md": "# Sosialhjelp\n\nDen digitale søknaden om sosialhjelp ble laget av kommuner, KS og NAV.",
    "barnehage.txt": "Barnehageplass\n\nAlle barn har rett til barnehageplass fra august.",
    "veier/vei.md": "# Veier\n\nKommunen brøyter de kommunale veiene om vinteren.",
}
MARKER = "Fjellbygd kommune bygde et nytt renseanlegg for drikkevann ved Storvatnet"
QUESTION = "renseanlegg for drikkevann i Fjellbygd ved Storvatnet"


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    write_files(root, DOCS)
    return root


def _open(tmp_path: Path, corpus: Path, embedder: object | None = None) -> Assistant:
    settings = Settings.load(env={}, index_dir=tmp_path / "index", corpus_dirs=[corpus])
    return Assistant.open(settings=settings, embedder=embedder or FakeEmbedder())


def _until(condition: Callable[[], bool], timeout: float, step: float = 0.05) -> float:
    """Seconds until `condition()` held; fails the test after `timeout`."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(step)
    return time.monotonic() - start


def twenty_pages() -> str:
    """About 20 pages (60,000 characters) of Norwegian text, varied from the seed article."""
    seed = [p.strip() for p in SEED.read_text(encoding="utf-8").split("\n\n") if len(p.strip()) > 80]
    places = ["Askvoll", "Bremanger", "Dovre", "Eidfjord", "Fjaler", "Gloppen", "Hyllestad", "Lesja",
              "Lom", "Masfjorden", "Nore og Uvdal", "Os", "Rauma", "Sel", "Skjåk", "Stad", "Tydal",
              "Vang", "Vinje", "Åseral"]
    pages = []
    for n, place in enumerate(places, 1):
        body = [f"## Side {n}: erfaringer fra {place}"]
        i = n
        while sum(len(b) for b in body) < 2900:  # a page: about 3,000 characters
            body.append(f"{seed[i % len(seed)]} I {place} kommune ble dette drøftet i møte nummer {i}.")
            i += 1
        if n == 17:
            body.append(f"### Renseanlegget i Fjellbygd\n\n{MARKER} i 2024. Renseanlegget ved Storvatnet "
                        "gir drikkevann til hele Fjellbygd.")
        pages.append("\n\n".join(body))
    return "# Innovasjon i norske kommuner\n\n" + "\n\n".join(pages) + "\n"


@pytest.fixture()
def watched(tmp_path: Path, corpus: Path):  # type: ignore[no-untyped-def]
    """A bot and a started watcher over `corpus`, with every report collected."""
    fake = FakeEmbedder()
    bot = _open(tmp_path, corpus, fake)
    reports: list[IndexReport] = []
    watcher = Watcher(bot, [corpus], quiet_seconds=0.3, on_report=reports.append, retry_seconds=0.2)
    watcher.start()
    _until(lambda: watcher.runs >= 1 and watcher.idle, 20)
    yield bot, watcher, reports, fake
    watcher.stop()


def test_first_run_indexes_what_is_there(watched) -> None:  # type: ignore[no-untyped-def]
    bot, watcher, reports, _ = watched
    assert sorted(reports[0].added) == sorted(DOCS)
    assert bot.search("søknaden om sosialhjelp", k=1)[0].doc_id == "sosialhjelp.md"
    assert watcher.mode == "events"


def test_the_indexers_own_reads_do_not_start_runs(watched, corpus: Path) -> None:  # type: ignore[no-untyped-def]
    _, watcher, _, _ = watched
    for path in corpus.rglob("*.*"):
        path.read_bytes()
    time.sleep(1.0)
    assert watcher.runs == 1 and watcher.idle


def test_a_copy_of_many_files_becomes_one_run_or_a_few(watched, corpus: Path,  # type: ignore[no-untyped-def]
                                                         tmp_path: Path) -> None:
    bot, watcher, reports, _ = watched
    staging = tmp_path / "staging"
    write_files(staging, {f"sak-{i:03}.md": f"# Sak {i}\n\nSaksnummer {i} gjelder vedtak {i * 7} om byggesak."
                     for i in range(300)})
    shutil.copytree(staging, corpus / "saker")
    _until(lambda: bot.info().documents == 303 and watcher.idle, 60)
    runs = reports[1:]
    assert 1 <= len(runs) <= 3
    assert sum(len(r.added) for r in runs) == 300


def test_new_changed_renamed_and_deleted_files(watched, corpus: Path) -> None:  # type: ignore[no-untyped-def]
    bot, watcher, reports, fake = watched
    write_files(corpus, {"vann.md": "# Vann\n\nVannverket leverer drikkevann til alle innbyggerne."})
    _until(lambda: bool(bot.search("vannverket drikkevann", k=1)) and
           bot.search("vannverket drikkevann", k=1)[0].doc_id == "vann.md", 10)

    (corpus / "barnehage.txt").write_text("Barnehageplass\n\nSøknadsfristen er 1. mars.", encoding="utf-8")
    _until(lambda: "1. mars" in bot.document("barnehage.txt").text, 10)  # type: ignore[union-attr]

    _until(lambda: watcher.idle, 10)
    embedded = fake.texts_embedded
    (corpus / "veier" / "vei.md").rename(corpus / "brøyting.md")
    _until(lambda: bot.document("brøyting.md") is not None and bot.document("veier/vei.md") is None, 10)
    assert fake.texts_embedded == embedded, "a rename must not embed anything"
    assert reports[-1].chunks_embedded == 0 and reports[-1].removed == ("veier/vei.md",)

    (corpus / "vann.md").unlink()
    _until(lambda: bot.document("vann.md") is None, 10)
    assert all(h.doc_id != "vann.md" for h in bot.search("vannverket drikkevann", k=5))


def test_hidden_files_are_ignored(watched, corpus: Path) -> None:  # type: ignore[no-untyped-def]
    _, watcher, _, _ = watched
    (corpus / ".utkast.md.swp").write_text("midlertidig", encoding="utf-8")
    (corpus / ".git").mkdir()
    (corpus / ".git" / "HEAD").write_text("ref: refs/heads/main", encoding="utf-8")
    time.sleep(1.0)
    assert watcher.runs == 1


def test_falls_back_to_polling_without_filesystem_events(tmp_path: Path, corpus: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import watchdog.observers

    class NoInotify:
        def __init__(self, *a: object, **kw: object) -> None:
            raise OSError(28, "inotify watch limit reached")

    monkeypatch.setattr(watchdog.observers, "Observer", NoInotify)
    bot = _open(tmp_path, corpus)
    with Watcher(bot, [corpus], quiet_seconds=0.2, poll_seconds=0.2) as watcher:
        assert watcher.mode == "polling"
        _until(lambda: watcher.runs >= 1, 20)
        write_files(corpus, {"vann.md": "# Vann\n\nVannverket leverer drikkevann."})
        _until(lambda: bot.document("vann.md") is not None, 10)


def test_a_locked_index_is_retried_and_the_thread_survives(watched, corpus: Path,  # type: ignore[no-untyped-def]
                                                           caplog: pytest.LogCaptureFixture) -> None:
    bot, watcher, _, _ = watched
    caplog.set_level(logging.INFO, logger="assistant.watch")
    with writer_lock(bot.index_dir):  # another indexer, in effect
        write_files(corpus, {"vann.md": "# Vann\n\nVannverket leverer drikkevann."})
        _until(lambda: "being written" in caplog.text, 10)
        assert bot.document("vann.md") is None
    _until(lambda: bot.document("vann.md") is not None, 10)
    assert watcher._thread is not None and watcher._thread.is_alive()
    assert watcher.failures == 0


class _FlakyEmbedder(FakeEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.fail_next = False

    def embed(self, texts):  # type: ignore[no-untyped-def]
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("model crashed")
        return super().embed(texts)


def test_other_errors_are_logged_and_the_watcher_keeps_going(tmp_path: Path, corpus: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    flaky = _FlakyEmbedder()
    bot = _open(tmp_path, corpus, flaky)
    with Watcher(bot, [corpus], quiet_seconds=0.2, retry_seconds=0.2) as watcher:
        _until(lambda: watcher.runs == 1 and watcher.idle, 20)
        flaky.fail_next = True
        write_files(corpus, {"vann.md": "# Vann\n\nVannverket leverer drikkevann."})
        _until(lambda: bot.document("vann.md") is not None, 10)
        assert watcher.failures == 1 and "model crashed" in caplog.text


def test_a_twenty_page_document_is_searchable_within_ten_seconds_and_gone_as_fast(
        watched, corpus: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bot, _, _, _ = watched
    _copy_search_delete(bot, corpus, tmp_path, ".md")


def _copy_search_delete(bot: Assistant, corpus: Path, tmp_path: Path, suffix: str, *, ask: bool = False) -> None:
    staging = tmp_path / f"innovasjon{suffix}"
    staging.write_text(twenty_pages(), encoding="utf-8")
    assert 55_000 < len(staging.read_text(encoding="utf-8")) < 70_000
    assert all(h.doc_id != staging.name for h in bot.search(QUESTION, k=5))
    shutil.copy(staging, corpus / staging.name)
    copied = time.monotonic()

    def found() -> bool:
        hits = bot.search(QUESTION, k=3)
        return bool(hits) and hits[0].doc_id == staging.name and MARKER in hits[0].text

    took = _until(found, 10, step=0.2)
    if ask:  # what the chat does with the question (the fake embedder's cosines would refuse)
        answer = bot.ask(QUESTION)
        assert not answer.refused and answer.citations[0].hit.doc_id == staging.name, answer.text
        assert time.monotonic() - copied < 10
    doc = bot.document(staging.name)
    assert doc is not None and "Side 20" in doc.text
    (corpus / staging.name).unlink()
    took_delete = _until(lambda: all(h.doc_id != staging.name for h in bot.search(QUESTION, k=10)), 10,
                         step=0.2)
    assert bot.document(staging.name) is None
    logging.getLogger(__name__).info("searchable after %.1f s, gone after %.1f s", took, took_delete)


@pytest.mark.slow
def test_a_twenty_page_document_with_the_real_model(tmp_path: Path, real_embedder) -> None:  # type: ignore[no-untyped-def]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(SEED, corpus / SEED.name)
    bot = _open(tmp_path, corpus, real_embedder)
    with Watcher(bot, [corpus], quiet_seconds=0.5) as watcher:
        _until(lambda: watcher.runs >= 1 and watcher.idle, 120)
        _copy_search_delete(bot, corpus, tmp_path, ".txt", ask=True)


# -- hot reload ---------------------------------------------------------------------
class _Reader(threading.Thread):
    """Queries in a loop, checking every hit against its document, until stopped."""

    def __init__(self, bot: Assistant, questions: list[str]) -> None:
        super().__init__(daemon=True)
        self.bot = bot
        self.questions = questions
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.queries = 0
        self.checked = 0
        self.seen: set[str] = set()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                for hit in self.bot.search(self.questions[self.queries % len(self.questions)], k=5):
                    doc = self.bot.document(hit.doc_id)
                    self.seen.add(hit.doc_id)
                    if doc is not None:  # else removed since the search: allowed
                        assert doc.text[hit.start:hit.end] == hit.text, (hit.doc_id, hit.start, hit.end)
                        self.checked += 1
                self.queries += 1
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                self.errors.append(exc)
                return


def test_readers_keep_answering_consistently_while_the_writer_indexes(tmp_path: Path, corpus: Path) -> None:
    bot = _open(tmp_path, corpus)
    bot.index()
    other = _open(tmp_path, corpus)  # a second server process, in effect
    questions = ["sosialhjelp søknad", "vedtak om byggesak", "barnehageplass august", "vannverk i kommunen"]
    readers = [_Reader(bot, questions), _Reader(bot, questions), _Reader(other, questions)]
    for r in readers:
        r.start()
    writer = _open(tmp_path, corpus)
    for round_ in range(8):
        write_files(corpus, {f"sak-{round_}-{i}.md": f"# Sak {round_}-{i}\n\n" +
                        f"Vedtak om byggesak R{round_}N{i} i kommunen. Vannverk nummer {i}. " * 30
                        for i in range(10)})
        if round_:
            for old in corpus.glob(f"sak-{round_ - 1}-[0-4].md"):
                old.unlink()
            with (corpus / "barnehage.txt").open("a", encoding="utf-8") as fh:  # appended: old offsets hold
                fh.write(f"\n\nTillegg {round_}: barnehageplass også i august.")
        writer.index()
    time.sleep(0.3)
    for r in readers:
        r.stop.set()
        r.join(30)
    assert [e for r in readers for e in r.errors] == []
    assert all(r.queries > 5 and r.checked > 0 for r in readers)
    assert any(d.startswith("sak-") for r in readers for d in r.seen)
    for b in (bot, other):  # the next query sees the finished update
        assert b.info().documents == writer.info().documents
        assert b.search("byggesak R7N3", k=1)[0].doc_id == "sak-7-3.md"
        assert b.document("sak-6-3.md") is None and b.document("sak-6-7.md") is not None


def test_nothing_half_written_is_served_and_readers_do_not_wait(tmp_path: Path, corpus: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer stops inside its transaction, after the new vector file is written, before COMMIT."""
    bot = _open(tmp_path, corpus)
    bot.index()
    before = bot.search("vannverket drikkevann", k=5)
    inside, release = threading.Event(), threading.Event()
    save = VectorIndex.save

    def paused_save(self: VectorIndex, index_dir: Path, generation: int) -> Path:
        path = save(self, index_dir, generation)
        inside.set()
        release.wait(30)
        return path

    monkeypatch.setattr(VectorIndex, "save", paused_save)
    write_files(corpus, {"vann.md": "# Vann\n\nVannverket leverer drikkevann til innbyggerne."})
    (corpus / "veier" / "vei.md").unlink()
    writer = _open(tmp_path, corpus)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            writer.index()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert inside.wait(30)
        for reader in (bot, _open(tmp_path, corpus)):  # a warm reader and a fresh one
            tick = time.monotonic()
            hits = reader.search("vannverket drikkevann", k=5)
            assert time.monotonic() - tick < 5  # no waiting for the writer
            assert [(h.doc_id, h.start) for h in hits] == [(h.doc_id, h.start) for h in before]
            assert reader.document("vann.md") is None and reader.document("veier/vei.md") is not None
            assert reader.info().documents == 3
    finally:
        release.set()
        thread.join(30)
    assert errors == []
    assert bot.search("vannverket drikkevann", k=1)[0].doc_id == "vann.md"
    assert bot.document("veier/vei.md") is None and bot.info().documents == 3


def test_a_query_in_flight_completes_on_the_old_state(tmp_path: Path, corpus: Path) -> None:
    class SlowQueries(FakeEmbedder):
        """Holds the first query embedding until the writer has committed."""

        def __init__(self) -> None:
            super().__init__()
            self.started, self.go = threading.Event(), threading.Event()

        def embed(self, texts):  # type: ignore[no-untyped-def]
            if texts and texts[0].startswith("query: ") and not self.go.is_set():
                self.started.set()
                self.go.wait(30)
            return super().embed(texts)

    slow = SlowQueries()
    bot = _open(tmp_path, corpus, slow)
    bot.index()
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(bot.search("kommunale veiene brøyter", k=5)))
    thread.start()
    assert slow.started.wait(30)
    (corpus / "veier" / "vei.md").unlink()
    write_files(corpus, {"brøyting.md": "# Brøyting\n\nKommunen brøyter de kommunale veiene hver vinter."})
    _open(tmp_path, corpus).index()
    slow.go.set()
    thread.join(30)
    (hits,) = result
    assert isinstance(hits, list)
    for hit in hits:  # no chunk of the removed document, and every hit whole
        doc = bot.document(hit.doc_id)
        assert doc is not None and doc.text[hit.start:hit.end] == hit.text
    assert bot.search("kommunale veiene brøyter", k=1)[0].doc_id == "brøyting.md"


def test_second_writer_is_told_while_the_watcher_indexes(tmp_path: Path, corpus: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    bot = _open(tmp_path, corpus)
    inside, release = threading.Event(), threading.Event()
    save = VectorIndex.save

    def paused_save(self: VectorIndex, index_dir: Path, generation: int) -> Path:
        inside.set()
        release.wait(30)
        return save(self, index_dir, generation)

    monkeypatch.setattr(VectorIndex, "save", paused_save)
    with Watcher(bot, [corpus], quiet_seconds=0.1) as watcher:
        assert inside.wait(30)
        with pytest.raises(IndexLockedError, match="being written"):
            _open(tmp_path, corpus).index()
        release.set()
        _until(lambda: watcher.runs == 1, 20)


def test_watch_command_indexes_then_watches_until_ctrl_c(tmp_path: Path, corpus: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import signal

    from assistant import cli

    monkeypatch.setattr(cli, "_open", lambda args: _open(Path(args.index).parent, corpus))
    index = tmp_path / "index"

    returned = threading.Event()
    probe = _open(tmp_path, corpus)  # creates the (empty) index now, not in a race with the command's open

    def interrupt_when_done() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not returned.is_set():
            documents = probe.info().documents
            if documents == 4:
                break
            if documents == 3 and not (corpus / "ny.md").exists():
                write_files(corpus, {"ny.md": "# Ny\n\nEt nytt dokument om vannverk."})
            time.sleep(0.1)
        if not returned.is_set():
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)  # as Ctrl-C does

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # ignored in background jobs
    thread = threading.Thread(target=interrupt_when_done)
    thread.start()
    rc: int | None = None
    try:
        rc = cli.main(["watch", "--index", str(index), "--corpus", str(corpus), "--quiet", "0.2"])
    finally:
        # If `watch` returned on its own, a Ctrl-C sent in that instant must not stop the whole
        # test session: swallow it here and let the assertions below report what happened.
        while thread.is_alive() or not returned.is_set():
            try:
                returned.set()
                thread.join()
            except KeyboardInterrupt:
                pass
        signal.signal(signal.SIGINT, previous)
    out = capsys.readouterr()
    assert rc == 0, f"watch returned {rc} before Ctrl-C: {out.err[-2000:]}"
    lines = [line for line in out.out.splitlines() if "indexed in" in line]
    assert len(lines) == 2 and "3 added" in lines[0] and "1 added" in lines[1]
    assert "Watching" in out.err
