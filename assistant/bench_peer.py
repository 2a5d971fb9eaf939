"""The peer in `assistant bench`: LlamaIndex's default pipeline on the same corpus and model.

`SimpleDirectoryReader` → `VectorStoreIndex` (its default `SentenceSplitter`,
in-memory vector store) with the same embedding model: the converted
multilingual-e5-small folder through `llama-index-embeddings-huggingface`,
with e5's `query: `/`passage: ` prompts and the same batch size. LlamaIndex is
a bench-only dependency:

    pip install llama-index-core llama-index-embeddings-huggingface

Compared in the same run: indexing time, re-indexing after one change
(`refresh_ref_docs`, its own incremental path), query latency (embedding
included on both sides), and passage@5 on the dev questions.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .bench import latency_summary, median

if TYPE_CHECKING:
    from .bench import Bench

log = logging.getLogger(__name__)


def _embedding(bench: "Bench") -> Any:
    """LlamaIndex's embedding for the bench's model: HuggingFaceEmbedding on the same folder, or an adapter."""
    from llama_index.core.embeddings import BaseEmbedding

    s = bench.settings
    embedder = bench.embedder
    source = getattr(embedder, "_source", None)
    if source is not None:
        from llama_index.embeddings.huggingface import HuggingFaceEmbedding

        folder = source() if callable(source) else source
        return HuggingFaceEmbedding(model_name=str(folder), device=s.device, query_instruction=s.query_prompt,
                                    text_instruction=s.passage_prompt, embed_batch_size=s.batch_size,
                                    normalize=True, show_progress_bar=False)

    class Adapter(BaseEmbedding):  # for other embedders (the tests' fake one)
        def _get_query_embedding(self, query: str) -> list[float]:
            return embedder.embed([s.query_prompt + query])[0].tolist()

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return embedder.embed([s.passage_prompt + text])[0].tolist()

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return embedder.embed([s.passage_prompt + t for t in texts]).tolist()

    return Adapter(model_name=embedder.model_id, embed_batch_size=s.batch_size)


def _read(corpus: Path) -> list[Any]:
    from llama_index.core import SimpleDirectoryReader

    from .readers import SUPPORTED_SUFFIXES, is_licence_file

    files = sorted(p for p in corpus.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES
                   and not is_licence_file(p))
    return SimpleDirectoryReader(input_files=[str(p) for p in files], filename_as_id=True).load_data()


def _doc_id(node: Any, corpus: Path) -> str:
    path = node.metadata.get("file_path", "")
    try:
        return Path(path).resolve().relative_to(corpus.resolve()).as_posix()
    except ValueError:
        return str(path)


def passage_at_5(bench: "Bench", search: Any) -> dict[str, Any]:
    """Share of answerable dev questions with a top-5 hit from the gold document covering the quote."""
    from .evaluate import covers

    answerable = [q for q in bench.questions if q.doc]
    found = 0
    for q in answerable:
        if any(doc == q.doc and covers(q.quote, text) for doc, text in search(q.question)[:5]):
            found += 1
    return {"passage@5": round(found / len(answerable), 4) if answerable else None, "n": len(answerable)}


def compare(bench: "Bench", result: dict[str, Any]) -> dict[str, Any]:
    try:
        import llama_index.core  # noqa: F401
        import llama_index.embeddings.huggingface  # noqa: F401
    except ImportError as exc:
        return {"skipped": f"{exc.name} is not installed: pip install llama-index-core "
                           "llama-index-embeddings-huggingface"}
    from llama_index.core import Settings as LlamaSettings
    from llama_index.core import VectorStoreIndex

    from .core import Assistant

    corpus = bench.corpus
    embed_model = _embedding(bench)
    embed_model.get_text_embedding("oppvarming")  # load and warm up, outside the timings
    LlamaSettings.embed_model = embed_model
    questions = [q.question for q in bench.questions if q.doc] or ["Hva er sosialhjelp?"]
    repeat = bench.options.repeat

    peer_index, peer_build = None, []
    for _ in range(bench.builds):
        tick = time.perf_counter()
        peer_index = VectorStoreIndex.from_documents(_read(corpus))
        peer_build.append(time.perf_counter() - tick)
    bench.say(f"  llamaindex build: {median(peer_build):.1f} s")
    from .bench_corpus import INDEX_NAME, _build, _typical_document

    ours_index = bench.workdir / INDEX_NAME  # built by the indexing section in this run, when it ran
    ours_build = list((result.get("indexing") or {}).get("runs", {}).get("pipeline", []))
    if not ours_build:
        for _ in range(bench.builds):
            ours_build.append(_build(bench, ours_index)[0])

    target = _typical_document(corpus)
    original = target.read_bytes()
    peer_re, ours_re = [], []
    bot = Assistant.open(ours_index, settings=bench.settings, embedder=bench.embedder)
    try:
        for n in range(repeat):
            target.write_bytes(original + f"\n\nEndret i måling {n}.\n".encode())
            tick = time.perf_counter()
            peer_index.refresh_ref_docs(_read(corpus))  # type: ignore[union-attr]
            peer_re.append(time.perf_counter() - tick)
            tick = time.perf_counter()
            bot.index([corpus])
            ours_re.append(time.perf_counter() - tick)
        target.write_bytes(original)
        peer_index.refresh_ref_docs(_read(corpus))  # type: ignore[union-attr]
        bot.index([corpus])

        retriever = peer_index.as_retriever(similarity_top_k=5)  # type: ignore[union-attr]
        peer_q, ours_q = [], []
        retriever.retrieve(questions[0])
        bot.search(questions[0], k=5)
        for _ in range(repeat):
            for q in questions:
                tick = time.perf_counter()
                retriever.retrieve(q)
                peer_q.append(time.perf_counter() - tick)
                if hasattr(bot.query_embedder, "clear"):
                    bot.query_embedder.clear()  # no cached question vectors: the peer has none either
                tick = time.perf_counter()
                bot.search(q, k=5)
                ours_q.append(time.perf_counter() - tick)
        peer_quality = passage_at_5(bench, lambda q: [(_doc_id(n.node, corpus), n.node.get_content())
                                                      for n in retriever.retrieve(q)])
        ours_quality = passage_at_5(bench, lambda q: [(h.doc_id, h.text) for h in bot.search(q, k=5)])
        peer_nodes = len(peer_index.docstore.docs)  # type: ignore[union-attr]
        ours_chunks = bot.info().chunks
    finally:
        bot.close()
        target.write_bytes(original)

    def side(build: list[float], re: list[float], q: list[float], quality: dict[str, Any], units: int) -> dict[str, Any]:
        lat = latency_summary(q)
        return {"index_seconds": round(median(build), 3), "reindex_one_change_seconds": round(median(re), 4),
                "query_p50_ms": lat["p50_ms"], "query_p95_ms": lat["p95_ms"], "passage@5": quality["passage@5"],
                "questions": quality["n"], "chunks": units}

    ours = side(ours_build, ours_re, ours_q, ours_quality, ours_chunks)
    peer = side(peer_build, peer_re, peer_q, peer_quality, peer_nodes)
    ratios = {k: round(ours[k] / peer[k], 3) if ours[k] is not None and peer[k] else None
              for k in ("index_seconds", "reindex_one_change_seconds", "query_p50_ms", "query_p95_ms",
                        "passage@5")}
    return {"ours": ours, "llamaindex": peer, "ratios": ratios, "changed_document": target.name,
            "pipeline": "SimpleDirectoryReader + VectorStoreIndex (default SentenceSplitter, in-memory store)"}
