"""What the memory keeps and what recall shows: statements, not keystrokes.

The classifier is measured on a labelled list of messages (precision and
recall of "worth remembering"); the assistant is then checked end to end:
questions, greetings and commands leave no memory, the same statement again
refreshes one memory, and search hides matches below the recall threshold.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from mongars_core import hookimpl
from mongars_core.hookspecs import Register
from mongars_core.settings import Settings
from mongars_core.types import Memory, remembered_line, utcnow
from mongars_plugins.memory import MEMORY
from mongars_plugins.memory.memorable import classify, memorable_text

# (message, worth remembering). Mixed on purpose: English and French, with and
# without punctuation, statements that look like questions and the reverse.
LABELLED: list[tuple[str, bool]] = [
    # Facts about the user, preferences, plans, people, dates.
    ("My sister's name is Amélie", True),
    ("I moved to Lyon last year", True),
    ("I prefer tea", True),
    ("I prefer tea over coffee in the morning", True),
    ("My dog is called Rex", True),
    ("Rex is my dog", True),
    ("I'm allergic to peanuts", True),
    ("I work as a nurse at the Hôpital Édouard Herriot", True),
    ("My wife's birthday is on June 3", True),
    ("We're flying to Tokyo on March 3", True),
    ("I'm vegan", True),
    ("I'm 34", True),
    ("I have two kids, Léo and Maya", True),
    ("My favourite colour is teal", True),
    ("I started learning Spanish in January", True),
    ("Next week I have a job interview at Airbus", True),
    ("My brother Paul lives in Montréal", True),
    ("I hate cilantro", True),
    ("I don't eat pork", True),
    ("Our anniversary is October 12", True),
    ("I usually go running at 6 am", True),
    ("My mother turns 70 next month", True),
    ("I live in a small flat near the station", True),
    ("Remember that my locker code is 4521", True),
    ("Call me Sam", True),
    ("When I was a kid I lived in Dakar", True),
    ("What I love most is hiking in the Alps", True),
    ("Mon frère s'appelle Karim", True),
    ("J'habite à Bordeaux depuis 2019", True),
    ("Je préfère le thé au café", True),
    ("Ma fille commence l'école en septembre", True),
    ("Thanks! My flight leaves at 6 tomorrow", True),
    ("I'm meeting Julie for lunch on Friday", True),
    ("My doctor is Dr. Martin", True),
    ("I can't stand horror movies", True),
    ("Can't wait to see my parents in May", True),
    ("I got a new job at the bank", True),
    ("I'd love to visit Iceland someday", True),
    ("We adopted a cat named Pixel", True),
    ("My car is a blue Renault Clio", True),
    ("Paul and Marie are coming to dinner on Saturday", True),
    ("Had a great time in Rome last week", True),
    ("Rex is a golden retriever", True),
    ("My son plays the violin.", True),
    ("Hi, I'm Sam and I live in Nantes", True),
    # Questions, with and without the mark.
    ("What is 17 * 23?", False),
    ("what is my dog called", False),
    ("What's my sister's name?", False),
    ("Can you help me plan a trip?", False),
    ("could you recommend a good book", False),
    ("Do you know any good recipes", False),
    ("is it going to rain tomorrow", False),
    ("how are you", False),
    ("How are you doing today?", False),
    ("Who won the World Cup in 2018", False),
    ("Where is the Eiffel Tower", False),
    ("why is the sky blue", False),
    ("Remember when we talked about Rome?", False),
    ("Do you remember my dog's name", False),
    ("I wonder what the capital of Peru is", False),
    ("Quel temps fait-il ?", False),
    ("Peux-tu m'aider", False),
    ("Est-ce que tu connais Paris", False),
    ("Hi! What's my dog called?", False),
    ("How much is a flight to Tokyo?", False),
    # Commands and requests to the assistant.
    ("/help", False),
    ("/new", False),
    ("/exit", False),
    ("tell me a joke", False),
    ("Tell me about the French revolution", False),
    ("please write a poem about the sea", False),
    ("Write a haiku about autumn", False),
    ("Explain quantum computing simply", False),
    ("Translate 'good morning' into Spanish", False),
    ("Give me three ideas for dinner", False),
    ("List the planets", False),
    ("Let's play a game", False),
    ("Don't worry about it", False),
    ("Repeat that please", False),
    ("Summarize the text above", False),
    ("Raconte-moi une blague", False),
    ("I want you to summarise this article", False),
    ("Tell me what you know about me", False),
    ("Hello there monGARS, please tell me how streaming looks today", False),
    ("Interesting, tell me more", False),
    # Arithmetic and conversions.
    ("What's 15% of 240?", False),
    ("100 °F in °C", False),
    ("convert 5 km to miles", False),
    ("17 * 23", False),
    ("sqrt(144)", False),
    ("12 / 4 + 7", False),
    # Greetings, thanks, small talk, reactions, nothing.
    ("hi", False),
    ("Hello!", False),
    ("hey there", False),
    ("thanks!", False),
    ("thank you so much", False),
    ("ok", False),
    ("okay cool", False),
    ("good morning", False),
    ("bonjour", False),
    ("merci beaucoup", False),
    ("lol", False),
    ("yes", False),
    ("no thanks", False),
    ("I love it", False),
    ("I don't know", False),
    ("I see", False),
    ("bye", False),
    ("see you later", False),
    ("Great, thanks!", False),
    ("The weather is nice today", False),
    ("You are wrong", False),
    ("That's not what I asked", False),
    ("That's a great poem", False),
    ("Python is a programming language", False),
    ("", False),
    ("   ", False),
    ("...", False),
    # Held out: written after the rules, kept as they were measured first
    # (precision 0.95, recall 1.0 on these 45; the one miss was "C'est quoi ...").
    ("My daughter Chloé starts university in the fall", True),
    ("I'm a software engineer", True),
    ("I drive a Tesla", True),
    ("My grandmother lives in Porto", True),
    ("I quit smoking two years ago", True),
    ("My partner is lactose intolerant", True),
    ("We got married in 2015", True),
    ("I'm training for the Paris marathon in April", True),
    ("I speak French and German", True),
    ("My phone number is 06 12 34 56 78", True),
    ("I really dislike jazz", True),
    ("My boss is called Mrs. Dubois", True),
    ("I go to the gym every Tuesday and Thursday", True),
    ("my favorite food is sushi", True),
    ("I was born in Casablanca", True),
    ("Our cat died last month", True),
    ("J'ai deux chats", True),
    ("Ma femme travaille à la mairie", True),
    ("I'm going to Berlin for work next Monday", True),
    ("My best friend is Tom", True),
    ("what time is it", False),
    ("Any idea how to fix a flat tire?", False),
    ("good night!", False),
    ("thx", False),
    ("What are some good sci-fi books", False),
    ("Make it shorter", False),
    ("Continue", False),
    ("That's wrong", False),
    ("haha nice one", False),
    ("Show me a picture of a cat", False),
    ("Can I ask you something", False),
    ("Should I bring an umbrella", False),
    ("How many ounces in a pound", False),
    ("2+2", False),
    ("What does my name mean", False),
    ("Explain it like I'm five", False),
    ("Salut, ça va ?", False),
    ("C'est quoi la capitale du Pérou", False),
    ("Give me a recipe with chicken and rice", False),
    ("awesome, thank you!", False),
    ("Help", False),
    ("Cool story", False),
    ("Is Pluto a planet", False),
    ("Try again", False),
    ("Not bad", False),
]


def test_the_classifier_keeps_statements_and_skips_the_rest() -> None:
    outcomes = [(memorable_text(message) is not None, wanted) for message, wanted in LABELLED]
    true_positive = sum(got and wanted for got, wanted in outcomes)
    precision = true_positive / sum(got for got, _ in outcomes)
    recall = true_positive / sum(wanted for _, wanted in outcomes)
    wrong = [
        message
        for (message, wanted), (got, _) in zip(LABELLED, outcomes, strict=True)
        if got != wanted
    ]
    print(f"\nprecision {precision:.3f} recall {recall:.3f} on {len(LABELLED)}; wrong: {wrong}")
    assert precision >= 0.95, wrong
    assert recall >= 0.9, wrong


@pytest.mark.parametrize(
    ("sentence", "kind"),
    [
        ("/help", "command"),
        ("what is my dog called", "question"),
        ("tell me a joke", "request"),
        ("Reply in Markdown: a heading and a list of three fruits.", "request"),
        ("Use a bulleted list for the steps", "request"),
        ("thanks!", "too_short"),
        ("thank you so much", "small_talk"),
        ("What is 17 * 23?", "arithmetic"),
        ("The weather is nice today", "impersonal"),
        ("I prefer tea", "statement"),
    ],
)
def test_each_sentence_gets_a_kind(sentence: str, kind: str) -> None:
    assert classify(sentence) == kind


def test_only_the_memorable_sentences_of_a_message_are_kept() -> None:
    assert memorable_text("Hi! My sister's name is Amélie. What should I get her?") == (
        "My sister's name is Amélie."
    )
    assert memorable_text("remember that my locker code is 4521") == "My locker code is 4521"
    # Sentences are cut as mongars_core.text.sentences does: not after "Dr.".
    assert memorable_text("My doctor is Dr. Martin. What is his number?") == (
        "My doctor is Dr. Martin."
    )


# -- the assistant end to end (SQLite and PostgreSQL, no embedder) --------------------


async def test_questions_greetings_commands_and_sums_leave_no_memory(make_assistant: Any) -> None:
    assistant = await make_assistant()
    for message in [
        "hi",
        "/help",
        "What is 17 * 23?",
        "what is my dog called",
        "tell me a joke",
        "thanks!",
        "My dog is called Rex",
        "ok",
    ]:
        await assistant.chat("alice", message)
    assert [m.text for m in await assistant.list_memories("alice")] == ["My dog is called Rex"]
    assert len(await assistant.history("alice")) == 8, "every turn is still in the history"


async def test_only_the_statement_of_a_mixed_message_is_remembered(make_assistant: Any) -> None:
    assistant = await make_assistant()
    await assistant.chat("alice", "Thanks! My flight leaves at 6 tomorrow. Can you remind me?")
    assert [m.text for m in await assistant.list_memories("alice")] == [
        "My flight leaves at 6 tomorrow."
    ]


async def test_a_memory_from_a_message_in_the_history_is_not_repeated(
    make_assistant: Any,
) -> None:
    assistant = await make_assistant()
    await assistant.chat("alice", "Hi! My dog is called Rex.", session_id="a")
    same = await assistant.chat("alice", "What is my dog called?", session_id="a")
    assert same.memories == [], "the model sees the message itself in the history"
    other = await assistant.chat("alice", "What is my dog called?", session_id="b")
    assert [m.text for m in other.memories] == ["My dog is called Rex."]


async def test_remember_all_keeps_every_message(make_assistant: Any, settings: Any) -> None:
    memory = settings.memory.model_copy(update={"remember": "all"})
    assistant = await make_assistant(memory=memory)
    await assistant.chat("alice", "hi there")
    assert [m.text for m in await assistant.list_memories("alice")] == ["hi there"]


async def test_the_same_statement_again_refreshes_one_memory(make_assistant: Any) -> None:
    assistant = await make_assistant()
    await assistant.chat("alice", "My dog is called Rex", session_id="monday")
    [first] = await assistant.list_memories("alice")
    await assistant.chat("alice", "I prefer tea", session_id="monday")
    await assistant.chat("alice", "  my dog is called   REX! ", session_id="tuesday")

    memories = await assistant.list_memories("alice")
    assert [m.text for m in memories] == ["my dog is called   REX!", "I prefer tea"]
    again = memories[0]
    assert again.id == first.id and again.session_id == "tuesday"
    assert again.created_at > first.created_at
    assert again.expires_at is not None and first.expires_at is not None
    assert again.expires_at > first.expires_at
    found = await assistant.search_memories("alice", "what is my dog called")
    assert [m.text for m in found] == ["my dog is called   REX!"], "the index follows"


async def test_the_same_statement_twice_at_once_leaves_one_memory(make_assistant: Any) -> None:
    assistant = await make_assistant()
    await asyncio.gather(
        *(
            assistant.chat("alice", "I moved to Lyon last year", session_id=f"s{n}")
            for n in range(4)
        )
    )
    assert [m.text for m in await assistant.list_memories("alice")] == ["I moved to Lyon last year"]


async def test_a_statement_deleted_meanwhile_is_stored_anew(make_assistant: Any) -> None:
    first = await make_assistant()
    await first.chat("alice", "I prefer tea")  # in first's index
    other = await make_assistant()
    await other.delete_memories("alice")  # another process: first's index is stale
    await first.chat("alice", "I prefer tea")
    assert [m.text for m in await first.list_memories("alice")] == ["I prefer tea"]


async def test_search_hides_weak_matches(make_assistant: Any) -> None:
    assistant = await make_assistant()
    await assistant.chat("alice", "My dog is called Rex")
    await assistant.chat("alice", "I moved to Lyon last year")
    # "dog" is a quarter of this query's weighted words: below min_lexical_score (0.3).
    assert await assistant.search_memories("alice", "dog food brands for puppies") == []
    [found] = await assistant.search_memories("alice", "what is my dog called")
    assert found.text == "My dog is called Rex" and found.source == "lexical"
    assert found.score >= assistant.settings.memory.min_lexical_score


async def test_a_reply_shows_the_memories_it_had(make_assistant: Any) -> None:
    assistant = await make_assistant()
    await assistant.chat("alice", "My dog is called Rex", session_id="a")
    reply = await assistant.chat("alice", "What is my dog called?", session_id="b")
    [memory] = reply.memories
    stored = await assistant.list_memories("alice")
    assert memory.id == stored[0].id and memory.text == "My dog is called Rex"
    assert 0 < memory.score <= 1
    dumped = reply.model_dump(mode="json")["memories"][0]
    assert {dumped["id"], dumped["text"], dumped["score"]} == {memory.id, memory.text, memory.score}
    assert (
        remembered_line(reply.memories)
        == f'remembered: "My dog is called Rex" ({memory.score:.2f})'
    )


def test_the_remembered_line_is_short_and_plain() -> None:
    memories = [
        Memory(id=1, text="I prefer tea", score=0.41),
        Memory(
            id=2, text="My\nsister's name is Amélie and she lives in Montréal with Léo", score=1
        ),
    ]
    assert remembered_line([]) is None
    assert remembered_line(memories, width=30) == (
        'remembered: "I prefer tea" (0.41), "My sister\'s name is Amélie…" (1.00)'
    )


async def test_the_search_route_hides_weak_matches(tmp_path: Path) -> None:
    from tests.server.conftest import bearer, register, running, server_settings

    with running(server_settings(tmp_path)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
            alice = bearer(await register(http, "alice"))
            for message in ["My dog is called Rex", "What is 17 * 23?", "hello"]:
                said = await http.post(
                    "/api/v1/conversation/chat", json={"message": message}, headers=alice
                )
                assert said.status_code == 200, said.text
            listed = (await http.get("/api/v1/memories", headers=alice)).json()["items"]
            assert [m["text"] for m in listed] == ["My dog is called Rex"]
            weak = await http.get(
                "/api/v1/memories/search",
                params={"q": "dog food brands for puppies"},
                headers=alice,
            )
            assert weak.status_code == 200 and weak.json()["items"] == []
            strong = await http.get(
                "/api/v1/memories/search", params={"q": "my dog"}, headers=alice
            )
            assert [m["text"] for m in strong.json()["items"]] == ["My dog is called Rex"]


# -- with the real MiniLM embedder ---------------------------------------------------

# (stored memory, query, related). The calibration of memory.min_score: the
# scores these get are written down in docs/architecture.md ("Recall thresholds").
PAIRS: list[tuple[str, str, bool]] = [
    ("My dog is called Rex", "dog", True),
    ("My dog is called Rex", "what is my dog called", True),
    ("My dog is called Rex", "what's my dog's name", True),
    ("My dog is called Rex", "my pet", True),
    ("My sister's name is Amélie", "what is my sister's name", True),
    ("My sister's name is Amélie", "gift ideas for Amélie", True),
    ("I moved to Lyon last year", "where do I live", True),
    ("I prefer tea over coffee", "what do I like to drink", True),
    ("I prefer tea over coffee", "what should I drink this morning", True),
    ("I'm flying to Tokyo on March 3", "when is my trip", True),
    ("What is 17 * 23?", "dog", False),
    ("I prefer tea over coffee", "dog", False),
    ("I moved to Lyon last year", "dog", False),
    ("I moved to Lyon last year", "what is my dog called", False),
    ("My sister's name is Amélie", "what is my dog called", False),
    ("I prefer tea over coffee", "tell me a joke", False),
    ("My sister's name is Amélie", "what's the weather tomorrow", False),
    ("I moved to Lyon last year", "how do I cook pasta", False),
    ("I'm flying to Tokyo on March 3", "what is 15% of 240", False),
    ("My dog is called Rex", "write a poem about the sea", False),
    ("I work as a nurse at the hospital", "hello", False),
]


class MiniLMPlugin:
    """Registers the cuda plugin's MiniLM embedder, without its LLM backend."""

    @hookimpl
    def mongars_register_embedders(self, register: Register, settings: Settings) -> None:
        from mongars_plugins.cuda.embedder import MiniLMEmbedder

        register("minilm", MiniLMEmbedder("cpu"))


@pytest.fixture
async def minilm_assistant(make_assistant: Any, settings: Any) -> Any:
    memory = settings.memory.model_copy(update={"embedder": "minilm", "remember": "all"})
    return await make_assistant(("minilm", MiniLMPlugin()), memory=memory)


@pytest.mark.embedder
async def test_recall_threshold_separates_related_from_unrelated_memories(
    minilm_assistant: Any,
) -> None:
    assistant = minilm_assistant
    threshold = assistant.settings.memory.min_score
    memories = sorted({memory for memory, _, _ in PAIRS})
    for text in memories:
        await assistant.chat("alice", text)
    index = assistant.services.stash[MEMORY].index
    scores: list[tuple[float, bool, str, str]] = []
    for memory, query, related in PAIRS:
        vector = await assistant.services.stash[MEMORY]._embed_query(query)
        found = index.search("alice", query, vector, now=utcnow(), limit=len(memories))
        score = next((m.score for m in found if m.text == memory), 0.0)
        scores.append((score, related, memory, query))
    print()
    for score, related, memory, query in sorted(scores, reverse=True):
        print(f"{score:.3f} {'related' if related else 'unrelated':9} {query!r} ~ {memory!r}")
    lowest_related = min(score for score, related, *_ in scores if related)
    highest_unrelated = max(score for score, related, *_ in scores if not related)
    assert highest_unrelated < threshold <= lowest_related, (highest_unrelated, lowest_related)
    # The case: "dog" no longer finds the arithmetic question.
    found = await assistant.search_memories("alice", "dog")
    assert [m.text for m in found] == ["My dog is called Rex"]


@pytest.mark.embedder
async def test_near_duplicates_merge_and_different_facts_do_not(
    minilm_assistant: Any,
) -> None:
    assistant = minilm_assistant
    for message in [
        "My dog is called Rex",
        "My dog is named Rex",  # the same fact again, reworded (cosine 0.96)
        "My cat is called Rex",  # another fact (0.89)
        "I have 2 kids",
        "I have 3 kids",  # close wording, other numbers: kept apart
    ]:
        await assistant.chat("alice", message)
    assert [m.text for m in await assistant.list_memories("alice")] == [
        "My dog is named Rex",
        "My cat is called Rex",
        "I have 2 kids",
        "I have 3 kids",
    ]
