"""Token usage: a backend's own counter where it has one, else the estimate.

A counter is third-party code that runs after the reply has streamed, so one
that raises or answers nonsense must cost the count, never the turn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from mongars_core.llm import count_usage, estimate_tokens
from mongars_core.types import ChatMessage, TokenUsage
from mongars_testkit import BackendPlugin, InstantBackend

MESSAGES = [ChatMessage(role="user", content="how many tokens is this?")]
REPLY = "About seven, give or take."


def estimated(messages: Sequence[ChatMessage], completion: str) -> TokenUsage:
    return count_usage(None, messages, completion)


class CountingBackend(InstantBackend):
    """A ``TokenCounter`` whose answer (or failure) is ``count(text)``."""

    def __init__(self, count: Callable[[str], Any]) -> None:
        super().__init__()
        self.count = count

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int | None:
        result: int | None = self.count(" ".join(message.content for message in messages))
        return result

    def count_tokens(self, text: str) -> int | None:
        result: int | None = self.count(text)
        return result


def _raise(text: str) -> int:
    raise RuntimeError("tokenizer not ready")


def test_a_counting_backend_counts() -> None:
    usage = count_usage(CountingBackend(lambda text: len(text.split())), MESSAGES, REPLY)
    assert usage == TokenUsage(prompt_tokens=5, completion_tokens=5, counted=True)


def test_a_backend_without_a_counter_is_estimated() -> None:
    usage = estimated(MESSAGES, REPLY)
    assert usage.completion_tokens == estimate_tokens(REPLY) and not usage.counted


@pytest.mark.parametrize(
    "count",
    [_raise, lambda text: "many", lambda text: -1, lambda text: True, lambda text: 2.5],
    ids=["raises", "a-string", "negative", "a-bool", "a-float"],
)
def test_a_counter_that_fails_or_answers_nonsense_falls_back_to_the_estimate(
    count: Callable[[str], Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="mongars_core.llm"):
        usage = count_usage(CountingBackend(count), MESSAGES, REPLY)
    assert usage == estimated(MESSAGES, REPLY)
    assert any("token" in record.getMessage() for record in caplog.records), "it is logged"


def test_a_counter_that_is_not_loaded_yet_is_estimated_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="mongars_core.llm"):
        usage = count_usage(CountingBackend(lambda text: None), MESSAGES, REPLY)
    assert usage == estimated(MESSAGES, REPLY)
    assert caplog.records == []


async def test_a_raising_counter_costs_the_count_not_the_turn(make_assistant: Any) -> None:
    assistant = await make_assistant(BackendPlugin(CountingBackend(_raise), "counting"))
    reply = await assistant.chat("alice", "hello there", backend="counting")
    assert reply.text == "You said: hello there"
    assert not reply.usage.counted and reply.usage.completion_tokens == estimate_tokens(reply.text)
    assert [turn.reply for turn in await assistant.history("alice")] == [reply.text]
