"""The lexical half of retrieval: Norwegian-stemmed BM25 in SQLite FTS5.

Text is analysed here (lower-cased, split into words, stop words dropped,
Snowball-stemmed for Norwegian) and the stems are stored in an FTS5 table
whose rowid is the chunk id. FTS5 ranks with BM25, updates incrementally in
the same transaction as the chunks, and never needs a rebuild per query.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from functools import lru_cache
from typing import TYPE_CHECKING, Iterable, Sequence

if TYPE_CHECKING:
    from .lexical_segment import Segment
    from .types import Chunk

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


def chunk_text(title: str, chunk: "Chunk") -> str:
    """What the lexical index holds for a chunk: its document title, heading path and text."""
    return " ".join([title, *chunk.headings, chunk.text])


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


# A stem found in more than COMMON_SHARE of the chunks (and in at least COMMON_MIN of them) is
# left out of the query: it adds little to BM25 (idf about 3, against 8-12 for a rare stem) but
# FTS5 scores every chunk that contains it. Measured over 300,000 synthetic chunks: p95 688 ms
# with every stem, 143 ms with this cut. Applied at every index size, so that a question ranks
# the same way in a small index and a large one; on the dev questions and NorQuAD that changed
# passage@5 by 0 and +1 question (README, Retrieval). COMMON_MIN keeps a tiny corpus, where
# every stem is in a few chunks, searched with all its stems.
COMMON_SHARE = 0.05
COMMON_MIN = 20
# Then, rarest first, stems are kept while the chunks they are found in add up to at most
# POSTINGS_BUDGET: FTS5's time grows with those postings, and at a million chunks the stems
# under the 5 % line still sum to hundreds of thousands. The two rarest stems always stay. A
# corpus of a few thousand chunks never reaches it. Chosen by timing (README, Performance).
POSTINGS_BUDGET = 60_000


class DocFreq:
    """Document frequencies of stems, cached per index (they move slowly), for the common-stem cut;
    and the index's frozen postings segment (lexical_segment.py), when it is large enough to have one."""

    def __init__(self) -> None:
        self.segment: "Segment | None" = None
        self._cache: dict[str, int] = {}
        self._total = 0
        self._lock = threading.Lock()

    def counts(self, db: sqlite3.Connection, terms: Sequence[str], total: int) -> dict[str, int]:
        """`{stem: chunks containing it}` for `terms`; `total` is the index's chunk count now."""
        with self._lock:
            if abs(total - self._total) > 0.1 * max(self._total, 1):
                self._cache.clear()  # the index grew or shrank a lot: count again
                self._total = total
            missing = [t for t in terms if t not in self._cache]
        if missing:
            db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.lexical_vocab "
                       "USING fts5vocab(main, lexical, 'row')")
            found = {}
            for term in missing:
                row = db.execute("SELECT doc FROM temp.lexical_vocab WHERE term = ?", (term,)).fetchone()
                found[term] = int(row[0]) if row else 0
            with self._lock:
                self._cache.update(found)
        with self._lock:
            return {t: self._cache.get(t, 0) for t in terms}


def common_terms(terms: Sequence[str], df: dict[str, int], total: int,
                 budget: int | None = None) -> set[str]:
    """The stems to leave out: those in more than COMMON_SHARE of `total` chunks (and at least
    COMMON_MIN), then the commonest while the rest's chunks add up to over `budget`
    (POSTINGS_BUDGET); the two rarest always stay."""
    budget = POSTINGS_BUDGET if budget is None else budget
    keep: list[str] = []
    postings = 0
    for term in sorted(terms, key=lambda t: df.get(t, 0)):
        count = df.get(term, 0)
        common = count > COMMON_SHARE * total and count >= COMMON_MIN
        if len(keep) >= 2 and (common or postings + count > budget):
            break
        keep.append(term)
        postings += count
    return set(terms) - set(keep)


def query_terms(question: str, max_terms: int = 32) -> list[str]:
    """The question's distinct stems, in order (at most `max_terms`).

    A hyphenated compound is asked for whole (FTS5 reads it as a phrase: "id-port" matches
    "ID-porten") and by its parts of three letters or more, each stemmed: "KI-sandkassen" also
    asks for "sandkass", which the documents write without the prefix."""
    terms: list[str] = []
    for stem in analyse(question):
        terms.append(stem)
        if "-" in stem:
            parts = [p for p in stem.split("-") if len(p) >= 3 and p not in STOP_WORDS]
            terms.extend(_stemmer().stemWords(parts) if parts else [])
    return list(dict.fromkeys(terms))[:max_terms]


def match_expression(terms: Sequence[str]) -> str | None:
    """An FTS5 query OR-ing `terms` (stems), or None when there are none."""
    if not terms:
        return None
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


def search(db: sqlite3.Connection, question: str, k: int, *, doc_freq: DocFreq | None = None,
           total: int = 0) -> list[tuple[int, float]]:
    """Up to `k` `(chunk_id, score)` pairs, best first; score is BM25 (higher is better).

    With `doc_freq` (and `total`, the index's chunk count), common stems are left out of
    the query (`common_terms`), and its segment, if any, answers for the chunks it holds.
    """
    terms = query_terms(question)
    segment = doc_freq.segment if doc_freq is not None else None
    counts = doc_freq.counts(db, terms, total) if doc_freq is not None and (segment or len(terms) > 2) else {}
    if len(terms) > 2 and counts:
        leave_out = common_terms(terms, counts, total)
        terms = [t for t in terms if t not in leave_out]
    expression = match_expression(terms)
    if expression is None:
        return []
    if segment is not None:  # a large index: its postings in numpy, FTS5 for the chunks added since
        found = segment.search(db, terms, k, counts, expression)
        if found is not None:
            return found
    rows = db.execute(
        "SELECT rowid, -bm25(lexical) AS s FROM lexical WHERE lexical MATCH ? ORDER BY bm25(lexical) LIMIT ?",
        (expression, k),
    ).fetchall()
    return [(int(r[0]), float(r[1])) for r in rows]
