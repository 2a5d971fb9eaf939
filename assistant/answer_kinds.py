"""Kinds of answer a question asks for, beyond numbers and names, and how a sentence gives one.

Each `Kind` pairs a pattern that finds the kind in a question with one that finds
it in a sentence. A question about who won needs a sentence that says someone
won; "the first municipality to ..." needs one that says who was first; a
choice between named options ("BankID eller MinID?") asked with a superlative
needs a sentence that compares; "where is it held" needs a place; opening hours
need times or days. `refusal.answer_type_features` refuses when a question asks
for a kind and no sentence near its words gives it: the near misses these catch
are questions on a topic the documents cover, about a fact they never state.

Written on the project's own probe sets (README, "Answers"), kept narrow: each
pattern fires on a few question shapes, and a question that fits none is left
to the other rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

__all__ = ["Kind", "KINDS", "kinds_asked"]

_I = re.IGNORECASE


@dataclass(frozen=True)
class Kind:
    """`asked` finds the kind in a question; `given` finds it in a sentence. With `new_word`, the
    last word `given` matches must not be in the question ("Where is the Designsystemet launch held?"
    is not answered by "in Designsystemet")."""

    name: str
    asked: re.Pattern[str]
    given: re.Pattern[str]
    new_word: bool = False

    def answered_by(self, sentence: str, question: str) -> bool:
        if not self.new_word:
            return bool(self.given.search(sentence))
        asked = question.lower()
        return any(match.group().split()[-1].lower() not in asked for match in self.given.finditer(sentence))


KINDS: tuple[Kind, ...] = (
    Kind("winner",
         re.compile(r"^\s*(?:hvem|kven|who|hvilke[nt]?|kva|hva|which|what)\b.*\b(?:vant|vann|vinner\w*|won|wins|"
                    r"winners?)\b", _I),
         re.compile(r"\b(?:vant|vann)\b(?!\s+til)|\b(?:vinner\w*|won|winners?|tildelt|awarded|prisvinner\w*|"
                    r"gikk til|went to)\b", _I)),
    Kind("first",
         # not the first step of a procedure: "Hva er det første vi bør sjekke?", "the first thing to do"
         re.compile(r"\b(?:was|were|is|are|var|ble|er)\s+(?:the\s+|den\s+|det\s+)?(?:very\s+)?(?:first|første|"
                    r"først)\b(?!\s+(?:thing|things|step|steps|steg|trinn|vi|du|man|jeg|we|you|i|one)\b)|"
                    r"\b(?:first|første)\s+(?:kommune\w*|municipalit\w*|fylke\w*|county|etat\w*|agency|"
                    r"virksomhet\w*|organisation\w*|organization\w*)\b", _I),
         re.compile(r"\b(?:first|første|først|pioneer\w*|pioner\w*|earliest|tidligst)\b", _I)),
    # a superlative over named options ("Hvilken e-ID brukes mest, BankID eller MinID?"), or a comparative
    # against one ("Is it cheaper in Norway West than in Norway East?")
    Kind("comparison",
         re.compile(r"\b(?:mest|flest|oftest|hyppigst|vanligst|størst|minst|færrest|most|fewest|least|largest|"
                    r"biggest|smallest|more often|cheaper|billigere|dyrere)\b(?=.*\b(?:eller|or)\b)|"
                    r"\b(?:cheaper|billigere|dyrere|more expensive|faster|raskere|tregere|slower|safer|sikrere|"
                    r"bedre|better|worse|dårligere)\b(?=.*\b(?:enn|than)\b)", _I),
         re.compile(r"\b(?:mest|flest|fleste|oftest|hyppigst|vanligst|størst\w*|minst|færrest|flere|færre|mer|"
                    r"mindre|flertall\w*|majoritet\w*|most|more|fewer|fewest|less|least|majority|largest|"
                    r"biggest|smallest|cheaper|billigere|dyrere)\b|%|\bprosent\b|\bpercent\b", _I)),
    Kind("legal_reference",  # "Hvilken paragraf i sosialtjenesteloven ...", "Which section of the Act ..."
         re.compile(r"\b(?:hvilken|hvilke|hvilket|which|what)\s+(?:\w+\s+)?(?:paragraf\w*|lovparagraf\w*|"
                    r"lovbestemmelse\w*|section|sections|article|artikkel|hjemmel\w*|lovhjemmel\w*|"
                    r"legal basis)\b", _I),
         re.compile(r"§|\b(?:paragraf|section|article|artikkel|kapittel|chapter)\s+\d|\b(?:hjemmel|hjemlet)\b", _I)),
    Kind("venue",  # where an event is held, not where to send or find something
         re.compile(r"^\s*(?:hvor|kvar|where)\b.*\b(?:arranger\w*|holdt|holdes|avholdes|avholdt|finner sted|"
                    r"fant sted|foregår|foregikk|held|hosted|take place|takes place|took place)\b", _I),
         re.compile(r"\b(?:i|på|in|at|hos)\s+[A-ZÆØÅ][\w-]+|\b(?:digitalt|digital|online|nett|Teams|Zoom|"
                    r"strømm\w*|stream\w*)\b"), new_word=True),
    Kind("release",  # "I hvilken versjon ...", "In which release will ... be removed?"
         re.compile(r"\b(?:hvilken|hvilke|hvilket|which|what)\s+(?:\w+\s+)?(?:versjon|version|release|utgivelse)\b",
                    _I),
         re.compile(r"\b(?:versjon|version|release|utgivelse|v)\s*\.?\s*\d|\b\d+\.\d+(?:\.\d+)+\b", _I)),
    Kind("opening_hours",
         re.compile(r"\b(?:åpningstid\w*|opningstid\w*|opening hours|opening times)\b", _I),
         re.compile(r"\b\d{1,2}[:.]\d{2}\b|\bkl(?:\.|okka|okken)?\s*\d|\b(?:mandag|tirsdag|onsdag|torsdag|fredag|"
                    r"lørdag|søndag|måndag|tysdag|laurdag|sundag|monday|tuesday|wednesday|thursday|friday|"
                    r"saturday|sunday|hverdager|kvardagar|weekdays)\b", _I)),
)


def kinds_asked(question: str, kinds: Sequence[Kind] = KINDS) -> list[Kind]:
    """The kinds of answer `question` asks for (most questions: none)."""
    return [kind for kind in kinds if kind.asked.search(question)]
