"""monGARS is the distribution ``mongars-assistant``: ``mongars`` on PyPI is another project.

Every install hint names it, the server reports its version, and nothing
tells a user to ``pip install mongars``.
"""

from __future__ import annotations

import os
import re
from importlib import metadata
from pathlib import Path

import pytest

from mongars_core import DISTRIBUTION
from mongars_core.errors import MissingDependencyError
from mongars_core.settings import Settings
from tests.conftest import run_mongars

ROOT = Path(__file__).resolve().parents[1]


def test_the_installed_distribution_is_mongars_assistant() -> None:
    assert DISTRIBUTION == "mongars-assistant"
    dist = metadata.distribution(DISTRIBUTION)
    assert {entry.name for entry in dist.entry_points if entry.group == "mongars"} >= {
        "memory",
        "server",
    }
    assert any(
        entry.name == "mongars" for entry in dist.entry_points.select(group="console_scripts")
    )
    # The `all` extra names the project itself: by its own name, that is expanded into
    # the other extras' requirements; by the old name, it would pull the other project.
    requires = dist.requires or []
    assert not [r for r in requires if re.match(r"mongars\b(?!-)", r)]
    assert any(r.startswith("torch==") and "extra == 'all'" in r for r in requires)


def test_a_missing_extra_names_our_distribution() -> None:
    assert "pip install 'mongars-assistant[postgres]'" in str(
        MissingDependencyError("asyncpg", "postgres")
    )


def test_the_command_names_our_distribution_when_a_driver_is_missing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONGARS_")}
    env.update(
        MONGARS_DATA_DIR=str(tmp_path),
        MONGARS_DISABLE_PLUGINS="cuda",
        MONGARS_MEMORY__EMBEDDER="none",
        MONGARS_DATABASE_URL="postgresql+asyncpg://x@127.0.0.1:1/db",
        # asyncpg made unimportable, as on a machine without the postgres extra.
        PYTHONPATH=str(tmp_path / "no-asyncpg"),
    )
    (tmp_path / "no-asyncpg").mkdir()
    (tmp_path / "no-asyncpg" / "asyncpg.py").write_text("raise ImportError('no asyncpg')\n")
    result = run_mongars("chat", "--message", "hi", env=env)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: asyncpg is not installed; install it with: pip install "
        "'mongars-assistant[postgres]'"
    ]


def test_the_server_reports_the_distributions_version(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from mongars_server.app import create_app

    app = create_app(Settings(data_dir=tmp_path, memory={"embedder": "none"}))
    assert app.version == metadata.version("mongars-assistant") != "0+unknown"


INSTALL_HINTS = re.compile(
    r"(?<![\w-])mongars\\?\["  # mongars[extra], or mongars\[extra\] in a regex
    r"|pip install (-e )?['\"]?mongars(?![\w-])"
    r"|dependencies = \[\"mongars\"\]"
)


def test_no_install_hint_names_the_other_project() -> None:
    places = [ROOT / "README.md", ROOT / "pyproject.toml"]
    for folder in ("src", "docs", "examples", "tests", "benchmarks", "scripts"):
        places += [p for p in (ROOT / folder).rglob("*") if p.suffix in {".py", ".md", ".toml", ""}]
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in places
        if path.is_file() and path != Path(__file__)
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if INSTALL_HINTS.search(line)
    ]
    assert found == []
