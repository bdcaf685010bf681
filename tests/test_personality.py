"""The personality plugin learns how a user writes and asks the model to mirror it."""

from __future__ import annotations

import asyncio
import types
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from mongars_core.services import Stash
from mongars_core.storage.store import Store
from mongars_core.storage.unit_of_work import UnitOfWork
from mongars_core.types import Reply, StyleProfile, Turn
from mongars_plugins.cognition import personality
from mongars_plugins.cognition.personality import (
    detect_language,
    formality_score,
    observe,
    style_instructions,
)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = await Store.open(database_url, migrate=True)
    yield opened
    await opened.close()


def make_turn(
    message: str, store: Store, user_id: str = "alice", stash: Stash | None = None
) -> Turn:
    return Turn(
        turn_id="t-1",
        user_id=user_id,
        session_id="s-1",
        message=message,
        services=types.SimpleNamespace(
            store=store, settings=None, stash=Stash() if stash is None else stash
        ),
    )


async def complete(turn: Turn) -> UnitOfWork:
    """Stage 10 of ``turn`` and the commit that follows it."""
    writes = UnitOfWork()
    await personality.mongars_turn_completed(turn, make_reply(turn), writes)
    await turn.services.store.commit(writes)
    return writes


async def stored_profile(store: Store, user_id: str = "alice") -> StyleProfile | None:
    data = await store.get_state("style", user_id)
    return None if data is None else StyleProfile.model_validate(data)


def make_reply(turn: Turn) -> Reply:
    return Reply(
        turn_id=turn.turn_id,
        user_id=turn.user_id,
        session_id=turn.session_id,
        text="ok",
        confidence=0.9,
        backend="fake",
        created_at=datetime.now(UTC),
    )


def learn(messages: list[str]) -> StyleProfile:
    profile = StyleProfile()
    for message in messages:
        profile = observe(profile, message)
    return profile


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("What time is it in Tokyo?", "en"),
        ("Bonjour, comment ça va aujourd'hui ?", "fr"),
        ("ca va tres bien", "fr"),
        ("merci", "fr"),
        ("¿Dónde está la biblioteca?", "es"),
        ("Hola", "es"),
        ("Ich habe heute keine Zeit.", "de"),
        ("Danke schön", "de"),
        ("Ciao, come stai?", "it"),
        ("Olá, tudo bem?", "pt"),
    ],
)
def test_detect_language_recognises_short_everyday_texts(text: str, language: str) -> None:
    assert detect_language(text) == language


@pytest.mark.parametrize("text", ["", "ok", "👍", "12345"])
def test_detect_language_defaults_to_english_without_evidence(text: str) -> None:
    assert detect_language(text) == "en"


def test_casual_text_scores_lower_than_neutral_and_formal_text() -> None:
    casual = formality_score("hey lol gonna grab food, u coming?? 😂")
    neutral = formality_score("I went to the market yesterday.")
    formal = formality_score(
        "Dear Sir, would you please send me the quarterly report by Friday? Thank you."
    )
    assert casual < neutral < formal
    assert casual >= 0.0
    assert formal <= 1.0


def test_french_tu_reads_less_formal_than_vous() -> None:
    assert formality_score("Tu peux m'aider ?") < formality_score("Pouvez-vous m'aider ?")


def test_observe_returns_an_updated_copy() -> None:
    profile = StyleProfile()
    updated = observe(profile, "Hello there, how are you?")
    assert profile.messages_seen == 0
    assert updated.messages_seen == 1
    assert updated.average_words == 5
    assert updated.question_rate == 1.0


def test_observe_ignores_blank_messages() -> None:
    assert observe(StyleProfile(), "   ") == StyleProfile()


def test_observe_averages_the_first_messages_then_adapts() -> None:
    profile = learn(["one two", "one two three four"])
    assert profile.average_words == 3
    # Twenty long messages later the short start no longer dominates.
    profile = learn(["one two"] * 5 + [" ".join(["word"] * 40)] * 20)
    assert profile.average_words > 35


def test_observe_keeps_the_language_when_a_message_has_no_evidence() -> None:
    profile = learn(["Bonjour, je voudrais un café.", "ok"])
    assert profile.language == "fr"


def test_no_instructions_before_any_message() -> None:
    assert style_instructions(StyleProfile()) == []


def test_instructions_for_a_casual_french_emoji_user() -> None:
    profile = learn(["salut ! tu fais quoi ce soir ? 😀", "mdr trop bien 😂", "ouais à demain !"])
    instructions = style_instructions(profile)
    assert instructions[0] == "Reply in French."
    assert "Answer in one or two short sentences." in instructions
    assert "Use a casual, friendly tone." in instructions
    assert "Address the user as « tu »." in instructions
    assert any("emoji" in line and "Avoid" not in line for line in instructions)


def test_instructions_for_a_formal_english_long_writer() -> None:
    message = (
        "Dear assistant, I would be grateful if you could explain, in some detail, how the "
        "proposed changes to the pension regulations will affect employees who joined the "
        "company before the merger. Would you please also outline the options available to "
        "them? Thank you."
    )
    instructions = style_instructions(learn([message, message]))
    assert not any(line.startswith("Reply in") for line in instructions)
    assert "Give a detailed answer." in instructions
    assert "Use a formal, polite tone." in instructions
    assert "Avoid emoji." in instructions


async def test_first_french_message_is_answered_in_french(store: Store) -> None:
    turn = make_turn("Bonjour, pouvez-vous m'aider avec mon code ?", store)
    instructions = await personality.mongars_style_instructions(turn)
    assert "Reply in French." in instructions


async def test_turn_completed_saves_the_profile_and_the_next_turn_uses_it(store: Store) -> None:
    stash = Stash()
    first = make_turn("yo lol u up? 😂", store, stash=stash)
    await complete(first)

    saved = await stored_profile(store)
    assert saved is not None and saved.messages_seen == 1

    second = make_turn("ok", store, stash=stash)
    instructions = await personality.mongars_style_instructions(second)
    assert "Use a casual, friendly tone." in instructions
    assert any("emoji" in line and "Avoid" not in line for line in instructions)
    # Answering does not learn; only a completed turn does.
    saved = await stored_profile(store)
    assert saved is not None and saved.messages_seen == 1


async def test_a_profile_is_saved_only_with_its_turn(store: Store) -> None:
    stash = Stash()
    writes = UnitOfWork()
    turn = make_turn("yo lol u up? 😂", store, stash=stash)
    await personality.mongars_turn_completed(turn, make_reply(turn), writes)
    assert await stored_profile(store) is None, "staged, not written"
    await writes.discard()  # the turn failed before its commit
    assert await stored_profile(store) is None
    learnt = await personality.mongars_style_instructions(make_turn("ok", store, stash=stash))
    fresh = await personality.mongars_style_instructions(make_turn("ok", store))
    assert learnt == fresh, "the cache did not learn either"


async def test_turns_finishing_together_each_count(store: Store) -> None:
    stash = Stash()
    messages = ["Hello there.", "Hi again.", "Good evening."]
    await asyncio.gather(
        *(complete(make_turn(message, store, stash=stash)) for message in messages)
    )
    saved = await stored_profile(store)
    assert saved is not None and saved.messages_seen == 3


async def test_profiles_are_kept_per_user(store: Store) -> None:
    await complete(make_turn("Bonjour tout le monde !", store, user_id="alice"))
    assert await stored_profile(store, "bob") is None
    assert await personality.mongars_style_instructions(make_turn("", store, "bob")) == []


async def test_an_unreadable_stored_profile_starts_over(store: Store) -> None:
    await store.put_state("style", "alice", {"messages_seen": "many"})
    await complete(make_turn("Hello there.", store))
    saved = await stored_profile(store)
    assert saved is not None and saved.messages_seen == 1
