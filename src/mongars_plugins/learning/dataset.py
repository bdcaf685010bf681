"""Curation: a consenting user's turns become a scrubbed, filtered, hashed dataset.

Two kinds of example come out of a user's history:

* ``style``: the user's own message, the way they write (the response the
  model learns to give, with no prompt);
* ``reply``: an assistant reply the user rated up, with the message it
  answered as its prompt.

Every text goes through the scrubbers (``PluginHost.scrub``) before anything
else looks at it, so what is filtered, hashed, shown or trained on is the
scrubbed text only. Then the quality filters drop very short and very long
texts, duplicates (same words, ignoring case and spacing) and replies the user
rated down. The newest share of the examples (``heldout_fraction``) is held
out: the gate measures the adapter on turns it never saw.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from mongars_core.types import HistoryTurn
from mongars_plugins.learning.settings import LearningSettings

Kind = Literal["style", "reply"]
PLACEHOLDER = re.compile(r"<[A-Z]+>")


@dataclass(frozen=True)
class Example:
    kind: Kind
    prompt: str
    response: str
    turn_id: str
    created_at: datetime

    def as_dict(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "prompt": self.prompt,
            "response": self.response,
            "turn_id": self.turn_id,
            "created_at": self.created_at.isoformat(),
        }


@dataclass
class Dataset:
    """What a run trains on (``train``) and measures the adapter on (``heldout``)."""

    user_id: str
    train: list[Example]
    heldout: list[Example]
    skipped: Counter[str] = field(default_factory=Counter)
    """Why examples were left out: ``too_short``, ``too_long``, ``duplicate``,
    ``rated_down``, ``only_placeholders``, ``over_max_examples``."""
    last_turn: int | None = None
    """The row id of the last turn read: turns stored after it (``HistoryTurn.id``
    greater, imported ones included) are new to the next run."""

    @property
    def size(self) -> int:
        return len(self.train) + len(self.heldout)

    @property
    def sha256(self) -> str:
        """A hash of exactly what is trained on and held out (kind, prompt, response)."""
        digest = hashlib.sha256()
        for part, examples in (("train", self.train), ("heldout", self.heldout)):
            for example in examples:
                record = [part, example.kind, example.prompt, example.response]
                digest.update(json.dumps(record, ensure_ascii=False).encode() + b"\n")
        return digest.hexdigest()

    def as_dict(self) -> dict[str, object]:
        return {
            "user_id": self.user_id,
            "sha256": self.sha256,
            "examples": self.size,
            "train": [e.as_dict() for e in self.train],
            "heldout": [e.as_dict() for e in self.heldout],
            "skipped": dict(sorted(self.skipped.items())),
            "last_turn": self.last_turn,
        }


def _normalised(text: str) -> str:
    return " ".join(text.casefold().split())


def curate(
    turns: Iterable[HistoryTurn], scrub: Callable[[str], str], settings: LearningSettings
) -> tuple[list[Example], Counter[str]]:
    """The examples of ``turns`` (oldest first) that pass the filters, and why others did not."""
    examples: list[Example] = []
    skipped: Counter[str] = Counter()
    seen: set[str] = set()

    def keep(kind: Kind, prompt: str, response: str, turn: HistoryTurn) -> None:
        text = response.strip()
        if len(text) < settings.min_chars:
            skipped["too_short"] += 1
        elif len(text) > settings.max_chars or len(prompt) > settings.max_chars:
            skipped["too_long"] += 1
        elif not PLACEHOLDER.sub("", text).strip(" \t\n.,;:!?-"):
            skipped["only_placeholders"] += 1
        elif (key := f"{kind}\0{_normalised(prompt)}\0{_normalised(text)}") in seen:
            skipped["duplicate"] += 1
        else:
            seen.add(key)
            examples.append(
                Example(kind, prompt.strip(), text, turn.turn_id or "", turn.created_at)
            )

    for turn in turns:
        message = scrub(turn.message)
        keep("style", "", message, turn)
        if turn.rating == 1:
            keep("reply", message.strip(), scrub(turn.reply), turn)
        elif turn.rating == -1:
            skipped["rated_down"] += 1
    return examples, skipped


def build_dataset(
    user_id: str,
    turns: list[HistoryTurn],
    scrub: Callable[[str], str],
    settings: LearningSettings,
) -> Dataset:
    """The dataset of ``turns`` (oldest first): the newest ``max_examples`` curated
    examples, the newest ``heldout_fraction`` of them held out."""
    examples, skipped = curate(turns, scrub, settings)
    if len(examples) > settings.max_examples:
        skipped["over_max_examples"] += len(examples) - settings.max_examples
        examples = examples[-settings.max_examples :]
    held = max(1, round(len(examples) * settings.heldout_fraction)) if len(examples) > 1 else 0
    cut = len(examples) - held
    return Dataset(
        user_id=user_id,
        train=examples[:cut],
        heldout=examples[cut:],
        skipped=skipped,
        last_turn=max((turn.id for turn in turns), default=None),
    )
