"""How likely a final reply is right: :func:`estimate_confidence`, ``Reply.confidence``.

The score comes from what the pipeline knows about the turn (verified facts,
recalled memories, how generation ended), never from the reply's wording
alone. Each level is the accuracy the real model reaches in that situation,
measured by ``benchmarks/confidence.py`` (``benchmarks/results/confidence.md``).
"""

from __future__ import annotations

from collections.abc import Sequence

from mongars_core.text import NUMBER, search_terms
from mongars_core.types import ReasoningHint, Turn

CONFIDENCE_VERIFIED = 0.95
"""The reply states every verified fact: the computed part is right by construction."""
CONFIDENCE_FACT_MISSING = 0.3
"""A verified fact is missing from the final reply (a reply transform failed)."""
CONFIDENCE_MEMORY_USED = 0.8
"""A recalled memory's own words are in the reply: it answers from what it was told."""
CONFIDENCE_MEMORY_IGNORED = 0.35
"""Memories were recalled but the reply uses none of them."""
CONFIDENCE_UNSUPPORTED = 0.45
"""Nothing backs the reply: about the share of open questions and nonsense prompts
the model gets right, since it cannot tell the two apart."""
CUT_FACTOR = 0.7
"""A reply cut at the length limit, or stopped looping, is less often a whole answer."""

MEMORY_WORD_LETTERS = 3
"""Shorter words ("is", "my") say nothing about which memory a reply uses."""


def estimate_confidence(turn: Turn, text: str, finish_reason: str = "stop") -> float:
    """How likely the final reply ``text`` is right, in [0, 1].

    It comes from what the pipeline knows, never from the wording alone:
    verified facts stated (:data:`CONFIDENCE_VERIFIED`) or missing, recalled
    memories used by the reply or ignored, and otherwise an unsupported answer
    (:data:`CONFIDENCE_UNSUPPORTED`); a reply cut at the limit or stopped in a
    loop is scaled by :data:`CUT_FACTOR`. An empty reply scores 0. The levels
    are the model's measured accuracy in each case (benchmarks/confidence.py).
    """
    text = text.strip()
    if not text:
        return 0.0
    if turn.reasoning:
        stated = mentions_every_result(text, turn.reasoning)
        score = CONFIDENCE_VERIFIED if stated else CONFIDENCE_FACT_MISSING
    elif turn.memories:
        score = CONFIDENCE_MEMORY_USED if _uses_memory(turn, text) else CONFIDENCE_MEMORY_IGNORED
    else:
        score = CONFIDENCE_UNSUPPORTED
    if finish_reason != "stop":
        score *= CUT_FACTOR
    return round(min(0.99, max(0.05, score)), 3)


def mentions_every_result(text: str, hints: Sequence[ReasoningHint]) -> bool:
    """Whether ``text`` holds each hint's result: its numbers as written (thousands
    separators aside), or the result verbatim."""
    present = _numbers(text)
    return all(_numbers(hint.result) <= present or hint.result in text for hint in hints)


def _uses_memory(turn: Turn, text: str) -> bool:
    """Whether the reply holds a word of a recalled memory that the question lacks
    ("Biscuit" for "What is my dog's name?" and "My dog's name is Biscuit.")."""
    reply = _memory_words(text)
    asked = _memory_words(turn.message)
    return any((_memory_words(memory.text) - asked) & reply for memory in turn.memories)


def _memory_words(text: str) -> set[str]:
    return {
        term
        for term in search_terms(text)
        if len(term) >= MEMORY_WORD_LETTERS and not term.isdigit()
    }


def _numbers(text: str) -> set[str]:
    return {match[0].replace(",", "").replace("−", "-").lower() for match in NUMBER.finditer(text)}
