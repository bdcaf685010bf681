"""``mongars ray``: deploy the local model on Ray Serve, show it, shut it down."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.table import Table

from mongars_core.cli import err, fail, out, printable, progress_reporter
from mongars_core.errors import MongarsError
from mongars_core.settings import Settings
from mongars_plugins.cuda import model as model_files
from mongars_plugins.ray_serve import cluster, deployment
from mongars_plugins.ray_serve.settings import RAY


def _report(message: str) -> None:
    err.print(f"[dim]{printable(message)}[/]", highlight=False)


def _replica_table(app: deployment.ApplicationInfo) -> Table:
    table = Table("replica", "state", "pid", "node", title=f"{app.name}: {app.status}")
    for replica in app.replicas:
        table.add_row(
            replica.replica_id, replica.state, str(replica.pid or ""), replica.node_ip or ""
        )
    return table


def build_ray_app(settings: Settings) -> typer.Typer:
    ray_app = typer.Typer(help="The local model on Ray Serve replicas.", no_args_is_help=True)

    @ray_app.command("deploy")
    def deploy_command(
        num_cpus: Annotated[
            float | None,
            typer.Option(
                "--num-cpus", help="CPUs of the local Ray this starts; default: all of them."
            ),
        ] = None,
        num_gpus: Annotated[
            float | None,
            typer.Option("--num-gpus", help="GPUs of the local Ray; default: those it finds."),
        ] = None,
        timeout: Annotated[
            float, typer.Option("--timeout", help="Seconds to wait for the replicas.")
        ] = 600.0,
    ) -> None:
        """Start (or join) Ray and deploy the local model as a Serve application."""
        try:
            connection = cluster.connect(
                settings, start=True, num_cpus=num_cpus, num_gpus=num_gpus, report=_report
            )
            if connection.local is not None:
                # Replicas on this machine share the cache: fetch once, here.
                if not model_files.is_ready(model_files.model_dir(settings)):
                    _report("fetching the model once for every replica")
                model_files.ensure_model(settings, progress_reporter())
            app = deployment.deploy(
                settings,
                connection.ray,
                local=connection.local is not None,
                report=_report,
                timeout_s=timeout,
            )
        except MongarsError as exc:
            raise fail(str(exc)) from None
        out.print(_replica_table(app))
        if connection.started:
            out.print(f"a local Ray runs at {connection.address}; `mongars ray shutdown` stops it")

    @ray_app.command("status")
    def status_command(
        as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
    ) -> None:
        """Show the Ray cluster, the application and its replicas."""
        name = settings.section(RAY).app_name
        try:
            connection = cluster.connect(settings)
            ray = connection.ray
            app = deployment.application(ray, name)
            status: dict[str, Any] = {
                "address": connection.address,
                "local_pid": connection.local.pid if connection.local else None,
                "resources": {
                    kind: ray.cluster_resources().get(kind, 0.0) for kind in ("CPU", "GPU")
                },
                "available": {
                    kind: ray.available_resources().get(kind, 0.0) for kind in ("CPU", "GPU")
                },
                "application": asdict(app) if app else None,
                "other_applications": deployment.other_applications(ray, name),
            }
        except MongarsError as exc:
            raise fail(str(exc)) from None
        if as_json:
            out.print_json(json.dumps(status))
            return
        where = f"local, pid {connection.local.pid}" if connection.local else "joined by address"
        out.print(f"Ray at {connection.address} ({where})")
        total, free = status["resources"], status["available"]
        out.print(
            f"CPUs {free['CPU']:g} free of {total['CPU']:g}, "
            f"GPUs {free['GPU']:g} free of {total['GPU']:g}"
        )
        if app is None:
            out.print(f"application {name!r} is not deployed")
        else:
            out.print(_replica_table(app))
        if status["other_applications"]:
            out.print("other applications: " + ", ".join(status["other_applications"]))

    @ray_app.command("shutdown")
    def shutdown_command() -> None:
        """Delete the application; stop the local Ray if `mongars ray deploy` started it."""
        name = settings.section(RAY).app_name
        try:
            connection = cluster.connect(settings)
        except MongarsError as exc:
            if settings.section(RAY).address is None:
                out.print("no local Ray is running")
                return
            raise fail(str(exc)) from None
        try:
            if deployment.delete(connection.ray, name):
                out.print(f"deleted the application {name!r}")
            else:
                out.print(f"the application {name!r} was not deployed")
            others = deployment.other_applications(connection.ray, name)
        except MongarsError as exc:
            raise fail(str(exc)) from None
        local = connection.local
        if local is None:
            return
        if others:
            out.print(f"the local Ray keeps running for: {', '.join(others)}")
            return
        cluster.disconnect()
        local.stop()
        out.print(f"stopped the local Ray at {local.address}")

    return ray_app
