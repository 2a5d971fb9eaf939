"""Names and roles in questions and passages, for the refusal's who / which-name rules.

`names` finds the names a sentence gives (capitalised words that are not a sentence's first word,
stop words or adjectives such as "Norwegian"); `question_names` the names a question is about ("i
Oslo", "the CEO"), which `mentions` looks for in the passages (inflected, in its Norwegian form, or
with one letter typed wrong); `asks_for_role` / `names_role` back "Hvem er ordfører i ...", "Who is
the CEO of ...": the role and a name in one sentence. Deliberately small and dependency-free.
"""

from __future__ import annotations

import re
from typing import Sequence

from .terms import STOPWORDS, tokens, words

__all__ = ["asks_for_role", "names_role", "names", "question_names", "mentions"]

# "Norwegian", "English", "Swedish": capitalised in English, but adjectives, not names.
_ADJECTIVE = re.compile(r"(?:ian|ish|ese|isk|sk|ske)$", re.IGNORECASE)


# "Who is the CEO / the mayor / the head of ...": the role asked for, and the words a passage may name
# that role with (either language; matched as a word, perhaps inflected: `names_role`). Questions whose
# role word is a verb other than "hvem leder" / "who heads" / "who leads" (who is leading, who should
# lead, who runs) are not role questions: "Who runs the SML?" asks for an operator ("managed by OpenPEPPOL").
_ROLES = (
    # the head of an organisation: an English "director" of a department does not answer it
    (r"administrerende direktør|adm\.? direktør|daglig leder|konsernsjef|ceo|chief executive|"
     r"managing director|director[- ]general|executive director",
     ("direktør", "director general", "director-general", "managing director", "executive director",
      "daglig leder", "konsernsjef", "ceo", "chief executive")),
    (r"direktør|director", ("direktør", "director", "daglig leder", "konsernsjef", "ceo", "chief executive")),
    (r"styreleder|styrets leder|chair(?:man|woman|person)?(?: of the board)?",
     ("styreleder", "styrets leder", "chair", "styreleiar")),
    (r"ordfører|ordførar|mayor", ("ordfører", "ordførar", "mayor")),
    (r"produkteier|product owner", ("produkteier", "product owner")),
    (r"kontaktperson|contact person|point of contact", ("kontaktperson", "contact person", "point of contact")),
    (r"leder|leiar|sjef|head|leader", ("leder", "leiar", "sjef", "head", "leader", "ledet av", "ledes av",
                                       "direktør", "director", "styreleder", "chair")),
)
_ROLE_ASKED = [
    # "Hvem er ...", "Hvem i KS er ...", "Who at Digdir is ..."
    (re.compile(r"^\s*(?:(?:hvem|kven)(?:\s+(?:i|hos|ved|på)\s+[\w-]+)?\s+(?:er|var|blir|ble|vert|vart)|"
                r"who(?:\s+(?:in|at)\s+[\w-]+)?\s+(?:is|was|will be|'s))\s+"
                r"(?:(?:den|det|the)\s+)?(?:(?:nåværende|noverande|nye?|current|present|new)\s+)?"
                r"(?:" + asked + r")(?:en|er|a|s)?\b", re.IGNORECASE), accepted)
    for asked, accepted in _ROLES
] + [(re.compile(r"^\s*(?:(?:hvem|kven)\s+(?:leder|leiar)|who\s+(?:heads|leads))\b", re.IGNORECASE),
      (*_ROLES[-1][1], "leads", "led by", "heads"))]


def asks_for_role(question: str) -> tuple[str, ...]:
    """The words that name the role a question asks the holder of ("Hvem er ordfører i ...":
    ordfører, mayor), or () when it asks for none."""
    for pattern, accepted in _ROLE_ASKED:
        if pattern.search(question):
            return accepted
    return ()


_NO_LETTER_BEFORE = r"(?<![0-9a-zæøåäöüéèàáóò])"
_ROLE_END = r"(?:en|er|ene|ens|s|'s|a|ar|ane)?(?![0-9a-zæøåäöüéèàáóò])"  # "direktøren", not "directorate"


def names_role(sentence: str, role: Sequence[str]) -> bool:
    """Does `sentence` use one of the words `role` (from `asks_for_role`), perhaps inflected?"""
    lowered = sentence.lower()
    return any(re.search(_NO_LETTER_BEFORE + re.escape(r.lower()) + _ROLE_END, lowered) for r in role)


def names(sentence: str, known: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """Capitalised words of a sentence that are names: not the first word, unless `known` (lower case) has it.

    `known` holds words seen capitalised inside a sentence elsewhere, so "Microsoft og ..." counts.
    """
    out = []
    for i, w in enumerate(tokens(sentence)):
        if not w[0].isupper() or w.lower() in STOPWORDS or any(ch.isdigit() for ch in w):
            continue
        if i > 0 or w.lower() in known:
            out.append(w)
    return out


_JOINERS = frozenset("and of for the".split())  # English names: "Directorate of Health"


def question_names(question: str) -> list[str]:
    """Names the question is about: capitalised words after the first ("i Oslo", "the CEO"),
    and the name a hyphenated compound is built on ("KI-modellen": "KI").

    Runs of capitalised words, also across "and", "of" ("Contact and Reservation Register",
    "Tromsø Airport"), are left out, since an English question often translates a Norwegian
    name, and so are adjectives such as "Norwegian".
    """
    toks = tokens(question)
    out: list[str] = []
    for i, w in enumerate(toks):
        if i == 0 or not w[0].isupper() or w.lower() in STOPWORDS or _ADJECTIVE.search(w):
            continue
        if any(toks[j][:1].isupper() for j in (i - 2, i - 1, i + 1, i + 2)
               if 0 < j < len(toks) and (abs(j - i) == 1 or toks[(i + j) // 2].lower() in _JOINERS)):
            continue
        head, _, tail = w.partition("-")
        if tail[:1].islower():  # a compound on a name: "KS-artikkelen" is about KS, "NAV-kontoret" about NAV
            w = head
        if w not in out:
            out.append(w)
    return out


# English names whose Norwegian form differs: an English question about "Norway" is answered by "Norge".
_NORWEGIAN_FORMS = {
    "norway": ("norge", "noreg", "norsk"), "europe": ("europa", "europeisk"), "sweden": ("sverige", "svensk"),
    "denmark": ("danmark", "dansk"), "iceland": ("island", "islandsk"), "ai": ("ki",),
}


def mentions(text: str, word: str) -> bool:
    """Does `text` contain `word`, allowing an inflected ending ("Oslo" in "Oslos", "Bergen" in "Bergens"),
    for the few English names whose Norwegian form differs, that form ("Norway": "Norge"), and one
    letter typed wrong, left out or added in a name of four letters or more ("Nortaship": "Nortraship")?"""
    lowered = text.lower()
    for w in (word.lower(), *_NORWEGIAN_FORMS.get(word.lower(), ())):
        stem_ = w[: max(4, len(w) - 2)] if len(w) > 4 else w
        if re.search(_NO_LETTER_BEFORE + re.escape(stem_), lowered):
            return True
    w = word.lower()
    return len(w) >= 4 and any(t[0] == w[0] and _one_edit(w, t) for t in set(words(lowered)) if len(t) >= 4)


def _one_edit(a: str, b: str) -> bool:
    """Is `b` `a` with at most one letter changed, left out or added?"""
    if abs(len(a) - len(b)) > 1:
        return False
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    return a[i + 1:] == b[i + 1:] or a[i:] == b[i + 1:] or a[i + 1:] == b[i:]
