"""One write per turn: the turn row, its memory and its style profile are one transaction.

Every test with an assistant runs on SQLite and on PostgreSQL (the
``database_url`` fixture); the history cache has its own small tests.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Connection

from mongars_core import hookimpl
from mongars_core.errors import StorageError
from mongars_core.storage.history import HistoryCache
from mongars_core.storage.models import MemoryRecord
from mongars_core.storage.store import Store
from mongars_core.storage.unit_of_work import UnitOfWork
from mongars_core.types import HistoryTurn, Reply, Turn
from mongars_testkit import InstantBackend


class StagesAnOrphanMemory:
    """While ``broken``, stages a memory of a user that does not exist: a foreign
    key violation when the turn's writes are committed."""

    name = "orphan"

    def __init__(self) -> None:
        self.broken = False

    @hookimpl
    async def mongars_remember(self, turn: Turn, reply: Reply, writes: UnitOfWork) -> None:
        if self.broken:
            writes.add(MemoryRecord(user_id="nobody-at-all", text="orphan"))


class StagesABrokenStep:
    name = "broken_step"

    @hookimpl
    async def mongars_remember(self, turn: Turn, reply: Reply, writes: UnitOfWork) -> None:
        def broken(connection: Connection) -> None:
            raise ZeroDivisionError("a bug in the plugin")

        writes.run(broken)


class FailsAfterCommit:
    name = "fails_after_commit"

    @hookimpl
    async def mongars_turn_completed(self, turn: Turn, reply: Reply, writes: UnitOfWork) -> None:
        def explode() -> None:
            raise RuntimeError("cache update failed")

        writes.after_commit(explode)


class HangsAfterCommit:
    name = "hangs_after_commit"

    @hookimpl
    async def mongars_turn_completed(self, turn: Turn, reply: Reply, writes: UnitOfWork) -> None:
        writes.after_commit(lambda: asyncio.sleep(3600))


def prompt_history(backend: InstantBackend) -> list[str]:
    """The earlier user messages the model was shown in the last request."""
    messages = backend.requests[-1].messages[1:-1]
    return [message.content for message in messages if message.role == "user"]


async def test_a_failed_commit_stores_nothing_of_the_turn(
    make_assistant: Any, instant_backend: InstantBackend
) -> None:
    orphan = StagesAnOrphanMemory()
    assistant = await make_assistant(orphan)
    await assistant.chat("alice", "hello there", session_id="s1")
    orphan.broken = True

    with pytest.raises(StorageError):
        await assistant.chat("alice", "I prefer green tea", session_id="s1")

    assert [turn.message for turn in await assistant.history("alice")] == ["hello there"]
    assert await assistant.list_memories("alice") == [], "the memory went with the turn"
    style = await assistant.store.get_state("style", "alice")
    assert style is not None and style["messages_seen"] == 1, "so did the style observation"
    assert await assistant.search_memories("alice", "green tea") == [], "nor is it in the index"

    # Nothing in process still waits for the failed turn: the same words store now.
    orphan.broken = False
    await assistant.chat("alice", "I prefer green tea", session_id="s1")
    assert [m.text for m in await assistant.list_memories("alice")] == ["I prefer green tea"]
    assert prompt_history(instant_backend) == ["hello there"], "the failed turn is not history"
    style = await assistant.store.get_state("style", "alice")
    assert style is not None and style["messages_seen"] == 2


async def test_a_staged_step_that_raises_fails_the_commit_as_a_storage_error(
    make_assistant: Any,
) -> None:
    assistant = await make_assistant(StagesABrokenStep())
    with pytest.raises(StorageError, match="a bug in the plugin"):
        await assistant.chat("alice", "I prefer green tea")
    assert await assistant.store.history("alice") == []
    assert await assistant.store.list_memories("alice") == []


async def test_an_acknowledged_turn_is_durable(make_assistant: Any, database_url: str) -> None:
    assistant = await make_assistant()
    reply = await assistant.chat("alice", "My sister Clara lives in Lyon", session_id="s1")

    reopened = await Store.open(database_url)
    try:
        [stored] = await reopened.history("alice")
        assert (stored.message, stored.reply) == ("My sister Clara lives in Lyon", reply.text)
        [memory] = await reopened.list_memories("alice")
        assert memory.text == "My sister Clara lives in Lyon" and memory.turn_id == reply.turn_id
        style = await reopened.get_state("style", "alice")
        assert style is not None and style["messages_seen"] == 1
    finally:
        await reopened.close()


async def test_a_callback_failing_after_the_commit_is_a_warning(make_assistant: Any) -> None:
    assistant = await make_assistant(FailsAfterCommit())
    reply = await assistant.chat("alice", "hello there")
    assert any("cache update failed" in warning for warning in reply.warnings)
    assert len(await assistant.history("alice")) == 1, "the turn stays stored"


async def test_a_hanging_callback_gives_up_at_the_stage_deadline(make_assistant: Any) -> None:
    assistant = await make_assistant(HangsAfterCommit(), stage_timeout_s=0.2)
    reply = await asyncio.wait_for(assistant.chat("alice", "hello there"), 30)
    assert any("TimeoutError" in warning for warning in reply.warnings)
    assert len(await assistant.history("alice")) == 1


async def test_history_follows_turns_and_another_process_after_invalidate(
    make_assistant: Any, instant_backend: InstantBackend
) -> None:
    first = await make_assistant()
    await first.chat("alice", "one", session_id="s1")
    await first.chat("alice", "two", session_id="s1")
    assert prompt_history(instant_backend) == ["one"]

    other = await make_assistant()  # another process over the same database
    await other.chat("alice", "from elsewhere", session_id="s1")

    await first.chat("alice", "three", session_id="s1")
    assert prompt_history(instant_backend) == ["one", "two"], "the history is kept in process"
    await first.invalidate("alice")
    await first.chat("alice", "four", session_id="s1")
    assert prompt_history(instant_backend) == ["one", "two", "from elsewhere", "three"]


async def test_a_deleted_conversation_leaves_no_history(
    make_assistant: Any, instant_backend: InstantBackend
) -> None:
    assistant = await make_assistant()
    await assistant.chat("alice", "one", session_id="s1")
    await assistant.chat("alice", "two", session_id="s1")
    await assistant.delete_conversation("alice", "s1")
    await assistant.chat("alice", "again", session_id="s1")
    assert prompt_history(instant_backend) == []


def _turn(turn_id: int, session_id: str = "s1") -> HistoryTurn:
    return HistoryTurn(
        id=turn_id,
        user_id="alice",
        session_id=session_id,
        message=f"m{turn_id}",
        reply="r",
        created_at=datetime.now(UTC),
    )


def test_the_history_cache_keeps_the_last_turns_in_id_order() -> None:
    cache = HistoryCache()
    assert cache.get("alice", "s1", 2) is None
    token = cache.start_fill("alice", "s1", 2)
    assert token is not None
    cache.finish_fill("alice", "s1", 2, [_turn(1), _turn(2)], token)
    cache.append(_turn(4))
    cache.append(_turn(3))  # committed before 4 but reported after it
    assert [turn.id for turn in cache.get("alice", "s1", 2) or []] == [3, 4]
    assert cache.get("alice", "s1", 3) is None, "deeper than what was read: not known"
    cache.append(_turn(5, "s2"))
    assert cache.get("alice", "s2", 1) is None, "a session never read is not cached"


def test_a_fill_that_raced_a_write_is_not_kept() -> None:
    cache = HistoryCache()
    token = cache.start_fill("alice", "s1", 6)
    assert token is not None
    cache.append(_turn(7))  # committed after the read began: the read may lack it
    cache.finish_fill("alice", "s1", 6, [_turn(6)], token)
    assert cache.get("alice", "s1", 6) is None

    token = cache.start_fill("alice", "s1", 6)
    assert token is not None
    cache.drop_user("alice")
    cache.finish_fill("alice", "s1", 6, [_turn(6), _turn(7)], token)
    assert cache.get("alice", "s1", 6) is None
    assert cache.start_fill("alice", "s1", HistoryCache.MAX_DEPTH + 1) is None
