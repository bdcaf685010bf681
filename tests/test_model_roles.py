"""Model roles chosen on the command line (mongars_core.model_roles), kept in
``<data dir>/model_roles.json`` and merged under the settings' roles."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest

from mongars_core.assembly import build_router
from mongars_core.errors import ConfigurationError
from mongars_core.llm import LLMBackend
from mongars_core.model_roles import FILE_NAME, LOCK_NAME, assign_role, read_roles, roles_path
from mongars_core.settings import EndpointSpec, Settings
from mongars_testkit import InstantBackend
from tests.conftest import command_env, run_mongars

MINE = EndpointSpec(backend="local", model="my-model")


def test_without_a_file_there_are_no_roles(tmp_path: Path) -> None:
    assert read_roles(tmp_path / "nowhere") == {}


def test_an_assigned_role_is_read_back(tmp_path: Path) -> None:
    data = tmp_path / "data"  # not there yet: assigning creates it
    tuned = EndpointSpec(backend="ollama:gpu", model="qwen", params={"temperature": 0.2})
    assign_role(data, "coding", [MINE])
    assign_role(data, "math_2", [tuned, MINE])
    assert read_roles(data) == {"coding": [MINE], "math_2": [tuned, MINE]}
    assert json.loads(roles_path(data).read_text()) == {
        "coding": [{"backend": "local", "model": "my-model"}],
        "math_2": [
            {"backend": "ollama:gpu", "model": "qwen", "params": {"temperature": 0.2}},
            {"backend": "local", "model": "my-model"},
        ],
    }, "written as a user would write it: no defaults"
    assert sorted(p.name for p in data.iterdir()) == [LOCK_NAME, FILE_NAME], "no temporary file"


def test_assigning_a_role_again_replaces_its_endpoints(tmp_path: Path) -> None:
    assign_role(tmp_path, "coding", [MINE])
    assign_role(tmp_path, "general", [MINE])
    other = EndpointSpec(backend="local", model="bigger")
    assign_role(tmp_path, "coding", [other])
    assert read_roles(tmp_path) == {"coding": [other], "general": [MINE]}


@pytest.mark.parametrize("role", ["", "-", "a b", "../x", "coding\n", "c:d"])
def test_an_invalid_role_name_is_refused(tmp_path: Path, role: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid role"):
        assign_role(tmp_path, role, [MINE])
    assert not roles_path(tmp_path).exists()


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        '{"coding": "local"}',
        '{"coding": [{"model": "no backend"}]}',
        '["coding"]',
        "",
    ],
    ids=["not-json", "not-a-list", "no-backend", "not-an-object", "empty"],
)
def test_an_invalid_file_is_a_one_line_configuration_error(tmp_path: Path, text: str) -> None:
    roles_path(tmp_path).write_text(text)
    with pytest.raises(ConfigurationError) as failed:
        read_roles(tmp_path)
    message = str(failed.value)
    assert message.startswith(f"{roles_path(tmp_path)} is not a valid model role file (")
    assert message.endswith("; fix or delete it") and "\n" not in message
    with pytest.raises(ConfigurationError):
        assign_role(tmp_path, "coding", [MINE])
    assert roles_path(tmp_path).read_text() == text, "a file it cannot read is not overwritten"


def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assign_role(tmp_path, "coding", [MINE])
    before = roles_path(tmp_path).read_text()

    def disk_full(source: str, target: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError, match="No space left"):
        assign_role(tmp_path, "general", [MINE])
    monkeypatch.undo()
    assert roles_path(tmp_path).read_text() == before
    assert sorted(os.listdir(tmp_path)) == [LOCK_NAME, FILE_NAME]


def test_the_settings_roles_win_over_the_file(settings: Settings) -> None:
    backends: dict[str, LLMBackend] = {
        name: InstantBackend() for name in ("instant", "from-file", "from-settings")
    }
    assign_role(settings.data_dir, "coding", [EndpointSpec(backend="from-file")])
    assign_role(settings.data_dir, "math", [EndpointSpec(backend="from-file", model="m")])
    settings.llm.roles = {"coding": [EndpointSpec(backend="from-settings")]}
    router = build_router(backends, settings)
    assert [e.backend_name for e in router.endpoints("coding")] == ["from-settings"]
    assert [(e.backend_name, e.model) for e in router.endpoints("math")] == [("from-file", "m")]
    assert router.roles == ["coding", "general", "math"]


def test_a_broken_roles_file_stops_the_command_in_one_line(tmp_path: Path) -> None:
    env = command_env(tmp_path, MONGARS_LOAD_PLUGINS="reasoning")
    data = Path(env["MONGARS_DATA_DIR"])
    data.mkdir(parents=True)
    (data / FILE_NAME).write_text('{"coding": [{"backend": 3}]}')
    result = run_mongars("backends", env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "is not a valid model role file" in lines[0]
    assert "Traceback" not in result.stderr


def _assign_many(data_dir: Path, worker: int, count: int, start: Any) -> None:
    start.wait(timeout=60)  # all together, once every process has imported
    for index in range(count):
        assign_role(data_dir, f"role{worker}_{index}", [EndpointSpec(backend="local", model="m")])


def test_concurrent_assignments_keep_every_role(tmp_path: Path) -> None:
    """Three processes assigning at once lost 51 roles of 90 before the lock."""
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(3)
    workers = [spawn.Process(target=_assign_many, args=(tmp_path, i, 30, start)) for i in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0, 0, 0]
    assert sorted(read_roles(tmp_path)) == sorted(
        f"role{w}_{i}" for w in range(3) for i in range(30)
    )


def test_the_file_is_synced_before_it_replaces_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(
        os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1]
    )
    assign_role(tmp_path, "coding", [MINE])
    assert events[:2] == ["fsync", "replace"]
