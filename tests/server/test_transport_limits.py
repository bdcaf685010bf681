"""What a client can make the server hold at the transport level: websocket frame
size, stalled and refused bodies, and what the access log, the Host check and the
API page give away. Real servers (`mongars serve` where the uvicorn options
matter), real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from mongars_server.routes.websocket import MAX_FRAME_CHARS
from tests.server.conftest import LiveServer, bearer, register
from tests.server.test_hardening import (
    _complete,
    _port,
    _raw_request,
    _status,
    serving,
)
from tests.server.test_websocket import opened, ticket

LIMIT = 64 * 1024


# -- 1. websocket frames -----------------------------------------------------------


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.redis)])
async def test_a_websocket_frame_past_the_limit_is_refused_unread(
    tmp_path: Path, workers: int, request: pytest.FixtureRequest
) -> None:
    """Under `mongars serve` (one process, or workers): a frame of the most characters
    allowed still gets an answer; a bigger one closes the socket (1009) unread."""
    env = {"MONGARS_SERVER__WORKERS": str(workers)}
    if workers > 1:
        env["MONGARS_REDIS_URL"] = request.getfixturevalue("redis_url")
        env["MONGARS_REDIS_NAMESPACE"] = f"frames-{uuid.uuid4().hex[:8]}"
    with serving(tmp_path, **env) as (url, _):
        async with httpx.AsyncClient(base_url=url) as client:
            token = await register(client, "alice")
            ws_url = "ws" + url.removeprefix("http") + "/ws/chat/?t="
            async with websockets.connect(
                ws_url + await ticket(client, token), open_timeout=5
            ) as sock:
                await opened(sock)
                # MAX_FRAME_CHARS characters of 4 UTF-8 bytes each: answered (not JSON).
                await sock.send("\U0001f600" * MAX_FRAME_CHARS)
                answer = await asyncio.wait_for(sock.recv(), 5)
                assert "error" in str(answer)
                await sock.send("x" * (4 * MAX_FRAME_CHARS + 1))
                try:
                    await asyncio.wait_for(sock.recv(), 5)
                    raise AssertionError("a frame past the limit was read and answered")
                except ConnectionClosed as closed:
                    assert closed.rcvd is not None and closed.rcvd.code == 1009


# -- 2. a body that never ends -----------------------------------------------------


def _trickle(raw: socket.socket, stop: threading.Event) -> None:
    """A chunk of a chunked body every 50 ms until told to stop or the server hangs up."""
    with contextlib.suppress(OSError):
        while not stop.is_set():
            raw.sendall(b"10\r\n" + b"x" * 16 + b"\r\n")
            stop.wait(0.05)


def _read_until_closed(raw: socket.socket, limit_s: float) -> tuple[bytes, bool]:
    """Everything the server sends, and whether it closed the connection within ``limit_s``."""
    raw.settimeout(limit_s)
    answer = b""
    try:
        while data := raw.recv(65536):
            answer += data
    except ConnectionResetError:
        return answer, True
    except TimeoutError:
        return answer, False
    return answer, True


async def test_a_never_ending_body_gets_408_and_the_connection_closes(
    make_server: Callable[..., LiveServer],
) -> None:
    server = make_server(server={"max_body_bytes": LIMIT, "body_timeout_s": 1})
    port = _port(server.url)

    def attack() -> tuple[bytes, bool, float]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(
                b"POST /api/v1/conversation/chat HTTP/1.1\r\n"
                + f"Host: 127.0.0.1:{port}\r\n".encode()
                + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            started = time.monotonic()
            stop = threading.Event()
            sender = threading.Thread(target=_trickle, args=(raw, stop), daemon=True)
            sender.start()
            try:
                answer, closed = _read_until_closed(raw, 10)
            finally:
                stop.set()
                sender.join(5)
            return answer, closed, time.monotonic() - started

    answer, closed, elapsed = await asyncio.to_thread(attack)
    assert answer, "the server never answered a body that never ends"
    assert _status(answer) == 408, answer[:200]
    assert b"body_timeout" in answer
    assert closed and elapsed < 5, elapsed


async def test_a_body_sent_in_time_is_served(make_server: Callable[..., LiveServer]) -> None:
    server = make_server(server={"body_timeout_s": 1})
    async with httpx.AsyncClient(base_url=server.url) as client:
        token = await register(client, "alice")
        sent = await client.post(
            "/api/v1/conversation/chat", json={"message": "hello"}, headers=bearer(token)
        )
    assert sent.status_code == 200, sent.text


# -- 3. after a 413 ----------------------------------------------------------------


async def test_the_connection_closes_after_a_413(make_server: Callable[..., LiveServer]) -> None:
    server = make_server(server={"max_body_bytes": LIMIT})
    port = _port(server.url)
    start = f"POST /api/v1/conversation/chat HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    heads = [
        # Refused on its Content-Length, before a byte of the body.
        start + f"Content-Length: {200 * 1024 * 1024}\r\n\r\n",
        # Refused once the chunked body passes the limit.
        start + "Transfer-Encoding: chunked\r\n\r\n",
    ]

    def attack(head: str) -> tuple[bytes, int, bool]:
        """The answer, how much more body the server took after it, and whether it hung up."""
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(head.encode())
            if "chunked" in head:
                chunk = b"x" * (LIMIT + 1)
                raw.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            answer = b""
            with contextlib.suppress(OSError):
                while not _complete(answer) and (data := raw.recv(65536)):
                    answer += data
            # Go on sending: a server that still reads takes all of it (it took
            # 200 MB in 0.2 s); one that hung up takes at most the sockets' buffers.
            taken = 0
            block = b"1000\r\n" + b"x" * 4096 + b"\r\n" if "chunked" in head else b"x" * 4104
            with contextlib.suppress(OSError):
                while taken < 64 * 1024 * 1024:
                    raw.sendall(block * 256)
                    taken += len(block) * 256
            _, closed = _read_until_closed(raw, 2)
            return answer, taken, closed

    for head in heads:
        answer, taken, closed = await asyncio.to_thread(attack, head)
        assert taken < 16 * 1024 * 1024, f"the server read {taken} bytes after {answer[:40]!r}"
        assert closed, f"the connection stayed open after {answer[:40]!r}"
        if answer:  # a reset may beat the answer to a client still sending
            assert _status(answer) == 413, answer[:200]
            assert b"connection: close" in answer.lower()


# -- 4. the access log -------------------------------------------------------------


async def test_the_access_log_carries_no_query_string(tmp_path: Path) -> None:
    with serving(tmp_path) as (url, output):
        async with httpx.AsyncClient(base_url=url) as client:
            token = await register(client, "alice")
            ws_url = "ws" + url.removeprefix("http") + "/ws/chat/"
            issued = []
            # %74 is "t" once decoded: the server takes it as the ticket.
            for name in ["%74", "t", "T"]:
                issued.append(await ticket(client, token))
                with contextlib.suppress(websockets.InvalidStatus):
                    async with websockets.connect(
                        f"{ws_url}?{name}={issued[-1]}", open_timeout=5
                    ) as sock:
                        await opened(sock)
                await client.get(f"/ws/chat/?x=1&{name}={issued[-1]}")
            searched = await client.get(
                "/api/v1/memories/search",
                params={"q": "my passport number"},
                headers=bearer(token),
            )
            assert searched.status_code == 200, searched.text
    log = "\n".join(output)
    assert "/ws/chat/" in log and "/api/v1/memories/search" in log  # logged...
    for value in issued:  # ...without any query string
        assert value.split(".")[0] not in log
    assert "passport" not in log
    assert not re.search(r"\?(?!\[redacted\])\S", log), log


# -- 5. the Host header ------------------------------------------------------------


async def test_the_host_header_is_parsed_strictly(make_server: Callable[..., LiveServer]) -> None:
    server = make_server(server={"allowed_hosts": "localhost,127.0.0.1,[::1],mongars.lan:8443"})
    port = _port(server.url)

    async def answer(*hosts: str) -> bytes:
        head = "GET /api/v1/conversation/history/ HTTP/1.1\r\n"
        head += "".join(f"Host: {host}\r\n" for host in hosts) + "Connection: close\r\n"
        return await asyncio.to_thread(_raw_request, port, head)

    for host in [
        "LOCALHOST:1",
        f"localhost:{port}@evil.com",
        f"localhost:{port}/evil.com",
        f"localhost:{port} evil.com",
        "localhost:",
        "localhost:99999",
        f"localhost:{port}:{port}",
        "user@localhost",
        f"[::1:{port}",
        f"[::1]x:{port}",
        f"[evil.com]:{port}",
        "mongars.lan:1",
        "localhost%2fevil.com",
    ]:
        refused = await answer(host)
        assert _status(refused) == 400, (host, refused[:300])
        assert b"evil" not in refused and b":1/" not in refused
    assert _status(await answer(f"localhost:{port}", "evil.com")) == 400
    # The server's own names, with its own port or none (or one the operator listed).
    for host in [
        f"localhost:{port}",
        "LOCALHOST",
        f"[::1]:{port}",
        "localhost.",
        "mongars.lan:8443",
    ]:
        moved = await answer(host)
        assert _status(moved) == 307, (host, moved[:300])
    # A redirect names the host as the server knows it.
    moved = await answer(f"LocalHost:{port}")
    location = re.search(rb"location: *(\S+)", moved, re.IGNORECASE)
    assert location is not None, moved[:300]
    assert location.group(1) == f"http://localhost:{port}/api/v1/conversation/history".encode()


async def test_a_websocket_origin_is_parsed_strictly(
    make_server: Callable[..., LiveServer],
) -> None:
    server = make_server()
    port = _port(server.url)
    async with httpx.AsyncClient(base_url=server.url) as client:
        token = await register(client, "alice")

        async def status(origin: str) -> int:
            path = f"/ws/chat/?t={await ticket(client, token)}"
            head = (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                f"Sec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n"
            )
            return _status(await asyncio.to_thread(_raw_request, port, head, b"", 3))

        assert await status(f"http://127.0.0.1:{port}@evil.com:{port}") == 403
        assert await status(f"http://evil.com@127.0.0.1:{port}") == 403
        assert await status(f"http://127.0.0.1:{port}") == 101


# -- 6. the API page and its own policy --------------------------------------------


async def test_the_api_page_needs_nothing_its_policy_forbids(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.url) as client:
        page = await client.get("/docs")
        policy = page.headers["content-security-policy"]
        assert "'unsafe-inline'" not in policy
        assert "<style" not in page.text.lower()
        assert not re.search(r"\sstyle\s*=", page.text, re.IGNORECASE)
        assert not re.search(r"<script(?![^>]*\ssrc=)", page.text, re.IGNORECASE)
        assert not re.search(r"\son[a-z]+\s*=", page.text, re.IGNORECASE)
        sheets = re.findall(r'<link rel=stylesheet href="(/[^"]+)"', page.text)
        assert sheets, "the page has no style sheet"
        for sheet in sheets:
            css = await client.get(sheet)
            assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
