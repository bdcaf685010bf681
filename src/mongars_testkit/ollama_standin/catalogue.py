"""The models a stand-in serves or can "pull"; Ollama's rules for names, times,
durations and request fields."""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

DEFAULT_MODEL = "smollm2:135m"
DEFAULT_EMBED_MODEL = "all-minilm:latest"
FOREVER = timedelta(microseconds=(2**63 - 1) // 1000)
"""What Ollama's negative ``keep_alive`` means: the longest Go duration."""

_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_NAME = re.compile(rf"^{_PART}(/{_PART})*(:[A-Za-z0-9_][A-Za-z0-9._-]*)?$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


class StandinError(Exception):
    """A request the stand-in answers with Ollama's ``{"error": message}`` and ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def canonical_name(name: str) -> str:
    """``name`` with Ollama's default tag: ``all-minilm`` is ``all-minilm:latest``."""
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name))


def timestamp(moment: datetime | None = None) -> str:
    """RFC 3339 in UTC with a ``Z``, as Go writes ``time.Time``."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_keep_alive(value: Any, default: timedelta) -> timedelta:
    """A request's ``keep_alive``: seconds as a number, or a Go duration such as ``"5m"``.

    Negative means forever; a bad value is a 400, as in Ollama.
    """
    if value is None:
        return default
    if isinstance(value, bool):
        raise StandinError(400, "json: cannot unmarshal bool into Go value of type api.Duration")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise StandinError(400, f"time: invalid duration {value!r}")
        return FOREVER if value < 0 else timedelta(seconds=value)
    if not isinstance(value, str):
        raise StandinError(400, "json: cannot unmarshal value into Go value of type api.Duration")
    text = value.strip()
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    if body == "0":
        return timedelta(0)
    parts = _DURATION_PART.findall(body)
    if not body or "".join(number + unit for number, unit in parts) != body:
        raise StandinError(400, f'time: invalid duration "{value}"')
    seconds = sign * sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    return FOREVER if seconds < 0 else timedelta(seconds=seconds)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class StandinModel:
    """A model as the stand-in describes it in ``/api/tags``, ``/api/show`` and ``/api/ps``.

    The numbers are descriptive only: whatever the name, the stand-in's one
    backend (or embedder) answers.
    """

    name: str
    family: str = "llama"
    parameter_size: str = "134.52M"
    quantization_level: str = "Q4_1"
    format: str = "gguf"
    size: int = 91_000_000
    capabilities: tuple[str, ...] = ("completion",)
    context_length: int = 8192
    embedding_length: int = 576
    template: str = (
        "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
        "{{ end }}<|im_start|>assistant\n"
    )
    parameters: str = f'{"stop":<30} "<|im_start|>"\n{"stop":<30} "<|im_end|>"'

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", canonical_name(self.name))

    @property
    def digest(self) -> str:
        """The manifest digest (64 hex digits, derived from the name)."""
        return _sha256(f"mongars-standin manifest {self.name}")

    def layers(self) -> list[tuple[str, int]]:
        """``(digest, size)`` of each blob a pull "downloads": weights, template, params."""
        return [
            (f"sha256:{_sha256(f'weights {self.name}')}", self.size),
            (f"sha256:{_sha256(self.template)}", len(self.template.encode("utf-8"))),
            (f"sha256:{_sha256(self.parameters)}", len(self.parameters.encode("utf-8"))),
        ]

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": self.format,
            "family": self.family,
            "families": [self.family],
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization_level,
        }

    def model_info(self) -> dict[str, Any]:
        return {
            "general.architecture": self.family,
            "general.basename": self.name.split(":")[0],
            f"{self.family}.context_length": self.context_length,
            f"{self.family}.embedding_length": self.embedding_length,
        }


def chat_model(name: str = DEFAULT_MODEL) -> StandinModel:
    """SmolLM2-135M-Instruct, the model of the cuda plugin's ``local`` backend."""
    return StandinModel(name=name)


def embedding_model(name: str = DEFAULT_EMBED_MODEL, dimension: int = 384) -> StandinModel:
    """all-MiniLM-L6-v2, the model of the cuda plugin's ``minilm`` embedder."""
    return StandinModel(
        name=name,
        family="bert",
        parameter_size="23M",
        quantization_level="F16",
        size=45_960_996,
        capabilities=("embedding",),
        context_length=256,
        embedding_length=dimension,
        template="{{ .Prompt }}",
        parameters="",
    )


def json_kind(value: Any) -> str:
    """The JSON type of a decoded value, as Go names it in its errors."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "null"


_GO_TYPES = {
    str: "string",
    bool: "bool",
    int: "int",
    list: "[]interface {}",
    dict: "map[string]interface {}",
}


def typed_field(body: dict[str, Any], key: str, kind: type, request: str) -> Any:
    """``body[key]`` if it has the JSON type Go expects, else the 400 Ollama gives."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise StandinError(
        400,
        f"json: cannot unmarshal {json_kind(value)} into Go struct field "
        f"{request}.{key} of type {_GO_TYPES[kind]}",
    )
