"""Memory extraction (experiment): a message turned into short structured facts.

The model, held by the engine's constrained output to a small JSON schema,
reads one message and writes at most :data:`MAX_FACTS` facts as ``subject:
value`` lines ("user's sister: Amélie"), meant to be stored beside the raw
message as extra memories. Whether that helps recall is measured by
``benchmarks/memory_extraction.py``; nothing in the memory plugin calls this
module (see benchmarks/results/memory_extraction.md for the verdict).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from mongars_core.errors import GenerationTimeoutError
from mongars_core.llm import LLMBackend
from mongars_core.types import ChatMessage, GenerationRequest, OutputConstraint

logger = logging.getLogger(__name__)

MAX_FACTS = 3
MAX_FIELD_CHARS = 32
MAX_MESSAGE_CHARS = 1000
MAX_NEW_TOKENS = 128
"""Enough for the longest reply the schema allows (three facts of two 32-character
fields, about 100 tokens with the JSON around them)."""

FACT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "facts": {
            "type": "array",
            "maxItems": MAX_FACTS,
            "items": {
                "type": "object",
                "properties": {
                    "subject": {"type": "string", "minLength": 1, "maxLength": MAX_FIELD_CHARS},
                    "value": {"type": "string", "minLength": 1, "maxLength": MAX_FIELD_CHARS},
                },
                "required": ["subject", "value"],
            },
        }
    },
    "required": ["facts"],
}
CONSTRAINT = OutputConstraint(json_schema=FACT_SCHEMA)

_INSTRUCTIONS = (
    "Extract personal facts the user states about themselves, their people, pets, places, "
    "work, plans and preferences. Answer in JSON: a list of facts, each a subject and a "
    "short value. A message with no personal fact gives an empty list.\n"
    'Message: "My sister Amélie moved to Lyon"\n'
    '{"facts": [{"subject": "user\'s sister", "value": "Amélie"}, '
    '{"subject": "Amélie lives in", "value": "Lyon"}]}\n'
    'Message: "I\'m allergic to peanuts"\n'
    '{"facts": [{"subject": "user\'s allergy", "value": "peanuts"}]}\n'
    'Message: "Can you recommend a good book?"\n'
    '{"facts": []}'
)


def fact_request(message: str, *, max_new_tokens: int = MAX_NEW_TOKENS) -> GenerationRequest:
    """The constrained, greedy request that asks the model for ``message``'s facts."""
    text = " ".join(message.split())[:MAX_MESSAGE_CHARS]
    return GenerationRequest(
        messages=[
            ChatMessage(role="system", content=_INSTRUCTIONS),
            ChatMessage(role="user", content=f'Message: "{text}"'),
        ],
        max_new_tokens=max_new_tokens,
        temperature=0.0,
        constraint=CONSTRAINT,
    )


def parse_facts(reply: str) -> list[str]:
    """The ``subject: value`` lines of a reply in :data:`FACT_SCHEMA`; ``[]`` for a reply
    that is not that JSON (one cut at the token limit), with a warning logged."""
    try:
        data = json.loads(reply)
    except json.JSONDecodeError:
        logger.warning(
            "fact extraction: the reply is not complete JSON (%d characters)", len(reply)
        )
        return []
    facts = data.get("facts") if isinstance(data, dict) else None
    if not isinstance(facts, list):
        logger.warning("fact extraction: the reply has no list of facts")
        return []
    found: list[str] = []
    for fact in facts:
        if len(found) == MAX_FACTS:
            break
        if not isinstance(fact, dict):
            continue
        subject = " ".join(str(fact.get("subject", "")).split())[:MAX_FIELD_CHARS]
        value = " ".join(str(fact.get("value", "")).split())[:MAX_FIELD_CHARS]
        line = f"{subject}: {value}"
        if subject and value and line not in found:
            found.append(line)
    return found


async def extract_facts(
    llm: LLMBackend,
    message: str,
    *,
    max_new_tokens: int = MAX_NEW_TOKENS,
    timeout_s: float = 20.0,
) -> list[str]:
    """The facts ``message`` states, as ``subject: value`` lines (at most :data:`MAX_FACTS`).

    ``llm`` is a backend or the router; it must keep to a JSON schema (llama.cpp
    does, the router skips endpoints that can't and raises
    ``UnsupportedConstraintError`` when none can). Past ``timeout_s`` the
    generation is cancelled and :class:`GenerationTimeoutError` raised.
    """
    if not message.strip():
        return []
    request = fact_request(message, max_new_tokens=max_new_tokens)
    try:
        reply = await asyncio.wait_for(llm.generate(request), timeout_s)
    except TimeoutError as exc:
        raise GenerationTimeoutError(f"fact extraction took longer than {timeout_s:g} s") from exc
    return parse_facts(reply)
