"""The local model on Ray Serve replicas: the LLM backend ``ray`` and ``mongars ray``.

``mongars ray deploy`` starts (or joins) a Ray cluster and deploys the local
model as a Serve application, with the replicas, autoscaling bounds and
resources of ``MONGARS_RAY__*``; the ``ray`` backend streams replies from it.
Ray is imported only when the plugin is first used; without it the plugin
raises :class:`~mongars_core.errors.MissingDependencyError` naming
``mongars-assistant[ray]``. docs/ray_serve.md describes it all.
"""

from __future__ import annotations

from mongars_core import hookimpl
from mongars_core.hookspecs import Register, RegisterSection
from mongars_core.settings import Settings
from mongars_plugins.ray_serve.backend import RayServeBackend
from mongars_plugins.ray_serve.settings import RAY


@hookimpl
def mongars_register_settings(register: RegisterSection) -> None:
    register(RAY)


@hookimpl
def mongars_register_llm_backends(register: Register, settings: Settings) -> None:
    register("ray", RayServeBackend(settings))


@hookimpl
def mongars_register_commands(register: Register, settings: Settings) -> None:
    from mongars_plugins.ray_serve.cli import build_ray_app

    register("ray", build_ray_app(settings))
