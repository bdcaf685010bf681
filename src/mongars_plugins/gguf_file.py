"""Reads a GGUF file's header: its metadata and its tensors, in milliseconds.

Shared by the model store (what a model says about itself) and the llama.cpp
plugin (the check before the engine reads a file, LoRA conversion).
``gguf.GGUFReader`` turns every array (a 49k-token vocabulary) into numpy
objects, seconds on a small CPU; :func:`read_gguf` maps the file and skips
arrays, keeping scalars and strings, then checks that every tensor's data lies
within the file. Little-endian GGUF versions 2 and 3 are read.

A hostile header costs no more than its bytes: counts the file cannot hold are
refused before any entry is read (each metadata entry takes at least
``_MIN_KV_BYTES``, each tensor entry ``_MIN_TENSOR_BYTES``), every string and
array must fit in what is left of the file, arrays nest at most
``MAX_ARRAY_NESTING`` deep, and a key or tensor name that appears twice is
refused, as llama.cpp refuses it.

Anything wrong (not GGUF, another version, a truncated or damaged header, a
tensor past the end of the file) is a
:class:`~mongars_core.errors.CorruptModelError` naming the file and the problem.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mongars_core.errors import CorruptModelError

GGML_MAX_DIMS = 4
DEFAULT_ALIGNMENT = 32
_HEADER = struct.Struct("<4sIQQ")  # magic, version, tensor count, metadata count

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q"}
_SCALARS |= {11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
MAX_ARRAY_NESTING = 8
"""Arrays of arrays of ... deeper than this are refused (llama.cpp writes none)."""
_MIN_KV_BYTES = 8 + 4 + 1  # key length, value type, the smallest value
_MIN_TENSOR_BYTES = 8 + 4 + 4 + 8  # name length, dimension count, type, offset
# The fewest bytes one array element takes, by element type.
_MIN_ELEMENT_BYTES = {_STRING: 8, _ARRAY: 4 + 8}

# (elements per block, bytes per block) of each ggml type, as in gguf.constants;
# repeated here so that reading a header needs no numpy-heavy import.
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
class TensorInfo:
    """One tensor of a GGUF file, as its header describes it."""

    name: str
    shape: tuple[int, ...]
    """ggml's order (``ne``): the fastest-varying dimension first."""
    type: int
    """The ggml type (0 F32, 1 F16, 3 Q4_1...)."""
    offset: int
    """Where its data starts, in bytes from the start of the file."""
    size: int
    """Its data's length in bytes."""


@dataclass(frozen=True)
class GGUFFile:
    """A GGUF file's header: scalar and string metadata (arrays are skipped) and tensors."""

    path: Path
    version: int
    alignment: int
    metadata: dict[str, Any]
    tensors: tuple[TensorInfo, ...]
    data_offset: int
    """Where the tensor data starts (the header's end, aligned)."""

    @property
    def architecture(self) -> str | None:
        value = self.metadata.get("general.architecture")
        return value if isinstance(value, str) else None

    def number(self, key: str) -> int | None:
        """An integer metadata value of the architecture (``block_count``...), if present."""
        value = self.metadata.get(f"{self.architecture}.{key}")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {tensor.name: tensor.shape for tensor in self.tensors}

    @property
    def data_bytes(self) -> int:
        """The bytes the tensor data spans (the weights to load)."""
        end = max((t.offset + t.size for t in self.tensors), default=self.data_offset)
        return end - self.data_offset


def read_gguf(path: Path) -> GGUFFile:
    """Read ``path``'s header and check that every tensor's data lies within the file.

    Raises :class:`CorruptModelError` for a missing, unreadable, non-GGUF,
    damaged or truncated file, saying what is wrong.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            size = path.stat().st_size
            if size < _HEADER.size:
                kind = "a truncated" if handle.read(4) == b"GGUF" else "not a"
                raise CorruptModelError(f"{path} is {kind} GGUF file ({size} bytes)")
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return _read(data, size, path)
    except FileNotFoundError:
        raise CorruptModelError(f"the GGUF file {path} does not exist") from None
    except OSError as exc:
        raise CorruptModelError(f"cannot read the GGUF file {path}: {exc}") from None


def _read(data: mmap.mmap, size: int, path: Path) -> GGUFFile:
    magic, version, n_tensors, n_kv = _HEADER.unpack_from(data, 0)
    if magic != b"GGUF":
        raise CorruptModelError(f"{path} is not a GGUF file (it does not start with 'GGUF')")
    if version not in (2, 3):
        swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
        detail = "a big-endian file" if swapped in (2, 3) else f"version {version}"
        raise CorruptModelError(
            f"{path} is an unsupported GGUF file ({detail}); little-endian versions 2 and 3 "
            "are read"
        )
    if n_kv * _MIN_KV_BYTES + n_tensors * _MIN_TENSOR_BYTES > size - _HEADER.size:
        raise CorruptModelError(
            f"{path} is a damaged or truncated GGUF file: it declares {n_tensors} tensors "
            f"and {n_kv} metadata entries, more than its {size} bytes can hold"
        )
    parser = _Parser(data, size)
    try:
        metadata: dict[str, Any] = {}
        arrays: set[str] = set()
        for _ in range(n_kv):
            key = parser.string()
            if key in metadata or key in arrays:
                raise ValueError(f"the metadata key {key!r} appears twice")
            kind = parser.unpack("<I")
            if kind == _ARRAY:
                inner, count = parser.unpack("<I"), parser.unpack("<Q")
                parser.skip(inner, count)
                arrays.add(key)
            else:
                metadata[key] = parser.value(kind)
        infos: list[tuple[str, tuple[int, ...], int, int]] = []
        names: set[str] = set()
        for _ in range(n_tensors):
            name = parser.string()
            if name in names:
                raise ValueError(f"the tensor {name!r} appears twice")
            names.add(name)
            n_dims = parser.unpack("<I")
            if n_dims > GGML_MAX_DIMS:
                raise ValueError(f"tensor {name!r} has {n_dims} dimensions")
            shape = struct.unpack_from(f"<{n_dims}Q", data, parser.offset)
            parser.offset += 8 * n_dims
            kind = parser.unpack("<I")
            infos.append((name, shape, kind, parser.unpack("<Q")))
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise CorruptModelError(
            f"{path} is a damaged or truncated GGUF file (its header: {exc})"
        ) from None
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise CorruptModelError(f"{path} is a damaged GGUF file (alignment {alignment!r})")
    start = -(-parser.offset // alignment) * alignment
    tensors = []
    for name, shape, kind, offset in infos:
        if kind not in _BLOCKS:
            raise CorruptModelError(f"{path}: tensor {name!r} has an unknown ggml type {kind}")
        if offset % alignment:
            raise CorruptModelError(
                f"{path} is a damaged GGUF file: tensor {name!r} is not aligned (offset {offset})"
            )
        per_block, block_bytes = _BLOCKS[kind]
        elements = 1
        for dim in shape:
            elements *= dim
        tensor = TensorInfo(
            name, shape, kind, start + offset, -(-elements // per_block) * block_bytes
        )
        if tensor.offset + tensor.size > size:
            raise CorruptModelError(
                f"{path} is truncated or damaged: tensor {name!r} ends at byte "
                f"{tensor.offset + tensor.size}, the file has {size} (an incomplete download or "
                "copy?)"
            )
        tensors.append(tensor)
    return GGUFFile(path, version, alignment, metadata, tuple(tensors), start)


class _Parser:
    def __init__(self, data: mmap.mmap, size: int) -> None:
        self.data = data
        self.size = size
        self.offset = _HEADER.size

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

    def skip(self, kind: int, count: int, depth: int = 1) -> None:
        """Step over an array of ``count`` elements of type ``kind``."""
        if kind in _SCALARS:
            element = struct.calcsize(_SCALARS[kind])
        elif kind in _MIN_ELEMENT_BYTES:
            element = _MIN_ELEMENT_BYTES[kind]
        else:
            raise ValueError(f"unknown metadata type {kind}")
        if self.offset + element * count > self.size:
            raise ValueError(f"an array of {count} elements runs past the end of the file")
        if kind == _STRING:
            data, offset, size = self.data, self.offset, self.size
            unpack = struct.Struct("<Q").unpack_from
            for _ in range(count):
                offset += 8 + unpack(data, offset)[0]
                if offset > size:
                    raise ValueError("a string runs past the end of the file")
            self.offset = offset
        elif kind == _ARRAY:
            if depth >= MAX_ARRAY_NESTING:
                raise ValueError(f"arrays nested deeper than {MAX_ARRAY_NESTING}")
            for _ in range(count):
                inner, inner_count = self.unpack("<I"), self.unpack("<Q")
                self.skip(inner, inner_count, depth + 1)
        else:
            self.offset += element * count


__all__ = ["DEFAULT_ALIGNMENT", "GGUFFile", "TensorInfo", "read_gguf"]
