"""The bad-file catalogue: each kind of broken input gives a ReadError with a one-line reason,
and good files in the same folder still read.

Every file is generated here, in `tmp_path`, with real tools. The tests run as root in CI,
and root can read a 0o000 file, so "permission denied" is simulated by making `open` raise
PermissionError for that one path (and the chmod is still applied, so a non-root run is real).
"""

from __future__ import annotations

import builtins
import os
import re
from pathlib import Path
from typing import Callable

import pytest
from fixtures.documents import (
    make_docx,
    make_encrypted_pdf,
    make_pdf,
    make_scanned_pdf,
    make_zip_bomb,
    make_zip_of_other,
)

from assistant.errors import ReadError
from assistant.readers import read_document
from assistant.settings import Settings

DEFAULTS = Settings()
LIMITS = {"max_bytes": DEFAULTS.max_file_bytes, "max_chars": DEFAULTS.max_doc_chars}


def _empty(d: Path) -> Path:
    (d / "tom.txt").write_bytes(b"")
    return d / "tom.txt"


def _whitespace(d: Path) -> Path:
    (d / "blank.md").write_text(" \n\t\n   \r\n")
    return d / "blank.md"


def _binary_txt(d: Path) -> Path:
    (d / "bilde.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    return d / "bilde.txt"


def _binary_md(d: Path) -> Path:
    (d / "arkiv.md").write_bytes(b"\x1f\x8b\x08\x00" + os.urandom(2000) + b"\x00\x00")
    return d / "arkiv.md"


def _truncated_pdf(d: Path) -> Path:
    data = make_pdf(d / "full.pdf.tmp").read_bytes()
    (d / "kuttet.pdf").write_bytes(data[: len(data) // 3])
    (d / "full.pdf.tmp").unlink()
    return d / "kuttet.pdf"


def _corrupt_pdf(d: Path) -> Path:
    (d / "korrupt.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 9 0 R >> endobj\ntrailer<<>>\n%%EOF")
    return d / "korrupt.pdf"


def _encrypted_pdf(d: Path) -> Path:
    source = make_pdf(d / "klar.pdf.tmp")
    path = make_encrypted_pdf(d / "kryptert.pdf", source)
    source.unlink()
    return path


def _scanned_pdf(d: Path) -> Path:
    return make_scanned_pdf(d / "skannet.pdf")


def _docx_zip_of_other(d: Path) -> Path:
    return make_zip_of_other(d / "ikke-word.docx")


def _docx_not_zip(d: Path) -> Path:
    (d / "tekst.docx").write_text("Dette er bare tekst med feil navn.")
    return d / "tekst.docx"


def _zip_bomb(d: Path) -> Path:
    # 4 x max_bytes is the DOCX limit; inflate past it while the file itself stays small.
    return make_zip_bomb(d / "bombe.docx", inflated=4 * DEFAULTS.max_file_bytes + 1024 * 1024)


def _html_no_body(d: Path) -> Path:
    (d / "hode.html").write_text("<html><head><title>Bare tittel</title><script>x=1</script></head></html>")
    return d / "hode.html"


def _deep_html(d: Path) -> Path:
    depth = 100_000
    (d / "dyp.html").write_text("<html><body>" + "<div>" * depth + "Innhold" + "</div>" * depth + "</body></html>")
    return d / "dyp.html"


def _too_large(d: Path) -> Path:
    with open(d / "stor.txt", "wb") as handle:  # sparse: no disk, no time
        handle.truncate(200 * 1024 * 1024)
    return d / "stor.txt"


def _symlink_loop(d: Path) -> Path:
    os.symlink(d / "loop-b.txt", d / "loop-a.txt")
    os.symlink(d / "loop-a.txt", d / "loop-b.txt")
    return d / "loop-a.txt"


def _vanished(d: Path) -> Path:
    path = d / "borte.txt"
    path.write_text("Denne fila fantes da mappa ble listet.")
    path.unlink()
    return path


def _directory(d: Path) -> Path:
    (d / "mappe.md").mkdir()
    return d / "mappe.md"


def _fifo(d: Path) -> Path:
    os.mkfifo(d / "rør.txt")
    return d / "rør.txt"


def _unsupported(d: Path) -> Path:
    (d / "regneark.xlsx").write_bytes(b"PK\x03\x04whatever")
    return d / "regneark.xlsx"


def _invalid_json(d: Path) -> Path:
    (d / "feil.json").write_text('{"a": "Tromsø", ')
    return d / "feil.json"


CATALOGUE: dict[str, tuple[Callable[[Path], Path], str]] = {
    "empty file": (_empty, r"^empty file$"),
    "whitespace only": (_whitespace, r"^empty file \(whitespace only\)$"),
    "binary named .txt": (_binary_txt, r"^binary file$"),
    "binary named .md": (_binary_md, r"^binary file$"),
    "truncated PDF": (_truncated_pdf, r"^corrupt PDF"),
    "corrupt PDF": (_corrupt_pdf, r"^(corrupt PDF|no text)"),
    "encrypted PDF": (_encrypted_pdf, r"^encrypted PDF"),
    "PDF without text layer": (_scanned_pdf, r"^no text \(scanned\?\)$"),
    "DOCX that is a ZIP of something else": (_docx_zip_of_other, r"^not a DOCX \(zip without word/document.xml\)$"),
    "DOCX that is not a ZIP": (_docx_not_zip, r"^not a DOCX \(not a ZIP file\)$"),
    "DOCX zip bomb": (_zip_bomb, r"^DOCX too large when unpacked .*zip bomb"),
    "HTML with no body": (_html_no_body, r"^no text"),
    "deeply nested HTML": (_deep_html, None),  # must read: no RecursionError, and the text is kept
    "file above the size limit": (_too_large, r"^file too large \(200 MB > limit 50 MB\)$"),
    "symlink loop": (_symlink_loop, r"^symlink loop$"),
    "file removed after listing": (_vanished, r"^file vanished$"),
    "directory with a text suffix": (_directory, r"^not a regular file \(directory\)$"),
    "FIFO with a text suffix": (_fifo, r"^not a regular file \(FIFO\)$"),
    "unknown extension": (_unsupported, r"^unsupported type \(\.xlsx\)$"),
    "invalid JSON": (_invalid_json, r"^invalid JSON"),
}


@pytest.mark.parametrize("kind", list(CATALOGUE))
def test_bad_file_gives_one_line_reason_and_good_files_still_read(tmp_path: Path, kind: str) -> None:
    make, reason = CATALOGUE[kind]
    good = tmp_path / "god.md"
    good.write_text("# Sosialhjelp\n\nDu kan søke om sosialhjelp i Tromsø.\n", encoding="utf-8")
    good_docx = make_docx(tmp_path / "god.docx")
    bad = make(tmp_path)
    if reason is None:
        assert read_document(bad, tmp_path, **LIMITS).text == "Innhold"
    else:
        with pytest.raises(ReadError) as info:
            read_document(bad, tmp_path, **LIMITS)
        message = str(info.value)
        assert "\n" not in message and len(message) < 200
        assert re.search(reason, message), message
    assert read_document(good, tmp_path, **LIMITS).text == "Sosialhjelp\n\nDu kan søke om sosialhjelp i Tromsø."
    assert "Budsjettet vedtas i desember." in read_document(good_docx, tmp_path, **LIMITS).text


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Root reads 0o000 files, so `open` is made to refuse this one path as the kernel would."""
    path = tmp_path / "hemmelig.txt"
    path.write_text("Tromsø")
    path.chmod(0)
    real_open = builtins.open

    def refusing_open(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        if Path(file) == path:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)
    with pytest.raises(ReadError, match=r"^permission denied$"):
        read_document(path, tmp_path, **LIMITS)
    monkeypatch.undo()
    path.chmod(0o644)  # readable again: picked up on the next read
    assert read_document(path, tmp_path, **LIMITS).text == "Tromsø"


def test_invalid_utf8_mid_file_reads_with_replacement(tmp_path: Path) -> None:
    path = tmp_path / "blandet.txt"
    path.write_bytes("Tromsø og Ålesund.\n\n".encode() * 20 + b"\xc3\x28\xa0\xa1\n\n" + "særskilt støtte.".encode())
    doc = read_document(path, tmp_path, **LIMITS)
    assert "Tromsø og Ålesund." in doc.text and "særskilt støtte." in doc.text and "\ufffd" in doc.text


def test_one_five_megabyte_line(tmp_path: Path) -> None:
    path = tmp_path / "linje.txt"
    path.write_text("ord " * (5 * 1024 * 1024 // 4))
    doc = read_document(path, tmp_path, max_bytes=LIMITS["max_bytes"], max_chars=1_000_000)
    assert doc.metadata["truncated"] is True
    assert len(doc.text) <= 1_000_000 and doc.text.startswith("ord ord")


def test_size_limit_is_configurable(tmp_path: Path) -> None:
    path = tmp_path / "middels.txt"
    path.write_text("Tromsø " * 300)
    with pytest.raises(ReadError, match=r"file too large \(2 KB > limit 1 KB\)"):
        read_document(path, tmp_path, max_bytes=1024, max_chars=10_000)
    assert read_document(path, tmp_path, max_bytes=4096, max_chars=10_000).text.startswith("Tromsø")


def test_text_cap_on_pdf_sets_truncated(tmp_path: Path) -> None:
    doc = read_document(make_pdf(tmp_path / "r.pdf", pages=5), tmp_path, max_bytes=LIMITS["max_bytes"], max_chars=300)
    assert doc.metadata["truncated"] is True and len(doc.text) <= 300


def test_an_index_run_over_every_bad_file_and_the_whole_corpus(tmp_path: Path) -> None:
    """Issue #3's done-when: the run finishes, every bad file is reported with its reason,
    every other document is indexed, and a bad new version leaves the previous one in place."""
    import shutil

    from assistant import Assistant
    from conftest import shared
    from fakes import FakeEmbedder

    corpus = tmp_path / "corpus"
    shutil.copytree(shared("corpus"), corpus / "shared")
    expected: dict[str, str] = {}
    for n, (kind, (make, reason)) in enumerate(CATALOGUE.items()):
        folder = corpus / "bad" / f"{n:02d}"
        folder.mkdir(parents=True)
        path = make(folder)
        # A vanished file is gone before the scan; a folder named `x.md` is walked as a folder.
        if reason is not None and kind not in ("file removed after listing", "directory with a text suffix"):
            expected[path.relative_to(corpus).as_posix()] = reason
    settings = Settings.load(env={}, index_dir=tmp_path / "index", corpus_dirs=[corpus])
    bot = Assistant.open(settings=settings, embedder=FakeEmbedder())
    report = bot.index()
    reasons = {s.doc: s.reason for s in report.skipped}
    for doc, reason in expected.items():
        assert doc in reasons, doc
        assert re.search(reason, reasons[doc]) and "\n" not in reasons[doc], (doc, reasons[doc])
    good = [p for p in (corpus / "shared").rglob("*") if p.is_file() and not p.name.upper().startswith("LICENSE")]
    indexed = set(bot.documents())
    assert {p.relative_to(corpus).as_posix() for p in good} <= indexed
    assert "bad/12/dyp.html" in indexed  # deeply nested HTML reads
    before = bot.search("søknad om sosialhjelp", k=3)

    seed = corpus / "shared" / "ks-artikkel" / "en-innovasjonskraft-a-regne-med.txt"
    seed.write_bytes(b"\x00\x01binary now" * 50)
    again = bot.index()
    assert any(s.doc == "shared/ks-artikkel/en-innovasjonskraft-a-regne-med.txt"
               and "previous version kept" in s.reason for s in again.skipped)
    assert again.documents_total == report.documents_total
    assert [h.chunk_id for h in bot.search("søknad om sosialhjelp", k=3)] == [h.chunk_id for h in before]
