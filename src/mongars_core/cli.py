"""The ``mongars`` command: chat, plugins, db, models, memories, history.

Every :class:`~mongars_core.errors.MongarsError` ends the command with one line
on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mongars_core.adapters import AdapterRegistry
from mongars_core.assembly import build_host, build_router
from mongars_core.capabilities import Progress
from mongars_core.errors import ConfigurationError, MongarsError
from mongars_core.local_engine import LocalEngine
from mongars_core.pipeline import Assistant
from mongars_core.settings import Settings, read_settings
from mongars_core.storage.store import Store

app = typer.Typer(
    name="mongars",
    help="monGARS: a self-hosted, privacy-first conversational assistant.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
memories_app = typer.Typer(help="A user's long-term memories.", no_args_is_help=True)
adapters_app = typer.Typer(
    help="LoRA adapters: register, activate, roll back.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(memories_app, name="memories")
history_app = typer.Typer(
    help="A user's history: import a file, export everything.", no_args_is_help=True
)
app.add_typer(history_app, name="history")
app.add_typer(adapters_app, name="adapters")

out = Console()
err = Console(stderr=True, soft_wrap=True)

T = TypeVar("T")

UserOption = Annotated[str, typer.Option("--user", "-u", help="Who is talking.")]


_CONTROL = {
    code: f"\\x{code:02x}" for code in (*range(32), *range(127, 160)) if code not in (9, 10)
}


def printable(text: str) -> str:
    """``text`` with Rich markup escaped, and undecodable bytes and control characters
    (but tab and newline) shown as escapes, so no text can drive the terminal."""
    safe = text.encode("utf-8", "backslashreplace").decode("utf-8").translate(_CONTROL)
    return escape(safe)


def fail(message: str) -> typer.Exit:
    """Print one error line on stderr; raise the returned exit (status 1)."""
    err.print(f"[bold red]error:[/] {printable(message)}", highlight=False)
    return typer.Exit(1)


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coroutine)
    except MongarsError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        err.print()
        raise typer.Exit(130) from None


def _command(function: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Turn an async command into a sync one with the CLI's error handling."""

    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        _run(function(*args, **kwargs))  # type: ignore[arg-type]

    return wrapper


def _settings() -> Settings:
    try:
        return read_settings()
    except ConfigurationError as exc:
        raise fail(str(exc)) from None


async_command = _command
"""For plugins' commands: an async command with the CLI's error handling."""
cli_settings = _settings
"""For plugins' commands: the settings, or the CLI's one-line error."""


@app.callback()
def main_callback(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("%(levelname)s %(name)s: %(message)s") if verbose else _OneLineFormatter()
    )
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])


class _OneLineFormatter(logging.Formatter):
    """Log lines without tracebacks: the CLI shows those only with --verbose."""

    def format(self, record: logging.LogRecord) -> str:
        lines = record.getMessage().splitlines()
        return f"{record.levelname} {record.name}: {lines[0] if lines else ''}"


@app.command()
def chat(
    user: UserOption = "me",
    message: Annotated[
        str | None, typer.Option("--message", "-m", help="Send one message and exit.")
    ] = None,
    session: Annotated[str | None, typer.Option("--session", "-s", help="Session id.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full reply as JSON.")] = False,
    backend: Annotated[str | None, typer.Option("--backend", help="LLM backend name.")] = None,
    role: Annotated[
        str | None,
        typer.Option(
            "--role",
            help="The model role that answers (`mongars models add FILE --role R` sets one); "
            "runs in this process, with the roles as they are now.",
        ),
    ] = None,
    in_process: Annotated[
        bool,
        typer.Option(
            "--no-server",
            "--local",
            help="Run the turn in this process, even when a `mongars serve` runs.",
        ),
    ] = False,
) -> None:
    """Chat with the assistant: interactive, or one turn with --message.

    A one-shot --message uses the running local server when there is one.
    """
    from mongars_core import chat_cli

    chat_cli.chat(
        user,
        message,
        session,
        as_json,
        backend,
        use_server=not in_process and role is None,
        role=role,
    )


def progress_reporter(label: str = "model") -> Progress:
    """A ``progress(stage, done, total)`` callback that draws rich progress bars on stderr,
    each named ``label: stage``.

    Totals above 10,000 are taken as bytes and shown in MB, smaller ones as steps.
    """
    from rich.progress import BarColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as ProgressBars

    bars: dict[str, Any] = {}
    state: dict[str, ProgressBars] = {}

    def amount(done: int, total: int | None) -> str:
        if total is None or total > 10_000:
            shown = f"{done / 1e6:.1f}"
            return f"{shown}/{total / 1e6:.1f} MB" if total else f"{shown} MB"
        return f"{done}/{total}"

    def report(stage: str, done: int, total: int | None) -> None:
        if "progress" not in state:
            state["progress"] = ProgressBars(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[amount]}"),
                TimeRemainingColumn(),
                console=err,
            )
            state["progress"].start()
        progress = state["progress"]
        if stage not in bars:
            bars[stage] = progress.add_task(f"{label}: {stage}", total=total, amount="")
        progress.update(bars[stage], completed=done, total=total, amount=amount(done, total))
        if total is not None and done >= total and all(task.finished for task in progress.tasks):
            progress.stop()
            state.pop("progress")
            bars.clear()

    return report


@app.command()
def plugins() -> None:
    """List the plugins that are loaded, with their versions and hooks."""
    settings = _settings()
    try:
        host = build_host(settings)
    except MongarsError as exc:
        raise fail(str(exc)) from None
    table = Table("plugin", "distribution", "version", "hooks")
    for info in host.plugin_infos():
        table.add_row(
            info.name,
            info.distribution or "-",
            info.version or "-",
            ", ".join(hook.removeprefix("mongars_") for hook in info.hooks),
        )
    out.print(table)


@app.command()
@_command
async def backends(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show every LLM endpoint by model role: breaker state and health."""
    settings = _settings()
    host = build_host(settings)
    router = build_router(host.llm_backends(), settings)
    statuses = await router.health()
    if as_json:
        sys.stdout.write(json.dumps([status.model_dump() for status in statuses], indent=2) + "\n")
        return
    table = Table("role", "endpoint", "model", "breaker", "healthy")
    for status in statuses:
        healthy = {True: "yes", False: "[red]no[/]", None: "-"}[status.healthy]
        table.add_row(status.role, status.backend, status.model or "-", status.state, healthy)
    out.print(table)
    out.print(f"registered backends: {', '.join(router.names) or 'none'}")
    if "local" in router.names:
        _, local = router.get("local")
        if isinstance(local, LocalEngine):
            out.print(f"local engine: {printable(local.describe())}")


@db_app.command("upgrade")
@_command
async def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply database migrations (SQLite is upgraded automatically at start-up)."""
    settings = _settings()
    store = Store.connect(settings.resolved_database_url())
    try:
        await store.upgrade(revision)
        out.print(f"database {store.safe_url} is at revision {await store.current_revision()}")
    finally:
        await store.close()


@memories_app.command("list")
@_command
async def memories_list(
    user: UserOption = "me",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List a user's memories."""
    async with await Assistant.from_settings(_settings()) as assistant:
        records = await assistant.list_memories(user)
    if as_json:
        rows = [
            {"id": r.id, "text": r.text, "created_at": r.created_at.isoformat()} for r in records
        ]
        sys.stdout.write(json.dumps(rows, ensure_ascii=False, indent=2) + "\n")
        return
    table = Table("id", "created", "text")
    for record in records:
        table.add_row(str(record.id), f"{record.created_at:%Y-%m-%d %H:%M}", record.text)
    out.print(table)


@memories_app.command("delete")
@_command
async def memories_delete(
    memory_id: Annotated[int | None, typer.Argument(help="The memory to delete.")] = None,
    user: UserOption = "me",
    all_memories: Annotated[bool, typer.Option("--all", help="Delete all of them.")] = False,
) -> None:
    """Delete one memory by id, or all of a user's memories with --all."""
    if (memory_id is None) == (not all_memories):
        raise fail("give a memory id or --all, not both")
    async with await Assistant.from_settings(_settings()) as assistant:
        if all_memories:
            count = await assistant.delete_memories(user)
            out.print(f"deleted {count} memories of {user}")
        else:
            assert memory_id is not None
            await assistant.delete_memory(user, memory_id)
            out.print(f"deleted memory {memory_id} of {user}")


@memories_app.command("import")
@_command
async def memories_import(
    path: Annotated[
        Path, typer.Argument(help="JSON Lines ({text, created_at?, session_id?}) or a JSON array.")
    ],
    user: UserOption = "me",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Import memories from a file as the user's, all or nothing."""
    from mongars_core.memory_import import read_items

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    items = read_items(text)
    progress = progress_reporter("memories") if err.is_terminal and not as_json else None
    async with await Assistant.from_settings(_settings()) as assistant:
        summary = await assistant.import_memories(user, items, progress=progress)
    if as_json:
        sys.stdout.write(summary.model_dump_json() + "\n")
        return
    sys.stdout.write(summary.line() + "\n")


@history_app.command("import")
@_command
async def history_import(
    path: Annotated[Path, typer.Argument(help="The file: monGARS JSONL or ChatGPT JSON.")],
    user: UserOption = "me",
    file_format: Annotated[
        str, typer.Option("--format", help="auto, mongars (JSONL) or chatgpt.")
    ] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Import a conversation history as the user's turns and memories, all or nothing."""
    from mongars_core.history_io import Format, parse_history

    if file_format not in ("auto", "mongars", "chatgpt"):
        raise fail(f"unknown format {file_format!r}: use auto, mongars or chatgpt")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror or exc}") from None
    settings = _settings()
    history = parse_history(data, settings, cast(Format, file_format))
    progress = progress_reporter("history") if err.is_terminal and not as_json else None
    async with await Assistant.from_settings(settings) as assistant:
        summary = await assistant.import_history(user, history, progress=progress)
    if as_json:
        sys.stdout.write(json.dumps(summary.as_dict(), ensure_ascii=False) + "\n")
        return
    sys.stdout.write(summary.line() + "\n")  # one line, never wrapped
    for warning in summary.warnings:
        err.print(f"[yellow]warning:[/] {printable(warning)}", highlight=False)


@history_app.command("export")
@_command
async def history_export(
    user: UserOption = "me",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here, not to stdout.")
    ] = None,
) -> None:
    """Write the user's history, memories, style profile and adapters as JSONL."""
    from mongars_core.history_io import dumps_jsonl

    async with await Assistant.from_settings(_settings()) as assistant:
        text = dumps_jsonl(await assistant.export_history(user))
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise fail(f"cannot write {output}: {exc.strerror or exc}") from None
    err.print(f"wrote {text.count(chr(10))} records to {printable(str(output))}", highlight=False)


@app.command()
@_command
async def forget(
    user: Annotated[str, typer.Option("--user", "-u", help="The user to forget.")],
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask (needed without a terminal).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Forget a user: delete their history, conversations, memories, documents, style
    profile, learning records and the adapters learnt from them. Cannot be undone
    (`mongars history export` first keeps a copy); their account, if any, stays."""
    if not yes:
        if not sys.stdin.isatty():
            raise fail(f"forgetting {user} cannot be undone: confirm with --yes")
        prompt = f"Delete everything stored of {user!r}? This cannot be undone"
        if not typer.confirm(prompt, default=False, err=True):
            err.print("nothing was deleted")
            raise typer.Exit(1)
    async with await Assistant.from_settings(_settings()) as assistant:
        summary = await assistant.forget_user(user)
    if as_json:
        sys.stdout.write(summary.model_dump_json() + "\n")
        return
    sys.stdout.write(summary.line() + "\n")


def main() -> None:
    """Entry point of the ``mongars`` script; adds the plugins' commands.

    Plugins add commands (``serve`` among them) from the settings, so a bad
    setting or a broken plugin is reported here, in one line, rather than as
    a command that seems not to exist.
    """
    try:
        settings = read_settings()
        host = build_host(settings)
        for name, command in host.commands().items():
            app.add_typer(command, name=name)
    except MongarsError as exc:
        raise SystemExit(fail(str(exc)).exit_code) from None
    app()


def _registry() -> AdapterRegistry:
    return AdapterRegistry(_settings().data_dir / "adapters")


@adapters_app.command("list")
def adapters_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """List registered adapters; the active version of each and its users are shown."""
    registry = _registry()
    adapters = registry.adapters()
    by_name: dict[str, list[str]] = {}
    for user, name in sorted(registry.users().items()):
        by_name.setdefault(name, []).append(user)
    if as_json:
        rows = [{**a.model_dump(mode="json"), "users": by_name.get(a.name, [])} for a in adapters]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table("name", "version", "base model", "sha256", "created", "active", "users")
    for adapter in adapters:
        active = registry.active(adapter.name)
        is_active = active is not None and active.version == adapter.version
        table.add_row(
            adapter.name,
            adapter.version,
            adapter.base_model,
            adapter.sha256[:12],
            f"{adapter.created_at:%Y-%m-%d %H:%M}",
            "yes" if is_active else "",
            _users_cell(by_name.get(adapter.name, []), is_active, active is None),
        )
    out.print(table)


def _users_cell(users: list[str], is_active: bool, none_active: bool) -> str:
    """Users go with a name's active version; with none active, they get the base model."""
    if not users or not (is_active or none_active):
        return ""
    return ", ".join(users) + (" (no version active)" if none_active else "")


@adapters_app.command("register")
def adapters_register(
    path: Annotated[Path, typer.Argument(help="The adapter: a file or a folder.")],
    name: Annotated[str, typer.Option(help="Adapter name.")],
    version: Annotated[str, typer.Option(help="Adapter version.")],
    base_model: Annotated[str, typer.Option(help="The model it was trained on.")],
) -> None:
    """Copy an adapter into the registry and record its checksum."""
    try:
        adapter = _registry().register(path, name=name, version=version, base_model=base_model)
    except MongarsError as exc:
        raise fail(str(exc)) from None
    out.print(f"registered {adapter.name} {adapter.version} (sha256 {adapter.sha256[:12]})")


@adapters_app.command("activate")
def adapters_activate(
    name: Annotated[str, typer.Argument(help="Adapter name.")],
    version: Annotated[str, typer.Argument(help="The version to make active.")],
) -> None:
    """Make a version the active one, after checking its files."""
    try:
        adapter = _registry().activate(name, version)
    except MongarsError as exc:
        raise fail(str(exc)) from None
    out.print(f"{adapter.name} {adapter.version} is active")


@adapters_app.command("assign")
def adapters_assign(
    name: Annotated[str, typer.Argument(help="Adapter name (its active version is used).")],
    user: Annotated[str, typer.Option("--user", help="The user whose turns it answers.")],
) -> None:
    """Answer a user's turns with an adapter's active version."""
    registry = _registry()
    try:
        registry.assign(user, name)
    except MongarsError as exc:
        raise fail(str(exc)) from None
    active = registry.active(name)
    note = f" (version {active.version})" if active else " (no version is active yet)"
    out.print(f"{user}: adapter {name}{note}")


@adapters_app.command("unassign")
def adapters_unassign(
    user: Annotated[str, typer.Option("--user", help="The user to answer with the base model.")],
) -> None:
    """Answer a user's turns with the base model again."""
    removed = _registry().unassign(user)
    out.print(f"{user}: base model" if removed else f"{user} had no adapter")


@adapters_app.command("rollback")
def adapters_rollback(
    name: Annotated[str | None, typer.Argument(help="Adapter name.")] = None,
    user: Annotated[
        str | None,
        typer.Option(
            "--user", help="Roll back this user's adapter (to the base when none was before)."
        ),
    ] = None,
) -> None:
    """Go back to the version that was active before, of an adapter or of a user's."""
    if (name is None) == (user is None):
        raise fail("name an adapter or give --user, not both")
    try:
        if user is not None:
            adapter = _registry().rollback_user(user)
            label = user
        else:
            assert name is not None
            adapter = _registry().rollback(name)
            label = name
    except MongarsError as exc:
        raise fail(str(exc)) from None
    if user is not None:
        now = f"{adapter.name} {adapter.version}" if adapter else "the base model"
        out.print(f"{label}: answered by {now}")
        return
    out.print(f"{label}: {adapter.version} is active" if adapter else f"{label}: none is active")
