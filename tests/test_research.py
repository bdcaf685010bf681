"""Research: gaps and questions looked up in the user's documents and memories, the
numbered sources the model is given and the reply lists, and the clarifying question
asked instead of an invented answer.

The retrieval plugins are small fakes implementing ``mongars_retrieve`` (the memory
and knowledge plugins answer the same hook); the assistant is otherwise the bundled
one, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from opentelemetry import trace

from mongars_core import hookimpl
from mongars_core.pipeline import Assistant
from mongars_core.plugins import PluginHost, build_plugin_manager
from mongars_core.prompt import build_messages, reply_sources
from mongars_core.services import Services
from mongars_core.settings import Settings
from mongars_core.text import search_terms
from mongars_core.types import (
    Finding,
    KnowledgeGap,
    Passage,
    ReasoningHint,
    RetrievalQuery,
    Turn,
)
from mongars_plugins.knowledge import research
from mongars_plugins.knowledge.research import (
    ResearchSettings,
    cite_sources,
    clarifying_question,
    source_text,
    unfamiliar,
)
from mongars_testkit import InstantBackend

MakeAssistant = Callable[..., Awaitable[Assistant]]

ZORBLAX = "Zorblax is the code name of our staging server; it listens on port 8443."
ROUTER = "To reset the router, hold its reset button down for ten seconds."


def chunk(number: int, text: str, source: str, **fields: Any) -> Passage:
    return Passage(
        key=f"chunk:{number}",
        kind="document",
        text=text,
        source=source,
        document_id=number,
        **fields,
    )


class Library:
    """A fake retrieval plugin: each user's passages, ranked by the words they share
    with the query (a stand-in for BM25). Records every query it is asked."""

    def __init__(self, passages: dict[str, list[Passage]], *, methods: int = 1) -> None:
        self.passages = passages
        self.methods = methods
        self.queries: list[RetrievalQuery] = []

    @property
    def research_queries(self) -> list[RetrievalQuery]:
        """The queries research asked (recall asks for memories only)."""
        return [query for query in self.queries if "document" in query.kinds]

    @hookimpl
    def mongars_retrieve(self, services: Services, query: RetrievalQuery) -> list[Passage]:
        self.queries.append(query)
        asked = set(search_terms(query.text))
        scored = [
            (len(asked & set(search_terms(p.text))), p)
            for p in self.passages.get(query.user_id, [])
            if p.kind in query.kinds
        ]
        ranked = [p for overlap, p in sorted(scored, key=lambda s: -s[0]) if overlap]
        names = ["bm25", "dense"][: self.methods]
        return [
            p.model_copy(update={"ranks": {name: rank for name in names}})
            for rank, p in enumerate(ranked[: query.limit], start=1)
        ]


@pytest.fixture
def library() -> Library:
    return Library(
        {
            "alice": [
                chunk(1, ZORBLAX, "servers.md › Staging"),
                chunk(2, ROUTER, "home.md › Network"),
                chunk(3, "Our office plants need water on Mondays.", "office.md"),
            ],
            "bob": [chunk(9, "Bob's secret: the vault code is 1234.", "bob.md")],
        }
    )


@pytest.fixture
def with_research(make_assistant: MakeAssistant, library: Library) -> MakeAssistant:
    def make(*plugins: Any, **settings: Any) -> Awaitable[Assistant]:
        return make_assistant(("research", research), ("library", library), *plugins, **settings)

    return make


def system_prompt(backend: InstantBackend) -> str:
    return backend.requests[-1].messages[0].content


async def test_a_gap_found_in_a_document_reaches_the_model_as_a_numbered_source(
    with_research: MakeAssistant, instant_backend: InstantBackend, library: Library
) -> None:
    instant_backend.reply = lambda request: "Zorblax listens on port 8443 [1]."
    assistant = await with_research()
    reply = await assistant.chat("alice", "Which port does Zorblax listen on?")

    assert [gap.topic for gap in reply.gaps] == ["Zorblax"]
    prompt = system_prompt(instant_backend)
    assert f"[1] (servers.md › Staging) {ZORBLAX}" in prompt
    assert "cite the number of each one you use, like [1]" in prompt
    assert "plants" not in prompt  # a passage that doesn't mention the gap is no source
    assert [(s.number, s.kind, s.title, s.text, s.document_id) for s in reply.sources] == [
        (1, "document", "servers.md › Staging", ZORBLAX, 1)
    ]
    assert [(f.number, f.topic) for f in reply.findings] == [(1, "Zorblax")]
    assert reply.text == "Zorblax listens on port 8443 [1]."
    query = library.research_queries[0]
    assert query.user_id == "alice"
    assert query.kinds == frozenset({"memory", "document"})
    assert query.text.startswith("Zorblax ") and "port" in query.text
    assert "research" in reply.timings


async def test_a_question_without_a_gap_is_answered_from_the_users_documents(
    with_research: MakeAssistant, instant_backend: InstantBackend, library: Library
) -> None:
    assistant = await with_research()
    reply = await assistant.chat("alice", "how do I reset the router?")

    assert reply.gaps == []
    assert [(s.number, s.title) for s in reply.sources] == [(1, "home.md › Network")]
    assert f"[1] (home.md › Network) {ROUTER}" in system_prompt(instant_backend)
    assert library.research_queries[-1].kinds == frozenset({"document"})


async def test_a_statement_is_not_looked_up(
    with_research: MakeAssistant, instant_backend: InstantBackend, library: Library
) -> None:
    assistant = await with_research()
    reply = await assistant.chat("alice", "the router in the hall needs a reset soon")

    assert library.research_queries == [] and reply.sources == []
    assert "Sources" not in system_prompt(instant_backend)


async def test_an_unknown_subject_gets_a_clarifying_question_instead_of_generation(
    with_research: MakeAssistant, instant_backend: InstantBackend
) -> None:
    assistant = await with_research()
    events = [event async for event in assistant.stream("alice", "What is a flumpet?")]

    expected = "I don't know what a flumpet is. Could you tell me what it is?"
    assert "".join(event.delta for event in events if event.type == "token") == expected
    reply = events[-1].reply
    assert reply is not None and reply.text == expected
    assert instant_backend.requests == []  # nothing was generated
    assert "generate" not in reply.timings and "research" in reply.timings
    assert reply.finish_reason == "stop" and not reply.truncated
    assert reply.backend == "clarification"
    assert 0.5 < reply.confidence < 1
    assert reply.speech is not None and reply.speech.text == expected
    assert [gap.topic for gap in reply.gaps] == ["flumpet"]
    assert reply.sources == [] and reply.warnings == []
    history = await assistant.history("alice")
    assert [(turn.message, turn.reply) for turn in history] == [("What is a flumpet?", expected)]


async def test_chat_asks_who_someone_unknown_is(with_research: MakeAssistant) -> None:
    assistant = await with_research()
    reply = await assistant.chat("alice", "Who is Zorblax Quintero?")
    assert reply.text == "I don't know who Zorblax Quintero is. Could you tell me who they are?"


async def test_once_told_the_subject_is_known_and_the_model_answers(
    with_research: MakeAssistant, instant_backend: InstantBackend
) -> None:
    assistant = await with_research()
    await assistant.chat("alice", "What is a flumpet?", session_id="s")
    await assistant.chat("alice", "A flumpet is a brass horn with three valves.", session_id="s")
    reply = await assistant.chat("alice", "What is a flumpet?", session_id="s")

    assert reply.gaps == [] and reply.backend == "instant"
    assert len(instant_backend.requests) == 2


async def test_an_incidental_gap_still_gets_a_generated_reply(
    with_research: MakeAssistant, instant_backend: InstantBackend
) -> None:
    assistant = await with_research()
    reply = await assistant.chat("alice", "I met Quintero yesterday. What should I cook tonight?")

    assert [gap.topic for gap in reply.gaps] == ["Quintero"]
    assert reply.backend == "instant" and len(instant_backend.requests) == 1
    assert "generate" in reply.timings


async def test_general_knowledge_is_answered_unless_clarify_is_unresolved(
    with_research: MakeAssistant, instant_backend: InstantBackend
) -> None:
    assistant = await with_research()
    reply = await assistant.chat("alice", "What is photosynthesis?")
    assert reply.backend == "instant" and len(instant_backend.requests) == 1

    strict = await with_research(research={"clarify": "unresolved"})
    asked = await strict.chat("carol", "What is photosynthesis?")  # alice's history knows it
    assert asked.text == "I don't know what photosynthesis is. Could you tell me what it is?"

    never = await with_research(research={"clarify": "never"})
    generated = await never.chat("dave", "What is a flumpet?")
    assert generated.backend == "instant"


async def test_a_reasoning_hint_answers_the_question_instead(
    with_research: MakeAssistant, instant_backend: InstantBackend
) -> None:
    class Oracle:
        @hookimpl
        def mongars_reason(self, turn: Turn) -> list[ReasoningHint]:
            return [ReasoningHint(kind="unit", expression="1 flumpet", result="3 horns")]

    assistant = await with_research(("oracle", Oracle()))
    reply = await assistant.chat("alice", "What is a flumpet?")

    assert reply.backend == "instant" and len(instant_backend.requests) == 1
    assert "1 flumpet = 3 horns" in system_prompt(instant_backend)


async def test_other_users_passages_are_never_used(
    with_research: MakeAssistant, instant_backend: InstantBackend, library: Library
) -> None:
    assistant = await with_research()
    reply = await assistant.chat("alice", "What is the vault code of Bob?")

    assert reply.sources == []
    assert all(query.user_id == "alice" for query in library.queries)
    assert "1234" not in reply.text and all(
        "1234" not in r.messages[0].content for r in instant_backend.requests
    )

    own = await assistant.chat("bob", "What is the vault code of Bob?")
    assert [source.title for source in own.sources] == ["bob.md"]
    assert library.research_queries[-1].user_id == "bob"


async def test_a_failing_retrieval_is_a_warning_and_no_clarification(
    with_research: MakeAssistant, instant_backend: InstantBackend
) -> None:
    class Broken:
        @hookimpl
        def mongars_retrieve(self, services: Services, query: RetrievalQuery) -> list[Passage]:
            raise RuntimeError("index on fire")

    assistant = await with_research(("broken", Broken()))
    reply = await assistant.chat("alice", "What is a flumpet?")

    assert reply.backend == "instant"  # unsure what is known: the model answers
    assert any("index on fire" in warning for warning in reply.warnings)


# -- thresholds, sources and questions, without an assistant ----------------------------


def turn_for(message: str, services: Any) -> Turn:
    return Turn(turn_id="t", user_id="alice", session_id="s", message=message, services=services)


class FakeServices:
    """What research reads of the services: settings, the plugin host, a tracer."""

    def __init__(self, library: Library) -> None:
        self.settings = Settings()
        pm = build_plugin_manager(self.settings, load_entrypoints=False, plugins=[("lib", library)])
        self.plugins = PluginHost(pm, self.settings)
        self.tracer = trace.get_tracer("test")


async def test_half_the_topic_is_enough_only_when_both_methods_rank_the_passage() -> None:
    passages = {"alice": [chunk(1, "The Quantum engine hums.", "engines.md")]}
    gap = [KnowledgeGap(topic="Quantum Flux")]

    one = FakeServices(Library(passages, methods=1))
    assert await research.mongars_research(turn_for("Tell me about Quantum Flux", one), gap) == []

    both = FakeServices(Library(passages, methods=2))
    turn = turn_for("Tell me about Quantum Flux", both)
    found = await research.mongars_research(turn, gap)
    assert [(f.number, f.source) for f in found] == [(1, "engines.md")]
    assert turn.clarification is None


def test_a_short_memory_takes_in_its_neighbours_and_a_long_source_is_cut() -> None:
    memory = Passage(
        key="memory:7",
        kind="memory",
        text="middle part",
        memory_id=7,
        before=["one two", "three"],
        after=["four five"],
    )
    assert source_text(memory, 6) == "two three middle part four five"
    # A document chunk holds its section; the next chunk is another one.
    document = chunk(1, "middle part", "d.md", before=["other section"], after=["more"])
    assert source_text(document, 6) == "middle part"
    long = chunk(2, " ".join(f"w{i}" for i in range(30)), "d.md")
    assert source_text(long, 5) == "w0 w1 w2 w3 w4 …"


def cited(message: str, reply: str) -> str | None:
    turn = Turn(
        turn_id="t",
        user_id="alice",
        session_id="s",
        message=message,
        findings=[
            Finding(topic="q", text=ZORBLAX, source="servers.md", number=1),
            Finding(topic="q", text="The guest wifi is called Meadowlark.", source="w", number=2),
        ],
    )
    return cite_sources(turn, reply)


def test_a_reply_that_used_a_source_without_citing_it_gets_the_citation() -> None:
    assert cited("Which port?", "It listens on port 8443.") == "It listens on port 8443. [1]"
    assert cited("Guest wifi?", "It is Meadowlark.") == "It is Meadowlark. [2]"
    assert cited("Which port?", "Port 8443 [1].") is None  # cited already
    # A wrong number is put right; a citation of nothing used goes.
    assert cited("Which port?", "Port 8443 [2].") == "Port 8443. [1]"
    assert cited("Which port?", "I am not sure [1].") == "I am not sure."
    # Echoing the question, or inventing something, cites nothing.
    assert cited("What is Zorblax?", "Zorblax is an AI assistant.") is None
    assert cited("Which port?", "I am not sure.") is None


@pytest.mark.parametrize(
    ("message", "gap", "question"),
    [
        (
            "What is Zorblax?",
            "Zorblax",
            "I don't know what Zorblax is. Could you tell me what it is?",
        ),
        (
            "tell me about the Flumpet 3000",
            "Flumpet",
            "I don't know what the Flumpet is. Could you tell me what it is?",
        ),
        (
            "How do I use Zorblax with my phone?",
            "Zorblax",
            "I don't know what Zorblax is. Could you tell me what it is?",
        ),
        (
            "Qui est Zorblax Quintero ?",
            "Zorblax Quintero",
            "Je ne sais pas qui est Zorblax Quintero. Pouvez-vous me dire qui c'est ?",
        ),
        ("I saw Zorblax today, what should I wear?", "Zorblax", None),
        ("What is the capital of France?", "capital of France", None),
    ],
)
def test_clarifying_questions_only_for_the_unfamiliar_subject_of_a_question(
    message: str, gap: str, question: str | None
) -> None:
    assert clarifying_question(message, [KnowledgeGap(topic=gap)]) == question
    assert clarifying_question(message, [KnowledgeGap(topic=gap)], "never") is None


def test_unfamiliar_means_a_word_the_bundled_model_never_read_whole() -> None:
    assert unfamiliar("Zorblax") and unfamiliar("capital of Freedonia") and unfamiliar("flumpets")
    assert not unfamiliar("photosynthesis") and not unfamiliar("capital of France")
    assert not unfamiliar("Paris") and not unfamiliar("routers")


# -- the prompt ----------------------------------------------------------------------------


def test_numbered_findings_are_sources_and_the_others_research_notes() -> None:
    passage = chunk(
        4, "Port 8443.", "servers.md › Staging", created_at=datetime(2026, 11, 3, tzinfo=UTC)
    )
    turn = Turn(
        turn_id="t",
        user_id="alice",
        session_id="s",
        message="Which port?",
        findings=[
            Finding(
                topic="Zorblax",
                text="Port 8443.",
                source="servers.md › Staging",
                number=1,
                passage=passage,
            ),
            Finding(topic="Mira", text="a glossary entry", source="glossary"),
        ],
    )
    system = build_messages(Settings(), turn)[0].content
    assert (
        "Sources from the user's documents and conversations:\n"
        "[1] (servers.md › Staging) Port 8443.\n"
        "Answer from these sources and cite the number of each one you use, like [1]. "
        "If they do not say, say that you don't know."
    ) in system
    assert "Research notes:\n- Mira: a glossary entry" in system
    [source] = reply_sources(turn.findings)
    assert source.model_dump() == {
        "number": 1,
        "kind": "document",
        "title": "servers.md › Staging",
        "text": "Port 8443.",
        "document_id": 4,
        "memory_id": None,
        "created_at": datetime(2026, 11, 3, tzinfo=UTC),
    }


def test_without_findings_the_prompt_has_no_sources_block() -> None:
    turn = Turn(turn_id="t", user_id="alice", session_id="s", message="hi")
    system = build_messages(Settings(), turn)[0].content
    assert "Sources" not in system and "Research notes" not in system


def test_the_research_settings_have_sensible_defaults() -> None:
    settings = ResearchSettings()
    assert settings.clarify == "unfamiliar" and settings.questions and settings.sources == 3
