"""The conversation pipeline, with the bundled plugins and an instant stand-in LLM.

Every test here runs on SQLite and on PostgreSQL (the ``database_url`` fixture).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mongars_core import hookimpl
from mongars_core.changes import ChangeStamps
from mongars_core.errors import (
    BackendError,
    EmptyMessageError,
    GenerationTimeoutError,
    InvalidInputError,
    InvalidUserIdError,
    MessageTooLongError,
    UnknownBackendError,
    UnknownUserError,
)
from mongars_core.types import GenerationRequest, Memory, Turn
from mongars_testkit import BackendPlugin, InstantBackend

STAGES = {
    "history",
    "recall",
    "gaps",
    "reason",
    "style",
    "generate",
    "adapt",
    "speech",
    "persist",
    "remember",
    "observe",
}


async def test_a_turn_runs_every_stage_and_is_stored(make_assistant: Any) -> None:
    assistant = await make_assistant()
    reply = await assistant.chat("alice", "  Hello there, how are you?  ", session_id="s1")

    assert reply.text == "You said: Hello there, how are you?"
    assert reply.user_id == "alice" and reply.session_id == "s1" and reply.backend == "instant"
    assert set(reply.timings) >= STAGES
    assert reply.speech is not None and reply.speech.segments
    assert reply.speech.turn_id == reply.turn_id
    assert 0 < reply.confidence <= 1
    assert reply.warnings == []
    history = await assistant.history("alice")
    assert [(turn.message, turn.reply) for turn in history] == [
        ("Hello there, how are you?", reply.text)
    ]


async def test_stream_yields_tokens_then_the_reply(make_assistant: Any) -> None:
    assistant = await make_assistant()
    events = [event async for event in assistant.stream("alice", "one two three")]

    tokens = [event.delta for event in events if event.type == "token"]
    assert len(tokens) == 5
    assert "".join(tokens) == "You said: one two three"
    assert events[-1].type == "reply" and events[-1].reply is not None
    assert events[-1].reply.text == "You said: one two three"


async def test_session_history_reaches_the_model(
    make_assistant: Any, instant_backend: InstantBackend
) -> None:
    assistant = await make_assistant()
    await assistant.chat("alice", "first message", session_id="s1")
    await assistant.chat("alice", "other session", session_id="s2")
    await assistant.chat("alice", "second message", session_id="s1")

    messages = instant_backend.requests[-1].messages
    contents = [(message.role, message.content) for message in messages[1:]]
    assert contents == [
        ("user", "first message"),
        ("assistant", "You said: first message"),
        ("user", "second message"),
    ]


async def test_reasoning_facts_reach_the_model_and_the_reply(
    make_assistant: Any, instant_backend: InstantBackend
) -> None:
    instant_backend.reply = lambda request: "I think it is 370."
    assistant = await make_assistant()
    reply = await assistant.chat("alice", "What is 17 * 23?")

    assert [hint.result for hint in reply.reasoning] == ["391"]
    assert "17 * 23 = 391" in instant_backend.requests[-1].messages[0].content
    assert "391" in reply.text


async def test_a_fact_is_recalled_in_a_new_session_for_the_same_user_only(
    make_assistant: Any, instant_backend: InstantBackend
) -> None:
    assistant = await make_assistant()
    await assistant.chat("alice", "My sister's name is Amélie", session_id="monday")

    reply = await assistant.chat("alice", "What is my sister's name?", session_id="tuesday")
    assert [memory.text for memory in reply.memories] == ["My sister's name is Amélie"]
    assert "Amélie" in instant_backend.requests[-1].messages[0].content

    other = await assistant.chat("bob", "What is my sister's name?", session_id="tuesday")
    assert other.memories == []
    assert "Amélie" not in instant_backend.requests[-1].messages[0].content


async def test_a_failing_optional_stage_is_reported_and_the_turn_completes(
    make_assistant: Any,
) -> None:
    class BrokenRecall:
        @hookimpl
        def mongars_recall(self, turn: Turn) -> list[Memory]:
            raise RuntimeError("index on fire")

    assistant = await make_assistant(("broken", BrokenRecall()))
    reply = await assistant.chat("alice", "hello")

    assert reply.text == "You said: hello"
    assert len(reply.warnings) == 1
    assert "mongars_recall in plugin 'broken'" in reply.warnings[0]
    assert "index on fire" in reply.warnings[0]


async def test_a_slow_optional_stage_times_out_without_blocking_the_turn(
    make_assistant: Any,
) -> None:
    class SlowReasoner:
        @hookimpl
        async def mongars_reason(self, turn: Turn) -> list[Any]:
            await asyncio.sleep(30)
            return []

    assistant = await make_assistant(("slow", SlowReasoner()), stage_timeout_s=0.2)
    reply = await assistant.chat("alice", "hello")

    assert reply.text == "You said: hello"
    assert any("TimeoutError" in warning for warning in reply.warnings)


async def test_adapt_reply_transforms_are_chained(make_assistant: Any) -> None:
    class Upper:
        @hookimpl
        def mongars_adapt_reply(self, turn: Turn, text: str) -> str:
            return text.upper()

    class Exclaim:
        @hookimpl
        async def mongars_adapt_reply(self, turn: Turn, text: str) -> str:
            return text + "!"

    assistant = await make_assistant(("upper", Upper()), ("exclaim", Exclaim()))
    reply = await assistant.chat("alice", "hi")

    # pluggy order: the last registered runs first.
    assert reply.text == "YOU SAID: HI!"


async def test_a_failing_llm_is_a_clear_error_and_stores_nothing(
    make_assistant: Any, instant_backend: InstantBackend
) -> None:
    def explode(request: GenerationRequest) -> str:
        raise ConnectionError("model server gone")

    assistant = await make_assistant()
    await assistant.chat("alice", "I keep bees in my garden")
    instant_backend.reply = explode

    with pytest.raises(BackendError, match="model server gone"):
        await assistant.chat("alice", "I lost my keys at the station")
    history = [turn.message for turn in await assistant.history("alice")]
    assert history == ["I keep bees in my garden"]
    memories = [memory.text for memory in await assistant.list_memories("alice")]
    assert memories == ["I keep bees in my garden"]


async def test_a_hanging_llm_times_out(make_assistant: Any, settings: Any) -> None:
    class Hanging(InstantBackend):
        async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
            await asyncio.sleep(3600)
            yield "never"

    llm = settings.llm.model_copy(update={"first_token_timeout_s": 0.3})
    assistant = await make_assistant(BackendPlugin(Hanging(), "hanging"), llm=llm)
    with pytest.raises(GenerationTimeoutError, match=r"within 0\.3 s"):
        await assistant.chat("alice", "hello?", backend="hanging")
    with pytest.raises(UnknownUserError):  # nothing of the failed turn is stored, not even alice
        await assistant.history("alice")


@pytest.mark.parametrize(
    ("user", "message", "error"),
    [
        ("alice", "", EmptyMessageError),
        ("alice", "   \n\t ", EmptyMessageError),
        ("alice", "x" * 4001, MessageTooLongError),
        ("", "hello", InvalidUserIdError),
        ("alice smith", "hello", InvalidUserIdError),
        ("a" * 151, "hello", InvalidUserIdError),
    ],
)
async def test_bad_input_is_refused_and_loses_nothing(
    make_assistant: Any, user: str, message: str, error: type[Exception]
) -> None:
    assistant = await make_assistant()
    await assistant.chat("alice", "kept")
    with pytest.raises(error):
        await assistant.chat(user, message)
    assert [turn.message for turn in await assistant.history("alice")] == ["kept"]


async def test_unknown_backend_and_unknown_user(make_assistant: Any) -> None:
    assistant = await make_assistant()
    with pytest.raises(UnknownBackendError, match=r"no LLM backend named .gpt-9.*instant"):
        await assistant.chat("alice", "hello", backend="gpt-9")
    with pytest.raises(UnknownUserError, match="nobody"):
        await assistant.list_memories("nobody")


async def test_closing_the_stream_early_stores_nothing(make_assistant: Any) -> None:
    assistant = await make_assistant()
    stream = assistant.stream("alice", "one two three four")
    first = await anext(stream)
    await stream.aclose()

    assert first.type == "token"
    with pytest.raises(UnknownUserError):  # not even alice's user row
        await assistant.history("alice")


async def test_memories_can_be_listed_and_deleted(make_assistant: Any) -> None:
    assistant = await make_assistant()
    await assistant.chat("alice", "I love sailing on the lake")
    await assistant.chat("alice", "My cat is called Pixel")
    memories = await assistant.list_memories("alice")
    assert [memory.text for memory in memories] == [
        "I love sailing on the lake",
        "My cat is called Pixel",
    ]

    await assistant.delete_memory("alice", memories[1].id)
    reply = await assistant.chat("alice", "What is my cat called?")
    assert all("Pixel" not in memory.text for memory in reply.memories)

    # The question was not remembered: only the sailing memory is left.
    assert await assistant.delete_memories("alice") == 1
    assert await assistant.list_memories("alice") == []


async def test_search_finds_a_users_memories_best_first(make_assistant: Any) -> None:
    assistant = await make_assistant()
    await assistant.chat("alice", "I love sailing on the lake")
    await assistant.chat("alice", "My cat is called Pixel")
    await assistant.chat("bob", "My cat is called Tiger")
    found = await assistant.search_memories("alice", "what is my cat called", limit=5)
    assert found[0].text == "My cat is called Pixel"
    assert all("Tiger" not in memory.text for memory in found)
    assert [m.score for m in found] == sorted((m.score for m in found), reverse=True)


async def test_invalidate_reloads_what_another_process_changed(make_assistant: Any) -> None:
    first = await make_assistant()
    await first.chat("alice", "My cat is called Pixel")  # loads alice's memory index
    # Another process over the same database deletes the memory and adds one.
    other = await make_assistant()
    [pixel] = await other.list_memories("alice")
    await other.delete_memory("alice", pixel.id)
    await other.chat("alice", "My dog is called Biscuit")

    # The other process stamped its change (mongars_core.changes): nothing stale here.
    fresh = await first.search_memories("alice", "is my cat or my dog called Pixel or Biscuit")
    assert [memory.text for memory in fresh] == ["My dog is called Biscuit"]
    # Without a stamp (a process of another data directory, Redis telling), invalidate does it.
    await other.chat("alice", "My cat is called Pixel")
    first.changes = ChangeStamps(first.settings.data_dir / "elsewhere")
    stale = await first.search_memories("alice", "my cat called Pixel")
    assert not any("Pixel" in memory.text for memory in stale), "the cache is per process"
    await first.invalidate("alice")
    fresh = await first.search_memories("alice", "my cat called Pixel")
    assert any("Pixel" in memory.text for memory in fresh)


async def test_another_users_memory_cannot_be_deleted(make_assistant: Any) -> None:
    from mongars_core.errors import MemoryNotFoundError

    assistant = await make_assistant()
    await assistant.chat("alice", "My secret plan is to sail to Oslo")
    await assistant.chat("bob", "My plan is to stay home")
    alice_memory = (await assistant.list_memories("alice"))[0]

    with pytest.raises(MemoryNotFoundError):
        await assistant.delete_memory("bob", alice_memory.id)
    assert len(await assistant.list_memories("alice")) == 1


async def test_style_is_learned_and_persisted_across_assistants(make_assistant: Any) -> None:
    first = await make_assistant()
    for message in ["salut, ça va ? je suis à la maison", "merci beaucoup, c'est très bien"]:
        await first.chat("alice", message)
    await first.aclose()

    second = await make_assistant()
    reply = await second.chat("alice", "ok")
    assert any("French" in instruction for instruction in reply.style_instructions)


async def test_a_plugin_that_fails_to_forget_makes_deletion_fail_loudly(
    make_assistant: Any,
) -> None:
    class Stubborn:
        @hookimpl
        def mongars_forget(self, services: Any, user_id: str, memory_ids: Any) -> None:
            raise RuntimeError("cache is read-only")

    assistant = await make_assistant(("stubborn", Stubborn()))
    await assistant.chat("alice", "Remember that my bike is red")
    assert len(await assistant.list_memories("alice")) == 1
    with pytest.raises(RuntimeError, match="read-only"):
        await assistant.delete_memories("alice")


async def test_memories_expire_after_their_ttl(make_assistant: Any, settings: Any) -> None:
    memory = settings.memory.model_copy(update={"ttl_days": 0.5 / 86400})  # half a second
    assistant = await make_assistant(memory=memory)
    await assistant.chat("alice", "My locker code is 4521", session_id="a")
    soon = await assistant.chat("alice", "What is my locker code?", session_id="b")
    assert [m.text for m in soon.memories] == ["My locker code is 4521"]

    await asyncio.sleep(0.6)
    later = await assistant.chat("alice", "What is my locker code?", session_id="c")
    assert all("4521" not in m.text for m in later.memories)
    assert all("4521" not in m.text for m in await assistant.list_memories("alice"))


async def test_each_user_keeps_at_most_capacity_memories(
    make_assistant: Any, settings: Any
) -> None:
    memory = settings.memory.model_copy(update={"capacity": 2})
    assistant = await make_assistant(memory=memory)
    facts = ["I have a cat", "I play the cello", "I live in Lyon", "I work at a bakery"]
    for message in facts:
        await assistant.chat("alice", message)
    await assistant.chat("bob", "I am Bob the builder")

    assert [m.text for m in await assistant.list_memories("alice")] == facts[2:]
    assert [m.text for m in await assistant.list_memories("bob")] == ["I am Bob the builder"]


@pytest.mark.parametrize(
    ("user", "message", "session", "error"),
    [
        ("alice\n", "hello", "s", InvalidUserIdError),
        ("alice", "hello", "x" * 151, InvalidInputError),
        ("alice", "hello", "two words", InvalidInputError),
        ("alice", "nul \x00 inside", "s", InvalidInputError),
        ("alice", "caf\udce9", "s", InvalidInputError),
    ],
)
async def test_odd_ids_and_text_are_refused_before_generation(
    make_assistant: Any,
    instant_backend: InstantBackend,
    user: str,
    message: str,
    session: str,
    error: type[Exception],
) -> None:
    assistant = await make_assistant()
    with pytest.raises(error):
        await assistant.chat(user, message, session_id=session)
    assert instant_backend.requests == []


async def test_closing_the_stream_closes_the_backend_stream_at_once(
    make_assistant: Any, settings: Any
) -> None:
    closed: list[bool] = []

    class Watched(InstantBackend):
        async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
            try:
                for word in ["one", " two", " three", " four"]:
                    yield word
            finally:
                closed.append(True)

    assistant = await make_assistant(BackendPlugin(Watched(), "watched"))
    stream = assistant.stream("alice", "hello", backend="watched")
    await anext(stream)
    await stream.aclose()
    assert closed == [True]


async def test_concurrent_turns_of_one_user_all_count_for_style(make_assistant: Any) -> None:
    assistant = await make_assistant()
    await asyncio.gather(
        *(assistant.chat("alice", f"message number {n}", session_id=f"s{n}") for n in range(6))
    )
    profile = await assistant.store.get_state("style", "alice")
    assert profile is not None and profile["messages_seen"] == 6
    assert len(await assistant.history("alice")) == 6


async def test_a_memory_that_starts_like_an_earlier_message_is_still_recalled(
    make_assistant: Any,
) -> None:
    assistant = await make_assistant()
    await assistant.chat("alice", "Hiking in the Alps is my favourite hobby", session_id="a")
    await assistant.chat("alice", "hi", session_id="b")
    reply = await assistant.chat("alice", "What is my favourite hobby?", session_id="b")
    assert [m.text for m in reply.memories] == ["Hiking in the Alps is my favourite hobby"]


async def test_expired_memories_do_not_crowd_out_live_ones(
    make_assistant: Any, settings: Any
) -> None:
    memory = settings.memory.model_copy(update={"ttl_days": 3.0 / 86400})  # three seconds
    assistant = await make_assistant(memory=memory)
    # More than the index looks at for one search (30), all matching better.
    for n in range(35):
        await assistant.chat("alice", f"the locker code is {1000 + n}", session_id=f"old{n}")
    await asyncio.sleep(3.1)
    await assistant.chat("alice", "the new locker code is 9999", session_id="new")
    reply = await assistant.chat("alice", "what is the locker code?", session_id="ask")
    assert [m.text for m in reply.memories] == ["the new locker code is 9999"]


async def test_a_memory_deleted_while_it_is_being_loaded_does_not_come_back(
    make_assistant: Any, settings: Any, database_url: str, instant_backend: InstantBackend
) -> None:
    from mongars_core.pipeline import Assistant
    from mongars_core.plugins import build_plugin_manager
    from mongars_core.storage.store import Store

    writer = await make_assistant()
    await writer.chat("alice", "My locker code is 4521", session_id="a")
    memory_id = (await writer.list_memories("alice"))[0].id

    reading = asyncio.Event()

    class SlowStore(Store):
        """Reads memories, then dawdles: the deletion lands during the index load."""

        async def list_memories(self, user_id: str, **options: Any) -> Any:
            records = await super().list_memories(user_id, **options)
            reading.set()
            await asyncio.sleep(0.3)
            return records

    chosen = settings.model_copy(
        update={"database_url": database_url, "load_plugins": ["memory", "instant"]}
    )
    pm = build_plugin_manager(chosen, plugins=[("instant", BackendPlugin(instant_backend))])
    async with await Assistant.from_settings(
        chosen, plugin_manager=pm, store=await SlowStore.open(database_url)
    ) as reader:
        asking = asyncio.create_task(reader.chat("alice", "What is my locker code?"))
        await reading.wait()
        await reader.delete_memory("alice", memory_id)
        await asking
        again = await reader.chat("alice", "What is my locker code?", session_id="b")
    assert all("4521" not in memory.text for memory in again.memories)
