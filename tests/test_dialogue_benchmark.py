"""The evidence-recall benchmark's generator and scorer (benchmarks/dialogue_data.py,
benchmarks/evidence_recall.py): deterministic, annotated with real turns, splits
kept apart, hits counted right."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import dialogue_data
from dialogue_data import KINDS, Question, bank_templates, bank_values, content_words, generate
from evidence_recall import OldRecall, memory_items, score

NOW = datetime(2026, 12, 1, 15, 30, tzinfo=UTC)


@pytest.fixture(scope="module", params=["dev", "heldout"])
def data(request: pytest.FixtureRequest) -> dialogue_data.Dataset:
    return generate(request.param, seed=7, users=3, sessions=40, now=NOW)


def test_the_same_seed_makes_the_same_dialogue_and_another_seed_another() -> None:
    first = generate("dev", seed=7, users=2, sessions=30, now=NOW)
    assert generate("dev", seed=7, users=2, sessions=30, now=NOW) == first
    assert generate("dev", seed=8, users=2, sessions=30, now=NOW) != first
    later = generate("dev", seed=7, users=2, sessions=30, now=NOW + timedelta(days=3))
    assert [t.text for u in later.users for t in u.turns()] == [
        t.text for u in first.users for t in u.turns()
    ], "the clock moves the dates, not the words"


def test_every_evidence_turn_is_a_user_turn_of_that_user_and_says_the_answer(
    data: dialogue_data.Dataset,
) -> None:
    for user in data.users:
        turns = {turn.id: turn for turn in user.turns()}
        for question in user.questions:
            assert question.evidence, question
            for turn_id in question.evidence:
                assert turns[turn_id].role == "user"
            if question.kind in ("single_hop", "paraphrase", "knowledge_update"):
                assert question.answer in turns[question.evidence[0]].text, question
            if question.kind == "multi_hop":
                sessions = {turns[t].session_id for t in question.evidence}
                assert len(sessions) == 2, f"{question.text}: evidence of one session"


def test_every_kind_is_asked_and_paraphrases_share_at_most_one_word(
    data: dialogue_data.Dataset,
) -> None:
    texts = {turn.id: turn.text for user in data.users for turn in user.turns()}
    kinds = {question.kind for _, question in data.questions}
    assert kinds == set(KINDS)
    for _, question in data.questions:
        if question.kind == "paraphrase":
            shared = content_words(question.text) & content_words(texts[question.evidence[0]])
            assert len(shared) <= 1, (question.text, shared)


def test_a_relative_time_question_has_its_event_alone_in_its_window(
    data: dialogue_data.Dataset,
) -> None:
    bank = dialogue_data.BANKS[data.split]
    today = NOW.replace(hour=0, minute=0, second=0, microsecond=0)

    def days_back(turn: dialogue_data.DialogueTurn) -> int:
        return (today - turn.created_at.replace(hour=0, minute=0, second=0)).days

    asked = 0
    for user in data.users:
        events = [t for t in user.turns("user") if t.template.startswith(f"{data.split}:event:")]
        assert len(events) == 8
        turns = {turn.id: turn for turn in user.turns()}
        for question in user.questions:
            phrase = next((p for p in bank.time_phrases if p.phrase in question.text), None)
            if question.kind != "temporal" or phrase is None:
                continue
            asked += 1
            (evidence,) = question.evidence
            assert phrase.target[0] <= days_back(turns[evidence]) <= phrase.target[1]
            low, high = phrase.window
            inside = [e.id for e in events if low <= days_back(e) <= high]
            assert inside == [evidence], question.text
    assert asked == 3 * len(data.users)


def test_the_splits_share_no_template_and_no_value() -> None:
    assert not bank_templates("dev") & bank_templates("heldout")
    assert not bank_values("dev") & bank_values("heldout")
    dev = generate("dev", seed=7, users=2, now=NOW)
    heldout = generate("heldout", seed=7, users=2, now=NOW)
    used = {t.template.split(":", 1)[1] for u in dev.users for t in u.turns()}
    assert used, "templates are named"
    assert not {q.text for _, q in dev.questions} & {q.text for _, q in heldout.questions}


def test_an_unknown_split_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown split 'test'"):
        generate("test")


def test_memory_items_are_the_user_turns_with_their_time_and_session(
    data: dialogue_data.Dataset,
) -> None:
    user = data.users[0]
    items = memory_items(user)
    assert [turn for turn, _ in items] == [t.id for t in user.turns("user")]
    first = user.turns("user")[0]
    assert items[0][1] == {
        "text": first.text,
        "created_at": first.created_at,
        "session_id": first.session_id,
    }
    pairs = memory_items(user, "pairs")
    assert pairs[0][1]["text"].startswith(f"user: {first.text}\nassistant: ")


def question(qid: str, kind: str, *evidence: str) -> Question:
    return Question(qid, kind, "?", evidence, "", "t")  # type: ignore[arg-type]


def test_the_scorer_counts_a_hit_only_for_evidence_within_k() -> None:
    questions = [
        question("a", "single_hop", "t1"),
        question("b", "single_hop", "t2"),
        question("c", "multi_hop", "t3", "t4"),
        question("d", "multi_hop", "t5", "t6"),
    ]
    ranked = {
        "a": ["x", "t1"],  # hit at rank 2
        "b": ["x"] * 10 + ["t2"],  # rank 11: a miss at k=10
        "c": ["t4", "y", "t3"],  # both
        "d": ["t6"],  # one of two
    }
    result = score(questions, ranked, k=10)
    assert result["single_hop"] == {
        "questions": 2,
        "recall_any": 0.5,
        "recall_all": 0.5,
        "turn_recall": 0.5,
    }
    assert result["multi_hop"]["recall_any"] == 1.0
    assert result["multi_hop"]["recall_all"] == 0.5
    assert result["multi_hop"]["turn_recall"] == 0.75
    assert result["overall"]["recall_any"] == 0.75
    assert "temporal" not in result
    assert score(questions, ranked, k=1)["single_hop"]["recall_any"] == 0.0


def test_the_old_recall_blends_cosine_and_word_overlap() -> None:
    import numpy as np

    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=np.float32)
    recall = OldRecall(["my dog rex", "my cat miso", "the weather"], vectors)
    # Row 1 is the query's vector (0.8), row 2 close to it (0.8 x 0.8), row 0 has
    # all of its words but none of its meaning (0.2 x 1).
    assert recall.search("dog rex", np.array([0.0, 1.0], dtype=np.float32), 3) == [1, 2, 0]
    # With a weak vector, the words decide: 0.28 against 0.112 and 0.08.
    assert recall.search("dog rex", np.array([0.1, 0.1], dtype=np.float32), 3) == [0, 2, 1]
    assert recall.search("weather", np.array([-1.0, 0.0], dtype=np.float32), 3) == [2]


@pytest.mark.embedder
async def test_the_benchmark_imports_asks_and_maps_every_passage_to_a_turn(
    make_assistant: Any, settings: Any
) -> None:
    """The whole run on one small user: memories go in through ``import_memories``,
    every passage ``retrieve`` returns is one of the user's turns, both methods score."""
    from evidence_recall import evaluate

    from tests.test_memory_quality import MiniLMPlugin

    memory = settings.memory.model_copy(update={"embedder": "minilm", "ttl_days": None})
    assistant = await make_assistant(("minilm", MiniLMPlugin()), memory=memory)
    data = generate("dev", seed=3, users=1, sessions=12)
    embedder = assistant.services.embedder
    assert embedder is not None
    result = await evaluate(assistant, embedder, data)
    assert result["loaded_via"] == ["Assistant.import_memories"]
    assert result["questions"] == len(data.users[0].questions)
    for method in ("system", "baseline"):
        assert result[method]["overall"]["questions"] == result["questions"]
        # Twelve sessions: a fact asked with its own words is found by either method.
        assert result[method]["single_hop"]["recall_any"] >= 0.8, result[method]
