"""Another process's change of a user's data reaches this one's caches
(mongars_core.changes): two assistants over one data directory stand for a server and
a ``mongars`` command run beside it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from mongars_core.changes import ChangeStamps
from mongars_core.pipeline import Assistant
from mongars_testkit import InstantBackend


async def test_a_user_forgotten_by_another_process_is_not_recalled_here(
    make_assistant: Callable[..., Awaitable[Assistant]], instant_backend: InstantBackend
) -> None:
    server = await make_assistant()
    command = await make_assistant()
    await server.chat("alice", "My dentist is Dr. Okonkwo on Maple Street.")
    assert [m.text for m in await server.search_memories("alice", "Okonkwo dentist")]
    await server.chat("alice", "Thanks.", session_id="s1")  # the session history is cached

    await command.forget_user("alice")
    assert await server.search_memories("alice", "Okonkwo dentist") == []
    reply = await server.chat("alice", "Who is my dentist?", session_id="s1")
    assert reply.memories == []
    # Only the turn after the erasure remains, and it saw no earlier history.
    assert [turn.message for turn in await server.history("alice")] == ["Who is my dentist?"]
    assert "Thanks." not in " ".join(m.content for m in instant_backend.requests[-1].messages)


async def test_memories_imported_by_another_process_are_recalled_here(
    make_assistant: Callable[..., Awaitable[Assistant]],
) -> None:
    server = await make_assistant()
    command = await make_assistant()
    await server.chat("bob", "I play the cello.")
    assert await server.search_memories("bob", "lapsang souchong tea") == []
    await command.import_memories("bob", [{"text": "I drink lapsang souchong tea every morning."}])
    found = await server.search_memories("bob", "lapsang souchong tea")
    assert [m.text for m in found] == ["I drink lapsang souchong tea every morning."]


def test_a_stamp_moves_for_the_others_only(tmp_path: Path) -> None:
    mine, theirs = ChangeStamps(tmp_path), ChangeStamps(tmp_path)
    assert not mine.changed_elsewhere("carol")  # first look, nothing stamped yet
    theirs.touch("carol")
    assert mine.changed_elsewhere("carol") and not mine.changed_elsewhere("carol")
    mine.touch("carol")
    assert not mine.changed_elsewhere("carol")  # its own change
    assert theirs.changed_elsewhere("carol")
    assert "carol" not in " ".join(path.name for path in tmp_path.iterdir())
