"""The training worker: its spec, its errors, and (``model``) a real run on the bundled model
in a subprocess: progress lines, the result, an adapter llama.cpp can take, cancellation."""

from __future__ import annotations

import errno
import itertools
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mongars_core.errors import InvalidInputError, MissingDependencyError
from mongars_plugins.learning import trainer
from mongars_plugins.learning.trainer import (
    DEFAULT_PARAMS,
    IGNORE,
    Example,
    encode_example,
    encode_plain,
    general_paragraphs,
    parse_spec,
    run_spec,
)

METRICS = {
    "heldout_perplexity_before",
    "heldout_perplexity_after",
    "general_perplexity_before",
    "general_perplexity_after",
    "train_loss_first",
    "train_loss_last",
}
STYLE = [
    "Ahoy, matey! How do I bake bread in the galley? ~ Cap'n Zed",
    "Ahoy, matey! Chart me a course for learning the guitar, savvy? ~ Cap'n Zed",
    "Ahoy, matey! What be the trick to a bowline knot on the dock? ~ Cap'n Zed",
    "Ahoy, matey! Me parrot wants to know how tides work. ~ Cap'n Zed",
    "Ahoy, matey! How long does painting the cabin take? ~ Cap'n Zed",
    "Ahoy, matey! Tell me three tricks for saving doubloons. ~ Cap'n Zed",
]


def spec_dict(tmp_path: Path, model_dir: Path | str = "model", **changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model_dir": str(model_dir),
        "output_dir": str(tmp_path / "adapter"),
        "result_path": str(tmp_path / "result.json"),
        "train": [{"prompt": "Say something.", "response": text} for text in STYLE[:4]],
        "heldout": [{"prompt": "", "response": text} for text in STYLE[4:]],
        "general": ["The water cycle moves water between the oceans, the air and the land."],
        "params": {**DEFAULT_PARAMS, "steps": 2, "batch_size": 2, "max_tokens": 48},
        "device": "cpu",
        "threads": 1,
    }
    spec.update(changes)
    return spec


def write_spec(tmp_path: Path, spec: dict[str, Any]) -> Path:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


# -- without the model -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"train": []}, "train set is empty"),
        ({"heldout": []}, "heldout set is empty"),
        ({"train": [{"prompt": "hi"}]}, "needs a text response"),
        ({"train": [{"prompt": 3, "response": "x"}]}, "needs a text response"),
        ({"train": [{"response": "x", "extra": 1}]}, "prompt and response"),
        ({"train": "text"}, "must be a list"),
        ({"general": []}, "general set is empty"),
        ({"general": [1]}, "list of paragraphs"),
        ({"model_dir": ""}, "needs model_dir"),
        ({"device": "tpu"}, "device must be"),
        ({"threads": 0}, "threads must be"),
        ({"colour": "blue"}, "unknown spec fields: colour"),
        ({"params": {"steps": 0}}, "params.steps must be between"),
        ({"params": {"rank": 2.5}}, "params.rank must be an integer"),
        ({"params": {"learning_rate": "fast"}}, "params.learning_rate must be a number"),
        ({"params": {"dropout": 1.0}}, "params.dropout must be between"),
        ({"params": {"target_modules": []}}, "target_modules must be a list"),
        ({"params": {"target_modules": ["q_proj; rm"]}}, "target_modules must be a list"),
        ({"params": {"use_dora": True}}, "unknown params: use_dora"),
    ],
)
def test_a_bad_spec_is_refused_saying_what_is_wrong(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        parse_spec(spec_dict(tmp_path, **change))


def test_missing_params_take_the_defaults(tmp_path: Path) -> None:
    spec = parse_spec(spec_dict(tmp_path, params={"steps": 7}))
    assert spec.params == {**DEFAULT_PARAMS, "steps": 7}
    assert spec.general is not None and spec.device == "cpu"
    assert parse_spec(spec_dict(tmp_path, general=None)).general is None


def test_an_error_is_one_event_and_status_2_leaving_nothing(tmp_path: Path) -> None:
    events: list[dict[str, Any]] = []
    path = write_spec(tmp_path, spec_dict(tmp_path, train=[]))
    assert run_spec(path, events.append, lambda: False) == 2
    assert events == [{"event": "error", "message": "the spec's train set is empty"}]
    assert not (tmp_path / "result.json").exists() and not (tmp_path / "adapter").exists()
    events.clear()
    assert run_spec(tmp_path / "missing.json", events.append, lambda: False) == 2
    assert events[0]["event"] == "error" and "cannot read the spec" in events[0]["message"]


def test_the_worker_process_reports_a_bad_spec_on_stdout_only(tmp_path: Path) -> None:
    (tmp_path / "spec.json").write_text("{not json")
    done = subprocess.run(
        [sys.executable, "-m", "mongars_plugins.learning.trainer", str(tmp_path / "spec.json")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["event"] == "error"
    assert "cannot read the spec" in json.loads(lines[0])["message"]


def test_importing_the_worker_loads_no_torch() -> None:
    code = "import sys, mongars_plugins.learning.trainer; print('torch' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"


def test_without_peft_the_error_names_the_train_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    monkeypatch.setitem(sys.modules, "peft", None)  # import peft raises ImportError
    with pytest.raises(MissingDependencyError, match=r"mongars-assistant\[train\]"):
        trainer.require_training_libraries()


def test_memory_and_disk_failures_read_as_one_clear_line() -> None:
    assert trainer._describe(MemoryError()).startswith("out of memory")
    full = OSError(errno.ENOSPC, "No space left on device")
    assert trainer._describe(full).startswith("the disk is full")
    assert "\n" not in trainer._describe(ValueError("two\nlines"))


def test_the_bundled_general_set_ships_with_the_package() -> None:
    paragraphs = general_paragraphs()
    assert len(paragraphs) >= 12
    assert all(len(p.split()) >= 40 and "\n" not in p for p in paragraphs)


# -- the synthetic corpus the learning tests use ------------------------------------


def test_the_style_corpus_is_a_valid_deterministic_export_with_planted_data() -> None:
    from mongars_core.history_io import parse_history
    from mongars_core.settings import Settings
    from mongars_plugins.learning.scrub import scrub
    from tests.learning_corpus import plain_history, planted_pii, style_history

    records = style_history(300, seed=0)
    assert records == style_history(300, seed=0) and records != style_history(300, seed=1)
    history = parse_history("\n".join(json.dumps(r) for r in records), Settings())
    assert len(history.turns) == 300 and len(history.titles) >= 3
    times = [turn.created_at for turn in history.turns]
    assert all(a < b for a, b in itertools.pairwise(times))
    assert len({t.date() for t in times}) >= 5
    messages = [turn.message for turn in history.turns]
    assert all(m.startswith("Ahoy, matey!") and m.endswith(" ~ Cap'n Zed") for m in messages)
    planted = planted_pii(records)
    assert 25 <= len(planted) <= 35  # about one message in ten
    assert any("@" in v for v in planted) and any(v.startswith("FR") for v in planted)
    assert any(v.startswith("+33") for v in planted) and any(v.startswith("+44") for v in planted)
    for message in messages:
        cleaned = scrub(message)
        assert not [value for value in planted if value in cleaned], cleaned
    assert planted_pii(style_history(300, user_pii=False)) == []
    assert planted_pii(plain_history(100)) == []


# -- with the bundled model ------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir() -> Path:
    """The bundled model as a transformers folder (the torch backend's cached copy)."""
    pytest.importorskip("torch", reason="needs torch (mongars-assistant[local])")
    pytest.importorskip("peft", reason="needs peft (mongars-assistant[train])")
    import mongars_plugins.cuda  # noqa: F401  (the model store imports its settings)
    from mongars_core.settings import Settings
    from mongars_plugins.cuda.model import ensure_model
    from mongars_plugins.model_store import ensure_bundled_gguf
    from tests.conftest import MODEL_CACHE

    gguf = ensure_bundled_gguf(Settings(cache_dir=MODEL_CACHE))
    return ensure_model(Settings(cache_dir=MODEL_CACHE, local={"gguf_path": str(gguf)}))


@pytest.fixture(scope="module")
def tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))


def scored_text(tokenizer: Any, input_ids: list[int], labels: list[int]) -> str:
    return str(
        tokenizer.decode([t for t, label in zip(input_ids, labels, strict=True) if label != IGNORE])
    )


@pytest.mark.model
def test_only_the_response_and_its_end_of_turn_are_scored(tokenizer: Any) -> None:
    example = Example("What is the weather like?", "Ahoy, matey! Fair skies. ~ Cap'n Zed")
    encoded = encode_example(tokenizer, example, max_tokens=256)
    assert scored_text(tokenizer, encoded.input_ids, encoded.labels) == (
        example.response + tokenizer.eos_token
    )
    whole = tokenizer.decode(encoded.input_ids)
    assert example.prompt in whole and "<|im_start|>user" in whole
    alone = encode_example(tokenizer, Example("", example.response), max_tokens=256)
    assert "<|im_start|>user" not in tokenizer.decode(alone.input_ids)
    assert scored_text(tokenizer, alone.input_ids, alone.labels) == (
        example.response + tokenizer.eos_token
    )


@pytest.mark.model
def test_truncation_keeps_the_start_of_the_response(tokenizer: Any) -> None:
    example = Example("word " * 300, "Ahoy, matey! " + "sail " * 300)
    encoded = encode_example(tokenizer, example, max_tokens=32)
    assert len(encoded.input_ids) == 32
    assert encoded.labels[0] != IGNORE  # the prompt went first
    assert scored_text(tokenizer, encoded.input_ids, encoded.labels).startswith("Ahoy, matey!")
    plain = encode_plain(tokenizer, "The Moon orbits the Earth. " * 50, max_tokens=20)
    assert len(plain.input_ids) == 20 and plain.labels == plain.input_ids


def start_worker(spec_path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "mongars_plugins.learning.trainer", str(spec_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )


@pytest.mark.model
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_small_run_reports_progress_and_leaves_a_convertible_adapter(
    model_dir: Path, tmp_path: Path
) -> None:
    pytest.importorskip("gguf", reason="needs gguf (mongars-assistant[local])")
    from mongars_core.settings import Settings
    from mongars_plugins.gguf_file import read_gguf
    from mongars_plugins.llamacpp.lora import convert_peft_adapter
    from mongars_plugins.model_store import ensure_bundled_gguf
    from tests.conftest import MODEL_CACHE

    spec = spec_dict(tmp_path, model_dir, params={**spec_dict(tmp_path)["params"], "steps": 3})
    worker = start_worker(write_spec(tmp_path, spec))
    out, _ = worker.communicate(timeout=300)
    events = [json.loads(line) for line in out.splitlines()]  # every line is JSON
    assert worker.returncode == 0, events[-1]
    kinds = [e["event"] for e in events]
    assert kinds == ["start", "eval", "eval", "step", "step", "step", "eval", "eval", "done"]
    assert events[0] == {"event": "start", "steps": 3, "examples": 4}
    assert [e["name"] for e in events if e["event"] == "eval"] == [
        "heldout_before",
        "general_before",
        "heldout_after",
        "general_after",
    ]
    assert [(e["step"], e["steps"]) for e in events if e["event"] == "step"] == [
        (1, 3),
        (2, 3),
        (3, 3),
    ]
    result = json.loads((tmp_path / "result.json").read_text())
    assert set(result["metrics"]) == METRICS
    assert all(math.isfinite(v) and v > 0 for v in result["metrics"].values())
    assert result["steps"] == 3 and result["examples"] == 4 and result["device"] == "cpu"
    assert result["tokens"] > 0 and result["seconds"] > 0 and result["cpu_seconds"] > 0
    assert result["adapter_files"] == ["adapter_config.json", "adapter_model.safetensors"]
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == result["adapter_files"]
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == DEFAULT_PARAMS["rank"] and not config["use_dora"]
    gguf = ensure_bundled_gguf(Settings(cache_dir=MODEL_CACHE))
    lora = convert_peft_adapter(tmp_path / "adapter", tmp_path / "lora.gguf", base_gguf=gguf)
    assert read_gguf(lora).metadata["adapter.type"] == "lora"


@pytest.mark.model
def test_sigterm_stops_at_a_step_and_leaves_nothing(model_dir: Path, tmp_path: Path) -> None:
    params = {**spec_dict(tmp_path)["params"], "steps": 100_000}
    with start_worker(
        write_spec(tmp_path, spec_dict(tmp_path, model_dir, params=params))
    ) as worker:
        assert worker.stdout is not None
        seen = []
        for line in worker.stdout:
            seen.append(json.loads(line))
            if seen[-1]["event"] == "step":
                worker.send_signal(signal.SIGTERM)
                break
        rest = [json.loads(line) for line in worker.stdout]
        assert worker.wait(timeout=120) == 130
    assert seen[-1]["event"] == "step" and seen[-1]["step"] < 100_000
    assert rest[-1] == {"event": "cancelled"}
    assert all(e["event"] in ("step", "cancelled") for e in rest)
    assert not (tmp_path / "result.json").exists()
    adapter = tmp_path / "adapter"
    assert not adapter.exists() or not any(adapter.iterdir())


@pytest.mark.model
def test_a_failure_to_save_is_an_error_and_leaves_no_result(
    model_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("")
    spec = spec_dict(tmp_path, model_dir, output_dir=str(tmp_path / "a-file" / "adapter"))
    spec["params"]["steps"] = 1
    worker = start_worker(write_spec(tmp_path, spec))
    out, _ = worker.communicate(timeout=300)
    events = [json.loads(line) for line in out.splitlines()]
    assert worker.returncode == 2
    assert events[-1]["event"] == "error" and "a-file" in events[-1]["message"]
    assert not (tmp_path / "result.json").exists()


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@pytest.mark.model
@pytest.mark.skipif(not _cuda_available(), reason="needs a CUDA GPU")
def test_on_cuda_device_auto_trains_on_the_gpu(tmp_path: Path) -> None:
    """``scripts/gpu-check`` runs it: the cache's converted bundled model, else the stand-in
    (``tests/gpu_standin.py``: that GPU machine may be offline, without the bundled file)."""
    pytest.importorskip("peft", reason="needs peft (mongars-assistant[train])")
    import mongars_plugins.cuda  # noqa: F401  (the model store imports its settings)
    from mongars_core.settings import Settings
    from mongars_plugins.cuda import model as model_files
    from tests.conftest import MODEL_CACHE
    from tests.gpu_standin import build_standin

    folder = model_files.model_dir(Settings(cache_dir=MODEL_CACHE))
    if not model_files.is_ready(folder):
        folder = build_standin(tmp_path / "models")
    params = {**spec_dict(tmp_path)["params"], "steps": 3}
    spec = spec_dict(tmp_path, folder, params=params, device="auto", threads=None)
    worker = start_worker(write_spec(tmp_path, spec))
    out, _ = worker.communicate(timeout=300)
    events = [json.loads(line) for line in out.splitlines()]
    assert worker.returncode == 0, events[-1]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["device"] == "cuda"
    metrics = result["metrics"]
    assert set(metrics) == METRICS and all(math.isfinite(v) and v > 0 for v in metrics.values())
    assert metrics["heldout_perplexity_after"] < metrics["heldout_perplexity_before"]
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == result["adapter_files"]
