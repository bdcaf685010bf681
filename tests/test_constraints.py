"""Constrained output (OutputConstraint): the router sends such a request only to
endpoints whose backend can keep to it, and says so in one line when none can."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from pydantic import ValidationError

from mongars_core.errors import (
    BackendUnavailableError,
    InvalidInputError,
    UnsupportedConstraintError,
)
from mongars_core.llm import LLMBackend
from mongars_core.resilience import Backoff
from mongars_core.response_cache import MemoryResponseCache
from mongars_core.router import Endpoint, LLMRouter
from mongars_core.settings import EndpointSpec, Settings
from mongars_core.types import ChatMessage, GenerationRequest, OutputConstraint
from mongars_testkit import InstantBackend, ScriptedBackend
from mongars_testkit.backends import Delta
from tests.conftest import MODEL_CACHE

SCHEMA = OutputConstraint(json_schema={"type": "object", "properties": {"x": {"type": "integer"}}})
GRAMMAR = OutputConstraint(grammar='root ::= "yes" | "no"')


class SchemaBackend(InstantBackend):
    """Keeps replies to JSON schemas (not grammars); answers ``{"x": 1}``."""

    def __init__(self) -> None:
        super().__init__(lambda request: '{"x": 1}')

    def can_constrain(self, constraint: OutputConstraint) -> bool:
        return constraint.json_schema is not None


class ScriptedSchemaBackend(ScriptedBackend):
    def __init__(self, *replies: str | BaseException | Sequence[Delta]) -> None:
        super().__init__(*replies)

    def can_constrain(self, constraint: OutputConstraint) -> bool:
        return True


def ask(
    constraint: OutputConstraint | None = None, *, cacheable: bool = False
) -> GenerationRequest:
    return GenerationRequest(
        messages=[ChatMessage(role="user", content="give me x")],
        constraint=constraint,
        cacheable=cacheable,
    )


def router(backends: dict[str, LLMBackend], **options: object) -> LLMRouter:
    """A router whose role ``general`` is ``backends``, in order."""
    roles = {"general": [EndpointSpec(backend=name) for name in backends]}
    return LLMRouter(backends, next(iter(backends)), roles=roles, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "fields",
    [{}, {"json_schema": {"type": "object"}, "grammar": 'root ::= "a"'}],
    ids=["neither", "both"],
)
def test_a_constraint_is_a_schema_or_a_grammar_not_both_or_neither(
    fields: dict[str, object],
) -> None:
    with pytest.raises(ValidationError, match="exactly one of json_schema and grammar"):
        OutputConstraint.model_validate(fields)


def test_a_constraint_is_frozen_and_travels_with_the_request() -> None:
    assert SCHEMA.grammar is None and GRAMMAR.json_schema is None
    with pytest.raises(ValidationError):
        SCHEMA.grammar = "root ::= x"  # type: ignore[misc]
    again = GenerationRequest.model_validate_json(ask(SCHEMA).model_dump_json())
    assert again.constraint == SCHEMA


async def test_a_constrained_request_skips_endpoints_that_cannot_constrain() -> None:
    plain, schema = InstantBackend(), SchemaBackend()
    llm = router({"plain": plain, "schema": schema})
    served: list[Endpoint] = []
    for _ in range(3):
        text = "".join([d async for d in llm.stream(ask(SCHEMA), on_endpoint=served.append)])
        assert text == '{"x": 1}'
    assert {e.backend_name for e in served} == {"schema"}
    assert plain.requests == []
    # Unconstrained, the plain endpoint still serves.
    for _ in range(2):
        await llm.generate(ask())
    assert len(plain.requests) >= 1


async def test_failover_of_a_constrained_request_stays_among_the_endpoints_that_constrain() -> None:
    first = ScriptedSchemaBackend(['{"x"', BackendUnavailableError("gone")])
    plain = InstantBackend()
    second = ScriptedSchemaBackend(": 1}")
    llm = router({"first": first, "plain": plain, "second": second}, backoff=Backoff(0.01, 0.02))
    served: list[Endpoint] = []
    text = "".join([d async for d in llm.stream(ask(SCHEMA), on_endpoint=served.append)])
    assert text.startswith('{"x"')
    assert [e.backend_name for e in served] == ["first", "second"]
    assert plain.requests == []
    assert second.requests[0].constraint == SCHEMA, "the constraint reaches the backend"


@pytest.mark.parametrize(
    ("constraint", "kind"), [(SCHEMA, "a JSON schema"), (GRAMMAR, "a grammar")]
)
async def test_a_constraint_no_endpoint_can_keep_is_a_one_line_error(
    constraint: OutputConstraint, kind: str
) -> None:
    plain, schema = InstantBackend(), SchemaBackend()
    backends: dict[str, LLMBackend] = {"plain": plain, "other": InstantBackend()}
    if constraint is GRAMMAR:
        backends["schema"] = schema  # can constrain, but not to a grammar
    llm = router(backends)
    with pytest.raises(UnsupportedConstraintError) as failed:
        await llm.generate(ask(constraint))
    message = str(failed.value)
    assert "\n" not in message
    assert f"no endpoint of general can keep a reply to {kind}" in message
    names = ", ".join(backends)
    assert f"({names}: not able to)" in message
    assert isinstance(failed.value, InvalidInputError), "the request's fault: a 4xx, no retry"
    assert plain.requests == [] and schema.requests == []


async def test_a_constrained_request_to_one_backend_is_refused_by_name() -> None:
    llm = router({"plain": InstantBackend(), "schema": SchemaBackend()})
    assert await llm.generate(ask(SCHEMA), "schema") == '{"x": 1}'
    with pytest.raises(UnsupportedConstraintError, match=r"no endpoint of plain .*\(plain: "):
        await llm.generate(ask(SCHEMA), "plain")


async def test_a_cached_reply_is_not_served_to_a_constrained_request() -> None:
    schema = SchemaBackend()
    schema.reply = lambda request: "free text" if request.constraint is None else '{"x": 1}'
    llm = router({"schema": schema}, cache=MemoryResponseCache(), cache_ttl_s=60)
    assert await llm.generate(ask(cacheable=True)) == "free text"
    assert await llm.generate(ask(SCHEMA, cacheable=True)) == '{"x": 1}'
    assert await llm.generate(ask(SCHEMA, cacheable=True)) == '{"x": 1}'
    assert len(schema.requests) == 2, "each kind once, then from the cache"


@pytest.mark.model
async def test_the_local_backend_constrains_through_llamacpp_and_not_through_torch(
    tmp_path: Path,
) -> None:
    """With the real engines behind ``local``: llama.cpp keeps the reply to the schema;
    with torch alone (as on a CPU without AVX2) the router refuses the request at once."""
    from mongars_plugins.local_engines import local_engine

    settings = Settings(data_dir=tmp_path, cache_dir=MODEL_CACHE, memory={"embedder": "none"})
    engine = local_engine(settings)
    if engine.engine_name != "llamacpp":
        pytest.skip(f"llama.cpp cannot run here ({engine.describe()})")
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}},
        "required": ["answer"],
    }
    ask = GenerationRequest(
        messages=[ChatMessage(role="user", content="What is 2 + 2? Answer in JSON.")],
        max_new_tokens=24,
        temperature=0,
        constraint=OutputConstraint(json_schema=schema),
    )
    try:
        reply = await LLMRouter({"local": engine}, "local").generate(ask)
    finally:
        await engine.engine.aclose()  # type: ignore[attr-defined]
    assert isinstance(json.loads(reply)["answer"], int), reply

    torch_only = LLMRouter({"local": local_engine(settings, ["torch"])}, "local")
    with pytest.raises(UnsupportedConstraintError, match=r"\(local: not able to\)"):
        await torch_only.generate(ask)
