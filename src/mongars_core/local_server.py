"""The running local server, as ``mongars chat`` finds and talks to it.

``mongars serve`` writes ``<data dir>/server.json`` (``{"url", "pid"}``, mode
0600) while it runs and removes it at shutdown (:func:`advertise`). A one-shot
``mongars chat --message`` reads it (:func:`find_server`), ignores it when the
pid is gone, and sends the turn to ``POST /api/v1/local/chat``
(:func:`stream_turn`), which answers only loopback clients that present
:func:`local_credential`: an HMAC of the server secret, so only a process
that can read the data dir (or has the configured secret) has it.

Standard library only: the CLI needs no HTTP client, and nothing here needs
the ``server`` extra.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import os
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mongars_core.errors import MongarsError
from mongars_core.settings import Settings

logger = logging.getLogger(__name__)

RECORD_FILE = "server.json"
SECRET_FILE = "server-secret"  # the server's signing secret (mongars_server.security)
LOCAL_CHAT_PATH = "/api/v1/local/chat"
CREDENTIAL_HEADER = "X-Mongars-Local"
_PURPOSE = b"local-cli"
_PROBE_TIMEOUT_S = 2.0


class ServerUnreachableError(MongarsError):
    """The recorded server did not take the turn (the CLI then runs it in-process)."""


class TurnRefusedError(MongarsError):
    """The server refused the turn itself (an unknown backend, bad input): running it
    in-process would fail the same way, so the CLI reports it."""


@dataclass(frozen=True)
class ServerRecord:
    """A running server: where it listens and the pid of ``mongars serve``."""

    url: str
    pid: int


def local_credential(secret: bytes) -> str:
    """The credential of the local route, derived from the server secret."""
    return hmac.new(secret, _PURPOSE, hashlib.sha256).hexdigest()


def read_secret(settings: Settings) -> bytes | None:
    """The server secret as the server loads it, or ``None`` when there is none yet."""
    # The server plugin owns the section; its settings module needs no server extra.
    from mongars_server.settings import SERVER

    configured = settings.section(SERVER).jwt_secret
    if configured is not None:
        return configured.get_secret_value().encode()
    try:
        value = (Path(settings.data_dir) / SECRET_FILE).read_text().strip().encode()
    except OSError:
        return None
    return value or None


def advertised_url(host: str, port: int) -> str:
    """The URL a local client uses for a server listening on ``host:port``."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextmanager
def advertise(settings: Settings, url: str) -> Iterator[Path]:
    """Record the server at ``url`` in the data dir until the block ends."""
    path = Path(settings.data_dir) / RECORD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = _read_record(path)
    ours = ServerRecord(url, os.getpid())
    _write_record(path, ours)
    try:
        yield path
    finally:
        # A server that could not start (its port was taken) gives the data dir
        # back to the one still running; another that took over keeps its record.
        if _read_record(path) == ours:
            if previous is not None and previous.pid != ours.pid and _alive(previous.pid):
                _write_record(path, previous)
            else:
                path.unlink(missing_ok=True)


def find_server(settings: Settings) -> ServerRecord | None:
    """The recorded server, unless there is none or its process is gone."""
    record = _read_record(Path(settings.data_dir) / RECORD_FILE)
    if record is None or not _alive(record.pid):
        return None
    return record


def stream_turn(
    record: ServerRecord, credential: str, body: dict[str, Any], timeout_s: float
) -> Generator[dict[str, Any], None, None]:
    """Send one turn to the local route; yield its events (``token``, ``reply``, ``error``).

    Raises :class:`ServerUnreachableError` before the first event when the
    server does not answer or refuses the turn.
    """
    parts = urlsplit(record.url)
    if parts.scheme != "http" or parts.hostname is None:
        raise ServerUnreachableError(f"the server record has an unusable URL {record.url!r}")
    # A short probe first: a dead server is found out in seconds, not at the turn's deadline.
    probe = http.client.HTTPConnection(parts.hostname, parts.port, timeout=_PROBE_TIMEOUT_S)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)
    try:
        try:
            probe.request("GET", "/healthz")
            status = probe.getresponse().status
            if status != 200:
                raise ServerUnreachableError(
                    f"the server at {record.url} answered /healthz with {status}"
                )
            connection.request(
                "POST",
                LOCAL_CHAT_PATH,
                body=json.dumps(body).encode(),
                headers={"Content-Type": "application/json", CREDENTIAL_HEADER: credential},
            )
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            raise ServerUnreachableError(
                f"the server at {record.url} did not answer ({exc})"
            ) from None
        if response.status in (404, 422):
            raise TurnRefusedError(_detail(response, with_status=False))
        if response.status != 200:
            raise ServerUnreachableError(
                f"the server at {record.url} refused the turn: {_detail(response)}"
            )
        for line in response:
            if line.strip():
                yield json.loads(line)
    finally:
        probe.close()
        connection.close()


def _detail(response: http.client.HTTPResponse, *, with_status: bool = True) -> str:
    raw = response.read(4096)
    try:
        detail = json.loads(raw).get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, list):  # a validation error: the first problem's message
        detail = next((str(item.get("msg")) for item in detail if isinstance(item, dict)), None)
    text = detail if isinstance(detail, str) else response.reason
    return f"{response.status} {text}" if with_status else text


def _write_record(path: Path, record: ServerRecord) -> None:
    partial = path.with_name(f".{RECORD_FILE}.{os.getpid()}")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump({"url": record.url, "pid": record.pid}, handle)
    os.replace(partial, path)


def _read_record(path: Path) -> ServerRecord | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("ignoring the unreadable server record %s: %s", path, exc)
        return None
    if not (
        isinstance(data, dict)
        and isinstance(data.get("url"), str)
        and isinstance(data.get("pid"), int)
    ):
        logger.warning("ignoring the malformed server record %s", path)
        return None
    return ServerRecord(data["url"], data["pid"])


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or another user's: not our server
        return False
    return True
