"""Turning a prepared turn into chat messages, and judging the result.

Kept apart from the pipeline so the prompt can be read (and tested) as text.
Small models follow short, plainly labelled context best, so each kind of
context gets one labelled block of the system prompt.
"""

from __future__ import annotations

import re

from mongars_core.settings import MemorySettings, Settings
from mongars_core.types import ChatMessage, GenerationRequest, Memory, Turn

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_CLOSING = set(".!?…)\"'»`*")


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
        blocks.append("Style: " + " ".join(turn.style_instructions))
    messages = [ChatMessage(role="system", content="\n\n".join(blocks))]
    for past in turn.history:
        messages.append(ChatMessage(role="user", content=past.message))
        messages.append(ChatMessage(role="assistant", content=past.reply))
    messages.append(ChatMessage(role="user", content=turn.message))
    return messages


def select_memories(memories: list[Memory], turn: Turn, settings: MemorySettings) -> list[Memory]:
    """Merge every plugin's recall: de-duplicate, rank, and cut to the limits.

    Memories already present as turns of this session's history are dropped:
    the model sees those verbatim.
    """
    in_history = {past.message.strip().lower() for past in turn.history}
    best: dict[str, Memory] = {}
    for memory in memories:
        if memory.score < settings.min_score:
            continue
        key = memory.text.strip().lower()
        if key in in_history:
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


def estimate_confidence(turn: Turn, generated: str, request: GenerationRequest) -> float:
    """A heuristic confidence in [0.05, 0.99] for what the model generated.

    It judges the model's own text, before any reply transform corrects it.
    It starts at 0.7 and moves with what the pipeline knows: verified facts
    stated (+0.2) or missing (-0.3), a reply that looks cut at the token limit
    (-0.2: no closing punctuation and about ``max_new_tokens`` tokens, at ~4
    characters a token), unresearched knowledge gaps (-0.15), supporting
    memories (+0.05). An empty reply scores 0.
    """
    text = generated.strip()
    if not text:
        return 0.0
    score = 0.7
    if turn.reasoning:
        present = _numbers(text)
        stated = all(
            _numbers(hint.result) <= present or hint.result in text for hint in turn.reasoning
        )
        score += 0.2 if stated else -0.3
    if text[-1] not in _CLOSING and len(text) / 4 >= 0.9 * request.max_new_tokens:
        score -= 0.2
    if turn.gaps and not turn.findings:
        score -= 0.15
    if turn.memories:
        score += 0.05
    return round(min(0.99, max(0.05, score)), 3)


def _numbers(text: str) -> set[str]:
    return {match.replace(",", "") for match in _NUMBER.findall(text)}
