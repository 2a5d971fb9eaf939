"""`Assistant.ask`: retrieval with chat context, extractive answers, the optional generator and its fallback."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import pytest

from assistant import Assistant, Settings
from assistant.answering import answer_json, format_answer
from assistant.compose import check_citations
from assistant.types import Hit
from fakes import FakeEmbedder


def _bot(tmp_path: Path, store: str, generator: object = None) -> Assistant:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "sosialhjelp.md").write_text(
        "# Digital søknad om sosialhjelp\n\nDen digitale søknaden om sosialhjelp ble utviklet i samarbeid "
        "mellom kommuner, KS og NAV. Leverandørene var også med.\n\nSøknaden kan sendes hele døgnet.",
        encoding="utf-8")
    (corpus / "skole.md").write_text("# Skolebygg\n\nKommunen bygger en ny skole på Lia. Den står ferdig i 2027.",
                                     encoding="utf-8")
    # The fake embedder's cosines are not the real model's: refuse only when nothing matches at all.
    settings = Settings.load(env={}, index_dir=tmp_path / "index", corpus_dirs=[corpus], refuse_below=0.05,
                             refuse_below_cross=0.05, store=store)
    bot = Assistant.open(settings=settings, embedder=FakeEmbedder(), generator=generator)  # type: ignore[arg-type]
    bot.index()
    return bot


class _Scripted:
    """A generator that streams a fixed reply (or raises)."""

    def __init__(self, reply: str | Exception) -> None:
        self.reply = reply

    def generate(self, question: str, hits: Sequence[Hit], *, lang: str, history=(),  # type: ignore[no-untyped-def]
                 timeout: float = 60.0) -> Iterator[str]:
        if isinstance(self.reply, Exception):
            raise self.reply
        yield from self.reply.split(" ")[:1]
        yield " " + " ".join(self.reply.split(" ")[1:])


def test_extractive_answer_cites_the_passage(tmp_path: Path, store_uri: str) -> None:
    answer = _bot(tmp_path, store_uri).ask("Hvem utviklet den digitale søknaden om sosialhjelp?")
    assert not answer.refused and answer.backend == "extractive"
    assert "[1]" in answer.text and check_citations(answer)
    assert answer.citations[0].hit.doc_id == "sosialhjelp.md"
    assert set(answer.timings) >= {"retrieve", "total"}
    data = answer_json(answer)
    assert data["citations"][0]["doc_id"] == "sosialhjelp.md" and data["refused"] is False
    assert "sosialhjelp.md" in format_answer(answer)


def test_follow_up_uses_the_previous_question(tmp_path: Path, store_uri: str) -> None:
    bot = _bot(tmp_path, store_uri)
    first = "Hvordan ble søknaden om sosialhjelp utviklet?"
    answer = bot.ask("Hvem var med på det?", history=[(first, "…")])
    assert answer.hits[0].doc_id == "sosialhjelp.md"
    assert answer.question == "Hvem var med på det?"


def test_generated_answer_is_used_when_it_cites(tmp_path: Path, store_uri: str) -> None:
    streamed: list[str] = []
    bot = _bot(tmp_path, store_uri, _Scripted("Kommuner, KS og NAV laget den [1]. Se også [9]."))
    answer = bot.ask("Hvem utviklet den digitale søknaden om sosialhjelp?", on_text=streamed.append)
    assert answer.backend == "generated"
    assert "[9]" not in answer.text and "[1]" in answer.text
    assert "".join(streamed).startswith("Kommuner")
    assert check_citations(answer)


@pytest.mark.parametrize("reply", [RuntimeError("server down"), "Et svar uten kilder.", "   "])
def test_generator_failure_falls_back_to_extractive(tmp_path: Path, store_uri: str, reply: object) -> None:
    bot = _bot(tmp_path, store_uri, _Scripted(reply))  # type: ignore[arg-type]
    answer = bot.ask("Hvem utviklet den digitale søknaden om sosialhjelp?")
    assert answer.backend == "extractive" and "[1]" in answer.text and check_citations(answer)


def test_unrelated_question_is_refused_with_related_hits(tmp_path: Path, store_uri: str) -> None:
    answer = _bot(tmp_path, store_uri).ask("Hvor mange elgjegere trengs i Finnmark?")
    assert answer.refused and answer.backend == "refusal" and not answer.citations
    assert answer.text == "Jeg fant ikke noe om dette i dokumentene."
    assert check_citations(answer)


def test_settings_choose_the_openai_compatible_backend(tmp_path: Path) -> None:
    from assistant.generate import OpenAICompatibleGenerator

    settings = Settings.load(env={}, index_dir=tmp_path / "i", llm_url="http://127.0.0.1:9/v1")
    bot = Assistant(settings, FakeEmbedder())
    assert isinstance(bot.generator(), OpenAICompatibleGenerator)
    assert Assistant(Settings.load(env={}, index_dir=tmp_path / "i"), FakeEmbedder()).generator() is None
