"""The Gradio chat: conversation on the left, cited sources and the document view on the right.

`build_ui(bot, admin=..., gate=...)` returns a `gr.Blocks`; `web.build_app`
mounts it next to the JSON API. Labels are Bokmål by default with an English
toggle (`webhtml.LABELS`); answers follow the question's language. The named
endpoints `ask` and `search` are for `gradio_client`; the UI's own events are
private. The admin tab exists only when an `Admin` and a `LoginGate` are given.
With a language model the answer streams into the chat (`streaming.py`), its
text escaped like the final one, which replaces it when `ask` returns. With a
`Startup` that is not ready yet, the status line says the model is loading and
questions wait for it.
This module imports gradio at the top (its event annotations need it), so
only `web.build_app` imports it.
"""

from __future__ import annotations

import logging
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .answering import answer_json, hit_json
from .errors import AssistantError
from .feedback import record_feedback
from .startup import Startup
from .streaming import Partial, stream_ask
from .webhtml import (EXAMPLES, SCROLL_JS, SourceRef, answer_markdown, chat_markdown, document_view, label,
                      source_card, source_refs, sources_header, status_line)

import gradio as gr

if TYPE_CHECKING:
    from .admin import Admin, LoginGate
    from .core import Assistant

log = logging.getLogger(__name__)

MAX_SOURCES = 5
PRIVATE = {"api_visibility": "private"}
CURSOR = " ▍"  # after the streamed text while the model writes


def build_ui(bot: "Assistant", *, admin: "Admin | None" = None, gate: "LoginGate | None" = None,
             k: int = MAX_SOURCES, startup: Startup | None = None) -> "gr.Blocks":
    k = min(k, MAX_SOURCES)
    startup = startup or Startup.done()

    def status(lang: str) -> str:
        return status_line(bot.info(), lang) if startup.ready else label(lang, "loading")

    def examples(lang: str) -> list[dict[str, str]]:
        return [{"text": q} for q in EXAMPLES[lang]]

    with gr.Blocks(title=label("nb", "title"), analytics_enabled=False) as demo:
        lang = gr.State("nb")
        history = gr.State([])   # [[question, answer text], ...] for follow-ups
        answers = gr.State({})   # chat message index -> answer_json, for feedback
        shown = gr.State({"kind": "none", "refs": []})  # what the sources panel shows

        with gr.Row(equal_height=True):
            header = gr.Markdown(f"## {label('nb', 'title')}\n{label('nb', 'subtitle')}")
            lang_pick = gr.Radio([("Norsk (bokmål)", "nb"), ("English", "en")], value="nb",
                                 label=label("nb", "language"), scale=0, min_width=260, elem_id="language")
        status_md = gr.Markdown(elem_id="index-status")
        with gr.Tabs():
            with gr.Tab(label("nb", "chat"), id="chat") as chat_tab:
                with gr.Row():
                    with gr.Column(scale=3):
                        chatbot = gr.Chatbot(label=label("nb", "chat"), show_label=False, examples=examples("nb"),
                                             height=520,
                                             elem_id="chatbot", buttons=["copy"])
                        with gr.Row():
                            box = gr.Textbox(show_label=False, placeholder=label("nb", "placeholder"), scale=5,
                                             elem_id="question", lines=1, max_lines=6)
                            send = gr.Button(label("nb", "send"), variant="primary", scale=1, elem_id="send")
                        new = gr.Button(label("nb", "new"), size="sm", elem_id="new-conversation")
                        notice = gr.Markdown(elem_id="notice")
                    with gr.Column(scale=2):
                        head = gr.HTML(sources_header("none", "nb"), elem_id="sources-head")
                        slots, cards, opens = [], [], []
                        for i in range(MAX_SOURCES):
                            with gr.Column(visible=False, elem_id=f"source-{i + 1}") as slot:
                                cards.append(gr.HTML())
                                opens.append(gr.Button(label("nb", "open"), size="sm",
                                                       elem_id=f"open-source-{i + 1}"))
                            slots.append(slot)
                        doc_html = gr.HTML(visible=False, elem_id="document")
                        close = gr.Button(label("nb", "close"), visible=False, size="sm", elem_id="close-document")
            admin_parts = _admin_tab(gr, bot, admin, gate, lang, status_md, startup) if admin and gate else []

        def panel(kind: str, refs: list[SourceRef], lng: str) -> list[Any]:
            out: list[Any] = [{"kind": kind, "refs": refs}, sources_header(kind, lng)]
            out += [source_card(refs[i], lng) if i < len(refs) else "" for i in range(MAX_SOURCES)]
            out += [gr.Column(visible=i < len(refs)) for i in range(MAX_SOURCES)]
            return out + [gr.HTML(visible=False), gr.Button(visible=False)]

        panel_out = [shown, head, *cards, *slots, doc_html, close]

        def respond(question: str, chat: list[dict[str, Any]], hist: list[list[str]],
                    ans: dict[int, Any], lng: str):  # type: ignore[no-untyped-def]
            question = (question or "").strip()
            if not question:
                yield [chat, "", hist, ans, gr.skip(), *panel("none", [], lng)]
                return
            chat = [*chat, {"role": "user", "content": escape(question, quote=False)},
                    {"role": "assistant", "content": label(lng, "searching")}]
            yield [chat, "", hist, ans, "", *panel("searching", [], lng)]
            answer, streamed = None, False
            try:
                startup.wait()
                for item in stream_ask(bot, question, [(str(u), str(a)) for u, a in hist]):
                    if isinstance(item, Partial):
                        chat = [*chat[:-1], {"role": "assistant", "content": chat_markdown(item.text) + CURSOR}]
                        rest = [gr.skip()] * len(panel_out) if streamed else panel("writing", [], lng)
                        streamed = True
                        yield [chat, gr.skip(), gr.skip(), gr.skip(), gr.skip(), *rest]
                    else:
                        answer = item
            except AssistantError as exc:
                chat = [*chat[:-1], {"role": "assistant",
                                     "content": f"**{label(lng, 'error')}:** {escape(str(exc))}"}]
                yield [chat, question, hist, ans, "", *panel("none", [], lng)]
                return
            assert answer is not None
            chat = [*chat[:-1], {"role": "assistant", "content": answer_markdown(answer)}]
            ans = {**ans, len(chat) - 1: answer_json(answer)}
            hist = [*hist, [question, answer.text]]
            kind = ("refused" if answer.hits else "refused-none") if answer.refused else "answer"
            yield [chat, "", hist, ans, "", *panel(kind, source_refs(answer)[:k], lng)]

        chat_io = dict(inputs=[box, chatbot, history, answers, lang],
                       outputs=[chatbot, box, history, answers, notice, *panel_out], **PRIVATE)
        box.submit(respond, **chat_io).then(status, lang, status_md, **PRIVATE)
        send.click(respond, **chat_io).then(status, lang, status_md, **PRIVATE)

        def pick_example(data: gr.SelectData) -> str:
            return str(data.value.get("text", "")) if isinstance(data.value, dict) else str(data.value)

        chatbot.example_select(pick_example, None, box, **PRIVATE).then(respond, **chat_io)

        def new_conversation(lng: str) -> list[Any]:
            return [[], "", [], {}, "", *panel("none", [], lng)]

        new.click(new_conversation, lang, [chatbot, box, history, answers, notice, *panel_out], **PRIVATE)
        chatbot.clear(new_conversation, lang, [chatbot, box, history, answers, notice, *panel_out], **PRIVATE)

        def on_like(ans: dict[int, Any], lng: str, data: gr.LikeData) -> str:
            index = data.index if isinstance(data.index, int) else data.index[0]
            answer = ans.get(index)
            if answer is None or data.liked not in (True, False):
                return ""
            record_feedback(bot, 1 if data.liked else -1, answer)
            return label(lng, "thanks_up" if data.liked else "thanks_down")

        chatbot.like(on_like, [answers, lang], notice, **PRIVATE)

        for i, button in enumerate(opens):
            def open_source(state: dict[str, Any], lng: str, i: int = i) -> list[Any]:
                refs = state.get("refs") or []
                if i >= len(refs):
                    return [gr.HTML(visible=False), gr.Button(visible=False)]
                ref = refs[i]
                return [gr.HTML(document_view(bot.document(ref.doc_id), ref, lng), visible=True),
                        gr.Button(visible=True)]

            button.click(open_source, [shown, lang], [doc_html, close], **PRIVATE).then(
                None, js=SCROLL_JS, **PRIVATE)
        close.click(lambda: [gr.HTML(visible=False), gr.Button(visible=False)], None, [doc_html, close],
                    **PRIVATE)

        def relabel(lng: str, state: dict[str, Any]) -> list[Any]:
            out = [lng, f"## {label(lng, 'title')}\n{label(lng, 'subtitle')}", gr.Radio(label=label(lng, "language")),
                   status(lng), gr.Tab(label=label(lng, "chat")),
                   gr.Chatbot(label=label(lng, "chat"), examples=examples(lng)),
                   gr.Textbox(placeholder=label(lng, "placeholder")), gr.Button(label(lng, "send")),
                   gr.Button(label(lng, "new")), gr.Button(label(lng, "close")),
                   sources_header(state.get("kind", "none"), lng)]
            out += [gr.Button(label(lng, "open")) for _ in opens]
            out += [source_card(r, lng) for r in state.get("refs", [])]
            out += ["" for _ in range(MAX_SOURCES - len(state.get("refs", [])))]
            return out + [update(lng) for _, update in admin_parts]

        lang_pick.change(relabel, [lang_pick, shown],
                         [lang, header, lang_pick, status_md, chat_tab, chatbot, box, send, new, close, head,
                          *opens, *cards, *(c for c, _ in admin_parts)], **PRIVATE)
        demo.load(status, lang, status_md, **PRIVATE)
        if not startup.ready:  # refresh the status line each second until the model is loaded
            timer = gr.Timer(1.0)
            timer.tick(lambda lng: [status(lng), gr.Timer(active=not startup.ready)], lang, [status_md, timer],
                       **PRIVATE)
        _named_endpoints(gr, bot, startup)
    return demo


def _named_endpoints(gr: Any, bot: "Assistant", startup: Startup) -> None:
    """`ask` and `search` for `gradio_client`, returning the same JSON as `/api/ask` and `/api/search`."""

    def ask(question: str, history: list[list[str]] | None = None) -> dict[str, Any]:
        try:
            startup.wait()
            return answer_json(bot.ask(question, [(str(u), str(a)) for u, a in (history or [])]))
        except AssistantError as exc:
            raise gr.Error(str(exc)) from None

    def search(question: str, k: int = 5) -> dict[str, Any]:
        try:
            startup.wait()
            return {"question": question, "hits": [hit_json(h) for h in bot.search(question, k=int(k))]}
        except AssistantError as exc:
            raise gr.Error(str(exc)) from None

    gr.api(ask, api_name="ask", concurrency_limit=4)
    gr.api(search, api_name="search", concurrency_limit=4)


def _admin_tab(gr: Any, bot: "Assistant", admin: "Admin", gate: "LoginGate", lang: Any,
               status_md: Any, startup: Startup) -> list[tuple[Any, Any]]:
    """The admin tab; returns (component, relabel(lang) -> update) pairs for the language toggle."""
    from .admin import UPLOAD_SUFFIXES

    limit = f"{admin.max_bytes / (1024 * 1024):.0f} MB"
    with gr.Tab(label("nb", "admin"), id="admin") as tab:
        authed = gr.State(False)
        with gr.Group(visible=True) as login_box:
            password = gr.Textbox(type="password", label=label("nb", "password"), elem_id="admin-password")
            login = gr.Button(label("nb", "login"), variant="primary", elem_id="admin-login")
        message = gr.Markdown(elem_id="admin-message")
        with gr.Column(visible=False) as work:
            files = gr.File(file_count="multiple", file_types=list(UPLOAD_SUFFIXES), label=label("nb", "upload"),
                            elem_id="admin-files")
            hint = gr.Markdown(label("nb", "upload_hint", types=" ".join(UPLOAD_SUFFIXES), size=limit))
            upload = gr.Button(label("nb", "upload_button"), variant="primary", elem_id="admin-upload")
            result = gr.Markdown(elem_id="admin-result")
            pick = gr.Dropdown(choices=[], label=label("nb", "delete_doc"), elem_id="admin-doc")
            delete = gr.Button(label("nb", "delete"), variant="stop", elem_id="admin-delete")

    def do_login(pw: str, lng: str, request: gr.Request) -> list[Any]:
        client = request.client.host if request and request.client else "?"
        wait = gate.locked_for(client)
        if wait > 0:
            return [False, "", label(lng, "login_locked", seconds=int(wait) + 1), gr.skip(), gr.skip(), gr.skip()]
        if not gate.check(client, pw):
            return [False, "", label(lng, "login_bad"), gr.skip(), gr.skip(), gr.skip()]
        return [True, "", label(lng, "login_ok"), gr.Group(visible=False), gr.Column(visible=True),
                gr.Dropdown(choices=admin.documents(), value=None)]

    login_out = [authed, password, message, login_box, work, pick]
    login.click(do_login, [password, lang], login_out, **PRIVATE)
    password.submit(do_login, [password, lang], login_out, **PRIVATE)

    def progress_callback(progress: Any, lng: str):  # type: ignore[no-untyped-def]
        def update(stage: str, done: int, total: int) -> None:
            progress((done, max(total, 1)), desc=f"{label(lng, 'indexing')}: {stage}")
        return update

    def ready(lng: str) -> None:
        """Uploads and deletions wait for the start-up's own index run."""
        try:
            startup.wait()
        except AssistantError as exc:
            raise gr.Error(str(exc)) from None

    def do_upload(paths: list[str] | None, ok: bool, lng: str, progress: gr.Progress = gr.Progress()) -> list[Any]:
        if not ok:
            raise gr.Error(label(lng, "not_logged_in"))
        ready(lng)
        saved = admin.save_uploads([(Path(p).name, Path(p)) for p in (paths or [])])
        lines = [f"- {label(lng, 'saved')}: {escape(s.name)}" if s.name
                 else f"- {label(lng, 'refused_file')}: {escape(s.error or '')}" for s in saved]
        if any(s.name for s in saved):
            report = admin.reindex(progress_callback(progress, lng))
            lines.append(f"\n{label(lng, 'indexing')}: +{len(report.added)} ~{len(report.changed)} "
                         f"−{len(report.removed)}; {report.documents_total} / {report.chunks_total}")
            lines += [f"- {label(lng, 'refused_file')}: {escape(s.doc)}: {escape(s.reason)}" for s in report.skipped]
        return ["\n".join(lines), None, gr.Dropdown(choices=admin.documents()), status_line(bot.info(), lng)]

    upload.click(do_upload, [files, authed, lang], [result, files, pick, status_md], **PRIVATE)

    def do_delete(doc_id: str | None, ok: bool, lng: str, progress: gr.Progress = gr.Progress()) -> list[Any]:
        if not ok:
            raise gr.Error(label(lng, "not_logged_in"))
        if not doc_id:
            return [gr.skip(), gr.skip(), gr.skip()]
        ready(lng)
        try:
            report = admin.delete(doc_id, progress_callback(progress, lng))
        except AssistantError as exc:
            raise gr.Error(str(exc)) from None
        text = (f"{label(lng, 'deleted')}: {escape(doc_id)} (−{len(report.removed)}; "
                f"{report.documents_total} / {report.chunks_total})")
        return [text, gr.Dropdown(choices=admin.documents(), value=None), status_line(bot.info(), lng)]

    delete.click(do_delete, [pick, authed, lang], [result, pick, status_md], **PRIVATE)

    return [(tab, lambda lng: gr.Tab(label=label(lng, "admin"))),
            (password, lambda lng: gr.Textbox(label=label(lng, "password"))),
            (login, lambda lng: gr.Button(label(lng, "login"))),
            (files, lambda lng: gr.File(label=label(lng, "upload"))),
            (hint, lambda lng: label(lng, "upload_hint", types=" ".join(UPLOAD_SUFFIXES), size=limit)),
            (upload, lambda lng: gr.Button(label(lng, "upload_button"))),
            (pick, lambda lng: gr.Dropdown(label=label(lng, "delete_doc"))),
            (delete, lambda lng: gr.Button(label(lng, "delete")))]
