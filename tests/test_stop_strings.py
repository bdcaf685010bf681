"""StopStrings: a stream cut at its first stop string, which is left out."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from mongars_core.reply_text import StopStrings


def run(stops: list[str], deltas: list[str]) -> str:
    cut = StopStrings(stops)
    shown = "".join(cut.feed(delta) for delta in deltas)
    return shown + cut.flush()


def test_a_stop_string_split_over_deltas_is_left_out_with_what_follows() -> None:
    assert run(["\nUser:"], ["Hello", " there\nUs", "er: more", " text"]) == "Hello there"


def test_text_that_only_looks_like_a_stop_string_start_is_released() -> None:
    cut = StopStrings(["END"])
    assert cut.feed("the E") == "the "  # "E" may begin "END": held back
    assert cut.feed("ast wind") == "East wind"
    assert cut.flush() == ""
    assert not cut.stopped


def test_the_earliest_stop_string_wins() -> None:
    assert run(["b", "a"], ["xxaxb"]) == "xx"


def test_without_stop_strings_everything_passes() -> None:
    assert run([], ["a", "b"]) == "ab"
    assert run([""], ["a", "b"]) == "ab"


@given(
    text=st.text(alphabet="abc \n", max_size=40),
    stop=st.text(alphabet="abc \n", min_size=1, max_size=4),
    cuts=st.lists(st.integers(min_value=0, max_value=40), max_size=6),
)
def test_any_split_gives_the_text_before_the_first_stop(
    text: str, stop: str, cuts: list[int]
) -> None:
    points = sorted({0, len(text), *(min(cut, len(text)) for cut in cuts)})
    deltas = [text[start:end] for start, end in pairwise(points)]
    expected = text.split(stop, 1)[0]
    assert run([stop], deltas) == expected
