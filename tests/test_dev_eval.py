"""The dev questions over the whole ../shared/corpus with the real model (slow: it embeds ~1,300 chunks).

The floors below are what the current pipeline measured (README, "Retrieval"), so a regression fails;
the issue's goals that are not reached yet are strict xfails, so reaching one shows up as XPASS.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant import Assistant, Settings
from assistant.evaluate import run_eval
from conftest import shared

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def settings(model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings.load(env={}, index_dir=tmp_path_factory.mktemp("dev-index"), cache_dir=model_cache)


@pytest.fixture(scope="module")
def result(real_embedder, settings: Settings) -> dict:  # type: ignore[no-untyped-def]
    bot = Assistant.open(settings=settings, embedder=real_embedder)
    return run_eval(shared("eval", "questions.jsonl"), settings=settings, corpus_dirs=[shared("corpus")],
                    assistant=bot)


def test_retrieval_floor(result: dict) -> None:
    assert result["passage@5"] >= 0.88  # measured 0.912
    assert result["by_lang"]["en"]["passage@5"] >= 0.83  # measured 0.889
    assert result["mrr@10"] >= 0.74  # measured 0.771
    assert result["passage@5"] >= result["baselines"]["lexical"]["passage@5"]


def test_answers_cite_real_passages(result: dict) -> None:
    assert result["citation_validity"] == 1.0
    assert result["refusal_rate"] >= 0.75  # measured 0.75 (3 of 4) at the default thresholds
    assert result["false_refusal_rate"] <= 0.05  # measured 0.0 (0 of 34)


def test_our_own_unanswerable_questions_are_refused(result: dict, real_embedder,  # type: ignore[no-untyped-def]
                                                    settings: Settings) -> None:
    bot = Assistant.open(settings=settings, embedder=real_embedder)  # the index `result` built
    extra = run_eval(Path(__file__).parent / "data" / "unanswerable.jsonl", settings=settings,
                     corpus_dirs=[shared("corpus")], assistant=bot)
    # measured 0.92 (11 of 12) in the fifth session at its first commit as at its last (the fourth
    # session's note said 12 of 12)
    assert extra["n_unanswerable"] == 12 and extra["refusal_rate"] >= 0.9


def test_probe_questions_are_refused_or_answered(result: dict, real_embedder,  # type: ignore[no-untyped-def]
                                                 settings: Settings) -> None:
    # 23 unanswerable near misses and 26 answerable questions the project wrote (data/probes.jsonl).
    bot = Assistant.open(settings=settings, embedder=real_embedder)
    probes = run_eval(Path(__file__).parent / "data" / "probes.jsonl", settings=settings,
                      corpus_dirs=[shared("corpus")], assistant=bot)
    # measured 0.74 (17 of 23) in the fifth session, at its first commit as at its last; 0.78 (18 of
    # 23) in the sixth, with the role rule ("Who is the current chief executive of KS?")
    assert probes["n_unanswerable"] == 23 and probes["refusal_rate"] >= 0.75
    assert probes["n"] == 26 and probes["false_refusal_rate"] <= 0.05  # measured 0.038 (1 of 26)
    assert probes["citation_validity"] == 1.0


# Sets of 20 unanswerable near misses and 20 answerable questions, each written by a helper that saw
# neither the refusal rules nor the earlier sets: (file, least refusal rate, most false-refusal rate,
# least passage@5), with what was measured.
FRESH_SETS = [
    # Fifth session, measured once before any change (10 of 20 refused, 3 of 20 false); then the rule
    # for hyphenated names was mended on it (9, 1), and in the sixth session the role and date rules
    # (11, then 13 of 20 refused). Measured 0.65, 0.05 (1 of 20), passage@5 0.85.
    ("fresh_probes.jsonl", 0.60, 0.10, 0.80),
    # Written after that mend and unseen before its measurement (11 of 20, 2 of 20); the sixth
    # session's rules were written on these two sets and the probes: 13, then 15 of 20. Measured
    # 0.75, 0.10 (2 of 20), passage@5 0.95.
    ("fresh2_probes.jsonl", 0.70, 0.15, 0.90),
    # Sixth session, measured before the role rule: 9 of 20 refused, 2 of 20 false; with the rule as
    # first written 10 and 3 ("Who runs the SML?" read as a role question); after "who runs" was taken
    # out, 10 and 2. No longer unseen after that mend (and its when-questions were read while the date
    # rule was written): 13 of 20 with it. Measured 0.65, 0.10 (2 of 20), passage@5 0.90.
    ("fresh3_probes.jsonl", 0.60, 0.10, 0.85),
    # Written after both rules and measured once with them: the held-out estimate now. The fifth
    # session's rules: 7 of 20 refused, 4 of 20 false. Measured 0.50 (10 of 20), 0.20 (the same 4),
    # passage@5 0.90.
    ("fresh4_probes.jsonl", 0.45, 0.20, 0.85),
]


@pytest.mark.parametrize("name, refused, false, passage", FRESH_SETS, ids=[f[0] for f in FRESH_SETS])
def test_fresh_probes_measure_refusal_on_unseen_questions(result: dict, real_embedder,  # type: ignore[no-untyped-def]
                                                         settings: Settings, name: str, refused: float,
                                                         false: float, passage: float) -> None:
    bot = Assistant.open(settings=settings, embedder=real_embedder)
    fresh = run_eval(Path(__file__).parent / "data" / name, settings=settings,
                     corpus_dirs=[shared("corpus")], assistant=bot)
    assert fresh["n_unanswerable"] == 20 and fresh["refusal_rate"] >= refused
    assert fresh["n"] == 20 and fresh["false_refusal_rate"] <= false
    assert fresh["citation_validity"] == 1.0 and fresh["passage@5"] >= passage


@pytest.mark.xfail(strict=True, reason="refusal goal of issue #4 not reached on the dev set (3 of 4 unanswerables)")
def test_refusal_goal(result: dict) -> None:
    assert result["refusal_rate"] >= 0.8


def test_retrieval_goal_for_passages(result: dict) -> None:
    assert result["passage@5"] >= 0.90 and result["by_lang"]["en"]["passage@5"] >= 0.85  # measured 0.912, 0.889


def test_retrieval_goal_for_rank(result: dict) -> None:
    assert result["mrr@10"] >= 0.75  # measured 0.771
