"""Word problems: the model translates them into an expression under a grammar, the
evaluator computes it, and only a checked expression becomes a verified fact."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mongars_core.errors import BackendUnavailableError
from mongars_core.router import LLMRouter
from mongars_core.settings import Settings
from mongars_core.types import GenerationRequest, OutputConstraint, ReasoningHint
from mongars_plugins.cognition.word_problems import (
    REASONING,
    ReasoningSettings,
    allowed_numbers,
    checked_hint,
    grammar,
    looks_like_word_problem,
    translate,
)
from mongars_testkit import InstantBackend
from tests.conftest import MODEL_CACHE

EGGS = "I buy 3 boxes of 12 eggs and I break 5. How many eggs are left?"


class GrammarBackend(InstantBackend):
    """Keeps to grammars (:class:`~mongars_core.capabilities.ConstrainsOutput`): answers
    ``expression`` when every number of it is one the request's grammar allows, else
    the grammar's first number alone, as a constrained engine would be held to."""

    def __init__(self, expression: str) -> None:
        super().__init__(self._answer)
        self.expression = expression

    def can_constrain(self, constraint: OutputConstraint) -> bool:
        return constraint.grammar is not None

    def _answer(self, request: GenerationRequest) -> str:
        if request.constraint is None or request.constraint.grammar is None:
            return "Here is my answer."
        allowed = re.findall(r'"(\d+)"', request.constraint.grammar)
        if all(number in allowed for number in re.findall(r"\d+", self.expression)):
            return self.expression
        return allowed[0]


class SilentBackend(InstantBackend):
    """Constrains, and never answers in time."""

    def can_constrain(self, constraint: OutputConstraint) -> bool:
        return True

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        self.requests.append(request)
        await asyncio.sleep(30)
        yield "1 + 1"


def router_of(backend: Any) -> LLMRouter:
    return LLMRouter({"fake": backend}, "fake")


@pytest.mark.parametrize(
    "message",
    [
        EGGS,
        "Anna has 15 apples and gives away 6. How many does she have now?",
        "A ticket costs 7 pounds. How much do six tickets cost?",
        "I have 2 cats and 3 dogs, how many pets is that?",
    ],
)
def test_numbers_and_a_question_about_a_quantity_look_like_a_word_problem(message: str) -> None:
    assert looks_like_word_problem(message)


@pytest.mark.parametrize(
    "message",
    [
        "I have 2 cats and 3 dogs",
        "I have 2 cats and 3 dogs, what are good names for them?",
        "How many cats do you have?",
        "My son is 7 and my daughter is 10.",
        "What should I cook for 4 people tonight?",
        "I have " + "3 apples and 4 pears " * 40 + "how many fruits?",
    ],
)
def test_chat_with_numbers_is_not_a_word_problem(message: str) -> None:
    assert not looks_like_word_problem(message)


def test_the_grammar_allows_only_the_problem_numbers_and_the_constants_its_words_imply() -> None:
    assert allowed_numbers(EGGS) == ["3", "12", "5"]
    assert allowed_numbers("A shirt of 40 is 25 percent off: what is the price?") == [
        "40",
        "25",
        "100",
    ]
    assert allowed_numbers("Two dozen eggs and three more: how many?") == ["24", "3"]
    assert allowed_numbers("A film of 2 hours and 15 minutes: how many minutes?") == [
        "2",
        "15",
        "60",
    ]
    assert allowed_numbers("I sleep 8 hours a night for 5 nights: how many hours?") == ["8", "5"]
    assert grammar(["3", "12", "5"]).splitlines() == [
        'root ::= "3" t1 | "12" t2 | "5" t4',
        't1 ::= " " op " " ("12" t3 | "5" t5)',
        't2 ::= " " op " " ("3" t3 | "5" t6)',
        't3 ::= (" " op " " ("5" t7))?',
        't4 ::= " " op " " ("3" t5 | "12" t6)',
        't5 ::= (" " op " " ("12" t7))?',
        't6 ::= (" " op " " ("3" t7))?',
        't7 ::= ""',
        "op ::= [-+*/]",
    ], "each number at most once, at least two, then the grammar ends"


@pytest.mark.parametrize(
    ("expression", "fact"),
    [
        ("3 * 12 - 5", "3 * 12 - 5 = 31"),
        ("(3 * 12) - 5", "(3 * 12) - 5 = 31"),
        ("  3 *  12 - 5 ", "3 * 12 - 5 = 31"),
    ],
)
def test_a_checked_translation_is_a_fact_showing_the_expression(expression: str, fact: str) -> None:
    hint = checked_hint(expression, allowed_numbers(EGGS), EGGS)
    assert hint is not None and hint.kind == "word_problem"
    assert hint.as_fact() == fact


@pytest.mark.parametrize(
    "expression",
    [
        "31",  # an answer, not a translation: nothing to verify
        "3 * 12 - 7",  # 7 is not in the problem
        "3 * 3 * 12",  # 3 used more often than the problem has it
        "5 - 12",  # a negative count
        "12 / 5",  # "how many" is a whole number
        "3 * 12 - 5 = 31",
        "3 * (12 - 5",
        "3 * 12 - 5; import os",
        "",
    ],
)
def test_a_translation_that_fails_a_check_is_dropped(expression: str) -> None:
    assert checked_hint(expression, allowed_numbers(EGGS), EGGS) is None


async def test_the_model_is_asked_under_a_grammar_and_the_evaluator_computes() -> None:
    backend = GrammarBackend("3 * 12 - 5")
    hint = await translate(router_of(backend), EGGS, ReasoningSettings())
    assert hint == ReasoningHint(kind="word_problem", expression="3 * 12 - 5", result="31")
    (request,) = backend.requests
    assert request.constraint is not None and request.constraint.grammar == grammar(
        allowed_numbers(EGGS)
    )
    assert request.max_new_tokens == 32 and request.temperature == 0
    assert request.messages[-1].content == EGGS


async def test_a_model_held_to_the_grammar_cannot_bring_its_own_numbers() -> None:
    backend = GrammarBackend("3 * 12 - 7")
    assert await translate(router_of(backend), EGGS, ReasoningSettings()) is None


async def test_without_constrained_output_the_reply_is_parsed_strictly_or_skipped() -> None:
    plain = InstantBackend(lambda request: "3 * 12 - 5\nbecause 36 - 5 = 31")
    hint = await translate(router_of(plain), EGGS, ReasoningSettings())
    assert hint is not None and hint.as_fact() == "3 * 12 - 5 = 31"
    assert plain.requests[-1].constraint is None

    chatty = InstantBackend(lambda request: "The answer is 3 * 12 - 5")
    assert await translate(router_of(chatty), EGGS, ReasoningSettings()) is None

    skipped = InstantBackend(lambda request: "3 * 12 - 5")
    options = ReasoningSettings(unconstrained_fallback=False)
    assert await translate(router_of(skipped), EGGS, options) is None
    assert skipped.requests == []


async def test_a_slow_or_failing_model_costs_the_hint_not_the_turn() -> None:
    silent = SilentBackend()
    options = ReasoningSettings(translation_timeout_s=0.05)
    assert await translate(router_of(silent), EGGS, options) is None
    assert len(silent.requests) == 1

    def fail(request: GenerationRequest) -> str:
        raise BackendUnavailableError("down")

    broken = GrammarBackend("3 * 12 - 5")
    broken.reply = fail
    assert await translate(router_of(broken), EGGS, ReasoningSettings()) is None


def test_the_settings_section_validates_its_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGARS_REASONING__TRANSLATION_TIMEOUT_S", "1.5")
    assert Settings().section(REASONING).translation_timeout_s == 1.5
    with pytest.raises(ValueError, match="translation_max_tokens"):
        ReasoningSettings(translation_max_tokens=4096)


async def test_a_turn_gets_the_word_problem_fact_through_the_pipeline(make_assistant: Any) -> None:
    backend = GrammarBackend("3 * 12 - 5")
    assistant = await make_assistant(backend=backend)
    reply = await assistant.chat("alice", EGGS, session_id="s1")
    assert [hint.as_fact() for hint in reply.reasoning] == ["3 * 12 - 5 = 31"]
    assert reply.text.startswith("3 * 12 - 5 = 31."), "the fact the reply left out is prepended"
    constrained = [request for request in backend.requests if request.constraint is not None]
    assert len(constrained) == 1


async def test_rules_first_chat_never_and_the_switch_off(make_assistant: Any) -> None:
    backend = GrammarBackend("2 + 3")
    assistant = await make_assistant(backend=backend)
    for message in ("What is the product of 48 and 52?", "I have 2 cats and 3 dogs"):
        await assistant.chat("alice", message, session_id="s1")
    assert all(request.constraint is None for request in backend.requests)
    reply = await assistant.chat("alice", "What is the product of 48 and 52?", session_id="s1")
    assert [hint.as_fact() for hint in reply.reasoning] == ["48 * 52 = 2496"]

    off = await make_assistant(
        backend=GrammarBackend("3 * 12 - 5"), reasoning={"word_problems": False}
    )
    reply = await off.chat("alice", EGGS, session_id="s1")
    assert reply.reasoning == []


@pytest.mark.model
async def test_the_bundled_model_translates_under_the_grammar_through_llamacpp(
    tmp_path: Path,
) -> None:
    """The real engine compiles the grammar and keeps to it: whatever it writes is an
    expression over the problem's numbers (right or not: benchmarks/reasoning.py
    measures how often), or nothing passes the checks."""
    from mongars_plugins.local_engines import local_engine

    settings = Settings(data_dir=tmp_path, cache_dir=MODEL_CACHE, memory={"embedder": "none"})
    engine = local_engine(settings)
    if engine.engine_name != "llamacpp":
        pytest.skip(f"llama.cpp cannot run here ({engine.describe()})")
    router = LLMRouter({"local": engine}, "local")
    problem = "A book costs 8 dollars. How much do 6 books cost?"
    request_numbers = allowed_numbers(problem)
    try:
        from mongars_plugins.cognition.word_problems import request_for

        request = request_for(problem, 32, OutputConstraint(grammar=grammar(request_numbers)))
        raw = await router.generate(request)
        hint = await translate(router, problem, ReasoningSettings(translation_timeout_s=60))
    finally:
        await engine.engine.aclose()  # type: ignore[attr-defined]
    assert re.fullmatch(r"[\d()+\-*/ ]+", raw), raw
    assert set(re.findall(r"\d+", raw)) <= set(request_numbers), raw
    if hint is not None:
        assert hint.kind == "word_problem" and set(re.findall(r"\d+", hint.expression)) <= {
            "8",
            "6",
        }
