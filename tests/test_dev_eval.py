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
def result(real_embedder, model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[no-untyped-def]
    settings = Settings.load(env={}, index_dir=tmp_path_factory.mktemp("dev-index"), cache_dir=model_cache)
    bot = Assistant.open(settings=settings, embedder=real_embedder)
    return run_eval(shared("eval", "questions.jsonl"), settings=settings, corpus_dirs=[shared("corpus")],
                    assistant=bot)


def test_retrieval_floor(result: dict) -> None:
    assert result["passage@5"] >= 0.88  # measured 0.912
    assert result["by_lang"]["en"]["passage@5"] >= 0.83  # measured 0.889
    assert result["mrr@10"] >= 0.72  # measured 0.749
    assert result["passage@5"] >= result["baselines"]["lexical"]["passage@5"]


def test_answers_cite_real_passages(result: dict) -> None:
    assert result["citation_validity"] == 1.0
    assert result["refusal_rate"] >= 0.5  # measured 0.5 (2 of 4) at the default thresholds
    assert result["false_refusal_rate"] <= 0.15  # measured 0.118 (4 of 34)


def test_retrieval_goal_for_passages(result: dict) -> None:
    assert result["passage@5"] >= 0.90 and result["by_lang"]["en"]["passage@5"] >= 0.85  # measured 0.912, 0.889


@pytest.mark.xfail(strict=True, reason="MRR@10 goal of issue #2 not reached (measured 0.749; see README)")
def test_retrieval_goal_for_rank(result: dict) -> None:
    assert result["mrr@10"] >= 0.75
