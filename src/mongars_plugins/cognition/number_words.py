"""Numbers written as words, rewritten as digits: "forty-eight" is 48.

:func:`with_digits` reads English ("two hundred and five", "three point five",
"a dozen", "2.5 million") and basic French ("quarante-huit", "soixante-dix",
"quatre-vingt-dix-neuf", "deux cents") and returns the text with each number
written in digits, so the rest of the reasoning plugin reads one notation.
Words that are only numbers inside a number ("and", "et", "un", "a") are left
alone elsewhere: "two and five" stays two numbers, "un chat" stays French.
"""

from __future__ import annotations

import re
from fractions import Fraction

_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19,
    "zéro": 0, "deux": 2, "trois": 3, "quatre": 4, "cinq": 5, "sept": 7, "huit": 8,
    "neuf": 9, "dix": 10, "onze": 11, "douze": 12, "treize": 13, "quatorze": 14,
    "quinze": 15, "seize": 16,
}  # fmt: skip
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90,
    "vingt": 20, "vingts": 20, "trente": 30, "quarante": 40, "cinquante": 50, "soixante": 60,
    "quatre-vingt": 80, "quatre-vingts": 80, "septante": 70, "huitante": 80, "nonante": 90,
}  # fmt: skip
_HUNDRED = {"hundred", "cent", "cents"}
_SCALES = {
    "thousand": 1000, "mille": 1000, "million": 10**6, "millions": 10**6, "billion": 10**9,
    "milliard": 10**9, "milliards": 10**9,
}  # fmt: skip
_MULTIPLIERS = {"hundred", "dozen", "thousand", "million", "billion"}
_DETERMINERS = {"no", "any", "every", "some", "the", "this", "that", "which", "each"}
_FRENCH = {"un", "une"}
"""Only numbers inside a number ("vingt et un"): alone they are the article."""
_FRENCH_TENS = {
    "vingt", "vingts", "trente", "quarante", "cinquante", "soixante", "quatre-vingt",
    "quatre-vingts", "septante", "huitante", "nonante",
}  # fmt: skip

_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*", re.UNICODE)
_DIGIT_SCALE = re.compile(
    r"(?<![\w.,])(?P<n>\d+(?:\.\d+)?)\s+(?P<scale>thousand|million|billion|dozen)\b(?!-)",
    re.IGNORECASE,
)
_AND_A_HALF = re.compile(r"(?<![\w.,])(?P<n>\d+)\s+and\s+a\s+half\b", re.IGNORECASE)
_HALF_A_DOZEN = re.compile(r"\bhalf\s+a\s+dozen\b", re.IGNORECASE)
_NEGATIVE = re.compile(r"\bnegative\s+(?=\d)", re.IGNORECASE)
_DIGIT_WORDS = {
    word: value for word, value in _UNITS.items() if value < 10 and word not in {"zéro"}
} | {"oh": 0}


def _parts(word: str) -> list[str]:
    """ "quatre-vingt-dix-neuf" -> ["quatre-vingt", "dix", "neuf"]; "forty-eight" -> both."""
    pieces = word.lower().split("-")
    joined: list[str] = []
    index = 0
    while index < len(pieces):
        if (
            pieces[index] == "quatre"
            and index + 1 < len(pieces)
            and pieces[index + 1]
            in {
                "vingt",
                "vingts",
            }
        ):
            joined.append("quatre-vingt")
            index += 2
            continue
        joined.append(pieces[index])
        index += 1
    return joined


class _Reader:
    """A number read word by word; :meth:`take` says whether the next word belongs to it."""

    def __init__(self) -> None:
        self.total = 0
        self.group: int | None = None
        self.last = ""
        self.scale = 10**12
        self.french = False
        self.words = 0

    @property
    def value(self) -> int | None:
        if self.group is None and self.words == 0:
            return None
        return self.total + (self.group or 0)

    def take(self, word: str) -> bool:
        if word == "a" and self.words == 0:
            self.group, self.last, self.words = 1, "unit", 1
            return True
        if word in _UNITS or (word in _FRENCH and self.last == "et"):
            number = _UNITS.get(word, 1)
            if self.group is None or self.last in {"hundred", "et"}:
                self.group = (self.group or 0) + number
            elif self.last == "tens" and (number < 10 or (self.french and number < 20)):
                self.group += number
            elif (
                self.french and self.last == "unit" and self.group % 100 in {70, 90} and number < 10
            ):
                self.group += number  # soixante-dix-sept
            else:
                return False
            self.last = "unit"
        elif word in _TENS:
            if self.group is not None and self.last != "hundred":
                return False
            self.group = (self.group or 0) + _TENS[word]
            self.french = self.french or word in _FRENCH_TENS
            self.last = "tens"
        elif word in _HUNDRED:
            if self.last not in {"unit", ""} or (self.group or 0) >= 100:
                return False
            if word != "hundred" and self.last == "" and self.words == 0:
                self.group = 1  # "cent vingt"
            elif self.group is None:
                return False
            self.group *= 100
            self.last = "hundred"
        elif word == "dozen":
            if self.last not in {"unit", "tens", "a"}:
                return False
            self.group = (self.group or 1) * 12
            self.last = "dozen"
        elif word in _SCALES:
            scale = _SCALES[word]
            if scale >= self.scale or (self.group is None and word != "mille"):
                return False
            self.total += (self.group if self.group is not None else 1) * scale
            self.group = None
            self.scale = scale
            self.last = "scale"
        else:
            return False
        self.words += 1
        return True


def _number_at(words: list[re.Match[str]], text: str, start: int) -> tuple[int, int | None]:
    """The number starting at ``words[start]``: ``(words used, value)``."""
    reader = _Reader()
    index = start
    used = 0
    while index < len(words):
        word = words[index]
        if index > start and text[words[index - 1].end() : word.start()].strip() not in {"", ","}:
            break
        lower = word[0].lower()
        if lower in {"and", "et"} and reader.last in {"hundred", "scale", "tens"}:
            if index + 1 >= len(words) or text[word.end() : words[index + 1].start()].strip():
                break
            follower = _parts(words[index + 1][0])[0]
            if lower == "et" and follower not in {"un", "une", "onze"}:
                break
            if lower == "and" and (reader.last == "tens" or follower not in _UNITS | _TENS):
                break
            reader.last = "et" if lower == "et" else reader.last
            index += 1
            continue
        parts = _parts(word[0])
        mark = (reader.total, reader.group, reader.last, reader.scale, reader.french, reader.words)
        if not all(reader.take(part) for part in parts):
            (
                reader.total,
                reader.group,
                reader.last,
                reader.scale,
                reader.french,
                reader.words,
            ) = mark
            break
        index += 1
        used = index - start
    return used, reader.value


def _standalone_ok(words: list[str]) -> bool:
    """A lone "cent" is a coin and "sept" before a day is September: not numbers."""
    if words == ["cent"] or words == ["cents"]:
        return False
    return words not in (["un"], ["une"])


def with_digits(text: str) -> str:
    """``text`` with the numbers written in words rewritten in digits."""
    text = _HALF_A_DOZEN.sub("6", text)
    words = list(_WORD.finditer(text))
    pieces: list[str] = []
    position = 0
    index = 0
    while index < len(words):
        used, value = _number_at(words, text, index)
        if used == 0 or value is None:
            index += 1
            continue
        span_words = [part for match in words[index : index + used] for part in _parts(match[0])]
        first, last = words[index], words[index + used - 1]
        if not _standalone_ok(span_words) or _is_month(span_words, text, last.end()):
            index += used
            continue
        if span_words[0] == "a" and (len(span_words) == 1 or span_words[1] not in _MULTIPLIERS):
            index += 1
            continue
        if span_words == ["one"] and index > 0 and words[index - 1][0].lower() in _DETERMINERS:
            index += 1
            continue
        if span_words[0] in _FRENCH:
            index += 1
            continue
        number = str(value)
        end = last.end()
        decimals = _decimals(words, text, index + used)
        if decimals is not None:
            digits, end, used = decimals[0], decimals[1], used + decimals[2]
            number = f"{number}.{digits}"
        pieces += [text[position : first.start()], number]
        position = end
        index += used
    pieces.append(text[position:])
    text = "".join(pieces)
    text = _POINT.sub(lambda m: f"{m['n']}.{_digit_string(m['d'])}", text)
    text = _NEGATIVE.sub("-", text)
    text = _AND_A_HALF.sub(lambda m: f"{m['n']}.5", text)
    return _DIGIT_SCALE.sub(_scaled, text)


_POINT = re.compile(
    r"(?<![\w.])(?P<n>\d+)\s+point\s+(?P<d>(?:(?:" + "|".join(_DIGIT_WORDS) + r")\b\s*)+)",
    re.IGNORECASE,
)


def _digit_string(words: str) -> str:
    return "".join(str(_DIGIT_WORDS[word.lower()]) for word in words.split())


def _decimals(words: list[re.Match[str]], text: str, index: int) -> tuple[str, int, int] | None:
    """ "point five" after a number: ``(digits, end, words used)``."""
    if index >= len(words) or words[index][0].lower() != "point":
        return None
    digits = ""
    end = words[index].end()
    used = 1
    for match in words[index + 1 :]:
        if text[end : match.start()].strip() or match[0].lower() not in _DIGIT_WORDS:
            break
        digits += str(_DIGIT_WORDS[match[0].lower()])
        end = match.end()
        used += 1
    return (digits, end, used) if digits else None


def _scaled(match: re.Match[str]) -> str:
    scale = match["scale"].lower()
    factor = 12 if scale == "dozen" else _SCALES[scale]
    value = Fraction(match["n"]) * factor
    return str(value.numerator) if value.denominator == 1 else str(float(value))


def _is_month(words: list[str], text: str, end: int) -> bool:
    """ "sept 3" is the third of September."""
    return words == ["sept"] and re.match(r"\.?\s*\d", text[end:]) is not None
