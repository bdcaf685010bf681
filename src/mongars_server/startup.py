"""Starting the server: the port, the checks before it, one line when the start fails.

``mongars serve`` binds its port itself before anything else, so a second
server on the same port says so at once instead of loading a model first.
The app's lifespan (storage, plugins, Redis) runs inside uvicorn:
:func:`run` turns its failure into a :class:`~mongars_core.errors.MongarsError`
that ``mongars serve`` prints in one line, in place of uvicorn's traceback.
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mongars_core.errors import ConfigurationError, MongarsError
from mongars_core.settings import Settings
from mongars_core.storage.store import Store
from mongars_server.routes.health import SERVICE
from mongars_server.routes.websocket import MAX_FRAME_CHARS
from mongars_server.settings import ServerSettings

logger = logging.getLogger(__name__)


def url_of(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


# A frame of MAX_FRAME_CHARS characters takes at most 4 bytes a character in UTF-8:
# uvicorn closes the socket (1009) on a bigger frame before it is all buffered.
WS_MAX_BYTES = 4 * MAX_FRAME_CHARS


def uvicorn_options(server: ServerSettings) -> dict[str, Any]:
    """uvicorn's options for ``server``: the same for one process, several workers and
    the tests' live server (which adds its own socket, log level and lifespan).

    uvicorn has no deadline for a request's headers (h11 and httptools neither): a
    server facing the Internet belongs behind a reverse proxy that has one (docs/server.md).
    """
    options: dict[str, Any] = {
        "ws_max_size": WS_MAX_BYTES,
        "limit_concurrency": server.max_connections,
        "timeout_keep_alive": server.keep_alive_s,
        # uvicorn believes X-Forwarded-For from 127.0.0.1 unless told otherwise: only
        # from the configured proxies here.
        "proxy_headers": bool(server.trusted_proxies),
    }
    if server.trusted_proxies:
        options["forwarded_allow_ips"] = server.trusted_proxies
    return options


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (not yet listening), or a one-line error saying why not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        # As uvicorn does: a port left in TIME_WAIT by the last run is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigurationError(_port_taken(host, port)) from None
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def check_port(host: str, port: int) -> None:
    """Fail in one line when ``host:port`` is taken (uvicorn binds it afterwards)."""
    bind(host, port).close()


def _port_taken(host: str, port: int) -> str:
    taken = f"port {port} on {host} is taken"
    advice = "stop it, or choose another port with --port"
    if _is_mongars(host, port):
        return f"{taken} by a monGARS server ({url_of(_reachable(host), port)}/): {advice}"
    return f"{taken} by another program: {advice}"


def _reachable(host: str) -> str:
    """The address to reach a server listening on ``host`` from this machine."""
    return {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)


def _is_mongars(host: str, port: int) -> bool:
    # No proxy: the question is about this machine's port.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{url_of(_reachable(host), port)}/healthz", timeout=2) as response:
            body = json.loads(response.read(4096))
    except (OSError, urllib.error.URLError, ValueError):
        return False
    return isinstance(body, dict) and body.get("service") == SERVICE


async def check_storage(settings: Settings) -> None:
    """Open the database once (SQLite is migrated), so worker processes don't fail one by one."""
    store = await Store.open(settings.resolved_database_url())
    await store.close()


class OneLineStartupErrors:
    """Wraps an ASGI app: a failure of its start-up is kept in :attr:`failure`, not logged.

    Starlette hands uvicorn the traceback of a failed lifespan, which uvicorn
    logs; :func:`run` raises the failure instead, for ``mongars serve`` to
    print in one line. Failures after the start (shutdown) are left to uvicorn.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.failure: Exception | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_quietly(message: Message) -> None:
            nonlocal started
            if message["type"] == "lifespan.startup.complete":
                started = True
            elif message["type"] == "lifespan.startup.failed":
                message = {**message, "message": ""}
            await send(message)

        try:
            await self.app(scope, receive, send_quietly)
        except Exception as exc:
            if started:
                raise
            self.failure = exc


def _one_line(failure: Exception) -> MongarsError:
    """monGARS's own error as it is; anything else named, its traceback kept for -v."""
    if isinstance(failure, BaseExceptionGroup) and len(failure.exceptions) == 1:
        inner = failure.exceptions[0]
        if isinstance(inner, Exception):
            return _one_line(inner)
    if isinstance(failure, MongarsError):
        return failure
    logger.info("the server failed to start", exc_info=failure)
    reason = str(failure).strip().splitlines()
    return MongarsError(
        f"the server failed to start: {type(failure).__name__}"
        + (f": {reason[0]}" if reason else "")
        + " (`mongars -v serve` shows where)"
    )


class _QuietUntilStarted(logging.Filter):
    """uvicorn's start-up chatter waits for a start; a failure explained in one line is alone."""

    def __init__(self, app: OneLineStartupErrors) -> None:
        super().__init__()
        self.app = app
        self.starting = True

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.starting:
            return True
        return self.app.failure is None and record.levelno >= logging.WARNING


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.on_started()


def run(app: ASGIApp, sock: socket.socket, banner: Callable[[], None], **options: Any) -> None:
    """Serve ``app`` on the bound ``sock`` in this process; ``banner()`` once it serves.

    A failed start-up raises a ``MongarsError`` saying why in one line.
    """
    guarded = OneLineStartupErrors(app)
    config = uvicorn.Config(guarded, **options)
    quiet = _QuietUntilStarted(guarded)
    uvicorn_logger = logging.getLogger("uvicorn.error")
    uvicorn_logger.addFilter(quiet)

    def started() -> None:
        quiet.starting = False
        banner()

    try:
        _Server(config, started).run(sockets=[sock])
    except SystemExit:
        # uvicorn exits when the start-up failed; the failure is ours to report.
        if guarded.failure is None:
            raise
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the Ctrl-C it stopped on; uvicorn.run ends quietly too
    finally:
        uvicorn_logger.removeFilter(quiet)
    if guarded.failure is not None:
        raise _one_line(guarded.failure) from guarded.failure
