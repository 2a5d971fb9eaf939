"""Readers against known answers: encodings, Markdown/MDX, JSON, HTML, DOCX, PDF, boilerplate."""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path

import pytest
from conftest import SEED, shared
from fixtures.documents import HEADER, HTML_PAGE, make_docx, make_pdf

from assistant.cleaning import is_boilerplate, strip_boilerplate
from assistant.errors import ReadError
from assistant.readers import SUPPORTED_SUFFIXES, is_licence_file, read_document
from assistant.readers.text import decode_text
from assistant.types import Document

LIMITS = {"max_bytes": 50 * 1024 * 1024, "max_chars": 2_000_000}
WORDS = "Tromsø, Ålesund og særskilt hjelp til innbyggere i kommunen."


def read(path: Path, root: Path | None = None, **limits: int) -> Document:
    return read_document(path, root or path.parent, **{**LIMITS, **limits})


def check_layout(doc: Document) -> None:
    """The layout rules the chunker relies on."""
    assert doc.text == doc.text.strip()
    assert "\n\n\n" not in doc.text
    assert not re.search(r"[ \t]\n", doc.text), "trailing whitespace"
    last = 0
    for section in doc.sections:
        assert last <= section.start < section.end <= len(doc.text)
        last = section.end


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "cp1252"])
def test_plain_text_encodings(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "brev.txt"
    path.write_bytes(WORDS.encode(encoding) if encoding != "utf-16" else WORDS.encode("utf-16"))
    doc = read(path)
    assert doc.text == WORDS
    for word in ("Tromsø", "Ålesund", "særskilt"):
        assert word in doc.text
    assert doc.id == "brev.txt" and doc.source == str(path.absolute())


def test_invalid_utf8_in_the_middle_decodes_with_replacement() -> None:
    data = ("Tromsø og Ålesund. " * 50).encode() + b"\xff\xfe ugyldig " + ("særskilt " * 50).encode()
    text, encoding = decode_text(data)
    assert encoding == "utf-8"
    assert "Tromsø" in text and "særskilt" in text and "\ufffd" in text
    assert "Ã" not in text  # not mis-decoded as cp1252


def test_cp1252_is_not_mistaken_for_utf8() -> None:
    text, encoding = decode_text("Særskilt tilskudd for Tromsø – «viktig».".encode("cp1252"))
    assert encoding == "cp1252" and text == "Særskilt tilskudd for Tromsø – «viktig»."


def test_seed_article_drops_web_boilerplate() -> None:
    doc = read(SEED, SEED.parent)
    check_layout(doc)
    for junk in ("Skip to main content", "Next article", "Foto: Getty Images", "Home »"):
        assert junk not in doc.text
    assert doc.title == "En innovasjonskraft å regne med"
    assert doc.lang == "nb"
    assert doc.text.count("Bjørn Arild Gram\n") == 1  # repeated byline collapsed
    assert "ledet an av helse- og omsorgsektoren" in doc.text
    assert "søknad om sosialhjelp" in doc.text
    headings = {s.headings[-1] for s in doc.sections if s.headings}
    assert {"Innovasjon krever utholdenhet", "Lokal kraft og handlingsrom"} <= headings


@pytest.mark.parametrize(
    "line",
    [
        "Skip to main content",
        "Next article",
        "Neste artikkel",
        "Previous article",
        "Foto: Getty Images",
        "Photo: NTB Scanpix",
        "Home » Offentlig sektor » En innovasjonskraft å regne med",
        "Hjem › Tjenester › Sosialhjelp",
        "Del artikkelen",
        "Godta alle informasjonskapsler",
        "Accept all cookies",
    ],
)
def test_boilerplate_lines_are_dropped(line: str) -> None:
    assert is_boilerplate(line)


@pytest.mark.parametrize(
    "line",
    [
        "Kommunen bruker informasjonskapsler for å måle bruken av nettstedet, og du kan godta eller avvise dem.",
        "Foto og video fra arrangementet kan brukes i kommunens egne kanaler dersom du samtykker.",
        "Neste artikkel i serien handler om hvordan kommunene samarbeider om digitalisering.",
        "Del artikkelen med kolleger som arbeider med innovasjon, skriver styrelederen.",
        "Innbyggere » Helse er en fane i menyen, men her forklarer vi hvordan du søker.",
        "Home office is common in the municipality.",
        "Innovasjon krever utholdenhet",
    ],
)
def test_content_sentences_are_kept(line: str) -> None:
    assert not is_boilerplate(line)
    assert strip_boilerplate([line]).lines == (line,)


MDX = """---
title: Store gevinster
description: En analyse viser verdien.
---

import { Card } from '@navikt/aksel-icons';
export const meta = {};

Innledning med [en lenke]({{site.baseurl}}/docs/x) og **uthevet** tekst.
![Bilde](/img/x.png)

1. TOC
{:toc}

## Gevinster {: .klasse}

<Card data-color='success' style={{ display: "flex", gap: "0.75rem" }}>
  <span data-size='lg'>Regn på gevinsten i kalkulatoren</span>
</Card>

<Image
  src="/img/a.png"
  alt="Et bilde med <Tjenesten> i teksten"
  boxShadow={false}
/>

- Bedre etterlevelse
- Spart tid

{/* en kommentar */}
<!-- en HTML-kommentar -->

```mermaid
graph TD; A-->B
```

```
kode blir med
```

<Table>
  <TableHead><TableRow><TableHeaderCell>Konsept</TableHeaderCell><TableHeaderCell style={{ textAlign: 'right' }}>Nytte</TableHeaderCell></TableRow></TableHead>
  <TableBody><TableRow><TableCell>Grunnmur</TableCell><TableCell>2 135</TableCell></TableRow></TableBody>
</Table>

### Tid
Brukerne sparer tid.
"""


def test_mdx_markup_is_dropped_and_structure_kept(tmp_path: Path) -> None:
    (tmp_path / "side.mdx").write_text(MDX, encoding="utf-8")
    doc = read(tmp_path / "side.mdx")
    check_layout(doc)
    assert doc.title == "Store gevinster"
    text = doc.text
    assert text.startswith("En analyse viser verdien.")
    assert "Innledning med en lenke og uthevet tekst." in text
    assert "Regn på gevinsten i kalkulatoren" in text
    assert "- Bedre etterlevelse\n- Spart tid" in text
    assert "Konsept | Nytte\nGrunnmur | 2 135" in text
    assert "kode blir med" in text
    for junk in ("import", "export", "site.baseurl", "{:", "TOC", "<", "graph TD", "kommentar", "**", "Bilde", "/img"):
        assert junk not in text, junk
    assert ("Gevinster", "Tid") in [s.headings for s in doc.sections]
    assert doc.text[doc.sections[-1].start:].startswith("Tid\n\nBrukerne sparer tid.")


def test_markdown_like_txt_gets_headings(tmp_path: Path) -> None:
    (tmp_path / "klage.txt").write_text("# Klage på vedtak\n\nDu kan klage.\n\n## Slik klager du\n\nSend klagen til NAV.\n")
    doc = read(tmp_path / "klage.txt")
    assert doc.title == "Klage på vedtak"
    assert doc.text == "Klage på vedtak\n\nDu kan klage.\n\nSlik klager du\n\nSend klagen til NAV."
    assert [s.headings for s in doc.sections] == [("Klage på vedtak",), ("Klage på vedtak", "Slik klager du")]


def test_json_catalogue_key_paths(tmp_path: Path) -> None:
    path = tmp_path / "nb.json"
    path.write_text('{"Panel": {"title": "Søknad om sosialhjelp", "text": {"p1": "Gå til <lenke>dine søknader</lenke>"}},'
                    ' "Tall": {"n": 3}, "Annet": {"a": "Tromsø"}}', encoding="utf-8")
    doc = read(path)
    assert "Panel.title: Søknad om sosialhjelp" in doc.text
    assert "Panel.text.p1: Gå til dine søknader" in doc.text
    assert "Tall" not in doc.text
    assert [s.headings for s in doc.sections] == [("Panel",), ("Annet",)]
    assert doc.title == "nb"  # one "title" key is not the catalogue's title
    numbers = tmp_path / "tall.json"
    numbers.write_text('{"a": [1, 2, 3], "b": true}')
    with pytest.raises(ReadError, match="no text in JSON"):
        read(numbers)


def test_a_json_catalogue_is_titled_by_the_value_its_title_keys_share(tmp_path: Path) -> None:
    # "nb.json" says nothing; the app's own title does (and goes into every chunk's embedding text)
    path = tmp_path / "nb.json"
    path.write_text(json.dumps({"AppHeader": {"title": "Søknad om økonomisk sosialhjelp"},
                                "Feil": {"title": "Noe gikk galt", "text": "Prøv igjen."},
                                "Informasjon": {"title": "Søknad om økonomisk sosialhjelp"}}), encoding="utf-8")
    assert read(path).title == "Søknad om økonomisk sosialhjelp"


def test_html_main_content_only(tmp_path: Path) -> None:
    (tmp_path / "side.html").write_text(HTML_PAGE, encoding="utf-8")
    doc = read(tmp_path / "side.html")
    check_layout(doc)
    assert doc.title == "Søknad om sosialhjelp"
    assert "Du kan søke om økonomisk sosialhjelp digitalt i Tromsø." in doc.text
    assert "- Alle som bor i kommunen\n- Personer med særskilt behov" in doc.text
    assert "Kommune | Frist\nTromsø | 3 uker" in doc.text
    for junk in ("Forside", "informasjonskapsler", "Godta", "sporingstekst", "color", "Hopp til", "Hjem »",
                 "Foto:", "Del artikkelen", "Rådhusgata"):
        assert junk not in doc.text, junk
    assert ("Søknad om sosialhjelp", "Hvem kan søke?") in [s.headings for s in doc.sections]


def test_docx_headings_lists_and_table(tmp_path: Path) -> None:
    doc = read(make_docx(tmp_path / "plan.docx"))
    check_layout(doc)
    assert doc.title == "Plan for tjenester"
    assert "- Første punkt\n- Andre punkt" in doc.text
    assert "Kommune | Innbyggere | Fylke\nTromsø | 77000 | Troms\nÅlesund | 67000 | Møre og Romsdal" in doc.text
    assert ("Plan for tjenester", "Økonomi") in [s.headings for s in doc.sections]
    economy = next(s for s in doc.sections if s.headings[-1:] == ("Økonomi",))
    assert "Budsjettet vedtas i desember." in doc.text[economy.start:economy.end]


def test_reportlab_pdf_pages_hyphens_headers_table(tmp_path: Path) -> None:
    doc = read(make_pdf(tmp_path / "rapport.pdf", pages=3))
    check_layout(doc)
    assert doc.title == "Rapport om kommunale tjenester"
    assert doc.metadata["pages"] == 3
    assert [s.page for s in doc.sections] == [1, 2, 3]
    assert "Tjenestene i kommunene skal være gode" in doc.text  # kommu-/nene joined
    assert "helse- og omsorgstjenester" in doc.text  # real hyphen kept
    assert HEADER not in doc.text
    assert not re.search(r"(?m)^\d+$", doc.text), "bare page numbers dropped"
    assert "Kommune | Innbyggere | Fylke\nTromsø | 77000 | Troms" in doc.text
    page2 = doc.sections[1]
    assert "Side 2 handler om særskilt" in doc.text[page2.start:page2.end]


def test_real_pdfs(tmp_path: Path) -> None:
    root = shared("formats")
    doc = read(root / "felleslosninger__docs" / "Sikkerhetsarkitektur.pdf", root)
    check_layout(doc)
    assert doc.metadata["pages"] == 31
    assert {s.page for s in doc.sections} >= set(range(3, 31))
    # words hyphenated across line breaks in the PDF ("kode-/linjene", "postkas-/sen", "inn-/byggere")
    for word in ("kodelinjene", "postkassen ved informasjon", "innbyggere er egnet"):
        assert word in doc.text
    assert "e-ID-leverandører" in doc.text and "risiko- og sårbarhetsanalyse" in doc.text
    # the running header "Sikkerhetsarkitektur" stood alone at the top of every page
    assert not re.search(r"(?m)^Sikkerhetsarkitektur$", doc.text)
    assert "Subjekt | Objekt | Tillit" in doc.text  # a table row kept together
    white = read(shared("formats", "haraldfianbakken__sky-i-offentlig-sektor", "whitepaper.pdf"), root)
    assert white.metadata["pages"] == 42 and white.lang == "nb"


def test_licence_files() -> None:
    for name in ("LICENSE", "LICENCE.md", "COPYING", "NOTICE.txt", "license"):
        assert is_licence_file(Path(name))
    assert not is_licence_file(Path("lisensvilkår.md")) and not is_licence_file(Path("README.md"))


def test_whole_corpus_reads(tmp_path: Path) -> None:
    root = shared("corpus")
    started = time.perf_counter()
    docs = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not is_licence_file(path):
            docs.append(read(path, root))
    seconds = time.perf_counter() - started
    print(f"read {len(docs)} documents in {seconds:.2f} s")
    assert len(docs) >= 150
    for doc in docs:
        check_layout(doc)
        assert doc.title and doc.lang in ("nb", "nn", "en")
    by_id = {d.id: d for d in docs}
    assert "navikt__sosialhjelp-soknad/messages/nb.json" in by_id and "sources.json" in by_id
    for doc in docs:
        if doc.id.endswith(".mdx"):
            # component markup outside code blocks ("import" and "<Button>" may stay inside code blocks)
            assert not re.search(r"</?(?:Card|Image|Table\w*|Details\w*|DoDont|Contributors|Link)\b", doc.text), doc.id
            assert not doc.text.startswith(("import ", "export ", "---")), doc.id


@pytest.mark.parametrize("suffix", sorted(SUPPORTED_SUFFIXES | {".png"}))
def test_random_bytes_raise_only_read_error(tmp_path: Path, suffix: str) -> None:
    rng = random.Random(1234)
    for i in range(200):
        path = tmp_path / f"f{i}{suffix}"
        size = rng.choice([1, 7, 100, 3000])
        data = bytes(rng.getrandbits(8) for _ in range(size))
        if i % 3 == 0:  # plausible starts reach deeper into each reader
            data = rng.choice([b"%PDF-1.4\n", b"PK\x03\x04", b"<html><body>", b"{\"a\": ", b"---\n"]) + data
        path.write_bytes(data)
        try:
            doc = read(path, tmp_path)
        except ReadError as exc:
            assert str(exc) and "\n" not in str(exc)
        else:
            assert isinstance(doc, Document)
