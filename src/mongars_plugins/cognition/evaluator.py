"""Find and compute the arithmetic, unit conversions, dates, times and ages of a message.

:func:`find_hints` is the entry point; :func:`compute` evaluates one
expression. Arithmetic is tokenized and parsed by a small recursive-descent
parser over a fixed grammar (numbers, ``+ - * / ^ mod``, parentheses, "X% of
Y", square roots, "squared"/"cubed" and their English words); nothing is
ever handed to ``eval``. Values are exact fractions until a square root or
fractional power forces a float. Every limit (text length,
nesting depth, exponent, result size) makes the expression be skipped, never
raise. Unit conversions live in :mod:`.units`, dates in :mod:`.dates`, times of
day and ages in :mod:`.clock`, arithmetic phrased in words in :mod:`.phrases`.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from fractions import Fraction

from mongars_core.types import ReasoningHint
from mongars_plugins.cognition.clock import find_age_hints, find_clock_hints
from mongars_plugins.cognition.dates import DATE_LITERAL, find_date_hints
from mongars_plugins.cognition.number_words import with_digits
from mongars_plugins.cognition.phrases import find_phrases
from mongars_plugins.cognition.units import find_conversions, format_significant

logger = logging.getLogger(__name__)

MAX_TEXT_CHARS = 4000
"""Only this much of a message is read: the start of a pasted book is not a sum."""
MAX_DEPTH = 40
MAX_EXPONENT = 1000
MAX_RESULT_DIGITS = 400
MAX_EXACT_DECIMALS = 10

_MAX_BITS = math.ceil(MAX_RESULT_DIGITS * math.log2(10))

Value = Fraction | float


class _Unevaluable(Exception):
    """The expression parsed but has no reportable value (1/0, 9**9**9, sqrt(-1))."""


# -- tokens -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # num, op, x, lparen, rparen, percent, of, sqrt, squared, cubed, stop
    text: str
    start: int
    end: int
    op: str = ""
    value: Fraction = Fraction(0)


_TOKEN = re.compile(
    r"(?P<ws>\s+)"
    r"|(?P<times>\b(?:multiplied\s+by|times|fois|multipli[ée]\s+par)\b)"
    r"|(?P<divide>\b(?:divided\s+by|divis[ée]\s+par)\b)"
    r"|(?P<plus>\bplus\b)"
    r"|(?P<minus>\b(?:minus|moins)\b)"
    r"|(?P<mod>\bmod(?:ulo)?\b)"
    r"|(?P<power>\b(?:raised\s+)?to\s+the\s+power(?:\s+of)?\b|\braised\s+to\b)"
    r"|(?P<sqrt>\bsquare\s+root\s+of\b|\bsqrt\b|√)"
    r"|(?P<squared>\bsquared\b)"
    r"|(?P<cubed>\bcubed\b)"
    r"|(?P<percent>%|\bper\s*cent\b|\bpercent\b)"
    r"|(?P<of>\bof\b)"
    r"|(?P<num>\d{1,3}(?:,\d{3})+(?!\d|,\d)(?:\.\d+)?|\d+(?:\.\d+)?|(?<!\d)\.\d+)"
    r"|(?P<symbol>\*\*|[-+*/^×÷·−()])"
    r"|(?P<currency>[$€£¥](?=\d))"
    r"|(?P<word>[^\W\d_]+)"
    r"|(?P<other>.)",
    re.IGNORECASE | re.DOTALL,
)
_SYMBOL_OPS = {"**": "^", "^": "^", "*": "*", "×": "*", "·": "*", "/": "/", "÷": "/"}
_SYMBOL_OPS |= {"+": "+", "-": "-", "−": "-"}
_WORD_OPS = {"times": "*", "divide": "/", "plus": "+", "minus": "-", "mod": "mod", "power": "^"}

# Written dates, times and phone numbers look like sums ("2024-01-01", "10:30", "555-123-4567").
_NOT_ARITHMETIC = re.compile(
    r"\b\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}\b"
    r"|\b\d{1,2}:\d{2}(?::\d{2})?\b"
    r"|(?:\+\d{1,3}[\s.-]?)?(?:\(\d{3}\)\s?|\b\d{3}[\s.-])\d{3}[\s.-]\d{4}\b"
)

# "12,5" is 12.5 in French and "1,2,3" a list; only "1,000"-style grouping is a number.
_COMMA_NUMBER = re.compile(r"\d+(?:,\d+)+")
_THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3})+")

# An ambiguous expression ("10-3", "3/4", "1920x1080") counts only after one of these.
_ASKS_TO_COMPUTE = re.compile(
    r"\b(?:what\s*(?:is|'s|’s|are)|whats|how\s+much\s+is|calculate|compute|evaluate|solve"
    r"|work\s+out)\b[^.!?\n]{0,12}$",
    re.IGNORECASE,
)


def _tokenize(text: str, masked: list[tuple[int, int]]) -> list[_Token]:
    is_masked_char = bytearray(len(text))
    for mask_start, mask_end in masked:
        is_masked_char[mask_start:mask_end] = b"\x01" * (mask_end - mask_start)
    tokens: list[_Token] = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup or "other"
        start, end, raw = match.start(), match.end(), match[0]
        if kind == "ws" and "\n" in raw:
            # Lines are separate: "- one\n- two" is a list, not 1 - 2.
            tokens.append(_Token("stop", raw, start, end))
            continue
        if kind in {"ws", "currency"}:
            continue
        is_masked = any(is_masked_char[start:end])
        if is_masked or (kind == "num" and len(raw) > MAX_RESULT_DIGITS):
            tokens.append(_Token("stop", raw, start, end))
        elif kind == "num":
            tokens.append(_Token("num", raw, start, end, value=Fraction(raw.replace(",", ""))))
        elif kind == "symbol" and raw in "()":
            tokens.append(_Token("lparen" if raw == "(" else "rparen", raw, start, end))
        elif kind == "symbol":
            tokens.append(_Token("op", raw, start, end, op=_SYMBOL_OPS[raw]))
        elif kind in _WORD_OPS:
            tokens.append(_Token("op", raw, start, end, op=_WORD_OPS[kind]))
        elif kind in {"sqrt", "squared", "cubed", "percent", "of"}:
            tokens.append(_Token(kind, raw, start, end))
        elif kind == "word" and raw.lower() == "x":
            tokens.append(_Token("x", raw, start, end, op="*"))
        else:
            tokens.append(_Token("stop", raw, start, end))
    return _resolve_letters(tokens)


def _resolve_letters(tokens: list[_Token]) -> list[_Token]:
    """Decide which "x" multiplies, and drop numbers glued to words ("3rd", "mp3", "2x").

    "x" multiplies only between two operands ("17 x 23", "17x23"); in "2x + 1"
    it is a variable, which makes "2x" no number at all.
    """
    resolved = list(tokens)
    for i, token in enumerate(tokens):
        if token.kind != "x":
            continue
        before = tokens[i - 1].kind if i > 0 else ""
        after = tokens[i + 1].kind if i + 1 < len(tokens) else ""
        is_operator = before in {"num", "rparen"} and after in {"num", "lparen"}
        resolved[i] = _Token(
            "op" if is_operator else "stop", token.text, token.start, token.end, "*"
        )
    for i, token in enumerate(resolved):
        if token.kind != "num":
            continue
        neighbours = (
            resolved[i - 1] if i > 0 else None,
            resolved[i + 1] if i + 1 < len(resolved) else None,
        )
        if any(
            other is not None
            and other.kind == "stop"
            and other.text[:1].isalnum()
            and (other.end == token.start or other.start == token.end)
            for other in neighbours
        ):
            resolved[i] = _Token("stop", token.text, token.start, token.end)
    return resolved


# -- syntax ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Number:
    value: Fraction


@dataclass(frozen=True)
class _Chain:
    """Left-associative ``first op operand op operand...``, kept flat so depth stays low."""

    first: _Node
    rest: tuple[tuple[str, _Node], ...]


@dataclass(frozen=True)
class _Negate:
    operand: _Node


@dataclass(frozen=True)
class _Power:
    base: _Node
    exponent: _Node


@dataclass(frozen=True)
class _SquareRoot:
    operand: _Node


_Node = _Number | _Chain | _Negate | _Power | _SquareRoot
_Rule = Callable[[], _Node | None]


class _Parser:
    """Recursive descent over the tokens; every rule backtracks instead of failing loudly.

    Grammar (``^`` is right-associative and binds tighter than unary minus)::

        sum     = product (("+" | "-") product)*
        product = unary (("*" | "/" | "mod") unary)*
        unary   = ("-" | "+") unary | power
        power   = postfix ("^" unary)?
        postfix = primary ("%" "of" unary | "squared" | "cubed")*
        primary = NUMBER | "(" sum ")" | "square root of" unary
    """

    def __init__(self, tokens: list[_Token], position: int) -> None:
        self.tokens = tokens
        self.position = position
        self.operators: list[_Token] = []
        self.depth = 0

    def _peek(self, kind: str, ops: str = "") -> _Token | None:
        if self.position >= len(self.tokens):
            return None
        token = self.tokens[self.position]
        if token.kind != kind or (ops and token.op not in ops.split()):
            return None
        return token

    def _mark(self) -> tuple[int, int]:
        return self.position, len(self.operators)

    def _reset(self, mark: tuple[int, int]) -> None:
        self.position = mark[0]
        del self.operators[mark[1] :]

    def parse_sum(self) -> _Node | None:
        return self._chain(self._product, "+ -")

    def _product(self) -> _Node | None:
        return self._chain(self._unary, "* / mod")

    def _chain(self, operand: _Rule, ops: str) -> _Node | None:
        first = operand()
        if first is None:
            return None
        rest: list[tuple[str, _Node]] = []
        while (token := self._peek("op", ops)) is not None:
            mark = self._mark()
            self.position += 1
            right = operand()
            if right is None:
                self._reset(mark)
                break
            self.operators.append(token)
            rest.append((token.op, right))
        return _Chain(first, tuple(rest)) if rest else first

    def _unary(self) -> _Node | None:
        sign = self._peek("op", "+ -")
        if sign is None:
            return self._power()
        mark = self._mark()
        self.position += 1
        operand = self._nested(self._unary)
        if operand is None:
            self._reset(mark)
            return None
        return _Negate(operand) if sign.op == "-" else operand

    def _power(self) -> _Node | None:
        base = self._postfix()
        token = self._peek("op", "^")
        if base is None or token is None:
            return base
        mark = self._mark()
        self.position += 1
        exponent = self._nested(self._unary)
        if exponent is None:
            self._reset(mark)
            return base
        self.operators.append(token)
        return _Power(base, exponent)

    def _postfix(self) -> _Node | None:
        node = self._primary()
        while node is not None:
            if (token := self._peek("squared") or self._peek("cubed")) is not None:
                self.position += 1
                self.operators.append(token)
                node = _Power(node, _Number(Fraction(2 if token.kind == "squared" else 3)))
            elif self._peek("percent") is not None:
                # Only "X% of Y": "80 + 15%" means 80.15 to some readers and 92 to others.
                mark = self._mark()
                self.position += 1
                of = self._peek("of")
                if of is None:
                    self._reset(mark)
                    return None
                self.position += 1
                whole = self._nested(self._unary)
                if whole is None:
                    self._reset(mark)
                    return None
                self.operators.append(of)
                node = _Chain(node, (("/", _Number(Fraction(100))), ("*", whole)))
            else:
                break
        return node

    def _primary(self) -> _Node | None:
        if (token := self._peek("num")) is not None:
            self.position += 1
            return _Number(token.value)
        mark = self._mark()
        if self._peek("lparen") is not None:
            self.position += 1
            inner = self._nested(self.parse_sum)
            if inner is not None and self._peek("rparen") is not None:
                self.position += 1
                return inner
        elif (token := self._peek("sqrt")) is not None:
            self.position += 1
            operand = self._nested(self._unary)
            if operand is not None:
                self.operators.append(token)
                return _SquareRoot(operand)
        self._reset(mark)
        return None

    def _nested(self, rule: _Rule) -> _Node | None:
        if self.depth >= MAX_DEPTH:
            return None
        self.depth += 1
        try:
            return rule()
        finally:
            self.depth -= 1


# -- values ------------------------------------------------------------------------------


def evaluate(node: _Node) -> Value:
    """The value of a parsed expression; raises :class:`_Unevaluable` when it has none."""
    if isinstance(node, _Number):
        return node.value
    if isinstance(node, _Negate):
        return _checked(-evaluate(node.operand))
    if isinstance(node, _SquareRoot):
        return _square_root(evaluate(node.operand))
    if isinstance(node, _Power):
        return _power(evaluate(node.base), evaluate(node.exponent))
    value = evaluate(node.first)
    for op, operand in node.rest:
        value = _apply(op, value, evaluate(operand))
    return value


def _apply(op: str, left: Value, right: Value) -> Value:
    if op in {"/", "mod"} and right == 0:
        raise _Unevaluable("division by zero")
    if op == "+":
        return _checked(left + right)
    if op == "-":
        return _checked(left - right)
    if op == "*":
        return _checked(left * right)
    if op == "/":
        return _checked(left / right)
    return _checked(left % right)


def _power(base: Value, exponent: Value) -> Value:
    if not -MAX_EXPONENT <= exponent <= MAX_EXPONENT:
        raise _Unevaluable(f"exponent {exponent} is too large")
    if isinstance(base, Fraction) and isinstance(exponent, Fraction) and exponent.denominator == 1:
        if base == 0 and exponent < 0:
            raise _Unevaluable("zero to a negative power")
        # A lower bound on the result's size, checked before the power is computed.
        size = max(base.numerator.bit_length(), base.denominator.bit_length()) - 1
        if size * abs(int(exponent)) > _MAX_BITS:
            raise _Unevaluable("result too large")
        return _checked(base ** int(exponent))
    if base < 0 and not float(exponent).is_integer():
        raise _Unevaluable("fractional power of a negative number")
    try:
        return _checked(math.pow(float(base), float(exponent)))
    except (OverflowError, ValueError) as error:
        raise _Unevaluable(str(error)) from error


def _square_root(value: Value) -> Value:
    if value < 0:
        raise _Unevaluable("square root of a negative number")
    if isinstance(value, Fraction):
        root_n, root_d = math.isqrt(value.numerator), math.isqrt(value.denominator)
        if root_n * root_n == value.numerator and root_d * root_d == value.denominator:
            return Fraction(root_n, root_d)
    return math.sqrt(value)


def _checked(value: Value) -> Value:
    if isinstance(value, Fraction):
        if max(value.numerator.bit_length(), value.denominator.bit_length()) > _MAX_BITS:
            raise _Unevaluable("result too large")
    elif not math.isfinite(value):
        raise _Unevaluable("result is not finite")
    return value


def format_value(value: Value) -> str:
    """Integers in full, short exact decimals exactly, anything else to 6 significant digits."""
    if isinstance(value, Fraction):
        if value.denominator == 1:
            return str(value.numerator)
        if (exact := _exact_decimal(value)) is not None:
            return exact
    return format_significant(value)


def _exact_decimal(value: Fraction) -> str | None:
    twos = fives = 0
    rest = value.denominator
    while rest % 2 == 0:
        rest, twos = rest // 2, twos + 1
    while rest % 5 == 0:
        rest, fives = rest // 5, fives + 1
    places = max(twos, fives)
    if rest != 1 or places > MAX_EXACT_DECIMALS:
        return None
    whole, fraction = divmod(abs(value.numerator) * 10**places // value.denominator, 10**places)
    sign = "-" if value < 0 else ""
    return f"{sign}{whole}.{fraction:0{places}d}".rstrip("0")


def compute(expression: str) -> str | None:
    """The value of ``expression``, the whole of it, as :func:`format_value` writes it;
    ``None`` when it is not one expression of the grammar or has no value."""
    if len(expression) > MAX_TEXT_CHARS:
        return None
    tokens = _tokenize(expression, [])
    if not tokens or any(token.kind == "stop" for token in tokens):
        return None
    parser = _Parser(tokens, 0)
    node = parser.parse_sum()
    if node is None or parser.position != len(tokens):
        return None
    try:
        return format_value(evaluate(node))
    except (_Unevaluable, OverflowError, ValueError) as error:
        logger.debug("no value for %r: %s", expression, error)
        return None


# -- extraction ------------------------------------------------------------------------


def _is_ambiguous(operator: _Token, text: str) -> bool:
    """Whether the operator may be punctuation: "10-3" (a range), "3/4", "1920x1080"."""
    if operator.text.lower() == "x":
        return True
    if operator.text not in {"-", "/"}:
        return False
    before = text[operator.start - 1 : operator.start]
    after = text[operator.end : operator.end + 1]
    return not before.isspace() and not after.isspace()


def _asked_to_compute(text: str, start: int, end: int) -> bool:
    if _ASKS_TO_COMPUTE.search(text[max(0, start - 60) : start]):
        return True
    if text[end:].lstrip().startswith("="):
        return True
    return not text[:start].strip() and not text[end:].strip(" \t\n?!.=")


def find_arithmetic(
    text: str, masked: list[tuple[int, int]] | None = None
) -> list[tuple[int, int, ReasoningHint]]:
    """Arithmetic expressions in ``text`` as ``(start, end, hint)``; ``masked`` spans are skipped.

    An expression needs at least one operator; a lone number ("I have 3 cats") is
    not arithmetic. Expressions that can't be evaluated are logged and skipped.
    """
    masked = list(masked or [])
    masked += [match.span() for match in _NOT_ARITHMETIC.finditer(text)]
    masked += [match.span() for match in DATE_LITERAL.finditer(text)]
    masked += [
        match.span() for match in _COMMA_NUMBER.finditer(text) if not _THOUSANDS.fullmatch(match[0])
    ]
    tokens = _tokenize(text, masked)
    found: list[tuple[int, int, ReasoningHint]] = []
    position = 0
    while position < len(tokens):
        if tokens[position].kind not in {"num", "lparen", "op", "sqrt"}:
            position += 1
            continue
        parser = _Parser(tokens, position)
        node = parser.parse_sum()
        if node is None or not parser.operators:
            position += 1
            continue
        start, end = tokens[position].start, tokens[parser.position - 1].end
        # Resume after the whole expression so "1/0 + 5" is never re-read as "0 + 5".
        position = parser.position
        if all(_is_ambiguous(op, text) for op in parser.operators) and not _asked_to_compute(
            text, start, end
        ):
            continue
        expression = " ".join(text[start:end].split())
        try:
            result = format_value(evaluate(node))
        except (_Unevaluable, OverflowError, ValueError) as error:
            logger.debug("skipping %r: %s", expression, error)
            continue
        found.append(
            (start, end, ReasoningHint(kind="arithmetic", expression=expression, result=result))
        )
    return found


def find_hints(text: str, today: date | None = None) -> list[ReasoningHint]:
    """Every computation found in ``text``, computed: times of day and ages, dates, unit
    conversions, arithmetic phrased in words, then written arithmetic.

    Numbers written in words are read as digits first (:mod:`.number_words`).
    ``today`` anchors relative dates ("in 3 weeks") and ages; it defaults to the
    local date. Only the first :data:`MAX_TEXT_CHARS` characters are read.
    Never raises for any input text.
    """
    text = with_digits(text[:MAX_TEXT_CHARS])
    today = today or date.today()
    found = find_age_hints(text, today)
    for finder in (find_clock_hints(text), find_date_hints(text, today), find_conversions(text)):
        for start, end, hint in finder:
            if not any(
                start < other_end and other_start < end for other_start, other_end, _ in found
            ):
                found.append((start, end, hint))
    found += find_phrases(text, compute, masked=[(start, end) for start, end, _ in found])
    found += find_arithmetic(text, masked=[(start, end) for start, end, _ in found])
    hints: list[ReasoningHint] = []
    for _, _, hint in sorted(found, key=lambda item: item[0]):
        if hint not in hints:
            hints.append(hint)
    return hints
