"""The Serve application: replicas that run the local model, and deploying it.

Each replica is a :class:`ModelReplica`: the local model inside a Ray worker,
built as the server builds its backend ``local``
(:func:`mongars_plugins.local_engines.local_engine`): llama.cpp where the CPU
can run it, else the torch backend, in ``llm.local_engines`` order; a replica
with GPUs puts torch first, which runs the model on CUDA. Replica count,
autoscaling bounds and resources come from ``MONGARS_RAY__*``. Each replica
takes up to ``max_ongoing_requests`` requests at once: llama.cpp batches them
over its slots, the torch backend answers them in turn.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from mongars_core.errors import (
    BackendUnavailableError,
    ConfigurationError,
    UnsupportedConstraintError,
)
from mongars_core.local_engine import LocalEngine
from mongars_core.settings import Settings
from mongars_core.types import GenerationRequest
from mongars_plugins.cuda.settings import LOCAL
from mongars_plugins.llamacpp.settings import LLAMACPP
from mongars_plugins.local_engines import local_engine
from mongars_plugins.ray_serve._ray import require_ray
from mongars_plugins.ray_serve.cluster import Report, log_report
from mongars_plugins.ray_serve.settings import RAY

logger = logging.getLogger(__name__)

DEPLOYMENT_NAME = "LocalModel"


class ModelReplica:
    """One Serve replica of the local model (runs inside a Ray worker process).

    Serve calls :meth:`reconfigure` with the deployment's ``user_config``
    before the replica counts as running, so a running replica has its model
    loaded. Serve hands it up to ``max_ongoing_requests`` requests at once;
    the llama.cpp engine generates them together over its slots.
    """

    def __init__(self) -> None:
        ray = require_ray()
        self.replica_id: str = ray.serve.get_replica_context().replica_id.unique_id
        self.generations = 0
        self._model: LocalEngine | None = None

    async def reconfigure(self, config: dict[str, Any]) -> None:
        """Load the model described by ``config`` (see :func:`replica_config`)."""
        started = time.perf_counter()
        model = local_engine(replica_settings(config))
        await model.load()
        self._model = model
        logger.info(
            "replica %s loaded the model with %s in %.2f s",
            self.replica_id,
            model.describe(),
            time.perf_counter() - started,
        )

    async def generate_stream(self, payload: dict[str, Any]) -> AsyncIterator[str | dict[str, Any]]:
        """Yield who answers (a dict), the reply's text deltas, then ``{"outcome": ...}``.

        ``payload`` is a :class:`GenerationRequest` as JSON; the last item is
        its :class:`~mongars_core.types.GenerationOutcome` as the engine
        reported it (finish reason, token counts, speed, adapter). The first
        names the adapter the engine applies too, for a caller that stops
        reading before the outcome. When the caller cancels, Serve cancels this
        generator and the engine stops within one token.
        """
        request = GenerationRequest.model_validate(payload)
        model = self._model
        if model is None:  # reconfigure always runs first; this guards a misuse
            raise RuntimeError("the replica has no model loaded")
        if request.constraint is not None and not model.can_constrain(request.constraint):
            raise UnsupportedConstraintError(
                f"this replica's engine ({model.engine_name}) cannot constrain output"
            )
        adapter = request.adapter
        applied = adapter.id if adapter is not None and model.can_serve_adapter(adapter) else None
        yield {
            "replica_id": self.replica_id,
            "pid": os.getpid(),
            "engine": model.engine_name,
            "adapter": applied,
        }
        self.generations += 1
        async for delta in model.stream(request):
            yield delta
        yield {"outcome": request.outcome.model_dump(mode="json")}

    async def describe(self) -> dict[str, Any]:
        """Who this replica is and what it has done (for status and tests)."""
        model = self._model
        engine = model.engine if model else None
        return {
            "replica_id": self.replica_id,
            "pid": os.getpid(),
            "engine": model.describe() if model else None,
            "device": getattr(engine, "device", None),
            "load_seconds": getattr(engine, "load_seconds", None),
            "loaded": model is not None and model.loaded,
            "generations": self.generations,
            "stopped_generations": getattr(engine, "stopped_generations", 0),
        }


@dataclass(frozen=True)
class ReplicaInfo:
    replica_id: str
    state: str
    pid: int | None
    node_ip: str | None
    actor_name: str | None
    started_at: float | None


@dataclass(frozen=True)
class ApplicationInfo:
    name: str
    status: str
    message: str
    target_replicas: int | None
    replicas: list[ReplicaInfo] = field(default_factory=list)


def autoscaling(settings: Settings) -> dict[str, int] | None:
    """The Serve autoscaling config of ``MONGARS_RAY__*``, or ``None`` for a fixed count."""
    ray_settings = settings.section(RAY)
    low, high = ray_settings.min_replicas, ray_settings.max_replicas
    if low is None and high is None:
        return None
    if low is None or high is None:
        raise ConfigurationError(
            "set both MONGARS_RAY__MIN_REPLICAS and MONGARS_RAY__MAX_REPLICAS to autoscale, "
            "or neither"
        )
    if low > high:
        raise ConfigurationError(
            f"MONGARS_RAY__MIN_REPLICAS ({low}) is above MONGARS_RAY__MAX_REPLICAS ({high})"
        )
    # llama.cpp generates a replica's slots together; torch one reply at a time:
    # beyond that, requests queue in the replica.
    first = replica_engines(settings)[0]
    target = replica_slots(settings) if first == "llamacpp" else 1
    return {
        "min_replicas": low,
        "max_replicas": high,
        "initial_replicas": max(low, 1),
        "target_ongoing_requests": target,
    }


def replica_engines(settings: Settings) -> list[str]:
    """The replicas' engine order: ``llm.local_engines``, with torch first on GPU replicas
    (the llama.cpp build runs on the CPU)."""
    engines = list(settings.llm.local_engines)
    if settings.section(RAY).num_gpus > 0 and "torch" in engines:
        engines.remove("torch")
        engines.insert(0, "torch")
    return engines


def replica_threads(settings: Settings) -> int:
    """CPU threads of each replica's engine: the CPUs it reserves (at least one), so
    replicas × threads never exceeds the CPUs Ray gives out (``MONGARS_LLAMACPP__THREADS``
    or ``MONGARS_LOCAL__THREADS`` override it)."""
    return max(1, int(settings.section(RAY).num_cpus))


def replica_slots(settings: Settings) -> int:
    """llama.cpp slots of each replica: ``MONGARS_LLAMACPP__SLOTS`` where it is set, else
    one for each request the replica takes at once (``MONGARS_RAY__MAX_ONGOING_REQUESTS``),
    so no request Serve hands a replica waits there for a slot."""
    llamacpp = settings.section(LLAMACPP)
    if "slots" in llamacpp.model_fields_set:
        return llamacpp.slots
    return settings.section(RAY).max_ongoing_requests


def replica_config(settings: Settings) -> dict[str, Any]:
    """What each replica needs to build the local model: the folders, the engine order
    and each engine's settings, with the replica's device, threads and slots."""
    ray_settings = settings.section(RAY)
    threads = replica_threads(settings)
    local = settings.section(LOCAL)
    local = local.model_copy(
        update={
            "device": "cuda" if ray_settings.num_gpus > 0 else "cpu",
            "threads": local.threads or threads,
        }
    )
    llamacpp = settings.section(LLAMACPP)
    llamacpp = llamacpp.model_copy(
        update={"threads": llamacpp.threads or threads, "slots": replica_slots(settings)}
    )
    return {
        "cache_dir": str(settings.cache_dir),
        "data_dir": str(settings.data_dir),
        "local_engines": replica_engines(settings),
        "local": local.model_dump(mode="json"),
        "llamacpp": llamacpp.model_dump(mode="json"),
    }


def replica_settings(config: dict[str, Any]) -> Settings:
    """The settings a replica builds its engine from (the inverse of :func:`replica_config`)."""
    return Settings(
        cache_dir=config["cache_dir"],
        data_dir=config["data_dir"],
        llm={"local_engines": config["local_engines"]},
        local=config["local"],
        llamacpp=config["llamacpp"],
    )


def build_application(settings: Settings, ray: ModuleType) -> Any:
    """The Serve application for ``settings`` (a bound deployment)."""
    ray_settings = settings.section(RAY)
    options: dict[str, Any] = {
        "name": DEPLOYMENT_NAME,
        "ray_actor_options": {
            "num_cpus": ray_settings.num_cpus,
            "num_gpus": ray_settings.num_gpus,
        },
        "max_ongoing_requests": ray_settings.max_ongoing_requests,
        "user_config": replica_config(settings),
    }
    scaling = autoscaling(settings)
    if scaling is None:
        options["num_replicas"] = ray_settings.replicas
    else:
        options["autoscaling_config"] = scaling
    return ray.serve.deployment(ModelReplica, **options).bind()


def initial_replicas(settings: Settings) -> int:
    scaling = autoscaling(settings)
    return settings.section(RAY).replicas if scaling is None else scaling["initial_replicas"]


def check_capacity(settings: Settings, ray: ModuleType, *, local: bool) -> None:
    """Fail early when the replicas cannot fit a local cluster (a remote one may grow)."""
    count = initial_replicas(settings)
    resources = ray.cluster_resources()
    ray_settings = settings.section(RAY)
    for name, each in (("CPU", ray_settings.num_cpus), ("GPU", ray_settings.num_gpus)):
        needed = count * each
        have = float(resources.get(name, 0.0))
        if needed <= have + 1e-9:
            continue
        message = (
            f"{count} replicas × {each:g} {name}s need {needed:g} {name}s; "
            f"the Ray cluster has {have:g}"
        )
        if local:
            raise ConfigurationError(
                f"{message} (lower MONGARS_RAY__REPLICAS or MONGARS_RAY__NUM_{name}S, or "
                "restart the local Ray with more)"
            )
        logger.warning("%s; the replicas wait until the cluster has room", message)


def deploy(
    settings: Settings,
    ray: ModuleType,
    *,
    local: bool,
    report: Report = log_report,
    timeout_s: float = 600.0,
) -> ApplicationInfo:
    """Deploy (or update) the application and wait until it runs (blocking).

    Returns the running application with its replicas. Raises
    :class:`BackendUnavailableError` when it fails or is not running within
    ``timeout_s``.
    """
    serve = ray.serve
    check_capacity(settings, ray, local=local)
    ray_settings = settings.section(RAY)
    name = ray_settings.app_name
    scaling = autoscaling(settings)
    resources = f"{ray_settings.num_cpus:g} CPUs" + (
        f", {ray_settings.num_gpus:g} GPUs" if ray_settings.num_gpus else ""
    )
    count = (
        f"{ray_settings.replicas} replicas"
        if scaling is None
        else f"{scaling['min_replicas']} to {scaling['max_replicas']} replicas (autoscaling)"
    )
    report(f"deploying {name!r}: {count}, {resources} each")
    with _translated(ray, f"deploying {name!r}"):
        serve.start(proxy_location="Disabled")  # called through handles only: no HTTP port
        serve.run_many(
            [
                serve.RunTarget(
                    target=build_application(settings, ray), name=name, route_prefix=None
                )
            ],
            wait_for_applications_running=False,
        )
    deadline = time.monotonic() + timeout_s
    last = ""
    while True:
        app = application(ray, name)
        if app is None:
            raise BackendUnavailableError(f"the application {name!r} vanished while deploying")
        states = _count_states(app.replicas)
        line = f"{app.status.lower()}: replicas {states or 'none yet'}"
        if line != last:
            report(line)
            last = line
        if app.status == "RUNNING":
            return app
        if app.status in ("DEPLOY_FAILED", "UNHEALTHY"):
            raise BackendUnavailableError(f"deploying {name!r} failed: {app.message}")
        if time.monotonic() > deadline:
            raise BackendUnavailableError(
                f"{name!r} is not running after {timeout_s:.0f} s (replicas {states}); "
                "the cluster may lack the resources the replicas ask for"
            )
        time.sleep(0.5)


def _count_states(replicas: list[ReplicaInfo]) -> str:
    counts: dict[str, int] = {}
    for replica in replicas:
        counts[replica.state] = counts.get(replica.state, 0) + 1
    return ", ".join(f"{number} {state.lower()}" for state, number in sorted(counts.items()))


def application(ray: ModuleType, name: str) -> ApplicationInfo | None:
    """The application ``name`` and its replicas, or ``None`` when it is not deployed."""
    details = serve_details(ray)
    if details is None:
        return None
    app = details.get("applications", {}).get(name)
    if app is None:
        return None
    replicas: list[ReplicaInfo] = []
    target: int | None = None
    for deployment in app.get("deployments", {}).values():
        target = deployment.get("target_num_replicas")
        for replica in deployment.get("replicas", []):
            replicas.append(
                ReplicaInfo(
                    replica_id=str(replica["replica_id"]),
                    state=_name(replica["state"]),
                    pid=replica.get("pid"),
                    node_ip=replica.get("node_ip"),
                    actor_name=replica.get("actor_name"),
                    started_at=replica.get("start_time_s"),
                )
            )
    return ApplicationInfo(
        name=name,
        status=_name(app["status"]),
        message=str(app.get("message") or ""),
        target_replicas=target,
        replicas=replicas,
    )


def _name(value: Any) -> str:
    """An enum's value (Serve reports states as ``str`` enums), or the text itself."""
    return str(getattr(value, "value", value))


def serve_details(ray: ModuleType) -> dict[str, Any] | None:
    """Serve's own description of its applications, or ``None`` when Serve is not running.

    This is what Serve's dashboard shows (the public ``ServeInstanceDetails``
    schema); the dashboard is off, so it is asked of the Serve controller.
    """
    client = ray.serve.context._get_global_client(raise_if_no_controller_running=False)
    if client is None:
        return None
    with _translated(ray, "asking Serve for its applications"):
        details: dict[str, Any] = client.get_serve_details()
    return details


def delete(ray: ModuleType, name: str) -> bool:
    """Delete the application ``name``; ``False`` when it was not deployed."""
    if application(ray, name) is None:
        return False
    with _translated(ray, f"deleting {name!r}"):
        ray.serve.delete(name)
    return True


@contextmanager
def _translated(ray: ModuleType, doing: str) -> Iterator[None]:
    """Ray's and Serve's errors as monGARS errors: refused settings, or an unreachable cluster."""
    try:
        yield
    except (ValueError, TypeError) as exc:  # Serve validating the deployment's options
        raise ConfigurationError(f"{doing}: Serve refused it: {exc}") from exc
    except (ray.exceptions.RayError, ray.serve.exceptions.RayServeException) as exc:
        raise BackendUnavailableError(f"{doing} failed: {exc}") from exc


def other_applications(ray: ModuleType, name: str) -> list[str]:
    details = serve_details(ray) or {}
    return sorted(other for other in details.get("applications", {}) if other != name)
