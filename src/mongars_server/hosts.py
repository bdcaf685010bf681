"""The Host header and the websocket Origin, checked against the allowed hosts.

A page on ``attacker.example`` whose name resolves to 127.0.0.1 (DNS
rebinding) reaches a loopback server with its own name in ``Host`` and
``Origin``. So the server answers only to the names it is allowed to have
(``MONGARS_SERVER__ALLOWED_HOSTS``, see :func:`allowed_hosts`): any
other ``Host`` gets a 400 before routing, and a browser's websocket must come
from a page served under an allowed name.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from mongars_core.settings import ServerSettings
from mongars_server.limits import send_json_error

BAD_HOST = "the Host header names a host this server does not answer to"


LOOPBACK = ("localhost", "127.0.0.1", "[::1]")


def allowed_hosts(settings: ServerSettings) -> list[str]:
    """``MONGARS_SERVER__ALLOWED_HOSTS``, or the loopback names and the configured host.

    A server listening on every interface (``0.0.0.0``, ``::``) also answers to
    this machine's name (and ``<name>.local``) and its main address, so
    ``http://<LAN address>:8000`` works; other names must be listed.
    """
    if settings.allowed_hosts:
        return [host.lower() for host in settings.allowed_hosts]
    hosts = list(LOOPBACK)
    configured = settings.host.lower()
    if configured in {"0.0.0.0", "::", "[::]", ""}:
        name = socket.gethostname().lower()
        hosts += [name, f"{name}.local", *_main_addresses()]
    else:
        hosts.append(f"[{configured}]" if ":" in configured else configured)
    return list(dict.fromkeys(hosts))


def _main_addresses() -> list[str]:
    """The addresses this machine's default routes leave from (no packet is sent)."""
    found = []
    for family, probe, form in [
        (socket.AF_INET, ("192.0.2.1", 9), "{}"),
        (socket.AF_INET6, ("2001:db8::1", 9), "[{}]"),
    ]:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as udp:
                udp.connect(probe)
                found.append(form.format(udp.getsockname()[0]))
        except OSError:
            continue  # no route of that family
    return found


def split_host(value: str) -> tuple[str, str]:
    """``"Example.org:8000"`` -> ``("example.org", "8000")``; IPv6 keeps its brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value.partition("]")
        return host + "]", rest.removeprefix(":")
    host, _, port = value.partition(":")
    return host, port


def host_allowed(host: str, allowed: Sequence[str]) -> bool:
    """Whether the host name ``host`` (no port) is one of ``allowed``.

    ``"*"`` allows any; ``"*.example.com"`` allows the sub-domains of example.com.
    """
    host = host.lower().rstrip(".")
    for pattern in allowed:
        if pattern == "*" or pattern == host:
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
    return False


def origin_allowed(
    origin: str | None, host: str | None, allowed_hosts: Sequence[str], allowed_origins: list[str]
) -> bool:
    """A browser's websocket: its page must be the server's own, or allow-listed.

    The page's host must be an allowed host and its port the port the socket
    was opened on (another port of the same machine is another site).
    Clients other than browsers (scripts, the CLI) send no ``Origin``: the
    ticket alone admits them.
    """
    if origin is None:
        return True
    if origin in allowed_origins or "*" in allowed_origins:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in {"http", "https"} or not parts.netloc or not host:
        return False
    origin_host, origin_port = split_host(parts.netloc)
    _, port = split_host(host)
    default = "443" if parts.scheme == "https" else "80"
    if (origin_port or default) != (port or default):
        return False
    if "*" in allowed_hosts:
        # Host checking is off: at least the page must come from the Host it called.
        return parts.netloc.lower() == host.lower()
    return host_allowed(origin_host, allowed_hosts)


class HostCheck:
    """ASGI middleware: 400 to a request, and refusal to a websocket, whose ``Host``
    is not an allowed host. A request without ``Host`` (HTTP/1.0) passes."""

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        self.allowed_hosts = list(allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in {"http", "websocket"} or "*" in self.allowed_hosts:
            await self.app(scope, receive, send)
            return
        host = next((value for name, value in scope["headers"] if name == b"host"), None)
        if host is None or host_allowed(split_host(host.decode("latin-1"))[0], self.allowed_hosts):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http":
            await send_json_error(scope, send, 400, BAD_HOST, "bad_host")
            return
        await receive()  # websocket.connect
        if "websocket.http.response" in scope.get("extensions", {}):
            await send_json_error(scope, send, 400, BAD_HOST, "bad_host", "websocket.http.")
        else:
            await send({"type": "websocket.close", "code": 1008, "reason": BAD_HOST})
