"""Checks a GGUF file before llama.cpp reads it, and whether it fits in memory.

llama.cpp refuses a damaged file with one generic ``RuntimeError`` (the reason
only reaches its log on stderr), and a bad header could reach one of its
asserts, which abort the process. :func:`check_gguf` reads the header here, in
milliseconds (arrays are skipped, not parsed), and checks that every tensor's
data lies within the file: a truncated download or copy is a
:class:`~mongars_core.errors.CorruptModelError` naming the problem, before the
engine sees it. :func:`check_fits` compares what the model needs (its weights
and its KV cache) with the memory available.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mongars_core.errors import CorruptModelError, ModelError

MEMINFO = Path("/proc/meminfo")

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q"}
_SCALARS |= {11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_DEFAULT_ALIGNMENT = 32

# (elements per block, bytes per block) of each ggml type, as in gguf.constants;
# repeated here so the check needs no numpy-heavy import on the serving path.
_BLOCKS: dict[int, tuple[int, int]] = {
    0: (1, 4),  # F32
    1: (1, 2),  # F16
    2: (32, 18),  # Q4_0
    3: (32, 20),  # Q4_1
    6: (32, 22),  # Q5_0
    7: (32, 24),  # Q5_1
    8: (32, 34),  # Q8_0
    9: (32, 36),  # Q8_1
    10: (256, 84),  # Q2_K
    11: (256, 110),  # Q3_K
    12: (256, 144),  # Q4_K
    13: (256, 176),  # Q5_K
    14: (256, 210),  # Q6_K
    15: (256, 292),  # Q8_K
    16: (256, 66),  # IQ2_XXS
    17: (256, 74),  # IQ2_XS
    18: (256, 98),  # IQ3_XXS
    19: (256, 50),  # IQ1_S
    20: (32, 18),  # IQ4_NL
    21: (256, 110),  # IQ3_S
    22: (256, 82),  # IQ2_S
    23: (256, 136),  # IQ4_XS
    24: (1, 1),  # I8
    25: (1, 2),  # I16
    26: (1, 4),  # I32
    27: (1, 8),  # I64
    28: (1, 8),  # F64
    29: (256, 56),  # IQ1_M
    30: (1, 2),  # BF16
    34: (256, 54),  # TQ1_0
    35: (256, 66),  # TQ2_0
    39: (32, 17),  # MXFP4
}


@dataclass(frozen=True)
class GGUFSummary:
    """What the check read: scalar metadata, tensor count and the bytes the tensors span."""

    metadata: dict[str, Any] = field(default_factory=dict)
    tensors: int = 0
    data_bytes: int = 0

    @property
    def architecture(self) -> str | None:
        value = self.metadata.get("general.architecture")
        return value if isinstance(value, str) else None

    def number(self, key: str) -> int | None:
        """An integer metadata value of the architecture (``block_count``...), if present."""
        value = self.metadata.get(f"{self.architecture}.{key}")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def kv_bytes_per_token(self, kv_type: str = "f16") -> int:
        """Bytes of KV cache (keys and values stored as ``kv_type``, ``f16`` or ``q8_0``) per
        token of context; 0 when unknown."""
        layers = self.number("block_count")
        width = self.number("embedding_length")
        heads = self.number("attention.head_count")
        heads_kv = self.number("attention.head_count_kv") or heads
        if not (layers and width and heads and heads_kv):
            return 0
        elements = 2 * layers * (width * heads_kv // heads)
        return elements * 34 // 32 if kv_type == "q8_0" else elements * 2


def check_gguf(path: Path) -> GGUFSummary:
    """Read ``path``'s header and check that its tensors lie within the file.

    Raises :class:`CorruptModelError` for a missing, unreadable, non-GGUF,
    damaged or truncated file, with what is wrong.
    """
    try:
        with path.open("rb") as handle:
            size = path.stat().st_size
            if size < 24:
                raise CorruptModelError(f"{path} is not a GGUF model file ({size} bytes)")
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return _check(data, size, path)
    except FileNotFoundError:
        raise CorruptModelError(f"the model file {path} does not exist") from None
    except OSError as exc:
        raise CorruptModelError(f"cannot read the model file {path}: {exc}") from None


def _check(data: mmap.mmap, size: int, path: Path) -> GGUFSummary:
    if data[:4] != b"GGUF":
        raise CorruptModelError(f"{path} is not a GGUF model file (it does not start with 'GGUF')")
    try:
        version, n_tensors, n_kv = struct.unpack_from("<IQQ", data, 4)
        if version not in (2, 3):
            raise CorruptModelError(f"{path} is GGUF version {version}; versions 2 and 3 are read")
        parser = _Parser(data, size)
        metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = parser.string()
            kind = parser.unpack("<I")
            if kind == _ARRAY:
                inner, count = parser.unpack("<I"), parser.unpack("<Q")
                parser.skip(inner, count)
            else:
                metadata[key] = parser.value(kind)
        tensors: list[tuple[str, int, int]] = []  # name, offset, bytes
        for _ in range(n_tensors):
            name = parser.string()
            n_dims = parser.unpack("<I")
            if n_dims > 8:
                raise ValueError(f"tensor {name!r} has {n_dims} dimensions")
            elements = 1
            for _dim in range(n_dims):
                elements *= parser.unpack("<Q")
            kind = parser.unpack("<I")
            offset = parser.unpack("<Q")
            if kind not in _BLOCKS:
                raise ValueError(f"tensor {name!r} has an unknown type {kind}")
            per_block, block_bytes = _BLOCKS[kind]
            tensors.append((name, offset, -(-elements // per_block) * block_bytes))
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise CorruptModelError(
            f"{path} is a damaged or truncated GGUF file (its header: {exc})"
        ) from None
    alignment = metadata.get("general.alignment", _DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0:
        alignment = _DEFAULT_ALIGNMENT
    start = -(-parser.offset // alignment) * alignment
    end = start
    for name, offset, length in tensors:
        end = max(end, start + offset + length)
        if start + offset + length > size:
            raise CorruptModelError(
                f"{path} is truncated or damaged: tensor {name!r} ends at byte "
                f"{start + offset + length}, the file has {size} (an incomplete download or copy?)"
            )
    return GGUFSummary(metadata=metadata, tensors=len(tensors), data_bytes=end - start)


class _Parser:
    def __init__(self, data: mmap.mmap, size: int) -> None:
        self.data = data
        self.size = size
        self.offset = 24

    def unpack(self, layout: str) -> Any:
        (value,) = struct.unpack_from(layout, self.data, self.offset)
        self.offset += struct.calcsize(layout)
        return value

    def string(self) -> str:
        length = self.unpack("<Q")
        if self.offset + length > self.size:
            raise ValueError("a string runs past the end of the file")
        value = self.data[self.offset : self.offset + length].decode("utf-8")
        self.offset += length
        return value

    def value(self, kind: int) -> Any:
        if kind == _STRING:
            return self.string()
        if kind in _SCALARS:
            return self.unpack(_SCALARS[kind])
        raise ValueError(f"unknown metadata type {kind}")

    def skip(self, kind: int, count: int) -> None:
        if kind == _STRING:
            for _ in range(count):
                self.offset += 8 + self.unpack("<Q")
        elif kind in _SCALARS:
            self.offset += struct.calcsize(_SCALARS[kind]) * count
        elif kind == _ARRAY:
            for _ in range(count):
                inner, inner_count = self.unpack("<I"), self.unpack("<Q")
                self.skip(inner, inner_count)
        else:
            raise ValueError(f"unknown metadata type {kind}")
        if self.offset > self.size:
            raise ValueError("an array runs past the end of the file")


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


ENGINE_OVERHEAD = 64 << 20
"""Memory the engine needs besides weights and KV cache (compute buffers), roughly."""


def required_memory(summary: GGUFSummary, context: int, kv_type: str = "f16") -> int:
    """Bytes the model needs loaded: its weights, its KV cache for ``context`` tokens, buffers."""
    return summary.data_bytes + summary.kv_bytes_per_token(kv_type) * context + ENGINE_OVERHEAD


def check_fits(path: Path, summary: GGUFSummary, context: int, kv_type: str = "f16") -> None:
    """Raise :class:`ModelError` when the model cannot fit in the memory available now."""
    available = available_memory()
    if available is None:
        return
    needed = required_memory(summary, context, kv_type)
    if needed > available:
        raise ModelError(
            f"{path.name} needs about {_mib(needed)} MiB of memory (weights and a "
            f"{context}-token KV cache) but only {_mib(available)} MiB is available; choose a "
            "smaller model, or lower MONGARS_LLAMACPP__SLOTS or MONGARS_LLAMACPP__CONTEXT_SIZE"
        )


def _mib(size: int) -> int:
    return -(-size // (1 << 20))
