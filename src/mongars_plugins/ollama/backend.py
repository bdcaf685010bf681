"""The Ollama LLM backend: one per configured server, on the official ``ollama`` client.

This is the only module that imports ``ollama`` (and its ``httpx``), inside
:func:`require_ollama`, so the plugin loads without the package and a missing
one raises :class:`~mongars_core.errors.MissingDependencyError` naming
``mongars-assistant[ollama]``.

Errors are translated where they enter:

* connection failures, timeouts, a stream cut short, HTTP 429 and 5xx become
  :class:`~mongars_core.errors.BackendUnavailableError` (another host may
  answer; ``retry_after`` carries the server's ``Retry-After``);
* HTTP 404 with Ollama's ``{"error": ...}`` body, and a pull of a model the
  registry does not have, become :class:`~mongars_core.errors.ModelNotFoundError`;
* any other 4xx, and a response that is not Ollama's, become
  :class:`~mongars_core.errors.BackendError`.

Each call opens its own HTTP client and closes it when done: a closed stream
closes its connection at once, which is how Ollama learns to stop generating.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any

from mongars_core.capabilities import HealthChecked, ModelCatalog, Progress
from mongars_core.errors import (
    BackendError,
    BackendUnavailableError,
    MissingDependencyError,
    ModelNotFoundError,
    MongarsError,
)
from mongars_core.types import GenerationRequest
from mongars_plugins.ollama.hosts import OllamaHost, parse_hosts
from mongars_plugins.ollama.settings import OllamaSettings

if TYPE_CHECKING:
    import httpx
    import ollama

logger = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 5.0
"""Longest wait for ``/api/version`` in :meth:`OllamaBackend.health`."""


def require_ollama() -> ModuleType:
    """Import the ``ollama`` client, or name the extra that provides it."""
    try:
        import ollama
    except ImportError as exc:
        raise MissingDependencyError("ollama", "ollama") from exc
    return ollama


# -- error translation ---------------------------------------------------------------


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from an HTTP ``Retry-After`` header (seconds or a date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def status_error(
    where: str, status: int, body: str, *, retry_after: float | None = None
) -> MongarsError:
    """The monGARS error for an HTTP error ``status`` with ``body`` from an Ollama server."""
    message, is_ollama = _error_message(body)
    if status == 429 or status >= 500:
        return BackendUnavailableError(
            f"{where} is unavailable (HTTP {status}): {message}", retry_after=retry_after
        )
    if status == 404 and is_ollama:
        return ModelNotFoundError(f"{where}: {message}")
    if not is_ollama:
        return BackendError(
            f"{where} answered HTTP {status} without an Ollama error ({message}); "
            "is it an Ollama server?"
        )
    return BackendError(f"{where} refused the request (HTTP {status}): {message}")


def _record_outcome(request: GenerationRequest, response: Any) -> None:
    """Tell the pipeline how Ollama ended the reply (``done_reason``, ``eval_count``)."""
    if response.done_reason in ("stop", "length"):
        request.outcome.finish_reason = response.done_reason
    if response.eval_count is not None:
        request.outcome.tokens = response.eval_count


def _error_message(body: str) -> tuple[str, bool]:
    """Ollama's ``{"error": "..."}`` message, and whether the body had that shape."""
    try:
        decoded = json.loads(body)
    except ValueError:
        return body.strip()[:200] or "no message", False
    if isinstance(decoded, dict) and isinstance(decoded.get("error"), str):
        return decoded["error"], True
    return body.strip()[:200], False


def response_error(where: str, response: httpx.Response) -> MongarsError:
    """The translated error of an HTTP error response whose body has been read."""
    return status_error(
        where,
        response.status_code,
        response.text,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
    )


def _async_status_hook(where: str) -> Callable[[httpx.Response], Awaitable[None]]:
    async def raise_for_status(response: httpx.Response) -> None:
        if response.is_error:
            await response.aread()
            raise response_error(where, response)

    return raise_for_status


def sync_status_hook(where: str) -> Callable[[httpx.Response], None]:
    """An httpx response hook that raises the translated error of an HTTP error status."""

    def raise_for_status(response: httpx.Response) -> None:
        if response.is_error:
            response.read()
            raise response_error(where, response)

    return raise_for_status


@contextlib.contextmanager
def translate_errors(where: str, timeout_s: float) -> Iterator[None]:
    """Turn what the client and httpx raise into monGARS errors (monGARS ones pass)."""
    import httpx

    client = require_ollama()
    try:
        yield
    except MongarsError:
        raise
    except httpx.TimeoutException as exc:
        raise BackendUnavailableError(f"{where} did not answer within {timeout_s:g} s") from exc
    except httpx.ConnectError as exc:
        reason = str(exc) or type(exc).__name__
        raise BackendUnavailableError(f"{where} cannot be reached: {reason}") from exc
    except httpx.TransportError as exc:  # the connection broke, mid-stream or mid-response
        reason = str(exc) or type(exc).__name__
        raise BackendUnavailableError(f"{where} broke the connection: {reason}") from exc
    except ConnectionError as exc:  # the client's own wording of httpx.ConnectError
        raise BackendUnavailableError(f"{where} cannot be reached: connection failed") from exc
    except client.ResponseError as exc:
        if exc.status_code == -1:  # an {"error": ...} line in the middle of a stream
            raise BackendUnavailableError(f"{where} failed mid-stream: {exc.error}") from exc
        raise status_error(where, exc.status_code, json.dumps({"error": exc.error})) from exc
    except ValueError as exc:  # undecodable JSON, or JSON of the wrong shape
        raise BackendError(f"{where} sent a response that is not Ollama's: {exc}") from exc


async def _aclose(iterator: object) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


def new_ssl_context() -> ssl.SSLContext:
    """A TLS context as httpx builds it; share it: building one costs ~30 ms."""
    import httpx

    return httpx.create_ssl_context()


def keep_alive_value(setting: str | None) -> float | str | None:
    """``MONGARS_OLLAMA__KEEP_ALIVE`` as Ollama takes it: a number is seconds."""
    if setting is None:
        return None
    try:
        return float(setting)
    except ValueError:
        return setting


# -- what the backend returns --------------------------------------------------------


@dataclass(frozen=True)
class ModelInfo:
    """A model installed on an Ollama server (``/api/tags``)."""

    name: str
    size: int
    digest: str
    modified_at: datetime | None
    family: str = ""
    parameter_size: str = ""
    quantization_level: str = ""


@dataclass(frozen=True)
class ModelDetails:
    """What ``/api/show`` says about a model."""

    name: str
    format: str = ""
    family: str = ""
    parameter_size: str = ""
    quantization_level: str = ""
    capabilities: list[str] = field(default_factory=list)
    context_length: int | None = None
    parameters: str = ""
    template: str = ""
    modified_at: datetime | None = None


@dataclass(frozen=True)
class RunningModel:
    """A model loaded in memory (``/api/ps``)."""

    name: str
    size: int
    size_vram: int
    expires_at: datetime | None
    context_length: int | None = None


# -- the backend ---------------------------------------------------------------------


class OllamaBackend:
    """An :class:`~mongars_core.llm.LLMBackend` on one Ollama server.

    Replies come from ``/api/chat``; ``model`` is ``request.model`` or
    ``MONGARS_OLLAMA__MODEL``, ``request.options`` are passed on as Ollama
    options, and a ``request.prefix`` is sent as a final assistant message,
    which Ollama continues. Besides generation it lists, shows and pulls
    models and reports health.
    """

    def __init__(self, host: OllamaHost, settings: OllamaSettings) -> None:
        self.host = host
        self.name = host.backend_name
        self.url = host.url
        self.model = settings.model
        self.timeout_s = settings.timeout_s
        self.keep_alive = keep_alive_value(settings.keep_alive)
        self._ssl_context: ssl.SSLContext | None = None

    def __repr__(self) -> str:
        return f"OllamaBackend({self.name!r}, {self.host.display_url!r}, model={self.model!r})"

    @property
    def where(self) -> str:
        """How errors and the log name this server (any password masked)."""
        return f"the LLM backend {self.name!r} (Ollama at {self.host.display_url})"

    def ssl_context(self) -> ssl.SSLContext:
        """One TLS context for all calls: building one costs ~30 ms, a client ~0.2 ms."""
        if self._ssl_context is None:
            self._ssl_context = new_ssl_context()
        return self._ssl_context

    @contextlib.asynccontextmanager
    async def _client(self, timeout_s: float | None = None) -> AsyncIterator[ollama.AsyncClient]:
        client_module = require_ollama()
        timeout = timeout_s or self.timeout_s
        with translate_errors(self.where, timeout):
            async with client_module.AsyncClient(
                host=self.url,
                auth=self.host.auth,
                timeout=timeout,
                verify=self.ssl_context(),
                event_hooks={"response": [_async_status_hook(self.where)]},
            ) as client:
                yield client

    @staticmethod
    def _messages(request: GenerationRequest) -> list[dict[str, str]]:
        messages = [message.model_dump() for message in request.messages]
        if request.prefix:
            # Failover mid-stream: Ollama continues a final assistant message.
            messages.append({"role": "assistant", "content": request.prefix})
        return messages

    @staticmethod
    def _options(request: GenerationRequest) -> dict[str, Any]:
        """Ollama's ``options``; the endpoint's own ``request.options`` win."""
        options: dict[str, Any] = {
            "num_predict": request.max_new_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
        }
        if request.stop:
            options["stop"] = list(request.stop)
        return {**options, **request.options}

    # -- generation --------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> str:
        """The whole reply, from one non-streaming ``/api/chat`` call."""
        async with self._client() as client:
            response = await client.chat(
                model=request.model or self.model,
                messages=self._messages(request),
                stream=False,
                options=self._options(request),
                keep_alive=self.keep_alive,
            )
        _record_outcome(request, response)
        return response.message.content or ""

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[str, None]:
        """The reply as text deltas from a streaming ``/api/chat`` call.

        Closing the iterator closes the HTTP connection, so Ollama stops too. A
        stream that breaks off raises :class:`BackendUnavailableError`.
        """
        async with self._client() as client:
            parts = await client.chat(
                model=request.model or self.model,
                messages=self._messages(request),
                stream=True,
                options=self._options(request),
                keep_alive=self.keep_alive,
            )
            try:
                async for part in parts:
                    if part.done:
                        _record_outcome(request, part)
                    if part.message.content:
                        yield part.message.content
            finally:
                await _aclose(parts)

    async def complete(
        self,
        prompt: str,
        *,
        system: str | None = None,
        model: str | None = None,
        max_new_tokens: int = 256,
        temperature: float = 0.7,
    ) -> AsyncGenerator[str, None]:
        """Text deltas for a bare ``prompt`` from a streaming ``/api/generate`` call."""
        async with self._client() as client:
            parts = await client.generate(
                model=model or self.model,
                prompt=prompt,
                system=system or "",
                stream=True,
                options={"num_predict": max_new_tokens, "temperature": temperature},
                keep_alive=self.keep_alive,
            )
            try:
                async for part in parts:
                    if part.response:
                        yield part.response
            finally:
                await _aclose(parts)

    # -- the server and its models --------------------------------------------------

    async def version(self, timeout_s: float | None = None) -> str:
        """The server's version (``GET /api/version``)."""
        import httpx

        timeout = timeout_s or self.timeout_s
        with translate_errors(self.where, timeout):
            async with httpx.AsyncClient(
                base_url=self.url,
                auth=self.host.auth,
                timeout=timeout,
                verify=self.ssl_context(),
                event_hooks={"response": [_async_status_hook(self.where)]},
            ) as client:
                response = await client.get("/api/version")
                payload = response.json()
        version = payload.get("version") if isinstance(payload, dict) else None
        if not isinstance(version, str):
            raise BackendError(f"{self.where} sent a version that is not text: {version!r}")
        return version

    async def health(self, timeout_s: float | None = None) -> bool:
        """Whether the server answers ``/api/version`` within ``timeout_s``
        (default: the HTTP timeout, at most 5 s)."""
        try:
            await self.version(timeout_s or min(self.timeout_s, HEALTH_TIMEOUT_S))
        except BackendError as exc:
            logger.info("%s is unhealthy: %s", self.where, exc)
            return False
        return True

    async def list_models(self) -> list[ModelInfo]:
        """The models installed on the server, most recently changed first."""
        async with self._client() as client:
            listing = await client.list()
        return [
            ModelInfo(
                name=model.model or "",
                size=int(model.size or 0),
                digest=model.digest or "",
                modified_at=model.modified_at,
                family=(model.details.family or "") if model.details else "",
                parameter_size=(model.details.parameter_size or "") if model.details else "",
                quantization_level=(model.details.quantization_level or "")
                if model.details
                else "",
            )
            for model in listing.models
        ]

    async def show(self, model: str | None = None) -> ModelDetails:
        """Details of ``model`` (default: the configured one)."""
        name = model or self.model
        async with self._client() as client:
            shown = await client.show(name)
        details = shown.details
        info = dict(shown.modelinfo or {})
        architecture = info.get("general.architecture")
        context = info.get(f"{architecture}.context_length") if architecture else None
        return ModelDetails(
            name=name,
            format=(details.format or "") if details else "",
            family=(details.family or "") if details else "",
            parameter_size=(details.parameter_size or "") if details else "",
            quantization_level=(details.quantization_level or "") if details else "",
            capabilities=list(shown.capabilities or []),
            context_length=context if isinstance(context, int) else None,
            parameters=shown.parameters or "",
            template=shown.template or "",
            modified_at=shown.modified_at,
        )

    async def pull(self, model: str | None = None, progress: Progress | None = None) -> str:
        """Pull ``model`` onto the server, reporting each layer's bytes to ``progress``.

        Returns the last status (``"success"``). A model the registry does not
        have raises :class:`ModelNotFoundError`.
        """
        name = model or self.model
        client_module = require_ollama()
        status = ""
        async with self._client() as client:
            parts = await client.pull(name, stream=True)
            try:
                async for part in parts:
                    status = part.status or status
                    if progress is not None and part.total:
                        progress(status, int(part.completed or 0), int(part.total))
            except client_module.ResponseError as exc:
                if exc.status_code == -1 and "does not exist" in exc.error:
                    raise ModelNotFoundError(
                        f"{self.where} cannot pull {name!r}: {exc.error}"
                    ) from exc
                raise
            finally:
                await _aclose(parts)
        return status

    async def running(self) -> list[RunningModel]:
        """The models loaded in the server's memory (``/api/ps``)."""
        async with self._client() as client:
            processes = await client.ps()
        return [
            RunningModel(
                name=model.model or model.name or "",
                size=int(model.size or 0),
                size_vram=int(model.size_vram or 0),
                expires_at=model.expires_at,
                context_length=model.context_length,
            )
            for model in processes.models
        ]


def build_backends(settings: OllamaSettings) -> list[OllamaBackend]:
    """One backend per host of ``settings.hosts`` (nothing is contacted)."""
    return [OllamaBackend(host, settings) for host in parse_hosts(settings.hosts)]


if TYPE_CHECKING:  # the backend's optional abilities, checked by mypy
    _health_checked: type[HealthChecked] = OllamaBackend
    _model_catalog: type[ModelCatalog] = OllamaBackend
