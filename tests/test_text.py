"""The shared text helpers: folding, words, numbers and sentences, as plugins rely on them."""

from __future__ import annotations

import itertools
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mongars_core.text import (
    NUMBER,
    ends_sentence,
    fingerprint,
    fold,
    fold_accents,
    search_terms,
    sentence_spans,
    sentences,
    whitespace_tokens,
    without_spans,
    word_tokens,
)

# -- folding ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Amélie", "Amelie"),
        ("Ça coûte", "Ca coute"),
        ("ﬁne", "fine"),
        ("x²", "x2"),
        ("plain", "plain"),
    ],
)
def test_accents_and_compatibility_forms_fold_away_and_case_stays(text: str, folded: str) -> None:
    assert fold_accents(text) == folded


@given(st.text())
def test_accent_folding_drops_exactly_the_combining_marks_of_the_nfkd_form(text: str) -> None:
    decomposed = unicodedata.normalize("NFKD", text)
    expected = "".join(char for char in decomposed if not unicodedata.combining(char))
    assert fold_accents(text) == expected


def test_fold_compares_case_accents_and_apostrophes_alike() -> None:
    assert fold("L’Été") == "l'ete"
    assert fold("Straße") == "strasse"


def test_a_fingerprint_ignores_case_accents_punctuation_and_spacing() -> None:
    assert fingerprint("  My sister is  Amélie!") == fingerprint("my sister is amelie")
    assert fingerprint("Zorblax's ship") == "zorblax s ship"
    assert fingerprint("I have 2 cats") != fingerprint("I have 3 cats")


# -- words --------------------------------------------------------------------------------


def test_words_keep_inner_apostrophes_and_leave_underscores_out() -> None:
    assert word_tokens("Don't say l’été, _tone_!") == ["Don't", "say", "l’été", "tone"]
    assert word_tokens("peux-tu, est-ce") == ["peux", "tu", "est", "ce"]
    assert word_tokens("peux-tu, est-ce", hyphens=True) == ["peux-tu", "est-ce"]


def test_search_terms_are_folded_letter_runs_and_digit_runs() -> None:
    assert search_terms("My dog's name is Biscuit, born 3rd May") == [
        "my",
        "dog",
        "name",
        "is",
        "biscuit",
        "born",
        "3",
        "rd",
        "may",
    ]
    assert search_terms("Amélie à Straße") == ["amelie", "strasse"]


# -- numbers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("1,000 people", ["1,000"]),
        ("12,5 km", ["12", "5"]),
        ("1,2,3", ["1", "2", "3"]),
        ("-3.5 and −2", ["-3.5", "−2"]),
        ("costs .5 dollars", [".5"]),
        ("1e6 or 2.5E-3", ["1e6", "2.5E-3"]),
        ("17-23=391", ["17", "23", "391"]),
        ("model x2, version 1.2.3", ["1.2"]),
    ],
)
def test_numbers_are_read_as_written(text: str, numbers: list[str]) -> None:
    assert [match[0] for match in NUMBER.finditer(text)] == numbers


# -- sentences ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("My doctor is Dr. Martin. He is nice.", ["My doctor is Dr. Martin.", "He is nice."]),
        (
            "Pi is 3.14, e.g. in circles, says J. R. R. Tolkien.",
            ["Pi is 3.14, e.g. in circles, says J. R. R. Tolkien."],
        ),
        ('He said "hi." Then he left.', ['He said "hi."', "Then he left."]),
        ("No. 5 is mine. I said no. Then I left", ["No. 5 is mine.", "I said no.", "Then I left"]),
        ("Well… maybe?! Sure", ["Well…", "maybe?!", "Sure"]),
        ("1. Boil water\n2. Add tea", ["1. Boil water", "2. Add tea"]),
        ("  Shopping list\r\n\nmilk  ", ["Shopping list", "milk"]),
        ("", []),
    ],
)
def test_sentences_end_at_their_mark_or_a_line_but_not_after_abbreviations(
    text: str, expected: list[str]
) -> None:
    assert sentences(text) == expected


def test_etc_and_no_end_a_sentence_only_before_a_capital() -> None:
    assert ends_sentence("etc.", "The")
    assert not ends_sentence("etc.", "and")
    assert ends_sentence("etc.", None)
    assert not ends_sentence("1.", "Boil", first=True)
    assert ends_sentence("1.", "Boil")  # "I counted to 1. Boil ..."
    assert not ends_sentence("(Dr.", "Who)")
    assert not ends_sentence("word", None)


@given(st.text(alphabet=st.sampled_from("ab .!?…\n\u2029\"')e.g1")))
def test_sentence_spans_are_ordered_trimmed_and_lose_no_word(text: str) -> None:
    spans = sentence_spans(text)
    assert all(start < end for start, end in spans)
    assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(spans))
    assert all(not text[start].isspace() and not text[end - 1].isspace() for start, end in spans)
    assert [word for start, end in spans for word in text[start:end].split()] == text.split()


@given(st.text())
def test_whitespace_tokens_are_the_tokens_of_str_split(text: str) -> None:
    tokens = whitespace_tokens(text)
    assert [token.text for token in tokens] == text.split()
    assert all(text[token.start : token.end] == token.text for token in tokens)


def test_line_breaks_are_counted_after_each_token() -> None:
    tokens = whitespace_tokens("one two\r\nthree\n\nfour\u2029five")
    assert [token.line_breaks for token in tokens] == [0, 1, 2, 2, 0]


def test_text_without_spans_keeps_tidy_spacing() -> None:
    text = "Keep this. Drop this. Keep that.\n\nDrop me.\n\nLast."
    spans = [(11, 21), (34, 42)]
    assert [text[start:end] for start, end in spans] == ["Drop this.", "Drop me."]
    assert without_spans(text, spans) == "Keep this. Keep that.\n\nLast."
    assert without_spans(text, []) is text
