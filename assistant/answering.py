"""From a question (and its chat history) to an `Answer`: retrieve, then compose.

The retrieval query folds in the previous turn for follow-ups (`followup.py`);
the reply follows the question's language; the extractive composer
(`compose.py`) quotes and cites, or refuses. An optional generator is wired in
`Assistant.ask` through `generate.py`; it falls back to the extractive answer.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .citations import format_sources
from .compose import compose_extractive
from .followup import retrieval_query
from .generate import generate_answer
from .language import detect_language
from .types import Answer, Hit

if TYPE_CHECKING:
    from .core import Assistant


def answer_question(bot: "Assistant", question: str, history: Sequence[tuple[str, str]] = (),
                    *, k: int = 5, on_text: Callable[[str], None] | None = None) -> Answer:
    """Retrieve for `question` (with the chat's context), then compose, or generate and check.

    The extractive answer is always made first: it decides refusals, and it is the
    fallback when a language model fails, times out or cites nothing.
    """
    t0 = time.perf_counter()
    query = retrieval_query(question, history)
    lang = detect_language(question, default="nb")
    hits = bot.retriever().search(query, k)
    t1 = time.perf_counter()
    s = bot.settings
    answer = compose_extractive(query, hits, bot.query_embedder, lang=lang, query_prompt=s.query_prompt,
                                passage_prompt=s.passage_prompt, refuse_below=s.refuse_below,
                                refuse_below_cross=s.refuse_below_cross)
    answer = replace(answer, question=question)
    generator = bot.generator()
    if generator is not None and not answer.refused:
        extractive = answer
        answer = generate_answer(generator, question, hits, lang=lang, history=history,
                                 timeout=s.llm_timeout, fallback=lambda: extractive, on_text=on_text)
    timings = {"retrieve": t1 - t0, **answer.timings, "total": time.perf_counter() - t0}
    return replace(answer, timings=timings)


def hit_json(h: Hit) -> dict[str, Any]:
    return {"rank": h.rank, "score": round(h.score, 4), "doc_id": h.doc_id, "title": h.title,
            "headings": list(h.headings), "page": h.page, "start": h.start, "end": h.end, "text": h.text,
            "dense_score": h.dense_score, "lexical_score": h.lexical_score, "lang": h.lang}


def answer_json(answer: Answer) -> dict[str, Any]:
    return {
        "question": answer.question, "answer": answer.text, "lang": answer.lang, "refused": answer.refused,
        "backend": answer.backend,
        "citations": [{"number": c.number, "doc_id": c.hit.doc_id, "title": c.hit.title,
                       "headings": list(c.hit.headings), "page": c.hit.page, "chunk_id": c.hit.chunk_id,
                       "quotes": list(c.quotes)} for c in answer.citations],
        "hits": [hit_json(h) for h in answer.hits],
        "timings": {k: round(v, 4) for k, v in answer.timings.items()},
    }


def format_answer(answer: Answer) -> str:
    """The answer and its sources as plain text, for the terminal."""
    return answer.text + "\n\n" + format_sources(answer)
