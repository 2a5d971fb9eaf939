"""The served app over HTTP (httpx and gradio_client), feedback export, and the admin's file handling.

One real server (uvicorn in a thread on 127.0.0.1, an ephemeral port) over a
tiny corpus with the fake embedder.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, Sequence

import httpx
import numpy as np
import pytest

from assistant.admin import Admin, LoginGate, UploadError, inside, sanitise_filename
from assistant.answering import answer_json
from assistant.cli import main
from assistant.core import Assistant
from assistant.feedback import read_feedback, record_feedback
from assistant.settings import Settings
from assistant.web import is_loopback
from conftest import ROOT
from fakes import FakeEmbedder

LIBRARY = "Biblioteket i sentrum har åpent mandag til fredag fra klokka ti til seks."
DOCS = {
    "bibliotek.md": f"# Bibliotek\n\n{LIBRARY} Lånekort er gratis for alle som bor i kommunen.\n",
    "vann.md": "# Vann og avløp\n\nFaktura for vann og avløp sendes ut fire ganger i året.\n",
}


class SlowEmbedder(FakeEmbedder):
    """The fake embedder, made to take `delay` seconds per call while a test wants it slow."""

    delay = 0.0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        time.sleep(self.delay)
        return super().embed(texts)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Assistant, Path]]:
    from assistant.web import build_app, start_server

    corpus = tmp_path_factory.mktemp("corpus")
    for name, text in DOCS.items():
        (corpus / name).write_text(text, encoding="utf-8")
    settings = Settings.load(env={}, index_dir=tmp_path_factory.mktemp("index"), corpus_dirs=[corpus])
    bot = Assistant.open(settings=settings, embedder=SlowEmbedder())
    bot.index()
    running = start_server(build_app(bot, corpus_dirs=[corpus], admin_password="pw"))
    yield running.url, bot, corpus
    running.stop()
    bot.close()


@pytest.fixture
def http(served: tuple[str, Assistant, Path]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served[0], timeout=30) as client:
        yield client


def test_health_reports_the_index(http: httpx.Client) -> None:
    body = http.get("/api/health").json()
    assert body["status"] == "ok" and body["documents"] == 2 and body["chunks"] >= 2
    assert body["model"] == "fake-bow" and body["updated_at"] > 0


def test_ask_returns_the_answer_with_citations_and_hits(http: httpx.Client) -> None:
    r = http.post("/api/ask", json={"question": LIBRARY})
    assert r.status_code == 200, r.text
    body = r.json()
    assert not body["refused"] and "[1]" in body["answer"]
    assert body["citations"][0]["doc_id"] == "bibliotek.md"
    assert any(LIBRARY in q for q in body["citations"][0]["quotes"])
    assert body["hits"][0]["doc_id"] == "bibliotek.md"


def test_ask_takes_a_history(http: httpx.Client) -> None:
    r = http.post("/api/ask", json={"question": "Og lånekort?", "history": [[LIBRARY, "Ti til seks. [1]"]]})
    assert r.status_code == 200, r.text
    assert r.json()["question"] == "Og lånekort?"


def test_search_returns_k_hits(http: httpx.Client) -> None:
    body = http.post("/api/search", json={"question": "faktura vann avløp", "k": 1}).json()
    assert [h["doc_id"] for h in body["hits"]] == ["vann.md"]


@pytest.mark.parametrize(("path", "payload", "status", "message"), [
    ("/api/ask", {"question": ""}, 400, "empty"),
    ("/api/ask", {"question": "   \n "}, 400, "empty"),
    ("/api/ask", {"question": "x" * 2001}, 400, "limit is 2000"),
    ("/api/search", {"question": "x" * 2001}, 400, "limit is 2000"),
    ("/api/ask", {}, 422, "question"),
    ("/api/ask", {"question": 5}, 422, "question"),
    ("/api/ask", {"question": "hei", "history": [["only one"]]}, 422, "history"),
    ("/api/ask", {"question": "hei", "history": [["q", "a"]] * 21}, 422, "history"),
    ("/api/search", {"question": "hei", "k": 0}, 422, "k"),
])
def test_bad_requests_get_a_clear_4xx(http: httpx.Client, path: str, payload: object, status: int,
                                       message: str) -> None:
    r = http.post(path, json=payload)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def test_malformed_json_is_a_4xx(http: httpx.Client) -> None:
    r = http.post("/api/ask", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "error" in r.json()


def test_a_slow_question_does_not_block_other_requests(served: tuple[str, Assistant, Path],
                                                       http: httpx.Client) -> None:
    embedder = served[1].embedder
    assert isinstance(embedder, SlowEmbedder)
    embedder.delay = 2.0
    try:
        slow = threading.Thread(target=lambda: http.post("/api/ask", json={"question": "biblioteket åpent"}))
        slow.start()
        time.sleep(0.3)
        t0 = time.perf_counter()
        assert http.get("/api/health").status_code == 200
        assert httpx.get(served[0] + "/", timeout=30).status_code == 200
        elapsed = time.perf_counter() - t0
        slow.join()
    finally:
        embedder.delay = 0.0
    assert elapsed < 1.5, f"health and the page took {elapsed:.2f} s while a question was being answered"


def test_gradio_client_reaches_the_named_endpoints(served: tuple[str, Assistant, Path]) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(served[0], verbose=False)
    assert {"/ask", "/search"} <= set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    answer = client.predict(LIBRARY, [], api_name="/ask")
    assert answer["citations"][0]["doc_id"] == "bibliotek.md" and not answer["refused"]
    hits = client.predict("faktura vann avløp", 1, api_name="/search")["hits"]
    assert hits[0]["doc_id"] == "vann.md"
    with pytest.raises(AppError, match="empty"):
        client.predict("", [], api_name="/ask")


def test_feedback_is_stored_and_exported(served: tuple[str, Assistant, Path], tmp_path: Path) -> None:
    bot = served[1]
    answer = answer_json(bot.ask(LIBRARY))
    first = record_feedback(bot, 1, answer)
    second = record_feedback(bot, -1, answer)
    assert second > first
    with pytest.raises(ValueError):
        record_feedback(bot, 5, answer)
    out = tmp_path / "feedback.jsonl"
    assert main(["feedback", "export", "--index", str(bot.index_dir), "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    mine = [r for r in rows if r["id"] in (first, second)]
    assert [r["rating"] for r in mine] == [1, -1]
    assert mine[0]["question"] == LIBRARY and mine[0]["hits"][0]["doc_id"] == "bibliotek.md"
    assert rows == read_feedback(bot.index_dir)


def test_feedback_export_without_an_index_is_one_line_error(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["feedback", "export", "--index", str(tmp_path / "none")]) == 1
    assert capsys.readouterr().err.startswith("Error: no index")


@pytest.mark.parametrize(("name", "expected"), [
    ("rapport.md", "rapport.md"),
    ("../../etc/evil.md", "evil.md"),
    ("..\\..\\windows\\evil.txt", "evil.txt"),
    ("/absolute/path/plan.PDF", "plan.pdf"),
    (".hidden.md", "hidden.md"),
    ("a<b>|c?.md", "a_b_c_.md"),
    ("søknad om sosialhjelp.docx", "søknad om sosialhjelp.docx"),
    ("x\x00y\n.txt", "xy.txt"),
    ("n" * 300 + ".md", "n" * 117 + ".md"),
])
def test_upload_names_are_sanitised(name: str, expected: str) -> None:
    assert sanitise_filename(name) == expected


@pytest.mark.parametrize("name", ["", "..", "../..", "noext", "evil.exe", "run.sh", "../.md", "archive.tar.gz"])
def test_unusable_upload_names_are_refused(name: str) -> None:
    with pytest.raises(UploadError):
        sanitise_filename(name)


def test_admin_saves_inside_the_corpus_indexes_and_deletes(tmp_path: Path) -> None:
    corpus, outside = tmp_path / "corpus", tmp_path / "outside"
    corpus.mkdir()
    outside.mkdir()
    settings = Settings.load(env={}, index_dir=tmp_path / "index", corpus_dirs=[corpus], max_file_bytes=1000)
    bot = Assistant.open(settings=settings, embedder=FakeEmbedder())
    admin = Admin(bot, [corpus])
    good = tmp_path / "upload1"
    good.write_text("# Fuglekasser\n\nHver skoleklasse får tolv fuglekasser.\n", encoding="utf-8")
    big = tmp_path / "upload2"
    big.write_bytes(b"x" * 1001)
    saved = admin.save_uploads([("../outside/fugl.md", good), ("stor.txt", big), ("LICENSE.md", good),
                                ("virus.exe", good)])
    assert [s.name for s in saved] == ["fugl.md", None, None, None]
    assert "limit" in (saved[1].error or "") and "licence" in (saved[2].error or "")
    assert "unsupported" in (saved[3].error or "")
    assert sorted(p.name for p in corpus.iterdir()) == ["fugl.md"] and not list(outside.iterdir())
    stages: list[str] = []
    report = admin.reindex(lambda stage, done, total: stages.append(stage))
    assert report.added == ("fugl.md",) and "embed" in stages
    assert admin.documents() == ["fugl.md"]
    assert bot.search("fuglekasser skoleklasse", k=1)[0].doc_id == "fugl.md"
    with pytest.raises(UploadError):
        admin.delete("../outside/x.md")
    report = admin.delete("fugl.md")
    assert report.removed == ("fugl.md",) and not (corpus / "fugl.md").exists() and admin.documents() == []
    bot.close()


def test_inside_rejects_escapes(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "link").symlink_to(tmp_path)
    assert inside(tmp_path / "c", tmp_path / "c" / "a.md")
    assert not inside(tmp_path / "c", tmp_path / "c" / ".." / "a.md")
    assert not inside(tmp_path / "c", tmp_path / "c" / "link" / "a.md")
    assert not inside(tmp_path / "c", tmp_path / "c")


def test_login_gate_locks_out_after_repeated_failures() -> None:
    now = [1000.0]
    gate = LoginGate("hemmelig", max_failures=3, window=60.0, clock=lambda: now[0])
    assert not gate.check("1.2.3.4", "feil") and not gate.check("1.2.3.4", "")
    assert gate.check("1.2.3.4", "hemmelig")  # a success clears the count
    for _ in range(3):
        assert not gate.check("1.2.3.4", "feil")
    assert gate.locked_for("1.2.3.4") > 0
    assert not gate.check("1.2.3.4", "hemmelig")  # locked: even the right password fails
    assert gate.check("5.6.7.8", "hemmelig")       # other clients are not affected
    now[0] += 61
    assert gate.locked_for("1.2.3.4") == 0 and gate.check("1.2.3.4", "hemmelig")
    with pytest.raises(ValueError):
        LoginGate("")


def test_wrong_passwords_are_logged_without_the_password(caplog: pytest.LogCaptureFixture) -> None:
    gate = LoginGate("hemmelig")
    with caplog.at_level("DEBUG"):
        gate.check("1.2.3.4", "mitt-feil-forsok")
    assert "1.2.3.4" in caplog.text and "mitt-feil-forsok" not in caplog.text and "hemmelig" not in caplog.text


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                                 ("0.0.0.0", False), ("192.168.1.5", False), ("example.org", False)])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_importing_the_cli_and_web_modules_stays_cheap() -> None:
    code = ("import sys, assistant.web, assistant.feedback, assistant.cli as c; c.build_parser(); "
            "print(sorted(m for m in ('gradio', 'fastapi', 'uvicorn', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_serve_is_a_cli_command() -> None:
    from assistant.cli import build_parser

    args = build_parser().parse_args(["serve", "--corpus", "a", "--corpus", "b", "--port", "0", "--watch"])
    assert args.corpus == ["a", "b"] and args.host == "127.0.0.1" and args.port == 0 and args.watch


def test_document_view_escapes_html_and_marks_the_passage() -> None:
    from assistant.types import Document
    from assistant.webhtml import SourceRef, document_view, source_card

    text = "Intro <b>x</b>.\n\nFarlig: <script>alert(1)</script> og <img src=x onerror=alert(2)>. Slutt."
    start = text.index("Farlig")
    passage = text[start:]
    ref = SourceRef(1, "d.txt", "<i>Tittel</i>", ("A", "B"), 3, start, len(text), passage,
                    ("<script>alert(1)</script> og <img src=x onerror=alert(2)>.",))
    html = document_view(Document("d.txt", "<i>Tittel</i>", text), ref, "nb")
    card = source_card(ref, "nb")
    for out in (html, card):
        assert "<script>" not in out and "<img" not in out and "<i>" not in out
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out
        assert '<mark class="quote">&lt;script&gt;' in out
    assert html.index('<span class="passage">') > html.index("Intro &lt;b&gt;x&lt;/b&gt;.")
    assert "A › B · s. 3" in card


def test_document_view_finds_a_moved_passage_and_windows_long_documents() -> None:
    from assistant.types import Document
    from assistant.webhtml import SourceRef, document_view, quote_spans

    text = "a" * 500 + " Målet er nådd. " + "b" * 500
    ref = SourceRef(1, "d", "T", (), None, 0, 15, "Målet er nådd.", ("er nådd",))
    html = document_view(Document("d", "T", text), ref, "en", window=200)
    assert '<span class="passage">Målet <mark class="quote">er nådd</mark>.</span>' in html
    assert html.count("a") < 200 and "…" in html
    assert quote_spans("abcdef", ["bcd", "cde", "zz", ""]) == [(1, 5)]


def test_login_limits_are_shared_by_app_servers_of_one_store(tmp_path: Path, store_uri: str) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.md").write_text("# A\n\nEn tekst.", encoding="utf-8")

    def server() -> Assistant:  # one app server's view of the shared index
        settings = Settings.load(env={}, index_dir=tmp_path / "index", corpus_dirs=[corpus], store=store_uri)
        return Assistant.open(settings=settings, embedder=FakeEmbedder())

    first, second = server(), server()
    first.index()
    gate_a = LoginGate("hemmelig", max_failures=3, window=60.0, shared=first)
    gate_b = LoginGate("hemmelig", max_failures=3, window=60.0, shared=second)
    assert not gate_a.check("1.2.3.4", "feil") and not gate_b.check("1.2.3.4", "feil")
    assert gate_b.locked_for("1.2.3.4") == 0
    assert not gate_a.check("1.2.3.4", "feil")
    assert gate_b.locked_for("1.2.3.4") > 0  # three failures over two servers lock both
    assert not gate_b.check("1.2.3.4", "hemmelig")
    assert gate_a.check("5.6.7.8", "hemmelig") and gate_b.locked_for("5.6.7.8") == 0
    assert "feil" not in (second.shared_value("login-failures:1.2.3.4") or "feil")
