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
