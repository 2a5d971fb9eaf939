"""The embedding model in its own process (`assistant serve`'s default).

Unit tests run the child with the fake embedder (`--factory`); one test runs
the packaged model in the child and compares its vectors with the in-process
model's, and one starts `assistant serve` and checks that its model process
goes when the server goes, even when the server is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from assistant.errors import AssistantError
from assistant.loadtest import free_port
from assistant.model_process import ProcessEmbedder
from assistant.settings import Settings
from conftest import ROOT
from fakes import FakeEmbedder

TESTS = Path(__file__).parent
TEXTS = ["Søknad om sosialhjelp", "vann og avløp", "brøyting av kommunale veier", "", "æøå ÆØÅ"]


@pytest.fixture
def fake_process(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PYTHONPATH", str(TESTS))  # the child imports `fakes`
    embedder = ProcessEmbedder(Settings.load(env={}), factory="fakes:FakeEmbedder")
    yield embedder
    embedder.close()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"  # a zombie has exited
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text(encoding="ascii").split(")")[-1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _gone(pid: int, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_vectors_and_identity_come_from_the_child(fake_process: ProcessEmbedder) -> None:
    local = FakeEmbedder()
    assert (fake_process.model_id, fake_process.fingerprint, fake_process.dimension) == \
        (local.model_id, local.fingerprint, local.dimension)
    assert fake_process.pid != os.getpid()
    got = fake_process.embed(TEXTS)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), local.dimension)
    np.testing.assert_allclose(got, local.embed(TEXTS), atol=1e-6)
    assert fake_process.embed([]).shape == (0, local.dimension)
    with pytest.raises(TypeError):
        fake_process.embed("one string")  # type: ignore[arg-type]


def test_threads_embedding_at_once_each_get_their_own_vectors(fake_process: ProcessEmbedder) -> None:
    local = FakeEmbedder()
    results: dict[int, np.ndarray] = {}

    def ask(i: int) -> None:
        results[i] = fake_process.embed([f"tekst nummer {i} om {w}" for w in ("vann", "vei", "skole")] * (i + 1))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == list(range(16))
    for i, got in results.items():
        want = local.embed([f"tekst nummer {i} om {w}" for w in ("vann", "vei", "skole")] * (i + 1))
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_an_error_in_the_model_is_the_callers_and_the_child_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    with ProcessEmbedder(Settings.load(env={}), factory="fakes:PickyEmbedder") as embedder:
        with pytest.raises(AssistantError, match="choked on boom"):
            embedder.embed(["a boom here"])
        assert embedder.embed(["vann"]).shape == (1, 64)
        assert embedder.restarts == 0


def test_a_killed_child_is_started_again_on_the_next_call(fake_process: ProcessEmbedder) -> None:
    first = fake_process.pid
    assert first is not None and fake_process.dimension == 64
    os.kill(first, signal.SIGKILL)
    assert _gone(first)
    time.sleep(0.2)  # the reader thread notices
    np.testing.assert_allclose(fake_process.embed(["vann"]), FakeEmbedder().embed(["vann"]), atol=1e-6)
    assert fake_process.restarts == 1 and fake_process.pid not in (None, first)


def test_a_call_whose_child_dies_under_it_is_asked_again_of_a_new_child(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    with ProcessEmbedder(Settings.load(env={}), factory="fakes:PickyEmbedder") as embedder:
        first = embedder.pid
        assert first is not None and embedder.dimension == 64
        threading.Timer(0.5, os.kill, (first, signal.SIGKILL)).start()  # while it embeds "slow"
        got = embedder.embed(["a slow text"])
        np.testing.assert_allclose(got, FakeEmbedder().embed(["a slow text"]), atol=1e-6)
        assert embedder.restarts == 1 and embedder.pid != first


def test_a_model_that_cannot_load_is_an_error_every_time_not_a_restart_loop() -> None:
    embedder = ProcessEmbedder(Settings.load(env={}, model="/no/such/model/folder"))
    try:
        for _ in range(2):
            with pytest.raises(AssistantError, match="cannot load model /no/such/model/folder: no such folder"):
                embedder.embed(["vann"])
        with pytest.raises(AssistantError, match="no such folder"):
            _ = embedder.dimension
        assert embedder.restarts == 0
    finally:
        embedder.close()


def test_close_stops_the_child(fake_process: ProcessEmbedder) -> None:
    pid = fake_process.pid
    assert pid is not None and fake_process.dimension == 64
    fake_process.close()
    assert _gone(pid, 6)
    assert fake_process.pid is None
    with pytest.raises(AssistantError, match="closed"):
        fake_process.embed(["vann"])


def test_the_packaged_model_gives_the_same_vectors_in_its_own_process(real_embedder, model_cache: Path) -> None:  # type: ignore[no-untyped-def]
    texts = ["query: How did the social-assistance application come about?",
             "passage: Den nye digitale søknaden om sosialhjelp er utviklet i samarbeid.", "passage: æøå"]
    with ProcessEmbedder(Settings.load(env={}, cache_dir=model_cache)) as embedder:
        assert (embedder.model_id, embedder.fingerprint, embedder.dimension) == \
            (real_embedder.model_id, real_embedder.fingerprint, real_embedder.dimension)
        np.testing.assert_allclose(embedder.embed(texts), real_embedder.embed(texts), atol=1e-5)


def test_serve_answers_through_its_model_process_and_takes_it_along_when_killed(
        tmp_path: Path, model_cache: Path, real_embedder) -> None:  # type: ignore[no-untyped-def]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "sosialhjelp.md").write_text(
        "# Sosialhjelp\n\nDen digitale søknaden om sosialhjelp er laget av kommuner, KS og NAV sammen.\n",
        encoding="utf-8")
    port = free_port()
    env = dict(os.environ, ASSISTANT_CACHE=str(model_cache))
    env.pop("ASSISTANT_MODEL_PROCESS", None)  # the default: on
    proc = subprocess.Popen([sys.executable, "-m", "assistant", "serve", "--index", str(tmp_path / "index"),
                             "--corpus", str(corpus), "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                if httpx.get(url + "/api/health", timeout=5).json().get("ready"):
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve was not ready in 180 s"
            time.sleep(0.2)
        children = _children(proc.pid)
        assert len(children) == 1, children  # the model's process
        answer = httpx.post(url + "/api/ask", json={"question": "Hvem laget søknaden om sosialhjelp?"},
                            timeout=60).json()
        assert not answer["refused"] and answer["citations"][0]["doc_id"] == "sosialhjelp.md"
        proc.send_signal(signal.SIGKILL)  # no chance to tidy up: the child sees its socket close
        proc.wait(10)
        assert _gone(children[0]), "the model process outlived a killed server"
    finally:
        proc.kill()
        proc.wait(10)


def test_questions_go_to_the_childs_question_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    with ProcessEmbedder(Settings.load(env={}), factory="fakes:TwoSidedEmbedder") as embedder:
        questions = embedder.for_questions()
        passages = embedder.embed(TEXTS)
        asked = questions.embed(TEXTS)
        assert np.array_equal(asked, -passages)  # the child's `for_questions()` side embedded them
        assert (questions.model_id, questions.dimension) == (embedder.model_id, embedder.dimension)
        assert questions.embed([]).shape == (0, embedder.dimension)
