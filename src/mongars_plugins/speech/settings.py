"""The speech plugin's settings section, ``MONGARS_SPEECH__*``."""

from __future__ import annotations

from pydantic import BaseModel, Field

from mongars_core.settings import Section

DEFAULT_WORDS_PER_SECOND = 2.6


class SpeechSettings(BaseModel):
    """Speech planning."""

    words_per_second: float = Field(
        DEFAULT_WORDS_PER_SECOND, gt=0, description="Speaking rate of the planned speech."
    )


SPEECH = Section("speech", SpeechSettings)
