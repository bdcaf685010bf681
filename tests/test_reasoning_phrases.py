"""Arithmetic in words, numbers as words, conversions in any order, times of day and ages:
each read by a rule into the expression actually computed."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest

from mongars_core.types import Turn
from mongars_plugins.cognition import reasoning
from mongars_plugins.cognition.evaluator import compute, find_hints
from mongars_plugins.cognition.number_words import with_digits

TODAY = date(2026, 12, 1)


def facts(message: str) -> list[str]:
    return [hint.as_fact() for hint in find_hints(message, today=TODAY)]


def kinds(message: str) -> list[str]:
    return [hint.kind for hint in find_hints(message, today=TODAY)]


@pytest.mark.parametrize(
    ("message", "fact"),
    [
        ("What is the product of 48 and 52?", "48 * 52 = 2496"),
        ("product of 2, 3 and 7", "2 * 3 * 7 = 42"),
        ("the sum of 17, 25 and 8", "17 + 25 + 8 = 50"),
        ("What's the difference between 120 and 45?", "120 - 45 = 75"),
        ("the difference between 10 and 30", "30 - 10 = 20"),
        ("what is half of 86", "86 / 2 = 43"),
        ("What is a third of 72?", "72 / 3 = 24"),
        ("What is two thirds of 90?", "90 * 2 / 3 = 60"),
        ("what is three quarters of 48", "48 * 3 / 4 = 36"),
        ("What is twice 37?", "2 * 37 = 74"),
        ("What's the average of 3, 5 and 10?", "(3 + 5 + 10) / 3 = 6"),
        ("the mean of 4, 8, 15 and 21", "(4 + 8 + 15 + 21) / 4 = 12"),
        ("What is 20 percent more than 150?", "150 + 20% of 150 = 180"),
        ("what is 10% less than 80", "80 - 10% of 80 = 72"),
        ("increase 80 by 25%", "80 + 25% of 80 = 100"),
        ("what is 30% off 60", "60 - 30% of 60 = 42"),
        ("What percent of 50 is 12?", "12 / 50 * 100 = 24"),
        ("18 is what percentage of 72?", "18 / 72 * 100 = 25"),
        ("What is the percentage change from 40 to 50?", "(50 - 40) / 40 * 100 = 25"),
        ("What is 15% of 80?", "15% of 80 = 12"),
        ("divide 84 by 7", "84 / 7 = 12"),
        ("multiply 13 by 14", "13 * 14 = 182"),
        ("subtract 18 from 100", "100 - 18 = 82"),
        ("Add 19 to 23", "23 + 19 = 42"),
        ("add 45 and 55", "45 + 55 = 100"),
        ("what is 7 more than 28", "28 + 7 = 35"),
        ("What is 12 less than 50?", "50 - 12 = 38"),
        ("What is the remainder when 29 is divided by 6?", "29 mod 6 = 5"),
        ("How many times does 9 go into 108?", "108 / 9 = 12"),
        ("what is the cube root of 125", "125 ^ (1 / 3) = 5"),
        ("What is the square of 15?", "15 ^ 2 = 225"),
        ("what is 2 to the 5th power", "2 ^ 5 = 32"),
        ("what is 3 to the fifth power", "3 ^ 5 = 243"),
        ("What is the square root of 196?", "square root of 196 = 14"),
        ("What is the sum of -3 and 5?", "-3 + 5 = 2"),
        ("what is the difference between 3 and -5", "3 - (-5) = 8"),
    ],
)
def test_arithmetic_phrased_in_words_shows_the_expression_computed(message: str, fact: str) -> None:
    assert facts(message) == [fact]
    expression, result = fact.rsplit(" = ", 1)
    assert compute(expression) == result, "the fact's expression is what was computed"


@pytest.mark.parametrize(
    ("text", "digits"),
    [
        ("forty-eight times fifty-two", "48 times 52"),
        ("two hundred and five", "205"),
        ("one hundred and twenty three", "123"),
        ("three point five", "3.5"),
        ("seven point two five", "7.25"),
        ("two thousand and twenty-four", "2024"),
        ("a dozen eggs", "12 eggs"),
        ("three dozen", "36"),
        ("half a dozen", "6"),
        ("2.5 million", "2500000"),
        ("one and a half", "1.5"),
        ("negative five plus 3", "-5 plus 3"),
        ("add two and five", "add 2 and 5"),
        ("the sum of one hundred and fifty and two", "the sum of 150 and 2"),
        ("quarante-huit", "48"),
        ("soixante-dix-sept", "77"),
        ("quatre-vingt-dix-neuf", "99"),
        ("vingt et un", "21"),
        ("deux cents", "200"),
        ("trois mille deux cent", "3200"),
        # Left alone: words that are numbers only inside a number.
        ("I have a cat", "I have a cat"),
        ("un chat", "un chat"),
        ("no one knows", "no one knows"),
        ("Sept 3", "Sept 3"),
        ("fifty cent", "50 cent"),
    ],
)
def test_numbers_written_as_words_become_digits(text: str, digits: str) -> None:
    assert with_digits(text) == digits


@pytest.mark.parametrize(
    ("message", "fact"),
    [
        ("what is forty-eight times fifty-two", "48 times 52 = 2496"),
        ("What is two hundred and five plus ninety-five?", "205 plus 95 = 300"),
        ("three point five times four", "3.5 times 4 = 14"),
        ("what is the product of six and seven", "6 * 7 = 42"),
        ("What's half of one hundred?", "100 / 2 = 50"),
        ("quarante-huit fois deux", "48 fois 2 = 96"),
        ("combien font vingt et un plus vingt et un", "21 plus 21 = 42"),
    ],
)
def test_numbers_written_as_words_are_computed(message: str, fact: str) -> None:
    assert facts(message) == [fact]


@pytest.mark.parametrize(
    ("message", "fact"),
    [
        ("How many centimetres is 5 feet?", "5 feet in cm = 152.4 cm"),
        ("5 feet in centimetres", "5 feet in cm = 152.4 cm"),
        ("how many inches tall is 180 cm", "180 cm in inches = 70.8661 inches"),
        ("What is 30 degrees Celsius in Fahrenheit?", "30 °C in °F = 86 °F"),
        ("convert 3 miles to km", "3 miles in km = 4.82803 km"),
        ("6 feet equals how many centimeters?", "6 feet in cm = 182.88 cm"),
        ("How many grams does 3 pounds make?", "3 pounds in g = 1360.78 g"),
        ("convert twenty miles to kilometres", "20 miles in km = 32.1869 km"),
        ("how much is 2 pounds in kg", "2 pounds in kg = 0.907185 kg"),
    ],
)
def test_unit_conversions_read_in_any_order(message: str, fact: str) -> None:
    assert facts(message) == [fact]
    assert kinds(message) == ["unit"]


@pytest.mark.parametrize(
    ("message", "fact"),
    [
        ("What time is it 45 minutes after 10:30?", "10:30 + 45 minutes = 11:15"),
        (
            "what time is 2 hours and 15 minutes after 9pm",
            "21:00 + 2 hours 15 minutes = 23:15 (11:15 pm)",
        ),
        ("what is 10:45 plus 30 minutes", "10:45 + 30 minutes = 11:15"),
        ("What time was it 90 minutes before 8:00?", "08:00 - 1 hour 30 minutes = 06:30"),
        ("It's 9:15 now. What time will it be in 2 hours?", "09:15 + 2 hours = 11:15"),
        ("what time is 20 minutes before noon", "12:00 - 20 minutes = 11:40 (11:40 am)"),
        (
            "What time is 1 hour 30 minutes after 23:00?",
            "23:00 + 1 hour 30 minutes = 00:30, 1 day later",
        ),
        ("what time is half an hour after 6:45", "06:45 + 30 minutes = 07:15"),
    ],
)
def test_durations_move_times_of_day(message: str, fact: str) -> None:
    assert facts(message) == [fact]
    assert kinds(message) == ["time"]


@pytest.mark.parametrize(
    ("message", "fact"),
    [
        (
            "How old is someone born in 1990?",
            "2026 - 1990 = 36 years (or 35 before the birthday in 2026)",
        ),
        (
            "I was born on 12 March 1985, how old am I?",
            "age on 2026-12-01 of someone born on 1985-03-12 = 41 years",
        ),
        (
            "If I was born on 25 December 1999, how old am I?",
            "age on 2026-12-01 of someone born on 1999-12-25 = 26 years",
        ),
        (
            "how old will I be in 2030 if I was born in 1990",
            "2030 - 1990 = 40 years (or 39 before the birthday in 2030)",
        ),
    ],
)
def test_ages_are_counted_from_today(message: str, fact: str) -> None:
    assert facts(message) == [fact]
    assert kinds(message) == ["age"]


@pytest.mark.parametrize(
    "message",
    [
        "I have 2 cats and 3 dogs",
        "I have two brothers and three sisters.",
        "Half of my 20 friends live in Paris.",
        "Twice a week I go swimming.",
        "I was born in 1990 and grew up in Lyon.",
        "We met at 10:30 and talked for 2 hours.",
        "I'll call you 10 minutes after 9pm.",
        "My son is 7 and my daughter is 10, 3 more than him.",
        "The meeting moved from 3pm to 4pm.",
        "I'd like a table for 2 at 8pm.",
        "She scored 9 out of 10 on her test!",
        "no one wants a third of the cake",
        "I read a third of 300 pages",
    ],
)
def test_ordinary_chat_with_numbers_gets_no_fact(message: str) -> None:
    assert facts(message) == []


@pytest.mark.parametrize(
    ("message", "result"),
    [
        ("What time is it 45 minutes after 10:30?", "It will be 11:15."),
        ("what time is 2 hours and 15 minutes after 9pm", "That is 11:15 pm."),
    ],
)
def test_a_reply_naming_the_time_is_left_alone(message: str, result: str) -> None:
    turn = Turn(turn_id="t", user_id="u", session_id="s", message=message)
    turn.reasoning = find_hints(message, today=TODAY)
    assert asyncio.run(reasoning.mongars_adapt_reply(turn=turn, text=result)) is None


def test_a_reply_with_the_wrong_time_gets_the_fact() -> None:
    message = "What time is it 45 minutes after 10:30?"
    turn = Turn(turn_id="t", user_id="u", session_id="s", message=message)
    turn.reasoning = find_hints(message, today=TODAY)
    adapted = asyncio.run(reasoning.mongars_adapt_reply(turn=turn, text="It will be 11:45."))
    assert adapted == "10:30 + 45 minutes = 11:15.\n\nIt will be 11:45."


@pytest.mark.parametrize(
    "message",
    [
        "sum of " + "1, " * 2000 + "x",
        "product of " + "1 , " * 1500 + "and",
        "forty-" * 800,
        "one hundred and " * 400,
        "half of " * 600 + "3",
        "10:30 " * 700 + "plus",
        "45 minutes after " * 300,
        "born in 1990 how old " * 200,
        "what is 5 more than " * 500 + "3",
        "quatre-vingt-" * 500,
        "point " * 1000 + "five",
    ],
    ids=lambda message: repr(message[:20]),
)
def test_hostile_phrases_return_without_raising(message: str) -> None:
    assert all(len(hint.result) < 500 for hint in find_hints(message, today=TODAY))


def test_a_list_of_number_words_is_not_a_subtraction() -> None:
    # A Markdown list: each line is an item, not "1 - 2".
    assert find_hints("- one\n- two") == []
    assert find_hints("things:\n- 3\n- 4\n\nthat is all") == []
    assert [h.result for h in find_hints("what is 2+2?\nand 3*3?")] == ["4", "9"]


@pytest.mark.parametrize(
    ("message", "reply", "corrected"),
    [
        (
            "how many centimetres is 5 feet",
            "5 feet in cm = 152.4 cm.\n\nThe number of centimetres in 5 feet is 5.",
            "5 feet in cm = 152.4 cm.",
        ),
        ("What is a third of ninety-nine?", "99 / 3 = 33.\n\nA third of 99 is 99.", "99 / 3 = 33."),
        # Right, or about something else: left alone.
        ("how many centimetres is 5 feet", "5 feet is 60 inches, which is 152.4 cm.", None),
        ("what is 15% of 240", "15% of 240 is 36, since 10% of 240 is 24.", None),
        ("what is 17 * 23", "17 * 23 is 391. That is 17 rows of 23 seats.", None),
    ],
)
def test_the_question_said_again_with_a_wrong_value_is_dropped(
    message: str, reply: str, corrected: str | None
) -> None:
    turn = Turn(turn_id="t", user_id="u", session_id="s", message=message)
    turn.reasoning = find_hints(message)
    assert reasoning.correct(turn, reply) == corrected
