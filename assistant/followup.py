"""Follow-up questions: the retrieval query for a question asked in the middle of a chat.

"Hvem var med på det?" cannot be retrieved on its own: "det" points back at
the previous question. Without a language model, the rule is simple: when the
new question is short, leans on a pronoun or deictic word (det, dette, de,
it, that, they, ...) or opens like a continuation ("og", "hva med", "what
about"), the previous user question is put in front of it. If that question
was itself a follow-up, the one before it comes along too (at most
`max_turns` questions back). A self-contained question is returned as it is.

Limits: only the user's own questions are used, not the assistant's answers,
and a change of topic phrased as a short question is still merged.
"""

from __future__ import annotations

import re
from typing import Sequence

from .terms import content_words

__all__ = ["is_followup", "retrieval_query", "ANAPHORA"]

# Words that point back at something said before. "det"/"it" are also expletives
# ("det er", "it is"), so they only count in questions with few content words.
ANAPHORA = frozenset(
    """det den dette denne disse de dem deres dei deira han hun ho hans hennes henne ham der dit da
    sånn slik samme likt
    it its that this these those they them their he she him his her there then such same""".split()
)
_WEAK = frozenset({"det", "it", "der", "there", "da", "then", "de", "den", "dei"})
_CONTINUATION = re.compile(
    r"^\s*(?:og|men|eller|så|hva med|kva med|enn|og hva|og hvem|og hvor|og når|"
    r"and|but|or|so|what about|how about|and what|and who|also)\b",
    re.IGNORECASE,
)
_TOKEN = re.compile(r"[a-zæøåäöüéèàáóò]+", re.IGNORECASE)


def is_followup(question: str, *, short: int = 2, strong_limit: int = 5, weak_limit: int = 3) -> bool:
    """Does `question` lean on an earlier turn?

    True when it has at most `short` content words, opens like a continuation,
    or uses a pronoun/deictic word while having few content words of its own
    (`strong_limit` for words like "dette"/"they", `weak_limit` for "det"/"it").
    """
    n = len(content_words(question))
    if n <= short:
        return True
    if _CONTINUATION.match(question):
        return True
    words = {w.lower() for w in _TOKEN.findall(question)}
    pointing = words & ANAPHORA
    if not pointing:
        return False
    if pointing - _WEAK:
        return n <= strong_limit
    return n <= weak_limit


def retrieval_query(question: str, history: Sequence[tuple[str, str]], *, max_turns: int = 2) -> str:
    """The text to retrieve with: `question`, preceded by earlier user questions when it is a follow-up.

    `history` holds the earlier `(user, assistant)` turns, oldest first.
    """
    question = question.strip()
    if not history or not is_followup(question):
        return question
    earlier: list[str] = []
    for user, _assistant in reversed(history):
        user = user.strip()
        if not user:
            continue
        earlier.append(user)
        if len(earlier) >= max_turns or not is_followup(user):
            break
    if not earlier:
        return question
    return " ".join([*reversed(earlier), question])
