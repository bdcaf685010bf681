"""The curiosity plugin names what the user asks about that monGARS does not know."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from mongars_core.types import HistoryTurn, Memory, Turn
from mongars_plugins.cognition.curiosity import MAX_GAPS, find_gaps, mongars_find_gaps


def topics(message: str, known: list[str] | None = None) -> list[str]:
    return [gap.topic for gap in find_gaps(message, known or [])]


def test_an_unknown_name_is_a_gap() -> None:
    assert topics("Who is Zorblax Quintero?") == ["Zorblax Quintero"]


def test_a_name_mentioned_in_memory_is_no_gap() -> None:
    known = ["Zorblax Quintero is a painter from Lyon."]
    assert topics("Who is Zorblax Quintero?", known) == []


def test_matching_ignores_case_and_accents() -> None:
    assert topics("Tell me about Élodie Brûlé.", ["elodie brule plays chess"]) == []


def test_the_object_of_what_is_questions_is_a_topic() -> None:
    assert topics("what's a flumpet?") == ["flumpet"]
    assert topics("Tell me about the Quantum Flux Engine and its uses.") == ["Quantum Flux Engine"]


def test_quoted_terms_are_topics() -> None:
    assert topics('What does "flibbertigibbet" mean?') == ["flibbertigibbet"]


def test_names_inside_sentences_and_with_connectors() -> None:
    assert topics("Did Leonardo da Vinci ever visit the Bank of America?") == [
        "Leonardo da Vinci",
        "Bank of America",
    ]


def test_french_questions_have_topics_too() -> None:
    assert topics("Qui est Marie Curie ?") == ["Marie Curie"]


def test_a_shorter_gap_inside_a_longer_one_is_dropped() -> None:
    assert topics("What is the capital of Freedonia?") == ["capital of Freedonia"]


@pytest.mark.parametrize(
    "message",
    [
        "What is 17 * 23?",
        "What is 5 km in miles?",
        "hello how are you",
        "Hello, how are you?",
        "What is your name?",
        "Who are you?",
        "What time is it on Monday?",
        "I think so. Paris is nice.",
        "",
    ],
)
def test_no_gaps_for_small_talk_arithmetic_and_pronouns(message: str) -> None:
    assert topics(message) == []


def test_at_most_five_gaps() -> None:
    message = "Compare Aldo Brin, Bex Carrow, Cyl Dunmore, Dax Efron, Eli Fane and Fyo Gault."
    assert len(topics(message)) == MAX_GAPS


def test_hook_checks_memories_and_history() -> None:
    turn = Turn(
        turn_id="t-1",
        user_id="alice",
        session_id="s-1",
        message="Is Zorblax Quintero related to Mira Voss or to Tann Oyelaran?",
        memories=[Memory(id=1, text="Mira Voss is Alice's sister.")],
        history=[
            HistoryTurn(
                id=1,
                user_id="alice",
                session_id="s-1",
                message="Do you know Tann Oyelaran?",
                reply="Not yet.",
                created_at=datetime.now(UTC),
            )
        ],
    )
    assert [gap.topic for gap in asyncio.run(mongars_find_gaps(turn))] == ["Zorblax Quintero"]
