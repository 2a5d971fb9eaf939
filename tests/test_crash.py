"""Crash safety, proved: SIGKILL the indexer at many points of one run.

Each case copies an index of corpus state A, then runs the indexer over state B
(documents added, changed, renamed and removed) in a subprocess that kills
itself with SIGKILL at one point: while reading, while embedding, or while
committing (driven by the progress callback, or by wrapping a store or vector
method inside the subprocess). After the kill, a reader that was open all along
still answers from the last committed state, which is A, B, or B published by
its words with some vectors still pending (documents publish in two steps),
and nothing in between; the next run completes; and the result equals an index of B built
from scratch.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from assistant import Assistant, Settings
from assistant.store import DB_NAME
from conftest import ROOT, SEED
from fakes import FakeEmbedder

KILLER = r"""
import os, signal, sys
from assistant import Assistant, Settings
from assistant import store, vectors
from fakes import FakeEmbedder

index_dir, corpus, point = sys.argv[1], sys.argv[2], sys.argv[3]
where, _, n = point.partition(":")
when, _, stage = where.rpartition("@")
n = int(n)
calls = {"n": 0}

def die():
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)

def wrap(owner, name):
    original = getattr(owner, name)
    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n and when != "after":
            die()
        result = original(*args, **kwargs)
        if calls["n"] == n and when == "after":
            die()
        return result
    setattr(owner, name, wrapper)

METHODS = {"embed_call": (FakeEmbedder, "embed"), "put_vectors": (store.Store, "put_vectors"),
           "delete_document": (store.Store, "delete_document"), "put_document": (store.Store, "put_document"),
           "save": (vectors.VectorIndex, "save"), "prune": (vectors, "prune"),
           "prune_vectors": (store.Store, "prune_vectors")}

def progress(name, done, total):
    if name == stage:
        calls["n"] += 1
        if calls["n"] == n:
            die()

if stage in METHODS:
    wrap(*METHODS[stage])
settings = Settings.load(env={}, index_dir=index_dir, corpus_dirs=[corpus])
bot = Assistant.open(settings=settings, embedder=FakeEmbedder())
bot.index(progress=progress)
print("FINISHED WITHOUT BEING KILLED", flush=True)
"""

# (stage, n): progress stages "read"/"embed" count callbacks; the others count calls of a wrapped
# method, killed before the n-th call, or just after it returns with the "after@" prefix.
FAST_POINTS = ["read:9", "embed:2", "after@save:1", "prune:1"]
SLOW_POINTS = [
    "read:1", "read:5", "read:14", "read:20", "read:22",               # reading
    "embed_call:1", "embed_call:3", "after@embed_call:5",               # embedding
    "put_vectors:1", "after@put_vectors:3", "embed:1", "embed:4", "embed:6",
    "delete_document:1", "after@delete_document:2",                     # committing
    "put_document:1", "after@put_document:4", "put_document:15",
    "save:1", "after@prune:1", "prune_vectors:1", "after@prune_vectors:1",
]
QUERIES = ["brøyting av kommunale veier om vinteren", "sak 7 om vannverk og avløp",
           "endret tekst om barnehageplass", "tjenestedesign i kommunene"]


def _sentences(rng: random.Random, words: list[str], n: int) -> str:
    return " ".join(" ".join(rng.choice(words) for _ in range(rng.randint(8, 16))).capitalize() + "."
                    for _ in range(n))


def _state_a(root: Path) -> None:
    rng = random.Random(7)
    words = sorted(set(SEED.read_text(encoding="utf-8").lower().split()))
    for i in range(10):
        path = root / ("arkiv" if i % 3 else "") / f"dok-{i}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# Dokument {i}\n\n" + "\n\n".join(_sentences(rng, words, 6) for _ in range(8)),
                        encoding="utf-8")
    (root / "veier.md").write_text("# Veier\n\nBrøyting av kommunale veier om vinteren.\n", encoding="utf-8")
    (root / "barnehage.txt").write_text("Barnehageplass\n\nAlle barn har rett til plass.\n", encoding="utf-8")


def _to_state_b(root: Path) -> None:
    rng = random.Random(11)
    words = sorted(set(SEED.read_text(encoding="utf-8").lower().split()))
    for i in range(12):  # 12 new documents of about 30 chunks each
        body = "\n\n".join(f"Sak {i} om vannverk og avløp. " + _sentences(rng, words, 4) for _ in range(80))
        (root / "nye").mkdir(exist_ok=True)
        (root / "nye" / f"sak-{i}.md").write_text(f"# Sak {i}\n\n{body}", encoding="utf-8")
    (root / "barnehage.txt").write_text("Barnehageplass\n\nEndret tekst om barnehageplass og frister.\n",
                                        encoding="utf-8")
    (root / "dok-0.md").write_text("# Dokument 0\n\nTjenestedesign i kommunene, ny versjon.\n", encoding="utf-8")
    (root / "veier.md").rename(root / "brøyting.md")
    (root / "arkiv" / "dok-1.md").rename(root / "dok-1-flyttet.md")
    (root / "arkiv" / "dok-2.md").unlink()
    (root / "arkiv" / "dok-4.md").unlink()


def _open(index: Path, corpus: Path) -> Assistant:
    return Assistant.open(settings=Settings.load(env={}, index_dir=index, corpus_dirs=[corpus]),
                          embedder=FakeEmbedder())


def _snapshot(bot: Assistant) -> dict[str, object]:
    """What must be equal between two indexes of the same corpus (chunk ids may differ)."""
    db = bot._reader().db
    docs = sorted(db.execute("SELECT id, hash, text FROM documents"))
    chunks = sorted(db.execute('SELECT doc_id, ordinal, start, "end", text, headings FROM chunks'))
    searches = [[(h.doc_id, h.start, h.end, round(h.score, 5)) for h in bot.search(q, k=5)] for q in QUERIES]
    return {"documents": docs, "chunks": chunks, "searches": searches}


def _pending(index: Path) -> list[int]:
    import sqlite3

    db = sqlite3.connect(index / DB_NAME)
    try:
        return [r[0] for r in db.execute("SELECT chunk_id FROM pending")]
    finally:
        db.close()


def _doc_hashes(bot: Assistant) -> dict[str, str]:
    return dict(bot._reader().db.execute("SELECT id, hash FROM documents"))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    base = tmp_path_factory.mktemp("crash")
    corpus = base / "corpus"
    corpus.mkdir()
    _state_a(corpus)
    index_a = base / "index-a"
    bot_a = _open(index_a, corpus)
    bot_a.index()
    state_a = _doc_hashes(bot_a)
    snap_a = _snapshot(bot_a)
    bot_a.close()
    _to_state_b(corpus)
    scratch = _open(base / "index-b", corpus)
    full = scratch.index()
    shutil.copytree(index_a, base / "index-a-to-b")
    update = _open(base / "index-a-to-b", corpus).index()  # the run the kills interrupt, uninterrupted
    return {"corpus": corpus, "index_a": index_a, "state_a": state_a, "snap_a": snap_a,
            "state_b": _doc_hashes(scratch), "snap_b": _snapshot(scratch), "full": full, "update": update}


def _kill_at(point: str, index: Path, corpus: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), str(ROOT)]))
    return subprocess.run([sys.executable, "-c", KILLER, str(index), str(corpus), point], env=env,
                          capture_output=True, text=True, timeout=120, cwd=index.parent)


def _check_kill_point(point: str, world: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    corpus: Path = world["corpus"]
    index = tmp_path / "index"
    shutil.copytree(world["index_a"], index)
    server = _open(index, corpus)  # a running server, in effect
    assert _snapshot(server) == world["snap_a"]

    proc = _kill_at(point, index, corpus)
    assert proc.returncode == -signal.SIGKILL, (point, proc.returncode, proc.stdout, proc.stderr[-2000:])

    # The server still answers, from the last committed state: A, B, or B published by its
    # words with some vectors pending (searchable, embedded on demand); nothing in between.
    after_kill = _snapshot(server)
    pending = _pending(index)
    if pending:
        assert {k: after_kill[k] for k in ("documents", "chunks")} == \
            {k: world["snap_b"][k] for k in ("documents", "chunks")}, point
        assert all(after_kill["searches"]), point
    else:
        assert after_kill in (world["snap_a"], world["snap_b"]), point
    fresh = _open(index, corpus)
    assert _doc_hashes(fresh) in (world["state_a"], world["state_b"])
    import faiss

    generation = fresh.info().generation
    dense = faiss.read_index(str(index / f"dense-{generation}.faiss"))  # whole, and the committed one
    assert dense.ntotal == fresh.info().chunks - len(pending)
    assert _snapshot(fresh) == after_kill

    # The next run completes, reusing the vectors made before the kill.
    report = _open(index, corpus).index()
    update = world["update"]
    assert report.documents_total == update.documents_total
    assert report.chunks_embedded <= update.chunks_embedded
    if point.startswith("embed:"):  # each embedding batch (of the settings' batch_size, 16) was kept
        assert report.chunks_embedded == update.chunks_embedded - 16 * int(point.split(":")[1])

    # ... and its result equals an index built from scratch, also for the server that never restarted.
    assert _snapshot(_open(index, corpus)) == world["snap_b"]
    assert _snapshot(server) == world["snap_b"]
    assert (index / DB_NAME).exists() and not list(index.glob(".rebuild-*"))


def test_the_scenario_changes_what_it_should(world: dict) -> None:  # type: ignore[type-arg]
    full, update = world["full"], world["update"]
    assert len(full.added) == 22 and update.documents_total == 22
    assert len(update.added) == 14 and len(update.changed) == 2 and len(update.removed) == 4
    assert update.chunks_embedded > 6 * 16  # enough for six embedding batches
    a, b = world["state_a"], world["state_b"]
    assert set(a) - set(b) == {"arkiv/dok-1.md", "arkiv/dok-2.md", "arkiv/dok-4.md", "veier.md"}
    assert a["dok-0.md"] != b["dok-0.md"] and a["barnehage.txt"] != b["barnehage.txt"]
    assert a["veier.md"] == b["brøyting.md"]
    assert world["snap_a"]["searches"] != world["snap_b"]["searches"]


@pytest.mark.parametrize("point", FAST_POINTS)
def test_sigkill_at_a_few_points(point: str, world: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    _check_kill_point(point, world, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("point", SLOW_POINTS)
def test_sigkill_at_many_points(point: str, world: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    _check_kill_point(point, world, tmp_path)


def test_there_are_at_least_twenty_points_over_every_stage() -> None:
    points = set(FAST_POINTS) | set(SLOW_POINTS)
    assert len(points) >= 20
    stages = {p.split(":")[0].split("@")[-1] for p in points}
    assert {"read", "embed", "embed_call", "put_document", "save", "prune"} <= stages


def test_adding_one_document_embeds_only_its_chunks(tmp_path: Path) -> None:
    """Cost grows with the change: one new document embeds its own chunks and nothing else."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    _state_a(corpus)
    fake = FakeEmbedder()
    bot = Assistant.open(settings=Settings.load(env={}, index_dir=tmp_path / "index", corpus_dirs=[corpus]),
                         embedder=fake)
    bot.index()
    before_texts, before_chunks = fake.texts_embedded, bot.info().chunks
    shutil.copy(SEED, corpus / SEED.name)
    report = bot.index()
    new_chunks = bot.info().chunks - before_chunks
    assert report.added == (SEED.name,) and new_chunks >= 3
    assert report.chunks_embedded == fake.texts_embedded - before_texts == new_chunks
    doc = bot.document(SEED.name)
    assert doc is not None
    assert all(t.startswith(f"passage: {doc.title}") for t in fake.seen[before_texts:])
