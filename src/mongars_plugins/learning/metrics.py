"""The learning plugin's OpenTelemetry instruments, ``mongars_learning_*``, on the
host's meter (``Services.meter``: the server's, which ``/metrics`` reads)."""

from __future__ import annotations

from opentelemetry import metrics


class LearningMetrics:
    def __init__(self, meter: metrics.Meter) -> None:
        self._runs = meter.create_counter(
            "mongars_learning_runs", unit="{run}", description="Learning runs ended, by status."
        )
        self._energy = meter.create_counter(
            "mongars_learning_energy", unit="Wh", description="Energy of learning runs."
        )
        self._carbon = meter.create_counter(
            "mongars_learning_co2e", unit="g", description="gCO2e of learning runs."
        )
        self._duration = meter.create_histogram(
            "mongars_learning_run_duration", unit="s", description="Duration of learning runs."
        )
        self._validations = meter.create_counter(
            "mongars_learning_validations",
            unit="{validation}",
            description="Validations of active adapters, by outcome.",
        )

    def run_finished(self, status: str) -> None:
        self._runs.add(1, {"status": status})

    def run_energy(self, wh: float, co2e_g: float, seconds: float) -> None:
        self._energy.add(wh)
        self._carbon.add(co2e_g)
        self._duration.record(seconds)

    def validated(self, passed: bool) -> None:
        self._validations.add(1, {"outcome": "passed" if passed else "regressed"})
