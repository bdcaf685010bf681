"""Property-based fuzzing of the server's own OpenAPI schema with schemathesis.

Every operation in ``/openapi.json`` is called with generated input: the
schema's examples, schemathesis' coverage cases (boundary values, missing and
mistyped fields, wrong content types, methods the path does not allow) and
random valid and invalid input. That runs once per kind of caller: nobody
(schemathesis then generates the ``Authorization`` header too), a user, an
administrator, and an API key on the OpenAI-compatible routes.

Whatever a client sends, the server must never answer 5xx, and every error
must be JSON in the route's shape: ``{"detail", "code"}``, or OpenAI's
``{"error": {"message", "type", ...}}`` under ``/v1/``.

schemathesis' pytest plugin (``schemathesis.pytest.from_fixture``) cannot run
under pytest 9.2 (it sets ``Function._nodeid``, which pytest no longer has),
so these tests drive schemathesis' per-operation Hypothesis test builder
themselves, against a server that runs for the whole module.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.core.result import Err
from schemathesis.generation.feedback import FeedbackSources
from schemathesis.generation.hypothesis.builder import (
    HypothesisTestConfig,
    HypothesisTestMode,
    create_test,
)

from mongars_core.storage.store import Store
from mongars_server.accounts import AccountStore
from mongars_testkit import InstantBackend
from tests.server.conftest import PASSWORD, LiveServer, running, server_settings

# Random examples per operation and caller, on top of the coverage cases.
# The whole module takes about 35 s on a 2-core machine.
EXAMPLES_PER_OPERATION = 30

FUZZ_CONFIG = {
    "generation": {
        "mode": "all",  # valid and invalid input
        "max-examples": EXAMPLES_PER_OPERATION,
        "deterministic": True,  # the same cases on every run
        "database": "none",  # no .hypothesis directory
    },
    # Every case is a real HTTP round trip, some through the chat pipeline.
    "suppress-health-check": ["too_slow", "filter_too_much"],
    # A random model name never exists, nor does a random message list hold a
    # user's: half the time, put those in, so chat completions get further.
    "dictionaries": {"models": {"values": ["mongars", "instant"]}, "roles": {"values": ["user"]}},
    "parameters": {
        "body.model": {"dictionary": "models", "probability": 0.5},
        "body.messages[*].role": {"dictionary": "roles", "probability": 0.5},
    },
}

ANONYMOUS, USER, ADMIN, API_KEY = "anonymous", "user", "admin", "api key"


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for the module: what a fuzzer leaves behind is part of the test."""
    with running(server_settings(tmp_path_factory.mktemp("fuzz")), InstantBackend()) as server:
        yield server


def _register(client: httpx.Client, username: str) -> str:
    credentials = {"username": username, "password": PASSWORD}
    created = client.post("/api/v1/user/register", json=credentials)
    assert created.status_code == 201, created.text
    login = client.post("/api/v1/auth/login", json=credentials)
    assert login.status_code == 200, login.text
    token: str = login.json()["access_token"]
    return token


async def _make_admin(server: LiveServer, username: str) -> None:
    """What ``mongars users create-admin`` does: there is no HTTP route for it."""
    store = await Store.open(server.settings.resolved_database_url())
    try:
        await AccountStore(store).set_admin(username, True)
    finally:
        await store.close()


@pytest.fixture(scope="module")
def authorization(fuzz_server: LiveServer) -> dict[str, str]:
    """The ``Authorization`` header of each caller but the anonymous one.

    The API key belongs to an account no fuzzed caller acts as, so no
    generated ``DELETE /api/v1/keys/{key_id}`` can revoke it.
    """
    with httpx.Client(base_url=fuzz_server.url, timeout=30) as client:
        user = _register(client, "fuzz-user")
        admin = _register(client, "fuzz-admin")
        asyncio.run(_make_admin(fuzz_server, "fuzz-admin"))
        me = client.get("/api/v1/user/me", headers={"Authorization": f"Bearer {admin}"})
        assert me.json()["is_admin"] is True, me.text
        holder = _register(client, "fuzz-key-holder")
        created = client.post(
            "/api/v1/keys", json={"name": "fuzz"}, headers={"Authorization": f"Bearer {holder}"}
        )
        assert created.status_code == 201, created.text
        key = created.json()["key"]
    return {USER: f"Bearer {user}", ADMIN: f"Bearer {admin}", API_KEY: f"Bearer {key}"}


def _is_secured(operation: schemathesis.APIOperation) -> bool:
    return bool(operation.definition.raw.get("security"))


def _operations(server: LiveServer, caller: str) -> list[schemathesis.APIOperation]:
    """What ``caller`` fuzzes: everything anonymously; with credentials, the
    operations that check them (API keys: the OpenAI-compatible ones)."""
    config = schemathesis.Config.from_dict(FUZZ_CONFIG)
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=config)
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # the server published a schema schemathesis cannot read
        operations.append(result.ok())
    if caller == API_KEY:
        return [op for op in operations if _is_secured(op) and op.path.startswith("/v1/")]
    if caller != ANONYMOUS:
        return [op for op in operations if _is_secured(op)]
    return operations


@dataclass
class Findings:
    """The bad answers, one per operation and kind of problem, each with the
    shortest request that got it; and the statuses each operation answered."""

    problems: dict[str, tuple[str, str]] = field(default_factory=dict)
    statuses: defaultdict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))

    def add(
        self, case: schemathesis.Case, headers: dict[str, str], problem: str, seen: str
    ) -> None:
        key = f"{case.operation.label}: {problem}"
        request = case.as_curl_command(headers=headers)
        known = self.problems.get(key)
        if known is None or len(request) < len(known[0]):
            self.problems[key] = (request, seen)

    def report(self) -> str:
        return "\n\n".join(
            f"{key}\n  {request}\n  -> {seen}" for key, (request, seen) in self.problems.items()
        )


def error_shape_problem(path: str, status: int, content_type: str, content: bytes) -> str | None:
    """Why an error response is not a clear JSON error in the route's shape, if it isn't."""
    if not content_type.startswith("application/json"):
        return f"{status} error that is not JSON ({content_type or 'no content type'})"
    try:
        body: Any = json.loads(content)
    except ValueError:
        return f"{status} error whose JSON does not parse"
    if not isinstance(body, dict):
        return f"{status} error whose JSON is not an object"
    if path.startswith("/v1/"):
        error = body.get("error")
        if not (isinstance(error, dict) and error.get("message") and error.get("type")):
            return f"{status} error without OpenAI's error.message and error.type"
    elif not (body.get("detail") and body.get("code")):
        return f"{status} error without 'detail' and 'code'"
    return None


def fuzz(operation: schemathesis.APIOperation, headers: dict[str, str], findings: Findings) -> None:
    """Run schemathesis' cases for ``operation``; record what goes wrong instead
    of raising, so one run reports every problem (shrinking over HTTP is slow)."""

    def call(case: schemathesis.Case) -> None:
        try:
            response = case.call(headers=headers, timeout=30)
        except requests.RequestException as exc:
            findings.add(case, headers, "no response", f"{type(exc).__name__}: {exc}")
            return
        status = response.status_code
        findings.statuses[operation.label][status] += 1
        seen = f"{status} {response.text[:300]!r}"
        if status >= 500:
            findings.add(case, headers, f"server error {status}", seen)
        elif status >= 400:
            content_type = response.headers.get("content-type", [""])[0]
            problem = error_shape_problem(operation.path, status, content_type, response.content)
            if problem is not None:
                findings.add(case, headers, problem, seen)

    project = operation.schema.config
    test = create_test(
        operation=operation,
        test_func=call,
        config=HypothesisTestConfig(
            project=project,
            modes=[
                HypothesisTestMode.EXAMPLES,
                HypothesisTestMode.COVERAGE,
                HypothesisTestMode.FUZZING,
            ],
            settings=project.get_hypothesis_settings(operation=operation, phase="fuzzing"),
            feedback=FeedbackSources(),
        ),
    )
    test()


# schemathesis' negative-input generators call the global ``random`` module
# inside Hypothesis strategies (Hypothesis seeds it, so runs stay repeatable);
# Hypothesis deprecates that with a warning the project cannot act on.
@pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning"
)
@pytest.mark.parametrize("caller", [ANONYMOUS, USER, ADMIN, API_KEY])
def test_no_request_gets_a_server_error_or_an_unclear_error(
    fuzz_server: LiveServer, authorization: dict[str, str], caller: str
) -> None:
    headers = {} if caller == ANONYMOUS else {"Authorization": authorization[caller]}
    operations = _operations(fuzz_server, caller)
    findings = Findings()
    for operation in operations:
        fuzz(operation, headers, findings)

    assert not findings.problems, (
        f"{len(findings.problems)} kinds of bad answer to a {caller} caller:\n\n"
        + findings.report()
    )
    # The fuzzing reached every operation, and the credentials decided the answers.
    assert {op.label for op in operations} <= set(findings.statuses)
    for operation in operations:
        statuses = findings.statuses[operation.label]
        if _is_secured(operation):
            if caller == ANONYMOUS:
                assert statuses[401], f"{operation.label} never asked for credentials"
            else:
                assert not statuses[401], f"{operation.label} refused the {caller}"
    if caller != ANONYMOUS:
        assert any(
            200 <= status < 300 for statuses in findings.statuses.values() for status in statuses
        ), f"no request by the {caller} succeeded: {dict(findings.statuses)}"


# Text as a client may send it: any characters, lone surrogates (valid as
# JSON escapes, not as UTF-8) and control characters included.
MESSAGES = st.one_of(
    st.text(max_size=200),
    st.text(st.characters(categories=["Cs", "Cc", "Zs", "L", "So"]), max_size=50),
)


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    message=MESSAGES,
    route=st.sampled_from(["/api/v1/conversation/chat", "/v1/chat/completions"]),
    stream=st.booleans(),
)
def test_no_message_text_gets_a_server_error_from_the_pipeline(
    fuzz_server: LiveServer, authorization: dict[str, str], message: str, route: str, stream: bool
) -> None:
    """Requests the schema accepts, with any text: the text reaches the whole
    pipeline (memory, reasoning, storage), where a schema-driven fuzzer's
    random requests rarely get."""
    if route.startswith("/v1/"):
        body: dict[str, Any] = {
            "model": "mongars",
            "stream": stream,
            "messages": [{"role": "user", "content": message}],
        }
    else:
        body = {"message": message}
    with httpx.Client(base_url=fuzz_server.url, timeout=30) as client:
        response = client.post(
            route,
            content=json.dumps(body),  # ASCII: lone surrogates go out as \ud800 escapes
            headers={"Authorization": authorization[USER], "Content-Type": "application/json"},
        )
    seen = f"POST {route} {json.dumps(body)} -> {response.status_code} {response.text[:300]!r}"
    assert response.status_code < 500, seen
    if response.status_code >= 400:
        content_type = response.headers.get("content-type", "")
        problem = error_shape_problem(route, response.status_code, content_type, response.content)
        assert problem is None, f"{problem}: {seen}"
    elif route.startswith("/v1/") and stream:
        assert response.text.endswith("data: [DONE]\n\n"), seen
        assert '"server_error"' not in response.text, seen


@pytest.fixture(scope="module")
def small_body_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # File uploads have their own, larger limit: both small here.
    limits = {"max_body_bytes": 1024, "max_upload_bytes": 1024}
    small = server_settings(tmp_path_factory.mktemp("small"), server=limits)
    with running(small, InstantBackend()) as server:
        yield server


def _operations_with_a_body(server: LiveServer) -> list[tuple[str, str, str]]:
    """(method, path, media type) of each operation that takes a request body."""
    schema = httpx.get(f"{server.url}/openapi.json").json()
    return [
        (method.upper(), path, next(iter(operation["requestBody"]["content"])))
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if "requestBody" in operation
    ]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_oversized_body_gets_a_clear_413_on_every_route(
    small_body_server: LiveServer, chunked: bool
) -> None:
    """The body limit is a middleware, outside FastAPI's error handlers: its
    413 must still come in the route's error shape."""
    operations = _operations_with_a_body(small_body_server)
    assert operations
    problems = []
    with httpx.Client(base_url=small_body_server.url, timeout=30) as client:
        for method, path, media_type in operations:
            body = b"x" * 2048
            # A generator body goes out chunked, with no Content-Length to check up front.
            content = iter([body[:1024], body[1024:]]) if chunked else body
            response = client.request(
                method, path, content=content, headers={"Content-Type": media_type}
            )
            seen = f"{method} {path} -> {response.status_code} {response.text[:300]!r}"
            if response.status_code != 413:
                problems.append(f"not 413: {seen}")
                continue
            problem = error_shape_problem(
                path, 413, response.headers.get("content-type", ""), response.content
            )
            if problem is not None:
                problems.append(f"{problem}: {seen}")
    assert not problems, "\n".join(problems)
