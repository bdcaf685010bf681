"""Turning a prepared turn into chat messages.

Kept apart from the pipeline so the prompt can be read (and tested) as text.
Small models follow short, plainly labelled context best, so each kind of
context gets one labelled block of the system prompt; research's findings come
as numbered sources ("[1] (notes.md › Setup) ...") the reply is told to cite.
Which memories it shows is :mod:`mongars_core.recall`'s choice; how far the
reply is trusted, :mod:`mongars_core.confidence`'s.
"""

from __future__ import annotations

from mongars_core.settings import Settings
from mongars_core.types import ChatMessage, Finding, Source, Turn


def source_line(finding: Finding) -> str:
    """A numbered source as the model reads it: ``[1] (notes.md › Setup) text``."""
    label = finding.source or (finding.passage.source if finding.passage else "")
    where = f" ({label})" if label else ""
    return f"[{finding.number}]{where} {' '.join(finding.text.split())}"


def reply_sources(findings: list[Finding]) -> list[Source]:
    """The numbered findings as the reply's sources (``Reply.sources``), in number order."""
    sources: list[Source] = []
    for finding in sorted(
        (f for f in findings if f.number is not None), key=lambda f: f.number or 0
    ):
        passage = finding.passage
        sources.append(
            Source(
                number=finding.number or 0,
                kind=passage.kind if passage is not None else "document",
                title=finding.source or (passage.source if passage is not None else ""),
                text=finding.text,
                document_id=passage.document_id if passage is not None else None,
                memory_id=passage.memory_id if passage is not None else None,
                created_at=passage.created_at if passage is not None else None,
            )
        )
    return sources


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
    numbered = [finding for finding in turn.findings if finding.number is not None]
    if numbered:
        lines = "\n".join(source_line(finding) for finding in numbered)
        blocks.append(
            "Sources from the user's documents and conversations:\n"
            + lines
            + "\nAnswer from these sources and cite the number of each one you use, "
            "like [1]. If they do not say, say that you don't know."
        )
    unnumbered = [finding for finding in turn.findings if finding.number is None]
    if unnumbered:
        found = "\n".join(f"- {finding.topic}: {finding.text}" for finding in unnumbered)
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
