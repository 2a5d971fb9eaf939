"""`assistant bench --quick` with the fake embedder: every section present, with sane values."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from assistant import lexical
from assistant.bench import BenchOptions, format_table, percentile, run_bench
from assistant.bench_synthetic import build_store, recall_at, vocabulary
from assistant.cli import build_parser
from assistant.settings import Settings
from assistant.store import DB_NAME, Store, connect
from conftest import shared
from fakes import FakeEmbedder


def _options(tmp_path: Path, **kw: object) -> BenchOptions:
    return BenchOptions(corpus=shared("corpus"), questions=shared("eval", "questions.jsonl"),
                        output=tmp_path / "out" / "bench.json", sizes=(1500,), repeat=3, quick=True, max_docs=6,
                        embedder_spec="fakes:FakeEmbedder", **kw)  # type: ignore[arg-type]


def _run(tmp_path: Path, **kw: object) -> dict:
    result = run_bench(_options(tmp_path, **kw), settings=Settings.load(env={}, cache_dir=tmp_path / "cache"),
                       embedder=FakeEmbedder())
    written = json.loads((tmp_path / "out" / "bench.json").read_text(encoding="utf-8"))
    assert written["options"]["sizes"] == [1500]
    return result


def test_in_process_sections_are_consistent(tmp_path: Path) -> None:
    r = _run(tmp_path, sections=("indexing", "incremental", "approximate"), skip_peer=True)
    assert set(r) >= {"machine", "model", "indexing", "incremental", "approximate"} and "latency" not in r
    assert r["incremental"]["changed"]["chunks_embedded"] < r["indexing"]["chunks"]
    assert r["incremental"]["deleted"]["chunks_embedded"] == 0
    assert r["approximate"]["exact_by_size"][-1]["p50_ms_1thread"] > 0


@pytest.mark.slow
def test_quick_bench_has_every_section_with_sane_values(tmp_path: Path) -> None:
    r = _run(tmp_path, skip_peer=True)
    m = r["machine"]
    assert m["cores"] >= 1 and m["cpu"] and m["ram_gb"] > 0

    ix = r["indexing"]
    assert ix["documents"] == 6 and ix["chunks"] > 6
    assert ix["pipeline_seconds"] > 0 and ix["bare_encode_seconds"] > 0 and ix["ratio_to_bare_encode"] > 0
    assert len(ix["runs"]["ratios"]) == 3

    inc = r["incremental"]
    assert inc["changed"]["chunks_embedded"] >= 1  # only the changed document's new chunks
    assert inc["changed"]["chunks_embedded"] < ix["chunks"]
    assert inc["added"]["chunks_embedded"] >= 1
    assert inc["deleted"]["chunks_embedded"] == 0
    assert all(inc[k]["ratio_to_full_build"] > 0 for k in ("changed", "added", "deleted"))

    rows = {row["label"]: row for row in r["latency"]["sizes"]}
    assert set(rows) == {"corpus", "1_500"}
    assert rows["corpus"]["chunks"] == ix["chunks"] and rows["1_500"]["chunks"] == 1500
    for row in rows.values():
        assert 0 < row["search"]["p50_ms"] <= row["search"]["p95_ms"] < 60_000
        assert row["search"]["n"] == 3 * r["latency"]["questions"]
        assert row["ask"]["p50_ms"] > 0 and row["peak_rss_mb"] > 10 and row["disk_mb"] > 0
        assert row["vector_index"] == "flat"
    assert rows["1_500"]["disk_mb"] > rows["corpus"]["disk_mb"] / 10

    cold = r["cold_start"]
    assert 0 < cold["first_answer"] < cold["seconds"] and cold["imports"] > 0

    ap = r["approximate"]
    assert ap["size"] == 1500 and ap["exact_by_size"][-1]["size"] == 1500
    for rec in ap["recall"].values():
        assert 0 <= rec["recall@10"] <= 1 and rec["kind"].startswith("ivf")
        assert rec["sweep"][-1]["recall@10"] >= rec["sweep"][0]["recall@10"]  # more probes, more recall
    assert r["peer"] == {"skipped": "--skip-peer"}
    table = format_table(r)
    assert "peer: skipped (--skip-peer)" in table and "cold start" in table


@pytest.mark.slow
def test_quick_bench_with_the_peer(tmp_path: Path) -> None:
    r = _run(tmp_path, sections=("indexing", "peer"))
    peer = r["peer"]
    if "skipped" in peer:
        assert "pip install llama-index-core" in peer["skipped"]
        return
    for side in ("ours", "llamaindex"):
        assert peer[side]["index_seconds"] > 0 and peer[side]["query_p50_ms"] > 0
        assert 0 <= peer[side]["passage@5"] <= 1 and peer[side]["questions"] > 0
    assert peer["ratios"]["index_seconds"] > 0
    assert "llamaindex" in format_table(r)


def test_synthetic_store_holds_what_the_lexical_analyser_would_store(tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Søknaden om sosialhjelp behandles digitalt av kommunene og NAV-kontoret.")
    vocab = vocabulary(corpus)
    embedder = FakeEmbedder(dimension=16)
    stamp = {"model": embedder.model_id, "dimension": 16}
    build_store(tmp_path / "idx", 120, stamp, 16, vocab, batch=50)
    store = Store(connect(tmp_path / "idx" / DB_NAME, readonly=True))
    try:
        assert store.counts() == (3, 120)
        rows = store.db.execute("SELECT c.id, c.text, l.terms FROM chunks c JOIN lexical l ON l.rowid = c.id").fetchall()
        assert len(rows) == 120
        for _, text, terms in rows[:20]:
            assert terms == " ".join(lexical.analyse(text))
        doc = store.document("synthetic/0000000.txt")
        chunk = store.chunks_by_id([1])[1].chunk
        assert doc is not None and doc.text[chunk.start:chunk.end] == chunk.text
        _, vecs = next(store.chunk_vectors())
        assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
        assert lexical.search(store.db, "sosialhjelp", 5)
    finally:
        store.close()
    assert (tmp_path / "idx" / "dense-1.faiss").exists()


def test_percentile_and_recall() -> None:
    assert percentile([1, 2, 3, 4, 5], 50) == 3
    assert percentile([0, 10], 95) == pytest.approx(9.5)
    exact = np.array([list(range(10)), list(range(10, 20))])
    approx = np.array([list(range(10)), list(range(15, 25))])
    assert recall_at(exact, approx) == pytest.approx(0.75)


def test_bench_command_is_registered_and_import_is_cheap() -> None:
    args = build_parser().parse_args(["bench", "--quick", "--skip-peer", "--sizes", "1000,2000"])
    assert args.quick and args.skip_peer and args.sizes == "1000,2000"
    code = "import sys, assistant.bench; print(sorted(m for m in ('numpy', 'torch', 'faiss') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_milvus_section_compares_with_faiss(tmp_path: Path) -> None:
    from conftest import milvus_missing

    if milvus_missing():
        pytest.skip(str(milvus_missing()))
    r = _run(tmp_path, sections=("milvus",), skip_peer=True)
    (row,) = r["milvus"]["sizes"]
    assert row["size"] == 1000 and row["faiss_flat"]["recall@10"] == 1.0
    assert row["milvus_flat"]["recall@10"] >= 0.99  # exact search both sides; ties may order differently
    assert 0 < row["milvus_hnsw"]["recall@10"] <= 1.0
    assert row["milvus_flat"]["p50_ms"] > 0 and row["milvus_flat"]["lexical"]["p50_ms"] > 0
    assert "milvus flat" in format_table(r)


def test_a_child_reports_its_own_peak_memory_not_its_parents() -> None:
    ballast = bytearray(400 * 1024 * 1024)  # this process holds 400 MB when it starts the child
    ballast[::4096] = b"\1" * len(ballast[::4096])
    code = "from assistant.bench_child import _peak_rss_mb; print(_peak_rss_mb())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    del ballast
    assert 5 < float(out) < 200  # ru_maxrss would say over 400 here
