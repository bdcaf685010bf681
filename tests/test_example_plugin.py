"""The example plugin in examples/ installs, is found through its entry point, and works."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mongars-signature"


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(EXAMPLE),
        ],
        check=True,
        capture_output=True,
    )
    return target


def test_the_example_plugins_own_tests_pass_with_the_test_kit(
    installed_example: Path, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its tests use the kit's fixtures alone, under its own pytest settings; one of
    them loads the plugin through the entry point that pip installed."""
    monkeypatch.syspath_prepend(str(installed_example))
    result = pytester.runpytest(
        str(EXAMPLE / "tests"), "-c", str(EXAMPLE / "pyproject.toml"), "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=4)


def test_the_example_plugin_depends_on_monGARS_by_its_distribution_name(
    installed_example: Path,
) -> None:
    from importlib.metadata import distributions

    (example,) = [d for d in distributions(path=[str(installed_example)])]
    assert example.metadata["Name"] == "mongars-signature"
    # `mongars` on PyPI is another project: depending on it would install that.
    assert example.requires == [
        "mongars-assistant",
        "mongars-assistant[testkit]; extra == 'test'",
    ]
