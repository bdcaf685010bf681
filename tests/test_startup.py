"""Start-up failures as a user meets them: the real ``mongars serve`` and ``mongars chat``.

Each broken start ends with one line on stderr naming the problem and exit
status 1: a corrupt SQLite file, a PostgreSQL URL on a closed port, a
read-only data folder, a port that is taken, an invalid setting.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mongars_core.settings import Settings
from tests.conftest import command_env, run_mongars


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No model and no embedder: these tests are about starting, not generating."""
    return command_env(tmp_path, HF_HUB_OFFLINE="1")


def serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_mongars("serve", "--port", str(_free_port()), *args, env=env, timeout=60)


def chat(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_mongars("chat", "--message", "hi", env=env, timeout=60)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *texts: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for text in texts:
        assert text in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert "monGARS on http" not in result.stderr + result.stdout
    assert result.returncode == 1, result.stderr


# -- the database ----------------------------------------------------------------------


@pytest.fixture
def corrupt_database(env: dict[str, str]) -> Path:
    data = Path(env["MONGARS_DATA_DIR"])
    data.mkdir()
    database = data / "mongars.sqlite3"
    database.write_bytes(b"this is not a database\n" * 400)
    return database


@pytest.mark.parametrize("command", [serve, chat], ids=["serve", "chat"])
def test_a_corrupt_sqlite_file_is_named_as_such(
    env: dict[str, str], corrupt_database: Path, command: object
) -> None:
    result = command(env)  # type: ignore[operator]
    assert_one_line_error(result, f"{corrupt_database} is not a SQLite database (corrupt?)")
    assert "cannot reach" not in result.stderr


@pytest.mark.parametrize("command", [serve, chat], ids=["serve", "chat"])
def test_a_postgresql_url_on_a_closed_port(env: dict[str, str], command: object) -> None:
    closed = _free_port()
    env["MONGARS_DATABASE_URL"] = f"postgresql+asyncpg://me:secret@127.0.0.1:{closed}/db"
    result = command(env)  # type: ignore[operator]
    assert_one_line_error(
        result, f"cannot reach the database at postgresql+asyncpg://me:***@127.0.0.1:{closed}/db"
    )
    assert "secret" not in result.stderr


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make ``folder`` read-only for this process, root included.

    Root ignores file modes, so as root the folder is made immutable
    (``chattr +i``), or else bind-mounted read-only on itself.
    """
    undo: list[str] = []
    if os.geteuid() != 0:
        folder.chmod(0o555)
        undo = ["chmod", "755", str(folder)]
    elif shutil.which("chattr") and _run("chattr", "+i", str(folder)):
        undo = ["chattr", "-i", str(folder)]
    elif _run("mount", "--bind", "-o", "ro", str(folder), str(folder)):
        undo = ["umount", str(folder)]
    try:
        probe = folder / f"probe-{uuid.uuid4().hex}"
        try:
            probe.touch()
        except OSError:
            pass
        else:
            probe.unlink()
            if os.environ.get("CI"):
                pytest.fail(f"cannot make {folder} read-only on this machine")
            pytest.skip(f"cannot make {folder} read-only on this machine")
        yield
    finally:
        if undo:
            subprocess.run(undo, check=True)


def _run(*command: str) -> bool:
    return subprocess.run(command, capture_output=True, check=False).returncode == 0


@pytest.fixture
def read_only_data(env: dict[str, str]) -> Iterator[Path]:
    """A data folder that was set up (database and server secret) and is now read-only."""
    data = Path(env["MONGARS_DATA_DIR"])
    upgraded = run_mongars("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    from mongars_server.security import load_or_create_secret

    load_or_create_secret(Settings(data_dir=data))
    assert {"mongars.sqlite3", "server-secret"} <= {path.name for path in data.iterdir()}
    with read_only(data):
        yield data


@pytest.mark.parametrize("command", [serve, chat], ids=["serve", "chat"])
def test_a_read_only_data_folder(
    env: dict[str, str], read_only_data: Path, command: object
) -> None:
    result = command(env)  # type: ignore[operator]
    assert_one_line_error(result, f"the data folder {read_only_data} is not writable")


def test_a_read_only_empty_data_folder_for_a_new_database(env: dict[str, str]) -> None:
    data = Path(env["MONGARS_DATA_DIR"])
    data.mkdir()
    with read_only(data):
        result = chat(env)
    assert_one_line_error(result, str(data))
    assert re.search("not writable|Operation not permitted|Read-only file system", result.stderr)


def test_a_corrupt_database_with_several_workers(
    env: dict[str, str], corrupt_database: Path, redis_url: str
) -> None:
    env["MONGARS_REDIS_URL"] = redis_url
    result = serve(env, "--workers", "2")
    assert_one_line_error(result, f"{corrupt_database} is not a SQLite database (corrupt?)")


def test_any_failure_inside_the_server_start_is_one_line(env: dict[str, str]) -> None:
    # Redis is first used while the app starts (its lifespan, inside uvicorn).
    closed = _free_port()
    env["MONGARS_REDIS_URL"] = f"redis://127.0.0.1:{closed}/0"
    result = serve(env)
    assert_one_line_error(result, f"127.0.0.1:{closed}")
    assert "refused" in result.stderr.lower()


# -- the port --------------------------------------------------------------------------


@pytest.fixture
def running_server(env: dict[str, str]) -> Iterator[int]:
    """A real ``mongars serve`` on a free port, stopped at the end."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mongars_core", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            process.kill()
            pytest.fail(f"the first server did not start: {process.communicate()[0]}")
        yield port
    finally:
        process.send_signal(signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
    assert f"monGARS on http://127.0.0.1:{port}" in output
    assert process.returncode == 0, output  # Ctrl-C is a normal stop


def test_a_second_server_on_the_same_port_says_a_mongars_server_has_it(
    env: dict[str, str], running_server: int, tmp_path: Path
) -> None:
    env["MONGARS_DATA_DIR"] = str(tmp_path / "other")
    result = run_mongars("serve", "--port", str(running_server), env=env, timeout=60)
    assert_one_line_error(
        result, f"port {running_server} on 127.0.0.1 is taken", "by a monGARS server"
    )


def test_a_port_taken_by_another_program(env: dict[str, str]) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = run_mongars("serve", "--port", str(port), env=env, timeout=60)
    assert_one_line_error(result, f"port {port} on 127.0.0.1 is taken", "by another program")
    assert "monGARS server" not in result.stderr


# -- settings and commands ---------------------------------------------------------------


@pytest.mark.parametrize("args", [["serve"], ["users", "list"], ["chat", "--message", "hi"]])
def test_an_invalid_setting_is_reported_not_a_missing_command(
    env: dict[str, str], args: list[str]
) -> None:
    env["MONGARS_SERVER__PORT"] = "abc"
    result = run_mongars(*args, env=env)
    assert_one_line_error(result, "invalid settings: MONGARS_SERVER__PORT")
    assert "No such command" not in result.stderr


def test_without_a_terminal_the_model_fetch_prints_a_line_per_stage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("uvicorn")
    from mongars_server.cli import _progress_lines

    report = _progress_lines()
    for done in (0, 40_000_000, 92_871_040, 92_871_040):
        report("download", done, 92_871_040)
    for done in range(4):
        report("convert", done, 3)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "model: download (92.9 MB)..."
    assert lines[1].startswith("model: download done in ")
    assert lines[2:3] == ["model: convert..."]
    assert lines[3].startswith("model: convert done in ")
    assert len(lines) == 4
