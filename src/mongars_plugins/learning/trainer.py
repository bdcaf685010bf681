"""The training worker: one LoRA adapter trained with peft, in a process of its own.

Run as ``python -m mongars_plugins.learning.trainer SPEC_JSON_PATH``. The spec
(written by the runner) names the transformers model folder, the adapter's
output folder, the result file, the examples and the parameters::

    {"model_dir": ..., "output_dir": ..., "result_path": ...,
     "train": [{"prompt": "...", "response": "..."}], "heldout": [...],
     "general": ["paragraph", ...] or null (null: the bundled data/general.txt),
     "params": {"rank", "alpha", "target_modules", "dropout", "steps",
                "learning_rate", "batch_size", "max_tokens", "seed"},
     "device": "auto" | "cpu" | "cuda", "threads": int or null}

Each example is the model's chat template around ``prompt`` (the user message,
left out when empty) and ``response`` (the assistant message); only the
response and its end-of-turn token are scored. The held-out and general-text
perplexities are measured before training (the base model) and after (with the
adapter). Progress goes to stdout, one JSON object a line (``start``, ``step``,
``eval``, then ``done``, ``cancelled`` or ``error``); nothing else is written
there. The result goes to ``result_path`` (atomically; its ``cpu_seconds``, the
worker's own, are what an energy estimate counts) and the adapter
(``adapter_config.json``, ``adapter_model.safetensors``) to ``output_dir``.

SIGTERM or SIGINT stops the worker at the next step: it removes what it wrote,
writes no result and exits with 130. A bad spec, an empty set, memory or disk
running out: an ``error`` line, nothing left behind, exit 2.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import random
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import FrameType
from typing import Any

from mongars_core.errors import InvalidInputError, MissingDependencyError, MongarsError
from mongars_core.files import write_atomically

logger = logging.getLogger(__name__)

# Tuned with benchmarks/learning.py (results/learning.md): on 270 examples of a
# distinctive style, 30 steps of 4 take held-out perplexity down by about two thirds
# while the general-text perplexity moves by under 1%; lr 2e-3, or 1e-3 over more
# steps, raised it by 10-17%.
DEFAULT_PARAMS: dict[str, Any] = {
    "rank": 8,
    "alpha": 16,
    "target_modules": ["q_proj", "v_proj"],
    "dropout": 0.0,
    "steps": 30,
    "learning_rate": 5e-4,
    "batch_size": 4,
    "max_tokens": 128,
    "seed": 0,
}
EXIT_ERROR = 2
EXIT_CANCELLED = 130
IGNORE = -100  # the label of a token that is not scored
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
EVAL_BATCH = 8


class Cancelled(Exception):
    """SIGTERM or SIGINT arrived; the run stops at the next step boundary."""


@dataclass(frozen=True)
class Example:
    prompt: str
    response: str


@dataclass(frozen=True)
class Spec:
    model_dir: Path
    output_dir: Path
    result_path: Path
    train: list[Example]
    heldout: list[Example]
    general: list[str] | None
    params: dict[str, Any]
    device: str = "auto"
    threads: int | None = None
    mode: str = "train"
    """``train``, or ``evaluate``: the held-out perplexity of the base and of the
    adapter in ``adapter_dir`` (a validation), nothing trained or written."""
    adapter_dir: Path | None = None
    nice: int = 10
    parent_pid: int | None = None
    """The runner's pid: the worker stops (as if cancelled) once its parent is gone."""


@dataclass
class Encoded:
    """Token ids and their labels (``IGNORE`` where a token is not scored)."""

    input_ids: list[int]
    labels: list[int] = field(default_factory=list)

    @property
    def scored(self) -> int:
        return sum(label != IGNORE for label in self.labels)


# -- the spec --------------------------------------------------------------------------


def _examples(value: object, name: str) -> list[Example]:
    if not isinstance(value, list):
        raise InvalidInputError(f"the spec's {name} must be a list of examples")
    examples = []
    for index, item in enumerate(value):
        if not isinstance(item, dict) or set(item) - {"prompt", "response"}:
            raise InvalidInputError(f"{name}[{index}] must be an object with prompt and response")
        prompt, response = item.get("prompt", ""), item.get("response")
        if not isinstance(prompt, str) or not isinstance(response, str) or not response.strip():
            raise InvalidInputError(f"{name}[{index}] needs a text response (and a text prompt)")
        examples.append(Example(prompt, response))
    if not examples:
        raise InvalidInputError(f"the spec's {name} set is empty")
    return examples


def _number(params: dict[str, Any], name: str, kind: type, low: float, high: float) -> None:
    value = params[name]
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise InvalidInputError(
            f"params.{name} must be {'a number' if kind is float else 'an integer'}"
        )
    if not low <= value <= high:
        raise InvalidInputError(f"params.{name} must be between {low} and {high}, not {value}")


def validate_params(given: object) -> dict[str, Any]:
    """The parameters with defaults filled in; unknown or out-of-range ones are refused."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise InvalidInputError("the spec's params must be an object")
    unknown = sorted(set(given) - set(DEFAULT_PARAMS))
    if unknown:
        raise InvalidInputError(f"unknown params: {', '.join(unknown)}")
    params = {**DEFAULT_PARAMS, **given}
    _number(params, "rank", int, 1, 256)
    _number(params, "alpha", float, 1e-6, 1e6)
    _number(params, "dropout", float, 0.0, 0.9)
    _number(params, "steps", int, 1, 1_000_000)
    _number(params, "learning_rate", float, 1e-9, 1.0)
    _number(params, "batch_size", int, 1, 4096)
    _number(params, "max_tokens", int, 8, 32768)
    _number(params, "seed", int, 0, 2**32 - 1)
    modules = params["target_modules"]
    if (
        not isinstance(modules, list)
        or not modules
        or not all(isinstance(m, str) and m.isidentifier() for m in modules)
    ):
        raise InvalidInputError("params.target_modules must be a list of module names")
    return params


def parse_spec(raw: object) -> Spec:
    """A :class:`Spec` from the decoded JSON, or :class:`InvalidInputError` saying what is wrong."""
    if not isinstance(raw, dict):
        raise InvalidInputError("the spec must be a JSON object")
    known = {"model_dir", "output_dir", "result_path", "train", "heldout", "general"}
    known |= {"params", "device", "threads", "mode", "adapter_dir", "nice", "parent_pid"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InvalidInputError(f"unknown spec fields: {', '.join(unknown)}")
    mode = raw.get("mode", "train")
    if mode not in ("train", "evaluate"):
        raise InvalidInputError(f"mode must be train or evaluate, not {mode!r}")
    evaluating = mode == "evaluate"
    paths = {}
    required = ("model_dir", "result_path", "adapter_dir") if evaluating else ()
    for name in required or ("model_dir", "output_dir", "result_path"):
        value = raw.get(name)
        if not isinstance(value, str) or not value:
            raise InvalidInputError(f"the spec needs {name} (a path)")
        paths[name] = Path(value)
    general = raw.get("general")
    if general is not None and (
        not isinstance(general, list) or not all(isinstance(p, str) for p in general)
    ):
        raise InvalidInputError("the spec's general must be a list of paragraphs or null")
    if general is not None and not any(p.strip() for p in general):
        raise InvalidInputError("the spec's general set is empty")
    device = raw.get("device", "auto")
    if device not in ("auto", "cpu", "cuda") and not (
        isinstance(device, str) and device.startswith("cuda:") and device[5:].isdigit()
    ):
        raise InvalidInputError(f"device must be auto, cpu or cuda, not {device!r}")
    threads = raw.get("threads")
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise InvalidInputError("threads must be a positive integer or null")
    nice, parent = raw.get("nice", 10), raw.get("parent_pid")
    if isinstance(nice, bool) or not isinstance(nice, int) or not 0 <= nice <= 19:
        raise InvalidInputError("nice must be an integer from 0 to 19")
    if parent is not None and (isinstance(parent, bool) or not isinstance(parent, int)):
        raise InvalidInputError("parent_pid must be a process id or null")
    return Spec(
        model_dir=paths["model_dir"],
        output_dir=paths.get("output_dir", paths["result_path"].parent),
        result_path=paths["result_path"],
        mode=mode,
        adapter_dir=paths.get("adapter_dir"),
        nice=nice,
        parent_pid=parent,
        train=[] if evaluating else _examples(raw.get("train"), "train"),
        heldout=_examples(raw.get("heldout"), "heldout"),
        general=general,
        params=validate_params(raw.get("params")),
        device=device,
        threads=threads,
    )


def load_spec(path: Path) -> Spec:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"cannot read the spec {path}: {exc}") from exc
    return parse_spec(raw)


def general_paragraphs() -> list[str]:
    """The bundled general-text set: paragraphs separated by blank lines."""
    text = resources.files("mongars_plugins.learning").joinpath("data/general.txt").read_text()
    return [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]


# -- tokens ----------------------------------------------------------------------------


def encode_example(tokenizer: Any, example: Example, max_tokens: int) -> Encoded:
    """``example`` in the chat template, only the response and its end of turn scored,
    cut to ``max_tokens`` (the start of the prompt goes first, the response stays)."""
    messages = [{"role": "user", "content": example.prompt}] if example.prompt else []
    messages.append({"role": "assistant", "content": example.response})
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False)
    else:
        eos = tokenizer.eos_token or ""
        text = f"{example.prompt}\n\n" if example.prompt else ""
        text += f"{example.response}{eos}"
    response = example.response
    start = text.rfind(response)
    if start < 0:  # a template that trims its messages
        response = response.strip()
        start = text.rfind(response)
    if start < 0:
        raise InvalidInputError("the model's chat template does not keep the response as it is")
    end = start + len(response)
    eos = tokenizer.eos_token
    if eos and text.startswith(eos, end):
        end += len(eos)
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(encoding["input_ids"])
    labels = [
        token if begin >= start and stop <= end and stop > begin else IGNORE
        for token, (begin, stop) in zip(ids, encoding["offset_mapping"], strict=True)
    ]
    # A token straddling the response's first character (a space merged in) is scored too.
    for index, (begin, stop) in enumerate(encoding["offset_mapping"]):
        if begin < start < stop:
            labels[index] = ids[index]
    first = next((i for i, label in enumerate(labels) if label != IGNORE), len(ids))
    stop_at = min(len(ids), first + max_tokens)
    begin_at = max(0, stop_at - max_tokens)
    return Encoded(ids[begin_at:stop_at], labels[begin_at:stop_at])


def encode_plain(tokenizer: Any, text: str, max_tokens: int) -> Encoded:
    """Plain text, no template: every token after the first is scored."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])[:max_tokens]
    return Encoded(ids, list(ids))


# -- the model -------------------------------------------------------------------------


def require_training_libraries() -> tuple[Any, Any, Any]:
    """torch, transformers and peft, or the extra that provides them."""
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "torch", "train") from exc
    try:
        import peft
    except ImportError as exc:
        raise MissingDependencyError("peft", "train") from exc
    return torch, transformers, peft


def pick_device(torch: Any, wanted: str) -> str:
    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if wanted.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInputError(f"device {wanted!r} asked for, but torch sees no CUDA device")
    return wanted


def _batch(torch: Any, items: Sequence[Encoded], pad: int, device: str) -> tuple[Any, Any, Any]:
    width = max(len(item.input_ids) for item in items)
    ids = torch.full((len(items), width), pad, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, item in enumerate(items):
        n = len(item.input_ids)
        ids[row, :n] = torch.tensor(item.input_ids)
        labels[row, :n] = torch.tensor(item.labels)
        mask[row, :n] = 1
    return ids.to(device), labels.to(device), mask.to(device)


def token_losses(torch: Any, model: Any, items: Sequence[Encoded], pad: int, device: str) -> Any:
    """Summed NLL of the scored tokens and their count. The output layer runs only on
    the positions that predict a scored token (the 49k-word vocabulary is a fifth of the
    work per token otherwise)."""
    ids, labels, mask = _batch(torch, items, pad, device)
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = inner.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != IGNORE
    logits = inner.get_output_embeddings()(hidden[:, :-1][keep]).float()
    total = torch.nn.functional.cross_entropy(logits, targets[keep], reduction="sum")
    return total, int(keep.sum())


@dataclass
class Worker:
    spec: Spec
    emit: Callable[[dict[str, Any]], None]
    cancelled: Callable[[], bool]
    written: list[Path] = field(default_factory=list)

    def check(self) -> None:
        orphaned = self.spec.parent_pid is not None and os.getppid() != self.spec.parent_pid
        if self.cancelled() or orphaned:
            raise Cancelled

    def perplexity(
        self, torch: Any, model: Any, items: list[Encoded], pad: int, device: str
    ) -> float:
        total, count = 0.0, 0
        model.eval()
        ordered = sorted(items, key=lambda item: len(item.input_ids))
        with torch.no_grad():
            for first in range(0, len(ordered), EVAL_BATCH):
                self.check()
                loss, n = token_losses(
                    torch, model, ordered[first : first + EVAL_BATCH], pad, device
                )
                total += float(loss)
                count += n
        if count == 0:
            raise InvalidInputError("a set to evaluate has no scored token")
        return math.exp(total / count)

    def evaluate(
        self,
        torch: Any,
        model: Any,
        sets: dict[str, list[Encoded]],
        pad: int,
        device: str,
        when: str,
    ) -> dict[str, float]:
        scores = {}
        for name, items in sets.items():
            value = self.perplexity(torch, model, items, pad, device)
            scores[name] = value
            tokens = sum(len(item.input_ids) for item in items)
            self.emit(
                {
                    "event": "eval",
                    "name": f"{name}_{when}",
                    "perplexity": round(value, 4),
                    "tokens": tokens,
                }
            )
        return scores

    def run(self) -> dict[str, Any]:
        began = time.monotonic()
        spec, params = self.spec, self.spec.params
        _lower_priority(spec.nice)
        torch, transformers, peft = require_training_libraries()
        if spec.threads:
            torch.set_num_threads(spec.threads)
        device = pick_device(torch, spec.device)
        random.seed(params["seed"])
        torch.manual_seed(params["seed"])
        transformers.utils.logging.disable_progress_bar()
        self.check()
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(spec.model_dir))
            model = transformers.AutoModelForCausalLM.from_pretrained(
                str(spec.model_dir), dtype=torch.float32
            )
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"cannot load the model in {spec.model_dir}: {exc}") from exc
        model.to(device)
        model.config.use_cache = False
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        max_tokens = params["max_tokens"]
        if spec.mode == "evaluate":
            return self.validate(torch, peft, model, tokenizer, pad, device, began)
        train = [encode_example(tokenizer, e, max_tokens) for e in spec.train]
        train = [item for item in train if item.scored]
        if not train:
            raise InvalidInputError("no training example has a token to learn from")
        general = spec.general if spec.general is not None else general_paragraphs()
        sets = {
            "heldout": [encode_example(tokenizer, e, max_tokens) for e in spec.heldout],
            "general": [encode_plain(tokenizer, p, max_tokens) for p in general if p.strip()],
        }
        self.emit({"event": "start", "steps": params["steps"], "examples": len(train)})
        before = self.evaluate(torch, model, sets, pad, device, "before")

        config = peft.LoraConfig(
            r=params["rank"],
            lora_alpha=params["alpha"],
            lora_dropout=params["dropout"],
            target_modules=list(params["target_modules"]),
            bias="none",
            task_type="CAUSAL_LM",
        )
        torch.manual_seed(params["seed"])  # peft draws A from the global generator
        try:
            model = peft.get_peft_model(model, config)
        except ValueError as exc:  # target modules not found in the model
            raise InvalidInputError(
                f"cannot put LoRA on {params['target_modules']}: {exc}"
            ) from exc
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=params["learning_rate"], weight_decay=0.0)
        steps = params["steps"]
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
        order = random.Random(params["seed"])
        queue: list[Encoded] = []
        losses: list[float] = []
        tokens = 0
        model.train()
        for step in range(1, steps + 1):
            self.check()
            batch: list[Encoded] = []
            while len(batch) < min(params["batch_size"], len(train)):
                if not queue:
                    queue = list(train)
                    order.shuffle(queue)
                batch.append(queue.pop())
            total, count = token_losses(torch, model, batch, pad, device)
            loss = total / count
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            schedule.step()
            tokens += sum(len(item.input_ids) for item in batch)
            losses.append(loss.item())
            self.emit({"event": "step", "step": step, "steps": steps, "loss": round(losses[-1], 4)})
        self.check()
        after = self.evaluate(torch, model, sets, pad, device, "after")
        self.check()
        files = self.save(model)
        return {
            "metrics": {
                "heldout_perplexity_before": before["heldout"],
                "heldout_perplexity_after": after["heldout"],
                "general_perplexity_before": before["general"],
                "general_perplexity_after": after["general"],
                "train_loss_first": losses[0],
                "train_loss_last": losses[-1],
            },
            "steps": steps,
            "examples": len(train),
            "tokens": tokens,
            "device": device,
            "seconds": round(time.monotonic() - began, 3),
            "cpu_seconds": round(time.process_time(), 3),  # every thread of this process
            "adapter_files": files,
        }

    def validate(
        self, torch: Any, peft: Any, model: Any, tokenizer: Any, pad: int, device: str, began: float
    ) -> dict[str, Any]:
        """The held-out perplexity of the base, then of base + the spec's adapter."""
        heldout = [
            encode_example(tokenizer, e, self.spec.params["max_tokens"]) for e in self.spec.heldout
        ]
        sets = {"heldout": heldout}
        self.emit({"event": "start", "steps": 0, "examples": len(heldout)})
        base = self.evaluate(torch, model, sets, pad, device, "before")
        self.check()
        try:
            tuned = peft.PeftModel.from_pretrained(model, str(self.spec.adapter_dir))
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise InvalidInputError(
                f"cannot load the adapter in {self.spec.adapter_dir}: {_one_line(exc)}"
            ) from exc
        tuned.to(device)
        after = self.evaluate(torch, tuned, sets, pad, device, "after")
        return {
            "metrics": {
                "heldout_perplexity_before": base["heldout"],
                "heldout_perplexity_after": after["heldout"],
            },
            "examples": len(heldout),
            "device": device,
            "seconds": round(time.monotonic() - began, 3),
            "cpu_seconds": round(time.process_time(), 3),
        }

    def save(self, model: Any) -> list[str]:
        output = self.spec.output_dir
        output.mkdir(parents=True, exist_ok=True)
        existing = set(output.iterdir())
        try:
            model.save_pretrained(str(output))
        finally:
            self.written += [p for p in output.iterdir() if p not in existing]
        (output / "README.md").unlink(missing_ok=True)  # peft's model card: nothing of use
        return [name for name in ADAPTER_FILES if (output / name).is_file()]

    def clean_up(self) -> None:
        for path in self.written:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


# -- the process -----------------------------------------------------------------------


def _lower_priority(nice: int) -> None:
    """Training yields to the assistant's own work: ``nice`` more than now."""
    try:
        os.nice(nice)
    except OSError as exc:
        logger.debug("cannot lower the priority: %s", exc)


def _stop_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies (a ``kill -9`` of the
    runner), so no orphan keeps training; elsewhere the per-step ``parent_pid`` check
    does it."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError) as exc:
        logger.debug("cannot ask to stop with the parent: %s", exc)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:500]


def _describe(exc: BaseException) -> str:
    name = type(exc).__name__
    if name == "OutOfMemoryError" or isinstance(exc, MemoryError):
        return f"out of memory: {_one_line(exc)}; try fewer max_tokens or a smaller batch_size"
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return f"the disk is full: {_one_line(exc)}"
    if isinstance(exc, MongarsError):
        return _one_line(exc)
    return f"{name}: {_one_line(exc)}"


def run_spec(
    path: Path, emit: Callable[[dict[str, Any]], None], cancelled: Callable[[], bool]
) -> int:
    """Train as the spec at ``path`` says, reporting through ``emit``; the exit status
    (0, 2 on an error, 130 once ``cancelled`` turned true)."""
    worker: Worker | None = None
    try:
        worker = Worker(load_spec(path), emit, cancelled)
        result = worker.run()
        write_atomically(worker.spec.result_path, json.dumps(result, indent=2))
    except Cancelled:
        if worker is not None:
            worker.clean_up()
        emit({"event": "cancelled"})
        return EXIT_CANCELLED
    except Exception as exc:  # every failure is reported as one line; MemoryError too
        if not isinstance(exc, MongarsError):
            logger.exception("the training run failed")
        if worker is not None:
            worker.clean_up()
        emit({"event": "error", "message": _describe(exc)})
        return EXIT_ERROR
    emit({"event": "done"})
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The worker process: events on stdout (and nothing else), SIGTERM and SIGINT
    cancel, a lower priority."""
    args = list(sys.argv[1:] if argv is None else argv)
    out = sys.stdout
    sys.stdout = sys.stderr  # whatever a library prints must not mix with the events

    def emit(event: dict[str, Any]) -> None:
        out.write(json.dumps(event) + "\n")
        out.flush()

    stop: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.append(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    _stop_with_parent()
    if len(args) != 1:
        emit(
            {"event": "error", "message": "usage: python -m mongars_plugins.learning.trainer SPEC"}
        )
        return EXIT_ERROR
    return run_spec(Path(args[0]), emit, lambda: bool(stop))


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    sys.exit(main())
