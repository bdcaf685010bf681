"""Arithmetic asked in words: "the product of 48 and 52", "20 percent more than 150".

:func:`find_phrases` rewrites each phrase it knows into an expression of the
evaluator's grammar ("48 * 52", "150 + 20% of 150") and computes that
expression with :func:`.evaluator.compute` (which the evaluator hands in), so
the fact shown is the expression actually computed. Numbers are digits here:
:mod:`.number_words` rewrites "forty-eight" first.

Phrases that name an operation ("product of", "average of", "divide 84 by 7")
always count; those that also occur in plain talk ("half of 20", "twice 5",
"5 more than 10") count only in a question or a request to compute.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from mongars_core.types import ReasoningHint

NUM = (
    r"(?<![\w.,])-?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w]|[.,]\d)"
    r"|(?<![\w.,])-?\d+(?:\.\d+)?(?![\w]|[.,]\d)"
)
_N = rf"[$€£¥]?(?:{NUM})"
_LIST = rf"{_N}(?:\s*,\s*{_N}){{0,30}}\s*,?\s+(?:and|&)\s+{_N}"
_PERCENT = r"\s*(?:%|per\s*cent\b|percent\b)"
_NUMBER_IN = re.compile(NUM)

_FRACTIONS = {
    "half": 2, "halves": 2, "third": 3, "thirds": 3, "quarter": 4, "quarters": 4,
    "fourth": 4, "fourths": 4, "fifth": 5, "fifths": 5, "sixth": 6, "sixths": 6,
    "seventh": 7, "sevenths": 7, "eighth": 8, "eighths": 8, "ninth": 9, "ninths": 9,
    "tenth": 10, "tenths": 10, "hundredth": 100, "hundredths": 100,
}  # fmt: skip
_NUMERATORS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
_NUMERATORS |= {"six": 6, "seven": 7, "eight": 8, "nine": 9}
_ORDINALS = {"second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7}
_ORDINALS |= {"eighth": 8, "ninth": 9, "tenth": 10}
_FRACTION = "|".join(sorted(_FRACTIONS, key=len, reverse=True))
_NUMERATOR = "|".join(_NUMERATORS)

# A question, or a request to compute, in the sentence of a phrase from plain talk.
_ASKED = re.compile(
    r"\?|\b(?:what|what's|whats|how\s+much|how\s+many|calculate|compute|evaluate|work\s+out"
    r"|figure\s+out|find|tell\s+me|give\s+me|solve|equals?|is\s+it)\b|=",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"[.!?\n](?:\s|$)")

Build = Callable[[dict[str, str]], str | None]


@dataclass(frozen=True)
class _Phrase:
    pattern: re.Pattern[str]
    build: Build
    needs_question: bool = False


def _numbers(text: str) -> list[str]:
    return [match[0] for match in _NUMBER_IN.finditer(text)]


def _join(op: str) -> Build:
    return lambda groups: f" {op} ".join(_numbers(groups["list"]))


def _average(groups: dict[str, str]) -> str:
    numbers = _numbers(groups["list"])
    return f"({' + '.join(numbers)}) / {len(numbers)}"


def _difference(groups: dict[str, str]) -> str | None:
    a, b = _clean(groups["a"]), _clean(groups["b"])
    larger, smaller = (a, b) if _value(a) >= _value(b) else (b, a)
    return f"{larger} - {_bracket(smaller)}"


def _fraction_of(groups: dict[str, str]) -> str:
    denominator = _FRACTIONS[groups["frac"].lower()]
    count = groups.get("k") or "one"
    numerator = _NUMERATORS.get(count.lower(), None)
    whole = _bracket(_clean(groups["x"]))
    if numerator is None:
        return f"{whole} * {_clean(count)} / {denominator}"
    if numerator == 1:
        return f"{whole} / {denominator}"
    return f"{whole} * {numerator} / {denominator}"


def _percent_change(sign: str) -> Build:
    def build(groups: dict[str, str]) -> str:
        whole = _bracket(_clean(groups["x"]))
        return f"{whole} {sign} {_clean(groups['p'])}% of {whole}"

    return build


def _percent_than(groups: dict[str, str]) -> str | None:
    direction = groups["dir"].lower()
    sign = "+" if direction in {"more", "higher", "greater", "above", "over", "bigger"} else "-"
    return _percent_change(sign)(groups)


def _template(text: str) -> Build:
    """ "{b} - {a}": the named groups put in, cleaned of currency and brackets added."""

    def build(groups: dict[str, str]) -> str:
        return text.format(**{k: _bracket(_clean(v)) for k, v in groups.items() if v})

    return build


def _power(groups: dict[str, str]) -> str:
    exponent = groups["n"].lower()
    value = _ORDINALS.get(exponent) or int(re.sub(r"\D", "", exponent))
    return f"{_bracket(_clean(groups['a']))} ^ {value}"


def _clean(number: str) -> str:
    return number.lstrip("$€£¥")


def _bracket(number: str) -> str:
    return f"({number})" if number.startswith("-") else number


def _value(number: str) -> float:
    return float(number.replace(",", ""))


def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


_MORE = r"more|higher|greater|bigger|above|over|less|lower|smaller|below|under|fewer"

_PHRASES: list[_Phrase] = [
    _Phrase(
        _compile(rf"(?P<p>{_N}){_PERCENT}\s+(?P<dir>{_MORE})\s+than\s+(?P<x>{_N})"),
        _percent_than,
    ),
    _Phrase(
        _compile(
            rf"\b(?:increase|raise|grow|mark\s+up)\s+(?P<x>{_N})\s+by\s+(?P<p>{_N}){_PERCENT}"
        ),
        _percent_change("+"),
    ),
    _Phrase(
        _compile(
            rf"\b(?:decrease|reduce|lower|discount|cut|mark\s+down)\s+(?P<x>{_N})\s+by\s+"
            rf"(?P<p>{_N}){_PERCENT}"
        ),
        _percent_change("-"),
    ),
    _Phrase(
        _compile(rf"(?P<x>{_N})\s+(?:increased|raised|marked\s+up)\s+by\s+(?P<p>{_N}){_PERCENT}"),
        _percent_change("+"),
    ),
    _Phrase(
        _compile(
            rf"(?P<x>{_N})\s+(?:decreased|reduced|discounted|cut|lowered|marked\s+down)\s+by\s+"
            rf"(?P<p>{_N}){_PERCENT}"
        ),
        _percent_change("-"),
    ),
    _Phrase(
        _compile(rf"(?P<p>{_N}){_PERCENT}\s+off\s+(?:of\s+)?(?P<x>{_N})"), _percent_change("-")
    ),
    _Phrase(
        _compile(rf"\bwhat\s+(?:percent(?:age)?|%)\s+of\s+(?P<b>{_N})\s+(?:is|are)\s+(?P<a>{_N})"),
        _template("{a} / {b} * 100"),
    ),
    _Phrase(
        _compile(rf"(?P<a>{_N})\s+(?:is|are)\s+what\s+(?:percent(?:age)?|%)\s+of\s+(?P<b>{_N})"),
        _template("{a} / {b} * 100"),
    ),
    _Phrase(
        _compile(
            rf"(?P<a>{_N})\s+(?:out\s+of|as\s+a\s+percent(?:age)?\s+of)\s+(?P<b>{_N})"
            r"(?:\s+as\s+a\s+percent(?:age)?)?(?=\s*(?:as\s+a\s+percent|\?|$|\.))"
        ),
        _template("{a} / {b} * 100"),
        needs_question=True,
    ),
    _Phrase(
        _compile(
            r"\bpercent(?:age)?\s+(?:change|increase|decrease|difference)\s+from\s+"
            rf"(?P<a>{_N})\s+to\s+(?P<b>{_N})"
        ),
        _template("({b} - {a}) / {a} * 100"),
    ),
    _Phrase(_compile(rf"\bproduct\s+of\s+(?P<list>{_LIST})"), _join("*")),
    _Phrase(_compile(rf"\b(?:sum|total)\s+of\s+(?P<list>{_LIST})"), _join("+")),
    _Phrase(_compile(rf"\b(?:(?:arithmetic\s+)?mean|average)\s+of\s+(?P<list>{_LIST})"), _average),
    _Phrase(
        _compile(rf"\bdifference\s+(?:between|of)\s+(?P<a>{_N})\s+and\s+(?P<b>{_N})"),
        _difference,
    ),
    _Phrase(_compile(rf"\badd\s+(?P<a>{_N})\s+to\s+(?P<b>{_N})"), _template("{b} + {a}")),
    _Phrase(_compile(rf"\badd\s+(?:up\s+|together\s+)?(?P<list>{_LIST})"), _join("+")),
    _Phrase(_compile(rf"(?P<list>{_LIST})\s+(?:added\s+(?:together|up)|summed)"), _join("+")),
    _Phrase(_compile(rf"(?P<list>{_LIST})\s+multiplied\s+together"), _join("*")),
    _Phrase(
        _compile(rf"\b(?:subtract|deduct)\s+(?P<a>{_N})\s+from\s+(?P<b>{_N})"),
        _template("{b} - {a}"),
    ),
    _Phrase(
        _compile(rf"\btake\s+(?P<a>{_N})\s+(?:away\s+)?from\s+(?P<b>{_N})"),
        _template("{b} - {a}"),
    ),
    _Phrase(
        _compile(rf"\bmultiply\s+(?P<a>{_N})\s+(?:by|and|with|times)\s+(?P<b>{_N})"),
        _template("{a} * {b}"),
    ),
    _Phrase(
        _compile(rf"\bdivide\s+(?P<a>{_N})\s+(?:by|into\s+groups\s+of)\s+(?P<b>{_N})"),
        _template("{a} / {b}"),
    ),
    _Phrase(
        _compile(
            rf"\b(?:divide|split|share)\s+(?P<a>{_N})\s+(?:equally\s+)?(?:into|between|among"
            rf"|by)\s+(?P<b>{_N})"
        ),
        _template("{a} / {b}"),
    ),
    _Phrase(
        _compile(rf"\bquotient\s+of\s+(?P<a>{_N})\s+(?:and|by|over|divided\s+by)\s+(?P<b>{_N})"),
        _template("{a} / {b}"),
    ),
    _Phrase(
        _compile(rf"\bhow\s+many\s+times\s+does\s+(?P<b>{_N})\s+go\s+into\s+(?P<a>{_N})"),
        _template("{a} / {b}"),
    ),
    _Phrase(
        _compile(
            rf"\bremainder\s+(?:of|when|after|from)\s+(?:dividing\s+)?(?P<a>{_N})\s+"
            rf"(?:is\s+)?(?:divided\s+)?by\s+(?P<b>{_N})"
        ),
        _template("{a} mod {b}"),
    ),
    _Phrase(
        _compile(
            rf"\b(?:(?P<k>{_NUMERATOR}|{_N})[\s-]+)?(?P<frac>{_FRACTION})\s+of\s+"
            rf"(?:the\s+number\s+)?(?P<x>{_N})"
        ),
        _fraction_of,
        needs_question=True,
    ),
    _Phrase(
        _compile(rf"\b(?:twice|double)\s+(?:of\s+)?(?P<x>{_N})"),
        _template("2 * {x}"),
        needs_question=True,
    ),
    _Phrase(
        _compile(rf"\b(?:triple|thrice)\s+(?P<x>{_N})"),
        _template("3 * {x}"),
        needs_question=True,
    ),
    _Phrase(_compile(rf"\bhalve\s+(?P<x>{_N})"), _template("{x} / 2"), needs_question=True),
    _Phrase(
        _compile(rf"(?P<a>{_N})\s+(?:more|greater)\s+than\s+(?P<b>{_N})"),
        _template("{b} + {a}"),
        needs_question=True,
    ),
    _Phrase(
        _compile(rf"(?P<a>{_N})\s+(?:less|fewer|smaller)\s+than\s+(?P<b>{_N})"),
        _template("{b} - {a}"),
        needs_question=True,
    ),
    _Phrase(_compile(rf"\bcube\s+root\s+of\s+(?P<x>{_N})"), _template("{x} ^ (1 / 3)")),
    _Phrase(_compile(rf"\bsquare\s+of\s+(?P<x>{_N})"), _template("{x} ^ 2")),
    _Phrase(_compile(rf"\bcube\s+of\s+(?P<x>{_N})"), _template("{x} ^ 3")),
    _Phrase(
        _compile(
            rf"(?P<a>{_N})\s+(?:raised\s+)?to\s+the\s+(?P<n>\d+(?:st|nd|rd|th)"
            rf"|{'|'.join(_ORDINALS)})(?:\s+power)?\b"
        ),
        _power,
    ),
]


def _asked(text: str, start: int, end: int) -> bool:
    """Whether the sentence around ``start:end`` asks a question or to compute, or the
    phrase is the whole message."""
    before = [match.end() for match in _SENTENCE_END.finditer(text, 0, start)]
    sentence_start = before[-1] if before else 0
    after = _SENTENCE_END.search(text, end)
    sentence_end = after.end() if after else len(text)
    if not text[:start].strip() and not text[end:].strip(" \t\n?!.="):
        return True
    return _ASKED.search(text[sentence_start:sentence_end]) is not None


def find_phrases(
    text: str, compute: Callable[[str], str | None], masked: list[tuple[int, int]] | None = None
) -> list[tuple[int, int, ReasoningHint]]:
    """Arithmetic phrased in words in ``text``, as ``(start, end, hint)``, each expression's
    value given by ``compute`` (:func:`.evaluator.compute`); ``masked`` spans (already
    read as something else) are skipped. Never raises."""
    taken = list(masked or [])
    found: list[tuple[int, int, ReasoningHint]] = []
    for phrase in _PHRASES:
        for match in phrase.pattern.finditer(text):
            start, end = match.span()
            if any(start < other_end and other_start < end for other_start, other_end in taken):
                continue
            if phrase.needs_question and not _asked(text, start, end):
                continue
            groups = {key: value for key, value in match.groupdict().items() if value}
            expression = phrase.build(groups)
            result = compute(expression) if expression else None
            if result is None or expression is None:
                continue
            taken.append((start, end))
            found.append(
                (start, end, ReasoningHint(kind="arithmetic", expression=expression, result=result))
            )
    return sorted(found, key=lambda item: item[0])
