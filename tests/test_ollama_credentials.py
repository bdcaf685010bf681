"""An Ollama host URL with a user and password: the credentials go to the server as
basic auth, on the official client's calls too, and nowhere else."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mongars_core.errors import ConfigurationError
from mongars_core.settings import Settings
from mongars_core.types import ChatMessage, GenerationRequest
from mongars_plugins.ollama import OLLAMA, build_backends, parse_hosts

SECRET = "S3cret:with@odd/chars"
URL_SECRET = "S3cret%3Awith%40odd%2Fchars"


class Recorder(BaseHTTPRequestHandler):
    """Answers /api/version and /api/chat as Ollama would, noting each Authorization."""

    seen: list[tuple[str, str | None]]

    def do_GET(self) -> None:
        self._answer({"version": "0.9.0"})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._answer(
            {
                "model": "m",
                "created_at": "2026-01-01T00:00:00Z",
                "message": {"role": "assistant", "content": "hi"},
                "done": True,
                "done_reason": "stop",
            }
        )

    def _answer(self, payload: dict[str, object]) -> None:
        self.seen.append((self.path, self.headers.get("Authorization")))
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[tuple[str, str | None]]]]:
    seen: list[tuple[str, str | None]] = []
    handler = type("Handler", (Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


async def test_credentials_go_as_basic_auth_and_are_shown_masked(
    recorder: tuple[str, list[tuple[str, str | None]]],
) -> None:
    address, seen = recorder
    settings = Settings(ollama={"hosts": [f"http://ouser:{URL_SECRET}@{address}"]})
    (backend,) = build_backends(settings.section(OLLAMA))
    assert await backend.version() == "0.9.0"
    reply = await backend.generate(
        GenerationRequest(messages=[ChatMessage(role="user", content="hello")])
    )
    assert reply == "hi"
    expected = "Basic " + base64.b64encode(f"ouser:{SECRET}".encode()).decode()
    assert seen == [("/api/version", expected), ("/api/chat", expected)]

    assert backend.url == f"http://{address}"
    assert backend.host.display_url == f"http://ouser:***@{address}"
    for shown in (repr(backend), backend.where, repr(backend.host)):
        assert SECRET not in shown and URL_SECRET not in shown
    assert f"http://ouser:***@{address}" in backend.where


def test_a_bad_url_with_a_password_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigurationError) as refused:
        parse_hosts([f"ftp://ouser:{URL_SECRET}@host"])
    assert URL_SECRET not in str(refused.value)
    assert "ftp://ouser:***@host" in str(refused.value)
    with pytest.raises(ConfigurationError) as bad_port:
        parse_hosts([f"http://ouser:{URL_SECRET}@host:notaport"])
    assert URL_SECRET not in str(bad_port.value)


@pytest.mark.parametrize("separator", ["/", "?", "#", "@"])
@pytest.mark.parametrize("url", ["http://ouser:{}@host:bad", "h=ftp://ouser:{}@host"])
def test_a_password_with_url_punctuation_is_not_shown_in_an_error(separator: str, url: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        parse_hosts([url.format(f"top{separator}secret9")])
    message = str(refused.value)
    assert "secret9" not in message and "top" not in message
    assert "ouser:***@host" in message
