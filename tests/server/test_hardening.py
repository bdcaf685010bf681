"""The server under attack: oversized bodies, shared Redis servers, forged
headers, read-only databases, and what the logs and error bodies give away.
Everything goes over real sockets to a real server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from mongars_core.storage.store import Store
from mongars_server.events import make_event
from mongars_server.limits import BodySizeLimit
from tests.conftest import MODEL_CACHE, service_unavailable
from tests.server.conftest import PASSWORD, LiveServer, bearer, register, running, server_settings
from tests.server.test_observability import parse_prometheus
from tests.server.test_websocket import connect, opened, receive_until, ticket

POSTGRES_URL = os.environ.get(
    "MONGARS_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
LIMIT = 64 * 1024


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _raw_request(port: int, head: str, body: bytes = b"", timeout: float = 10) -> bytes:
    """Send ``head`` (and ``body``) on a fresh socket; what comes back until the server closes
    or stops talking."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        raw.sendall(head.encode() + b"\r\n" + body)
        answer = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while b"\r\n\r\n" not in answer or not _complete(answer):
                data = raw.recv(65536)
                if not data:
                    break
                answer += data
    return answer


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    found = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
    return found is not None and len(body) >= int(found.group(1))


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


# -- 1. the body limit -------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["chunked", "CHUNKED", "Chunked", "cHuNkEd"])
async def test_a_chunked_body_is_refused_once_it_passes_the_limit(
    make_server: Callable[..., LiveServer], spelling: str
) -> None:
    server = make_server(server={"max_body_bytes": LIMIT})
    # One byte over the limit, and the body never ends: only a server that counts
    # while it reads can answer, and it must answer before authenticating.
    chunk = b"x" * (LIMIT + 1)
    body = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    head = (
        "POST /api/v1/conversation/chat HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{_port(server.url)}\r\n"
        "Content-Type: application/json\r\n"
        f"Transfer-Encoding: {spelling}\r\n"
    )
    answer = await asyncio.to_thread(_raw_request, _port(server.url), head, body, 10)
    assert answer, "the server never answered a body past the limit"
    assert _status(answer) == 413, answer[:200]
    assert b"body_too_large" in answer


def _collect(sent: list[dict[str, Any]]) -> Callable[[dict[str, Any]], Any]:
    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    return send


async def test_every_body_is_counted_whatever_its_headers_say() -> None:
    """No length header at all, or a Content-Length that lies: at most the limit is read."""
    reached: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])

    for headers in ([], [(b"content-length", b"10")], [(b"transfer-encoding", b"CHUNKED")]):
        pulled = 0

        async def receive() -> dict[str, Any]:
            nonlocal pulled
            pulled += 4096
            return {"type": "http.request", "body": b"x" * 4096, "more_body": True}

        sent: list[dict[str, Any]] = []

        scope = {"type": "http", "path": "/api/v1/x", "headers": headers, "method": "POST"}
        await BodySizeLimit(app, max_bytes=LIMIT)(scope, receive, _collect(sent))
        assert sent[0]["status"] == 413, headers
        # The limit, and the lingering read after the 413 (at most twice the limit).
        assert pulled <= 3 * LIMIT + 4096, headers
    assert reached == []


async def test_a_file_upload_may_be_larger_than_other_bodies_but_is_bounded_too() -> None:
    """A multipart body (a document) gets ``upload_max_bytes``; JSON keeps ``max_bytes``."""

    async def run(content_type: bytes, size: int) -> tuple[int | None, int]:
        reached: list[int] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            reached.append(len((await receive())["body"]))

        body = b"x" * size

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        sent: list[dict[str, Any]] = []
        headers = [(b"content-type", content_type), (b"content-length", str(size).encode())]
        scope = {"type": "http", "path": "/api/v1/documents", "headers": headers, "method": "POST"}
        limit = BodySizeLimit(app, max_bytes=LIMIT, upload_max_bytes=4 * LIMIT)
        await limit(scope, receive, _collect(sent))
        return (sent[0]["status"] if sent else None), (reached[0] if reached else 0)

    upload = b"multipart/form-data; boundary=x"
    assert await run(upload, 2 * LIMIT) == (None, 2 * LIMIT)  # handed on whole
    assert (await run(upload, 4 * LIMIT + 1))[0] == 413
    assert (await run(b"application/json", 2 * LIMIT))[0] == 413


# -- 5. Redis namespaces -----------------------------------------------------------


@pytest.mark.redis
async def test_deployments_sharing_a_redis_server_do_not_hear_each_other(
    tmp_path: Path, redis_url: str
) -> None:
    ours = server_settings(tmp_path / "ours", redis_url=redis_url)
    theirs = server_settings(tmp_path / "theirs", redis_url=redis_url)
    assert ours.redis_prefix() != theirs.redis_prefix()
    with ExitStack() as stack:
        a = stack.enter_context(running(ours))
        also_ours = stack.enter_context(running(ours))  # a second worker of our deployment
        other = stack.enter_context(running(theirs))
        async with (
            httpx.AsyncClient(base_url=a.url) as on_a,
            httpx.AsyncClient(base_url=also_ours.url) as on_ours,
            httpx.AsyncClient(base_url=other.url) as on_other,
        ):
            token = await register(on_a, "alice")
            other_token = await register(on_other, "alice")  # the same name over there
            async with connect(a, await ticket(on_a, token)) as sock:
                await opened(sock)
                [key] = a.state.hub.users  # what alice's sockets are filed under
                # Theirs: a real chat, and an event for exactly the key our socket listens on.
                secret = await on_other.post(
                    "/api/v1/conversation/chat",
                    json={"message": "their secret"},
                    headers=bearer(other_token),
                )
                assert secret.status_code == 200
                other.call(other.state.hub.publish(make_event("chat.reply", key, {"x": "theirs"})))
                # Ours, through the other worker: it crosses Redis after theirs did.
                said = await on_ours.post(
                    "/api/v1/conversation/chat", json={"message": "ours"}, headers=bearer(token)
                )
                events = await receive_until(sock, "chat.reply")
    assert events[-1]["data"]["turn_id"] == said.json()["turn_id"]
    assert "their secret" not in str(events) and "theirs" not in str(events)


# -- 7. X-Forwarded-For and the access log, under `mongars serve` -------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def serving(tmp_path: Path, **env: str) -> Iterator[tuple[str, list[str]]]:
    """``mongars serve`` in a real process (no model); yields its URL and, once the
    block ends, its output lines."""
    port = _free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MONGARS_")}
    environ.update(
        MONGARS_CACHE_DIR=str(MODEL_CACHE),
        MONGARS_LOAD_PLUGINS="memory,reasoning,server",
        MONGARS_MEMORY__EMBEDDER="none",
        MONGARS_LLM__BACKEND="none-installed",
        **env,
    )
    data = str(tmp_path / "data")
    process = subprocess.Popen(
        [sys.executable, "-m", "mongars_core", "serve", "--port", str(port), "--data-dir", data],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    output: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        assert process.poll() is None, process.communicate()[0]
        yield url, output
    finally:
        process.terminate()
        output.extend(process.communicate(timeout=30)[0].splitlines())


def _logins(url: str, forwarded_for: list[str]) -> list[int]:
    with httpx.Client(base_url=url) as client:
        return [
            client.post(
                "/api/v1/auth/login",
                json={"username": "nobody", "password": "not the password"},
                headers={"X-Forwarded-For": address},
            ).status_code
            for address in forwarded_for
        ]


LIMITED = {"MONGARS_SERVER__RATE_LIMIT_BURST": "2", "MONGARS_SERVER__RATE_LIMIT_PER_MINUTE": "1"}


def test_a_forged_x_forwarded_for_does_not_dodge_the_rate_limit(tmp_path: Path) -> None:
    with serving(tmp_path, **LIMITED) as (url, _):
        statuses = _logins(url, ["10.0.0.1", "10.0.0.1", "10.0.0.2"])
    assert statuses == [401, 401, 429]


def test_x_forwarded_for_counts_from_a_configured_proxy(tmp_path: Path) -> None:
    with serving(tmp_path, MONGARS_SERVER__TRUSTED_PROXIES="127.0.0.1", **LIMITED) as (url, _):
        statuses = _logins(url, ["10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.1"])
    assert statuses == [401, 401, 401, 429]


async def test_websocket_tickets_stay_out_of_the_access_log(tmp_path: Path) -> None:
    with serving(tmp_path) as (url, output):
        async with httpx.AsyncClient(base_url=url) as client:
            token = await register(client, "alice")
            issued = await ticket(client, token)
            ws_url = "ws" + url.removeprefix("http") + f"/ws/chat/?t={issued}&x=1"
            async with websockets.connect(ws_url, open_timeout=5) as sock:
                assert "ws.connected" in str(await sock.recv())
            # Over plain HTTP as well (the access log proper), and a refused socket.
            await client.get(f"/ws/chat/?t={issued}")
            with contextlib.suppress(websockets.InvalidStatus):
                async with websockets.connect(ws_url, open_timeout=5):
                    pass
    log = "\n".join(output)
    assert "/ws/chat/" in log  # the requests were logged...
    assert issued not in log  # ...without the ticket
    assert issued.split(".")[0] not in log
    assert "/ws/chat/?[redacted]" in log


# -- 7. /ready on a read-only database ----------------------------------------------


async def test_ready_is_503_while_the_database_is_read_only(
    tmp_path: Path, make_server: Callable[..., LiveServer]
) -> None:
    path = tmp_path / "readonly.sqlite3"
    store = await Store.open(f"sqlite+aiosqlite:///{path}")
    await store.close()
    writable = make_server(database_url=f"sqlite+aiosqlite:///{path}")
    read_only = make_server(database_url=f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true")
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{writable.url}/ready")).status_code == 200
        answer = await client.get(f"{read_only.url}/ready")
    assert answer.status_code == 503
    assert "read-only" in answer.json()["checks"]["database"]
    assert str(path) not in answer.text


# -- 7. /metrics: seconds, and every worker in one scrape --------------------------


async def test_latency_buckets_are_in_seconds(make_server: Callable[..., LiveServer]) -> None:
    server = make_server(server={"metrics_access": "public"})
    async with httpx.AsyncClient(base_url=server.url) as client:
        await client.get("/healthz")
        for _ in range(50):
            text = (await client.get("/metrics")).text
            if "mongars_http_request_duration_seconds_bucket" in text:
                break
            await asyncio.sleep(0.05)
    bounds = {
        dict(labels)["le"]
        for (metric, labels) in parse_prometheus(text)
        if metric == "mongars_http_request_duration_seconds_bucket"
    }
    finite = sorted(float(bound) for bound in bounds - {"+Inf"})
    assert finite[0] <= 0.005 and 60 <= finite[-1] <= 600, finite
    assert [bound for bound in finite if 1 < bound < 2] == []  # no milli-scaled 0-10000 set


@pytest.mark.redis
async def test_one_scrape_counts_every_workers_requests(tmp_path: Path, redis_url: str) -> None:
    settings = server_settings(tmp_path, redis_url=redis_url, server={"metrics_access": "public"})
    with running(settings) as a, running(settings) as b:
        async with (
            httpx.AsyncClient(base_url=a.url) as on_a,
            httpx.AsyncClient(base_url=b.url) as on_b,
        ):
            for client, times in [(on_a, 3), (on_b, 2)]:
                for _ in range(times):
                    assert (await client.get("/healthz")).status_code == 200
            healthz: dict[str, float] = {}
            for _ in range(50):
                samples = parse_prometheus((await on_a.get("/metrics")).text)
                healthz = {
                    dict(labels)["worker"]: float(line.rsplit(" ", 1)[1])
                    for (metric, labels), line in samples.items()
                    if metric == "mongars_http_requests_total"
                    and dict(labels).get("route") == "/healthz"
                }
                if sum(healthz.values()) >= 5:
                    break
                await asyncio.sleep(0.05)
    assert sorted(healthz.values()) == [2, 3]


# -- 7. what error bodies give away ---------------------------------------------------


class _Relay:
    """A TCP relay to PostgreSQL, on its own thread, that the test can cut as a failing
    network would."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(self.target)
                self.open += [client, upstream]
                for source, sink in [(client, upstream), (upstream, client)]:
                    threading.Thread(target=self._copy, args=(source, sink), daemon=True).start()

    @staticmethod
    def _copy(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self.listener.close()
        for connection in self.open:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()


@pytest.fixture
async def postgres_database() -> AsyncIterator[str]:
    """A fresh, migrated PostgreSQL database; its URL."""
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(POSTGRES_URL)
    name = f"mongars_hardening_{uuid.uuid4().hex[:10]}"
    dsn = f"postgresql://{url.username}@{url.host}:{url.port or 5432}/{url.database}"
    try:
        admin = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError):
        service_unavailable("postgres", f"needs the PostgreSQL server at {POSTGRES_URL}")
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        created = str(url.set(database=name).render_as_string(hide_password=False))
        store = await Store.open(created, migrate=True)
        await store.close()
        yield created
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.mark.postgres
async def test_error_bodies_never_show_the_database_url(
    postgres_database: str, tmp_path: Path
) -> None:
    from sqlalchemy.engine import make_url

    real = make_url(postgres_database)
    relay = _Relay((real.host or "127.0.0.1", real.port or 5432))
    port = relay.port
    hidden = real.set(host="127.0.0.1", port=port, password="hunter2-password")
    url = hidden.render_as_string(hide_password=False)
    settings = server_settings(tmp_path, database_url=url)
    with running(settings) as server:
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get("/ready")).status_code == 200
            relay.cut()
            answers = [
                await client.post(
                    "/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}
                ),
                await client.post(
                    "/api/v1/user/register", json={"username": "bob", "password": PASSWORD}
                ),
                await client.get("/ready"),
            ]
    for answer in answers:
        assert answer.status_code == 503, answer.text
        for detail in ["hunter2", str(port), "127.0.0.1", "postgres", real.database or "?"]:
            assert detail not in answer.text, (detail, answer.text)
    assert answers[0].json()["detail"] == "the database is unavailable"


# -- 7. /docs, Host, Origin, CSP ----------------------------------------------------


async def test_the_api_docs_load_nothing_from_another_host(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.url) as client:
        docs = await client.get("/docs")
        redoc = await client.get("/redoc")
    assert docs.status_code == 200 and "/openapi.json" in docs.text
    assert "/api/v1/conversation/chat" in docs.text
    hosts = set(re.findall(r"(?:https?:)?//([\w.-]+)", docs.text))
    assert hosts == set(), hosts
    assert redoc.status_code == 404 or not re.search(r"(?:https?:)?//[\w.-]+", redoc.text)


async def test_a_forged_host_is_refused(make_server: Callable[..., LiveServer]) -> None:
    server = make_server()
    port = _port(server.url)
    for host in [f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST"]:
        head = f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
        assert _status(await asyncio.to_thread(_raw_request, port, head)) == 200, host
    for host in [f"evil.example:{port}", "rebind.attacker.test", f"127.0.0.1.evil.example:{port}"]:
        # A redirect (trailing slash) would have reflected the host into Location.
        head = (
            f"GET /api/v1/conversation/history/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
        )
        answer = await asyncio.to_thread(_raw_request, port, head)
        assert _status(answer) == 400, (host, answer[:300])
        assert b"evil" not in answer and b"attacker" not in answer
    anything = make_server(server={"allowed_hosts": "*"})
    head = "GET /healthz HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n"
    assert _status(await asyncio.to_thread(_raw_request, _port(anything.url), head)) == 200


def _upgrade(path: str, host: str, origin: str | None) -> str:
    head = (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    )
    return head + (f"Origin: {origin}\r\n" if origin else "")


async def test_a_dns_rebinding_page_cannot_open_a_websocket(
    make_server: Callable[..., LiveServer],
) -> None:
    server = make_server(server={"allowed_hosts": "127.0.0.1,mongars.lan"})
    port = _port(server.url)
    async with httpx.AsyncClient(base_url=server.url) as client:
        token = await register(client, "alice")

        async def status(host: str, origin: str | None) -> int:
            path = f"/ws/chat/?t={await ticket(client, token)}"
            head = _upgrade(path, host, origin)
            answer = await asyncio.to_thread(_raw_request, port, head, b"", 3)
            return _status(answer)

        # The attacker's name resolves to 127.0.0.1: the browser sends its own Host and Origin.
        assert await status(f"attacker.test:{port}", f"http://attacker.test:{port}") == 400
        # The right Host, but a page from elsewhere, or from an allowed name on another port.
        assert await status(f"127.0.0.1:{port}", f"http://attacker.test:{port}") == 403
        assert await status(f"127.0.0.1:{port}", "http://127.0.0.1:1") == 403
        # Allowed names are the server's own, whichever of them the page was loaded from.
        assert await status(f"127.0.0.1:{port}", f"http://mongars.lan:{port}") == 101
        assert await status(f"mongars.lan:{port}", f"http://mongars.lan:{port}") == 101
        assert await status(f"127.0.0.1:{port}", None) == 101


async def test_the_console_may_only_connect_to_its_own_origin(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.url) as client:
        policy = (await client.get("/")).headers["content-security-policy"]
    connect_src = next(p for p in policy.split(";") if p.strip().startswith("connect-src"))
    assert connect_src.split() == ["connect-src", "'self'"]
