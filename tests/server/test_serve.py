"""``mongars serve`` as a user runs it: a real process, the real local model."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import MODEL_CACHE, run_mongars
from tests.server.conftest import PASSWORD


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONGARS_")}
    env.update(
        MONGARS_CACHE_DIR=str(MODEL_CACHE),
        MONGARS_MEMORY__EMBEDDER="none",
        MONGARS_LLM__MAX_NEW_TOKENS="12",
        HF_HUB_OFFLINE="1",
    )
    return env


def test_more_workers_need_redis(tmp_path: Path) -> None:
    result = run_mongars("serve", "--workers", "2", "--data-dir", str(tmp_path), env=_env(tmp_path))
    assert result.returncode == 1
    assert "MONGARS_REDIS_URL" in result.stderr


@pytest.mark.model
def test_serve_starts_the_server_with_the_local_model(tmp_path: Path) -> None:
    port = _free_port()
    data = tmp_path / "data"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mongars_core",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data),
        ],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600  # a first run fetches and converts the model
        ready = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                ready = httpx.get(f"{url}/ready", timeout=5)
            except httpx.TransportError:
                ready = None
            if ready is not None and ready.status_code == 200:
                break
            time.sleep(0.5)
        assert ready is not None and ready.status_code == 200, "the server never became ready"
        assert ready.json()["checks"] == {"database": "ok", "backend": "ok"}

        with httpx.Client(base_url=url, timeout=120) as client:
            page = client.get("/")
            assert page.status_code == 200 and "monGARS" in page.text
            credentials = {"username": "first_user", "password": PASSWORD}
            assert client.post("/api/v1/user/register", json=credentials).status_code == 201
            token = client.post("/api/v1/auth/login", json=credentials).json()["access_token"]
            chat = client.post(
                "/api/v1/conversation/chat",
                json={"message": "Say hello."},
                headers={"Authorization": f"Bearer {token}"},
            )
        assert chat.status_code == 200, chat.text
        assert chat.json()["response"].strip()
        assert (data / "mongars.sqlite3").exists()
        assert oct((data / "server-secret").stat().st_mode & 0o777) == "0o600"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
    assert process.returncode == 0, output
    assert f"monGARS on http://127.0.0.1:{port}" in output
