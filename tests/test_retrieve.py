"""Hybrid retrieval: fusion by language, diversity, baselines, hits that point into documents."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from assistant import Assistant, QuestionError, Settings
from assistant.retrieve import FusionWeights
from fakes import FakeEmbedder


@pytest.fixture()
def bot(tmp_path: Path, store_uri: str) -> Assistant:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    # One long document whose every paragraph mentions "vannverk", and two short ones.
    paragraphs = [f"Avsnitt {i}: vannverk og drikkevann i kommunen, del {i}. " * 6 for i in range(20)]
    (corpus / "lang.md").write_text("# Vann\n\n" + "\n\n".join(paragraphs), encoding="utf-8")
    (corpus / "kort.md").write_text("# Vannverk\n\nEt lite vannverk på landet.", encoding="utf-8")
    (corpus / "annet.md").write_text("# Skole\n\nSkolen har nye lokaler.", encoding="utf-8")
    settings = Settings.load(env={}, index_dir=tmp_path / "index", corpus_dirs=[corpus], chunk_chars=400,
                             store=store_uri)
    b = Assistant.open(settings=settings, embedder=FakeEmbedder())
    b.index()
    return b


def test_one_document_cannot_crowd_out_the_rest(bot: Assistant) -> None:
    hits = bot.search("vannverk drikkevann", k=5)
    per_doc = [h.doc_id for h in hits]
    assert per_doc.count("lang.md") <= bot.settings.max_per_doc
    assert "kort.md" in per_doc
    ordinals = sorted(h.start for h in hits if h.doc_id == "lang.md")
    assert len(ordinals) == len(set(ordinals))


def test_hits_are_exact_slices_of_their_documents(bot: Assistant) -> None:
    for mode in ("hybrid", "dense", "lexical"):
        for h in bot.search("vannverk", k=5, mode=mode):
            doc = bot.document(h.doc_id)
            assert doc is not None and doc.text[h.start:h.end] == h.text
            assert h.title


def test_lexical_weight_follows_the_question_language(bot: Assistant) -> None:
    r = bot.retriever()
    weights = FusionWeights()
    assert r.lexical_weight("Hvordan søker jeg om sosialhjelp i kommunen?") == weights.norwegian
    assert r.lexical_weight("How do I apply for social assistance in the municipality?") == weights.english
    assert weights.english < weights.norwegian


def test_a_norwegian_question_in_the_documents_words_trusts_them_more(bot: Assistant) -> None:
    r = bot.retriever()
    weights = FusionWeights()
    question = "Et lite vannverk på landet?"  # every stem is in kort.md
    lex = {h.chunk_id: h.score for h in bot.search(question, k=3, mode="lexical")}
    top = max(lex, key=lambda c: lex[c])
    assert r._matched_share(question, top) == 1.0
    assert r.lexical_weight(question, lex) == weights.norwegian_matched > weights.norwegian
    loose = "Et lite vannverk med nye skoler og barnehager i byen?"  # under 70 % of its stems match
    assert r.lexical_weight(loose, lex) == weights.norwegian
    assert r.lexical_weight("A small water works in the countryside?", lex) == weights.english


@pytest.mark.parametrize("question", ["", "   ", "x" * 50_000])
def test_empty_or_huge_questions_are_refused(bot: Assistant, question: str) -> None:
    with pytest.raises(QuestionError):
        bot.search(question)


@pytest.mark.parametrize("question", ["😀😀😀", "'; DROP TABLE chunks; --", "\x00\x07 kontroll", "Что такое NAV?",
                                      'NEAR("a" "b") OR *', "和平"])
def test_odd_questions_get_a_clean_result(bot: Assistant, question: str) -> None:
    hits = bot.search(question, k=3)
    assert len(hits) <= 3
    assert bot.info().documents == 3


def test_the_lexical_query_runs_beside_the_embedding_and_gives_the_same_hits(bot: Assistant,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from assistant import retrieve

    threads: list[str] = []
    real = retrieve.Retriever._lexical

    def spy(self: retrieve.Retriever, question: str, n: int) -> dict[int, float]:
        threads.append(threading.current_thread().name)
        return real(self, question, n)

    monkeypatch.setattr(retrieve.Retriever, "_lexical", spy)
    question = "Hvordan søker man om økonomisk sosialhjelp?"
    beside = bot.search(question, k=5)
    vector = bot.retriever().embed_query(question)
    inline = bot.retriever().search(question, k=5, query_vector=vector)  # a given vector: no thread
    assert len(threads) == 2 and threads[0].startswith("assistant-lexical")
    assert threads[1] == threading.current_thread().name
    assert [(h.chunk_id, round(h.score, 6)) for h in beside] == [(h.chunk_id, round(h.score, 6)) for h in inline]


def test_an_error_in_the_lexical_thread_reaches_the_caller(bot: Assistant, monkeypatch: pytest.MonkeyPatch) -> None:
    from assistant import retrieve

    def broken(self: retrieve.Retriever, question: str, n: int) -> dict[int, float]:
        raise RuntimeError("lexical index gone")

    monkeypatch.setattr(retrieve.Retriever, "_lexical", broken)
    with pytest.raises(RuntimeError, match="lexical index gone"):
        bot.search("Hvordan søker man om sosialhjelp?", k=3)


def test_a_passage_with_one_sentence_holding_the_question_moves_up(bot: Assistant) -> None:
    from types import SimpleNamespace

    spread = "Søknaden sendes digitalt. Mange kommuner har sosialhjelp. Det gjelder økonomisk støtte."
    together = "Kommunen har parkering. Søknad om økonomisk sosialhjelp sendes digitalt til kommunen."
    chunks = {1: SimpleNamespace(chunk=SimpleNamespace(text=spread)),
              2: SimpleNamespace(chunk=SimpleNamespace(text=together)),
              3: SimpleNamespace(chunk=SimpleNamespace(text="Skolen har nye lokaler."))}
    scored = [(1, 0.90), (2, 0.85), (3, 0.10)]
    r = bot.retriever()
    question = "Hvordan sendes søknad om økonomisk sosialhjelp?"
    boosted = r._sentence_boost(question, scored, chunks)  # type: ignore[arg-type]
    assert [c for c, _ in boosted] == [2, 1, 3] and all(b >= s for (_, s), (_, b) in zip(
        sorted(scored), sorted(boosted)))
    english = "How is the application for financial social assistance sent?"
    assert r._sentence_boost(english, scored, chunks) == scored  # type: ignore[arg-type]  # English: no boost
