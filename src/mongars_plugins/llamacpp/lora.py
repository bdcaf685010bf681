"""peft LoRA adapters converted to GGUF LoRA, the form llama.cpp applies per request.

A peft adapter is a folder with ``adapter_config.json`` and
``adapter_model.safetensors``. :func:`convert_peft_adapter` maps its tensors to
llama.cpp's names (``blk.{i}.attn_q.weight.lora_a`` / ``.lora_b``) and writes
them with the ``gguf`` package; :func:`converted_adapter` converts a registered
adapter once and keeps the result under ``<cache dir>/adapters/<sha256>.gguf``.

Two details decide whether the converted adapter does what peft's does:

* llama.cpp's HF→GGUF converter reorders the rows of the query and key
  projections of llama models (rotary embedding in interleaved pairs rather than
  in halves). An adapter's update to those projections is ``B @ A``; its rows
  are ``B``'s rows, so ``B`` gets the same reordering, with the head counts read
  from the base GGUF.
* llama.cpp scales an adapter by ``alpha / rank`` (rank from each tensor's
  shape), as peft does without rank stabilisation, so ``lora_alpha`` is written
  as ``adapter.lora.alpha``.

Every shape is checked against the base GGUF's tensors before anything is
written, so an adapter trained on another model is refused here with a clear
message rather than by llama.cpp when it loads.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import re
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mongars_core.adapters import check_folder, files_checksum
from mongars_core.errors import CorruptModelError, InvalidInputError, MissingDependencyError
from mongars_core.types import AdapterRef
from mongars_plugins.gguf_file import read_gguf

logger = logging.getLogger(__name__)

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"

# peft module name -> llama.cpp tensor name (llama architecture).
MODULES = {
    "q_proj": "attn_q",
    "k_proj": "attn_k",
    "v_proj": "attn_v",
    "o_proj": "attn_output",
    "gate_proj": "ffn_gate",
    "up_proj": "ffn_up",
    "down_proj": "ffn_down",
}
# Architectures whose GGUF query/key rows are reordered by llama.cpp's converter.
PERMUTED_ARCHITECTURES = frozenset({"llama"})
SUPPORTED_ARCHITECTURES = PERMUTED_ARCHITECTURES

_LORA_KEY = re.compile(
    r"(?:.*\.)?layers\.(?P<layer>\d+)\.(?:self_attn|mlp)\.(?P<module>\w+)"
    r"\.lora_(?P<part>[AB])(?:\.[A-Za-z0-9_]+)?\.weight"
)

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class BaseModelInfo:
    """What a conversion needs from the base GGUF: its architecture, heads and tensor shapes."""

    architecture: str
    head_count: int
    head_count_kv: int
    shapes: dict[str, tuple[int, ...]]
    """Tensor name -> GGUF dimensions (``ne``: input size first)."""


def convert_peft_adapter(adapter_dir: Path, out_file: Path, *, base_gguf: Path) -> Path:
    """Convert the peft LoRA adapter in ``adapter_dir`` to a GGUF LoRA at ``out_file``.

    Raises :class:`InvalidInputError` for an adapter that cannot be converted
    (DoRA, rank-stabilised, full-weight modules, a broken file, another base
    model) and :class:`CorruptModelError` when the base GGUF can't be read.
    """
    if importlib.util.find_spec("gguf") is None:
        raise MissingDependencyError("gguf", "local")
    import gguf

    adapter_dir = Path(adapter_dir)
    config = _read_config(adapter_dir)
    base = read_base_model(Path(base_gguf))
    if base.architecture not in SUPPORTED_ARCHITECTURES:
        raise InvalidInputError(
            f"LoRA conversion supports the llama architecture; {base_gguf} is {base.architecture!r}"
        )
    out = _map_tensors(read_safetensors(adapter_dir / WEIGHTS_FILE), base)
    alpha = float(config.get("lora_alpha") or config.get("r") or 8)

    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=out_file.parent, prefix=f".{out_file.name}-")
    os.close(descriptor)
    try:
        writer = gguf.GGUFWriter(temporary, base.architecture)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        base_name = config.get("base_model_name_or_path")
        if isinstance(base_name, str) and base_name:
            writer.add_string("mongars.adapter.base_model", base_name)
        for name, array in out.items():
            writer.add_tensor(name, array)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(temporary, out_file)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    logger.info("converted the LoRA adapter %s to %s (%d tensors)", adapter_dir, out_file, len(out))
    return out_file


def converted_adapter(adapter: AdapterRef, cache_dir: Path, base_gguf: Path) -> Path:
    """The GGUF form of a registered adapter, converted on first use and cached by checksum.

    A cached file is checked against ``base_gguf`` again (its header only), so
    an adapter for another model is refused on every use, not just the first.
    """
    source = Path(adapter.path)
    try:
        digest = adapter.sha256 or _folder_checksum(source)
        target = Path(cache_dir) / "adapters" / f"{digest}.gguf"
        if target.is_file():
            try:
                _check_cached(target, read_base_model(Path(base_gguf)))
                return target
            except _StaleCacheError as exc:
                logger.warning("converting %s again: %s", adapter.id, exc)
        if adapter.sha256:  # the files converted are the files the registry vouched for
            check_folder(source, adapter.sha256)
        return convert_peft_adapter(source, target, base_gguf=Path(base_gguf))
    except InvalidInputError as exc:
        raise InvalidInputError(f"adapter {adapter.id}: {exc}") from exc


# -- the adapter's files ------------------------------------------------------


def _read_config(adapter_dir: Path) -> dict[str, Any]:
    path = adapter_dir / CONFIG_FILE
    if not path.is_file():
        raise InvalidInputError(f"{adapter_dir} is not a peft adapter: no {CONFIG_FILE}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"cannot read {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise InvalidInputError(f"{path} is not a JSON object")
    if not (adapter_dir / WEIGHTS_FILE).is_file():
        found = "adapter_model.bin" if (adapter_dir / "adapter_model.bin").exists() else "none"
        raise InvalidInputError(
            f"{adapter_dir} has no {WEIGHTS_FILE} (found: {found}); "
            "save the adapter with safe_serialization=True"
        )
    _refuse_unsupported(config, path)
    return config


def _refuse_unsupported(config: dict[str, Any], path: Path) -> None:
    """An InvalidInputError for each peft feature llama.cpp's LoRA can't express."""
    kind = str(config.get("peft_type", "LORA")).upper()
    if kind != "LORA":
        raise InvalidInputError(f"{path}: only LoRA adapters can be converted, not {kind}")
    refusals = [
        ("use_dora", "DoRA adapters (use_dora) cannot be converted to GGUF LoRA"),
        ("use_rslora", "rank-stabilised adapters (use_rslora) are not supported"),
        ("fan_in_fan_out", "fan_in_fan_out adapters (Conv1D models) are not supported"),
        ("lora_bias", "adapters with a LoRA bias (lora_bias) are not supported"),
        ("modules_to_save", "modules_to_save holds full weights that GGUF LoRA cannot carry"),
        ("alpha_pattern", "a per-module lora_alpha (alpha_pattern) is not supported"),
        ("trainable_token_indices", "trainable token embeddings are not supported"),
        ("target_parameters", "adapters on parameters (target_parameters) are not supported"),
    ]
    for key, message in refusals:
        if config.get(key):
            raise InvalidInputError(f"{path}: {message}")
    if str(config.get("bias", "none")) != "none":
        raise InvalidInputError(f"{path}: adapters that train biases (bias) are not supported")
    targets = config.get("target_modules") or []
    if isinstance(targets, list):
        unknown = sorted(set(map(str, targets)) - set(MODULES))
        if unknown:
            raise InvalidInputError(
                f"{path}: target_modules {unknown} cannot be mapped to GGUF LoRA "
                f"(supported: {', '.join(MODULES)})"
            )


_SAFETENSORS_DTYPES: dict[str, str] = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "BF16": "<u2"}


def read_safetensors(path: Path) -> dict[str, FloatArray]:
    """Every tensor of a safetensors file as float32 (bf16 included), without torch."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc}") from exc
    try:
        (header_size,) = struct.unpack_from("<Q", data, 0)
        if header_size > len(data) - 8:
            raise ValueError("the header runs past the end of the file")
        header = json.loads(data[8 : 8 + header_size])
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
        body = memoryview(data)[8 + header_size :]
        tensors: dict[str, FloatArray] = {}
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            dtype = _SAFETENSORS_DTYPES.get(entry["dtype"])
            if dtype is None:
                raise ValueError(f"tensor {name} has the unsupported dtype {entry['dtype']}")
            start, end = (int(x) for x in entry["data_offsets"])
            shape = tuple(int(x) for x in entry["shape"])
            if not 0 <= start <= end <= len(body):
                raise ValueError(f"tensor {name} lies outside the file (truncated?)")
            raw = np.frombuffer(body[start:end], dtype=dtype)
            if raw.size != int(np.prod(shape)):
                raise ValueError(f"tensor {name} has {raw.size} values for the shape {shape}")
            if entry["dtype"] == "BF16":
                values = (raw.astype(np.uint32) << 16).view(np.float32)
            else:
                values = raw.astype(np.float32)
            tensors[name] = values.reshape(shape)
    except (struct.error, ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(f"{path} is not a readable safetensors file: {exc}") from exc
    if not tensors:
        raise InvalidInputError(f"{path} holds no tensors")
    return tensors


def _map_tensors(tensors: dict[str, FloatArray], base: BaseModelInfo) -> dict[str, FloatArray]:
    """peft tensors -> GGUF LoRA tensors, reordered and checked against the base model."""
    parts: dict[str, dict[str, FloatArray]] = {}
    for key, value in tensors.items():
        match = _LORA_KEY.fullmatch(key)
        if match is None:
            if "lora_embedding" in key:
                raise InvalidInputError(f"embedding adapters cannot be converted ({key})")
            if "lora_magnitude_vector" in key:
                raise InvalidInputError(f"DoRA adapters cannot be converted ({key})")
            raise InvalidInputError(f"the tensor {key} is not a LoRA weight this converter maps")
        module = match["module"]
        if module not in MODULES:
            raise InvalidInputError(f"the module {module} ({key}) has no GGUF LoRA equivalent")
        if value.ndim != 2:
            raise InvalidInputError(f"{key} has {value.ndim} dimensions, not 2")
        name = f"blk.{int(match['layer'])}.{MODULES[module]}.weight"
        parts.setdefault(name, {})[match["part"]] = value

    out: dict[str, FloatArray] = {}
    for name, pair in sorted(parts.items(), key=lambda item: _natural_key(item[0])):
        if set(pair) != {"A", "B"}:
            raise InvalidInputError(f"the adapter has lora_{''.join(pair)} but not both for {name}")
        a, b = pair["A"], pair["B"]
        shape = base.shapes.get(name)
        # GGUF dimensions run input first: a weight of torch shape (out, in) is ne = [in, out].
        if shape is None or len(shape) != 2:
            raise InvalidInputError(
                f"adapter for another base model: the base has no tensor {name} ({_describe(base)})"
            )
        n_in, n_out = shape
        if a.shape[1] != n_in or b.shape[0] != n_out or a.shape[0] != b.shape[1]:
            raise InvalidInputError(
                f"adapter for another base model: {name} is {n_out}x{n_in} in the base, "
                f"the adapter's B·A is {b.shape[0]}x{a.shape[1]} (rank {a.shape[0]}/{b.shape[1]})"
            )
        if base.architecture in PERMUTED_ARCHITECTURES:
            if name.endswith(".attn_q.weight"):
                b = _permute_rows(b, base.head_count, name)
            elif name.endswith(".attn_k.weight"):
                b = _permute_rows(b, base.head_count_kv, name)
        out[f"{name}.lora_a"] = np.ascontiguousarray(a, dtype=np.float32)
        out[f"{name}.lora_b"] = np.ascontiguousarray(b, dtype=np.float32)
    return out


def _permute_rows(b: FloatArray, heads: int, name: str) -> FloatArray:
    """Reorder the rows of each head from halves (HF rotary) to interleaved pairs (GGUF).

    Within a head of ``d`` rows, row ``h * d/2 + j`` of half ``h`` moves to
    ``2 * j + h``: the same reordering llama.cpp's converter applies to the base.
    """
    rows = b.shape[0]
    if heads <= 0 or rows % (2 * heads):
        raise InvalidInputError(
            f"adapter for another base model: {name} has {rows} rows, not a multiple of "
            f"2 x {heads} heads"
        )
    return b.reshape(heads, 2, rows // heads // 2, *b.shape[1:]).swapaxes(1, 2).reshape(b.shape)


def _natural_key(name: str) -> tuple[Any, ...]:
    return tuple(int(part) if part.isdigit() else part for part in name.split("."))


def _describe(base: BaseModelInfo) -> str:
    layers = len({n.split(".")[1] for n in base.shapes if n.startswith("blk.")})
    return f"{base.architecture}, {layers} layers, {base.head_count} heads"


def _folder_checksum(folder: Path) -> str:
    """The registry's checksum of a peft folder's two files (for a ref that carries none)."""
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise InvalidInputError(f"{folder} is not a peft adapter: no {name}")
    return files_checksum(folder, [CONFIG_FILE, WEIGHTS_FILE])


class _StaleCacheError(Exception):
    """A cached conversion that does not fit the base model (or can't be read)."""


def _check_cached(path: Path, base: BaseModelInfo) -> None:
    """Refuse a converted adapter whose tensors don't fit ``base`` (as llama.cpp would)."""
    try:
        cached = read_gguf(path)
    except CorruptModelError as exc:
        raise _StaleCacheError(str(exc)) from exc
    if cached.metadata.get("general.architecture") != base.architecture:
        raise _StaleCacheError("converted for another architecture")
    for name, shape in cached.shapes.items():
        weight, _, part = name.rpartition(".lora_")
        model = base.shapes.get(weight)
        if model is None or len(model) != 2:
            raise InvalidInputError(f"adapter for another base model: the base has no {weight}")
        # lora_a is ne [in, rank], lora_b is ne [rank, out]; the weight is ne [in, out].
        if (part == "a" and shape[0] != model[0]) or (part == "b" and shape[1] != model[1]):
            raise InvalidInputError(
                f"adapter for another base model: {name} {list(shape)} does not fit "
                f"{weight} {list(model)}"
            )


# -- the base model's GGUF header -----------------------------------------------


def read_base_model(path: Path) -> BaseModelInfo:
    """The architecture, head counts and tensor shapes of a GGUF model (header only)."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise CorruptModelError(f"cannot read the GGUF model {path}: {exc}") from exc
    return _read_base_model(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _read_base_model(path: str, _mtime_ns: int, _size: int) -> BaseModelInfo:
    header = read_gguf(Path(path))
    architecture = header.architecture
    if architecture is None:
        raise CorruptModelError(f"the GGUF model {path} names no architecture")
    heads = header.metadata.get(f"{architecture}.attention.head_count")
    heads_kv = header.metadata.get(f"{architecture}.attention.head_count_kv", heads)
    if not isinstance(heads, int) or not isinstance(heads_kv, int):
        raise InvalidInputError(
            f"the GGUF model {path} has no single attention head count "
            f"({architecture}.attention.head_count); its adapters can't be converted"
        )
    return BaseModelInfo(architecture, heads, heads_kv, header.shapes)


__all__ = [
    "BaseModelInfo",
    "convert_peft_adapter",
    "converted_adapter",
    "read_base_model",
    "read_safetensors",
]
