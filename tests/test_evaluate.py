"""`assistant eval` on tiny JSONL and SQuAD files, with the fake embedder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant import Assistant, Settings
from assistant.cli import main
from assistant.evaluate import covers, load_questions, run_eval
from fakes import FakeEmbedder

KEYS = {"n", "passage@1", "passage@5", "passage@10", "doc@5", "mrr@10", "by_lang", "baselines",
        "seconds_index", "seconds_per_query"}


def test_covers_needs_half_of_the_quote() -> None:
    quote = "samarbeidet mellom kommuner, KS, NAV og leverandørmarkedet"
    assert covers(quote, "Her har   Samarbeidet mellom kommuner, KS, NAV og leverandørmarkedet vært sentralt.")
    assert covers(quote, "… og leverandørmarkedet. Ny tekst" + " samarbeidet mellom kommuner, KS,")
    assert not covers(quote, "NAV og leverandørmarkedet")
    assert not covers("", "anything")


def _corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    (root / "a").mkdir(parents=True)
    (root / "a" / "sosial.md").write_text("# Sosialhjelp\n\nSøknaden om sosialhjelp er digital og laget av NAV.",
                                          encoding="utf-8")
    (root / "vei.txt").write_text("Kommunen brøyter veiene om vinteren.", encoding="utf-8")
    return root


def _bot(tmp_path: Path, corpus: Path) -> Assistant:
    settings = Settings.load(env={}, index_dir=tmp_path / "idx", corpus_dirs=[corpus], cache_dir=tmp_path / "c")
    return Assistant.open(settings=settings, embedder=FakeEmbedder())


def test_jsonl_eval_reports_stable_keys_and_baselines(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path)
    qfile = tmp_path / "q.jsonl"
    rows = [
        {"id": "1", "question": "Hvem laget søknaden om sosialhjelp?", "lang": "nb", "doc": "a/sosial.md",
         "answer_passage": "Søknaden om sosialhjelp er digital og laget av NAV.", "type": "lexical"},
        {"id": "2", "question": "Når brøyter kommunen veiene?", "lang": "nb", "doc": "vei.txt",
         "answer_passage": "Kommunen brøyter veiene om vinteren.", "type": "lexical"},
        {"id": "3", "question": "Hva koster en fotballbane?", "lang": "nb", "doc": None,
         "answer_passage": None, "type": "unanswerable"},
    ]
    qfile.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    bot = _bot(tmp_path, corpus)
    result = run_eval(qfile, settings=bot.settings, corpus_dirs=[corpus], assistant=bot)
    assert KEYS <= set(result)
    assert result["n"] == 2 and result["passage@5"] == 1.0 and result["mrr@10"] == 1.0
    assert set(result["baselines"]) == {"lexical", "dense"}
    assert result["by_lang"]["nb"]["n"] == 2
    for key in ("refusal_rate", "false_refusal_rate", "citation_validity"):
        assert key in result
    assert result["citation_validity"] == 1.0


def test_squad_file_becomes_its_own_corpus(tmp_path: Path) -> None:
    squad = {"data": [{"paragraphs": [
        {"context": "Oslo er hovedstaden i Norge. Byen har mange innbyggere.", "document_id": 1,
         "qas": [{"id": 10, "question": "Hva er hovedstaden i Norge?", "is_impossible": False,
                  "answers": [{"text": "Oslo", "answer_start": 0}]}]},
        {"context": "Bergen ligger på Vestlandet og er kjent for regn.", "document_id": 2,
         "qas": [{"id": 11, "question": "Hvor ligger Bergen?", "is_impossible": False,
                  "answers": [{"text": "på Vestlandet", "answer_start": 14}]}]},
    ]}]}
    qfile = tmp_path / "squad.json"
    qfile.write_text(json.dumps(squad, ensure_ascii=False), encoding="utf-8")
    questions, corpus = load_questions(qfile, tmp_path / "sq")
    assert corpus is not None and len(list(corpus.iterdir())) == 2 and len(questions) == 2
    settings = Settings.load(env={}, index_dir=tmp_path / "idx", cache_dir=tmp_path / "c")
    bot = Assistant.open(settings=settings, embedder=FakeEmbedder())
    result = run_eval(qfile, settings=settings, assistant=bot)
    assert result["n"] == 2 and result["passage@1"] == 1.0
    # every SQuAD question is answerable: answers measure false refusals, and there is no refusal rate
    assert result["refusal_rate"] is None and result["n_unanswerable"] == 0
    assert result["false_refusal_rate"] is not None and result["citation_validity"] == 1.0
    assert "refusal_rate" not in run_eval(qfile, settings=settings, assistant=bot, answers=False)


def test_bad_eval_file_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n", encoding="utf-8")
    assert main(["eval", str(bad), "--index", str(tmp_path / "i"), "--model", "/nonexistent/model"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and err.count("\n") == 1
