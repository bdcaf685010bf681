"""Whether a GGUF model fits in memory, checked before llama.cpp loads it.

The file itself is checked by :func:`mongars_plugins.gguf_file.read_gguf` (its
header, and every tensor within the file); llama.cpp refuses a damaged file
with one generic ``RuntimeError`` and could reach an assert that aborts the
process. :func:`check_fits` compares what the model needs (its weights and its
KV cache) with the memory available.
"""

from __future__ import annotations

from pathlib import Path

from mongars_core.errors import ModelError
from mongars_plugins.gguf_file import GGUFFile

MEMINFO = Path("/proc/meminfo")

ENGINE_OVERHEAD = 64 << 20
"""Memory the engine needs besides weights and KV cache (compute buffers), roughly."""


def kv_bytes_per_token(model: GGUFFile, kv_type: str = "f16") -> int:
    """Bytes of KV cache (keys and values stored as ``kv_type``, ``f16`` or ``q8_0``) per
    token of context; 0 when unknown."""
    layers = model.number("block_count")
    width = model.number("embedding_length")
    heads = model.number("attention.head_count")
    heads_kv = model.number("attention.head_count_kv") or heads
    if not (layers and width and heads and heads_kv):
        return 0
    elements = 2 * layers * (width * heads_kv // heads)
    return elements * 34 // 32 if kv_type == "q8_0" else elements * 2


def available_memory(meminfo: Path | None = None) -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes; ``None`` where it cannot be read."""
    try:
        text = (meminfo or MEMINFO).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    return None


def required_memory(model: GGUFFile, context: int, kv_type: str = "f16") -> int:
    """Bytes the model needs loaded: its weights, its KV cache for ``context`` tokens, buffers."""
    return model.data_bytes + kv_bytes_per_token(model, kv_type) * context + ENGINE_OVERHEAD


def check_fits(model: GGUFFile, context: int, kv_type: str = "f16") -> None:
    """Raise :class:`ModelError` when the model cannot fit in the memory available now."""
    available = available_memory()
    if available is None:
        return
    needed = required_memory(model, context, kv_type)
    if needed > available:
        raise ModelError(
            f"{model.path.name} needs about {_mib(needed)} MiB of memory (weights and a "
            f"{context}-token KV cache) but only {_mib(available)} MiB is available; choose a "
            "smaller model, or lower MONGARS_LLAMACPP__SLOTS or MONGARS_LLAMACPP__CONTEXT_SIZE"
        )


def _mib(size: int) -> int:
    return -(-size // (1 << 20))
