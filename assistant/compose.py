"""The extractive answer: quote the retrieved sentences that best answer the question.

No generative model is needed. `compose_extractive` splits the top hits into
sentences, scores each against the question with the same embedder (one
`embed` call for the question and every candidate) plus lexical overlap of
content words, removes redundancy with maximal marginal relevance, orders the
chosen sentences by hit rank and position, and marks each with `[n]`, where
`n` numbers the distinct passages cited. Every quote is an exact substring of
its hit's text, so `citations.check_citations` can verify it.

When nothing supports an answer (`refusal_features` gathers the signals,
`refusal.should_refuse` decides), the answer is a refusal in the question's
language that keeps the hits, so a user interface can show them as "may be related".

Limits: the answer is a set of quotes, not a summary. Across languages it
quotes the sources in their own language, with one line saying so.
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .citations import check_citations, citation_markers, format_sources
from .language import detect_language, is_norwegian
from .sentences import sentence_spans, strip_span
from .refusal import (DEFAULT_LEXICAL_BELOW, DEFAULT_REFUSE_BELOW, DEFAULT_REFUSE_BELOW_CROSS, REFUSAL,
                      answer_type_features, refusal_answer, should_refuse)
from .terms import content_words
from .types import Answer, Citation, Hit

if TYPE_CHECKING:  # the protocol lives with the embedders; compose only calls `embed`
    from .embedding import Embedder

__all__ = [
    "REFUSAL",
    "CROSS_LANGUAGE_NOTE",
    "DEFAULT_REFUSE_BELOW",
    "DEFAULT_REFUSE_BELOW_CROSS",
    "Candidate",
    "candidate_sentences",
    "refusal_features",
    "should_refuse",
    "compose_extractive",
    "refusal_answer",
    "check_citations",
    "citation_markers",
    "format_sources",
]

log = logging.getLogger(__name__)

# Said before the quotes when the question and the quoted sources differ in language.
CROSS_LANGUAGE_NOTE = {
    "en": "The sources are in Norwegian; here is what they say:",
    "en-mixed": "Some of the sources are in Norwegian; here is what they say:",
    "nb": "Kildene er på engelsk; dette er hva de sier:",
    "nn": "Kjeldene er på engelsk; dette er kva dei seier:",
}

_WORD = re.compile(r"[0-9a-zæøåäöüéèàáóò]+(?:[-'][0-9a-zæøåäöüéèàáóò]+)*", re.IGNORECASE)
_BULLET = re.compile(r"(?:#{1,6}\s+|[-*•–]\s+|\d+[.)]\s+|>\s+)+")
# A sentence opening with one of these leans on the sentence before it ("Her har samarbeidet ...").
_LEANING = re.compile(
    r"(?:Her|Dette|Denne|Disse|Der|Slik|Dermed|Derfor|Da|Også|Samtidig|Likevel|Dei|Desse|Difor|"
    r"This|These|That|Those|Here|There|Thus|Therefore|However|Such|Also)\b"
)
@dataclass(frozen=True)
class Candidate:
    """A sentence of a hit: `hit.text[start:end] == text`. `hit_index` is 0-based into the hits."""

    hit_index: int
    start: int
    end: int
    text: str


def _trim(text: str, a: int, b: int) -> tuple[int, int]:
    """Drop list bullets and Markdown heading marks in front of a sentence."""
    match = _BULLET.match(text, a, b)
    if match:
        a = match.end()
    while a < b and text[a].isspace():
        a += 1
    return a, b


_BRACKETED_NUMBER = re.compile(r"\[\d+\]")


def candidate_sentences(hits: Sequence[Hit], *, max_hits: int = 5, min_words: int = 4,
                        max_chars: int = 400) -> list[Candidate]:
    """The quotable sentences of the first `max_hits` hits, without duplicates.

    Long spans with single line breaks (lists, tables) are split into lines.
    Headings and fragments shorter than `min_words` words are left out; a sentence
    already taken from a better-ranked hit (chunks overlap) is not repeated.
    """
    seen: set[str] = set()
    out: list[Candidate] = []
    for i, hit in enumerate(hits[:max_hits]):
        text = hit.text
        for a, b in sentence_spans(text):
            pieces = [(a, b)]
            if b - a > max_chars and "\n" in text[a:b]:
                pieces = []
                pos = a
                for line in text[a:b].split("\n"):
                    la, lb = strip_span(text, pos, pos + len(line))
                    pos += len(line) + 1
                    if lb > la:
                        pieces.append((la, lb))
            for pa, pb in pieces:
                pa, pb = _trim(text, pa, pb)
                sentence = text[pa:pb]
                if len(_WORD.findall(sentence)) < min_words:
                    continue
                if _BRACKETED_NUMBER.search(sentence):  # "[3]" in a document would read as a citation
                    continue
                key = " ".join(sentence.lower().split())
                if key in seen:
                    continue
                seen.add(key)
                out.append(Candidate(i, pa, pb, sentence))
    return out


def _lexical_scores(question: str, candidates: Sequence[Candidate]) -> np.ndarray:
    """Share of the question's content words (IDF-weighted over the candidates) in each sentence."""
    q_terms = set(content_words(question))
    if not q_terms or not candidates:
        return np.zeros(len(candidates), dtype=np.float32)
    bags = [set(content_words(c.text)) for c in candidates]
    n = len(bags)
    weights = {t: math.log(1.0 + n / (1.0 + sum(t in bag for bag in bags))) for t in q_terms}
    total = sum(weights.values())
    return np.array([sum(w for t, w in weights.items() if t in bag) / total for bag in bags], dtype=np.float32)


def _coverage(question: str, hits: Sequence[Hit]) -> float:
    """Share of the question's content words that occur anywhere in the hits' texts."""
    q_terms = set(content_words(question))
    if not q_terms:
        return 0.0
    found: set[str] = set()
    for hit in hits:
        found |= q_terms & set(content_words(hit.text))
    return len(found) / len(q_terms)


@dataclass(frozen=True)
class _Scored:
    candidates: list[Candidate]
    dense: np.ndarray  # cosine of each candidate with the question
    lexical: np.ndarray
    vectors: np.ndarray  # candidate embeddings, for redundancy
    embed_seconds: float


def _score(question: str, hits: Sequence[Hit], embedder: "Embedder", *, query_prompt: str,
           passage_prompt: str, max_hits: int) -> _Scored:
    candidates = candidate_sentences(hits, max_hits=max_hits)
    if not candidates:
        empty = np.zeros(0, dtype=np.float32)
        return _Scored([], empty, empty, np.zeros((0, 1), dtype=np.float32), 0.0)
    t0 = time.perf_counter()
    vectors = np.asarray(
        embedder.embed([query_prompt + question] + [passage_prompt + c.text for c in candidates]),
        dtype=np.float32,
    )
    embed_seconds = time.perf_counter() - t0
    q, s = vectors[0], vectors[1:]
    return _Scored(candidates, s @ q, _lexical_scores(question, candidates), s, embed_seconds)


def _features(question: str, hits: Sequence[Hit], scored: _Scored, lang: str) -> dict[str, float]:
    top = hits[0] if hits else None
    best = int(np.argmax(scored.dense)) if len(scored.dense) else -1
    best_lang = hits[scored.candidates[best].hit_index].lang if best >= 0 else lang
    cross = is_norwegian(lang) != is_norwegian(best_lang)
    return {
        "best_dense": float(scored.dense[best]) if best >= 0 else 0.0,
        "best_lexical": float(scored.lexical.max()) if len(scored.lexical) else 0.0,
        "coverage": _coverage(question, hits[:3]),
        "top_score": float(top.score) if top else 0.0,
        "top_dense": float(top.dense_score) if top and top.dense_score is not None else 0.0,
        "candidates": float(len(scored.candidates)),
        "cross_language": float(cross),
        **answer_type_features(question, hits, cross_language=cross),
    }


def refusal_features(question: str, hits: Sequence[Hit], embedder: "Embedder", *, lang: str | None = None,
                     query_prompt: str = "query: ", passage_prompt: str = "passage: ",
                     max_hits: int = 5) -> dict[str, float]:
    """The signals the refusal decision uses, for calibration on a dev set.

    `best_dense`: the best candidate sentence's cosine with the question;
    `cross_language`: 1 when that sentence's passage is in another language than the question;
    `quantity_unmet`, `date_unmet`, `money_unmet`, `person_unmet`, `role_unmet`, `name_missing`,
    `kind_unmet`: 1 when the top passages lack the kind of answer the question asks for (see
    `refusal.answer_type_features`);
    `best_lexical`: the best IDF-weighted share of the question's content words in a sentence;
    `coverage`: the share of those words found anywhere in the top 3 hits;
    `top_score` / `top_dense`: the first hit's fused and dense retrieval scores.
    """
    lang = lang or detect_language(question)
    scored = _score(question, hits, embedder, query_prompt=query_prompt,
                    passage_prompt=passage_prompt, max_hits=max_hits)
    return _features(question, hits, scored, lang)


def _mmr(relevance: np.ndarray, vectors: np.ndarray, k: int, diversity: float,
         floor: float) -> list[int]:
    """Indices chosen by maximal marginal relevance; stops below `floor` relevance."""
    order = np.argsort(-relevance)
    pool = [int(i) for i in order if relevance[i] >= floor]
    chosen: list[int] = []
    while pool and len(chosen) < k:
        if chosen:
            redundancy = (vectors[pool] @ vectors[chosen].T).max(axis=1)
            gains = (1 - diversity) * relevance[pool] - diversity * redundancy
            best = pool[int(np.argmax(gains))]
        else:
            best = pool[0]
        chosen.append(best)
        pool.remove(best)
    return chosen


def _adjacent(a: Candidate, b: Candidate, hits: Sequence[Hit]) -> bool:
    """Is `b` the sentence right after `a` in the same passage?"""
    return a.hit_index == b.hit_index and not hits[a.hit_index].text[a.end:b.start].strip()


def _with_context(chosen: list[int], candidates: Sequence[Candidate], hits: Sequence[Hit],
                  relevance: np.ndarray, floor: float, *, limit: int) -> list[int]:
    """Add the neighbours that a chosen sentence leans on, or that lean on it."""
    picked = list(chosen)
    for i in chosen:
        if len(picked) >= limit:
            break
        c = candidates[i]
        if i > 0 and i - 1 not in picked and _LEANING.match(c.text) and _adjacent(candidates[i - 1], c, hits):
            picked.append(i - 1)
        if len(picked) >= limit:
            break
        j = i + 1
        if (j < len(candidates) and j not in picked and _LEANING.match(candidates[j].text)
                and _adjacent(c, candidates[j], hits) and relevance[j] >= floor):
            picked.append(j)
    return picked


def compose_extractive(question: str, hits: Sequence[Hit], embedder: "Embedder", *, lang: str,
                       query_prompt: str = "query: ", passage_prompt: str = "passage: ",
                       max_sentences: int = 4, refuse_below: float = DEFAULT_REFUSE_BELOW,
                       refuse_below_cross: float = DEFAULT_REFUSE_BELOW_CROSS,
                       lexical_below: float = DEFAULT_LEXICAL_BELOW, check_answer_type: bool = True,
                       max_hits: int = 5, lexical_weight: float = 0.3, diversity: float = 0.3,
                       relative_floor: float = 0.06) -> Answer:
    """Answer `question` by quoting the best sentences of `hits`, each marked `[n]`.

    Relevance is the sentence's cosine with the question plus `lexical_weight`
    times its lexical overlap; sentences more than `relative_floor` below the best
    are not quoted. A quoted sentence that opens by pointing back ("Her har ...", "This ...")
    brings the sentence before it, and a following sentence that points back at a quoted
    one comes along when its relevance is above the median. Refuses (see `should_refuse`) when even the best sentence is weak.
    `timings` holds `embed` (the one embed call) and `compose` (the rest), in seconds.
    """
    t0 = time.perf_counter()
    scored = _score(question, hits, embedder, query_prompt=query_prompt,
                    passage_prompt=passage_prompt, max_hits=max_hits)
    features = _features(question, hits, scored, lang)
    if should_refuse(features, refuse_below=refuse_below, refuse_below_cross=refuse_below_cross,
                     lexical_below=lexical_below, check_answer_type=check_answer_type):
        log.debug("refusing %r: %s", question, features)
        elapsed = time.perf_counter() - t0
        return refusal_answer(question, hits, lang=lang, timings={
            "embed": scored.embed_seconds, "compose": elapsed - scored.embed_seconds})

    relevance = scored.dense + lexical_weight * scored.lexical
    # Headings and fragments without closing punctuation make poor answers.
    unfinished = np.array([not c.text.rstrip("\"'»”’)]").endswith((".", "!", "?", "…", ":"))
                           for c in scored.candidates])
    relevance = relevance - 0.02 * unfinished
    floor = float(relevance.max()) - relative_floor
    chosen = _mmr(relevance, scored.vectors, max_sentences, diversity, floor)
    chosen = _with_context(chosen, scored.candidates, hits, relevance, float(np.median(relevance)),
                           limit=max_sentences + 2)
    chosen.sort(key=lambda i: (hits[scored.candidates[i].hit_index].rank,
                               scored.candidates[i].hit_index, scored.candidates[i].start))

    numbers: dict[int, int] = {}
    quotes: dict[int, list[str]] = {}
    parts: list[str] = []
    for i in chosen:
        c = scored.candidates[i]
        n = numbers.setdefault(c.hit_index, len(numbers) + 1)
        quotes.setdefault(c.hit_index, []).append(c.text)
        parts.append(f"{c.text} [{n}]")
    citations = tuple(Citation(number=n, hit=hits[h], quotes=tuple(quotes[h])) for h, n in numbers.items())

    text = " ".join(parts)
    note = _language_note(lang, [c.hit for c in citations])
    if note:
        text = note + "\n\n" + text
    elapsed = time.perf_counter() - t0
    return Answer(question=question, text=text, citations=citations, hits=tuple(hits), lang=lang,
                  refused=False, timings={"embed": scored.embed_seconds,
                                          "compose": elapsed - scored.embed_seconds})


def _language_note(lang: str, cited: Sequence[Hit]) -> str:
    if not cited:
        return ""
    norwegian = [is_norwegian(h.lang) for h in cited]
    if lang == "en":
        if all(norwegian):
            return CROSS_LANGUAGE_NOTE["en"]
        if any(norwegian):
            return CROSS_LANGUAGE_NOTE["en-mixed"]
    elif is_norwegian(lang) and not any(norwegian):
        return CROSS_LANGUAGE_NOTE.get(lang, CROSS_LANGUAGE_NOTE["nb"])
    return ""
