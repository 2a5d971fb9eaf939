"""HTML for the web chat: labels in Bokmål and English, source cards, the document view.

Every piece of document text goes through `html.escape` here, and nowhere is
document text put into an attribute, so a document holding `<script>` or
`<img onerror=...>` is shown as text and never runs. Highlighting works on
offsets: a citation's quotes are exact substrings of its passage, and a
passage's `start`/`end` point into the document's text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any, Sequence

from .types import Answer, Document

LANGS = ("nb", "en")

LABELS: dict[str, dict[str, str]] = {
    "nb": {
        "title": "Kommuneassistenten",
        "subtitle": "Still spørsmål om dokumentene. Svarene siterer kildene sine.",
        "chat": "Samtale",
        "question": "Spørsmål",
        "placeholder": "Skriv et spørsmål og trykk Enter …",
        "send": "Spør",
        "new": "Ny samtale",
        "sources": "Kilder",
        "related": "Kan være relevant",
        "no_sources": "Kildene til svaret vises her.",
        "searching": "Søker i dokumentene …",
        "writing": "Skriver svaret …",
        "loading": "**Starter:** laster modellen og sjekker indeksen … Spørsmål venter til den er klar.",
        "refused": "Dokumentene svarer ikke på dette spørsmålet.",
        "refused_hint": "Disse avsnittene ligner mest, men svarer ikke på spørsmålet:",
        "open": "Vis i dokumentet",
        "document": "Dokument",
        "close": "Lukk dokumentet",
        "missing_doc": "Dokumentet finnes ikke lenger i indeksen.",
        "page": "s.",
        "status": "**Indeks:** {documents} dokumenter · {chunks} avsnitt · modell {model} · oppdatert {updated}",
        "never": "aldri",
        "thanks_up": "Takk for tilbakemeldingen.",
        "thanks_down": "Takk – vi bruker tilbakemeldingen til å bli bedre.",
        "error": "Feil",
        "language": "Språk",
        "admin": "Admin",
        "password": "Passord",
        "login": "Logg inn",
        "logout": "Logg ut",
        "login_ok": "Du er logget inn.",
        "login_bad": "Feil passord.",
        "login_locked": "For mange feil forsøk. Prøv igjen om {seconds} sekunder.",
        "upload": "Last opp dokumenter",
        "upload_button": "Last opp og indekser",
        "upload_hint": "Tillatte typer: {types}. Største fil: {size}.",
        "delete_doc": "Dokument som skal slettes",
        "delete": "Slett dokumentet",
        "indexing": "Indekserer",
        "not_logged_in": "Logg inn først.",
        "saved": "Lagret",
        "refused_file": "Avvist",
        "deleted": "Slettet",
    },
    "en": {
        "title": "Municipal assistant",
        "subtitle": "Ask about the documents. The answers cite their sources.",
        "chat": "Conversation",
        "question": "Question",
        "placeholder": "Type a question and press Enter …",
        "send": "Ask",
        "new": "New conversation",
        "sources": "Sources",
        "related": "May be related",
        "no_sources": "The answer's sources appear here.",
        "searching": "Searching the documents …",
        "writing": "Writing the answer …",
        "loading": "**Starting:** loading the model and checking the index … Questions wait until it is ready.",
        "refused": "The documents do not answer this question.",
        "refused_hint": "These passages come closest, but do not answer the question:",
        "open": "Show in document",
        "document": "Document",
        "close": "Close document",
        "missing_doc": "The document is no longer in the index.",
        "page": "p.",
        "status": "**Index:** {documents} documents · {chunks} passages · model {model} · updated {updated}",
        "never": "never",
        "thanks_up": "Thank you for the feedback.",
        "thanks_down": "Thank you – we use the feedback to improve.",
        "error": "Error",
        "language": "Language",
        "admin": "Admin",
        "password": "Password",
        "login": "Log in",
        "logout": "Log out",
        "login_ok": "You are logged in.",
        "login_bad": "Wrong password.",
        "login_locked": "Too many failed attempts. Try again in {seconds} seconds.",
        "upload": "Upload documents",
        "upload_button": "Upload and index",
        "upload_hint": "Allowed types: {types}. Largest file: {size}.",
        "delete_doc": "Document to delete",
        "delete": "Delete the document",
        "indexing": "Indexing",
        "not_logged_in": "Log in first.",
        "saved": "Saved",
        "refused_file": "Refused",
        "deleted": "Deleted",
    },
}

EXAMPLES: dict[str, tuple[str, ...]] = {
    "nb": ("Hvordan kom den nye søknaden om sosialhjelp i stand?",
           "How did the social-assistance application come about?",
           "Hva er Designsystemet?"),
    "en": ("How did the social-assistance application come about?",
           "Hvordan kom den nye søknaden om sosialhjelp i stand?",
           "What is Designsystemet?"),
}

# Above this many characters the document view shows a window around the passage.
DOC_WINDOW = 200_000

CSS = """
.source-card {border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px 10px;
  background: var(--background-fill-secondary);}
.source-card .num {font-weight: 700; margin-right: 6px;}
.source-card .title {font-weight: 600;}
.source-card .where {color: var(--body-text-color-subdued); font-size: 0.85em; margin: 2px 0 6px;}
.source-card .passage {white-space: pre-wrap; font-size: 0.92em; max-height: 14em; overflow: auto;}
mark.quote {background: #ffe58a; color: #000; padding: 0 1px; border-radius: 2px;}
.doc-view {position: relative; white-space: pre-wrap; max-height: 65vh; overflow: auto; padding: 10px;
  border: 1px solid var(--border-color-primary); border-radius: 8px; font-size: 0.92em;}
.doc-view .passage {background: #e6f0ff; color: #000; border-left: 3px solid #3b82f6;}
.notice-refused {border-left: 4px solid #d97706; padding: 6px 10px; background: #fff7e6; color: #000;}
"""

# Scrolls the document view so the passage is in sight (run after the view is filled).
SCROLL_JS = """() => { setTimeout(() => { const v = document.querySelector('#doc-view');
  const m = v && v.querySelector('.passage'); if (!m) { return; }
  v.scrollTop = Math.max(0, m.offsetTop - v.clientHeight / 4);
  document.querySelector('#document').scrollIntoView({block: 'start', behavior: 'instant'}); }, 60); }"""


@dataclass(frozen=True)
class SourceRef:
    """What a source card needs to open its document: the passage and the cited sentences."""

    number: int
    doc_id: str
    title: str
    headings: tuple[str, ...]
    page: int | None
    start: int
    end: int
    text: str
    quotes: tuple[str, ...] = ()


def label(lang: str, key: str, **values: Any) -> str:
    text = LABELS.get(lang, LABELS["nb"])[key]
    return text.format(**values) if values else text


def source_refs(answer: Answer) -> list[SourceRef]:
    """The cited passages of an answer, or for a refusal its hits ("may be related")."""
    if answer.citations:
        return [SourceRef(c.number, c.hit.doc_id, c.hit.title, c.hit.headings, c.hit.page, c.hit.start,
                          c.hit.end, c.hit.text, c.quotes) for c in answer.citations]
    return [SourceRef(h.rank, h.doc_id, h.title, h.headings, h.page, h.start, h.end, h.text)
            for h in answer.hits]


def quote_spans(text: str, quotes: Sequence[str]) -> list[tuple[int, int]]:
    """Sorted, merged (start, end) spans of each quote's first occurrence in `text`."""
    spans = []
    for q in quotes:
        i = text.find(q) if q else -1
        if i >= 0:
            spans.append((i, i + len(q)))
    merged: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        else:
            merged.append((s, e))
    return merged


def highlight(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """`text` escaped, with each span wrapped in `<mark class="quote">`."""
    out, pos = [], 0
    for s, e in spans:
        out.append(escape(text[pos:s]))
        out.append(f'<mark class="quote">{escape(text[s:e])}</mark>')
        pos = e
    out.append(escape(text[pos:]))
    return "".join(out)


def _where(ref: SourceRef, lang: str) -> str:
    parts = [" › ".join(ref.headings)] if ref.headings else []
    if ref.page:
        parts.append(f"{label(lang, 'page')} {ref.page}")
    return " · ".join(parts) or ref.doc_id


def source_card(ref: SourceRef, lang: str) -> str:
    """One source card: number, title, heading path and page, passage with the quotes highlighted."""
    return (f'<div class="source-card" data-number="{ref.number}">'
            f'<div><span class="num">[{ref.number}]</span><span class="title">{escape(ref.title or ref.doc_id)}'
            f'</span></div><div class="where">{escape(_where(ref, lang))}</div>'
            f'<div class="passage">{highlight(ref.text, quote_spans(ref.text, ref.quotes))}</div></div>')


def sources_header(kind: str, lang: str) -> str:
    """The top of the sources panel: "none", "searching", "writing" (a model is streaming), "answer",
    "refused" or "refused-none" (no hits). Both busy kinds carry the class `searching`."""
    if kind in ("searching", "writing"):
        return f'<p class="searching">{escape(label(lang, kind))}</p>'
    if kind in ("refused", "refused-none"):
        hint = label(lang, "refused_hint") if kind == "refused" else ""
        related = f'<h4>{escape(label(lang, "related"))}</h4>' if kind == "refused" else ""
        return (f'<div class="notice-refused"><strong>{escape(label(lang, "refused"))}</strong>'
                f'<br>{escape(hint)}</div>{related}')
    if kind == "answer":
        return f"<h4>{escape(label(lang, 'sources'))}</h4>"
    return f"<p>{escape(label(lang, 'no_sources'))}</p>"


def document_view(doc: Document | None, ref: SourceRef, lang: str, window: int = DOC_WINDOW) -> str:
    """The whole document, escaped, with the passage marked (`.passage`) and the quotes highlighted."""
    if doc is None:
        return f"<p>{escape(label(lang, 'missing_doc'))}</p>"
    text = doc.text
    start, end = ref.start, ref.end
    if text[start:end] != ref.text:  # the document changed since: find the passage again
        found = text.find(ref.text)
        start, end = (found, found + len(ref.text)) if found >= 0 else (-1, -1)
    lo, hi = 0, len(text)
    if len(text) > window:
        centre = start if start >= 0 else 0
        lo = max(0, centre - window // 2)
        hi = min(len(text), lo + window)
    head = f"<h4>{escape(doc.title or doc.id)}</h4><div class='where'>{escape(doc.id)}</div>"
    if start < 0:
        body = escape(text[lo:hi])
    else:
        passage = text[start:end]
        body = (("…" if lo else "") + escape(text[lo:start]) + '<span class="passage">'
                + highlight(passage, quote_spans(passage, ref.quotes)) + "</span>"
                + escape(text[end:hi]) + ("…" if hi < len(text) else ""))
    return f'{head}<div class="doc-view" id="doc-view">{body}</div>'


def answer_markdown(answer: Answer) -> str:
    """The chat message for a finished answer (see `chat_markdown`)."""
    return chat_markdown(answer.text)


def chat_markdown(text: str) -> str:
    """A chat message from answer text, streamed or final: HTML escaped (it quotes documents).

    Markdown links and images are broken up too (`](` becomes `]\\(`), so a quoted document
    or a language model cannot make the chat load an image or show a disguised link.
    """
    text = escape(text, quote=False)
    return text.replace("](", "]\\(").replace("![", "!\\[")


def status_line(info: Any, lang: str) -> str:
    updated = (datetime.fromtimestamp(info.updated_at).strftime("%Y-%m-%d %H:%M")
               if info.updated_at else label(lang, "never"))
    return label(lang, "status", documents=info.documents, chunks=info.chunks, model=info.model,
                 updated=updated)
