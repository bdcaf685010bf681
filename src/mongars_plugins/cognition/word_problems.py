"""Word problems, translated by the model into an expression the evaluator computes.

"3 boxes of 12 eggs and I break 5: how many are left?" has no phrase the rules
read. :func:`translate` asks the model (through the router, any backend) for
one expression, with a GBNF grammar (:class:`~mongars_core.types.OutputConstraint`)
that allows only the evaluator's language, ``+ - * /`` between the numbers of
the problem and a few constants its words imply (100 for "percent", 60 for
hours and minutes...), each used at most once. The safe evaluator then computes it:
the model translates, it never calculates. The hint (kind ``word_problem``)
is kept only if the expression parses, uses at least two numbers, each from
the problem or those constants, and has a value.

A backend that cannot keep to a grammar (no
:class:`~mongars_core.capabilities.ConstrainsOutput`) gets the same prompt
unconstrained when ``reasoning.unconstrained_fallback`` is on, and its first
line must then be such an expression, whole, or nothing is kept. The request
is bounded (``reasoning.translation_max_tokens``, ``reasoning.translation_timeout_s``);
a failure or a timeout costs the turn its hint, never the turn.
"""

from __future__ import annotations

import asyncio
import logging
import re

from pydantic import BaseModel, Field

from mongars_core.errors import MongarsError, UnsupportedConstraintError
from mongars_core.router import LLMRouter
from mongars_core.settings import Section
from mongars_core.types import ChatMessage, GenerationRequest, OutputConstraint, ReasoningHint
from mongars_plugins.cognition.evaluator import compute
from mongars_plugins.cognition.number_words import with_digits

logger = logging.getLogger(__name__)


class ReasoningSettings(BaseModel):
    """The reasoning plugin: word problems translated by the model."""

    word_problems: bool = Field(
        True,
        description="Translate word problems (numbers and a question that no rule reads) into "
        "an expression with the model, computed by the evaluator; false: only the rules run.",
    )
    translation_backend: str | None = Field(
        None,
        description="The LLM backend that translates (e.g. `llamacpp`); default: the endpoints "
        "of the `general` role.",
    )
    translation_timeout_s: float = Field(
        4.0,
        gt=0,
        le=60,
        description="Seconds a translation may take before the turn goes on without it.",
    )
    translation_max_tokens: int = Field(
        32, ge=8, le=128, description="New tokens a translation may generate."
    )
    unconstrained_fallback: bool = Field(
        True,
        description="When no endpoint can keep to a grammar, ask unconstrained and keep the "
        "reply only if its first line is an expression of the grammar, whole; false: skip.",
    )


REASONING = Section("reasoning", ReasoningSettings)

MAX_GRAMMAR_NUMBERS = 7
"""Numbers a translation may draw on (the grammar has a rule per subset of them)."""
MAX_PROBLEM_CHARS = 600
"""A longer message is a text with numbers in it, not a problem to translate."""

_NUMBER = re.compile(r"(?<![\w.,])\d+(?:\.\d+)?(?![\w]|[.,]\d)")
_QUESTION = re.compile(
    r"\bhow\s+(?:many|much|far|long|fast|old|tall|heavy|big|often)\b"
    r"|\bwhat\s+(?:is|was|will\s+be|are|were)\s+(?:the\s+|my\s+|their\s+|his\s+|her\s+)?"
    r"(?:total|sum|cost|price|number|amount|difference|average|area|perimeter|speed|distance"
    r"|change|profit|remainder|result|answer|weight|length|time|age|share)\b"
    r"|\b(?:calculate|compute|work\s+out|figure\s+out)\b",
    re.IGNORECASE,
)


def _both(first: str, second: str) -> re.Pattern[str]:
    """Both words in the problem, in either order: a constant converts one into the other."""
    return re.compile(
        rf"\b(?:{first})\b.*\b(?:{second})\b|\b(?:{second})\b.*\b(?:{first})\b", re.I | re.S
    )


# Constants an expression may need that the problem does not write: only when its words
# name both sides of the conversion ("hours" alone does not make 60 a number of it).
_CONSTANTS: list[tuple[re.Pattern[str], tuple[str, ...]]] = [
    (re.compile(r"%|\bper\s*cent|\bpercent", re.I), ("100",)),
    (_both(r"hours?", r"minutes?"), ("60",)),
    (_both(r"minutes?", r"seconds?"), ("60",)),
    (_both(r"days?", r"hours?"), ("24",)),
    (_both(r"weeks?", r"days?"), ("7",)),
    (_both(r"years?", r"months?"), ("12",)),
    (_both(r"dollars?|euros?|pounds?", r"cents?|pence"), ("100",)),
    (_both(r"met(?:er|re)s?", r"centimet(?:er|re)s?|cm"), ("100",)),
    (_both(r"kilo(?:gram)?s?|kg", r"grams?|g"), ("1000",)),
    (_both(r"lit(?:er|re)s?", r"millilit(?:er|re)s?|ml"), ("1000",)),
    (_both(r"km|kilomet(?:er|re)s?", r"met(?:er|re)s?"), ("1000",)),
    (re.compile(r"\b(?:half|halves|twice|double|doubled|pairs?|couple)\b", re.I), ("2",)),
    (re.compile(r"\b(?:triple|tripled|thrice)\b", re.I), ("3",)),
]
_HOW_MANY = re.compile(r"\bhow\s+many\b", re.IGNORECASE)
_EXPRESSION = re.compile(r"[\d.()+\-*/ ]+")

SYSTEM_PROMPT = (
    "You turn a word problem into one arithmetic expression that answers it, using the "
    "numbers of the problem. Use - for what is left, taken, spent or eaten; + for a total "
    "of separate amounts; * for groups of equal size, each or per; / for sharing or "
    "splitting equally. Write only the expression."
)
EXAMPLES = (
    ("Amy has 9 pens and buys 4 more. How many pens does she have?", "9 + 4"),
    ("Tom has 3 boxes of 12 eggs and breaks 5. How many eggs are left?", "3 * 12 - 5"),
    ("A jug holds 20 cups and 7 are poured. How many cups are left?", "20 - 7"),
    ("Sara shares 20 sweets equally among 4 friends. How many does each get?", "20 / 4"),
    ("A book costs 8 dollars. How much do 4 books cost?", "8 * 4"),
    ("I walked 3 km in the morning and 5 km in the evening. How far did I walk?", "3 + 5"),
)


def looks_like_word_problem(text: str) -> bool:
    """Numbers and a question about a quantity: "I have 2 cats and 3 dogs" is not one,
    "I have 2 cats and 3 dogs, how many pets is that?" is."""
    if len(text) > MAX_PROBLEM_CHARS:
        return False
    digits = with_digits(text)
    numbers = _NUMBER.findall(digits)
    cued = [
        constant for pattern, values in _CONSTANTS if pattern.search(digits) for constant in values
    ]
    return (len(numbers) >= 2 or (len(numbers) == 1 and bool(cued))) and bool(
        _QUESTION.search(digits)
    )


def allowed_numbers(text: str) -> list[str]:
    """The numbers an expression for ``text`` may use, as often as it may use each: the
    problem's, as often as it writes them, and once each constant its words imply."""
    digits = with_digits(text)
    found = [_canonical(number) for number in _NUMBER.findall(digits)]
    for pattern, values in _CONSTANTS:
        if pattern.search(digits):
            found += [value for value in values if value not in found]
    return found


def _canonical(number: str) -> str:
    if "." in number:
        number = number.rstrip("0").rstrip(".") or "0"
    return number


def grammar(numbers: list[str]) -> str:
    """A GBNF grammar of the expressions that use each of ``numbers`` at most once (a number
    the problem writes twice may come twice), at least two of them, with ``+ - * /``
    between: a model that would go on repeating itself is stopped by the grammar when
    it runs out of numbers. One rule per set of numbers used, so at most
    :data:`MAX_GRAMMAR_NUMBERS` numbers are offered."""
    numbers = numbers[:MAX_GRAMMAR_NUMBERS]
    full = (1 << len(numbers)) - 1
    rules = ["root ::= " + " | ".join(f'"{n}" t{1 << i}' for i, n in enumerate(numbers))]
    for used in range(1, full + 1):
        choices = [
            f'"{number}" t{used | 1 << index}'
            for index, number in enumerate(numbers)
            if not used & 1 << index
        ]
        if not choices:
            rules.append(f't{used} ::= ""')
        elif used & (used - 1):  # two numbers or more: it may end here
            rules.append(f't{used} ::= (" " op " " ({" | ".join(choices)}))?')
        else:
            rules.append(f't{used} ::= " " op " " ({" | ".join(choices)})')
    rules.append("op ::= [-+*/]")
    return "\n".join(rules)


def request_for(
    problem: str, max_new_tokens: int, constraint: OutputConstraint | None
) -> GenerationRequest:
    messages = [ChatMessage(role="system", content=SYSTEM_PROMPT)]
    for question, answer in EXAMPLES:
        messages += [
            ChatMessage(role="user", content=question),
            ChatMessage(role="assistant", content=answer),
        ]
    messages.append(ChatMessage(role="user", content=" ".join(problem.split())))
    return GenerationRequest(
        messages=messages,
        max_new_tokens=max_new_tokens,
        temperature=0,
        top_p=1,
        stop=["\n"],
        constraint=constraint,
    )


def checked_hint(expression: str, numbers: list[str], problem: str = "") -> ReasoningHint | None:
    """The hint for a translated ``expression``, or ``None`` unless it is an expression of
    the grammar, whole, with at least two numbers, each used no more often than
    ``numbers`` holds it, and a value that can answer ``problem``: never negative, and
    a whole number when it asks "how many"."""
    expression = " ".join(expression.split())
    if not expression or not _EXPRESSION.fullmatch(expression) or len(expression) > 200:
        return None
    used = [_canonical(number) for number in re.findall(r"\d+(?:\.\d+)?", expression)]
    if len(used) < 2 or any(used.count(number) > numbers.count(number) for number in used):
        return None
    result = compute(expression)
    if result is None or result.startswith("-"):
        return None
    if _HOW_MANY.search(problem) and not result.isdigit():
        return None
    return ReasoningHint(kind="word_problem", expression=expression, result=result)


async def translate(
    router: LLMRouter, problem: str, settings: ReasoningSettings
) -> ReasoningHint | None:
    """The word problem ``problem`` as a computed hint, or ``None`` (see the module)."""
    numbers = allowed_numbers(problem)
    if len(numbers) < 2:
        return None
    constraint = OutputConstraint(grammar=grammar(numbers))
    request = request_for(problem, settings.translation_max_tokens, constraint)
    try:
        async with asyncio.timeout(settings.translation_timeout_s):
            try:
                text = await router.generate(request, settings.translation_backend)
            except UnsupportedConstraintError:
                if not settings.unconstrained_fallback:
                    logger.debug("no endpoint keeps to a grammar: word problem not translated")
                    return None
                request = request_for(problem, settings.translation_max_tokens, None)
                text = await router.generate(request, settings.translation_backend)
                text = text.strip().split("\n", 1)[0]
    except TimeoutError:
        logger.info(
            "word problem translation took over %ss: skipped", settings.translation_timeout_s
        )
        return None
    except MongarsError as error:
        logger.warning("word problem translation failed: %s", error)
        return None
    if request.outcome.finish_reason == "length":
        logger.debug("translation %r was cut at the token limit: skipped", text)
        return None
    return checked_hint(text, numbers, problem)
