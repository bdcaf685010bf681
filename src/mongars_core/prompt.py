"""Turning a prepared turn into chat messages.

Kept apart from the pipeline so the prompt can be read (and tested) as text.
Small models follow short, plainly labelled context best, so each kind of
context gets one labelled block of the system prompt. Which memories it shows
is :mod:`mongars_core.recall`'s choice; how far the reply is trusted,
:mod:`mongars_core.confidence`'s.
"""

from __future__ import annotations

from mongars_core.settings import Settings
from mongars_core.types import ChatMessage, Turn


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
