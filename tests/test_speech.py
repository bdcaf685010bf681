"""The speech plugin plans how a reply is spoken: segments, durations, pauses, tempo."""

from __future__ import annotations

import asyncio
import types

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mongars_core.settings import Settings
from mongars_core.types import Turn
from mongars_plugins.speech import (
    DEFAULT_WORDS_PER_SECOND,
    MAX_TEMPO,
    MIN_TEMPO,
    mongars_plan_speech,
    plan_speech,
)


def segment_texts(text: str) -> list[str]:
    return [segment.text for segment in plan_speech(text, "t-1").segments]


def test_sentences_become_segments_with_pauses_between() -> None:
    plan = plan_speech("Hello there! How are you today? I am fine.", "t-1")
    assert [s.text for s in plan.segments] == ["Hello there!", "How are you today?", "I am fine."]
    pauses = [s.pause_after for s in plan.segments]
    assert pauses[1] > pauses[0] > 0  # a question gets the longer pause
    assert pauses[-1] == 0.0
    assert plan.turn_id == "t-1"
    assert plan.text == "Hello there! How are you today? I am fine."


def test_abbreviations_and_decimals_do_not_end_sentences() -> None:
    assert segment_texts("Pi is about 3.14, e.g. in circles. Dr. Smith agrees.") == [
        "Pi is about 3.14, e.g. in circles.",
        "Dr. Smith agrees.",
    ]


def test_ellipsis_and_list_markers() -> None:
    assert segment_texts("Well… maybe. No. 5 is mine.") == ["Well…", "maybe.", "No. 5 is mine."]
    assert segment_texts("1. Boil water\n2. Add tea") == ["1. Boil water", "2. Add tea"]


def test_paragraphs_pause_longer_than_sentences() -> None:
    plan = plan_speech("First point.\n\nSecond point. Third point.", "t-1")
    assert [s.text for s in plan.segments] == ["First point.", "Second point.", "Third point."]
    assert plan.segments[0].pause_after > plan.segments[1].pause_after > 0


def test_a_line_without_punctuation_is_its_own_segment() -> None:
    assert segment_texts("Shopping list\nmilk and eggs") == ["Shopping list", "milk and eggs"]


def test_very_long_sentences_are_cut_at_commas() -> None:
    text = (
        "This is a very long sentence that goes on and on, with many clauses that keep "
        "adding more and more words, so that a listener would need a breath somewhere, "
        "which is why we cut it."
    )
    plan = plan_speech(text, "t-1")
    assert len(plan.segments) > 1
    assert all(s.text.endswith(",") for s in plan.segments[:-1])
    assert all(0 < s.pause_after < 0.5 for s in plan.segments[:-1])


def test_a_short_sentence_with_commas_is_not_cut() -> None:
    assert segment_texts("Yes, of course, gladly.") == ["Yes, of course, gladly."]


def test_durations_follow_the_speaking_rate() -> None:
    text = "The cat sat on the mat and looked at the birds outside the window all day."
    plan = plan_speech(text, "t-1")
    words = len(text.split())
    total = sum(s.estimated_duration for s in plan.segments)
    expected = words / (DEFAULT_WORDS_PER_SECOND * plan.tempo)
    assert total == pytest.approx(expected, rel=0.05)
    assert plan.average_words_per_second == pytest.approx(words / total, rel=0.01)


def test_a_slower_rate_gives_longer_durations() -> None:
    text = "A plain sentence to say out loud."
    fast = plan_speech(text, "t-1", words_per_second=3.0)
    slow = plan_speech(text, "t-1", words_per_second=1.5)
    assert slow.segments[0].estimated_duration > fast.segments[0].estimated_duration > 0


def test_numbers_take_longer_to_say_than_words() -> None:
    words = plan_speech("It cost many dollars.", "t-1").segments[0].estimated_duration
    digits = plan_speech("It cost 27,360.45 dollars.", "t-1").segments[0].estimated_duration
    assert digits > words


def test_tempo_is_faster_for_short_exclamations_and_slower_for_dense_questions() -> None:
    cheer = plan_speech("Great job!", "t-1").tempo
    prose = plan_speech("The weather was mild and we walked home.", "t-1").tempo
    dense = plan_speech(
        "Did the 2024 recalibration of interferometric measurements exceed 3.5%?", "t-1"
    ).tempo
    assert MIN_TEMPO <= dense < prose < cheer <= MAX_TEMPO
    assert prose == 1.0


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t"])
def test_blank_text_gives_an_empty_plan(text: str) -> None:
    plan = plan_speech(text, "t-1")
    assert plan.segments == []
    assert plan.tempo == 1.0
    assert plan.average_words_per_second == 0.0


def test_a_non_positive_rate_is_rejected() -> None:
    with pytest.raises(ValueError, match="words_per_second"):
        plan_speech("Hello.", "t-1", words_per_second=0)


def make_turn(settings: object) -> Turn:
    return Turn(
        turn_id="t-9",
        user_id="alice",
        session_id="s-1",
        message="hi",
        services=types.SimpleNamespace(store=None, settings=settings),
    )


def test_hook_uses_the_configured_rate_or_the_default() -> None:
    text = "One two three four five six."
    configured = Settings(speech={"words_per_second": 5.2})
    fast = asyncio.run(mongars_plan_speech(make_turn(configured), text))
    default = asyncio.run(mongars_plan_speech(make_turn(None), text))
    assert fast.turn_id == "t-9"
    assert default.segments[0].estimated_duration == pytest.approx(
        2 * fast.segments[0].estimated_duration, rel=0.01
    )


@given(st.text())
def test_any_text_is_planned_without_losing_words(text: str) -> None:
    plan = plan_speech(text, "t-1")
    assert [w for s in plan.segments for w in s.text.split()] == text.split()
    assert all(s.estimated_duration >= 0 and s.pause_after >= 0 for s in plan.segments)
    assert MIN_TEMPO <= plan.tempo <= MAX_TEMPO
    if plan.segments:
        assert plan.segments[-1].pause_after == 0.0


def test_source_numbers_are_not_spoken() -> None:
    plan = plan_speech("The gate code is 4721. [1] The key is under the pot [2].", "t1")
    assert [segment.text for segment in plan.segments] == [
        "The gate code is 4721.",
        "The key is under the pot.",
    ]
    assert plan.text.endswith("[2].")  # the plan keeps the reply as written
