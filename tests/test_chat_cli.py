"""``mongars chat`` as a user types it: a real pseudo-terminal, a real subprocess, a
stand-in LLM installed as a real plugin distribution, and a real ``mongars serve``."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mongars_core.settings import Settings
from mongars_core.storage.store import Store
from mongars_core.types import HistoryTurn
from tests.conftest import run_mongars
from tests.test_cli import assert_one_line_error

STANDIN = '''
"""A stand-in LLM: echoes the message word by word; slowly when it says "slowly"."""

import asyncio
import os

from mongars_core import hookimpl


class SlowEcho:
    async def generate(self, request):
        return "".join([delta async for delta in self.stream(request)])

    async def stream(self, request):
        message = request.messages[-1].content
        words = f"You said: {message}".split(" ")
        slow = "slowly" in message
        if slow:
            words += ["la"] * 300
        for index, word in enumerate(words):
            if slow:
                await asyncio.sleep(0.05)
            yield word if index == 0 else " " + word


@hookimpl
def mongars_register_llm_backends(register, settings):
    register("standin", SlowEcho())


@hookimpl
def mongars_startup(services):
    # Which processes assembled an assistant (the stand-in's "model load").
    with open(os.environ["STANDIN_STARTED"], "a") as marker:
        marker.write(f"{os.getpid()}\\n")
'''

# The child makes the pseudo-terminal its controlling terminal, so Ctrl-C
# (a \x03 typed on it) sends SIGINT, as in a real terminal.
CONTROLLING_TTY = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|[\x01\x02]")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The stand-in installed as a distribution with a ``mongars`` entry point."""
    site = tmp_path / "site"
    info = site / "mongars_standin-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "mongars_standin.py").write_text(textwrap.dedent(STANDIN))
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mongars-standin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[mongars]\nstandin = mongars_standin\n")
    base = {k: v for k, v in os.environ.items() if not k.startswith("MONGARS_")}
    base.update(
        PYTHONPATH=str(site),
        TERM="xterm",
        MONGARS_DATA_DIR=str(tmp_path / "data"),
        MONGARS_CACHE_DIR=str(tmp_path / "cache"),
        MONGARS_MEMORY__EMBEDDER="none",
        MONGARS_LLM__BACKEND="standin",
        MONGARS_LOAD_PLUGINS="memory,standin,server",
        STANDIN_STARTED=str(tmp_path / "started"),
    )
    return base


def started(env: dict[str, str]) -> list[int]:
    """The pids of the processes that assembled an assistant."""
    marker = Path(env["STANDIN_STARTED"])
    return [int(pid) for pid in marker.read_text().split()] if marker.exists() else []


def stored(env: dict[str, str], user: str) -> tuple[list[HistoryTurn], list[str]]:
    """``user``'s turns (oldest first) and memories, read from the data dir's database."""

    async def read() -> tuple[list[HistoryTurn], list[str]]:
        settings = Settings(data_dir=Path(env["MONGARS_DATA_DIR"]))
        store = await Store.open(settings.resolved_database_url())
        try:
            turns = await store.history(user, 100)
            memories = [record.text for record in await store.list_memories(user)]
        finally:
            await store.close()
        return list(reversed(turns)), memories

    return asyncio.run(read())


class Terminal:
    """``mongars ARGS`` on a pseudo-terminal: type keys, wait for text on the screen."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))
        self.process = subprocess.Popen(
            [sys.executable, "-c", CONTROLLING_TTY, "-m", "mongars_core", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self.fd = master
        self.screen = ""  # everything shown so far, without colours
        self.seen = 0  # how much of it expect() has consumed

    def send(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def expect(self, text: str, timeout: float = 60) -> str:
        """Wait for ``text``; return what was shown before it since the last expect."""
        deadline = time.monotonic() + timeout
        while (found := self.screen.find(text, self.seen)) < 0:
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                raise AssertionError(f"{text!r} never came; the screen:\n{self.screen}")
        before = self.screen[self.seen : found]
        self.seen = found + len(text)
        return before

    def wait(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        return self.process.wait(timeout=1)

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], min(timeout, 0.5))
        if not ready:
            return self.process.poll() is None
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # the child closed the terminal
            return False
        self.screen += ANSI.sub("", data.decode("utf-8", "replace")).replace("\r", "")
        return bool(data)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.fd)


@pytest.fixture
def terminal(env: dict[str, str]) -> Iterator[Any]:
    opened: list[Terminal] = []

    def start(*args: str) -> Terminal:
        opened.append(Terminal(*args, env=env))
        return opened[-1]

    yield start
    for one in opened:
        one.close()


def test_arrow_keys_edit_the_line_and_up_recalls_the_previous_one(
    terminal: Any, env: dict[str, str]
) -> None:
    chat = terminal("chat", "--user", "alice")
    chat.expect("you>")
    chat.send("helo\x1b[Dl\r")  # left arrow, then the missing "l"
    assert "You said: hello" in chat.expect("you>")
    chat.send("\x1b[A\r")  # up arrow: the previous line again
    assert "You said: hello" in chat.expect("you>")
    chat.send("\x04")
    assert chat.wait() == 0
    turns, _ = stored(env, "alice")
    assert [turn.message for turn in turns] == ["hello", "hello"]
    history = Path(env["MONGARS_DATA_DIR"]) / "chat_history"
    assert "hello" in history.read_text()
    assert history.stat().st_mode & 0o777 == 0o600


def test_history_is_recalled_in_the_next_chat(terminal: Any, env: dict[str, str]) -> None:
    first = terminal("chat", "--user", "alice")
    first.expect("you>")
    first.send("remember this line\r")
    first.expect("you>")
    first.send("/exit\r")
    assert first.wait() == 0
    second = terminal("chat", "--user", "alice")
    second.expect("you>")
    second.send("\x1b[A\x1b[A\r")  # "/exit", then the line before it
    assert "You said: remember this line" in second.expect("you>")


def test_help_lists_the_commands_and_is_neither_sent_nor_stored(
    terminal: Any, env: dict[str, str]
) -> None:
    chat = terminal("chat", "--user", "alice")
    chat.expect("you>")
    chat.send("/help\r")
    shown = chat.expect("you>")
    for command in ("/help", "/new", "/session", "/memories", "/exit"):
        assert command in shown
    assert "You said" not in shown
    chat.send("/nope\r")
    assert "unknown command /nope" in chat.expect("you>")
    chat.send("/exit\r")
    assert chat.wait() == 0
    assert stored(env, "alice") == ([], [])


def test_new_starts_another_session_and_session_switches(
    terminal: Any, env: dict[str, str]
) -> None:
    chat = terminal("chat", "--user", "alice")
    chat.expect("you>")
    chat.send("My dog is called Rex\r")
    chat.expect("you>")
    chat.send("/new\r")
    new_session = re.search(r"new session (\S+)", chat.expect("you>"))
    assert new_session is not None
    chat.send("second\r")
    chat.expect("you>")
    chat.send("/session tuesday\r")
    chat.expect("you>")
    chat.send("third\r")
    chat.expect("you>")
    chat.send("/session a/b\r")
    assert "invalid session id 'a/b'" in chat.expect("you>")
    chat.send("/memories\r")
    assert "My dog is called Rex" in chat.expect("you>")
    chat.send("\x04")
    assert chat.wait() == 0
    turns, _ = stored(env, "alice")
    assert [(turn.message, turn.session_id) for turn in turns] == [
        ("My dog is called Rex", "cli"),
        ("second", new_session.group(1)),
        ("third", "tuesday"),
    ]


def test_ctrl_c_stops_a_streaming_reply_and_returns_to_the_prompt(
    terminal: Any, env: dict[str, str]
) -> None:
    chat = terminal("chat", "--user", "alice")
    chat.expect("you>")
    chat.send("tell me slowly\r")
    chat.expect("You said: tell me slowly la")  # streaming has begun
    chat.send("\x03")
    assert "stopped" in chat.expect("you>", timeout=10)
    chat.send("quick one\r")
    assert "You said: quick one" in chat.expect("you>")
    chat.send("\x04")
    assert chat.wait() == 0
    turns, _ = stored(env, "alice")
    assert [turn.message for turn in turns] == ["quick one"]


def test_ctrl_c_clears_a_typed_line_and_quits_at_an_empty_prompt(
    terminal: Any, env: dict[str, str]
) -> None:
    chat = terminal("chat", "--user", "alice")
    chat.expect("you>")
    chat.send("half a thought")
    chat.expect("half a thought")
    chat.send("\x03")
    chat.expect("you>")
    assert chat.process.poll() is None
    # The cleared line is not in the history: Up and Enter send nothing.
    chat.send("\x1b[A\r")
    chat.expect("you>")
    chat.send("\x03")
    assert chat.wait() == 130
    assert stored(env, "alice") == ([], [])


@pytest.mark.parametrize(
    ("args", "extra_env", "text"),
    [
        (["chat", "--message", ""], {}, "the message is empty"),
        (["chat", "--message", "x" * 50], {"MONGARS_MAX_MESSAGE_CHARS": "10"}, "limit is 10"),
        (["chat", "--user", "a b", "--message", "hi"], {}, "invalid user id 'a b'"),
        (["chat", "--session", "a/b", "--message", "hi"], {}, "invalid session id 'a/b'"),
        (["chat", "--user", "a b"], {}, "invalid user id 'a b'"),
        (["chat", "--session", "a/b"], {}, "invalid session id 'a/b'"),
    ],
)
def test_bad_input_is_refused_before_the_model_loads(
    env: dict[str, str], args: list[str], extra_env: dict[str, str], text: str
) -> None:
    result = run_mongars(*args, env={**env, **extra_env}, stdin="hello\n")
    assert_one_line_error(result, text)
    assert started(env) == []


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def served(env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real ``mongars serve`` on a free loopback port, stand-in backend, same data dir."""
    port = _free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "mongars_core", "serve", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    record = Path(env["MONGARS_DATA_DIR"]) / "server.json"
    deadline = time.monotonic() + 60
    while not (record.exists() and _answers(f"http://127.0.0.1:{port}/healthz")):
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"the server did not start:\n{log.read_text()}"
        time.sleep(0.1)
    assert process.poll() is None, log.read_text()
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)


def test_a_one_shot_message_uses_the_running_server(
    env: dict[str, str], served: subprocess.Popen[bytes]
) -> None:
    record_file = Path(env["MONGARS_DATA_DIR"]) / "server.json"
    record = json.loads(record_file.read_text())
    assert record["pid"] == served.pid and record["url"].startswith("http://127.0.0.1:")
    assert record_file.stat().st_mode & 0o777 == 0o600

    result = run_mongars("chat", "--user", "alice", "--message", "hello there", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "monGARS> You said: hello there"
    assert result.stderr == ""
    as_json = run_mongars("chat", "-u", "alice", "-s", "s1", "-m", "and again", "--json", env=env)
    assert as_json.returncode == 0, as_json.stderr
    reply = json.loads(as_json.stdout)
    assert (reply["user_id"], reply["session_id"], reply["text"]) == (
        "alice",
        "s1",
        "You said: and again",
    )
    assert started(env) == [served.pid]  # the CLI never assembled an assistant itself

    # The turns belong to the library user alice, as in-process turns do.
    in_process = run_mongars("chat", "-u", "alice", "-m", "third", "--no-server", "--json", env=env)
    assert in_process.returncode == 0, in_process.stderr
    assert json.loads(in_process.stdout).keys() == reply.keys()
    assert len(started(env)) == 2
    served.send_signal(signal.SIGINT)
    served.wait(timeout=30)
    assert not record_file.exists()
    turns, _ = stored(env, "alice")
    assert [turn.message for turn in turns] == ["hello there", "and again", "third"]


def test_a_server_error_is_one_line(env: dict[str, str], served: subprocess.Popen[bytes]) -> None:
    result = run_mongars("chat", "--backend", "nope", "--message", "hi", env=env)
    assert_one_line_error(result, "no LLM backend named 'nope'")
    assert started(env) == [served.pid]


@pytest.mark.parametrize("record", ["none", "dead pid", "closed port"])
def test_without_a_reachable_server_the_turn_runs_in_process(
    env: dict[str, str], record: str
) -> None:
    data = Path(env["MONGARS_DATA_DIR"])
    data.mkdir(parents=True)
    if record != "none":
        dead = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"],
            capture_output=True,
            text=True,
            check=True,
        )
        pid = int(dead.stdout) if record == "dead pid" else os.getpid()
        url = f"http://127.0.0.1:{_free_port()}"
        (data / "server.json").write_text(json.dumps({"url": url, "pid": pid}))
        (data / "server-secret").write_text("s" * 48)
    result = run_mongars("chat", "--user", "alice", "--message", "hello", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "monGARS> You said: hello"
    if record == "closed port":
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "running in-process" in lines[0], result.stderr
    else:
        assert result.stderr == ""
    assert len(started(env)) == 1


def test_a_role_is_answered_in_process_by_that_roles_model(
    env: dict[str, str], served: subprocess.Popen[bytes]
) -> None:
    # What `mongars models add FILE --role coding` writes; the running server started without it.
    roles = Path(env["MONGARS_DATA_DIR"]) / "model_roles.json"
    roles.write_text(json.dumps({"coding": [{"backend": "standin", "model": "my-coder"}]}))

    result = run_mongars("chat", "-u", "alice", "-m", "hi", "--role", "coding", "--json", env=env)
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert (reply["backend"], reply["model"]) == ("standin", "my-coder")
    assert len(started(env)) == 2  # in this process, not through the server

    unknown = run_mongars("chat", "-u", "alice", "-m", "hi", "--role", "drawing", "--json", env=env)
    assert unknown.returncode == 0, unknown.stderr
    assert "no endpoints are set for the role 'drawing'" in unknown.stderr
    assert json.loads(unknown.stdout)["model"] is None
