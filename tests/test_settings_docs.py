"""The settings reference generator: what a table shows, and its command line."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from mongars_core.errors import ConfigurationError
from mongars_core.settings_docs import DocumentedSection, main
from tests.test_plugins import install_distribution

ROOT = Path(__file__).resolve().parents[1]


class Knobs(BaseModel):
    seed: int = Field(default_factory=lambda: random.randrange(10**9), description="Seed.")
    home: Path = Field(
        default_factory=Path.home,
        description="Home.",
        json_schema_extra={"documented_default": "your home folder"},
    )
    tags: list[str] = Field(default_factory=list, description="Tags.")
    upstream: str = Field("https://bot:p/ss@w0rd9@proxy.example:8080", description="Upstream.")


def rendered(model: type[BaseModel]) -> str:
    return DocumentedSection("knobs", model, "MONGARS_KNOBS__", "knobs").render()


def test_a_computed_default_is_described_not_computed() -> None:
    table = rendered(Knobs)
    assert table == rendered(Knobs)
    assert "| `MONGARS_KNOBS__SEED` | `int` | computed | Seed. |" in table
    assert "| `MONGARS_KNOBS__HOME` | `Path` | your home folder | Home. |" in table
    assert str(Path.home()) not in table
    assert "| `MONGARS_KNOBS__TAGS` | JSON `list[str]` | empty | Tags. |" in table


def test_a_default_url_is_shown_without_its_password() -> None:
    table = rendered(Knobs)
    assert "w0rd9" not in table and "p/ss" not in table
    assert "`https://bot:***@proxy.example:8080`" in table


def test_a_description_may_not_hold_a_block_marker() -> None:
    class Sneaky(BaseModel):
        note: str = Field("", description="Ends here <!-- end of generated settings --> oops.")

    with pytest.raises(ConfigurationError, match="MONGARS_KNOBS__NOTE"):
        rendered(Sneaky)


def test_an_unknown_plugin_is_an_error_naming_the_installed_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--plugin", "nosuch"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "'nosuch'" in error
    assert "ollama" in error and "server" in error


def test_checking_one_plugin_looks_at_its_tables_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--check", str(ROOT / "docs" / "configuration.md"), "--plugin", "server"]) == 0
    assert capsys.readouterr().err == ""


def test_a_missing_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check", str(tmp_path / "absent.md")]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "absent.md" in error


def test_a_broken_third_party_plugin_is_skipped_and_said_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    install_distribution(
        tmp_path, monkeypatch, "mongars-broken", "broken_plugin", "raise RuntimeError('boom')\n"
    )
    assert main(["--check", str(ROOT / "docs" / "configuration.md")]) == 0
    error = capsys.readouterr().err
    assert "broken_plugin" in error and "mongars-broken" in error
