"""The Host header and the websocket Origin, checked against the allowed hosts.

A page on ``attacker.example`` whose name resolves to 127.0.0.1 (DNS
rebinding) reaches a loopback server with its own name in ``Host`` and
``Origin``. So the server answers only to the names it is allowed to have
(``MONGARS_SERVER__ALLOWED_HOSTS``, see :func:`allowed_hosts`): any
other ``Host`` gets a 400 before routing, and a browser's websocket must come
from a page served under an allowed name.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from mongars_server.limits import send_json_error
from mongars_server.settings import ServerSettings

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


_NAME = re.compile(
    r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*\.?"
)
_AUTHORITY = re.compile(r"(\[[0-9a-f:.]+\]|[^\[\]:]+)(?::([0-9]{1,5}))?")


def parse_host(value: str) -> tuple[str, int | None] | None:
    """A ``Host`` header (RFC 3986 ``host[:port]``) as ``(host, port)``, or None if invalid.

    The host is lower-cased, without a trailing dot; an IPv6 address keeps its
    brackets. Anything but a name, an IPv4 address or a bracketed IPv6 address,
    with an optional numeric port, is invalid: user info (``@``), a path,
    spaces, percent-escapes, an empty port.
    """
    found = _AUTHORITY.fullmatch(value.lower())
    if found is None:
        return None
    host, port_text = found.group(1), found.group(2)
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return None
    elif _NAME.fullmatch(host) is None or len(host) > 254:
        return None
    port = None if port_text is None else int(port_text)
    if port is not None and not 0 < port < 65536:
        return None
    return host.rstrip("."), port


def _pattern(entry: str) -> tuple[str, int | None]:
    """An allowed-hosts entry: a name or ``*.name`` or ``*``, with an optional port."""
    name, colon, port = entry.lower().rpartition(":")
    if colon and port.isdigit() and not name.endswith(":"):
        return name.rstrip("."), int(port)
    return entry.lower().rstrip("."), None


def host_allowed(
    host: str, port: int | None, allowed: Sequence[str], own_port: int | None = None
) -> bool:
    """Whether ``host`` (a parsed name, see :func:`parse_host`) and ``port`` are allowed.

    ``"*"`` allows any; ``"*.example.com"`` allows the sub-domains of example.com.
    Without a port or with ``own_port`` (the port the request came in on), any
    allowed name will do; an entry ``name:port`` also allows that port (a proxy
    or a port mapping in front of the server).
    """
    for entry in allowed:
        pattern, listed_port = _pattern(entry)
        if port is not None and port != own_port and port != listed_port:
            continue
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
    scheme, separator, authority = origin.partition("://")
    if scheme not in {"http", "https"} or not separator or not host:
        return False
    page, called = parse_host(authority), parse_host(host)
    if page is None or called is None:
        return False
    default = 443 if scheme == "https" else 80
    if (page[1] or default) != (called[1] or default):
        return False
    if "*" in allowed_hosts:
        # Host checking is off: at least the page must come from the Host it called.
        return page[0] == called[0]
    return host_allowed(page[0], None, allowed_hosts)


class HostCheck:
    """ASGI middleware: 400 to a request, and refusal to a websocket, whose ``Host``
    is not an allowed host (parsed strictly; its port, if any, the port the request
    came in on or one listed). An allowed ``Host`` is handed on normalised
    (lower case), so redirects name the host as the server knows it. A request
    without ``Host`` (HTTP/1.0) passes; one with two is refused."""

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        self.allowed_hosts = list(allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in {"http", "websocket"} or "*" in self.allowed_hosts:
            await self.app(scope, receive, send)
            return
        hosts = [value for name, value in scope["headers"] if name == b"host"]
        if not hosts:
            await self.app(scope, receive, send)
            return
        parsed = parse_host(hosts[0].decode("latin-1")) if len(hosts) == 1 else None
        own_port = (scope.get("server") or (None, None))[1]
        if parsed is not None and host_allowed(*parsed, self.allowed_hosts, own_port):
            host, port = parsed
            normal = (host if port is None else f"{host}:{port}").encode()
            headers = [(n, normal if n == b"host" else v) for n, v in scope["headers"]]
            await self.app({**scope, "headers": headers}, receive, send)
            return
        if scope["type"] == "http":
            await send_json_error(scope, send, 400, BAD_HOST, "bad_host")
            return
        await receive()  # websocket.connect
        if "websocket.http.response" in scope.get("extensions", {}):
            await send_json_error(scope, send, 400, BAD_HOST, "bad_host", "websocket.http.")
        else:
            await send({"type": "websocket.close", "code": 1008, "reason": BAD_HOST})
