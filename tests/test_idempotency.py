"""Idempotency keys: a retried turn is stored once, in the store and the pipeline.

Every test runs on SQLite and on PostgreSQL (the ``database_url`` fixture).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mongars_core.errors import DuplicateTurnError, IdempotencyKeyReusedError, InvalidInputError
from mongars_core.storage.store import Store
from mongars_core.types import GenerationRequest
from mongars_testkit import InstantBackend

STATEMENT = "My sister Clara lives in Lyon and works as a nurse."


class CountingBackend(InstantBackend):
    """The kit's echo, counting generations; ``gate`` holds every generation
    until that many have started (so concurrent turns really overlap)."""

    def __init__(self) -> None:
        super().__init__()
        self.generations = 0
        self.gate: asyncio.Barrier | None = None

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        self.generations += 1
        if self.gate is not None:
            await self.gate.wait()
        async for delta in super().stream(request):
            yield delta


@pytest.fixture
def backend() -> CountingBackend:
    return CountingBackend()


@pytest.fixture
def instant_backend(backend: CountingBackend) -> CountingBackend:
    return backend


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = await Store.open(database_url, migrate=True)
    yield opened
    await opened.close()


async def _add(store: Store, turn_id: str, user: str, key: str | None) -> None:
    await store.add_turn(
        turn_id=turn_id,
        user_id=user,
        session_id="s",
        message="hello",
        reply="hi",
        confidence=0.5,
        backend="x",
        meta={},
        idempotency_key=key,
    )


async def test_the_store_keeps_one_turn_per_key_and_user(store: Store) -> None:
    for user in ("alice", "bob"):
        await store.ensure_user(user)
    await _add(store, "t1", "alice", "key-1")
    with pytest.raises(DuplicateTurnError, match="key-1"):
        await _add(store, "t2", "alice", "key-1")
    await _add(store, "t3", "bob", "key-1")  # keys are scoped per user
    await _add(store, "t4", "alice", None)  # turns without a key never collide
    await _add(store, "t5", "alice", None)

    found = await store.turn_for_key("alice", "key-1")
    assert found is not None and found.turn_id == "t1" and found.created_at.tzinfo is not None
    bobs = await store.turn_for_key("bob", "key-1")
    assert bobs is not None and bobs.turn_id == "t3"
    assert await store.turn_for_key("alice", "key-2") is None
    assert [turn.message for turn in await store.history("alice")] == ["hello"] * 3


async def test_a_retry_gets_the_stored_reply_without_generating_or_remembering(
    make_assistant: Any, backend: CountingBackend
) -> None:
    assistant = await make_assistant()
    first = await assistant.chat("alice", STATEMENT, session_id="s1", idempotency_key="k-1")
    memories = await assistant.list_memories("alice")
    assert first.replayed is False and backend.generations == 1

    again = await assistant.chat("alice", STATEMENT, session_id="s1", idempotency_key="k-1")
    assert again.replayed is True
    assert (again.turn_id, again.text, again.session_id) == (
        first.turn_id,
        first.text,
        first.session_id,
    )
    assert again.confidence == pytest.approx(first.confidence)
    assert again.usage == first.usage
    assert backend.generations == 1, "a retry does not generate again"
    assert len(await assistant.history("alice")) == 1
    assert [m.text for m in await assistant.list_memories("alice")] == [m.text for m in memories]

    # Streaming a retry yields the stored text, then the reply.
    events = [
        event
        async for event in assistant.stream(
            "alice", STATEMENT, session_id="s1", idempotency_key="k-1"
        )
    ]
    assert "".join(e.delta for e in events if e.type == "token") == first.text
    assert events[-1].reply is not None and events[-1].reply.turn_id == first.turn_id

    # A new key is a new turn; another user's same key is theirs.
    await assistant.chat("alice", STATEMENT, session_id="s1", idempotency_key="k-2")
    bobs = await assistant.chat("bob", STATEMENT, session_id="s1", idempotency_key="k-1")
    assert bobs.replayed is False and bobs.turn_id != first.turn_id
    assert len(await assistant.history("alice")) == 2
    assert backend.generations == 3


async def test_the_same_key_with_another_message_or_session_is_refused(
    make_assistant: Any, backend: CountingBackend
) -> None:
    assistant = await make_assistant()
    await assistant.chat("alice", "hello there", session_id="s1", idempotency_key="k-1")
    with pytest.raises(IdempotencyKeyReusedError, match="already used for another message"):
        await assistant.chat("alice", "something else", session_id="s1", idempotency_key="k-1")
    with pytest.raises(IdempotencyKeyReusedError):
        await assistant.chat("alice", "hello there", session_id="s2", idempotency_key="k-1")
    # Whitespace around the message is not a different message.
    same = await assistant.chat("alice", "  hello there ", session_id="s1", idempotency_key="k-1")
    assert same.replayed
    for bad in ("", "has space", "x" * 201, "tab\tkey", "é"):
        with pytest.raises(InvalidInputError, match="invalid idempotency key"):
            await assistant.chat("alice", "hello", idempotency_key=bad)
    assert backend.generations == 1
    assert len(await assistant.history("alice")) == 1


async def test_concurrent_requests_with_one_key_store_one_turn(
    make_assistant: Any, backend: CountingBackend
) -> None:
    assistant = await make_assistant()
    racers = 4
    backend.gate = asyncio.Barrier(racers)  # all four generate before any stores
    replies = await asyncio.gather(
        *(
            assistant.chat("alice", STATEMENT, session_id="s1", idempotency_key="race")
            for _ in range(racers)
        )
    )
    assert backend.generations == racers
    assert len({reply.turn_id for reply in replies}) == 1, "the losers return the stored turn"
    assert sorted(reply.replayed for reply in replies) == [False, True, True, True]
    assert len(await assistant.history("alice")) == 1
    assert [m.text for m in await assistant.list_memories("alice")] == [STATEMENT]
    style = await assistant.store.get_state("style", "alice")
    assert style is not None and style["messages_seen"] == 1, "the losers' writes rolled back"


async def test_a_racer_with_another_message_is_refused(
    make_assistant: Any, backend: CountingBackend
) -> None:
    assistant = await make_assistant()
    backend.gate = asyncio.Barrier(2)
    results = await asyncio.gather(
        assistant.chat("alice", "first message", idempotency_key="race"),
        assistant.chat("alice", "second message", idempotency_key="race"),
        return_exceptions=True,
    )
    errors = [result for result in results if isinstance(result, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], IdempotencyKeyReusedError)
    assert len(await assistant.history("alice")) == 1
