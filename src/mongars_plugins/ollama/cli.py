"""``mongars ollama``: list, show and pull models, see what runs, check the servers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from mongars_core.cli import err, fail, out, printable, progress_reporter
from mongars_core.errors import ConfigurationError, MongarsError
from mongars_core.settings import Settings
from mongars_plugins.ollama.backend import OllamaBackend, build_backends
from mongars_plugins.ollama.settings import OLLAMA

T = TypeVar("T")

HostOption = Annotated[
    str | None,
    typer.Option("--host", help="Only this host: its name, backend name or URL."),
]


def build_ollama_app(settings: Settings) -> typer.Typer:
    """The ``mongars ollama`` command group; hosts are read when a command runs."""
    ollama_app = typer.Typer(
        help="Ollama servers (MONGARS_OLLAMA__HOSTS): models and health.",
        no_args_is_help=True,
    )

    def backends(host: str | None) -> list[OllamaBackend]:
        found = build_backends(settings.section(OLLAMA))
        if host is None:
            return found
        chosen = [backend for backend in found if backend.host.matches(host)]
        if not chosen:
            known = ", ".join(f"{b.name} ({b.host.display_url})" for b in found) or "none"
            raise ConfigurationError(f"no Ollama host {host!r} is configured (hosts: {known})")
        return chosen

    @ollama_app.command("list")
    def list_models(host: HostOption = None) -> None:
        """List the models installed on each host."""
        table = _table("host", "model", "size", "family", "params", "quant.", "modified")

        async def one(backend: OllamaBackend) -> None:
            for model in await backend.list_models():
                table.add_row(
                    backend.name,
                    model.name,
                    _size(model.size),
                    model.family,
                    model.parameter_size,
                    model.quantization_level,
                    _when(model.modified_at),
                )

        failed = _each(_chosen(backends, host), one)
        out.print(table)
        if failed:
            raise typer.Exit(1)

    @ollama_app.command("show")
    def show(
        model: Annotated[
            str | None, typer.Argument(help="Model name; default: MONGARS_OLLAMA__MODEL.")
        ] = None,
        host: HostOption = None,
    ) -> None:
        """Show a model's details (on the first host, or --host)."""
        backend = _chosen(backends, host)[0]
        details = _run(backend.show(model))
        table = Table("field", "value", show_header=False)
        table.add_row("host", f"{backend.name} ({backend.host.display_url})")
        table.add_row("model", details.name)
        table.add_row("format", details.format)
        table.add_row("family", details.family)
        table.add_row("parameters", details.parameter_size)
        table.add_row("quantization", details.quantization_level)
        table.add_row("capabilities", ", ".join(details.capabilities))
        table.add_row("context length", str(details.context_length or "-"))
        table.add_row("modified", _when(details.modified_at))
        out.print(table)

    @ollama_app.command("pull")
    def pull(
        model: Annotated[
            str | None, typer.Argument(help="Model name; default: MONGARS_OLLAMA__MODEL.")
        ] = None,
        host: HostOption = None,
    ) -> None:
        """Pull a model onto each host (or --host), with a progress bar per layer."""
        progress = progress_reporter()

        async def one(backend: OllamaBackend) -> None:
            status = await backend.pull(model, progress)
            out.print(f"{backend.name}: {model or backend.model} {status}")

        if _each(_chosen(backends, host), one):
            raise typer.Exit(1)

    @ollama_app.command("ps")
    def running(host: HostOption = None) -> None:
        """List the models loaded in each host's memory."""
        table = _table("host", "model", "size", "in GPU memory", "context", "until")

        async def one(backend: OllamaBackend) -> None:
            for model in await backend.running():
                table.add_row(
                    backend.name,
                    model.name,
                    _size(model.size),
                    _size(model.size_vram),
                    str(model.context_length or "-"),
                    _when(model.expires_at),
                )

        failed = _each(_chosen(backends, host), one)
        out.print(table)
        if failed:
            raise typer.Exit(1)

    @ollama_app.command("health")
    def health(host: HostOption = None) -> None:
        """Check that each host answers; exit status 1 when one does not."""
        table = _table("host", "url", "status", "version or error")
        down = 0

        async def check(backend: OllamaBackend) -> None:
            nonlocal down
            try:
                version = await backend.version(min(backend.timeout_s, 5.0))
            except MongarsError as exc:
                down += 1
                table.add_row(
                    backend.name, backend.host.display_url, "[red]down[/]", printable(str(exc))
                )
            else:
                table.add_row(
                    backend.name, backend.host.display_url, "[green]up[/]", printable(version)
                )

        async def check_all(chosen: list[OllamaBackend]) -> None:
            for backend in chosen:
                await check(backend)

        _run(check_all(_chosen(backends, host)))
        out.print(table)
        if down:
            raise typer.Exit(1)

    return ollama_app


def _chosen(
    backends: Callable[[str | None], list[OllamaBackend]], host: str | None
) -> list[OllamaBackend]:
    try:
        chosen = backends(host)
    except MongarsError as exc:
        raise fail(str(exc)) from None
    if not chosen:
        raise fail("no Ollama host is configured (MONGARS_OLLAMA__HOSTS is empty)")
    return chosen


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coroutine)
    except MongarsError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _each(chosen: list[OllamaBackend], action: Callable[[OllamaBackend], Awaitable[None]]) -> int:
    """Run ``action`` on each backend in turn; print one error line per failure."""

    async def run_all() -> int:
        failed = 0
        for backend in chosen:
            try:
                await action(backend)
            except MongarsError as exc:
                failed += 1
                err.print(f"[bold red]error:[/] {printable(str(exc))}", highlight=False)
        return failed

    return _run(run_all())


def _table(*headers: str) -> Table:
    """A table whose first two columns (host, model or URL) are never cut or wrapped."""
    table = Table()
    for index, header in enumerate(headers):
        table.add_column(header, no_wrap=index < 2)
    return table


def _size(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _when(moment: datetime | None) -> str:
    return f"{moment.astimezone():%Y-%m-%d %H:%M}" if moment else "-"
