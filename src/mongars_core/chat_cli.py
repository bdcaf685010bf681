"""``mongars chat``: the terminal conversation, and one-shot turns.

Input is checked with the pipeline's own rules before anything loads. A
one-shot ``--message`` goes to the running local server when there is one
(see :mod:`mongars_core.local_server`), else runs in this process. The
interactive prompt has line editing and a history file (GNU readline, where
Python has it), slash commands, and Ctrl-C stops a streaming reply.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import typer
from rich.markup import escape

from mongars_core.capabilities import Progress, ReportsProgress, has_ability
from mongars_core.cli import _settings, err, fail, out, printable, progress_reporter
from mongars_core.errors import MongarsError, UnknownUserError
from mongars_core.local_server import (
    ServerUnreachableError,
    TurnRefusedError,
    find_server,
    local_credential,
    read_secret,
    stream_turn,
)
from mongars_core.pipeline import Assistant
from mongars_core.settings import Settings
from mongars_core.types import Reply, StreamEvent, remembered_line
from mongars_core.validation import validate_turn

HISTORY_FILE = "chat_history"
HISTORY_LENGTH = 1000
COMMANDS = {
    "/help": "this list",
    "/new": "start a new session",
    "/session [NAME]": "show the session, or switch to NAME",
    "/memories": "what monGARS remembers of you",
    "/exit": "quit (or Ctrl-D); Ctrl-C stops a reply, and quits at an empty prompt",
}


def chat(
    user: str,
    message: str | None,
    session: str | None,
    as_json: bool,
    backend: str | None,
    use_server: bool,
    role: str | None = None,
) -> None:
    """The ``chat`` command's body (its options are declared in :mod:`mongars_core.cli`).

    ``role`` runs the turns in this process, answered by that model role: a
    running server keeps the roles it read when it started."""
    settings = _settings()
    if role is not None:
        from mongars_core.model_roles import read_roles

        try:
            known = {*read_roles(settings.data_dir), *settings.llm.roles}
        except MongarsError as exc:
            raise fail(str(exc)) from None
        if role not in known:
            err.print(
                f"[yellow]note:[/] no endpoints are set for the role {printable(role)!r}; "
                f"{printable(settings.llm.backend)!r} (MONGARS_LLM__BACKEND) answers it"
            )
        settings.llm.role = role
    try:
        if message is not None:
            text = validate_turn(settings, user, message, session or "default")
        else:
            # The pipeline's id checks (and messages), before the model loads.
            validate_turn(settings, user, "-", session or "cli")
    except MongarsError as exc:
        raise fail(str(exc)) from None
    if (
        message is not None
        and use_server
        and _turn_via_server(settings, user, text, session, backend, as_json)
    ):
        return
    # The prompt is read on the main thread, between turns run by one event
    # loop: Ctrl-C cancels the turn that runs, or ends the command at the prompt.
    with asyncio.Runner() as runner:
        try:
            assistant = runner.run(Assistant.from_settings(settings))
        except MongarsError as exc:
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        try:
            _attach_progress(assistant, progress_reporter())
            if message is not None:
                runner.run(_one_turn(assistant, user, text, session, backend, as_json))
                return
            # Load the model before the first prompt rather than after the first
            # message (a first run shows the fetch's progress bars here).
            if sys.stdin.isatty():
                err.print("[dim]loading the model...[/]")
            runner.run(assistant.router.prepare(backend))
            conversation = _Conversation(
                runner, assistant, user, session or "cli", backend, as_json
            )
            conversation.run()
        except MongarsError as exc:
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            err.print()
            raise typer.Exit(130) from None
        finally:
            runner.run(assistant.aclose())


# -- one turn --------------------------------------------------------------------------


class _Printer:
    """Shows a turn's events: tokens as they come, then what the final reply adds."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.streamed: list[str] = []

    def show(self, event: StreamEvent) -> None:
        if self.as_json:
            if event.reply is not None:
                sys.stdout.write(event.reply.model_dump_json(indent=2) + "\n")
            return
        # The prefix waits for the first token, so a refused message prints only its error.
        if event.type == "token":
            if not self.streamed:
                out.print("[bold cyan]monGARS>[/] ", end="")
            self.streamed.append(event.delta)
            out.print(event.delta, end="", highlight=False, markup=False)
        elif event.reply is not None:
            self._finish(event.reply)

    def interrupted(self) -> None:
        if self.streamed:
            out.print()
        err.print("[dim](stopped)[/]")

    def _finish(self, reply: Reply) -> None:
        if self.streamed:
            out.print()
        # Reply transforms (say, a verified fact the model got wrong) change
        # the text after it streamed: show the final version too.
        if reply.text != "".join(self.streamed).strip():
            label = "monGARS (revised)>" if self.streamed else "monGARS>"
            out.print(f"[bold cyan]{label}[/] ", end="")
            out.print(reply.text, highlight=False, markup=False)
        remembered = remembered_line(reply.memories)
        if remembered is not None:
            err.print(f"[dim]{escape(printable(remembered))}[/]", highlight=False)
        for warning in reply.warnings:
            err.print(f"[yellow]warning:[/] {printable(warning)}", highlight=False)


async def _one_turn(
    assistant: Assistant,
    user: str,
    message: str,
    session: str | None,
    backend: str | None,
    as_json: bool,
    printer: _Printer | None = None,
) -> None:
    printer = printer or _Printer(as_json)
    # Ctrl-C cancels this coroutine: the cancellation unwinds the stream, which
    # stops the backend before anything of the turn is stored.
    async for event in assistant.stream(user, message, session_id=session, backend=backend):
        printer.show(event)


def _turn_via_server(
    settings: Settings,
    user: str,
    message: str,
    session: str | None,
    backend: str | None,
    as_json: bool,
) -> bool:
    """Run the turn on the running local server; ``False`` when there is none to use."""
    record = find_server(settings)
    if record is None:
        return False
    body = {"user_id": user, "message": message, "session_id": session, "backend": backend}
    secret = read_secret(settings)
    if secret is None:
        err.print(f"[yellow]note:[/] no secret of the server at {record.url}; running in-process")
        return False
    events = stream_turn(record, local_credential(secret), body, settings.llm.timeout_s + 30)
    printer = _Printer(as_json)
    try:
        try:
            first = next(events, None)
        except ServerUnreachableError as exc:
            note = f"[yellow]note:[/] {printable(str(exc))}; running in-process"
            err.print(note, highlight=False)
            return False
        except TurnRefusedError as exc:
            raise fail(str(exc)) from None
        for data in _chain(first, events):
            if data.get("type") == "error":
                raise fail(str(data.get("detail", "the server failed the turn")))
            printer.show(StreamEvent.model_validate(data))
    except (OSError, ValueError) as exc:
        raise fail(f"the server at {record.url} broke off the turn: {exc}") from None
    except KeyboardInterrupt:
        # Closing the connection stops the generation on the server.
        printer.interrupted()
        raise typer.Exit(130) from None
    finally:
        events.close()
    return True


def _chain(
    first: dict[str, Any] | None, rest: Iterator[dict[str, Any]]
) -> Iterable[dict[str, Any]]:
    if first is not None:
        yield first
    yield from rest


def _attach_progress(assistant: Assistant, progress: Progress) -> None:
    """Show model fetch/convert progress for local backends that report it."""
    for name in assistant.router.names:
        _, backend = assistant.router.get(name)
        if not has_ability(backend, ReportsProgress):
            continue
        reporter = cast(ReportsProgress, backend)
        if reporter.progress is None:
            reporter.progress = progress


# -- the conversation ------------------------------------------------------------------


@dataclass
class _Conversation:
    runner: asyncio.Runner
    assistant: Assistant
    user: str
    session: str
    backend: str | None
    as_json: bool

    def run(self) -> None:
        interactive = sys.stdin.isatty()
        editor = _LineEditor.open(self.assistant.settings.data_dir) if interactive else None
        if interactive:
            out.print("[dim]monGARS — type a message, /help for commands, Ctrl-D to quit.[/]")
        try:
            while True:
                try:
                    line = editor.read() if editor else _read_line(interactive)
                except EOFError:
                    break
                text = line.strip()
                if not text:
                    continue
                if text.startswith("/") and not text.startswith("//"):
                    if not self._command(text):
                        break
                    continue
                # '//' sends a message that begins with '/'.
                self._turn(text[1:] if text.startswith("//") else text)
        finally:
            if editor:
                editor.save()

    def _turn(self, message: str) -> None:
        printer = _Printer(self.as_json)
        try:
            text = validate_turn(self.assistant.settings, self.user, message, self.session)
            self.runner.run(
                _one_turn(
                    self.assistant,
                    self.user,
                    text,
                    self.session,
                    self.backend,
                    self.as_json,
                    printer,
                )
            )
        except MongarsError as exc:
            err.print(f"[bold red]error:[/] {printable(str(exc))}", highlight=False)
        except KeyboardInterrupt:
            # asyncio.Runner cancelled the turn: the stream closed before the
            # turn was stored, and the backend stopped generating.
            printer.interrupted()

    def _command(self, line: str) -> bool:
        """Run a slash command; ``False`` to end the conversation."""
        name, _, argument = line.partition(" ")
        argument = argument.strip()
        if name in ("/exit", "/quit"):
            return False
        if name == "/help":
            for usage, meaning in COMMANDS.items():
                out.print(f"  [bold]{usage:<16}[/] {meaning}", highlight=False)
            out.print("  [dim]start a message with // to send one that begins with /[/]")
        elif name == "/new":
            self.session = f"cli-{secrets.token_hex(4)}"
            out.print(f"new session {self.session}", highlight=False)
        elif name == "/session":
            self._switch_session(argument)
        elif name == "/memories":
            self._show_memories()
        else:
            err.print(
                f"unknown command {printable(name)}: /help lists the commands", highlight=False
            )
        return True

    def _switch_session(self, name: str) -> None:
        if not name:
            out.print(f"session {self.session}", highlight=False)
            return
        try:
            validate_turn(self.assistant.settings, self.user, "-", name)
        except MongarsError as exc:
            err.print(f"[bold red]error:[/] {printable(str(exc))}", highlight=False)
            return
        self.session = name
        out.print(f"session {name}", highlight=False)

    def _show_memories(self) -> None:
        try:
            records = self.runner.run(self.assistant.list_memories(self.user))
        except UnknownUserError:
            records = []
        if not records:
            out.print("[dim]no memories yet[/]")
        for record in records:
            out.print(f"  {record.id:>4}  {printable(record.text)}", highlight=False)


INTERRUPTED = "\x1f"
"""What readline types for Ctrl-C at the prompt, before Enter."""


@contextmanager
def _keys_not_signals() -> Iterator[None]:
    """Ctrl-C reaches the program as a key, not as SIGINT, inside the block."""
    try:
        import termios
    except ImportError:
        yield
        return
    descriptor = sys.stdin.fileno()
    try:
        saved = termios.tcgetattr(descriptor)
    except termios.error:
        yield
        return
    # No interrupt character (readline turns ISIG back on, but keeps VINTR).
    changed = list(saved)
    changed[6] = list(saved[6])
    changed[6][termios.VINTR] = b"\x00"
    termios.tcsetattr(descriptor, termios.TCSANOW, changed)
    try:
        yield
    finally:
        termios.tcsetattr(descriptor, termios.TCSANOW, saved)


def _read_line(interactive: bool) -> str:
    if interactive:
        return input("you> ")
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line


class _LineEditor:
    """The prompt with GNU readline: line editing, and history kept in the data dir (0600)."""

    def __init__(self, readline: ModuleType, path: Path) -> None:
        self.readline = readline
        self.path = path
        self.prompt = (
            "\001\x1b[1;32m\002you>\001\x1b[0m\002 " if out.color_system is not None else "you> "
        )

    @classmethod
    def open(cls, data_dir: Path) -> _LineEditor | None:
        try:
            import readline
        except ImportError:  # a Python built without it (Windows): plain input() then
            return None
        # Ctrl-C: to the end of the line, a literal INTERRUPTED, Enter (see read).
        readline.parse_and_bind(r'"\C-c": "\C-e\C-q\x1f\C-m"')
        path = Path(data_dir) / HISTORY_FILE
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
            os.chmod(path, 0o600)
            readline.read_history_file(path)
        except OSError as exc:
            err.print(f"[yellow]warning:[/] no chat history: {printable(str(exc))}")
        readline.set_history_length(HISTORY_LENGTH)
        return cls(readline, path)

    def read(self) -> str:
        """One line; Ctrl-C clears a typed line, and quits at an empty prompt.

        At the prompt Ctrl-C is a key, not a signal: the terminal has no
        interrupt character while readline reads, and readline types
        ``INTERRUPTED`` and Enter for it. A SIGINT that lands while readline
        is between two ``select`` calls is only noticed at the next key press,
        so a signal would be missed now and then.
        """
        while True:
            with _keys_not_signals():
                line = input(self.prompt)
            if not line.endswith(INTERRUPTED):
                return line
            self._forget_last(line)
            if not line[: -len(INTERRUPTED)]:
                raise KeyboardInterrupt

    def _forget_last(self, line: str) -> None:
        """Drop an interrupted line from the history (input() added it)."""
        last = self.readline.get_current_history_length()
        if last and self.readline.get_history_item(last) == line:
            self.readline.remove_history_item(last - 1)

    def save(self) -> None:
        try:
            self.readline.write_history_file(self.path)
            os.chmod(self.path, 0o600)
        except OSError as exc:
            err.print(f"[yellow]warning:[/] the chat history was not saved: {exc}")
