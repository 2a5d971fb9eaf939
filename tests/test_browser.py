"""The web chat in a real browser: Debian's chromium driven by Playwright, against the server on loopback.

The server runs in-process with the real default model over a small corpus
(the seed article plus three tiny documents, one full of HTML and script).
Screenshots are always taken; with UPDATE_SCREENSHOTS=1 they replace the
README's in docs/screenshots/, otherwise they go to a temporary folder.
Without /usr/bin/chromium these tests skip locally and fail in CI (CI=true).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import pytest

from conftest import ROOT, SEED

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "test-admin-passord"
EXAMPLE_NB = "Hvordan kom den nye søknaden om sosialhjelp i stand?"
UNANSWERABLE = "What is the population of Jupiter's moons?"
XSS_DOC = ("Skjemaveiledning for byggesak\n\n"
           "Veiledningen for byggesaksskjemaet inneholder eksempelkode: <script>alert(1)</script> "
           "og et bilde <img src=x onerror=alert(2)> som aldri skal kjøres i nettleseren.\n")
UPLOADED = ("# Fuglekasser\n\nKommunens fuglekasseordning gir hver skoleklasse tolv gratis fuglekasser av "
            "lerketre hvert år i april.\n")
STREAMED = ("Den nye søknaden om sosialhjelp kom i stand gjennom samarbeid mellom kommuner, KS, NAV og "
            "leverandørene [1]. <img src=x onerror=alert(3)> Søknadsprosessen ble raskere og enklere [1].")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run"]


def _need(condition: bool, why: str) -> None:
    if not condition:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why} (required in CI)")
        pytest.skip(why)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory,  # type: ignore[no-untyped-def]
           real_embedder) -> Iterator[tuple[str, object]]:
    _need(CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium")
    from assistant.core import Assistant
    from assistant.settings import Settings
    from assistant.web import build_app, start_server

    corpus = tmp_path_factory.mktemp("corpus")
    shutil.copy(SEED, corpus / SEED.name)
    (corpus / "bibliotek.md").write_text("# Biblioteket\n\nBiblioteket i kommunen har åpent mandag til fredag "
                                         "fra 10 til 18. Lånekort er gratis for alle innbyggere.\n")
    (corpus / "vann.md").write_text("# Vann og avløp\n\nKommunen sender faktura for vann og avløp fire ganger "
                                    "i året. Gebyret fastsettes av kommunestyret.\n")
    (corpus / "byggesak.txt").write_text(XSS_DOC)
    settings = Settings.load(env={}, index_dir=tmp_path_factory.mktemp("index"), corpus_dirs=[corpus])
    bot = Assistant.open(settings=settings, embedder=real_embedder)
    bot.index()
    running = start_server(build_app(bot, corpus_dirs=[corpus], admin_password=PASSWORD))
    yield running.url, bot
    running.stop()
    bot.close()


@pytest.fixture(scope="module")
def served_llm(served: tuple[str, object], real_embedder) -> Iterator[tuple[str, object]]:  # type: ignore[no-untyped-def]
    """A second server over the same index whose answers come from a fake language model that trickles."""
    from assistant.core import Assistant
    from assistant.web import build_app, start_server
    from llm_server import llm_server

    with llm_server() as (url, script):
        script.mode, script.content, script.delay = "trickle", STREAMED, 0.08
        settings = replace(served[1].settings, llm_url=url, llm_timeout=30.0)  # type: ignore[attr-defined]
        bot = Assistant.open(settings=settings, embedder=real_embedder)
        running = start_server(build_app(bot))
        yield running.url, script
        running.stop()
        bot.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: docs/screenshots/ when UPDATE_SCREENSHOTS=1, else a temporary folder."""
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        folder = ROOT / "docs" / "screenshots"
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def server(served: tuple[str, object]) -> str:
    return served[0]


@pytest.fixture(scope="module")
def browser(server: str) -> Iterator[object]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need(False, "playwright is not installed: pip install playwright")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server: str):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1400, "height": 950}, locale="nb-NO")
    page = context.new_page()
    page.set_default_timeout(60_000)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.dialogs = dialogs
    page.goto(server)
    page.locator("#question textarea").wait_for()
    yield page
    context.close()


def ask(page, question: str) -> None:  # type: ignore[no-untyped-def]
    page.locator("#question textarea").fill(question)
    page.locator("#send").click()


def wait_answered(page) -> None:  # type: ignore[no-untyped-def]
    """Wait until the sources panel leaves the "searching" state."""
    page.wait_for_function("() => { const h = document.querySelector('#sources-head');"
                           " return h && h.innerText.trim() && !h.querySelector('.searching'); }")
    page.wait_for_timeout(300)


def test_example_question_is_answered_with_the_seed_article_highlighted(  # type: ignore[no-untyped-def]
        page, served, shots: Path) -> None:
    from playwright.sync_api import expect

    from assistant.feedback import read_feedback

    page.locator("#chatbot button", has_text=EXAMPLE_NB).click()  # the example on the empty chat
    expect(page.locator("#sources-head")).to_contain_text("Kilder")
    expect(page.locator("#chatbot")).to_contain_text("[1]")
    card = page.locator("#source-1 .source-card")
    expect(card).to_contain_text("En innovasjonskraft å regne med")
    expect(card.locator("mark.quote").first).to_contain_text("sosialhjelp")
    page.screenshot(path=str(shots / "chat-with-sources.png"))
    assert (shots / "chat-with-sources.png").stat().st_size > 10_000

    page.get_by_role("button", name=re.compile(r"^(Like|Liker)$")).last.click()  # thumbs up
    expect(page.locator("#notice")).to_contain_text("Takk")
    rows = read_feedback(served[1].index_dir)
    assert rows[-1]["rating"] == 1 and rows[-1]["question"] == EXAMPLE_NB and rows[-1]["hits"]

    page.locator("#open-source-1").click()
    passage = page.locator("#doc-view .passage")
    expect(passage).to_contain_text("søknad om sosialhjelp")
    expect(passage).to_be_in_viewport()
    expect(page.locator("#doc-view")).to_contain_text("Det strammer seg til i norsk økonomi")  # the whole text
    page.wait_for_timeout(200)
    page.screenshot(path=str(shots / "document-view.png"))


def test_unanswerable_question_shows_the_refusal(page, shots: Path) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page.locator("#language input[value='en']").check()
    expect(page.locator("#send")).to_have_text("Ask")
    ask(page, UNANSWERABLE)
    wait_answered(page)
    expect(page.locator("#sources-head .notice-refused")).to_contain_text("The documents do not answer")
    expect(page.locator("#chatbot")).to_contain_text("I could not find this in the documents.")
    assert page.locator("#chatbot").inner_text().count("[1]") == 0
    page.screenshot(path=str(shots / "refusal.png"))
    page.locator("#new-conversation").click()  # clears the chat and shows the examples again
    expect(page.locator("#chatbot button", has_text=EXAMPLE_NB)).to_be_visible()
    expect(page.locator("#chatbot")).not_to_contain_text("Jupiter")
    expect(page.locator("#sources-head")).to_contain_text("The answer's sources appear here.")


def test_admin_uploads_a_document_and_it_is_cited(page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Admin").click()
    page.locator("#admin-password input").fill("wrong")
    page.locator("#admin-login").click()
    expect(page.locator("#admin-message")).to_contain_text("Feil passord")
    page.locator("#admin-password input").fill(PASSWORD)
    page.locator("#admin-login").click()
    expect(page.locator("#admin-message")).to_contain_text("logget inn")
    upload = tmp_path / "fuglekasser.md"
    upload.write_text(UPLOADED, encoding="utf-8")
    page.locator("#admin-files input[type=file]").set_input_files(str(upload))
    page.wait_for_timeout(500)
    page.locator("#admin-upload").click()
    expect(page.locator("#admin-result")).to_contain_text("fuglekasser.md", timeout=90_000)
    expect(page.locator("#admin-result")).to_contain_text("+1")
    page.get_by_role("tab", name="Samtale").click()
    ask(page, "Hvor mange gratis fuglekasser får hver skoleklasse?")
    wait_answered(page)  # on a loaded 2-core machine an answer can take longer than expect()'s 5 s
    expect(page.locator("#source-1 .source-card")).to_contain_text("Fuglekasser")
    expect(page.locator("#chatbot")).to_contain_text("[1]")


def test_html_in_a_document_is_shown_as_text_and_never_runs(page) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    ask(page, "Hva inneholder veiledningen for byggesaksskjemaet?")
    wait_answered(page)
    card = page.locator(".source-card", has_text="byggesak").first
    expect(card).to_contain_text("<script>alert(1)</script>")
    slot = card.locator("xpath=ancestor::*[starts-with(@id, 'source-')][1]")
    slot.locator("button").click()
    view = page.locator("#doc-view")
    expect(view).to_contain_text("<img src=x onerror=alert(2)>")
    page.wait_for_timeout(500)
    assert page.locator("#doc-view script, #doc-view img, .source-card img, .source-card script, "
                        "#chatbot img[src=x]").count() == 0
    assert page.dialogs == []


def test_a_language_model_answer_streams_into_the_chat(browser, served_llm) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1400, "height": 950}, locale="nb-NO")
    page = context.new_page()
    page.set_default_timeout(60_000)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        page.goto(served_llm[0])
        ask(page, EXAMPLE_NB)
        # Part of the text is shown while the answer is still being written (the panel is busy) ...
        page.wait_for_function("() => { const c = document.querySelector('#chatbot').innerText;"
                               " return c.includes('Den nye søknaden om') && !c.includes('enklere')"
                               " && document.querySelector('#sources-head .searching'); }", timeout=30_000)
        expect(page.locator("#sources-head")).to_contain_text("Skriver svaret")
        # ... then the final answer replaces it, with its citation and source card.
        wait_answered(page)
        chat = page.locator("#chatbot")
        expect(chat).to_contain_text("Søknadsprosessen ble raskere og enklere [1]")
        expect(chat).to_contain_text("<img src=x onerror=alert(3)>")  # the model's HTML is text
        expect(page.locator("#source-1 .source-card")).to_contain_text("En innovasjonskraft å regne med")
        assert "▍" not in chat.inner_text()
        assert page.locator("#chatbot img[src=x]").count() == 0 and dialogs == []
        assert served_llm[1].requests, "the language model was not asked"
    finally:
        context.close()
