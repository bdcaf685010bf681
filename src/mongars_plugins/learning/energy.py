"""How much energy a training run took, and the carbon that stands for.

:class:`EnergyMeter` reads, in this order:

* **RAPL** (``/sys/class/powercap/intel-rapl:N/energy_uj``, the top-level packages
  only: their sub-zones are parts of them), with the counter's wrap-around at
  ``max_energy_range_uj``. It measures the whole CPU package, every process on it,
  so it is exact for the machine and an upper bound for the run. Since 2020 most
  kernels let only root read it; unreadable, the meter falls back to the estimate.
* **NVML** (``pynvml``, when installed), the GPUs' total energy counter, added on
  top when the run used a GPU (``stop(used_gpu=True)``): an idle GPU's draw is
  not charged to a CPU run.
* Otherwise an **estimate**: the CPU seconds of the measured process(es) times
  ``cpu_watts`` per busy core. The default, 15 W, is the high end of a current
  x86 desktop or laptop core under load (package power over core count: 45–125 W
  over 6–16 cores is 5–15 W), so the estimate errs on the high side.

The CPU seconds default to those of this process's children that ended between
:meth:`~EnergyMeter.start` and :meth:`~EnergyMeter.stop` (``RUSAGE_CHILDREN``:
the worker, once waited for); a caller with another way to count them passes
``cpu_seconds`` to ``stop``.

:func:`grid_intensity` turns the configured carbon intensity (g CO2e per kWh,
one number or one per hour of the day) into the figure for a moment, and
:func:`co2e_grams` the energy into grams.
"""

from __future__ import annotations

import importlib
import logging
import math
import re
import resource
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from mongars_core.errors import InvalidInputError

logger = logging.getLogger(__name__)

POWERCAP = Path("/sys/class/powercap")
DEFAULT_CPU_WATTS = 15.0
_PACKAGE = re.compile(r"intel-rapl:\d+")
_UJ_PER_WH = 3.6e9
_MJ_PER_WH = 3.6e6

Source = Literal["rapl", "nvml", "estimate"]


@dataclass(frozen=True)
class EnergyReading:
    """Energy of a run in watt-hours; ``source`` is the main reading (``nvml`` when a
    GPU was measured), ``estimated`` true when any part is the CPU-seconds estimate."""

    wh: float
    source: Source
    estimated: bool
    cpu_seconds: float
    detail: str
    parts: dict[str, float] = field(default_factory=dict)  # "rapl"/"estimate"/"nvml" -> Wh


def children_cpu_seconds() -> float:
    """User and system CPU seconds of this process's children that were waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class _Package:
    counter: Path
    wrap: int  # max_energy_range_uj + 1: the counter goes back to 0 there


def rapl_packages(root: Path = POWERCAP) -> list[_Package]:
    """The readable top-level RAPL packages under ``root`` (none: no RAPL or no access)."""
    packages = []
    try:
        zones = sorted(p for p in root.iterdir() if _PACKAGE.fullmatch(p.name))
    except OSError:
        return []
    for zone in zones:
        try:
            int((zone / "energy_uj").read_text())
            wrap = int((zone / "max_energy_range_uj").read_text()) + 1
        except (OSError, ValueError) as exc:
            logger.info("RAPL zone %s is not readable (%s); energy will be estimated", zone, exc)
            return []
        packages.append(_Package(zone / "energy_uj", wrap))
    return packages


def _read_packages(packages: Sequence[_Package]) -> list[int] | None:
    try:
        return [int(p.counter.read_text()) for p in packages]
    except (OSError, ValueError) as exc:
        logger.warning("RAPL became unreadable (%s); energy will be estimated", exc)
        return None


def _nvml() -> Any | None:
    try:  # optional, and untyped: imported by name
        pynvml = importlib.import_module("pynvml")
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        logger.info("NVML is installed but cannot start (%s); GPU energy not measured", exc)
        return None
    return pynvml


def _gpu_millijoules(nvml: Any) -> list[int] | None:
    try:
        count = nvml.nvmlDeviceGetCount()
        return [
            int(nvml.nvmlDeviceGetTotalEnergyConsumption(nvml.nvmlDeviceGetHandleByIndex(i)))
            for i in range(count)
        ]
    except nvml.NVMLError as exc:
        logger.info("NVML cannot read the GPUs' energy (%s)", exc)
        return None


class EnergyMeter:
    """Energy between :meth:`start` and :meth:`stop`."""

    def __init__(
        self,
        *,
        cpu_watts: float = DEFAULT_CPU_WATTS,
        powercap: Path = POWERCAP,
        nvml: bool = True,
        cpu_clock: Callable[[], float] = children_cpu_seconds,
    ) -> None:
        if not math.isfinite(cpu_watts) or cpu_watts < 0:
            raise InvalidInputError(f"cpu_watts must be a number of watts, not {cpu_watts}")
        self.cpu_watts = cpu_watts
        self.powercap = powercap
        self.use_nvml = nvml
        self.cpu_clock = cpu_clock
        self._packages: list[_Package] = []
        self._rapl_start: list[int] | None = None
        self._nvml: Any | None = None
        self._gpu_start: list[int] | None = None
        self._cpu_start = 0.0
        self._started = False

    def start(self) -> None:
        self._packages = rapl_packages(self.powercap)
        self._rapl_start = _read_packages(self._packages) if self._packages else None
        self._nvml = _nvml() if self.use_nvml else None
        self._gpu_start = _gpu_millijoules(self._nvml) if self._nvml is not None else None
        self._cpu_start = self.cpu_clock()
        self._started = True

    def stop(self, *, cpu_seconds: float | None = None, used_gpu: bool = False) -> EnergyReading:
        """The reading since :meth:`start`; ``cpu_seconds``: the run's own count, else the
        clock's difference; ``used_gpu``: add the GPUs' energy (when NVML reads it)."""
        if not self._started:
            raise RuntimeError("EnergyMeter.stop() before start()")
        self._started = False
        cpu = self.cpu_clock() - self._cpu_start if cpu_seconds is None else cpu_seconds
        cpu = max(0.0, cpu)
        parts: dict[str, float] = {}
        notes = []
        end = _read_packages(self._packages) if self._rapl_start is not None else None
        if self._rapl_start is not None and end is not None:
            microjoules = sum(
                (after - before) % package.wrap
                for package, before, after in zip(
                    self._packages, self._rapl_start, end, strict=True
                )
            )
            parts["rapl"] = microjoules / _UJ_PER_WH
            notes.append(f"RAPL, {len(self._packages)} CPU package(s), every process on them")
        else:
            parts["estimate"] = cpu * self.cpu_watts / 3600
            notes.append(f"estimated: {cpu:.1f} CPU s × {self.cpu_watts:g} W per busy core")
        if used_gpu and self._nvml is not None and self._gpu_start is not None:
            gpu_end = _gpu_millijoules(self._nvml)
            if gpu_end is not None and len(gpu_end) == len(self._gpu_start):
                millijoules = sum(b - a for a, b in zip(self._gpu_start, gpu_end, strict=True))
                parts["nvml"] = max(0, millijoules) / _MJ_PER_WH
                notes.append(f"NVML, {len(gpu_end)} GPU(s)")
        if used_gpu and "nvml" not in parts:
            notes.append("GPU energy not measured (pynvml not installed or unreadable)")
        source: Source = "nvml" if "nvml" in parts else ("rapl" if "rapl" in parts else "estimate")
        return EnergyReading(
            wh=sum(parts.values()),
            source=source,
            estimated="estimate" in parts,
            cpu_seconds=cpu,
            detail="; ".join(notes),
            parts=parts,
        )


def _intensity(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"{what} must be a number of g CO2e per kWh, not {value!r}")
    if not math.isfinite(value) or value < 0:
        raise InvalidInputError(f"{what} must be a non-negative number, not {value!r}")
    return float(value)


def grid_intensity(setting: float | Sequence[float], when: datetime) -> float:
    """The grid's carbon intensity (g CO2e/kWh) at ``when``: ``setting`` itself, or its
    entry for the local hour of ``when`` (24 entries, hour 0 first; a naive ``when``
    is taken as local time)."""
    if isinstance(setting, str) or not isinstance(setting, Sequence):
        return _intensity(setting, "the carbon intensity")
    if len(setting) != 24:
        raise InvalidInputError(
            f"an hourly carbon intensity needs 24 values (hour 0 to 23), not {len(setting)}"
        )
    values = [_intensity(v, f"the carbon intensity of hour {h}") for h, v in enumerate(setting)]
    local = when.astimezone() if when.tzinfo is not None else when
    return values[local.hour]


def co2e_grams(wh: float, intensity: float) -> float:
    """Grams of CO2e for ``wh`` watt-hours at ``intensity`` g/kWh."""
    return wh / 1000 * intensity
