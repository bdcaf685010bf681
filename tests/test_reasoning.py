"""The reasoning plugin computes arithmetic, unit conversions and dates; replies must state them."""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Callable
from datetime import date

import pluggy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mongars_core import hookspecs
from mongars_core.types import ReasoningHint, Turn
from mongars_plugins.cognition import reasoning
from mongars_plugins.cognition.evaluator import MAX_DEPTH, find_hints

TODAY = date(2025, 6, 1)  # a Sunday


def facts(message: str) -> list[str]:
    return [hint.as_fact() for hint in find_hints(message, today=TODAY)]


def kinds(message: str) -> list[str]:
    return [hint.kind for hint in find_hints(message, today=TODAY)]


def make_turn(message: str) -> Turn:
    return Turn(turn_id="t1", user_id="alice", session_id="s1", message=message)


@pytest.fixture
def plugin_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    manager.register(reasoning, name="reasoning")
    manager.check_pending()
    return manager


# -- arithmetic ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "fact"),
    [
        ("What is 17 * 23?", "17 * 23 = 391"),
        ("17 x 23", "17 x 23 = 391"),
        ("17×23", "17×23 = 391"),
        ("what's 17X23?", "17X23 = 391"),
        ("What is 12.5 / 4?", "12.5 / 4 = 3.125"),
        ("(3 + 4) * 2", "(3 + 4) * 2 = 14"),
        ("3 + 4 * 2", "3 + 4 * 2 = 11"),
        ("2^10", "2^10 = 1024"),
        ("2**10", "2**10 = 1024"),
        ("2^3^2", "2^3^2 = 512"),
        ("-2^2", "-2^2 = -4"),
        ("2^-2", "2^-2 = 0.25"),
        ("What is 15% of 80?", "15% of 80 = 12"),
        ("what is 20 percent of 250", "20 percent of 250 = 50"),
        ("What is 17 times 23?", "17 times 23 = 391"),
        ("6 multiplied by 7", "6 multiplied by 7 = 42"),
        ("100 divided by 8", "100 divided by 8 = 12.5"),
        ("5 plus 7 minus 2", "5 plus 7 minus 2 = 10"),
        ("What is the square root of 144?", "square root of 144 = 12"),
        ("sqrt(2)", "sqrt(2) = 1.41421"),
        ("√81 + 1", "√81 + 1 = 10"),
        ("what is 12 squared", "12 squared = 144"),
        ("3 cubed", "3 cubed = 27"),
        ("2 to the power of 8", "2 to the power of 8 = 256"),
        ("17 mod 5", "17 mod 5 = 2"),
        ("What is -17 * -23?", "-17 * -23 = 391"),
        ("What is 5 - -3?", "5 - -3 = 8"),
        ("1,000 + 2,500", "1,000 + 2,500 = 3500"),
        ("1,234,567 * 2", "1,234,567 * 2 = 2469134"),
        ("0.1 + 0.2", "0.1 + 0.2 = 0.3"),
        ("What is 10/3?", "10/3 = 3.33333"),
        ("1 / 3", "1 / 3 = 0.333333"),
        ("2 / 3 * 3", "2 / 3 * 3 = 2"),
        ("What is 10-3?", "10-3 = 7"),
        ("12/4 =", "12/4 = 3"),
        ("I paid $12.50 * 3 for tickets", "12.50 * 3 = 37.5"),
        ("2**100", "2**100 = 1267650600228229401496703205376"),
        ("Can you check 120 / 7 for me", "120 / 7 = 17.1429"),
    ],
)
def test_arithmetic_is_found_and_computed(message: str, fact: str) -> None:
    assert facts(message) == [fact]
    assert kinds(message) == ["arithmetic"]


def test_several_expressions_are_reported_in_order() -> None:
    assert facts("First 2 + 2, then 3 * 3 and finally 10 / 4.") == [
        "2 + 2 = 4",
        "3 * 3 = 9",
        "10 / 4 = 2.5",
    ]


def test_integer_results_stay_integers() -> None:
    (hint,) = find_hints("What is 6 / 2?")
    assert hint.result == "3"


@pytest.mark.parametrize(
    "message",
    [
        "I have 3 cats",
        "-5",
        "15%",
        "My number is 42.",
        "Call me at 555-123-4567",
        "Call me at (555) 123-4567",
        "We met on 2024-01-01",
        "Born 12/25/1990",
        "See you at 10:30",
        "I work 9-5 on weekdays",
        "The score was 3-2",
        "Take 3/4 of the cake",
        "A 1920x1080 screen",
        "Solve 2x + 1 = 5",
        "1 + 2x",
        "the 3rd and 4th floors",
        "version 1.2.3 is out",
        "80 + 15%",
        "3 times a week",
        "mp3 + 2",
        "12,5 * 2",
        "pick from 1,2,3 + 4",
    ],
)
def test_bare_numbers_dates_and_phone_numbers_are_not_arithmetic(message: str) -> None:
    assert [hint for hint in find_hints(message, today=TODAY) if hint.kind == "arithmetic"] == []


@pytest.mark.parametrize(
    "message",
    [
        "__import__('os').system('x')",
        "().__class__.__bases__[0].__subclasses__()",
        "9**9**9**9",
        "1/0",
        "What is 5 mod 0?",
        "0 ** -1",
        "10**1001",
        "99999999999 ^ 999",
        "(-8) ^ 0.5",
        "square root of -4",
        "1e308 * 10",
        "(" * 100_000,
        "1+" * 50_000 + "1",
        "2^" * 50_000 + "2",
        "-" * 100_000 + "1",
        "9" * 100_000,
        "9" * 5_000 + " * 2",
        "square root of " * 20_000 + "4",
        "50% of " * 20_000 + "3",
        "1,2 " * 50_000,
        "2024-01-01 " * 20_000,
    ],
    ids=lambda message: repr(message[:24]),
)
def test_hostile_input_returns_without_raising(message: str) -> None:
    hints = find_hints(message, today=TODAY)
    assert all(len(hint.result) < 500 for hint in hints)


@pytest.mark.parametrize("message", ["1/0", "9**9**9**9", "__import__('os').system('x')"])
def test_uncomputable_expressions_give_no_hint(message: str) -> None:
    assert find_hints(message) == []


def test_division_by_zero_skips_the_whole_expression_only() -> None:
    assert facts("1/0 + 5, and also 2 * 3") == ["2 * 3 = 6"]


def test_a_huge_message_is_read_only_at_its_start() -> None:
    message = "What is 17 * 23? " + "blah " * 20_000 + "and 2 + 2?"
    assert facts(message) == ["17 * 23 = 391"]


def test_nesting_deeper_than_the_limit_is_not_read_as_one_expression() -> None:
    assert facts("((1 + 1))") == ["((1 + 1)) = 2"]
    deep = "(" * 500 + "1 + 1" + ")" * 500
    assert all(hint.expression.count("(") <= MAX_DEPTH for hint in find_hints(deep))


@settings(max_examples=200, database=None, deadline=None)
@given(
    a=st.integers(min_value=-10_000, max_value=10_000),
    b=st.integers(min_value=-10_000, max_value=10_000),
    op=st.sampled_from(["+", "-", "*"]),
)
def test_small_integer_arithmetic_is_exact(a: int, b: int, op: str) -> None:
    compute: dict[str, Callable[[int, int], int]] = {
        "+": operator.add,
        "-": operator.sub,
        "*": operator.mul,
    }
    assert find_hints(f"What is {a} {op} {b}?") == [
        ReasoningHint(kind="arithmetic", expression=f"{a} {op} {b}", result=str(compute[op](a, b)))
    ]


# -- units ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "fact"),
    [
        ("convert 5 km to miles", "5 km in miles = 3.10686 miles"),
        ("5 km in miles", "5 km in miles = 3.10686 miles"),
        ("How many feet in 3 meters?", "3 m in feet = 9.84252 feet"),
        ("how many feet are there in 3 metres", "3 m in feet = 9.84252 feet"),
        ("100 °F to C", "100 °F in °C = 37.7778 °C"),
        ("100 fahrenheit in celsius", "100 °F in °C = 37.7778 °C"),
        ("convert 100 degrees celsius to fahrenheit", "100 °C in °F = 212 °F"),
        ("-40 C to F", "-40 °C in °F = -40 °F"),
        ("0 C in K", "0 °C in K = 273.15 K"),
        ("2 lbs to kg", "2 pounds in kg = 0.907185 kg"),
        ("1 kg in pounds", "1 kg in pounds = 2.20462 pounds"),
        ("16 oz to lb", "16 ounces in pounds = 1 pound"),
        ("500 g in oz", "500 g in ounces = 17.637 ounces"),
        ("1 mile in km", "1 mile in km = 1.60934 km"),
        ("12 in to cm", "12 inches in cm = 30.48 cm"),
        ("3 yd in ft", "3 yards in feet = 9 feet"),
        ("250 mm to inches", "250 mm in inches = 9.84252 inches"),
        ("1 gallon in liters", "1 gallon in L = 3.78541 L"),
        ("2 l to ml", "2 L in mL = 2000 mL"),
        ("3 cups to ml", "3 cups in mL = 709.765 mL"),
        ("60 mph in km/h", "60 mph in km/h = 96.5606 km/h"),
        ("100 km/h to mph", "100 km/h in mph = 62.1371 mph"),
        ("how many seconds in a day", "1 day in seconds = 86400 seconds"),
        ("90 minutes to hours", "90 minutes in hours = 1.5 hours"),
        ("2 weeks in days", "2 weeks in days = 14 days"),
        ("1,000 km to miles", "1,000 km in miles = 621.371 miles"),
        ("5 km is how many miles?", "5 km in miles = 3.10686 miles"),
        ("how many feet in a mile", "1 mile in feet = 5280 feet"),
    ],
)
def test_unit_conversions(message: str, fact: str) -> None:
    assert facts(message) == [fact]
    assert kinds(message) == ["unit"]


@pytest.mark.parametrize(
    "message",
    [
        "convert 5 km to kg",
        "100 °F to miles",
        "I ran 5 km in 30 minutes",
        "I have 3 cups in the kitchen",
        "-500 C to K",
    ],
)
def test_incompatible_or_absent_conversions_give_no_hint(message: str) -> None:
    assert find_hints(message, today=TODAY) == []


# -- dates -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "fact"),
    [
        ("what date is 30 days from today", "2025-06-01 + 30 days = 2025-07-01 (Tuesday)"),
        ("What's the date in 3 weeks?", "2025-06-01 + 3 weeks = 2025-06-22 (Sunday)"),
        ("When is 2 months from now?", "2025-06-01 + 2 months = 2025-08-01 (Friday)"),
        ("what date was 10 days ago", "2025-06-01 - 10 days = 2025-05-22 (Thursday)"),
        ("what is a week from tomorrow", "2025-06-02 + 1 week = 2025-06-09 (Monday)"),
        (
            "days between 2024-01-01 and 2024-03-01",
            "days between 2024-01-01 and 2024-03-01 = 60 days",
        ),
        (
            "How many days are there between March 3, 2025 and 25 December 2025?",
            "days between 2025-03-03 and 2025-12-25 = 297 days",
        ),
        ("2024-02-28 plus 2 days", "2024-02-28 + 2 days = 2024-03-01 (Friday)"),
        ("2024-03-01 - 1 day", "2024-03-01 - 1 day = 2024-02-29 (Thursday)"),
        ("2024-01-31 plus 1 month", "2024-01-31 + 1 month = 2024-02-29 (Thursday)"),
        ("2024-02-29 + 1 year", "2024-02-29 + 1 year = 2025-02-28 (Friday)"),
        ("3 weeks after March 3, 2025", "2025-03-03 + 3 weeks = 2025-03-24 (Monday)"),
        ("2 days before 2025-01-01", "2025-01-01 - 2 days = 2024-12-30 (Monday)"),
        ("what day of the week is 2025-12-25", "day of the week of 2025-12-25 = Thursday"),
        ("Which day was 3 March 2025?", "day of the week of 2025-03-03 = Monday"),
        ("what day is today", "day of the week of 2025-06-01 = Sunday"),
        ("how many days until 2026-12-25", "days from 2025-06-01 until 2026-12-25 = 572 days"),
        ("How many days until March 3?", "days from 2025-06-01 until 2026-03-03 = 275 days"),
        ("days until 2025-06-02", "days from 2025-06-01 until 2025-06-02 = 1 day"),
        ("how many days since 2025-01-01", "days from 2025-01-01 until 2025-06-01 = 151 days"),
    ],
)
def test_date_arithmetic(message: str, fact: str) -> None:
    assert facts(message) == [fact]
    assert kinds(message) == ["date"]


@pytest.mark.parametrize(
    "message",
    [
        "I'll be back in 3 days",
        "I moved here 2 years ago",
        "what day of the week is 2025-02-30",
        "2025-13-01 plus 2 days",
        "9999-12-31 plus 1 day",
        "what is the date in 99999 years",
    ],
)
def test_relative_phrases_without_a_date_question_and_impossible_dates_give_nothing(
    message: str,
) -> None:
    assert find_hints(message, today=TODAY) == []


def test_today_defaults_to_the_local_date() -> None:
    (hint,) = find_hints("what day is today")
    assert hint.expression == f"day of the week of {date.today().isoformat()}"


def test_mixed_message_gets_every_kind_once() -> None:
    message = "What is 17 * 23, how far is 5 km in miles, and what date is 30 days from today?"
    assert kinds(message) == ["arithmetic", "unit", "date"]


# -- the plugin --------------------------------------------------------------------------------


def test_reason_hook_returns_the_hints_of_the_message(plugin_manager: pluggy.PluginManager) -> None:
    results = [
        asyncio.run(result)
        for result in plugin_manager.hook.mongars_reason(turn=make_turn("What is 17 * 23?"))
    ]
    assert results == [[ReasoningHint(kind="arithmetic", expression="17 * 23", result="391")]]


def adapt(message: str, reply: str) -> str | None:
    turn = make_turn(message)
    turn.reasoning = find_hints(message, today=TODAY)
    return asyncio.run(reasoning.mongars_adapt_reply(turn=turn, text=reply))


@pytest.mark.parametrize(
    ("message", "reply", "adapted"),
    [
        # A wrong claim is dropped, not shown beside the fact (tests/test_reply_quality.py).
        ("What is 17 * 23?", "17 times 23 is 381.", "17 * 23 = 391."),
        ("What is 17 * 23?", "I can't do maths.", "17 * 23 = 391.\n\nI can't do maths."),
        ("What is 17 * 23?", "", "17 * 23 = 391."),
        ("What is 4 / 2?", "4 / 2 = 3", "4 / 2 = 2."),
        (
            "convert 5 km to miles",
            "That is about 3 miles.",
            "5 km in miles = 3.10686 miles.\n\nThat is about 3 miles.",
        ),
        (
            "2024-02-28 plus 2 days",
            "That would be February 30.",
            "2024-02-28 + 2 days = 2024-03-01 (Friday).\n\nThat would be February 30.",
        ),
        (
            "what day of the week is 2025-12-25",
            "It's a Friday.",
            "day of the week of 2025-12-25 = Thursday.\n\nIt's a Friday.",
        ),
        (
            "What is 2 + 2 and 3 * 3?",
            "2 + 2 is 4.",
            "3 * 3 = 9.\n\n2 + 2 is 4.",
        ),
    ],
)
def test_a_wrong_or_missing_result_gets_the_fact_prepended(
    message: str, reply: str, adapted: str
) -> None:
    assert adapt(message, reply) == adapted


@pytest.mark.parametrize(
    ("message", "reply"),
    [
        ("What is 17 * 23?", "17 * 23 = 391."),
        ("What is 17 * 23?", "That's 391.0!"),
        ("What is 250 * 4?", "That makes 1,000."),
        ("What is 999 + 1?", "It is 1,000."),
        ("What is 500 + 500?", "1000.00"),
        ("What is 4 / 2?", "4 / 2 = 2"),
        ("What is 10/3?", "Roughly 3.333."),
        ("What is -17 * 23?", "It's −391."),
        ("convert 5 km to miles", "5 km is 3.1 miles."),
        ("convert 5 km to miles", "5 km is 3.106856 miles."),
        ("2024-02-28 plus 2 days", "It is March 1st, 2024."),
        ("2024-02-28 plus 2 days", "2024-03-01"),
        ("2024-02-28 plus 2 days", "Friday, 1 March."),
        ("days between 2024-01-01 and 2024-03-01", "There are 60 days."),
        ("what day of the week is 2025-12-25", "A thursday."),
        ("2**100", "It is 1,267,650,600,228,229,401,496,703,205,376."),
        ("Hello there", "Hi! 17 * 23 = 12."),
    ],
)
def test_a_right_reply_is_left_unchanged(message: str, reply: str) -> None:
    assert adapt(message, reply) is None


def test_adapt_reply_hook_runs_through_pluggy(plugin_manager: pluggy.PluginManager) -> None:
    turn = make_turn("What is 17 * 23?")
    turn.reasoning = asyncio.run(plugin_manager.hook.mongars_reason(turn=turn)[0])
    wrong = plugin_manager.hook.mongars_adapt_reply(turn=turn, text="It is 381.")
    assert [asyncio.run(result) for result in wrong] == ["17 * 23 = 391.\n\nIt is 381."]
    right = plugin_manager.hook.mongars_adapt_reply(turn=turn, text="It is 391.")
    assert [asyncio.run(result) for result in right] == [None]


def test_hints_of_other_kinds_are_not_checked() -> None:
    turn = make_turn("hello")
    turn.reasoning = [ReasoningHint(kind="logic", expression="p and not p", result="false")]
    assert asyncio.run(reasoning.mongars_adapt_reply(turn=turn, text="It is true.")) is None


def test_long_input_is_handled_off_the_event_loop() -> None:
    message = "What is 17 * 23? " + "filler words " * 100
    turn = make_turn(message)
    assert asyncio.run(reasoning.mongars_reason(turn=turn))[0].result == "391"
