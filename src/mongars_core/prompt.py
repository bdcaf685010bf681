"""Turning a prepared turn into chat messages, and judging the result.

Kept apart from the pipeline so the prompt can be read (and tested) as text.
Small models follow short, plainly labelled context best, so each kind of
context gets one labelled block of the system prompt.
"""

from __future__ import annotations

import re

from mongars_core.settings import MemorySettings, Settings
from mongars_core.types import ChatMessage, Memory, Turn

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def build_messages(settings: Settings, turn: Turn) -> list[ChatMessage]:
    """System prompt with the turn's context, the session's history, then the message."""
    blocks = [settings.llm.system_prompt.strip()]
    if turn.reasoning:
        facts = "\n".join(f"- {hint.as_fact()}" for hint in turn.reasoning)
        blocks.append(
            "Verified facts, computed exactly; state these results in your answer:\n" + facts
        )
    if turn.memories:
        notes = "\n".join(f"- {memory.text}" for memory in turn.memories)
        blocks.append("What you remember from earlier conversations with this user:\n" + notes)
    if turn.findings:
        found = "\n".join(f"- {finding.topic}: {finding.text}" for finding in turn.findings)
        blocks.append("Research notes:\n" + found)
    if turn.style_instructions:
        # Orders about the reply, never facts about the user: a small model
        # repeats a description ("The user writes ...") as if it were the answer.
        blocks.append("How to write your reply: " + " ".join(turn.style_instructions))
    messages = [ChatMessage(role="system", content="\n\n".join(blocks))]
    for past in turn.history:
        messages.append(ChatMessage(role="user", content=past.message))
        messages.append(ChatMessage(role="assistant", content=past.reply))
    messages.append(ChatMessage(role="user", content=turn.message))
    return messages


def select_memories(memories: list[Memory], turn: Turn, settings: MemorySettings) -> list[Memory]:
    """Merge every plugin's recall: threshold, de-duplicate, rank, and cut to the limits.

    Memories already present as turns of this session's history are dropped:
    the model sees those verbatim.
    """
    in_history = {past.message.strip().lower() for past in turn.history}
    best: dict[str, Memory] = {}
    for memory in memories:
        if memory.score < settings.min_score_for(memory.source):
            continue
        key = memory.text.strip().lower()
        # A memory may be one sentence of a message: it is in history if that message is.
        if any(key in past for past in in_history):
            continue
        if key not in best or memory.score > best[key].score:
            best[key] = memory
    ranked = sorted(best.values(), key=lambda memory: memory.score, reverse=True)
    chosen: list[Memory] = []
    words = 0
    for memory in ranked[: settings.recall_limit]:
        size = len(memory.text.split())
        if chosen and words + size > settings.recall_token_budget:
            break
        if size > settings.recall_token_budget:
            continue
        chosen.append(memory)
        words += size
    return chosen


# Calibrated on benchmarks/confidence.py's labelled set: each is about the share
# of right replies the real model gives in that situation (results/confidence.md).
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

_MEMORY_WORD = re.compile(r"[^\W\d_]{3,}")


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
        present = _numbers(text)
        stated = all(
            _numbers(hint.result) <= present or hint.result in text for hint in turn.reasoning
        )
        score = CONFIDENCE_VERIFIED if stated else CONFIDENCE_FACT_MISSING
    elif turn.memories:
        score = CONFIDENCE_MEMORY_USED if _uses_memory(turn, text) else CONFIDENCE_MEMORY_IGNORED
    else:
        score = CONFIDENCE_UNSUPPORTED
    if finish_reason != "stop":
        score *= CUT_FACTOR
    return round(min(0.99, max(0.05, score)), 3)


def _uses_memory(turn: Turn, text: str) -> bool:
    """Whether the reply holds a word of a recalled memory that the question lacks
    ("Biscuit" for "What is my dog's name?" and "My dog's name is Biscuit.")."""
    reply = set(_MEMORY_WORD.findall(text.casefold()))
    asked = set(_MEMORY_WORD.findall(turn.message.casefold()))
    return any(
        (set(_MEMORY_WORD.findall(memory.text.casefold())) - asked) & reply
        for memory in turn.memories
    )


def _numbers(text: str) -> set[str]:
    return {match.replace(",", "") for match in _NUMBER.findall(text)}
