"""The ``ray`` LLM backend: the local model on Ray Serve replicas, streamed.

Each request is a streaming call to the Serve application (one replica,
chosen by Serve). Ray's errors are translated where they enter: a replica
that died, a cluster that cannot be reached or an overloaded deployment is
:class:`~mongars_core.errors.BackendUnavailableError` (another replica or
endpoint may answer); anything else is :class:`~mongars_core.errors.BackendError`.

Serve does not retry a request whose replica dies while it runs, so this
backend sends it to another replica, up to ``max_attempts`` tries; when the
caller already has part of the reply, the next replica continues it
(``GenerationRequest.prefix``), as the router does across endpoints. The
router otherwise owns retries; these stay inside the backend because Serve
hides its replicas behind one endpoint: one dead replica out of several
should not count against the whole endpoint's circuit breaker. When the
replicas keep failing, ``BackendUnavailableError`` reaches the router.

The replica's engine reports how the generation ended; this backend copies
that into the caller's ``request.outcome`` (finish reason, token counts,
decode speed, adapter). After a resumed stream the counts cover only the
last replica's part, so they are left out and the pipeline counts usage itself.
``request.adapter`` travels with the request: the replica's engine generates
with it where it serves the adapter's base model, and names it as it begins, so
a reply the caller stops reading early still names its adapter.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from types import ModuleType
from typing import TYPE_CHECKING, Any

from mongars_core.capabilities import ConstrainsOutput, HealthChecked, Loadable
from mongars_core.errors import (
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    MongarsError,
)
from mongars_core.settings import Settings
from mongars_core.types import GenerationOutcome, GenerationRequest, OutputConstraint
from mongars_plugins.ray_serve.cluster import connect
from mongars_plugins.ray_serve.deployment import replica_engines
from mongars_plugins.ray_serve.settings import RAY

logger = logging.getLogger(__name__)


class RayServeBackend:
    """An :class:`~mongars_core.llm.LLMBackend` calling the Serve application.

    ``served_by`` counts requests per replica id; ``in_flight`` the requests
    a replica holds now, ``replying`` those of them it is sending text for;
    ``retries`` the attempts
    repeated on another replica, ``resumed_streams`` the retries that
    continued a reply a dead replica had started.
    """

    def __init__(self, settings: Settings, *, max_attempts: int = 4) -> None:
        self.settings = settings
        self.max_attempts = max_attempts
        self.served_by: Counter[str] = Counter()
        self.in_flight: Counter[str] = Counter()
        self.replying: Counter[str] = Counter()
        self.retries = 0
        self.resumed_streams = 0
        self._handle: Any = None
        self._ray: ModuleType | None = None
        self._load_lock = asyncio.Lock()

    @property
    def loaded(self) -> bool:
        """Whether :meth:`load` has connected to the application (``Loadable``)."""
        return self._handle is not None

    async def load(self) -> None:
        """Connect to the cluster and find the application (outside generation deadlines)."""
        if self._handle is not None:
            return
        async with self._load_lock:
            if self._handle is None:
                await asyncio.to_thread(self._load_blocking)

    def _load_blocking(self) -> None:
        address = self.settings.section(RAY).address or ""
        if address.startswith("ray://"):
            raise ConfigurationError(
                f"the ray backend streams replies, which Ray Client ({address}) cannot carry; "
                "set MONGARS_RAY__ADDRESS to the cluster's GCS address (host:port) instead"
            )
        connection = connect(self.settings)
        ray = connection.ray
        name = self.settings.section(RAY).app_name
        try:
            handle = ray.serve.get_app_handle(name)
        except ray.serve.exceptions.RayServeException as exc:
            raise BackendUnavailableError(
                f"the Serve application {name!r} is not running on the Ray cluster at "
                f"{connection.address}; run `mongars ray deploy`"
            ) from exc
        self._ray = ray
        self._handle = handle

    async def health(self) -> bool:
        """Whether a replica answers within 10 s."""
        try:
            await asyncio.wait_for(self.describe_replica(), timeout=10)
        except (MongarsError, TimeoutError) as exc:
            logger.info("the ray backend is not healthy: %s", exc)
            return False
        return True

    async def describe_replica(self) -> dict[str, Any]:
        """What one replica (Serve's choice) says about itself."""
        await self.load()
        try:
            description: dict[str, Any] = await self._handle.describe.remote()
        except Exception as exc:
            raise self._translate(exc) from exc
        return description

    def can_constrain(self, constraint: OutputConstraint) -> bool:
        """Whether the replicas' engine keeps replies to a schema or grammar: llama.cpp,
        the first of their engines (``llm.local_engines``), does. A replica that had to
        fall back to torch refuses such a request (a :class:`BackendError`)."""
        return replica_engines(self.settings)[0] == "llamacpp"

    async def generate(self, request: GenerationRequest) -> str:
        return "".join([delta async for delta in self.stream(request)])

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        """Yield the reply's deltas; a replica that dies is replaced without losing text."""
        await self.load()
        delivered = ""  # what the caller has received from this call
        attempt = 1
        while True:
            # A retry after some text asks the next replica to continue it.
            payload = request.model_copy(update={"prefix": request.prefix + delivered})
            try:
                # A fresh outcome per attempt (model_copy shares the caller's).
                payload.outcome = GenerationOutcome()
                async with aclosing(self._replica_stream(payload)) as deltas:
                    try:
                        async for delta in deltas:
                            delivered += delta
                            yield delta
                    except GeneratorExit:
                        # The caller stopped reading (a stop, the repetition guard):
                        # the outcome never comes, but the reply was made with the
                        # adapter the replica named when it began.
                        _report_outcome(request, payload)
                        raise
                _report_outcome(request, payload)
                return
            except BackendUnavailableError as exc:
                if attempt >= self.max_attempts:
                    raise
                logger.warning(
                    "replica unavailable (%s); retrying on another replica (attempt %d of %d)",
                    exc,
                    attempt + 1,
                    self.max_attempts,
                )
                self.retries += 1
                if delivered:
                    self.resumed_streams += 1
                await asyncio.sleep(min(2.0, 0.2 * 2 ** (attempt - 1)))
                attempt += 1

    async def _replica_stream(self, request: GenerationRequest) -> AsyncGenerator[str, None]:
        """One streaming call to a replica; cancelled on the replica when closed early."""
        response: Any = None
        finished = False
        replica: str | None = None
        replying = False
        try:
            response = self._handle.options(stream=True).generate_stream.remote(
                request.model_dump(mode="json")
            )
            async for item in response:
                if isinstance(item, dict) and "outcome" in item:  # the engine's report, last
                    request.outcome = GenerationOutcome.model_validate(item["outcome"])
                    continue
                if isinstance(item, dict):  # the replica saying who it is
                    replica = str(item["replica_id"])
                    request.outcome.adapter = item.get("adapter")
                    self.served_by[replica] += 1
                    self.in_flight[replica] += 1
                    continue
                if not replying and replica is not None:
                    replying = True
                    self.replying[replica] += 1
                yield item
            finished = True
        except Exception as exc:
            raise self._translate(exc) from exc
        finally:
            if response is not None and not finished:
                response.cancel()
            if replica is not None:
                self.in_flight[replica] -= 1
                self.replying[replica] -= int(replying)

    def _translate(self, exc: Exception) -> BackendError:
        if isinstance(exc, BackendError):
            return exc
        ray = self._ray
        if ray is None:
            return BackendError(f"calling the replica failed: {_first_line(exc)}")
        unavailable = unavailable_errors(ray)
        if isinstance(exc, ray.exceptions.RayTaskError):
            cause = exc.cause if isinstance(exc.cause, Exception) else None
            if isinstance(cause, unavailable):
                return BackendUnavailableError(f"replica unavailable: {_first_line(cause)}")
            return BackendError(f"the replica failed: {_first_line(cause or exc)}")
        if isinstance(exc, (*unavailable, ConnectionError)):
            return BackendUnavailableError(f"replica unavailable: {_first_line(exc)}")
        return BackendError(f"calling the replica failed: {_first_line(exc)}")


def _report_outcome(request: GenerationRequest, attempt: GenerationRequest) -> None:
    """Copy the last attempt's outcome into the caller's; counts only when that attempt
    generated the whole reply (not when it continued another replica's)."""
    reported = attempt.outcome
    if attempt.prefix != request.prefix:
        reported = reported.model_copy(update={"tokens": None, "prompt_tokens": None})
    for name in GenerationOutcome.model_fields:
        value = getattr(reported, name)
        if value is not None:
            setattr(request.outcome, name, value)


def unavailable_errors(ray: ModuleType) -> tuple[type[Exception], ...]:
    """Ray and Serve errors after which another replica (or this one, later) may answer."""
    errors, serve_errors = ray.exceptions, ray.serve.exceptions
    return (
        errors.RayActorError,  # ActorDiedError, ActorUnavailableError
        errors.WorkerCrashedError,
        errors.NodeDiedError,
        errors.LocalRayletDiedError,
        errors.ObjectLostError,
        errors.OutOfMemoryError,
        errors.RaySystemError,
        errors.RpcError,
        serve_errors.BackPressureError,
        serve_errors.DeploymentUnavailableError,
        serve_errors.ReplicaUnavailableError,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


if TYPE_CHECKING:  # the backend's optional abilities, checked by mypy
    _loadable: type[Loadable] = RayServeBackend
    _health_checked: type[HealthChecked] = RayServeBackend
    _constrains: type[ConstrainsOutput] = RayServeBackend
