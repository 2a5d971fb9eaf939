"""Content words, light stems and quantities, for lexical overlap in answers and follow-ups.

`content_words` drops Norwegian and English stop words and strips one common
suffix, so "søknaden" and "søknad" match. `asks_for_quantity` and `numbers`
back the refusal rule "a question asking how many / how much / when needs a
number in the passages". Deliberately small and dependency-free; retrieval has
its own analyser.
"""

from __future__ import annotations

import re

__all__ = ["STOPWORDS", "stem", "content_words", "numbers", "asks_for_quantity"]

_WORD = re.compile(r"[0-9a-zæøåäöüéèàáóò]+(?:[-'][0-9a-zæøåäöüéèàáóò]+)*", re.IGNORECASE)
_SUFFIXES = ("heten", "ene", "ane", "ens", "ing", "ers", "er", "en", "et", "ar", "a", "e", "s")

STOPWORDS = frozenset(
    """the a an and or of to in on for with from by is are was were be been being it its this that these those
    what which who whom whose how why when where does do did has have had not no can could would should will
    shall may might must about into over under than then there their they them he she his her we our you your
    i me my as at if so such also only more most other any each all some according said says say
    og i på for med til av er var som det den de en et ei at ikke om har hadde kan skal vil må fra ved
    eller men så også bare mer mest andre hver alle noen blir ble være vært hvordan hva hvem hvilken hvilke
    hvilket hvor hvorfor når etter under over mellom mot uten seg sin sitt sine vi dere oss deres jeg meg min
    mitt du deg din ditt han hun hans hennes dette disse denne slik kva korleis kven kvifor kor ikkje eg ho
    dei frå berre mykje noko nokon vere vore vart ifølge iflg får fikk gjør gjøre gjort sier sa nå da
    kva kor kvar korleis kven kvifor """.split()
)


def stem(word: str) -> str:
    """A light stem for Norwegian and English: lower case, one common suffix removed."""
    w = word.lower()
    for suffix in _SUFFIXES:
        if len(w) - len(suffix) >= 4 and w.endswith(suffix):
            return w[: -len(suffix)]
    return w


def content_words(text: str) -> list[str]:
    """Stems of the words in `text` that carry content (no stop words, no single letters)."""
    out = []
    for match in _WORD.finditer(text):
        w = match.group().lower()
        if len(w) < 2 or w in STOPWORDS:
            continue
        out.append(stem(w))
    return out


_QUANTITY = re.compile(
    r"\b(?:hvor (?:mange|mye|lenge|stor|høy)|kor (?:mange|mykje|lenge)|how (?:many|much|long)|antall|"
    r"number of|budsjett\w*|budget\w*|kost\w*|cost\w*|pris\w*|price\w*|prosent\w*|percent\w*|"
    r"hvilket år|kva år|what year|population|befolkning\w*)\b|^\s*(?:når|when)\b",
    re.IGNORECASE,
)
_NUMBER_WORDS = frozenset(
    """tre fire fem seks sju syv åtte ni ti elleve tolv tretten fjorten femten tjue tretti førti femti hundre
    tusen million millioner milliard milliarder prosent halvparten dobbelt tredje fjerde femte sjette
    two three four five six seven eight nine ten eleven twelve twenty thirty hundred thousand million
    millions billion percent half double third fourth fifth sixth""".split()
)


def asks_for_quantity(question: str) -> bool:
    """Does the question ask for a number, an amount or a date ("hvor mange", "how much", "når")?"""
    return bool(_QUANTITY.search(question))


def numbers(text: str) -> set[str]:
    """Tokens that state a quantity: anything with a digit, and number words ("tre", "fifth")."""
    return {w for w in (m.group().lower() for m in _WORD.finditer(text))
            if w in _NUMBER_WORDS or any(ch.isdigit() for ch in w)}
