"""When to refuse, and the refusal itself.

The extractive answer (`compose.py`) refuses when nothing in the retrieved
passages supports an answer. Two kinds of signal decide it:

- how close the best candidate sentence is to the question (a cosine of the
  embedder, with its own threshold across languages), and how many of the
  question's content words any sentence shares;
- whether the passages hold the kind of answer the question asks for
  (`answer_type_features`): a number beside what "how many" counts, a length
  of time for "how long", a number for "how much / when", an amount of money
  for "what does it cost", a point in time for "when", a name for "who", the
  role and a name in one sentence for "who is the CEO / mayor / head of", the
  kinds in `answer_kinds.py` (who won, the first, a comparison, a venue,
  opening hours, a section of a law), and the place or name the question is
  about ("i Oslo", "the CEO").

The second kind catches the near misses that similarity alone lets through: a
question on a topic the documents cover, about a fact they do not state.
Calibrated on the dev questions and on questions of the project's own
(`tests/data/unanswerable.jsonl`, `tests/data/probes.jsonl`, the fresh probe
sets; README, "Answers"). `refusal_answer` says so in the question's language
and keeps the hits, so a user interface can show them as "may be related".
"""

from __future__ import annotations

import re
from typing import Iterator, Sequence

from .answer_kinds import kinds_asked
from .sentences import sentence_spans
from .settings import Settings
from .names import asks_for_role, mentions, names, names_role, question_names
from .terms import (STOPWORDS, asks_for_date, asks_for_duration, asks_for_money, asks_for_person, asks_for_quantity,
                    content_words, counted, dates, numbers, same_word, states_duration, states_money, stem, words)
from .types import Answer, Hit

__all__ = ["REFUSAL", "DEFAULT_REFUSE_BELOW", "DEFAULT_REFUSE_BELOW_CROSS", "DEFAULT_LEXICAL_BELOW",
           "ANSWER_TYPES", "answer_type_features", "should_refuse", "refusal_answer"]

REFUSAL = {
    "nb": "Jeg fant ikke noe om dette i dokumentene.",
    "nn": "Eg fann ikkje noko om dette i dokumenta.",
    "en": "I could not find this in the documents.",
}

# Calibrated on the dev set with multilingual-e5-small and the e5 prompts (README, "Refusal calibration"):
# the best sentence's cosine with the question, when question and passage share a language ...
DEFAULT_REFUSE_BELOW: float = Settings.refuse_below
# ... and when they do not (an English question over Norwegian passages scores lower).
DEFAULT_REFUSE_BELOW_CROSS: float = Settings.refuse_below_cross
# A same-language question none of whose content words occurs in any candidate sentence is refused
# (dev: same-language answerable questions reach at least 0.14, see README "Refusal calibration").
DEFAULT_LEXICAL_BELOW: float = 0.05


def should_refuse(features: dict[str, float], *, refuse_below: float = DEFAULT_REFUSE_BELOW,
                  refuse_below_cross: float = DEFAULT_REFUSE_BELOW_CROSS,
                  lexical_below: float = DEFAULT_LEXICAL_BELOW, check_answer_type: bool = True) -> bool:
    """Refuse when the best sentence is too far from the question, or the answer the question asks for is missing.

    Too far: its cosine is below `refuse_below` (`refuse_below_cross` across languages), or, within
    one language, no sentence shares a content word with the question (`best_lexical` below
    `lexical_below`). Missing, with `check_answer_type`: any of `answer_type_features`.
    """
    if features.get("candidates", 0.0) <= 0:
        return True
    if check_answer_type and any(features.get(k, 0.0) > 0 for k in ANSWER_TYPES):
        return True
    cross = features.get("cross_language", 0.0) > 0
    if not cross and features.get("best_lexical", 1.0) < lexical_below:
        return True
    return features["best_dense"] < (refuse_below_cross if cross else refuse_below)


def refusal_answer(question: str, hits: Sequence[Hit], *, lang: str,
                   timings: dict[str, float] | None = None) -> Answer:
    """The refusal in the question's language, keeping the hits as "may be related"."""
    return Answer(question=question, text=REFUSAL.get(lang, REFUSAL["nb"]), citations=(),
                  hits=tuple(hits), lang=lang, refused=True, timings=dict(timings or {}), backend="refusal")


ANSWER_TYPES = ("quantity_unmet", "date_unmet", "money_unmet", "person_unmet", "role_unmet", "name_missing",
                "kind_unmet")


def answer_type_features(question: str, hits: Sequence[Hit], *, cross_language: bool) -> dict[str, float]:
    """1.0 where the top passages lack the kind of answer the question asks for, else 0.0.

    `quantity_unmet`: it asks how many of something and no sentence states a number beside it
    (`_count_unmet`), how long and no sentence states a length of time (`_duration_unmet`), or
    how much and no sentence near two of its content words states a number it did not state
    itself; `date_unmet`: it asks when, and no sentence that shares one of its words places
    anything in time (`terms.dates`) that it did not state;
    `money_unmet`: it asks what something costs or pays, and no sentence near its words
    states an amount of money;
    `person_unmet`: it asks who, and no sentence near its words names anyone it did not
    name (same language only: across languages too few words are shared to find "near");
    `role_unmet`: it asks who holds a role ("Hvem er ordfører i ...", "Who is the CEO of ...")
    and no sentence that shares a word with it names that role and someone (either language);
    `name_missing`: a name it is about ("i Oslo", "the CEO") is in none of the top 3 passages
    nor their documents' paths; `kind_unmet`: it asks for a kind of `answer_kinds.KINDS` (who
    won, the first, ...) and no sentence near its words (across languages: of the top 3
    passages) gives one.
    """
    role, when, counts = asks_for_role(question), asks_for_date(question), counted(question)
    quantity, duration = asks_for_quantity(question), asks_for_duration(question)
    asks = (quantity or duration, asks_for_money(question), not cross_language and asks_for_person(question))
    kinds = kinds_asked(question)
    # the sentences of the top 3 passages, of 5 for how long and how many (split once per answer)
    split = _split(hits, 5 if duration or counts else 3) if any(asks) or counts or role or when or kinds else []
    sentences = [(sentence, frozenset(content_words(sentence))) for i, sentence in split if i < 3]
    near = _near(question, sentences)  # sharing one of its content words, and two of them:
    near2 = _near(question, sentences, min_shared=2)
    if duration:  # how long: the top 5 passages (3 across languages)
        quantity_unmet = _duration_unmet(question, split, cross_language)
    elif counts and not cross_language:  # how many of something
        quantity_unmet = _count_unmet(question, split, counts)
    else:  # how much (a when-question is left to `date_unmet`)
        quantity_unmet = quantity and not when and _quantity_unmet(question, near2)
    return {
        "quantity_unmet": float(quantity_unmet),
        "date_unmet": float(when and _date_unmet(question, near)),
        "money_unmet": float(asks[1] and not any(states_money(s) for s in near)),
        "person_unmet": float(asks[2] and _person_unmet(question, near, sentences)),
        "role_unmet": float(bool(role) and _role_unmet(question, role, sentences)),
        "name_missing": float(_name_missing(question, hits)),
        # across languages few words are shared, so any sentence of the top 3 passages may give it
        "kind_unmet": float(any(not any(kind.answered_by(s, question)
                                        for s in ([s for s, _ in sentences] if cross_language else near))
                                for kind in kinds)),
    }


def _split(hits: Sequence[Hit], top: int) -> list[tuple[int, str]]:
    """The sentences of the `top` passages, each with its passage's index."""
    return [(i, hit.text[a:b]) for i, hit in enumerate(hits[:top]) for a, b in sentence_spans(hit.text)]


def _near(question: str, sentences: Sequence[tuple[str, frozenset[str]]], min_shared: int = 1) -> list[str]:
    """The sentences that share at least `min_shared` content words with the question."""
    terms = set(content_words(question))
    need = min(min_shared, len(terms))
    return [sentence for sentence, words in sentences if len(terms & words) >= need]


def _quantity_unmet(question: str, near: Sequence[str]) -> bool:
    """No sentence of `near` (those near two of the question's words) states a number the question
    did not state."""
    asked = numbers(question)
    return not any(numbers(s) - asked for s in near)


# Code, JSON, a request or a query string: its numbers are ids, ports and versions, not counts.
_CODE = re.compile(r"[{}]|\"\w+\"\s*:|https?://|\b[A-Z]+/\d|[&?]\w+=|%[0-9A-F]{2}|"
                   r"\b(?:GET|POST|PUT|DELETE|PATCH)\s+/")


def _states(sentence: str) -> bool:
    """Can `sentence` state a fact: not code, and not itself a question (an FAQ's "Må vi etablere tre klienter?")."""
    return not _CODE.search(sentence) and not sentence.rstrip().endswith("?")


def _count_unmet(question: str, split: Sequence[tuple[int, str]], counts: Sequence[str]) -> bool:
    """No sentence of the top 5 passages states a number the question did not state beside a form
    of what it counts (`terms.counted`, `terms.same_word`) and of one more of its words: "Hvor
    mange dager ..." is not answered by "24 timer", nor "Hvor mange ansatte har NAV" by "Digdir
    har fem ansatte i teamet"."""
    asked = numbers(question)
    terms = _question_words(question, leave_out=counts[0])
    return not any(numbers(sentence) - asked and _names_any(tokens, counts)
                   and (_names_any(tokens, terms) or not terms) for sentence, tokens in _stating(split, 5))


def _duration_unmet(question: str, split: Sequence[tuple[int, str]], cross_language: bool) -> bool:
    """No sentence of the top passages (5; 3 across languages) states a length of time
    (`terms.states_duration`) beside a form of one of the question's words (across languages,
    anywhere): "Hvor lenge varer en administratortilgang" is answered by "tilgangen utløper
    etter ... (typisk 8 timer)"."""
    terms = _question_words(question)
    return not any(states_duration(sentence) and (cross_language or _names_any(tokens, terms))
                   for sentence, tokens in _stating(split, 3 if cross_language else 5))


def _stating(split: Sequence[tuple[int, str]], top: int) -> Iterator[tuple[str, list[str]]]:
    """The sentences of the `top` passages that can state a fact (`_states`), with their words."""
    return ((sentence, words(sentence)) for i, sentence in split if i < top and _states(sentence))


def _question_words(question: str, leave_out: str = "") -> list[str]:
    """The question's words, lower case, without stop words, single letters or `leave_out`."""
    return [w for w in dict.fromkeys(words(question)) if w not in STOPWORDS and len(w) > 1 and w != leave_out]


def _names_any(tokens: Sequence[str], wanted: Sequence[str]) -> bool:
    """Do `tokens` (a sentence's `terms.words`) hold a form of one of `wanted` (`terms.same_word`)?"""
    return any(same_word(w, x) for x in tokens for w in wanted)


def _date_unmet(question: str, near: Sequence[str]) -> bool:
    """No sentence of `near` places anything in time (`terms.dates`) that the question did not
    state: "versjon 2" does not answer "når".

    `near` is the sentences that share one of the question's words, not two: the answer often names
    its subject another way ("Når ble The Beatles kjent i Storbritannia?": "Det store gjennombruddet i
    Storbritannia kom i 1963"). Measured: NorQuAD validation 42 -> 25 false refusals of 462; the
    project sets one refusal fewer (hu05) and one false refusal fewer (ia19). README, "Refusal calibration"."""
    asked = dates(question)
    return not any(dates(s) - asked for s in near)


def _person_unmet(question: str, near: Sequence[str], sentences: Sequence[tuple[str, frozenset[str]]]) -> bool:
    """No sentence of `near` (those sharing a word with the question) names anyone the question
    did not name; a word capitalised inside any of `sentences` counts as a name at a sentence's start.

    Only asked when question and passages share a language: across languages few words are shared,
    so "near its words" finds too little.
    """
    asked = {w.lower() for w in content_words(question)} | {w.lower() for w in question_names(question)}
    asked |= {w.lower() for w in names(question)}
    known = {w.lower() for sentence, _ in sentences for w in names(sentence)}
    return not any(w.lower() not in asked for s in near for w in names(s, known))


def _role_unmet(question: str, role: Sequence[str], sentences: Sequence[tuple[str, frozenset[str]]]) -> bool:
    """No sentence names the role (`names.names_role`) beside a name the question does not hold,
    while sharing a content word or a name with the question (besides the role)."""
    roles = tuple(r.lower() for r in role)
    asked = {w.lower() for w in question_names(question)} | {w.lower() for w in names(question)}
    terms = {w for w in content_words(question) if not w.startswith(roles)} | {stem(w) for w in asked}
    return not any(names_role(sentence, role) and any(n.lower() not in asked for n in names(sentence))
                   and (terms & words or not terms) for sentence, words in sentences)


def _name_missing(question: str, hits: Sequence[Hit]) -> bool:
    """A name the question is about ("i Oslo", "the CEO") that none of the top 3 passages mentions."""
    # The document's path counts: "i Digdirs beskrivelse" is answered by a page from digdir__designsystemet.
    text = " ".join(f"{hit.doc_id} {hit.title} {hit.text}" for hit in hits[:3])
    return any(not mentions(text, w) for w in question_names(question))
