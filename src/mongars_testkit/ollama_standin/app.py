"""The stand-in's ASGI app: Ollama's documented REST API answered by a monGARS backend.

It follows https://github.com/ollama/ollama/blob/main/docs/api.md and
docs/api/errors.mdx: the same paths, field names and status codes,
``application/x-ndjson`` streams that end with a ``"done": true`` object, one
JSON object when ``"stream": false``, errors as ``{"error": "..."}`` with
Ollama's status (an error after a stream started is an ``{"error"}`` line).
It is a stand-in, not Ollama: it loads no models by name, and every model name
it knows is answered by its one LLM backend (or embedder). The final object's
counts (``prompt_eval_count``, ``eval_count``, ``eval_duration``, ``done_reason``)
are the backend's own where it reports them in ``request.outcome``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from mongars_core.llm import Embedder, LLMBackend, prepare_backend
from mongars_core.types import ChatMessage, GenerationOutcome, GenerationRequest
from mongars_testkit.ollama_standin.catalogue import (
    StandinError,
    StandinModel,
    canonical_name,
    json_kind,
    parse_keep_alive,
    timestamp,
    typed_field,
    valid_name,
)

STANDIN_VERSION = "0.0.0-standin"
BUSY = "server busy, please try again.  maximum pending requests exceeded"
NDJSON = "application/x-ndjson"

Events = AsyncGenerator[dict[str, Any], None]
"""Response objects of a streaming endpoint, in order."""


@dataclass
class StandinStats:
    """What the stand-in has seen, for tests to assert on."""

    requests: Counter[str] = field(default_factory=Counter)
    """``"POST /api/chat"`` and so on, counted."""
    generations_started: int = 0
    generations_completed: int = 0
    generations_cancelled: int = 0
    """Generations stopped because the client went away."""
    generations_failed: int = 0
    active_generations: int = 0


@dataclass
class _Fault:
    status: int
    error: str
    retry_after: str | None
    remaining: int


class OllamaStandin:
    """A stand-in Ollama server over any :class:`~mongars_core.llm.LLMBackend`.

    ``models`` are "installed" (``/api/tags``); ``pullable`` are in the pretend
    registry as well, and a pull installs them. ``embedder`` answers
    ``/api/embed`` for models with the ``embedding`` capability. With
    ``pass_model`` the request's model name reaches the backend as
    ``request.model``; without it the backend serves its own default model
    (the local engine would look an Ollama name up in its model registry). Build the app
    with :attr:`app`; run it with :class:`StandinServer` or
    ``python -m mongars_testkit.ollama_standin``.
    """

    def __init__(
        self,
        backend: LLMBackend,
        *,
        models: Sequence[StandinModel],
        embedder: Embedder | None = None,
        pullable: Sequence[StandinModel] = (),
        version: str = STANDIN_VERSION,
        pull_steps: int = 4,
        pull_step_s: float = 0.0,
        max_queue: int | None = None,
        default_num_predict: int = 128,
        default_keep_alive: timedelta = timedelta(minutes=5),
        pass_model: bool = True,
    ) -> None:
        self.backend = backend
        self.pass_model = pass_model
        self.embedder = embedder
        self.version = version
        self.pull_steps = max(1, pull_steps)
        self.pull_step_s = pull_step_s
        self.max_queue = max_queue
        self.default_num_predict = default_num_predict
        self.default_keep_alive = default_keep_alive
        self.stats = StandinStats()
        now = datetime.now(UTC)
        self.installed: dict[str, tuple[StandinModel, datetime]] = {
            model.name: (model, now) for model in models
        }
        self.registry: dict[str, StandinModel] = {
            model.name: model for model in (*models, *pullable)
        }
        self.loaded: dict[str, datetime] = {}
        """Model name -> when it is unloaded (``/api/ps``)."""
        self._faults: list[_Fault] = []
        self._app: Starlette | None = None

    def fail_next(
        self, status: int, error: str, *, retry_after: str | None = None, times: int = 1
    ) -> None:
        """Answer the next ``times`` API requests with ``status`` and ``{"error": error}``.

        A stand-in-only test hook, for overload (503, 429 with ``Retry-After``)
        and other failures a real server produces on its own schedule.
        """
        self._faults.append(_Fault(status, error, retry_after, times))

    @property
    def app(self) -> Starlette:
        """The Starlette ASGI application (built once)."""
        if self._app is None:
            self._app = self._build_app()
        return self._app

    def _build_app(self) -> Starlette:
        def route(
            path: str, endpoint: Callable[[Request], Awaitable[Response]], methods: list[str]
        ) -> Route:
            async def handle(request: Request) -> Response:
                self.stats.requests[f"{request.method} {path}"] += 1
                if path.startswith("/api/") and self._faults:
                    fault = self._faults[0]
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.pop(0)
                    headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
                    return JSONResponse({"error": fault.error}, fault.status, headers=headers)
                try:
                    return await endpoint(request)
                except StandinError as exc:
                    return JSONResponse({"error": exc.message}, exc.status)

            return Route(path, handle, methods=methods)

        async def not_found(request: Request, exc: Exception) -> Response:
            return PlainTextResponse("404 page not found", 404)

        async def not_allowed(request: Request, exc: Exception) -> Response:
            return PlainTextResponse("405 method not allowed", 405)

        async def running(request: Request) -> Response:
            return PlainTextResponse("Ollama is running")

        async def version(request: Request) -> Response:
            return JSONResponse({"version": self.version})

        return Starlette(
            routes=[
                route("/", running, ["GET", "HEAD"]),
                route("/api/version", version, ["GET", "HEAD"]),
                route("/api/tags", self._tags, ["GET", "HEAD"]),
                route("/api/ps", self._ps, ["GET"]),
                route("/api/show", self._show, ["POST"]),
                route("/api/chat", self._chat, ["POST"]),
                route("/api/generate", self._generate, ["POST"]),
                route("/api/embed", self._embed, ["POST"]),
                route("/api/pull", self._pull, ["POST"]),
            ],
            exception_handlers={404: not_found, 405: not_allowed},
        )

    # -- request helpers ------------------------------------------------------------

    async def _body(self, request: Request, kind: str) -> dict[str, Any]:
        raw = await request.body()
        if not raw.strip():
            raise StandinError(400, "missing request body")
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise StandinError(400, f"invalid JSON in request body: {exc}") from None
        if not isinstance(body, dict):
            raise StandinError(
                400, f"json: cannot unmarshal {json_kind(body)} into Go value of type api.{kind}"
            )
        return body

    def _model(self, name: str, capability: str, action: str) -> StandinModel:
        if not name:
            raise StandinError(400, "model is required")
        found = self.installed.get(canonical_name(name))
        if found is None:
            raise StandinError(404, f"model '{name}' not found")
        model = found[0]
        if capability not in model.capabilities:
            raise StandinError(400, f'"{name}" does not support {action}')
        return model

    def _touch(self, model: StandinModel, keep_alive: timedelta) -> None:
        if keep_alive <= timedelta(0):
            self.loaded.pop(model.name, None)
            return
        try:
            self.loaded[model.name] = datetime.now(UTC) + keep_alive
        except OverflowError:
            self.loaded[model.name] = datetime.max.replace(tzinfo=UTC)

    def _request(
        self, body: dict[str, Any], messages: list[ChatMessage], kind: str
    ) -> GenerationRequest:
        """The backend's request. A final assistant message is continued (Ollama's
        prefill); options other than the sampling ones reach ``request.options``."""
        options = dict(typed_field(body, "options", dict, kind) or {})
        num_predict = options.pop("num_predict", None)
        stop = options.pop("stop", None) or []
        if isinstance(stop, str):
            stop = [stop]
        prefix = ""
        if messages and messages[-1].role == "assistant":
            prefix = messages.pop().content
        try:
            return GenerationRequest(
                messages=messages,
                max_new_tokens=int(num_predict)
                if isinstance(num_predict, int | float) and num_predict > 0
                else self.default_num_predict,
                temperature=float(options.pop("temperature", 0.8)),
                top_p=float(options.pop("top_p", 0.9)),
                stop=[str(item) for item in stop],
                model=body.get("model") if self.pass_model else None,
                prefix=prefix,
                options=options,
            )
        except (TypeError, ValueError) as exc:
            raise StandinError(400, f"invalid options: {exc}") from None

    # -- endpoints --------------------------------------------------------------------

    async def _tags(self, request: Request) -> Response:
        ordered = sorted(self.installed.values(), key=lambda item: item[1], reverse=True)
        return JSONResponse(
            {
                "models": [
                    {
                        "name": model.name,
                        "model": model.name,
                        "modified_at": timestamp(modified),
                        "size": model.size,
                        "digest": model.digest,
                        "details": model.details(),
                    }
                    for model, modified in ordered
                ]
            }
        )

    async def _ps(self, request: Request) -> Response:
        now = datetime.now(UTC)
        self.loaded = {name: until for name, until in self.loaded.items() if until > now}
        running = []
        for name, until in sorted(self.loaded.items(), key=lambda item: item[1], reverse=True):
            model = self.registry[name]
            running.append(
                {
                    "name": model.name,
                    "model": model.name,
                    "size": model.size,
                    "digest": model.digest,
                    "details": model.details(),
                    "expires_at": timestamp(until),
                    "size_vram": 0,
                    "context_length": model.context_length,
                }
            )
        return JSONResponse({"models": running})

    async def _show(self, request: Request) -> Response:
        body = await self._body(request, "ShowRequest")
        name = typed_field(body, "model", str, "ShowRequest")
        name = name or typed_field(body, "name", str, "ShowRequest")
        if not name:
            raise StandinError(400, "model is required")
        found = self.installed.get(canonical_name(name))
        if found is None:
            raise StandinError(404, f"model '{name}' not found")
        model, modified = found
        modelfile = (
            '# Modelfile generated by "ollama show"\n'
            "# To build a new Modelfile based on this, replace FROM with:\n"
            f"# FROM {model.name}\n\n"
            f"FROM /mongars-standin/blobs/{model.layers()[0][0].replace(':', '-')}\n"
            f'TEMPLATE """{model.template}"""\n'
        )
        return JSONResponse(
            {
                "license": "",
                "modelfile": modelfile,
                "parameters": model.parameters,
                "template": model.template,
                "details": model.details(),
                "model_info": model.model_info(),
                "capabilities": list(model.capabilities),
                "modified_at": timestamp(modified),
            }
        )

    async def _chat(self, request: Request) -> Response:
        body = await self._body(request, "ChatRequest")
        name = typed_field(body, "model", str, "ChatRequest") or ""
        stream = typed_field(body, "stream", bool, "ChatRequest")
        raw_messages = typed_field(body, "messages", list, "ChatRequest") or []
        keep_alive = parse_keep_alive(body.get("keep_alive"), self.default_keep_alive)
        model = self._model(name, "completion", "chat")
        if typed_field(body, "tools", list, "ChatRequest"):
            raise StandinError(400, f'"{name}" does not support tools')
        messages = []
        for item in raw_messages:
            if not isinstance(item, dict) or not isinstance(item.get("content", ""), str):
                raise StandinError(
                    400, "json: cannot unmarshal value into Go struct field of type api.Message"
                )
            role = item.get("role") if item.get("role") in ("system", "assistant") else "user"
            messages.append(ChatMessage(role=role, content=item.get("content", "")))

        def chunk(text: str) -> dict[str, Any]:
            return {
                "model": name,
                "created_at": timestamp(),
                "message": {"role": "assistant", "content": text},
                "done": False,
            }

        if not messages:
            return self._load_only(model, keep_alive, chunk(""))
        events = self._generation(model, self._request(body, messages, "ChatRequest"), chunk)
        events = self._with_keep_alive(events, model, keep_alive)
        if stream is False:
            return await self._collected(events, ("message", "content"))
        return await self._ndjson(events)

    async def _generate(self, request: Request) -> Response:
        body = await self._body(request, "GenerateRequest")
        name = typed_field(body, "model", str, "GenerateRequest") or ""
        stream = typed_field(body, "stream", bool, "GenerateRequest")
        prompt = typed_field(body, "prompt", str, "GenerateRequest") or ""
        system = typed_field(body, "system", str, "GenerateRequest") or ""
        raw = typed_field(body, "raw", bool, "GenerateRequest")
        keep_alive = parse_keep_alive(body.get("keep_alive"), self.default_keep_alive)
        model = self._model(name, "completion", "generate")
        if raw and (system or body.get("template") or body.get("context")):
            raise StandinError(400, "raw mode does not support template, system, or context")

        def chunk(text: str) -> dict[str, Any]:
            return {"model": name, "created_at": timestamp(), "response": text, "done": False}

        if not prompt:
            return self._load_only(model, keep_alive, chunk(""))
        messages = [ChatMessage(role="system", content=system)] if system else []
        messages.append(ChatMessage(role="user", content=prompt))
        events = self._generation(model, self._request(body, messages, "GenerateRequest"), chunk)
        events = self._with_keep_alive(events, model, keep_alive)
        if stream is False:
            return await self._collected(events, ("response",))
        return await self._ndjson(events)

    async def _embed(self, request: Request) -> Response:
        started = time.perf_counter_ns()
        body = await self._body(request, "EmbedRequest")
        name = typed_field(body, "model", str, "EmbedRequest") or ""
        raw_input = body.get("input")
        dimensions = typed_field(body, "dimensions", int, "EmbedRequest") or 0
        keep_alive = parse_keep_alive(body.get("keep_alive"), self.default_keep_alive)
        if isinstance(raw_input, str):
            texts = [raw_input] if raw_input else []
        elif isinstance(raw_input, list) and all(isinstance(item, str) for item in raw_input):
            texts = list(raw_input)
        elif raw_input is None:
            texts = []
        else:
            raise StandinError(400, "invalid input type")
        model = self._model(name, "embedding", "embeddings")
        if self.embedder is None:
            raise StandinError(500, "this stand-in has no embedder")
        self._touch(model, keep_alive)
        if not texts:
            return JSONResponse({"model": name, "embeddings": []})
        loaded = time.perf_counter_ns()
        try:
            vectors = np.asarray(await asyncio.to_thread(self.embedder.embed, texts), np.float64)
        except Exception as exc:  # the embedder's failure is the server's 500
            raise StandinError(500, f"embedding failed: {exc}") from None
        if 0 < dimensions < vectors.shape[1]:
            vectors = vectors[:, :dimensions]
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return JSONResponse(
            {
                "model": name,
                "embeddings": vectors.astype(np.float32).tolist(),
                "total_duration": time.perf_counter_ns() - started,
                "load_duration": loaded - started,
                "prompt_eval_count": sum(len(text.split()) for text in texts),
            }
        )

    async def _pull(self, request: Request) -> Response:
        body = await self._body(request, "PullRequest")
        name = typed_field(body, "model", str, "PullRequest")
        name = name or typed_field(body, "name", str, "PullRequest")
        stream = typed_field(body, "stream", bool, "PullRequest")
        if not name or not valid_name(name):
            raise StandinError(400, "invalid model name")
        events = self._pull_events(canonical_name(name))
        if stream is not False:
            return await self._ndjson(events)
        latest: dict[str, Any] = {}
        try:
            async for event in events:
                latest = event
        except StandinError as exc:
            return JSONResponse({"error": exc.message}, exc.status)
        return JSONResponse(latest)

    # -- streams --------------------------------------------------------------------------

    def _load_only(
        self, model: StandinModel, keep_alive: timedelta, reply: dict[str, Any]
    ) -> Response:
        """Ollama's answer to a chat without messages or a prompt: load (or unload)."""
        self._touch(model, keep_alive)
        reply.update(done=True, done_reason="unload" if keep_alive == timedelta(0) else "load")
        return JSONResponse(reply)

    async def _with_keep_alive(
        self, events: Events, model: StandinModel, keep_alive: timedelta
    ) -> Events:
        self._touch(model, max(keep_alive, timedelta(seconds=1)))
        try:
            async for event in events:
                yield event
        finally:
            self._touch(model, keep_alive)
            await events.aclose()

    async def _generation(
        self,
        model: StandinModel,
        request: GenerationRequest,
        chunk: Callable[[str], dict[str, Any]],
    ) -> Events:
        """Chunks of the backend's reply, then the final object with Ollama's metrics."""
        if self.max_queue is not None and self.stats.active_generations >= self.max_queue:
            raise StandinError(503, BUSY)
        started = time.perf_counter_ns()
        self.stats.generations_started += 1
        self.stats.active_generations += 1
        outcome = "cancelled"
        iterator: AsyncIterator[str] | None = None
        try:
            try:
                await prepare_backend(self.backend)
            except Exception as exc:  # a model that cannot load is the server's 500
                outcome = "failed"
                raise StandinError(500, f"llama runner process has terminated: {exc}") from None
            loaded = time.perf_counter_ns()
            first_token = loaded
            count = 0
            iterator = self.backend.stream(request).__aiter__()
            ended = False  # by the backend, which then reported its outcome
            while True:
                try:
                    delta = await iterator.__anext__()
                except StopAsyncIteration:
                    ended = True
                    break
                except Exception as exc:  # mid-stream: an {"error"} line, as Ollama sends
                    outcome = "failed"
                    raise StandinError(500, str(exc) or type(exc).__name__) from None
                if not delta:
                    continue
                if count >= request.max_new_tokens:  # more than num_predict: cut here
                    break
                if count == 0:
                    first_token = time.perf_counter_ns()
                count += 1
                yield chunk(delta)
            finished = time.perf_counter_ns()
            # The backend's own counts where it reports them (llama.cpp and torch do),
            # else deltas and words.
            reported = request.outcome if ended else GenerationOutcome()
            final = chunk("")
            final.update(
                done=True,
                done_reason=reported.finish_reason
                or ("length" if count >= request.max_new_tokens else "stop"),
                total_duration=finished - started,
                load_duration=loaded - started,
                prompt_eval_count=reported.prompt_tokens
                if reported.prompt_tokens is not None
                else sum(len(m.content.split()) for m in request.messages),
                prompt_eval_duration=first_token - loaded,
                eval_count=reported.tokens if reported.tokens is not None else count,
                eval_duration=_eval_duration(reported, finished - first_token),
            )
            outcome = "completed"
            yield final
        finally:
            self.stats.active_generations -= 1
            if outcome == "completed":
                self.stats.generations_completed += 1
            elif outcome == "failed":
                self.stats.generations_failed += 1
            else:
                self.stats.generations_cancelled += 1
            close = getattr(iterator, "aclose", None)
            if close is not None:
                await close()

    async def _pull_events(self, name: str) -> Events:
        yield {"status": "pulling manifest"}
        await asyncio.sleep(self.pull_step_s)
        model = self.registry.get(name)
        if model is None:
            raise StandinError(500, "pull model manifest: file does not exist")
        for digest, size in model.layers():
            status = f"pulling {digest.removeprefix('sha256:')[:12]}"
            yield {"status": status, "digest": digest, "total": size}
            for step in range(1, self.pull_steps + 1):
                await asyncio.sleep(self.pull_step_s)
                completed = size * step // self.pull_steps
                yield {"status": status, "digest": digest, "total": size, "completed": completed}
        yield {"status": "verifying sha256 digest"}
        yield {"status": "writing manifest"}
        self.installed[name] = (model, datetime.now(UTC))
        yield {"status": "success"}

    async def _ndjson(self, events: Events) -> Response:
        """Stream ``events`` as NDJSON; an error before the first line is a plain JSON error."""
        try:
            first = await anext(events, None)
        except StandinError as exc:
            await events.aclose()
            return JSONResponse({"error": exc.message}, exc.status)

        async def lines() -> AsyncIterator[bytes]:
            try:
                if first is not None:
                    yield _line(first)
                async for event in events:
                    yield _line(event)
            except StandinError as exc:
                yield _line({"error": exc.message})
            finally:
                await events.aclose()

        return StreamingResponse(lines(), media_type=NDJSON)

    async def _collected(self, events: Events, path: tuple[str, ...]) -> Response:
        """``"stream": false``: one object, the final one with the whole text at ``path``."""
        parts: list[str] = []
        final: dict[str, Any] = {}
        try:
            async for event in events:
                holder = event
                for key in path[:-1]:
                    holder = holder[key]
                parts.append(holder[path[-1]])
                final = event
        except StandinError as exc:
            return JSONResponse({"error": exc.message}, exc.status)
        finally:
            await events.aclose()
        holder = final
        for key in path[:-1]:
            holder = holder[key]
        holder[path[-1]] = "".join(parts)
        return JSONResponse(final)


def _eval_duration(reported: GenerationOutcome, measured_ns: int) -> int:
    """Ollama's ``eval_duration`` (ns spent generating ``eval_count`` tokens): from the
    backend's decode speed where it measured one, else the time after the first token."""
    if reported.tokens and reported.tokens_per_second:
        return round(reported.tokens / reported.tokens_per_second * 1e9)
    return measured_ns


def _line(event: dict[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
