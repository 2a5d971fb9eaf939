"""The extractive answer: sentence choice, citations, refusal and the sources list."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from assistant.compose import (
    CROSS_LANGUAGE_NOTE,
    REFUSAL,
    candidate_sentences,
    check_citations,
    citation_markers,
    compose_extractive as _compose_extractive,
    format_sources,
    refusal_features,
    should_refuse,
)
from assistant.terms import content_words
from assistant.types import Answer, Citation, Hit
from fakes import BagEmbedder, make_hits

ROOT = Path(__file__).parents[1]
SEED = ROOT / "corpus" / "en-innovasjonskraft-a-regne-med.txt"
SHARED = ROOT.parent / "shared"


def seed_paragraphs() -> list[str]:
    text = SEED.read_text(encoding="utf-8")
    return [p.strip() for p in text.split("\n\n") if len(p.strip()) > 150]


# The bag-of-words fake gives cosines of about 0.5 for related and 0.25 for unrelated text;
# the default threshold is calibrated for multilingual-e5-small.
FAKE_REFUSE_BELOW = 0.35


def compose_extractive(*args, **kwargs) -> Answer:  # type: ignore[no-untyped-def]
    kwargs.setdefault("refuse_below", FAKE_REFUSE_BELOW)
    kwargs.setdefault("refuse_below_cross", kwargs["refuse_below"])
    return _compose_extractive(*args, **kwargs)


SOSIAL = ("Her har samarbeidet mellom kommuner, KS, NAV og leverandørmarkedet vært sentralt for at "
          "søknadsprosessen har blitt raskere, mer effektiv og tilgjengelig for innbyggere.")


def ranked_for(question: str, paragraphs: list[str], k: int = 5) -> list[Hit]:
    """A tiny retrieval: paragraphs ranked by shared content words with the question."""
    q = set(content_words(question))
    order = sorted(paragraphs, key=lambda p: -len(q & set(content_words(p))))
    return make_hits(order[:k])


def test_answers_the_sosialhjelp_question_with_the_cooperation_sentence_cited() -> None:
    question = "Hvordan kom den nye løsningen for søknad om sosialhjelp i stand, og hvem samarbeidet?"
    hits = ranked_for(question, seed_paragraphs())
    embedder = BagEmbedder()
    answer = compose_extractive(question, hits, embedder, lang="nb")
    assert not answer.refused
    assert SOSIAL in answer.text
    assert re.search(re.escape(SOSIAL) + r" \[\d\]", answer.text)
    assert check_citations(answer)
    assert embedder.calls == 1  # the question and every candidate in one call
    assert answer.hits == tuple(hits)
    assert set(answer.timings) >= {"embed", "compose"}


def test_each_sentence_is_cited_and_numbers_are_the_distinct_passages_in_order() -> None:
    question = "Hva sier KS om samarbeid mellom kommuner, stat, innbyggere og næringsliv om digitalisering?"
    hits = ranked_for(question, seed_paragraphs())
    answer = compose_extractive(question, hits, BagEmbedder(), lang="nb", max_sentences=4)
    body = answer.text
    markers = citation_markers(body)
    assert markers, body
    # numbered 1..n by first appearance, and every number has exactly one citation
    firsts = list(dict.fromkeys(markers))
    assert firsts == list(range(1, len(firsts) + 1))
    assert sorted(c.number for c in answer.citations) == firsts
    # one marker per quoted sentence, and every quote is exact
    assert len(markers) == sum(len(c.quotes) for c in answer.citations) <= 4
    for c in answer.citations:
        for q in c.quotes:
            assert q in c.hit.text
            assert f"{q} [{c.number}]" in body


def test_sentences_follow_hit_rank_then_position() -> None:
    hits = make_hits([
        "Barnehagen åpner klokken sju. Søknad om barnehageplass sendes innen første mars hvert år.",
        "Fristen for å søke barnehageplass er første mars. Kommunen svarer på søknaden om barnehageplass i april.",
    ])
    answer = compose_extractive("Når er fristen for søknad om barnehageplass?", hits, BagEmbedder(), lang="nb",
                                relative_floor=1.0)
    positions = [(c.number, c.hit.text.index(q)) for c in answer.citations for q in c.quotes]
    order = [answer.text.index(q) for c in answer.citations for q in c.quotes]
    assert [p for _, p in sorted(zip(order, positions))] == sorted(positions)


def test_duplicate_sentences_from_overlapping_chunks_are_quoted_once() -> None:
    shared = "Klagefristen er tre uker fra du mottar vedtaket om økonomisk sosialhjelp."
    hits = make_hits([f"Du kan klage på vedtaket. {shared}", f"{shared} Klagen sendes til NAV-kontoret."])
    answer = compose_extractive("Hva er klagefristen for vedtak om sosialhjelp?", hits, BagEmbedder(), lang="nb")
    assert answer.text.count(shared) == 1
    assert check_citations(answer)


def test_english_question_over_norwegian_sources_says_so_first() -> None:
    question = "What does KS say about the sosialhjelp application and NAV cooperation?"
    hits = ranked_for(question, seed_paragraphs())
    answer = compose_extractive(question, hits, BagEmbedder(), lang="en", refuse_below=0.05)
    assert not answer.refused
    assert answer.text.startswith(CROSS_LANGUAGE_NOTE["en"] + "\n\n")
    assert check_citations(answer)
    no_note = compose_extractive(question, hits, BagEmbedder(), lang="nb", refuse_below=0.05)
    assert not no_note.text.startswith(CROSS_LANGUAGE_NOTE["en"])


@pytest.mark.parametrize("lang", ["nb", "nn", "en"])
def test_refuses_when_nothing_supports_an_answer_and_keeps_the_hits(lang: str) -> None:
    hits = ranked_for("x", seed_paragraphs())
    question = {"nb": "Hvem eier elefantene i dyrehagen på Mars?",
                "nn": "Kven eig elefantane i dyrehagen på Mars?",
                "en": "Who owns the elephants in the Martian zoo?"}[lang]
    answer = compose_extractive(question, hits, BagEmbedder(), lang=lang)
    assert answer.refused
    assert answer.text == REFUSAL[lang]
    assert answer.citations == () and citation_markers(answer.text) == []
    assert answer.hits == tuple(hits)
    assert check_citations(answer)
    assert "Kan v" in format_sources(answer) or "May be related" in format_sources(answer)


def test_no_hits_is_a_refusal() -> None:
    answer = compose_extractive("Hva er klagefristen?", [], BagEmbedder(), lang="nb")
    assert answer.refused and answer.hits == () and check_citations(answer)


def test_refusal_features_expose_the_signals_and_the_threshold_decides() -> None:
    hits = ranked_for("sosialhjelp", seed_paragraphs())
    emb = BagEmbedder()
    good = refusal_features("Hvem samarbeidet om søknad om sosialhjelp?", hits, emb, lang="nb")
    bad = refusal_features("Hvem eier elefantene i dyrehagen på Mars?", hits, emb, lang="nb")
    assert set(good) >= {"best_dense", "best_lexical", "coverage", "top_score", "top_dense",
                         "cross_language", "quantity_unmet"}
    assert good["best_dense"] > bad["best_dense"]
    assert good["coverage"] > bad["coverage"]
    assert good["cross_language"] == 0.0
    assert not should_refuse(good, refuse_below=good["best_dense"] - 0.01)
    assert should_refuse(good, refuse_below=good["best_dense"] + 0.1)
    # an English question over these Norwegian passages is judged by the cross-language threshold
    cross = refusal_features("Who cooperated on the sosialhjelp application?", hits, emb, lang="en")
    assert cross["cross_language"] == 1.0
    assert should_refuse(cross, refuse_below=0.0, refuse_below_cross=1.0)
    assert not should_refuse(cross, refuse_below=1.0, refuse_below_cross=0.0)


def test_a_quantity_question_without_a_number_in_the_passages_is_refused() -> None:
    hits = make_hits([
        "Et eksempel på godt samarbeid er den nye løsningen for søknad om sosialhjelp, som mange kommuner "
        "er i ferd med å ta i bruk.",
        "Produktrådet til Designsystemet har 13 virksomheter. Rådet møtes fire ganger i året.",
    ])
    emb = BagEmbedder()
    unmet = refusal_features("Hvor mange kommuner har tatt i bruk søknaden om sosialhjelp?", hits, emb, lang="nb")
    met = refusal_features("Hvor mange virksomheter sitter i produktrådet til Designsystemet?", hits, emb, lang="nb")
    year = refusal_features("Hvor mange kommuner bruker søknaden om sosialhjelp i 2024?", hits, emb, lang="nb")
    assert (unmet["quantity_unmet"], met["quantity_unmet"], year["quantity_unmet"]) == (1.0, 0.0, 1.0)
    assert should_refuse(unmet, refuse_below=-1) and not should_refuse(unmet, refuse_below=-1, check_answer_type=False)
    answer = compose_extractive("Hvor mange virksomheter sitter i produktrådet til Designsystemet?", hits, emb,
                                lang="nb")
    assert not answer.refused and "13 virksomheter" in answer.text


def test_candidates_skip_headings_strip_bullets_and_are_exact_substrings() -> None:
    text = ("# Søknad om sosialhjelp\n\n- Du kan søke digitalt på nav.no hele døgnet.\n"
            "- Du må legge ved kontoutskrift for siste måned.\n\nKort.\n\n"
            "Søknaden behandles av NAV-kontoret i kommunen din, bl.a. i Oslo.")
    cands = candidate_sentences(make_hits([text]), max_chars=40)
    texts = [c.text for c in cands]
    assert "Søknad om sosialhjelp" not in texts and "Kort." not in texts
    assert "Du kan søke digitalt på nav.no hele døgnet." in texts
    assert all(text[c.start:c.end] == c.text for c in cands)
    assert not any(t.startswith(("-", "#")) for t in texts)


def test_check_citations_catches_every_kind_of_broken_citation() -> None:
    hits = make_hits(["Klagefristen er tre uker.", "Søknaden sendes til NAV."])
    good = Answer("q", "Klagefristen er tre uker. [1]", (Citation(1, hits[0], ("Klagefristen er tre uker.",)),),
                  tuple(hits), "nb")
    assert check_citations(good)
    dangling = Answer("q", good.text + " Mer. [2]", good.citations, good.hits, "nb")
    assert not check_citations(dangling)
    invented = Answer("q", good.text, (Citation(1, hits[0], ("Klagefristen er fire uker.",)),), good.hits, "nb")
    assert not check_citations(invented)
    unseen = Answer("q", good.text, (Citation(1, make_hits(["Annet."], doc_id="x")[0], ()),), good.hits, "nb")
    assert not check_citations(unseen)
    refused_with_marker = Answer("q", "Jeg fant ikke noe [1]", (), good.hits, "nb", refused=True)
    assert not check_citations(refused_with_marker)


def test_format_sources_lists_title_heading_page_and_quote() -> None:
    hits = make_hits(["Klagefristen er tre uker fra du mottar vedtaket. Klagen er gratis."], page=4,
                     headings=("Klage", "Frister"), title="Klage på vedtak", doc_id="nav/klage.pdf")
    answer = compose_extractive("Hva er klagefristen når du mottar vedtaket?", hits, BagEmbedder(), lang="nb")
    sources = format_sources(answer)
    assert sources.startswith("Kilder:")
    assert "[1] Klage på vedtak — Klage › Frister — s. 4 (nav/klage.pdf)" in sources
    assert "«Klagefristen er tre uker fra du mottar vedtaket.»" in sources


def test_compose_is_fast_apart_from_the_embed_call() -> None:
    question = "Hvordan samarbeider kommuner, KS og NAV om digitale tjenester for innbyggere?"
    hits = ranked_for(question, seed_paragraphs())
    answer = compose_extractive(question, hits, BagEmbedder(), lang="nb")
    runs = [compose_extractive(question, hits, BagEmbedder(), lang="nb").timings["compose"] for _ in range(5)]
    assert answer.timings["compose"] >= 0
    assert min(runs) < 0.1  # target: under 100 ms for five hits, the embed call excluded


@pytest.mark.skipif(not (SHARED / "eval" / "questions.jsonl").exists(), reason="../shared is missing")
def test_every_dev_question_gets_checked_citations_over_its_own_document() -> None:
    """Hits: the gold document's paragraphs, ranked by word overlap. Citations must always check out."""
    rows = [json.loads(line) for line in (SHARED / "eval" / "questions.jsonl").read_text().splitlines() if line]
    answered = 0
    for row in rows:
        if not row["doc"]:
            continue
        text = (SHARED / "corpus" / row["doc"]).read_text(encoding="utf-8", errors="replace")
        paragraphs = [p for p in re.split(r"\n\s*\n", text) if len(p.strip()) > 40]
        hits = ranked_for(row["question"], paragraphs)
        answer = compose_extractive(row["question"], hits, BagEmbedder(), lang=row["lang"], refuse_below=-1.0,
                                    refuse_below_cross=-1.0, lexical_below=-1.0,
                                    check_answer_type=False)
        assert check_citations(answer), row["id"]
        assert not answer.refused and answer.citations, row["id"]
        answered += 1
    assert answered >= 30


def test_sentences_with_bracketed_numbers_are_never_quoted() -> None:
    """A document's own "[3]" (a footnote) inside a quote would read as a citation to nothing."""
    from assistant.compose import candidate_sentences
    from assistant.types import Hit

    text = ("Norge skal være verdens mest digitaliserte land innen 2030 [3]. "
            "Kommunene samarbeider om digitale løsninger for innbyggerne.")
    hit = Hit(chunk_id=1, doc_id="d", title="t", text=text, start=0, end=len(text), headings=(), page=None,
              score=1.0, rank=1)
    sentences = [c.text for c in candidate_sentences([hit])]
    assert sentences == ["Kommunene samarbeider om digitale løsninger for innbyggerne."]


def test_answer_type_rules_refuse_a_missing_amount_name_or_place() -> None:
    hits = make_hits([
        "Analysen er utført av Agenda Kaupang på oppdrag fra Digdir høsten 2025.",
        "Saksbehandlingstiden for sosialhjelp varierer fra kommune til kommune.",
        "Enhetsverdien er verdien av fritid, som tilsvarer 341 kr per time.",
        "Over 300 virksomheter er med i fellesskapet rundt Designsystemet.",
    ])
    emb = BagEmbedder()
    f = lambda q, lang="nb": refusal_features(q, hits, emb, lang=lang)  # noqa: E731
    assert f("Hvor mye betalte Digdir Agenda Kaupang for analysen?")["money_unmet"] == 1.0
    assert f("Hvor mye er verdien av fritid per time?")["money_unmet"] == 0.0
    assert f("Hvor mange priser deles ut?")["money_unmet"] == 0.0  # a count, not money
    assert f("Hvem utførte analysen for Digdir?")["person_unmet"] == 0.0
    assert f("Hvem leder saksbehandlingen av sosialhjelp?")["person_unmet"] == 1.0
    assert f("Hva er saksbehandlingstiden for sosialhjelp i Oslo kommune?")["name_missing"] == 1.0
    assert f("Hva er saksbehandlingstiden for sosialhjelp?")["name_missing"] == 0.0
    assert f("What did the Contact and Reservation Register say?", "en")["name_missing"] == 0.0
    oslo = f("Hva er saksbehandlingstiden for sosialhjelp i Oslo kommune?")
    assert should_refuse(oslo, refuse_below=-1) and not should_refuse(oslo, refuse_below=-1, check_answer_type=False)


def test_names_with_another_norwegian_form_count_as_mentioned() -> None:
    from assistant.names import mentions, question_names

    assert question_names("What is the scope of the white paper for municipalities in Norway?") == ["Norway"]
    assert mentions("Skopet er kommunal sektor i Norge.", "Norway")
    assert mentions("Bruk av KI-verktøy oppfordres.", "AI")
    assert mentions("Bergens kommune", "Bergen") and not mentions("Kommunene i Trøndelag", "Bergen")
    # one letter typed wrong, left out or added, in a name of four letters or more
    assert mentions("Nortraship var en organisasjon.", "Nortaship") and mentions("Bodø er en by.", "Bådø")
    assert not mentions("Moss kommune", "Mosjøen") and not mentions("Olso", "Oslo") and not mentions("Ål", "Ås")


def test_a_compound_on_a_name_is_about_the_name() -> None:
    from assistant.names import question_names

    assert question_names("Er det KI-modellen som fatter vedtakene i KS sin KI-sandkasse?") == ["KI", "KS"]
    assert question_names("Hva er telefonnummeret til NAV-kontoret i Bergen?") == ["NAV", "Bergen"]
    assert question_names("Hvordan er været i Nord-Norge?") == ["Nord-Norge"]  # a name of two names stays whole


def test_a_role_question_needs_that_role_and_a_name_in_one_sentence() -> None:
    from assistant.names import asks_for_role

    assert asks_for_role("Hvem er administrerende direktør i KS?")
    assert asks_for_role("Who is the current chief executive of KS?")
    assert asks_for_role("Hvem er lederen av KS?") and asks_for_role("Hvem leder produktrådet?")
    # a verb, not a role: who is leading, who should lead, who runs a component
    assert not asks_for_role("Who is leading the open collaboration on templates?")
    assert not asks_for_role("Hvem bør lede et Kompetansesenter sky?")
    assert not asks_for_role("Who runs the Service Metadata Locator?")
    assert not asks_for_role("Hvem vant Hackathonprisen?")
    hits = make_hits([
        "Av Bjørn Arild Gram, styreleder i KS.",
        "Kai Spurkland, direktør Norges institusjon for menneskerettigheter, holdt innlegget.",
        "The Norwegian Directorate for Education and Training and KS Digital are in the team.",
    ])
    f = lambda q: refusal_features(q, hits, BagEmbedder(), lang="nb")["role_unmet"]  # noqa: E731
    assert f("Who is the chair of the board of KS?") == 0.0  # "styreleder" and a name, beside "KS"
    assert f("Hvem er direktør for Norges institusjon for menneskerettigheter?") == 0.0
    assert f("Hvem er administrerende direktør i KS?") == 1.0  # the director named is another body's
    assert f("Who is the managing director of KS Digital?") == 1.0  # "Directorate" is not "director"
    assert f("Hvem er ordfører i Oslo?") == 1.0
    assert f("Hvem er med i teamet?") == 0.0  # asks for no role


def test_a_when_question_needs_a_point_in_time_near_its_words() -> None:
    from assistant.terms import asks_for_date, dates

    assert asks_for_date("Når kommer versjon 2 av Designsystemet?")
    assert asks_for_date("On what date will the interface be switched off?")
    assert not asks_for_date("Hvor lenge varer en økt i ID-porten?")  # a duration: the quantity rule
    assert not asks_for_date("Hvem utførte analysen, og når?")  # two questions: the other may be answered
    assert dates("lansert i mars 2025, fredag formiddag, 12.03.2025, høsten") == {
        "mars", "2025", "fredag", "formiddag", "12.03.2025", "høsten"}
    assert dates("Ferja går hver time fra klokka seks, første kl 07:15.") == {"time", "klokka", "kl", "07:15"}
    assert dates("Du får svar innen tre uker.") == {"uker"}  # a when answered by how long until
    assert dates("versjon 2 har 300 komponenter, og vår tjeneste may change") == set()
    # a year before 1900 after a word that places it in time, a century, a decade; not an amount
    assert dates("Slo igjennom omkring 1830, fram til 1704, på 1400-tallet og 1990-tallet") == {
        "1830", "1704", "1400-tallet", "1990-tallet"}
    assert dates("Det koster 1500 kroner, og porten er 1443.") == set()
    hits = make_hits([
        "Første versjon av Designsystemet ble lansert i mars 2025.",
        "Versjon 2 av Designsystemet får nye komponenter.",
    ])
    f = lambda q, h=hits: refusal_features(q, h, BagEmbedder(), lang="nb")  # noqa: E731
    assert f("Når ble første versjon av Designsystemet lansert?")["date_unmet"] == 0.0
    undated = make_hits(["Versjon 2 av Designsystemet får 300 nye komponenter.",
                         "Designsystemet brukes av over 100 virksomheter."])
    unmet = f("Når kommer versjon 2 av Designsystemet?", undated)
    assert unmet["date_unmet"] == 1.0 and unmet["quantity_unmet"] == 0.0  # "300" is a number, not a date
    assert f("Hva er nytt i versjon 2 av Designsystemet?", undated)["date_unmet"] == 0.0  # asks no date
