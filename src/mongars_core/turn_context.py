"""What one turn records as it runs: stage timings, hook failures, the trace context.

The pipeline makes one :class:`TurnContext` per turn and hands it to each
:class:`~mongars_core.plugins.PluginHost` call, instead of threading lists and
dicts through every stage. ``Reply.timings`` and ``Reply.warnings`` are read
off it at the end.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from opentelemetry import context as otel_context
from opentelemetry import trace


@dataclass(frozen=True)
class HookFailure:
    """A runtime hook implementation that raised or timed out."""

    hook: str
    plugin: str
    error: BaseException

    def describe(self) -> str:
        return f"{self.hook} in plugin {self.plugin!r} failed: {self.error!r}"


@dataclass
class TurnContext:
    """Timings, hook failures and the trace context of one turn (or one library call)."""

    tracer: trace.Tracer
    trace_context: otel_context.Context | None = None
    timings: dict[str, float] = field(default_factory=dict)
    failures: list[HookFailure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Other warnings of the turn (one line each), shown after the hook failures."""

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time stage ``name`` into :attr:`timings` and trace it as span ``mongars.<name>``,
        a child of the turn's span (else of the current one)."""
        started = time.perf_counter()
        try:
            if self.tracing:
                with self.tracer.start_as_current_span(
                    f"mongars.{name}", context=self.trace_context
                ):
                    yield
            else:
                yield
        finally:
            self.timings[name] = ms_since(started)

    @property
    def tracing(self) -> bool:
        """Whether the turn's span records: without a tracer set up (or for a turn the
        sampler dropped) its stages open no spans, which would record nothing."""
        return trace.get_current_span(self.trace_context).is_recording()

    def warnings(self) -> list[str]:
        """One line per hook failure, then the notes, for ``Reply.warnings``."""
        return [failure.describe() for failure in self.failures] + self.notes


def ms_since(started: float) -> float:
    """Milliseconds since ``started`` (a ``time.perf_counter()`` reading), rounded to µs."""
    return round((time.perf_counter() - started) * 1000, 3)
