"""The energy meter on a fake powercap tree (packages, sub-zones, wrap-around, no access),
its CPU-seconds estimate, and the carbon intensity per hour."""

from __future__ import annotations

import subprocess
import sys
import types
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from mongars_core.errors import InvalidInputError
from mongars_plugins.learning.energy import (
    EnergyMeter,
    children_cpu_seconds,
    co2e_grams,
    grid_intensity,
    rapl_packages,
)

UJ_PER_WH = 3.6e9


def zone(root: Path, name: str, energy: int, max_range: int = 262_143_328_850) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "energy_uj").write_text(f"{energy}\n")
    (folder / "max_energy_range_uj").write_text(f"{max_range}\n")
    (folder / "name").write_text("package-0\n")
    return folder


def set_energy(folder: Path, energy: int) -> None:
    (folder / "energy_uj").write_text(f"{energy}\n")


class Clock:
    """CPU seconds that the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rapl_sums_the_packages_and_skips_their_sub_zones(tmp_path: Path) -> None:
    zero = zone(tmp_path, "intel-rapl:0", 1_000_000)
    one = zone(tmp_path, "intel-rapl:1", 5_000_000)
    core = zone(tmp_path, "intel-rapl:0:0", 0)  # part of package 0: not counted again
    meter = EnergyMeter(powercap=tmp_path, cpu_clock=Clock())
    meter.start()
    set_energy(zero, 1_000_000 + 3_600_000_000)  # 1 Wh
    set_energy(one, 5_000_000 + 1_800_000_000)  # 0.5 Wh
    set_energy(core, 99 * 3_600_000_000)
    reading = meter.stop()
    assert reading.source == "rapl" and not reading.estimated
    assert reading.wh == pytest.approx(1.5)
    assert "2 CPU package" in reading.detail


def test_a_counter_that_wraps_around_is_counted_across_the_wrap(tmp_path: Path) -> None:
    package = zone(tmp_path, "intel-rapl:0", 9_000, max_range=9_999)
    meter = EnergyMeter(powercap=tmp_path, cpu_clock=Clock())
    meter.start()
    set_energy(package, 500)  # 9000 -> 9999, then 0 -> 500: 1500 µJ
    assert meter.stop().wh == pytest.approx(1_500 / UJ_PER_WH)


def test_unreadable_rapl_falls_back_to_the_cpu_seconds_estimate(tmp_path: Path) -> None:
    package = zone(tmp_path, "intel-rapl:0", 1_000)
    (package / "energy_uj").unlink()
    (package / "energy_uj").mkdir()  # reading it fails as a permission error would
    assert rapl_packages(tmp_path) == []
    clock = Clock()
    meter = EnergyMeter(powercap=tmp_path, cpu_watts=10, cpu_clock=clock)
    meter.start()
    clock.now += 720  # 720 CPU seconds at 10 W: 2 Wh
    reading = meter.stop()
    assert reading.source == "estimate" and reading.estimated
    assert reading.cpu_seconds == pytest.approx(720)
    assert reading.wh == pytest.approx(2.0)
    assert "720.0 CPU s" in reading.detail


def test_a_counter_that_cannot_be_read_falls_back(tmp_path: Path) -> None:
    # Linux makes energy_uj readable by root only. Root reads a file of any mode,
    # so the counter here is a folder: reading it fails for every user.
    package = zone(tmp_path, "intel-rapl:0", 1_000)
    (package / "energy_uj").unlink()
    (package / "energy_uj").mkdir()
    assert rapl_packages(tmp_path) == []


def test_no_powercap_at_all_estimates_and_cpu_seconds_can_be_given(tmp_path: Path) -> None:
    meter = EnergyMeter(powercap=tmp_path / "missing", cpu_clock=Clock())
    meter.start()
    reading = meter.stop(cpu_seconds=3600)  # an hour of one core at the default 15 W
    assert reading.source == "estimate" and reading.wh == pytest.approx(15.0)


def test_the_default_clock_counts_a_finished_child(tmp_path: Path) -> None:
    meter = EnergyMeter(powercap=tmp_path)
    before = children_cpu_seconds()
    meter.start()
    subprocess.run([sys.executable, "-c", "sum(i * i for i in range(3_000_000))"], check=True)
    reading = meter.stop()
    assert reading.cpu_seconds > 0
    assert reading.cpu_seconds == pytest.approx(children_cpu_seconds() - before, abs=1e-6)


class FakeNvml(types.ModuleType):
    """pynvml with one GPU whose energy counter (mJ) the test moves."""

    class NVMLError(Exception):
        pass

    def __init__(self) -> None:
        super().__init__("pynvml")
        self.millijoules = 10_000

    def nvmlInit(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        return self.millijoules


def test_gpu_energy_is_added_only_when_the_run_used_the_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nvml = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    package = zone(tmp_path, "intel-rapl:0", 0)
    meter = EnergyMeter(powercap=tmp_path, cpu_clock=Clock())
    meter.start()
    nvml.millijoules += 7_200_000  # 2 Wh on the GPU
    set_energy(package, 3_600_000_000)  # 1 Wh on the CPU
    used = meter.stop(used_gpu=True)
    assert used.source == "nvml" and not used.estimated
    assert used.wh == pytest.approx(3.0)
    assert used.parts == pytest.approx({"rapl": 1.0, "nvml": 2.0})
    meter.start()
    nvml.millijoules += 7_200_000
    assert meter.stop().wh == 0.0  # the counter did not move and the GPU was not used


def test_stop_without_start_and_bad_watts_are_refused() -> None:
    with pytest.raises(RuntimeError):
        EnergyMeter().stop()
    with pytest.raises(InvalidInputError):
        EnergyMeter(cpu_watts=-1)


def test_one_intensity_holds_at_every_hour() -> None:
    assert grid_intensity(56, datetime(2025, 1, 1, 3, tzinfo=UTC)) == 56.0
    assert co2e_grams(2.5, 400) == pytest.approx(1.0)


def test_hourly_intensity_follows_the_local_hour() -> None:
    hourly = [float(100 + hour) for hour in range(24)]
    assert grid_intensity(hourly, datetime(2025, 6, 1, 13, 59)) == 113.0  # naive: local
    plus_two = timezone(timedelta(hours=2))
    moment = datetime(2025, 6, 1, 13, 0, tzinfo=plus_two)
    assert grid_intensity(hourly, moment) == 100 + moment.astimezone().hour


@pytest.mark.parametrize(
    "setting",
    [[1.0] * 23, [1.0] * 25, [], -5, [1.0] * 23 + [-1.0], "300", float("nan"), [True] * 24, None],
)
def test_bad_intensity_settings_are_refused(setting: object) -> None:
    with pytest.raises(InvalidInputError):
        grid_intensity(setting, datetime(2025, 1, 1))  # type: ignore[arg-type]
