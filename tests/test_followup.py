"""Follow-up questions borrow the previous question for retrieval; self-contained ones do not."""

from __future__ import annotations

import pytest

from assistant.followup import is_followup, retrieval_query

SOSIAL = "Hvordan kom den nye søknaden om sosialhjelp i stand?"

# (first question, follow-up, a word the retrieval query must contain because of the first turn)
CONVERSATIONS = [
    (SOSIAL, "Hvem var med på det?", "sosialhjelp"),
    ("Hva er klagefristen for vedtak om økonomisk sosialhjelp?", "Hvor sender jeg den?", "klagefristen"),
    ("What is Designsystemet?", "Who maintains it?", "Designsystemet"),
    ("Hva er Fiks arkiv?", "Og hvordan tar kommunen dette i bruk?", "Fiks"),
    ("What does KS say about innovation in the municipalities?", "Why?", "innovation"),
    ("Kva er ID-porten?", "Kven står bak han?", "ID-porten"),
    ("How do I apply for social assistance from NAV?", "What about the deadline?", "social assistance"),
    ("Hvilke krav stiller Digdir til universell utforming?", "Gjelder de for kommunene også?", "universell"),
]


@pytest.mark.parametrize(("first", "followup", "needed"), CONVERSATIONS)
def test_followup_retrieves_with_the_previous_question(first: str, followup: str, needed: str) -> None:
    history = [(first, "Et svar fra dokumentene. [1]")]
    assert is_followup(followup)
    query = retrieval_query(followup, history)
    assert needed in query
    assert query.endswith(followup)  # the new question stays whole, after its context
    assert "Et svar" not in query  # assistant answers are not used


@pytest.mark.parametrize(
    "question",
    [
        "Hva er klagefristen for vedtak om økonomisk sosialhjelp?",
        "Hvordan søker jeg om barnehageplass i Oslo kommune?",
        "What is the deadline for appealing a decision on social assistance?",
        "Hva koster det å søke om barnehageplass i kommunen?",  # "det" as an expletive
        "Which components does Designsystemet offer for forms and tables?",
    ],
)
def test_self_contained_questions_are_left_alone(question: str) -> None:
    assert not is_followup(question)
    assert retrieval_query(question, [(SOSIAL, "Svar. [1]")]) == question


def test_without_history_the_question_is_the_query() -> None:
    assert retrieval_query("  Hvem var med på det?  ", []) == "Hvem var med på det?"


def test_a_chain_of_followups_reaches_back_to_the_last_self_contained_question() -> None:
    history = [
        ("Hva er Designsystemet?", "Svar. [1]"),
        (SOSIAL, "Svar. [1]"),
        ("Hvem var med på det?", "Svar. [1]"),
    ]
    query = retrieval_query("Og når skjedde det?", history)
    assert query == f"{SOSIAL} Hvem var med på det? Og når skjedde det?"
    assert "Designsystemet" not in query
    assert retrieval_query("Og når skjedde det?", history, max_turns=1) == "Hvem var med på det? Og når skjedde det?"


def test_empty_user_turns_in_history_are_skipped() -> None:
    history = [(SOSIAL, "Svar."), ("", "")]
    assert retrieval_query("Hvem var med?", history) == f"{SOSIAL} Hvem var med?"
