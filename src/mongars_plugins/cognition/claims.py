"""Computed claims in a reply, checked against the verified facts of the turn.

A small model restates the fact it was given and then "shows its work" wrongly
("15% of 240 = 36. 15% of 240 is 0.15 * 240 = 32.5"). :func:`contradictions`
finds the sentences that claim a computed value the facts or the evaluator
disprove:

* arithmetic the evaluator can check, followed by a claimed value
  ("0.15 * 240 = 32.5", "17 times 23 is 381");
* a conversion's target unit with another amount, in a sentence that names the
  source amount or right after "=" ("100 °F is equal to 100.00 Celsius");
* "the answer is N" (or a leading "= N") when the turn has a single numeric fact;
* the question said again with another value, when the turn has a single
  numeric fact: "a third of 99 is 99", "the number of centimetres in 5 feet is 5"
  (the last number before "is" is one of the fact's operands).

Numbers agree as :class:`WrittenNumber` says: to the precision written, within 1%.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

from mongars_core.text import NUMBER, sentence_spans
from mongars_core.types import ReasoningHint
from mongars_plugins.cognition.evaluator import find_arithmetic
from mongars_plugins.cognition.units import (
    Unit,
    conversion_units,
    find_quantities,
    lookup_unit,
)

RELATIVE_TOLERANCE = Fraction(1, 100)
"""A reply's number may differ from the fact by 1% ("3.1 miles" for 3.10686) and no more."""

# What joins a computation to the value claimed for it.
_CLAIM = re.compile(
    r"\s*(?:==?|≈|is(?:\s+equal\s+to)?|are|equals?|makes|gives(?:\s+you)?|comes\s+to"
    r"|(?:would|will)\s+be)\s*(?:(?:about|approximately|roughly|exactly)\s+)?",
    re.IGNORECASE,
)
_ANSWER = re.compile(
    r"(?:^\s*=|\b(?:answer|result|total)\s+(?:is|=|would\s+be|will\s+be)|^\s*(?:so|thus),?\s+it'?s)"
    r"\s*",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class WrittenNumber:
    """A number as written, with half a unit of its last written digit as its precision."""

    value: Fraction
    half_unit: Fraction

    def agrees_with(self, other: WrittenNumber) -> bool:
        difference = abs(self.value - other.value)
        return difference <= max(
            self.half_unit, other.half_unit
        ) and difference <= RELATIVE_TOLERANCE * abs(self.value)


def written_numbers(text: str) -> Iterator[WrittenNumber]:
    """The numbers of ``text`` in order ("1,000", "-3.5", ".5", "1e6", "−2")."""
    for match in NUMBER.finditer(text):
        yield _written(match)


def _written(match: re.Match[str]) -> WrittenNumber:
    mantissa = match["mantissa"].replace(",", "")
    _, _, decimals = mantissa.partition(".")
    scale = Fraction(10) ** int(match["exponent"] or 0)
    sign = -1 if match["sign"] else 1
    return WrittenNumber(
        value=sign * Fraction(mantissa) * scale, half_unit=scale / (2 * 10 ** len(decimals))
    )


def _number_at(text: str) -> WrittenNumber | None:
    match = NUMBER.match(text)
    return None if match is None else _written(match)


def _first_number(text: str) -> WrittenNumber | None:
    return next(written_numbers(text), None)


def contradictions(text: str, hints: list[ReasoningHint]) -> list[tuple[int, int]]:
    """The sentences of ``text`` (as spans) that claim a value the facts disprove."""
    numeric = [hint for hint in hints if _first_number(hint.result) is not None]
    single = _first_number(numeric[0].result) if len(numeric) == 1 else None
    conversions = [parsed for hint in hints if (parsed := _conversion(hint)) is not None]
    found: list[tuple[int, int]] = []
    for start, end in sentence_spans(text):
        sentence = text[start:end]
        if (
            _wrong_arithmetic(sentence)
            or any(_wrong_conversion(sentence, conversion) for conversion in conversions)
            or (single is not None and _wrong_answer(sentence, single))
            or (single is not None and _wrong_restatement(sentence, numeric[0], single))
        ):
            found.append((start, end))
    return found


def _wrong_arithmetic(sentence: str) -> bool:
    """An expression followed by a claimed value ("0.15 * 240 = 32.5") that is wrong."""
    expressions = find_arithmetic(sentence)
    results = {start: hint.result for start, _, hint in expressions}
    for _, end, hint in expressions:
        claim = _CLAIM.match(sentence, end)
        if claim is None or claim.end() == end:
            continue
        # "15% of 240 is 0.15 * 240 = 32.5": the value is another expression's.
        claimed_text = results.get(claim.end()) or sentence[claim.end() :]
        claimed = _number_at(claimed_text)
        expected = _first_number(hint.result)
        if claimed is not None and expected is not None and not expected.agrees_with(claimed):
            return True
    return False


@dataclass(frozen=True)
class _Conversion:
    amount: WrittenNumber
    source: Unit
    target: Unit
    result: WrittenNumber


def _conversion(hint: ReasoningHint) -> _Conversion | None:
    units = conversion_units(hint)
    if units is None:
        return None
    amount_text, source, target = units
    amount, result = _first_number(amount_text), _first_number(hint.result)
    if amount is None or result is None:
        return None
    return _Conversion(amount, source, target, result)


def _wrong_conversion(sentence: str, conversion: _Conversion) -> bool:
    """Another amount of the target unit, said of the source amount or after "="."""
    quantities = find_quantities(sentence)
    names_source = any(
        quantity.unit == conversion.source
        and (number := _number_at(quantity.amount)) is not None
        and conversion.amount.agrees_with(number)
        for quantity in quantities
    )
    for quantity in quantities:
        if quantity.unit != conversion.target:
            continue
        claimed = _number_at(quantity.amount)
        if claimed is None or conversion.result.agrees_with(claimed):
            continue
        if names_source or sentence[: quantity.start].rstrip().endswith(("=", "≈")):
            return True
    return False


def _wrong_answer(sentence: str, expected: WrittenNumber) -> bool:
    """ "The answer is N", "= N": a value claimed for the question's one fact."""
    starts = {start for start, _, _ in find_arithmetic(sentence)}
    for cue in _ANSWER.finditer(sentence):
        if cue.end() in starts:
            continue  # "the result is 15% of 240": the arithmetic check judges that
        claimed = _number_at(sentence[cue.end() :])
        if claimed is not None and not expected.agrees_with(claimed):
            return True
    return False


_RESTATED_KINDS = frozenset({"arithmetic", "unit"})
_OPERATOR_NEXT = re.compile(r"\s*(?:[-+*/×÷^·x]|times\b|divided\b|plus\b|minus\b)", re.I)
_CLAUSE_BREAK = re.compile(r"[,;:]|\b(?:since|because|as|while|and|but|so)\b", re.IGNORECASE)
_AFTER_CLAIMED = re.compile(r"\s*(?P<word>[^\W\d_]+(?:\s+[^\W\d_]+)?)?")


def _wrong_restatement(sentence: str, hint: ReasoningHint, expected: WrittenNumber) -> bool:
    """The fact's question said again with another value: the last number before "is"
    is an operand of the fact ("a third of 99 is 99"), and the value after it is not
    the result. A value in another unit than a conversion's target is another fact
    ("5 feet is 60 inches"), not a claim about this one."""
    if hint.kind not in _RESTATED_KINDS:
        return False
    operands = list(written_numbers(hint.expression))
    target = conversion.target if (conversion := _conversion(hint)) is not None else None
    numbers = list(NUMBER.finditer(sentence))
    for claim in _CLAIM.finditer(sentence):
        if claim.end() == claim.start() or not claim.group().strip():
            continue
        breaks = [m.end() for m in _CLAUSE_BREAK.finditer(sentence, 0, claim.start())]
        clause_start = breaks[-1] if breaks else 0
        before = [m for m in numbers if clause_start <= m.start() and m.end() <= claim.start()]
        after = [m for m in numbers if m.start() == claim.end()]
        if not before or not after:
            continue
        # Every number of the clause is an operand: "since 10% of 240 is 24" is another sum.
        if not all(any(_written(m).agrees_with(op) for op in operands) for m in before):
            continue
        if _OPERATOR_NEXT.match(sentence, after[0].end()):
            continue  # "15% of 240 is 0.15 * 240 = 36": a working, judged as arithmetic
        claimed = _written(after[0])
        if expected.agrees_with(claimed):
            continue
        if target is not None:
            unit = _AFTER_CLAIMED.match(sentence, after[0].end())
            word = unit.group("word") if unit else None
            named = lookup_unit(word) if word else None
            if word and named is None and len(word.split()) == 2:
                named = lookup_unit(word.split()[0])
            if named is not None and named != target:
                continue
        return True
    return False
