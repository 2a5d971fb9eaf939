"""Language detection for Norwegian Bokmål (nb), Nynorsk (nn) and English (en).

A stop-word vote: cheap, deterministic and good enough to choose prompts,
fusion weights and the language of the reply. It does not try to recognise
other languages; anything without Norwegian or English function words is
reported as `default`.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-zæøåäöüéèàáóòA-ZÆØÅÄÖÜÉÈÀÁÓÒ]+")

_EN = frozenset(
    """the a an and or of to in on for with from by is are was were be been being it its this that these those
    what which who whom whose how why when where does do did has have had not no can could would should will
    shall may might must about into over under than then there their they them he she his her we our you your
    i me my as at if so such also only more most other any each all some""".split()
)
_NO = frozenset(
    """og i på for med til av er var som det den de en et ei at ikke om har hadde kan skal vil må fra ved
    eller men så også bare mer mest andre hver alle noen blir ble være vært hvordan hva hvem hvilken hvilke
    hvor hvorfor når etter under over mellom mot uten seg sin sitt sine vi dere oss deres jeg meg min mitt
    du deg din ditt han hun hans hennes dette disse denne slik kva korleis kven kvifor kor ikkje eg ho dei
    frå berre mykje noko nokon vere vore vart""".split()
)
_NN_ONLY = frozenset(
    """ikkje eg ho dei frå berre mykje noko nokon vere vore vart kva korleis kven kvifor kor òg dykk
    henne hjå høyrer kjem skal-ikkje sjølv sjå gjer gjere medan enno""".split()
)
_NB_ONLY = frozenset(
    """ikke jeg hun de fra bare mye noe noen være vært ble hva hvordan hvem hvorfor hvor også selv ser gjør
    mens ennå""".split()
)


def detect_language(text: str, default: str = "nb") -> str:
    """Return 'nb', 'nn' or 'en' for `text`; `default` when there is no evidence."""
    words = [w.lower() for w in _WORD.findall(text[:20000])]
    if not words:
        return default
    en = sum(w in _EN for w in words)
    no = sum(w in _NO for w in words)
    if any(c in text for c in "æøåÆØÅ"):
        no += 1 + len(re.findall(r"[æøåÆØÅ]", text[:20000])) // 4
    if en == 0 and no == 0:
        return default
    if en > no:
        return "en"
    nn = sum(w in _NN_ONLY for w in words)
    nb = sum(w in _NB_ONLY for w in words)
    return "nn" if nn > nb else "nb"


def is_norwegian(lang: str) -> bool:
    return lang in ("nb", "nn", "no")
