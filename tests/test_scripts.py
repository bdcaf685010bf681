"""scripts/start and scripts/test: progress per phase, and no pip when nothing changed.

The scripts run for real, in a copy of the checkout whose .venv holds
stand-ins: ``python -m pip`` records its arguments and prints what pip prints,
``mongars`` records how it was started. No package is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

STAND_IN_PYTHON = """#!/usr/bin/env bash
if [ "$1" = "-m" ] && { [ "$2" = "pip" ] || [ "$2" = "pytest" ]; }; then
  echo "$2 ${*:3}" >> "$STAND_IN_LOG"
  if [ "$2" = "pip" ]; then
    echo "Collecting torch==2.13.0"
    echo "  Downloading torch-2.13.0-cp311-none-linux_x86_64.whl (757.3 MB)"
    echo "Requirement already satisfied: numpy>=1.26"
    echo "Installing collected packages: torch, numpy"
    echo "Successfully installed numpy torch"
    if [ -n "${STAND_IN_PIP_FAILS:-}" ]; then
      echo "ERROR: No matching distribution for torch"
      exit 1
    fi
  fi
  exit 0
fi
exec {python} "$@"
"""

STAND_IN_TOOL = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "$STAND_IN_LOG"
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the scripts and pyproject.toml, with a stand-in .venv."""
    root = tmp_path / "checkout"
    shutil.copytree(ROOT / "scripts", root / "scripts")
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    tools = {"python": STAND_IN_PYTHON.replace("{python}", sys.executable)}
    tools |= dict.fromkeys(["mongars", "ruff", "mypy"], STAND_IN_TOOL)
    for name, text in tools.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return root


def run(checkout: Path, script: str, *args: str, **env: str) -> tuple[int, str, list[str]]:
    """Run ``scripts/<script>``: its status, its stderr and what the stand-ins recorded."""
    log = checkout / "calls.log"
    log.unlink(missing_ok=True)
    path_dir = checkout / "path"
    path_dir.mkdir(exist_ok=True)
    if not (path_dir / "python3.11").exists():
        (path_dir / "python3.11").symlink_to(sys.executable)
    result = subprocess.run(
        [str(checkout / "scripts" / script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={
            **os.environ,
            "PATH": f"{path_dir}{os.pathsep}{os.environ['PATH']}",
            "STAND_IN_LOG": str(log),
            **env,
        },
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return result.returncode, result.stderr, calls


def pip_calls(calls: list[str]) -> list[str]:
    return [call for call in calls if call.startswith("pip ")]


def test_the_first_start_installs_with_progress_and_starts_the_server(checkout: Path) -> None:
    status, stderr, calls = run(checkout, "start", "--port", "9123")
    assert status == 0, stderr
    assert pip_calls(calls) == [
        "pip install --disable-pip-version-check --progress-bar off -e .[local,server]"
    ]
    assert calls[-1] == "mongars serve --port 9123"
    lines = stderr.splitlines()
    assert any("installing monGARS .[local,server]" in line for line in lines)
    assert any(line.endswith("pip: Collecting torch==2.13.0") for line in lines)
    assert any("Downloading torch-2.13.0" in line and "757.3 MB" in line for line in lines)
    assert any("installed in" in line for line in lines)
    assert all(line.startswith("[start ") for line in lines), stderr
    assert "Requirement already satisfied" not in stderr  # in the log, not on screen
    assert "Requirement already satisfied" in (checkout / ".venv" / "pip-install.log").read_text()


def test_a_second_start_skips_pip(checkout: Path) -> None:
    run(checkout, "start")
    status, stderr, calls = run(checkout, "start")
    assert status == 0, stderr
    assert pip_calls(calls) == []
    assert calls == ["mongars serve"]
    assert ".venv is up to date" in stderr


def test_a_changed_pyproject_runs_pip_again(checkout: Path) -> None:
    run(checkout, "start")
    pyproject = checkout / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + "\n# a new dependency\n")
    _, stderr, calls = run(checkout, "start")
    assert len(pip_calls(calls)) == 1, stderr
    _, _, calls = run(checkout, "start")
    assert pip_calls(calls) == []


def test_scripts_test_installs_every_extra_once_and_start_then_skips(checkout: Path) -> None:
    run(checkout, "start")
    status, stderr, calls = run(checkout, "test", "-k", "x")
    assert status == 0, stderr
    assert pip_calls(calls) == [
        "pip install --disable-pip-version-check --progress-bar off -e .[all,dev]"
    ]
    assert calls[-1] == "pytest -k x"
    _, _, calls = run(checkout, "test")
    assert pip_calls(calls) == []
    _, _, calls = run(checkout, "start")  # every extra covers the start's extras
    assert pip_calls(calls) == []


def test_a_failed_pip_stops_the_start_and_is_retried_next_time(checkout: Path) -> None:
    status, stderr, calls = run(checkout, "start", STAND_IN_PIP_FAILS="1")
    assert status == 1
    assert "pip failed" in stderr and "ERROR: No matching distribution for torch" in stderr
    assert not any(call.startswith("mongars") for call in calls)
    _, _, calls = run(checkout, "start")
    assert len(pip_calls(calls)) == 1


def test_an_install_under_the_old_name_is_removed_first(checkout: Path, tmp_path: Path) -> None:
    # What a checkout from before the rename has in its .venv: a `mongars` with our plugins.
    old = tmp_path / "site" / "mongars-0.1.0.dist-info"
    old.mkdir(parents=True)
    (old / "METADATA").write_text("Metadata-Version: 2.1\nName: mongars\nVersion: 0.1.0\n")
    (old / "entry_points.txt").write_text("[mongars]\nmemory = mongars_plugins.memory\n")
    status, stderr, calls = run(checkout, "start", PYTHONPATH=str(tmp_path / "site"))
    assert status == 0, stderr
    assert pip_calls(calls)[0] == "pip uninstall --disable-pip-version-check -y -q mongars"
    assert pip_calls(calls)[1].endswith("-e .[local,server]")


def test_another_projects_mongars_is_left_alone(checkout: Path, tmp_path: Path) -> None:
    other = tmp_path / "site" / "mongars-1.4.3.dist-info"
    other.mkdir(parents=True)
    (other / "METADATA").write_text("Metadata-Version: 2.1\nName: mongars\nVersion: 1.4.3\n")
    _, stderr, calls = run(checkout, "start", PYTHONPATH=str(tmp_path / "site"))
    assert [call for call in pip_calls(calls) if "uninstall" in call] == [], stderr
