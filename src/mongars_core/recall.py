"""Merging every plugin's recall into the memories a turn's prompt shows.

Each ``mongars_recall`` implementation returns its own matches;
:func:`select_memories` keeps those above their source's threshold, drops what
the session history already holds, de-duplicates, ranks and cuts to the
configured limits.
"""

from __future__ import annotations

from mongars_core.settings import MemorySettings
from mongars_core.types import Memory, Turn


def select_memories(memories: list[Memory], turn: Turn, settings: MemorySettings) -> list[Memory]:
    """Merge every plugin's recall: threshold, de-duplicate, rank, and cut to the limits.

    Memories already present as turns of this session's history are dropped:
    the model sees those verbatim.
    """
    in_history = {past.message.strip().lower() for past in turn.history}
    best: dict[str, Memory] = {}
    for memory in memories:
        if memory.score < settings.min_score_for(memory.source):
            continue
        key = memory.text.strip().lower()
        # A memory may be one sentence of a message: it is in history if that message is.
        if any(key in past for past in in_history):
            continue
        if key not in best or memory.score > best[key].score:
            best[key] = memory
    ranked = sorted(best.values(), key=lambda memory: memory.score, reverse=True)
    chosen: list[Memory] = []
    words = 0
    for memory in ranked[: settings.recall_limit]:
        size = len(memory.text.split())
        if chosen and words + size > settings.recall_token_budget:
            break
        if size > settings.recall_token_budget:
            continue
        chosen.append(memory)
        words += size
    return chosen
