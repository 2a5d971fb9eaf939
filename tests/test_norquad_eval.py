"""NorQuAD validation with the real model (slow: it embeds its ~1,100 context chunks).

Every NorQuAD question is answerable, so besides retrieval this measures false refusals on
encyclopaedia and news texts, far from the municipal documents the refusal rules were written on.
The floors sit just under what the current pipeline measured (README, "Retrieval" and "Refusal
calibration"), so a regression fails.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant import Assistant, Settings
from assistant.evaluate import run_eval
from conftest import shared

pytestmark = pytest.mark.slow


def test_norquad_validation(real_embedder, model_cache: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings.load(env={}, index_dir=tmp_path / "norquad-index", cache_dir=model_cache)
    bot = Assistant.open(settings=settings, embedder=real_embedder)
    result = run_eval(shared("eval", "norquad", "validation.json"), settings=settings, assistant=bot)
    assert result["n"] == 472
    # the goals: passage@5 >= 0.98 and MRR@10 >= 0.90; measured 0.981 and 0.914
    assert result["passage@5"] >= 0.98 and result["mrr@10"] >= 0.90
    assert result["passage@5"] >= result["baselines"]["lexical"]["passage@5"]
    # measured 0.104 (49 of 472) until the eighth session, 0.0445 (21) since: years before 1900,
    # a when-question near a sentence sharing one of its words, a name with one letter wrong
    assert result["false_refusal_rate"] <= 0.05
    assert result["refusal_rate"] is None  # nothing in NorQuAD is unanswerable
    assert result["citation_validity"] == 1.0
