"""``mongars serve``, ``mongars users ...`` and ``mongars keys ...``."""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from mongars_core.assembly import build_host
from mongars_core.capabilities import Fetchable, Progress, ReportsProgress, has_ability
from mongars_core.cli import _command, _settings, fail, printable, progress_reporter
from mongars_core.errors import MissingDependencyError, MongarsError
from mongars_core.local_server import advertise, advertised_url
from mongars_core.settings import Settings
from mongars_core.storage.store import Store
from mongars_server.settings import SERVER

if TYPE_CHECKING:
    from mongars_core.storage.models import AccountRecord
    from mongars_server.accounts import AccountStore

out = Console()
err = Console(stderr=True)

serve_app = typer.Typer(help="Run the HTTP server.")
users_app = typer.Typer(help="Server accounts.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys for the OpenAI-compatible API.", no_args_is_help=True)

USERNAME_HELP = "1-150 letters, digits, '_' or '-'."


@serve_app.callback(invoke_without_command=True)
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    workers: Annotated[int | None, typer.Option(help="Server processes.")] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Folder for the database and secrets.")
    ] = None,
    reload: Annotated[
        bool, typer.Option(help="Restart when the code changes (development).")
    ] = False,
) -> None:
    """Serve the API, the websocket and the web console (default: 127.0.0.1:8000)."""
    # Options become environment variables: worker processes build their own settings.
    overrides = {
        "MONGARS_SERVER__HOST": host,
        "MONGARS_SERVER__PORT": None if port is None else str(port),
        "MONGARS_SERVER__WORKERS": None if workers is None else str(workers),
        "MONGARS_DATA_DIR": None if data_dir is None else str(data_dir.resolve()),
    }
    os.environ.update({name: value for name, value in overrides.items() if value is not None})
    settings = _settings()
    try:
        server = settings.section(SERVER)
    except MongarsError as exc:
        raise fail(str(exc)) from None
    if server.workers > 1 and settings.redis_url is None:
        raise fail(
            "more than one worker needs MONGARS_REDIS_URL: tickets, rate limits and "
            "websocket events must be shared between the processes"
        )
    try:
        import uvicorn  # noqa: F401  (the server extra)

        from mongars_server import startup
        from mongars_server.app import create_app
    except ImportError as exc:
        raise fail(str(MissingDependencyError(exc.name or "fastapi", "server"))) from None
    url = advertised_url(server.host, server.port)
    banner = startup.url_of(server.host, server.port)
    options: dict[str, Any] = {"host": server.host, "port": server.port, "log_level": "info"}
    options.update(startup.uvicorn_options(server))
    try:
        if server.workers > 1 or reload:
            _serve_in_workers(settings, url, banner, reload, options)
            return
        # The port first: a second `mongars serve` says it is taken before loading anything.
        with startup.bind(server.host, server.port) as sock, ExitStack() as running:
            _say_loading()
            asyncio.run(_prepare_model(settings))
            app = create_app(settings)

            def started() -> None:
                err.print(f"monGARS on {banner} (Ctrl-C stops it)")
                # `mongars chat` finds the running server through this record.
                try:
                    running.enter_context(advertise(settings, url))
                except OSError as exc:
                    err.print(f"warning: `mongars chat` will not find this server: {exc}")

            startup.run(app, sock, started, **options)
    except MongarsError as exc:
        raise fail(str(exc)) from None


def _serve_in_workers(
    settings: Settings, url: str, banner: str, reload: bool, options: dict[str, Any]
) -> None:
    """Several worker processes (or --reload): each builds its app; uvicorn binds the port."""
    import uvicorn

    from mongars_server import startup

    server = settings.section(SERVER)
    startup.check_port(server.host, server.port)
    _say_loading()
    asyncio.run(_prepare_model(settings))
    # Workers would each fail on a broken database: find out once, here.
    asyncio.run(startup.check_storage(settings))
    err.print(f"monGARS on {banner} (Ctrl-C stops it)")
    # `mongars chat` finds the running server through this record (mongars_core.local_server).
    with advertise(settings, url):
        uvicorn.run(
            "mongars_server.app:create_app",
            factory=True,
            workers=None if reload else server.workers,
            reload=reload,
            **options,
        )


def _say_loading() -> None:
    """On a terminal, say what the seconds before the server answers are spent on."""
    if sys.stderr.isatty():
        err.print("loading the plugins and the model (torch takes a few seconds)...")


async def _prepare_model(settings: Settings) -> None:
    """Fetch the default backend's model with progress bars, before serving."""
    host = build_host(settings)
    backend = host.llm_backends().get(settings.llm.backend)
    if not has_ability(backend, Fetchable):
        return
    if has_ability(backend, ReportsProgress):
        reporter = progress_reporter() if sys.stderr.isatty() else _progress_lines()
        cast(ReportsProgress, backend).progress = reporter
    await cast(Fetchable, backend).fetch()


def _progress_lines() -> Progress:
    """Model progress as one line per stage when stderr is not a terminal (a log, CI)."""
    began: dict[str, float] = {}
    finished: set[str] = set()

    def report(stage: str, done: int, total: int | None) -> None:
        if stage in finished:
            return
        if stage not in began:
            began[stage] = time.monotonic()
            size = f" ({total / 1e6:.1f} MB)" if total and total > 10_000 else ""
            err.print(f"model: {stage}{size}...", highlight=False)
        if total is not None and done >= total:
            finished.add(stage)
            seconds = time.monotonic() - began[stage]
            err.print(f"model: {stage} done in {seconds:.0f} s", highlight=False)

    return report


@asynccontextmanager
async def _accounts() -> AsyncIterator[AccountStore]:
    from mongars_server.accounts import AccountStore

    settings = _settings()
    store = await Store.open(settings.resolved_database_url())
    try:
        yield AccountStore(store)
    finally:
        await store.close()


def _read_password(given: str | None) -> str:
    if given is not None:
        return given
    if not sys.stdin.isatty():
        line = sys.stdin.readline().rstrip("\n")
        if not line:
            raise fail("no password given on standard input")
        return line
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise fail("the passwords differ")
    return first


def _read_new_password(given: str | None) -> str | None:
    """An optional new password: ``--password``, a line on standard input, or typed in
    (Enter keeps the current one)."""
    if given is not None:
        return given
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n") or None
    first = getpass.getpass("new password (Enter keeps the current one): ")
    if first and first != getpass.getpass("again: "):
        raise fail("the passwords differ")
    return first or None


def _check_credentials(username: str, password: str) -> None:
    from mongars_server.routes.auth import Registration

    try:
        Registration(username=username, password=password)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'password'}: "
            + e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        )
        raise fail(f"invalid account: {printable(problems)}") from None


def _described(account: AccountRecord) -> str:
    """``alice (created 2026-12-01 08:30 UTC, registered itself over HTTP)``."""
    from mongars_server.accounts import OPERATOR

    when = f"{account.created_at:%Y-%m-%d %H:%M %Z}".strip()
    by = account.created_by
    origin = (
        ", registered itself over HTTP"
        if by is None
        else ", created by an operator"
        if by == OPERATOR
        else f", created by {printable(by)}"
    )
    admin = ", an administrator" if account.is_admin else ""
    return f"{printable(account.username)} (created {when}{origin}{admin})"


async def _forget_data(user_id: str) -> None:
    """Everything stored of ``user_id``, with the plugins' own (``Assistant.forget_user``);
    a failure is raised, before the account is deleted."""
    from mongars_core.pipeline import Assistant

    async with await Assistant.from_settings(_settings()) as assistant:
        await assistant.store.ensure_user(user_id)  # no turn yet, documents maybe
        await assistant.forget_user(user_id)


async def _revoke_sockets(user_id: str, reason: str) -> None:
    """Close the account's open websockets in running servers sharing Redis. Without
    Redis, a server refuses them at their next turn (it re-checks the account)."""
    settings = _settings()
    from mongars_core.assembly import connect_redis
    from mongars_server.events import EventHub

    redis = connect_redis(settings)
    if redis is None:
        return
    try:
        hub = EventHub(settings.section(SERVER).ws_queue_size, redis, None, settings.redis_prefix())
        await hub.revoke(user_id, reason)
    finally:
        await redis.aclose()


@users_app.command("create")
@_command
async def create_user(
    username: Annotated[str, typer.Argument(help=USERNAME_HELP)],
    password: Annotated[
        str | None,
        typer.Option(help="The password; default: asked for (or read from standard input)."),
    ] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Make it an administrator.")] = False,
    data_of: Annotated[
        str | None,
        typer.Option(
            "--data-of",
            help="Give the account this library user's conversations and memories "
            "(`mongars chat --user NAME`); refused when another account has them.",
        ),
    ] = None,
) -> None:
    """Create an account (empty, unless --data-of gives it a library user's data)."""
    from mongars_server.accounts import OPERATOR

    async with _accounts() as accounts:
        existing = await accounts.get(username)
        if existing is not None:
            raise fail(f"the account {_described(existing)} already exists")
        secret = _read_password(password)
        _check_credentials(username, secret)
        record = await accounts.create(
            username, secret, is_admin=admin, created_by=OPERATOR, data_of=data_of
        )
    role = "administrator" if admin else "account"
    owns = f" with the data of {printable(data_of)}" if data_of else ""
    out.print(f"created {role} {printable(record.username)}{owns}")


@users_app.command("create-admin")
@_command
async def create_admin(
    username: Annotated[str, typer.Argument(help=USERNAME_HELP)],
    password: Annotated[
        str | None,
        typer.Option(help="The password; default: asked for (or read from standard input)."),
    ] = None,
    promote: Annotated[
        bool,
        typer.Option(
            "--promote",
            help="The account exists: make it an administrator (and set the password, "
            "when one is given, which ends its sessions).",
        ),
    ] = False,
) -> None:
    """Create an administrator account; with --promote, make an existing account one."""
    from mongars_server.accounts import OPERATOR

    async with _accounts() as accounts:
        existing = await accounts.get(username)
        if existing is not None:
            if not promote:
                raise fail(
                    f"the account {_described(existing)} already exists: pass --promote "
                    "to make it an administrator"
                )
            secret = _read_new_password(password)
            if secret is not None:
                _check_credentials(existing.username, secret)
                await accounts.change_password(existing.username, secret)
            await accounts.set_admin(existing.username, True)
            if secret is not None:
                await _revoke_sockets(existing.user_id, "the password changed: log in again")
            done = " and set its password (its sessions ended)" if secret is not None else ""
            out.print(f"made {_described(existing)} an administrator{done}")
            return
        if promote:
            raise fail(f"there is no account {printable(username)!r} to promote")
        secret = _read_password(password)
        _check_credentials(username, secret)
        record = await accounts.create(username, secret, is_admin=True, created_by=OPERATOR)
        out.print(f"created administrator {printable(record.username)}")


@users_app.command("link")
@_command
async def link_user(
    username: Annotated[str, typer.Argument(help="The account.")],
    library_user: Annotated[
        str,
        typer.Argument(help="The library user (`mongars chat --user NAME`) whose data it gets."),
    ],
) -> None:
    """Give an account a library user's conversations and memories.

    Refused when another account has that data, and when the account already has
    conversations or memories of its own. The account's sessions end.
    """
    async with _accounts() as accounts:
        try:
            account = await accounts.link(username, library_user)
        except LookupError:
            raise fail(f"there is no account {printable(username)!r}") from None
    out.print(f"{printable(account.username)} now has the data of {printable(library_user)}")


@users_app.command("delete")
@_command
async def delete_user(
    username: Annotated[str, typer.Argument(help="The account.")],
    keep_data: Annotated[
        bool,
        typer.Option(
            "--keep-data",
            help="Keep its conversations and memories (as a library user that "
            "`mongars users link` can give to an account).",
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Delete even the last administrator.")
    ] = False,
) -> None:
    """Delete an account, its API keys and (unless --keep-data) its data. The last
    administrator is kept unless --force."""
    from mongars_server.accounts import LastAdministratorError

    async with _accounts() as accounts:
        account = await accounts.get(username)
        if account is None:
            raise fail(f"there is no account {printable(username)!r}")
        what = "" if keep_data else " and its conversations, memories and plugin state"
        if not yes:
            if not sys.stdin.isatty():
                raise fail("deleting needs --yes when standard input is not a terminal")
            if not typer.confirm(f"delete {_described(account)}, its API keys{what}?"):
                raise typer.Exit(1)
        try:
            await accounts.check_deletable(account.username, allow_last_admin=force)
            if not keep_data:  # as `mongars forget`: documents, adapters learnt from it...
                await _forget_data(account.user_id)
            await accounts.delete(account.username, keep_data=keep_data, allow_last_admin=force)
        except LastAdministratorError as exc:
            raise fail(f"{exc}, or pass --force") from None
        await _revoke_sockets(account.user_id, "the account was deleted")
    kept = f" (its data stays under {account.user_id})" if keep_data else ""
    out.print(f"deleted {printable(account.username)}{kept}")


@users_app.command("list")
@_command
async def list_users() -> None:
    """List the server's accounts, with the id that owns each one's data."""
    async with _accounts() as accounts:
        records = await accounts.list_accounts(0, 10_000)
    table = Table("username", "admin", "created", "data id")
    for record in records:
        table.add_row(
            record.username,
            "yes" if record.is_admin else "",
            f"{record.created_at:%Y-%m-%d %H:%M}",
            record.user_id,
        )
    out.print(table)


@keys_app.command("create")
@_command
async def create_key(
    user: Annotated[str, typer.Option("--user", "-u", help="Whose key.")],
    name: Annotated[str, typer.Option(help="What the key is for.")] = "cli",
) -> None:
    """Create an API key; it is printed once and cannot be shown again."""
    async with _accounts() as accounts:
        if await accounts.get(user) is None:
            raise fail(f"no account {printable(user)!r}")
        record, key = await accounts.create_key(user, name)
    err.print(f"key {record.id} for {user} (shown once, keep it safe):")
    sys.stdout.write(key + "\n")


@keys_app.command("list")
@_command
async def list_keys(user: Annotated[str, typer.Option("--user", "-u", help="Whose keys.")]) -> None:
    """List a user's API keys (prefixes only)."""
    async with _accounts() as accounts:
        records = await accounts.list_keys(user)
    table = Table("id", "name", "prefix", "created", "last used", "revoked")
    for r in records:
        table.add_row(
            str(r.id),
            printable(r.name),
            r.prefix + "…",
            f"{r.created_at:%Y-%m-%d %H:%M}",
            f"{r.last_used_at:%Y-%m-%d %H:%M}" if r.last_used_at else "",
            f"{r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else "",
        )
    out.print(table)


@keys_app.command("revoke")
@_command
async def revoke_key(
    key_id: Annotated[int, typer.Argument(help="The key's id (see `mongars keys list`).")],
    user: Annotated[str, typer.Option("--user", "-u", help="Whose key.")],
) -> None:
    """Revoke an API key at once."""
    async with _accounts() as accounts:
        if not await accounts.revoke_key(user, key_id):
            raise fail(f"{printable(user)} has no live API key {key_id}")
    out.print(f"revoked key {key_id}")
