"""peft LoRA adapters on the torch engine, switched per request.

The first request that carries an adapter wraps the loaded model in a peft
``PeftModel`` (its layers gain LoRA branches in place); each adapter is then
loaded once, under a name of its own, and kept in a small LRU
(``MONGARS_LOCAL__MAX_ADAPTERS``). While a request generates, peft's layers
are out of the model: each is put back to the linear layer it wraps, for a
request with an adapter too, whose changed layers compute with a merged copy
of their weight, ``W + scale · B·A``, swapped in by reference. When the
request ends, however it ends, the original tensors and peft's layers are put
back (never by subtracting: the base's weights are the tensors they were).
Peft's branch per layer (two small matmuls and Python per layer, per token)
is then not paid: an adapter costs a merge when first used, not a share of
every token. The merged copies are kept for the most recent adapters, within
:data:`MERGED_BUDGET_BYTES` (the one in use always). An adapter that cannot be
merged that way (DoRA, embeddings, a trained ``lora_bias``, a layer whose
weight is tied to another) runs as peft runs it: its layers enabled, it
active. The backend generates one request at a time and switches under the
same lock, so two users never share a forward pass.

Before anything touches the model, an adapter is checked: its folder holds a
peft LoRA (``adapter_config.json``, ``adapter_model.safetensors``), its files
match the registry's checksum, and every LoRA tensor in the safetensors header
fits a linear layer of the model (``lora_A`` is rank × in, ``lora_B`` out ×
rank). An adapter for another model or a damaged one is an
:class:`~mongars_core.errors.InvalidInputError` naming it, and the model keeps
serving everyone else. Loaded adapters are keyed by their checksum, so two
users of one adapter share it.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import logging
import re
import struct
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mongars_core.adapters import check_folder
from mongars_core.errors import InvalidInputError, MissingDependencyError
from mongars_core.types import AdapterRef

logger = logging.getLogger(__name__)

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
MAX_HEADER_BYTES = 64 << 20
"""A safetensors header larger than this is refused (real ones are kilobytes)."""
MERGED_BUDGET_BYTES = 256 << 20
"""Merged weights kept for adapters not in use; beyond it, the least recently used go.
One of the trainer's default shape (rank 8, q/v) on the bundled model is 53 MB in
float32, one on every projection 425 MB (then only the one in use is kept)."""

_PEFT_PREFIX = "base_model.model."
_LORA_KEY = re.compile(r"(?P<module>.+)\.lora_(?P<part>[AB])\.weight")


def peft_available() -> bool:
    return importlib.util.find_spec("peft") is not None


def is_peft_lora(folder: Path) -> bool:
    """Whether ``folder`` holds a peft LoRA adapter: its config (``peft_type`` LORA) and
    safetensors weights. Cheap: the small config is read, the weights are not."""
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return (
        isinstance(config, dict)
        and str(config.get("peft_type", "")).upper() == "LORA"
        and (folder / WEIGHTS_FILE).is_file()
    )


def linear_shapes(model: Any) -> dict[str, tuple[int, int]]:
    """Module name -> (out, in) of every linear layer of ``model`` (before peft wraps it)."""
    import torch

    return {
        name: (int(module.out_features), int(module.in_features))
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
    }


def check_adapter(adapter: AdapterRef, shapes: dict[str, tuple[int, int]]) -> None:
    """Refuse (:class:`InvalidInputError` naming ``adapter``) a folder that is not a peft
    LoRA for the model whose linear layers are ``shapes``, or whose files changed."""
    try:
        _check_files(Path(adapter.path), adapter.sha256)
        _check_tensors(Path(adapter.path) / WEIGHTS_FILE, shapes)
    except InvalidInputError as exc:
        raise InvalidInputError(f"adapter {adapter.id}: {exc}") from exc


def _check_files(folder: Path, sha256: str) -> None:
    if not folder.is_dir():
        raise InvalidInputError(f"its folder {folder} is missing")
    path = folder / CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInputError(f"{folder} is not a peft adapter: no {CONFIG_FILE}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInputError(f"cannot read {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise InvalidInputError(f"{path} is not a JSON object")
    kind = str(config.get("peft_type", "")).upper()
    if kind != "LORA":
        raise InvalidInputError(f"{path}: only LoRA adapters are served, not {kind or 'untyped'}")
    if str(config.get("bias", "none")) != "none":
        # Trained biases are loaded into the base model's layers: every user would get them.
        raise InvalidInputError(f"{path}: adapters that train biases (bias) are not served")
    if not (folder / WEIGHTS_FILE).is_file():
        raise InvalidInputError(
            f"{folder} has no {WEIGHTS_FILE}; save the adapter with safe_serialization=True"
        )
    if sha256:
        check_folder(folder, sha256)


def _check_tensors(path: Path, shapes: dict[str, tuple[int, int]]) -> None:
    """The safetensors header's LoRA tensors against the model's linear layers."""
    header = _read_header(path)
    pairs: dict[str, dict[str, tuple[int, ...]]] = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        match = _LORA_KEY.fullmatch(key)
        if match is None:
            continue  # another peft tensor (DoRA magnitudes, embeddings): peft checks them
        module = match["module"].removeprefix(_PEFT_PREFIX)
        shape = tuple(int(x) for x in entry["shape"])
        if module not in shapes:
            raise InvalidInputError(
                f"adapter for another base model: the model has no linear layer {module}"
            )
        if len(shape) != 2:
            raise InvalidInputError(f"{key} has the shape {list(shape)}, not two dimensions")
        pairs.setdefault(module, {})[match["part"]] = shape
    if not pairs:
        raise InvalidInputError(f"{path} holds no LoRA weights")
    for module, parts in sorted(pairs.items()):
        if set(parts) != {"A", "B"}:
            raise InvalidInputError(f"{module} has lora_{''.join(parts)} but not both")
        (rank_a, n_in), (n_out, rank_b) = parts["A"], parts["B"]
        if (n_out, n_in) != shapes[module] or rank_a != rank_b:
            out, inner = shapes[module]
            raise InvalidInputError(
                f"adapter for another base model: {module} is {out}x{inner} in the model, "
                f"the adapter's B·A is {n_out}x{n_in} (rank {rank_a}/{rank_b})"
            )


def _read_header(path: Path) -> dict[str, Any]:
    """A safetensors file's header, with every tensor's data inside the file."""
    try:
        with open(path, "rb") as handle:
            size = path.stat().st_size
            (header_size,) = struct.unpack("<Q", handle.read(8))
            if header_size > min(size - 8, MAX_HEADER_BYTES):
                raise ValueError(f"a header of {header_size} bytes in a file of {size}")
            header = json.loads(handle.read(header_size))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
        body = size - 8 - header_size
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            start, end = (int(x) for x in entry["data_offsets"])
            if not 0 <= start <= end <= body:
                raise ValueError(f"tensor {name} lies outside the file (truncated?)")
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc}") from exc
    except (struct.error, ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(f"{path} is not a readable safetensors file: {exc}") from exc
    return header


class LoadedAdapters:
    """The adapters loaded on one model, most recently used last (not thread-safe: the
    backend calls it from one generating thread at a time)."""

    def __init__(self, model: Any, device: str, capacity: int) -> None:
        self.model = model
        self.device = device
        self.capacity = capacity
        self.loads = 0
        self.evictions = 0
        self.merges = 0
        """Adapters whose merged weights were computed (again, after being dropped)."""
        self._shapes: dict[str, tuple[int, int]] | None = None
        self._peft: Any = None  # the PeftModel around ``model``, from the first adapter on
        self._names: OrderedDict[str, str] = OrderedDict()  # cache key -> peft adapter name
        self._counter = itertools.count()
        self._active: str | None = None  # the adapter the LoRA layers apply when enabled
        self._enabled: bool | None = None  # whether they are; None: not known (after a load)
        # peft name -> (parameter, its merged weight) for each layer the adapter changes;
        # None: the adapter cannot be merged. Most recently used last.
        self._merged: OrderedDict[str, list[tuple[Any, Any]] | None] = OrderedDict()

    @property
    def keys(self) -> list[str]:
        """Cache keys of the loaded adapters, least recently used first."""
        return list(self._names)

    @property
    def merged_bytes(self) -> int:
        """Memory held by merged weights."""
        return sum(_size(weights) for weights in self._merged.values())

    @contextmanager
    def use(self, adapter: AdapterRef | None) -> Iterator[None]:
        """Inside the block, the model generates with ``adapter`` alone, or as the base
        model for ``None``; the base's weights are back in place when it ends.

        For the base and a merged adapter, each peft layer is replaced by the linear
        layer it wraps for the block, and the adapter's merged weights swapped in: a
        pointer per layer. An adapter peft must apply keeps the layers, enabled with
        it active; their flags then change only when they must (enabling them takes
        4 ms, choosing another adapter 5).
        """
        merged: list[tuple[Any, Any]] = []
        if adapter is not None:
            name = self._ensure(adapter)  # wraps the model on first use
            weights = self._merged_weights(name)
            if weights is None:
                self._enable(name)
                yield
                return
            merged = weights
        unwrapped: list[tuple[Any, str, Any]] = []
        originals: list[tuple[Any, Any]] = []
        try:
            # peft's layers out of the way, even disabled: each is Python on every
            # token (about 3% of the time per token with every projection wrapped).
            for parent, attribute, layer in _lora_layers(self.model) if self._peft else []:
                setattr(parent, attribute, layer.get_base_layer())
                unwrapped.append((parent, attribute, layer))
            for parameter, weight in merged:
                # ``.data`` keeps the parameter object itself: a compiled graph's
                # references to it stay valid, and the original tensor comes back.
                originals.append((parameter, parameter.data))
                parameter.data = weight
            yield
        finally:
            for parameter, original in reversed(originals):
                parameter.data = original
            for parent, attribute, layer in reversed(unwrapped):
                setattr(parent, attribute, layer)

    def _enable(self, name: str) -> None:
        """peft's LoRA branches on, with adapter ``name`` active."""
        if self._enabled is not True:
            self._peft.base_model.enable_adapter_layers()
            self._enabled = True
        if self._active != name:
            self._peft.set_adapter(name, inference_mode=True)
            self._active = name

    def _merged_weights(self, name: str) -> list[tuple[Any, Any]] | None:
        """Each changed layer's parameter with its merged weight, for adapter ``name``
        (computed on first use); ``None`` when peft must apply the adapter itself."""
        if name in self._merged:
            self._merged.move_to_end(name)
            return self._merged[name]
        merged = _merge(self._peft, name)
        self._merged[name] = merged
        self.merges += merged is not None
        while len(self._merged) > 1 and self.merged_bytes > MERGED_BUDGET_BYTES:
            self._merged.popitem(last=False)
        return merged

    def _ensure(self, adapter: AdapterRef) -> str:
        """The peft name of ``adapter``, loading it (and evicting the oldest) if needed."""
        key = cache_key(adapter)
        name = self._names.get(key)
        if name is not None:
            self._names.move_to_end(key)
            return name
        if self._shapes is None:
            self._shapes = linear_shapes(self.model)
        check_adapter(adapter, self._shapes)
        name = f"adapter_{next(self._counter)}"
        self._load(adapter, name)
        self._names[key] = name
        self.loads += 1
        # Layers a new adapter added start enabled, the others may not be.
        self._enabled = None
        # The new one becomes active before any eviction: peft warns when the active
        # adapter is deleted.
        self._peft.set_adapter(name, inference_mode=True)
        self._active = name
        while len(self._names) > self.capacity:
            _, oldest = self._names.popitem(last=False)
            self._merged.pop(oldest, None)
            self._peft.delete_adapter(oldest)
            self.evictions += 1
        return name

    def _load(self, adapter: AdapterRef, name: str) -> None:
        if not peft_available():
            raise MissingDependencyError("peft", "train")
        from peft import PeftConfig, PeftModel

        path = str(adapter.path)
        try:
            with _quiet_peft():
                if self._peft is None:
                    config = PeftConfig.from_pretrained(path)
                    config.inference_mode = True
                    # Built from the config first (B starts at zero: no effect), so a
                    # failure to load the weights below leaves a wrapper to clean up.
                    self._peft = PeftModel(self.model, config, adapter_name=name)
                    self._peft.eval()
                result = self._peft.load_adapter(
                    path, adapter_name=name, is_trainable=False, torch_device=self.device
                )
            if result.missing_keys or result.unexpected_keys:
                raise ValueError(
                    f"its weights do not match its config ({len(result.missing_keys)} "
                    f"missing, {len(result.unexpected_keys)} unexpected)"
                )
        except Exception as exc:  # peft's own errors: the adapter, not the model, is at fault
            if self._peft is not None and name in self._peft.peft_config:
                self._peft.delete_adapter(name)
                self._enabled = None
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise InvalidInputError(
                f"adapter {adapter.id}: peft could not load it ({first_line})"
            ) from exc
        logger.info("loaded the LoRA adapter %s from %s", adapter.id, path)


def _merge(peft_model: Any, name: str) -> list[tuple[Any, Any]] | None:
    """(parameter, ``W + scale · B·A``) for each linear layer adapter ``name`` changes, in
    the weight's dtype (summed in the LoRA weights' float32 when they are wider); ``None``
    if one of its layers is not a plain LoRA on a linear layer with a weight of its own."""
    import torch
    from peft.tuners.lora import Linear as LoraLinear
    from peft.tuners.tuners_utils import BaseTunerLayer

    owners: dict[int, int] = {}
    for module in peft_model.modules():
        for parameter in module.parameters(recurse=False):
            owners[id(parameter)] = owners.get(id(parameter), 0) + 1
    merged: list[tuple[Any, Any]] = []
    with torch.no_grad():
        for module in peft_model.modules():
            if not isinstance(module, BaseTunerLayer):
                continue
            names = module.adapter_layer_names + module.other_param_names
            if not any(name in getattr(module, part, {}) for part in names):
                continue  # a layer of other adapters only
            base = module.get_base_layer()
            if (
                not isinstance(module, LoraLinear)
                or not isinstance(base, torch.nn.Linear)
                or name in module.lora_variant  # DoRA and the like
                or module.lora_bias.get(name, False)
                or name not in module.lora_A
                or owners[id(base.weight)] > 1  # tied: a merge would change the other
            ):
                return None
            delta = module.get_delta_weight(name)
            weight = base.weight
            merged.append((weight, (weight.to(delta.dtype) + delta).to(weight.dtype)))
    return merged


def _lora_layers(model: Any) -> list[tuple[Any, str, Any]]:
    """(parent, attribute, peft layer) for each layer peft wrapped in ``model``."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [
        (parent, attribute, child)
        for parent in model.modules()
        for attribute, child in parent.named_children()
        if isinstance(child, BaseTunerLayer)
    ]


def _size(weights: list[tuple[Any, Any]] | None) -> int:
    return sum(int(w.numel() * w.element_size()) for _, w in weights or [])


def cache_key(adapter: AdapterRef) -> str:
    """The registry's checksum; for a ref without one, its id and folder."""
    return adapter.sha256 or f"{adapter.id}:{adapter.path}"


@contextmanager
def _quiet_peft() -> Iterator[None]:
    # peft 0.21 calls a method transformers 5 deprecates; not the caller's concern.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
        )
        yield
