"""``mongars serve``, ``mongars users ...`` and ``mongars keys ...``."""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from mongars_core.cli import _command, _settings, fail, printable, progress_reporter
from mongars_core.errors import MissingDependencyError, MongarsError
from mongars_core.plugins import PluginHost, build_plugin_manager
from mongars_core.settings import Settings
from mongars_core.storage.store import Store

if TYPE_CHECKING:
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
    server = settings.server
    if server.workers > 1 and settings.redis_url is None:
        raise fail(
            "more than one worker needs MONGARS_REDIS_URL: tickets, rate limits and "
            "websocket events must be shared between the processes"
        )
    try:
        import uvicorn

        from mongars_server.app import create_app
    except ImportError as exc:
        raise fail(str(MissingDependencyError(exc.name or "fastapi", "server"))) from None
    try:
        asyncio.run(_prepare_model(settings))
        app = create_app(settings) if server.workers == 1 and not reload else None
    except MongarsError as exc:
        raise fail(str(exc)) from None
    err.print(f"monGARS on http://{server.host}:{server.port} (Ctrl-C stops it)")
    if app is not None:
        uvicorn.run(app, host=server.host, port=server.port, log_level="info")
    else:
        uvicorn.run(
            "mongars_server.app:create_app",
            factory=True,
            host=server.host,
            port=server.port,
            workers=None if reload else server.workers,
            reload=reload,
            log_level="info",
        )


async def _prepare_model(settings: Settings) -> None:
    """Fetch the default backend's model with progress bars, before serving."""
    host = PluginHost(build_plugin_manager(settings), settings)
    backend = host.llm_backends().get(settings.llm.backend)
    fetch = getattr(backend, "fetch", None)
    if backend is None or fetch is None:
        return
    if hasattr(backend, "progress") and sys.stderr.isatty():
        backend.progress = progress_reporter()
    await fetch()


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


def _check_credentials(username: str, password: str) -> None:
    from mongars_server.routes.auth import Registration

    try:
        Registration(username=username, password=password)
    except ValidationError as exc:
        problems = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())
        raise fail(f"invalid account: {printable(problems)}") from None


@users_app.command("create-admin")
@_command
async def create_admin(
    username: Annotated[str, typer.Argument(help=USERNAME_HELP)],
    password: Annotated[
        str | None,
        typer.Option(help="The password; default: asked for (or read from standard input)."),
    ] = None,
) -> None:
    """Create an administrator account, or make an existing account one."""
    async with _accounts() as accounts:
        existing = await accounts.get(username)
        if existing is not None:
            await accounts.set_admin(username, True)
            out.print(f"{username} is now an administrator")
            return
        secret = _read_password(password)
        _check_credentials(username, secret)
        await accounts.create(username, secret, is_admin=True)
        out.print(f"created administrator {username}")


@users_app.command("list")
@_command
async def list_users() -> None:
    """List the server's accounts."""
    async with _accounts() as accounts:
        records = await accounts.list_accounts(0, 10_000)
    table = Table("username", "admin", "created")
    for record in records:
        table.add_row(
            record.username, "yes" if record.is_admin else "", f"{record.created_at:%Y-%m-%d %H:%M}"
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
