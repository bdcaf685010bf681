"""scripts/start and scripts/test: progress per phase, no pip when nothing changed, and
the services the marked tests need brought up, or reported and skipped.

The scripts run for real, in a copy of the checkout whose .venv holds
stand-ins: ``python -m pip`` records its arguments and prints what pip prints,
``mongars`` records how it was started. No package is installed: where a test
takes a service away, it runs the scripts under a PATH without that service's
commands, with stand-ins for ``id`` (who we are) and ``apt-get``.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

STAND_IN_PYTHON = """#!/usr/bin/env bash
if [ "$1" = "-m" ] && { [ "$2" = "pip" ] || [ "$2" = "pytest" ]; }; then
  if [ "$2" = "pytest" ]; then
    echo "unavailable: ${MONGARS_TEST_UNAVAILABLE-(unset)}" >> "$STAND_IN_LOG"
    echo "redis url: ${MONGARS_TEST_REDIS_URL-(unset)}" >> "$STAND_IN_LOG"
  fi
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


def run(
    checkout: Path, script: str, *args: str, path: str = "", **env: str
) -> tuple[int, str, list[str]]:
    """Run ``scripts/<script>``: its status, its stderr and what the stand-ins recorded.

    The services step is off (``MONGARS_TEST_SERVICES=no``) unless ``env`` says otherwise.
    """
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
            **without_test_settings(os.environ),
            "PATH": f"{path_dir}{os.pathsep}{path or os.environ['PATH']}",
            "STAND_IN_LOG": str(log),
            "MONGARS_TEST_SERVICES": "no",
            **env,
        },
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return result.returncode, result.stderr, calls


def without_test_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` less the ``MONGARS_TEST_*`` settings scripts/test gave this run."""
    return {k: v for k, v in environ.items() if not k.startswith("MONGARS_TEST_")}


def pip_calls(calls: list[str]) -> list[str]:
    return [call for call in calls if call.startswith("pip ")]


def test_the_first_start_installs_with_progress_and_starts_the_server(checkout: Path) -> None:
    status, stderr, calls = run(checkout, "start", "--port", "9123")
    assert status == 0, stderr
    assert pip_calls(calls) == [
        "pip install --disable-pip-version-check --progress-bar off -e .[local,train,server]"
    ]
    assert calls[-1] == "mongars serve --port 9123"
    lines = stderr.splitlines()
    assert any("installing monGARS .[local,train,server]" in line for line in lines)
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
    assert pip_calls(calls)[1].endswith("-e .[local,train,server]")


def test_another_projects_mongars_is_left_alone(checkout: Path, tmp_path: Path) -> None:
    other = tmp_path / "site" / "mongars-1.4.3.dist-info"
    other.mkdir(parents=True)
    (other / "METADATA").write_text("Metadata-Version: 2.1\nName: mongars\nVersion: 1.4.3\n")
    _, stderr, calls = run(checkout, "start", PYTHONPATH=str(tmp_path / "site"))
    assert [call for call in pip_calls(calls) if "uninstall" in call] == [], stderr


# --- the services step: scripts/services.sh ---

STAND_IN_ID = """#!/usr/bin/env bash
echo "$STAND_IN_UID"
"""

STAND_IN_APT_GET = """#!/usr/bin/env bash
echo "apt-get $*" >> "$STAND_IN_LOG"
exit "${STAND_IN_APT_STATUS:-100}"
"""

BRING_UP = """
. scripts/venv.sh && . scripts/services.sh && mongars_test_services "$@" &&
  printf '%s' "${MONGARS_TEST_UNAVAILABLE-(unset)}" &&
  { env | grep '^MONGARS_TEST_.*_URL=' > exported.env || true; }
"""


def path_without(tmp_path: Path, *hidden: str, apt_get: bool = True) -> str:
    """A PATH of one folder: this PATH's commands, less ``hidden``, with the stand-ins
    for ``id`` and (unless ``apt_get`` is false) ``apt-get``."""
    folder = tmp_path / "fake-path"
    folder.mkdir()
    stand_ins = {"id": STAND_IN_ID} | ({"apt-get": STAND_IN_APT_GET} if apt_get else {})
    for name, text in stand_ins.items():
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)
    left_out = set(hidden) if apt_get else {*hidden, "apt-get"}
    for directory in map(Path, os.environ["PATH"].split(os.pathsep)):
        for tool in sorted(directory.iterdir()) if directory.is_dir() else []:
            link = folder / tool.name
            if tool.name not in left_out and not os.path.lexists(link):
                link.symlink_to(tool)
    return str(folder)


def bring_up(
    checkout: Path, *services: str, path: str, uid: int, **env: str
) -> tuple[int, list[str], str, list[str]]:
    """Run ``mongars_test_services SERVICES`` as user ``uid``: its status, its stderr
    lines, the MONGARS_TEST_UNAVAILABLE it exported and what the stand-ins recorded."""
    log = checkout / "calls.log"
    log.unlink(missing_ok=True)
    result = subprocess.run(
        ["bash", "-c", BRING_UP, "bring-up", *services],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={
            **without_test_settings(os.environ),
            "PATH": path,
            "MONGARS_SCRIPT": "test",
            "STAND_IN_LOG": str(log),
            "STAND_IN_UID": str(uid),
            **env,
        },
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return result.returncode, result.stderr.splitlines(), result.stdout, calls


def exported(checkout: Path) -> dict[str, str]:
    """The ``MONGARS_TEST_*_URL`` settings the last ``bring_up`` left exported."""
    lines = (checkout / "exported.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def closed_redis_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


def bring_up_without_redis(
    checkout: Path, tmp_path: Path, *, uid: int, apt_get: bool = True
) -> tuple[int, list[str], str, list[str]]:
    """``bring_up`` Redis on a closed port, with no redis-server or redis-cli on PATH."""
    path = path_without(tmp_path, "redis-server", "redis-cli", apt_get=apt_get)
    return bring_up(
        checkout, "redis", path=path, uid=uid, MONGARS_TEST_REDIS_URL=closed_redis_url()
    )


def test_a_missing_redis_without_root_is_one_line_and_the_reason_for_the_tests(
    checkout: Path, tmp_path: Path
) -> None:
    status, lines, unavailable, calls = bring_up_without_redis(checkout, tmp_path, uid=1000)
    assert status == 0, lines
    assert [line for line in lines if "redis" in line] == [
        "[test   0s] redis: not available (not installed and not root):"
        " tests marked redis are skipped"
    ]
    assert unavailable == "redis=not installed and not root"
    assert calls == []  # no apt-get


def test_as_root_a_failed_install_is_retried_after_apt_get_update_then_reported(
    checkout: Path, tmp_path: Path
) -> None:
    status, lines, unavailable, calls = bring_up_without_redis(checkout, tmp_path, uid=0)
    assert status == 0, lines
    assert calls == [
        "apt-get install -y -q redis-server",
        "apt-get update -q",
        "apt-get install -y -q redis-server",
    ]
    assert unavailable == "redis=apt-get install redis-server failed (see .venv/services.log)"
    assert lines[-1].endswith(
        "redis: not available (apt-get install redis-server failed (see .venv/services.log)):"
        " tests marked redis are skipped"
    )


def test_as_root_without_apt_get_the_reason_says_so(checkout: Path, tmp_path: Path) -> None:
    _, _, unavailable, _ = bring_up_without_redis(checkout, tmp_path, uid=0, apt_get=False)
    assert unavailable == "redis=not installed and no apt-get"


needs_redis_server = pytest.mark.skipif(
    not shutil.which("redis-server"), reason="needs redis-server installed"
)


def started_redis(checkout: Path, port: int) -> str:
    """The password of the Redis that the last ``bring_up`` started on ``port``, from the
    MONGARS_TEST_REDIS_URL it exported."""
    url = exported(checkout)["MONGARS_TEST_REDIS_URL"]
    match = re.fullmatch(rf"redis://:([0-9a-f]{{32}})@127\.0\.0\.1:{port}/0", url)
    assert match, url
    return match[1]


def shut_down(checkout: Path, port: int, lines: list[str]) -> None:
    """Stop the Redis on ``port`` that the last ``bring_up`` started, if it did, and
    remove the folder of its log (named in ``lines``)."""
    url = exported(checkout).get("MONGARS_TEST_REDIS_URL", "")
    redis_command(port, "SHUTDOWN NOSAVE", password=url.partition("@")[0][len("redis://:") :])
    for log in re.findall(r"\(log: (.*)/redis\.log\)", "\n".join(lines)):
        shutil.rmtree(log, ignore_errors=True)


@needs_redis_server
def test_an_installed_redis_that_is_down_is_started_without_root_behind_a_password(
    checkout: Path, tmp_path: Path
) -> None:
    port = free_port()
    lines: list[str] = []
    try:
        status, lines, unavailable, calls = bring_up(
            checkout,
            "redis",
            path=path_without(tmp_path),
            uid=1000,
            MONGARS_TEST_REDIS_URL=f"redis://127.0.0.1:{port}/0",
        )
        assert status == 0, lines
        assert unavailable == ""
        assert f"redis: starting redis-server on 127.0.0.1:{port}" in "\n".join(lines)
        assert lines[-1].endswith("ready: redis")
        password = started_redis(checkout, port)
        assert password not in "\n".join(lines)
        assert redis_command(port, "PING").startswith("-NOAUTH")
        assert redis_command(port, "PING", password=password) == "+PONG"
        assert calls == []
    finally:
        shut_down(checkout, port, lines)


def redis_user() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam("redis")
    except KeyError:
        return None


@needs_redis_server
@pytest.mark.skipif(
    os.geteuid() != 0 or redis_user() is None or not shutil.which("runuser"),
    reason="needs root, a redis user and runuser",
)
def test_as_root_redis_is_started_as_the_redis_user(checkout: Path, tmp_path: Path) -> None:
    port = free_port()
    lines: list[str] = []
    try:
        status, lines, _, _ = bring_up(  # the real `id`: the redis user can't reach tmp_path
            checkout,
            "redis",
            path=os.environ["PATH"],
            uid=0,
            MONGARS_TEST_REDIS_URL=f"redis://127.0.0.1:{port}/0",
        )
        assert status == 0, lines
        password = started_redis(checkout, port)
        info = redis_reply(port, "INFO server", password=password)
        (pid,) = re.findall(r"^process_id:(\d+)", info, re.MULTILINE)
        user = redis_user()
        assert user is not None
        assert Path(f"/proc/{pid}").stat().st_uid == user.pw_uid
    finally:
        shut_down(checkout, port, lines)


@needs_redis_server
def test_scripts_test_hands_its_redis_to_pytest_and_stops_it_after(
    checkout: Path, tmp_path: Path
) -> None:
    port = free_port()
    status, stderr, calls = run(
        checkout,
        "test",
        path=path_without(tmp_path),
        STAND_IN_UID="1000",
        MONGARS_TEST_SERVICES="yes",
        MONGARS_TEST_POSTGRES_URL="postgresql://db.example/test",
        MONGARS_TEST_REDIS_URL=f"redis://127.0.0.1:{port}/0",
    )
    assert status == 0, stderr
    (handed,) = [call for call in calls if call.startswith("redis url: ")]
    match = re.fullmatch(rf"redis url: redis://:([0-9a-f]{{32}})@127\.0\.0\.1:{port}/0", handed)
    assert match, handed
    assert match[1] not in stderr
    assert f"redis: stopped the redis-server on 127.0.0.1:{port}" in stderr
    assert redis_command(port, "PING") == ""  # nothing listens any more


def redis_reply(port: int, command: str, *, password: str = "") -> str:
    """Send one inline command (after AUTH with ``password``) to the Redis on ``port``;
    its whole reply ("" if none)."""
    commands = ([f"AUTH {password}"] if password else []) + [command]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
            connection.sendall("".join(f"{line}\r\n" for line in commands).encode())
            reader = connection.makefile("rb")
            if password:
                reader.readline()
            first = reader.readline()
            if not first.startswith(b"$"):
                return first.decode().strip()
            return reader.read(int(first[1:])).decode()
    except OSError:
        return ""


def redis_command(port: int, command: str, *, password: str = "") -> str:
    """The first line of the reply of the Redis on ``port`` to ``command``."""
    lines = redis_reply(port, command, password=password).splitlines()
    return lines[0].strip() if lines else ""


def test_a_redis_on_another_machine_and_services_no_are_left_alone(
    checkout: Path, tmp_path: Path
) -> None:
    path = path_without(tmp_path, "redis-server", "redis-cli")
    remote = "redis://cache.example:6379/0"
    _, lines, unavailable, calls = bring_up(
        checkout, "redis", path=path, uid=0, MONGARS_TEST_REDIS_URL=remote
    )
    assert unavailable == "" and calls == []
    assert lines[0].endswith("redis: at cache.example (MONGARS_TEST_REDIS_URL), not managed here")
    _, lines, unavailable, calls = bring_up(
        checkout, "redis", path=path, uid=0, MONGARS_TEST_SERVICES="no"
    )
    assert unavailable == "(unset)" and calls == []
    assert lines == ["[test   0s] MONGARS_TEST_SERVICES=no: not starting or installing redis"]


def test_scripts_test_hands_the_reasons_to_pytest(checkout: Path, tmp_path: Path) -> None:
    path = path_without(tmp_path, "redis-server", "redis-cli")
    status, stderr, calls = run(
        checkout,
        "test",
        path=path,
        STAND_IN_UID="1000",
        MONGARS_TEST_SERVICES="yes",
        MONGARS_TEST_REDIS_URL=closed_redis_url(),
    )
    assert status == 0, stderr
    assert "redis: not available (not installed and not root)" in stderr
    (handed,) = [call for call in calls if call.startswith("unavailable: ")]
    assert "redis=not installed and not root" in handed.removeprefix("unavailable: ").split(";")
    assert calls[-1] == "pytest "


NEEDS_REDIS = """
def test_needs_redis(redis_url):
    pass
"""


@pytest.mark.parametrize(
    ("unavailable", "outcome", "says"),
    [
        (
            "postgres=not installed and not root;redis=not installed and not root",
            "1 skipped",
            "needs the Redis server at {url}: redis is not available (not installed and not root)",
        ),
        ("", "1 error", "needs the Redis server at {url}: not reachable in CI"),
    ],
)
def test_under_ci_a_service_scripts_test_reported_skips_with_its_reason_others_fail(
    tmp_path: Path, unavailable: str, outcome: str, says: str
) -> None:
    (tmp_path / "test_needs_redis.py").write_text(NEEDS_REDIS)
    url = closed_redis_url()
    pytest_command = [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-rsE"]
    result = subprocess.run(
        [*pytest_command, "-p", "no:cacheprovider", "-c", str(ROOT / "pyproject.toml"), "."],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={
            **without_test_settings(os.environ),
            "PYTHONPATH": str(ROOT),
            "CI": "true",
            "MONGARS_TEST_REDIS_URL": url,
            "MONGARS_TEST_UNAVAILABLE": unavailable,
        },
    )
    assert outcome in result.stdout, result.stdout + result.stderr
    assert says.format(url=url) in result.stdout


def test_a_redis_url_with_a_port_that_could_run_commands_is_refused(
    checkout: Path, tmp_path: Path
) -> None:
    path = path_without(tmp_path, "redis-server", "redis-cli")
    url = "redis://127.0.0.1:63$(touch pwned)79/0"
    _, lines, unavailable, calls = bring_up(
        checkout, "redis", path=path, uid=0, MONGARS_TEST_REDIS_URL=url
    )
    reason = "MONGARS_TEST_REDIS_URL has a port that is not a number from 1 to 65535"
    assert unavailable == f"redis={reason}"
    assert calls == [] and not (checkout / "pwned").exists()
    assert len(lines) == 1, lines
