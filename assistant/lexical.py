"""The lexical half of retrieval: Norwegian-stemmed BM25 in SQLite FTS5.

Text is analysed here (lower-cased, split into words, stop words dropped,
Snowball-stemmed for Norwegian) and the stems are stored in an FTS5 table
whose rowid is the chunk id. FTS5 ranks with BM25, updates incrementally in
the same transaction as the chunks, and never needs a rebuild per query.
"""

from __future__ import annotations

import re
import sqlite3
from functools import lru_cache
from typing import Iterable, Sequence

_WORD = re.compile(r"[0-9A-Za-zÀ-ÖØ-öø-ÿ]+(?:[-'][0-9A-Za-zÀ-ÖØ-öø-ÿ]+)*")

_STOP_NO = """alle andre at av bare ble blei bli blir da de dei deim deira deires dem den denne der dere deres
det dette di din disse ditt du dykk dykkar då eg ein eit eitt eller elles en enn er et ett etter for fordi
fra frå før ha hadde han hans har hennar henne hennes her hjå ho hoe honom hoss hossen hun hva hvem hver
hvilke hvilken hvis hvor hvordan hvorfor i ikke ikkje ingen ingi inkje inn inni ja jeg kan kom korleis
korso kun kunne kva kvar kvarhelst kven kvi kvifor man mange me med medan meg meget mellom men mi min
mine mitt mot mykje ned no noe noen noka noko nokon nokor nokre nå når og også om opp oss over på samme
seg selv si sia sidan siden sin sine sitt sjøl skal skulle slik so som somme somt så sånn til um upp ut
uten var vart varte ved vere verte vi vil ville vore vors vort vår være vært å""".split()
_STOP_EN = """a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just me more most my
myself no nor not now of off on once only or other our ours ourselves out over own same she should so some
such than that the their theirs them themselves then there these they this those through to too under
until up very was we were what when where which while who whom why will with would you your yours
yourself yourselves""".split()
STOP_WORDS = frozenset(_STOP_NO) | frozenset(_STOP_EN)


@lru_cache(maxsize=1)
def _stemmer():  # type: ignore[no-untyped-def]
    import Stemmer  # PyStemmer: Snowball's C stemmers

    return Stemmer.Stemmer("norwegian")


def analyse(text: str) -> list[str]:
    """Lower-cased, stop-word-free Norwegian stems of the words in `text`."""
    words = [w for w in _WORD.findall(text.lower()) if w not in STOP_WORDS and len(w) > 1]
    return _stemmer().stemWords(words) if words else []


def create_schema(db: sqlite3.Connection) -> None:
    db.execute(
        "CREATE VIRTUAL TABLE IF NOT EXISTS lexical USING fts5("
        "terms, tokenize = 'unicode61 remove_diacritics 0')"
    )


def add(db: sqlite3.Connection, rows: Iterable[tuple[int, str]]) -> None:
    """Index `(chunk_id, text)` pairs. Call inside the writer's transaction."""
    db.executemany(
        "INSERT INTO lexical(rowid, terms) VALUES (?, ?)",
        ((chunk_id, " ".join(analyse(text))) for chunk_id, text in rows),
    )


def remove(db: sqlite3.Connection, chunk_ids: Sequence[int]) -> None:
    db.executemany("DELETE FROM lexical WHERE rowid = ?", ((i,) for i in chunk_ids))


def match_expression(question: str, max_terms: int = 32) -> str | None:
    """An FTS5 query OR-ing the question's distinct stems, or None when it has none."""
    terms: list[str] = []
    for term in analyse(question):
        if term not in terms:
            terms.append(term)
    if not terms:
        return None
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms[:max_terms])


def search(db: sqlite3.Connection, question: str, k: int) -> list[tuple[int, float]]:
    """Up to `k` `(chunk_id, score)` pairs, best first; score is BM25 (higher is better)."""
    expression = match_expression(question)
    if expression is None:
        return []
    rows = db.execute(
        "SELECT rowid, -bm25(lexical) AS s FROM lexical WHERE lexical MATCH ? ORDER BY bm25(lexical) LIMIT ?",
        (expression, k),
    ).fetchall()
    return [(int(r[0]), float(r[1])) for r in rows]
