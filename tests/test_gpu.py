"""The torch backend on a CUDA GPU: bf16 weights, a static KV cache, streamed replies.

The GPU tests skip where torch sees no GPU (CI has none); ``scripts/gpu-check``
runs them on a machine that has one. They use the bundled model where it is in
the cache, else a stand-in with its architecture and random weights
(``tests/gpu_standin.py``: a GPU machine may be offline). The cache options
themselves are checked everywhere.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mongars_core.settings import Settings
from mongars_core.types import ChatMessage, GenerationRequest
from mongars_plugins.cuda import model as model_files
from mongars_plugins.cuda.backend import (
    STATIC_CACHE_MAX_LENGTH,
    STATIC_CACHE_MIN_LENGTH,
    LocalModelBackend,
    _knows_max_cache_len,
    kv_cache_options,
)
from tests.conftest import MODEL_CACHE
from tests.gpu_standin import build_standin


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


needs_cuda = pytest.mark.skipif(
    not _cuda_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is false)"
)


def test_the_cpu_keeps_the_dynamic_cache() -> None:
    assert kv_cache_options("cpu", 300) == {}


@pytest.mark.parametrize(
    ("needed", "length"),
    [
        (1, STATIC_CACHE_MIN_LENGTH),
        (300, STATIC_CACHE_MIN_LENGTH),
        (1025, 2048),
        (4096, 4096),
        (STATIC_CACHE_MAX_LENGTH + 5, STATIC_CACHE_MAX_LENGTH + 5),
    ],
)
def test_cuda_gets_a_static_cache_rounded_up_to_a_power_of_two(needed: int, length: int) -> None:
    sized = {"max_cache_len": length} if _knows_max_cache_len() else {}
    for device in ("cuda", "cuda:1"):
        assert kv_cache_options(device, needed) == {"cache_implementation": "static", **sized}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cache's models folder when it holds the converted bundled model, else a stand-in's."""
    cached = model_files.model_dir(Settings(cache_dir=MODEL_CACHE)).parent
    if model_files.is_ready(cached / model_files.MODEL_NAME) or not _cuda_available():
        return cached
    models = tmp_path_factory.mktemp("standin") / "models"
    build_standin(models)
    return models


@pytest.fixture
def cuda_settings(tmp_path: Path, models_dir: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        cache_dir=MODEL_CACHE,
        llm={"backend": "torch", "max_new_tokens": 32, "temperature": 0},
        local={"device": "cuda", "model_dir": str(models_dir), "fetch": False},
    )


def _static_cache_length(model: object) -> int | None:
    """The static KV cache's length that generate last used on ``model``, or None if it
    used none: recorded on the model by transformers 5.2x, the cache itself kept before."""
    length = getattr(model, "_previous_max_cache_length", None)
    if length is not None:
        return int(length)
    from transformers import StaticCache

    cache = getattr(model, "_cache", None)
    return int(cache.max_cache_len) if isinstance(cache, StaticCache) else None


def _ask(text: str, tokens: int = 32) -> GenerationRequest:
    return GenerationRequest(
        messages=[ChatMessage(role="user", content=text)], max_new_tokens=tokens, temperature=0
    )


# torch.compile and CUDA graphs may warn about their own internals on some drivers;
# those warnings are not this backend's failures.
gpu_warnings = pytest.mark.filterwarnings("default")


@pytest.mark.model
@needs_cuda
@gpu_warnings
async def test_on_cuda_the_model_is_bf16(cuda_settings: Settings) -> None:
    import torch

    backend = LocalModelBackend(cuda_settings)
    await backend.load()
    assert backend.device == "cuda"
    parameters = list(backend._model.parameters())
    assert parameters and all(p.dtype == torch.bfloat16 for p in parameters)
    assert all(p.device.type == "cuda" for p in parameters)


@pytest.mark.model
@needs_cuda
@gpu_warnings
async def test_on_cuda_a_reply_streams_through_a_static_cache(cuda_settings: Settings) -> None:
    backend = LocalModelBackend(cuda_settings)
    request = _ask("Write two sentences about the sea.")
    deltas = [delta async for delta in backend.stream(request)]
    assert len(deltas) > 1, deltas
    assert "".join(deltas).strip()
    assert request.outcome.tokens and request.outcome.tokens > 1
    # Only the static-cache path of generate records this length (the dynamic one doesn't).
    first_length = _static_cache_length(backend._model)
    assert first_length is not None and first_length >= 32
    if _knows_max_cache_len():
        assert first_length == STATIC_CACHE_MIN_LENGTH
    # A second, longer request reuses the same cache size: no reallocation, no recompilation.
    again = await backend.generate(_ask("Name three colours of the sea.", 48))
    assert again.strip()
    if _knows_max_cache_len():
        assert _static_cache_length(backend._model) == STATIC_CACHE_MIN_LENGTH


@pytest.mark.model
@needs_cuda
@gpu_warnings
async def test_on_cuda_greedy_replies_are_reproducible(cuda_settings: Settings) -> None:
    """Mid-stream failover relies on a greedy reply being the same text twice."""
    backend = LocalModelBackend(cuda_settings)
    first = await backend.generate(_ask("What is the capital of France?"))
    second = await backend.generate(_ask("What is the capital of France?"))
    assert first == second and first.strip()


@pytest.mark.model
async def test_on_the_cpu_no_static_cache_is_made(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        cache_dir=MODEL_CACHE,
        llm={"backend": "torch", "max_new_tokens": 8, "temperature": 0},
        local={"device": "cpu"},
    )
    backend = LocalModelBackend(settings)
    reply = await backend.generate(_ask("Say hello.", 8))
    assert reply.strip()
    assert _static_cache_length(backend._model) is None


async def test_the_standin_streams_and_takes_the_static_cache_options_on_the_cpu(
    tmp_path: Path,
) -> None:
    """What the GPU tests rely on, checked where CI runs: the stand-in model loads and
    streams word by word, and this transformers accepts the CUDA cache options."""
    import torch

    build_standin(tmp_path / "models")
    settings = Settings(
        data_dir=tmp_path / "data",
        cache_dir=tmp_path / "cache",
        local={"device": "cpu", "model_dir": str(tmp_path / "models"), "fetch": False},
    )
    backend = LocalModelBackend(settings)
    request = _ask("Hello there", 12)
    deltas = [delta async for delta in backend.stream(request)]
    assert len(deltas) > 1 and request.outcome.tokens == 12
    encoded = backend._tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.inference_mode():
        backend._model.generate(
            **encoded,
            max_new_tokens=4,
            do_sample=False,
            pad_token_id=backend._tokenizer.eos_token_id,
            **kv_cache_options("cuda", 40),
        )
    length = _static_cache_length(backend._model)
    assert length is not None and length >= 40


def test_the_gpu_check_records_that_it_did_not_run_without_a_gpu(tmp_path: Path) -> None:
    """``scripts/gpu-check`` on a machine whose nvidia-smi lists no GPU: exit 0, and a
    result that says it did not run, and why."""
    import json
    import os
    import subprocess

    root = Path(__file__).resolve().parent.parent
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nvidia-smi"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    results = tmp_path / "results"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "MONGARS_GPU_CHECK_RESULTS": str(results),
    }
    env.pop("OUT", None)
    done = subprocess.run(
        [str(root / "scripts" / "gpu-check")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    recorded = json.loads((results / "gpu_check.json").read_text())
    assert recorded["ran"] is False
    assert recorded["reason"] == "nvidia-smi lists no GPU"
    assert "did not run" in (results / "gpu_check.md").read_text()


def test_the_gpu_check_names_tests_that_exist() -> None:
    """The tests ``scripts/gpu-check`` runs are all collected here: a renamed or moved
    CUDA test fails in CI, not on the GPU machine."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    code = (
        "import sys, pytest; sys.path.insert(0, 'benchmarks'); import gpu_check; "
        "print('TESTS', *gpu_check.TESTS); "
        "options = ['--collect-only', '-q', '-p', 'no:cacheprovider']; "
        "sys.exit(pytest.main([*gpu_check.TESTS, *options]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stdout.splitlines()
    named = next(line for line in lines if line.startswith("TESTS ")).split()[1:]
    collected = [line for line in lines if "::" in line]
    for test in named:
        assert any(line.startswith(test) for line in collected), (test, collected)
    assert any("test_torch_adapters.py::test_on_cuda" in line for line in collected)
    assert any("test_learning_trainer.py::test_on_cuda" in line for line in collected)
