"""Forget me while a reply is being written: the reply is not stored afterwards
(mongars_core.user_writes)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from mongars_core import hookimpl
from mongars_core.errors import UserErasedError
from mongars_core.pipeline import Assistant
from mongars_core.types import Memory, Turn
from mongars_core.user_writes import UserWrites


class HeldRecall:
    """A recall that waits until the test lets the turn go on."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.go_on = asyncio.Event()

    @hookimpl
    async def mongars_recall(self, turn: Turn) -> list[Memory]:
        if turn.message.startswith("slow"):
            self.started.set()
            await self.go_on.wait()
        return []


async def test_a_reply_being_written_when_the_user_is_forgotten_is_not_stored(
    make_assistant: Callable[..., Awaitable[Assistant]],
) -> None:
    held = HeldRecall()
    assistant = await make_assistant(held)
    await assistant.chat("alice", "My sister is called Amélie.")
    turn = asyncio.create_task(assistant.chat("alice", "slow: my diary entry of today"))
    await held.started.wait()
    summary = await assistant.forget_user("alice")
    assert summary.deleted["turns"] == 1
    held.go_on.set()
    with pytest.raises(UserErasedError, match="nothing of it was stored"):
        await turn
    assert await assistant.history("alice") == []
    assert await assistant.list_memories("alice") == []
    # The user goes on from zero.
    reply = await assistant.chat("alice", "Hello again")
    assert [t.turn_id for t in await assistant.history("alice")] == [reply.turn_id]


async def test_a_write_stores_wholly_before_an_erasure_or_not_at_all() -> None:
    gate = UserWrites()
    since = gate.generation("bob")
    order: list[str] = []

    async def write() -> None:
        async with gate.storing("bob", since):
            order.append("write starts")
            await asyncio.sleep(0.01)
            order.append("write ends")

    async def erase() -> None:
        async with gate.erasing("bob"):
            order.append("erased")

    writing = asyncio.create_task(write())
    await asyncio.sleep(0)
    await erase()
    await writing
    assert order == ["write starts", "write ends", "erased"]
    with pytest.raises(UserErasedError):
        async with gate.storing("bob", since):
            pass
    async with gate.storing("bob", gate.generation("bob")):
        pass  # a write begun after the erasure stores
    async with gate.storing("carol", 0):
        pass  # other users are not concerned
