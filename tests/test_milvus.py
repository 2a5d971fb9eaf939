"""The Milvus backend: addresses, the missing extra, crash safety without transactions, and two
stateless app servers sharing one Milvus (a `milvus-lite server` on loopback; 13-25 s here).

The behaviour both backends share (incremental updates, deletions, the stamp, hits and answers)
is tested by running test_indexing, test_retrieve, test_answering and test_integration on each.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from assistant import Assistant, MissingExtraError, Settings
from assistant.backend import StoreAddress, parse_store
from assistant.errors import AssistantError
from conftest import ROOT, milvus_missing, write_files
from fakes import FakeEmbedder

needs_milvus = pytest.mark.skipif(milvus_missing() is not None, reason=str(milvus_missing()))

DOCS = {
    "sosialhjelp.md": "# Sosialhjelp\n\nDen digitale søknaden om sosialhjelp ble laget av kommuner, KS og NAV.",
    "barnehage.txt": "Barnehageplass\n\nAlle barn har rett til barnehageplass fra august.",
    "veier/vei.md": "# Veier\n\nKommunen brøyter de kommunale veiene om vinteren.",
}


@pytest.mark.parametrize(("value", "expected"), [
    ("", None),
    ("milvus://db.example:19530", StoreAddress("milvus", "http://db.example:19530")),
    ("milvus://db.example/kommune_a?index=hnsw",
     StoreAddress("milvus", "http://db.example:19530", "kommune_a", "HNSW")),
    ("milvus+https://db.example:443", StoreAddress("milvus", "https://db.example:443")),
    ("milvus-lite:///srv/index/m.db", StoreAddress("milvus-lite", "/srv/index/m.db")),
    ("milvus-lite:///srv/m.db?name=ks", StoreAddress("milvus-lite", "/srv/m.db", "ks")),
    ("/srv/index/m.db", StoreAddress("milvus-lite", "/srv/index/m.db")),
])
def test_store_addresses(value: str, expected: StoreAddress | None) -> None:
    assert parse_store(value) == expected


@pytest.mark.parametrize("value", ["milvus://db.example:19530", "milvus+https://db.example:443/ks?index=hnsw",
                                   "milvus-lite:///srv/m.db?name=ks", "/srv/index/m.db"])
def test_addresses_round_trip_and_eval_indexes_get_their_own_collections(value: str) -> None:
    from assistant.backend import eval_store

    address = parse_store(value)
    assert address is not None and parse_store(address.setting()) == address
    other = parse_store(eval_store(value, "3f2a9c-dev"))
    assert other is not None and other.uri == address.uri and other.prefix == address.prefix + "_eval_3f2a9c_dev"
    assert eval_store("", "x") == ""


@pytest.mark.parametrize("value", ["redis://h:6379", "milvus-lite:///srv/m.sqlite", "milvus:///nohost",
                                   "milvus://h/9starts_with_a_digit", "milvus://h/has-dash"])
def test_unknown_or_malformed_stores_are_one_line_errors(value: str) -> None:
    with pytest.raises(AssistantError) as err:
        parse_store(value)
    assert "ASSISTANT_STORE" in str(err.value) and "\n" not in str(err.value)


def test_the_store_comes_from_the_environment_and_arguments_win() -> None:
    assert Settings.load(env={}).store == ""
    assert Settings.load(env={"ASSISTANT_STORE": "milvus://h:1"}).store == "milvus://h:1"
    assert Settings.load(env={"ASSISTANT_STORE": "milvus://h:1"}, store="x.db").store == "x.db"


def test_a_missing_extra_names_the_pip_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pymilvus", None)  # as if not installed
    settings = Settings.load(env={}, index_dir=tmp_path / "i", store=f"milvus-lite://{tmp_path}/m.db")
    with pytest.raises(MissingExtraError, match=r"pip install 'kommune-assistent\[milvus\]'"):
        Assistant.open(settings=settings, embedder=FakeEmbedder())


def test_serve_can_skip_indexing_for_stateless_app_servers() -> None:
    from assistant.cli import build_parser

    assert build_parser().parse_args(["serve", "--no-index"]).no_index is True
    assert build_parser().parse_args(["serve"]).no_index is False


def test_importing_the_milvus_modules_does_not_import_pymilvus() -> None:
    code = ("import sys, assistant.milvus_core, assistant.milvus_store, assistant.milvus_schema; "
            "print('pymilvus' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def _bot(tmp_path: Path, store: str, embedder: FakeEmbedder | None = None) -> Assistant:
    settings = Settings.load(env={}, index_dir=tmp_path / "index", corpus_dirs=[tmp_path / "corpus"], store=store)
    return Assistant.open(settings=settings, embedder=embedder or FakeEmbedder())


class _Killed(BaseException):
    """Stands for SIGKILL at one step of a commit: nothing after it runs, no clean-up either."""


@needs_milvus
@pytest.mark.parametrize("step", ["_publish", "_collect"])
def test_a_writer_killed_mid_commit_leaves_a_consistent_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               step: str) -> None:
    from assistant.milvus_store import MilvusStore

    store = f"milvus-lite://{tmp_path}/m.db"
    write_files(tmp_path / "corpus", DOCS)
    _bot(tmp_path, store).index()
    reader = _bot(tmp_path, store)
    before = reader.search("barnehageplass august", k=1)[0]
    (tmp_path / "corpus" / "barnehage.txt").write_text("Barnehageplass\n\nSøknadsfristen er 1. mars.",
                                                       encoding="utf-8")
    (tmp_path / "corpus" / "veier" / "vei.md").unlink()

    def killed(self: MilvusStore, *args: object) -> None:
        raise _Killed()

    monkeypatch.setattr(MilvusStore, step, killed)
    with pytest.raises(_Killed):
        _bot(tmp_path, store).index()
    monkeypatch.undo()
    published = step == "_collect"  # killed after the generation was published, before old versions went
    for hit in reader.search("barnehageplass", k=5):  # never a hit into a version that is not current
        doc = reader.document(hit.doc_id)
        assert doc is not None and doc.text[hit.start:hit.end] == hit.text
    assert reader.info().documents == (2 if published else 3)
    if not published:
        assert reader.search("barnehageplass august", k=1)[0].chunk_id == before.chunk_id
    fake = FakeEmbedder()
    report = _bot(tmp_path, store, fake).index()  # the next run repairs and finishes the job
    assert fake.texts_embedded == 1  # the changed document's new chunk (embedded after its words were published)
    assert report.documents_total == 2
    fresh = tmp_path / "fresh"
    write_files(fresh / "corpus", {p.relative_to(tmp_path / "corpus").as_posix(): p.read_text(encoding="utf-8")
                                   for p in (tmp_path / "corpus").rglob("*") if p.is_file()})
    rebuilt = _bot(fresh, f"milvus-lite://{fresh}/m.db").index()
    assert report.chunks_total == rebuilt.chunks_total
    assert reader.search("søknadsfristen barnehageplass", k=1)[0].text.endswith("1. mars.")


SERVER = """
import sys
sys.path.insert(0, sys.argv[4])
from assistant import Assistant, Settings
from assistant.answering import answer_json
from assistant.feedback import record_feedback
from assistant.web import build_app, start_server
from fakes import FakeEmbedder
# The fake embedder's cosines are not the real model's: refuse only when nothing matches at all.
settings = Settings.load(index_dir=sys.argv[1], corpus_dirs=[sys.argv[2]], store=sys.argv[3], refuse_below=0.05,
                         refuse_below_cross=0.05)
bot = Assistant.open(settings=settings, embedder=FakeEmbedder())
running = start_server(build_app(bot, corpus_dirs=settings.corpus_dirs))
print("URL", running.url, flush=True)
for line in sys.stdin:  # commands from the test, one per line
    if line.strip() == "index":
        report = bot.index()
        print("INDEXED", report.documents_total, flush=True)
    elif line.startswith("feedback "):
        answer = answer_json(bot.ask(line[len("feedback "):].strip()))
        print("FEEDBACK", record_feedback(bot, 1, answer), flush=True)
running.stop()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def milvus_server(tmp_path: Path) -> Iterator[str]:
    """A Milvus server on loopback (milvus-lite's gRPC server), as `Settings.store`."""
    reason = milvus_missing()
    if reason:
        pytest.skip(reason)
    port = _free_port()
    exe = Path(sys.executable).with_name("milvus-lite")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "milvus_lite"]
    proc = subprocess.Popen([*cmd, "server", "--data-dir", str(tmp_path / "milvus"), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("milvus-lite server did not start")
            time.sleep(0.2)
    try:
        yield f"milvus://127.0.0.1:{port}/kommune"
    finally:
        proc.terminate()
        proc.wait(10)


def _start(tmp_path: Path, store: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", SERVER, str(tmp_path / "index"), str(tmp_path / "corpus"), store,
                             str(ROOT / "tests")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def _url(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("URL "), line
    return line.split()[1]


def _command(proc: subprocess.Popen[str], command: str) -> str:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(command + "\n")
    proc.stdin.flush()
    return proc.stdout.readline()


def test_two_app_servers_share_one_milvus(tmp_path: Path, milvus_server: str) -> None:
    write_files(tmp_path / "corpus", DOCS)
    a, b = _start(tmp_path, milvus_server), _start(tmp_path, milvus_server)  # two processes, two ports
    try:
        url_a, url_b = _url(a), _url(b)
        assert url_a != url_b
        assert _command(a, "index").split() == ["INDEXED", "3"]
        question = {"question": "Hvem laget den digitale søknaden om sosialhjelp?", "history": []}
        answers = [httpx.post(f"{url}/api/ask", json=question, timeout=60).json() for url in (url_a, url_b)]
        assert answers[0]["answer"] == answers[1]["answer"] and not answers[0]["refused"]
        assert answers[0]["hits"] == answers[1]["hits"] and answers[0]["citations"] == answers[1]["citations"]
        # an update through A is answered by B at its next question
        write_files(tmp_path / "corpus", {"vann.md": "# Vann\n\nVannverket leverer drikkevann til innbyggerne."})
        assert _command(a, "index").split() == ["INDEXED", "4"]
        found = httpx.post(f"{url_b}/api/search", json={"question": "vannverket drikkevann", "k": 1}).json()
        assert found["hits"][0]["doc_id"] == "vann.md"
        assert httpx.get(f"{url_b}/api/health").json()["documents"] == 4
        # feedback given on A is in the shared store: B's process, and any other, reads it
        first = int(_command(a, "feedback Hvem laget søknaden om sosialhjelp?").split()[1])
        second = int(_command(b, "feedback Hva leverer vannverket?").split()[1])
        from assistant.feedback import read_feedback

        rows = read_feedback(tmp_path / "index", milvus_server)
        assert [r["id"] for r in rows] == [first, second]
        assert rows[1]["hits"][0]["doc_id"] == "vann.md"
        assert json.dumps(rows)  # exportable as JSONL
    finally:
        for proc in (a, b):
            if proc.stdin:
                proc.stdin.close()
            proc.wait(30)
