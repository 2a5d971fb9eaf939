"""The Norwegian BM25 index in SQLite FTS5."""

from __future__ import annotations

import sqlite3

from assistant import lexical


def test_analyse_stems_norwegian_and_drops_stop_words() -> None:
    assert lexical.analyse("Kommunene og søknaden om sosialhjelp") == ["kommun", "søknad", "sosialhjelp"]
    assert lexical.analyse("og i på det") == []


def test_search_ranks_matching_chunks_and_handles_odd_questions() -> None:
    db = sqlite3.connect(":memory:")
    lexical.create_schema(db)
    lexical.add(db, [(1, "Søknad om sosialhjelp er digital"), (2, "Barnehager i kommunen"),
                     (3, "Kommunene samarbeider om sosialhjelpen")])
    ids = [i for i, _ in lexical.search(db, "Hvordan søker man sosialhjelp?", 10)]
    assert ids[0] in (1, 3) and set(ids) == {1, 3}
    assert lexical.search(db, "og i på", 10) == []
    # FTS5 syntax in a question is data, not a query
    assert lexical.search(db, 'sosialhjelp" OR NOT * NEAR(', 10)
    assert lexical.search(db, "DROP TABLE lexical; --", 10) == []
    lexical.remove(db, [1, 3])
    assert lexical.search(db, "sosialhjelp", 10) == []


def test_a_hyphenated_compound_is_asked_for_whole_and_by_its_parts() -> None:
    assert lexical.query_terms("Hvordan tester vi i KI-sandkassen?") == ["test", "ki-sandkass", "sandkass"]
    db = sqlite3.connect(":memory:")
    lexical.create_schema(db)
    lexical.add(db, [(1, "Tjenestene i sandkassen logger hvert kall."), (2, "Innlogging skjer med ID-porten."),
                     (3, "Porten til kommunen er åpen.")])
    # the documents write "sandkassen" without the prefix
    assert [i for i, _ in lexical.search(db, "Logger KI-sandkassen kallene?", 10)][0] == 1
    # the whole compound, a phrase, still ranks its own chunk first
    assert [i for i, _ in lexical.search(db, "Hvordan virker ID-porten?", 10)][0] == 2


def test_common_stems_are_left_out_of_queries() -> None:
    db = sqlite3.connect(":memory:")
    lexical.create_schema(db)
    rows = [(i, f"Kommunen har veier og skoler, nummer {i}.") for i in range(1, 101)]
    rows[6] = (7, "Kommunen bygger et nytt vannverk og renseanlegg.")
    rows[41] = (42, "Kommunen har et gammelt vannverk.")
    lexical.add(db, rows)
    question = "Hvilken kommune bygger vannverk og renseanlegg?"
    everything = {i for i, _ in lexical.search(db, question, 200)}
    assert len(everything) == 100  # every chunk says "kommune": all match the OR query
    df = lexical.DocFreq()
    cut = [i for i, _ in lexical.search(db, question, 200, doc_freq=df, total=100)]
    assert cut[0] == 7 and set(cut) == {7, 42}  # "kommun" (in all 100) was left out
    assert df.counts(db, ["kommun", "vannverk"], 100) == {"kommun": 100, "vannverk": 2}


def test_a_tiny_corpus_keeps_every_stem() -> None:
    # "kommun" is in every chunk, but in fewer than COMMON_MIN: still evidence
    df = {"kommun": 10, "vannverk": 2, "bygg": 3}
    assert lexical.common_terms(["kommun", "vannverk", "bygg"], df, 10) == set()
    assert lexical.common_terms(["kommun", "vannverk", "bygg"], {**df, "kommun": 30}, 30) == {"kommun"}


def test_the_two_rarest_stems_always_stay() -> None:
    df = {"kommun": 90, "vei": 60, "skol": 70, "bygg": 80}
    assert lexical.common_terms(["kommun", "vei", "skol", "bygg"], df, 100) == {"kommun", "bygg"}
    assert lexical.common_terms(["kommun", "sjeld"], {"kommun": 90, "sjeld": 1}, 100) == set()


def test_the_postings_budget_drops_the_commonest_stems_first() -> None:
    df = {"a": 10, "b": 20, "c": 30, "d": 40}
    total = 10_000  # none is common by share
    assert lexical.common_terms(list(df), df, total, budget=100) == set()
    assert lexical.common_terms(list(df), df, total, budget=60) == {"d"}
    assert lexical.common_terms(list(df), df, total, budget=35) == {"c", "d"}
    assert lexical.common_terms(list(df), df, total, budget=1) == {"c", "d"}  # the two rarest stay
