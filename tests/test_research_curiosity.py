"""What research reads of curiosity: the subjects of questions, content words, and the
general faults the curiosity benchmark found (benchmarks/results/curiosity.md)."""

from __future__ import annotations

import pytest

from mongars_plugins.cognition.curiosity import Subject, content_words, find_gaps, question_subjects


def topics(message: str) -> list[str]:
    return [gap.topic for gap in find_gaps(message, [])]


@pytest.mark.parametrize(
    ("message", "subjects"),
    [
        ("Who is Zorblax Quintero?", [Subject("Zorblax Quintero", "who", "en")]),
        ("what's a flumpet", [Subject("flumpet", "what", "en")]),
        ("How do I use Pomegrid on Linux?", [Subject("Pomegrid on Linux", "what", "en")]),
        ("Tell me about Zorblax and his dog.", [Subject("Zorblax", "what", "en")]),
        ("Qui est Marie Curie ?", [Subject("Marie Curie", "who", "fr")]),
        ("I met Zorblax. What should I cook tonight?", []),
        ("What is your name?", []),
        ("What is 17 * 23?", []),
    ],
)
def test_the_subjects_of_questions(message: str, subjects: list[Subject]) -> None:
    assert question_subjects(message) == subjects


def test_content_words_drop_function_words_and_plurals() -> None:
    assert content_words("What port do the staging servers use?") == {
        "port",
        "staging",
        "server",
        "use",
    }


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("What's Kessling Labs?", ["Kessling Labs"]),
        ("How's Rosalind?", ["Rosalind"]),
        ("Call Desmond Achebe tomorrow.", ["Desmond Achebe"]),
        ("Is Dr. Anselm Coyle in?", ["Anselm Coyle"]),
        ("Is the shop open on Sundays?", []),
        ("What is half of 90?", []),
        ("What is the product of 48 and 52?", []),
        ("Convert 30 degrees Celsius to Fahrenheit.", []),
        ("What is the Flumpet 3000?", ["Flumpet 3000"]),
    ],
)
def test_sentence_starts_titles_arithmetic_and_units_are_no_gaps(
    message: str, expected: list[str]
) -> None:
    assert topics(message) == expected
