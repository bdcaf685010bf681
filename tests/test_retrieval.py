"""The shared retrieval: reciprocal rank fusion, time in a query, the hook's facade."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from mongars_core import hookimpl
from mongars_core.errors import HookValidationError
from mongars_core.retrieval import fuse, time_intent
from mongars_core.services import Services
from mongars_core.settings import Settings
from mongars_core.types import Passage, RetrievalQuery
from mongars_testkit.assistants import AssistantFactory
from mongars_testkit.backends import InstantBackend

NOW = datetime(2026, 12, 1, 15, 30, tzinfo=UTC)
TODAY = datetime(2026, 12, 1, tzinfo=UTC)


def passage(key: str, **ranks: int) -> Passage:
    return Passage(key=key, kind="memory", text=key, ranks=ranks)


def test_a_passage_both_lists_rank_well_beats_one_list_s_first() -> None:
    lexical = [passage("a", bm25=1), passage("b", bm25=2), passage("c", bm25=3)]
    dense = [passage("b", dense=1), passage("d", dense=2), passage("a", dense=9)]
    fused = fuse([lexical, dense], limit=10)
    assert [p.key for p in fused] == ["b", "a", "d", "c"]
    assert fused[0].ranks == {"bm25": 2, "dense": 1}
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61, abs=1e-6)


def test_fusion_cuts_to_the_limit_and_breaks_ties_by_best_rank() -> None:
    fused = fuse([[passage("x"), passage("y")], [passage("z")]], limit=2)
    # x and z both rank first once: equal scores, best rank equal, then the key.
    assert [p.key for p in fused] == ["x", "z"]
    assert fuse([], limit=5) == []


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("what did I eat yesterday?", TODAY - timedelta(days=1), TODAY),
        ("who did I meet today", TODAY, TODAY + timedelta(days=1)),
        ("what did I do last week", TODAY - timedelta(days=7), TODAY),
        ("anything this month?", TODAY.replace(day=1), TODAY + timedelta(days=1)),
        # That day, with a day either side (two per week of distance, past a week).
        ("three days ago I went where?", TODAY - timedelta(days=4), TODAY - timedelta(days=1)),
        ("2 weeks ago", TODAY - timedelta(days=16), TODAY - timedelta(days=11)),
        ("a fortnight ago", TODAY - timedelta(days=16), TODAY - timedelta(days=11)),
        ("two weeks back I said", TODAY - timedelta(days=16), TODAY - timedelta(days=11)),
        ("the day before yesterday", TODAY - timedelta(days=2), TODAY - timedelta(days=1)),
        ("what did I cook last night", TODAY - timedelta(days=1), TODAY + timedelta(hours=6)),
        # NOW is a Tuesday: last Monday is yesterday, a day either side.
        ("who called last Monday", TODAY - timedelta(days=2), TODAY + timedelta(days=1)),
        ("on Friday we", TODAY - timedelta(days=5), TODAY - timedelta(days=2)),
        ("over the weekend", TODAY - timedelta(days=3), TODAY),
        ("in March", datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)),
        (
            "back in december 2025",
            datetime(2025, 12, 1, tzinfo=UTC),
            TODAY.replace(year=2026, month=1),
        ),
        ("since May", datetime(2026, 5, 1, tzinfo=UTC), NOW + timedelta(seconds=1)),
        ("in 2025", datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)),
        ("earlier this year", TODAY.replace(month=1), TODAY + timedelta(days=1)),
        ("in the past three weeks", TODAY - timedelta(days=21), NOW + timedelta(seconds=1)),
    ],
)
def test_time_windows_are_read_from_the_query(text: str, start: datetime, end: datetime) -> None:
    intent = time_intent(text, NOW)
    assert (intent.start, intent.end) == (start, end)
    assert intent.contains(start) and not intent.contains(end)


def test_a_when_question_without_a_window_asks_for_dated_items() -> None:
    intent = time_intent("When did I adopt my cat?", NOW)
    assert intent.asks_when and not intent.window
    plain = time_intent("what is my cat called", NOW)
    assert not plain.asks_when and not plain.window and not plain.contains(NOW)


def test_may_as_a_verb_names_no_month() -> None:
    assert not time_intent("it may rain, what should I wear", NOW).window


@pytest.fixture
async def bare(mongars_settings: Settings) -> AsyncIterator[AssistantFactory]:
    """Assistants with exactly the plugins a test names (none of the bundled ones)."""
    factory = AssistantFactory(mongars_settings, InstantBackend())
    try:
        yield factory
    finally:
        await factory.aclose()


class Memories:
    @hookimpl
    def mongars_retrieve(self, services: Services, query: RetrievalQuery) -> list[Passage]:
        if "memory" not in query.kinds:
            return []
        return [passage(f"memory:{query.user_id}:{i}") for i in range(3)]


class Documents:
    @hookimpl
    async def mongars_retrieve(self, services: Services, query: RetrievalQuery) -> list[Passage]:
        return [passage("chunk:1"), passage(f"memory:{query.user_id}:2")]


class Broken:
    @hookimpl
    def mongars_retrieve(self, services: Services, query: RetrievalQuery) -> list[Passage]:
        raise RuntimeError("index gone")


class Exporter:
    @hookimpl
    def mongars_export_user(self, services: Services, user_id: str) -> list[dict[str, str]]:
        return [{"type": "note", "user": user_id}]


class BadExporter:
    @hookimpl
    def mongars_export_user(self, services: Services, user_id: str) -> list[str]:
        return ["not a record"]


async def test_retrieve_fuses_every_plugin(bare: AssistantFactory) -> None:
    assistant = await bare(Memories(), Documents())
    found = await assistant.retrieve("alice", "my notes", limit=3)
    # memory 2 is in both lists; the two firsts tie and go by key.
    assert [p.key for p in found] == ["memory:alice:2", "chunk:1", "memory:alice:0"]
    only = await assistant.retrieve("alice", "x", kinds=frozenset({"document"}))
    assert [p.key for p in only] == ["chunk:1", "memory:alice:2"]


async def test_a_failing_retrieval_plugin_is_raised_outside_a_turn(
    bare: AssistantFactory,
) -> None:
    assistant = await bare(Memories(), Broken())
    with pytest.raises(RuntimeError, match="index gone"):
        await assistant.retrieve("alice", "my notes")


async def test_export_records_come_from_plugins(bare: AssistantFactory) -> None:
    services = (await bare(Exporter())).services
    assert await services.plugins.export_user(services, "bob") == [{"type": "note", "user": "bob"}]
    services = (await bare(BadExporter())).services
    with pytest.raises(HookValidationError, match="records with a 'type'"):
        await services.plugins.export_user(services, "bob")


@pytest.mark.parametrize("text", ["3000 years ago", "99999999 days ago", "the past 99999999 years"])
def test_a_time_past_the_calendar_is_no_window(text: str) -> None:
    intent = time_intent(text, NOW)
    assert not intent.window
